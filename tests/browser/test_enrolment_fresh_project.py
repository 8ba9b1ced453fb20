"""A user of a fresh project (not the demo) in Chromium: enrol an authenticator app from the QR page,
keep the backup codes, be refused a removal without a step-up, and remove a device after one.

The project is the URLconf of ``tests/enrolment/`` (``tests.enrolment.urls``) with stepup's own templates, served by
pytest-django's ``live_server`` in this process. The test reads the secret off the page and computes
codes from it, as an authenticator app would.
"""

from __future__ import annotations

import base64
import contextlib
import os
import re
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import pytest
from django.conf import settings as django_settings
from django.test import Client
from django_otp.oath import TOTP
from django_otp.plugins.otp_static.models import StaticDevice
from django_otp.plugins.otp_totp.models import TOTPDevice

from tests.browser.conftest import DESKTOP, PHONE, TIMEOUT_MS, Screenshots
from tests.enrolment.conftest import _fresh_project  # noqa: F401  (autouse: the fresh project's settings)

with contextlib.suppress(ImportError):  # without it, the browser fixture skips (in CI: fails)
    from playwright.sync_api import expect

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture(scope="module", autouse=True)
def _orm_beside_playwright() -> None:
    """Playwright's sync API keeps an event loop in the main thread for the rest of the session.

    The ORM calls here (and in every later test that opens a new connection,
    after ``live_server`` closed the shared one) are still synchronous, so
    Django's async-safety check is switched off from here on, not restored.
    """
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"


@pytest.fixture
def user(django_user_model: Any) -> Any:
    return django_user_model.objects.create_user("erin", "erin@example.com", "pw-erin-1")


@pytest.fixture
def signed_in(django_db_setup: Any, browser: Browser, live_server: Any, user: Any) -> Iterator[Any]:
    """``signed_in()``: a new browser context (its own session) signed in as ``user``."""
    contexts = []

    def open_page() -> Page:
        client = Client()
        client.force_login(user)
        context = browser.new_context(base_url=live_server.url, viewport=DESKTOP)
        context.set_default_timeout(TIMEOUT_MS)
        cookie = client.cookies[django_settings.SESSION_COOKIE_NAME].value
        context.add_cookies(
            [{"name": django_settings.SESSION_COOKIE_NAME, "value": cookie, "url": live_server.url}]
        )
        contexts.append(context)
        return context.new_page()

    yield open_page
    for context in contexts:
        context.close()


def test_enrol_keep_codes_and_remove_only_after_a_step_up(
    signed_in: Any, user: Any, policy: Any, shot: Screenshots
) -> None:
    policy(
        "records",
        description="Changing records needs a second factor.",
        actions=["records.change"],
        methods=["POST"],
    )
    page = signed_in()

    # A protected action with no second factor sends the user to the devices page, with a way back.
    page.goto("/records/")
    page.get_by_role("button", name="Change records").click()
    expect(page).to_have_url(re.compile(r"/stepup/devices/\?next=%2Frecords%2F$"))
    expect(page.get_by_role("status")).to_contain_text("you have no device that can provide it")
    shot(page, "sent to the devices page")

    page.get_by_role("link", name=re.compile("Authenticator app")).click()
    page.get_by_label("Name").fill("Work phone")
    page.get_by_role("button", name="Show the QR code").click()
    figure = page.locator("figure.stepup-qr")
    expect(figure.locator("svg")).to_be_visible()
    secret = figure.locator("code.stepup-secret").inner_text()
    assert re.fullmatch(r"[A-Z2-7]{4}( [A-Z2-7]{1,4})+", secret), secret
    plain = secret.replace(" ", "")
    key = base64.b32decode(plain + "=" * (-len(plain) % 8))
    page.set_viewport_size(PHONE)
    shot(page, "qr code and key on a phone")
    page.set_viewport_size(DESKTOP)
    assert not TOTPDevice.objects.filter(user=user, confirmed=True).exists()

    page.get_by_label("Code from your app").fill(f"{TOTP(key).token():06d}")
    page.get_by_role("button", name="Confirm").click()

    # The first factor comes with backup codes, shown once, with a download.
    expect(page.get_by_role("heading", name="Your backup codes")).to_be_visible()
    codes = page.locator("[data-stepup-codes] code").all_inner_texts()
    assert len(codes) == 10
    assert TOTPDevice.objects.get(user=user).confirmed
    with page.expect_download() as download_info:
        page.get_by_role("link", name="Download .txt").click()
    download = download_info.value
    assert download.suggested_filename == "backup-codes.txt"
    text = download.path().read_text(encoding="utf-8")
    assert all(code in text for code in codes)
    expect(page.get_by_role("button", name="Print")).to_be_visible()  # the ES module ran
    shot(page, "backup codes")
    page.get_by_role("link", name="I have saved them").click()
    expect(page).to_have_url(re.compile(r"/records/$"))

    # The devices page at 390 px: the table scrolls sideways, and says so.
    page.goto("/stepup/devices/")
    page.set_viewport_size(PHONE)
    expect(page.get_by_text("Scroll sideways to see more")).to_be_visible()
    wrap = page.locator(".stepup-table-wrap")
    assert wrap.evaluate("el => el.scrollWidth > el.clientWidth")
    assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]  # only the table scrolls
    shot(page, "devices on a phone")
    page.set_viewport_size(DESKTOP)

    # Removing needs a step-up: even the confirmation page is refused without one.
    page.get_by_role("link", name=re.compile("Remove Backup codes")).click()
    expect(page).to_have_url(re.compile(r"/stepup/verify/"))
    expect(page.get_by_role("heading", name="Confirm it's you")).to_be_visible()
    assert StaticDevice.objects.filter(user=user).exists()
    shot(page, "removal asks for a step-up")

    # A second browser with the same password-only session can't remove anything either.
    thief = signed_in()
    thief.goto(f"/stepup/devices/{TOTPDevice.objects.get(user=user).persistent_id}/remove/")
    expect(thief).to_have_url(re.compile(r"/stepup/verify/"))
    assert TOTPDevice.objects.filter(user=user).exists()

    # After the step-up (a backup code), the user confirms and the device goes.
    page.get_by_label(re.compile("Backup codes")).check()
    page.get_by_label("Code", exact=True).fill(codes[0])
    page.get_by_role("button", name="Verify").click()
    expect(page.get_by_role("heading", name=re.compile("Remove “Backup codes"))).to_be_visible()
    shot(page, "removal confirmation")
    page.get_by_role("button", name="Remove").click()
    expect(page).to_have_url(re.compile(r"/stepup/devices/$"))
    expect(page.get_by_role("status")).to_contain_text("Removed")
    assert not StaticDevice.objects.filter(user=user).exists()
    assert TOTPDevice.objects.filter(user=user, confirmed=True).exists()
    shot(page, "removed")


def test_register_a_passkey_after_a_step_up_and_step_up_with_it(
    signed_in: Any, user: Any, live_server: Any, settings: Any, shot: Screenshots
) -> None:
    """The passkey page of a fresh project: adding one needs a step-up (the user has an app), then the
    passkey (Chromium's virtual authenticator, user verification on) confirms a removal on its own."""
    assert live_server.url.startswith("http://localhost:")  # a passkey needs a domain name, not an IP
    settings.OTP_WEBAUTHN_RP_ID = "localhost"
    settings.OTP_WEBAUTHN_ALLOWED_ORIGINS = [live_server.url]
    app = TOTPDevice.objects.create(user=user, name="Work phone", confirmed=True)
    page = signed_in()
    cdp = page.context.new_cdp_session(page)
    cdp.send("WebAuthn.enable")
    options = {
        "protocol": "ctap2",
        "transport": "internal",
        "hasResidentKey": True,
        "hasUserVerification": True,
        "isUserVerified": True,
    }
    authenticator = cdp.send("WebAuthn.addVirtualAuthenticator", {"options": options})["authenticatorId"]

    # Adding a passkey while the app is the user's factor: a step-up first, with the app's code.
    page.goto("/stepup/devices/")
    page.get_by_role("link", name=re.compile("Passkey or security key")).click()
    expect(page).to_have_url(re.compile(r"/stepup/verify/"))
    page.get_by_label("Code", exact=True).fill(f"{TOTP(app.bin_key).token():06d}")
    page.get_by_role("button", name="Verify").click()
    expect(page.get_by_role("heading", name="Add a passkey")).to_be_visible()
    shot(page, "passkey page after the step-up")
    page.get_by_label("Name").fill("Laptop")
    page.get_by_role("button", name="Add a passkey").click()
    expect(page).to_have_url(re.compile(r"/stepup/devices/$"))  # back on the list, the passkey on it
    expect(page.get_by_role("table")).to_contain_text("Laptop")
    held = cdp.send("WebAuthn.getCredentials", {"authenticatorId": authenticator})["credentials"]
    assert len(held) == 1
    from django_otp_webauthn.utils import get_credential_model

    assert get_credential_model().objects.filter(user=user, confirmed=True).count() == 1

    # In a new session (no recent verification), removing the app needs a step-up: the passkey alone
    # confirms it (the same key, moved to the new tab's virtual authenticator).
    page = signed_in()
    cdp = page.context.new_cdp_session(page)
    cdp.send("WebAuthn.enable")
    authenticator = cdp.send("WebAuthn.addVirtualAuthenticator", {"options": options})["authenticatorId"]
    cdp.send("WebAuthn.addCredential", {"authenticatorId": authenticator, "credential": held[0]})
    page.goto(f"/stepup/devices/{app.persistent_id}/remove/")
    expect(page).to_have_url(re.compile(r"/stepup/verify/"))
    page.get_by_role("button", name="Use a passkey or security key").click()
    expect(page.get_by_role("heading", name=re.compile("Remove “Work phone"))).to_be_visible()
    shot(page, "removal confirmed with the passkey")
    page.get_by_role("button", name="Remove").click()
    expect(page).to_have_url(re.compile(r"/stepup/devices/$"))
    assert not TOTPDevice.objects.filter(user=user).exists()
