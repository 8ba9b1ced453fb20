"""Allowed decisions reach the log sampled, in batches, after the response, and never at a refusal's cost."""

from __future__ import annotations

import logging
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth.models import Group
from django.core.management import call_command
from django.db import DatabaseError, connection
from django.db.backends.utils import CursorWrapper
from django.test import Client
from django.test.utils import CaptureQueriesContext

from stepup import allowed_log
from stepup.models import DecisionLog
from stepup.testing import flush_decision_log
from tests.audit.conftest import POLICY_FILE

pytestmark = pytest.mark.django_db

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def log_settings(settings: Any) -> Any:
    def configure(**values: Any) -> None:
        settings.STEPUP = {"POLICY_FILES": [POLICY_FILE], "RELOAD_INTERVAL": 3600, **values}

    return configure


@pytest.fixture
def transfers(policy: Any) -> None:
    policy("transfers", actions=["payments.transfer"])


def allowed_rows() -> list[DecisionLog]:
    return list(DecisionLog.objects.filter(event="allowed").order_by("created_at", "pk"))


def test_no_write_and_no_groups_query_while_the_request_waits(
    logged_in: Client, user: Any, transfers: None, stepup_verified: Any, log_settings: Any
) -> None:
    log_settings(DECISION_LOG_BATCH_SIZE=100, DECISION_LOG_FLUSH_INTERVAL=3600)
    user.groups.add(Group.objects.create(name="finance"))
    with stepup_verified(logged_in, user, factor="static"):
        logged_in.post("/transfer/", {"amount": "5"})  # warm: the policy set is loaded
        with CaptureQueriesContext(connection) as queries:
            assert logged_in.post("/transfer/", {"amount": "6"}).status_code == 200
    sql = [q["sql"] for q in queries.captured_queries]
    assert not [s for s in sql if "stepup_decisionlog" in s], sql
    assert not [s for s in sql if "auth_group" in s], sql
    assert allowed_log.waiting() == 2 and not allowed_rows()
    with CaptureQueriesContext(connection) as queries:
        assert flush_decision_log() == 2
    inserts = [q for q in queries.captured_queries if "stepup_decisionlog" in q["sql"]]  # "2 times: INSERT …"
    groups = [q for q in queries.captured_queries if "auth_group" in q["sql"]]
    assert len(inserts) == 1 and len(groups) == 1  # one statement each, for the whole batch
    rows = allowed_rows()
    assert [r.attrs["amount"] for r in rows] == ["5", "6"]
    assert all(r.roles == ["authenticated", "finance"] for r in rows)
    assert rows[0].created_at < rows[1].created_at  # the time of each decision, not of the write


def test_the_batch_is_written_after_the_response_that_fills_it(
    logged_in: Client, user: Any, transfers: None, stepup_verified: Any, log_settings: Any
) -> None:
    log_settings(DECISION_LOG_BATCH_SIZE=3, DECISION_LOG_FLUSH_INTERVAL=3600)
    with stepup_verified(logged_in, user, factor="static"):
        for amount in ("1", "2"):
            assert logged_in.post("/transfer/", {"amount": amount}).status_code == 200
        assert not allowed_rows() and allowed_log.waiting() == 2
        assert logged_in.post("/transfer/", {"amount": "3"}).status_code == 200
    assert [r.attrs["amount"] for r in allowed_rows()] == ["1", "2", "3"]
    assert allowed_log.waiting() == 0


def test_a_row_waits_no_longer_than_the_flush_interval(
    logged_in: Client, user: Any, transfers: None, stepup_verified: Any, log_settings: Any
) -> None:
    log_settings(DECISION_LOG_BATCH_SIZE=1000, DECISION_LOG_FLUSH_INTERVAL=0)
    with stepup_verified(logged_in, user, factor="static"):
        assert logged_in.post("/transfer/", {"amount": "1"}).status_code == 200
    assert len(allowed_rows()) == 1


def test_roles_a_policy_loaded_are_kept_without_another_query(
    logged_in: Client, user: Any, policy: Any, stepup_verified: Any
) -> None:
    user.groups.add(Group.objects.create(name="finance"))
    policy("transfers", actions=["payments.transfer"], when={"roles": {"any_of": ["finance"]}})
    with stepup_verified(logged_in, user, factor="static"):
        assert logged_in.post("/transfer/", {"amount": "1"}).status_code == 200
    (waiting,) = allowed_log._buffer.rows
    assert waiting[1] is None and waiting[2] == ("authenticated", "finance")  # no group names to add
    with CaptureQueriesContext(connection) as queries:
        flush_decision_log()
    assert not [q for q in queries.captured_queries if "auth_group" in q["sql"]]
    assert allowed_rows()[0].roles == ["authenticated", "finance"]


def test_sampling_skips_allowed_decisions_only(
    logged_in: Client, user: Any, policy: Any, stepup_verified: Any, log_settings: Any
) -> None:
    log_settings(DECISION_LOG_ALLOWED=0)
    policy("transfers", actions=["payments.transfer"])
    policy("refunds", actions=["payments.refund"], decision="deny")
    policy("reports-shadow", actions=["reports.view"], decision="deny", mode="shadow")
    assert logged_in.post("/transfer/", {"amount": "1"}).status_code == 302  # challenged
    with stepup_verified(logged_in, user, factor="static"):
        assert logged_in.post("/transfer/", {"amount": "2"}).status_code == 200
        assert logged_in.post("/refund/").status_code == 403
        assert logged_in.get("/report/").status_code == 200
    flush_decision_log()
    events = sorted(DecisionLog.objects.values_list("event", flat=True))
    assert events == ["challenged", "denied", "shadow"]


def test_waiting_rows_are_nothing_the_garbage_collector_keeps_walking(
    logged_in: Client, user: Any, transfers: None, stepup_verified: Any
) -> None:
    """A full buffer survives into the collector's oldest generation: rows holding dicts or the
    request's user made every full collection walk them (3x a worker's time in the collector)."""
    import gc

    user.groups.add(Group.objects.create(name="finance"))
    with stepup_verified(logged_in, user, factor="static"):
        for amount in ("1", "2"):
            assert logged_in.post("/transfer/", {"amount": amount}).status_code == 200
    gc.collect()
    gc.collect()  # a tuple is untracked once its items are: at the latest, one collection after them
    rows = allowed_log._buffer.rows
    assert len(rows) == 2 and not [row for row in rows if gc.is_tracked(row)], rows
    assert rows[0][1] == user.pk  # its group names are still to come, by the user's key
    flush_decision_log()
    assert [r.roles for r in allowed_rows()] == [["authenticated", "finance"]] * 2


def test_group_names_of_a_user_model_with_groups_of_its_own_making(user: Any, monkeypatch: Any) -> None:
    """Without a ``groups`` many-to-many field each user is asked (one query for the users)."""
    user.groups.add(Group.objects.create(name="finance"))
    monkeypatch.setattr(allowed_log, "_groups_field", lambda model: None)
    assert allowed_log.group_names({user.pk, -1}) == {user.pk: {"finance"}}


def test_a_sampled_row_says_at_what_rate(
    logged_in: Client, user: Any, transfers: None, stepup_verified: Any, log_settings: Any, monkeypatch: Any
) -> None:
    log_settings(DECISION_LOG_ALLOWED=0.25)
    draws = iter([0.1, 0.9])  # the first decision is sampled, the second is not
    monkeypatch.setattr(allowed_log, "_draw", lambda: next(draws))
    with stepup_verified(logged_in, user, factor="static"):
        assert logged_in.post("/transfer/", {"amount": "1"}).status_code == 200
        assert logged_in.post("/transfer/", {"amount": "2"}).status_code == 200
    flush_decision_log()
    (row,) = allowed_rows()
    assert (row.attrs["amount"], row.facts["sample_rate"]) == ("1", 0.25)


def test_a_written_row_holds_what_the_orm_would_have_written(
    logged_in: Client, user: Any, transfers: None, stepup_verified: Any, monkeypatch: Any
) -> None:
    """The batch's own statement (a COPY on PostgreSQL) against a save() of the same fields:
    every column alike, read back, with what a COPY's text format must escape."""
    from django.forms.models import model_to_dict

    assert (allowed_log._statement(connection.alias).copy is not None) == (connection.vendor == "postgresql")
    agent = 'ü\t\\N \\. "x",y\r\n\\'  # tab, \N (COPY's NULL), \., quotes, comma, newline, backslash
    added: list[dict[str, Any]] = []
    add = allowed_log.add
    monkeypatch.setattr(allowed_log, "add", lambda row, **kw: (added.append(dict(row)), add(row, **kw)))
    with stepup_verified(logged_in, user, factor="static"):
        response = logged_in.post(
            "/transfer/", {"amount": "12.50"}, REMOTE_ADDR="2001:db8::7", HTTP_USER_AGENT=agent
        )
        assert response.status_code == 200
    (fields,) = added
    assert flush_decision_log() == 1
    (written,) = allowed_rows()
    saved = DecisionLog.objects.create(**fields)
    saved.refresh_from_db()
    assert model_to_dict(written, exclude=["id"]) == model_to_dict(saved, exclude=["id"])
    assert written.created_at == saved.created_at and written.user_id == user.pk
    assert (
        written.facts["verified"]
        and written.attrs["amount"] == "12.50"
        and written.client_ip == "2001:db8::7"
        and written.user_agent == agent
    )


def test_a_database_error_loses_the_batch_loudly_and_breaks_nothing(
    logged_in: Client, user: Any, transfers: None, stepup_verified: Any, monkeypatch: Any, caplog: Any
) -> None:
    with stepup_verified(logged_in, user, factor="static"):
        assert logged_in.post("/transfer/", {"amount": "1"}).status_code == 200

    def broken(*args: Any, **kwargs: Any) -> None:
        raise DatabaseError("disk full")

    monkeypatch.setattr(CursorWrapper, "executemany", broken)
    if allowed_log._statement(connection.alias).copy is not None:  # PostgreSQL: psycopg's own error
        import psycopg

        def broken_copy(*args: Any, **kwargs: Any) -> None:
            raise psycopg.errors.DiskFull("disk full")

        monkeypatch.setattr(psycopg.Cursor, "copy", broken_copy)
    with caplog.at_level(logging.ERROR, logger="stepup"):
        assert flush_decision_log() == 0
    assert "could not store 1 stepup allowed-decision rows" in caplog.text
    assert allowed_log.waiting() == 0


def test_a_forked_child_drops_its_parents_rows(
    logged_in: Client, user: Any, transfers: None, stepup_verified: Any
) -> None:
    with stepup_verified(logged_in, user, factor="static"):
        assert logged_in.post("/transfer/", {"amount": "1"}).status_code == 200
    parent = allowed_log._buffer
    allowed_log._drop_in_child()
    try:
        assert allowed_log.waiting() == 0
    finally:
        allowed_log._buffer = parent
    assert allowed_log.waiting() == 1


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("DECISION_LOG_ALLOWED", 1.5),
        ("DECISION_LOG_ALLOWED", "all"),
        ("DECISION_LOG_BATCH_SIZE", 0),
        ("DECISION_LOG_BATCH_SIZE", 2.5),
        ("DECISION_LOG_FLUSH_INTERVAL", -1),
        ("DECISION_LOG_FLUSH_INTERVAL", True),
    ],
)
def test_bad_log_settings_are_reported(settings: Any, key: str, value: Any) -> None:
    from django.core.management.base import SystemCheckError

    settings.STEPUP = {key: value}
    with pytest.raises(SystemCheckError, match=r"stepup\.E013"):
        call_command("check")


EXIT_SCRIPT = textwrap.dedent(
    """
    import os, sys
    sys.path.insert(0, {root!r})
    os.environ["BENCH_DATABASE_URL"] = "sqlite:///" + {database!r}
    os.environ["DJANGO_SETTINGS_MODULE"] = "bench.settings"
    import django
    django.setup()
    from django.core.management import call_command
    call_command("migrate", verbosity=0)
    from django.contrib.auth import get_user_model
    from django.test import RequestFactory
    from stepup import allowed_log
    from stepup.audit import record_event
    assert allowed_log.__file__.startswith({root!r}), allowed_log.__file__
    user = get_user_model().objects.create_user("exiting")
    request = RequestFactory().post("/bench/protected/")
    request.user = user
    for n in range(3):
        record_event(request, "allowed", action="bench.protected", attrs={{"n": n}})
    assert allowed_log.waiting() == 3
    """
)


def test_a_normal_exit_writes_the_buffer(tmp_path: Path) -> None:
    database = str(tmp_path / "exit.sqlite3")
    script = EXIT_SCRIPT.format(root=str(ROOT), database=database)
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr[-3000:]
    import sqlite3

    with sqlite3.connect(database) as db:
        rows = db.execute("SELECT event, attrs FROM stepup_decisionlog ORDER BY created_at").fetchall()
    assert rows == [("allowed", '{"n": "0"}'), ("allowed", '{"n": "1"}'), ("allowed", '{"n": "2"}')]
