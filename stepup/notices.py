"""Change notices: how one process tells the others that policies (or grants) changed.

:mod:`stepup.store` asks :func:`notices_from_settings` for the notices
``STEPUP["NOTICES"]`` chooses and compares what :meth:`read` returns on every
request with what it saw when it last read the policy version from the
database; a difference makes it read the version again at once.

- **Redis** (``STEPUP["CACHE"]`` a Django ``RedisCache``): :class:`RedisNotices`.
  The process that committed a change ``PUBLISH``-es on a channel; every
  process holds one subscription to it.
- **PostgreSQL** (``STEPUP["NOTICES"] = "database"``): :class:`PostgresNotices`.
  The process that committed a change sends a ``NOTIFY``; every process holds
  one connection that has run ``LISTEN``.
- For both (:class:`SubscribedNotices`), a request only asks the kernel
  whether the subscription's socket has data (one ``poll`` system call, no
  round trip) and reads it when it has, so a change is seen on the first
  request that starts after its notice arrived. Once per ``RELOAD_INTERVAL``
  a request also sends a ping, so a server that went silent is noticed too.
  While there is no subscription, :meth:`~SubscribedNotices.read` raises, the
  store polls the database, and a short-lived thread tries to subscribe again.
- **Any other shared cache** (Memcached, database, file): :class:`CacheNotices`,
  a random token under :data:`NOTICE_KEY`, rewritten after each change and
  read with one cache ``GET`` per request.

The local-memory and dummy backends are not shared between processes: with
them (and ``NOTICES = "cache"``) there are no notices and the store polls the
database.
"""

from __future__ import annotations

import contextlib
import math
import os
import re
import secrets
import select
import ssl
import threading
import weakref
from collections.abc import Callable
from time import monotonic
from typing import Any, Protocol

from django.core.cache import InvalidCacheBackendError, caches
from django.core.cache.backends.base import BaseCache
from django.core.cache.backends.dummy import DummyCache
from django.core.cache.backends.locmem import LocMemCache

from stepup.exceptions import NoticesUnavailable

NOTICE_KEY = "stepup:policy-set:notice"
"""The cache key (or, with Redis, the channel, prefixed like a key) that carries change notices."""

PG_CHANNEL = "stepup_notices"
"""The PostgreSQL channel (``LISTEN``/``NOTIFY``) that carries change notices."""

APPLICATION_NAME = "stepup-notices"
"""The ``application_name`` of each process's ``LISTEN`` connection."""

NOTICES_CHOICES = ("cache", "database")
"""The values of ``STEPUP["NOTICES"]``."""

GRANTS_PREFIX = b"grants:"
"""How a message (Redis, or a NOTIFY payload) that grants were voided starts (:mod:`stepup.grant_cache`)."""

SOCKET_TIMEOUT = 1.0
"""Seconds the Redis subscription waits to connect or for an answer, unless ``OPTIONS`` say otherwise."""

MIN_PING_INTERVAL = 0.25
"""Redis is pinged, and a lost subscription tried again, every ``RELOAD_INTERVAL`` (at least this) seconds."""


class Notices(Protocol):
    alias: str
    label: str  # what a log message calls it: "the cache 'default'"

    def read(self) -> object:
        """A value that changes whenever a notice arrives (``None``: the cache holds none)."""

    def write(self, *, only_if_missing: bool = False) -> None:
        """Tell every process that policies changed (after the change committed)."""

    def close(self) -> None: ...


def brief(exc: BaseException) -> str:
    """An exception in one line, for a log message that is repeated every interval."""
    lines = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {lines[0]}" if lines else type(exc).__name__


def shared_cache(alias: str | None) -> BaseCache | None:
    """The cache ``alias`` when it is shared between processes, else ``None``.

    The local-memory and dummy backends are not: a process polls the
    database instead.
    """
    if alias is None:
        return None
    try:
        cache = caches[alias]
    except InvalidCacheBackendError:
        return None  # reported by the stepup.W003 system check
    if isinstance(cache, (LocMemCache, DummyCache)):
        return None
    return cache


_subscriptions: dict[tuple[str, str, str, float], SubscribedNotices] = {}
_subscriptions_lock = threading.Lock()


def notices_from_settings(kind: str, cache: str | None, database: str, *, interval: float) -> Notices | None:
    """The notices ``STEPUP["NOTICES"]`` (``kind``) chooses, or ``None``: the store polls the database.

    ``"cache"``: those of the cache ``cache`` (:func:`notices_for`);
    ``"database"``: PostgreSQL's ``LISTEN``/``NOTIFY`` on ``database``
    (:func:`database_notices`). Anything else (system check ``stepup.E015``)
    means none.
    """
    if kind == "cache":
        return notices_for(cache, interval=interval)
    if kind == "database":
        return database_notices(database, interval=interval)
    return None


def notices_for(alias: str | None, *, interval: float) -> Notices | None:
    """The notices of cache ``alias`` (see the module docstring), or ``None`` when it isn't shared.

    One :class:`RedisNotices` (one subscription) per
    process and Redis server; :func:`close_all` ends them when settings change.
    """
    cache = shared_cache(alias)
    if cache is None or alias is None:
        return None
    server = _redis_server(alias, cache)
    if server is None:
        return CacheNotices(alias)
    url, options = server
    channel = cache.make_key(NOTICE_KEY)
    return _subscription(
        ("redis", alias, url + "\0" + channel, interval),
        lambda: RedisNotices(alias, url, options, channel, interval=interval),
    )


def database_notices(alias: str, *, interval: float) -> SubscribedNotices | None:
    """The ``LISTEN``/``NOTIFY`` notices of database ``alias``; ``None`` unless PostgreSQL on psycopg 3.

    One :class:`PostgresNotices` (one listening connection) per process and database.
    """
    problem = database_notices_problem(alias)
    if problem is not None:
        return None  # reported by the stepup.E016 system check
    return _subscription(("database", alias, "", interval), lambda: PostgresNotices(alias, interval=interval))


def database_notices_problem(alias: str) -> str | None:
    """Why database ``alias`` can't carry notices, or ``None`` when it can."""
    from django.db import connections

    try:
        connection = connections[alias]
    except Exception:
        return f"there is no database {alias!r} in DATABASES"
    if connection.vendor != "postgresql":
        return f"the database {alias!r} is {connection.vendor}, not PostgreSQL"
    if getattr(getattr(connection, "Database", None), "__name__", "") != "psycopg":
        return f"the database {alias!r} is reached through psycopg2; LISTEN/NOTIFY notices need psycopg 3"
    return None


def _subscription(
    key: tuple[str, str, str, float], make: Callable[[], SubscribedNotices]
) -> SubscribedNotices:
    with _subscriptions_lock:
        notices = _subscriptions.get(key)
        if notices is None:
            notices = _subscriptions[key] = make()
    return notices


def close_all() -> None:
    """End every subscription of this process (settings changed; the next request opens new ones)."""
    with _subscriptions_lock:
        ended = list(_subscriptions.values())
        _subscriptions.clear()
    for notices in ended:
        notices.close()


def _redis_server(alias: str, cache: BaseCache) -> tuple[str, dict[str, Any]] | None:
    """The first (writable) server of Django's Redis backend and its socket options, else ``None``."""
    from django.conf import settings
    from django.core.cache.backends.redis import RedisCache

    if not isinstance(cache, RedisCache):
        return None
    config = settings.CACHES.get(alias, {})
    options = dict(config.get("OPTIONS") or {})
    location = config.get("LOCATION", "")
    servers = re.split("[;,]", location) if isinstance(location, str) else list(location)
    if not servers or not servers[0]:
        return None
    kept = {k: options[k] for k in ("socket_timeout", "socket_connect_timeout", "db") if k in options}
    return servers[0], kept


class CacheNotices:
    """A random token under :data:`NOTICE_KEY`, read with one cache ``GET`` per request."""

    def __init__(self, alias: str) -> None:
        self.alias = alias
        self.label = f"the cache {alias!r}"

    def read(self) -> object:
        return caches[self.alias].get(NOTICE_KEY)  # caches[] gives each thread its own client

    def write(self, *, only_if_missing: bool = False) -> None:
        token = secrets.randbits(62) + 1
        if only_if_missing:
            caches[self.alias].add(NOTICE_KEY, token, timeout=None)
        else:
            caches[self.alias].set(NOTICE_KEY, token, timeout=None)

    def close(self) -> None:
        pass


class SubscribedNotices:
    """Notices as messages on a subscription this process holds (Redis pub/sub, PostgreSQL ``LISTEN``).

    :meth:`read` returns a counter that goes up with every policy message and
    every (re)subscription (notices may have been missed while unsubscribed, so
    the store reads the version again); :meth:`read_grants` one that goes up
    with every grants message (:meth:`write_grants`) and every
    (re)subscription, and never goes back, not even in a forked child. Both
    raise :class:`NoticesUnavailable` while there is no live subscription.

    No thread runs while all is well: the requests read the socket. Messages
    leave it only under ``_lock``, and the counter goes up before the lock is
    released, so a request that finds the socket empty and the lock free has
    seen every notice that reached this process before it looked. Once per
    ``interval`` a request sends a ping without waiting for its answer; an
    answer still missing one interval later means the server is silent (a
    partition, a frozen server) and the subscription is dropped. Subscribing
    again happens in a short-lived thread, never in a request, so an
    unreachable server never slows one down.

    A subclass says how to subscribe, read, ping and close (the hooks at the
    end) and how to send a notice.
    """

    server = "the server"
    """What the errors call the server that carries the messages."""

    ping_name = "ping"
    """What the errors call a ping."""

    def __init__(self, alias: str, label: str, *, interval: float, timeout: float) -> None:
        self.alias = alias
        self.label = label
        self.interval = max(interval, MIN_PING_INTERVAL)
        self._timeout = timeout
        self._closed = False
        self._grants = 0
        self._reset()
        _live.add(self)

    def _reset(self) -> None:
        """Nothing subscribed (at start, and in a child process after ``fork``)."""
        self._lock = threading.Lock()
        self._connection: Any = None  # the subscription, None while unsubscribed
        self._poll: Any = None  # a poll object on the subscription's socket, None while unsubscribed
        self._fd = -1
        self._tls = False
        self._count = 0
        self._grants += 1  # never back to a value an entry of stepup.grant_cache was made under
        self._error: str | None = "not subscribed yet"
        self._ping_at = float("inf")  # when the next ping (or the check of the last one's answer) is due
        self._awaiting_pong = False
        self._started = False
        self._retry_lock = threading.Lock()
        self._retry_at = -float("inf")
        self._retrying: threading.Thread | None = None

    # -- the request path --

    def read(self) -> int:
        poll = self._poll
        if poll is None:
            return self._unsubscribed()
        try:
            # Data on the socket: a notice, a pong, or the end of the connection. TLS may
            # hold decrypted bytes the socket doesn't show, so it is always read.
            pending = self._tls or bool(poll.poll(0))
        except RuntimeError:  # another thread is polling this very moment
            pending = True
        if pending or self._lock.locked() or monotonic() >= self._ping_at:
            with self._lock:
                self._drain_or_fail()
                self._ping_or_fail()
            if self._error is not None:
                raise NoticesUnavailable(self._error)
        return self._count

    def read_grants(self) -> int:
        """What :meth:`read` does, returning the grants counter (see the class doc)."""
        self.read()
        return self._grants

    def _unsubscribed(self) -> int:
        """Subscribe (the first time, waiting for it: no false "cache down"), or retry in the background."""
        if not self._started and not self._closed:
            with _start_lock:
                if not self._started:
                    with self._lock:
                        self._subscribe_or_fail()
                    if self._poll is None:
                        self._retry_at = monotonic() + self.interval  # that was this interval's attempt
                    self._started = True
            if self._poll is not None:
                return self.read()
        self._retry_in_background()
        raise NoticesUnavailable(self._error or "not subscribed")

    def write(self, *, only_if_missing: bool = False) -> None:
        """Tell every process that policies changed (after the change committed)."""
        if only_if_missing:
            return  # a message can't be missing: the subscribers count (re)subscriptions themselves
        self._send(str(secrets.randbits(62) + 1).encode())

    def write_grants(self) -> None:
        """Tell every process that grants were voided (after the change committed)."""
        self._send(GRANTS_PREFIX + str(secrets.randbits(62)).encode())

    def close(self) -> None:
        self._closed = True
        with self._lock:
            self._unsubscribe("closed")

    # -- the subscription (always under _lock) --

    def _subscribe_or_fail(self) -> None:
        if self._closed:
            return
        try:
            connection, fd, tls = self._subscribe()
        except Exception as exc:
            self._error = brief(exc)
            return
        self._connection, self._fd, self._tls = connection, fd, tls
        self._count += 1  # notices may have been missed while unsubscribed
        self._grants += 1
        self._error = None
        self._ping_at, self._awaiting_pong = monotonic() + self.interval, False
        poll = select.poll()
        poll.register(self._fd, select.POLLIN)
        self._poll = poll  # last: read() takes a poll object as "subscribed"

    def _received(self, data: object) -> None:
        """Count one message (the subclass's :meth:`_drain` calls it for each)."""
        if isinstance(data, bytes) and data.startswith(GRANTS_PREFIX):
            self._grants += 1
        else:
            self._count += 1

    def _drain_or_fail(self) -> None:
        if self._connection is None:
            return
        try:
            self._drain(self._connection)
        except Exception as exc:
            self._unsubscribe(brief(exc))

    def _ping_or_fail(self) -> None:
        if self._connection is None or monotonic() < self._ping_at:
            return
        if self._awaiting_pong:
            self._unsubscribe(f"{self.server} did not answer a {self.ping_name} within {self.interval:g}s")
            return
        try:
            self._ping(self._connection)
        except Exception as exc:
            self._unsubscribe(brief(exc))
            return
        self._ping_at, self._awaiting_pong = monotonic() + self.interval, True

    def _unsubscribe(self, error: str) -> None:
        self._poll = None  # first: read() stops trusting the socket
        connection, self._connection, self._fd, self._error = self._connection, None, -1, error
        if connection is not None:
            with contextlib.suppress(Exception):  # closing a broken connection
                self._disconnect(connection)

    # -- subscribing again --

    def _retry_in_background(self) -> None:
        """At most one attempt per ``interval``, each in a thread of its own that ends with it."""
        if not self._retry_lock.acquire(blocking=False):
            return  # another request is starting one right now
        try:
            now = monotonic()
            if self._closed or now < self._retry_at:
                return
            if self._retrying is not None and self._retrying.is_alive():
                return
            self._retry_at = now + self.interval
            self._retrying = threading.Thread(
                target=self._retry, name=f"stepup-notices-{self.alias}", daemon=True
            )
            self._retrying.start()
        finally:
            self._retry_lock.release()

    def _retry(self) -> None:
        with self._lock:
            if self._connection is None:
                self._subscribe_or_fail()

    # -- what a subclass provides --

    def _subscribe(self) -> tuple[Any, int, bool]:
        """Subscribe within ``_timeout``: the connection, its socket's descriptor, whether it is TLS."""
        raise NotImplementedError

    def _drain(self, connection: Any) -> None:
        """Read what arrived: :meth:`_received` each message; an answered ping sets ``_awaiting_pong`` False.

        Raises when the connection is lost.
        """
        raise NotImplementedError

    def _ping(self, connection: Any) -> None:
        """Send a ping, without waiting for its answer."""
        raise NotImplementedError

    def _disconnect(self, connection: Any) -> None:
        raise NotImplementedError

    def _send(self, payload: bytes) -> None:
        """Send ``payload`` to every subscriber."""
        raise NotImplementedError


class RedisNotices(SubscribedNotices):
    """Notices as Redis pub/sub messages on ``channel`` (:class:`SubscribedNotices`), pinged by ``PING``."""

    server = "Redis"
    ping_name = "PING"

    def __init__(self, alias: str, url: str, options: dict[str, Any], channel: str, *, interval: float):
        import redis

        timeout = float(options.get("socket_timeout") or SOCKET_TIMEOUT)
        self.channel = channel
        self._client = redis.Redis.from_url(
            url,
            socket_timeout=timeout,
            socket_connect_timeout=options.get("socket_connect_timeout") or timeout,
            **({"db": options["db"]} if "db" in options else {}),
        )
        super().__init__(alias, f"the cache {alias!r}", interval=interval, timeout=timeout)

    def _subscribe(self) -> tuple[Any, int, bool]:
        pubsub = self._client.pubsub()
        try:
            pubsub.subscribe(self.channel)
            deadline = monotonic() + self._timeout
            while True:
                message = pubsub.get_message(timeout=max(deadline - monotonic(), 0.0))
                if message is not None and message["type"] == "subscribe":
                    break
                if monotonic() >= deadline:
                    raise NoticesUnavailable("Redis did not confirm the subscription in time")
            connection = pubsub.connection  # typed Optional since redis 8; set once subscribed
            sock = getattr(connection, "_sock", None)
            if sock is None:
                raise NoticesUnavailable("Redis gave the subscription no socket")
        except BaseException:
            with contextlib.suppress(Exception):
                pubsub.close()
            raise
        return pubsub, sock.fileno(), isinstance(sock, ssl.SSLSocket)

    def _drain(self, pubsub: Any) -> None:
        connection = pubsub.connection
        # A reply can arrive in pieces (split across TCP segments): once part of one is
        # here, wait for the rest. Reading with a timeout of 0 would take that for a dead Redis.
        while connection.can_read(timeout=0):
            message = pubsub.get_message(timeout=self._timeout)
            if message is None:
                break
            if message["type"] == "message":
                self._received(message["data"])  # bytes: the client doesn't decode responses
            elif message["type"] == "pong":
                self._awaiting_pong = False

    def _ping(self, pubsub: Any) -> None:
        pubsub.ping()

    def _disconnect(self, pubsub: Any) -> None:
        pubsub.close()

    def _send(self, payload: bytes) -> None:
        self._client.publish(self.channel, payload)


class PostgresNotices(SubscribedNotices):
    """Notices as PostgreSQL ``NOTIFY`` messages on :data:`PG_CHANNEL` (:class:`SubscribedNotices`).

    The subscription is a connection of its own (psycopg 3, made from
    ``DATABASES[alias]`` as Django makes its own), in autocommit, that has run
    ``LISTEN``. It also listens on a channel no other process knows, and its
    ping is a ``NOTIFY`` there: the answer proves that notifications still
    reach this connection, not only that the server answers (behind a pooler
    in transaction mode, which drops them, the subscription keeps failing and
    the processes poll the database). A notice is sent with ``pg_notify()`` on
    Django's connection to ``alias``: inside a transaction PostgreSQL delivers
    it when that transaction commits, and never when it rolls back.

    A listener that stops reading holds back PostgreSQL's whole notification
    queue (it can't be truncated past what a listener has not read), and only
    requests read it: a process that stops serving them (an idle worker, a
    shell that decided once) must not listen on. So the connection sets
    ``idle_session_timeout`` (PostgreSQL 14 and later) to :attr:`idle_timeout`:
    unpinged that long, the server closes it, and the process's next read
    polls the database and connects again in the background.
    """

    server = "PostgreSQL"
    ping_name = "NOTIFY to itself"

    min_idle_timeout = 60.0
    """The least ``idle_session_timeout``, in seconds, of the connection (see the class doc)."""

    @property
    def idle_timeout(self) -> float:
        """Seconds without a ping before PostgreSQL closes the connection: three intervals, at least 60."""
        return max(self.min_idle_timeout, 3 * self.interval)

    def __init__(self, alias: str, *, interval: float) -> None:
        self.channel = PG_CHANNEL
        self._ping_channel = ""
        label = f"PostgreSQL's LISTEN/NOTIFY on the database {alias!r}"
        super().__init__(alias, label, interval=interval, timeout=SOCKET_TIMEOUT)

    def _subscribe(self) -> tuple[Any, int, bool]:
        import psycopg
        from django.db import connections

        params = connections[self.alias].get_connection_params()
        params.setdefault("connect_timeout", max(2, math.ceil(self._timeout)))  # libpq: whole seconds, >= 2
        params["application_name"] = APPLICATION_NAME  # what pg_stat_activity shows for it
        connection = psycopg.Connection.connect(**params, autocommit=True)
        try:
            ping_channel = f"stepup_ping_{os.getpid()}_{secrets.token_hex(6)}"
            connection.execute(f'LISTEN "{self.channel}"')
            connection.execute(f'LISTEN "{ping_channel}"')
            pgconn = connection.pgconn
            if pgconn.server_version >= 140000:
                milliseconds = min(int(self.idle_timeout * 1000), 2**31 - 1)
                connection.execute(f"SET idle_session_timeout = {milliseconds}")
            pgconn.nonblocking = 1  # a ping is sent without waiting
        except BaseException:
            connection.close()
            raise
        self._ping_channel = ping_channel
        return connection, pgconn.socket, bool(getattr(pgconn, "ssl_in_use", True))  # unknown: read always

    def _drain(self, connection: Any) -> None:
        from psycopg import OperationalError, pq

        pgconn = connection.pgconn
        pgconn.consume_input()  # raises when the server closed the connection
        probe = select.poll()  # not self._poll: read() may be polling it right now, outside the lock
        probe.register(pgconn.socket, select.POLLIN)
        if probe.poll(0):
            pgconn.consume_input()  # a server that closes says why first: the end may follow it
        if pgconn.status != pq.ConnStatus.OK:
            raise OperationalError("the connection to PostgreSQL is lost")
        while not pgconn.is_busy() and pgconn.get_result() is not None:
            pass  # the results of the pings' NOTIFY commands
        ping_channel = self._ping_channel.encode()
        while (notify := pgconn.notifies()) is not None:
            if notify.relname == ping_channel:
                self._awaiting_pong = False
            else:
                self._received(notify.extra)

    def _ping(self, connection: Any) -> None:
        pgconn = connection.pgconn
        pgconn.send_query(f'NOTIFY "{self._ping_channel}"'.encode())
        pgconn.flush()

    def _disconnect(self, connection: Any) -> None:
        connection.close()

    def _send(self, payload: bytes) -> None:
        from django.db import connections

        with connections[self.alias].cursor() as cursor:
            cursor.execute("SELECT pg_notify(%s, %s)", [self.channel, payload.decode()])


_start_lock = threading.Lock()
_live: weakref.WeakSet[SubscribedNotices] = weakref.WeakSet()


def _forget_subscriptions_in_child() -> None:
    """A forked child shares its parent's sockets but not its threads: it subscribes anew."""
    global _start_lock, _subscriptions_lock
    _start_lock, _subscriptions_lock = threading.Lock(), threading.Lock()  # a parent thread may hold them
    for notices in list(_live):
        if notices._connection is not None:
            _inherited.append(notices._connection)  # never used nor closed here: it is the parent's
        notices._reset()


_inherited: list[Any] = []


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_subscriptions_in_child)
