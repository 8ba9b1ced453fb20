"""The store, sync, single-request grants and throttling again on MariaDB or MySQL.

What differs there from SQLite and PostgreSQL: varchar columns compare without
regard to case (and trailing spaces), ``SELECT … FOR UPDATE`` has no ``OF``,
JSON is text with functions of its own, and a server's own isolation level is
REPEATABLE READ, whose plain reads see the snapshot of a transaction's first
read. So the chosen tests run twice in a child pytest (``--ds=tests.mysql.settings``):
under Django's default READ COMMITTED, and under REPEATABLE READ, which a site
gets with ``OPTIONS["isolation_level"]``.

Each run creates its own database from ``STEPUP_TEST_MYSQL_URL`` and drops it
afterwards; one left behind by a killed run is dropped by the next.
"""

from __future__ import annotations

import os
import secrets
from typing import Any

import pytest

from tests.scale.harness import is_stale
from tests.services import child_pytest, skip_or_fail

pytestmark = pytest.mark.mysql

URL_ENV = "STEPUP_TEST_MYSQL_URL"
PREFIX = "test_stepup_mysql_"
CHOSEN = [
    # the policy store and sync
    "tests/scale/test_store.py",
    "tests/scale/test_incremental_reload.py",
    "tests/security/test_policy_store.py",
    "tests/commands/test_stepup_command.py",
    "tests/commands/test_sync_history.py",
    "tests/audit/test_history.py",
    # single-request grants, challenges and backup codes
    "tests/enforcement/test_grants.py",
    "tests/enforcement/test_grants_query.py",
    "tests/audit/test_allowed_log.py",
    "tests/security/test_bruteforce.py",
    "tests/api/test_grant_subjects.py",
    "tests/security/test_session.py::test_a_challenge_id_in_other_letter_case_is_not_that_challenge",
    # throttling
    "tests/verification/test_throttling.py",
    # JSON filters of the decision log
    "tests/audit/test_decision_log.py::test_the_admin_lists_filters_and_never_shows_a_secret",
]


def admin_connection(url: str) -> Any:
    import dj_database_url
    import pymysql

    params = dj_database_url.parse(url)
    return pymysql.connect(
        host=params["HOST"] or "127.0.0.1",
        port=int(params["PORT"] or 3306),
        user=params["USER"],
        password=params["PASSWORD"] or "",
        autocommit=True,
    )


def drop_databases(url: str, *, only: str | None = None) -> None:
    """Drop ``only``, or else every database of an earlier run whose process is gone."""
    with admin_connection(url) as conn, conn.cursor() as cursor:
        cursor.execute("SHOW DATABASES")
        names = [row[0] for row in cursor.fetchall()]
        for name in names:
            if name == only or (only is None and is_stale(name, PREFIX, "_")):
                cursor.execute(f"DROP DATABASE IF EXISTS `{name}`")


@pytest.mark.parametrize("isolation", ["read committed", "repeatable read"])
def test_chosen_suites_on_mysql(isolation: str) -> None:
    url = os.environ.get(URL_ENV)
    if not url:
        skip_or_fail(
            f"{URL_ENV} is not set (e.g. mysql://root@127.0.0.1:3306/test)", what="the suite on MariaDB/MySQL"
        )
    try:
        import pymysql  # noqa: F401
    except ImportError:
        skip_or_fail("PyMySQL is not installed (pip install -e '.[dev]')", what="the suite on MariaDB/MySQL")
    drop_databases(url)
    name = f"stepup_mysql_{os.getpid()}_{secrets.token_hex(3)}"  # Django's test database: test_<name>
    env = {**os.environ, "STEPUP_TEST_MYSQL_NAME": name, "STEPUP_TEST_MYSQL_ISOLATION": isolation}
    try:
        result = child_pytest("tests.mysql.settings", CHOSEN, env=env)
    finally:
        drop_databases(url, only=f"test_{name}")
    assert result.returncode == 0, result.stdout[-5000:] + result.stderr[-2000:]
    assert " passed" in result.stdout and "skipped" not in result.stdout, result.stdout[-2000:]
