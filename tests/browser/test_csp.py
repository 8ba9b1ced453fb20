"""Every stepup and demo page under the demo's strict Content-Security-Policy, with no violation.

The demo sends ``default-src 'self'`` (project/csp.py) on every response. An
inline ``<script>``, ``<style>`` or ``style=""`` anywhere, or a resource from
another origin, makes Chromium report a violation: as a console message and as
a ``securitypolicyviolation`` event, both collected here for every page.
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Any

import pytest

from tests.browser.conftest import DESKTOP, TIMEOUT_MS, Screenshots
from tests.browser.demo_server import DemoServer

with contextlib.suppress(ImportError):  # without it, the browser fixture skips (in CI: fails)
    from playwright.sync_api import expect

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page

pytestmark = pytest.mark.browser

COLLECT_VIOLATIONS = """
window.__cspViolations = [];
document.addEventListener('securitypolicyviolation', (e) => {
  window.__cspViolations.push(`${e.violatedDirective} blocked ${e.blockedURI || 'inline'}`
    + ` at ${e.sourceFile || e.documentURI}:${e.lineNumber}`);
});
"""

DEMO_PAGES = [
    "/",
    "/billing/",
    "/billing/edit/",
    "/transfers/",
    "/reports/",
    "/team/",
    # stepup's own device pages, the demo's "Security" link
    "/stepup/devices/",
    "/stepup/devices/authenticator/",
    "/stepup/devices/backup-codes/",
    "/stepup/webauthn/register/",
]
ADMIN_PAGES = [
    "/admin/",
    "/admin/stepup/policy/",
    "/admin/stepup/policy/add/",
    "/admin/stepup/policy/1/change/",
    "/admin/stepup/policy/1/history/",
    "/admin/stepup/historicalpolicy/",
    "/admin/stepup/decisionlog/",
    "/admin/auth/user/",
]


class Watcher:
    """A browser tab that records CSP violations (console and events) page by page."""

    def __init__(self, page: Page) -> None:
        self.page = page
        self.console: list[str] = []
        self.problems: list[str] = []
        page.add_init_script(COLLECT_VIOLATIONS)
        page.on("console", self._console)

    def _console(self, message: Any) -> None:
        if "Content Security Policy" in message.text or "Content-Security-Policy" in message.text:
            self.console.append(message.text)

    def check(self, name: str, shot: Screenshots) -> None:
        """Record the current page's violations, and that its response carried the header."""
        self.page.wait_for_load_state("networkidle")
        shot(self.page, name)
        events = self.page.evaluate("() => window.__cspViolations || []")
        found = [*events, *self.console]
        self.console.clear()
        if found:
            self.problems.append(f"{name} ({self.page.url}): {found}")

    def visit(self, path: str, shot: Screenshots) -> None:
        response = self.page.goto(path)
        assert response is not None and response.status < 400, (path, response and response.status)
        policy = response.headers.get("content-security-policy", "")
        assert "default-src 'self'" in policy, (path, policy)
        assert "unsafe-inline" not in policy and "unsafe-eval" not in policy, (path, policy)
        self.check(path, shot)


def new_tab(browser: Browser, demo: DemoServer, locale: str = "en-US") -> Page:
    context = browser.new_context(base_url=demo.url, viewport=DESKTOP, locale=locale)
    context.set_default_timeout(TIMEOUT_MS)
    return context.new_page()


def sign_in(page: Page, username: str) -> None:
    page.goto("/accounts/login/")
    page.locator("#id_username").fill(username)
    page.locator("#id_password").fill(f"stepup-demo-{username}")
    page.locator("form [type=submit]").click()
    page.wait_for_load_state()
    expect(page.locator("#id_password")).to_have_count(0)


def submit_billing_form(page: Page, company: str) -> None:
    page.goto("/billing/edit/")
    page.locator("input[name=company_name]").fill(company)
    page.locator("main form.form [type=submit]").click()
    page.wait_for_load_state()


def step_up_and_confirm(page: Page, demo: DemoServer, watcher: Watcher, shot: Screenshots, lang: str) -> None:
    """alice edits billing details: the verify page, then the confirm page."""
    submit_billing_form(page, f"Acme CSP {lang}")
    page.wait_for_url("**/stepup/verify/**")
    watcher.check(f"stepup verify ({lang})", shot)
    radios = page.locator("input[type=radio][name=device]")
    if radios.count():
        page.locator("label", has_text="Phone").click()  # her authenticator app, not the backup codes
    page.locator("input[name=token]").fill(demo.totp_code("alice"))
    page.locator("main form [type=submit]").last.click()
    page.wait_for_load_state()
    assert "/stepup/verify/" in page.url and page.locator("form[action='/billing/edit/']").count() == 1
    watcher.check(f"stepup confirm ({lang})", shot)


def test_no_page_violates_the_content_security_policy(
    browser: Browser, demo: DemoServer, shot: Screenshots
) -> None:
    anonymous = new_tab(browser, demo)
    watcher = Watcher(anonymous)
    watcher.visit("/accounts/login/", shot)
    watcher.visit("/api/docs/", shot)
    expect(anonymous.locator(".swagger-ui .info")).to_be_visible()  # the split view's script ran

    alice = new_tab(browser, demo)
    watcher_alice = Watcher(alice)
    sign_in(alice, "alice")
    for path in DEMO_PAGES:
        watcher_alice.visit(path, shot)
    step_up_and_confirm(alice, demo, watcher_alice, shot, "en")

    german = new_tab(browser, demo, locale="de-DE")
    watcher_de = Watcher(german)
    sign_in(german, "alice")
    step_up_and_confirm(german, demo, watcher_de, shot, "de")

    carol = new_tab(browser, demo)  # an auditor: a deny policy refuses her changes (403 page)
    watcher_carol = Watcher(carol)
    sign_in(carol, "carol")
    submit_billing_form(carol, "Nope Ltd")
    expect(carol.locator("h1")).to_have_count(1)
    watcher_carol.check("403 denied by policy", shot)

    bob = new_tab(browser, demo)
    watcher_bob = Watcher(bob)
    sign_in(bob, "bob")
    for path in ADMIN_PAGES:
        watcher_bob.visit(path, shot)

    problems = [*watcher.problems, *watcher_alice.problems, *watcher_de.problems]
    problems += [*watcher_carol.problems, *watcher_bob.problems]
    assert not problems, "\n".join(problems)


def test_the_check_sees_a_violation(browser: Browser, demo: DemoServer, shot: Screenshots) -> None:
    """The watcher is not blind: an inline style injected into a demo page is reported."""
    page = new_tab(browser, demo)
    watcher = Watcher(page)
    watcher.visit("/accounts/login/", shot)
    page.evaluate(
        "() => { const s = document.createElement('style'); s.textContent = 'body{}';"
        " document.head.appendChild(s); }"
    )
    watcher.check("login with an injected inline style", shot)
    assert watcher.problems and "style-src" in watcher.problems[0]
