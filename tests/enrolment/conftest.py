"""Fixtures for the device pages: a fresh project's URLconf, users, their devices, a code computer."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from django.test import Client
from django_otp.oath import TOTP
from django_otp.plugins.otp_static.models import StaticDevice, StaticToken
from django_otp.plugins.otp_totp.models import TOTPDevice

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
    # stepup's own templates, not the demo's layout (tests/demo covers the demo's).
    settings.TEMPLATES = [{**settings.TEMPLATES[0], "DIRS": []}]


@pytest.fixture
def user(django_user_model: Any) -> Any:
    return django_user_model.objects.create_user("erin", "erin@example.com", "pw-erin-1")


@pytest.fixture
def other_user(django_user_model: Any) -> Any:
    return django_user_model.objects.create_user("mallory", "mallory@example.com", "pw-mallory-1")


@pytest.fixture
def backup(user: Any) -> StaticDevice:
    device = StaticDevice.objects.create(user=user, name="Backup codes", confirmed=True)
    for token in ("alpha111", "bravo222"):
        StaticToken.objects.create(device=device, token=token)
    return device


@pytest.fixture
def logged_in(client: Client, user: Any) -> Client:
    client.force_login(user)
    return client


def code(device: TOTPDevice, offset: int = 0) -> str:
    totp = TOTP(device.bin_key, device.step, device.t0, device.digits, device.drift + offset)
    return f"{totp.token():0{device.digits}d}"


@pytest.fixture
def code_of() -> Callable[[TOTPDevice], str]:
    return code
