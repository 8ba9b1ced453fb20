"""Fixtures shared by every test folder: users, their factors, the synced policy file, policy rows.

A folder's own conftest.py holds only what is particular to it (its URLconf, its settings).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from django.apps import apps
from django.test import Client
from django_otp.plugins.otp_static.models import StaticDevice
from django_otp.plugins.otp_totp.models import TOTPDevice
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from stepup import store
from stepup.models import Policy
from tests.calls import CALLS
from tests.clients import CredentialClient
from tests.otp import backup_codes_of

PASSWORD = "Correct-Horse-9-Battery"
"""The password of :func:`user`."""

OTHER_PASSWORD = "Battery-9-Staple-Horse"
"""The password of :func:`other_user`."""

# The demo's tests need the demo installed: on the test project they are left to the child
# pytest of tests/test_demo.py (on tests.demo.settings), which collects only tests/demo/.
collect_ignore = [] if apps.is_installed("project.demo") else ["demo"]


@pytest.fixture(autouse=True)
def _fresh_state() -> Iterator[None]:
    """Every test starts and ends with no compiled policy set cached and an empty call log."""
    store.invalidate()
    CALLS.clear()
    yield
    store.invalidate()
    CALLS.clear()


@pytest.fixture
def user(django_user_model: Any) -> Any:
    """erin, who signs in with :data:`PASSWORD`; her factors come from the fixtures below."""
    return django_user_model.objects.create_user("erin", "erin@example.com", PASSWORD)


@pytest.fixture
def other_user(django_user_model: Any) -> Any:
    """mallory, another account: the attacker's own, or a second user of the site."""
    return django_user_model.objects.create_user("mallory", "mallory@example.com", OTHER_PASSWORD)


@pytest.fixture
def totp(user: Any) -> TOTPDevice:
    """A confirmed authenticator app of ``user``."""
    return TOTPDevice.objects.create(user=user, name="Phone", confirmed=True)


@pytest.fixture
def backup(user: Any) -> StaticDevice:
    """``user``'s backup codes, :data:`tests.otp.BACKUP_CODES`."""
    return backup_codes_of(user)


@pytest.fixture
def logged_in(client: Client, user: Any) -> Client:
    """The test client, signed in as ``user`` (with the password only: never verified)."""
    client.force_login(user)
    return client


@pytest.fixture
def token(user: Any) -> Token:
    """``user``'s DRF token."""
    return Token.objects.create(user=user)


@pytest.fixture
def session_api(user: Any) -> APIClient:
    """A DRF test client signed in with the session (CSRF not enforced, as Django's test client)."""
    client = APIClient()
    client.force_login(user)
    return client


@pytest.fixture
def token_api(token: Token) -> APIClient:
    """A DRF test client that sends ``Authorization: Token …`` and keeps no session."""
    client = CredentialClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {token.key}")
    return client


@pytest.fixture
def synced_policies(db: Any) -> Iterator[None]:
    """The configured policy file (``fixtures/stepup/policies.yaml``), synced as ``stepup sync`` would."""
    from stepup.conf import conf
    from stepup.sync import load, sync

    sync(load(conf.POLICY_FILES), reason="tests")
    store.invalidate()
    yield
    store.invalidate()


@pytest.fixture
def auditor(user: Any) -> Any:
    """``user``, allowed to query the decision service (``stepup.query_decision``)."""
    from django.contrib.auth.models import Permission

    user.user_permissions.add(
        Permission.objects.get(codename="query_decision", content_type__app_label="stepup")
    )
    return user


@pytest.fixture
def policy(db: Any) -> Callable[..., Policy]:
    """``policy("id", actions=[...], max_age=300, ...)``: store a policy row (the version bumps)."""

    def make(policy_id: str, **fields: Any) -> Policy:
        fields.setdefault("decision", "step_up")
        if fields["decision"] == "step_up":
            fields.setdefault("max_age", 300)
        row = Policy(policy_id=policy_id, **fields)
        row._change_reason = "test setup"  # type: ignore[attr-defined]
        row.save()
        return row

    return make
