"""Validation shared by the demo's models and forms."""

from __future__ import annotations

import re

from django.core.exceptions import ValidationError

_ACCOUNT = re.compile(r"^[A-Z]{2}[0-9]{2}[A-Z0-9]{10,30}$")


def normalize_account(value: str) -> str:
    """An IBAN-ish account as stored: upper case, no spaces."""
    return re.sub(r"\s+", "", value).upper()


def validate_account(value: str) -> None:
    """Accept IBAN-shaped strings: country code, two check digits, 10 to 30 letters or digits."""
    if not _ACCOUNT.match(normalize_account(value)):
        raise ValidationError(
            "Enter an IBAN-style account, e.g. DE89 3704 0044 0532 0130 00.", code="invalid"
        )
