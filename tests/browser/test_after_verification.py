"""After verification, in Chromium: no dead ends (issue 17 items 1-3).

1. A refused POST that can't be presented again (a file upload) sends the
   user back to the page holding the form, told to submit it again — never a
   GET of the POST-only view (a 405). The library's test views
   (tests/verification/outcome_urls.py) served by ``runserver`` in a
   subprocess (tests/browser/library_settings.py), as the demo is.
2. A download: after verifying, the page says it is done and the file
   arrives; the verify page with the spent code is gone (the demo's report).
3. Reopening the verify URL after success says "already confirmed"; signing
   in again after the session ended mid-challenge says the request expired
   and links to where to start again (the demo).
"""

from __future__ import annotations

import contextlib
import os
import re
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from django_otp.oath import TOTP

from tests.browser.conftest import DESKTOP, TIMEOUT_MS, Screenshots
from tests.browser.demo_server import ROOT, DemoServer, free_port
from tests.browser.test_flows import enter_code, on_verify_page

with contextlib.suppress(ImportError):
    from playwright.sync_api import expect

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page

pytestmark = pytest.mark.browser


def sign_in_here(page: Page, username: str) -> None:
    """Fill in the login page the browser is on (it carries ``next``)."""
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(f"stepup-demo-{username}")
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_load_state()


# --- 1. the library's POST-only view, served like the demo ------------------------------------------

LIBRARY_USER = "uma"
LIBRARY_KEY = "3132333435363738393031323334353637383930"  # the authenticator's secret, hex
LIBRARY_SETUP = f"""
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django_otp.plugins.otp_totp.models import TOTPDevice
from stepup.models import Policy
call_command("migrate", interactive=False, verbosity=0)
user = get_user_model().objects.create_user({LIBRARY_USER!r}, password="stepup-demo-{LIBRARY_USER}")
TOTPDevice.objects.create(user=user, name="Phone", key={LIBRARY_KEY!r}, confirmed=True)
Policy.objects.create(policy_id="uploads", description="Uploading a file needs a second factor.",
                      actions=["files.upload"], decision="step_up", max_age=300)
"""


@pytest.fixture
def library_site(browser: Browser, tmp_path: Path) -> Iterator[str]:
    """The test views on a loopback port, on a SQLite file of this test's own."""
    env = {
        **{k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL", "PYTHONPATH")},
        "DJANGO_SETTINGS_MODULE": "tests.browser.library_settings",
        "LIBRARY_SQLITE_PATH": str(tmp_path / "library.sqlite3"),
        "PYTHONUNBUFFERED": "1",
    }
    command = [sys.executable, "manage.py"]
    subprocess.run([*command, "shell", "-c", LIBRARY_SETUP], cwd=ROOT, env=env, check=True, timeout=120)
    port = free_port()
    log = (tmp_path / "server.log").open("w")
    server = subprocess.Popen(
        [*command, "runserver", "--noreload", "--nothreading", f"127.0.0.1:{port}"],
        cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_for(url, server)
        yield url
    finally:
        server.terminate()
        server.wait(timeout=10)
        log.close()


def _wait_for(url: str, server: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        assert server.poll() is None, "the test server exited early"
        try:
            with urllib.request.urlopen(f"{url}/accounts/login/", timeout=2):
                return
        except urllib.error.HTTPError:
            return  # it answers
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            time.sleep(0.1)
    raise RuntimeError("the test server did not answer within 30 s")


@pytest.fixture
def library_page(browser: Browser, library_site: str) -> Iterator[Page]:
    context = browser.new_context(base_url=library_site, viewport=DESKTOP)
    context.set_default_timeout(TIMEOUT_MS)
    try:
        yield context.new_page()
    finally:
        context.close()


def test_a_refused_upload_comes_back_to_its_form_not_a_405(
    library_page: Page, tmp_path: Path, shot: Screenshots
) -> None:
    page = library_page
    page.goto("/accounts/login/?next=/files/")
    page.locator("#id_username").fill(LIBRARY_USER)
    page.locator("#id_password").fill(f"stepup-demo-{LIBRARY_USER}")
    page.locator("#id_password").press("Enter")
    page.wait_for_url(re.compile(r"/files/$"))
    upload = tmp_path / "q3.pdf"
    upload.write_bytes(b"%PDF-1.4 quarterly figures")
    page.locator("#title").fill("Q3")
    page.locator("#file").set_input_files(str(upload))
    page.get_by_role("button", name="Upload").click()
    on_verify_page(page)
    shot(page, "verify for the upload")
    response = enter_code(page, f"{TOTP(bytes.fromhex(LIBRARY_KEY)).token():06d}")
    assert response is not None and response.status != 405
    assert page.url.endswith("/files/"), page.url  # not the POST-only /upload/
    expect(page.locator("p.message")).to_contain_text("Fill it in and submit it again.")
    shot(page, "back on the form page, told to submit again")

    page.locator("#title").fill("Q3")
    page.locator("#file").set_input_files(str(upload))
    page.get_by_role("button", name="Upload").click()
    expect(page.get_by_text("uploaded q3.pdf")).to_be_visible()  # the view ran, once, with the file


# --- 2 and 3. the demo ---------------------------------------------------------------------------


def test_a_report_download_lands_on_a_done_page(page: Page, demo: DemoServer, shot: Screenshots) -> None:
    page.goto("/accounts/login/?next=/reports/")
    sign_in_here(page, "alice")
    page.get_by_role("link", name="50,000 rows").click()
    on_verify_page(page)
    expect(page.get_by_role("region", name="You are authorizing")).to_contain_text("50,000")
    page.get_by_label("Code", exact=True).fill(demo.totp_code("alice"))
    with page.expect_download() as download:
        page.get_by_role("button", name="Verify").click()
    assert download.value.suggested_filename == "acme-invoices-50000.csv"
    expect(page.get_by_role("heading", name="Verified")).to_be_visible()
    expect(page.get_by_role("status").first).to_contain_text("Your download starts now.")
    expect(page.get_by_label("Code", exact=True)).to_have_count(0)  # no spent code left to press again
    shot(page, "download done page")

    # Reloaded (or Verify pressed again in another tab): already confirmed, no failure, no new download.
    page.reload()
    expect(page.get_by_role("heading", name="Already confirmed")).to_be_visible()
    failures = demo.query(
        "SELECT COUNT(*) FROM stepup_decisionlog l JOIN auth_user u ON u.id = l.user_id "
        "WHERE u.username = 'alice' AND l.event = 'failed'"
    )
    assert failures == [(0,)]
    page.get_by_role("link", name="Back to where you were").click()
    expect(page).to_have_url(re.compile(r"/reports/$"))


def test_reopening_the_verify_url_after_success_says_already_confirmed(
    page: Page, demo: DemoServer, shot: Screenshots
) -> None:
    page.goto("/accounts/login/?next=/billing/edit/")
    sign_in_here(page, "alice")
    page.get_by_label("Company name").fill("Acme Rockets Two")
    page.get_by_role("button", name="Save details").click()
    on_verify_page(page)
    verify_url = page.url
    enter_code(page, demo.totp_code("alice"))
    expect(page.get_by_role("heading", name="Confirm your request")).to_be_visible()
    expect(page.get_by_text("Acme Rockets Two")).to_be_visible()
    # Not submitted: the demo's data stays as the other browser tests expect it.

    page.goto(verify_url)
    expect(page.get_by_role("heading", name="Already confirmed")).to_be_visible()
    expect(page.get_by_label("Code", exact=True)).to_have_count(0)
    shot(page, "the verify url again: already confirmed")
    page.get_by_role("link", name="Back to where you were").click()
    expect(page).to_have_url(re.compile(r"/billing/edit/$"))


def test_signing_in_again_after_the_session_ended_says_the_request_expired(
    page: Page, demo: DemoServer, shot: Screenshots
) -> None:
    page.goto("/accounts/login/?next=/team/")
    sign_in_here(page, "bob")
    page.get_by_role("button", name=re.compile(r"Grant auditor to dave")).click()
    on_verify_page(page)
    expect(page.get_by_role("region", name="You are authorizing")).to_contain_text(
        "Grant: add dave to auditor"
    )
    shot(page, "verify for a team change")

    page.context.clear_cookies()  # the session ends mid-challenge
    page.reload()
    expect(page.get_by_label("Username")).to_be_visible()
    sign_in_here(page, "bob")
    expect(page.get_by_role("heading", name="This request expired")).to_be_visible()
    expect(page.get_by_label("Code", exact=True)).to_have_count(0)
    shot(page, "signed in again: the request expired")
    page.get_by_role("link", name="Start again").click()
    expect(page).to_have_url(re.compile(r"/team/$"))  # the form's page, not the POST-only action
    expect(page.get_by_role("heading", name="Team access")).to_be_visible()


# --- polish: wide tables on a phone ---------------------------------------------------------------


def test_a_wide_table_on_a_phone_shows_that_it_scrolls(
    page: Page, demo: DemoServer, shot: Screenshots
) -> None:
    from tests.browser.conftest import PHONE

    page.goto("/accounts/login/?next=/team/")
    sign_in_here(page, "bob")
    page.set_viewport_size(PHONE)
    wrap = page.locator(".table-wrap").first
    expect(wrap).to_be_visible()
    facts = wrap.evaluate(
        """w => ({
            overflows: w.scrollWidth > w.clientWidth,
            cue: getComputedStyle(w).backgroundImage,
            focusable: w.tabIndex === 0,
        })"""
    )
    assert facts["overflows"], "the table fits at 390 px: this test no longer shows the cue"
    assert facts["cue"].count("gradient") == 4 and facts["focusable"], facts
    shot(page, "wide table on a phone: shadow at the right edge")
    wrap.evaluate("w => { w.scrollLeft = w.scrollWidth; }")
    last = wrap.locator("thead th").last
    box, frame = last.bounding_box(), wrap.bounding_box()
    assert box is not None and frame is not None
    assert box["x"] + box["width"] <= frame["x"] + frame["width"] + 1  # the last column can be reached
    shot(page, "scrolled to the last column")
