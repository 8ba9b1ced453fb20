"""Compile policies into an indexed :class:`PolicySet` and decide on an :class:`Input`.

Semantics (CONTRACT section 3):

- a policy applies when its ``match`` and every ``when`` condition hold;
- any applying ``deny`` in enforce mode gives ``deny``; otherwise every
  applying ``step_up`` must be satisfied by a verification of one of its
  factors within its ``max_age`` (``0``: a single-request grant); all
  satisfied, or none applying, gives ``allow``;
- a declared action that no enabled, enforce-mode policy names at all is
  treated as one implicit ``step_up`` policy with the default ``max_age``;
- a condition on an unknown fact (missing attribute, wrong type, unknown
  origin or session age) holds, and is logged: missing data never loosens a
  rule.

Order never matters: candidates are evaluated as a set and every reduction
is commutative. Cost does not grow with policies that cannot match: the
candidates for an (action, URL name) pair are found through exact-name
dictionaries plus the glob patterns, once, and then cached.

Why one module of a little over 500 lines: compiling and deciding share the
index and the reduction rules above; they are read together.
"""

from __future__ import annotations

import functools
import ipaddress
import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from stepup.policy.conditions import Condition, compile_conditions
from stepup.policy.model import (
    ALLOW,
    DENY,
    STEP_UP,
    ConditionTrace,
    Decision,
    Input,
    PolicySpec,
    PolicyTrace,
    factor_kinds,
    implied_factor_kinds,
)

logger = logging.getLogger("stepup.policy")

DEFAULT_POLICY_ID = "stepup.default"
"""The id reported for the implicit requirement on an uncovered declared action."""

ANY_METHOD = "*"
"""An ``Input.method`` that every ``match.methods`` list matches.

For a request whose method a policy can't tell apart from the others: a
function view runs the same body for ``OPTIONS`` or ``PROPFIND`` as for
``GET`` or ``POST`` (see :func:`stepup.context.matching_method`).
"""

_CACHE_LIMIT = 4096

# How one applying policy evaluated (the decision cache key holds these).
_SATISFIED, _ONE_SHOT, _UNSATISFIED, _DENIES, _SHADOW_BLOCKS, _SHADOW_PASSES = range(6)
_SHADOW_STATES = (_SHADOW_BLOCKS, _SHADOW_PASSES)


# --- policies ---------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CompiledPolicy:
    spec: PolicySpec
    id: str
    methods: frozenset[str] | None
    conditions: tuple[Condition, ...]
    deny: bool
    shadow: bool
    max_age: int
    factors: frozenset[str]
    # Reason strings, built once.
    satisfied_reason: str
    denied_reason: str
    requirement: str

    def method_matches(self, method: str) -> bool:
        return self.methods is None or method == ANY_METHOD or method in self.methods

    def satisfied(self, inp: Input) -> tuple[bool, bool]:
        """(satisfied, by a single-request grant)."""
        if not self.factors.isdisjoint(inp.one_shot):
            return (True, self.max_age == 0)
        if self.max_age > 0:
            for kind, age in inp.verified.items():
                if kind in self.factors and 0 <= age <= self.max_age:
                    return (True, False)
        return (False, False)


def _compile_policy(spec: PolicySpec) -> CompiledPolicy:
    factors = frozenset(spec.factors) if spec.factors else implied_factor_kinds()
    max_age = spec.max_age or 0
    return CompiledPolicy(
        spec=spec,
        id=spec.id,
        methods=frozenset(spec.methods) if spec.methods else None,
        conditions=compile_conditions(spec.when),
        deny=spec.decision == DENY,
        shadow=spec.mode == "shadow",
        max_age=max_age,
        factors=factors,
        satisfied_reason=f"{spec.id}: satisfied",
        denied_reason=f"{spec.id}: denied",
        requirement=_requirement(spec.id, factors if spec.factors else None, max_age),
    )


class _Glob:
    """An ``actions``/``urls`` pattern: ``*`` matches any run of characters, nothing else is special.

    Matched in time linear in the name, without backtracking: the text before
    the first ``*`` must start the name, the text after the last must end it,
    and each part in between is found left to right (the leftmost place is
    always the right one when ``*`` is the only wildcard).
    """

    __slots__ = ("middle", "prefix", "suffix")

    def __init__(self, pattern: str) -> None:
        self.prefix, *middle, self.suffix = pattern.split("*")
        self.middle = tuple(middle)

    def matches(self, name: str) -> bool:
        end = len(name) - len(self.suffix)
        if end < len(self.prefix) or not name.startswith(self.prefix) or not name.endswith(self.suffix):
            return False
        at = len(self.prefix)
        for part in self.middle:
            found = name.find(part, at, end)
            if found < 0:
                return False
            at = found + len(part)
        return True


class _NameIndex:
    """Exact names in a dict, ``*`` patterns in one list; lookups are memoised by the caller."""

    def __init__(self) -> None:
        self.exact: dict[str, list[CompiledPolicy]] = {}
        self.globs: list[tuple[_Glob, CompiledPolicy]] = []

    def add(self, pattern: str, policy: CompiledPolicy) -> None:
        if "*" in pattern:
            self.globs.append((_glob(pattern), policy))
        else:
            self.exact.setdefault(pattern, []).append(policy)

    def lookup(self, name: str) -> list[CompiledPolicy]:
        found = list(self.exact.get(name, ()))
        found.extend(p for glob, p in self.globs if glob.matches(name))
        return found


@functools.lru_cache(maxsize=1024)
def _glob(pattern: str) -> _Glob:
    return _Glob(pattern)


def glob_matches(pattern: str, name: str) -> bool:
    """Whether an ``actions``/``urls`` pattern names ``name``, in time linear in the name."""
    if "*" not in pattern:
        return pattern == name
    return _glob(pattern).matches(name)


@dataclass(frozen=True, slots=True)
class _Candidates:
    policies: tuple[CompiledPolicy, ...]
    uncovered: bool  # a declared action that no enabled enforce-mode policy names


class PolicySet:
    """A compiled, immutable set of policies.

    Build it with :func:`compile_policies`; call :meth:`decide`.
    """

    def __init__(
        self,
        specs: Iterable[PolicySpec],
        *,
        default_max_age: int,
        version: str,
        reuse: PolicySet | None = None,
    ) -> None:
        self.version = version
        self.default_max_age = default_max_age
        self.specs: dict[str, PolicySpec] = {s.id: s for s in sorted(specs, key=lambda s: s.id)}
        self._actions = _NameIndex()
        self._urls = _NameIndex()
        self._compiled: dict[str, CompiledPolicy] = {}
        earlier = reuse._compiled if reuse is not None else {}
        for spec in self.specs.values():
            if not spec.enabled:
                continue
            policy = earlier.get(spec.id)
            if policy is None or policy.spec is not spec:  # the very same spec object: compiled alike
                policy = _compile_policy(spec)
            self._compiled[spec.id] = policy
            for pattern in spec.actions:
                self._actions.add(pattern, policy)
            for pattern in spec.urls:
                self._urls.add(pattern, policy)
        self._cache: dict[tuple[str | None, str | None], _Candidates] = {}
        self._url_named: dict[str, bool] = {}
        self._decisions: dict[tuple[str | int, ...], Decision] = {}
        self._default = _compile_policy(
            PolicySpec(
                id=DEFAULT_POLICY_ID,
                description="No policy covers this action; the default requirement applies.",
                decision="step_up",
                max_age=default_max_age,
            )
        )
        self._default_note = (
            "no policy covers action %r; the default requirement "
            f"(any factor within {default_max_age}s) applies"
        )
        self._allow = Decision(ALLOW, reasons=("no policy applies",), version=version)

    def __len__(self) -> int:
        return len(self.specs)

    # -- lookups --

    def _candidates(self, action: str | None, url: str | None) -> _Candidates:
        key = (action, url)
        found = self._cache.get(key)
        if found is None:
            by_id: dict[str, CompiledPolicy] = {}
            uncovered = False
            if action is not None:
                named = self._actions.lookup(action)
                by_id.update((p.id, p) for p in named)
                uncovered = not any(not p.shadow for p in named)
            if url is not None:
                by_id.update((p.id, p) for p in self._urls.lookup(url))
            found = _Candidates(tuple(by_id[k] for k in sorted(by_id)), uncovered)
            if len(self._cache) >= _CACHE_LIMIT:
                self._cache.clear()
            self._cache[key] = found
        return found

    def covers_action(self, action: str) -> bool:
        """Whether some enabled, enforce-mode policy's ``match.actions`` names ``action``."""
        return not self._candidates(action, None).uncovered

    def may_match(self, action: str | None, url: str | None) -> bool:
        """Whether any policy (or the uncovered-action default) could apply; no facts needed.

        For an action, always: a policy names it, or the default requirement covers it.
        """
        return action is not None or bool(self._candidates(None, url).policies)

    def names_url(self, url_name: str) -> bool:
        """Whether some enabled policy's ``match.urls`` names ``url_name`` (asked on every request)."""
        named = self._url_named.get(url_name)
        if named is None:
            named = bool(self._candidates(None, url_name).policies)
            if len(self._url_named) >= _CACHE_LIMIT:
                self._url_named.clear()
            self._url_named[url_name] = named
        return named

    def policies_for_url(self, url_name: str) -> tuple[PolicySpec, ...]:
        """The enabled policies whose ``match.urls`` name ``url_name`` (any method)."""
        return tuple(p.spec for p in self._candidates(None, url_name).policies)

    def policies_for_action(self, action: str) -> tuple[PolicySpec, ...]:
        return tuple(p.spec for p in self._candidates(action, None).policies)

    # -- deciding --

    def decide(self, inp: Input, *, trace: bool = False) -> Decision:
        """The decision for one input; with ``trace=True`` every candidate is explained."""
        if trace:
            return self._explain(inp)
        found = self._candidates(inp.action, inp.url)
        if not found.policies and not found.uncovered:
            return self._allow
        method = _matched_method(inp.method)
        applying: list[CompiledPolicy] = []
        notes: list[str] = []
        for policy in found.policies:
            if policy.methods is not None and method != ANY_METHOD and method not in policy.methods:
                continue
            if self._conditions_hold(policy, inp, notes):
                applying.append(policy)
        return self._combine(inp, applying, found.uncovered, notes)

    @staticmethod
    def _conditions_hold(policy: CompiledPolicy, inp: Input, notes: list[str]) -> bool:
        for condition in policy.conditions:
            held, note = condition.evaluate(inp)
            if note is not None:
                message = f"{policy.id}: {note}"
                notes.append(message)
                logger.warning("fail-closed condition: %s", message)
            if not held:
                return False
        return True

    def _combine(
        self, inp: Input, applying: list[CompiledPolicy], uncovered: bool, notes: list[str]
    ) -> Decision:
        if uncovered:
            applying.append(self._default)
            notes.append(self._default_note % (inp.action,))
        states: list[int] = []
        for policy in applying:
            if policy.shadow:
                states.append(_SHADOW_BLOCKS if self._would_block(policy, inp) else _SHADOW_PASSES)
            elif policy.deny:
                states.append(_DENIES)
            else:
                ok, one_shot = policy.satisfied(inp)
                states.append((_ONE_SHOT if one_shot else _SATISFIED) if ok else _UNSATISFIED)
        if notes:
            return self._build(applying, states, notes)
        # Without notes, a decision depends only on which policies applied and how each
        # evaluated: the same answer is shared (decisions are immutable).
        key: tuple[str | int, ...] = (*(p.id for p in applying), *states)
        found = self._decisions.get(key)
        if found is None:
            if len(self._decisions) >= _CACHE_LIMIT:
                self._decisions.clear()
            found = self._decisions[key] = self._build(applying, states, notes)
        return found

    def _build(self, applying: list[CompiledPolicy], states: list[int], notes: list[str]) -> Decision:
        pairs = list(zip(applying, states, strict=True))
        ids = tuple(p.id for p, state in pairs if state not in _SHADOW_STATES)
        shadow = tuple(p.id for p, state in pairs if state == _SHADOW_BLOCKS)
        denied = [p.denied_reason for p, state in pairs if state == _DENIES]
        if denied:
            return Decision(DENY, None, (), ids, (*denied, *notes), shadow, False, self.version)
        unsatisfied = [p for p, state in pairs if state == _UNSATISFIED]
        if not unsatisfied:
            satisfied = [p.satisfied_reason for p, state in pairs if state in (_SATISFIED, _ONE_SHOT)]
            reasons = (*satisfied, *notes) or ("no policy applies",)
            return Decision(ALLOW, None, (), ids, reasons, shadow, _ONE_SHOT in states, self.version)
        return Decision(
            STEP_UP,
            min(p.max_age for p in unsatisfied),
            _acceptable(unsatisfied),
            ids,
            (*(p.requirement for p in unsatisfied), *notes),
            shadow,
            False,
            self.version,
        )

    @staticmethod
    def _would_block(policy: CompiledPolicy, inp: Input) -> bool:
        return policy.deny or not policy.satisfied(inp)[0]

    # -- explaining --

    def _explain(self, inp: Input) -> Decision:
        traces: list[PolicyTrace] = []
        applying: list[CompiledPolicy] = []
        notes: list[str] = []
        candidates = {p.id: p for p in self._candidates(inp.action, inp.url).policies}
        for spec in self.specs.values():
            named = (inp.action is not None and any(glob_matches(a, inp.action) for a in spec.actions)) or (
                inp.url is not None and any(glob_matches(u, inp.url) for u in spec.urls)
            )
            if not named:
                continue
            if not spec.enabled:
                traces.append(PolicyTrace(spec.id, True, False, (), "disabled"))
                continue
            policy = candidates[spec.id]
            if not policy.method_matches(_matched_method(inp.method)):
                detail = f"method {inp.method} not in {sorted(policy.methods or ())}"
                traces.append(
                    PolicyTrace(
                        spec.id,
                        False,
                        False,
                        (ConditionTrace("match.methods", False, detail),),
                        "not matched",
                    )
                )
                continue
            conditions: list[ConditionTrace] = []
            held_all = True
            for condition in policy.conditions:
                held, note = condition.evaluate(inp)
                detail = condition.describe() + (f" ({note})" if note else "")
                conditions.append(ConditionTrace(condition.field, held, detail))
                if note:
                    notes.append(f"{policy.id}: {note}")
                if not held:
                    held_all = False
                    break
            if held_all:
                applying.append(policy)
                effect = self._effect(policy, inp)
            else:
                effect = "condition failed"
            traces.append(PolicyTrace(spec.id, True, held_all, tuple(conditions), effect))
        uncovered = inp.action is not None and not self.covers_action(inp.action)
        decision = self._combine(inp, applying, uncovered, notes)
        if uncovered:
            traces.append(PolicyTrace(DEFAULT_POLICY_ID, True, True, (), self._effect(self._default, inp)))
        return Decision(
            decision.outcome,
            decision.max_age,
            decision.factors,
            decision.policies,
            decision.reasons,
            decision.shadow,
            decision.one_shot,
            decision.version,
            tuple(traces),
        )

    @staticmethod
    def _effect(policy: CompiledPolicy, inp: Input) -> str:
        satisfied = policy.satisfied(inp)[0]
        effect = "deny" if policy.deny else ("satisfied" if satisfied else "unsatisfied")
        return f"shadow: {effect}" if policy.shadow else effect


def _matched_method(method: str) -> str:
    """HEAD is matched as GET: Django serves HEAD with the GET view, so a GET rule must cover it."""
    return "GET" if method == "HEAD" else method


def _requirement(policy_id: str, factors: frozenset[str] | None, max_age: int) -> str:
    kinds = "any factor" if factors is None else " or ".join(_ordered(factors))
    if max_age == 0:
        return f"{policy_id}: needs {kinds} verified for this request"
    return f"{policy_id}: needs {kinds} verified within {max_age}s"


def _ordered(kinds: Iterable[str]) -> tuple[str, ...]:
    kinds = set(kinds)
    known = factor_kinds()
    return tuple(k for k in known if k in kinds) + tuple(sorted(kinds - set(known)))


def _acceptable(unsatisfied: Sequence[CompiledPolicy]) -> tuple[str, ...]:
    """The factor kinds to offer: those every unsatisfied policy accepts, else all they name.

    Empty means any kind; with no common kind the user verifies one factor at a
    time and is asked again for the rest.
    """
    constrained = [p.factors for p in unsatisfied if p.spec.factors]
    if not constrained:
        return ()
    common = frozenset.intersection(*constrained)
    return _ordered(common or frozenset.union(*constrained))


def compile_policies(
    specs: Iterable[PolicySpec],
    *,
    default_max_age: int = 300,
    version: str = "",
    builtins: bool = True,
    reuse: PolicySet | None = None,
) -> PolicySet:
    """Compile validated specs into a :class:`PolicySet`.

    Unless ``builtins=False``, the built-in policies and the default policies
    the specs don't replace (:mod:`stepup.policy.builtins`) are added; a spec
    that reuses one of their ids is dropped.

    :param reuse: an earlier set whose compiled policies are taken over for
        the very same spec objects (a reload after a change recompiles only
        what changed).
    """
    from stepup.policy.builtins import BUILTIN_POLICIES, DEFAULT_POLICIES, replaced_defaults

    if not builtins:
        return PolicySet(specs, default_max_age=default_max_age, version=version, reuse=reuse)
    reserved = {b.id for b in (*BUILTIN_POLICIES, *DEFAULT_POLICIES)}
    kept = [s for s in specs if s.id not in reserved]
    replaced = replaced_defaults(kept)
    defaults = [d for d in DEFAULT_POLICIES if d.id not in replaced]
    return PolicySet(
        [*kept, *BUILTIN_POLICIES, *defaults], default_max_age=default_max_age, version=version, reuse=reuse
    )


def input_from_dict(data: Mapping[str, Any]) -> Input:
    """An :class:`Input` from a policy test's ``input:`` (CONTRACT section 3).

    ``verified: {kind: 0}`` stands for a single-request grant, the only thing
    that satisfies ``max_age: 0``.
    """
    verified = {str(k): float(v) for k, v in (data.get("verified") or {}).items()}
    origin = data.get("origin")
    session_age = data.get("session_age")
    return Input(
        action=data.get("action"),
        url=data.get("url"),
        method=str(data.get("method", "GET")).upper(),
        roles=frozenset(data.get("roles") or ()),
        origin=ipaddress.ip_address(origin) if origin else None,
        session_age=float(session_age) if session_age is not None else None,
        verified={k: v for k, v in verified.items() if v > 0},
        one_shot=frozenset(k for k, v in verified.items() if v == 0),
        attrs=dict(data.get("attrs") or {}),
    )
