"""One definition of "a device the user can step up with", for the refusal and the verify form."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

import pytest
from django.test import Client
from django_otp.plugins.otp_email.models import EmailDevice
from django_otp.plugins.otp_static.models import StaticDevice
from rest_framework.test import APIClient

from stepup.devices import CODE_KINDS, acceptable_devices, usable_devices

pytestmark = pytest.mark.django_db


@pytest.fixture
def email_device(user: Any) -> EmailDevice:
    return EmailDevice.objects.create(user=user, name="Mail", confirmed=True, email="erin@example.com")


@pytest.fixture
def billing(policy: Any) -> Any:
    return policy("billing", actions=["billing.update"], methods=["POST", "PATCH"])


def test_an_email_device_is_acceptable_but_not_usable(user: Any, email_device: Any) -> None:
    assert acceptable_devices(user) == [email_device]
    assert usable_devices(user) == []
    assert "email" not in CODE_KINDS and "webauthn" not in CODE_KINDS


def test_only_an_email_device_means_enrol_not_verify(
    client: Client, user: Any, email_device: Any, billing: Any, settings: Any
) -> None:
    client.force_login(user)
    settings.STEPUP = {**settings.STEPUP, "ENROLL_URL": None}
    page = client.post("/billing/edit/", {})
    assert page.status_code == 403  # the enrol page, not a verify form with nothing to choose
    assert b"Set up a second factor" in page.content
    settings.STEPUP = {**settings.STEPUP, "ENROLL_URL": "stepup:devices"}
    assert client.post("/billing/edit/", {})["Location"] == "/stepup/devices/?next=%2Fbilling%2Fedit%2F"
    api = APIClient()
    api.force_login(user)
    assert api.patch("/api/billing/", {}, format="json").json()["code"] == "stepup_enroll_required"


def test_the_verify_form_offers_exactly_the_usable_devices(
    client: Client, user: Any, email_device: Any, billing: Any
) -> None:
    backup = StaticDevice.objects.create(user=user, name="Backup codes", confirmed=True)
    client.force_login(user)
    response = client.post("/billing/edit/", {})
    assert urlsplit(response["Location"]).path == "/stepup/verify/"
    form = client.get(response["Location"])
    offered = [choice.persistent_id for choice in form.context["devices"]]
    assert offered == [d.persistent_id for d in usable_devices(user)] == [backup.persistent_id]
    assert email_device.persistent_id.encode() not in form.content
