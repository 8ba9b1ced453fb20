"""The demo's policies satisfied by allauth.mfa WebAuthn authenticators, through stepup's ceremony.

The verify page's passkey form and the ``webauthn-begin``/``-complete`` API are
the same as for django-otp-webauthn credentials; allauth's server makes the
options and checks the assertion. The browser test does the same in Chromium.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from django.test import Client
from django.urls import reverse
from fido2.utils import websafe_decode

from stepup.models import DecisionLog, UserState
from stepup.testing import assert_requires_stepup
from tests.allauth.suite.conftest import challenge_of
from tests.allauth.suite.softkey import SoftKey
from tests.paths import WEBAUTHN_BEGIN as BEGIN
from tests.paths import WEBAUTHN_COMPLETE as COMPLETE
from tests.shop.models import BillingProfile, Transfer

pytestmark = pytest.mark.django_db

BILLING = {
    "company_name": "Initech",
    "billing_email": "ap@initech.example",
    "card_last4": "1234",
    "address": "4120 Freidrich Lane",
}
LARGE = {"amount": "5000.00", "account": "DE89370400440532013000"}


@pytest.fixture
def passkey(user: Any) -> SoftKey:
    key = SoftKey()
    key.authenticator = key.register(user)  # type: ignore[attr-defined]
    return key


def begin(client: Client, challenge: str | None) -> dict[str, Any]:
    response = client.post(BEGIN, json.dumps({"challenge": challenge}), content_type="application/json")
    assert response.status_code == 200, response.content
    return dict(response.json()["publicKey"])


def on_the_page(client: Client, verify_url: str, challenge: str, credential: dict[str, Any]) -> Any:
    """Post the signed assertion as the verify page's passkey form does."""
    data = {"challenge": challenge, "factor": "webauthn", "credential": json.dumps(credential)}
    return client.post(verify_url, data)


def test_a_passkey_satisfies_the_billing_policy_on_the_verify_page(
    logged_in: Client, user: Any, passkey: SoftKey
) -> None:
    url = reverse("shop:billing-update")
    challenged = logged_in.post(url, BILLING)
    challenge = challenge_of(challenged)
    page = logged_in.get(challenged["Location"]).content.decode()
    assert 'data-stepup-webauthn="verify"' in page  # the passkey button is offered
    options = begin(logged_in, challenge)
    assert options["userVerification"] == "required" and options["rpId"] == "testserver"
    done = on_the_page(logged_in, challenged["Location"], challenge, passkey.assertion(options))
    assert done.status_code in (200, 303), done.content.decode()[-2000:]
    assert logged_in.post(url, BILLING).status_code == 302
    assert BillingProfile.objects.filter(user=user).exists()
    assert DecisionLog.objects.get(event="verified").factor == "webauthn"
    passkey.authenticator.refresh_from_db()  # type: ignore[attr-defined]
    assert passkey.authenticator.last_used_at is not None  # type: ignore[attr-defined]


def test_a_large_transfer_is_approved_by_a_signature_over_the_transaction(
    logged_in: Client, user: Any, passkey: SoftKey
) -> None:
    url = reverse("shop:transfer")
    for _ in range(3):  # a recent factor, then the one-shot approval of this transfer
        response = logged_in.post(url, LARGE)
        if response.status_code != 302 or "/stepup/verify/" not in response["Location"]:
            break
        challenge = challenge_of(response)
        options = begin(logged_in, challenge)
        answer = logged_in.post(
            COMPLETE,
            json.dumps({"challenge": challenge, "credential": passkey.assertion(options)}),
            content_type="application/json",
        )
        assert answer.status_code == 200 and answer.json() == {"verified": True, "factor": "webauthn"}
    assert len(websafe_decode(options["challenge"])) == 64  # nonce + the transaction's digest
    assert Transfer.objects.filter(user=user).count() == 1
    assert_requires_stepup(logged_in, "post", url, LARGE)


def test_an_assertion_is_used_once(logged_in: Client, passkey: SoftKey) -> None:
    options = begin(logged_in, None)
    credential = passkey.assertion(options)
    first = logged_in.post(COMPLETE, json.dumps({"credential": credential}), content_type="application/json")
    assert first.status_code == 200
    begin(logged_in, None)  # a new ceremony: the old signature is over the old challenge
    again = logged_in.post(COMPLETE, json.dumps({"credential": credential}), content_type="application/json")
    assert again.status_code == 400 and again.json()["verified"] is False


def test_without_user_verification_it_is_refused_and_counted(
    logged_in: Client, user: Any, passkey: SoftKey
) -> None:
    options = begin(logged_in, None)
    credential = passkey.assertion(options, verified=False)
    answer = logged_in.post(COMPLETE, json.dumps({"credential": credential}), content_type="application/json")
    assert answer.status_code == 400 and answer.json()["code"] == "invalid_credential"
    assert UserState.objects.get(user_id=user.pk).failures == 1


def test_another_users_passkey_is_refused(logged_in: Client, passkey: SoftKey, make_user: Any) -> None:
    theirs = SoftKey()
    theirs.register(make_user("mallory"))
    options = begin(logged_in, None)
    credential = theirs.assertion(options)
    answer = logged_in.post(COMPLETE, json.dumps({"credential": credential}), content_type="application/json")
    assert answer.status_code == 400 and answer.json()["verified"] is False


def test_a_user_without_a_passkey_gets_no_ceremony(client: Client, make_user: Any) -> None:
    client.force_login(make_user("newbie"))
    response = client.post(BEGIN, json.dumps({}), content_type="application/json")
    assert response.status_code == 400 and response.json()["code"] == "no_device"


def test_django_otp_webauthn_registration_is_off_when_allauth_is_the_source(logged_in: Client) -> None:
    assert logged_in.get(reverse("stepup:webauthn-register")).status_code == 404


def test_a_tampered_signature_is_refused(logged_in: Client, passkey: SoftKey) -> None:
    options = begin(logged_in, None)
    credential = passkey.assertion(options)
    signature = bytearray(websafe_decode(credential["response"]["signature"]))
    signature[-1] ^= 1
    from fido2.utils import websafe_encode

    credential["response"]["signature"] = websafe_encode(bytes(signature))
    answer = logged_in.post(COMPLETE, json.dumps({"credential": credential}), content_type="application/json")
    assert answer.status_code == 400 and answer.json()["code"] == "invalid_credential"
