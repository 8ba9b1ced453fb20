"""The device pages in a fresh project: who may do what, when a step-up is needed, and what is shown once."""

from __future__ import annotations

import re
from typing import Any

import pytest
from django.core import mail
from django.test import Client
from django.urls import reverse
from django_otp.plugins.otp_static.models import StaticDevice, StaticToken
from django_otp.plugins.otp_totp.models import TOTPDevice

from stepup.enrolment import views as enrolment_views
from stepup.testing import assert_requires_stepup, stepup_verified
from tests.enrolment.conftest import APP, CODES, DEVICES, EMAIL, code

pytestmark = pytest.mark.django_db


def remove_url(device: Any) -> str:
    return f"{DEVICES}{device.persistent_id}/remove/"


def rename_url(device: Any) -> str:
    return f"{DEVICES}{device.persistent_id}/rename/"


def start_app(client: Client) -> TOTPDevice:
    assert client.post(APP, {"step": "start", "name": "Work phone"}).status_code == 302
    return TOTPDevice.objects.get(confirmed=False)


def shown_codes(response: Any) -> list[str]:
    return re.findall(r"<li><code>([a-z0-9]+)</code></li>", response.content.decode())


# --- the list -------------------------------------------------------------------------------


@pytest.mark.parametrize("path", [DEVICES, APP, CODES, EMAIL, f"{DEVICES}otp_totp.totpdevice/1/remove/"])
def test_every_page_needs_a_signed_in_user(client: Client, path: str) -> None:
    response = client.get(path)
    assert response.status_code == 302 and response["Location"].startswith("/accounts/login/")


def test_the_list_shows_the_users_own_confirmed_devices_only(
    logged_in: Client, user: Any, other_user: Any, totp: TOTPDevice, backup: StaticDevice
) -> None:
    TOTPDevice.objects.create(user=other_user, name="Mallory's phone", confirmed=True)
    TOTPDevice.objects.create(user=user, name="Half set up", confirmed=False)
    page = logged_in.get(DEVICES).content.decode()
    assert "Phone" in page and "Authenticator app" in page and "Backup codes" in page
    assert "(4 unused)" in page and "never" in page
    assert "Mallory" not in page and "Half set up" not in page
    assert f'href="{remove_url(totp)}"' in page and f'href="{rename_url(totp)}"' in page
    assert "<form" not in page.split("Add a second factor")[0]  # removing is a link to a confirmation


def test_the_list_links_to_passkeys_only_when_the_project_has_that_page(
    logged_in: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    page = logged_in.get(DEVICES).content.decode()
    assert "Passkey or security key" in page and f'href="{reverse("stepup:webauthn-register")}' in page
    assert "Email codes" in page  # otp_email is installed in the test settings
    monkeypatch.setattr(enrolment_views, "PASSKEY_URL_NAME", "stepup:no-such-page")
    page = logged_in.get(DEVICES).content.decode()
    assert "Passkey or security key" not in page
    assert "Email codes" in page


# --- the first factor -------------------------------------------------------------------------


def test_the_first_authenticator_app_needs_no_step_up_and_is_active_only_once_confirmed(
    logged_in: Client, user: Any
) -> None:
    device = start_app(logged_in)
    assert device.user == user and device.name == "Work phone"
    page = logged_in.get(APP).content.decode()
    secret = re.search(r"data-stepup-secret>([A-Z2-7 ]+)</code>", page)
    assert secret and "<svg" in page and "otpauth" not in page.replace("otpauth://", "")  # QR as markup
    # Not a factor yet: a protected action still sends the user to enrol.
    assert logged_in.post("/records/")["Location"] == "/stepup/devices/?next=%2Frecords%2F"
    assert "Work phone" not in logged_in.get(DEVICES).content.decode()

    wrong = f"{(int(code(device)) + 1) % 1000000:06d}"
    response = logged_in.post(APP, {"step": "confirm", "token": wrong})
    assert response.status_code == 200 and "did not match" in response.content.decode()
    device.refresh_from_db()
    assert not device.confirmed

    device.throttle_reset()
    response = logged_in.post(APP, {"step": "confirm", "token": code(device)})
    device.refresh_from_db()
    assert response.status_code == 200 and device.confirmed
    # The first factor comes with backup codes, shown this once.
    codes = shown_codes(response)
    assert len(codes) == 10
    assert sorted(codes) == sorted(
        StaticToken.objects.filter(device__user=user).values_list("token", flat=True)
    )
    assert "no-store" in response["Cache-Control"]


def test_a_second_factor_added_meanwhile_makes_the_confirmation_ask_for_a_step_up(
    logged_in: Client, user: Any
) -> None:
    """Session A started with no factor; one appeared since: A's confirmation is guarded now."""
    device = start_app(logged_in)
    TOTPDevice.objects.create(user=user, name="Added elsewhere", confirmed=True)
    assert_requires_stepup(
        logged_in, "post", APP, {"step": "confirm", "token": code(device)}, refused_in_view=True
    )
    device.refresh_from_db()
    assert not device.confirmed


def test_an_enrolment_is_bound_to_the_session_that_started_it(logged_in: Client, user: Any) -> None:
    device = start_app(logged_in)
    other_browser = Client()
    other_browser.force_login(user)
    response = other_browser.post(APP, {"step": "confirm", "token": code(device)})
    assert response.status_code == 302 and response["Location"] == APP
    assert "Start again" in other_browser.get(APP).content.decode()
    device.refresh_from_db()
    assert not device.confirmed


def test_starting_again_discards_the_unfinished_key(logged_in: Client) -> None:
    first = start_app(logged_in)
    second = start_app(logged_in)
    assert first.pk != second.pk and not TOTPDevice.objects.filter(pk=first.pk).exists()


# --- CSRF --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "path, data",
    [(APP, {"step": "start"}), (CODES, {}), (EMAIL, {"step": "start", "email": "e@example.com"})],
)
def test_changes_need_the_csrf_token(user: Any, path: str, data: dict[str, str]) -> None:
    browser = Client(enforce_csrf_checks=True)
    browser.force_login(user)
    assert browser.post(path, data).status_code == 403
    assert not TOTPDevice.objects.exists() and not StaticDevice.objects.exists()
    assert mail.outbox == []


def test_removing_and_renaming_need_the_csrf_token(user: Any, totp: TOTPDevice) -> None:
    browser = Client(enforce_csrf_checks=True)
    browser.force_login(user)
    with stepup_verified(browser, user):
        assert browser.post(remove_url(totp)).status_code == 403
        assert browser.post(rename_url(totp), {"name": "Hacked"}).status_code == 403
    totp.refresh_from_db()
    assert totp.name == "Phone"


# --- someone else's device ----------------------------------------------------------------------


@pytest.mark.parametrize("method", ["get", "post"])
def test_another_users_device_is_404(logged_in: Client, user: Any, other_user: Any, method: str) -> None:
    TOTPDevice.objects.create(user=user, name="Mine", confirmed=True)
    theirs = TOTPDevice.objects.create(user=other_user, name="Theirs", confirmed=True)
    with stepup_verified(logged_in, user):
        assert getattr(logged_in, method)(remove_url(theirs)).status_code == 404
        assert getattr(logged_in, method)(rename_url(theirs), {"name": "x"}).status_code == 404
        assert logged_in.get(f"{DEVICES}no.such/1/remove/").status_code == 404
    theirs.refresh_from_db()
    assert theirs.name == "Theirs"


# --- step-up before changes, once the user has a factor -----------------------------------------


@pytest.mark.parametrize(
    "method, path, data",
    [
        ("get", APP, None),
        ("post", APP, {"step": "start"}),
        ("get", CODES, None),
        ("post", CODES, {}),
        ("get", EMAIL, None),
        ("post", EMAIL, {"step": "start", "email": "thief@example.com"}),
    ],
)
def test_adding_a_factor_when_having_one_needs_a_step_up(
    logged_in: Client, totp: TOTPDevice, method: str, path: str, data: Any
) -> None:
    response = assert_requires_stepup(logged_in, method, path, data, refused_in_view=True)
    assert "next=" in response["Location"]
    assert TOTPDevice.objects.count() == 1 and not StaticDevice.objects.exists()
    assert mail.outbox == []


def test_adding_a_factor_after_a_step_up(logged_in: Client, user: Any, totp: TOTPDevice) -> None:
    with stepup_verified(logged_in, user):
        device = start_app(logged_in)
        response = logged_in.post(APP, {"step": "confirm", "token": code(device)})
    assert response.status_code == 302 and response["Location"] == DEVICES
    device.refresh_from_db()
    assert device.confirmed and not StaticDevice.objects.exists()  # backup codes come only with the first


@pytest.mark.parametrize("method", ["get", "post"])
def test_removing_needs_a_step_up_even_the_confirmation_page(
    logged_in: Client, totp: TOTPDevice, method: str
) -> None:
    assert_requires_stepup(logged_in, method, remove_url(totp), refused_in_view=True)
    assert TOTPDevice.objects.filter(pk=totp.pk).exists()


def test_removing_asks_first_then_removes(
    logged_in: Client, user: Any, totp: TOTPDevice, backup: StaticDevice
) -> None:
    with stepup_verified(logged_in, user):
        page = logged_in.get(remove_url(backup))
        assert page.status_code == 200 and "Remove “Backup codes”?" in page.content.decode()
        assert StaticDevice.objects.exists()
        assert "understood" not in page.content.decode()  # the app remains: nothing becomes impossible
        response = logged_in.post(remove_url(backup))
    assert response.status_code == 302 and response["Location"] == DEVICES
    assert not StaticDevice.objects.exists() and TOTPDevice.objects.exists()


def test_removing_a_factor_a_policy_needs_warns_and_asks_to_confirm(
    logged_in: Client, user: Any, totp: TOTPDevice, backup: StaticDevice, policy: Any
) -> None:
    policy(
        "records-need-app",
        description="Changing records needs your authenticator app.",
        actions=["records.change"],
        factors=["totp", "webauthn"],
    )
    policy("admins-only", actions=["admin.thing"], factors=["totp"], when={"roles": {"any_of": ["admins"]}})
    with stepup_verified(logged_in, user):
        page = logged_in.get(remove_url(totp)).content.decode()
        assert "Changing records needs your authenticator app." in page and "records.change" in page
        assert "admin.thing" not in page  # erin is not an admin: that policy doesn't apply to her
        assert 'name="understood"' in page
        refused = logged_in.post(remove_url(totp))
        assert refused.status_code == 200 and "Tick this box" in refused.content.decode()
        assert TOTPDevice.objects.filter(pk=totp.pk).exists()
        response = logged_in.post(remove_url(totp), {"understood": "on"})
    assert response.status_code == 302 and not TOTPDevice.objects.filter(pk=totp.pk).exists()


def test_removing_the_last_factor_warns_even_without_a_policy(
    logged_in: Client, user: Any, totp: TOTPDevice
) -> None:
    with stepup_verified(logged_in, user):
        page = logged_in.get(remove_url(totp)).content.decode()
        assert "This is your last second factor." in page
        assert logged_in.post(remove_url(totp)).status_code == 200
        assert logged_in.post(remove_url(totp), {"understood": "on"}).status_code == 302
    assert not TOTPDevice.objects.exists()


def test_renaming_needs_no_step_up(logged_in: Client, totp: TOTPDevice) -> None:
    assert logged_in.get(rename_url(totp)).status_code == 200
    assert logged_in.post(rename_url(totp), {"name": "  "}).status_code == 200
    assert logged_in.post(rename_url(totp), {"name": " Old   phone "}).status_code == 302
    totp.refresh_from_db()
    assert totp.name == "Old phone"


# --- backup codes -----------------------------------------------------------------------------


def test_a_get_of_the_backup_codes_url_is_a_page_not_a_405(logged_in: Client) -> None:
    page = logged_in.get(CODES)
    assert page.status_code == 200 and "Make backup codes" in page.content.decode()
    assert not StaticDevice.objects.exists()


def test_backup_codes_are_shown_once_with_a_download(logged_in: Client, user: Any) -> None:
    response = logged_in.post(CODES)
    codes = shown_codes(response)
    assert len(codes) == 10 and "no-store" in response["Cache-Control"]
    assert 'download="backup-codes.txt"' in response.content.decode()
    assert all(c in response.content.decode().split('download="backup-codes.txt"')[1] for c in codes)
    for page in (logged_in.get(CODES), logged_in.get(DEVICES)):
        assert not any(c in page.content.decode() for c in codes)


def test_new_backup_codes_invalidate_the_old_ones(logged_in: Client, user: Any) -> None:
    old = shown_codes(logged_in.post(CODES))
    with stepup_verified(logged_in, user, factor="static"):
        page = logged_in.get(CODES).content.decode()
        assert "Replace my backup codes" in page and "stop working" in page
        new = shown_codes(logged_in.post(CODES))
    assert len(new) == 10 and not set(old) & set(new)
    (device,) = StaticDevice.objects.filter(user=user)
    assert set(device.token_set.values_list("token", flat=True)) == set(new)
    assert not device.verify_token(old[0])
    device.throttle_reset()
    assert device.verify_token(new[0])


# --- email ---------------------------------------------------------------------------------------


def test_an_email_address_is_a_factor_once_its_code_is_typed(logged_in: Client, user: Any) -> None:
    from django_otp.plugins.otp_email.models import EmailDevice

    assert logged_in.get(EMAIL).status_code == 200 and mail.outbox == []  # a GET sends nothing
    response = logged_in.post(EMAIL, {"step": "start", "email": "erin.home@example.org"})
    assert response.status_code == 302 and len(mail.outbox) == 1
    assert mail.outbox[0].to == ["erin.home@example.org"]
    device = EmailDevice.objects.get(user=user)
    assert not device.confirmed
    page = logged_in.get(EMAIL).content.decode()
    assert "e•••@example.org" in page
    refused = logged_in.post(
        EMAIL, {"step": "confirm", "token": "000000" if device.token != "000000" else "111111"}
    )
    assert "did not match" in refused.content.decode()
    device.refresh_from_db()
    device.throttle_reset()
    token = re.search(r"\b(\d{6})\b", mail.outbox[0].body)
    assert token
    response = logged_in.post(EMAIL, {"step": "confirm", "token": token.group(1)})
    device.refresh_from_db()
    assert response.status_code == 302 and device.confirmed


def test_resending_an_email_code_obeys_the_cooldown(logged_in: Client) -> None:
    logged_in.post(EMAIL, {"step": "start", "email": "erin@example.org"})
    logged_in.post(EMAIL, {"step": "resend"})
    assert len(mail.outbox) == 1


# --- where step-up sends a user without a factor ---------------------------------------------------


def test_a_fresh_project_sends_users_without_a_factor_to_the_devices_page(logged_in: Client) -> None:
    response = logged_in.post("/records/")
    assert response.status_code == 302 and response["Location"] == "/stepup/devices/?next=%2Frecords%2F"
    page = logged_in.get(response["Location"]).content.decode()
    assert "you have no device that can provide it" in page
    assert 'href="/stepup/devices/authenticator/?next=%2Frecords%2F"' in page


def test_the_enrol_page_links_to_the_devices_page(logged_in: Client, settings: Any) -> None:
    settings.STEPUP = {**settings.STEPUP, "ENROLL_URL": None}
    page = logged_in.post("/records/")
    assert page.status_code == 403 and 'href="/stepup/devices/?next=%2Frecords%2F"' in page.content.decode()


def test_after_the_first_factor_the_user_goes_back_where_they_were(logged_in: Client) -> None:
    logged_in.post(APP, {"step": "start", "next": "/records/"})
    device = TOTPDevice.objects.get()
    page = logged_in.post(APP, {"step": "confirm", "token": code(device), "next": "/records/"})
    assert 'href="/records/">I have saved them' in page.content.decode()


def test_the_list_links_to_the_passkey_page_when_it_exists(logged_in: Client, monkeypatch: Any) -> None:
    from stepup.enrolment import views

    monkeypatch.setattr(views, "PASSKEY_URL_NAME", "stepup:devices-email")  # stands in for webauthn-register
    page = logged_in.get(DEVICES).content.decode()
    assert 'href="/stepup/devices/email/"' in page.split("Passkey or security key")[0].rsplit("<li>", 1)[1]
