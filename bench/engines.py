"""The same policy set in three engines, each prepared as well as it can be outside the timed loop.

Each engine has ``prepare(facts)`` (done once per input, not timed: it builds
the engine's own input object) and ``decide(prepared) -> "allow" | "step_up" |
"deny"`` (timed). :data:`HOW` says in words how each one is called; the
benchmark prints it.
"""

from __future__ import annotations

import fnmatch
import ipaddress
import json
from collections.abc import Callable
from decimal import Decimal
from typing import Any

from bench.policies import MAX_AGE, OFFICE, OFFICE_RANGE, Facts, action_pattern, is_deny, is_glob
from stepup.policy.engine import compile_policies
from stepup.policy.model import Input, PolicySpec

HOW = {
    "stepup": (
        "PolicySet.decide(Input) on the set compiled once (compile_policies); Input built once per input."
    ),
    "cedar": (
        "cedarpy.is_authorized(request, PolicySet, Entities): policies parsed once (PolicySet.from_str), "
        "entities once (Entities.from_json_str), the request dict and its context JSON built once per input; "
        "a permit-all plus one forbid per policy (`unless` = the factor is fresh); step_up vs deny read "
        "from the determining policies."
    ),
    "cel": (
        "one cel.Program per policy (cel.compile, once), found through an exact-name dict plus glob "
        "patterns memoised per action (what stepup's own index does; CEL has no policy sets), "
        "each executed with a cel.Context built once per input; results combined in Python."
    ),
    "cel-scan": (
        "CEL alone, without a host-side index: every policy's program (its action match first) plus "
        "one for the default requirement, all executed on every request, same prepared cel.Context."
    ),
}


def _amount(value: int | str | None) -> Decimal | None:
    return None if value is None else Decimal(str(value))


def _fresh(age: int | None, limit: int = MAX_AGE) -> bool:
    return age is not None and 0 <= age <= limit


# --- stepup ------------------------------------------------------------------------------


class Stepup:
    name = "stepup"

    def __init__(self, specs: list[PolicySpec]) -> None:
        self.policy_set = compile_policies(specs, default_max_age=MAX_AGE, builtins=False)

    def prepare(self, facts: Facts) -> Input:
        return Input(
            action=facts.action,
            url=facts.url,
            method=facts.method,
            roles=frozenset(facts.roles),
            origin=ipaddress.ip_address(facts.origin) if facts.origin else None,
            verified={k: float(v) for k, v in facts.verified.items()},
            attrs={} if facts.amount is None else {"amount": facts.amount},
        )

    def decide(self, prepared: Input) -> str:
        return self.policy_set.decide(prepared).outcome


def hand_written(facts: Facts) -> Callable[[Input], str]:
    """The decision for ``facts`` hand-written in Python for the one policy that applies to it.

    Not an engine (it knows nothing else): the least any Python code can do to
    decide this input, for comparison with the engines. ``facts`` must be a
    :func:`bench.policies.late_match`: an exact action, a ``step_up`` policy.
    """
    action, roles = facts.action, frozenset(("finance", f"team{facts.action.split('.')[0][3:]}"))
    network, mask = OFFICE_RANGE[0], 0xFF000000

    def decide(inp: Input) -> str:
        if inp.action != action or inp.method != "POST" or roles.isdisjoint(inp.roles):
            return "allow"
        origin = inp.origin
        if origin is not None and origin.version == 4 and int(origin) & mask == network:
            return "allow"
        amount = inp.attrs.get("amount")
        if amount is not None and int(amount) <= 1000:
            return "allow"
        age = inp.verified.get("totp")
        return "allow" if age is not None and 0 <= age <= MAX_AGE else "step_up"

    return decide


# --- Cedar -------------------------------------------------------------------------------


def cedar_text(specs: list[PolicySpec]) -> tuple[str, dict[int, str]]:
    """The Cedar policies, and which of them (by Cedar's ``policyN`` id) are deny policies."""
    lines = ["permit(principal, action, resource);"]
    kinds: dict[int, str] = {0: "baseline"}
    origin = f'(!(context has origin) || !context.origin.isInRange(ip("{OFFICE}")))'
    amount = "(!(context has amount) || context.amount > 1000)"
    globs = []
    for spec in specs:
        i = int(spec.id[1:])
        if is_glob(i):
            scope = "action"
            match = f'context.action_name like "{action_pattern(i)}" && '
            globs.append(f'context.action_name like "{action_pattern(i)}"')
        else:
            scope = f'action == Action::"{action_pattern(i)}"'
            match = ""
        roles = '["auditor"]' if is_deny(i) else f'["finance", "team{i}"]'
        when = (
            f'{match}context.method == "POST" && context.roles.containsAny({roles}) && {origin} && {amount}'
        )
        unless = "" if is_deny(i) else f" unless {{ context.totp_age >= 0 && context.totp_age <= {MAX_AGE} }}"
        lines.append(f"forbid(principal, {scope}, resource) when {{ {when} }}{unless};")
        kinds[len(lines) - 1] = "deny" if is_deny(i) else "step_up"
    named = " || ".join(globs) or "false"
    lines.append(
        'forbid(principal, action, resource) when { context.declared && !(action in Action::"covered") '
        f"&& !({named}) }} unless {{ context.any_age >= 0 && context.any_age <= {MAX_AGE} }};"
    )
    kinds[len(lines) - 1] = "default"
    return "\n".join(lines), kinds


def cedar_entities(specs: list[PolicySpec]) -> str:
    covered = {"type": "Action", "id": "covered"}
    entities: list[dict[str, Any]] = [{"uid": covered, "attrs": {}, "parents": []}]
    for spec in specs:
        i = int(spec.id[1:])
        if not is_glob(i):
            entities.append(
                {"uid": {"type": "Action", "id": action_pattern(i)}, "attrs": {}, "parents": [covered]}
            )
    return json.dumps(entities)


class Cedar:
    name = "cedar"

    def __init__(self, specs: list[PolicySpec]) -> None:
        import cedarpy

        self.cedarpy = cedarpy
        text, self.kinds = cedar_text(specs)
        self.policies = cedarpy.PolicySet.from_str(text)
        self.entities = cedarpy.Entities.from_json_str(cedar_entities(specs))

    def prepare(self, facts: Facts) -> dict[str, Any]:
        context: dict[str, Any] = {
            "method": facts.method,
            "roles": list(facts.roles),
            "totp_age": facts.verified.get("totp", -1),
            "any_age": min(facts.verified.values(), default=-1),
            "declared": facts.action is not None,
            "action_name": facts.action or "",
        }
        if facts.origin:
            context["origin"] = {"__extn": {"fn": "ip", "arg": facts.origin}}
        amount = _amount(facts.amount)
        if amount is not None:
            # Cedar has no decimals beyond 4 places and compares Longs: 1000.5 > 1000 as 1001 > 1000.
            context["amount"] = int(amount) if amount == int(amount) else int(amount) + 1
        action = facts.action if facts.action is not None else f"url:{facts.url}"
        return {
            "principal": 'User::"u"',
            "action": f"Action::{json.dumps(action)}",
            "resource": 'Resource::"r"',
            "context": json.dumps(context),
        }

    def decide(self, prepared: dict[str, Any]) -> str:
        result = self.cedarpy.is_authorized(prepared, self.policies, self.entities)
        if result.allowed:
            return "allow"
        reasons = result.diagnostics.reasons
        if any(self.kinds.get(int(r[6:])) == "deny" for r in reasons):
            return "deny"
        return "step_up"


# --- CEL ---------------------------------------------------------------------------------


def cel_expression(i: int) -> str:
    roles = '"auditor" in roles' if is_deny(i) else f'("finance" in roles || "team{i}" in roles)'
    low, high = OFFICE_RANGE
    applies = (
        f'method == "POST" && {roles} && (!has_origin || !(origin >= {low} && origin <= {high})) '
        "&& (!has_amount || amount > 1000.0)"
    )
    if is_deny(i):
        return f"({applies}) ? 3 : 0"
    return f"({applies}) ? ((totp_age >= 0 && totp_age <= {MAX_AGE}) ? 1 : 2) : 0"


DEFAULT_CEL = f"(any_age >= 0 && any_age <= {MAX_AGE}) ? 1 : 2"


class Cel:
    name = "cel"

    def __init__(self, specs: list[PolicySpec]) -> None:
        import cel

        self.cel = cel
        self.exact: dict[str, list[Any]] = {}
        self.globs: list[tuple[str, Any]] = []
        for spec in specs:
            i = int(spec.id[1:])
            program = cel.compile(cel_expression(i))
            if is_glob(i):
                self.globs.append((action_pattern(i), program))
            else:
                self.exact.setdefault(action_pattern(i), []).append(program)
        self.default = cel.compile(DEFAULT_CEL)
        self._memo: dict[str | None, tuple[Any, ...]] = {}

    def _candidates(self, action: str | None) -> tuple[Any, ...]:
        found = self._memo.get(action)
        if found is None:
            programs = list(self.exact.get(action, ())) if action is not None else []
            if action is not None:
                programs += [p for pattern, p in self.globs if fnmatch.fnmatchcase(action, pattern)]
                if not programs:
                    programs = [self.default]
            found = self._memo[action] = tuple(programs)
        return found

    def prepare(self, facts: Facts) -> tuple[tuple[Any, ...], Any]:
        return self._candidates(facts.action), self.context(self.cel, facts)

    @staticmethod
    def context(cel: Any, facts: Facts) -> Any:
        amount = _amount(facts.amount)
        origin = int(ipaddress.ip_address(facts.origin)) if facts.origin else 0
        return cel.Context(
            variables={
                "method": facts.method,
                "roles": list(facts.roles),
                "has_origin": facts.origin is not None,
                "origin": origin,
                "has_amount": amount is not None,
                "amount": float(amount) if amount is not None else 0.0,
                "totp_age": facts.verified.get("totp", -1),
                "any_age": min(facts.verified.values(), default=-1),
            }
        )

    def decide(self, prepared: tuple[tuple[Any, ...], Any]) -> str:
        programs, context = prepared
        worst = 0
        for program in programs:
            result = program.execute(context)
            if result > worst:
                worst = result
        return "deny" if worst == 3 else "step_up" if worst == 2 else "allow"


class CelScan:
    """CEL on its own: every policy's program (with its action match) run on every request."""

    name = "cel-scan"

    def __init__(self, specs: list[PolicySpec]) -> None:
        import cel

        self.cel = cel
        exact, prefixes = [], []
        self.programs = []
        for spec in specs:
            i = int(spec.id[1:])
            pattern = action_pattern(i)
            if is_glob(i):
                prefix = pattern[:-1]  # the generated globs end in "*"
                prefixes.append(f'action.startsWith("{prefix}")')
                match = f'action.startsWith("{prefix}")'
            else:
                exact.append(json.dumps(pattern))
                match = f"action == {json.dumps(pattern)}"
            self.programs.append(cel.compile(f"has_action && {match} ? ({cel_expression(i)}) : 0"))
        covered = " || ".join([f"action in [{', '.join(exact)}]", *prefixes])
        self.programs.append(cel.compile(f"has_action && !({covered}) ? ({DEFAULT_CEL}) : 0"))

    def prepare(self, facts: Facts) -> Any:
        context = Cel.context(self.cel, facts)
        context.add_variable("has_action", facts.action is not None)
        context.add_variable("action", facts.action or "")
        return context

    def decide(self, prepared: Any) -> str:
        worst = 0
        for program in self.programs:
            result = program.execute(prepared)
            if result > worst:
                worst = result
        return "deny" if worst == 3 else "step_up" if worst == 2 else "allow"


ENGINES: dict[str, Callable[[list[PolicySpec]], Any]] = {
    "stepup": Stepup,
    "cedar": Cedar,
    "cel": Cel,
    "cel-scan": CelScan,
}


def available() -> dict[str, str | None]:
    """Each engine, and why it can't run here (``None`` when it can)."""
    missing: dict[str, str | None] = {"stepup": None}
    for name, module in (("cedar", "cedarpy"), ("cel", "cel"), ("cel-scan", "cel")):
        try:
            __import__(module)
            missing[name] = None
        except ImportError:
            missing[name] = f"{module} is not installed (pip install -e '.[bench]')"
    return missing
