"""The demo's policies satisfied by allauth.mfa TOTP authenticators and recovery codes (form and API)."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client
from django.urls import reverse
from django_otp.plugins.otp_totp.models import TOTPDevice

from stepup.models import DecisionLog, UserState
from stepup.testing import assert_requires_stepup
from tests.allauth.suite.conftest import (
    add_recovery_codes,
    add_totp,
    api_verify,
    challenge_of,
    pid,
    totp_code,
    unused_codes,
    wrong_totp_code,
)
from tests.shop.models import BillingProfile, Transfer

pytestmark = pytest.mark.django_db

BILLING = {
    "company_name": "Initech",
    "billing_email": "ap@initech.example",
    "card_last4": "1234",
    "address": "4120 Freidrich Lane",
}
LARGE = {"amount": "5000.00", "account": "DE89370400440532013000"}


def step_up(client: Client, url: str, data: dict[str, str], device: str, token: str) -> Any:
    """Be challenged at ``url``, then verify on the form; the verify page's response."""
    response = client.post(url, data)
    challenge = challenge_of(response)
    page = client.get(response["Location"])
    assert page.status_code == 200
    return client.post(response["Location"], {"device": device, "token": token, "challenge": challenge})


# TOTP -----------------------------------------------------------------------------------


def test_an_allauth_totp_code_satisfies_the_billing_policy(logged_in: Client, user: Any, totp: Any) -> None:
    url = reverse("shop:billing-update")
    assert_requires_stepup(logged_in, "post", url, BILLING)
    challenged = logged_in.post(url, BILLING)
    page = logged_in.get(challenged["Location"]).content.decode()
    assert pid(totp) in page  # offered on the form, under allauth's id

    done = logged_in.post(challenged["Location"], {"device": pid(totp), "token": totp_code(totp)})
    assert done.status_code in (200, 303)
    assert not BillingProfile.objects.exists()  # nothing submitted behind the user's back
    assert logged_in.post(url, BILLING).status_code == 302
    assert BillingProfile.objects.get(user=user).company_name == "Initech"

    verified = DecisionLog.objects.get(event="verified")
    assert verified.factor == "totp" and verified.user_id == user.pk
    totp.refresh_from_db()
    assert totp.last_used_at is not None  # allauth's record_usage


def test_a_totp_code_is_spent_once(logged_in: Client, totp: Any) -> None:
    code = totp_code(totp)
    assert api_verify(logged_in, {"device": pid(totp), "token": code}).json()["verified"] is True
    again = api_verify(logged_in, {"device": pid(totp), "token": code})
    assert again.status_code == 400 and again.json()["code"] == "invalid_token"


def test_a_code_spent_at_an_allauth_login_is_no_step_up(logged_in: Client, totp: Any) -> None:
    code = totp_code(totp)
    assert totp.wrap().validate_code(code)  # allauth's own login used it
    assert api_verify(logged_in, {"device": pid(totp), "token": code}).status_code == 400


def test_a_wrong_code_fails_and_is_logged_without_the_code(logged_in: Client, totp: Any) -> None:
    wrong = wrong_totp_code(totp)
    response = api_verify(logged_in, {"device": pid(totp), "token": wrong})
    assert response.status_code == 400 and response.json()["code"] == "invalid_token"
    failed = DecisionLog.objects.get(event="failed")
    assert failed.factor == "totp"
    assert wrong not in str(DecisionLog.objects.values_list())


@pytest.mark.parametrize("token", ["12345", "1234567", "12-34-56", "12345a", "１２３４５６"])
def test_a_code_not_in_the_authenticators_shape_spends_no_guess(
    logged_in: Client, totp: Any, token: str
) -> None:
    for _ in range(6):  # more than allauth's rate limit allows guesses
        response = api_verify(logged_in, {"device": pid(totp), "token": token})
        assert response.status_code == 400 and response.json()["code"] == "invalid_token"
    assert UserState.objects.get(user_id=totp.user_id).failures == 0
    assert api_verify(logged_in, {"device": pid(totp), "token": totp_code(totp)}).status_code == 200


def test_a_large_transfer_with_allauth_totp_is_made_once(logged_in: Client, user: Any, totp: Any) -> None:
    url = reverse("shop:transfer")
    done = step_up(logged_in, url, LARGE, pid(totp), totp_code(totp))
    assert done.status_code in (200, 303)
    assert logged_in.post(url, LARGE).status_code == 302
    assert Transfer.objects.filter(user=user).count() == 1
    assert_requires_stepup(logged_in, "post", url, LARGE)  # the single-request grant is spent


# recovery codes -------------------------------------------------------------------------


def test_a_recovery_code_satisfies_the_billing_policy_on_the_form(
    logged_in: Client, user: Any, totp: Any, recovery: Any
) -> None:
    code = unused_codes(recovery)[0]
    done = step_up(logged_in, reverse("shop:billing-update"), BILLING, pid(recovery), code)
    assert done.status_code in (200, 303)
    assert logged_in.post(reverse("shop:billing-update"), BILLING).status_code == 302
    assert BillingProfile.objects.filter(user=user).exists()
    assert code not in unused_codes(recovery)  # allauth marked it used
    assert DecisionLog.objects.get(event="verified").factor == "static"


def test_a_recovery_code_over_the_api_once(logged_in: Client, recovery: Any) -> None:
    code = unused_codes(recovery)[3]
    response = api_verify(logged_in, {"device": pid(recovery), "token": code})
    assert response.status_code == 200
    assert response.json() == {"verified": True, "factor": "static"}
    assert len(unused_codes(recovery)) == 9
    again = api_verify(logged_in, {"device": pid(recovery), "token": code})
    assert again.status_code == 400 and again.json()["code"] == "invalid_token"


def test_a_policy_for_authenticators_only_refuses_recovery_codes(client: Client, make_user: Any) -> None:
    admin = make_user("root", "admins")
    make_user("fred")
    totp, recovery = add_totp(admin), add_recovery_codes(admin)
    client.force_login(admin)
    data = {"user": "fred", "group": "finance", "op": "grant"}
    challenged = client.post(reverse("shop:access"), data)  # access-modify: factors [totp, webauthn]
    challenge = challenge_of(challenged)
    page = client.get(challenged["Location"]).content.decode()
    assert pid(totp) in page and pid(recovery) not in page
    code = unused_codes(recovery)[0]
    refused = client.post(
        challenged["Location"], {"device": pid(recovery), "token": code, "challenge": challenge}
    )
    assert refused.status_code == 200 and "be used here" in refused.content.decode()
    assert code in unused_codes(recovery)  # no code was spent on a device the policy doesn't accept
    assert_requires_stepup(client, "post", reverse("shop:access"), data)


def test_used_up_recovery_codes_are_not_offered(logged_in: Client, totp: Any, recovery: Any) -> None:
    recovery.data["used_mask"] = (1 << 10) - 1
    recovery.save()
    challenged = logged_in.post(reverse("shop:billing-update"), BILLING)
    assert pid(recovery) not in logged_in.get(challenged["Location"]).content.decode()


# whose authenticator, which source ----------------------------------------------------


def test_another_users_authenticator_is_refused_and_spends_nothing(
    logged_in: Client, totp: Any, make_user: Any
) -> None:
    other = make_user("mallory")
    theirs = add_recovery_codes(other)
    code = unused_codes(theirs)[0]
    response = api_verify(logged_in, {"device": pid(theirs), "token": code})
    assert response.status_code == 400 and response.json()["code"] == "invalid_device"
    assert code in unused_codes(theirs)


@pytest.mark.parametrize(
    "device", ["mfa.authenticator/x", "mfa.authenticator/-1", "mfa.authenticator/", "mfa.authenticator/١"]
)
def test_malformed_authenticator_ids_are_refused(logged_in: Client, totp: Any, device: str) -> None:
    response = api_verify(logged_in, {"device": device, "token": totp_code(totp)})
    assert response.status_code == 400 and response.json()["code"] == "invalid_device"


def test_django_otp_devices_are_not_factors_when_only_allauth_is_named(logged_in: Client, user: Any) -> None:
    device = TOTPDevice.objects.create(user=user, name="Phone", confirmed=True)
    response = api_verify(logged_in, {"device": device.persistent_id, "token": "123456"})
    assert response.status_code == 400 and response.json()["code"] == "no_device"


def test_both_sources_offer_both(logged_in: Client, user: Any, totp: Any, settings: Any) -> None:
    settings.STEPUP = {**settings.STEPUP, "FACTOR_SOURCES": ["django_otp", "allauth"]}
    device = TOTPDevice.objects.create(user=user, name="Phone", confirmed=True)
    challenged = logged_in.post(reverse("shop:billing-update"), BILLING)
    page = logged_in.get(challenged["Location"]).content.decode()
    assert pid(totp) in page and device.persistent_id in page


# throttling and revocation -------------------------------------------------------------


def test_allauths_rate_limit_throttles_guesses(logged_in: Client, totp: Any) -> None:
    wrong = wrong_totp_code(totp)
    statuses = [api_verify(logged_in, {"device": pid(totp), "token": wrong}).status_code for _ in range(5)]
    assert statuses == [400] * 5
    throttled = api_verify(logged_in, {"device": pid(totp), "token": totp_code(totp)})
    assert throttled.status_code == 429  # allauth's login_failed limit: 5 per 5 minutes per user


def test_stepups_per_user_lockout_applies(logged_in: Client, totp: Any, settings: Any) -> None:
    settings.STEPUP = {**settings.STEPUP, "USER_FAILURE_LIMIT": 3}
    wrong = wrong_totp_code(totp)
    for _ in range(3):
        api_verify(logged_in, {"device": pid(totp), "token": wrong})
    locked = api_verify(logged_in, {"device": pid(totp), "token": totp_code(totp)})
    assert locked.status_code == 429 and locked.json()["code"] == "locked"


def test_removing_the_authenticator_voids_the_step_up(
    logged_in: Client, user: Any, totp: Any, django_capture_on_commit_callbacks: Any
) -> None:
    assert api_verify(logged_in, {"device": pid(totp), "token": totp_code(totp)}).status_code == 200
    assert logged_in.post(reverse("shop:billing-update"), BILLING).status_code == 302
    recovery = add_recovery_codes(user)  # a factor stays: the user is asked for it, not sent to enrol
    with django_capture_on_commit_callbacks(execute=True):
        totp.delete()
    assert recovery.pk
    assert_requires_stepup(logged_in, "post", reverse("shop:billing-update"), BILLING)


def test_regenerating_recovery_codes_voids_the_step_up(
    logged_in: Client, user: Any, totp: Any, recovery: Any, django_capture_on_commit_callbacks: Any
) -> None:
    from allauth.mfa.signals import authenticator_reset

    assert api_verify(logged_in, {"device": pid(totp), "token": totp_code(totp)}).status_code == 200
    with django_capture_on_commit_callbacks(execute=True):
        authenticator_reset.send(sender=type(recovery), request=None, user=user, authenticator=recovery)
    assert_requires_stepup(logged_in, "post", reverse("shop:billing-update"), BILLING)
