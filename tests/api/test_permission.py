"""``StepUpPermission``: every status code, header and body, with session and token clients."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from rest_framework.authentication import (
    BasicAuthentication,
    SessionAuthentication,
    TokenAuthentication,
)
from rest_framework.test import APIClient

from stepup import grants, store
from stepup.exceptions import PolicyStoreUnavailable
from stepup.models import DecisionLog, PendingChallenge
from stepup.permissions import StepUpPermission
from stepup.testing import flush_decision_log
from tests.api import urls
from tests.api.conftest import parse_challenge, rfc9470_params

pytestmark = pytest.mark.django_db

GUARDED = "/t/guarded/"


@pytest.fixture
def things(policy: Any) -> Any:
    return policy(
        "things-change",
        description="Changing things needs a recent authenticator code.",
        actions=["things.change"],
        methods=["POST", "PUT", "PATCH", "DELETE"],
        max_age=120,
        factors=["totp", "webauthn"],
    )


def challenged(response: Any) -> dict[str, Any]:
    """Assert a complete RFC 9470 step-up refusal; return its JSON body."""
    assert response.status_code == 401, (response.status_code, response.content)
    assert response["Content-Type"] == "application/json"
    body = response.json()
    assert set(body) == {"code", "max_age", "factors", "verify_url", "challenge"}
    assert body["code"] == "stepup_required"
    params = rfc9470_params(response["WWW-Authenticate"])
    assert int(params["max_age"]) == body["max_age"]
    verify = urlsplit(body["verify_url"])
    assert verify.path == "/stepup/verify/"
    assert parse_qs(verify.query)["challenge"] == [body["challenge"]]
    return body


# --- 401: step-up needed ----------------------------------------------------------------------


def test_session_client_gets_the_rfc9470_401(session_api: APIClient, totp: Any, things: Any) -> None:
    # tests/settings.py puts SessionAuthentication first: the case where DRF makes 401s into 403s
    response = session_api.post(GUARDED, {"amount": 5}, format="json")
    body = challenged(response)
    assert body["max_age"] == 120
    assert body["factors"] == ["totp", "webauthn"]
    assert parse_qs(urlsplit(body["verify_url"]).query)["next"] == [GUARDED]
    params = rfc9470_params(response["WWW-Authenticate"])
    assert params == {
        "error": "insufficient_user_authentication",
        "error_description": "A second factor verified within the last 120 seconds is required",
        "max_age": "120",
    }
    assert urls.CALLS == []
    assert DecisionLog.objects.filter(event="challenged", action="things.change").count() == 1


@pytest.mark.parametrize(
    "classes",
    [
        [SessionAuthentication],
        [SessionAuthentication, BasicAuthentication],
        [TokenAuthentication, SessionAuthentication],
    ],
)
def test_the_401_stays_a_401_whatever_the_authenticators(
    monkeypatch: Any, session_api: APIClient, totp: Any, things: Any, classes: list[type]
) -> None:
    # DRF reads DEFAULT_AUTHENTICATION_CLASSES when a view class is defined: set it on the view
    monkeypatch.setattr(urls.Guarded, "authentication_classes", classes)
    challenged(session_api.post(GUARDED, {"amount": 5}, format="json"))
    assert urls.CALLS == []


def test_token_client_gets_the_same_401(token_api: APIClient, totp: Any, things: Any) -> None:
    response = token_api.post(GUARDED, {"amount": 5}, format="json")
    body = challenged(response)
    assert body["factors"] == ["totp", "webauthn"]
    assert "sessionid" not in response.cookies  # a token client gets no session
    challenge = PendingChallenge.objects.get(challenge_id=body["challenge"])
    assert challenge.subject.startswith("c:")
    assert challenge.data["action"] == "things.change"
    assert challenge.data["attrs"] == {"amount": "5"}
    assert urls.CALLS == []


def test_one_shot_challenge_says_max_age_0(session_api: APIClient, totp: Any, policy: Any) -> None:
    policy("big", actions=["things.change"], when={"attrs": {"amount": {"gt": 1000}}}, max_age=0)
    response = session_api.post(GUARDED, {"amount": 5000}, format="json")
    body = challenged(response)
    assert body["max_age"] == 0
    assert rfc9470_params(response["WWW-Authenticate"])["error_description"] == (
        "A fresh second-factor verification is required for this request"
    )
    assert session_api.post(GUARDED, {"amount": 50}, format="json").status_code == 201


def test_acr_values_for_mapped_factor_kinds(
    settings: Any, session_api: APIClient, totp: Any, things: Any
) -> None:
    settings.STEPUP = {
        **settings.STEPUP,
        "ACR_VALUES": {
            "static": "urn:acme:backup",
            "webauthn": "phr",
            "totp": "urn:acme:mfa:otp",
            "hotp": 'bad "value"',
        },
    }
    params = rfc9470_params(session_api.post(GUARDED, {}, format="json")["WWW-Authenticate"])
    assert params["acr_values"] == "phr urn:acme:mfa:otp"  # the policy's kinds, in the setting's order


def test_acr_values_for_any_kind_and_unsafe_values(
    settings: Any, session_api: APIClient, totp: Any, policy: Any
) -> None:
    policy("any-kind", actions=["things.change"])
    settings.STEPUP = {
        **settings.STEPUP,
        "ACR_VALUES": {"totp": "urn:a", "static": "urn:a", "hotp": "two words", "email": "é"},
    }
    header = session_api.post(GUARDED, {}, format="json")["WWW-Authenticate"]
    assert rfc9470_params(header)["acr_values"] == "urn:a"


def test_no_acr_values_without_a_mapping(session_api: APIClient, totp: Any, things: Any) -> None:
    header = session_api.post(GUARDED, {}, format="json")["WWW-Authenticate"]
    assert "acr_values" not in rfc9470_params(header)


@pytest.mark.parametrize(
    "description", ['evil", max_age=0, x="', "back\\slash", "new\nline", "ünïcode", 'q"uote']
)
def test_policy_descriptions_never_break_the_header(description: str) -> None:
    from stepup.responses import www_authenticate

    params = rfc9470_params(www_authenticate(30, description, factors=["totp"]))
    assert params["max_age"] == "30"


def test_parser_rejects_what_rfc7235_does() -> None:
    for bad in (
        'Bearer error="x", max_age=1,',  # trailing comma
        'Bearer error="x" max_age=1',  # no comma
        'Bearer error="x\nmax_age=1"',  # control character
        'Bearer error="unterminated',
        "Bearer error=two words",
        "Bear er",
        'Bearer error="a", error="b"',  # a repeated parameter
    ):
        with pytest.raises(AssertionError):
            parse_challenge(bad)


# --- allowed after verification, then the grants' limits --------------------------------------


def test_allowed_once_verified(session_api: APIClient, user: Any, totp: Any, things: Any) -> None:
    body = challenged(session_api.post(GUARDED, {"amount": 5}, format="json"))
    from tests.api.conftest import API_VERIFY, code

    verified = session_api.post(
        API_VERIFY, {"token": code(totp), "challenge": body["challenge"]}, format="json"
    )
    assert verified.status_code == 200
    assert session_api.post(GUARDED, {"amount": 5}, format="json").status_code == 201
    assert urls.CALLS == ["guarded-post 5"]


# --- 403: deny, and no usable device ---------------------------------------------------------


def test_deny_is_403_stepup_denied(session_api: APIClient, totp: Any, policy: Any) -> None:
    policy("no-big", actions=["things.change"], when={"attrs": {"amount": {"gt": 100}}}, decision="deny")
    response = session_api.post(GUARDED, {"amount": 500}, format="json")
    assert response.status_code == 403
    assert response.json() == {"code": "stepup_denied", "detail": "This request is denied by policy."}
    assert "WWW-Authenticate" not in response
    assert urls.CALLS == []
    assert DecisionLog.objects.filter(event="denied").count() == 1


def test_deny_for_token_clients(token_api: APIClient, totp: Any, policy: Any) -> None:
    policy("no-change", actions=["things.change"], decision="deny")
    response = token_api.post(GUARDED, {}, format="json")
    assert (response.status_code, response.json()["code"]) == (403, "stepup_denied")


def test_no_usable_device_is_403_enroll_required(
    session_api: APIClient, user: Any, things: Any, settings: Any
) -> None:
    from django_otp.plugins.otp_email.models import EmailDevice

    settings.STEPUP = {**settings.STEPUP, "ENROLL_URL": "stepup:devices"}
    EmailDevice.objects.create(user=user, name="Mail", confirmed=True, email="e@example.com")
    response = session_api.post(GUARDED, {}, format="json")
    assert response.status_code == 403
    assert response.json() == {
        "code": "stepup_enroll_required",
        "detail": "This action needs a second factor, and you have no device that can provide it.",
        "factors": ["totp", "webauthn"],
        "enroll_url": "/stepup/devices/",
    }
    assert PendingChallenge.objects.count() == 0
    assert urls.CALLS == []


# --- not logged in ---------------------------------------------------------------------------


def test_anonymous_is_refused_as_drf_refuses_it(client: Any, things: Any) -> None:
    api = APIClient()
    response = api.post("/t/urlonly/", {}, format="json")  # StepUpPermission alone, no policy
    assert response.status_code == 200  # nothing applies: anonymous is fine
    response = api.post(GUARDED, {}, format="json")  # IsAuthenticated first
    assert response.status_code == 403  # SessionAuthentication first: DRF's usual 403
    assert response.json()["detail"] == "Authentication credentials were not provided."


def test_anonymous_with_an_applying_policy_gets_drfs_answer(monkeypatch: Any, policy: Any) -> None:
    policy("urlonly", urls=["t-urlonly"], methods=["POST"])
    monkeypatch.setattr(urls.UrlOnly, "authentication_classes", [TokenAuthentication])
    response = APIClient().post("/t/urlonly/", {}, format="json")
    assert response.status_code == 401
    assert response["WWW-Authenticate"] == "Token"  # DRF's NotAuthenticated, not a step-up challenge
    assert urls.CALLS == []
    assert PendingChallenge.objects.count() == 0


def test_a_bad_token_is_refused_before_any_decision(things: Any) -> None:
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION="Token " + "0" * 40)
    response = api.post(GUARDED, {}, format="json")
    assert response.status_code == 403  # AuthenticationFailed, made a 403 by SessionAuthentication first
    flush_decision_log()
    assert DecisionLog.objects.count() == 0


# --- 503: no policies ------------------------------------------------------------------------


def test_unavailable_policies_are_503_for_unsafe_url_only_requests(
    session_api: APIClient, monkeypatch: Any
) -> None:
    def unavailable() -> Any:
        raise PolicyStoreUnavailable("down")

    monkeypatch.setattr(store, "get_policy_set", unavailable)
    response = session_api.post("/t/urlonly/", {}, format="json")
    assert response.status_code == 503
    assert response["Retry-After"] == "30"
    assert response.json()["code"] == "stepup_unavailable"
    assert session_api.get("/t/urlonly/").status_code == 200  # safe: allowed
    assert urls.CALLS == ["urlonly-get"]


def test_unavailable_policies_give_declared_actions_the_default(
    session_api: APIClient, totp: Any, monkeypatch: Any
) -> None:
    def unavailable() -> Any:
        raise PolicyStoreUnavailable("down")

    monkeypatch.setattr(store, "get_policy_set", unavailable)
    body = challenged(session_api.post(GUARDED, {}, format="json"))
    assert body["max_age"] == 300 and body["factors"] == []


# --- action, attributes, URL policies ---------------------------------------------------------


def test_get_stepup_action_wins(session_api: APIClient, totp: Any, policy: Any) -> None:
    policy("reads", actions=["things.read"], max_age=60)
    policy("never", actions=["never.used"], decision="deny")
    challenged(session_api.get("/t/bymethod/"))
    assert session_api.delete("/t/bymethod/").status_code == 401  # things.change: uncovered → default
    assert DecisionLog.objects.filter(event="denied").count() == 0
    assert urls.CALLS == []


def test_attributes_reach_the_policies(session_api: APIClient, totp: Any, policy: Any) -> None:
    policy("big", actions=["things.change"], when={"attrs": {"amount": {"gt": 1000}}}, max_age=60)
    assert session_api.post(GUARDED, {"amount": "999.99"}, format="json").status_code == 201
    challenged(session_api.post(GUARDED, {"amount": "1000.01"}, format="json"))
    challenged(session_api.post(GUARDED, {"amount": "lots"}, format="json"))  # wrong type: fail closed


def test_attributes_must_be_a_mapping(session_api: APIClient, policy: Any) -> None:
    with pytest.raises(TypeError, match="must return a mapping"):
        session_api.post("/t/bad-attributes/", {}, format="json")


def test_an_action_must_be_a_string() -> None:
    from types import SimpleNamespace

    with pytest.raises(TypeError):
        StepUpPermission.get_action(None, SimpleNamespace(stepup_action=5))  # type: ignore[arg-type]
    assert StepUpPermission.get_action(None, SimpleNamespace()) is None  # type: ignore[arg-type]


def test_url_policies_are_part_of_the_decision_and_not_challenged_twice(
    session_api: APIClient, user: Any, totp: Any, policy: Any
) -> None:
    policy("guarded-url", urls=["t-guarded"], methods=["POST"], max_age=30)
    policy("things", actions=["things.change"], max_age=600)
    body = challenged(session_api.post(GUARDED, {}, format="json"))
    assert body["max_age"] == 30
    assert DecisionLog.objects.filter(event="challenged").count() == 1  # middleware stayed out
    request = _session_request(session_api, user)
    grants.record_verification(request, user, "totp")
    request.session.save()
    session_api.cookies["sessionid"] = request.session.session_key
    assert session_api.post(GUARDED, {}, format="json").status_code == 201


def test_url_only_permission(session_api: APIClient, totp: Any, policy: Any) -> None:
    policy("urlonly", urls=["t-urlonly"], methods=["POST"])
    challenged(session_api.post("/t/urlonly/", {}, format="json"))
    assert session_api.get("/t/urlonly/").status_code == 200
    assert DecisionLog.objects.filter(event="challenged").count() == 1
    assert urls.CALLS == ["urlonly-get"]


def test_url_only_view_costs_no_stepup_query_when_nothing_matches(
    session_api: APIClient, policy: Any
) -> None:
    policy("elsewhere", urls=["t-guarded"])
    store.get_policy_set()  # warm
    with CaptureQueriesContext(connection) as queries:
        assert session_api.post("/t/urlonly/", {}, format="json").status_code == 200
    assert [q["sql"] for q in queries.captured_queries if "stepup_" in q["sql"]] == []


def test_drf_view_without_the_permission_holds_token_clients_to_url_policies(
    token_api: APIClient, session_api: APIClient, totp: Any, policy: Any
) -> None:
    """The middleware authenticates a token client the way the DRF view will, and challenges it."""
    policy("unguarded", urls=["t-unguarded"], methods=["POST"])
    response = token_api.post("/t/unguarded/", {}, format="json")
    assert (response.status_code, response.json()["code"]) == (401, "stepup_required")
    challenged(session_api.post("/t/unguarded/", {}, format="json"))
    assert urls.CALLS == []


# --- format suffixes and ?format= -------------------------------------------------------------


@pytest.mark.parametrize("path", ["/t/guarded/", "/t/guarded.json", "/t/guarded/?format=json"])
def test_format_suffixes_reach_the_same_decision(
    session_api: APIClient, totp: Any, policy: Any, path: str
) -> None:
    policy("guarded-url", urls=["t-guarded"], methods=["POST"], max_age=30)
    policy("things", actions=["things.change"], methods=["POST"], max_age=600)
    body = challenged(session_api.post(path, {"amount": 1}, format="json"))
    assert body["max_age"] == 30  # the URL policy matched the suffixed route too
    challenge = PendingChallenge.objects.get(challenge_id=body["challenge"]).data
    assert challenge["url_name"] == "t-guarded"
    assert challenge["action"] == "things.change"
    assert session_api.get(path).status_code == 200  # GET: no policy applies


@pytest.mark.parametrize("path", ["/t/guarded/", "/t/guarded.json", "/t/guarded/?format=json"])
def test_format_suffixes_are_allowed_alike(
    token_api: APIClient, user: Any, token: Any, totp: Any, things: Any, path: str
) -> None:
    from tests.api.conftest import API_VERIFY, code

    assert token_api.post(API_VERIFY, {"token": code(totp)}, format="json").status_code == 200
    assert token_api.post(path, {"amount": 1}, format="json").status_code == 201


# --- header survives DRF's exception handler ----------------------------------------------------


def test_a_custom_exception_handler_that_calls_drfs_keeps_status_and_header(
    settings: Any, session_api: APIClient, totp: Any, things: Any
) -> None:
    settings.REST_FRAMEWORK = {
        **settings.REST_FRAMEWORK,
        "EXCEPTION_HANDLER": "tests.api.test_permission.wrapping_handler",
    }
    response = session_api.post(GUARDED, {}, format="json")
    assert response.status_code == 401
    rfc9470_params(response["WWW-Authenticate"])
    assert response.json()["error"]["code"] == "stepup_required"


def wrapping_handler(exc: Exception, context: dict[str, Any]) -> Any:
    from rest_framework.views import exception_handler

    response = exception_handler(exc, context)
    if response is not None:
        response.data = {"error": response.data}
    return response


def _session_request(client: APIClient, user: Any) -> Any:
    from django.http import HttpRequest

    request = HttpRequest()
    request.session = client.session
    request.user = user
    return request
