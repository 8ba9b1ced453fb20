"""What removing a device would make impossible: the policies the user could satisfy before and not after.

The devices page shows these before a removal and asks the user to confirm
that they understand; it never silently leaves a user unable to act.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from django.contrib.auth.base_user import AbstractBaseUser

from stepup.context import user_roles
from stepup.i18n import localized_description
from stepup.policy.engine import PolicySet
from stepup.policy.model import PolicySpec

PASSWORD = "password"


@dataclass(frozen=True)
class LostAction:
    """A policy the user could no longer satisfy, and what it guards."""

    policy_id: str
    description: str
    targets: tuple[str, ...]


def lost_actions(
    user: AbstractBaseUser, policy_set: PolicySet, before: set[str], after: set[str]
) -> list[LostAction]:
    """Enforced step-up policies that may apply to ``user``, met by kinds ``before`` but not ``after``."""
    roles = user_roles(user)
    extra = {PASSWORD} if user.has_usable_password() else set()
    lost = []
    for spec in policy_set.specs.values():
        if not spec.enabled or spec.mode != "enforce" or spec.decision != "step_up":
            continue
        if not _roles_may_hold(spec.when, roles):
            continue
        if _satisfiable(spec, before | extra) and not _satisfiable(spec, after | extra):
            lost.append(
                LostAction(spec.id, localized_description(spec.description), (*spec.actions, *spec.urls))
            )
    return lost


def _satisfiable(spec: PolicySpec, kinds: set[str]) -> bool:
    if not spec.factors:  # any device kind; a password is never implied
        return bool(kinds - {PASSWORD})
    return not kinds.isdisjoint(spec.factors)


def _roles_may_hold(when: Mapping[str, Any], roles: Iterable[str]) -> bool:
    condition = when.get("roles")
    if not isinstance(condition, Mapping):
        return True
    have = set(roles)
    any_of, all_of, none_of = (set(condition.get(k) or ()) for k in ("any_of", "all_of", "none_of"))
    if any_of and have.isdisjoint(any_of):
        return False
    if all_of and not all_of <= have:
        return False
    return not (none_of and have & none_of)
