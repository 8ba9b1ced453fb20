"""Validation of one policy, of one policy test and of a whole file's shape, then across files.

Every problem of a file is collected as a :class:`~stepup.policy.model.PolicyError`
naming file, line and field; a policy or test with an error is left out of the result.

Pure Python: nothing here imports Django.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from stepup.policy.checks import (
    MAX_AGE,
    SECONDS,
    Check,
    Context,
    check_action_or_url,
    check_bool,
    check_description,
    check_factors,
    check_globs,
    check_ip,
    check_keys,
    check_list,
    check_mapping,
    check_method,
    check_methods,
    check_name,
    check_text,
    check_when,
    describe,
    field_name,
    one_of,
    optional,
    suggest,
    unknown,
)
from stepup.policy.locate import FieldPath, Format, Lines, ParseError, locate
from stepup.policy.model import (
    DECISIONS,
    EXPECT_KEYS,
    MATCH_KEYS,
    MODES,
    OUTCOMES,
    POLICY_KEYS,
    TEST_KEYS,
    TOP_KEYS,
    PolicyError,
    PolicyFile,
    PolicySpec,
    PolicyTest,
    factor_kinds,
)

_ID = re.compile(r"[a-z0-9][a-z0-9._-]*")
RESERVED_PREFIX = "stepup."
"""Ids that built-in policies (and the uncovered-action default) use; files may not."""


_POLICY_REQUIRED = {
    "id": "a unique id such as billing-update",
    "match": "what the policy covers, e.g. {actions: [billing.update]}",
    "decision": "step_up or deny",
}


@dataclass(frozen=True)
class _Match:
    actions: tuple[str, ...] = ()
    urls: tuple[str, ...] = ()
    methods: tuple[str, ...] = ()


def _policy_id(ctx: Context, path: FieldPath, value: object) -> str | None:
    text = check_text(ctx, path, value)
    if text is not None and text.startswith(RESERVED_PREFIX):
        ctx.error(path, f"ids starting with {RESERVED_PREFIX!r} are reserved for stepup's built-in policies")
        return None
    if text is None or _ID.fullmatch(text):
        return text
    slug = re.sub(r"[^a-z0-9._-]+", "-", text.lower()).strip("-._")
    hint = f"; did you mean {slug!r}?" if slug and _ID.fullmatch(slug) else ""
    ctx.error(
        path,
        f"policy id {text!r} must be lower-case letters, digits, '.', '_' and '-', "
        f"starting with a letter or digit{hint}",
    )
    return None


def _match(ctx: Context, path: FieldPath, value: object) -> _Match | None:
    data = check_mapping(ctx, path, value, "{actions: [billing.update]}")
    if data is None:
        return None
    check_keys(ctx, path, data, MATCH_KEYS)
    actions = optional(ctx, path, data, "actions", check_globs, [])
    urls = optional(ctx, path, data, "urls", check_globs, [])
    methods = optional(ctx, path, data, "methods", check_methods, [])
    if actions == [] and urls == []:
        ctx.error(
            path,
            "match needs at least one action or URL name, e.g. actions: [billing.update] "
            'or urls: ["admin:auth_user_change"]',
        )
        return None
    return _Match(tuple(actions or ()), tuple(urls or ()), tuple(methods or ()))


def _decision_terms(
    ctx: Context, path: FieldPath, data: Mapping[str, Any], decision: str | None
) -> tuple[int | None, tuple[str, ...]]:
    """``max_age`` and ``factors``: required / optional for step_up, forbidden for deny."""
    if decision == "deny":
        for key in ("max_age", "factors"):
            if key in data:
                ctx.error(
                    (*path, key),
                    f"{key} is only for decision: step_up; remove it from this deny policy",
                )
        return None, ()
    if decision == "step_up" and "max_age" not in data:
        ctx.error(
            (*path, "max_age"),
            "missing required key 'max_age' for decision: step_up: seconds since the last "
            "verification, e.g. max_age: 300 (0 = verify for this one request)",
        )
    max_age = optional(ctx, path, data, "max_age", MAX_AGE, None)
    factors = optional(ctx, path, data, "factors", check_factors, ())
    return max_age, tuple(factors or ())


def _policy(ctx: Context, path: FieldPath, value: object) -> PolicySpec | None:
    data = check_mapping(ctx, path, value, "{id: billing-update, match: ..., decision: step_up}")
    if data is None:
        return None
    before = len(ctx.errors)
    check_keys(ctx, path, data, POLICY_KEYS, _POLICY_REQUIRED)
    policy_id = optional(ctx, path, data, "id", _policy_id, None)
    description = optional(ctx, path, data, "description", check_description, "")
    match = optional(ctx, path, data, "match", _match, None)
    when = optional(ctx, path, data, "when", check_when, {})
    decision = optional(ctx, path, data, "decision", one_of(DECISIONS, "decision"), None)
    max_age, factors = _decision_terms(ctx, path, data, decision)
    enabled = optional(ctx, path, data, "enabled", check_bool, True)
    mode = optional(ctx, path, data, "mode", one_of(MODES, "mode"), "enforce")
    if len(ctx.errors) > before:
        return None
    return PolicySpec(
        id=policy_id,
        description=description,
        actions=match.actions,
        urls=match.urls,
        methods=match.methods,
        when=when,
        decision=decision,
        max_age=max_age,
        factors=factors,
        enabled=enabled,
        mode=mode,
        source=ctx.source,
        line=ctx.lines.line(path),
    )


# ---------------------------------------------------------------------------
# Policy tests.


def _verified(ctx: Context, path: FieldPath, value: object) -> dict[str, Any] | None:
    data = check_mapping(ctx, path, value, "{totp: 900}")
    if data is None:
        return None
    result: dict[str, Any] = {}
    for kind, seconds in data.items():
        if kind not in (known := factor_kinds()):
            ctx.error((*path, kind), unknown("factor kind", kind, known))
        else:
            result[kind] = SECONDS(ctx, (*path, kind), seconds)
    return result


def _input_attrs(ctx: Context, path: FieldPath, value: object) -> dict[str, Any] | None:
    data = check_mapping(ctx, path, value, "{amount: 5000}")
    return None if data is None else dict(data)


def _input_roles(ctx: Context, path: FieldPath, value: object) -> list[str] | None:
    return check_list(ctx, path, value, check_name, "[authenticated, finance]", empty_ok=True)


_INPUT: dict[str, Check] = {
    "action": check_action_or_url,
    "url": check_action_or_url,
    "method": check_method,
    "roles": _input_roles,
    "origin": check_ip,
    "session_age": SECONDS,
    "verified": _verified,
    "attrs": _input_attrs,
}


def _test_input(ctx: Context, path: FieldPath, value: object) -> dict[str, Any] | None:
    data = check_mapping(ctx, path, value, "{action: billing.update, method: POST}")
    if data is None:
        return None
    check_keys(ctx, path, data, list(_INPUT))
    if "action" not in data and "url" not in data:
        ctx.error(path, "give the request's action or url (or both), e.g. action: billing.update")
    result: dict[str, Any] = {"method": "GET"}
    result.update({k: check(ctx, (*path, k), data[k]) for k, check in _INPUT.items() if k in data})
    return result


_PolicyRef = tuple[str, FieldPath]


def _expect(ctx: Context, path: FieldPath, value: object) -> tuple[str | None, tuple[str, ...] | None]:
    data = check_mapping(ctx, path, value, "{decision: step_up, policies: [billing-update]}")
    if data is None:
        return None, None
    check_keys(ctx, path, data, EXPECT_KEYS, {"decision": "allow, step_up or deny"})
    decision = optional(ctx, path, data, "decision", one_of(OUTCOMES, "decision"), None)
    policies = optional(ctx, path, data, "policies", _expected_ids, None)
    return decision, None if policies is None else tuple(policies)


def _expected_ids(ctx: Context, path: FieldPath, value: object) -> list[str] | None:
    return check_list(ctx, path, value, check_name, "[billing-update]", empty_ok=True)


def _test(ctx: Context, path: FieldPath, value: object) -> tuple[PolicyTest | None, list[_PolicyRef]]:
    """One ``tests:`` entry, and the policy ids its ``expect.policies`` names."""
    data = check_mapping(ctx, path, value, "{name: ..., input: {...}, expect: {decision: allow}}")
    if data is None:
        return None, []
    before = len(ctx.errors)
    check_keys(
        ctx,
        path,
        data,
        TEST_KEYS,
        {
            "name": "what the test checks, in words",
            "input": "the request, e.g. {action: billing.update, method: POST}",
            "expect": "the outcome, e.g. {decision: step_up}",
        },
    )
    name = optional(ctx, path, data, "name", check_name, None)
    inp = optional(ctx, path, data, "input", _test_input, None)
    decision, policies = optional(ctx, path, data, "expect", _expect, (None, None))
    refs = [(pid, (*path, "expect", "policies", i)) for i, pid in enumerate(policies or ())]
    if len(ctx.errors) > before:
        return None, refs
    test = PolicyTest(name, inp, decision, policies, source=ctx.source, line=ctx.lines.line(path))
    return test, refs


def _check_refs(ctx: Context, refs: Sequence[_PolicyRef], known: Collection[str]) -> None:
    """``expect.policies`` may name the files' policies and stepup's own (built-in and default)."""
    from stepup.policy.builtins import BUILTIN_POLICIES, DEFAULT_POLICIES

    ours = {spec.id for spec in (*BUILTIN_POLICIES, *DEFAULT_POLICIES)}
    for policy_id, path in refs:
        if policy_id not in known and policy_id not in ours:
            ctx.error(
                path,
                f"no policy has id {policy_id!r}{suggest(policy_id, known)}; "
                "expect.policies names ids of policies in the loaded files or of stepup's own",
            )


# ---------------------------------------------------------------------------
# Whole files.


@dataclass
class Parsed:
    """One file, validated on its own; cross-file checks happen in :func:`merge`."""

    ctx: Context
    policies: list[PolicySpec] = field(default_factory=list)
    tests: list[PolicyTest] = field(default_factory=list)
    ids: list[tuple[str, FieldPath]] = field(default_factory=list)
    refs: list[_PolicyRef] = field(default_factory=list)

    @classmethod
    def unreadable(cls, source: str, message: str, line: int | None = None) -> Parsed:
        """A file that could not be read at all: one error for the whole file."""
        parsed = cls(Context(source, Lines()))
        parsed.ctx.error((), message, line=line)
        return parsed


def _version(ctx: Context, path: FieldPath, value: object) -> None:
    if type(value) is not int or value != 1:
        ctx.error(path, f"this file format has only version 1, not {describe(value)}; write version: 1")


def _document(parsed: Parsed, data: object) -> None:
    ctx = parsed.ctx
    top = check_mapping(ctx, (), data, "version: 1 and policies: [...]")
    if top is None:
        return
    check_keys(ctx, (), top, TOP_KEYS, {"version": "write version: 1 at the top of the file"})
    optional(ctx, (), top, "version", _version, None)
    for i, item in enumerate(optional(ctx, (), top, "policies", _items, None) or ()):
        path: FieldPath = ("policies", i)
        spec = _policy(ctx, path, item)
        if spec is not None:
            parsed.policies.append(spec)
        if isinstance(item, Mapping) and isinstance(item.get("id"), str):
            parsed.ids.append((item["id"], (*path, "id")))
    for i, item in enumerate(optional(ctx, (), top, "tests", _items, None) or ()):
        test, refs = _test(ctx, ("tests", i), item)
        parsed.refs.extend(refs)
        if test is not None:
            parsed.tests.append(test)


def _items(ctx: Context, path: FieldPath, value: object) -> list[object] | None:
    if isinstance(value, list):
        return value
    key = path[-1]
    ctx.error(path, f"expected a list of {key} (write {key}: [] for none); got {describe(value)}")
    return None


def parse(text: str, source: str, fmt: Format) -> Parsed:
    """One document read and validated on its own."""
    try:
        found = locate(text, fmt)
    except ParseError as exc:
        return Parsed.unreadable(source, exc.message, exc.line)
    parsed = Parsed(Context(source, found.lines))
    for path, line, message in found.problems:
        parsed.ctx.error(path, message, line=line)
    parsed.ctx.quiet = found.unreadable
    _document(parsed, found.data)
    return parsed


def merge(files: Sequence[Parsed], sources: Sequence[str]) -> PolicyFile:
    """Cross-file checks (duplicate ids, ``expect.policies``) and the combined result."""
    first: dict[str, tuple[Context, FieldPath]] = {}
    policies: list[PolicySpec] = []
    seen: set[str] = set()
    for parsed in files:
        for policy_id, path in parsed.ids:
            if policy_id in first:
                where, at = first[policy_id]
                parsed.ctx.error(
                    path,
                    f"duplicate policy id {policy_id!r}: already defined at "
                    f"{where.source}:{where.lines.line(at)} ({field_name(at)}); "
                    "policy ids must be unique across all policy files — rename one",
                )
            else:
                first[policy_id] = (parsed.ctx, path)
    for parsed in files:
        for spec in parsed.policies:
            if spec.id not in seen:  # a duplicate id is reported above; keep the first
                seen.add(spec.id)
                policies.append(spec)
        _check_refs(parsed.ctx, parsed.refs, first)
    errors = [
        error
        for parsed in files
        for error in sorted(parsed.ctx.errors, key=lambda e: e.line if e.line is not None else 0)
    ]
    return PolicyFile(
        policies=tuple(policies),
        tests=tuple(t for parsed in files for t in parsed.tests),
        errors=tuple(errors),
        sources=tuple(sources),
    )


def validate_policy(
    data: object, source: str = "<database>", line: int | None = None
) -> tuple[PolicySpec | None, list[PolicyError]]:
    """Validate one policy mapping (as in a file, or :meth:`PolicySpec.to_dict` from the database).

    :returns: the spec (``None`` when there are errors) and every error, each at ``line``.
    """
    ctx = Context(source, Lines(default=line))
    spec = _policy(ctx, (), data)
    return spec, ctx.errors


def validate_test(
    data: object,
    source: str = "<database>",
    line: int | None = None,
    known_ids: Collection[str] | None = None,
) -> tuple[PolicyTest | None, list[PolicyError]]:
    """Validate one ``tests:`` entry; with ``known_ids``, also its ``expect.policies``."""
    ctx = Context(source, Lines(default=line))
    test, refs = _test(ctx, (), data)
    if known_ids is not None:
        _check_refs(ctx, refs, known_ids)
    return (test if not ctx.errors else None), ctx.errors
