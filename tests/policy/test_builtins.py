"""Built-in policies: always present, and no file can replace or switch them off."""

from __future__ import annotations

from stepup.policy.builtins import BUILTIN_POLICIES, POLICY_ADMIN_ACTION
from stepup.policy.engine import compile_policies
from stepup.policy.loader import load_text
from stepup.policy.model import Input, PolicySpec


def test_builtin_policy_applies_in_every_set():
    d = compile_policies([]).decide(Input(action=POLICY_ADMIN_ACTION, method="POST"))
    assert (d.outcome, d.policies, d.max_age) == ("step_up", ("stepup.builtin.policy-admin",), 300)
    assert (
        compile_policies([])
        .decide(Input(action=POLICY_ADMIN_ACTION, method="POST", verified={"totp": 10}))
        .allowed
    )


def test_a_spec_reusing_a_builtin_id_is_dropped():
    impostor = PolicySpec(
        id=BUILTIN_POLICIES[0].id,
        actions=(POLICY_ADMIN_ACTION,),
        decision="step_up",
        max_age=999999,
        enabled=False,
    )
    d = compile_policies([impostor]).decide(
        Input(action=POLICY_ADMIN_ACTION, method="POST", verified={"totp": 400})
    )
    assert d.outcome == "step_up"


def test_files_may_not_use_the_reserved_prefix():
    text = "version: 1\npolicies:\n  - id: stepup.builtin.policy-admin\n    match: {actions: [x]}\n    decision: deny\n"
    result = load_text(text, "p.yaml")
    assert [(e.line, e.field) for e in result.errors] == [(3, "policies[0].id")]
    assert "reserved" in result.errors[0].message


def test_a_file_may_add_a_stricter_rule_for_the_same_action():
    strict = PolicySpec(
        id="policy-admin-fresh", actions=(POLICY_ADMIN_ACTION,), decision="step_up", max_age=0
    )
    d = compile_policies([strict]).decide(
        Input(action=POLICY_ADMIN_ACTION, method="POST", verified={"totp": 10})
    )
    assert d.outcome == "step_up"


def test_builtins_can_be_left_out_for_tools():
    assert len(compile_policies([], builtins=False)) == 0
