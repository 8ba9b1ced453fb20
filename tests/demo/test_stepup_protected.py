"""The demo's sensitive moments, as fixtures/stepup/policies.yaml guards them."""

from __future__ import annotations

import csv
import io
from contextlib import AbstractContextManager

import pytest
from django.test import RequestFactory
from django.urls import reverse

from project.demo.models import BillingProfile, Transfer
from stepup.testing import assert_requires_stepup, stepup_verified
from tests.conftest import PASSWORD
from tests.otp import code

pytestmark = pytest.mark.django_db

BILLING = {
    "company_name": "Initech",
    "billing_email": "ap@initech.example",
    "card_last4": "1234",
    "address": "4120 Freidrich Lane",
}
SMALL = {"amount": "250.00", "account": "DE89370400440532013000"}
LARGE = {"amount": "5000.00", "account": "DE89370400440532013000"}
OFFICE = {"REMOTE_ADDR": "198.51.100.20"}


def verified_for(client, user, transfer: dict[str, str]) -> AbstractContextManager[None]:
    """A single-request grant for one transfer, as verifying at its challenge gives."""
    return stepup_verified(
        client,
        user,
        action="payments.transfer",
        url_name="demo:transfer",
        attributes=transfer,
        request=RequestFactory().post(reverse("demo:transfer"), transfer),  # the view binds the request
    )


@pytest.fixture
def admin(make_user):
    user = make_user("root", "admins")
    from django_otp.plugins.otp_totp.models import TOTPDevice

    TOTPDevice.objects.create(user=user, name="Phone", confirmed=True)
    return user


# billing.update ------------------------------------------------------------------------


def test_updating_billing_requires_stepup(logged_in, totp):
    assert_requires_stepup(logged_in, "post", reverse("demo:billing-update"), BILLING)
    assert not BillingProfile.objects.exists()


def test_updating_billing_after_stepup_saves(logged_in, user, totp):
    with stepup_verified(logged_in, user):
        response = logged_in.post(reverse("demo:billing-update"), BILLING)
    assert response.status_code == 302
    assert BillingProfile.objects.get(user=user).company_name == "Initech"


def test_the_billing_form_itself_needs_no_stepup(logged_in, totp):
    assert logged_in.get(reverse("demo:billing-update")).status_code == 200


def test_auditors_may_not_update_billing_even_when_verified(client, make_user):
    auditor = make_user("audrey", "auditor")
    client.force_login(auditor)
    with stepup_verified(client, auditor):
        response = client.post(reverse("demo:billing-update"), BILLING)
    assert response.status_code == 403
    assert not BillingProfile.objects.exists()


def test_a_denial_says_why_in_the_policys_words_and_logs_no_traceback(client, make_user, caplog):
    auditor = make_user("audrey", "auditor")
    client.force_login(auditor)
    with caplog.at_level("DEBUG"):
        response = client.post(reverse("demo:billing-update"), BILLING)
    assert response.status_code == 403
    html = response.content.decode()
    assert "Auditors review; they never change billing, access or money." in html
    assert "auditors-read-only" not in html  # the policy's id is for the policy authors
    assert not [r for r in caplog.records if r.exc_info], "a denial is an answer, not a server error"


def test_end_to_end_a_code_lets_the_update_through(logged_in, user, totp):
    response = logged_in.post(reverse("demo:billing-update"), BILLING)
    verify_url = response["Location"]
    assert verify_url.startswith(reverse("stepup:verify"))
    assert "Changing billing details" in logged_in.get(verify_url).content.decode()

    response = logged_in.post(verify_url, {"token": code(totp)})
    assert response.status_code in (200, 303)  # a page to confirm the interrupted POST, or next
    assert not BillingProfile.objects.exists()  # nothing is submitted behind the user's back

    assert logged_in.post(reverse("demo:billing-update"), BILLING).status_code == 302
    assert BillingProfile.objects.get(user=user).company_name == "Initech"


def test_a_user_without_a_device_is_sent_to_enroll(client, make_user, settings):
    settings.STEPUP = {**settings.STEPUP, "ENROLL_URL": "stepup:devices"}
    client.force_login(make_user("newbie"))
    response = client.post(reverse("demo:billing-update"), BILLING, follow=True)
    assert response.redirect_chain[-1][0].startswith(reverse("stepup:devices"))
    assert not BillingProfile.objects.exists()


# payments.transfer ---------------------------------------------------------------------


def test_transfers_require_stepup(logged_in, totp):
    assert_requires_stepup(logged_in, "post", reverse("demo:transfer"), SMALL)
    assert not Transfer.objects.exists()


def test_a_small_transfer_after_stepup_is_made(logged_in, user, totp):
    with stepup_verified(logged_in, user):
        response = logged_in.post(reverse("demo:transfer"), SMALL)
    assert response.status_code == 302
    transfer = Transfer.objects.get(user=user)
    assert str(transfer.amount) == "250.00" and transfer.account == SMALL["account"]
    assert "DE89 3704 0044" in logged_in.get(reverse("demo:transfer")).content.decode()


def test_a_large_transfer_needs_a_fresh_code_even_right_after_a_verification(logged_in, user, totp):
    with stepup_verified(logged_in, user):
        assert_requires_stepup(logged_in, "post", reverse("demo:transfer"), LARGE)
    assert not Transfer.objects.exists()


def test_a_large_transfer_goes_through_with_a_grant_for_exactly_that_transfer(logged_in, user, totp):
    with verified_for(logged_in, user, LARGE):
        assert logged_in.post(reverse("demo:transfer"), LARGE).status_code == 302
        # The grant was for that one request: the same transfer again is challenged.
        assert_requires_stepup(logged_in, "post", reverse("demo:transfer"), LARGE)
    assert Transfer.objects.count() == 1


def test_a_grant_for_one_large_transfer_does_not_cover_another(logged_in, user, totp):
    other = {**LARGE, "amount": "9000.00"}
    with verified_for(logged_in, user, LARGE):
        assert_requires_stepup(logged_in, "post", reverse("demo:transfer"), other)
    assert not Transfer.objects.exists()


def test_an_invalid_transfer_after_stepup_shows_the_form_again(logged_in, user, totp):
    with stepup_verified(logged_in, user):
        response = logged_in.post(reverse("demo:transfer"), {"amount": "5", "account": "nope"})
    assert response.status_code == 200
    assert "IBAN" in response.content.decode()
    assert not Transfer.objects.exists()


# reports.download ----------------------------------------------------------------------


def test_large_reports_require_stepup(logged_in, totp):
    assert_requires_stepup(logged_in, "get", reverse("demo:report") + "?rows=5000")


def test_a_report_after_stepup_is_a_csv_of_the_rows_asked_for(logged_in, user, totp):
    with stepup_verified(logged_in, user):
        response = logged_in.get(reverse("demo:report"), {"rows": "5000"})
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/csv")
    rows = list(csv.reader(io.StringIO(b"".join(response.streaming_content).decode())))
    assert len(rows) == 5001


def test_a_small_report_from_the_office_needs_no_stepup(logged_in):
    response = logged_in.get(reverse("demo:report"), {"rows": "20"}, **OFFICE)
    assert response.status_code == 200
    assert len(b"".join(response.streaming_content).decode().splitlines()) == 21


def test_report_rows_are_capped(logged_in, user, totp):
    with stepup_verified(logged_in, user):
        response = logged_in.get(reverse("demo:report"), {"rows": "9999999"})
    assert response.status_code == 200
    assert "acme-invoices-200000.csv" in response["Content-Disposition"]


def test_a_bad_row_count_after_stepup_is_explained(logged_in, user, totp):
    with stepup_verified(logged_in, user):
        response = logged_in.get(reverse("demo:report"), {"rows": "lots"}, follow=True)
    assert "whole number" in response.content.decode()


# access.modify -------------------------------------------------------------------------


def test_changing_access_requires_stepup(client, admin, make_user):
    target = make_user("fred")
    client.force_login(admin)
    data = {"user": "fred", "group": "finance", "op": "grant"}
    assert_requires_stepup(client, "post", reverse("demo:access"), data)
    assert not target.groups.exists()


def test_changing_access_after_stepup_grants_and_revokes(client, admin, make_user):
    target = make_user("fred")
    client.force_login(admin)
    with stepup_verified(client, admin):
        client.post(reverse("demo:access"), {"user": "fred", "group": "finance", "op": "grant"})
        assert list(target.groups.values_list("name", flat=True)) == ["finance"]
        client.post(reverse("demo:access"), {"user": "fred", "group": "finance", "op": "revoke"})
    assert not target.groups.exists()


def test_the_access_list_needs_no_stepup(client, admin):
    client.force_login(admin)
    assert client.get(reverse("demo:access")).status_code == 200


# The demo's other factor kinds, through the real verify page ------------------------------


def _challenged(client, url: str, data: dict[str, str]) -> str:
    """POST a protected form; return the verify URL it was sent to."""
    response = client.post(url, data)
    assert response.status_code == 302 and response["Location"].startswith(reverse("stepup:verify"))
    return response["Location"]


def _challenge_id(verify_url: str) -> str:
    from urllib.parse import parse_qs, urlsplit

    return parse_qs(urlsplit(verify_url).query)["challenge"][0]


def test_the_display_name_changes_after_re_entering_the_password(logged_in, user, totp):
    verify_url = _challenged(logged_in, reverse("demo:profile"), {"first_name": "Erin E."})
    page = logged_in.get(verify_url).content.decode()
    assert 'name="password"' in page  # the policy names password, so the page offers it
    wrong = logged_in.post(verify_url, {"challenge": _challenge_id(verify_url), "password": "nope"})
    assert wrong.status_code == 200 and "password" in wrong.content.decode().lower()
    ok = logged_in.post(verify_url, {"challenge": _challenge_id(verify_url), "password": PASSWORD})
    assert ok.status_code in (200, 303)
    response = logged_in.post(reverse("demo:profile"), {"first_name": "Erin E."})
    assert response.status_code == 302
    user.refresh_from_db()
    assert user.first_name == "Erin E."


def test_a_password_never_approves_a_billing_update(logged_in, user, totp):
    verify_url = _challenged(logged_in, reverse("demo:billing-update"), BILLING)
    assert 'name="password"' not in logged_in.get(verify_url).content.decode()
    refused = logged_in.post(verify_url, {"challenge": _challenge_id(verify_url), "password": PASSWORD})
    assert refused.status_code in (200, 400)
    assert_requires_stepup(logged_in, "post", reverse("demo:billing-update"), BILLING)
    assert not BillingProfile.objects.exists()


def test_an_email_code_approves_a_small_transfer(logged_in, user):
    """As bob does in the demo: the code is sent on an explicit POST, then typed."""
    from django.core import mail
    from django_otp.plugins.otp_email.models import EmailDevice

    user.email = "erin@acme.example"
    user.save()
    device = EmailDevice.objects.create(user=user, name="Work email", confirmed=True)
    verify_url = _challenged(logged_in, reverse("demo:transfer"), SMALL)
    challenge = _challenge_id(verify_url)
    logged_in.get(verify_url)
    assert mail.outbox == []  # showing the page sends nothing
    sent = logged_in.post(verify_url, {"challenge": challenge, "device": device.persistent_id, "send": "1"})
    assert sent.status_code == 200 and "e•••@acme.example" in sent.content.decode()
    assert len(mail.outbox) == 1 and mail.outbox[0].to == ["erin@acme.example"]
    device.refresh_from_db()
    confirm = logged_in.post(
        verify_url, {"challenge": challenge, "device": device.persistent_id, "token": device.token}
    )
    assert confirm.status_code == 200 and "DE89" in confirm.content.decode()  # the confirm page
    assert logged_in.post(reverse("demo:transfer"), SMALL).status_code == 302
    assert Transfer.objects.filter(user=user).count() == 1
