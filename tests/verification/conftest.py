"""Fixtures for the verification flow: users, TOTP and backup-code devices, challenges."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from types import SimpleNamespace
from typing import Any, cast

import pytest
from django.test import Client
from django.urls import reverse
from django_otp.oath import TOTP
from django_otp.plugins.otp_static.models import StaticDevice, StaticToken
from django_otp.plugins.otp_totp.models import TOTPDevice

from stepup import binding, pending
from tests.verification import urls as test_urls

VERIFY = "/stepup/verify/"
API_VERIFY = "/stepup/api/verify/"
API_STATUS = "/stepup/api/status/"
API_DECIDE = "/stepup/api/decide/"

FULLWIDTH_DIGITS = "\uff11\uff12\uff13\uff14\uff15\uff16"
"""123456 in full-width digits: looks like a code, must never reach a device."""

ATTRS = {"amount": "5000", "account": "DE89370400440532013000"}


@pytest.fixture(autouse=True)
def _urls(settings: Any) -> Iterator[None]:
    settings.ROOT_URLCONF = "tests.verification.urls"
    settings.LOGIN_URL = "login"
    settings.LOGIN_REDIRECT_URL = "/"
    test_urls.CALLS.clear()
    yield
    test_urls.CALLS.clear()


@pytest.fixture
def user(django_user_model: Any) -> Any:
    return django_user_model.objects.create_user("alice", password="pw")


@pytest.fixture
def other_user(django_user_model: Any) -> Any:
    return django_user_model.objects.create_user("mallory", password="pw")


def make_totp(user: Any, name: str = "Phone", confirmed: bool = True) -> TOTPDevice:
    return TOTPDevice.objects.create(user=user, name=name, confirmed=confirmed)


@pytest.fixture
def backup(user: Any) -> StaticDevice:
    device = StaticDevice.objects.create(user=user, name="Backup codes", confirmed=True)
    for code in ("alpha111", "bravo222", "charlie3"):
        StaticToken.objects.create(device=device, token=code)
    return device


def code(device: TOTPDevice, offset: int = 0) -> str:
    """The device's TOTP code now (``offset`` steps away), computed from its key."""
    totp = TOTP(device.bin_key, step=device.step, t0=device.t0, digits=device.digits, drift=device.drift)
    totp.drift = device.drift + offset
    return f"{totp.token():0{device.digits}d}"


def wrong_code(device: TOTPDevice) -> str:
    """A code that no step within the device's tolerance accepts."""
    valid = {code(device, offset) for offset in range(-3, 4)}
    return next(c for c in (f"{n:06d}" for n in range(123456, 999999, 7919)) if c not in valid)


@pytest.fixture
def logged_in(client: Client, user: Any) -> Client:
    client.force_login(user)
    return client


@pytest.fixture
def csrf_client(user: Any) -> Client:
    c = Client(enforce_csrf_checks=True)
    c.force_login(user)
    return c


def challenge_dict(**overrides: Any) -> dict[str, Any]:
    """A challenge as enforcement saves it (see the challenge hand-off)."""
    action = overrides.pop("action", "payments.transfer")
    attrs = overrides.pop("attrs", dict(ATTRS))
    data: dict[str, Any] = {
        "action": action,
        "url_name": None,
        "method": "GET",
        "path": "/pay/",
        "attrs": attrs,
        "digest": binding.attributes_digest(action, None, attrs),
        "policies": ["payments-large"],
        "descriptions": ["Transfers over 1000 need a fresh second factor."],
        "max_age": 0,
        "factors": [],
        "one_shot": True,
        "post": None,
        "next": "/pay/",
    }
    data.update(overrides)
    return data


def save_challenge(client: Client, **overrides: Any) -> str:
    """Store a pending challenge in ``client``'s session; return its id."""
    session = client.session
    request = cast(Any, SimpleNamespace(session=session))
    challenge_id = pending.save_challenge(request, challenge_dict(**overrides))
    session.save()
    return challenge_id


def session_request(client: Client, user: Any) -> Any:
    """A stand-in request on ``client``'s current session (for reading grants)."""
    return SimpleNamespace(session=client.session, user=user)


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
