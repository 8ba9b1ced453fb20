"""Reading policy files: every rule of CONTRACT §3, each error's file, line and field."""

from __future__ import annotations

import dataclasses
import ipaddress
import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from stepup.policy.loader import dump_policies, load_files, load_text, validate_policy, validate_test
from stepup.policy.model import (
    DECISIONS,
    EXPECT_KEYS,
    FACTOR_KINDS,
    HTTP_METHODS,
    MATCH_KEYS,
    MODES,
    OUTCOMES,
    POLICY_KEYS,
    SPEC_FIELDS,
    TEST_KEYS,
    TOP_KEYS,
    PolicyDecision,
    PolicyError,
    PolicySpec,
    PolicyTest,
)

ROOT = Path(__file__).resolve().parents[2]
SCHEMA = json.loads((ROOT / "stepup" / "policy.schema.json").read_text(encoding="utf-8"))
VALIDATOR = jsonschema.Draft202012Validator(SCHEMA)
MARK = "# <-"

CONTRACT_EXAMPLE = """\
version: 1
policies:
  - id: billing-update
    description: Changing billing details needs a second factor from the last 5 minutes.
    match:
      actions: [billing.update]
      urls: ["admin:auth_user_change"]
      methods: [POST, PUT, PATCH, DELETE]
    when:
      roles: {any_of: [finance]}
      origin: {not_in: ["10.0.0.0/8"]}
      session_age: {gt: 3600}
      attrs:
        amount: {gt: 1000}
    decision: step_up
    max_age: 300
    factors: [totp, webauthn]
    enabled: true
    mode: enforce

tests:
  - name: finance on the public internet must step up
    input:
      action: billing.update
      method: POST
      roles: [authenticated, finance]
      origin: 203.0.113.9
      session_age: 120
      verified: {totp: 900}
      attrs: {amount: 5000}
    expect:
      decision: step_up
      policies: [billing-update]
"""

CONTRACT_SPEC = PolicySpec(
    id="billing-update",
    description="Changing billing details needs a second factor from the last 5 minutes.",
    actions=("billing.update",),
    urls=("admin:auth_user_change",),
    methods=("POST", "PUT", "PATCH", "DELETE"),
    when={
        "roles": {"any_of": ["finance"]},
        "origin": {"not_in": ["10.0.0.0/8"]},
        "session_age": {"gt": 3600},
        "attrs": {"amount": {"gt": 1000}},
    },
    decision="step_up",
    max_age=300,
    factors=("totp", "webauthn"),
)

CONTRACT_TEST = PolicyTest(
    name="finance on the public internet must step up",
    input={
        "action": "billing.update",
        "method": "POST",
        "roles": ["authenticated", "finance"],
        "origin": "203.0.113.9",
        "session_age": 120,
        "verified": {"totp": 900},
        "attrs": {"amount": 5000},
    },
    expect_decision="step_up",
    expect_policies=("billing-update",),
)

MORE_VALID = """\
version: 1
policies:
  - id: admin.delete-user
    match: {urls: ["admin:*_delete"], methods: [post, Delete, POST]}
    when:
      roles: {none_of: [superuser], all_of: [staff]}
      origin: {in: [192.0.2.7, "2001:db8::/32"]}
      session_age: {gte: 0.5, lt: 86400}
      attrs:
        currency: {eq: EUR, ne: "USD", in: [EUR, 1, 2.5, true], not_in: [GBP]}
        order.total: {gte: "12.50", lte: -3}
    decision: deny
    enabled: false
    mode: shadow
  - id: reports_download
    description: ""
    match: {actions: ["reports.*"], urls: []}
    decision: step_up
    max_age: 0
    factors: [static]
tests:
  - name: by URL
    input: {url: "admin:auth_user_delete", method: delete, verified: {}, attrs: {}}
    expect: {decision: deny}
  - name: no policies expected
    input: {action: reports.download}
    expect: {decision: allow, policies: []}
"""

VALID_DOCS = {
    "contract": CONTRACT_EXAMPLE,
    "more": MORE_VALID,
    "empty-policies": "version: 1\npolicies: []\n",
    "version-only": "version: 1\n",
    "tests-only": "version: 1\ntests: []\n",
}


# ---------------------------------------------------------------------------
# Helpers.


def load(text: str, source: str = "policies.yaml") -> Any:
    return load_text(text, source)


def marked_line(text: str) -> int:
    lines = [n for n, line in enumerate(text.splitlines(), 1) if MARK in line]
    assert len(lines) == 1, f"mark exactly one line with {MARK!r}"
    return lines[0]


def build(section: str, defaults: Mapping[str, str], fields: Mapping[str, str | None]) -> str:
    """A one-item ``policies:`` or ``tests:`` document; ``None`` drops a key.

    A value with newlines becomes a nested block: ``when="\\nroles: {}"``.
    """
    lines = ["version: 1", f"{section}:"]
    items = [(k, v) for k, v in {**defaults, **fields}.items() if v is not None]
    for n, (key, value) in enumerate(items):
        head, *rest = value.split("\n")
        lines.append(f"{'  - ' if n == 0 else '    '}{key}: {head}".rstrip())
        lines += [f"      {line}" for line in rest]
    return "\n".join(lines) + "\n"


POLICY_DEFAULTS = {"id": "p", "match": "{actions: [a]}", "decision": "step_up", "max_age": "300"}
TEST_DEFAULTS = {"name": "t", "input": "{action: a}", "expect": "{decision: allow}"}


def policy(**fields: str | None) -> str:
    return build("policies", POLICY_DEFAULTS, fields)


def with_test(**fields: str | None) -> str:
    """Policy "p" and one ``tests:`` entry (so expect.policies can name something that exists)."""
    return policy() + build("tests", TEST_DEFAULTS, fields).split("\n", 1)[1]


@dataclass(frozen=True)
class Case:
    text: str
    field: str
    says: str
    schema: bool = True
    """Whether JSON Schema can express the rule too (some it cannot: lines, host bits)."""
    yaml_only: bool = False
    """A rule about YAML syntax, not about the data (so not one for validate_policy)."""


def case(text: str, field: str, says: str, *, schema: bool = True, yaml_only: bool = False, id: str) -> Any:
    return pytest.param(Case(text, field, says, schema, yaml_only), id=id)


def only_error(text: str, source: str = "policies.yaml") -> PolicyError:
    result = load_text(text, source)
    assert len(result.errors) == 1, "\n".join(map(str, result.errors))
    return result.errors[0]


# ---------------------------------------------------------------------------
# Valid files.


def test_contract_example_loads_into_canonical_specs_and_tests() -> None:
    result = load(CONTRACT_EXAMPLE)

    assert result.ok, result.errors
    assert result.policies == (CONTRACT_SPEC,)
    assert result.tests == (CONTRACT_TEST,)
    assert result.sources == ("policies.yaml",)
    (spec,) = result.policies
    assert (spec.source, spec.line) == ("policies.yaml", 3)
    assert (result.tests[0].source, result.tests[0].line) == ("policies.yaml", 22)


def test_when_is_plain_json_data_with_lists() -> None:
    (spec,) = load(CONTRACT_EXAMPLE).policies

    assert isinstance(spec.when["roles"]["any_of"], list)
    assert json.loads(json.dumps(spec.when)) == spec.when


def test_normalisation_of_methods_networks_and_decimal_strings() -> None:
    result = load(MORE_VALID)

    assert result.ok, result.errors
    deny, step_up = result.policies
    assert deny.methods == ("POST", "DELETE")
    assert deny.when["origin"] == {"in": ["192.0.2.7/32", "2001:db8::/32"]}
    assert deny.when["attrs"]["order.total"] == {"gte": 12.5, "lte": -3}
    assert deny.when["attrs"]["currency"]["ne"] == "USD"
    assert (deny.decision, deny.max_age, deny.factors) == ("deny", None, ())
    assert (deny.enabled, deny.mode) == (False, "shadow")
    assert (step_up.max_age, step_up.factors, step_up.urls) == (0, ("static",), ())
    by_url, no_policies = result.tests
    assert by_url.input == {
        "url": "admin:auth_user_delete",
        "method": "DELETE",
        "verified": {},
        "attrs": {},
    }
    assert by_url.expect_policies is None
    assert no_policies.input == {"action": "reports.download", "method": "GET"}
    assert no_policies.expect_policies == ()


def test_decimal_string_operands_become_int_or_float() -> None:
    result = load(policy(when='\nattrs:\n  amount: {gt: "1000", lt: "+12.50", gte: ".5"}'))

    assert result.policies[0].when["attrs"]["amount"] == {"gt": 1000, "lt": 12.5, "gte": 0.5}
    assert type(result.policies[0].when["attrs"]["amount"]["gt"]) is int


def test_defaults_are_filled_in() -> None:
    (spec,) = load(policy()).policies

    assert spec == PolicySpec(id="p", actions=("a",), max_age=300)
    assert (spec.description, spec.enabled, spec.mode, spec.when) == ("", True, "enforce", {})


@pytest.mark.parametrize(("word", "value"), [("false", False), ("False", False), ("TRUE", True)])
def test_utf8_bom_and_yaml_1_2_booleans_are_accepted(word: str, value: bool) -> None:
    result = load("\ufeff" + policy(enabled=word))

    assert result.ok, result.errors
    assert result.policies[0].enabled is value


def test_descriptions_may_hold_tabs_and_line_breaks() -> None:
    result = load(policy(description='"Moving money\\tout:\\nneeds a fresh code."'))

    assert result.ok, result.errors
    assert result.policies[0].description == "Moving money\tout:\nneeds a fresh code."


# ---------------------------------------------------------------------------
# One test per rule: the file, line and field of the error, and what it says.

TOP_LEVEL = [
    case("policies: []  # <-\n", "version", "missing required key 'version'", id="version-missing"),
    case("version: 2  # <-\npolicies: []\n", "version", "write version: 1", id="version-2"),
    case('version: "1"  # <-\n', "version", "write version: 1", id="version-string"),
    case("version: true  # <-\n", "version", "write version: 1", id="version-bool"),
    case(
        "version: 1\npolicy: []  # <-\n",
        "policy",
        "unknown key 'policy'; allowed keys: version, policies, tests — did you mean 'policies'?",
        id="unknown-top-key",
    ),
    case("version: 1\npolicies: {}  # <-\n", "policies", "expected a list", id="policies-mapping"),
    case(
        "version: 1\npolicies:  # <-\n",
        "policies",
        "write policies: [] for none",
        id="policies-null",
    ),
    case("version: 1\ntests: nope  # <-\n", "tests", "expected a list of tests", id="tests-string"),
    case("- version: 1  # <-\n", "", "expected a mapping", id="top-is-list"),
]

POLICY_RULES = [
    case(
        "version: 1\npolicies:\n  - billing  # <-\n",
        "policies[0]",
        "expected a mapping",
        id="policy-not-mapping",
    ),
    case(
        policy(maxage="5  # <-"),
        "policies[0].maxage",
        "unknown key 'maxage'; allowed keys: id, description, match, when, decision, max_age, "
        "factors, enabled, mode — did you mean 'max_age'?",
        id="unknown-policy-key",
    ),
    case(
        policy(id=None, match="{actions: [a]}  # <-"),
        "policies[0].id",
        "missing required key 'id'",
        id="id-missing",
    ),
    case(
        policy(id="p  # <-", match=None),
        "policies[0].match",
        "missing required key 'match'",
        id="match-missing",
    ),
    case(
        policy(id="p  # <-", decision=None, max_age=None),
        "policies[0].decision",
        "missing required key 'decision'",
        id="decision-missing",
    ),
    case(
        policy(id="Billing Update  # <-"),
        "policies[0].id",
        "did you mean 'billing-update'?",
        id="id-pattern",
    ),
    case(policy(id="-p  # <-"), "policies[0].id", "must be lower-case", id="id-leading-dash"),
    case(policy(id="42  # <-"), "policies[0].id", "expected a string", id="id-number"),
    case(
        policy(description="[a, b]  # <-"),
        "policies[0].description",
        "expected a string",
        id="description-list",
    ),
    case(policy(match="[a]  # <-"), "policies[0].match", "expected a mapping", id="match-list"),
    case(
        policy(match="\nactions: [a]\naction: [b]  # <-"),
        "policies[0].match.action",
        "unknown key 'action'; allowed keys: actions, urls, methods — did you mean 'actions'?",
        id="match-unknown-key",
    ),
    case(
        policy(match="{methods: [GET]}  # <-"),
        "policies[0].match",
        "at least one action or URL name",
        id="match-without-actions-or-urls",
    ),
    case(
        policy(match="{actions: [], urls: []}  # <-"),
        "policies[0].match",
        "at least one action or URL name",
        id="match-empty-lists",
    ),
    case(
        policy(match="\nactions: billing.update  # <-"),
        "policies[0].match.actions",
        "expected a list",
        id="actions-string",
    ),
    case(
        policy(match='\nactions: [""]  # <-'),
        "policies[0].match.actions[0]",
        "non-empty",
        id="action-empty",
    ),
    case(
        policy(match='\nactions: ["billing.?"]  # <-'),
        "policies[0].match.actions[0]",
        "contains '?'",
        id="action-question-mark",
    ),
    case(
        policy(match='\nactions: [a, "billing.[ab]"]  # <-'),
        "policies[0].match.actions[1]",
        "'*' is the only glob character",
        id="action-brackets",
    ),
    case(
        policy(match='\nurls: ["admin: index"]  # <-'),
        "policies[0].match.urls[0]",
        "contains ' '",
        id="url-space",
    ),
    case(
        policy(match="\nactions: [a]\nmethods: [GET, FETCH]  # <-"),
        "policies[0].match.methods[1]",
        "unknown HTTP method 'FETCH'; allowed HTTP methods: GET, HEAD",
        id="method-unknown",
    ),
    case(
        policy(match="\nactions: [a]\nmethods: []  # <-"),
        "policies[0].match.methods",
        "the list is empty",
        id="methods-empty",
    ),
    case(policy(when="  # <-"), "policies[0].when", "expected a mapping", id="when-null"),
    case(
        policy(when="{}  # <-"),
        "policies[0].when",
        "when is empty; give roles / origin / session_age / attrs (e.g. {roles: {any_of: [finance]}})",
        id="when-empty",
    ),
    case(
        policy(when="\nrole: {any_of: [finance]}  # <-"),
        "policies[0].when.role",
        "unknown condition 'role'; allowed conditions: roles, origin, session_age, attrs "
        "— did you mean 'roles'?",
        id="when-unknown",
    ),
    case(
        policy(when="\namount: {gt: 5}  # <-"),
        "policies[0].when.amount",
        "put it under attrs: attrs.amount",
        id="when-attribute-outside-attrs",
    ),
    case(
        policy(when="\nroles: {}  # <-"),
        "policies[0].when.roles",
        "roles is empty; give any_of / all_of / none_of (e.g. {any_of: [finance]}) or remove it",
        id="roles-empty",
    ),
    case(
        policy(when="\nroles: [finance]  # <-"),
        "policies[0].when.roles",
        "expected a mapping",
        id="roles-list",
    ),
    case(
        policy(when="\nroles: {one_of: [finance]}  # <-"),
        "policies[0].when.roles.one_of",
        "unknown operator 'one_of'; allowed operators: any_of, all_of, none_of",
        id="roles-operator",
    ),
    case(
        policy(when="\nroles: {any_of: []}  # <-"),
        "policies[0].when.roles.any_of",
        "the list is empty",
        id="roles-empty-list",
    ),
    case(
        policy(when='\nroles: {all_of: [a, ""]}  # <-'),
        "policies[0].when.roles.all_of[1]",
        "non-empty",
        id="roles-empty-name",
    ),
    case(
        policy(when="\nroles: {none_of: admin}  # <-"),
        "policies[0].when.roles.none_of",
        "expected a list",
        id="roles-string",
    ),
    case(
        policy(when='\norigin:\n  not_in: ["10.0.0.1/8"]  # <-'),
        "policies[0].when.origin.not_in[0]",
        "'10.0.0.1/8' has host bits set; did you mean '10.0.0.0/8'?",
        schema=False,
        id="cidr-host-bits",
    ),
    case(
        policy(when='\norigin: {in: ["2001:db8::1/32"]}  # <-'),
        "policies[0].when.origin.in[0]",
        "did you mean '2001:db8::/32'?",
        schema=False,
        id="cidr-v6-host-bits",
    ),
    case(
        policy(when='\norigin: {in: ["10.0.0.0/33"]}  # <-'),
        "policies[0].when.origin.in[0]",
        "is not an IP network",
        schema=False,
        id="cidr-prefix",
    ),
    case(
        policy(when="\norigin: {in: [intranet]}  # <-"),
        "policies[0].when.origin.in[0]",
        "is not an IP network",
        id="cidr-word",
    ),
    case(
        policy(when="\norigin: {in: []}  # <-"),
        "policies[0].when.origin.in",
        "the list is empty",
        id="cidr-empty",
    ),
    case(
        policy(when="\norigin: {within: [10.0.0.0/8]}  # <-"),
        "policies[0].when.origin.within",
        "allowed operators: in, not_in",
        id="origin-operator",
    ),
    case(
        policy(when="\nsession_age: {gt: -1}  # <-"),
        "policies[0].when.session_age.gt",
        "must not be negative",
        id="session-age-negative",
    ),
    case(
        policy(when="\nsession_age: {lt: true}  # <-"),
        "policies[0].when.session_age.lt",
        "got the boolean true",
        id="session-age-bool",
    ),
    case(
        policy(when='\nsession_age: {lt: "60"}  # <-'),
        "policies[0].when.session_age.lt",
        "expected a number of seconds",
        id="session-age-string",
    ),
    case(
        policy(when="\nsession_age: {gt: .nan}  # <-"),
        "policies[0].when.session_age.gt",
        "expected a number",
        schema=False,
        id="session-age-nan",
    ),
    case(
        policy(when="\nsession_age: {eq: 5}  # <-"),
        "policies[0].when.session_age.eq",
        "allowed operators: gt, gte, lt, lte",
        id="session-age-operator",
    ),
    case(
        policy(when="\nsession_age: {}  # <-"),
        "policies[0].when.session_age",
        "is empty; give",
        id="session-age-empty",
    ),
    case(
        policy(when="\nattrs: {}  # <-"),
        "policies[0].when.attrs",
        "attrs is empty; give an attribute (e.g. {amount: {gt: 1000}}) or remove it",
        id="attrs-empty",
    ),
    case(
        policy(when="\nattrs:\n  1st: {eq: 1}  # <-"),
        "policies[0].when.attrs.1st",
        "attribute name '1st' must match",
        id="attr-name",
    ),
    case(
        policy(when="\nattrs:\n  amount: 5  # <-"),
        "policies[0].when.attrs.amount",
        "expected a mapping, e.g. {gt: 1000}; got the number 5",
        id="attr-not-operators",
    ),
    case(
        policy(when="\nattrs:\n  amount: {}  # <-"),
        "policies[0].when.attrs.amount",
        "is empty; give",
        id="attr-empty",
    ),
    case(
        policy(when="\nattrs:\n  amount: {greater: 5}  # <-"),
        "policies[0].when.attrs.amount.greater",
        "unknown operator 'greater'; allowed operators: eq, ne, gt, gte, lt, lte, in, not_in",
        id="attr-operator",
    ),
    case(
        policy(when="\nattrs:\n  amount: {gt: lots}  # <-"),
        "policies[0].when.attrs.amount.gt",
        "a string holding a decimal number",
        id="attr-gt-word",
    ),
    case(
        policy(when="\nattrs:\n  amount: {lte: false}  # <-"),
        "policies[0].when.attrs.amount.lte",
        "got the boolean false",
        id="attr-lte-bool",
    ),
    case(
        policy(when="\nattrs:\n  amount: {gt: 1e3}  # <-"),
        "policies[0].when.attrs.amount.gt",
        "got the string '1e3'",
        id="attr-gt-exponent-string",
    ),
    case(
        policy(when="\nattrs:\n  currency: {in: []}  # <-"),
        "policies[0].when.attrs.currency.in",
        "the list is empty",
        id="attr-in-empty",
    ),
    case(
        policy(when="\nattrs:\n  currency: {in: EUR}  # <-"),
        "policies[0].when.attrs.currency.in",
        "expected a list",
        id="attr-in-string",
    ),
    case(
        policy(when="\nattrs:\n  currency: {not_in: [EUR, [USD]]}  # <-"),
        "policies[0].when.attrs.currency.not_in[1]",
        "expected a string, number or boolean; got a list",
        id="attr-in-nested",
    ),
    case(
        policy(when="\nattrs:\n  currency: {eq: [EUR]}  # <-"),
        "policies[0].when.attrs.currency.eq",
        "got a list",
        id="attr-eq-list",
    ),
    case(
        policy(when="\nattrs:\n  currency: {ne: null}  # <-"),
        "policies[0].when.attrs.currency.ne",
        "got nothing (null)",
        id="attr-ne-null",
    ),
    case(
        policy(decision="allow  # <-"),
        "policies[0].decision",
        "unknown decision 'allow'; allowed decisions: step_up, deny",
        id="decision-allow",
    ),
    case(
        policy(decision="stepup  # <-"),
        "policies[0].decision",
        "did you mean 'step_up'?",
        id="decision-typo",
    ),
    case(
        policy(id="p  # <-", max_age=None),
        "policies[0].max_age",
        "missing required key 'max_age' for decision: step_up",
        id="max-age-missing",
    ),
    case(
        policy(max_age="-1  # <-"),
        "policies[0].max_age",
        "must not be negative (got -1)",
        id="max-age-negative",
    ),
    case(
        policy(max_age="1.5  # <-"),
        "policies[0].max_age",
        "a whole number of seconds",
        id="max-age-fraction",
    ),
    case(
        policy(max_age="300.0  # <-"),
        "policies[0].max_age",
        "a whole number of seconds",
        schema=False,
        id="max-age-float",
    ),
    case(
        policy(max_age="true  # <-"),
        "policies[0].max_age",
        "got the boolean true",
        id="max-age-bool",
    ),
    case(
        policy(max_age='"300"  # <-'),
        "policies[0].max_age",
        "got the string '300'",
        id="max-age-string",
    ),
    case(
        policy(max_age="5:00  # <-"),
        "policies[0].max_age",
        "base-60",
        schema=False,
        yaml_only=True,
        id="max-age-sexagesimal",
    ),
    case(
        policy(decision="deny", max_age="300  # <-"),
        "policies[0].max_age",
        "max_age is only for decision: step_up; remove it from this deny policy",
        id="max-age-on-deny",
    ),
    case(
        policy(decision="deny", max_age=None, factors="[totp]  # <-"),
        "policies[0].factors",
        "factors is only for decision: step_up",
        id="factors-on-deny",
    ),
    case(
        policy(factors="[totp, sms]  # <-"),
        "policies[0].factors[1]",
        "unknown factor kind 'sms'; allowed factor kinds: totp, hotp, static, email, webauthn",
        id="factor-unknown",
    ),
    case(policy(factors="[]  # <-"), "policies[0].factors", "the list is empty", id="factors-empty"),
    case(policy(factors="totp  # <-"), "policies[0].factors", "expected a list", id="factors-string"),
    case(
        policy(enabled='"yes"  # <-'),
        "policies[0].enabled",
        "expected true or false",
        id="enabled-string",
    ),
    case(
        policy(enabled="no  # <-"),
        "policies[0].enabled",
        "'no' is a boolean in YAML 1.1 but text in YAML 1.2; write true or false",
        schema=False,
        yaml_only=True,
        id="enabled-yaml-1.1-boolean",
    ),
    case(
        policy(enabled="y  # <-"),
        "policies[0].enabled",
        "expected true or false; got the string 'y'",
        id="enabled-y",
    ),
    case(
        policy(when="\nattrs:\n  vip: {eq: yes}  # <-"),
        "policies[0].when.attrs.vip.eq",
        "'yes' is a boolean in YAML 1.1 but text in YAML 1.2; write true or false, or quote it if it is text",
        schema=False,
        yaml_only=True,
        id="attr-eq-yaml-1.1-boolean",
    ),
    case(
        policy(when="\nattrs:\n  currency: {in: [EUR, off]}  # <-"),
        "policies[0].when.attrs.currency.in[1]",
        "'off' is a boolean in YAML 1.1",
        schema=False,
        yaml_only=True,
        id="attr-in-yaml-1.1-boolean",
    ),
    case(
        policy(max_age="0300  # <-"),
        "policies[0].max_age",
        "'0300' reads differently in YAML 1.1 and 1.2; write the number in plain decimal digits",
        schema=False,
        yaml_only=True,
        id="max-age-octal",
    ),
    case(
        policy(max_age="1_000  # <-"),
        "policies[0].max_age",
        "'1_000' reads differently in YAML 1.1 and 1.2",
        schema=False,
        yaml_only=True,
        id="max-age-underscore",
    ),
    case(
        policy(max_age="0x12c  # <-"),
        "policies[0].max_age",
        "'0x12c' reads differently",
        schema=False,
        yaml_only=True,
        id="max-age-hex",
    ),
    case(
        policy(when="\nattrs:\n  amount: {gt: 1_000.5}  # <-"),
        "policies[0].when.attrs.amount.gt",
        "'1_000.5' reads differently",
        schema=False,
        yaml_only=True,
        id="attr-gt-float-underscore",
    ),
    case(
        policy(max_age="2147483648  # <-"),
        "policies[0].max_age",
        "must be at most 2147483647",
        id="max-age-too-large",
    ),
    case(
        policy(max_age="1" + "0" * 400 + "  # <-"),
        "policies[0].max_age",
        "expected a whole number of seconds",
        id="max-age-beyond-floats",
    ),
    case(
        policy(when="\nsession_age: {gt: 1" + "0" * 400 + "}  # <-"),
        "policies[0].when.session_age.gt",
        "expected a number of seconds",
        schema=False,
        id="session-age-beyond-floats",
    ),
    case(
        policy(when="\nattrs:\n  amount: {gt: 1" + "0" * 400 + "}  # <-"),
        "policies[0].when.attrs.amount.gt",
        "a string holding a decimal number",
        schema=False,
        id="attr-gt-beyond-floats",
    ),
    case(
        policy(when='\nattrs:\n  amount: {gt: "\uff11\uff10\uff10\uff10"}  # <-'),
        "policies[0].when.attrs.amount.gt",
        "a string holding a decimal number in ASCII digits",
        id="attr-gt-full-width-digits",
    ),
    case(
        policy(when='\nattrs:\n  amount: {lt: "\u0661\u0660"}  # <-'),
        "policies[0].when.attrs.amount.lt",
        "a string holding a decimal number in ASCII digits",
        id="attr-lt-arabic-indic-digits",
    ),
    case(
        policy(when='\nattrs:\n  amount: {gt: "' + "1" * 101 + '"}  # <-'),
        "policies[0].when.attrs.amount.gt",
        "at most 100 characters",
        id="attr-gt-too-long",
    ),
    case(
        policy(description='"Moving money\\0 needs a code"  # <-'),
        "policies[0].description",
        "contains the control character U+0000 (character 13); remove it",
        id="description-nul",
    ),
    case(
        policy(description='"Moving money\\e[2J needs a code"  # <-'),
        "policies[0].description",
        "contains the control character U+001B",
        id="description-escape",
    ),
    case(
        policy(description='"Moving money\\r needs a code"  # <-'),
        "policies[0].description",
        "U+000D",
        id="description-carriage-return",
    ),
    case(
        policy(when='\nroles: {any_of: ["fin\\tance"]}  # <-'),
        "policies[0].when.roles.any_of[0]",
        "contains the control character U+0009 (character 4); remove it",
        id="role-tab",
    ),
    case(
        policy(when='\nattrs:\n  currency: {eq: "EUR\\0"}  # <-'),
        "policies[0].when.attrs.currency.eq",
        "contains the control character U+0000",
        schema=False,
        id="attr-eq-nul",
    ),
    case(
        policy(match='\nactions: ["' + "a" * 201 + '"]  # <-'),
        "policies[0].match.actions[0]",
        "is 201 characters long; names are at most 200 characters",
        id="action-too-long",
    ),
    case(
        policy(mode="audit  # <-"),
        "policies[0].mode",
        "unknown mode 'audit'; allowed modes: enforce, shadow",
        id="mode-unknown",
    ),
]

TEST_RULES = [
    case("version: 1\ntests:\n  - t  # <-\n", "tests[0]", "expected a mapping", id="test-not-mapping"),
    case(
        with_test(name=None, input="{action: a}  # <-"),
        "tests[0].name",
        "missing required key 'name'",
        id="test-name-missing",
    ),
    case(
        with_test(name="t  # <-", input=None),
        "tests[0].input",
        "missing required key 'input'",
        id="test-input-missing",
    ),
    case(
        with_test(name="t  # <-", expect=None),
        "tests[0].expect",
        "missing required key 'expect'",
        id="test-expect-missing",
    ),
    case(with_test(name="[t]  # <-"), "tests[0].name", "expected a string", id="test-name-list"),
    case(
        with_test(given="x  # <-"),
        "tests[0].given",
        "allowed keys: name, input, expect",
        id="test-unknown-key",
    ),
    case(
        with_test(input="{method: POST}  # <-"),
        "tests[0].input",
        "action or url",
        id="input-no-target",
    ),
    case(
        with_test(input="{action: a, role: [x]}  # <-"),
        "tests[0].input.role",
        "unknown key 'role'; allowed keys: action, url, method, roles, origin, session_age, "
        "verified, attrs — did you mean 'roles'?",
        id="input-unknown-key",
    ),
    case(
        with_test(input="\naction: 5  # <-"),
        "tests[0].input.action",
        "expected a string",
        id="input-action-number",
    ),
    case(
        with_test(input="\naction: " + "a" * 201 + "  # <-"),
        "tests[0].input.action",
        "is 201 characters long; names are at most 200 characters",
        id="input-action-too-long",
    ),
    case(
        with_test(input='\nurl: "a\\0"  # <-'),
        "tests[0].input.url",
        "contains the control character U+0000",
        id="input-url-nul",
    ),
    case(
        with_test(name='"a\\x07 test"  # <-'),
        "tests[0].name",
        "contains the control character U+0007",
        id="test-name-bell",
    ),
    case(
        with_test(input="\naction: a\nsession_age: 1" + "0" * 400 + "  # <-"),
        "tests[0].input.session_age",
        "expected a number of seconds",
        schema=False,
        id="input-session-age-beyond-floats",
    ),
    case(
        with_test(input="\naction: a\nmethod: GRAB  # <-"),
        "tests[0].input.method",
        "unknown HTTP method",
        id="input-method",
    ),
    case(
        with_test(input="\naction: a\nroles: finance  # <-"),
        "tests[0].input.roles",
        "expected a list",
        id="input-roles",
    ),
    case(
        with_test(input="\naction: a\norigin: 10.0.0.0/8  # <-"),
        "tests[0].input.origin",
        "is not an IP address",
        schema=False,
        id="input-origin-network",
    ),
    case(
        with_test(input="\naction: a\norigin: localhost  # <-"),
        "tests[0].input.origin",
        "is not an IP address",
        id="input-origin-word",
    ),
    case(
        with_test(input="\naction: a\nsession_age: -5  # <-"),
        "tests[0].input.session_age",
        "must not be negative",
        id="input-session-age",
    ),
    case(
        with_test(input="\naction: a\nverified: {sms: 5}  # <-"),
        "tests[0].input.verified.sms",
        "unknown factor kind 'sms'",
        id="input-verified-kind",
    ),
    case(
        with_test(input="\naction: a\nverified:\n  totp: -1  # <-"),
        "tests[0].input.verified.totp",
        "must not be negative",
        id="input-verified-negative",
    ),
    case(
        with_test(input="\naction: a\nverified: [totp]  # <-"),
        "tests[0].input.verified",
        "expected a mapping",
        id="input-verified-list",
    ),
    case(
        with_test(input="\naction: a\nattrs: [1]  # <-"),
        "tests[0].input.attrs",
        "expected a mapping",
        id="input-attrs-list",
    ),
    case(
        with_test(expect="{policies: [p]}  # <-"),
        "tests[0].expect.decision",
        "missing required key 'decision'",
        id="expect-decision-missing",
    ),
    case(
        with_test(expect="{decision: challenge}  # <-"),
        "tests[0].expect.decision",
        "unknown decision 'challenge'; allowed decisions: allow, step_up, deny",
        id="expect-decision",
    ),
    case(
        with_test(expect="{decision: allow, why: x}  # <-"),
        "tests[0].expect.why",
        "allowed keys: decision, policies",
        id="expect-unknown-key",
    ),
    case(
        with_test(expect="{decision: allow, policies: p}  # <-"),
        "tests[0].expect.policies",
        "expected a list",
        id="expect-policies-string",
    ),
    case(
        with_test(expect="\ndecision: step_up\npolicies: [p, q]  # <-"),
        "tests[0].expect.policies[1]",
        "no policy has id 'q'",
        schema=False,
        id="expect-unknown-policy",
    ),
]

ALL_RULES = TOP_LEVEL + POLICY_RULES + TEST_RULES


@pytest.mark.parametrize("rule", ALL_RULES)
def test_rule(rule: Case) -> None:
    error = only_error(rule.text)

    assert error.file == "policies.yaml"
    assert error.line == marked_line(rule.text)
    assert error.field == rule.field
    assert rule.says in error.message


@pytest.mark.parametrize("rule", [p for p in POLICY_RULES[1:] if not p.values[0].yaml_only])
def test_validate_policy_reports_the_same_rule_without_a_file(rule: Case) -> None:
    (item,) = yaml.safe_load(rule.text)["policies"]

    spec, errors = validate_policy(item, line=7)

    assert spec is None
    assert [(e.file, e.line, e.field) for e in errors] == [
        ("<database>", 7, rule.field.removeprefix("policies[0].")),
    ]
    assert rule.says in errors[0].message


def test_unknown_expected_policy_suggests_a_close_id() -> None:
    error = only_error(with_test(expect="{decision: deny, policies: [pp]}"))

    assert error.message.startswith("no policy has id 'pp' — did you mean 'p'?")


# ---------------------------------------------------------------------------
# All errors at once, in line order.

MANY_ERRORS = """\
version: 2
extra: 1
policies:
  - id: Bad Id
    maxage: 5
    match: {actions: ["bill?"], methods: [GETT]}
    when:
      roles: {}
      origin: {in: [10.0.0.1/8]}
      session_age: {gt: -1}
      attrs:
        amount: {gt: abc, between: 3}
    decision: deny
    max_age: 3
    factors: [sms]
  - id: ok
    match: {urls: [a]}
    decision: step_up
    max_age: 1.5
tests:
  - name: t
    input: {verified: {sms: 1}, origin: 1.2.3}
    expect: {decision: maybe, policies: [nope]}
"""


def test_every_error_of_a_file_is_reported_at_once_in_line_order() -> None:
    result = load(MANY_ERRORS)

    assert [(e.line, e.field) for e in result.errors] == [
        (1, "version"),
        (2, "extra"),
        (4, "policies[0].id"),
        (5, "policies[0].maxage"),
        (6, "policies[0].match.actions[0]"),
        (6, "policies[0].match.methods[0]"),
        (8, "policies[0].when.roles"),
        (9, "policies[0].when.origin.in[0]"),
        (10, "policies[0].when.session_age.gt"),
        (12, "policies[0].when.attrs.amount.gt"),
        (12, "policies[0].when.attrs.amount.between"),
        (14, "policies[0].max_age"),
        (15, "policies[0].factors"),
        (19, "policies[1].max_age"),
        (22, "tests[0].input"),
        (22, "tests[0].input.origin"),
        (22, "tests[0].input.verified.sms"),
        (23, "tests[0].expect.decision"),
        (23, "tests[0].expect.policies[0]"),
    ]
    assert not result.ok
    assert result.policies == ()
    assert all(e.file == "policies.yaml" for e in result.errors)


def test_errors_render_as_file_line_field_message() -> None:
    error = only_error(policy(max_age="-1  # <-"))

    assert str(error) == (
        "policies.yaml:6: policies[0].max_age: must not be negative (got -1); expected a whole "
        "number of seconds, 0 or more (e.g. 300; 0 = verify for this one request)"
    )


# ---------------------------------------------------------------------------
# Safe YAML.

EXPLOITS = [
    pytest.param(
        "version: 1\npolicies:\n  - id: !!python/object/apply:os.system [{cmd}]\n"
        "    match: {{actions: [a]}}\n    decision: deny\n",
        3,
        "policies[0].id",
        id="value",
    ),
    pytest.param("!!python/object/apply:os.system [{cmd}]\n", 1, "", id="document"),
    pytest.param("version: 1\n!!python/object/apply:os.system [{cmd}]: 1\n", 2, "", id="key"),
    pytest.param(
        "version: !!python/object/apply:os.system\n  args: [{cmd}]\n",
        1,
        "version",
        id="mapping-form",
    ),
    pytest.param("version: 1\npolicies: !!python/name:os.system ''\n", 2, "policies", id="name"),
    pytest.param("version: !!binary aGVsbG8=\n", 1, "version", id="binary"),
    pytest.param("version: !custom 1\n", 1, "version", id="local-tag"),
]


@pytest.mark.parametrize(("template", "line", "field"), EXPLOITS)
def test_tags_are_errors_and_never_executed(
    template: str, line: int, field: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    canary = tmp_path / "pwned"
    calls: list[object] = []
    monkeypatch.setattr(os, "system", calls.append)

    error = only_error(template.format(cmd=json.dumps(f"touch {canary}")))

    assert (error.line, error.field) == (line, field)
    assert "is not allowed" in error.message
    assert "remove the tag" in error.message
    assert not canary.exists()
    assert calls == []


def test_merge_keys_are_refused() -> None:
    error = only_error("version: 1\n<<: {policies: []}\n")

    assert (error.line, error.field) == (2, "")
    assert "merge keys" in error.message


def test_alias_bomb_is_rejected_quickly() -> None:
    lol = ["a: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    lol += [f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join(['*' + chr(97 + i)] * 9)}]" for i in range(8)]

    error = only_error("\n".join(lol) + "\n")

    assert error.line == 1
    assert error.message.startswith("YAML anchors and aliases are not supported in policy files")


def test_a_lone_alias_is_rejected_on_its_line() -> None:
    error = only_error("version: 1\npolicies: []\ntests: *nothing\n")

    assert error.line == 3
    assert "anchors and aliases are not supported" in error.message


def test_syntax_errors_name_the_line() -> None:
    error = only_error("version: 1\npolicies:\n  - id: p\n   match: [\n")

    assert error.file == "policies.yaml"
    assert error.line is not None and error.line >= 4
    assert error.message.startswith("invalid YAML: ")


def test_multiple_documents_are_an_error() -> None:
    error = only_error("version: 1\n---\nversion: 1\n")

    assert "single document" in error.message


@pytest.mark.parametrize("text", ["", "   \n", "# nothing but a comment\n"])
def test_empty_files_are_an_error(text: str) -> None:
    error = only_error(text)

    assert (error.file, error.line, error.field) == ("policies.yaml", 1, "")
    assert "empty" in error.message


@pytest.mark.parametrize(("prefix", "source"), [("version: ", "p.yaml"), ('{"version": ', "p.json")])
def test_deep_nesting_is_an_error_not_a_crash(prefix: str, source: str) -> None:
    text = prefix + "[" * 600 + "]" * 600 + ("}" if source.endswith(".json") else "")

    error = only_error(text, source)

    assert "nested too deeply" in error.message


def test_a_control_character_is_an_error_with_its_line() -> None:
    error = only_error("version: 1\npolicies: []\n# \x07\n")

    assert error.line == 3


@pytest.mark.parametrize(
    ("escape", "says"),
    [
        ("\\u0000", "the control character U+0000"),
        ("\\u0085", "U+0085"),
        ("\\ud800", "a lone surrogate U+D800"),
    ],
)
def test_json_escapes_of_control_characters_and_surrogates_are_errors(escape: str, says: str) -> None:
    text = (
        '{"version": 1, "policies": [\n'
        '  {"id": "p", "description": "a'
        + escape
        + 'b", "match": {"actions": ["a"]}, "decision": "deny"}\n]}'
    )

    error = only_error(text, "p.json")

    assert (error.line, error.field) == (2, "policies[0].description")
    assert says in error.message


@pytest.mark.parametrize("word", ["yes", "no", "on", "off", "Yes", "NO", "On", "OFF", "y", "n", "Y", "N"])
def test_yaml_1_1_booleans_are_errors_that_say_to_write_true_or_false(word: str) -> None:
    text = policy(enabled=f"{word}  # <-")

    error = only_error(text)

    assert (error.line, error.field) == (marked_line(text), "policies[0].enabled")
    assert "true or false" in error.message


def test_a_tests_input_attrs_may_hold_anything_a_request_can() -> None:
    result = load(with_test(input='{action: a, attrs: {note: "a\\0b", amount: "\\uff19"}}'))

    assert result.ok, result.errors
    assert result.tests[0].input["attrs"] == {"note": "a\0b", "amount": "\uff19"}


def test_numeric_operands_are_what_the_engine_reads_as_numbers() -> None:
    """The loader takes a numeric string exactly when the engine would compare it as a number."""
    from stepup.policy.model import as_number

    for text in [
        "1000",
        "+12.50",
        ".5",
        "5.",
        "007",
        "9" * 100,
        "１０００",
        "٥",
        "1e3",
        " 5",
        "9" * 101,
        "1_0",
    ]:
        result = load(policy(when=f"\nattrs:\n  amount: {{gt: {json.dumps(text)}}}"))
        assert result.ok is (as_number(text) is not None), (text, result.errors)


# ---------------------------------------------------------------------------
# Duplicate keys and ids.

DUPLICATE_KEYS = [
    pytest.param("version: 1\nversion: 1  # <-\n", "version", -1, id="top"),
    pytest.param(policy(max_age="300") + "    max_age: 60  # <-\n", "policies[0].max_age", -1, id="policy"),
    pytest.param(
        policy(when="\nattrs:\n  amount: {gt: 1, gt: 2}  # <-"),
        "policies[0].when.attrs.amount.gt",
        0,
        id="nested-flow",
    ),
    pytest.param(
        policy(when="\nroles: {any_of: [a]}\nroles: {all_of: [b]}  # <-"),
        "policies[0].when.roles",
        -1,
        id="nested-block",
    ),
    pytest.param(
        with_test(expect="\ndecision: allow\ndecision: allow  # <-"),
        "tests[0].expect.decision",
        -1,
        id="tests",
    ),
]


@pytest.mark.parametrize(("text", "field", "first"), DUPLICATE_KEYS)
def test_duplicate_keys_are_errors_at_any_depth(text: str, field: str, first: int) -> None:
    error = only_error(text)

    line = marked_line(text)
    assert (error.line, error.field) == (line, field)
    key = field.rsplit(".", 1)[-1]
    assert error.message.startswith(f"duplicate key {key!r} (first given on line {line + first})")


def test_duplicate_ids_in_one_file_name_both_lines() -> None:
    text = policy(id="same") + "  - id: same  # <-\n    match: {urls: [b]}\n    decision: deny\n"

    result = load(text)

    (error,) = result.errors
    assert (error.file, error.line, error.field) == ("policies.yaml", 7, "policies[1].id")
    assert "duplicate policy id 'same': already defined at policies.yaml:3 (policies[0].id)" in error.message
    assert [p.id for p in result.policies] == ["same"]


def test_duplicate_ids_across_files_name_both_files(tmp_path: Path) -> None:
    first, second = tmp_path / "a.yaml", tmp_path / "b.yaml"
    first.write_text(policy(id="shared"), encoding="utf-8")
    second.write_text(
        "version: 1\npolicies:\n  - {id: other, match: {actions: [b]}, decision: deny}\n"
        "  - {id: shared, match: {actions: [c]}, decision: deny}\n",
        encoding="utf-8",
    )

    result = load_files([first, str(second)])

    (error,) = result.errors
    assert (error.file, error.line, error.field) == (str(second), 4, "policies[1].id")
    assert f"already defined at {first}:3" in error.message
    assert result.sources == (str(first), str(second))


# ---------------------------------------------------------------------------
# Files.


def test_load_files_merges_and_resolves_expected_policies_across_files(tmp_path: Path) -> None:
    policies = tmp_path / "policies.yaml"
    tests = tmp_path / "tests.json"
    policies.write_text(CONTRACT_EXAMPLE.split("\ntests:")[0], encoding="utf-8")
    tests.write_text(
        json.dumps(
            {
                "version": 1,
                "tests": [
                    {
                        "name": "n",
                        "input": {"action": "x"},
                        "expect": {"decision": "allow", "policies": ["billing-update"]},
                    }
                ],
            }
        ),
        encoding="utf-8",
    )

    result = load_files([policies, tests])

    assert result.ok, result.errors
    assert [p.id for p in result.policies] == ["billing-update"]
    assert [(t.name, t.source) for t in result.tests] == [("n", str(tests))]


def test_a_missing_file_is_an_error_naming_it_and_others_still_load(tmp_path: Path) -> None:
    good = tmp_path / "good.yaml"
    good.write_text(policy(), encoding="utf-8")
    missing = tmp_path / "missing.yaml"

    result = load_files([missing, good])

    (error,) = result.errors
    assert error.file == str(missing)
    assert "cannot read the policy file" in error.message
    assert "No such file" in error.message
    assert [p.id for p in result.policies] == ["p"]


def test_a_directory_is_an_unreadable_file(tmp_path: Path) -> None:
    (error,) = load_files([tmp_path]).errors

    assert error.file == str(tmp_path)
    assert "cannot read the policy file" in error.message


def test_non_utf8_file_is_an_error_with_its_line(tmp_path: Path) -> None:
    path = tmp_path / "latin1.yaml"
    path.write_bytes("version: 1\npolicies: []\n# caf\u00e9\n".encode("latin-1"))

    (error,) = load_files([path]).errors

    assert (error.file, error.line) == (str(path), 3)
    assert "not valid UTF-8 (byte 0xe9)" in error.message


def test_an_empty_file_on_disk_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "empty.yml"
    path.touch()

    (error,) = load_files([path]).errors

    assert (error.file, error.line) == (str(path), 1)
    assert "empty" in error.message


# ---------------------------------------------------------------------------
# JSON.


def line_of(text: str, needle: str) -> int:
    return next(n for n, line in enumerate(text.splitlines(), 1) if needle in line)


def test_equivalent_json_gives_equal_specs_and_tests() -> None:
    text = json.dumps(yaml.safe_load(CONTRACT_EXAMPLE), indent=2)

    result = load_text(text, "policies.json")

    assert result.ok, result.errors
    assert result.policies == (CONTRACT_SPEC,)
    assert result.tests == (CONTRACT_TEST,)
    # An item's line is the line of the "{" that opens it, as a YAML item's is its "- ".
    assert result.policies[0].line == line_of(text, '"id": "billing-update"') - 1
    assert result.tests[0].line == line_of(text, '"name": "finance') - 1


def test_json_validation_errors_name_file_line_and_field() -> None:
    text = (
        '{\n  "version": 1,\n  "policies": [\n    {"id": "p", "match": {"actions": ["a"]},\n'
        '     "decision": "step_up",\n     "max_age": -1}\n  ]\n}\n'
    )

    error = only_error(text, "policies.json")

    assert (error.file, error.line, error.field) == ("policies.json", 6, "policies[0].max_age")


def test_json_lines_follow_array_items_and_nested_keys() -> None:
    items = [
        {"id": "a", "match": {"actions": ["a"]}, "decision": "deny"},
        {"id": "b", "match": {"actions": ["b"]}, "decision": "deny", "mode": "loud"},
        {"id": "c", "match": {"actions": ["c", "d?"]}, "decision": "deny"},
    ]
    text = json.dumps({"version": 1, "policies": items}, indent=1)

    errors = load_text(text, "p.json").errors

    assert [(e.line, e.field) for e in errors] == [
        (line_of(text, '"loud"'), "policies[1].mode"),
        (line_of(text, '"d?"'), "policies[2].match.actions[1]"),
    ]


def test_json_duplicate_keys_are_rejected_at_the_second_occurrence() -> None:
    text = (
        '{\n  "version": 1,\n  "policies": [\n    {"id": "p", "match": {"actions": ["a"]},\n'
        '     "decision": "deny",\n     "decision": "deny"}\n  ]\n}\n'
    )

    error = only_error(text, "policies.json")

    assert (error.file, error.line, error.field) == ("policies.json", 6, "policies[0].decision")
    assert error.message.startswith("duplicate key 'decision' (first given on line 5)")


def test_minified_json_reports_line_1() -> None:
    text = json.dumps({"version": 1, "policies": [{"id": "p", "match": {}, "decision": "deny"}]})

    error = only_error(text, "p.json")

    assert (error.line, error.field) == (1, "policies[0].match")


def test_json_syntax_errors_name_the_line() -> None:
    error = only_error('{\n  "version": 1,\n  "policies": [,]\n}\n', "p.json")

    assert error.line == 3
    assert error.message.startswith("invalid JSON: ")


@pytest.mark.parametrize("constant", ["NaN", "Infinity", "-Infinity"])
def test_json_non_finite_numbers_are_errors(constant: str) -> None:
    item = '{"id": "p", "match": {"actions": ["a"]}, "decision": "step_up", "max_age": 5, '
    text = f'{{"version": 1, "policies": [{item}"when": {{"session_age": {{"gt": {constant}}}}}}}]}}'

    error = only_error(text, "p.json")

    assert error.field == "policies[0].when.session_age.gt"


def test_format_follows_the_suffix_unless_given() -> None:
    text = '{"version": 1, "policies": []}'

    assert load_text(text, "a.JSON").ok
    assert load_text(text, "a.txt", fmt="json").ok
    assert load_text("version: 1\n", "a.json", fmt="yaml").ok
    assert not load_text("version: 1\n", "a.json").ok


# ---------------------------------------------------------------------------
# validate_policy / validate_test (the database path).


def test_validate_policy_accepts_its_own_to_dict() -> None:
    spec, errors = validate_policy(CONTRACT_SPEC.to_dict(), source="db", line=None)

    assert errors == []
    assert spec == CONTRACT_SPEC
    assert (spec.source, spec.line) == ("db", None)


def test_validate_policy_collects_every_error() -> None:
    spec, errors = validate_policy({"id": "X", "match": {}, "decision": "deny", "max_age": 1})

    assert spec is None
    assert [(e.file, e.line, e.field) for e in errors] == [
        ("<database>", None, "id"),
        ("<database>", None, "match"),
        ("<database>", None, "max_age"),
    ]


def test_validate_policy_rejects_non_mappings() -> None:
    spec, errors = validate_policy(["id", "p"], source="db", line=3)

    assert spec is None
    assert [(e.file, e.line, e.field) for e in errors] == [("db", 3, "")]


def test_validate_test_checks_known_ids_when_given() -> None:
    entry = {
        "name": "t",
        "input": {"url": "x", "method": "put"},
        "expect": {"decision": "deny", "policies": ["a"]},
    }

    test, errors = validate_test(entry)
    assert errors == []
    assert test == PolicyTest("t", {"url": "x", "method": "PUT"}, "deny", ("a",))

    test, errors = validate_test(entry, known_ids={"b"}, line=9)
    assert test is None
    assert [(e.line, e.field) for e in errors] == [(9, "expect.policies[0]")]


# ---------------------------------------------------------------------------
# dump_policies: the export format round-trips.


def test_dump_writes_version_and_policies() -> None:
    text = dump_policies([CONTRACT_SPEC])

    assert text.startswith("version: 1\npolicies:\n- id: billing-update\n")
    assert "    roles: {any_of: [finance]}\n" in text
    assert yaml.safe_load(text) == {"version": 1, "policies": [CONTRACT_SPEC.to_dict()]}
    assert json.loads(dump_policies([CONTRACT_SPEC], "json"))["policies"] == [CONTRACT_SPEC.to_dict()]
    assert dump_policies([]) == "version: 1\npolicies: []\n"


def test_dump_never_writes_anchors_for_shared_values() -> None:
    when = {"roles": {"any_of": ["finance"]}}
    specs = [PolicySpec(id=f"p{i}", actions=("a",), when=when, max_age=1) for i in range(2)]

    text = dump_policies(specs)

    assert "&" not in text and "*id" not in text
    assert load_text(text, "x.yaml").policies == tuple(specs)


def test_dump_rejects_unknown_formats() -> None:
    with pytest.raises(ValueError, match="unknown format"):
        dump_policies([], "toml")  # type: ignore[arg-type]


CHARACTERS = st.characters(codec="utf-8", exclude_categories=["Cc"])  # no controls, no lone surrogates
WORDS = st.text(CHARACTERS, max_size=20)
PROSE = st.text(
    st.characters(codec="utf-8", exclude_categories=["Cc"], include_characters="\t\n"), max_size=20
)
NON_EMPTY = st.text(CHARACTERS, min_size=1, max_size=10)
NAME_CHARS = "abcxyzABCXYZ0123456789_.:*-"
NAMES = st.text(NAME_CHARS, min_size=1, max_size=12)
IDS = st.tuples(st.sampled_from("abz09"), st.text("abz09._-", max_size=12)).map("".join)
ATTR_NAMES = st.tuples(st.sampled_from("aZ_"), st.text("aZ_09.-", max_size=8)).map("".join)
FINITE = st.floats(allow_nan=False, allow_infinity=False)
NUMBERS = st.integers(-(10**12), 10**12) | FINITE
SECONDS = st.integers(0, 10**7) | st.floats(0, 1e7)
SCALARS = WORDS | NUMBERS | st.booleans()
NETWORKS = st.tuples(st.ip_addresses(), st.integers(0, 128)).map(
    lambda t: str(ipaddress.ip_network((t[0], t[1] % (t[0].max_prefixlen + 1)), strict=False))
)


def operators(table: Mapping[str, st.SearchStrategy[Any]]) -> st.SearchStrategy[dict[str, Any]]:
    """A non-empty mapping of some of the table's operators to operands."""
    return st.sets(st.sampled_from(sorted(table)), min_size=1).flatmap(
        lambda ops: st.fixed_dictionaries({op: table[op] for op in sorted(ops)})
    )


def lists(items: st.SearchStrategy[Any]) -> st.SearchStrategy[list[Any]]:
    return st.lists(items, min_size=1, max_size=3)


WHEN = st.fixed_dictionaries(
    {},
    optional={
        "roles": operators({k: lists(NON_EMPTY) for k in ("any_of", "all_of", "none_of")}),
        "origin": operators({k: lists(NETWORKS) for k in ("in", "not_in")}),
        "session_age": operators(dict.fromkeys(("gt", "gte", "lt", "lte"), SECONDS)),
        "attrs": st.dictionaries(
            ATTR_NAMES,
            operators(
                {
                    "eq": SCALARS,
                    "ne": SCALARS,
                    **dict.fromkeys(("gt", "gte", "lt", "lte"), NUMBERS),
                    "in": lists(SCALARS),
                    "not_in": lists(SCALARS),
                }
            ),
            min_size=1,
            max_size=2,
        ),
    },
)


METHODS = st.lists(st.sampled_from([m for m in HTTP_METHODS if m != "HEAD"]), unique=True, max_size=3)
FACTORS = st.lists(st.sampled_from(FACTOR_KINDS), unique=True, max_size=3)


@st.composite
def specs(draw: st.DrawFn) -> PolicySpec:
    actions = draw(st.lists(NAMES, max_size=3))
    decision: PolicyDecision = draw(st.sampled_from(DECISIONS))
    step_up = decision == "step_up"
    return PolicySpec(
        id=draw(IDS),
        description=draw(PROSE),
        actions=tuple(actions),
        urls=tuple(draw(st.lists(NAMES, min_size=0 if actions else 1, max_size=3))),
        methods=tuple(draw(METHODS)),
        when=draw(WHEN),
        decision=decision,
        max_age=draw(st.integers(0, 10**6)) if step_up else None,
        factors=tuple(draw(FACTORS)) if step_up else (),
        enabled=draw(st.booleans()),
        mode=draw(st.sampled_from(MODES)),
    )


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(specs(), max_size=4, unique_by=lambda s: s.id), st.sampled_from(["yaml", "json"]))
def test_dump_then_load_round_trips(policies: list[PolicySpec], fmt: Any) -> None:
    text = dump_policies(policies, fmt)

    result = load_text(text, f"export.{fmt}")

    assert result.errors == ()
    assert result.policies == tuple(policies)
    assert [validate_policy(p.to_dict())[0] for p in policies] == policies
    VALIDATOR.validate(json.loads(text) if fmt == "json" else yaml.safe_load(text))


# ---------------------------------------------------------------------------
# The JSON Schema agrees with the loader.


def _methods_in(pattern: str) -> tuple[str, ...]:
    """``^(?:[Gg][Ee][Tt]|[Pp][Oo][Ss][Tt])$`` -> ``("GET", "POST")``."""
    return tuple(re.sub(r"\[(\w)\w\]", r"\1", pattern).removeprefix("^(?:").removesuffix(")$").split("|"))


def test_the_schema_names_the_vocabulary_the_loader_reads() -> None:
    defs = SCHEMA["$defs"]
    policy, test = defs["policy"]["properties"], defs["test"]["properties"]

    assert tuple(SCHEMA["properties"]) == TOP_KEYS
    assert tuple(policy) == POLICY_KEYS
    assert tuple(defs["match"]["properties"]) == MATCH_KEYS
    assert tuple(test) == TEST_KEYS
    assert tuple(test["expect"]["properties"]) == EXPECT_KEYS
    assert tuple(policy["decision"]["enum"]) == DECISIONS
    assert tuple(policy["mode"]["enum"]) == MODES
    assert tuple(test["expect"]["properties"]["decision"]["enum"]) == OUTCOMES
    assert tuple(defs["factor"]["enum"]) == FACTOR_KINDS
    assert _methods_in(defs["method"]["pattern"]) == HTTP_METHODS
    assert _methods_in(defs["matchMethod"]["pattern"]) == tuple(m for m in HTTP_METHODS if m != "HEAD")


def test_a_policy_spec_has_the_fields_of_the_policy_field_list() -> None:
    assert [f.name for f in dataclasses.fields(PolicySpec)] == ["id", *SPEC_FIELDS, "source", "line"]


def test_the_schema_is_a_valid_draft_2020_12_schema() -> None:
    jsonschema.Draft202012Validator.check_schema(SCHEMA)
    assert SCHEMA["$schema"] == "https://json-schema.org/draft/2020-12/schema"


@pytest.mark.parametrize("name", sorted(VALID_DOCS))
def test_valid_fixtures_load_and_match_the_schema(name: str) -> None:
    text = VALID_DOCS[name]

    assert load(text).ok, load(text).errors
    VALIDATOR.validate(yaml.safe_load(text))


@pytest.mark.parametrize("rule", [p for p in ALL_RULES if p.values[0].schema])
def test_the_schema_rejects_what_the_loader_rejects(rule: Case) -> None:
    data = yaml.safe_load(rule.text)

    assert not VALIDATOR.is_valid(data)


def test_the_demo_policy_file_loads_and_matches_the_schema() -> None:
    path = ROOT / "fixtures" / "stepup" / "policies.yaml"
    if not path.exists():
        pytest.skip(f"{path} is not written yet")

    result = load_files([path])

    assert result.ok, "\n".join(map(str, result.errors))
    VALIDATOR.validate(yaml.safe_load(path.read_text(encoding="utf-8")))


def test_head_in_methods_is_an_error_because_head_matches_as_get():
    text = (
        "version: 1\npolicies:\n  - id: p\n    match: {actions: [a], methods: [HEAD]}\n    decision: deny\n"
    )
    result = load_text(text, "p.yaml")
    assert [(e.line, e.field) for e in result.errors] == [(4, "policies[0].match.methods")]
    assert "list GET instead" in result.errors[0].message
