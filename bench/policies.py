"""The generated policy sets and the table of inputs every engine is checked on.

Policy ``i`` of a set of N (ids ``p00000`` …):

- targets ``svc<i>.action`` (every tenth, ``svc<i>.*``, a glob), ``POST`` only;
- applies when the roles include ``finance`` or ``team<i>``, the client is
  outside ``10.0.0.0/8`` and the ``amount`` attribute is over 1000 (a missing
  origin or amount counts as holding: stepup fails closed on missing facts);
- needs a ``totp`` verification from the last 300 s;
- every seventh (``i % 7 == 3``) is a ``deny`` for the ``auditor`` role instead.

A declared action that no policy names needs any factor within 300 s
(stepup's default requirement). The same set is translated for Cedar and CEL
in :mod:`bench.engines`.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any

from stepup.policy.model import PolicySpec

MAX_AGE = 300
OFFICE = "10.0.0.0/8"
OFFICE_RANGE = (0x0A000000, 0x0AFFFFFF)  # the same network as an integer range (for CEL)


def is_glob(i: int) -> bool:
    return i % 10 == 9


def is_deny(i: int) -> bool:
    return i % 7 == 3


def action_pattern(i: int) -> str:
    return f"svc{i}.*" if is_glob(i) else f"svc{i}.action"


def action_name(i: int) -> str:
    """A concrete action the pattern of policy ``i`` names."""
    return f"svc{i}.export" if is_glob(i) else f"svc{i}.action"


def make_policies(n: int) -> list[PolicySpec]:
    specs = []
    for i in range(n):
        when: dict[str, Any] = {
            "roles": {"any_of": ["auditor"] if is_deny(i) else ["finance", f"team{i}"]},
            "origin": {"not_in": [OFFICE]},
            "attrs": {"amount": {"gt": 1000}},
        }
        effect: dict[str, Any] = (
            {"decision": "deny"}
            if is_deny(i)
            else {"decision": "step_up", "max_age": MAX_AGE, "factors": ("totp",)}
        )
        specs.append(
            PolicySpec(id=f"p{i:05d}", actions=(action_pattern(i),), methods=("POST",), when=when, **effect)
        )
    return specs


@dataclass(frozen=True)
class Facts:
    """One request as plain facts, before any engine's own representation."""

    action: str | None = None
    url: str | None = None
    method: str = "POST"
    roles: tuple[str, ...] = ()
    origin: str | None = None
    amount: int | str | None = None
    verified: dict[str, int] = field(default_factory=dict)

    def describe(self) -> str:
        return (
            f"action={self.action} url={self.url} method={self.method} roles={list(self.roles)} "
            f"origin={self.origin} amount={self.amount!r} verified={self.verified}"
        )


def late_match(n: int) -> Facts:
    """The policy near the end of the set applies and is satisfied: ``allow`` after evaluating it."""
    i = n - 2 if not is_deny(n - 2) else n - 3
    return Facts(
        action=action_name(i),
        method="POST",
        roles=("authenticated", "finance"),
        origin="203.0.113.9",
        amount="5000",
        verified={"totp": 10},
    )


def no_match() -> Facts:
    """A route no policy names (a URL-only decision, as the middleware makes on most requests)."""
    return Facts(url="demo:home", method="GET", roles=("authenticated",))


def input_table(n: int, *, size: int = 240, seed: int = 7) -> list[Facts]:
    """A varied, reproducible table: every outcome, globs, denies, missing facts, the default."""
    rng = random.Random(seed + n)
    picked = sorted({0, 1, 3, 9, n // 2, n - 2, n - 1} & set(range(n)))
    rows: list[Facts] = [late_match(n), no_match()]
    for verified in ({}, {"totp": 100}, {"static": 100}, {"totp": 400}):
        rows.append(Facts(action="nothing.declared", roles=("finance",), verified=verified))
    rows.append(Facts(action=f"svc{n + 5}.action", roles=("finance",)))  # beyond the set: uncovered
    while len(rows) < size:
        i = rng.choice(picked)
        rows.append(
            Facts(
                action=action_name(i),
                method=rng.choice(("POST", "GET")),
                roles=rng.choice(((), ("finance",), (f"team{i}",), ("auditor",), ("auditor", "finance"))),
                origin=rng.choice(("203.0.113.9", "10.1.2.3", None)),
                amount=rng.choice((5000, 500, None, "5000", 1000, "1000.5")),
                verified=rng.choice(({}, {"totp": 100}, {"totp": 400}, {"static": 100}, {"totp": 300})),
            )
        )
    return rows
