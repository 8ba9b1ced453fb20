"""(b) A request through the whole middleware stack: stepup's cost on unmatched and protected routes.

The Django test client on the demo project's middleware (sessions, CSRF,
authentication, django-otp, messages, simple-history), a logged-in user whose
session lives in the database, signed in with django-otp too (``otp_device_id``)
and holding a valid stepup grant. Measured:

- **unmatched routes**: a minimal view that reads nothing (the worst case for
  a relative overhead) and the demo's home page, each with stepup's
  middleware and without it (a client whose handler was built without);
- **the protected route**: one view body behind ``@require_stepup`` (a valid
  grant), django-otp's ``otp_required`` and Django's ``login_required``, all
  on the same stack, with stepup's middleware.

All variants run in **mixed order** (:func:`bench.timing.mixed_us`): every
round runs each once, in a new random order, as real traffic interleaves
routes. Run as ``python -m bench.stack LABEL [--quick] [--redis URL]`` with
``BENCH_DATABASE_URL`` set; prints the figures as JSON (run by ``bench/run.py``).
"""

from __future__ import annotations

import json
import sys
from dataclasses import asdict, dataclass, field
from typing import Any

MIDDLEWARE = "stepup.middleware.StepUpMiddleware"

UNMATCHED = {
    "minimal view": ("/bench/open/", "/bench/open/"),
    "demo home page": ("/", "/"),
}
"""Route: (path with stepup, path without)."""
PROTECTED = {
    "require_stepup": "/bench/protected/",
    "otp_required": "/bench/protected-otp/",
    "login_required": "/bench/protected-login/",
}


@dataclass
class Timing:
    wall_us: float  # median
    cpu_us: float  # median
    mean_wall_us: float  # every request, the slow ones too
    queries: int


@dataclass
class StackRun:
    database: str
    variants: dict[str, Timing]
    redis: dict[str, Timing] = field(default_factory=dict)  # every variant again, notices on Redis
    listen: dict[str, Timing] = field(default_factory=dict)  # again, notices by PostgreSQL LISTEN/NOTIFY
    decide_us: float = 0.0  # decide(request, action, attrs), the request's context loaded (CPU)
    engine_us: float = 0.0  # PolicySet.decide on the same input (CPU)
    redis_get_us: float | None = None


def setup() -> Any:
    """The demo's policies, one for the protected view, and a user with a TOTP device."""
    from django.conf import settings
    from django.contrib.auth import get_user_model
    from django_otp.plugins.otp_totp.models import TOTPDevice

    from stepup import store
    from stepup.conf import conf
    from stepup.models import Policy
    from stepup.sync import load, sync

    demo = conf.POLICY_FILES or [settings.BASE_DIR / "fixtures" / "stepup" / "policies.yaml"]
    sync(load(demo), reason="bench")
    Policy.objects.create(
        policy_id="bench-protected",
        description="bench: the protected view needs a TOTP code from the last hour",
        actions=["bench.protected"],
        decision="step_up",
        max_age=3600,  # outlasts the run
        factors=["totp"],
    )
    user = get_user_model().objects.create_user("bench", password="pw")
    TOTPDevice.objects.create(user=user, name="Phone", confirmed=True)
    store.invalidate()
    return user


def signed_in(client: Any, user: Any) -> Any:
    """``client`` logged in, signed in with the user's TOTP device (django-otp) and holding a stepup grant."""
    from django_otp.plugins.otp_totp.models import TOTPDevice

    from stepup.testing import stepup_verified

    client.force_login(user)
    session = client.session
    session["otp_device_id"] = TOTPDevice.objects.get(user=user).persistent_id  # what django_otp.login stores
    session.save()
    verified = stepup_verified(client, user)
    verified.__enter__()  # never left: the grant lasts the run
    client.stepup_verified = verified  # kept: a collected generator would run its cleanup and clear the grant
    return client


def _client(user: Any, *, stepup: bool) -> Any:
    from django.conf import settings
    from django.test import Client, override_settings

    client = signed_in(Client(), user)
    if stepup:
        client.get("/bench/open/")  # builds the handler with the current MIDDLEWARE
    else:
        with override_settings(MIDDLEWARE=[m for m in settings.MIDDLEWARE if m != MIDDLEWARE]):
            client.get("/bench/open/")
    return client


def _queries(client: Any, path: str) -> int:
    """SQL queries of a typical request to ``path``: the median of 7.

    Once per ``RELOAD_INTERVAL`` a process reads again what it keeps (the
    grants of :mod:`stepup.grant_cache`); the one request that does so is not
    what a request costs.
    """
    import statistics

    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    client.get(path)
    counts = []
    for _ in range(7):
        with CaptureQueriesContext(connection) as captured:
            response = client.get(path)
        assert response.status_code == 200, (path, response.status_code)
        counts.append(len(captured.captured_queries))
    return int(statistics.median(counts))


def _calls(with_client: Any, without_client: Any, *, protected: bool) -> dict[str, tuple[Any, str]]:
    calls: dict[str, tuple[Any, str]] = {}
    for route, (with_path, without_path) in UNMATCHED.items():
        calls[f"{route}, with stepup"] = (with_client, with_path)
        calls[f"{route}, without"] = (without_client, without_path)
    if protected:
        for guard, path in PROTECTED.items():
            calls[guard] = (with_client, path)
    return calls


def _measure(calls: dict[str, tuple[Any, str]], requests: int) -> dict[str, Timing]:
    from bench.timing import mixed_us

    timed = mixed_us({name: (lambda c=c, p=p: c.get(p)) for name, (c, p) in calls.items()}, requests=requests)
    return {name: Timing(*timed[name], _queries(*calls[name])) for name in calls}


def decide_cost(user: Any, *, quick: bool) -> tuple[float, float]:
    """CPU µs of ``decide(request, "bench.protected", attrs)`` on a loaded context; of the engine alone."""
    from django.contrib.sessions.middleware import SessionMiddleware
    from django.test import RequestFactory
    from django.urls import resolve

    from bench.timing import interleaved_cpu_us
    from stepup import decide, grants, store
    from stepup.context import get_context

    request = RequestFactory().post("/bench/protected/")
    SessionMiddleware(lambda r: None).process_request(request)  # type: ignore[arg-type,return-value]
    request.user = user
    request.resolver_match = resolve("/bench/protected/")
    grants.record_login(request)
    grants.record_verification(request, user, "totp")
    attrs = {"amount": "120"}
    assert decide(request, "bench.protected", attrs).outcome == "allow"  # loads the context's facts
    policies = store.get_policy_set()
    # The input decide() builds: the subject holds no single-request grant, so the digest is
    # never worked out (a lasting grant's empty digest binds nothing).
    inp = get_context(request).input("bench.protected", "bench-protected", attrs, lambda: "")
    assert inp.one_shot == frozenset() and policies.decide(inp).outcome == "allow"
    timed = interleaved_cpu_us(
        {
            "decide": (lambda a: decide(request, "bench.protected", a), attrs),
            "engine": (policies.decide, inp),
        },
        rounds=7 if quick else 21,
    )
    return timed["decide"], timed["engine"]


def run(label: str, *, quick: bool = False, redis_url: str | None = None) -> StackRun:
    from django.conf import settings

    user = setup()
    requests = 1000 if quick else 5000
    with_client, without_client = _client(user, stepup=True), _client(user, stepup=False)
    assert with_client.get("/bench/protected/").status_code == 200
    assert with_client.get("/bench/protected-otp/").status_code == 200
    result = StackRun(label, _measure(_calls(with_client, without_client, protected=True), requests))
    result.decide_us, result.engine_us = decide_cost(user, quick=quick)
    calls = _calls(with_client, without_client, protected=True)
    if redis_url:
        result.redis = _with_redis(redis_url, calls, requests)
        result.redis_get_us = redis_round_trip_us(redis_url)
    if label == "PostgreSQL":
        result.listen = _with_notices({"STEPUP": {**settings.STEPUP, "NOTICES": "database"}}, calls, requests)
    for client in (with_client, without_client):
        client.stepup_verified.__exit__(None, None, None)  # now, not when the interpreter shuts down
    return result


def redis_round_trip_us(redis_url: str) -> float:
    """A bare redis-py ``GET`` on this machine, for reference."""
    import statistics
    import time

    import redis

    client = redis.Redis.from_url(redis_url)
    samples = []
    for _ in range(15):
        start = time.perf_counter()
        for _ in range(200):
            client.get("stepup-bench:nothing")
        samples.append((time.perf_counter() - start) / 200 * 1e6)
    return statistics.median(samples)


def _with_redis(redis_url: str, calls: dict[str, tuple[Any, str]], requests: int) -> dict[str, Timing]:
    """Every variant again, Redis carrying the notices (a subscription per process).

    The protected route then needs no grants query once the process read the
    subject's lasting grants (:mod:`stepup.grant_cache`, at most one read per
    ``RELOAD_INTERVAL``).
    """
    import secrets

    redis = {
        "BACKEND": "django.core.cache.backends.redis.RedisCache",
        "LOCATION": redis_url,
        "KEY_PREFIX": f"stepup-bench-{secrets.token_hex(4)}",
    }
    return _with_notices({"CACHES": {"default": redis}}, calls, requests)


def _with_notices(
    overrides: dict[str, Any], calls: dict[str, tuple[Any, str]], requests: int
) -> dict[str, Timing]:
    """Every variant again under ``overrides``, which must make the notices a subscription."""
    from django.test import override_settings

    from stepup import notices, store

    with override_settings(**overrides):
        store.invalidate()
        for client, path in calls.values():
            client.get(path)
        channel = store._config().notices
        assert isinstance(channel, notices.SubscribedNotices), channel
        channel.read()  # subscribed: a failure would leave the store polling and the figures meaningless
        timed = _measure(calls, requests)
    store.invalidate()
    return timed


def report(runs: list[StackRun]) -> list[str]:
    out = [
        "(b) one request through the full middleware stack (Django test client; a user logged in, signed in "
        "with django-otp and holding a stepup grant; session in the database), all variants in mixed order "
        "(each round runs every variant once, in a new random order): median wall / median CPU / mean wall "
        "µs, SQL queries per request",
    ]
    for run in runs:
        out.append(f"  {run.database}:")
        out.append(f"{'variant':>34} {'wall':>9} {'CPU':>9} {'mean':>9} {'SQL':>4}")
        for name, t in run.variants.items():
            out.append(f"{name:>34} {t.wall_us:>9.1f} {t.cpu_us:>9.1f} {t.mean_wall_us:>9.1f} {t.queries:>4}")
        for suffix, timings in (("Redis", run.redis), ("NOTIFY", run.listen)):
            for name, t in timings.items():
                name = f"{name} ({suffix})"
                out.append(
                    f"{name:>34} {t.wall_us:>9.1f} {t.cpu_us:>9.1f} {t.mean_wall_us:>9.1f} {t.queries:>4}"
                )
        out.append(
            f"    decide(request, action, attrs) on a loaded context: {run.decide_us:.2f} µs CPU; the engine "
            f"alone on the same input: {run.engine_us:.2f} µs"
        )
        if run.redis_get_us is not None:
            out.append(f"    a bare redis-py GET takes {run.redis_get_us:.1f} µs here (wall clock)")
    out.append(
        "    the mean counts every request, the one that writes a batch of 100 allowed-decision rows "
        "after its response too; the medians leave it out"
    )
    return out


def main(argv: list[str]) -> None:
    import logging
    import os

    import django
    from django.core.management import call_command

    os.environ["DJANGO_SETTINGS_MODULE"] = "bench.settings"
    django.setup()
    logging.getLogger("stepup").setLevel(logging.ERROR)
    call_command("migrate", verbosity=0)
    redis_url = argv[argv.index("--redis") + 1] if "--redis" in argv else None
    result = run(argv[0], quick="--quick" in argv, redis_url=redis_url)
    from django.db import connections

    connections.close_all()
    print(json.dumps(asdict(result)))


def parse(text: str) -> StackRun:
    data = json.loads(text.strip().splitlines()[-1])
    data["variants"] = {k: Timing(**v) for k, v in data["variants"].items()}
    for key in ("redis", "listen"):
        data[key] = {k: Timing(**v) for k, v in data[key].items()}
    return StackRun(**data)


if __name__ == "__main__":
    main(sys.argv[1:])
