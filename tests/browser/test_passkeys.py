"""Passkeys in a real browser: Chromium's virtual authenticator (CDP), under ``default-src 'self'``.

WebAuthn needs a domain name, so these tests open the demo at
``http://localhost:<port>`` (the demo's relying party is ``localhost``; see
``project/demo/webauthn.py``). Every response gets
``Content-Security-Policy: default-src 'self'`` on the way to the browser,
so an inline script would not run, and any script refused by the policy
fails the test.

alice enrols a passkey (after stepping up with her authenticator app, since
she already has one) and approves a large transfer with it; the passkey is
removed again at the end so that the other browser tests see alice as
seeded. The refusals use users of their own, made for this module.
"""

from __future__ import annotations

import contextlib
import json
import re
import sqlite3
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs

import pytest

from tests.browser.conftest import DESKTOP, TIMEOUT_MS, Screenshots
from tests.browser.demo_server import DemoServer, manage

with contextlib.suppress(ImportError):  # without it, the browser fixture skips (in CI: fails)
    from playwright.sync_api import expect

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page, Route

pytestmark = pytest.mark.browser

CSP = "default-src 'self'"
ACCOUNT = "FR14 2004 1010 0505 0001 3M02 606"
OTHER_ACCOUNT = "DE89 3704 0044 0532 0130 00"
PASSKEY_BUTTON = "Use a passkey or security key"
REGISTER_PAGE = "/stepup/webauthn/register/?next=/transfers/"
"""stepup's passkey page (the device pages link to it), coming back to the transfers."""
TRANSFERS_PAGE = re.compile(r"^http://localhost:\d+/transfers/$")
USERS = ("erin", "frank")
"""Users of this module only: each signs up with a passkey as their first factor."""

MAKE_USERS = """
from django.contrib.auth.models import Group, User
finance = Group.objects.get(name="finance")
for name in {names!r}:
    user, _ = User.objects.get_or_create(username=name)
    user.set_password("stepup-demo-" + name)
    user.save()
    user.groups.add(finance)
"""


@pytest.fixture(scope="module")
def users(demo: DemoServer) -> tuple[str, ...]:
    manage(demo.db_path, "shell", "-c", MAKE_USERS.format(names=USERS))
    return USERS


@pytest.fixture
def page(browser: Browser, demo: DemoServer) -> Iterator[Page]:
    """A new context on ``http://localhost:<port>``, every response under ``default-src 'self'``."""
    context = browser.new_context(base_url=demo.url.replace("127.0.0.1", "localhost"), viewport=DESKTOP)
    context.set_default_timeout(TIMEOUT_MS)
    tab = context.new_page()
    _enforce_csp(tab)
    refused: list[str] = []
    tab.on("console", lambda m: refused.append(m.text) if "Content Security Policy" in m.text else None)
    tab.on("pageerror", lambda error: refused.append(str(error)))
    try:
        yield tab
        scripts = [m for m in refused if "script" in m.lower()]
        assert not scripts, f"the page needed a script the policy refuses: {scripts}"
    finally:
        context.close()


def _enforce_csp(page: Page) -> None:
    """Give every response of ``page`` the policy, in the browser (CDP ``Fetch``), before it is read.

    Done in the browser rather than with Playwright's ``route.fetch``: the demo's
    single-threaded server would wait on the browser's idle connection.
    """
    cdp = page.context.new_cdp_session(page)

    def paused(event: dict[str, Any]) -> None:
        headers = [
            h for h in event.get("responseHeaders", []) if h["name"].lower() != "content-security-policy"
        ]
        existing = [
            h["value"]
            for h in event.get("responseHeaders", [])
            if h["name"].lower() == "content-security-policy"
        ]
        headers.append({"name": "Content-Security-Policy", "value": "; ".join([CSP, *existing])})
        status = event.get("responseStatusCode")
        if status is None:  # a request paused before its response (should not happen at this stage)
            cdp.send("Fetch.continueRequest", {"requestId": event["requestId"]})
            return
        cdp.send(
            "Fetch.continueResponse",
            {"requestId": event["requestId"], "responseCode": status, "responseHeaders": headers},
        )

    cdp.on("Fetch.requestPaused", paused)
    cdp.send("Fetch.enable", {"patterns": [{"urlPattern": "*", "requestStage": "Response"}]})


def virtual_authenticator(page: Page, *, user_verification: bool = True) -> tuple[Any, str]:
    """A platform authenticator for this tab (CDP): with or without a way to verify the user.

    :returns: the CDP session and the authenticator's id.
    """
    cdp = page.context.new_cdp_session(page)
    cdp.send("WebAuthn.enable")
    options = {
        "protocol": "ctap2",
        "transport": "internal",
        "hasResidentKey": True,
        "hasUserVerification": user_verification,
        "isUserVerified": user_verification,
    }
    added = cdp.send("WebAuthn.addVirtualAuthenticator", {"options": options})
    return cdp, str(added["authenticatorId"])


def sign_in(page: Page, username: str) -> None:
    page.goto("/accounts/login/")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(f"stepup-demo-{username}")
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_load_state()
    expect(page.get_by_label("Password")).to_have_count(0)


def add_passkey(page: Page, name: str) -> None:
    """On the passkey page: name it and let the authenticator create it."""
    page.get_by_label("Name").fill(name)
    page.get_by_role("button", name="Add a passkey").click()


def send_transfer(page: Page, amount: str, account: str = ACCOUNT) -> None:
    page.goto("/transfers/")
    page.get_by_label("Amount").fill(amount)
    page.get_by_label("Destination account").fill(account)
    page.get_by_role("button", name="Send transfer").click()
    expect(page).to_have_url(re.compile(r"/stepup/verify/\?"))


def passkeys(demo: DemoServer, username: str) -> list[tuple[Any, ...]]:
    return demo.query(
        "SELECT c.name, c.sign_count FROM django_otp_webauthn_webauthncredential c "
        "JOIN auth_user u ON u.id = c.user_id WHERE u.username = ? ORDER BY c.id",
        username,
    )


def transfers(demo: DemoServer, username: str, amount: int) -> int:
    rows = demo.query(
        "SELECT COUNT(*) FROM demo_transfer t JOIN auth_user u ON u.id = t.user_id "
        "WHERE u.username = ? AND t.amount = ?",
        username,
        amount,
    )
    return int(str(rows[0][0]))


def forget_passkeys(demo: DemoServer, username: str) -> None:
    with sqlite3.connect(demo.db_path, timeout=10) as db:
        db.execute(
            "DELETE FROM django_otp_webauthn_webauthncredential WHERE user_id = "
            "(SELECT id FROM auth_user WHERE username = ?)",
            (username,),
        )


# --- enrol, step up, and the one-shot transfer ---------------------------------------------


def test_alice_enrols_a_passkey_and_approves_a_large_transfer_with_it(
    page: Page, demo: DemoServer, shot: Screenshots
) -> None:
    virtual_authenticator(page)
    sign_in(page, "alice")
    try:
        _enrol_and_transfer(page, demo, shot)
    finally:
        forget_passkeys(demo, "alice")


def _enrol_and_transfer(page: Page, demo: DemoServer, shot: Screenshots) -> None:
    sent_before = transfers(demo, "alice", 5000)  # other browser tests send alice's transfers too
    # alice already has an authenticator app: adding a factor needs a step-up first, before the page.
    page.goto(REGISTER_PAGE)
    expect(page).to_have_url(re.compile(r"/stepup/verify/\?"))
    query = parse_qs(page.url.split("?", 1)[1])
    assert query["next"] == [REGISTER_PAGE]
    shot(page, "adding a passkey asks for a step-up")
    page.get_by_label("Code", exact=True).fill(demo.totp_code("alice"))
    page.get_by_role("button", name="Verify").click()
    expect(page.get_by_role("heading", name="Add a passkey")).to_be_visible()
    add_passkey(page, "Laptop")
    expect(page).to_have_url(TRANSFERS_PAGE)
    shot(page, "back on the transfers with a passkey")
    ((name, enrolled_count),) = passkeys(demo, "alice")
    assert name == "Laptop"

    # A transfer over 1,000: the verify page shows amount and account, and offers the passkey.
    send_transfer(page, "5000")
    authorizing = page.get_by_role("region", name="You are authorizing")
    expect(authorizing.locator("dl")).to_contain_text("€5,000.00")
    expect(authorizing.locator("dl")).to_contain_text(ACCOUNT)
    shot(page, "verify page offers the passkey")
    signed: list[dict[str, Any]] = []
    page.on("request", lambda r: _keep_credential(r, signed))
    page.get_by_role("button", name=PASSKEY_BUTTON).click()
    expect(page.get_by_role("heading", name="Confirm your request")).to_be_visible()
    assert len(signed) == 1 and passkeys(demo, "alice")[0][1] > enrolled_count, "the counter moved"
    shot(page, "verified with the passkey")

    # The approval is bound to that transfer: another amount on the confirmation is asked again.
    page.locator("input[type=hidden][name=amount]").evaluate("input => { input.value = '9000'; }")
    page.get_by_role("button", name="Submit").click()
    expect(page).to_have_url(re.compile(r"/stepup/verify/\?"))
    expect(page.get_by_role("region", name="You are authorizing").locator("dl")).to_contain_text("€9,000.00")
    assert transfers(demo, "alice", 9000) == 0
    shot(page, "a changed amount is asked again")

    # ... and the signature made for 5,000 is no good for 9,000, even in a ceremony begun for it.
    _replay(page, signed[0])
    expect(page.locator("#stepup-error, [data-stepup-webauthn-status]").first).to_contain_text(
        re.compile("not accepted|could not")
    )
    assert transfers(demo, "alice", 9000) == 0
    shot(page, "the old signature is refused for the other transfer")

    # The transfer shown is the one approved: it goes through, once.
    page.goto("/transfers/")
    page.get_by_label("Amount").fill("5000")
    page.get_by_label("Destination account").fill(ACCOUNT)
    page.get_by_role("button", name="Send transfer").click()
    expect(page.get_by_role("status")).to_contain_text("Sent €5,000.00")
    assert transfers(demo, "alice", 5000) == sent_before + 1
    send_transfer(page, "5000")  # and the grant is spent: the same transfer again asks again
    shot(page, "the same transfer again asks again")


def _keep_credential(request: Any, signed: list[dict[str, Any]]) -> None:
    if request.method == "POST" and request.url.endswith("/stepup/verify/"):
        form = parse_qs(request.post_data or "")
        if form.get("factor") == ["webauthn"]:
            signed.append(json.loads(form["credential"][0]))


def _replay(page: Page, credential: dict[str, Any]) -> None:
    """Begin a real ceremony for the page's challenge, then post an old credential to the verify page."""
    script = """async (credential) => {
        const form = document.querySelector("form[data-stepup-webauthn]");
        const csrf = form.querySelector("input[name=csrfmiddlewaretoken]").value;
        const challenge = form.querySelector("input[name=challenge]").value;
        const begun = await fetch(form.dataset.beginUrl, {
            method: "POST", credentials: "same-origin",
            headers: {"Content-Type": "application/json", "X-CSRFToken": csrf},
            body: JSON.stringify({challenge}),
        });
        if (begun.status !== 200) throw new Error("begin answered " + begun.status);
        form.querySelector("input[name=credential]").value = JSON.stringify(credential);
        form.submit();
    }"""
    with page.expect_navigation():
        page.evaluate(script, credential)


# --- refusals --------------------------------------------------------------------------------


def test_a_first_passkey_needs_no_step_up_and_one_without_user_verification_is_refused(
    page: Page, demo: DemoServer, users: tuple[str, ...], shot: Screenshots
) -> None:
    """erin's authenticator can't verify her: the browser won't make a passkey that needs it."""
    virtual_authenticator(page, user_verification=False)
    sign_in(page, users[0])
    page.goto(REGISTER_PAGE)
    add_passkey(page, "Key without a PIN")
    expect(page.locator("[data-stepup-webauthn-status]")).to_be_visible()
    shot(page, "a key that can't verify the user is not added")
    assert passkeys(demo, users[0]) == []


def test_an_assertion_without_user_verification_is_refused_by_the_server(
    page: Page, demo: DemoServer, users: tuple[str, ...], shot: Screenshots
) -> None:
    """frank's client lies: it asks his authenticator for no user verification. The server says no."""
    cdp, authenticator = virtual_authenticator(page)
    sign_in(page, users[1])
    page.goto(REGISTER_PAGE)
    add_passkey(page, "Phone")  # his first factor: no step-up needed
    expect(page).to_have_url(TRANSFERS_PAGE)
    assert [name for name, _ in passkeys(demo, users[1])] == ["Phone"]

    held = cdp.send("WebAuthn.getCredentials", {"authenticatorId": authenticator})
    assert held["credentials"], "the virtual authenticator holds the passkey"
    cdp.send("WebAuthn.setUserVerified", {"authenticatorId": authenticator, "isUserVerified": False})
    page.route("**/stepup/webauthn/begin/", _without_user_verification)

    send_transfer(page, "2500")
    page.get_by_role("button", name=PASSKEY_BUTTON).click()
    expect(page.locator("#stepup-error")).to_contain_text("not accepted")
    shot(page, "an assertion without user verification is refused")
    assert transfers(demo, users[1], 2500) == 0


def _without_user_verification(route: Route) -> None:
    response = route.fetch()
    body = response.json()
    body["publicKey"]["userVerification"] = "discouraged"
    route.fulfill(response=response, json=body)
