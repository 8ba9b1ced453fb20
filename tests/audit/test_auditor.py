"""An auditor (carol: staff, stepup's view permissions only) reviews everything and changes nothing;
the decision log is read-only. (The demo's seed gives its carol these: tests/demo/test_seed.py.)"""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group, Permission
from django.test import Client

from stepup.models import DecisionLog, Policy
from tests.audit.test_admin_stepup import form_data, paths, snapshot

pytestmark = pytest.mark.django_db


@pytest.fixture
def carol(db: Any) -> Any:
    user = get_user_model().objects.create_user("carol", password="pw-carol-1", is_staff=True)
    user.groups.add(Group.objects.get_or_create(name="auditor")[0])
    user.user_permissions.set(
        Permission.objects.filter(content_type__app_label="stepup", codename__startswith="view_")
    )
    return user


@pytest.fixture
def auditor(client: Client, carol: Any) -> Client:
    client.force_login(carol)
    return client


@pytest.fixture
def rows(policy: Any) -> tuple[Policy, Policy]:
    return (
        policy("billing-update", actions=["billing.update"], methods=["POST"]),
        policy("transfers", actions=["payments.transfer"]),
    )


@pytest.fixture
def log_row(carol: Any) -> DecisionLog:
    return DecisionLog.objects.create(
        event="challenged",
        user=carol,
        username="carol",
        action="billing.update",
        outcome="step_up",
        policies=["billing-update"],
        client_ip="203.0.113.9",
    )


def test_carol_holds_view_permissions_on_policies_history_and_the_log(carol: Any) -> None:
    assert carol.is_staff and not carol.is_superuser
    for perm in ("stepup.view_policy", "stepup.view_historicalpolicy", "stepup.view_decisionlog"):
        assert carol.has_perm(perm), perm
    changing = [p for p in carol.get_all_permissions() if not p.split(".", 1)[1].startswith("view_")]
    assert changing == []


def test_the_auditor_can_review_everything(
    auditor: Client, rows: tuple[Policy, Policy], log_row: DecisionLog
) -> None:
    billing, _ = rows
    version = billing.history.get().history_id  # type: ignore[attr-defined]
    for url in (
        "/admin/",
        "/admin/stepup/policy/",
        "/admin/stepup/policy/?differs=yes",
        f"/admin/stepup/policy/{billing.pk}/change/",
        f"/admin/stepup/policy/{billing.pk}/history/",
        f"/admin/stepup/policy/{billing.pk}/history/{version}/",
        "/admin/stepup/historicalpolicy/",
        f"/admin/stepup/historicalpolicy/{version}/change/",
        "/admin/stepup/decisionlog/",
        "/admin/stepup/decisionlog/?event__exact=challenged&policy=billing-update",
        f"/admin/stepup/decisionlog/{log_row.pk}/change/",
    ):
        response = auditor.get(url)
        assert response.status_code == 200, (url, response.status_code)
    page = auditor.get(f"/admin/stepup/policy/{billing.pk}/change/").content.decode()
    assert 'name="_save"' not in page  # a read-only view
    assert "Reason for this change" not in page


@pytest.mark.parametrize("path", ["add", "change", "delete", "bulk delete", "revert"])
def test_the_auditor_cannot_change_a_policy(
    auditor: Client, rows: tuple[Policy, Policy], path: str, stepup_verified: Any, carol: Any
) -> None:
    url, data = paths(*rows)[path]
    before = snapshot()
    with stepup_verified(auditor, carol):  # even freshly verified
        assert auditor.post(url, data).status_code == 403
    assert auditor.post(url, data).status_code == 403  # and not offered a step-up either
    assert snapshot() == before
    assert not DecisionLog.objects.filter(event="challenged").exists()


def test_the_auditor_cannot_change_the_log(auditor: Client, log_row: DecisionLog) -> None:
    assert (
        auditor.post(f"/admin/stepup/decisionlog/{log_row.pk}/change/", {"event": "allowed"}).status_code
        == 403
    )
    assert auditor.post(f"/admin/stepup/decisionlog/{log_row.pk}/delete/", {"post": "yes"}).status_code == 403
    assert auditor.get("/admin/stepup/decisionlog/add/").status_code == 403
    log_row.refresh_from_db()
    assert log_row.event == "challenged"


def test_the_decision_log_is_read_only_even_for_superusers(
    admin_client: Client, admin_user: Any, log_row: DecisionLog, stepup_verified: Any
) -> None:
    with stepup_verified(admin_client, admin_user):
        assert admin_client.get("/admin/stepup/decisionlog/add/").status_code == 403
        assert admin_client.post("/admin/stepup/decisionlog/add/", {"event": "allowed"}).status_code == 403
        change = admin_client.post(f"/admin/stepup/decisionlog/{log_row.pk}/change/", {"event": "allowed"})
        assert change.status_code == 403
        delete = admin_client.post(f"/admin/stepup/decisionlog/{log_row.pk}/delete/", {"post": "yes"})
        assert delete.status_code == 403
        bulk = admin_client.post(
            "/admin/stepup/decisionlog/",
            {"action": "delete_selected", "_selected_action": [log_row.pk], "post": "yes"},
        )
        assert bulk.status_code in (200, 302)
    assert DecisionLog.objects.filter(pk=log_row.pk, event="challenged").exists()
    page = admin_client.get("/admin/stepup/decisionlog/").content.decode()
    assert "action-checkbox" not in page and "delete_selected" not in page


def test_history_records_are_read_only_for_superusers(
    admin_client: Client, rows: tuple[Policy, Policy]
) -> None:
    record = rows[0].history.get()  # type: ignore[attr-defined]
    url = f"/admin/stepup/historicalpolicy/{record.history_id}/"
    assert admin_client.post(url + "change/", {"history_change_reason": "forged"}).status_code == 403
    assert admin_client.post(url + "delete/", {"post": "yes"}).status_code == 403
    record.refresh_from_db()
    assert record.history_change_reason == "test setup"


def test_revert_needs_the_change_permission_not_just_view(
    client: Client, django_user_model: Any, rows: tuple[Policy, Policy], stepup_verified: Any
) -> None:
    """simple-history's revert view saves for anyone who may view history; ours doesn't."""
    from django.contrib.auth.models import Permission

    viewer = django_user_model.objects.create_user("viewer", password="pw", is_staff=True)
    viewer.user_permissions.set(
        Permission.objects.filter(codename__in=["view_policy", "view_historicalpolicy"])
    )
    client.force_login(viewer)
    billing = rows[0]
    version = billing.history.get().history_id  # type: ignore[attr-defined]
    with stepup_verified(client, viewer):
        response = client.post(
            f"/admin/stepup/policy/{billing.pk}/history/{version}/", form_data(max_age="1")
        )
    assert response.status_code == 403
    billing.refresh_from_db()
    assert billing.max_age == 300
