"""Policies stepup always enforces, whatever the policy files say.

They are added to every policy set (database, ``stepup test``, ``explain``);
their ids start with ``stepup.``, which files may not use, so no file can
replace, disable or shadow them. A file may still add stricter policies for
the same actions.
"""

from __future__ import annotations

from stepup.policy.model import PolicySpec

POLICY_ADMIN_ACTION = "stepup.policies.change"
"""Declared by the admin when a policy is added, changed or deleted there."""

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
