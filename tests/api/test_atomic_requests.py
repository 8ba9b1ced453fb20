"""``ATOMIC_REQUESTS``: DRF's exception handler rolls the request back; the challenge must survive."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from django.db import connection
from django_otp.plugins.otp_totp.models import TOTPDevice
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from stepup.models import PendingChallenge, Policy
from tests.api import urls
from tests.api.conftest import API_VERIFY, code
from tests.clients import CredentialClient

pytestmark = pytest.mark.django_db(transaction=True)

GUARDED = "/t/guarded/"


@pytest.fixture
def atomic_requests() -> Iterator[None]:
    before = connection.settings_dict["ATOMIC_REQUESTS"]
    connection.settings_dict["ATOMIC_REQUESTS"] = True
    yield
    connection.settings_dict["ATOMIC_REQUESTS"] = before


@pytest.fixture
def client_with_token(django_user_model: Any) -> tuple[APIClient, TOTPDevice]:
    user = django_user_model.objects.create_user("erin", password="pw")
    device = TOTPDevice.objects.create(user=user, name="Phone", confirmed=True)
    client = CredentialClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=user).key}")
    Policy.objects.create(
        policy_id="big", actions=["things.change"], decision="step_up", max_age=0, methods=["POST"]
    )
    return client, device


@pytest.mark.usefixtures("atomic_requests")
def test_the_challenge_survives_drfs_rollback(client_with_token: Any) -> None:
    client, device = client_with_token
    refused = client.post(GUARDED, {"amount": 5000}, format="json")
    assert refused.status_code == 401
    challenge = refused.json()["challenge"]
    assert PendingChallenge.objects.filter(challenge_id=challenge).exists()
    answer = {"token": code(device), "challenge": challenge}
    assert client.post(API_VERIFY, answer, format="json").status_code == 200
    assert client.post(GUARDED, {"amount": 5000}, format="json").status_code == 201
    assert client.post(GUARDED, {"amount": 5000}, format="json").status_code == 401
    assert urls.CALLS == ["guarded-post 5000"]


@pytest.mark.usefixtures("atomic_requests")
def test_without_the_middleware_the_rollback_would_lose_it(client_with_token: Any, settings: Any) -> None:
    """Shows the rollback is real here (and why the middleware saves challenges again)."""
    settings.MIDDLEWARE = [m for m in settings.MIDDLEWARE if m != "stepup.middleware.StepUpMiddleware"]
    client, _ = client_with_token
    refused = client.post(GUARDED, {"amount": 5000}, format="json")
    assert refused.status_code == 401
    assert not PendingChallenge.objects.filter(challenge_id=refused.json()["challenge"]).exists()
