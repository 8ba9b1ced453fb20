"""What the demo's protected actions look like on stepup's verify and confirm pages.

Each flow gives stepup labels and display values beside its attributes
(``labels=`` / ``display=`` on ``require_stepup``, ``stepup_labels`` /
``get_stepup_display`` on the mixin and the DRF views). stepup decides on,
and binds single-use grants to, the raw attributes; these only change what
people read.
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal, InvalidOperation
from typing import Any

from django import forms
from django.utils.text import capfirst
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from project.demo.validators import normalize_account

TRANSFER_LABELS = {"amount": gettext_lazy("Amount"), "account": gettext_lazy("To account")}
REPORT_LABELS = {"rows": gettext_lazy("Rows to download")}
MEMBERSHIP_LABELS = {
    "op": gettext_lazy("Change"),
    "user": gettext_lazy("User"),
    "group": gettext_lazy("Group"),
}


def money(value: object) -> str:
    """``5000`` as ``€5,000.00``; anything that is not an amount as it is."""
    try:
        amount = Decimal(str(value))
    except (InvalidOperation, ValueError):
        return str(value)
    return f"€{amount:,.2f}" if amount.is_finite() else str(value)


def iban(value: object) -> str:
    """An account in groups of four, as IBANs are printed."""
    compact = normalize_account(str(value))
    return " ".join(compact[i : i + 4] for i in range(0, len(compact), 4))


def transfer(request: Any, attrs: Mapping[str, Any]) -> dict[str, str]:
    return {"amount": money(attrs.get("amount")), "account": iban(attrs.get("account", ""))}


def report(request: Any, attrs: Mapping[str, Any]) -> dict[str, str]:
    try:
        return {"rows": f"{int(str(attrs.get('rows'))):,}"}
    except ValueError:
        return {}


def membership(attrs: Mapping[str, Any]) -> dict[str, str]:
    """``op`` in words: whether the user gets or loses the group."""
    user, group = attrs.get("user", ""), attrs.get("group", "")
    if attrs.get("op") == "grant":
        return {"op": _("Grant: add %(user)s to %(group)s") % {"user": user, "group": group}}
    if attrs.get("op") == "revoke":
        return {"op": _("Revoke: remove %(user)s from %(group)s") % {"user": user, "group": group}}
    return {}


def form_labels(form_class: type[forms.BaseForm]) -> dict[str, str]:
    """A form's field labels by field name, for the confirm page's "what will be submitted"."""
    return {
        name: capfirst(field.label) if field.label else capfirst(name.replace("_", " "))
        for name, field in form_class.base_fields.items()
    }
