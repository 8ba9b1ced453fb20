"""allauth.mfa as the source of factors: users with allauth authenticators and the demo's policies."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from allauth.mfa import app_settings
from allauth.mfa.models import Authenticator
from allauth.mfa.recovery_codes.internal.auth import RecoveryCodes
from allauth.mfa.totp.internal.auth import TOTP, format_hotp_value, generate_totp_secret, hotp_value
from django.contrib.auth.models import Group
from django.core.cache import cache
from django.test import Client

from stepup import allauth_mfa
from tests.paths import API_VERIFY, VERIFY


@pytest.fixture(autouse=True)
def _policies_and_cache(synced_policies: None) -> Iterator[None]:
    """The policy file synced (the same policies as with django-otp), and an empty cache:
    allauth's used-code marks and rate limits live there."""
    cache.clear()
    yield
    cache.clear()


@pytest.fixture
def make_user(django_user_model: Any) -> Callable[..., Any]:
    def make(username: str = "erin", *groups: str) -> Any:
        user = django_user_model.objects.create_user(username, password="pw", email=f"{username}@example.com")
        user.groups.set(Group.objects.get_or_create(name=name)[0] for name in groups)
        return user

    return make


@pytest.fixture
def user(make_user: Callable[..., Any]) -> Any:
    return make_user("erin", "finance")


def add_totp(user: Any) -> Authenticator:
    return TOTP.activate(user, generate_totp_secret()).instance


def add_recovery_codes(user: Any) -> Authenticator:
    return RecoveryCodes.activate(user).instance


@pytest.fixture
def totp(user: Any) -> Authenticator:
    """The user's allauth TOTP authenticator."""
    return add_totp(user)


@pytest.fixture
def recovery(user: Any) -> Authenticator:
    """The user's allauth recovery codes."""
    return add_recovery_codes(user)


def totp_code(authenticator: Authenticator, offset: int = 0) -> str:
    """The code an authenticator app shows now, from allauth's own HOTP function."""
    from allauth.mfa.utils import decrypt

    counter = int(time.time()) // app_settings.TOTP_PERIOD + offset
    return format_hotp_value(hotp_value(decrypt(authenticator.data["secret"]), counter))


def wrong_totp_code(authenticator: Authenticator) -> str:
    valid = {totp_code(authenticator, offset) for offset in range(-2, 3)}
    return next(c for c in (f"{n:06d}" for n in range(123456, 999999, 7919)) if c not in valid)


def unused_codes(authenticator: Authenticator) -> list[str]:
    authenticator.refresh_from_db()
    return RecoveryCodes(authenticator).get_unused_codes()


def pid(authenticator: Authenticator) -> str:
    return allauth_mfa.persistent_id(authenticator.pk)


def api_verify(client: Client, data: dict[str, Any]) -> Any:
    return client.post(API_VERIFY, json.dumps(data), content_type="application/json")


def challenge_of(response: Any) -> str:
    """The challenge id in a redirect to the verify page."""
    from urllib.parse import parse_qs, urlsplit

    assert response.status_code == 302, response
    location = urlsplit(response["Location"])
    assert location.path == VERIFY, response["Location"]
    return parse_qs(location.query)["challenge"][0]
