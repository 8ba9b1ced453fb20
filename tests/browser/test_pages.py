"""Every page of the demo at desktop and phone widths, and a step-up done with the keyboard alone.

Each page is screenshotted (for a human to look at) and checked for what a
machine can check: nothing wider than the screen (no sideways scrolling on a
phone), every form control with a label, one ``h1``.
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING

import pytest

from tests.browser.conftest import DESKTOP, PHONE, TIMEOUT_MS, Screenshots
from tests.browser.demo_server import DemoServer

with contextlib.suppress(ImportError):  # without it, the browser fixture skips (in CI: fails)
    from playwright.sync_api import expect

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page

pytestmark = pytest.mark.browser

PAGES = [
    ("home", "/"),
    ("billing", "/billing/"),
    ("billing form", "/billing/edit/"),
    ("transfers", "/transfers/"),
    ("reports", "/reports/"),
    ("team access", "/team/"),
    ("security", "/stepup/devices/"),
]

# What a page must not have: a control nobody can name, content wider than the window.
PROBLEMS_JS = """() => {
  const problems = [];
  const root = document.documentElement;
  if (root.scrollWidth > window.innerWidth + 1) {
    const wide = [...document.querySelectorAll('body *')]
      .filter(e => e.getBoundingClientRect().right > window.innerWidth + 1)
      .map(e => e.tagName.toLowerCase() + (e.className ? '.' + String(e.className).split(' ')[0] : ''));
    problems.push(`page is ${root.scrollWidth}px wide in a ${window.innerWidth}px window: ${wide.slice(-3)}`);
  }
  for (const el of document.querySelectorAll('input, select, textarea, button')) {
    if (el.type === 'hidden') continue;
    const named = (el.labels && el.labels.length) || el.getAttribute('aria-label')
      || el.getAttribute('aria-labelledby') || (el.tagName === 'BUTTON' && el.textContent.trim());
    if (!named) problems.push(`unlabelled ${el.tagName.toLowerCase()} ${el.name || el.id}`);
  }
  const h1s = document.querySelectorAll('h1').length;
  if (h1s !== 1) problems.push(`${h1s} h1 headings`);
  return problems;
}"""


def new_page(browser: Browser, demo: DemoServer, viewport: dict[str, int]) -> Page:
    phone = viewport == PHONE
    context = browser.new_context(base_url=demo.url, viewport=viewport, is_mobile=phone, has_touch=phone)
    context.set_default_timeout(TIMEOUT_MS)
    return context.new_page()


def sign_in(page: Page, username: str) -> None:
    page.goto("/accounts/login/")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(f"stepup-demo-{username}")
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("heading", name=f"Welcome, {username}")).to_be_visible()


def check(page: Page, shot: Screenshots, name: str) -> list[str]:
    shot(page, name)
    return [f"{name}: {problem}" for problem in page.evaluate(PROBLEMS_JS)]


@pytest.mark.parametrize("viewport", [DESKTOP, PHONE], ids=["desktop", "phone"])
def test_every_page_fits_the_screen_and_labels_its_controls(
    browser: Browser, demo: DemoServer, viewport: dict[str, int], shot: Screenshots
) -> None:
    page = new_page(browser, demo, viewport)
    try:
        problems: list[str] = []
        page.goto("/accounts/login/")
        problems += check(page, shot, "sign in")
        sign_in(page, "alice")
        for name, path in PAGES:
            response = page.goto(path)
            assert response is not None and response.status == 200, (path, response)
            problems += check(page, shot, name)

        # The verification page, as a billing change reaches it.
        page.goto("/billing/edit/")
        page.get_by_role("button", name="Save details").click()
        expect(page.get_by_role("heading", name="Confirm it's you")).to_be_visible()
        code = page.get_by_label("Code", exact=True)
        expect(code).to_be_focused()  # autofocus: type the code straight away
        expect(code).to_be_in_viewport()
        problems += check(page, shot, "verify")

        # A denied action: auditors never change billing details.
        page.context.clear_cookies()
        sign_in(page, "carol")
        page.goto("/billing/edit/")
        page.get_by_role("button", name="Save details").click()
        expect(page.get_by_role("heading", name="You can't do that")).to_be_visible()
        problems += check(page, shot, "denied")
        assert problems == []
    finally:
        page.context.close()


def test_step_up_with_the_keyboard_alone(page: Page, demo: DemoServer, shot: Screenshots) -> None:
    page.goto("/accounts/login/")
    expect(page.get_by_label("Username")).to_be_focused()
    page.keyboard.type("carol")
    page.keyboard.press("Tab")
    page.keyboard.type("stepup-demo-carol")
    page.keyboard.press("Enter")
    expect(page.get_by_role("heading", name="Welcome, carol")).to_be_visible()

    # The first Tab on a page offers to skip the navigation.
    page.goto("/reports/")
    page.keyboard.press("Tab")
    expect(page.get_by_role("link", name="Skip to content")).to_be_focused()
    page.keyboard.press("Enter")
    expect(page.locator("main")).to_be_focused()

    # carol audits: a large export needs a second factor from the last 15 minutes.
    page.get_by_label("Rows").focus()
    page.keyboard.press("Control+A")
    page.keyboard.type("50000")
    shot(page, "large export typed")
    page.keyboard.press("Enter")
    expect(page.get_by_role("heading", name="Confirm it's you")).to_be_visible()
    expect(page.get_by_role("region", name="You are authorizing")).to_contain_text("50,000")
    expect(page.get_by_label("Code", exact=True)).to_be_focused()
    shot(page, "verify page focused on the code")
    page.keyboard.type(demo.totp_code("carol"))
    with page.expect_download() as download:
        page.keyboard.press("Enter")
    assert download.value.suggested_filename == "acme-invoices-50000.csv"
    expect(page.get_by_role("heading", name="Verified")).to_be_visible()  # not left on the verify page
    with open(download.value.path()) as csv:
        lines = csv.read().splitlines()
    assert len(lines) == 50001, "a header and 50,000 rows"
