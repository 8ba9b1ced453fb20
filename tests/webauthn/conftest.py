"""Fixtures for passkeys: users, a software authenticator enrolled through the real endpoints, challenges."""

from __future__ import annotations

import json
from types import SimpleNamespace
from typing import Any, cast

import pytest
from django.test import Client

from stepup import binding, pending
from tests.webauthn.authenticator import SoftAuthenticator

BEGIN = "/stepup/webauthn/begin/"
COMPLETE = "/stepup/webauthn/complete/"
REGISTER_PAGE = "/stepup/webauthn/register/"
REGISTER_BEGIN = "/stepup/webauthn/register/begin/"
REGISTER_COMPLETE = "/stepup/webauthn/register/complete/"
VERIFY = "/stepup/verify/"

ATTRS = {"amount": "5000", "account": "DE89370400440532013000"}


@pytest.fixture
def user(django_user_model: Any) -> Any:
    return django_user_model.objects.create_user("alice", password="pw")


@pytest.fixture
def other_user(django_user_model: Any) -> Any:
    return django_user_model.objects.create_user("mallory", password="pw")


@pytest.fixture
def logged_in(client: Client, user: Any) -> Client:
    client.force_login(user)
    return client


def post_json(client: Client, url: str, data: Any, **extra: Any) -> Any:
    return client.post(url, json.dumps(data), content_type="application/json", **extra)


def enrol(
    client: Client, authenticator: SoftAuthenticator | None = None, name: str = "Laptop"
) -> SoftAuthenticator:
    """Add a passkey through ``webauthn-register-begin`` and ``-complete``; the authenticator holding it."""
    authenticator = authenticator or SoftAuthenticator()
    begun = post_json(client, REGISTER_BEGIN, {})
    assert begun.status_code == 200, begun.content
    done = post_json(
        client,
        REGISTER_COMPLETE,
        {"credential": authenticator.create(begun.json()["publicKey"]), "name": name},
    )
    assert done.status_code == 201, done.content
    return authenticator


@pytest.fixture
def passkey(logged_in: Client) -> SoftAuthenticator:
    """alice's passkey, enrolled in the browser way."""
    return enrol(logged_in)


def challenge_dict(**overrides: Any) -> dict[str, Any]:
    """A one-shot challenge as enforcement saves it for a transfer."""
    action = overrides.pop("action", "payments.transfer")
    attrs = overrides.pop("attrs", dict(ATTRS))
    data: dict[str, Any] = {
        "action": action,
        "url_name": None,
        "method": "POST",
        "path": "/pay/",
        "attrs": attrs,
        "digest": binding.attributes_digest(action, None, attrs),
        "policies": ["payments-large"],
        "descriptions": ["Transfers over 1000 need a fresh second factor."],
        "max_age": 0,
        "factors": ["totp", "webauthn"],
        "one_shot": True,
        "post": None,
        "next": "/pay/",
    }
    data.update(overrides)
    return data


def save_challenge(client: Client, **overrides: Any) -> str:
    """Store a pending challenge for ``client``'s session; return its id."""
    session = client.session
    request = cast(Any, SimpleNamespace(session=session, user=None))
    challenge_id = pending.save_challenge(request, challenge_dict(**overrides))
    session.save()
    return challenge_id


def session_request(client: Client, user: Any) -> Any:
    """A stand-in request on ``client``'s current session (for reading grants)."""
    return SimpleNamespace(session=client.session, user=user, META={})


def begin(client: Client, challenge_id: str | None = None, **extra: Any) -> dict[str, Any]:
    response = post_json(client, BEGIN, {"challenge": challenge_id} if challenge_id else {}, **extra)
    assert response.status_code == 200, response.content
    return cast(dict[str, Any], response.json()["publicKey"])


def complete(client: Client, credential: Any, challenge_id: str | None = None, **extra: Any) -> Any:
    data: dict[str, Any] = {"credential": credential}
    if challenge_id:
        data["challenge"] = challenge_id
    return post_json(client, COMPLETE, data, **extra)
