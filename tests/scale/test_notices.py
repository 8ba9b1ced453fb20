"""Change notices through Redis pub/sub (:class:`stepup.notices.RedisNotices`), against a real Redis.

Each test subscribes on a channel of its own and closes what it opened. Redis
is reached directly, or through a :class:`TcpProxy` where a test needs it to
go away or silent, or to see what the subscription sends; the notices are
sent from another redis-py client, as another process would send them.

No thread runs while a subscription is well: the requests (here, the test's
calls of ``read()``) read its socket and send its PINGs. Only while it is
lost does a short-lived thread (``stepup-notices-<alias>``) subscribe again.
"""

from __future__ import annotations

import contextlib
import itertools
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
from stepup.notices import RedisNotices
from tests.scale.conftest import redis_address
from tests.scale.harness import TcpProxy, Timed, close_all_checked, error_of, eventually, fails, with_address

pytestmark = [pytest.mark.postgres, pytest.mark.redis]

INTERVAL = 0.5  # the interval of the subscriptions here (PING, and retry after a failure)
ALIAS = "test"
RETRY_THREAD = f"stepup-notices-{ALIAS}"
PING = b"*1\r\n$4\r\nPING\r\n"  # a PING as redis-py sends it
QUICK = 0.05  # no read() may take longer, whatever Redis does


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
        subscription = RedisNotices(ALIAS, url or scale.redis_url, options, channel, interval=interval)
        made.append(subscription)
        return subscription

    yield make
    close_all_checked(made)


@pytest.fixture
def proxy(scale) -> Iterator[TcpProxy]:
    proxy = TcpProxy(*redis_address(scale.redis_url))
    yield proxy
    proxy.close()


def through(proxy: TcpProxy, scale) -> str:
    return with_address(scale.redis_url, "127.0.0.1", proxy.port)


class Attempts:
    """Every attempt to subscribe (``_subscribe_or_fail``) from now on: when, in which thread, and whether it did."""

    def __init__(self, subscription: RedisNotices) -> None:
        self.calls: list[tuple[float, str, bool]] = []
        attempt = subscription._subscribe_or_fail

        def recorded() -> None:
            started = time.monotonic()
            attempt()
            self.calls.append(
                (started, threading.current_thread().name, subscription._connection is not None)
            )

        subscription._subscribe_or_fail = recorded  # type: ignore[method-assign]

    def __len__(self) -> int:
        return len(self.calls)

    def threads(self) -> set[str]:
        return {name for _, name, _ in self.calls}

    def shortest_gap(self) -> float:
        starts = [started for started, _, _ in self.calls]
        return min((b - a for a, b in itertools.pairwise(starts)), default=float("inf"))


def retry_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == RETRY_THREAD]


def wait_readable(subscription: RedisNotices, timeout: float = 2.0) -> None:
    """Until the subscription's socket has data (a notice on its way is there within milliseconds)."""
    poll = select.poll()
    poll.register(subscription._fd, select.POLLIN)
    assert poll.poll(timeout * 1000), f"nothing arrived on the subscription within {timeout}s"


def local_port(subscription: RedisNotices) -> int:
    return int(subscription._connection.connection._sock.getsockname()[1])


def client_id(redis: Any, subscription: RedisNotices) -> str:
    port = local_port(subscription)
    (client,) = [c for c in redis.client_list(_type="pubsub") if c["addr"].endswith(f":{port}")]
    return str(client["id"])


def subscribers(redis: Any, channel: str) -> int:
    return int(dict(redis.pubsub_numsub(channel))[channel.encode()])


def sent_since(proxy: TcpProxy, mark: int) -> bytes:
    """What the proxy's clients sent to Redis since ``len(proxy.from_clients)`` was ``mark``."""
    time.sleep(0.05)  # what was just sent is through the proxy by now
    return bytes(proxy.from_clients[mark:])


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


def test_the_very_next_read_sees_a_notice_and_no_thread_is_involved(make, redis, channel):
    threads = set(threading.enumerate())
    subscription = make()
    before = subscription.read()  # the first read subscribes, in this thread
    assert subscription.read() == before  # nothing pending, nothing read

    assert redis.publish(channel, "1") == 1
    wait_readable(subscription)
    assert subscription.read() == before + 1  # the very next read, by this thread alone

    redis.publish(channel, "2")
    redis.publish(channel, "3")
    wait_readable(subscription)
    eventually(lambda: subscription.read() == before + 3, timeout=2, interval=0.002)
    assert subscription.read() == before + 3
    assert set(threading.enumerate()) - threads == set()  # no thread started, not even briefly...
    assert subscription._retrying is None  # ...no retry thread either


def test_read_costs_no_round_trip_to_redis_only_a_ping_per_interval(make, proxy, scale):
    subscription = make(through(proxy, scale), interval=0.25)
    subscription.read()
    mark = len(sent_since(proxy, 0))
    started = time.monotonic()
    counts = set()
    for _ in range(1000):
        counts.add(subscription.read())  # raises if a PONG went missing
        time.sleep(0.001)  # 1,000 reads over more than 4 intervals
    elapsed = time.monotonic() - started
    sent = sent_since(proxy, mark)

    assert len(counts) == 1
    pings = sent.count(PING)
    assert sent == PING * pings, sent  # nothing but PINGs: a GET or other command each would show 1,000
    assert 2 <= pings <= elapsed / 0.25 + 1, (pings, elapsed)  # one per interval, sent by the reads


def test_an_idle_subscription_sends_nothing_and_the_next_read_pings(make, proxy, scale):
    subscription = make(through(proxy, scale))
    count = subscription.read()
    mark = len(sent_since(proxy, 0))
    threads = set(threading.enumerate())

    time.sleep(3 * INTERVAL)  # no request: no PING, no thread, nothing
    assert sent_since(proxy, mark) == b""
    assert set(threading.enumerate()) - threads == set()

    assert subscription.read() == count  # a PING is due: this read sends it, without waiting for its PONG
    assert sent_since(proxy, mark) == PING
    until = time.monotonic() + 2 * INTERVAL  # and its PONG came: reads keep working
    while time.monotonic() < until:
        assert subscription.read() == count
        time.sleep(0.02)
    assert sent_since(proxy, mark).count(PING) <= 3


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


def test_a_killed_subscription_fails_at_once_and_a_retry_thread_resubscribes(make, redis, channel):
    subscription = make()
    before = subscription.read()
    port = local_port(subscription)
    attempts = Attempts(subscription)
    timed = Timed(subscription)
    assert redis.client_kill_filter(_id=client_id(redis, subscription)) == 1

    elapsed = eventually(timed.fails, timeout=INTERVAL / 2, interval=0.002)
    assert elapsed < INTERVAL / 2
    assert "ConnectionError" in error_of(subscription)

    # A later read starts a thread that subscribes again; no read waits for it.
    eventually(lambda: not timed.fails(), timeout=INTERVAL + 1, interval=0.01)
    assert timed.slowest < QUICK, timed.slowest
    assert len(attempts) == 1 and attempts.threads() == {RETRY_THREAD}  # not a request
    assert not any(t.is_alive() for t in retry_threads())  # it ended with the attempt
    # Notices may have been missed meanwhile: the count went up, so the store reads the version.
    after = subscription.read()
    assert after > before
    assert local_port(subscription) != port
    assert redis.publish(channel, "1") == 1
    eventually(lambda: subscription.read() == after + 1, timeout=2, interval=0.002)


def test_while_redis_is_cut_one_thread_tries_once_per_interval(make, redis, channel, proxy, scale):
    subscription = make(through(proxy, scale))
    before = subscription.read()
    attempts = Attempts(subscription)
    timed = Timed(subscription)
    proxy.cut()
    eventually(timed.fails, timeout=INTERVAL / 2, interval=0.002)  # the reset is seen at once

    started = time.monotonic()
    while time.monotonic() - started < 4 * INTERVAL:
        assert timed.fails()
        assert len(retry_threads()) <= 1
        time.sleep(0.01)
    spent = time.monotonic() - started
    eventually(lambda: not retry_threads(), timeout=2)  # the last attempt is over

    assert timed.slowest < QUICK, timed.slowest  # ~200 reads, none waited for a connect
    assert attempts.threads() == {RETRY_THREAD}  # never in a request
    assert 3 <= len(attempts) <= spent / INTERVAL + 1, (len(attempts), spent)
    assert attempts.shortest_gap() >= INTERVAL - 0.05, attempts.calls
    eventually(lambda: proxy.refused == len(attempts), timeout=1)  # one connection per attempt

    proxy.restore()
    eventually(lambda: not fails(subscription), timeout=INTERVAL + 2, interval=0.01)
    after = subscription.read()
    assert after > before
    assert redis.publish(channel, "1") == 1
    eventually(lambda: subscription.read() == after + 1, timeout=2, interval=0.002)


def test_a_silent_redis_fails_after_an_unanswered_ping_and_recovers(make, redis, channel, proxy, scale):
    subscription = make(through(proxy, scale))
    before = subscription.read()
    assert redis.publish(channel, "1") == 1  # through the proxy
    eventually(lambda: subscription.read() == before + 1, timeout=2, interval=0.002)
    timed = Timed(subscription)
    until = time.monotonic() + 2 * INTERVAL  # well, with requests every 50 ms (and their PINGs)
    while time.monotonic() < until:
        assert not timed.fails()
        time.sleep(0.05)

    proxy.freeze()
    elapsed = eventually(timed.fails, timeout=3 * INTERVAL + 1, interval=0.05)
    # A PING within an interval, then an interval without its PONG.
    assert elapsed <= 2 * INTERVAL + 0.3, elapsed
    assert "did not answer a PING" in error_of(subscription)
    attempts = Attempts(subscription)
    redis.publish(channel, "2")  # held: never reaches this subscription

    # A thread tries again, each try waits for Redis (here a second), the requests never do.
    started = time.monotonic()
    while time.monotonic() - started < 5 * INTERVAL:
        assert timed.fails()
        assert len(retry_threads()) <= 1
        time.sleep(0.05)
    eventually(lambda: not retry_threads(), timeout=3)  # the last attempt is over
    assert timed.slowest < QUICK, timed.slowest
    assert len(attempts) >= 2 and attempts.threads() == {RETRY_THREAD}, attempts.calls
    assert attempts.shortest_gap() >= INTERVAL - 0.05, attempts.calls
    assert proxy.held >= 2

    proxy.restore()
    eventually(lambda: not fails(subscription), timeout=2 * INTERVAL + 2, interval=0.01)
    after = subscription.read()
    assert after > before + 1
    assert redis.publish(channel, "3") >= 1
    eventually(lambda: subscription.read() == after + 1, timeout=2, interval=0.002)


def test_requests_at_once_start_one_retry_thread_between_them(make, proxy, scale):
    subscription = make(through(proxy, scale))
    subscription.read()
    proxy.cut()
    eventually(lambda: fails(subscription), timeout=INTERVAL / 2, interval=0.002)
    assert fails(subscription)  # the first retry: refused at once
    eventually(lambda: not retry_threads(), timeout=1)
    time.sleep(INTERVAL)  # the next retry is due
    attempts = Attempts(subscription)

    # Two requests reach the check for a live retry thread together (as two of a server's threads can):
    # the previous, ended thread is made to answer only once both asked (or after a while, if only one can).
    both = threading.Barrier(2, timeout=INTERVAL / 2)

    class Ended:
        def is_alive(self) -> bool:
            with contextlib.suppress(threading.BrokenBarrierError):
                both.wait()
            return False

    subscription._retrying = Ended()  # type: ignore[assignment]
    requests = [threading.Thread(target=fails, args=(subscription,)) for _ in range(2)]
    for request in requests:
        request.start()
    for request in requests:
        request.join(5)
    eventually(lambda: not retry_threads(), timeout=2)
    assert len(attempts) == 1, attempts.calls


# --- ending subscriptions ----------------------------------------------------------------


def test_close_ends_the_subscription_for_good(make, redis, channel):
    subscription = make()
    subscription.read()
    assert subscribers(redis, channel) == 1
    attempts = Attempts(subscription)

    subscription.close()
    assert "closed" in error_of(subscription)
    eventually(lambda: subscribers(redis, channel) == 0, timeout=2)
    until = time.monotonic() + 2 * INTERVAL  # reads go on: nothing tries to subscribe again
    while time.monotonic() < until:
        assert "closed" in error_of(subscription)
        time.sleep(0.02)
    assert len(attempts) == 0 and subscription._retrying is None
    assert subscribers(redis, channel) == 0


def test_close_during_a_retry_leaves_nothing_subscribed(make, redis, channel, proxy, scale):
    subscription = make(through(proxy, scale))
    subscription.read()
    proxy.cut()
    eventually(lambda: fails(subscription), timeout=INTERVAL / 2, interval=0.002)
    proxy.restore()
    proxy.freeze()
    attempts = Attempts(subscription)
    assert fails(subscription)  # starts a retry thread: its connection is held
    eventually(lambda: proxy.held == 1, timeout=1)

    closing = threading.Thread(target=subscription.close)
    closing.start()
    time.sleep(0.1)
    proxy.restore()  # the attempt succeeds, after close() began
    closing.join(5)
    assert not closing.is_alive()
    eventually(lambda: len(attempts) == 1, timeout=2)
    assert attempts.calls[0][2], "the retry did not subscribe: the test missed its point"

    assert "closed" in error_of(subscription)
    eventually(lambda: subscribers(redis, channel) == 0, timeout=2)
    time.sleep(INTERVAL)
    assert "closed" in error_of(subscription)
    assert subscribers(redis, channel) == 0


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
        assert subscribers(redis, shared.channel) == 1

        notices.close_all()
        assert notices._subscriptions == {}
        assert "closed" in error_of(shared)
        eventually(lambda: subscribers(redis, shared.channel) == 0, timeout=2)
        time.sleep(INTERVAL)
        assert fails(shared)  # and it stays closed
        assert shared._retrying is None
        assert subscribers(redis, shared.channel) == 0
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


def test_redis_down_at_the_first_read_is_tried_once_per_interval(make, proxy, scale):
    proxy.cut()
    subscription = make(through(proxy, scale))
    attempts = Attempts(subscription)
    assert fails(subscription)  # the first read tries at once, and waits for it
    deadline = time.monotonic() + INTERVAL * 0.8
    while time.monotonic() < deadline:
        assert fails(subscription)
        time.sleep(0.01)
    assert len(attempts) == 1, attempts.calls  # no second attempt within the same interval
    proxy.restore()
    eventually(lambda: not fails(subscription), timeout=INTERVAL * 3, interval=0.01)
    assert len(attempts) == 2 and attempts.threads() == {"MainThread", RETRY_THREAD}
