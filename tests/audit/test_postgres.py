"""The audit features on PostgreSQL: long change reasons, JSON filters, row locks, batched pruning, bulk sync.

SQLite ignores ``varchar`` lengths and ``SELECT … FOR UPDATE`` and has no JSON
``contains``; PostgreSQL enforces all three, so the history, admin, prune and
replay tests run there again (in a child pytest on a database of their own).
"""

from __future__ import annotations

import os

import pytest

from tests.services import child_pytest, skip_or_fail

pytestmark = pytest.mark.postgres

CHOSEN = [
    "tests/audit/test_history.py",
    "tests/commands/test_sync_history.py",
    "tests/audit/test_prune.py",
    "tests/audit/test_replay.py",
    "tests/audit/test_allowed_log.py",
    "tests/audit/test_query_budget.py",
    "tests/enforcement/test_grants_query.py",
    "tests/scale/test_incremental_reload.py",
    "tests/enforcement/test_grant_cache.py::test_without_notices_grants_are_kept_only_on_sqlite",
    "tests/audit/test_admin_stepup.py::test_every_write_path_works_after_a_fresh_step_up",
    "tests/audit/test_decision_log.py::test_the_admin_lists_filters_and_never_shows_a_secret",
    "tests/audit/test_decision_log.py::test_every_outcome_is_recorded_once_with_its_facts_and_no_secret",
]


def test_audit_suite_on_postgresql() -> None:
    if not os.environ.get("STEPUP_TEST_DATABASE_URL"):
        skip_or_fail(
            "STEPUP_TEST_DATABASE_URL is not set (e.g. postgres://postgres@127.0.0.1:5432/test)",
            what="the audit suite on PostgreSQL",
        )
    result = child_pytest("tests.audit.pg_settings", CHOSEN, timeout=300)
    assert result.returncode == 0, result.stdout[-5000:] + result.stderr[-2000:]
    assert " passed" in result.stdout and "skipped" not in result.stdout, result.stdout[-2000:]
