"""stepup's forms: the admin's policy form, and the verify page's form for each factor kind's step.

The admin's policy form checks every value exactly as a policy file would be.

:class:`PolicyForm` turns the form's values into a policy-file mapping,
validates it with the policy-file loader and the URLconf check, and puts each
error on the field it belongs to; a valid policy is stored in the canonical
form ``sync`` would store.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any, cast

from django import forms
from django.core.exceptions import ValidationError
from django.utils.translation import gettext_lazy as _

from stepup.factors.base import Choice
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
        label=_("Reason for this change"),
        max_length=2000,
        widget=forms.Textarea(attrs={"rows": 2}),
        help_text=_("Recorded in the policy's history with your user name."),
    )

    class Meta:
        model = Policy
        fields = ["policy_id", *SPEC_FIELDS]
        help_texts = {
            "actions": _('JSON list of declared action names; "*" globs allowed, e.g. ["billing.update"]'),
            "urls": _('JSON list of URL names, e.g. ["admin:auth_user_change"]'),
            "methods": _('JSON list; empty means every method, e.g. ["POST", "DELETE"]'),
            "when": _('JSON object of conditions, e.g. {"roles": {"any_of": ["finance"]}}'),
            "max_age": _("step_up only: seconds since the last verification; 0 = for this one request"),
            "factors": _('step_up only: JSON list of factor kinds, e.g. ["totp", "webauthn"]; empty = any'),
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


# --- the verify page's forms: one per factor kind's step ---------------------------------


class FactorForm(forms.Form):
    """The base of a factor's step on the verify page and ``api-verify``.

    :param choices: the user's usable :class:`~stepup.factors.Choice` objects of
        this form's kind; the ``device`` field offers exactly these (hidden when
        there is one). ``cleaned_data["choice"]`` is the chosen one.

    A project replaces a kind's form with ``STEPUP["FORMS"] = {"totp": "myapp.forms.MyCodeForm"}``;
    a replacement should subclass the default so that its fields keep their names.
    """

    device = forms.ChoiceField(label=_("Device"), widget=forms.RadioSelect, required=False)

    def __init__(self, data: Any = None, *, choices: Sequence[Choice] = (), **kwargs: Any) -> None:
        kwargs.setdefault("label_suffix", "")
        super().__init__(data, **kwargs)
        self.choices = list(choices)
        field = cast(forms.ChoiceField, self.fields["device"])
        field.choices = [(c.id, c.label + (f" ({c.detail})" if c.detail else "")) for c in self.choices]
        if len(self.choices) <= 1:
            field.widget = forms.HiddenInput()
            field.initial = self.choices[0].id if self.choices else ""
        elif self.choices:
            field.initial = self.choices[0].id

    @property
    def single_choice(self) -> Choice | None:
        return self.choices[0] if len(self.choices) == 1 else None

    def clean_device(self) -> str:
        value = self.cleaned_data.get("device") or ""
        if not value:
            if len(self.choices) != 1:
                raise ValidationError(_("Choose the device you want to use."), code="invalid_device")
            return self.choices[0].id
        return str(value)

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        device_id = cleaned.get("device")
        cleaned["choice"] = next((c for c in self.choices if c.id == device_id), None)
        return cleaned


MAX_TOKEN_LENGTH = 64
_TOKEN = re.compile(rf"[!-~]{{1,{MAX_TOKEN_LENGTH}}}")  # printable ASCII, no spaces
_DIGITS = re.compile(r"[0-9]+")
_MAX_RAW_TOKEN = 1024


def normalize_token(raw: object) -> str | None:
    """The code as a device may see it, or ``None`` when it can't be one.

    Surrounding whitespace and inner spaces (``"123 456"``) are removed;
    anything else that is not printable ASCII (full-width digits, control
    characters) or is longer than :data:`MAX_TOKEN_LENGTH` is refused before
    it reaches a device.
    """
    if not isinstance(raw, str) or len(raw) > _MAX_RAW_TOKEN:
        return None
    token = raw.strip().replace(" ", "")
    return token if _TOKEN.fullmatch(token) else None


class TextField(forms.CharField):
    """A ``CharField`` that takes text only: a JSON number or list is refused, not turned into text."""

    def to_python(self, value: Any) -> str | None:
        if value not in self.empty_values and not isinstance(value, str):
            raise ValidationError(_("Enter text."), code="invalid")
        return super().to_python(value)


class CodeForm(FactorForm):
    """A typed code (``totp``, ``hotp``, ``static``): ``device`` and ``token``."""

    token = TextField(
        label=_("Code"),
        max_length=_MAX_RAW_TOKEN,
        strip=False,
        widget=forms.TextInput(
            attrs={
                "autocomplete": "one-time-code",
                "autocapitalize": "off",
                "spellcheck": "false",
                "maxlength": MAX_TOKEN_LENGTH,
                "autofocus": True,
            }
        ),
    )

    def __init__(self, data: Any = None, *, choices: Sequence[Choice] = (), **kwargs: Any) -> None:
        super().__init__(data, choices=choices, **kwargs)
        from stepup.factors.codes import CodeFactor, code_hint

        numeric = all(
            getattr(c.factor, "numeric", False) for c in self.choices if isinstance(c.factor, CodeFactor)
        )
        self.fields["token"].widget.attrs["inputmode"] = "numeric" if numeric and self.choices else "text"
        self.fields["token"].help_text = code_hint(self.choices)

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean()
        choice = cleaned.get("choice")
        if "token" in cleaned and choice is not None:
            token = _exact_token(cleaned["token"], choice)
            if token is None:
                del cleaned["token"]
                self.add_error(
                    "token",
                    ValidationError(
                        _("Enter the code exactly as your device shows it."), code="invalid_token"
                    ),
                )
            else:
                cleaned["token"] = token
        return cleaned


def _exact_token(raw: object, choice: Choice) -> str | None:
    """The code exactly as the chosen device shows it, else ``None`` (and no guess is spent).

    An authenticator's code (TOTP, HOTP, email) is its digits, as many as the
    device shows: django-otp compares ``int(token)``, which would also take
    ``"123_456"``, ``"+123456"`` or ``"0123456"`` for ``123456``.
    """
    token = normalize_token(raw)
    if token is not None and getattr(choice.factor, "numeric", False):
        digits = getattr(choice.device, "digits", None)
        if not _DIGITS.fullmatch(token) or (isinstance(digits, int) and len(token) != digits):
            return None
    return token


class EmailCodeForm(CodeForm):
    """An email code: ``send`` asks for a code (a ``POST`` only); then ``token`` as for any code."""

    send = forms.BooleanField(required=False, widget=forms.HiddenInput)

    def __init__(self, data: Any = None, *, choices: Sequence[Choice] = (), **kwargs: Any) -> None:
        super().__init__(data, choices=choices, **kwargs)
        if self.is_bound and self.sending:
            self.fields["token"].required = False
        self.fields["token"].widget.attrs.pop("autofocus", None)

    @property
    def sending(self) -> bool:
        value = self.data.get("send") if self.data is not None else None
        return value in (True, "1", "true", "on", 1)


class PasswordForm(FactorForm):
    """Password re-entry: ``password`` (the ``device`` field is the kind itself)."""

    password = TextField(
        label=_("Password"),
        strip=False,
        max_length=4096,
        widget=forms.PasswordInput(attrs={"autocomplete": "current-password"}),
        help_text=_("The password you sign in with."),
    )
