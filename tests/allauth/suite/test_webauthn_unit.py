"""allauth WebAuthn authenticators checked by allauth's server: the ceremony of stepup.allauth_mfa."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.sessions.backends.db import SessionStore
from django.test import RequestFactory

from stepup import allauth_mfa
from tests.allauth.suite.softkey import SoftKey, as_json

pytestmark = pytest.mark.django_db


def request_for(user: Any) -> Any:
    request = RequestFactory().post("/stepup/verify/", HTTP_HOST="testserver")
    request.session = SessionStore()
    request.user = user
    return request


@pytest.fixture
def key(user: Any) -> SoftKey:
    key = SoftKey()
    key.register(user)
    return key


def test_a_passkey_is_a_webauthn_factor(user: Any, key: SoftKey) -> None:
    [factor] = allauth_mfa.factors_for_user(user, ["webauthn"])
    assert factor.kind == "webauthn" and factor.name == "Laptop"
    assert allauth_mfa.factors_for_user(user, ["totp"]) == []


def test_a_signed_challenge_verifies_once(user: Any, key: SoftKey) -> None:
    request = request_for(user)
    options = as_json(allauth_mfa.begin_webauthn(request, user, None))
    assert options["publicKey"]["userVerification"] == "required"
    response = as_json(key.assertion(options))
    authenticator = allauth_mfa.complete_webauthn(request, user, response, None)
    assert authenticator is not None and authenticator.user_id == user.pk
    assert allauth_mfa.complete_webauthn(request, user, response, None) is None  # the ceremony is spent


def test_user_verification_is_required(user: Any, key: SoftKey) -> None:
    request = request_for(user)
    options = as_json(allauth_mfa.begin_webauthn(request, user, None))
    assert allauth_mfa.complete_webauthn(request, user, key.assertion(options, verified=False), None) is None


def test_another_origin_is_refused(user: Any, key: SoftKey) -> None:
    request = request_for(user)
    options = as_json(allauth_mfa.begin_webauthn(request, user, None))
    response = key.assertion(options, origin="https://evil.example")
    assert allauth_mfa.complete_webauthn(request, user, response, None) is None


def test_a_transactions_assertion_is_valid_for_that_transaction_only(user: Any, key: SoftKey) -> None:
    request = request_for(user)
    options = as_json(allauth_mfa.begin_webauthn(request, user, "digest-of-5000-to-DE89"))
    response = key.assertion(options)
    assert allauth_mfa.complete_webauthn(request, user, response, "digest-of-9000-to-FR14") is None
    options = as_json(allauth_mfa.begin_webauthn(request, user, "digest-of-5000-to-DE89"))
    response = key.assertion(options)
    assert allauth_mfa.complete_webauthn(request, user, response, "digest-of-5000-to-DE89") is not None


def test_another_users_passkey_is_refused(user: Any, key: SoftKey, make_user: Any) -> None:
    mallory = make_user("mallory")
    theirs = SoftKey()
    theirs.register(mallory)
    request = request_for(user)
    options = as_json(allauth_mfa.begin_webauthn(request, user, None))
    assert allauth_mfa.complete_webauthn(request, user, theirs.assertion(options), None) is None


def test_a_ceremony_begun_for_another_user_is_refused(user: Any, key: SoftKey, make_user: Any) -> None:
    request = request_for(user)
    options = as_json(allauth_mfa.begin_webauthn(request, user, None))
    other = make_user("mallory")
    assert allauth_mfa.complete_webauthn(request, other, key.assertion(options), None) is None


def test_no_passkey_no_ceremony(user: Any) -> None:
    assert allauth_mfa.begin_webauthn(request_for(user), user, None) is None


@pytest.mark.parametrize("garbage", [None, "x", {}, {"id": "AA", "response": {}}, {"rawId": 5}])
def test_garbage_is_a_failure_not_an_error(user: Any, key: SoftKey, garbage: Any) -> None:
    request = request_for(user)
    allauth_mfa.begin_webauthn(request, user, None)
    assert allauth_mfa.complete_webauthn(request, user, garbage, None) is None
