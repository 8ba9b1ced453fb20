"""Changing policies in the admin is itself a step-up-protected action, on every path the admin offers."""

from __future__ import annotations

from typing import Any

import pytest
import time_machine
from django.test import Client

from stepup.admin import PolicyAdmin
from stepup.models import DecisionLog, Policy, PolicySetState
from stepup.policy.builtins import POLICY_ADMIN_ACTION
from stepup.policy.model import SPEC_FIELDS
from stepup.testing import flush_decision_log
from tests.audit.conftest import BACKUP_CODES, verify_url_of

pytestmark = pytest.mark.django_db

BUILTIN = "stepup.builtin.policy-admin"


def form_data(**overrides: Any) -> dict[str, str]:
    """A valid change form for the ``billing-update`` policy."""
    data = {
        "description": "Billing changes need a recent factor.",
        "actions": '["billing.update"]',
        "urls": "[]",
        "methods": '["POST"]',
        "when": "{}",
        "decision": "step_up",
        "max_age": "60",
        "factors": "[]",
        "enabled": "on",
        "mode": "enforce",
        "change_reason": "INC-42: shorten the window after the phishing report",
    }
    data.update(overrides)
    return data


@pytest.fixture
def billing(policy: Any) -> Policy:
    return policy("billing-update", actions=["billing.update"], methods=["POST"], max_age=300)


@pytest.fixture
def other(policy: Any) -> Policy:
    return policy("transfers", actions=["payments.transfer"], max_age=300)


def snapshot() -> list[tuple[Any, ...]]:
    """Everything a policy write would touch."""
    rows = list(Policy.objects.order_by("pk").values_list(*["policy_id", *SPEC_FIELDS]))
    history = Policy.history.count()  # type: ignore[attr-defined]
    version = PolicySetState.objects.values_list("version", flat=True).first()
    return [*rows, ("history", history), ("version", version)]


def paths(billing: Policy, other: Policy) -> dict[str, tuple[str, dict[str, Any]]]:
    """Every way the admin offers to write a policy, with a POST that would do it."""
    version = billing.history.earliest("history_date").history_id  # type: ignore[attr-defined]
    return {
        "add": ("/admin/stepup/policy/add/", form_data(policy_id="new-one", actions='["x.y"]')),
        "change": (f"/admin/stepup/policy/{billing.pk}/change/", form_data()),
        "delete": (f"/admin/stepup/policy/{billing.pk}/delete/", {"post": "yes"}),
        "bulk delete": (
            "/admin/stepup/policy/",
            {"action": "delete_selected", "_selected_action": [billing.pk, other.pk], "post": "yes"},
        ),
        "revert": (f"/admin/stepup/policy/{billing.pk}/history/{version}/", form_data(max_age="5")),
    }


@pytest.mark.parametrize("path", ["add", "change", "delete", "bulk delete", "revert"])
def test_every_write_path_needs_a_step_up_first_and_saves_nothing(
    admin_client: Client, admin_user: Any, billing: Policy, other: Policy, path: str
) -> None:
    url, data = paths(billing, other)[path]
    before = snapshot()
    response = admin_client.post(url, data)
    verify_url_of(response)
    assert snapshot() == before  # nothing saved, no history row, no version bump
    row = DecisionLog.objects.get(event="challenged")
    assert (row.user, row.action, row.outcome) == (admin_user, POLICY_ADMIN_ACTION, "step_up")
    assert row.policies == [BUILTIN]


@pytest.mark.parametrize("path", ["add", "change", "delete", "bulk delete", "revert"])
def test_every_write_path_works_after_a_fresh_step_up(
    admin_client: Client, admin_user: Any, billing: Policy, other: Policy, stepup_verified: Any, path: str
) -> None:
    url, data = paths(billing, other)[path]
    before = snapshot()
    with stepup_verified(admin_client, admin_user, factor="static"):
        response = admin_client.post(url, data)
    assert response.status_code == 302, response.content[:2000]
    assert "/stepup/verify/" not in response["Location"]
    assert snapshot() != before
    assert not DecisionLog.objects.filter(event="challenged").exists()
    flush_decision_log()
    allowed = DecisionLog.objects.get(event="allowed", action=POLICY_ADMIN_ACTION)
    assert allowed.policies == [BUILTIN]


def test_a_step_up_older_than_five_minutes_is_not_enough(
    admin_client: Client, admin_user: Any, billing: Policy, stepup_verified: Any
) -> None:
    url = f"/admin/stepup/policy/{billing.pk}/change/"
    with (
        time_machine.travel("2026-01-05 09:00:00+00:00", tick=False) as clock,
        stepup_verified(admin_client, admin_user),
    ):
        clock.shift(299)
        assert admin_client.post(url, form_data(max_age="120")).status_code == 302
        billing.refresh_from_db()
        assert billing.max_age == 120
        clock.shift(2)  # 301 s after the verification
        verify_url_of(admin_client.post(url, form_data(max_age="90")))
    billing.refresh_from_db()
    assert billing.max_age == 120


def test_no_stored_policy_can_switch_the_builtin_off(
    admin_client: Client, billing: Policy, policy: Any
) -> None:
    policy("lenient", actions=[POLICY_ADMIN_ACTION], enabled=False)
    policy("lenient-shadow", actions=["stepup.*"], mode="shadow", decision="deny")
    verify_url_of(admin_client.post(f"/admin/stepup/policy/{billing.pk}/change/", form_data()))


def test_a_file_policy_may_add_a_stricter_rule(
    admin_client: Client, admin_user: Any, billing: Policy, policy: Any, stepup_verified: Any
) -> None:
    policy(
        "policy-deletes-need-a-fresh-factor",
        actions=[POLICY_ADMIN_ACTION],
        when={"attrs": {"operation": {"eq": "delete"}}},
        max_age=0,
    )
    with stepup_verified(admin_client, admin_user):
        assert admin_client.post(f"/admin/stepup/policy/{billing.pk}/change/", form_data()).status_code == 302
        assert (
            "/stepup/verify/"
            not in admin_client.post(f"/admin/stepup/policy/{billing.pk}/change/", form_data(max_age="30"))[
                "Location"
            ]
        )
        verify_url_of(admin_client.post(f"/admin/stepup/policy/{billing.pk}/delete/", {"post": "yes"}))
    assert Policy.objects.filter(pk=billing.pk).exists()
    challenge = DecisionLog.objects.get(event="challenged")
    assert challenge.attrs == {"operation": "delete", "policy": "billing-update"}


def test_viewing_needs_no_step_up(admin_client: Client, billing: Policy) -> None:
    for url in (
        "/admin/stepup/policy/",
        f"/admin/stepup/policy/{billing.pk}/change/",
        f"/admin/stepup/policy/{billing.pk}/history/",
        f"/admin/stepup/policy/{billing.pk}/delete/",
        "/admin/stepup/policy/add/",
    ):
        assert admin_client.get(url).status_code == 200, url
    flush_decision_log()
    assert not DecisionLog.objects.exists()
    assert (
        "Reason for this change"
        in admin_client.get(f"/admin/stepup/policy/{billing.pk}/change/").content.decode()
    )


def test_the_whole_flow_through_the_verify_form(
    admin_client: Client, admin_user: Any, billing: Policy
) -> None:
    """Challenged, verified with a backup code, the interrupted POST confirmed, saved once."""
    from tests.verification.test_confirm import form_of

    url = f"/admin/stepup/policy/{billing.pk}/change/"
    verify_url = verify_url_of(admin_client.post(url, form_data(max_age="45")))
    page = admin_client.post(verify_url, {"token": BACKUP_CODES[0]})
    assert page.status_code == 200  # the confirmation of the interrupted POST
    action, hidden = form_of(page.content.decode())
    assert action == url
    billing.refresh_from_db()
    assert billing.max_age == 300
    done = admin_client.post(action, {k: v for k, v in hidden.items()})
    assert done.status_code == 302 and done["Location"] == "/admin/stepup/policy/"
    billing.refresh_from_db()
    assert billing.max_age == 45
    latest = billing.history.latest("history_date")  # type: ignore[attr-defined]
    assert latest.history_user == admin_user
    assert latest.history_change_reason == "INC-42: shorten the window after the phishing report"
    flush_decision_log()
    events = list(DecisionLog.objects.order_by("created_at", "pk").values_list("event", flat=True))
    assert events == ["challenged", "verified", "allowed"]


def test_the_second_line_refuses_a_write_that_skipped_the_view_guard(
    rf: Any, admin_user: Any, billing: Any
) -> None:
    """save_model/delete_model/delete_queryset enforce on their own when called directly."""
    from django.contrib import admin
    from django.contrib.sessions.middleware import SessionMiddleware

    from stepup import grants
    from stepup.exceptions import StepUpRequired

    model_admin = PolicyAdmin(Policy, admin.site)
    request = rf.post("/admin/stepup/policy/")
    SessionMiddleware(lambda r: None).process_request(request)
    request.user = admin_user
    grants.record_login(request)
    with pytest.raises(StepUpRequired):
        model_admin.delete_queryset(request, Policy.objects.all())
    with pytest.raises(StepUpRequired):
        model_admin.delete_model(request, billing)
    assert Policy.objects.filter(pk=billing.pk).exists()
