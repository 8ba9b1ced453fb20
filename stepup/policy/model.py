"""The policy language's data types: parsed policies, evaluation inputs, decisions.

Pure Python: nothing here imports Django, so policy files can be parsed,
compiled and evaluated (``stepup validate``/``test``, the benchmark, other
tools) without a configured project.
"""

from __future__ import annotations

import ipaddress
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Literal, get_args

# The policy language's vocabulary: the loader, the engine, the models, the admin, the
# OpenAPI description and the JSON Schema test all read these, so each is written once.

FACTOR_KINDS: tuple[str, ...] = ("totp", "hotp", "static", "email", "webauthn", "password")
"""The built-in factor kinds (a project may register more: ``STEPUP["FACTORS"]``)."""
EXPLICIT_FACTOR_KINDS: frozenset[str] = frozenset({"password"})
"""Built-in kinds a policy must name to accept: never implied by an omitted ``factors``."""


_factor_provider: Any = None


def set_factor_provider(provider: Any) -> None:
    """Install where the registered kinds come from: an object with ``kinds()`` and ``implied_kinds()``.

    The Django app installs :mod:`stepup.factors.registry` in ``ready()``;
    without one (pure Python use) the built-in kinds apply.
    """
    global _factor_provider
    _factor_provider = provider


def _registry() -> Any:
    return _factor_provider


def factor_kinds() -> tuple[str, ...]:
    """Every factor kind a policy may name in ``factors:``: the registered ones in a project."""
    registry = _registry()
    return registry.kinds() if registry is not None else FACTOR_KINDS


def implied_factor_kinds() -> frozenset[str]:
    """The kinds a policy that omits ``factors`` accepts: every registered kind but ``password``."""
    registry = _registry()
    if registry is not None:
        return frozenset(registry.implied_kinds())
    return frozenset(FACTOR_KINDS) - EXPLICIT_FACTOR_KINDS


HTTP_METHODS: tuple[str, ...] = (
    "GET",
    "HEAD",
    "POST",
    "PUT",
    "PATCH",
    "DELETE",
    "OPTIONS",
    "TRACE",
    "CONNECT",
)
"""Every HTTP method a policy's ``match.methods`` or a request input may name (any case)."""

Outcome = Literal["allow", "step_up", "deny"]
PolicyDecision = Literal["step_up", "deny"]
Mode = Literal["enforce", "shadow"]

OUTCOMES: tuple[Outcome, ...] = get_args(Outcome)
"""What a decision can be (a policy test's ``expect.decision``)."""
DECISIONS: tuple[PolicyDecision, ...] = get_args(PolicyDecision)
"""What a policy's ``decision:`` can be."""
MODES: tuple[Mode, ...] = get_args(Mode)
"""What a policy's ``mode:`` can be."""

ALLOW: Outcome = "allow"
STEP_UP: Outcome = "step_up"
DENY: Outcome = "deny"

TOP_KEYS = ("version", "policies", "tests")
"""The keys of a policy file."""
POLICY_KEYS = ("id", "description", "match", "when", "decision", "max_age", "factors", "enabled", "mode")
"""The keys of one policy, in the order files are written."""
MATCH_KEYS = ("actions", "urls", "methods")
"""The keys of a policy's ``match:``."""
SPEC_FIELDS: tuple[str, ...] = tuple(
    name for key in POLICY_KEYS if key != "id" for name in (MATCH_KEYS if key == "match" else (key,))
)
"""A policy's fields besides its id, ``match`` spread into its keys: what a stored policy's columns hold."""
TEST_KEYS = ("name", "input", "expect")
"""The keys of one entry of a file's ``tests:``."""
EXPECT_KEYS = ("decision", "policies")
"""The keys of a policy test's ``expect:``."""

Description = str | Mapping[str, str]
"""A policy's ``description``: one text, or texts by language code (``{"en": …, "de": …}``)."""
FALLBACK_LANGUAGE = "en"
"""The language a per-language description must have, shown where the active one is missing."""
LANGUAGE_CODE = re.compile(r"[a-z]{2,3}(?:-[a-z0-9]{2,8})*")
"""A language code as Django writes it: ``de``, ``pt-br``, ``zh-hans``, ``sr-latn``."""


def localized(description: Description, language: str | None) -> str:
    """The text of ``description`` for ``language``: exact, then its base language, then ``en``.

    ``localized({"en": "Pay", "de": "Zahlen"}, "de-at") == "Zahlen"``; a plain
    string is the same in every language.
    """
    if isinstance(description, str):
        return description
    if language:
        code = language.lower().replace("_", "-")
        for candidate in (code, code.split("-")[0]):
            if candidate in description:
                return description[candidate]
    return description.get(FALLBACK_LANGUAGE, "")


IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

NUMBER_MAX_LENGTH = 100
"""The longest string that can be a number: a longer one is not (a condition on it holds)."""

_DECIMAL = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)")


def as_number(value: Any) -> int | Decimal | None:
    """``value`` as an exact number, or ``None`` when it is not a number. Never raises.

    Strings count when they are plain decimals in ASCII digits (``"5000"``,
    ``"12.50"``) of at most :data:`NUMBER_MAX_LENGTH` characters; booleans,
    NaN, infinities, exponents and non-ASCII digits do not. Whole numbers come
    back as ``int`` (the fast path), others as ``Decimal``.
    """
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        if len(value) > NUMBER_MAX_LENGTH:
            return None
        if value.isascii() and value.isdigit():
            return int(value)
        return Decimal(value) if _DECIMAL.fullmatch(value) else None
    if isinstance(value, float):
        return Decimal(value) if math.isfinite(value) else None
    if isinstance(value, Decimal):
        return value if value.is_finite() else None
    return None


@dataclass(frozen=True, slots=True)
class PolicyError:
    """One problem in a policy file: where it is and what to fix."""

    file: str
    line: int | None
    field: str
    message: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line is not None else self.file
        return f"{where}: {self.field}: {self.message}" if self.field else f"{where}: {self.message}"


@dataclass(frozen=True)
class PolicySpec:
    """One validated policy, in canonical form.

    ``match`` holds ``actions``, ``urls`` and ``methods`` (tuples, methods
    upper-case); ``when`` holds only the conditions the file gave, with
    operands normalised (CIDRs as strings, numbers as ``int``/``float``).
    :meth:`to_dict` gives the form written to files and stored in the
    database; ``loader.validate_policy`` turns such a dict back into a spec.
    """

    id: str
    description: Description = ""
    actions: tuple[str, ...] = ()
    urls: tuple[str, ...] = ()
    methods: tuple[str, ...] = ()
    when: Mapping[str, Any] = field(default_factory=dict)
    decision: PolicyDecision = "step_up"
    max_age: int | None = None
    factors: tuple[str, ...] = ()
    enabled: bool = True
    mode: Mode = "enforce"
    # Where the policy was read from; not part of its identity.
    source: str = field(default="", compare=False)
    line: int | None = field(default=None, compare=False)

    def to_dict(self) -> dict[str, Any]:
        """The canonical policy-file form of this policy (defaults written out)."""
        match: dict[str, Any] = {}
        if self.actions:
            match["actions"] = list(self.actions)
        if self.urls:
            match["urls"] = list(self.urls)
        if self.methods:
            match["methods"] = list(self.methods)
        description = self.description if isinstance(self.description, str) else dict(self.description)
        data: dict[str, Any] = {"id": self.id, "description": description, "match": match}
        if self.when:
            data["when"] = _plain(self.when)
        data["decision"] = self.decision
        if self.decision == "step_up":
            data["max_age"] = self.max_age
            if self.factors:
                data["factors"] = list(self.factors)
        data["enabled"] = self.enabled
        data["mode"] = self.mode
        return data


def _plain(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


@dataclass(frozen=True)
class PolicyTest:
    """One entry of a file's ``tests:`` block."""

    name: str
    input: Mapping[str, Any]
    expect_decision: str
    expect_policies: tuple[str, ...] | None = None
    source: str = field(default="", compare=False)
    line: int | None = field(default=None, compare=False)


@dataclass(frozen=True)
class PolicyFile:
    """The result of reading policy files: policies, tests and every error found."""

    policies: tuple[PolicySpec, ...] = ()
    tests: tuple[PolicyTest, ...] = ()
    errors: tuple[PolicyError, ...] = ()
    sources: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        return not self.errors


@dataclass(slots=True)
class Input:
    """What the engine decides on: one request, already reduced to facts.

    ``roles`` may be a callable so that group names are only loaded when a
    candidate policy has a ``roles`` condition. ``verified`` maps a factor
    kind to seconds since the session last verified that kind.
    ``one_shot`` holds factor kinds with an unused single-request grant bound
    to exactly this action/URL and these attributes (what ``max_age: 0``
    needs). ``None`` for ``origin``/``session_age`` means unknown, and
    conditions on unknown facts hold (fail closed).
    """

    action: str | None = None
    url: str | None = None
    method: str = "GET"
    roles: frozenset[str] | Callable[[], frozenset[str]] = frozenset()
    origin: IPAddress | None = None
    session_age: float | None = None
    verified: Mapping[str, float] = field(default_factory=dict)
    one_shot: frozenset[str] = frozenset()
    attrs: Mapping[str, Any] = field(default_factory=dict)

    def get_roles(self) -> frozenset[str]:
        roles = self.roles
        if callable(roles):
            roles = self.roles = frozenset(roles())
        return roles


@dataclass(frozen=True)
class ConditionTrace:
    """How one condition of one policy evaluated."""

    field: str
    held: bool
    detail: str


@dataclass(frozen=True)
class PolicyTrace:
    """How one candidate policy evaluated: matched, which conditions held, and its effect."""

    policy: str
    matched: bool
    applied: bool
    conditions: tuple[ConditionTrace, ...]
    effect: str
    """One of ``not matched``, ``condition failed``, ``deny``, ``satisfied``,
    ``unsatisfied``, ``shadow: <effect>``, ``disabled``."""


@dataclass(frozen=True)
class Decision:
    """The answer for one request.

    :ivar outcome: ``"allow"``, ``"step_up"`` or ``"deny"``.
    :ivar max_age: for ``step_up``, the strictest ``max_age`` (seconds since the
        last verification) that the user must meet; ``None`` otherwise.
    :ivar factors: for ``step_up``, the factor kinds that would satisfy the
        unsatisfied policies (empty: any confirmed device).
    :ivar policies: ids of the enforced policies that applied.
    :ivar reasons: human-readable explanations.
    """

    outcome: Outcome
    max_age: int | None = None
    factors: tuple[str, ...] = ()
    policies: tuple[str, ...] = ()
    reasons: tuple[str, ...] = ()
    shadow: tuple[str, ...] = ()
    """Shadow-mode policies that applied (evaluated and logged, never enforced)."""
    one_shot: bool = False
    """True when the outcome relies on a single-request grant, which the caller must consume."""
    version: str = ""
    """The policy-set version the decision was made under."""
    trace: tuple[PolicyTrace, ...] | None = field(default=None, compare=False)

    @property
    def allowed(self) -> bool:
        return self.outcome == ALLOW
