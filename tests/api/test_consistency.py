"""One policy file, three doors: the HTML pages, the REST API and the decision service agree.

The demo's ``fixtures/stepup/policies.yaml`` is synced into the database. For
every row of the table a fresh user (with the row's groups and an
authenticator) makes the same request through the demo's HTML view (session
client), through the demo's DRF view (token client) and asks the decision
service (``stepup:api-decide``) with the same facts as a policy-test input.
All three must give the row's expected outcome.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from itertools import count
from typing import Any
from urllib.parse import urlsplit

import pytest
import time_machine
from django.contrib.auth.models import Group, Permission
from django.contrib.sessions.backends.db import SessionStore
from django.http import HttpRequest
from django.test import Client, RequestFactory
from django_otp.plugins.otp_static.models import StaticDevice
from django_otp.plugins.otp_totp.models import TOTPDevice
from rest_framework.authtoken.models import Token
from rest_framework.parsers import JSONParser
from rest_framework.request import Request
from rest_framework.test import APIClient

from stepup import binding, grants
from tests.api.conftest import API_DECIDE
from tests.shop.models import BillingProfile

pytestmark = pytest.mark.django_db

T0 = float(int(time.time()))  # now: sessions made now must not have expired at T0
ACCOUNT = "DE89370400440532013000"
BILLING = {
    "company_name": "Acme Corp",
    "billing_email": "billing@acme.example",
    "card_last4": "4242",
    "address": "1 Market Street",
}
ONE_SHOT = 0
"""A ``verified`` age of 0: a single-request grant bound to this very request."""


@dataclass(frozen=True)
class Row:
    name: str
    action: str  # "payments.transfer" or "billing.update"
    method: str  # the HTML method; the API uses POST for transfers and PATCH for billing
    groups: tuple[str, ...] = ()
    amount: str = "0.00"
    verified: dict[str, float] | None = None
    expect: str = "allow"


TABLE = [
    Row(
        "small transfer, never verified", "payments.transfer", "POST", ("finance",), "250.00", None, "step_up"
    ),
    Row(
        "small transfer, code 60 s ago",
        "payments.transfer",
        "POST",
        ("finance",),
        "250.00",
        {"totp": 60},
        "allow",
    ),
    Row(
        "small transfer, code 301 s ago",
        "payments.transfer",
        "POST",
        ("finance",),
        "250.00",
        {"totp": 301},
        "step_up",
    ),
    Row(
        "small transfer, backup code 100 s ago",
        "payments.transfer",
        "POST",
        (),
        "999.00",
        {"static": 100},
        "allow",
    ),
    Row(
        "1000.00 is not over 1000",
        "payments.transfer",
        "POST",
        ("finance",),
        "1000.00",
        {"totp": 299},
        "allow",
    ),
    Row("1000.01 is", "payments.transfer", "POST", ("finance",), "1000.01", {"totp": 299}, "step_up"),
    Row(
        "large transfer, code 5 s ago",
        "payments.transfer",
        "POST",
        ("finance",),
        "5000.00",
        {"totp": 5},
        "step_up",
    ),
    Row(
        "large transfer, grant for it",
        "payments.transfer",
        "POST",
        ("finance",),
        "5000.00",
        {"totp": ONE_SHOT},
        "allow",
    ),
    Row(
        "large transfer, backup-code grant",
        "payments.transfer",
        "POST",
        ("finance",),
        "5000.00",
        {"static": ONE_SHOT},
        "step_up",
    ),
    Row(
        "auditor transfer, freshly verified",
        "payments.transfer",
        "POST",
        ("auditor",),
        "50.00",
        {"totp": 5},
        "deny",
    ),
    Row(
        "auditor billing change",
        "billing.update",
        "POST",
        ("auditor", "finance"),
        verified=None,
        expect="deny",
    ),
    Row(
        "billing change, code 120 s ago", "billing.update", "POST", (), verified={"totp": 120}, expect="allow"
    ),
    Row(
        "billing change, code 301 s ago",
        "billing.update",
        "POST",
        (),
        verified={"totp": 301},
        expect="step_up",
    ),
    Row(
        "billing change, backup code 10 s ago",
        "billing.update",
        "POST",
        (),
        verified={"static": 10},
        expect="allow",
    ),
    Row("viewing the billing form", "billing.update", "GET", ("auditor",), expect="allow"),
    Row("viewing transfers", "payments.transfer", "GET", ("finance",), expect="allow"),
]

_names = count()


@pytest.fixture
def service(django_user_model: Any, synced_policies: None) -> APIClient:
    """A non-Python service: a token holding ``stepup.query_decision``."""
    account = django_user_model.objects.create_user("policy-service", password="pw")
    account.user_permissions.add(
        Permission.objects.get(codename="query_decision", content_type__app_label="stepup")
    )
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=account).key}")
    return client


def _user(django_user_model: Any, row: Row) -> Any:
    user = django_user_model.objects.create_user(f"u{next(_names)}", password="pw")
    user.groups.set(Group.objects.get_or_create(name=g)[0] for g in row.groups)
    TOTPDevice.objects.create(user=user, name="Phone", confirmed=True)
    StaticDevice.objects.create(user=user, name="Backup codes", confirmed=True)
    BillingProfile.objects.create(user=user, **BILLING)
    return user


def _grant(request: HttpRequest, user: Any, row: Row, digest: str) -> None:
    """Record the row's verifications for the client behind ``request``, ``age`` seconds ago."""
    for kind, age in (row.verified or {}).items():
        with time_machine.travel(T0 - age, tick=False):
            token = grants.record_verification(
                request, user, kind, one_shot_digest=digest if age == ONE_SHOT else None
            )
        if token is not None:  # a credential client: its next request shows the new step-up token
            request.META[grants.TOKEN_META] = token


# --- the three doors ---------------------------------------------------------------------------


def html_outcome(user: Any, row: Row) -> str:
    client = Client()
    client.force_login(user)
    if row.action == "payments.transfer":
        url, data, route = "/transfers/", {"amount": row.amount, "account": ACCOUNT}, "shop:transfer"
    else:
        url, data, route = "/billing/edit/", dict(BILLING), "shop:billing-update"
    attrs = {"amount": row.amount, "account": ACCOUNT} if row.action == "payments.transfer" else {}
    request = HttpRequest()
    request.session, request.user = client.session, user
    bound = binding.request_fingerprint(RequestFactory().post(url, data)) if attrs else None  # bind_request
    _grant(request, user, row, binding.attributes_digest(row.action, route, attrs, bound))
    request.session.save()
    client.cookies["sessionid"] = request.session.session_key or ""
    with time_machine.travel(T0, tick=False):
        response = client.post(url, data) if row.method == "POST" else client.get(url)
    if response.status_code == 403:
        return "deny"
    if response.status_code == 302 and urlsplit(response["Location"]).path == "/stepup/verify/":
        return "step_up"
    assert response.status_code in (200, 302), response.status_code
    return "allow"


def api_outcome(user: Any, row: Row) -> str:
    key = Token.objects.create(user=user).key
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {key}")
    if row.action == "payments.transfer":
        url, data, route, method = (
            "/api/transfers/",
            {"amount": row.amount, "account": ACCOUNT},
            "api:transfers",
            "post",
        )
    else:
        url, data, route, method = "/api/billing/", {"company_name": "Acme Two"}, "api:billing", "patch"
    attrs = {"amount": row.amount, "account": ACCOUNT} if row.action == "payments.transfer" else {}
    request = RequestFactory().post(url, HTTP_AUTHORIZATION=f"Token {key}")
    request.session, request.user = SessionStore(), user
    bound = None
    if attrs:  # the demo's transfer API binds the whole request
        sent = RequestFactory().post(url, json.dumps(data), content_type="application/json")
        bound = binding.request_fingerprint(Request(sent, parsers=[JSONParser()]))
    _grant(request, user, row, binding.attributes_digest(row.action, route, attrs, bound))
    if grants.TOKEN_META in request.META:
        client.credentials(
            HTTP_AUTHORIZATION=f"Token {key}", HTTP_STEPUP_TOKEN=request.META[grants.TOKEN_META]
        )
    with time_machine.travel(T0, tick=False):
        send = getattr(client, method if row.method != "GET" else "get")
        response = send(url, data, format="json") if row.method != "GET" else send(url)
    if response.status_code == 401:
        assert response.json()["code"] == "stepup_required"
        return "step_up"
    if response.status_code == 403:
        assert response.json()["code"] == "stepup_denied"
        return "deny"
    assert response.status_code in (200, 201), (response.status_code, response.content)
    return "allow"


def service_outcome(service: APIClient, row: Row, method: str) -> str:
    attrs = {"amount": row.amount, "account": ACCOUNT} if row.action == "payments.transfer" else {}
    facts = {
        "action": row.action,
        "method": method,
        "roles": ["authenticated", *row.groups],
        "verified": dict(row.verified or {}),
        "attrs": attrs,
    }
    response = service.post(API_DECIDE, facts, format="json")
    assert response.status_code == 200, response.content
    return str(response.json()["decision"]["outcome"])


def test_the_table_covers_every_outcome() -> None:
    assert len(TABLE) >= 12
    assert {row.expect for row in TABLE} == {"allow", "step_up", "deny"}


def test_html_api_and_decision_service_decide_identically(django_user_model: Any, service: APIClient) -> None:
    found = []
    for row in TABLE:
        api_method = (
            "GET" if row.method == "GET" else ("POST" if row.action == "payments.transfer" else "PATCH")
        )
        outcomes = {
            "html": html_outcome(_user(django_user_model, row), row),
            "api": api_outcome(_user(django_user_model, row), row),
            "service": service_outcome(service, row, row.method),
            "service (API method)": service_outcome(service, row, api_method),
        }
        found.append((row.name, outcomes, row.expect))
    wrong = [
        (name, outcomes, expect) for name, outcomes, expect in found if set(outcomes.values()) != {expect}
    ]
    assert wrong == []
