"""allauth WebAuthn authenticators checked by allauth's server (stepup.allauth_mfa's two WebAuthn calls)."""

from __future__ import annotations

import os
from typing import Any

import pytest
from django.test import RequestFactory

from stepup import allauth_mfa
from tests.allauth.suite.softkey import SoftKey

pytestmark = pytest.mark.django_db


def request_for(user: Any) -> Any:
    request = RequestFactory().post("/stepup/verify/", HTTP_HOST="testserver")
    request.user = user
    return request


@pytest.fixture
def key(user: Any) -> SoftKey:
    key = SoftKey()
    key.register(user)
    return key


@pytest.fixture
def challenge() -> bytes:
    return os.urandom(32)


def test_a_passkey_is_a_webauthn_factor(user: Any, key: SoftKey) -> None:
    [factor] = allauth_mfa.factors_for_user(user, ["webauthn"])
    assert factor.kind == "webauthn" and factor.name == "Laptop"
    assert allauth_mfa.factors_for_user(user, ["totp"]) == []


def test_the_options_ask_for_user_verification_of_the_users_passkeys(
    user: Any, key: SoftKey, challenge: bytes
) -> None:
    options = allauth_mfa.webauthn_options(request_for(user), user, challenge)
    assert options is not None
    assert options["userVerification"] == "required" and options["rpId"] == "testserver"
    assert [c["id"] for c in options["allowCredentials"]] == [key.registration()["id"]]


def test_a_signed_challenge_verifies(user: Any, key: SoftKey, challenge: bytes) -> None:
    request = request_for(user)
    options = allauth_mfa.webauthn_options(request, user, challenge)
    authenticator = allauth_mfa.check_webauthn(request, user, challenge, key.assertion(options))
    assert authenticator is not None and authenticator.user_id == user.pk
    assert allauth_mfa.owns_credential(user, key.assertion(options))


def test_another_challenge_is_refused(user: Any, key: SoftKey, challenge: bytes) -> None:
    request = request_for(user)
    options = allauth_mfa.webauthn_options(request, user, challenge)
    assert allauth_mfa.check_webauthn(request, user, os.urandom(32), key.assertion(options)) is None


def test_user_verification_is_required(user: Any, key: SoftKey, challenge: bytes) -> None:
    request = request_for(user)
    options = allauth_mfa.webauthn_options(request, user, challenge)
    assert (
        allauth_mfa.check_webauthn(request, user, challenge, key.assertion(options, verified=False)) is None
    )


def test_another_origin_is_refused(user: Any, key: SoftKey, challenge: bytes) -> None:
    request = request_for(user)
    options = allauth_mfa.webauthn_options(request, user, challenge)
    response = key.assertion(options, origin="https://evil.example")
    assert allauth_mfa.check_webauthn(request, user, challenge, response) is None


def test_another_users_passkey_is_refused(user: Any, key: SoftKey, make_user: Any, challenge: bytes) -> None:
    mallory = make_user("mallory")
    theirs = SoftKey()
    theirs.register(mallory)
    request = request_for(user)
    options = allauth_mfa.webauthn_options(request, user, challenge)
    assert allauth_mfa.check_webauthn(request, user, challenge, theirs.assertion(options)) is None
    assert not allauth_mfa.owns_credential(user, theirs.assertion(options))
    # and mallory's own key, signed for mallory, is still not the user's
    assert allauth_mfa.check_webauthn(request, mallory, challenge, key.assertion(options)) is None


def test_no_passkey_no_options(user: Any, challenge: bytes) -> None:
    assert allauth_mfa.webauthn_options(request_for(user), user, challenge) is None


@pytest.mark.parametrize(
    "garbage", [None, "x", {}, {"id": "AA", "response": {}}, {"rawId": 5}, {"rawId": "!!"}]
)
def test_garbage_is_a_failure_not_an_error(user: Any, key: SoftKey, garbage: Any, challenge: bytes) -> None:
    assert allauth_mfa.check_webauthn(request_for(user), user, challenge, garbage) is None
    assert not allauth_mfa.owns_credential(user, garbage)
