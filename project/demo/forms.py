"""Forms for the demo's pages."""

from __future__ import annotations

from django import forms
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group

from project.demo.models import BillingProfile, Transfer
from project.demo.teams import MANAGED_GROUPS
from project.demo.validators import normalize_account


class BillingProfileForm(forms.ModelForm):
    class Meta:
        model = BillingProfile
        fields = ["company_name", "billing_email", "card_last4", "address"]
        widgets = {
            "card_last4": forms.TextInput(attrs={"inputmode": "numeric", "autocomplete": "off"}),
            "address": forms.Textarea(attrs={"rows": 3}),
        }


class TransferForm(forms.ModelForm):
    class Meta:
        model = Transfer
        fields = ["amount", "account"]
        widgets = {
            "amount": forms.NumberInput(attrs={"step": "0.01", "min": "0.01"}),
            "account": forms.TextInput(
                attrs={"placeholder": "DE89 3704 0044 0532 0130 00", "autocomplete": "off"}
            ),
        }
        help_texts = {"amount": "In euros.", "account": "An IBAN: country code, then digits."}

    def clean_account(self) -> str:
        return normalize_account(self.cleaned_data["account"])


class MembershipForm(forms.Form):
    """Grant or revoke one user's membership in one managed group."""

    OPERATIONS = [("grant", "Grant"), ("revoke", "Revoke")]

    user = forms.ModelChoiceField(
        queryset=get_user_model().objects.filter(is_active=True), to_field_name="username"
    )
    group = forms.ModelChoiceField(
        queryset=Group.objects.filter(name__in=MANAGED_GROUPS), to_field_name="name"
    )
    op = forms.ChoiceField(choices=OPERATIONS)


class DisplayNameForm(forms.ModelForm):
    """The name the demo greets the user by (``User.first_name``)."""

    class Meta:
        model = get_user_model()
        fields = ["first_name"]
        labels = {"first_name": "Display name"}
