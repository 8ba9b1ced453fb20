"""Change notices: how one process tells the others that policies changed.

:mod:`stepup.store` asks :func:`notices_for` for the notices of the shared
cache (``STEPUP["CACHE"]``) and compares what :meth:`read` returns on every
request with what it saw when it last read the policy version from the
database; a difference makes it read the version again at once.

- **Redis** (Django's ``RedisCache``): :class:`RedisNotices`. The process that
  committed a change ``PUBLISH``-es on a channel; every process holds one
  subscription to it. A request only asks the kernel whether the
  subscription's socket has data (one ``poll`` system call, no round trip to
  Redis) and reads it when it has, so a change is seen on the first request
  that starts after its notice arrived. Once per ``RELOAD_INTERVAL`` a
  request also sends a ``PING``, so a Redis that went silent is noticed too.
  While there is no subscription, :meth:`RedisNotices.read` raises, the store
  polls the database, and a short-lived thread tries to subscribe again.
- **Any other shared cache** (Memcached, database, file): :class:`CacheNotices`,
  a random token under :data:`NOTICE_KEY`, rewritten after each change and
  read with one cache ``GET`` per request.

The local-memory and dummy backends are not shared between processes: with
them there are no notices and the store polls the database.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import select
import ssl
import threading
import weakref
from time import monotonic
from typing import Any, Protocol

from django.core.cache import InvalidCacheBackendError, caches
from django.core.cache.backends.base import BaseCache
from django.core.cache.backends.dummy import DummyCache
from django.core.cache.backends.locmem import LocMemCache

from stepup.exceptions import NoticesUnavailable

NOTICE_KEY = "stepup:policy-set:notice"
"""The cache key (or, with Redis, the channel, prefixed like a key) that carries change notices."""

GRANTS_PREFIX = b"grants:"
"""The start of a Redis message saying that grants were voided (:mod:`stepup.grant_cache`), not policies."""

SOCKET_TIMEOUT = 1.0
"""Seconds the Redis subscription waits to connect or for an answer, unless ``OPTIONS`` say otherwise."""

MIN_PING_INTERVAL = 0.25
"""Redis is pinged, and a lost subscription tried again, every ``RELOAD_INTERVAL`` (at least this) seconds."""


class Notices(Protocol):
    alias: str

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


_subscriptions: dict[tuple[str, str, str, float], RedisNotices] = {}
_subscriptions_lock = threading.Lock()


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
    key = (alias, url, cache.make_key(NOTICE_KEY), interval)
    with _subscriptions_lock:
        notices = _subscriptions.get(key)
        if notices is None:
            notices = _subscriptions[key] = RedisNotices(alias, url, options, key[2], interval=interval)
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


class RedisNotices:
    """Notices as Redis pub/sub messages, seen by this process through one subscription.

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
    ``interval`` a request sends a ``PING``; a ``PONG`` still missing one
    interval later means Redis is silent (a partition, a frozen server) and
    the subscription is dropped. Re-subscribing happens in a short-lived
    thread, never in a request, so an unreachable Redis never slows one down.
    """

    def __init__(self, alias: str, url: str, options: dict[str, Any], channel: str, *, interval: float):
        import redis

        self.alias = alias
        self.channel = channel
        self.interval = max(interval, MIN_PING_INTERVAL)
        self._timeout = float(options.get("socket_timeout") or SOCKET_TIMEOUT)
        self._client = redis.Redis.from_url(
            url,
            socket_timeout=self._timeout,
            socket_connect_timeout=options.get("socket_connect_timeout") or self._timeout,
            **({"db": options["db"]} if "db" in options else {}),
        )
        self._closed = False
        self._grants = 0
        self._reset()
        _live.add(self)

    def _reset(self) -> None:
        """Nothing subscribed (at start, and in a child process after ``fork``)."""
        self._lock = threading.Lock()
        self._pubsub: Any = None
        self._poll: Any = None  # a poll object on the subscription's socket, None while unsubscribed
        self._fd = -1
        self._tls = False
        self._count = 0
        self._grants += 1  # never back to a value an entry of stepup.grant_cache was made under
        self._error: str | None = "not subscribed yet"
        self._ping_at = float("inf")  # when the next PING (or the check of the last one's PONG) is due
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
        if only_if_missing:
            return  # a message can't be missing: the subscribers count (re)subscriptions themselves
        self._client.publish(self.channel, secrets.randbits(62) + 1)

    def write_grants(self) -> None:
        """Tell every process that grants were voided (after the change committed)."""
        self._client.publish(self.channel, GRANTS_PREFIX + str(secrets.randbits(62)).encode())

    def close(self) -> None:
        self._closed = True
        with self._lock:
            self._unsubscribe("closed")

    # -- the subscription (always under _lock) --

    def _subscribe_or_fail(self) -> None:
        if self._closed:
            return
        try:
            pubsub = self._client.pubsub()
            pubsub.subscribe(self.channel)
            deadline = monotonic() + self._timeout
            while True:
                message = pubsub.get_message(timeout=max(deadline - monotonic(), 0.0))
                if message is not None and message["type"] == "subscribe":
                    break
                if monotonic() >= deadline:
                    raise NoticesUnavailable("Redis did not confirm the subscription in time")
        except Exception as exc:
            self._error = brief(exc)
            return
        connection = pubsub.connection  # typed Optional since redis 8; set once subscribed
        sock = getattr(connection, "_sock", None)
        if sock is None:
            pubsub.close()
            self._error = "Redis gave the subscription no socket"
            return
        self._pubsub, self._fd, self._tls = pubsub, sock.fileno(), isinstance(sock, ssl.SSLSocket)
        self._count += 1  # notices may have been missed while unsubscribed
        self._grants += 1
        self._error = None
        self._ping_at, self._awaiting_pong = monotonic() + self.interval, False
        poll = select.poll()
        poll.register(self._fd, select.POLLIN)
        self._poll = poll  # last: read() takes a poll object as "subscribed"

    def _drain_or_fail(self) -> None:
        if self._pubsub is None:
            return
        connection = self._pubsub.connection
        try:
            # A reply can arrive in pieces (split across TCP segments): once part of one is
            # here, wait for the rest. Reading with a timeout of 0 would take that for a dead Redis.
            while connection.can_read(timeout=0):
                message = self._pubsub.get_message(timeout=self._timeout)
                if message is None:
                    break
                if message["type"] == "message":
                    data = message["data"]  # bytes: the client doesn't decode responses
                    if isinstance(data, bytes) and data.startswith(GRANTS_PREFIX):
                        self._grants += 1
                    else:
                        self._count += 1
                elif message["type"] == "pong":
                    self._awaiting_pong = False
        except Exception as exc:
            self._unsubscribe(brief(exc))

    def _ping_or_fail(self) -> None:
        if self._pubsub is None or monotonic() < self._ping_at:
            return
        if self._awaiting_pong:
            self._unsubscribe(f"Redis did not answer a PING within {self.interval:g}s")
            return
        try:
            self._pubsub.ping()
        except Exception as exc:
            self._unsubscribe(brief(exc))
            return
        self._ping_at, self._awaiting_pong = monotonic() + self.interval, True

    def _unsubscribe(self, error: str) -> None:
        self._poll = None  # first: read() stops trusting the socket
        pubsub, self._pubsub, self._fd, self._error = self._pubsub, None, -1, error
        if pubsub is not None:
            with contextlib.suppress(Exception):  # closing a broken connection
                pubsub.close()

    # -- re-subscribing --

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
            if self._pubsub is None:
                self._subscribe_or_fail()


_start_lock = threading.Lock()
_live: weakref.WeakSet[RedisNotices] = weakref.WeakSet()


def _forget_subscriptions_in_child() -> None:
    """A forked child shares its parent's sockets but not its threads: it subscribes anew."""
    global _start_lock, _subscriptions_lock
    _start_lock, _subscriptions_lock = threading.Lock(), threading.Lock()  # a parent thread may hold them
    for notices in list(_live):
        notices._reset()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_subscriptions_in_child)
