"""The admin's policy form: every value is checked exactly as a policy file would be.

:class:`PolicyForm` turns the form's values into a policy-file mapping,
validates it with the policy-file loader and the URLconf check, and puts each
error on the field it belongs to; a valid policy is stored in the canonical
form ``sync`` would store.
"""

from __future__ import annotations

from typing import Any

from django import forms

from stepup.models import Policy, spec_fields
from stepup.policy.loader import validate_policy
from stepup.policy.model import MATCH_KEYS, SPEC_FIELDS, PolicyError, PolicyFile
from stepup.routes import check_against_urlconf

_FORM_FIELD = {"id": "policy_id", "match": "actions"}


def _form_field(error: PolicyError) -> str | None:
    """The form field a loader error belongs to (``None``: the form as a whole)."""
    path = error.field.replace("[", ".[").split(".")
    head = path[0]
    if head == "match" and len(path) > 1 and path[1] in MATCH_KEYS:
        return path[1]
    if head.startswith("policies") and "urls" in path:  # from the URLconf check
        return "urls"
    if head in _FORM_FIELD:
        return _FORM_FIELD[head]
    return head if head in SPEC_FIELDS else None


def _is_given(value: Any) -> bool:
    return value is not None and value != [] and value != {} and value != ""


class PolicyForm(forms.ModelForm):
    """A policy as the admin edits it; every value is checked exactly as a policy file would be."""

    change_reason = forms.CharField(
        label="Reason for this change",
        max_length=2000,
        widget=forms.Textarea(attrs={"rows": 2}),
        help_text="Recorded in the policy's history with your user name.",
    )

    class Meta:
        model = Policy
        fields = ["policy_id", *SPEC_FIELDS]
        help_texts = {
            "actions": 'JSON list of declared action names; "*" globs allowed, e.g. ["billing.update"]',
            "urls": 'JSON list of URL names, e.g. ["admin:auth_user_change"]',
            "methods": 'JSON list; empty means every method, e.g. ["POST", "DELETE"]',
            "when": 'JSON object of conditions, e.g. {"roles": {"any_of": ["finance"]}}',
            "max_age": "step_up only: seconds since the last verification; 0 = for this one request",
            "factors": 'step_up only: JSON list of factor kinds, e.g. ["totp", "webauthn"]; empty = any',
        }

    def policy_data(self) -> dict[str, Any]:
        """The form's values as a policy-file mapping, everything given passed on for validation."""
        data = self.cleaned_data
        policy: dict[str, Any] = {
            "id": data.get("policy_id", self.instance.policy_id),
            "description": data.get("description") or "",
            "match": {name: data[name] for name in MATCH_KEYS if _is_given(data.get(name))},
            "decision": data.get("decision"),
            "enabled": bool(data.get("enabled")),
            "mode": data.get("mode"),
        }
        for name in ("when", "max_age", "factors"):
            if _is_given(data.get(name)):
                policy[name] = data[name]
        return policy

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        if self.errors:
            return cleaned  # a field's own error (bad JSON, bad choice) comes first
        spec, errors = validate_policy(self.policy_data(), source="<admin>")
        if spec is not None:
            errors = check_against_urlconf(PolicyFile(policies=(spec,)))
        for error in errors:
            target = _form_field(error)
            prefix = f"{error.field}: " if error.field not in ("", "id", "match", target) else ""
            if target is not None and target not in self.fields:
                target = None
            self.add_error(target, prefix + error.message)
        if spec is not None and not errors:
            cleaned.update(spec_fields(spec))  # the canonical form, as sync would store it
        return cleaned
