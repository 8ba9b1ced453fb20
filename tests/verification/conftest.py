"""Fixtures for the verification flow: users, TOTP and backup-code devices, challenges."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from django.test import Client
from django.urls import reverse
from django_otp.plugins.otp_totp.models import TOTPDevice

from tests.challenges import ATTRS, challenge_dict, save_challenge, session_request  # noqa: F401  (re-exported)
from tests.otp import code, wrong_code  # noqa: F401  (the folder's tests import them from here)
from tests.paths import API_DECIDE, API_STATUS, API_VERIFY, VERIFY  # noqa: F401  (re-exported)

FULLWIDTH_DIGITS = "\uff11\uff12\uff13\uff14\uff15\uff16"
"""123456 in full-width digits: looks like a code, must never reach a device."""


@pytest.fixture(autouse=True)
def _urls(settings: Any) -> None:
    settings.ROOT_URLCONF = "tests.verification.urls"
    settings.LOGIN_URL = "login"
    settings.LOGIN_REDIRECT_URL = "/"


def make_totp(user: Any, name: str = "Phone", confirmed: bool = True) -> TOTPDevice:
    return TOTPDevice.objects.create(user=user, name=name, confirmed=confirmed)


@pytest.fixture
def csrf_client(user: Any) -> Client:
    c = Client(enforce_csrf_checks=True)
    c.force_login(user)
    return c


@pytest.fixture
def no_device_throttle(settings: Any) -> None:
    """Turn off django-otp's per-device back-off, to test the per-user limit alone."""
    settings.OTP_TOTP_THROTTLE_FACTOR = 0
    settings.OTP_STATIC_THROTTLE_FACTOR = 0


@pytest.fixture
def stepup_settings(settings: Any) -> Callable[..., None]:
    def apply(**values: Any) -> None:
        settings.STEPUP = {**settings.STEPUP, **values}

    return apply


def verify_url(challenge_id: str | None = None, next_url: str | None = None) -> str:
    from urllib.parse import urlencode

    query = {k: v for k, v in (("challenge", challenge_id), ("next", next_url)) if v}
    return reverse("stepup:verify") + ("?" + urlencode(query) if query else "")
