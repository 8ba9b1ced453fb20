"""The decision log and signals: challenged, denied, shadow; ``record_event`` for the views."""

from __future__ import annotations

import logging

import pytest

from stepup import decide, grants
from stepup.audit import display_attrs, is_secret_name, record_event
from stepup.models import DecisionLog
from stepup.testing import flush_decision_log
from tests.enforcement import views

pytestmark = [pytest.mark.django_db, pytest.mark.urls("tests.enforcement.urls")]


def test_challenge_sends_one_signal_with_its_arguments(logged_in, user, policy, recorder):
    policy("billing", actions=["billing.update"])
    logged_in.post("/billing/")
    (sent,) = recorder.challenged
    assert sent["user"] == user
    assert sent["action"] == "billing.update"
    assert sent["attributes"] == {}
    assert sent["decision"].outcome == "step_up"
    assert sent["request"].path == "/billing/"


def test_shadow_policy_is_logged_but_not_enforced(logged_in, policy, recorder, caplog):
    policy("trial", actions=["billing.update"], mode="shadow", decision="deny")
    policy("real", actions=["billing.update"], decision="step_up", max_age=300)
    policy("trial-url", urls=["plain"], mode="shadow", decision="deny")
    with caplog.at_level(logging.INFO, logger="stepup"):
        assert logged_in.get("/plain/").status_code == 200
    flush_decision_log()
    row = DecisionLog.objects.get(event="shadow")
    assert (row.event, row.url_name, row.outcome, row.policies) == (
        "shadow",
        "plain",
        "allow",
        ["trial-url"],
    )
    assert list(DecisionLog.objects.values_list("event", flat=True).order_by("created_at", "pk")) == [
        "shadow",
        "allowed",
    ]
    assert "stepup shadow" in caplog.text
    assert recorder.challenged == [] and recorder.denied == []
    assert views.CALLS == ["plain"]


def test_decide_has_no_side_effects(rf_request, totp, policy, recorder):
    policy("billing", actions=["billing.update"], max_age=0)
    request = rf_request("post", "/billing/")
    assert decide(request, "billing.update").outcome == "step_up"
    flush_decision_log()
    assert DecisionLog.objects.count() == 0
    assert recorder.challenged == []


def test_record_event_for_the_verification_views(rf_request, user):
    request = rf_request("post", "/stepup/verify/", REMOTE_ADDR="198.51.100.4")
    record_event(
        request,
        "verified",
        action="billing.update",
        factor="totp",
        attrs={"amount": 5, "token": "123456"},
    )
    row = DecisionLog.objects.get()
    assert (row.event, row.user, row.username, row.factor) == ("verified", user, "erin", "totp")
    assert row.url_name == "stepup:verify"
    assert row.client_ip == "198.51.100.4"
    assert row.attrs == {"amount": "5", "token": "[redacted]"}


def test_record_event_survives_a_database_error(rf_request, monkeypatch, caplog):
    from django.db import DatabaseError

    def broken(self, *args, **kwargs):
        raise DatabaseError("disk full")

    monkeypatch.setattr(DecisionLog, "save", broken)
    with caplog.at_level(logging.ERROR, logger="stepup"):
        record_event(rf_request("get", "/plain/"), "failed")
    assert "could not store" in caplog.text
    from django.contrib.auth import get_user_model

    assert get_user_model().objects.count() == 1  # the surrounding transaction still works


@pytest.mark.parametrize(
    ("name", "secret"),
    [
        ("password", True),
        ("new_password1", True),
        ("apiToken", True),
        ("otp", True),
        ("csrfmiddlewaretoken", True),
        ("client_secret", True),
        ("card_pin", True),
        ("pwd", True),
        ("pw", True),
        ("oldPwd", True),
        ("cvv2", True),
        ("CVC", True),
        ("card_number", True),
        ("cardNumber", True),
        ("credit-card-number", True),
        ("ccnum", True),
        ("cc_number", True),
        ("pan", True),
        ("newPassword", True),
        ("newPASSword", True),
        ("user[pwd]", True),
        ("user[password][confirm]", True),
        ("APIKey", True),
        ("private_key", True),
        ("ssn", True),
        ("security.code", True),
        ("pin2", True),
        ("amount", False),
        ("currency_code", False),
        ("to", False),
        ("shipping", False),
        ("shipping_address", False),
        ("iban", False),
        ("account_number", False),
        ("acc_num", False),
        ("company", False),
        ("passenger_count", False),
        ("pinned", False),
        ("footprint", False),
        ("time_span", False),
        ("upward", False),
        ("is_private", False),
        ("code", False),
    ],
)
def test_secret_names(name, secret):
    assert is_secret_name(name) is secret


def test_the_secret_fields_setting_names_more_secrets(settings):
    settings.STEPUP = {"SECRET_FIELDS": ["memorable_word", "Kennwort"]}
    assert display_attrs({"memorableWord": "x", "kennwort": "y", "amount": 5}) == {
        "memorableWord": "[redacted]",
        "kennwort": "[redacted]",
        "amount": "5",
    }


def test_a_secret_name_is_remembered_per_setting_and_a_long_one_never(settings):
    from stepup.audit import _is_secret_name_cached

    settings.STEPUP = {}
    assert is_secret_name("memorable_word") is False
    settings.STEPUP = {"SECRET_FIELDS": ["memorable_word"]}
    assert (
        is_secret_name("memorable_word") is True
    )  # the answer is remembered with the setting it was given under
    settings.STEPUP = {}
    assert is_secret_name("memorable_word") is False
    before = _is_secret_name_cached.cache_info().currsize
    long_name = "x" * 5000 + "_password"  # a posted form's field names are anyone's
    assert is_secret_name(long_name) is True
    assert _is_secret_name_cached.cache_info().currsize == before


def test_display_attrs_stringifies():
    assert display_attrs({"n": 5, "f": 1.5, "none": None}) == {"n": "5", "f": "1.5", "none": "None"}


def test_login_records_the_login_time(client, user):
    client.force_login(user)
    state = client.session[grants.SESSION_KEY]
    assert isinstance(state["login_at"], float)
    assert "verified" not in state
