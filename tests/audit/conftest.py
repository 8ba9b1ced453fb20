"""Fixtures for the audit tests: an admin with a second factor, the demo's auditor, policies, log rows."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from django.test import Client

from stepup.pytest_plugin import stepup_verified  # noqa: F401  (the plugin's fixture)
from tests.conftest import PASSWORD
from tests.otp import BACKUP_CODES, backup_codes_of  # noqa: F401  (BACKUP_CODES: the folder's tests import it from here)
from tests.settings import FIXTURES

POLICY_FILE = FIXTURES / "policies.yaml"


@pytest.fixture(autouse=True)
def _audit_settings(settings: Any) -> None:
    settings.ROOT_URLCONF = "tests.audit.urls"
    settings.STEPUP = {"POLICY_FILES": [POLICY_FILE], "DEFAULT_MAX_AGE": 300, "RELOAD_INTERVAL": 3600}


@pytest.fixture
def admin_user(django_user_model: Any) -> Any:
    user = django_user_model.objects.create_superuser("root", "root@example.com", PASSWORD)
    backup_codes_of(user)
    return user


@pytest.fixture
def user(user: Any) -> Any:
    """The shared ``user``, with backup codes (:data:`BACKUP_CODES`)."""
    backup_codes_of(user)
    return user


@pytest.fixture
def admin_client(client: Client, admin_user: Any) -> Client:
    client.force_login(admin_user)
    return client


def verify_url_of(response: Any) -> str:
    """The ``stepup:verify`` URL a step-up response redirects to (fails otherwise)."""
    assert response.status_code == 302, (response.status_code, response.content[:300])
    location = response["Location"]
    assert urlsplit(location).path == "/stepup/verify/", location
    assert parse_qs(urlsplit(location).query)["challenge"]
    return location
