"""Acme Billing's data: one billing profile per user and the transfers they made."""

from __future__ import annotations

from decimal import Decimal

from django.conf import settings
from django.core.validators import MinValueValidator, RegexValidator
from django.db import models

from project.demo.validators import validate_account


class BillingProfile(models.Model):
    user = models.OneToOneField(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="billing_profile"
    )
    company_name = models.CharField(max_length=200)
    billing_email = models.EmailField()
    card_last4 = models.CharField(
        "card (last 4 digits)",
        max_length=4,
        validators=[RegexValidator(r"^\d{4}$", "Enter exactly four digits.")],
    )
    address = models.TextField()
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return self.company_name


class Transfer(models.Model):
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="transfers")
    amount = models.DecimalField(
        max_digits=12, decimal_places=2, validators=[MinValueValidator(Decimal("0.01"))]
    )
    account = models.CharField("destination account", max_length=34, validators=[validate_account])
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-pk"]

    def __str__(self) -> str:
        return f"{self.amount} to {self.account}"

    @property
    def account_display(self) -> str:
        """The account in groups of four, as IBANs are printed."""
        return " ".join(self.account[i : i + 4] for i in range(0, len(self.account), 4))
