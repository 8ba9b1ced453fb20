"""Lasting grants a process has read, kept so that a protected request needs no grants query.

Reading a subject's grants is the one query stepup adds to a protected
request (:func:`stepup.grants.valid_grants`); on PostgreSQL it is about a
tenth of such a request. So a process keeps what it read, for one subject,
user and password digest, under these rules:

- **only while something tells this process of changes made elsewhere**:
  - notices on a subscription (``STEPUP["CACHE"]`` a ``RedisCache``, or
    ``STEPUP["NOTICES"] = "database"`` on PostgreSQL), that subscription
    live (:class:`stepup.notices.SubscribedNotices`). Every change that can
    void a grant (a logout, a login, a verification moving the grants to a
    new subject, a removed device's ``revoke_all``, a used or given-back
    single-request grant) calls :func:`changed`: this process forgets
    everything at once, and once the change commits every other process is
    told by a message and forgets everything on its next request, as with
    a policy change (:mod:`stepup.notices`);
  - or, on SQLite, the database file itself: ``PRAGMA data_version`` (a few
    microseconds, no query in Django's log) changes whenever any other
    connection, of this process or another, commits anything. An entry is
    used only on the connection it was read on, while that number is the
    same; a commit elsewhere (a revocation, but also a session saved) makes
    the next protected request read the grants again.

  Otherwise (another database without notices, or a subscription that is
  down) nothing is kept and every protected request asks the database;
- **only lasting grants**: a read that found an unused single-request grant
  is not kept (it is used up by its request);
- **at most** ``RELOAD_INTERVAL`` **seconds** (default 1): a grant voided
  without :func:`changed` (rows deleted by hand, or a process that died
  between its commit and its message) stops counting within that time;
- grants added are never missed: a verification moves the grants to a new
  subject, which nothing was kept for;
- nothing read by a transaction that changed grants and has not committed
  yet is kept (it may still roll back);
- ``STEPUP["GRANT_CACHE"] = False`` turns it off.
"""

from __future__ import annotations

import itertools
import logging
import os
import threading
from time import monotonic
from typing import Any

from django.core.signals import setting_changed
from django.db import connections, router, transaction
from django.dispatch import receiver

from stepup import store
from stepup.conf import conf
from stepup.notices import SubscribedNotices

logger = logging.getLogger("stepup")

MAX_ENTRIES = 10_000
"""Subjects kept per process; the oldest entry goes first."""

Generation = tuple[object, int, int]
"""What an entry was read under: the subscription and its grants counter (or the SQLite connection and its
``data_version``), and this process's count of changes."""

_entries: dict[tuple[Any, ...], tuple[Generation, float, tuple[Any, ...]]] = {}
_changes = itertools.count(1)
_local = 0
_lock = threading.Lock()


def generation() -> Generation | None:
    """Under what an entry read now would be kept; ``None``: nothing may be kept or used now.

    Asked before the database, so a change that commits while the query runs
    makes the entry stale.
    """
    if not conf.GRANT_CACHE:
        return None
    channel = store.change_notices()
    if not isinstance(channel, SubscribedNotices):
        return _sqlite_generation()
    try:
        count = channel.read_grants()
    except Exception:  # no live subscription: the store logs it and polls the database
        return None
    return (channel, count, _local)


def _sqlite_generation() -> Generation | None:
    """On SQLite, the grants connection's ``data_version``: it changes when any other connection commits."""
    from stepup.models import Grant

    connection = connections[router.db_for_read(Grant)]
    raw = connection.connection
    if raw is None or connection.vendor != "sqlite":
        return None  # not connected yet in this thread (the query connects), or no such number
    try:
        (version,) = raw.execute("PRAGMA data_version").fetchone()
    except Exception:  # a closed or broken connection: read the database, as without a cache
        return None
    return (raw, int(version), _local)


def get(key: tuple[Any, ...], current: Generation | None) -> tuple[Any, ...] | None:
    """The rows kept for ``key`` under ``current``, if still good; else ``None``."""
    if current is None:
        return None
    entry = _entries.get(key)
    if entry is None:
        return None
    made_under, at, rows = entry
    if made_under != current or monotonic() - at >= conf.RELOAD_INTERVAL:
        return None
    return rows


def put(key: tuple[Any, ...], made_under: Generation | None, rows: tuple[Any, ...]) -> None:
    """Keep ``rows`` (lasting grants only: the caller checks) read under ``made_under``."""
    if made_under is None or _uncommitted_change():
        return
    with _lock:
        if made_under[2] != _local:
            return  # changed here while the database was read
        if len(_entries) >= MAX_ENTRIES:
            _entries.pop(next(iter(_entries)), None)
        _entries[key] = (made_under, monotonic(), rows)


def _uncommitted_change() -> bool:
    """Whether this thread's transaction changed grants and has not committed: what it reads may roll back."""
    from stepup.models import Grant

    connection = connections[router.db_for_write(Grant)]
    return connection.in_atomic_block and any(entry[1] is _committed for entry in connection.run_on_commit)


def changed() -> None:
    """Grants may have been voided: forget them here now, and everywhere once the change commits.

    Called by every function of :mod:`stepup.grants` that deletes, moves, uses
    or gives back a grant, inside its transaction.
    """
    from stepup.models import Grant

    _forget()
    transaction.on_commit(_committed, using=router.db_for_write(Grant), robust=True)


def _committed() -> None:
    _forget()  # a request of this process may have read the old rows before the commit
    channel = store.change_notices()
    if not isinstance(channel, SubscribedNotices):
        return
    try:
        channel.write_grants()
    except Exception as exc:
        logger.error(
            "stepup could not tell the other processes that grants were voided (%s); "
            "they stop using them within RELOAD_INTERVAL",
            exc,
        )


def _forget() -> None:
    global _local
    with _lock:
        _local = next(_changes)
        _entries.clear()


def size() -> int:
    """How many subjects this process keeps grants for."""
    return len(_entries)


@receiver(setting_changed, dispatch_uid="stepup.grant_cache.settings")
def _settings_changed(setting: str, **kwargs: Any) -> None:
    if setting in ("STEPUP", "CACHES", "SECRET_KEY"):
        _forget()


def _drop_in_child() -> None:
    global _lock
    _lock = threading.Lock()  # a parent thread may have held it
    _forget()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_drop_in_child)
