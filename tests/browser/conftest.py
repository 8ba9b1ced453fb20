"""Browser tests: Playwright driving Debian's Chromium against the demo on a loopback port.

Chromium is the system's (``apt-get install -y chromium``), never a browser
downloaded by ``playwright install``. When it (or the ``playwright`` package)
is missing the suite is skipped with the reason — except in CI
(``CI=true``), where a skipped browser suite would pass off an unrun check as
green, so it fails instead. ``.ci/run`` installs Chromium before ``make test``.

Screenshots of every step go to ``artifacts/screenshots/<test>/``; the
folder is named at the end of the pytest output.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from tests.browser import demo_server
from tests.browser.demo_server import DemoServer
from tests.services import skip_or_fail

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SCREENSHOTS = demo_server.ROOT / "artifacts" / "screenshots"
DESKTOP = {"width": 1280, "height": 800}
PHONE = {"width": 390, "height": 844}
TIMEOUT_MS = 10_000

_screenshots_taken: list[Path] = []


def unavailable(reason: str) -> None:
    """Skip locally; fail in CI, where the browser suite must run."""
    skip_or_fail(f"{reason}; install it with: apt-get install -y chromium", what="the browser suite")


@pytest.fixture(scope="session")
def browser() -> Iterator[Browser]:
    if not os.access(CHROMIUM, os.X_OK):
        unavailable(f"Chromium not found at {CHROMIUM}")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        unavailable("the playwright package is not installed (pip install -e '.[dev]')")
    with sync_playwright() as playwright:
        # Playwright gives every launch a fresh temporary user-data dir (its own
        # --user-data-dir) and deletes it on close: no profile is shared or kept.
        chromium = playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS
        )
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture(scope="session")
def demo(browser: Browser) -> Iterator[DemoServer]:
    """The demo on a free loopback port, with a database made for this run."""
    with demo_server.serving() as server:
        yield server


@contextlib.contextmanager
def new_page(browser: Browser, base_url: str) -> Iterator[Page]:
    """A tab in a new, empty browser context (no cookies) at desktop size; closed after."""
    context = browser.new_context(base_url=base_url, viewport=DESKTOP)
    context.set_default_timeout(TIMEOUT_MS)
    try:
        yield context.new_page()
    finally:
        context.close()


@pytest.fixture
def page(browser: Browser, demo: DemoServer) -> Iterator[Page]:
    """A new, empty browser context at desktop size on the demo, for one test."""
    with new_page(browser, demo.url) as tab:
        yield tab


class Screenshots:
    """Numbered full-page screenshots of one test's steps."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.count = 0
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)

    def __call__(self, page: Page, step: str) -> Path:
        self.count += 1
        name = re.sub(r"[^a-z0-9]+", "-", step.lower()).strip("-")
        path = self.folder / f"{self.count:02d}-{name}.png"
        page.screenshot(path=str(path), full_page=True)
        _screenshots_taken.append(path)
        return path


@pytest.fixture
def shot(request: pytest.FixtureRequest) -> Screenshots:
    """``shot(page, "what this step shows")`` saves a screenshot under artifacts/screenshots/<test>/."""
    test_name = re.sub(r"[^A-Za-z0-9_.-]+", "-", request.node.name).strip("-")
    return Screenshots(SCREENSHOTS / test_name)


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if _screenshots_taken:
        terminalreporter.write_sep("-", "browser screenshots")
        terminalreporter.write_line(
            f"{len(_screenshots_taken)} browser screenshots saved under {SCREENSHOTS}"
        )
