"""Fixtures for the red-team suite: the demo's policies, users with and without a second factor.

Every attack here is made by one of three adversaries:

- **the password holder**: knows a user's password (is logged in) but has no second factor;
- **the anonymous attacker**: no account at all;
- **the session thief**: holds a copy of a logged-in (maybe verified) session cookie.

Each test fails if its attack succeeds, and checks the side effect the attack was after
(rows, calls of the protected view), not only a status code.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
from django.db import connection
from django.test import Client
from django_otp.plugins.otp_static.models import StaticDevice, StaticToken
from django_otp.plugins.otp_totp.models import TOTPDevice

from stepup import store
from stepup.sync import load, sync
from tests.security import views
from tests.settings import FIXTURES
from tests.verification.conftest import code, wrong_code  # noqa: F401  (re-exported)

DEMO_POLICIES = FIXTURES / "policies.yaml"
VERIFY = "/stepup/verify/"
API_VERIFY = "/stepup/api/verify/"
BACKUP_CODES = ("alpha111", "bravo222", "charlie3")


@pytest.fixture(autouse=True)
def _fresh(settings: Any) -> Iterator[None]:
    """The demo's STEPUP settings, a clean policy cache and an empty call log for every test."""
    settings.STEPUP = {
        "POLICY_FILES": [DEMO_POLICIES],
        "DEFAULT_MAX_AGE": 300,
        "TRUSTED_PROXIES": [],
        "RELOAD_INTERVAL": 3600,
    }
    store.invalidate()
    views.CALLS.clear()
    yield
    store.invalidate()
    views.CALLS.clear()


@pytest.fixture
def demo_policies(db: Any) -> None:
    """The demo's policy file, synced into the test database as ``manage.py stepup sync`` would."""
    sync(load([DEMO_POLICIES]), reason="tests/security")
    store.invalidate()


@pytest.fixture
def user(django_user_model: Any) -> Any:
    return django_user_model.objects.create_user("erin", password="pw-erin-1")


@pytest.fixture
def other_user(django_user_model: Any) -> Any:
    return django_user_model.objects.create_user("mallory", password="pw-mallory-1")


@pytest.fixture
def backup(user: Any) -> StaticDevice:
    device = StaticDevice.objects.create(user=user, name="Backup codes", confirmed=True)
    for token in BACKUP_CODES:
        StaticToken.objects.create(device=device, token=token)
    return device


@pytest.fixture
def attacker(client: Client, user: Any, totp: TOTPDevice) -> Client:
    """The password holder: logged in as ``user`` (who has a TOTP device), never verified."""
    client.force_login(user)
    return client


def fresh_client(user: Any | None = None, **kwargs: Any) -> Client:
    """Another browser (a new session), logged in as ``user`` when given."""
    browser = Client(**kwargs)
    if user is not None:
        browser.force_login(user)
    return browser


LOCK_WAITS = {
    "mysql": "SELECT COUNT(*) FROM information_schema.innodb_trx WHERE trx_state = 'LOCK WAIT'",
    "postgresql": "SELECT COUNT(*) FROM pg_locks WHERE NOT granted",
}
"""Per database vendor: how many transactions wait for a lock (SQLite has no row locks)."""


def wait_for_a_lock_wait() -> None:
    """Return once another connection waits for a lock; fail after 10 seconds."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        with connection.cursor() as cursor:
            cursor.execute(LOCK_WAITS[connection.vendor])
            if cursor.fetchone()[0]:
                return
        time.sleep(0.2)  # MySQL refreshes innodb_trx only when it was not read for 0.1 s
    raise AssertionError("no connection ever waited for the lock")
