"""(b) A request through the whole middleware stack, with stepup and without it.

Both sides are Django test clients on the demo project's middleware (sessions,
CSRF, authentication, django-otp, messages, simple-history), with a logged-in
user whose session lives in the database; "without" drops
``StepUpMiddleware`` and calls an undecorated twin of the protected view.
Requests alternate between the two sides in batches. Needs Django set up with
:mod:`bench.settings`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from django.db import connection
from django.test import Client, override_settings
from django.test.utils import CaptureQueriesContext

from bench.timing import interleaved_us

MIDDLEWARE = "stepup.middleware.StepUpMiddleware"


@dataclass
class Case:
    name: str
    with_us: float
    without_us: float
    with_queries: int
    without_queries: int
    extra: dict[str, float] = field(default_factory=dict)

    @property
    def overhead(self) -> float:
        return self.with_us / self.without_us - 1


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

    rounds = 7 if quick else 21
    with_client = _client(user, stepup=True)
    without_client = _client(user, stepup=False)
    cases = []
    with stepup_verified(with_client, user):
        assert with_client.get("/bench/protected/").status_code == 200
        for name, with_path, without_path in (
            ("route no policy matches", "/bench/open/", "/bench/open/"),
            ("protected route, valid grant", "/bench/protected/", "/bench/protected-bare/"),
        ):
            timings = interleaved_us(
                {
                    "with": lambda p=with_path: with_client.get(p),  # type: ignore[misc]
                    "without": lambda p=without_path: without_client.get(p),  # type: ignore[misc]
                },
                rounds=rounds,
            )
            case = Case(
                name,
                timings["with"],
                timings["without"],
                _queries(with_client, with_path),
                _queries(without_client, without_path),
            )
            if redis_url:
                case.extra["with, Redis notice"] = _with_redis(
                    redis_url, with_client, without_client, with_path, without_path, rounds
                )
            cases.append(case)
    return cases


def _with_redis(
    redis_url: str,
    with_client: Client,
    without_client: Client,
    with_path: str,
    without_path: str,
    rounds: int,
) -> float:
    """The same request with the policy-change notice read from Redis (one GET per request)."""
    import secrets

    from django.core.cache import caches

    from stepup import store

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
        assert store.shared_cache() is not None
        timings = interleaved_us(
            {"with": lambda: with_client.get(with_path), "without": lambda: without_client.get(without_path)},
            rounds=rounds,
        )
        caches["default"].delete(store.NOTICE_KEY)
    store.invalidate()
    return timings["with"] / timings["without"] - 1


def report(cases: list[Case], database: str) -> list[str]:
    out = [
        "(b) one request through the full middleware stack (Django test client, logged-in user, "
        f"session in the database, {database}), median wall-clock µs",
        f"{'route':>30} {'with stepup':>12} {'without':>9} {'overhead':>9} "
        f"{'SQL with':>9} {'SQL without':>12}",
    ]
    for case in cases:
        out.append(
            f"{case.name:>30} {case.with_us:>12.1f} {case.without_us:>9.1f} {case.overhead:>8.1%} "
            f"{case.with_queries:>9} {case.without_queries:>12}"
        )
        for label, overhead in case.extra.items():
            out.append(f"{'':>30} {label}: overhead {overhead:.1%}")
    out.append(
        "    local-memory cache (one process): the version is read from the database once per "
        "RELOAD_INTERVAL, not per request"
    )
    return out
