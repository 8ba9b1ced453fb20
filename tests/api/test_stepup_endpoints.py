"""``api-verify``, ``api-status``, ``api-decide`` as DRF views: status codes, headers, bodies, auth."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth.models import Permission
from rest_framework.test import APIClient

from stepup.models import DecisionLog
from tests.api.conftest import API_DECIDE, API_STATUS, API_VERIFY, code, wrong_code

pytestmark = pytest.mark.django_db

HARDENED = {"X-Frame-Options": "DENY", "Content-Security-Policy": "frame-ancestors 'none'"}


def hardened(response: Any) -> Any:
    for name, value in HARDENED.items():
        assert response[name] == value
    assert "no-store" in response["Cache-Control"]
    assert response["Content-Type"] == "application/json"
    return response


INPUT = {
    "action": "payments.transfer",
    "method": "POST",
    "roles": ["authenticated", "finance"],
    "origin": "203.0.113.9",
    "session_age": 120,
    "verified": {"totp": 60},
    "attrs": {"amount": 5000},
}


# --- api-verify ------------------------------------------------------------------------------


@pytest.mark.parametrize("client_kind", ["session_api", "token_api"])
def test_verify_statuses(request: Any, client_kind: str, totp: Any, settings: Any) -> None:
    api: APIClient = request.getfixturevalue(client_kind)
    ok = hardened(api.post(API_VERIFY, {"token": code(totp)}, format="json"))
    body = ok.json()
    assert ("stepup_token" in body) == (client_kind == "token_api")  # a session needs none
    body.pop("stepup_token", None)
    assert (ok.status_code, body) == (200, {"verified": True, "factor": "totp"})
    bad = hardened(api.post(API_VERIFY, {"token": wrong_code(totp)}, format="json"))
    assert bad.status_code == 400
    assert bad.json() == {
        "verified": False,
        "code": "invalid_token",
        "detail": "That code is not valid. Check it and try again.",
    }
    throttled = hardened(api.post(API_VERIFY, {"token": code(totp)}, format="json"))
    assert throttled.status_code == 429
    body = throttled.json()
    assert body["code"] == "throttled" and body["retry_after"] >= 1
    assert throttled["Retry-After"] == str(body["retry_after"])


@pytest.mark.parametrize(
    "device",
    ["auth.user/1", "stepup.grant/1", "nonsense", "a/b/c", "otp_totp.totpdevice/abc", "/", "x" * 300, 7],
)
def test_client_supplied_device_ids_never_reach_from_persistent_id(
    token_api: APIClient, totp: Any, device: Any, monkeypatch: Any
) -> None:
    from django_otp.models import Device

    seen: list[str] = []
    original = Device.from_persistent_id.__func__  # type: ignore[attr-defined]

    def spy(cls: Any, persistent_id: str, for_verify: bool = False) -> Any:
        seen.append(persistent_id)
        return original(cls, persistent_id, for_verify)

    monkeypatch.setattr(Device, "from_persistent_id", classmethod(spy))
    response = token_api.post(API_VERIFY, {"device": device, "token": code(totp)}, format="json")
    assert (response.status_code, response.json()["code"]) == (400, "invalid_device")
    assert seen == []  # only ids of the user's own devices are ever looked up


def test_verify_request_errors(session_api: APIClient, totp: Any) -> None:
    cases = [
        (session_api.post(API_VERIFY, "{", content_type="application/json"), 400, "invalid_json"),
        (session_api.post(API_VERIFY, "[1]", content_type="application/json"), 400, "invalid_json"),
        (session_api.post(API_VERIFY, "[" * 100000, content_type="application/json"), 400, "invalid_json"),
        (session_api.post(API_VERIFY, {"token": "1"}), 415, "unsupported_media_type"),
        (session_api.get(API_VERIFY), 405, "method_not_allowed"),
    ]
    for response, status, error in cases:
        hardened(response)
        assert (response.status_code, response.json()["code"], response.json()["verified"]) == (
            status,
            error,
            False,
        )


def test_verify_anonymous_and_bad_tokens_are_401(totp: Any) -> None:
    anonymous = APIClient().post(API_VERIFY, {"token": "123456"}, format="json")
    assert anonymous.status_code == 401
    assert anonymous.json()["code"] == "not_authenticated"
    assert anonymous["WWW-Authenticate"] == 'Session realm="api"'
    forged = APIClient()
    forged.credentials(HTTP_AUTHORIZATION="Token " + "f" * 40)
    response = forged.post(API_VERIFY, {"token": "123456"}, format="json")
    assert (response.status_code, response.json()["code"]) == (401, "authentication_failed")


def test_csrf_applies_to_sessions_not_tokens(user: Any, token: Any, totp: Any) -> None:
    browser = APIClient(enforce_csrf_checks=True)
    browser.force_login(user)
    refused = browser.post(API_VERIFY, {"token": code(totp)}, format="json")
    assert (refused.status_code, refused.json()["code"]) == (403, "permission_denied")
    assert "CSRF" in refused.json()["detail"]
    browser.get(API_STATUS, {"action": "x.y"})  # sets the CSRF cookie
    csrf = browser.cookies["csrftoken"].value
    accepted = browser.post(API_VERIFY, {"token": code(totp)}, format="json", HTTP_X_CSRFTOKEN=csrf)
    assert accepted.status_code == 200
    tokened = APIClient(enforce_csrf_checks=True)
    tokened.credentials(HTTP_AUTHORIZATION=f"Token {token.key}")
    assert tokened.post(API_VERIFY, {"token": code(totp)}, format="json").status_code == 400  # replay
    assert DecisionLog.objects.filter(event="failed").count() == 1  # the replay, checked: no CSRF wall


def test_session_auth_is_available_even_if_the_project_dropped_it(
    settings: Any, session_api: APIClient, totp: Any
) -> None:
    settings.REST_FRAMEWORK = {
        **settings.REST_FRAMEWORK,
        "DEFAULT_AUTHENTICATION_CLASSES": ["rest_framework.authentication.TokenAuthentication"],
    }
    assert session_api.post(API_VERIFY, {"token": code(totp)}, format="json").status_code == 200


# --- api-status ---------------------------------------------------------------------------


def test_status_bodies(token_api: APIClient, policy: Any) -> None:
    policy("things", actions=["things.change"], methods=["POST"], max_age=60, factors=["totp"])
    response = hardened(token_api.get(API_STATUS, {"action": "things.change", "method": "POST"}))
    assert response.status_code == 200
    assert response.json() == {
        "outcome": "step_up",
        "max_age": 60,
        "factors": ["totp"],
        "policies": ["things"],
        "reasons": ["things: needs totp verified within 60s"],
        "verify_url": "/stepup/verify/",
    }
    allowed = token_api.get(API_STATUS, {"action": "things.change", "format": "json"}).json()
    assert allowed == {
        "outcome": "allow",
        "max_age": None,
        "factors": [],
        "policies": [],
        "reasons": ["no policy applies"],
        "verify_url": None,
    }


def test_status_errors(token_api: APIClient) -> None:
    invalid = hardened(token_api.get(API_STATUS, {"method": "POST"}))
    assert invalid.status_code == 400 and invalid.json()["code"] == "invalid_input"
    assert invalid.json()["errors"][0]["field"] == "input"
    assert token_api.get(API_STATUS + "?action=a.b&action=c.d").json()["code"] == "invalid_query"
    assert hardened(token_api.post(API_STATUS, {}, format="json")).status_code == 405
    assert APIClient().get(API_STATUS, {"action": "a.b"}).status_code == 401


def test_status_ignores_accept_headers(token_api: APIClient) -> None:
    for accept in ("text/html", "application/xml", "*/*"):
        response = token_api.get(API_STATUS, {"action": "a.b"}, HTTP_ACCEPT=accept)
        assert (response.status_code, response["Content-Type"]) == (200, "application/json")


# --- api-decide -----------------------------------------------------------------------------


def test_decide_with_a_token(token_api: APIClient, auditor: Any, synced_policies: None) -> None:
    response = hardened(token_api.post(API_DECIDE, INPUT, format="json"))
    assert response.status_code == 200
    body = response.json()
    assert body["decision"]["outcome"] == "step_up"
    assert body["decision"]["policies"] == ["payments-transfer", "payments-transfer-large"]
    assert body["decision"]["max_age"] == 0 and body["decision"]["factors"] == ["totp", "webauthn"]
    assert {t["policy"] for t in body["trace"]} >= {"payments-transfer", "payments-transfer-large"}


def test_decide_statuses(token_api: APIClient, user: Any, synced_policies: None) -> None:
    assert APIClient().post(API_DECIDE, INPUT, format="json").status_code == 401
    forbidden = hardened(token_api.post(API_DECIDE, INPUT, format="json"))
    assert (forbidden.status_code, forbidden.json()["code"]) == (403, "permission_denied")
    user.user_permissions.add(
        Permission.objects.get(codename="query_decision", content_type__app_label="stepup")
    )
    invalid = token_api.post(API_DECIDE, {**INPUT, "verified": {"sms": 1}}, format="json")
    assert invalid.status_code == 400
    assert invalid.json()["errors"] == [
        {"field": "input.verified.sms", "message": invalid.json()["errors"][0]["message"]}
    ]
    assert token_api.post(API_DECIDE, "nope", content_type="application/json").status_code == 400
    assert token_api.post(API_DECIDE, {"action": "x.y"}).status_code == 415  # multipart


def test_decide_ignores_the_callers_own_grants(
    token_api: APIClient, auditor: Any, totp: Any, synced_policies: None
) -> None:
    assert token_api.post(API_VERIFY, {"token": code(totp)}, format="json").status_code == 200
    unverified = {k: v for k, v in INPUT.items() if k != "verified"} | {"attrs": {"amount": 10}}
    assert token_api.post(API_DECIDE, unverified, format="json").json()["decision"]["outcome"] == "step_up"
