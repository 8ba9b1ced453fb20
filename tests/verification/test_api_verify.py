"""``stepup:api-verify``: the JSON twin of the form, through the same flow."""

from __future__ import annotations

import json
from typing import Any

import pytest
from django.test import Client

from stepup import grants, pending
from stepup.models import DecisionLog
from tests.verification.conftest import (
    API_VERIFY,
    FULLWIDTH_DIGITS,
    challenge_dict,
    code,
    make_totp,
    save_challenge,
    session_request,
    wrong_code,
)

pytestmark = pytest.mark.django_db


def api_post(client: Client, data: Any, **extra: Any) -> Any:
    body = data if isinstance(data, (str, bytes)) else json.dumps(data)
    return client.post(API_VERIFY, body, content_type="application/json", **extra)


def test_verified(logged_in: Client, user: Any, totp: Any) -> None:
    challenge_id = save_challenge(logged_in)
    before = logged_in.session.session_key
    response = api_post(
        logged_in, {"device": totp.persistent_id, "token": code(totp), "challenge": challenge_id}
    )
    assert response.status_code == 200
    assert response.json() == {"verified": True, "factor": "totp"}
    assert "no-store" in response["Cache-Control"]
    assert response["X-Frame-Options"] == "DENY"
    assert response["Content-Security-Policy"] == "frame-ancestors 'none'"
    assert logged_in.session.session_key != before
    request = session_request(logged_in, user)
    assert grants.one_shot_kinds(request, user, challenge_dict()["digest"]) == frozenset({"totp"})
    assert pending.get_challenge(request, challenge_id) is None
    assert DecisionLog.objects.filter(event="verified").count() == 1


def test_device_may_be_omitted_with_one_device(logged_in: Client, totp: Any) -> None:
    assert api_post(logged_in, {"token": code(totp)}).json() == {"verified": True, "factor": "totp"}


def test_bad_token(logged_in: Client, totp: Any) -> None:
    response = api_post(logged_in, {"token": wrong_code(totp)})
    assert response.status_code == 400
    body = response.json()
    assert body["verified"] is False and body["code"] == "invalid_token"


@pytest.mark.parametrize("token", [None, 123456, ["123456"], {"t": 1}, FULLWIDTH_DIGITS, "9" * 65])
def test_unusable_token_types(logged_in: Client, totp: Any, token: Any) -> None:
    response = api_post(logged_in, {"token": token})
    assert response.status_code == 400
    assert response.json()["code"] == "invalid_token"
    totp.refresh_from_db()
    assert totp.throttling_failure_count == 0


@pytest.mark.parametrize("device", [123, ["x"], "auth.user/1", "otp_totp.totpdevice/99999"])
def test_unusable_devices(logged_in: Client, totp: Any, device: Any) -> None:
    response = api_post(logged_in, {"device": device, "token": code(totp)})
    assert response.status_code == 400
    assert response.json()["code"] == "invalid_device"


def test_another_users_device(logged_in: Client, other_user: Any, totp: Any) -> None:
    foreign = make_totp(other_user)
    response = api_post(logged_in, {"device": foreign.persistent_id, "token": code(foreign)})
    assert response.status_code == 400
    assert response.json()["code"] == "invalid_device"


def test_no_device(logged_in: Client) -> None:
    response = api_post(logged_in, {"token": "123456"})
    assert response.status_code == 400 and response.json()["code"] == "no_device"


def test_throttled(logged_in: Client, totp: Any) -> None:
    api_post(logged_in, {"token": wrong_code(totp)})
    response = api_post(logged_in, {"token": code(totp)})
    assert response.status_code == 429
    body = response.json()
    assert body["code"] == "throttled" and body["retry_after"] >= 1
    assert response["Retry-After"] == str(body["retry_after"])


def test_anonymous(client: Client) -> None:
    response = api_post(client, {"token": "123456"})
    assert response.status_code == 401
    assert response.json()["code"] == "not_authenticated"


@pytest.mark.parametrize("body", ["{", " ", "[1, 2]", '"token"', "null", b"\xff\xfe", "[" * 100000])
def test_malformed_json(logged_in: Client, totp: Any, body: Any) -> None:
    response = api_post(logged_in, body)
    assert response.status_code == 400
    assert response.json()["code"] == "invalid_json"


def test_form_encoded_body_is_refused(logged_in: Client, totp: Any) -> None:
    response = logged_in.post(API_VERIFY, {"token": code(totp)})
    assert response.status_code == 415


def test_get_is_not_allowed(logged_in: Client) -> None:
    assert logged_in.get(API_VERIFY).status_code == 405


def test_csrf_is_enforced(csrf_client: Client, totp: Any) -> None:
    response = api_post(csrf_client, {"token": code(totp)})
    assert response.status_code == 403
    totp.refresh_from_db()
    assert totp.last_t == -1


def test_csrf_header_is_accepted(csrf_client: Client, totp: Any) -> None:
    csrf_client.get("/stepup/verify/")
    token = csrf_client.cookies["csrftoken"].value
    response = api_post(csrf_client, {"token": code(totp)}, HTTP_X_CSRFTOKEN=token)
    assert response.status_code == 200


def test_claims_in_the_body_are_ignored(logged_in: Client, user: Any, totp: Any) -> None:
    response = api_post(logged_in, {"token": wrong_code(totp), "verified": True, "factor": "totp"})
    assert response.status_code == 400
    assert grants.verification_ages(session_request(logged_in, user), user) == {}


def test_replay_over_the_api(logged_in: Client, totp: Any) -> None:
    token = code(totp)
    assert api_post(logged_in, {"token": token}).status_code == 200
    assert api_post(logged_in, {"token": token}).status_code == 400
