"""The HTML verification form: GET, POST, success, failure, devices, CSRF, headers."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth.models import AnonymousUser
from django.contrib.sessions.backends.db import SessionStore
from django.test import Client, RequestFactory
from django_otp import DEVICE_ID_SESSION_KEY

from stepup import grants, pending, views
from stepup.models import DecisionLog
from stepup.signals import stepup_failed, stepup_verified
from tests.verification.conftest import (
    FULLWIDTH_DIGITS,
    VERIFY,
    challenge_dict,
    code,
    make_totp,
    save_challenge,
    session_request,
    verify_url,
    wrong_code,
)

pytestmark = pytest.mark.django_db


def post(client: Client, data: dict[str, Any], url: str = VERIFY, **extra: Any) -> Any:
    return client.post(url, data, **extra)


def assert_hardened(response: Any) -> None:
    assert "no-store" in response["Cache-Control"]
    assert response["X-Frame-Options"] == "DENY"
    assert response["Content-Security-Policy"] == "frame-ancestors 'none'"


# --- GET ----------------------------------------------------------------------------


def test_anonymous_is_sent_to_login(client: Client) -> None:
    response = client.get(verify_url("abc", "/pay/"))
    assert response.status_code == 302
    assert response["Location"].startswith("/accounts/login/?next=")


def test_anonymous_post_is_sent_to_login(client: Client) -> None:
    response = post(client, {"token": "123456"})
    assert response.status_code == 302
    assert DecisionLog.objects.count() == 0


def test_get_shows_what_is_authorized_and_the_devices(logged_in: Client, totp: Any) -> None:
    challenge_id = save_challenge(logged_in)
    response = logged_in.get(verify_url(challenge_id, "/pay/"))
    assert response.status_code == 200
    html = response.content.decode()
    assert "Transfers over 1000 need a fresh second factor." in html
    assert "<dt>amount</dt><dd>5000</dd>" in html
    assert "DE89370400440532013000" in html
    assert totp.persistent_id in html
    assert "Authenticator app: Phone" in html
    assert f'name="challenge" value="{challenge_id}"' in html
    assert_hardened(response)


def test_attributes_come_from_the_server_side_challenge_only(logged_in: Client, totp: Any) -> None:
    challenge_id = save_challenge(logged_in)
    response = logged_in.get(verify_url(challenge_id) + "&amount=1&attrs.amount=1&descriptions=owned")
    html = response.content.decode()
    assert "<dd>5000</dd>" in html
    assert "<dd>1</dd>" not in html and "owned" not in html


def test_unknown_challenge_says_it_expired_and_where_to_start_again(logged_in: Client, totp: Any) -> None:
    response = logged_in.get(verify_url("not-a-real-challenge-id", "/pay/"))
    html = response.content.decode()
    assert response.status_code == 200
    assert response.templates[0].name == "stepup/expired.html"
    assert "You are authorizing" not in html and 'name="token"' not in html
    assert '<a href="/pay/">Start again</a>' in html


def test_another_sessions_challenge_is_unknown(logged_in: Client, user: Any, totp: Any) -> None:
    other = Client()
    other.force_login(user)
    challenge_id = save_challenge(other)
    html = logged_in.get(verify_url(challenge_id)).content.decode()
    assert "You are authorizing" not in html


def test_form_is_accessible(logged_in: Client, totp: Any) -> None:
    html = logged_in.get(VERIFY).content.decode()
    assert '<label for="stepup-token">' in html
    assert 'id="stepup-token"' in html
    assert 'autocomplete="one-time-code"' in html
    assert 'inputmode="numeric"' in html
    assert "autofocus" in html
    assert 'name="viewport"' in html


def test_backup_codes_get_a_text_keyboard(logged_in: Client, totp: Any, backup: Any) -> None:
    html = logged_in.get(VERIFY).content.decode()
    assert 'inputmode="text"' in html
    assert 'type="radio"' in html and "Backup code: Backup codes" in html


def test_only_devices_the_challenge_accepts_are_offered(logged_in: Client, totp: Any, backup: Any) -> None:
    challenge_id = save_challenge(logged_in, factors=["static"])
    html = logged_in.get(verify_url(challenge_id)).content.decode()
    assert backup.persistent_id in html
    assert totp.persistent_id not in html


@pytest.mark.parametrize(
    ("factors", "hint"),
    [
        (["totp"], "The code from your authenticator app."),
        (["static"], "One of your backup codes."),
        ([], "The code from your authenticator app, or one of your backup codes."),
    ],
)
def test_the_code_hint_follows_the_factors_the_decision_accepts(
    logged_in: Client, totp: Any, backup: Any, factors: list[str], hint: str
) -> None:
    html = logged_in.get(verify_url(save_challenge(logged_in, factors=factors))).content.decode()
    assert f'<span id="stepup-token-hint" class="stepup-hint">{hint}</span>' in html
    if factors == ["totp"]:
        assert "backup" not in html.lower()


def test_unconfirmed_and_foreign_devices_are_not_offered(
    logged_in: Client, user: Any, other_user: Any
) -> None:
    pending = make_totp(user, "New phone", confirmed=False)
    foreign = make_totp(other_user, "Mallory's phone")
    html = logged_in.get(VERIFY).content.decode()
    assert pending.persistent_id not in html and foreign.persistent_id not in html
    assert "no device that can confirm this" in html


def test_enroll_link_without_devices(logged_in: Client, stepup_settings: Any) -> None:
    stepup_settings(ENROLL_URL="/account/two-factor/")
    html = logged_in.get(VERIFY).content.decode()
    assert 'href="/account/two-factor/"' in html


def test_other_methods_are_refused(logged_in: Client) -> None:
    response = logged_in.put(VERIFY)
    assert response.status_code == 405
    assert_hardened(response)


def test_get_through_request_factory(rf: RequestFactory, user: Any, totp: Any) -> None:
    request = rf.get(VERIFY, {"next": "/pay/"})
    request.user = user
    request.session = SessionStore()
    response = views.verify(request)
    assert response.status_code == 200
    assert totp.persistent_id in response.content.decode()
    assert_hardened(response)


def test_request_factory_anonymous_redirects(rf: RequestFactory) -> None:
    request = rf.get(VERIFY)
    request.user = AnonymousUser()
    request.session = SessionStore()
    assert views.verify(request).status_code == 302


# --- POST: success --------------------------------------------------------------------


def test_success_records_the_verification_and_goes_next(logged_in: Client, user: Any, totp: Any) -> None:
    challenge_id = save_challenge(logged_in)
    before = logged_in.session.session_key
    response = post(logged_in, {"token": code(totp), "challenge": challenge_id, "next": "/pay/"})
    assert response.status_code == 303
    assert response["Location"] == "/pay/"
    assert_hardened(response)
    session = logged_in.session
    assert session.session_key != before
    assert session[DEVICE_ID_SESSION_KEY] == totp.persistent_id
    request = session_request(logged_in, user)
    assert "totp" in grants.verification_ages(request, user)
    digest = challenge_dict()["digest"]
    assert grants.one_shot_kinds(request, user, digest) == frozenset({"totp"})
    assert pending.get_challenge(request, challenge_id) is None
    event = DecisionLog.objects.get(event="verified")
    assert (event.user, event.factor, event.action) == (user, "totp", "payments.transfer")
    assert event.policies == ["payments-large"]


def test_success_sends_stepup_verified(logged_in: Client, user: Any, totp: Any) -> None:
    received: list[dict[str, Any]] = []

    def receiver(**kwargs: Any) -> None:
        received.append(kwargs)

    stepup_verified.connect(receiver)
    try:
        post(logged_in, {"token": code(totp)})
    finally:
        stepup_verified.disconnect(receiver)
    assert len(received) == 1
    assert received[0]["user"] == user and received[0]["factor"] == "totp"
    assert received[0]["device"] == totp and received[0]["request"] is not None


def test_generic_verification_records_ages_only(logged_in: Client, user: Any, totp: Any) -> None:
    response = post(logged_in, {"token": code(totp)})
    assert response.status_code == 303 and response["Location"] == "/"
    request = session_request(logged_in, user)
    assert "totp" in grants.verification_ages(request, user)
    assert grants.one_shot_kinds(request, user, challenge_dict()["digest"]) == frozenset()


def test_challenge_without_one_shot_records_no_grant(logged_in: Client, user: Any, totp: Any) -> None:
    challenge_id = save_challenge(logged_in, one_shot=False, max_age=300)
    post(logged_in, {"token": code(totp), "challenge": challenge_id})
    request = session_request(logged_in, user)
    assert grants.one_shot_kinds(request, user, challenge_dict()["digest"]) == frozenset()


def test_next_falls_back_to_the_query_string(logged_in: Client, totp: Any) -> None:
    response = post(logged_in, {"token": code(totp)}, url=verify_url(next_url="/pay/?x=1"))
    assert response["Location"] == "/pay/?x=1"


def test_form_next_wins_over_the_query_string(logged_in: Client, totp: Any) -> None:
    response = post(logged_in, {"token": code(totp), "next": "/a/"}, url=verify_url(next_url="/b/"))
    assert response["Location"] == "/a/"


def test_spaces_in_the_code_are_ignored(logged_in: Client, totp: Any) -> None:
    token = code(totp)
    response = post(logged_in, {"token": f"  {token[:3]} {token[3:]} \n"})
    assert response.status_code == 303


def test_device_may_be_named_explicitly(logged_in: Client, totp: Any) -> None:
    response = post(logged_in, {"device": totp.persistent_id, "token": code(totp)})
    assert response.status_code == 303


# --- POST: failure --------------------------------------------------------------------


def test_wrong_code_shows_the_form_again(logged_in: Client, user: Any, totp: Any) -> None:
    challenge_id = save_challenge(logged_in)
    response = post(logged_in, {"token": wrong_code(totp), "challenge": challenge_id})
    assert response.status_code == 200
    html = response.content.decode()
    assert 'role="alert"' in html and "not valid" in html
    assert 'aria-invalid="true"' in html and "stepup-error" in html
    assert "Transfers over 1000" in html
    event = DecisionLog.objects.get(event="failed")
    assert (event.user, event.factor, event.outcome) == (user, "totp", "invalid_token")
    assert wrong_code(totp) not in (event.detail + str(event.attrs))
    request = session_request(logged_in, user)
    assert grants.verification_ages(request, user) == {}
    assert pending.get_challenge(request, challenge_id) is not None


def test_failure_sends_stepup_failed(logged_in: Client, user: Any, totp: Any) -> None:
    received: list[dict[str, Any]] = []

    def receiver(**kwargs: Any) -> None:
        received.append(kwargs)

    stepup_failed.connect(receiver)
    try:
        post(logged_in, {"token": wrong_code(totp)})
    finally:
        stepup_failed.disconnect(receiver)
    assert len(received) == 1
    assert received[0]["device"] == totp and received[0]["factor"] == "totp"
    assert received[0]["locked"] is False


def test_a_totp_code_is_accepted_once(logged_in: Client, user: Any, totp: Any) -> None:
    token = code(totp)
    assert post(logged_in, {"token": token}).status_code == 303
    again = post(logged_in, {"token": token})
    assert again.status_code == 200
    assert "not valid" in again.content.decode()


def test_backup_codes_are_single_use(logged_in: Client, backup: Any) -> None:
    assert post(logged_in, {"token": "bravo222"}).status_code == 303
    assert post(logged_in, {"token": "bravo222"}).status_code == 200
    assert sorted(backup.token_set.values_list("token", flat=True)) == ["alpha111", "charlie3", "delta444"]


@pytest.mark.parametrize(
    "token",
    ["", "   ", FULLWIDTH_DIGITS, "12345\u200b6", "123\t456", "1" * 65, "12345٦", "123456\x00"],
)
def test_unusable_codes_never_reach_the_device(logged_in: Client, totp: Any, token: str) -> None:
    response = post(logged_in, {"token": token})
    assert response.status_code == 200
    totp.refresh_from_db()
    assert totp.throttling_failure_count == 0


def test_device_must_be_chosen_when_there_are_several(logged_in: Client, totp: Any, backup: Any) -> None:
    response = post(logged_in, {"token": code(totp)})
    assert response.status_code == 200
    assert "Choose the device" in response.content.decode()


def test_another_users_device_is_a_form_error(logged_in: Client, totp: Any, other_user: Any) -> None:
    foreign = make_totp(other_user, "Mallory's phone")
    response = post(logged_in, {"device": foreign.persistent_id, "token": code(foreign)})
    assert response.status_code == 200
    assert "be used here" in response.content.decode()
    foreign.refresh_from_db()
    assert foreign.throttling_failure_count == 0 and foreign.last_t == -1
    assert DEVICE_ID_SESSION_KEY not in logged_in.session


@pytest.mark.parametrize(
    "device_id",
    [
        "auth.user/1",
        "garbage",
        "otp_totp.totpdevice/999999999999999999999999",
        "otp_totp.totpdevice/-1",
        "otp_totp.totpdevice/abc",
        "nope.nope/1",
        "/",
        "x" * 5000,
    ],
)
def test_unknown_device_ids_are_form_errors(logged_in: Client, totp: Any, device_id: str) -> None:
    response = post(logged_in, {"device": device_id, "token": code(totp)})
    assert response.status_code == 200
    assert "be used here" in response.content.decode()


def test_unconfirmed_device_is_refused(logged_in: Client, user: Any, totp: Any) -> None:
    pending = make_totp(user, "New phone", confirmed=False)
    response = post(logged_in, {"device": pending.persistent_id, "token": code(pending)})
    assert response.status_code == 200
    assert "be used here" in response.content.decode()


def test_device_of_a_kind_the_challenge_refuses(logged_in: Client, totp: Any, backup: Any) -> None:
    challenge_id = save_challenge(logged_in, factors=["static"])
    data = {"device": totp.persistent_id, "token": code(totp), "challenge": challenge_id}
    response = post(logged_in, data)
    assert response.status_code == 200
    assert "be used here" in response.content.decode()


def test_no_device_at_all(logged_in: Client) -> None:
    response = post(logged_in, {"token": "123456"})
    assert response.status_code == 200
    assert "no device" in response.content.decode()


# --- CSRF ---------------------------------------------------------------------------


def test_csrf_is_enforced(csrf_client: Client, totp: Any) -> None:
    response = csrf_client.post(VERIFY, {"token": code(totp)})
    assert response.status_code == 403
    totp.refresh_from_db()
    assert totp.last_t == -1


def test_csrf_token_from_the_form_works(csrf_client: Client, totp: Any) -> None:
    csrf_client.get(VERIFY)
    token = csrf_client.cookies["csrftoken"].value
    response = csrf_client.post(VERIFY, {"token": code(totp), "csrfmiddlewaretoken": token})
    assert response.status_code == 303


def test_with_several_devices_the_first_is_preselected(logged_in: Client, totp: Any, backup: Any) -> None:
    import re

    html = logged_in.get(VERIFY).content.decode()
    checked = re.findall(r'<input type="radio" name="device"[^>]*value="([^"]+)"[^>]* checked', html)
    assert len(checked) == 1
    assert checked[0] in (totp.persistent_id, backup.persistent_id)
    assert html.index(checked[0]) < html.index(
        ({totp.persistent_id, backup.persistent_id} - {checked[0]}).pop()
    )
