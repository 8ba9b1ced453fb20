"""The cards on the home page: each sensitive moment and the policy that guards it.

The policy text is a plain-language summary of ``fixtures/stepup/policies.yaml``;
keep the two in step when either changes.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from stepup.enforcement import decide_status


@dataclass(frozen=True)
class Card:
    title: str
    url_name: str
    summary: str
    guard: str | None  # the action or URL names the policies match; None when nothing is guarded
    policy: str
    staff_only: bool = False
    denied: bool = False  # this user can only be denied the change: no step-up badge


CARDS = (
    Card(
        "Billing details",
        "demo:billing",
        "Company name, billing e-mail, card and address.",
        "billing.update",
        "Anyone signed in can look. Changing them needs a second factor from the last "
        "5 minutes; auditors may never change them.",
    ),
    Card(
        "Transfers",
        "demo:transfer",
        "Send money to a supplier's account.",
        "payments.transfer",
        "Every transfer needs a second factor from the last 5 minutes. Over €1,000, a fresh "
        "authenticator code every time, bound to that amount and account.",
    ),
    Card(
        "Reports",
        "demo:reports",
        "Export invoices as CSV.",
        "reports.download",
        "Over 1,000 rows: a second factor from the last 15 minutes. Smaller exports: one "
        "from the last hour, unless you are on the office network.",
    ),
    Card(
        "Team access",
        "demo:access",
        "Who is in finance, auditor and admins.",
        "access.modify",
        "Only admins can change memberships, and each change needs an authenticator code "
        "from the last 5 minutes.",
    ),
    Card(
        "Display name",
        "demo:profile",
        "The name the demo greets you by.",
        "profile.update",
        "A low-risk change: re-entering your password is enough, as is any second factor, "
        "from the last 10 minutes.",
    ),
    Card(
        "Security",
        "stepup:devices",
        "Authenticator app and backup codes.",
        "stepup.devices.*",
        "Once you have a second factor, adding or removing one needs a recent code. "
        "Step-up sends you here when you have none yet.",
    ),
    Card(
        "Admin",
        "admin:index",
        "Policies, their history and the decision log.",
        "admin:auth_user_*",
        "Changing users or groups in the admin needs a second factor from the last 5 minutes.",
        staff_only=True,
    ),
)


def cards_for(request: Any) -> list[Card]:
    """The cards this user sees, each marked ``denied`` when the user may never make the change.

    The engine decides, as for a ``POST`` of the guarded action (a change), from
    server-side state only, like ``api-status``: nothing is recorded, no grant used.
    """
    is_staff = request.user.is_staff
    return [_marked(request, card) for card in CARDS if is_staff or not card.staff_only]


def _marked(request: Any, card: Card) -> Card:
    if card.guard is None or not card.guard.replace(".", "").isalnum():  # a URL name or a pattern
        return card
    return replace(card, denied=denied_change(request, card.guard))


def denied_change(request: Any, action: str) -> bool:
    """Whether a change under ``action`` (a ``POST``) is denied to this user outright."""
    return decide_status(request, action, None, {}, "POST").outcome == "deny"
