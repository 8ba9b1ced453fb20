"""A single-use grant under real concurrency: PostgreSQL, two gunicorn processes, twenty racers.

A token client is challenged for a large transfer, verifies with the
challenge, then sends the same transfer twenty times at once. Exactly one
may go through: the grant is used with a conditional ``UPDATE``, which
PostgreSQL serialises on the row (a session-stored grant would let several
through, each request reading it before any wrote it back).

Needs ``STEPUP_TEST_DATABASE_URL`` (``.ci/run`` sets it); skipped with the
reason without it, and failed in CI (``CI=true``), where a skip would pass
off an unrun check as green.
"""

from __future__ import annotations

import http.client
import json
import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.services import skip_or_fail

pytestmark = pytest.mark.postgres

DATABASE_ENV = "STEPUP_TEST_DATABASE_URL"
TOKEN = "ab" * 20
TOTP_KEY = "3132333435363738393031323334353637383930"
TRANSFER = {"amount": "5000", "account": "DE89370400440532013000"}
RACERS = 20

SETUP = f"""
from django.contrib.auth import get_user_model
from django_otp.plugins.otp_totp.models import TOTPDevice
from rest_framework.authtoken.models import Token
user = get_user_model().objects.create_user("racer", password="pw")
TOTPDevice.objects.create(user=user, name="Phone", key="{TOTP_KEY}", confirmed=True)
Token.objects.create(user=user, key="{TOKEN}")
"""


def _skip_or_fail(reason: str) -> None:
    skip_or_fail(reason, what="the PostgreSQL race test")


@pytest.fixture
def servers(tmp_path: Path) -> Iterator[Any]:
    if not os.environ.get(DATABASE_ENV):
        _skip_or_fail(f"{DATABASE_ENV} not set: this test needs a real PostgreSQL")
    try:
        import gunicorn  # noqa: F401
        import psycopg  # noqa: F401
    except ImportError as exc:
        _skip_or_fail(f"{exc.name} is not installed (pip install -e '.[dev]')")
    from tests.scale.harness import FreshDatabase, Server, process_env, run_manage, running

    database = FreshDatabase(os.environ[DATABASE_ENV])
    database.create()
    try:
        env = process_env({"DATABASE_URL": database.url}, SCALE_STEPUP_CACHE="")
        run_manage(env, "migrate", "--noinput", "-v", "0")
        run_manage(env, "stepup", "sync", "--reason", "tests/api race")
        run_manage(env, "shell", "-c", SETUP)
        server = Server("race", env, tmp_path / "race.log", workers=2, threads=10)
        with running(server):
            yield server, database
    finally:
        database.drop()


def send(server: Any, path: str, body: Any, step_up_token: str | None = None) -> tuple[int, Any]:
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    headers = {"Authorization": f"Token {TOKEN}", "Content-Type": "application/json", "Host": "127.0.0.1"}
    if step_up_token is not None:
        headers["StepUp-Token"] = step_up_token
    try:
        conn.request("POST", path, body=json.dumps(body).encode(), headers=headers)
        response = conn.getresponse()
        return response.status, json.loads(response.read() or b"null")
    finally:
        conn.close()


def current_code() -> str:
    from django_otp.oath import TOTP

    return f"{TOTP(bytes.fromhex(TOTP_KEY)).token():06d}"


def test_twenty_parallel_uses_of_one_grant_let_one_through(servers: Any) -> None:
    server, database = servers
    status, refused = send(server, "/api/transfers/", TRANSFER)
    assert (status, refused["code"], refused["max_age"]) == (401, "stepup_required", 0)
    status, verified = send(
        server, "/stepup/api/verify/", {"token": current_code(), "challenge": refused["challenge"]}
    )
    step_up_token = verified.pop("stepup_token")
    assert (status, verified) == (200, {"verified": True, "factor": "totp"})

    start = threading.Barrier(RACERS)
    results: list[int] = []
    lock = threading.Lock()

    def race() -> None:
        start.wait()
        code, _ = send(server, "/api/transfers/", TRANSFER, step_up_token)
        with lock:
            results.append(code)

    threads = [threading.Thread(target=race) for _ in range(RACERS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert sorted(results) == [201] + [401] * (RACERS - 1), server.log()[-3000:]
    assert database.scalar("SELECT count(*) FROM shop_transfer WHERE amount = 5000") == 1
    assert (
        database.scalar("SELECT count(*) FROM stepup_grant WHERE digest <> '' AND used_at IS NOT NULL") == 1
    )
