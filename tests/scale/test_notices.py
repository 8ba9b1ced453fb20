"""Change notices through Redis pub/sub (:class:`stepup.notices.RedisNotices`), against a real Redis.

Each test subscribes on a channel of its own and closes what it opened. Redis
is reached directly, or through a :class:`TcpProxy` where a test needs it to
go silent; the notices are sent from another redis-py client, as another
process would send them.
"""

from __future__ import annotations

import json
import os
import secrets
import select
import signal
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from stepup import notices
from stepup.notices import NoticesUnavailable, RedisNotices
from tests.scale.conftest import redis_address
from tests.scale.harness import TcpProxy, eventually, with_address

pytestmark = [pytest.mark.postgres, pytest.mark.redis]

INTERVAL = 0.5  # the interval of the subscriptions here (PING, and retry after a failure)


@pytest.fixture
def channel(scale) -> str:
    return f"{scale.prefix}:notices:{secrets.token_hex(6)}"


@pytest.fixture
def redis(scale) -> Iterator[Any]:
    """A client of its own, as another process would have."""
    client = scale.redis()
    yield client
    client.close()


@pytest.fixture
def make(scale, channel) -> Iterator[Callable[..., RedisNotices]]:
    """``make(url=…, interval=…)``: a :class:`RedisNotices` on the test's channel, closed at the end."""
    made: list[RedisNotices] = []

    def make(url: str | None = None, *, interval: float = INTERVAL, **options: Any) -> RedisNotices:
        subscription = RedisNotices("test", url or scale.redis_url, options, channel, interval=interval)
        made.append(subscription)
        return subscription

    yield make
    for subscription in made:
        subscription.close()
    for subscription in made:
        if subscription._thread is not None and subscription._thread.ident is not None:
            subscription._thread.join(5)


@pytest.fixture
def proxy(scale) -> Iterator[TcpProxy]:
    proxy = TcpProxy(*redis_address(scale.redis_url))
    yield proxy
    proxy.close()


def through(proxy: TcpProxy, scale) -> str:
    return with_address(scale.redis_url, "127.0.0.1", proxy.port)


def fails(subscription: RedisNotices) -> bool:
    try:
        subscription.read()
    except NoticesUnavailable:
        return True
    return False


def error_of(subscription: RedisNotices) -> str:
    with pytest.raises(NoticesUnavailable) as raised:
        subscription.read()
    return str(raised.value)


def wait_readable(subscription: RedisNotices, timeout: float = 2.0) -> None:
    """Until the subscription's socket has data (a notice on its way is there within milliseconds)."""
    poll = select.poll()
    poll.register(subscription._fd, select.POLLIN)
    assert poll.poll(timeout * 1000), f"nothing arrived on the subscription within {timeout}s"


def local_port(subscription: RedisNotices) -> int:
    return int(subscription._pubsub.connection._sock.getsockname()[1])


def subscribers(redis: Any, channel: str) -> int:
    return int(dict(redis.pubsub_numsub(channel))[channel.encode()])


def command_calls(redis: Any) -> dict[str, int]:
    """Calls per command since Redis started (``INFO commandstats``)."""
    return {name: stats["calls"] for name, stats in redis.info("commandstats").items()}


# --- reading notices ---------------------------------------------------------------------


def test_a_publish_from_another_client_is_read(make, redis, channel):
    subscription = make()
    before = subscription.read()
    assert redis.publish(channel, "1") == 1  # this subscription, and no other, got it

    eventually(lambda: subscription.read() != before, timeout=2, interval=0.002)
    assert subscription.read() == before + 1

    assert redis.publish(channel, "2") == 1
    assert redis.publish(channel, "3") == 1
    eventually(lambda: subscription.read() == before + 3, timeout=2, interval=0.002)


def test_the_request_path_reads_pending_notices_without_the_listener_thread(make, redis, channel):
    subscription = make()
    with subscription._lock:
        subscription._subscribe_or_fail()
    subscription._thread = threading.Thread(target=lambda: None)  # never started: no listener
    before = subscription.read()
    assert subscription.read() == before  # nothing pending, nothing read

    assert redis.publish(channel, "1") == 1
    wait_readable(subscription)
    assert subscription.read() == before + 1  # the very next read, by this thread alone

    redis.publish(channel, "2")
    redis.publish(channel, "3")
    wait_readable(subscription)
    eventually(lambda: subscription.read() == before + 3, timeout=2, interval=0.002)
    assert subscription.read() == before + 3
    assert not subscription._thread.is_alive()


def test_read_costs_no_round_trip_to_redis(make, redis):
    subscription = make(interval=0.25)
    subscription.read()
    before = command_calls(redis)
    started = time.monotonic()
    counts = {subscription.read() for _ in range(1000)}
    elapsed = time.monotonic() - started
    after = command_calls(redis)

    assert len(counts) == 1
    delta = {name: after.get(name, 0) - before.get(name, 0) for name in after}
    pings = delta.pop("cmdstat_ping", 0)
    delta.pop("cmdstat_info", None)  # command_calls itself
    others = {name: n for name, n in delta.items() if n}
    assert sum(others.values()) <= 3, others  # 1,000 reads; a GET or PING each would show 1,000
    assert pings <= elapsed / 0.25 + 2, (pings, elapsed)  # the listener's, one per interval


def test_a_notice_split_across_tcp_segments_is_read_whole(make, redis, channel, proxy, scale):
    subscription = make(through(proxy, scale))
    before = subscription.read()
    proxy.split_pause = 0.05  # every reply arrives in two halves 50 ms apart
    seen: list[int] = []

    def read() -> bool:
        seen.append(subscription.read())  # raises if a half was taken for a broken connection
        return seen[-1] > before

    assert redis.publish(channel, "1") == 1
    eventually(read, timeout=2, interval=0.002)
    assert seen[-1] == before + 1
    # Through a few PINGs (their PONGs split too), the subscription stays up.
    until = time.monotonic() + 3 * INTERVAL
    while time.monotonic() < until:
        assert subscription.read() == before + 1
        time.sleep(0.01)


# --- losing Redis, and getting it back ---------------------------------------------------


def test_a_killed_subscription_fails_at_once_and_resubscribes(make, redis, channel):
    subscription = make()
    before = subscription.read()
    port = local_port(subscription)
    (client,) = [c for c in redis.client_list(_type="pubsub") if c["addr"].endswith(f":{port}")]
    assert redis.client_kill_filter(_id=client["id"]) == 1

    elapsed = eventually(lambda: fails(subscription), timeout=INTERVAL / 2, interval=0.002)
    assert elapsed < INTERVAL / 2
    assert "ConnectionError" in error_of(subscription)

    eventually(lambda: not fails(subscription), timeout=3 * INTERVAL + 1)
    # Notices may have been missed meanwhile: the count went up, so the store reads the version.
    after = subscription.read()
    assert after > before
    assert local_port(subscription) != port
    assert redis.publish(channel, "1") == 1
    eventually(lambda: subscription.read() == after + 1, timeout=2, interval=0.002)


def test_a_silent_redis_fails_after_an_unanswered_ping_and_recovers(make, redis, channel, proxy, scale):
    subscription = make(through(proxy, scale))
    before = subscription.read()
    assert redis.publish(channel, "1") == 1  # through the proxy
    eventually(lambda: subscription.read() == before + 1, timeout=2, interval=0.002)

    slowest = 0.0

    def timed_fails() -> bool:
        nonlocal slowest
        started = time.monotonic()
        failed = fails(subscription)
        slowest = max(slowest, time.monotonic() - started)
        return failed

    proxy.freeze()
    elapsed = eventually(timed_fails, timeout=3 * INTERVAL + 1, interval=0.005)
    assert elapsed <= 3 * INTERVAL + 0.25, elapsed  # a PING, then an interval without its PONG
    assert "did not answer a PING" in error_of(subscription)
    redis.publish(channel, "2")  # held: never reaches this subscription
    # The listener tries again every interval; each try waits for Redis, the requests never do.
    eventually(lambda: proxy.held >= 2, timeout=4 * INTERVAL + 2)
    until = time.monotonic() + INTERVAL
    while time.monotonic() < until:
        assert timed_fails()
        time.sleep(0.005)
    assert slowest < 0.05, slowest

    proxy.restore()
    eventually(lambda: not fails(subscription), timeout=2 * INTERVAL + 2)
    after = subscription.read()
    assert after > before + 1
    assert redis.publish(channel, "3") >= 1
    eventually(lambda: subscription.read() == after + 1, timeout=2, interval=0.002)


# --- ending subscriptions ----------------------------------------------------------------


def test_close_stops_the_listener_and_ends_the_subscription(make, redis, channel):
    subscription = make()
    subscription.read()
    listener = subscription._thread
    assert listener is not None and listener.is_alive()
    assert subscribers(redis, channel) == 1

    subscription.close()
    listener.join(INTERVAL + 0.5)
    assert not listener.is_alive()
    assert "closed" in error_of(subscription)
    eventually(lambda: subscribers(redis, channel) == 0, timeout=2)


def test_close_all_ends_every_shared_subscription_and_empties_the_registry(settings, scale, redis):
    settings.CACHES = {
        "default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"},
        "notices": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": scale.redis_url,
            "KEY_PREFIX": f"{scale.prefix}-{secrets.token_hex(4)}",
        },
    }
    try:
        shared = notices.notices_for("notices", interval=INTERVAL)
        assert isinstance(shared, RedisNotices)
        assert notices.notices_for("notices", interval=INTERVAL) is shared  # one per process
        shared.read()
        listener = shared._thread
        assert listener is not None and listener.is_alive()
        assert subscribers(redis, shared.channel) == 1

        notices.close_all()
        assert notices._subscriptions == {}
        listener.join(INTERVAL + 0.5)
        assert not listener.is_alive()
        assert fails(shared)
        eventually(lambda: subscribers(redis, shared.channel) == 0, timeout=2)
        assert notices.notices_for("notices", interval=INTERVAL) is not shared
    finally:
        notices.close_all()


# --- a forked child ----------------------------------------------------------------------


def _child(subscription: RedisNotices, results: int, go: int) -> None:
    """In the forked child: subscribe anew, report, wait for a notice, report again."""

    def report(**fields: Any) -> None:
        os.write(results, (json.dumps(fields) + "\n").encode())

    before = subscription.read()
    report(port=local_port(subscription), before=before)
    assert select.select([go], [], [], 5)[0], "the parent never published"
    deadline = time.monotonic() + 5
    while subscription.read() == before and time.monotonic() < deadline:
        time.sleep(0.002)
    report(after=subscription.read())


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # fork() in a multi-threaded process
def test_a_forked_child_subscribes_anew_and_the_parent_keeps_its_subscription(make, redis, channel):
    parent = make()
    before = parent.read()
    parent_port = local_port(parent)
    results_r, results_w = os.pipe()
    go_r, go_w = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        status = 1
        try:
            os.close(results_r)
            _child(parent, results_w, go_r)
            status = 0
        except BaseException as exc:
            os.write(results_w, (json.dumps({"error": repr(exc)}) + "\n").encode())
        finally:
            os._exit(status)
    os.close(results_w)
    os.close(go_r)
    received = b""

    def answer() -> dict[str, Any]:
        nonlocal received
        deadline = time.monotonic() + 10
        while b"\n" not in received:
            left = deadline - time.monotonic()
            assert left > 0 and select.select([results_r], [], [], left)[0], "the child did not answer"
            chunk = os.read(results_r, 4096)
            assert chunk, "the child exited without an answer"
            received += chunk
        line, received = received.split(b"\n", 1)
        fields = json.loads(line)
        assert "error" not in fields, fields["error"]
        return fields

    try:
        child = answer()
        assert child["port"] != parent_port  # a socket of its own, not the parent's
        assert subscribers(redis, channel) == 2
        assert redis.publish(channel, "1") == 2
        os.write(go_w, b"go")
        assert answer()["after"] == child["before"] + 1
    finally:
        os.close(go_w)
        os.close(results_r)
        deadline = time.monotonic() + 10
        while os.waitpid(pid, os.WNOHANG) == (0, 0):
            if time.monotonic() > deadline:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
                break
            time.sleep(0.01)

    # The child's exit closed its copies of the parent's sockets, not the parent's subscription.
    eventually(lambda: subscribers(redis, channel) == 1, timeout=2)
    eventually(lambda: parent.read() == before + 1, timeout=2, interval=0.002)
    assert local_port(parent) == parent_port
    assert redis.publish(channel, "2") == 1
    eventually(lambda: parent.read() == before + 2, timeout=2, interval=0.002)


# --- writing notices ---------------------------------------------------------------------


@pytest.fixture
def listener(redis, channel) -> Iterator[Any]:
    """A plain redis-py subscriber on the test's channel (subscribed when this returns)."""
    pubsub = redis.pubsub()
    pubsub.subscribe(channel)
    assert pubsub.get_message(timeout=2)["type"] == "subscribe"
    yield pubsub
    pubsub.close()


def test_write_publishes_a_notice_that_subscribers_receive(make, listener, channel):
    writer, reader = make(), make()
    before = reader.read()
    writer.write()
    message = listener.get_message(timeout=2)
    assert message is not None and message["type"] == "message"
    assert message["channel"] == channel.encode()
    assert int(message["data"]) > 0
    eventually(lambda: reader.read() == before + 1, timeout=2, interval=0.002)


def test_write_only_if_missing_publishes_nothing(make, listener, redis, channel):
    writer = make()
    writer.write(only_if_missing=True)
    redis.publish(channel, "sentinel")  # after the write: it would come second
    message = listener.get_message(timeout=2)
    assert message is not None and message["data"] == b"sentinel"
