"""The demo's protected actions on stepup's pages in people's words: labels, grouped IBANs,
amounts, grant or revoke, line breaks kept (project/demo/wording.py)."""

from __future__ import annotations

import pytest
from django.urls import reverse

from tests.otp import code
from tests.paths import VERIFY

pytestmark = pytest.mark.django_db


@pytest.fixture
def admin(make_user):
    from django_otp.plugins.otp_totp.models import TOTPDevice

    user = make_user("root", "admins")
    TOTPDevice.objects.create(user=user, name="Phone", confirmed=True)
    return user


def verify_page(client, response) -> str:
    assert response.status_code == 302 and response["Location"].startswith(VERIFY), response
    return client.get(response["Location"]).content.decode()


def test_a_transfer_shows_the_amount_and_a_grouped_iban(logged_in, totp):
    refused = logged_in.post(
        reverse("demo:transfer"), {"amount": "5000", "account": "DE89370400440532013000"}
    )
    html = verify_page(logged_in, refused)
    assert "<dt>Amount</dt><dd>€5,000.00</dd>" in html
    assert "<dt>To account</dt><dd>DE89 3704 0044 0532 0130 00</dd>" in html
    assert "<dt>amount</dt>" not in html and "DE89370400440532013000</dd>" not in html


@pytest.mark.parametrize(
    ("op", "words"), [("grant", "Grant: add erin to auditor"), ("revoke", "Revoke: remove erin from auditor")]
)
def test_team_access_says_grant_or_revoke(client, admin, user, op, words):
    client.force_login(admin)
    refused = client.post(reverse("demo:access"), {"user": "erin", "group": "auditor", "op": op})
    html = verify_page(client, refused)
    assert f"<dt>Change</dt><dd>{words}</dd>" in html
    assert "<dt>User</dt><dd>erin</dd>" in html and "target_user" not in html


def test_a_report_names_its_rows(logged_in, totp):
    html = verify_page(logged_in, logged_in.get(reverse("demo:report"), {"rows": "50000"}))
    assert "<dt>Rows to download</dt><dd>50,000</dd>" in html


def test_billing_confirm_page_labels_the_fields_and_keeps_the_address_lines(logged_in, user, totp):
    billing = {
        "company_name": "Initech",
        "billing_email": "ap@initech.example",
        "card_last4": "1234",
        "address": "Initech GmbH\r\n4120 Freidrich Lane\r\nAustin",
    }
    refused = logged_in.post(reverse("demo:billing-update"), billing)
    assert refused.status_code == 302
    challenge = refused["Location"].split("challenge=")[1].split("&")[0]
    page = logged_in.post(VERIFY, {"challenge": challenge, "token": code(totp)})
    html = page.content.decode()
    assert page.templates[0].name == "stepup/confirm.html"
    assert "<dt>Company name</dt><dd>Initech</dd>" in html
    assert "<dt>Address</dt><dd>Initech GmbH<br>4120 Freidrich Lane<br>Austin</dd>" in html
    assert "<dt>company_name</dt>" not in html
