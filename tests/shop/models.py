"""What the shop's protected views write: the side effects the attack suite looks for."""

from __future__ import annotations

import re
from decimal import Decimal

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import MinValueValidator
from django.db import models

ACCOUNT = re.compile(r"^[A-Z]{2}[0-9]{2}[A-Z0-9]{10,30}$")


def normalize_account(value: str) -> str:
    return re.sub(r"\s+", "", value).upper()


def validate_account(value: str) -> None:
    if not ACCOUNT.match(normalize_account(value)):
        raise ValidationError("Enter an IBAN-style account.", code="invalid")


BILLING_FIELDS = ["company_name", "billing_email", "card_last4", "address"]
"""What the billing page and the billing API edit."""


class BillingProfile(models.Model):
    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE)
    company_name = models.CharField(max_length=200)
    billing_email = models.EmailField()
    card_last4 = models.CharField(max_length=4)
    address = models.TextField()

    def __str__(self) -> str:
        return self.company_name


class Transfer(models.Model):
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE)
    amount = models.DecimalField(
        max_digits=12, decimal_places=2, validators=[MinValueValidator(Decimal("0.01"))]
    )
    account = models.CharField(max_length=34, validators=[validate_account])

    def __str__(self) -> str:
        return f"{self.amount} to {self.account}"
