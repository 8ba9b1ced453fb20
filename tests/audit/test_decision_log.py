"""The decision log records every outcome once, with what an auditor needs, and never a secret."""

from __future__ import annotations

import json
import logging
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
from django.test import Client

from stepup import signals, store
from stepup.enforcement import enforce, enforce_url
from stepup.models import DecisionLog, PendingChallenge
from stepup.testing import flush_decision_log
from tests.audit import urls as audit_urls
from tests.audit.conftest import BACKUP_CODES, PASSWORD, verify_url_of

pytestmark = pytest.mark.django_db

WRONG_CODE = "wrongcode1"
PIN = "7Xq-pin-secret"
USER_AGENT = "AuditBrowser/1.0 (compliance)"
TRANSFER = {"amount": "5000", "card_pin": PIN, "password": PASSWORD}


@pytest.fixture(autouse=True)
def _no_device_throttle(settings: Any) -> None:
    """django-otp's own per-device delay would refuse the next attempt within a second."""
    settings.OTP_STATIC_THROTTLE_FACTOR = 0


@pytest.fixture
def policies(policy: Any) -> None:
    policy("transfers", description="Transfers need a recent factor.", actions=["payments.transfer"])
    policy("refunds-denied", actions=["payments.refund"], decision="deny")
    policy("reports", actions=["reports.view"], when={"session_age": {"gt": 10**7}})
    policy("reports-shadow", actions=["reports.view"], decision="deny", mode="shadow")


@pytest.fixture
def browser(user: Any) -> Client:
    client = Client(HTTP_USER_AGENT=USER_AGENT)
    client.force_login(user)
    return client


class Signals:
    def __init__(self) -> None:
        self.sent: list[tuple[str, dict[str, Any]]] = []
        self.receivers = {
            name: (lambda sender, name=name, **kwargs: self.sent.append((name, kwargs)))
            for name in ("stepup_challenged", "stepup_verified", "stepup_failed", "stepup_denied")
        }

    def names(self) -> list[str]:
        return [name for name, _ in self.sent]


@pytest.fixture
def sent() -> Iterator[Signals]:
    found = Signals()
    for name, receiver in found.receivers.items():
        getattr(signals, name).connect(receiver)
    yield found
    for name, receiver in found.receivers.items():
        getattr(signals, name).disconnect(receiver)


def stored_text(row: DecisionLog) -> str:
    """Every stored field of a row, as text."""
    values = []
    for field in DecisionLog._meta.concrete_fields:
        value = getattr(row, field.attname)
        values.append(json.dumps(value, default=str) if isinstance(value, (dict, list)) else str(value))
    return "\n".join(values)


def assert_no_secrets(*texts: str) -> None:
    for text in texts:
        for secret in (WRONG_CODE, *BACKUP_CODES, PASSWORD, PIN):
            assert secret not in text, secret


def test_every_outcome_is_recorded_once_with_its_facts_and_no_secret(
    browser: Client, user: Any, policies: None, sent: Signals, caplog: Any
) -> None:
    with caplog.at_level(logging.DEBUG, logger="stepup"):
        verify_url = verify_url_of(browser.post("/transfer/", TRANSFER))
        assert_no_secrets(str(PendingChallenge.objects.get().data))
        assert browser.post(verify_url, {"token": WRONG_CODE}).status_code == 200
        # the confirm page: the interrupted POST without its secrets, which the user types again
        confirm = browser.post(verify_url, {"token": BACKUP_CODES[1]})
        assert confirm.status_code == 200
        assert b'type="password" id="stepup-retype-1" name="card_pin"' in confirm.content
        assert_no_secrets(confirm.content.decode())
        assert browser.post("/transfer/", TRANSFER).status_code == 200
        assert browser.post("/refund/").status_code == 403
        assert browser.get("/report/").status_code == 200
    assert audit_urls.CALLS == ["transfer", "report"]

    flush_decision_log()  # allowed rows are written in batches after the response
    rows = list(DecisionLog.objects.order_by("created_at", "pk"))
    assert [r.event for r in rows] == [
        "challenged",
        "failed",
        "verified",
        "allowed",
        "denied",
        "shadow",
        "allowed",
    ]
    assert sent.names() == ["stepup_challenged", "stepup_failed", "stepup_verified", "stepup_denied"]
    for row in rows:
        assert (row.user, row.username, row.client_ip, row.user_agent) == (
            user,
            "erin",
            "127.0.0.1",
            USER_AGENT,
        )
        assert row.policy_version not in ("", "0"), row.event
    challenged, failed, verified, allowed, denied, shadow, report = rows
    assert (challenged.action, challenged.url_name, challenged.method, challenged.path) == (
        "payments.transfer",
        "transfer",
        "POST",
        "/transfer/",
    )
    assert (challenged.outcome, challenged.policies, challenged.roles) == (
        "step_up",
        ["transfers"],
        ["authenticated"],
    )
    assert challenged.attrs == {"amount": "5000", "card_pin": "[redacted]"}
    assert challenged.facts["url"] == "transfer" and challenged.facts["verified"] == {}
    assert 0 <= challenged.facts["session_age"] < 60
    assert (failed.factor, failed.outcome, failed.action, failed.policies) == (
        "static",
        "invalid_token",
        "payments.transfer",
        ["transfers"],
    )
    assert (verified.factor, verified.outcome, verified.action) == ("static", "verified", "payments.transfer")
    assert (allowed.outcome, allowed.policies, list(allowed.facts["verified"])) == (
        "allow",
        ["transfers"],
        ["static"],
    )
    assert (denied.action, denied.outcome, denied.policies) == ("payments.refund", "deny", ["refunds-denied"])
    assert (shadow.action, shadow.outcome, shadow.policies, shadow.facts) == (
        "reports.view",
        "allow",
        ["reports-shadow"],
        None,
    )
    assert (report.event, report.action, report.outcome) == ("allowed", "reports.view", "allow")
    for event in ("failed", "verified", "shadow"):
        assert DecisionLog.objects.get(event=event).facts is None

    # never a token, password or secret attribute: not in any stored field, not in the log lines
    assert_no_secrets(*(stored_text(row) for row in DecisionLog.objects.all()), caplog.text)
    lines = [
        r.getMessage() for r in caplog.records if r.name == "stepup" and r.getMessage().startswith("stepup ")
    ]
    assert Counter(line.split(":")[0] for line in lines) == Counter(
        {
            "stepup challenged": 1,
            "stepup failed": 1,
            "stepup verified": 1,
            "stepup allowed": 2,
            "stepup denied": 1,
            "stepup shadow": 1,
        }
    )
    levels = {r.getMessage().split(":")[0]: r.levelno for r in caplog.records if r.name == "stepup"}
    assert levels["stepup allowed"] == logging.DEBUG and levels["stepup challenged"] == logging.INFO


def test_signal_arguments(browser: Client, user: Any, policies: None, sent: Signals) -> None:
    verify_url = verify_url_of(browser.post("/transfer/", TRANSFER))
    browser.post(verify_url, {"token": WRONG_CODE})
    browser.post(verify_url, {"token": BACKUP_CODES[0]})
    browser.post("/refund/")
    by_name = dict(sent.sent)
    challenged = by_name["stepup_challenged"]
    assert set(challenged) == {"signal", "request", "user", "decision", "action", "attributes"}
    assert (challenged["user"], challenged["action"], challenged["decision"].outcome) == (
        user,
        "payments.transfer",
        "step_up",
    )
    assert challenged["attributes"] == {"amount": "5000", "card_pin": PIN}  # the view's own values, in memory
    assert set(by_name["stepup_failed"]) == {"signal", "request", "user", "factor", "device", "locked"}
    assert (by_name["stepup_failed"]["factor"], by_name["stepup_failed"]["locked"]) == ("static", False)
    assert set(by_name["stepup_verified"]) == {"signal", "request", "user", "factor", "device"}
    assert by_name["stepup_verified"]["factor"] == "static"
    assert by_name["stepup_verified"]["device"].user == user
    denied = by_name["stepup_denied"]
    assert (denied["action"], denied["decision"].outcome, denied["decision"].policies) == (
        "payments.refund",
        "deny",
        ("refunds-denied",),
    )


def test_lockout_is_recorded_once_and_signalled(
    browser: Client, user: Any, policies: None, sent: Signals, settings: Any
) -> None:
    settings.STEPUP = {**settings.STEPUP, "USER_FAILURE_LIMIT": 2}
    verify_url = verify_url_of(browser.post("/transfer/", TRANSFER))
    browser.post(verify_url, {"token": WRONG_CODE})
    browser.post(verify_url, {"token": WRONG_CODE + "x"})  # starts the lockout
    assert browser.post(verify_url, {"token": BACKUP_CODES[0]}).status_code == 429  # even a good code
    rows = list(DecisionLog.objects.order_by("pk").values_list("event", "outcome", "detail"))
    assert [(e, o) for e, o, _ in rows] == [
        ("challenged", "step_up"),
        ("failed", "invalid_token"),
        ("failed", "invalid_token"),
        ("locked", "locked"),
        ("locked", "locked"),
    ]
    assert [d for e, _, d in rows if e == "locked"] == ["lockout started", "attempt during lockout"]
    assert [k["locked"] for name, k in sent.sent if name == "stepup_failed"] == [False, True, True]
    assert not DecisionLog.objects.filter(event="verified").exists()
    assert_no_secrets(*(stored_text(row) for row in DecisionLog.objects.all()))


def test_a_decision_is_recorded_once_per_request(
    logged_in: Client, policy: Any, stepup_verified: Any, user: Any
) -> None:
    policy("transfers", actions=["payments.transfer"])
    policy("transfer-url", urls=["transfer"], methods=["POST"])  # included in the view's own decision
    with stepup_verified(logged_in, user):
        assert logged_in.post("/transfer/", {"amount": "5"}).status_code == 200
    flush_decision_log()
    row = DecisionLog.objects.get()
    assert (row.event, row.policies, row.facts["url"]) == (
        "allowed",
        ["transfer-url", "transfers"],
        "transfer",
    )


def test_unmatched_requests_cost_no_query_and_log_nothing(
    rf: Any, user: Any, policy: Any, django_assert_num_queries: Any
) -> None:
    from django.contrib.sessions.middleware import SessionMiddleware
    from django.urls import resolve

    policy("transfers", actions=["payments.transfer"])
    store.get_policy_set()
    request = rf.post("/plain/")
    SessionMiddleware(lambda r: None).process_request(request)
    request.user = user
    request.resolver_match = resolve("/plain/")
    with django_assert_num_queries(0):
        enforce_url(request)
        enforce(request, None)
    flush_decision_log()
    assert not DecisionLog.objects.exists()


def test_anonymous_allowed_requests_are_not_logged(client: Client, policy: Any) -> None:
    policy("reports", actions=["reports.view"], methods=["POST"])
    assert client.get("/report/").status_code == 200
    flush_decision_log()
    assert not DecisionLog.objects.exists()


def test_a_single_request_grant_is_kept_in_the_facts(
    logged_in: Client, user: Any, policy: Any, stepup_verified: Any
) -> None:
    policy("large-transfers", actions=["payments.transfer"], max_age=0, factors=["static"])
    attrs = {"amount": "5000", "card_pin": ""}
    with stepup_verified(
        logged_in, user, factor="static", action="payments.transfer", url_name="transfer", attributes=attrs
    ):
        assert logged_in.post("/transfer/", {"amount": "5000"}).status_code == 200
        verify_url_of(logged_in.post("/transfer/", {"amount": "5000"}))  # the grant was used up
    flush_decision_log()
    allowed = DecisionLog.objects.get(event="allowed")
    assert (allowed.facts["one_shot"], allowed.facts["verified"]) == (
        ["static"],
        {"static": pytest.approx(0, abs=5)},
    )
    assert DecisionLog.objects.get(event="challenged").facts["one_shot"] == []


def test_the_admin_lists_filters_and_never_shows_a_secret(
    browser: Client, admin_client: Client, policies: None
) -> None:
    verify_url = verify_url_of(browser.post("/transfer/", TRANSFER))
    browser.post(verify_url, {"token": WRONG_CODE})
    browser.post("/refund/")
    queries = {
        "": 3,
        "event__exact=failed": 1,
        "outcome__exact=deny": 1,
        "policy=transfers": 2,
        "policy=refunds-denied": 1,
        "policy=refunds": 0,
        "action=payments.refund": 1,
        "username=erin": 3,
        "q=refund": 1,
        "q=127.0": 3,
        "created_at__gte=2000-01-01T00:00:00%2B00:00": 3,
        "created_at__gte=2100-01-01T00:00:00%2B00:00": 0,
    }
    for query, count in queries.items():
        response = admin_client.get(f"/admin/stepup/decisionlog/?{query}")
        html = response.content.decode()
        assert response.status_code == 200, query
        assert (
            html.count('<tr><td class="field-created_at') + html.count('<tr><th class="field-created_at')
            == count
        ), query
        assert_no_secrets(html)
    user_filter = admin_client.get("/admin/stepup/decisionlog/").content.decode()
    assert "?user__id__exact=" in user_filter  # the user filter lists users found in the log
    for row in DecisionLog.objects.all():
        assert_no_secrets(admin_client.get(f"/admin/stepup/decisionlog/{row.pk}/change/").content.decode())
