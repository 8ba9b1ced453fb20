"""The admin at a laptop's width: the decision log shows every column, and policy history
names who changed what — a sync's file and commit rather than "None" (issue 17, polish)."""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING

import pytest

from tests.browser.conftest import Screenshots
from tests.browser.demo_server import DemoServer

with contextlib.suppress(ImportError):
    from playwright.sync_api import expect

if TYPE_CHECKING:
    from playwright.sync_api import Page

pytestmark = pytest.mark.browser


def admin_sign_in(page: Page, username: str) -> None:
    page.goto("/admin/")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(f"stepup-demo-{username}")
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_role("heading", name="Site administration")).to_be_visible()


def test_the_decision_log_shows_every_column_at_1280(page: Page, demo: DemoServer, shot: Screenshots) -> None:
    admin_sign_in(page, "carol")
    page.goto("/reports/invoices.csv?rows=50000")  # a challenge: a row in the decision log
    page.goto("/admin/stepup/decisionlog/")
    table = page.locator("#result_list")
    expect(table).to_be_visible()
    widths = table.evaluate("t => ({table: t.scrollWidth, box: t.closest('.results').clientWidth})")
    shot(page, "decision log at 1280")
    assert widths["table"] <= widths["box"], widths  # no column cut off behind a scroll bar


def test_policy_history_says_a_sync_made_the_change_not_none(
    page: Page, demo: DemoServer, shot: Screenshots
) -> None:
    admin_sign_in(page, "carol")
    page.goto("/admin/stepup/policy/")
    page.get_by_role("link", name="billing-update", exact=True).click()
    page.get_by_role("link", name="History").first.click()
    history = page.locator("#change-history")
    expect(history).to_contain_text("stepup sync of fixtures/stepup/policies.yaml")
    cells = history.locator("tbody td").all_inner_texts()
    assert "None" not in [c.strip() for c in cells]
    shot(page, "policy history names the sync")
