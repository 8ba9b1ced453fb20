"""Passkeys over JSON: registration, the bound ceremony, and every way an assertion must be refused."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from django.test import Client
from django_otp_webauthn.models import WebAuthnCredential

from stepup import grants, pending
from stepup.factors import webauthn
from stepup.models import DecisionLog, Grant, PendingChallenge
from tests.webauthn.authenticator import SoftAuthenticator, unb64url
from tests.webauthn.conftest import (
    REGISTER_BEGIN,
    REGISTER_COMPLETE,
    begin,
    challenge_dict,
    complete,
    enrol,
    post_json,
    save_challenge,
    session_request,
)

pytestmark = pytest.mark.django_db


# --- registration ------------------------------------------------------------------------


def test_registration_requires_user_verification_and_stores_a_confirmed_named_credential(
    logged_in: Client, user: Any
) -> None:
    options = post_json(logged_in, REGISTER_BEGIN, {}).json()["publicKey"]
    assert options["authenticatorSelection"]["userVerification"] == "required"
    assert options["rp"]["id"] == "testserver"
    authenticator = SoftAuthenticator()
    done = post_json(
        logged_in, REGISTER_COMPLETE, {"credential": authenticator.create(options), "name": " Laptop "}
    )
    assert done.status_code == 201
    device = WebAuthnCredential.objects.get(user=user)
    assert done.json() == {"registered": True, "device": device.persistent_id, "name": "Laptop"}
    assert device.confirmed and device.credential_id == authenticator.credential_id


def test_registration_without_user_verification_is_refused(logged_in: Client, user: Any) -> None:
    options = post_json(logged_in, REGISTER_BEGIN, {}).json()["publicKey"]
    credential = SoftAuthenticator(user_verified=False).create(options)
    done = post_json(logged_in, REGISTER_COMPLETE, {"credential": credential})
    assert done.status_code == 400 and done.json()["code"] == "invalid_credential"
    assert not WebAuthnCredential.objects.filter(user=user).exists()


def test_a_registration_ceremony_is_used_once(logged_in: Client, user: Any) -> None:
    options = post_json(logged_in, REGISTER_BEGIN, {}).json()["publicKey"]
    credential = SoftAuthenticator().create(options)
    assert post_json(logged_in, REGISTER_COMPLETE, {"credential": credential}).status_code == 201
    again = post_json(logged_in, REGISTER_COMPLETE, {"credential": SoftAuthenticator().create(options)})
    assert again.status_code == 400 and again.json()["code"] == "ceremony_expired"
    assert WebAuthnCredential.objects.filter(user=user).count() == 1


def test_registration_needs_no_begin_of_its_own_for_another_user(
    logged_in: Client, other_user: Any, user: Any
) -> None:
    """A ceremony begun by alice's session can't be completed by mallory's."""
    options = post_json(logged_in, REGISTER_BEGIN, {}).json()["publicKey"]
    mallory = Client()
    mallory.force_login(other_user)
    done = post_json(mallory, REGISTER_COMPLETE, {"credential": SoftAuthenticator().create(options)})
    assert done.status_code == 400
    assert not WebAuthnCredential.objects.exists()


def test_adding_a_passkey_when_the_user_has_a_factor_needs_a_step_up(
    logged_in: Client, user: Any, totp: Any
) -> None:
    refused = post_json(logged_in, REGISTER_BEGIN, {})
    assert refused.status_code == 401
    body = refused.json()
    assert body["code"] == "stepup_required" and body["verify_url"].startswith("/stepup/verify/")
    assert not PendingChallenge.objects.filter(challenge_id__startswith=webauthn.CEREMONY_PREFIX).exists()
    from stepup.testing import stepup_verified

    with stepup_verified(logged_in, user, factor="totp"):
        assert post_json(logged_in, REGISTER_BEGIN, {}).status_code == 200


def test_registration_needs_a_login(client: Client) -> None:
    assert post_json(client, REGISTER_BEGIN, {}).status_code == 401
    assert post_json(client, REGISTER_COMPLETE, {"credential": {}}).status_code == 401


def test_registration_page_loads_the_module_and_no_inline_script(logged_in: Client) -> None:
    page = logged_in.get("/stepup/webauthn/register/?next=/security/")
    assert page.status_code == 200
    html = page.content.decode()
    assert '<script type="module" src="/static/stepup/webauthn.js">' in html
    assert 'data-done-url="/security/"' in html
    assert html.count("<script") == 1 and "onclick" not in html


# --- the bound ceremony --------------------------------------------------------------------


def test_begin_requires_user_verification_and_commits_to_the_transaction(
    logged_in: Client, passkey: SoftAuthenticator
) -> None:
    challenge_id = save_challenge(logged_in)
    options = begin(logged_in, challenge_id)
    assert options["userVerification"] == "required"
    assert [c["id"] for c in options["allowCredentials"]] == [webauthn_id(passkey)], (
        "only the user's own credentials are offered"
    )
    raw = unb64url(options["challenge"])
    digest = challenge_dict()["digest"]
    assert len(raw) == 64 and raw[32:] == bytes.fromhex(digest)
    assert webauthn.commits_to(raw, digest)
    assert not webauthn.commits_to(
        raw, challenge_dict(attrs={"amount": "5000", "account": "GB00EVIL"})["digest"]
    )


def webauthn_id(authenticator: SoftAuthenticator) -> str:
    from tests.webauthn.authenticator import b64url

    return b64url(authenticator.credential_id)


def test_a_passkey_verifies_and_grants_only_that_transaction(
    logged_in: Client, user: Any, passkey: SoftAuthenticator
) -> None:
    challenge_id = save_challenge(logged_in)
    credential = passkey.get(begin(logged_in, challenge_id))
    response = complete(logged_in, credential, challenge_id)
    assert response.status_code == 200, response.content
    assert response.json() == {"verified": True, "factor": "webauthn"}
    request = session_request(logged_in, user)
    assert grants.one_shot_kinds(request, user, challenge_dict()["digest"]) == frozenset({"webauthn"})
    other = challenge_dict(attrs={"amount": "5000", "account": "GB00EVIL"})["digest"]
    assert grants.one_shot_kinds(request, user, other) == frozenset()
    assert pending.get_challenge(request, challenge_id) is None
    assert WebAuthnCredential.objects.get(user=user).sign_count == passkey.sign_count
    assert DecisionLog.objects.filter(event="verified", factor="webauthn").count() == 1


def test_a_generic_verification_records_the_factor(
    logged_in: Client, user: Any, passkey: SoftAuthenticator
) -> None:
    response = complete(logged_in, passkey.get(begin(logged_in)))
    assert response.status_code == 200
    assert "webauthn" in grants.verification_ages(session_request(logged_in, user), user)


def test_an_authenticator_without_user_verification_is_refused(logged_in: Client, user: Any) -> None:
    authenticator = enrol(logged_in)
    authenticator.user_verified = False  # e.g. a security key that only checks presence
    challenge_id = save_challenge(logged_in)
    response = complete(logged_in, authenticator.get(begin(logged_in, challenge_id)), challenge_id)
    assert response.status_code == 400
    assert response.json()["code"] == "invalid_credential"
    assert (
        grants.one_shot_kinds(session_request(logged_in, user), user, challenge_dict()["digest"])
        == frozenset()
    )


def test_the_same_assertion_twice_is_refused(
    logged_in: Client, user: Any, passkey: SoftAuthenticator
) -> None:
    challenge_id = save_challenge(logged_in)
    credential = passkey.get(begin(logged_in, challenge_id))
    assert complete(logged_in, credential, challenge_id).status_code == 200
    again = {"amount": "5000", "account": "DE89370400440532013000", "reference": "second"}
    replay_id = save_challenge(logged_in, attrs=again)
    assert complete(logged_in, credential, replay_id).json()["code"] == "ceremony_expired"
    begin(
        logged_in, replay_id
    )  # even with a ceremony begun for it, the old signature is for another challenge
    refused = complete(logged_in, credential, replay_id)
    assert refused.status_code == 400 and refused.json()["code"] == "invalid_credential"
    request = session_request(logged_in, user)
    assert grants.one_shot_kinds(request, user, challenge_dict(attrs=again)["digest"]) == frozenset()
    assert Grant.objects.filter(user_id=user.pk, kind="webauthn").exclude(digest="").count() == 1


def test_an_assertion_signed_for_one_transaction_is_refused_for_another(
    logged_in: Client, user: Any, passkey: SoftAuthenticator
) -> None:
    small = save_challenge(logged_in, attrs={"amount": "1500", "account": "DE89370400440532013000"})
    large = save_challenge(logged_in, attrs={"amount": "90000", "account": "GB00EVIL"})
    signed_for_small = passkey.get(begin(logged_in, small))
    # Claiming the other transaction with the same ceremony: refused before any signature is checked.
    assert complete(logged_in, signed_for_small, large).json()["code"] == "ceremony_expired"
    # A ceremony for the other transaction, answered with the first one's signature: refused.
    options = begin(logged_in, large)
    forged = passkey.get(options, challenge=unb64url_text(signed_for_small))
    assert complete(logged_in, forged, large).json()["code"] == "invalid_credential"
    request = session_request(logged_in, user)
    for attrs in (
        {"amount": "1500", "account": "DE89370400440532013000"},
        {"amount": "90000", "account": "GB00EVIL"},
    ):
        assert grants.one_shot_kinds(request, user, challenge_dict(attrs=attrs)["digest"]) == frozenset()


def unb64url_text(credential: dict[str, Any]) -> str:
    import json

    return str(json.loads(unb64url(credential["response"]["clientDataJSON"]))["challenge"])


def test_another_users_credential_is_refused(
    logged_in: Client, user: Any, other_user: Any, passkey: SoftAuthenticator
) -> None:
    mallory = Client()
    mallory.force_login(other_user)
    mallorys_key = enrol(mallory)
    challenge_id = save_challenge(logged_in)
    response = complete(logged_in, mallorys_key.get(begin(logged_in, challenge_id)), challenge_id)
    assert response.status_code == 400 and response.json()["code"] == "invalid_credential"
    assert (
        grants.one_shot_kinds(session_request(logged_in, user), user, challenge_dict()["digest"])
        == frozenset()
    )
    assert WebAuthnCredential.objects.get(user=other_user).sign_count == 0, "never checked, never counted"


def test_a_ceremony_belongs_to_the_client_that_began_it(
    logged_in: Client, user: Any, passkey: SoftAuthenticator
) -> None:
    options = begin(logged_in)
    thief = Client()
    thief.force_login(user)  # the same user, another session
    assert complete(thief, passkey.get(options)).json()["code"] == "ceremony_expired"


def test_an_expired_ceremony_is_refused(logged_in: Client, passkey: SoftAuthenticator, settings: Any) -> None:
    import time_machine

    options = begin(logged_in)
    with time_machine.travel(grants.now() + 301, tick=False):
        assert complete(logged_in, passkey.get(options)).json()["code"] == "ceremony_expired"


def test_a_user_without_a_passkey_gets_no_options(logged_in: Client, totp: Any) -> None:
    response = post_json(logged_in, "/stepup/webauthn/begin/", {})
    assert response.status_code == 400 and response.json()["code"] == "no_device"


def test_a_challenge_that_does_not_accept_passkeys_gets_no_options(
    logged_in: Client, passkey: SoftAuthenticator
) -> None:
    challenge_id = save_challenge(logged_in, factors=["totp"])
    response = post_json(logged_in, "/stepup/webauthn/begin/", {"challenge": challenge_id})
    assert response.status_code == 400 and response.json()["code"] == "no_device"


def test_refused_signatures_count_towards_the_lockout(
    logged_in: Client, user: Any, passkey: SoftAuthenticator, settings: Any
) -> None:
    settings.STEPUP = {**settings.STEPUP, "USER_FAILURE_LIMIT": 3}
    passkey.user_verified = False
    for _ in range(2):
        assert complete(logged_in, passkey.get(begin(logged_in))).status_code == 400
    locked = complete(logged_in, passkey.get(begin(logged_in)))
    assert locked.status_code == 429 and locked.json()["code"] == "locked"
    passkey.user_verified = True
    assert post_json(logged_in, "/stepup/webauthn/begin/", {}).status_code == 429
    assert DecisionLog.objects.filter(event="locked").exists()


@pytest.mark.parametrize(
    "credential",
    [
        None,
        "",
        "not json",
        [],
        {"id": "x"},
        {"id": "AA", "rawId": "AA", "type": "public-key", "response": {}},
    ],
)
def test_malformed_credentials_are_refused_cleanly(
    logged_in: Client, passkey: SoftAuthenticator, credential: Any
) -> None:
    begin(logged_in)
    response = complete(logged_in, credential)
    assert response.status_code == 400 and response.json()["verified"] is False


def test_no_assertion_reaches_a_log_or_the_decision_log(
    logged_in: Client, passkey: SoftAuthenticator, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    secrets = []
    for verified in (False, True):
        passkey.user_verified = verified
        credential = passkey.get(begin(logged_in, save_challenge(logged_in)))
        secrets += [credential["response"]["signature"], credential["response"]["clientDataJSON"]]
        complete(logged_in, credential, challenge_id=None)
    logged = caplog.text + " ".join(str(row.__dict__) for row in DecisionLog.objects.all())
    assert DecisionLog.objects.exists()
    assert not any(secret in logged for secret in secrets)


def test_begin_and_complete_need_the_csrf_token_with_a_session(user: Any, passkey: Any) -> None:
    strict = Client(enforce_csrf_checks=True)
    strict.force_login(user)
    assert post_json(strict, "/stepup/webauthn/begin/", {}).status_code == 403
    assert post_json(strict, "/stepup/webauthn/complete/", {"credential": {}}).status_code == 403
    assert post_json(strict, REGISTER_BEGIN, {}).status_code == 403


# --- the verify page's form ----------------------------------------------------------------


def test_the_verify_form_takes_a_passkey_and_redirects_on(
    logged_in: Client, user: Any, passkey: SoftAuthenticator
) -> None:
    import json

    challenge_id = save_challenge(logged_in, method="GET")  # a refused GET goes back; a POST is never redone
    credential = passkey.get(begin(logged_in, challenge_id))
    form = {
        "challenge": challenge_id,
        "next": "/pay/",
        "factor": "webauthn",
        "credential": json.dumps(credential),
    }
    response = logged_in.post("/stepup/verify/", form)
    assert response.status_code == 303 and response["Location"] == "/pay/"
    assert grants.one_shot_kinds(session_request(logged_in, user), user, challenge_dict()["digest"]) == {
        "webauthn"
    }


def test_the_verify_form_refuses_a_passkey_without_user_verification(
    logged_in: Client, user: Any, passkey: SoftAuthenticator
) -> None:
    import json

    passkey.user_verified = False
    challenge_id = save_challenge(logged_in)
    credential = passkey.get(begin(logged_in, challenge_id))
    form = {
        "challenge": challenge_id,
        "next": "/pay/",
        "factor": "webauthn",
        "credential": json.dumps(credential),
    }
    response = logged_in.post("/stepup/verify/", form)
    assert response.status_code == 200
    assert "not accepted" in response.content.decode()
    assert (
        grants.one_shot_kinds(session_request(logged_in, user), user, challenge_dict()["digest"])
        == frozenset()
    )


def test_without_django_otp_webauthn_nothing_is_offered(
    logged_in: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(webauthn, "available", lambda: False)
    assert post_json(logged_in, "/stepup/webauthn/begin/", {}).json()["code"] == "no_device"
    assert post_json(logged_in, REGISTER_BEGIN, {}).status_code == 404
    assert post_json(logged_in, REGISTER_COMPLETE, {"credential": {}}).status_code == 404
    assert logged_in.get("/stepup/webauthn/register/").status_code == 404


def test_an_assertion_made_for_another_origin_is_refused(logged_in: Client, user: Any) -> None:
    """A phishing page relaying the ceremony gets a signature over its own origin: no good here."""
    authenticator = enrol(logged_in)
    authenticator.origin = "https://testserver.evil.example"
    response = complete(logged_in, authenticator.get(begin(logged_in)))
    assert response.status_code == 400 and response.json()["code"] == "invalid_credential"
    assert "webauthn" not in grants.verification_ages(session_request(logged_in, user), user)


def test_a_ceremony_is_claimed_once_and_only_for_its_purpose(
    logged_in: Client, user: Any, passkey: Any
) -> None:
    begin(logged_in)
    request = session_request(logged_in, user)
    assert webauthn.claim_ceremony(request, user, webauthn.REGISTER) is None, "wrong purpose: gone too"
    begin(logged_in)
    first = webauthn.claim_ceremony(request, user, webauthn.AUTHENTICATE)
    assert first is not None and first.purpose == webauthn.AUTHENTICATE
    assert webauthn.claim_ceremony(request, user, webauthn.AUTHENTICATE) is None


def test_a_ceremony_for_a_challenge_that_expired_meanwhile_is_refused(
    logged_in: Client, user: Any, passkey: SoftAuthenticator
) -> None:
    challenge_id = save_challenge(logged_in)
    options = begin(logged_in, challenge_id)
    PendingChallenge.objects.filter(challenge_id=challenge_id).delete()  # expired and pruned
    response = complete(logged_in, passkey.get(options), challenge_id)
    assert response.status_code == 400 and response.json()["code"] == "ceremony_expired"
    assert not Grant.objects.filter(user_id=user.pk).exists()


def test_a_challenge_with_a_digest_stepup_did_not_make_binds_nothing(
    logged_in: Client, passkey: SoftAuthenticator
) -> None:
    challenge_id = save_challenge(logged_in, digest="not-a-digest")
    response = post_json(logged_in, "/stepup/webauthn/begin/", {"challenge": challenge_id})
    assert response.status_code == 400 and response.json()["code"] == "ceremony_expired"
