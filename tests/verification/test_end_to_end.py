"""The whole hand-off: enforcement challenges, the form verifies, the user comes back once."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from django.test import Client

from stepup.models import DecisionLog, Policy
from tests.verification import urls as test_urls
from tests.verification.conftest import API_VERIFY, code
from tests.verification.test_confirm import csrf_token_of, form_of, retyped_of

pytestmark = pytest.mark.django_db

PROTECTED = "/protected/pay/"


@pytest.fixture(autouse=True)
def large_payments(db: Any) -> None:
    Policy.objects.create(
        policy_id="payments-large",
        description="Transfers over 1000 need a fresh second factor.",
        actions=["payments.transfer"],
        when={"attrs": {"amount": {"gt": 1000}}},
        decision="step_up",
        max_age=0,
        factors=["totp"],
    )


def challenge_of(response: Any) -> tuple[str, dict[str, list[str]]]:
    assert response.status_code == 302, response
    location = urlsplit(response["Location"])
    assert location.path == "/stepup/verify/"
    return response["Location"], parse_qs(location.query)


def test_get_is_challenged_verified_and_allowed_once(logged_in: Client, totp: Any) -> None:
    verify_url, query = challenge_of(logged_in.get(PROTECTED, {"amount": "5000"}))
    assert query["next"] == ["/protected/pay/?amount=5000"]
    page = logged_in.get(verify_url)
    html = page.content.decode()
    assert "Transfers over 1000 need a fresh second factor." in html
    assert "<dt>amount</dt><dd>5000</dd>" in html
    done = logged_in.post(verify_url, {"token": code(totp), "challenge": query["challenge"][0]})
    assert done.status_code == 303
    assert done["Location"] == "/protected/pay/?amount=5000"
    assert logged_in.get(done["Location"]).status_code == 200
    # a single-request grant: the next transfer needs a fresh code again
    challenge_of(logged_in.get(PROTECTED, {"amount": "5000"}))
    events = list(DecisionLog.objects.order_by("created_at", "pk").values_list("event", flat=True))
    assert events[:2] == ["challenged", "verified"]


def test_the_grant_is_bound_to_the_attributes(logged_in: Client, totp: Any) -> None:
    verify_url, _ = challenge_of(logged_in.get(PROTECTED, {"amount": "5000"}))
    logged_in.post(verify_url, {"token": code(totp)})
    challenge_of(logged_in.get(PROTECTED, {"amount": "9000"}))


def test_interrupted_post_is_confirmed_by_one_click(user: Any, totp: Any) -> None:
    client = Client(enforce_csrf_checks=True)
    client.force_login(user)
    client.get("/stepup/api/status/", {"action": "payments.transfer"})
    token = client.cookies["csrftoken"].value
    fields = {"amount": "5000", "account": "DE89370400440532013000"}
    verify_url, _ = challenge_of(client.post(PROTECTED, {**fields, "csrfmiddlewaretoken": token}))
    assert test_urls.CALLS == []
    form = client.get(verify_url)
    page = client.post(verify_url, {"token": code(totp), "csrfmiddlewaretoken": csrf_token_of(form)})
    assert page.status_code == 200
    assert test_urls.CALLS == []
    action, hidden = form_of(page.content.decode())
    assert action == PROTECTED
    assert {k: v for k, v in hidden.items() if k != "csrfmiddlewaretoken"} == {
        "amount": ["5000"],
        "account": ["DE89370400440532013000"],
    }
    done = client.post(action, {k: v for k, v in hidden.items()})
    assert done.status_code == 200
    assert [{k: v for k, v in c.items() if k != "csrfmiddlewaretoken"} for c in test_urls.CALLS] == [
        {"amount": ["5000"], "account": ["DE89370400440532013000"]}
    ]
    # the confirmation is not a reusable pass
    challenge_of(client.post(action, {k: v for k, v in hidden.items()}))


def test_an_interrupted_post_with_a_secret_goes_through_once_it_is_typed_again(
    logged_in: Client, totp: Any
) -> None:
    fields = {"amount": "5000", "iban": "DE89370400440532013000", "user[pwd]": "hunter2-secret"}
    verify_url, _ = challenge_of(logged_in.post(PROTECTED, fields))
    page = logged_in.post(verify_url, {"token": code(totp)})
    html = page.content.decode()
    assert "hunter2-secret" not in html and retyped_of(html) == ["user[pwd]"]
    action, hidden = form_of(html)
    del hidden["csrfmiddlewaretoken"]
    done = logged_in.post(action, {**hidden, "user[pwd]": "hunter2-secret"})
    assert done.status_code == 200
    assert test_urls.CALLS == [
        {"amount": ["5000"], "iban": ["DE89370400440532013000"], "user[pwd]": ["hunter2-secret"]}
    ]


def test_spa_flow_over_the_json_api(logged_in: Client, totp: Any) -> None:
    refused = logged_in.get(PROTECTED, {"amount": "5000"}, HTTP_ACCEPT="application/json")
    assert refused.status_code == 401
    verify_url = refused.json()["verify_url"]
    challenge_id = parse_qs(urlsplit(verify_url).query)["challenge"][0]
    ok = logged_in.post(
        API_VERIFY,
        json.dumps({"device": totp.persistent_id, "token": code(totp), "challenge": challenge_id}),
        content_type="application/json",
    )
    assert ok.json() == {"verified": True, "factor": "totp"}
    assert logged_in.get(PROTECTED, {"amount": "5000"}, HTTP_ACCEPT="application/json").status_code == 200
