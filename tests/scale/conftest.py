"""Fixtures for the scale tests: real PostgreSQL, real Redis, real server processes.

They need ``STEPUP_TEST_DATABASE_URL`` (a PostgreSQL database the tests may
create other databases from) and ``STEPUP_TEST_REDIS_URL``; ``.ci/run`` sets
both. Without them every test here is skipped, with the reason, except in
CI (``CI=true``), where a skipped scale suite would pass off an unrun check
as green, so it fails instead.

One fresh database (``stepup_scale_<pid>_<random>``) is created, migrated and
synced with the demo's policy files for the whole run, and dropped at the
end; Redis keys live under a prefix of their own, deleted at the end.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from tests.scale.harness import FreshDatabase, Server, Worker, is_stale, process_env, run_manage, running
from tests.services import skip_or_fail

DATABASE_ENV = "STEPUP_TEST_DATABASE_URL"
REDIS_ENV = "STEPUP_TEST_REDIS_URL"


def _missing() -> str | None:
    missing = [name for name in (DATABASE_ENV, REDIS_ENV) if not os.environ.get(name)]
    if missing:
        return f"{' and '.join(missing)} not set: the scale tests need real PostgreSQL and Redis"
    try:
        import gunicorn  # noqa: F401
        import psycopg  # noqa: F401
        import redis  # noqa: F401
    except ImportError as exc:
        return f"{exc.name} is not installed (pip install -e '.[dev]')"
    return None


NOTICE_KINDS = ("redis", "database")
"""What carries change notices between the processes of a scenario: Redis, or PostgreSQL's LISTEN/NOTIFY
(``STEPUP["NOTICES"] = "database"``, with a local-memory cache and no Redis at all)."""

across_notices = pytest.mark.parametrize("pair", NOTICE_KINDS, indirect=True)
"""Run a test that uses ``pair`` once with each kind of notices."""


@dataclass
class ScaleEnv:
    database: FreshDatabase
    redis_url: str
    prefix: str
    logs: Path
    notices: str = "redis"
    """The notices of the processes started now (the ``pair`` fixture sets it for its test)."""
    _workers: dict[str, Worker] = field(default_factory=dict)

    def env(self, **extra: str) -> dict[str, str]:
        """The environment of a process of the demo project against the test's services."""
        by_redis = self.notices == "redis"
        base = {
            "DATABASE_URL": self.database.url,
            "REDIS_URL": self.redis_url if by_redis else "",
            "CACHE_KEY_PREFIX": self.prefix,
            "SCALE_STEPUP_NOTICES": "cache" if by_redis else "database",
        }
        return process_env(base, **extra)

    def worker(self, command: str, args: dict[str, Any] | None = None) -> Any:
        """Run a :mod:`tests.scale.worker` command in the run's worker process (another process)."""
        worker = self._workers.get(self.notices)
        if worker is None:
            worker = self._workers[self.notices] = Worker(
                self.env(), self.logs / f"worker-{self.notices}.log"
            )
        return worker.call(command, args)

    def server(self, name: str, **extra: str) -> Server:
        return Server(name, self.env(**extra), self.logs / f"{name}.log")

    def redis(self) -> Any:
        import redis

        return redis.Redis.from_url(self.redis_url)


@pytest.fixture(scope="session")
def scale(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ScaleEnv]:
    reason = _missing()
    if reason is not None:
        skip_or_fail(reason, what="the scale tests")
    FreshDatabase.drop_stale(os.environ[DATABASE_ENV])
    database = FreshDatabase(os.environ[DATABASE_ENV])
    database.create()
    env = ScaleEnv(
        database=database,
        redis_url=os.environ[REDIS_ENV],
        prefix=f"stepup-scale-{os.getpid()}-{secrets.token_hex(4)}",
        logs=tmp_path_factory.mktemp("scale-logs"),
    )
    _delete_stale_keys(env.redis())
    try:
        run_manage(env.env(), "migrate", "--noinput")
        run_manage(env.env(), "stepup", "sync", "--reason", "tests/scale")
        yield env
    finally:
        for worker in env._workers.values():
            worker.close()
        database.drop()
        client = env.redis()
        keys = list(client.scan_iter(match=f"{env.prefix}:*"))
        if keys:
            client.delete(*keys)


@pytest.fixture(scope="session")
def pairs(scale: ScaleEnv) -> Iterator[Callable[[], tuple[Server, Server]]]:
    """``pairs()``: the pair of servers for ``scale.notices``, started the first time it is asked for."""
    started: dict[str, tuple[Server, Server]] = {}
    with contextlib.ExitStack() as stack:

        def pair_for_notices() -> tuple[Server, Server]:
            kind = scale.notices
            if kind not in started:
                hour = "3600"
                a = scale.server(f"a-{kind}", SCALE_RELOAD_INTERVAL=hour, SCALE_RESYNC_INTERVAL=hour)
                b = scale.server(f"b-{kind}", SCALE_RELOAD_INTERVAL=hour, SCALE_RESYNC_INTERVAL=hour)
                stack.enter_context(running(a, b))
                started[kind] = (a, b)
            return started[kind]

        yield pair_for_notices


@pytest.fixture
def pair(request: pytest.FixtureRequest, scale: ScaleEnv, pairs) -> Iterator[tuple[Server, Server]]:
    """Two servers sharing the database and the notices, each a gunicorn process with 8 threads.

    Their database poll and resync are an hour apart, so that only a notice
    can explain a change they pick up. The notices go through Redis, or with
    :data:`across_notices` through each kind in turn; while the test runs,
    ``scale.worker`` and ``scale.server`` use the same kind.
    """
    scale.notices = getattr(request, "param", "redis")
    try:
        yield pairs()
    finally:
        scale.notices = "redis"


def _delete_stale_keys(client: Any) -> None:
    """Delete the Redis keys of earlier runs whose process is gone."""
    stale = [
        key
        for key in client.scan_iter(match="stepup-scale-*")
        if is_stale(key.decode(), "stepup-scale-", "-")
    ]
    if stale:
        client.delete(*stale)


def redis_address(url: str) -> tuple[str, int]:
    parts = urlsplit(url)
    return parts.hostname or "127.0.0.1", parts.port or 6379


def postgres_address(url: str) -> tuple[str, int]:
    parts = urlsplit(url)
    return parts.hostname or "127.0.0.1", parts.port or 5432
