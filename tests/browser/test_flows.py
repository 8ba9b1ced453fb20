"""The demo as a user sees it, in a real browser: step-up, throttling, one-shot grants, enrollment.

Each test signs in with a fresh browser context. Codes are computed here from
the device's secret, as an authenticator app would (see
:meth:`DemoServer.totp_code`); the enrollment test reads the secret off the page.
Users are not shared between tests that verify, so no test's codes or
throttling counters depend on another's.
"""

from __future__ import annotations

import base64
import contextlib
import re
from typing import TYPE_CHECKING
from urllib.parse import parse_qs, urlsplit

import pytest
from django_otp.oath import TOTP

from tests.browser.conftest import PHONE, Screenshots
from tests.browser.demo_server import DemoServer, wrong_code

with contextlib.suppress(ImportError):  # without it, the browser fixture skips (in CI: fails)
    from playwright.sync_api import expect

if TYPE_CHECKING:
    from playwright.sync_api import Page, Response

pytestmark = pytest.mark.browser

VERIFY_PATH = "/stepup/verify/"
ACCOUNT = "FR14 2004 1010 0505 0001 3M02 606"


def sign_in(page: Page, username: str, path: str = "/accounts/login/") -> None:
    page.goto(path)
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(f"stepup-demo-{username}")
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_load_state()
    expect(page.get_by_label("Password")).to_have_count(0)


def on_verify_page(page: Page) -> dict[str, list[str]]:
    """Assert the browser is on stepup's verification page; its query string."""
    url = urlsplit(page.url)
    assert url.path == VERIFY_PATH, page.url
    expect(page.get_by_role("heading", name="Confirm it's you")).to_be_visible()
    return parse_qs(url.query)


def enter_code(page: Page, code: str, device: str | None = None) -> Response | None:
    if device is not None:
        page.get_by_label(device).check()
    page.get_by_label("Code", exact=True).fill(code)
    with page.expect_navigation() as navigation:
        page.get_by_role("button", name="Verify").click()
    return navigation.value


def test_billing_update_steps_up_then_finishes(page: Page, demo: DemoServer, shot: Screenshots) -> None:
    sign_in(page, "alice")
    shot(page, "home after sign in")
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Billing").click()
    page.get_by_role("link", name=re.compile("Edit details")).click()
    expect(page.get_by_role("heading", name="Edit billing details")).to_be_visible()
    page.get_by_label("Company name").fill("Acme Rockets Ltd")
    shot(page, "billing form filled in")
    page.get_by_role("button", name="Save details").click()

    # Sent to verify: the page says what is being authorized, and the change is not saved yet.
    query = on_verify_page(page)
    assert query["next"] == ["/billing/edit/"]
    authorizing = page.get_by_role("region", name="You are authorizing")
    expect(authorizing).to_contain_text(
        "Changing billing details needs a second factor from the last 5 minutes."
    )
    shot(page, "verify page says what is authorized")
    (company,) = demo.query(
        "SELECT company_name FROM demo_billingprofile p JOIN auth_user u ON u.id = p.user_id "
        "WHERE u.username = 'alice'"
    )
    assert company == ("Acme Corp",)

    # alice has an authenticator app and backup codes: she picks the app.
    response = enter_code(page, demo.totp_code("alice"), device="Authenticator app: Phone")
    assert response is not None and response.status == 200

    # Back with the interrupted form: shown for one click, never replayed on its own.
    expect(page.get_by_role("heading", name="Confirm your request")).to_be_visible()
    expect(page.get_by_text("Acme Rockets Ltd")).to_be_visible()
    shot(page, "confirm the interrupted update")
    page.get_by_role("button", name="Submit").click()

    expect(page).to_have_url(re.compile(r"/billing/$"))
    expect(page.get_by_role("status")).to_contain_text("Billing details updated.")
    expect(page.locator(".details")).to_contain_text("Acme Rockets Ltd")
    shot(page, "billing updated")

    # Within the policy's 5 minutes, the next change goes straight through.
    page.get_by_role("link", name=re.compile("Edit details")).click()
    page.get_by_label("Company name").fill("Acme Rockets Group")
    page.get_by_role("button", name="Save details").click()
    expect(page.get_by_role("status")).to_contain_text("Billing details updated.")
    expect(page.locator(".details")).to_contain_text("Acme Rockets Group")
    shot(page, "second update within max_age needs no code")


def test_wrong_codes_show_an_error_then_throttle(page: Page, demo: DemoServer, shot: Screenshots) -> None:
    sign_in(page, "bob")
    page.goto("/billing/edit/")
    page.get_by_label("Company name").fill("Mallory Holdings")
    page.get_by_role("button", name="Save details").click()
    on_verify_page(page)
    ((key,),) = demo.query(
        "SELECT d.key FROM otp_totp_totpdevice d JOIN auth_user u ON u.id = d.user_id "
        "WHERE u.username = 'bob'"
    )
    bad = wrong_code(str(key))

    response = enter_code(page, bad)
    assert response is not None and response.status == 200
    expect(page.get_by_role("alert")).to_have_text("That code is not valid. Check it and try again.")
    expect(page.get_by_label("Code", exact=True)).to_have_attribute("aria-invalid", "true")
    shot(page, "wrong code shows an error")

    # django-otp makes the device wait 1 s after the first failure, then 2 s, 4 s ...
    # Waiting those out, two more wrong codes are checked and refused like the first.
    for wait_ms in (1100, 2100):
        page.wait_for_timeout(wait_ms)
        response = enter_code(page, bad)
        assert response is not None and response.status == 200
        expect(page.get_by_role("alert")).to_have_text("That code is not valid. Check it and try again.")

    # Now the device wants 4 s: an attempt at once is throttled, not checked.
    response = enter_code(page, bad)
    assert response is not None and response.status == 429
    expect(page.get_by_role("alert")).to_contain_text("Too many failed attempts with this device.")
    expect(page.get_by_role("alert")).to_contain_text("Try again in")
    shot(page, "repeated failures are throttled")

    # Even the right code is refused while throttled, and nothing is saved.
    response = enter_code(page, demo.totp_code("bob"))
    assert response is not None and response.status == 429
    (company,) = demo.query(
        "SELECT company_name FROM demo_billingprofile p JOIN auth_user u ON u.id = p.user_id "
        "WHERE u.username = 'bob'"
    )
    assert company == ("Acme Corp",)


def test_large_transfer_asks_again_right_after_a_verification(
    page: Page, demo: DemoServer, shot: Screenshots
) -> None:
    sign_in(page, "alice")
    page.goto("/transfers/")
    page.get_by_label("Amount").fill("5000")
    page.get_by_label("Destination account").fill(ACCOUNT)
    shot(page, "large transfer filled in")
    page.get_by_role("button", name="Send transfer").click()

    on_verify_page(page)
    authorizing = page.get_by_role("region", name="You are authorizing")
    expect(authorizing).to_contain_text("Every transfer over 1,000 needs a fresh authenticator-app code")
    expect(authorizing.locator("dl")).to_contain_text("€5,000.00")  # in people's words
    expect(authorizing.locator("dl")).to_contain_text(ACCOUNT)  # the IBAN in groups of four
    shot(page, "verify page shows amount and account")
    # Only the authenticator app is accepted here, so there is no device to choose.
    expect(page.get_by_role("radio")).to_have_count(0)
    enter_code(page, demo.totp_code("alice"))

    expect(page.get_by_role("heading", name="Confirm your request")).to_be_visible()
    page.get_by_role("button", name="Submit").click()
    expect(page.get_by_role("status")).to_contain_text("Sent €5,000.00 to FR14 2004 1010 0505 0001 3M02 606.")
    shot(page, "transfer sent")

    # The grant was for that one transfer: the very same transfer again, seconds later, asks again.
    page.get_by_label("Amount").fill("5000")
    page.get_by_label("Destination account").fill(ACCOUNT)
    page.get_by_role("button", name="Send transfer").click()
    on_verify_page(page)
    expect(page.get_by_role("region", name="You are authorizing")).to_contain_text("€5,000.00")
    shot(page, "the next large transfer asks again")
    sent = demo.query(
        "SELECT COUNT(*) FROM demo_transfer t JOIN auth_user u ON u.id = t.user_id "
        "WHERE u.username = 'alice' AND t.amount = 5000"
    )
    assert sent == [(1,)]


def test_totp_enrollment_from_the_qr_page(page: Page, demo: DemoServer, shot: Screenshots) -> None:
    sign_in(page, "dave")
    expect(page.get_by_role("heading", name="Set up a second factor")).to_be_visible()
    shot(page, "home asks dave to set up a second factor")

    # A protected change without any device sends dave to enroll (stepup's device pages).
    page.goto("/billing/edit/")
    page.get_by_label("Company name").fill("Dave's Diner")
    page.get_by_role("button", name="Save details").click()
    expect(page).to_have_url(re.compile(r"/stepup/devices/\?next=%2Fbilling%2Fedit%2F$"))
    expect(page.get_by_role("status")).to_contain_text("you have no device that can provide it")
    page.get_by_role("link", name=re.compile("Authenticator app")).click()
    page.get_by_role("button", name="Show the QR code").click()

    figure = page.locator("figure.stepup-qr")
    expect(figure.locator("svg")).to_be_visible()
    page.set_viewport_size(PHONE)
    shot(page, "qr code and secret on a phone")
    page.set_viewport_size({"width": 1280, "height": 800})
    secret = figure.locator("code.stepup-secret").inner_text()
    assert re.fullmatch(r"[A-Z2-7]{4}( [A-Z2-7]{1,4})+", secret), secret
    key = base64.b32decode(secret.replace(" ", "") + "=" * (-len(secret.replace(" ", "")) % 8))
    assert len(key) == 20

    # A wrong code first: refused, nothing confirmed.
    page.get_by_label("Code from your app").fill(wrong_code(key.hex()))
    page.get_by_role("button", name="Confirm").click()
    expect(page.get_by_text("That code did not match.")).to_be_visible()
    assert demo.query(
        "SELECT COUNT(*) FROM otp_totp_totpdevice d JOIN auth_user u ON u.id = d.user_id "
        "WHERE u.username = 'dave' AND d.confirmed = 1"
    ) == [(0,)]

    # django-otp makes the device wait a second after a failure before it checks another code.
    page.wait_for_timeout(1100)
    page.get_by_label("Code from your app").fill(f"{TOTP(key).token():06d}")
    page.get_by_role("button", name="Confirm").click()
    # The first factor comes with backup codes, shown once; then back to the billing form.
    expect(page.get_by_text("Your authenticator app is set up.")).to_be_visible()
    expect(page.locator("[data-stepup-codes] code")).to_have_count(10)
    shot(page, "enrolled with backup codes")
    page.get_by_role("link", name="I have saved them").click()
    expect(page).to_have_url(re.compile(r"/billing/edit/$"))

    # The new device now guards dave's billing change like anyone else's.
    page.goto("/billing/edit/")
    page.get_by_label("Company name").fill("Dave's Diner")
    page.get_by_role("button", name="Save details").click()
    on_verify_page(page)
    shot(page, "verify with the new device")
    enter_code(page, demo.totp_code("dave"))
    page.get_by_role("button", name="Submit").click()
    expect(page.get_by_role("status")).to_contain_text("Billing details updated.")
    expect(page.locator(".details")).to_contain_text("Dave's Diner")
    shot(page, "dave's update done")
