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
import json
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
from django.db.models import JSONField

from stepup.conf import conf

logger = logging.getLogger("stepup")


_Waiting = tuple[str, Any, tuple[str, ...], tuple[Any, ...]]
"""A buffered row: (database alias, the key of the user whose group names the roles still
lack or ``None``, the roles, every other column in :func:`_columns` order with JSON already
encoded). Only plain values in a plain tuple (strings, numbers, ``None``, a datetime): the
garbage collector stops tracking such a tuple, so rows waiting for their batch add nothing
to its full collections. (Waiting as dicts holding the request's user, they tripled a
gunicorn worker's time in the collector.)"""


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

    values = tuple(_plain(row, name, field) for name, field in _columns())
    roles = tuple(row.get("roles") or ())
    keyed = None if groups_of is None else groups_of.pk
    _buffer.add((router.db_for_write(DecisionLog), keyed, roles, values))


def _plain(row: dict[str, Any], name: str, field: Any) -> Any:
    """The row's value for ``field`` as it waits: the user as its key, JSON as its text."""
    value = row[name] if name in row else field.get_default()
    if field.is_relation:
        return None if value is None else value.pk
    if isinstance(field, JSONField):
        return json.dumps(value, cls=field.encoder)  # what the field itself writes
    return value


def waiting() -> int:
    """How many allowed rows this process holds, not yet written."""
    return len(_buffer.rows)


def flush() -> int:
    """Write every buffered allowed row now, in one statement per database; return how many were written."""
    rows = _buffer.take()
    written = 0
    by_alias: dict[str, list[_Waiting]] = defaultdict(list)
    for item in rows:
        by_alias[item[0]].append(item)
    for alias, batch in by_alias.items():
        written += _write(alias, batch)
    return written


def discard() -> int:
    """Drop the buffered rows unwritten (test isolation); return how many there were."""
    return len(_buffer.take())


def _write(alias: str, batch: list[_Waiting]) -> int:
    try:
        roles = _roles(batch)
        # One transaction for the batch (a savepoint inside the caller's: a failure can't break it).
        with transaction.atomic(using=alias):
            _insert(alias, [(json.dumps(r), item[3]) for r, item in zip(roles, batch, strict=True)])
    except DatabaseError:
        logger.exception("could not store %d stepup allowed-decision rows", len(batch))
        return 0
    return len(batch)


def _insert(alias: str, rows: list[tuple[str, tuple[Any, ...]]]) -> None:
    """Write the rows (roles as JSON text, the other values) as one statement: what
    ``bulk_create`` writes, without a model instance per row or the ORM compiling the
    statement per batch (most of a batch's cost).

    On PostgreSQL with psycopg 3 that is a ``COPY … FROM STDIN`` (about half
    the client's and a third of the server's work of an ``INSERT`` per row,
    which psycopg's client-side binding renders one by one); elsewhere one
    ``executemany``. Each value but JSON text goes through its field's
    ``get_db_prep_save``, as the ORM does.
    """
    connection = connections[alias]
    statement = _statement(alias)
    prepared = [(field, not isinstance(field, JSONField)) for _, field in _columns()]
    values = [
        [
            roles,
            *(
                field.get_db_prep_save(value, connection) if prep else value
                for (field, prep), value in zip(prepared, plain, strict=True)
            ),
        ]
        for roles, plain in rows
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


@functools.cache
def _columns() -> list[tuple[str, Any]]:
    """The ``DecisionLog`` fields a waiting row holds, by the row's key: every column but the
    key and ``roles`` (which waits apart, for its group names)."""
    from stepup.models import DecisionLog

    return [(f.name, f) for f in DecisionLog._meta.concrete_fields if not f.primary_key and f.name != "roles"]


@dataclass(frozen=True, slots=True)
class _Statement:
    insert: str
    copy: str | None  # on PostgreSQL with psycopg 3


@functools.lru_cache(maxsize=8)
def _statement(alias: str) -> _Statement:
    """The statements that write a row (``roles``, then :func:`_columns`) on ``alias``.

    Only the table's and columns' names, quoted by the database's own rules, go into the text.
    """
    from stepup.models import DecisionLog

    connection = connections[alias]
    quote = connection.ops.quote_name
    columns = [DecisionLog._meta.get_field("roles"), *(field for _, field in _columns())]
    target = f"{quote(DecisionLog._meta.db_table)} ({', '.join(quote(f.column) for f in columns)})"
    marks = ", ".join(["%s"] * len(columns))
    return _Statement(
        f"INSERT INTO {target} VALUES ({marks})",  # noqa: S608
        f"COPY {target} FROM STDIN" if _copies(connection) else None,
    )


def _copies(connection: Any) -> bool:
    if connection.vendor != "postgresql":
        return False
    from django.db.backends.postgresql.psycopg_any import is_psycopg3

    return bool(is_psycopg3)


def _roles(batch: list[_Waiting]) -> list[list[str]]:
    """Each row's roles, with the group names of the users that still lack them (one query)."""
    wanted = {groups_of for _, groups_of, _, _ in batch if groups_of is not None}
    names = group_names(wanted) if wanted else {}
    return [sorted({*roles, *names.get(groups_of, ())}) for _, groups_of, roles, _ in batch]


def group_names(keys: set[Any]) -> dict[Any, set[str]]:
    """The group names of each user (of ``AUTH_USER_MODEL``) by primary key: one query."""
    from django.contrib.auth import get_user_model

    model = get_user_model()
    found: dict[Any, set[str]] = defaultdict(set)
    field = _groups_field(model)
    if field is None:  # a custom user model with groups of its own making: ask each user
        for user in model._default_manager.using(router.db_for_read(model)).filter(pk__in=keys):
            groups = getattr(user, "groups", None)
            if groups is not None:
                found[user.pk].update(groups.values_list("name", flat=True))
        return found
    through = field.remote_field.through
    source, target = field.m2m_field_name(), field.m2m_reverse_field_name()
    pairs = (
        through._default_manager.using(router.db_for_read(through))
        .filter(**{f"{source}__in": keys})
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
