"""The forms of the device pages."""

from __future__ import annotations

from typing import Any

from django import forms
from django.utils.translation import gettext_lazy as _

NAME_MAX_LENGTH = 64  # django-otp's Device.name


class CodeForm(forms.Form):
    """A code the new device shows (an authenticator app) or received (an email)."""

    token = forms.CharField(
        label=_("Code"),
        min_length=6,
        max_length=8,
        widget=forms.TextInput(
            attrs={
                "inputmode": "numeric",
                "autocomplete": "one-time-code",
                "pattern": "[0-9 ]*",
                "spellcheck": "false",
            }
        ),
    )

    def __init__(self, *args: Any, label: str | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if label:
            self.fields["token"].label = label

    def clean_token(self) -> str:
        token = "".join(self.cleaned_data["token"].split())
        if not token.isdigit():
            raise forms.ValidationError(_("Enter the digits only."), code="digits")
        return token


class DeviceNameForm(forms.Form):
    name = forms.CharField(
        label=_("Name"),
        max_length=NAME_MAX_LENGTH,
        help_text=_("So you can tell your devices apart, e.g. “Work phone”."),
    )

    def clean_name(self) -> str:
        return " ".join(self.cleaned_data["name"].split())


class AuthenticatorForm(forms.Form):
    """Starting an authenticator-app enrolment: an optional name."""

    name = forms.CharField(
        label=_("Name"),
        max_length=NAME_MAX_LENGTH,
        required=False,
        help_text=_("Optional, e.g. “Work phone”."),
    )


class EmailAddressForm(forms.Form):
    email = forms.EmailField(label=_("Email address"), max_length=254)


class RemoveForm(forms.Form):
    """Confirming a removal; ``understood`` is required when the removal makes actions impossible."""

    understood = forms.BooleanField(
        label=_("I understand that I can't do these things until I add another factor."),
        required=False,
    )

    def __init__(self, *args: Any, must_acknowledge: bool = False, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.must_acknowledge = must_acknowledge
        if not must_acknowledge:
            del self.fields["understood"]

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        if self.must_acknowledge and not cleaned.get("understood"):
            self.add_error("understood", _("Tick this box to confirm, or keep the device."))
        return cleaned
