"""(b) A request through the whole middleware stack, with stepup and without it.

Both sides are Django test clients on the demo project's middleware (sessions,
CSRF, authentication, django-otp, messages, simple-history), with a logged-in
user whose session lives in the database; "without" drops
``StepUpMiddleware`` and calls an undecorated twin of the protected view. The
routes: a minimal view that reads nothing (the worst case for a relative
overhead), the demo's home page (a real page: the user, a template) and a
view protected by ``@require_stepup`` with a valid grant in the session.
Requests alternate between the two sides one at a time (see
:func:`bench.timing.interleaved_us`). Needs Django set up with
:mod:`bench.settings`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.db import connection
from django.test import Client, override_settings
from django.test.utils import CaptureQueriesContext

from bench.timing import interleaved_us

MIDDLEWARE = "stepup.middleware.StepUpMiddleware"


@dataclass
class Case:
    """One route: (wall, CPU) µs per request with and without stepup, and SQL queries per request."""

    name: str
    with_us: tuple[float, float]
    without_us: tuple[float, float]
    with_queries: int
    without_queries: int
    redis: Case | None = None  # the same route with Redis carrying the change notices

    @staticmethod
    def _ratio(a: float, b: float) -> float:
        return a / b - 1

    @property
    def overhead_wall(self) -> float:
        return self._ratio(self.with_us[0], self.without_us[0])

    @property
    def overhead_cpu(self) -> float:
        return self._ratio(self.with_us[1], self.without_us[1])


def _client(user: Any, *, stepup: bool) -> Client:
    client = Client()
    client.force_login(user)
    if stepup:
        client.get("/bench/open/")  # builds the handler with the current MIDDLEWARE
    else:
        with override_settings(MIDDLEWARE=[m for m in settings.MIDDLEWARE if m != MIDDLEWARE]):
            client.get("/bench/open/")
    return client


def _queries(client: Client, path: str) -> int:
    client.get(path)
    with CaptureQueriesContext(connection) as captured:
        response = client.get(path)
    assert response.status_code == 200, (path, response.status_code)
    return len(captured.captured_queries)


def setup() -> Any:
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
        description="bench: the protected view needs a TOTP code from the last 5 minutes",
        actions=["bench.protected"],
        decision="step_up",
        max_age=300,
        factors=["totp"],
    )
    user = get_user_model().objects.create_user("bench", password="pw")
    TOTPDevice.objects.create(user=user, name="Phone", confirmed=True)
    store.invalidate()
    return user


def run(user: Any, *, quick: bool = False, redis_url: str | None = None) -> list[Case]:
    from stepup.testing import stepup_verified

    requests = 1500 if quick else 8000
    with_client = _client(user, stepup=True)
    without_client = _client(user, stepup=False)
    cases = []
    with stepup_verified(with_client, user):
        assert with_client.get("/bench/protected/").status_code == 200
        for name, with_path, without_path in (
            ("route no policy matches", "/bench/open/", "/bench/open/"),
            ("demo page no policy matches", "/", "/"),
            ("protected route, valid grant", "/bench/protected/", "/bench/protected-bare/"),
        ):
            calls = {
                "with": lambda p=with_path: with_client.get(p),  # type: ignore[misc]
                "without": lambda p=without_path: without_client.get(p),  # type: ignore[misc]
            }
            timings = interleaved_us(calls, requests=requests)
            case = Case(
                name,
                timings["with"],
                timings["without"],
                _queries(with_client, with_path),
                _queries(without_client, without_path),
            )
            if redis_url:
                case.redis = _with_redis(redis_url, case, calls, with_client, with_path, requests)
            cases.append(case)
    return cases


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


def _with_redis(
    redis_url: str, case: Case, calls: dict[str, Any], with_client: Client, with_path: str, requests: int
) -> Case:
    """Both sides again, with Redis carrying the policy-change notices (a subscription per process)."""
    import secrets

    from stepup import notices, store

    prefix = f"stepup-bench-{secrets.token_hex(4)}"
    redis = {
        "BACKEND": "django.core.cache.backends.redis.RedisCache",
        "LOCATION": redis_url,
        "KEY_PREFIX": prefix,
    }
    with override_settings(CACHES={"default": redis}):
        store.invalidate()
        with_client.get(with_path)
        with_client.get(with_path)
        assert isinstance(store._config().notices, notices.RedisNotices)
        timings = interleaved_us(calls, requests=requests)
    store.invalidate()
    return Case(case.name, timings["with"], timings["without"], case.with_queries, case.without_queries)


def report(cases: list[Case], database: str, redis_url: str | None) -> list[str]:
    out = [
        "(b) one request through the full middleware stack (Django test client, logged-in user, "
        f"session in the database, {database}), median µs per request, wall clock / CPU",
        f"{'route':>30} {'with stepup':>15} {'without':>15} {'overhead':>15} "
        f"{'SQL with':>9} {'SQL without':>12}",
    ]
    for case in cases:
        out.append(
            f"{case.name:>30} {case.with_us[0]:>7.1f}/{case.with_us[1]:<7.1f} "
            f"{case.without_us[0]:>7.1f}/{case.without_us[1]:<7.1f} "
            f"{case.overhead_wall:>7.1%}/{case.overhead_cpu:<7.1%} "
            f"{case.with_queries:>9} {case.without_queries:>12}"
        )
        if case.redis is not None:
            redis = case.redis
            out.append(
                f"{'with Redis notices':>30} {redis.with_us[0]:>7.1f}/{redis.with_us[1]:<7.1f} "
                f"{redis.without_us[0]:>7.1f}/{redis.without_us[1]:<7.1f} "
                f"{redis.overhead_wall:>7.1%}/{redis.overhead_cpu:<7.1%}"
            )
    out.append(
        "    default cache is local memory (one process): no cache call; the version is read from the "
        "database once per RELOAD_INTERVAL, not per request"
    )
    if redis_url:
        out.append(f"    a bare redis-py GET takes {redis_round_trip_us(redis_url):.1f} µs here (wall clock)")
    return out
