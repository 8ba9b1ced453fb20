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

import os
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
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


@dataclass
class ScaleEnv:
    database: FreshDatabase
    redis_url: str
    prefix: str
    logs: Path
    _worker: Worker | None = None

    def env(self, **extra: str) -> dict[str, str]:
        """The environment of a process of the demo project against the test's services."""
        base = {
            "DATABASE_URL": self.database.url,
            "REDIS_URL": self.redis_url,
            "CACHE_KEY_PREFIX": self.prefix,
        }
        return process_env(base, **extra)

    def worker(self, command: str, args: dict[str, Any] | None = None) -> Any:
        """Run a :mod:`tests.scale.worker` command in the run's worker process (another process)."""
        if self._worker is None:
            self._worker = Worker(self.env(), self.logs / "worker.log")
        return self._worker.call(command, args)

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
        if env._worker is not None:
            env._worker.close()
        database.drop()
        client = env.redis()
        keys = list(client.scan_iter(match=f"{env.prefix}:*"))
        if keys:
            client.delete(*keys)


@pytest.fixture(scope="session")
def pair(scale: ScaleEnv) -> Iterator[tuple[Server, Server]]:
    """Two servers sharing the database and Redis, each a gunicorn process with 8 threads.

    Their database poll and resync are an hour apart, so that only the
    notice through Redis can explain a change they pick up.
    """
    hour = "3600"
    a = scale.server("a", SCALE_RELOAD_INTERVAL=hour, SCALE_RESYNC_INTERVAL=hour)
    b = scale.server("b", SCALE_RELOAD_INTERVAL=hour, SCALE_RESYNC_INTERVAL=hour)
    with running(a, b):
        yield a, b


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
