"""The demo on allauth.mfa (``project.settings_allauth``) in Chromium: the same policies, allauth's factors.

alice has an allauth TOTP authenticator and recovery codes (``seed_demo``): a
recovery code lets her change billing details, her authenticator app
approves a large transfer, and the recovery codes are not offered for it
(the policy asks for an app or a passkey). dave has no factor: he adds a
passkey on allauth's own page, with Chromium's virtual authenticator (CDP),
and approves a large transfer with it on stepup's verify page.

WebAuthn needs a domain name: the pages are opened at ``http://localhost:<port>``,
allauth's relying party is the request's host.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import pytest

from tests.browser import demo_server
from tests.browser.conftest import Screenshots, new_page
from tests.browser.demo_server import DemoServer, manage

with contextlib.suppress(ImportError):  # without it, the browser fixture skips (in CI: fails)
    from playwright.sync_api import expect

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page

pytestmark = pytest.mark.browser

SETTINGS = "project.settings_allauth"
ACCOUNT = "FR14 2004 1010 0505 0001 3M02 606"
VERIFY = re.compile(r"/stepup/verify/\?")


@pytest.fixture(scope="module")
def allauth_demo(browser: Browser) -> Iterator[DemoServer]:
    """The demo on allauth.mfa, on a free loopback port, with a database made for this module."""
    with demo_server.serving(SETTINGS) as server:
        yield server


@pytest.fixture
def page(browser: Browser, allauth_demo: DemoServer) -> Iterator[Page]:
    """On localhost, not 127.0.0.1: the passkeys' relying party is a domain name."""
    with new_page(browser, allauth_demo.url.replace("127.0.0.1", "localhost")) as tab:
        yield tab


def run(demo: DemoServer, *args: str) -> str:
    return manage(demo.db_path, *args, settings=SETTINGS)


def recovery_codes(demo: DemoServer, username: str) -> list[str]:
    """The user's allauth recovery codes, as ``seed_demo`` prints them."""
    out = run(demo, "seed_demo")
    match = re.search(rf"allauth recovery codes for {username}: ([0-9 ]+)", out)
    assert match, out
    return match.group(1).split()


def totp_code(demo: DemoServer, username: str) -> str:
    """The current code of the user's allauth authenticator (``demo_totp``, allauth's own functions).

    allauth accepts only the current 30-second step (``MFA_TOTP_TOLERANCE`` 0), so a
    code taken in a step's last seconds would expire before the server sees it:
    then the next step is waited for.
    """
    import time

    left = 30 - time.time() % 30
    if left < 10:
        time.sleep(left + 0.2)
    return run(demo, "demo_totp", username).strip()


def sign_in(page: Page, username: str) -> None:
    page.goto("/accounts/login/")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(f"stepup-demo-{username}")
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_load_state()
    expect(page.get_by_label("Password")).to_have_count(0)


def send_transfer(page: Page, amount: str) -> None:
    page.goto("/transfers/")
    page.get_by_label("Amount").fill(amount)
    page.get_by_label("Destination account").fill(ACCOUNT)
    page.get_by_role("button", name="Send transfer").click()
    expect(page).to_have_url(VERIFY)


def transfers(demo: DemoServer, username: str, amount: int) -> int:
    rows = demo.query(
        "SELECT COUNT(*) FROM demo_transfer t JOIN auth_user u ON u.id = t.user_id "
        "WHERE u.username = ? AND t.amount = ?",
        username,
        amount,
    )
    return int(str(rows[0][0]))


def authenticators(demo: DemoServer, username: str) -> list[str]:
    rows = demo.query(
        "SELECT a.type FROM mfa_authenticator a JOIN auth_user u ON u.id = a.user_id "
        "WHERE u.username = ? ORDER BY a.id",
        username,
    )
    return [str(row[0]) for row in rows]


def virtual_authenticator(page: Page) -> Any:
    cdp = page.context.new_cdp_session(page)
    cdp.send("WebAuthn.enable")
    options = {
        "protocol": "ctap2",
        "transport": "internal",
        "hasResidentKey": True,
        "hasUserVerification": True,
        "isUserVerified": True,
    }
    cdp.send("WebAuthn.addVirtualAuthenticator", {"options": options})
    return cdp


def test_alice_steps_up_with_a_recovery_code_then_her_authenticator_app(
    page: Page, allauth_demo: DemoServer, shot: Screenshots
) -> None:
    codes = recovery_codes(allauth_demo, "alice")
    sign_in(page, "alice")

    # Billing details: any second factor, so the recovery codes are offered too.
    page.goto("/billing/edit/")
    page.get_by_label("Company name").fill("Initech")
    page.get_by_role("button", name=re.compile("Save")).click()
    expect(page).to_have_url(VERIFY)
    expect(page.get_by_label(re.compile("Recovery codes"))).to_be_visible()
    shot(page, "the verify page offers allauth's authenticators")
    page.get_by_label(re.compile("Recovery codes")).check()
    page.get_by_label("Code", exact=True).fill(codes[0])
    page.get_by_role("button", name="Verify").click()
    expect(page.get_by_role("heading", name="Confirm your request")).to_be_visible()
    page.get_by_role("button", name="Submit").click()
    expect(page.get_by_role("status")).to_contain_text("Billing details updated")
    shot(page, "billing saved after a recovery code")
    assert recovery_mask(allauth_demo, "alice") == 1  # allauth marked the first code used

    # A large transfer: a fresh app code, bound to this transfer; recovery codes are not offered.
    send_transfer(page, "5000")
    expect(page.get_by_label(re.compile("Recovery codes"))).to_have_count(0)
    shot(page, "a large transfer asks for the authenticator app")
    page.get_by_label("Code", exact=True).fill(totp_code(allauth_demo, "alice"))
    page.get_by_role("button", name="Verify").click()
    expect(page.get_by_role("heading", name="Confirm your request")).to_be_visible()
    page.get_by_role("button", name="Submit").click()
    expect(page.get_by_role("status")).to_contain_text("Sent €5,000.00")
    assert transfers(allauth_demo, "alice", 5000) == 1
    send_transfer(page, "5000")  # the approval was for that one transfer
    shot(page, "the same transfer again asks again")


def recovery_mask(demo: DemoServer, username: str) -> int:
    """allauth's mask of the user's used recovery codes (bit i: code i used)."""
    import json

    rows = demo.query(
        "SELECT a.data FROM mfa_authenticator a JOIN auth_user u ON u.id = a.user_id "
        "WHERE u.username = ? AND a.type = 'recovery_codes'",
        username,
    )
    return int(json.loads(str(rows[0][0]))["used_mask"])


def test_dave_adds_a_passkey_on_allauths_page_and_approves_a_transfer_with_it(
    page: Page, allauth_demo: DemoServer, shot: Screenshots
) -> None:
    virtual_authenticator(page)
    sign_in(page, "dave")

    # allauth's own page adds the passkey (after allauth asks for the password again).
    page.goto("/accounts/2fa/webauthn/add/")
    if page.get_by_label("Password").count():
        page.get_by_label("Password").fill("stepup-demo-dave")
        page.get_by_role("button", name="Confirm").click()
    page.get_by_label("Name").fill("Laptop")
    page.locator("#mfa_webauthn_add").click()
    page.wait_for_load_state()
    expect(page).not_to_have_url(re.compile(r"/webauthn/add/"))
    shot(page, "the passkey is added on allauth's page")
    assert "webauthn" in authenticators(allauth_demo, "dave")

    # A large transfer: stepup's verify page offers the passkey; the virtual authenticator signs.
    send_transfer(page, "5000")
    for _ in range(2):  # a recent factor, then the approval of this very transfer
        if not VERIFY.search(page.url):
            break
        shot(page, "the verify page offers the passkey")
        page.get_by_role("button", name="Use a passkey or security key").click()
        expect(page.get_by_role("heading", name="Confirm your request")).to_be_visible()
        page.get_by_role("button", name="Submit").click()
        page.wait_for_load_state()
    expect(page.get_by_role("status")).to_contain_text("Sent €5,000.00")
    assert transfers(allauth_demo, "dave", 5000) == 1
    shot(page, "the transfer approved by the passkey")
