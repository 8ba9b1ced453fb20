"""The policy admin: loader validation of edits, the list, and drift from the policy files."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from django.test import Client

from stepup.models import Policy
from stepup.policy.loader import load_files
from stepup.sync import sync
from tests.audit.conftest import POLICY_FILE
from tests.audit.test_admin_stepup import form_data, snapshot

pytestmark = pytest.mark.django_db


def errors_by_field(html: str) -> dict[str, list[str]]:
    """``{field name: [error, ...]}`` from an admin change form (``""`` for the form's own errors)."""
    found: dict[str, list[str]] = {}
    for chunk in html.split('<div class="form-row')[1:]:
        name = re.match(r'[^"]*field-(\w+)', chunk)
        messages = re.search(r'<ul class="errorlist"[^>]*>(.*?)</ul>', chunk, re.S)
        if name and messages:
            found[name.group(1)] = re.findall(r"<li>(.*?)</li>", messages.group(1), re.S)
    top = re.search(r'<ul class="errorlist nonfield"[^>]*>(.*?)</ul>', html, re.S)
    if top:
        found[""] = re.findall(r"<li>(.*?)</li>", top.group(1), re.S)
    return found


@pytest.fixture
def verified(admin_client: Client, admin_user: Any, stepup_verified: Any) -> Any:
    with stepup_verified(admin_client, admin_user):
        yield admin_client


@pytest.mark.parametrize(
    ("overrides", "field", "fragment"),
    [
        ({"factors": '["sms"]'}, "factors", "unknown factor kind &#x27;sms&#x27;"),
        ({"when": '{"roles": {"anyof": ["finance"]}}'}, "when", "did you mean &#x27;any_of&#x27;"),
        ({"when": '{"origin": {"in": ["10.0.0.300/8"]}}'}, "when", "10.0.0.300/8"),
        ({"actions": '"billing.update"'}, "actions", "expected a list"),
        ({"actions": "[]", "urls": "[]"}, "actions", "at least one action or URL name"),
        ({"urls": '["admin:no_such_route"]'}, "urls", "names no route in the URLconf"),
        ({"max_age": ""}, "max_age", "missing required key &#x27;max_age&#x27;"),
        ({"decision": "deny"}, "max_age", "only for decision: step_up"),
        ({"methods": '["FETCH"]'}, "methods", "FETCH"),
        ({"mode": "dry-run"}, "mode", "dry-run"),
        ({"actions": "not json"}, "actions", "Enter a valid JSON"),
    ],
)
def test_a_malformed_policy_is_refused_on_the_right_field(
    verified: Client, policy: Any, overrides: dict[str, str], field: str, fragment: str
) -> None:
    row = policy("billing-update", actions=["billing.update"], methods=["POST"])
    before = snapshot()
    response = verified.post(f"/admin/stepup/policy/{row.pk}/change/", form_data(**overrides))
    assert response.status_code == 200
    errors = errors_by_field(response.content.decode())
    assert field in errors, errors
    assert any(fragment in message for message in errors[field]), errors
    assert snapshot() == before


@pytest.mark.parametrize(
    ("policy_id", "fragment"),
    [("stepup.mine", "reserved for stepup"), ("Billing Update", "did you mean &#x27;billing-update&#x27;")],
)
def test_a_bad_or_reserved_id_is_refused(verified: Client, policy_id: str, fragment: str) -> None:
    response = verified.post("/admin/stepup/policy/add/", form_data(policy_id=policy_id))
    errors = errors_by_field(response.content.decode())
    assert any(fragment in m for m in errors.get("policy_id", [])), errors
    assert not Policy.objects.exists()


def test_a_reason_is_required(verified: Client, policy: Any) -> None:
    row = policy("billing-update", actions=["billing.update"])
    response = verified.post(f"/admin/stepup/policy/{row.pk}/change/", form_data(change_reason=""))
    assert "change_reason" in errors_by_field(response.content.decode())
    row.refresh_from_db()
    assert row.max_age == 300


def test_values_are_stored_in_canonical_form(verified: Client) -> None:
    response = verified.post(
        "/admin/stepup/policy/add/",
        form_data(
            policy_id="canonical",
            methods='["post", "Delete"]',
            when='{"attrs": {"amount": {"gt": "1000"}}}',
            decision="deny",
            max_age="",
        ),
    )
    assert response.status_code == 302, errors_by_field(response.content.decode())
    row = Policy.objects.get(policy_id="canonical")
    assert (row.methods, row.when, row.max_age, row.factors) == (
        ["POST", "DELETE"],
        {"attrs": {"amount": {"gt": 1000}}},
        None,
        [],
    )


def test_the_id_of_an_existing_policy_cannot_be_renamed(verified: Client, policy: Any) -> None:
    row = policy("billing-update", actions=["billing.update"])
    verified.post(f"/admin/stepup/policy/{row.pk}/change/", form_data(policy_id="renamed"))
    row.refresh_from_db()
    assert row.policy_id == "billing-update"


# --- the list: source and drift -----------------------------------------------------------


def column(html: str, name: str) -> dict[str, str]:
    """``{policy id: cell text}`` of one changelist column."""
    cells = {}
    for row in re.findall(r"<tr>(.*?)</tr>", html, re.S):
        policy_id = re.search(r'class="field-policy_id"><a [^>]*>([^<]+)</a>', row)
        cell = re.search(rf'class="field-{name}">(.*?)</td>', row, re.S)
        if policy_id and cell:
            cells[policy_id.group(1)] = re.sub(r"<[^>]+>", "", cell.group(1)).strip()
    return cells


@pytest.fixture
def synced(db: Any) -> None:
    sync(load_files([POLICY_FILE]), reason="initial sync", commit="abc123")


def test_changelist_shows_source_and_drift(admin_client: Client, synced: None, policy: Any) -> None:
    row = Policy.objects.get(policy_id="payments-transfer")
    row.max_age = 60
    row._change_reason = "hotfix from a shell"  # type: ignore[attr-defined]
    row.save()
    policy("admin-only-rule", actions=["x.y"])
    html = admin_client.get("/admin/stepup/policy/").content.decode()
    differs = column(html, "differs")
    assert differs["payments-transfer"] == "yes: max_age"
    assert differs["admin-only-rule"] == "yes: not in the files"
    assert differs["billing-update"] == "no"
    assert set(differs.values()) == {"no", "yes: max_age", "yes: not in the files"}
    sources = column(html, "source_display")
    assert sources["billing-update"] == f"{POLICY_FILE}@abc123"
    assert column(html, "targets")["admin-device-secrets"] == (
        "URL admin:otp_totp_totpdevice_*; URL admin:otp_static_staticdevice_*; URL admin:authtoken_tokenproxy_*"
    )


def test_drift_filter(admin_client: Client, synced: None) -> None:
    row = Policy.objects.get(policy_id="payments-transfer")
    row.enabled = False
    row.save()
    assert set(column(admin_client.get("/admin/stepup/policy/?differs=yes").content.decode(), "differs")) == {
        "payments-transfer"
    }
    assert "payments-transfer" not in column(
        admin_client.get("/admin/stepup/policy/?differs=no").content.decode(), "differs"
    )


def test_files_with_errors_give_no_answer(
    admin_client: Client, synced: None, settings: Any, tmp_path: Path
) -> None:
    broken = tmp_path / "policies.yaml"
    broken.write_text(POLICY_FILE.read_text() + "\n  - id: broken\n    decision: maybe\n")
    settings.STEPUP = {**settings.STEPUP, "POLICY_FILES": [broken]}
    html = admin_client.get("/admin/stepup/policy/").content.decode()
    assert set(column(html, "differs").values()) == {"files have errors"}
    assert column(admin_client.get("/admin/stepup/policy/?differs=no").content.decode(), "differs") == {}


def test_the_files_are_read_once_per_changelist(admin_client: Client, synced: None, monkeypatch: Any) -> None:
    import stepup.sync

    calls = []
    real = stepup.sync.load_files

    def counting(paths: Any) -> Any:
        calls.append(paths)
        return real(paths)

    monkeypatch.setattr(stepup.sync, "load_files", counting)
    assert admin_client.get("/admin/stepup/policy/?differs=yes").status_code == 200
    assert len(calls) == 1


def test_change_page_says_how_the_row_differs(admin_client: Client, synced: None) -> None:
    row = Policy.objects.get(policy_id="payments-transfer")
    row.max_age = 61
    row.save()
    page = admin_client.get(f"/admin/stepup/policy/{row.pk}/change/").content.decode()
    assert "yes: max_age" in page


@pytest.mark.parametrize(
    "query",
    ["q=remote", "q=billing.update", "source=file", "source=admin", "source=other", "decision__exact=deny"],
)
def test_filters_and_search(admin_client: Client, synced: None, query: str) -> None:
    response = admin_client.get(f"/admin/stepup/policy/?{query}")
    assert response.status_code == 200
    found = set(column(response.content.decode(), "differs"))
    expected = {
        "q=remote": {"reports-download-remote"},
        "q=billing.update": {"billing-update", "auditors-read-only"},
        "source=file": {p.policy_id for p in Policy.objects.all()},
        "source=admin": set(),
        "source=other": set(),
        "decision__exact=deny": {"auditors-read-only"},
    }[query]
    assert found == expected
