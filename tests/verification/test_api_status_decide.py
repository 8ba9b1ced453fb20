"""``stepup:api-status`` (this session's decision), ``stepup:api-decide`` (a test input)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from django.contrib.auth.models import AnonymousUser
from django.contrib.sessions.backends.db import SessionStore
from django.test import Client, RequestFactory

from stepup import api, grants, store
from stepup.exceptions import PolicyStoreUnavailable
from stepup.models import Policy
from tests.verification.conftest import (
    API_DECIDE,
    API_STATUS,
    VERIFY,
    challenge_dict,
    code,
    save_challenge,
    session_request,
)

pytestmark = pytest.mark.django_db


@pytest.fixture
def policies(db: Any) -> None:
    Policy.objects.create(
        policy_id="billing-update",
        description="Changing billing details needs a second factor from the last 5 minutes.",
        actions=["billing.update"],
        decision="step_up",
        max_age=300,
    )
    Policy.objects.create(
        policy_id="payments-large",
        description="Transfers over 1000 need a fresh second factor.",
        actions=["payments.transfer"],
        when={"attrs": {"amount": {"gt": 1000}}},
        decision="step_up",
        max_age=0,
        factors=["totp"],
    )
    Policy.objects.create(
        policy_id="admin-writes",
        actions=["admin.*"],
        methods=["POST", "DELETE"],
        decision="deny",
    )


def status(client: Client, **params: Any) -> Any:
    return client.get(API_STATUS, params)


# --- api-status --------------------------------------------------------------------------


def test_status_anonymous(client: Client, policies: None) -> None:
    response = status(client, action="billing.update")
    assert response.status_code == 401
    assert response.json()["code"] == "not_authenticated"


@pytest.mark.usefixtures("policies")
def test_status_step_up(logged_in: Client) -> None:
    response = status(logged_in, action="billing.update", method="POST")
    assert response.status_code == 200
    assert response.json() == {
        "outcome": "step_up",
        "max_age": 300,
        "factors": [],
        "policies": ["billing-update"],
        "reasons": ["billing-update: needs any factor verified within 300s"],
        "verify_url": "/stepup/verify/",
    }
    assert "no-store" in response["Cache-Control"]
    assert response["X-Frame-Options"] == "DENY"


@pytest.mark.usefixtures("policies")
def test_status_ignores_client_claims(logged_in: Client) -> None:
    response = logged_in.get(
        API_STATUS
        + "?action=billing.update&verified=totp&verified.totp=1&one_shot=totp&outcome=allow"
        + "&roles=superuser&origin=10.0.0.1&session_age=1"
    )
    assert response.json()["outcome"] == "step_up"


@pytest.mark.usefixtures("policies")
def test_status_after_verification(logged_in: Client, totp: Any) -> None:
    assert logged_in.post(VERIFY, {"token": code(totp)}).status_code == 303
    body = status(logged_in, action="billing.update").json()
    assert body["outcome"] == "allow" and body["verify_url"] is None
    assert body["policies"] == ["billing-update"]


@pytest.mark.usefixtures("policies")
def test_status_uses_attributes(logged_in: Client) -> None:
    assert (
        status(logged_in, action="payments.transfer", **{"attrs.amount": "5000"}).json()["outcome"]
        == "step_up"
    )
    small = status(logged_in, action="payments.transfer", **{"attrs.amount": "10"}).json()
    assert small["outcome"] == "allow" and small["policies"] == []


@pytest.mark.usefixtures("policies")
def test_status_uses_the_given_method(logged_in: Client) -> None:
    assert status(logged_in, action="admin.delete", method="GET").json()["outcome"] == "allow"
    assert status(logged_in, action="admin.delete", method="delete").json()["outcome"] == "deny"
    assert status(logged_in, action="admin.delete", method="HEAD").json()["outcome"] == "allow"
    assert status(logged_in, action="admin.delete").json()["outcome"] == "allow"


@pytest.mark.usefixtures("policies")
def test_status_uncovered_action_gets_the_default(logged_in: Client) -> None:
    body = status(logged_in, action="nobody.wrote.a.policy").json()
    assert body["outcome"] == "step_up" and body["max_age"] == 300


@pytest.mark.usefixtures("policies")
def test_status_reports_but_never_consumes_a_one_shot_grant(logged_in: Client, user: Any, totp: Any) -> None:
    challenge_id = save_challenge(logged_in, attrs={"amount": "5000"}, factors=["totp"])
    logged_in.post(VERIFY, {"token": code(totp), "challenge": challenge_id})
    digest = challenge_dict(attrs={"amount": "5000"})["digest"]
    for _ in range(3):
        assert (
            status(logged_in, action="payments.transfer", **{"attrs.amount": "5000"}).json()["outcome"]
            == "allow"
        )
    assert grants.one_shot_kinds(session_request(logged_in, user), user, digest) == frozenset({"totp"})
    # bound to the attributes: another amount is not authorized by it
    assert (
        status(logged_in, action="payments.transfer", **{"attrs.amount": "5001"}).json()["outcome"]
        == "step_up"
    )


@pytest.mark.parametrize(
    "query",
    [
        "",
        "?method=POST",
        "?action=",
        "?action=billing.update&method=FOO",
        "?action=billing.update&action=other",
        "?action=billing.update&attrs.amount=1&attrs.amount=2",
    ],
)
@pytest.mark.usefixtures("policies")
def test_status_invalid_queries(logged_in: Client, query: str) -> None:
    response = logged_in.get(API_STATUS + query)
    assert response.status_code == 400
    assert response.json()["code"] in ("invalid_input", "invalid_query")


@pytest.mark.usefixtures("policies")
def test_status_refuses_post(logged_in: Client) -> None:
    assert logged_in.post(API_STATUS, {"action": "billing.update"}).status_code == 405


@pytest.mark.usefixtures("policies")
def test_status_through_request_factory(rf: RequestFactory, user: Any) -> None:
    request = rf.get(API_STATUS, {"action": "billing.update"})
    request.user = user
    request.session = SessionStore()
    response = api.api_status(request).render()  # a DRF view: rendered by the handler normally
    assert response.status_code == 200
    assert json.loads(response.content)["outcome"] == "step_up"
    request.user = AnonymousUser()
    assert api.api_status(request).status_code == 401


# --- api-decide --------------------------------------------------------------------------


def decide(client: Client, data: Any, **extra: Any) -> Any:
    body = data if isinstance(data, str) else json.dumps(data)
    return client.post(API_DECIDE, body, content_type="application/json", **extra)


INPUT = {
    "action": "payments.transfer",
    "method": "POST",
    "roles": ["authenticated", "finance"],
    "origin": "203.0.113.9",
    "session_age": 120,
    "verified": {"totp": 900},
    "attrs": {"amount": 5000},
}


def test_decide_anonymous(client: Client) -> None:
    assert decide(client, INPUT).status_code == 401


@pytest.mark.usefixtures("policies")
def test_decide_needs_the_permission(logged_in: Client) -> None:
    response = decide(logged_in, INPUT)
    assert response.status_code == 403
    assert response.json()["code"] == "permission_denied"


@pytest.mark.usefixtures("policies", "auditor")
def test_decide_returns_the_decision_and_trace(logged_in: Client) -> None:
    response = decide(logged_in, INPUT)
    assert response.status_code == 200
    body = response.json()
    assert body["decision"]["outcome"] == "step_up"
    assert body["decision"]["policies"] == ["payments-large"]
    assert body["decision"]["factors"] == ["totp"] and body["decision"]["max_age"] == 0
    (trace,) = body["trace"]
    assert trace["policy"] == "payments-large" and trace["applied"] and trace["effect"] == "unsatisfied"
    assert trace["conditions"] == [
        {"field": "when.attrs.amount.gt", "held": True, "detail": "attrs.amount > 1000"}
    ]
    assert response["X-Frame-Options"] == "DENY"


@pytest.mark.usefixtures("policies", "auditor")
def test_decide_uses_the_input_not_the_session(logged_in: Client) -> None:
    body = decide(logged_in, {"action": "billing.update", "verified": {"totp": 60}}).json()
    assert body["decision"]["outcome"] == "allow"
    one_shot = decide(logged_in, {**INPUT, "verified": {"totp": 0}}).json()
    assert one_shot["decision"]["outcome"] == "allow" and one_shot["decision"]["one_shot"] is True


@pytest.mark.usefixtures("policies")
def test_superuser_may_decide(client: Client, django_user_model: Any) -> None:
    client.force_login(django_user_model.objects.create_superuser("root", password="pw"))
    assert decide(client, INPUT).status_code == 200


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({"method": "POST"}, "input"),
        ({"action": 5}, "input.action"),
        ({"action": "x", "method": "FETCH"}, "input.method"),
        ({"action": "x", "verified": {"sms": 5}}, "input.verified.sms"),
        ({"action": "x", "origin": "not-an-ip"}, "input.origin"),
        ({"action": "x", "session_age": -1}, "input.session_age"),
        ({"action": "x", "surprise": 1}, "input.surprise"),
        ({"action": "x", "attrs": [1]}, "input.attrs"),
    ],
)
@pytest.mark.usefixtures("policies", "auditor")
def test_decide_invalid_input(logged_in: Client, data: dict[str, Any], field: str) -> None:
    response = decide(logged_in, data)
    assert response.status_code == 400
    body = response.json()
    assert body["code"] == "invalid_input"
    assert field in [e["field"] for e in body["errors"]]


@pytest.mark.parametrize("body", ["{", "[]", "1"])
@pytest.mark.usefixtures("auditor")
def test_decide_malformed_json(logged_in: Client, body: str) -> None:
    assert decide(logged_in, body).status_code == 400


@pytest.mark.usefixtures("policies", "auditor")
def test_decide_enforces_csrf(csrf_client: Client) -> None:
    assert decide(csrf_client, INPUT).status_code == 403
    csrf_client.get(API_STATUS, {"action": "billing.update"})  # sets the CSRF cookie
    token = csrf_client.cookies["csrftoken"].value
    assert decide(csrf_client, INPUT, HTTP_X_CSRFTOKEN=token).status_code == 200


@pytest.mark.usefixtures("policies")
def test_status_for_a_url_name(logged_in: Client) -> None:
    Policy.objects.create(
        policy_id="transfer-url",
        urls=["transfer"],
        methods=["POST"],
        decision="step_up",
        max_age=60,
    )
    body = status(logged_in, url="transfer", method="POST").json()
    assert body["outcome"] == "step_up" and body["policies"] == ["transfer-url"]
    assert status(logged_in, url="transfer").json()["outcome"] == "allow"


# --- no policy set -------------------------------------------------------------------------


@pytest.fixture
def store_down(monkeypatch: pytest.MonkeyPatch) -> None:
    def unavailable() -> Any:
        raise PolicyStoreUnavailable("down")

    monkeypatch.setattr(store, "get_policy_set", unavailable)


@pytest.mark.usefixtures("auditor", "store_down")
def test_status_and_decide_without_policies_are_503_stepup_unavailable(logged_in: Client) -> None:
    for response in (status(logged_in, action="billing.update"), decide(logged_in, INPUT)):
        assert response.status_code == 503
        assert response["Retry-After"] == "30"
        assert "no-store" in response["Cache-Control"]
        assert response.json()["code"] == "stepup_unavailable"
