"""Every factor kind through the form and the JSON API: email codes, password, a project's own kind."""

from __future__ import annotations

import json
from typing import Any

import pytest
from django.contrib.auth.signals import user_login_failed
from django.core import mail
from django.core.management import call_command
from django.test import Client
from django_otp.plugins.otp_email.models import EmailDevice

from stepup import grants
from stepup.factors import registry
from stepup.models import DecisionLog
from stepup.policy.loader import validate_policy
from tests.conftest import PASSWORD
from tests.verification.conftest import API_VERIFY, VERIFY, save_challenge, session_request
from tests.verification.factor_kinds import SECRET_WORD

pytestmark = pytest.mark.django_db

PASSWORD_ONLY = {"factors": ["password"], "max_age": 300, "one_shot": False}


@pytest.fixture
def email_device(user: Any) -> EmailDevice:
    return EmailDevice.objects.create(user=user, name="Mail", confirmed=True, email="bob@example.com")


def api(client: Client, data: dict[str, Any]) -> Any:
    return client.post(API_VERIFY, json.dumps(data), content_type="application/json")


def sent_code() -> str:
    body = mail.outbox[-1].body
    return next(word for word in body.split() if word.isdigit())


# --- email ---------------------------------------------------------------------------


def test_a_get_never_sends_an_email_code(logged_in: Client, email_device: Any) -> None:
    challenge_id = save_challenge(logged_in)
    page = logged_in.get(f"{VERIFY}?challenge={challenge_id}&send=1&device={email_device.persistent_id}")
    assert page.status_code == 200 and mail.outbox == []
    assert "b\u2022\u2022\u2022@example.com" in page.content.decode()


def test_an_email_code_is_sent_on_post_then_verifies_once(
    logged_in: Client, email_device: Any, user: Any
) -> None:
    challenge_id = save_challenge(logged_in)
    sent = logged_in.post(
        VERIFY, {"challenge": challenge_id, "device": email_device.persistent_id, "send": "1"}
    )
    assert sent.status_code == 200 and len(mail.outbox) == 1
    assert mail.outbox[0].to == ["bob@example.com"]
    assert "A code was sent to b\u2022\u2022\u2022@example.com" in sent.content.decode()
    code = sent_code()
    ok = logged_in.post(
        VERIFY, {"challenge": challenge_id, "device": email_device.persistent_id, "token": code}
    )
    assert ok.status_code == 303
    assert "email" in grants.verification_ages(session_request(logged_in, user), user)
    challenge_id = save_challenge(logged_in)
    again = logged_in.post(
        VERIFY, {"challenge": challenge_id, "device": email_device.persistent_id, "token": code}
    )
    assert again.status_code == 200 and "not valid" in again.content.decode()  # no replay


def test_the_email_cooldown_is_obeyed(logged_in: Client, email_device: Any) -> None:
    data = {"device": email_device.persistent_id, "send": "1"}
    assert logged_in.post(VERIFY, data).status_code == 200
    second = logged_in.post(VERIFY, data)
    assert second.status_code == 429 and len(mail.outbox) == 1
    assert int(second["Retry-After"]) > 0


def test_email_over_the_api_202_then_200(logged_in: Client, email_device: Any) -> None:
    sent = api(logged_in, {"device": email_device.persistent_id, "send": True})
    assert sent.status_code == 202
    assert sent.json()["sent_to"] == "b\u2022\u2022\u2022@example.com"
    assert api(logged_in, {"device": email_device.persistent_id, "send": True}).status_code == 429
    wrong = api(logged_in, {"device": email_device.persistent_id, "token": "000000"})
    assert wrong.status_code in (400, 429)
    email_device.refresh_from_db()
    email_device.throttling_failure_count = 0
    email_device.save()
    ok = api(logged_in, {"device": email_device.persistent_id, "token": sent_code()})
    assert ok.status_code == 200 and ok.json()["factor"] == "email"


def test_another_users_email_device_is_refused(logged_in: Client, other_user: Any, email_device: Any) -> None:
    theirs = EmailDevice.objects.create(user=other_user, name="M", confirmed=True, email="m@example.com")
    response = api(logged_in, {"device": theirs.persistent_id, "send": True})
    assert response.status_code == 400 and response.json()["code"] == "invalid_device"
    assert mail.outbox == []


# --- password --------------------------------------------------------------------------


def test_password_is_not_implied(logged_in: Client) -> None:
    save_challenge(logged_in)  # factors: [] -- any implied kind
    response = api(logged_in, {"password": PASSWORD})
    assert response.status_code == 400 and response.json()["code"] == "no_device"


def test_password_satisfies_a_policy_that_names_it(logged_in: Client, user: Any) -> None:
    challenge_id = save_challenge(logged_in, **PASSWORD_ONLY)
    page = logged_in.get(f"{VERIFY}?challenge={challenge_id}")
    assert 'type="password"' in page.content.decode()
    bad = logged_in.post(VERIFY, {"challenge": challenge_id, "password": "nope"})
    assert bad.status_code == 200 and "That password is not correct." in bad.content.decode()
    ok = logged_in.post(VERIFY, {"challenge": challenge_id, "password": PASSWORD})
    assert ok.status_code == 303
    assert "password" in grants.verification_ages(session_request(logged_in, user), user)
    logged = list(DecisionLog.objects.values_list("detail", "attrs", "factor"))
    assert ("password" in str(f) for f in logged)
    assert all("nope" not in str(row) for row in logged)


def test_password_over_the_api_with_user_login_failed(logged_in: Client) -> None:
    challenge_id = save_challenge(logged_in, **PASSWORD_ONLY)
    seen: list[dict[str, Any]] = []

    def receiver(**kwargs: Any) -> None:
        seen.append(kwargs["credentials"])

    user_login_failed.connect(receiver)
    try:
        bad = api(logged_in, {"challenge": challenge_id, "password": "nope"})
    finally:
        user_login_failed.disconnect(receiver)
    assert bad.status_code == 400 and bad.json()["code"] == "invalid_password"
    assert seen and "nope" not in str(seen)  # Django cleanses the password
    assert api(logged_in, {"challenge": challenge_id, "password": PASSWORD}).status_code == 200


def test_password_of_another_user_is_refused(logged_in: Client, other_user: Any, settings: Any) -> None:
    settings.AUTHENTICATION_BACKENDS = [
        "django.contrib.auth.backends.ModelBackend",
        "tests.verification.factor_kinds.PinBackend",
    ]
    challenge_id = save_challenge(logged_in, **PASSWORD_ONLY)
    assert api(logged_in, {"challenge": challenge_id, "password": "pin-mallory"}).status_code == 400
    assert api(logged_in, {"challenge": challenge_id, "password": "pin-erin"}).status_code == 200


def test_password_failures_count_towards_the_lockout(logged_in: Client, stepup_settings: Any) -> None:
    stepup_settings(USER_FAILURE_LIMIT=3)
    challenge_id = save_challenge(logged_in, **PASSWORD_ONLY)
    codes = [api(logged_in, {"challenge": challenge_id, "password": "x"}).status_code for _ in range(3)]
    assert codes == [400, 400, 429]
    assert api(logged_in, {"challenge": challenge_id, "password": PASSWORD}).status_code == 429


def test_a_user_without_devices_can_use_password_when_named(client: Client, user: Any) -> None:
    client.force_login(user)
    challenge_id = save_challenge(client, **PASSWORD_ONLY)
    assert client.post(VERIFY, {"challenge": challenge_id, "password": PASSWORD}).status_code == 303


# --- the registry -------------------------------------------------------------------------


def test_validate_rejects_an_unknown_kind_listing_the_registered_ones() -> None:
    policy = {
        "id": "p",
        "match": {"actions": ["a"]},
        "decision": "step_up",
        "max_age": 60,
        "factors": ["sms"],
    }
    spec, errors = validate_policy(policy, source="<t>")
    assert spec is None
    message = " ".join(e.message for e in errors)
    for kind in registry.kinds():
        assert kind in message
    assert "password" in message


def test_a_project_registered_kind_works(logged_in: Client, stepup_settings: Any, user: Any) -> None:
    stepup_settings(FACTORS=[*registry.DEFAULT_FACTORS, "tests.verification.factor_kinds.WordFactor"])
    assert "word" in registry.kinds()
    policy = {
        "id": "p",
        "match": {"actions": ["a"]},
        "decision": "step_up",
        "max_age": 60,
        "factors": ["word"],
    }
    assert validate_policy(policy, source="<t>")[0] is not None
    challenge_id = save_challenge(logged_in, factors=["word"], max_age=300, one_shot=False)
    assert api(logged_in, {"challenge": challenge_id, "word": "wrong"}).status_code == 400
    assert api(logged_in, {"challenge": challenge_id, "word": SECRET_WORD}).status_code == 200
    assert "word" in grants.verification_ages(session_request(logged_in, user), user)


def test_an_unregistered_kind_is_refused_by_validate(stepup_settings: Any) -> None:
    stepup_settings(FACTORS=["stepup.factors.codes.TOTPFactor"])
    policy = {
        "id": "p",
        "match": {"actions": ["a"]},
        "decision": "step_up",
        "max_age": 60,
        "factors": ["email"],
    }
    assert validate_policy(policy, source="<t>")[0] is None


def test_check_command_still_clean() -> None:
    call_command("check")
