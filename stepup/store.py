"""The active policy set of this process, compiled from the database.

Every process keeps one compiled :class:`~stepup.policy.engine.PolicySet` in
memory and learns about changes through the state row (``PolicySetState``),
whose version and random generation every policy change renews in its own
transaction (:mod:`stepup.sync`). A set is identified by the pair
(:class:`SetState`): a flushed or restored database sets the version back,
and later changes reach the same number with other policies.

- **With notices**: a shared cache (``STEPUP["CACHE"]``, default
  ``"default"``, when it is Redis, Memcached or any backend other than the
  local-memory and dummy ones), or PostgreSQL's ``LISTEN``/``NOTIFY``
  (``STEPUP["NOTICES"] = "database"``). After a change commits, the
  committing process sends a notice (:mod:`stepup.notices`: a Redis
  ``PUBLISH``, a PostgreSQL ``NOTIFY``, or a fresh token in the cache).
  Every request checks for notices without a query (with Redis and
  PostgreSQL, without even a round trip); a notice this process has not seen makes it read the
  state from the database at once, so a committed change is enforced by
  every process from its next request on. The database is still asked every
  ``STEPUP["RESYNC_INTERVAL"]`` seconds, in case a notice was lost.
- **Without one**: the state is read from the database at most every
  ``STEPUP["RELOAD_INTERVAL"]`` seconds.

The state and rows are read from the database policies are written to
(``router.db_for_write``): a read replica may lag behind a notice.

Fail closed, as OPA keeps its last bundle:

- the database can't be read: the last good set stays in force, and the
  database is tried again after ``RELOAD_INTERVAL`` (never on every request);
  with no good set at all, :class:`PolicyStoreUnavailable` is raised and
  :mod:`stepup.enforcement` challenges declared actions and refuses unsafe
  methods with 503;
- the notices can't be read (a subscription is lost, or leaves a ping
  unanswered): the process polls the database every ``RELOAD_INTERVAL``
  until they answer again;
- a stored row that no longer validates is replaced by a stricter stand-in
  (same targets, no conditions, ``max_age: 0`` or ``deny``) and never
  disables the other policies.

Each of these events is logged on the ``stepup.store`` logger, at most once
per interval.

Uncommitted changes are private: a thread that changed policies inside a
transaction decides with its own view until the transaction ends, and the
set shared by the other threads is only rebuilt from committed rows.

Why one module of about 560 lines: the cache, the change notices it listens
to and the fallbacks when either is unreachable share one lock and one state
machine; split, the fail-closed transitions would be spread over modules.
"""

from __future__ import annotations

import functools
import json
import logging
import threading
from collections.abc import Callable
from time import monotonic as _clock
from typing import Any, NamedTuple

from django.core.cache.backends.base import BaseCache
from django.core.signals import setting_changed
from django.db import DatabaseError, connections, router, transaction
from django.dispatch import receiver

from stepup import notices
from stepup.conf import conf
from stepup.exceptions import PolicyStoreUnavailable
from stepup.notices import brief
from stepup.policy.engine import PolicySet, compile_policies
from stepup.policy.loader import validate_policy
from stepup.policy.model import PolicySpec

logger = logging.getLogger("stepup.store")

STAND_IN_DESCRIPTION = "Stored policy is malformed: the strictest requirement applies until it is fixed."


# --- the shared cache ---------------------------------------------------------------


def shared_cache() -> BaseCache | None:
    """The cache that carries change notices between processes (``STEPUP["CACHE"]``), or ``None``."""
    return notices.shared_cache(conf.CACHE)


class _Config:
    """What the store needs from the settings, read once (and again when they change)."""

    __slots__ = ("notices", "reload_interval", "resync_interval")

    def __init__(self) -> None:
        self.reload_interval = conf.RELOAD_INTERVAL
        self.resync_interval = conf.RESYNC_INTERVAL
        self.notices = notices.notices_from_settings(
            conf.NOTICES, conf.CACHE, store_alias(), interval=self.reload_interval
        )


_current: _Config | None = None


def _config() -> _Config:
    global _current
    config = _current
    if config is None:
        config = _current = _Config()
    return config


@receiver(setting_changed, dispatch_uid="stepup.store.settings")
def _settings_changed(setting: str, **kwargs: Any) -> None:
    global _current
    if setting in ("STEPUP", "CACHES"):
        _current = None
        notices.close_all()
        _store.recheck()


def change_notices() -> notices.Notices | None:
    """The notices this process reads (``STEPUP["NOTICES"]``), or ``None``: it polls the database."""
    return _config().notices


def announce_change(*, only_if_missing: bool = False) -> None:
    """Write a fresh notice to the shared cache, so every process re-reads the state row.

    Called after a policy change commits. A failure is logged, never raised:
    the change is committed, and other processes still find it within
    ``RESYNC_INTERVAL`` (or ``RELOAD_INTERVAL`` while their cache is down).
    """
    notices = change_notices()
    if notices is None:
        return
    try:
        notices.write(only_if_missing=only_if_missing)
    except Exception as exc:
        logger.error(
            "could not publish a policy change to %s (%s); other processes "
            "will notice it within STEPUP['RESYNC_INTERVAL'] (%ss)",
            notices.label,
            brief(exc),
            conf.RESYNC_INTERVAL,
        )


# --- reading the database ---------------------------------------------------------------


def store_alias() -> str:
    """The database the store reads: the one policies are written to, never a lagging replica."""
    from stepup.models import PolicySetState

    return router.db_for_write(PolicySetState) or "default"


class SetState(NamedTuple):
    """Which policy set a database holds: the number of changes, and the last change's random id."""

    version: int
    generation: str

    @property
    def label(self) -> str:
        """The policy-set version decisions and the decision log carry, e.g. ``7-3f9a0c1d2e4b``."""
        return f"{self.version}-{self.generation[:12]}" if self.generation else str(self.version)


def current_state(using: str | None = None) -> SetState:
    """The database's state row; ``SetState(0, "")`` before the first policy change (or after a flush)."""
    from stepup.models import PolicySetState

    alias = using or store_alias()
    row = PolicySetState.objects.using(alias).filter(pk=1).values_list("version", "generation").first()
    return SetState(int(row[0]), row[1]) if row is not None else SetState(0, "")


def load_policy_set(
    state: SetState, *, using: str | None = None, previous: PolicySet | None = None
) -> PolicySet:
    """Compile every stored policy; malformed rows become stricter stand-ins.

    :param previous: the set in force until now: a malformed row's stand-in
        also keeps the targets of that policy's last good version.
    """
    return reload_policy_set(state, using=using, previous=previous)[0]


Stamps = dict[str, tuple[Any, ...]]
"""``policy_id`` -> the content columns of the row a set compiled (:data:`CONTENT_COLUMNS`), JSON
columns as the database's text."""

CONTENT_COLUMNS = (
    "policy_id",
    "description",
    "actions",
    "urls",
    "methods",
    "when",
    "decision",
    "max_age",
    "factors",
    "enabled",
    "mode",
)
"""What a stored policy says: the columns :meth:`stepup.models.Policy.to_dict` reads."""


def reload_policy_set(
    state: SetState,
    *,
    using: str | None = None,
    previous: PolicySet | None = None,
    stamps: Stamps | None = None,
) -> tuple[PolicySet, Stamps]:
    """:func:`load_policy_set`, validating and compiling only the rows whose content changed.

    Every row's content columns are read (plain values, no model instances;
    the JSON columns as the database's text, decoded only for a row that
    changed: decoding all of them was most of a reload) and compared with
    those ``previous`` was compiled from (``stamps``): an unchanged row keeps
    its spec and compiled form, a new or changed one is validated and
    compiled, a deleted one is dropped. The content itself is compared, not a
    timestamp, so a row changed behind the ORM's back (raw SQL, a restored
    backup) is seen too; the same content written as other text counts as a
    change, which only costs a recompile. Without ``stamps`` every row is
    validated and compiled.
    """
    from stepup.models import Policy

    alias = using or store_alias()
    earlier = stamps if previous is not None and stamps is not None else {}
    columns, decode = _stamp_columns()
    specs: list[PolicySpec] = []
    now: Stamps = {}
    for values in Policy.objects.using(alias).order_by().values_list(*columns):
        policy_id = values[0]
        now[policy_id] = values
        kept = (
            previous.specs.get(policy_id)
            if previous is not None and earlier.get(policy_id) == values
            else None
        )
        if kept is not None:
            specs.append(kept)
            continue
        last_good = previous.specs.get(policy_id) if previous is not None else None
        content = (json.loads(v) if i in decode and v is not None else v for i, v in enumerate(values))
        row = Policy(**dict(zip(CONTENT_COLUMNS, content, strict=True)))
        spec = spec_from_row(policy_id, row.to_dict(), last_good=last_good)
        if spec is not None:
            specs.append(spec)
    policy_set = compile_policies(
        specs, default_max_age=conf.DEFAULT_MAX_AGE, version=state.label, reuse=previous
    )
    return policy_set, now


@functools.cache
def _stamp_columns() -> tuple[list[Any], frozenset[int]]:
    """:data:`CONTENT_COLUMNS` to read, JSON ones cast to text; the positions of those to decode."""
    from django.db.models import JSONField, TextField
    from django.db.models.functions import Cast

    from stepup.models import Policy

    json_columns = {n for n in CONTENT_COLUMNS if isinstance(Policy._meta.get_field(n), JSONField)}
    columns = [Cast(n, TextField()) if n in json_columns else n for n in CONTENT_COLUMNS]
    return columns, frozenset(i for i, n in enumerate(CONTENT_COLUMNS) if n in json_columns)


def spec_from_row(
    policy_id: str, data: dict[str, Any], *, last_good: PolicySpec | None = None
) -> PolicySpec | None:
    spec, errors = validate_policy(data, source=f"<database:{policy_id}>")
    if spec is not None:
        return spec
    logger.error(
        "stored policy %r is malformed; enforcing a stricter stand-in: %s",
        policy_id,
        "; ".join(str(e) for e in errors),
    )
    return stand_in(policy_id, data, last_good=last_good)


def _names(value: Any) -> tuple[str, ...]:
    """The target names that can be read from a stored ``actions``/``urls`` value."""
    if isinstance(value, str):
        value = [value]  # one name where a list was expected: still that name
    if not isinstance(value, (list, tuple)):
        return ()
    return tuple(v for v in value if isinstance(v, str) and v)


def is_stand_in(spec: PolicySpec) -> bool:
    return spec.description == STAND_IN_DESCRIPTION


def stand_in(
    policy_id: str, data: dict[str, Any], *, last_good: PolicySpec | None = None
) -> PolicySpec | None:
    """The fail-closed replacement of a malformed row: same targets, no conditions, strictest effect.

    The targets are the names that can still be read from the row plus those
    of the policy's last good version in this process (``last_good``), so
    that breaking a row's ``match`` never unprotects what it protected.
    """
    match = data.get("match") if isinstance(data.get("match"), dict) else {}
    assert isinstance(match, dict)
    names = {key: _names(match.get(key)) for key in ("actions", "urls")}
    deny = data.get("decision") == "deny"
    if last_good is not None and last_good.enabled:
        names = {
            "actions": tuple(dict.fromkeys((*names["actions"], *last_good.actions))),
            "urls": tuple(dict.fromkeys((*names["urls"], *last_good.urls))),
        }
        deny = deny or (last_good.decision == "deny" and last_good.mode == "enforce")
    if not names["actions"] and not names["urls"]:
        logger.critical(
            "stored policy %r names no action or URL that can be read; it cannot be enforced",
            policy_id,
        )
        return None
    return PolicySpec(
        id=policy_id,
        description=STAND_IN_DESCRIPTION,
        actions=names["actions"],
        urls=names["urls"],
        decision="deny" if deny else "step_up",
        max_age=None if deny else 0,
    )


# --- uncommitted changes ---------------------------------------------------------------


class _Pending(threading.local):
    """This thread's policy changes that are not committed yet (Django connections are per thread)."""

    alias: str | None
    callbacks: list[Callable[[], None]]
    key: tuple[int, ...]
    policy_set: PolicySet | None

    def __init__(self) -> None:
        self.clear()

    def clear(self) -> None:
        self.alias = None
        self.callbacks = []
        self.key = ()
        self.policy_set = None


_pending = _Pending()


def _live(callbacks: list[Callable[[], None]], alias: str) -> list[Callable[[], None]]:
    """The callbacks still waiting for a commit: Django drops those of rolled-back savepoints."""
    waiting = {id(entry[1]) for entry in connections[alias].run_on_commit}
    return [c for c in callbacks if id(c) in waiting]


# --- the store ---------------------------------------------------------------------------


class _NoNotice:
    """Stands for "no notice to compare": no shared cache, or it failed."""


_NO_CACHE = _NoNotice()


class _Store:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._set: PolicySet | None = None
        self._state: SetState | None = None
        self._stamps: tuple[str, Stamps] | None = None  # (alias, stamps) of the rows _set was compiled from
        self._notice: object = _NO_CACHE  # the notice seen before the last database read, if any
        self._checked_at = -float("inf")  # last successful database read (monotonic)
        self._trusted_until = -float("inf")  # with nothing to read notices from: no read before this
        self._resync_at = -float("inf")  # with notices: the database is read again from then on
        self._db_retry_at = -float("inf")  # no database read before this, after a failure
        self._db_down = False
        self._cache_retry_at = -float("inf")  # no cache read before this, after a failure
        self._cache_down = False

    # -- state changes --

    def invalidate(self) -> None:
        """Forget the compiled set: the next request reads and compiles the database's."""
        with self._lock:
            self._state = None
            self._stamps = None  # a full recompile
            self._checked_at = -float("inf")
            self._trusted_until = self._resync_at = -float("inf")
            self._db_retry_at = -float("inf")

    def recheck(self) -> None:
        """Read the state row again on the next request (recompile only if it changed)."""
        self._checked_at = -float("inf")
        self._trusted_until = self._resync_at = -float("inf")
        self._notice = _NO_CACHE

    # -- reading --

    def get(self) -> PolicySet:
        """The policy set in force (:func:`get_policy_set`)."""
        if _pending.alias is not None:
            private = self._private()
            if private is not None:
                return private
        config = _current or _config()
        now = _clock()
        current = self._set
        channel = config.notices
        if channel is None:
            if now < self._trusted_until and current is not None:
                return current  # the fast path: what _fresh() says without a notice, inlined
            notice: object = _NO_CACHE
        else:
            if now < self._cache_retry_at:
                notice = _NO_CACHE  # the cache failed a moment ago: the database is polled meanwhile
            else:
                try:
                    notice = channel.read()  # here, not in a helper: asked on every request
                except Exception as exc:
                    notice = self._notices_failed(channel, config.reload_interval, now, exc)
                else:
                    if self._cache_down:
                        self._cache_answers(channel)
            same = notice is not _NO_CACHE and notice == self._notice
            if same and now < self._resync_at and current is not None:
                return current  # the fast path: no new notice (what _fresh() says, inlined)
            if current is not None and self._fresh(config, notice, now):
                return current
        with self._lock:
            if self._set is not None and self._fresh(config, notice, now):
                return self._set
            return self._refresh(config, notice, now)

    def _fresh(self, config: _Config, notice: object, now: float) -> bool:
        if notice is _NO_CACHE or notice is None:
            return now < self._trusted_until  # RELOAD_INTERVAL after a read, or the retry after a failure
        if self._state is None:
            return False
        if now < self._db_retry_at:
            return True  # the database failed a moment ago: keep the last good set
        return notice == self._notice and now < self._resync_at

    def _notices_failed(self, channel: notices.Notices, interval: float, now: float, exc: Exception) -> Any:
        """Note that the cache failed: the database is polled until it answers again."""
        with self._lock:
            if now >= self._cache_retry_at:
                self._cache_retry_at = now + interval
                self._cache_down = True
                logger.error(
                    "%s is unreachable (%s); polling the database for policy "
                    "changes every %ss until it answers",
                    channel.label,
                    brief(exc),
                    interval,
                )
        return _NO_CACHE

    def _cache_answers(self, channel: notices.Notices) -> None:
        self._cache_down = False
        logger.warning("%s answers again; policy changes are seen at once", channel.label)

    def _refresh(self, config: _Config, notice: object, now: float) -> PolicySet:
        if now < self._db_retry_at:
            if self._set is None:
                raise PolicyStoreUnavailable("the policy store is unreachable")
            return self._set
        try:
            policy_set = self._load_if_changed()
        except Exception as exc:
            self._db_retry_at = now + config.reload_interval
            self._db_down = True
            self._trusted_until = self._db_retry_at if self._set is not None else -float("inf")
            if self._set is None:
                logger.error(
                    "policy store unreachable and no policy set loaded yet (%s); failing closed, "
                    "next try in %ss",
                    brief(exc),
                    config.reload_interval,
                    exc_info=not isinstance(exc, DatabaseError),
                )
                raise PolicyStoreUnavailable("the policy store is unreachable") from None
            logger.error(
                "policy store unreachable (%s); keeping the last good policy set v%s, next try in %ss",
                brief(exc),
                self._set.version,
                config.reload_interval,
                exc_info=not isinstance(exc, DatabaseError),
            )
            return self._set
        if self._db_down:
            self._db_down = False
            logger.warning("policy store reachable again; policy set v%s in force", policy_set.version)
        self._checked_at = now
        self._trusted_until = now + config.reload_interval
        self._resync_at = now + config.resync_interval
        self._db_retry_at = -float("inf")
        self._notice = _NO_CACHE if notice is None else notice  # no notice is never "the same" notice
        if notice is None:
            # The cache has no notice (new, flushed or evicted): put one back, so that
            # the processes compare notices again instead of polling.
            announce_change(only_if_missing=True)
        return policy_set

    def _load_if_changed(self) -> PolicySet:
        """The database's set: the one in force when the state row is unchanged, else a new one."""
        alias = store_alias()
        in_callers_transaction = connections[alias].in_atomic_block
        with transaction.atomic(using=alias):
            state = current_state(alias)
            if self._set is not None and self._state is not None:
                if state == self._state:
                    return self._set
                if state.version < self._state.version and in_callers_transaction:
                    # Inside a caller's transaction (a snapshot, under REPEATABLE READ):
                    # never go back to an older set than the one already in force.
                    return self._set
            stamps = self._stamps[1] if self._stamps is not None and self._stamps[0] == alias else None
            policy_set, new_stamps = reload_policy_set(state, using=alias, previous=self._set, stamps=stamps)
        self._set, self._state, self._stamps = policy_set, state, (alias, new_stamps)
        logger.info("policy set v%s loaded: %d policies", policy_set.version, len(policy_set))
        return policy_set

    # -- uncommitted changes of this thread --

    def note_change(self, using: str, on_commit: Callable[[], None]) -> None:
        """A policy change in ``using``'s current transaction, committed when ``on_commit`` runs."""
        if not connections[using].in_atomic_block:
            return  # autocommit: already committed
        if _pending.alias != using:
            _pending.clear()
            _pending.alias = using
        _pending.callbacks.append(on_commit)

    def committed(self, on_commit: Callable[[], None]) -> None:
        if on_commit in _pending.callbacks:
            _pending.callbacks.remove(on_commit)
            if not _pending.callbacks:
                _pending.clear()
        self.recheck()

    def _private(self) -> PolicySet | None:
        """This thread's own view while its policy changes are uncommitted, else ``None``."""
        alias = _pending.alias
        if alias is None:
            return None
        live = _live(_pending.callbacks, alias)
        if not live:
            _pending.clear()  # rolled back
            return None
        key = tuple(id(c) for c in live)
        if _pending.policy_set is None or _pending.key != key:
            _pending.callbacks = live
            try:
                with transaction.atomic(using=alias):
                    state = current_state(alias)
                    previous = _pending.policy_set or self._set
                    policy_set = load_policy_set(state, using=alias, previous=previous)
            except Exception as exc:
                logger.error("could not read this transaction's policy changes (%s)", brief(exc))
                if self._set is None:
                    raise PolicyStoreUnavailable("the policy store is unreachable") from None
                return self._set
            _pending.key, _pending.policy_set = key, policy_set
        return _pending.policy_set


_store = _Store()


def get_policy_set() -> PolicySet:
    """The policy set in force for this process (reloaded when the stored state changes).

    :raises PolicyStoreUnavailable: nothing could be loaded and there is no
        earlier good set to keep.
    """
    return _store.get()


def invalidate() -> None:
    """Forget the compiled sets (this thread's uncommitted view too); the next call reads the database."""
    _pending.policy_set = None
    _store.invalidate()


def note_uncommitted_change(using: str, on_commit: Callable[[], None]) -> None:
    """Record a policy change made in ``using``'s current transaction (see :mod:`stepup.sync`)."""
    _store.note_change(using, on_commit)


def change_committed(on_commit: Callable[[], None]) -> None:
    """A policy change committed: re-read the state here, and tell the other processes."""
    announce_change()
    _store.committed(on_commit)
