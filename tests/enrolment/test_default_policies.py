"""stepup's default policies for its device pages: in force until the project's policies name their actions."""

from __future__ import annotations

import json
from io import StringIO
from pathlib import Path
from typing import Any

import pytest
from django.core.management import call_command

from stepup.policy.builtins import (
    DEFAULT_POLICIES,
    DEVICES_ADD_ACTION,
    DEVICES_REMOVE_ACTION,
    replaced_defaults,
)
from stepup.policy.engine import DEFAULT_POLICY_ID, compile_policies
from stepup.policy.loader import load_text
from stepup.policy.model import Input, PolicySpec

ADD, REMOVE = (d.id for d in DEFAULT_POLICIES)


def decide(specs: list[PolicySpec], action: str, **verified: float) -> Any:
    return compile_policies(specs).decide(Input(action=action, method="POST", verified=verified))


def test_the_defaults_need_a_factor_from_the_last_five_minutes() -> None:
    for action, policy_id in ((DEVICES_ADD_ACTION, ADD), (DEVICES_REMOVE_ACTION, REMOVE)):
        assert decide([], action).policies == (policy_id,)
        assert decide([], action, totp=400).outcome == "step_up"
        assert decide([], action, totp=100).outcome == "allow"
        assert decide([], action, static=100).outcome == "allow"


def test_a_policy_naming_the_action_replaces_that_default_only() -> None:
    fresh = PolicySpec(id="fresh-removal", actions=(DEVICES_REMOVE_ACTION,), max_age=60, factors=("totp",))
    assert replaced_defaults([fresh]) == {REMOVE: ["fresh-removal"]}
    removal = decide([fresh], DEVICES_REMOVE_ACTION, totp=100)
    assert (removal.outcome, removal.policies) == ("step_up", ("fresh-removal",))
    assert decide([fresh], DEVICES_REMOVE_ACTION, static=10).outcome == "step_up"
    assert decide([fresh], DEVICES_ADD_ACTION).policies == (ADD,)


def test_a_stepup_pattern_replaces_both_and_a_catch_all_neither() -> None:
    both = PolicySpec(id="devices", actions=("stepup.devices.*",), max_age=30)
    assert set(replaced_defaults([both])) == {ADD, REMOVE}
    catch_all = PolicySpec(id="everything", actions=("*",), max_age=3600)
    assert replaced_defaults([catch_all]) == {}
    assert set(decide([catch_all], DEVICES_ADD_ACTION).policies) == {ADD, "everything"}
    assert decide([catch_all], DEVICES_ADD_ACTION, totp=1000).outcome == "step_up"


def test_replacing_with_a_disabled_policy_still_fails_safe() -> None:
    off = PolicySpec(id="off", actions=(DEVICES_ADD_ACTION,), enabled=False)
    decision = decide([off], DEVICES_ADD_ACTION, totp=1000)
    assert (decision.outcome, decision.policies) == ("step_up", (DEFAULT_POLICY_ID,))


def test_a_spec_reusing_a_default_id_is_dropped() -> None:
    impostor = PolicySpec(id=ADD, actions=("other",), max_age=999999)
    assert decide([impostor], DEVICES_ADD_ACTION, totp=1000).outcome == "step_up"
    result = load_text(
        f"version: 1\npolicies:\n  - id: {ADD}\n    match: {{actions: [x]}}\n    decision: deny\n", "p.yaml"
    )
    assert [e.field for e in result.errors] == ["policies[0].id"]


def test_policy_tests_may_expect_the_defaults(tmp_path: Path) -> None:
    path = tmp_path / "p.yaml"
    path.write_text(
        "version: 1\npolicies: []\ntests:\n  - name: removing needs a recent factor\n"
        f"    input: {{action: {DEVICES_REMOVE_ACTION}, method: POST, verified: {{totp: 600}}}}\n"
        f"    expect: {{decision: step_up, policies: [{REMOVE}]}}\n"
    )
    out = StringIO()
    call_command("stepup", "test", str(path), stdout=out)
    assert "1 passed, 0 failed" in out.getvalue()


@pytest.mark.django_db
def test_validate_says_which_defaults_the_files_replace(tmp_path: Path) -> None:
    path = tmp_path / "p.yaml"
    path.write_text(
        "version: 1\npolicies:\n  - id: removal\n    description: Removing needs an app code.\n"
        f"    match: {{actions: [{DEVICES_REMOVE_ACTION}]}}\n    decision: step_up\n    max_age: 60\n"
    )
    out, err = StringIO(), StringIO()
    call_command("stepup", "validate", str(path), stdout=out, stderr=err)
    assert (
        f"Default policy {REMOVE} ({DEVICES_REMOVE_ACTION}) is replaced by your policy removal."
        in out.getvalue()
    )
    assert ADD not in out.getvalue()
    assert "no view declares" not in err.getvalue()  # the device pages enforce stepup.devices.remove
    out = StringIO()
    call_command("stepup", "validate", str(path), stdout=out, stderr=err, verbosity=2)
    assert f"Default policy {ADD} ({DEVICES_ADD_ACTION}) is in force." in out.getvalue()


@pytest.mark.django_db
def test_routes_show_the_device_pages_under_the_defaults(tmp_path: Path) -> None:
    path = tmp_path / "p.yaml"
    path.write_text("version: 1\npolicies: []\n")
    out = StringIO()
    call_command("stepup", "routes", str(path), "--format", "json", stdout=out)
    data = json.loads(out.getvalue())
    routes = {r["name"]: r for r in (data if isinstance(data, list) else data["routes"])}
    assert routes["stepup:devices-remove"]["policies"] == [REMOVE]
    assert routes["stepup:devices-remove"]["actions_in_code"] == [DEVICES_REMOVE_ACTION]
    for name in ("stepup:devices-authenticator", "stepup:devices-backup-codes", "stepup:devices-email"):
        assert routes[name]["policies"] == [ADD]
