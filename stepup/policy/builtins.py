"""Policies stepup brings with it: built-in ones no file can switch off, and defaults a file may replace.

Both are added to every policy set (database, ``stepup test``, ``explain``,
``validate``, ``routes``) by :func:`stepup.policy.engine.compile_policies`.
Their ids start with ``stepup.``, which files may not use.

- :data:`BUILTIN_POLICIES` are always there: no file can replace, disable or
  shadow them. A file may still add stricter policies for the same actions.
- :data:`DEFAULT_POLICIES` guard stepup's own device pages (adding and
  removing a second factor). Each stays in force until the project's policies
  name its action themselves: :func:`replaced_defaults` says which are
  replaced. A project's policy names an action when one of its
  ``match.actions`` entries is the action, or a pattern that starts with
  ``stepup.`` and matches it (``stepup.devices.*``). A catch-all such as
  ``*`` doesn't replace a default. Whatever replaces it takes over entirely —
  disabled, shadow-mode or looser — but an action no enabled, enforce-mode
  policy covers still gets the implicit default requirement
  (``DEFAULT_MAX_AGE``), so replacing never leaves it unguarded.
"""

from __future__ import annotations

from collections.abc import Iterable

from stepup.policy.engine import glob_matches
from stepup.policy.model import PolicySpec

RESERVED_PREFIX = "stepup."
"""Ids and action names that belong to stepup."""

POLICY_ADMIN_ACTION = "stepup.policies.change"
"""Declared by the admin when a policy is added, changed or deleted there."""

DEVICES_ADD_ACTION = "stepup.devices.add"
"""Enforced by the device pages when a user who already has a second factor adds or replaces one."""

DEVICES_REMOVE_ACTION = "stepup.devices.remove"
"""Enforced by the device pages before a second factor is removed."""

BUILTIN_POLICIES: tuple[PolicySpec, ...] = (
    PolicySpec(
        id="stepup.builtin.policy-admin",
        description=(
            "Changing step-up policies in the admin needs a second factor from the last 5 minutes. "
            "Built in: no policy file can switch it off."
        ),
        actions=(POLICY_ADMIN_ACTION,),
        methods=("POST", "PUT", "PATCH", "DELETE"),
        decision="step_up",
        max_age=300,
        source="<built-in>",
    ),
)

DEFAULT_POLICIES: tuple[PolicySpec, ...] = (
    PolicySpec(
        id="stepup.defaults.devices-add",
        description=(
            "Adding or replacing a second factor needs one of your second factors from the last 5 minutes."
        ),
        actions=(DEVICES_ADD_ACTION,),
        decision="step_up",
        max_age=300,
        source="<default>",
    ),
    PolicySpec(
        id="stepup.defaults.devices-remove",
        description="Removing a second factor needs one of your second factors from the last 5 minutes.",
        actions=(DEVICES_REMOVE_ACTION,),
        decision="step_up",
        max_age=300,
        source="<default>",
    ),
)


def names_action(pattern: str, action: str) -> bool:
    """Whether a project's ``match.actions`` entry names ``action`` explicitly enough to replace a default."""
    if pattern == action:
        return True
    return pattern.startswith(RESERVED_PREFIX) and glob_matches(pattern, action)


def replaced_defaults(specs: Iterable[PolicySpec]) -> dict[str, list[str]]:
    """The defaults that ``specs`` replace: default id -> ids of the policies that name its actions."""
    defaults = {a for default in DEFAULT_POLICIES for a in default.actions}
    specs = [  # a quick pass first: of 10,000 policies hardly any names a reserved action
        s for s in specs if any(p in defaults or p.startswith(RESERVED_PREFIX) for p in s.actions)
    ]
    replaced: dict[str, list[str]] = {}
    for default in DEFAULT_POLICIES:
        by = [
            s.id
            for s in specs
            if not s.id.startswith(RESERVED_PREFIX)
            and any(names_action(p, a) for p in s.actions for a in default.actions)
        ]
        if by:
            replaced[default.id] = by
    return replaced
