"""Fixtures for the enforcement tests: users, devices, policies, requests, grants."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from django.contrib.auth.models import AnonymousUser
from django.contrib.sessions.middleware import SessionMiddleware
from django.http import HttpRequest
from django.test import Client, RequestFactory
from django.urls import resolve
from django_otp.plugins.otp_totp.models import TOTPDevice

from stepup import grants, pending, signals
from stepup.pytest_plugin import stepup_verified  # noqa: F401  (the plugin's fixture)
from tests.paths import VERIFY  # noqa: F401  (re-exported)


@pytest.fixture(autouse=True)
def _no_policy_file(settings: Any) -> None:
    """No policy file: each test stores the policies it needs (the ``policy`` fixture)."""
    settings.STEPUP = {"DEFAULT_MAX_AGE": 300, "TRUSTED_PROXIES": [], "RELOAD_INTERVAL": 3600}


@pytest.fixture
def logged_in(logged_in: Client, totp: TOTPDevice) -> Client:
    """Signed in as ``user``, who has an authenticator app (never verified)."""
    return logged_in


@pytest.fixture
def rf_request(user: Any) -> Callable[..., HttpRequest]:
    """``rf_request("post", "/billing/", data, as_user=..., **extra)``: session and user set."""
    factory = RequestFactory()

    def make(method: str, path: str, data: Any = None, *, as_user: Any = user, **extra: Any) -> HttpRequest:
        send = getattr(factory, method.lower())
        request: HttpRequest = send(path, data, **extra) if data is not None else send(path, **extra)
        SessionMiddleware(lambda r: None).process_request(request)  # type: ignore[arg-type]
        request.user = as_user if as_user is not None else AnonymousUser()
        if as_user is not None:
            grants.record_login(request)
        return request

    return make


def resolved(request: HttpRequest) -> HttpRequest:
    """Set ``resolver_match`` as Django's handler does before ``process_view``."""
    request.resolver_match = resolve(request.path_info)
    return request


def challenge_of(client: Client, response: Any) -> dict[str, Any]:
    """The pending challenge a step-up response points at."""
    from urllib.parse import parse_qs, urlsplit

    location = response.headers.get("Location") or response.json()["verify_url"]
    challenge_id = parse_qs(urlsplit(location).query)["challenge"][0]
    request = HttpRequest()
    request.session = client.session
    found = pending.get_challenge(request, challenge_id)
    assert found is not None
    return found


def complete(client: Client, user: Any, challenge: dict[str, Any], kind: str = "totp") -> None:
    """Do what the verify view does on success (record the verification, rotate the key)."""
    from django.conf import settings

    request = HttpRequest()
    request.session = client.session
    digest = challenge["digest"] if challenge["one_shot"] else None
    grants.record_verification(request, user, kind, one_shot_digest=digest)
    request.session.save()
    client.cookies[settings.SESSION_COOKIE_NAME] = request.session.session_key or ""


class Recorder:
    """Counts ``stepup_challenged`` and ``stepup_denied`` signals."""

    def __init__(self) -> None:
        self.challenged: list[dict[str, Any]] = []
        self.denied: list[dict[str, Any]] = []

    def on_challenged(self, sender: Any, **kwargs: Any) -> None:
        self.challenged.append(kwargs)

    def on_denied(self, sender: Any, **kwargs: Any) -> None:
        self.denied.append(kwargs)


@pytest.fixture
def recorder() -> Iterator[Recorder]:
    found = Recorder()
    signals.stepup_challenged.connect(found.on_challenged)
    signals.stepup_denied.connect(found.on_denied)
    yield found
    signals.stepup_challenged.disconnect(found.on_challenged)
    signals.stepup_denied.disconnect(found.on_denied)
