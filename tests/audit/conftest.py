"""Fixtures for the audit tests: an admin with a second factor, the demo's auditor, policies, log rows."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from django.test import Client
from django_otp.plugins.otp_static.models import StaticDevice, StaticToken

from stepup import store
from stepup.models import Policy
from stepup.pytest_plugin import stepup_verified  # noqa: F401  (the plugin's fixture)
from tests.audit import urls as audit_urls
from tests.settings import FIXTURES

POLICY_FILE = FIXTURES / "policies.yaml"
BACKUP_CODES = ("alpha111", "bravo222", "charlie3", "delta444")
PASSWORD = "Correct-Horse-9-Battery"


@pytest.fixture(autouse=True)
def _audit_settings(settings: Any) -> Iterator[None]:
    settings.ROOT_URLCONF = "tests.audit.urls"
    settings.STEPUP = {"POLICY_FILES": [POLICY_FILE], "DEFAULT_MAX_AGE": 300, "RELOAD_INTERVAL": 3600}
    store.invalidate()
    audit_urls.CALLS.clear()
    yield
    store.invalidate()
    audit_urls.CALLS.clear()


def backup_device(user: Any) -> StaticDevice:
    device = StaticDevice.objects.create(user=user, name="Backup codes", confirmed=True)
    for token in BACKUP_CODES:
        StaticToken.objects.create(device=device, token=token)
    return device


@pytest.fixture
def admin_user(django_user_model: Any) -> Any:
    user = django_user_model.objects.create_superuser("root", "root@example.com", PASSWORD)
    backup_device(user)
    return user


@pytest.fixture
def admin_client(client: Client, admin_user: Any) -> Client:
    client.force_login(admin_user)
    return client


@pytest.fixture
def user(django_user_model: Any) -> Any:
    user = django_user_model.objects.create_user("alice", "alice@example.com", PASSWORD)
    backup_device(user)
    return user


@pytest.fixture
def logged_in(client: Client, user: Any) -> Client:
    client.force_login(user)
    return client


@pytest.fixture
def policy() -> Callable[..., Policy]:
    """``policy("id", actions=[...], ...)``: a stored policy, as sync would leave it."""

    def make(policy_id: str, **fields: Any) -> Policy:
        fields.setdefault("decision", "step_up")
        if fields["decision"] == "step_up":
            fields.setdefault("max_age", 300)
        row = Policy(policy_id=policy_id, source_file="fixtures/stepup/policies.yaml", **fields)
        row._change_reason = "test setup"  # type: ignore[attr-defined]
        row.save()
        return row

    return make


def verify_url_of(response: Any) -> str:
    """The ``stepup:verify`` URL a step-up response redirects to (fails otherwise)."""
    assert response.status_code == 302, (response.status_code, response.content[:300])
    location = response["Location"]
    assert urlsplit(location).path == "/stepup/verify/", location
    assert parse_qs(urlsplit(location).query)["challenge"]
    return location
