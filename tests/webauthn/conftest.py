"""Fixtures for passkeys: users, a software authenticator enrolled through the real endpoints, challenges."""

from __future__ import annotations

import json
from typing import Any, cast

import pytest
from django.test import Client

from tests import challenges
from tests.challenges import ATTRS, session_request  # noqa: F401  (the folder's tests import them from here)
from tests.paths import VERIFY  # noqa: F401  (re-exported)
from tests.paths import WEBAUTHN_BEGIN as BEGIN
from tests.paths import WEBAUTHN_COMPLETE as COMPLETE
from tests.webauthn.authenticator import SoftAuthenticator

PASSKEY_CHALLENGE = {"method": "POST", "factors": ["totp", "webauthn"]}
"""A transfer's one-shot challenge that a passkey may answer."""


def challenge_dict(**overrides: Any) -> dict[str, Any]:
    return challenges.challenge_dict(**{**PASSKEY_CHALLENGE, **overrides})


def save_challenge(client: Client, **overrides: Any) -> str:
    return challenges.save_challenge(client, **{**PASSKEY_CHALLENGE, **overrides})


REGISTER_PAGE = "/stepup/webauthn/register/"
REGISTER_BEGIN = "/stepup/webauthn/register/begin/"
REGISTER_COMPLETE = "/stepup/webauthn/register/complete/"


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


def begin(client: Client, challenge_id: str | None = None, **extra: Any) -> dict[str, Any]:
    response = post_json(client, BEGIN, {"challenge": challenge_id} if challenge_id else {}, **extra)
    assert response.status_code == 200, response.content
    return cast(dict[str, Any], response.json()["publicKey"])


def complete(client: Client, credential: Any, challenge_id: str | None = None, **extra: Any) -> Any:
    data: dict[str, Any] = {"credential": credential}
    if challenge_id:
        data["challenge"] = challenge_id
    return post_json(client, COMPLETE, data, **extra)
