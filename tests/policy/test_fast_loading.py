"""Big files load fast and exactly as before: libyaml's composer with PyYAML's messages, lazy JSON lines."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from stepup.policy import locate
from stepup.policy.loader import load_files, load_text
from stepup.policy.model import PolicyFile

ROOT = Path(__file__).resolve().parents[2]
DEMO = ROOT / "fixtures" / "stepup" / "policies.yaml"

needs_libyaml = pytest.mark.skipif(not yaml.__with_libyaml__, reason="PyYAML is built without libyaml")


def generated(n: int) -> str:
    """``n`` policies in every style a hand-written file uses, then a test for each tenth."""
    lines = ["# generated", "version: 1", "policies:"]
    for i in range(n):
        lines += [f"  - id: p{i:05d}", f"    description: 'policy {i}: it''s number {i}'"]
        if i % 3 == 0:
            lines += [
                "    match:",
                f"      actions: [svc{i}.*, 'svc{i}.export']",
                "      methods:",
                "        - POST",
            ]
        else:
            lines.append(f'    match: {{urls: ["admin:page_{i}"], methods: [PUT, delete]}}')
        if i % 4 == 0:
            lines += [
                "    when:",
                "      roles: {any_of: [finance]}",
                f'      origin: {{not_in: ["10.{i % 256}.0.0/16"]}}',
                "      attrs:",
                f"        amount: {{gt: {i}.5}}",
                "        currency: {in: [EUR, 'USD']}",
            ]
        if i % 7 == 3:
            lines.append("    decision: deny")
        else:
            lines += ["    decision: step_up", f"    max_age: {i * 10}", "    factors: [totp, webauthn]"]
        lines += [
            "",
            f"    enabled: {'false' if i % 11 == 0 else 'true'}  # comment {i}",
            "    mode: enforce",
        ]
    lines.append("tests:")
    for i in range(0, n, 10):
        lines += [
            f"  - name: test {i}",
            f"    input: {{action: svc{i}.export, method: POST, verified: {{totp: 5}}}}",
            "    expect:",
            f"      decision: {'deny' if i % 7 == 3 else 'allow'}",
        ]
    return "\n".join(lines) + "\n"


def everything(result: PolicyFile) -> Any:
    """What a load gives, lines included (a spec's or test's line is left out of its equality)."""
    return (
        [(spec, spec.source, spec.line) for spec in result.policies],
        [(test, test.source, test.line) for test in result.tests],
        result.errors,
        result.sources,
    )


def pure_python(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(locate, "_LIBYAML", None)


@needs_libyaml
@pytest.mark.parametrize("source", ["demo", "generated"])
def test_libyaml_and_pure_python_read_the_same_policies_and_lines(
    source: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    text = DEMO.read_text(encoding="utf-8") if source == "demo" else generated(1_000)
    fast = load_text(text, "policies.yaml")
    pure_python(monkeypatch)

    slow = load_text(text, "policies.yaml")

    assert fast.ok, fast.errors[:3]
    assert everything(fast) == everything(slow)
    assert len(fast.policies) > 1 and fast.policies[-1].line is not None and fast.policies[-1].line > 10


@needs_libyaml
def test_a_file_read_by_libyaml_never_goes_through_the_pure_python_parser(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def refuse(text: str) -> None:
        raise AssertionError("the pure-Python parser was used")

    monkeypatch.setattr(locate, "_SafeComposer", refuse)

    assert load_files([DEMO]).ok
    assert load_text(generated(50), "p.yaml").ok


@needs_libyaml
@pytest.mark.parametrize(
    ("text", "line", "says"),
    [
        ("version: 1\npolicies: *policies\n", 2, "YAML anchors and aliases are not supported"),
        (
            "version: 1\npolicies: [{id: a, match: {actions: [x]}, decision: deny}\n",
            3,
            "expected ',' or ']', but got '<stream end>'",
        ),
        ("version: 1\npolicies: {id: a\n", 3, "expected ',' or '}', but got '<stream end>'"),
        ("version:\t1\n", 1, "found character '\\t' that cannot start any token (column 9)"),
        ("version: 1\n\tpolicies: []\n", 2, "found character '\\t' that cannot start any token"),
        ("version: 1\ndescription: a\x07b\n", 2, "invalid character '\\x07' in YAML"),
        ("version: 1\npolicies: &p []\n", 2, "YAML anchors and aliases are not supported"),
    ],
)
def test_a_yaml_error_reads_as_the_pure_python_parser_words_it(
    text: str, line: int, says: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    fast = load_text(text, "p.yaml")
    pure_python(monkeypatch)

    slow = load_text(text, "p.yaml")

    assert fast.errors == slow.errors
    [error] = fast.errors
    assert (error.line, says in error.message) == (line, True), error


def test_a_valid_json_file_works_out_only_the_lines_of_its_policies_and_tests(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    text = json.dumps(yaml.safe_load(generated(200)), indent=2)
    every_line = locate._json_lines(text).at
    monkeypatch.setattr(locate, "_json_lines", None)  # a valid file never calls it

    result = load_text(text, "p.json")

    assert result.ok, result.errors[:3]
    assert [s.line for s in result.policies] == [every_line["policies", i] for i in range(200)]
    assert [t.line for t in result.tests] == [every_line["tests", i] for i in range(20)]


@pytest.mark.parametrize(
    "text",
    [
        '{"version": 1, "policies": [], "version": 2}',
        '{\n "policies": [\n  {"id": "a"},\n  {"id": "b", "id": "c"}\n ],\n "policies": [1, [2], {"x": 3}, 4]\n}',
        '[\n  {"a": 1}\n]',
        "{}",
        '"text"',
        '{"tests": [], "policies": {"a": [1, 2]}, "x": "y,]}"}',
    ],
)
def test_the_lines_worked_out_early_are_those_of_the_whole_tokenizer(text: str) -> None:
    early = locate._json_item_lines(text)
    every = locate._json_lines(text)

    assert early.at.items() <= every.at.items()
    assert early.duplicates.items() <= every.duplicates.items()
    assert early.line(("policies", 1, "id")) == every.line(("policies", 1, "id"))
    assert (early.at, early.duplicates) == (every.at, every.duplicates)  # worked out on demand


def test_an_error_in_json_still_names_its_own_line() -> None:
    text = json.dumps(yaml.safe_load(generated(30)), indent=2).replace('"mode": "enforce"', '"mode": "on"', 1)

    [error] = load_text(text, "p.json").errors

    assert (error.field, error.line) == ("policies[0].mode", text.split("\n").index('      "mode": "on"') + 1)
