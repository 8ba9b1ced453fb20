from __future__ import annotations

import csv
import io
from decimal import Decimal

import pytest
from django.core.exceptions import ValidationError

from project.demo import reports
from project.demo.forms import TransferForm
from project.demo.validators import validate_account
from stepup.enrolment.totp import format_secret


@pytest.mark.parametrize(
    ("value", "rows"),
    [(None, 100), ("250", 250), ("1", 1), ("200000", 200_000), ("999999999", 200_000)],
)
def test_report_rows_are_capped(value, rows):
    assert reports.parse_rows(value) == rows


@pytest.mark.parametrize("value", ["0", "-5", "ten", "", "1.5"])
def test_report_rows_must_be_a_positive_integer(value):
    assert reports.parse_rows(value) is None


def test_report_csv_has_a_header_and_the_rows_asked_for():
    parsed = list(csv.reader(io.StringIO("".join(reports.csv_lines(3)))))
    assert parsed[0] == list(reports.HEADER)
    assert len(parsed) == 4
    assert parsed[1][0] == "INV-000001"
    assert all(Decimal(row[3]) >= 0 for row in parsed[1:])


@pytest.mark.parametrize("value", ["DE89 3704 0044 0532 0130 00", "fr1420041010050500013m02606"])
def test_iban_like_accounts_are_accepted(value):
    validate_account(value)


@pytest.mark.parametrize("value", ["", "12345", "DE89", "DE89 3704 0044 0532 0130 00 !!"])
def test_other_accounts_are_rejected(value):
    with pytest.raises(ValidationError):
        validate_account(value)


def test_transfer_form_normalizes_the_account():
    form = TransferForm({"amount": "12.50", "account": "de89 3704 0044 0532 0130 00"})
    assert form.is_valid(), form.errors
    assert form.cleaned_data["account"] == "DE89370400440532013000"


@pytest.mark.parametrize("amount", ["0", "-1", "abc"])
def test_transfer_form_rejects_non_positive_amounts(amount):
    assert not TransferForm({"amount": amount, "account": "DE89370400440532013000"}).is_valid()


def test_secret_is_grouped_base32():
    assert format_secret(b"\x00" * 10) == "AAAA AAAA AAAA AAAA"
