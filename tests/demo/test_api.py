"""The demo's REST API: billing and transfers guarded by the demo's policies, session and token."""

from __future__ import annotations

import re
import time
from typing import Any

import pytest
import time_machine
from django.contrib.auth.models import Group
from django.contrib.staticfiles import finders
from rest_framework.test import APIClient

from project.demo.models import BillingProfile, Transfer
from stepup.models import PendingChallenge
from tests.otp import code
from tests.paths import API_VERIFY
from tests.rfc9470 import rfc9470_params

pytestmark = pytest.mark.django_db

ACCOUNT = "DE89 3704 0044 0532 0130 00"
PROFILE = {
    "company_name": "Acme Corp",
    "billing_email": "billing@acme.example",
    "card_last4": "4242",
    "address": "1 Market Street",
}


@pytest.fixture
def profile(user: Any) -> BillingProfile:
    return BillingProfile.objects.create(user=user, **PROFILE)


def verify(client: APIClient, device: Any, challenge: str | None = None) -> None:
    data = {"token": code(device), **({"challenge": challenge} if challenge else {})}
    assert client.post(API_VERIFY, data, format="json").status_code == 200


@pytest.mark.parametrize("client_kind", ["session_api", "token_api"])
def test_billing_update_steps_up(request: Any, client_kind: str, profile: Any, totp: Any) -> None:
    api: APIClient = request.getfixturevalue(client_kind)
    assert api.get("/api/billing/").json()["company_name"] == "Acme Corp"  # reading needs nothing
    refused = api.patch("/api/billing/", {"company_name": "Evil Corp"}, format="json")
    assert refused.status_code == 401
    assert rfc9470_params(refused["WWW-Authenticate"])["max_age"] == "300"
    assert sorted(refused.json()["factors"]) == ["static", "totp", "webauthn"]
    profile.refresh_from_db()
    assert profile.company_name == "Acme Corp"
    verify(api, totp, refused.json()["challenge"])
    changed = api.patch("/api/billing/", {"company_name": "Acme Two"}, format="json")
    assert changed.status_code == 200 and changed.json()["company_name"] == "Acme Two"
    assert api.put("/api/billing/", {**PROFILE, "card_last4": "1111"}, format="json").status_code == 200


def test_billing_without_a_profile(session_api: APIClient) -> None:
    assert session_api.get("/api/billing/").status_code == 404


def test_transfers_with_a_token(token_api: APIClient, user: Any, totp: Any) -> None:
    small = {"amount": "250", "account": ACCOUNT}
    assert token_api.post("/api/transfers/", small, format="json").status_code == 401
    verify(token_api, totp)
    sent = token_api.post("/api/transfers/", small, format="json")
    assert sent.status_code == 201
    assert sent.json()["account"] == "DE89370400440532013000" and sent.json()["amount"] == "250.00"
    large = {"amount": "5000", "account": ACCOUNT}
    refused = token_api.post("/api/transfers/", large, format="json")
    assert refused.status_code == 401 and refused.json()["max_age"] == 0
    challenge = PendingChallenge.objects.get(challenge_id=refused.json()["challenge"]).data
    assert challenge["attrs"] == {"amount": "5000.00", "account": "DE89370400440532013000"}
    assert challenge["policies"] == ["payments-transfer", "payments-transfer-large"]
    with time_machine.travel(time.time() + 30, tick=False):  # the next code: the last one is used
        verify(token_api, totp, refused.json()["challenge"])
        other = {"amount": "5000", "account": "FR1420041010050500013M02606"}
        assert token_api.post("/api/transfers/", other, format="json").status_code == 401  # bound
        assert token_api.post("/api/transfers/", large, format="json").status_code == 201
        assert token_api.post("/api/transfers/", large, format="json").status_code == 401  # used
    assert Transfer.objects.filter(user=user).count() == 2


def test_an_invalid_transfer_is_refused_before_any_step_up(token_api: APIClient, totp: Any) -> None:
    response = token_api.post("/api/transfers/", {"amount": "-5", "account": "nope"}, format="json")
    assert response.status_code == 400
    assert set(response.json()) == {"amount", "account"}
    assert PendingChallenge.objects.count() == 0


def test_auditors_are_denied(token_api: APIClient, user: Any, totp: Any, profile: Any) -> None:
    user.groups.add(Group.objects.get_or_create(name="auditor")[0])
    verify(token_api, totp)
    for response in (
        token_api.post("/api/transfers/", {"amount": "5", "account": ACCOUNT}, format="json"),
        token_api.patch("/api/billing/", {"company_name": "x"}, format="json"),
    ):
        assert (response.status_code, response.json()["code"]) == (403, "stepup_denied")
    assert token_api.get("/api/transfers/").status_code == 200


@pytest.mark.parametrize("path", ["/api/transfers/", "/api/transfers.json", "/api/transfers/?format=json"])
def test_suffixes_on_the_demo_api(token_api: APIClient, totp: Any, path: str) -> None:
    refused = token_api.post(path, {"amount": "5000", "account": ACCOUNT}, format="json")
    assert refused.status_code == 401 and refused.json()["max_age"] == 0
    assert token_api.get(path).status_code == 200


def test_session_clients_need_csrf(user: Any, totp: Any, profile: Any) -> None:
    browser = APIClient(enforce_csrf_checks=True)
    browser.force_login(user)
    response = browser.patch("/api/billing/", {"company_name": "x"}, format="json")
    assert response.status_code == 403 and "CSRF" in response.json()["detail"]
    assert PendingChallenge.objects.count() == 0  # refused before any decision


def test_alices_seeded_token(db: Any) -> None:
    from project.demo.seed import api_token_key, seed

    seed()
    seed()  # idempotent
    alice = APIClient()
    alice.credentials(HTTP_AUTHORIZATION=f"Token {api_token_key('alice')}")
    assert len(alice.get("/api/transfers/").json()) == 2
    refused = alice.post("/api/transfers/", {"amount": "10", "account": ACCOUNT}, format="json")
    assert refused.status_code == 401


def test_swagger_ui_works_offline(client: Any) -> None:
    page = client.get("/api/docs/")
    assert page.status_code == 200
    html = page.content.decode()
    assets = re.findall(r'(?:src|href)="([^"]+)"', html)
    # The start-up script comes from the page's own URL (no inline <script>: strict CSP).
    script = [a for a in assets if a.startswith("/api/docs/?")]
    assert len(script) == 1, assets
    start_up = client.get(script[0].replace("&amp;", "&"))
    assert start_up.status_code == 200 and "javascript" in start_up["Content-Type"]
    assets.remove(script[0])
    assert assets and all(a.startswith("/static/") for a in assets), assets
    assert "//cdn" not in html and "https://" not in html and "<script>" not in html and "<style" not in html
    for asset in assets:
        assert finders.find(asset.removeprefix("/static/")), asset
