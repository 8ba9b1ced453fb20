"""Fixtures for the device pages: a fresh project's URLconf, users, their devices, a code computer."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from django_otp.plugins.otp_totp.models import TOTPDevice

from tests.otp import code

DEVICES = "/stepup/devices/"
APP = "/stepup/devices/authenticator/"
CODES = "/stepup/devices/backup-codes/"
EMAIL = "/stepup/devices/email/"


@pytest.fixture(autouse=True)
def _fresh_project(settings: Any) -> None:
    settings.ROOT_URLCONF = "tests.enrolment.urls"
    settings.LOGIN_URL = "login"
    settings.STEPUP = {k: v for k, v in settings.STEPUP.items() if k != "ENROLL_URL"}
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"


@pytest.fixture
def code_of() -> Callable[[TOTPDevice], str]:
    return code
