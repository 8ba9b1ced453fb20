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
from typing import Any

import pytest
from django.db import connection
from django.test import Client
from django_otp.plugins.otp_totp.models import TOTPDevice

from tests.otp import BACKUP_CODES, code, wrong_code  # noqa: F401  (re-exported)
from tests.paths import API_VERIFY, VERIFY  # noqa: F401  (re-exported)
from tests.settings import FIXTURES

DEMO_POLICIES = FIXTURES / "policies.yaml"


@pytest.fixture(autouse=True)
def _fresh(settings: Any) -> None:
    """The policy file the attacks target (the demo's, which the shop serves too), no proxies."""
    settings.STEPUP = {
        "POLICY_FILES": [DEMO_POLICIES],
        "DEFAULT_MAX_AGE": 300,
        "TRUSTED_PROXIES": [],
        "RELOAD_INTERVAL": 3600,
    }


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
