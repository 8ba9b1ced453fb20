"""Allowed decisions in the decision log: sampled, buffered per process, written in batches after responses.

An allowed decision is what a protected route sees most, and writing its row
while the request waited cost more than everything else stepup does there
(an ``INSERT`` in autocommit, and a groups query made only to fill the row's
roles). So an ``allowed`` row, unlike every other event (challenges,
verifications, failures, lockouts, denials and shadow decisions are written
at once, :func:`stepup.audit.record_event`):

- is **sampled**: ``STEPUP["DECISION_LOG_ALLOWED"]`` is the share of allowed
  decisions logged (default ``1``: every one; ``0``: none). A row sampled at
  a rate below 1 says so in ``facts["sample_rate"]``;
- **waits** in this process's buffer, and the buffer is written (on
  PostgreSQL with psycopg 3 one ``COPY``, elsewhere one ``INSERT`` run for
  every row with ``executemany``; in one transaction) once
  it holds ``STEPUP["DECISION_LOG_BATCH_SIZE"]`` rows (default 100) or its
  oldest row has waited ``STEPUP["DECISION_LOG_FLUSH_INTERVAL"]`` seconds
  (default 1): at the end of
  the request that finds it so, after its response was sent
  (``request_finished``);
- gets the user's **group names** as it is written, with one query for the
  users of the whole batch, unless the decision had loaded the roles anyway
  (a policy condition on roles). The flags (``authenticated``, ``staff``,
  ``superuser``) are read at decision time, the groups up to the wait above
  later;
- is **written at exit** (``atexit``) on a normal shutdown, a gunicorn
  worker's graceful exit included. A forked child drops the copy of its
  parent's buffer (the parent writes it).

What a crash (``SIGKILL``, out of memory, power loss) loses: the rows in
the buffer, at most ``DECISION_LOG_BATCH_SIZE - 1`` allowed decisions per
process, made since the last write; never a challenge, denial, failure or
shadow decision. A database error while writing a batch is logged on the
``stepup`` logger with the number of rows lost.

Tests that read ``allowed`` rows call :func:`flush` first
(:func:`stepup.testing.flush_decision_log`); the pytest plugin drops rows an
earlier test left in the buffer.
"""

from __future__ import annotations

import atexit
import functools
import logging
import os
import random
import threading
from collections import defaultdict
from contextlib import nullcontext
from dataclasses import dataclass
from time import monotonic
from typing import Any

from django.core.signals import request_finished
from django.db import DatabaseError, connections, router, transaction

from stepup.conf import conf

logger = logging.getLogger("stepup")


@dataclass(slots=True)
class _Waiting:
    row: dict[str, Any]  # the DecisionLog's fields: the model instance is made as the batch is written
    alias: str
    groups_of: Any  # the user whose group names the row's roles still lack, or None


class _Buffer:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.rows: list[_Waiting] = []
        self.since = 0.0  # when the oldest waiting row came in

    def add(self, waiting: _Waiting) -> None:
        with self.lock:
            if not self.rows:
                self.since = monotonic()
            self.rows.append(waiting)

    def due(self) -> bool:
        rows = self.rows
        if not rows:
            return False
        return len(rows) >= conf.DECISION_LOG_BATCH_SIZE or (
            monotonic() - self.since >= conf.DECISION_LOG_FLUSH_INTERVAL
        )

    def take(self) -> list[_Waiting]:
        with self.lock:
            rows, self.rows = self.rows, []
        return rows


_buffer = _Buffer()


def sampled() -> bool:
    """Whether to log this allowed decision (``STEPUP["DECISION_LOG_ALLOWED"]``)."""
    rate = conf.DECISION_LOG_ALLOWED
    return rate >= 1.0 or (rate > 0.0 and _draw() < rate)


_draw = random.SystemRandom().random
"""Unpredictable, so nobody can time requests to fall outside the sample."""


def add(row: dict[str, Any], *, groups_of: Any = None) -> None:
    """Buffer an ``allowed`` row (the fields of a ``DecisionLog``, its ``created_at`` set);
    ``groups_of``: the user whose group names it still needs."""
    from stepup.models import DecisionLog

    _buffer.add(_Waiting(row, router.db_for_write(DecisionLog), groups_of))


def waiting() -> int:
    """How many allowed rows this process holds, not yet written."""
    return len(_buffer.rows)


def flush() -> int:
    """Write every buffered allowed row now, in one ``INSERT`` per database; return how many were written."""
    rows = _buffer.take()
    written = 0
    by_alias: dict[str, list[_Waiting]] = defaultdict(list)
    for item in rows:
        by_alias[item.alias].append(item)
    for alias, batch in by_alias.items():
        written += _write(alias, batch)
    return written


def discard() -> int:
    """Drop the buffered rows unwritten (test isolation); return how many there were."""
    return len(_buffer.take())


def _write(alias: str, batch: list[_Waiting]) -> int:
    try:
        _add_groups(batch)
        # One transaction for the batch (a savepoint inside the caller's: a failure can't break it).
        with transaction.atomic(using=alias):
            _insert(alias, [item.row for item in batch])
    except DatabaseError:
        logger.exception("could not store %d stepup allowed-decision rows", len(batch))
        return 0
    return len(batch)


def _insert(alias: str, rows: list[dict[str, Any]]) -> None:
    """Write the rows as one statement: what ``bulk_create`` writes, without a model instance
    per row or the ORM compiling the statement per batch (most of a batch's cost).

    On PostgreSQL with psycopg 3 that is a ``COPY … FROM STDIN`` (about half
    the client's and a third of the server's work of an ``INSERT`` per row,
    which psycopg's client-side binding renders one by one); elsewhere one
    ``executemany``. Each value goes through its field's ``get_db_prep_save``,
    as the ORM does (the user as its key); a field a row leaves out gets the
    field's default.
    """
    connection = connections[alias]
    statement = _statement(alias)
    values = [
        [field.get_db_prep_save(_value(row, name, field), connection) for name, field in statement.fields]
        for row in rows
    ]
    with connection.cursor() as cursor:
        if statement.copy is None:
            cursor.executemany(statement.insert, values)
            return
        # psycopg's own cursor (Django's wrapper has no copy()); its errors still become Django's,
        # and the statement is in Django's query log (debug toolbar, assertNumQueries) when it keeps one.
        logged = (
            cursor.debug_sql(statement.copy, values, many=True)
            if connection.queries_logged
            else nullcontext()
        )
        with logged, connection.wrap_database_errors, cursor.cursor.copy(statement.copy) as copy:
            for row in values:
                copy.write_row(row)


def _value(row: dict[str, Any], name: str, field: Any) -> Any:
    if name not in row:
        return field.get_default()
    value = row[name]
    return value.pk if field.is_relation and value is not None else value  # the user: its key


@dataclass(frozen=True, slots=True)
class _Statement:
    fields: list[tuple[str, Any]]  # the DecisionLog fields a row holds, by the row's key
    insert: str
    copy: str | None  # on PostgreSQL with psycopg 3


@functools.lru_cache(maxsize=8)
def _statement(alias: str) -> _Statement:
    """The ``DecisionLog`` fields a row holds and the statements that write them on ``alias``.

    Only the table's and columns' names, quoted by the database's own rules, go into the text.
    """
    from stepup.models import DecisionLog

    connection = connections[alias]
    quote = connection.ops.quote_name
    fields: list[Any] = [f for f in DecisionLog._meta.concrete_fields if not f.primary_key]
    target = f"{quote(DecisionLog._meta.db_table)} ({', '.join(quote(f.column) for f in fields)})"
    marks = ", ".join(["%s"] * len(fields))
    return _Statement(
        [(f.name, f) for f in fields],
        f"INSERT INTO {target} VALUES ({marks})",  # noqa: S608
        f"COPY {target} FROM STDIN" if _copies(connection) else None,
    )


def _copies(connection: Any) -> bool:
    if connection.vendor != "postgresql":
        return False
    from django.db.backends.postgresql.psycopg_any import is_psycopg3

    return bool(is_psycopg3)


def _add_groups(batch: list[_Waiting]) -> None:
    users = {item.groups_of.pk: item.groups_of for item in batch if item.groups_of is not None}
    if not users:
        return
    names = group_names(list(users.values()))
    for item in batch:
        if item.groups_of is not None:
            item.row["roles"] = sorted({*item.row["roles"], *names.get(item.groups_of.pk, ())})


def group_names(users: list[Any]) -> dict[Any, set[str]]:
    """The group names of each user, by primary key: one query per user model with a ``groups`` relation."""
    found: dict[Any, set[str]] = defaultdict(set)
    by_model: dict[type, list[Any]] = defaultdict(list)
    for user in users:
        by_model[user.__class__].append(user)
    for model, members in by_model.items():
        field = _groups_field(model)
        if field is None:  # a custom user model with groups of its own making: ask each user
            for user in members:
                groups = getattr(user, "groups", None)
                if groups is not None:
                    found[user.pk].update(groups.values_list("name", flat=True))
            continue
        through = field.remote_field.through
        source, target = field.m2m_field_name(), field.m2m_reverse_field_name()
        pairs = (
            through._default_manager.using(router.db_for_read(through))
            .filter(**{f"{source}__in": [user.pk for user in members]})
            .values_list(source, f"{target}__name")
        )
        for pk, name in pairs:
            found[pk].add(name)
    return found


def _groups_field(model: type) -> Any:
    from django.core.exceptions import FieldDoesNotExist

    try:
        field = model._meta.get_field("groups")  # type: ignore[attr-defined]
    except FieldDoesNotExist:
        return None
    return field if getattr(field, "many_to_many", False) else None


# --- when the buffer is written -------------------------------------------------------------


def _request_finished(**kwargs: Any) -> None:
    if _buffer.due():
        flush()


def _at_exit() -> None:
    if _buffer.rows:
        flush()


def _drop_in_child() -> None:
    global _buffer
    _buffer = _Buffer()  # the parent's rows are the parent's to write; a new lock, never held


_connected = False


def connect() -> None:
    """Write the buffer after responses and at exit (called from ``AppConfig.ready``; idempotent)."""
    global _connected
    request_finished.connect(_request_finished, dispatch_uid="stepup.allowed_log.flush")
    if _connected:
        return
    _connected = True
    atexit.register(_at_exit)
    os.register_at_fork(after_in_child=_drop_in_child)
