"""One definition of "a device the user can step up with", for the refusal and the verify form."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

import pytest
from django.test import Client
from django_otp.plugins.otp_email.models import EmailDevice
from django_otp.plugins.otp_static.models import StaticDevice
from rest_framework.test import APIClient

from stepup.devices import usable_devices

pytestmark = pytest.mark.django_db


@pytest.fixture
def email_device(user: Any) -> EmailDevice:
    return EmailDevice.objects.create(user=user, name="Mail", confirmed=True, email="erin@example.com")


@pytest.fixture
def billing(policy: Any) -> Any:
    return policy("billing", actions=["billing.update"], methods=["POST", "PATCH"])


def test_an_email_device_is_usable_and_password_is_not_implied(user: Any, email_device: Any) -> None:
    assert [c.id for c in usable_devices(user)] == [email_device.persistent_id]
    assert [c.kind for c in usable_devices(user, ["password"])] == ["password"]


def test_no_device_means_enrol_not_verify_even_with_a_password(
    client: Client, user: Any, billing: Any, settings: Any
) -> None:
    assert user.has_usable_password()  # a password doesn't count where the policy doesn't name it
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
    offered = [choice.id for step in form.context["steps"] for choice in step.choices]
    assert sorted(offered) == sorted(c.id for c in usable_devices(user))
    assert sorted(offered) == sorted([backup.persistent_id, email_device.persistent_id])
    html = form.content.decode()
    assert "Email me a code" in html and "e\u2022\u2022\u2022@example.com" in html
    assert "erin@example.com" not in html  # masked
