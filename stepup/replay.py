"""Impact preview: replay recent decisions against proposed policies and find those that would flip.

Every enforced decision on a protected request is logged as an ``allowed``,
``challenged`` or ``denied`` row together with the facts it was made on (roles,
method, URL name, action, attributes as logged, client IP, session age, the
verification age of each factor kind and the single-request grants; see
:func:`stepup.audit.decision_facts`). :func:`replay` decides each such row of
the last days twice, under the policies in force (the database) and under the
proposed ones (the files of a pull request), and counts the rows whose outcome
differs, grouped by before/after outcome, action or URL name and roles.

Comparing two replays of the same facts isolates what the proposal changes:
a decision made under an older policy version, or on facts the log can't
reproduce exactly, is not mistaken for an effect of the proposal. Such rows
(recorded outcome differing from the replay under the current policies) are
counted as :attr:`Replay.unexplained`.

Limits: attributes whose names look secret are logged redacted, so a condition
on one holds (fail closed) in a replay; anonymous requests are only logged when
denied.
"""

from __future__ import annotations

import ipaddress
from collections import defaultdict
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.utils import timezone

from stepup.audit import DECISION_EVENTS
from stepup.policy.engine import PolicySet, compile_policies
from stepup.policy.model import ALLOW, DENY, STEP_UP, Input

OUTCOME_OF_EVENT = {"allowed": ALLOW, "challenged": STEP_UP, "denied": DENY}
"""The enforced outcome each decision event records."""

_AFTER: dict[str, str] = {ALLOW: "be allowed", STEP_UP: "need step-up", DENY: "be denied"}
_FIELDS = ("event", "user_id", "username", "action", "method", "roles", "client_ip", "attrs", "facts")


@dataclass(frozen=True)
class Flip:
    """Decisions that would change the same way, on the same target, for users with the same roles."""

    before: str
    after: str
    target: str
    """The action, or ``URL <name>`` for a decision on URL-name policies alone."""
    roles: tuple[str, ...]
    """The users' roles (``authenticated`` left out); empty for plain authenticated users."""
    anonymous: bool
    requests: int
    users: int

    @property
    def who(self) -> str:
        if self.anonymous:
            return "anonymous users"
        if not self.roles:
            return "authenticated users without other roles"
        return ("role " if len(self.roles) == 1 else "roles ") + ", ".join(self.roles)

    def describe(self) -> str:
        """E.g. ``143 requests (12 users) by role finance on billing.update would now need step-up``."""
        plural = "" if self.requests == 1 else "s"
        users = "" if self.anonymous else f" ({self.users} user{'' if self.users == 1 else 's'})"
        return (
            f"{self.requests} request{plural}{users} by {self.who} on {self.target} "
            f"would now {_AFTER[self.after]} ({self.before} → {self.after})"
        )


@dataclass(frozen=True)
class Replay:
    """The result of :func:`replay`."""

    since: datetime
    replayed: int
    """Decision rows decided again."""
    skipped: int
    """Decision rows without usable facts (logged before facts were stored, or malformed)."""
    unexplained: int
    """Rows whose logged outcome differs from their replay under the current policies."""
    flips: tuple[Flip, ...]

    @property
    def flipped(self) -> int:
        return sum(f.requests for f in self.flips)


def replay(
    proposed: PolicySet,
    current: PolicySet,
    *,
    days: float,
    using: str = "default",
    now: datetime | None = None,
) -> Replay:
    """Decide every decision row of the last ``days`` under ``current`` and ``proposed``.

    :param proposed: the policies to preview (e.g. compiled from a pull request's files).
    :param current: the policies in force, to compare with.
    :param days: how far back to read the decision log.
    """
    since = (now or timezone.now()) - timedelta(days=days)
    return compare(proposed, current, decision_rows(since, using=using), since=since)


def decision_rows(since: datetime, *, using: str = "default") -> Iterator[dict[str, Any]]:
    """The decision rows logged since ``since``, as dicts, read in chunks."""
    from stepup.models import DecisionLog

    rows = (
        DecisionLog.objects.using(using)
        .filter(created_at__gte=since, event__in=DECISION_EVENTS)
        .order_by()
        .values(*_FIELDS)
    )
    return rows.iterator(chunk_size=5000)


def compare(
    proposed: PolicySet, current: PolicySet, rows: Iterable[Mapping[str, Any]], *, since: datetime
) -> Replay:
    """:func:`replay` on rows already read (as :func:`decision_rows` yields them)."""
    counts: dict[tuple[str, str, str, tuple[str, ...], bool], int] = defaultdict(int)
    users: dict[tuple[str, str, str, tuple[str, ...], bool], set[Any]] = defaultdict(set)
    replayed = skipped = unexplained = 0
    for row in rows:
        inp = input_of(row)
        if inp is None:
            skipped += 1
            continue
        replayed += 1
        before = current.decide(inp).outcome
        if before != OUTCOME_OF_EVENT[row["event"]]:
            unexplained += 1
        after = proposed.decide(inp).outcome
        if after == before:
            continue
        roles = inp.get_roles()
        key = (before, after, _target(inp), tuple(sorted(roles - {"authenticated"})), not roles)
        counts[key] += 1
        users[key].add(row.get("user_id") or row.get("username"))
    flips = [Flip(*key, requests=n, users=len(users[key])) for key, n in counts.items()]
    flips.sort(key=lambda f: (-f.requests, f.target, f.before, f.after, f.roles))
    return Replay(since, replayed, skipped, unexplained, tuple(flips))


def input_of(row: Mapping[str, Any]) -> Input | None:
    """The engine input a logged decision was made on; ``None`` when the row holds no usable facts."""
    facts = row.get("facts")
    if not isinstance(facts, Mapping) or row.get("event") not in OUTCOME_OF_EVENT:
        return None
    try:
        action = row.get("action") or None
        url = facts.get("url") or None
        if action is None and url is None:
            return None
        return Input(
            action=str(action) if action else None,
            url=str(url) if url else None,
            method=str(facts.get("method") or row.get("method") or "GET").upper(),
            roles=frozenset(str(r) for r in row.get("roles") or ()),
            origin=ipaddress.ip_address(row["client_ip"]) if row.get("client_ip") else None,
            session_age=_seconds(facts.get("session_age")),
            verified={str(k): float(v) for k, v in dict(facts.get("verified") or {}).items()},
            one_shot=frozenset(str(k) for k in facts.get("one_shot") or ()),
            attrs=dict(row.get("attrs") or {}),
        )
    except (TypeError, ValueError, AttributeError):
        return None


def _seconds(value: Any) -> float | None:
    return None if value is None else float(value)


def _target(inp: Input) -> str:
    return inp.action or f"URL {inp.url}"


def current_policy_set(using: str = "default", *, default_max_age: int) -> PolicySet:
    """The policies stored in the database, compiled as the store compiles them."""
    from stepup.models import Policy
    from stepup.store import spec_from_row

    specs = [spec_from_row(row.policy_id, row.to_dict()) for row in Policy.objects.using(using)]
    return compile_policies(
        [s for s in specs if s is not None], default_max_age=default_max_age, version="database"
    )
