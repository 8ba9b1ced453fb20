"""Every path of change leaves a history row that says who, or why: admin, sync, shell."""

from __future__ import annotations

import re
from typing import Any

import pytest
from django.core.management import call_command
from django.test import Client

from stepup.audit import default_change_reason
from stepup.models import Policy, PolicySetState
from stepup.policy.loader import load_files
from stepup.sync import sync
from tests.audit.conftest import POLICY_FILE
from tests.audit.test_admin_stepup import form_data

pytestmark = pytest.mark.django_db


def history(policy_id: str) -> list[tuple[str, str | None, str | None]]:
    """``(type, user, reason)`` of each historical record of ``policy_id``, oldest first."""
    rows = Policy.history.filter(policy_id=policy_id).order_by("history_date", "history_id")  # type: ignore[attr-defined]
    return [
        (r.history_type, r.history_user.username if r.history_user else None, r.history_change_reason)
        for r in rows
    ]


def test_sync_records_each_change_with_its_reason_and_commit() -> None:
    reason = "stepup sync from fixtures/stepup/policies.yaml at 0123456789ab (PR #812: tighten billing)"
    plan = sync(load_files([POLICY_FILE]), reason=reason, commit="0123456789ab")
    assert plan.count("create") == Policy.objects.count() > 5
    for row in Policy.objects.all():
        ((kind, user, why),) = history(row.policy_id)
        assert (kind, user) == ("+", None)
        assert why is not None and why.startswith(reason) and len(why) > 100  # a text field, not varchar(100)
        record = row.history.get()  # type: ignore[attr-defined]
        assert (record.source_file, record.source_commit) == (str(POLICY_FILE), "0123456789ab")


def test_sync_command_default_reason_names_the_files() -> None:
    call_command("stepup", "sync", str(POLICY_FILE), verbosity=0)
    for row in Policy.objects.all():
        ((_, _, why),) = history(row.policy_id)
        assert why is not None and why.startswith("stepup sync from ") and "policies.yaml" in why


def test_a_shell_create_update_and_delete_each_leave_a_reason() -> None:
    row = Policy.objects.create(policy_id="from-shell", actions=["x.y"], max_age=60)
    row.max_age = 30
    row.save()
    row.delete()
    records = history("from-shell")
    assert [kind for kind, _, _ in records] == ["+", "~", "-"]
    for _, user, why in records:
        assert user is None
        assert why == default_change_reason()
    assert re.fullmatch(
        r"no reason given: saved outside the admin and `stepup sync` \(.+, OS user .+\)",
        default_change_reason(),
    )


def test_a_reason_given_in_code_is_kept() -> None:
    row = Policy(policy_id="scripted", actions=["x.y"], max_age=60)
    row._change_reason = "data migration 0042"  # type: ignore[attr-defined]
    row.save()
    assert history("scripted") == [("+", None, "data migration 0042")]


def test_admin_add_change_delete_record_the_user_and_reason(
    admin_client: Client, admin_user: Any, stepup_verified: Any
) -> None:
    with stepup_verified(admin_client, admin_user):
        added = admin_client.post(
            "/admin/stepup/policy/add/",
            form_data(policy_id="made-in-admin", change_reason="CHG-1 new rule"),
        )
        assert added.status_code == 302, added.content[:3000]
        row = Policy.objects.get(policy_id="made-in-admin")
        assert (row.source_user, row.source_file, row.source) == (admin_user, "", "admin:root")
        admin_client.post(
            f"/admin/stepup/policy/{row.pk}/change/", form_data(max_age="30", change_reason="CHG-2")
        )
        admin_client.post(f"/admin/stepup/policy/{row.pk}/delete/", {"post": "yes"})
    assert not Policy.objects.filter(policy_id="made-in-admin").exists()
    assert history("made-in-admin") == [
        ("+", "root", "CHG-1 new rule"),
        ("~", "root", "CHG-2"),
        ("-", "root", "deleted in the admin by root"),
    ]


def test_admin_edit_of_a_synced_policy_moves_its_source_to_the_admin(
    admin_client: Client, admin_user: Any, stepup_verified: Any
) -> None:
    sync(load_files([POLICY_FILE]), reason="initial", commit="abc123")
    row = Policy.objects.get(policy_id="billing-update")
    assert row.source == f"{POLICY_FILE}@abc123"
    with stepup_verified(admin_client, admin_user):
        admin_client.post(
            f"/admin/stepup/policy/{row.pk}/change/",
            form_data(factors='["totp", "webauthn", "static"]', methods='["POST", "PUT", "PATCH", "DELETE"]'),
        )
    row.refresh_from_db()
    assert (row.source, row.max_age) == ("admin:root", 60)


def test_bulk_delete_records_each_row_and_bumps_the_version_once(
    admin_client: Client, admin_user: Any, policy: Any, stepup_verified: Any
) -> None:
    rows = [policy(f"p{i}", actions=[f"a.{i}"]) for i in range(3)]
    version = PolicySetState.objects.get().version
    with stepup_verified(admin_client, admin_user):
        response = admin_client.post(
            "/admin/stepup/policy/",
            {"action": "delete_selected", "_selected_action": [r.pk for r in rows], "post": "yes"},
        )
    assert response.status_code == 302
    assert not Policy.objects.exists()
    for row in rows:
        assert history(row.policy_id)[-1] == ("-", "root", "deleted in the admin by root")
    assert PolicySetState.objects.get().version == version + 1


def test_history_view_shows_field_diffs_reason_and_source(
    admin_client: Client, admin_user: Any, policy: Any, stepup_verified: Any
) -> None:
    row = policy(
        "billing-update",
        actions=["billing.update"],
        methods=["POST"],
        max_age=300,
        source_file="fixtures/stepup/policies.yaml",
    )
    with stepup_verified(admin_client, admin_user):
        admin_client.post(f"/admin/stepup/policy/{row.pk}/change/", form_data(max_age="60"))
    html = admin_client.get(f"/admin/stepup/policy/{row.pk}/history/").content.decode()
    text = re.sub(r"<[^>]+>", " ", html).replace("&nbsp;", " ").replace("&rarr;", "→")
    text = re.sub(r"\s+", " ", text)
    assert "Max age: 300 → 60" in text
    assert "INC-42: shorten the window after the phishing report" in text
    assert "test setup" in text
    assert "admin:root" in text and "fixtures/stepup/policies.yaml" in text
    assert "Deleted user" not in text  # no source user before is shown as "-"


def test_policy_changes_list_includes_deleted_policies(
    admin_client: Client, admin_user: Any, policy: Any, stepup_verified: Any
) -> None:
    row = policy("short-lived", actions=["x.y"])
    with stepup_verified(admin_client, admin_user):
        admin_client.post(f"/admin/stepup/policy/{row.pk}/delete/", {"post": "yes"})
    page = admin_client.get("/admin/stepup/historicalpolicy/", {"q": "short-lived"})
    html = page.content.decode()
    assert page.status_code == 200
    assert "deleted in the admin by root" in html and "Deleted" in html
    assert f'href="/admin/stepup/policy/{row.pk}/history/"' in html
    assert admin_client.get(f"/admin/stepup/policy/{row.pk}/history/").status_code == 200


@pytest.mark.parametrize(
    ("argv", "program"),
    [
        (["/srv/app/manage.py", "shell"], "manage.py shell"),
        (["manage.py", "--settings=project.prod", "shell"], "manage.py"),
        (["/srv/bin/rotate.py", "tok_5up3r53cr3t"], "rotate.py"),
        ([], "python"),
    ],
)
def test_the_default_reason_names_the_program_but_no_argument(
    monkeypatch: Any, argv: list[str], program: str
) -> None:
    monkeypatch.setattr("sys.argv", argv)
    assert f"({program}, OS user " in default_change_reason()
    assert "5up3r53cr3t" not in default_change_reason()
