"""Change notices through PostgreSQL's LISTEN/NOTIFY (:class:`stepup.notices.PostgresNotices`), against a real server.

Each subscription is made for a database alias of its own, pointed at the
scale run's fresh database directly or through a :class:`TcpProxy` where a
test needs the server to go away or silent, or to see what the subscription
sends; notices come from another psycopg connection, as another process
sends them. The end-to-end versions (two gunicorn servers and a worker
process, no Redis at all) are the ``[database]`` cases of
``test_hot_reload.py`` and ``test_grant_cache.py``.
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
from django.db import connections, transaction

from stepup import notices
from stepup.notices import PG_CHANNEL, PostgresNotices
from tests.scale.conftest import postgres_address
from tests.scale.harness import TcpProxy, Timed, close_all_checked, error_of, eventually, fails

pytestmark = [pytest.mark.postgres]

INTERVAL = 0.5
QUICK = 0.05  # no read() may take longer, whatever PostgreSQL does


@pytest.fixture
def database(scale) -> Iterator[Callable[..., str]]:
    """``database(port=None)``: a new alias for the run's database (through ``port`` if given)."""
    import dj_database_url

    made: list[str] = []

    def database(port: int | None = None) -> str:
        alias = f"notices_{secrets.token_hex(4)}"
        config = dj_database_url.parse(scale.database.url)
        if port is not None:
            config.update(HOST="127.0.0.1", PORT=port)
        configured = connections.configure_settings({"default": config, alias: dict(config)})
        connections.settings[alias] = configured[alias]
        made.append(alias)
        return alias

    yield database
    for alias in made:
        connections[alias].close()
        del connections[alias]
        del connections.settings[alias]


@pytest.fixture
def make(database) -> Iterator[Callable[..., PostgresNotices]]:
    """``make(alias=None, interval=…)``: a subscription, closed (with its retry thread) at the end."""
    made: list[PostgresNotices] = []

    def make(alias: str | None = None, *, interval: float = INTERVAL) -> PostgresNotices:
        subscription = PostgresNotices(alias or database(), interval=interval)
        made.append(subscription)
        return subscription

    yield make
    close_all_checked(made)


@pytest.fixture
def other(scale) -> Iterator[Any]:
    """A psycopg connection of its own, in autocommit, as another process would have."""
    import psycopg

    connection = psycopg.connect(scale.database.url, autocommit=True)
    yield connection
    connection.close()


@pytest.fixture
def proxy(scale) -> Iterator[TcpProxy]:
    proxy = TcpProxy(*postgres_address(scale.database.url))
    yield proxy
    proxy.close()


def notify(connection: Any, payload: str, channel: str = PG_CHANNEL) -> None:
    connection.execute("SELECT pg_notify(%s, %s)", [channel, payload])


def backend_pid(subscription: PostgresNotices) -> int:
    return int(subscription._connection.info.backend_pid)


def retry_threads(subscription: PostgresNotices) -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == f"stepup-notices-{subscription.alias}"]


# --- reading notices ---------------------------------------------------------------------


def test_a_notify_from_another_connection_is_seen_by_the_next_read(make, other):
    subscription = make()
    before, grants = subscription.read(), subscription.read_grants()
    notify(other, "123")
    eventually(lambda: subscription.read() == before + 1, timeout=2, interval=0.002)
    assert subscription.read_grants() == grants  # a policy notice voids no grants

    notify(other, "grants:456")
    eventually(lambda: subscription.read_grants() == grants + 1, timeout=2, interval=0.002)
    assert subscription.read() == before + 1  # and a grants notice changes no policies
    assert not retry_threads(subscription)  # no thread while all is well


def test_write_and_write_grants_reach_every_subscription_of_the_database(make, database, django_db_blocker):
    alias = database()
    sender, receiver = make(alias), make()
    before, grants = receiver.read(), receiver.read_grants()
    mine = sender.read()
    with django_db_blocker.unblock():
        sender.write()
        eventually(lambda: receiver.read() == before + 1, timeout=2, interval=0.002)
        sender.write_grants()
        eventually(lambda: receiver.read_grants() == grants + 1, timeout=2, interval=0.002)
        sender.write(only_if_missing=True)  # a message can't be missing: nothing is sent
        time.sleep(0.1)
    assert receiver.read() == before + 1
    assert sender.read() == mine + 1  # the sender hears its own notice too


def test_a_notice_sent_in_a_transaction_arrives_at_its_commit_and_never_after_a_rollback(
    make, database, django_db_blocker
):
    alias = database()
    sender, receiver = make(alias), make()
    before = receiver.read()
    with django_db_blocker.unblock():
        with pytest.raises(RuntimeError), transaction.atomic(using=alias):
            sender.write()
            raise RuntimeError("rolled back")
        time.sleep(0.2)
        assert receiver.read() == before, "a rolled-back notice arrived"

        with transaction.atomic(using=alias):
            sender.write()
            time.sleep(0.2)
            assert receiver.read() == before, "a notice arrived before its transaction committed"
        eventually(lambda: receiver.read() == before + 1, timeout=2, interval=0.002)


def test_read_costs_no_round_trip_only_a_ping_per_interval(make, database, proxy):
    subscription = make(database(proxy.port))
    subscription.read()  # subscribes: the first ping is due an interval from now
    subscribed = time.monotonic()
    time.sleep(0.05)
    mark = len(proxy.from_clients)
    reads = 0
    while time.monotonic() - subscribed < INTERVAL * 0.8:
        subscription.read()
        reads += 1
    time.sleep(0.05)
    assert reads > 100
    assert bytes(proxy.from_clients[mark:]) == b"", "a read sent something before its interval was up"

    time.sleep(max(subscribed + INTERVAL - time.monotonic(), 0) + 0.01)
    subscription.read()  # the interval is up: this read sends the ping, and waits for nothing
    time.sleep(0.05)
    sent = bytes(proxy.from_clients[mark:])
    assert b"NOTIFY" in sent and sent.count(b"NOTIFY") == 1, sent
    assert subscription._awaiting_pong
    subscription.read()  # the answer arrived: this read takes it
    assert not subscription._awaiting_pong


def test_a_terminated_backend_fails_and_a_retry_thread_subscribes_again(make, other):
    subscription = make()
    before = subscription.read()
    old_pid = backend_pid(subscription)
    timed = Timed(subscription)
    other.execute("SELECT pg_terminate_backend(%s)", [old_pid])

    eventually(timed.fails, timeout=1, interval=0.002)
    assert "OperationalError" in error_of(subscription)
    # A later read starts a thread that subscribes again; no read waits for it.
    eventually(lambda: not timed.fails(), timeout=INTERVAL + 3, interval=0.01)
    assert timed.slowest < QUICK, timed.slowest
    after = subscription.read()
    assert after > before  # notices may have been missed meanwhile: the store reads the version
    assert backend_pid(subscription) != old_pid
    eventually(lambda: not retry_threads(subscription), timeout=2)  # it ended with the attempt
    notify(other, "1")
    eventually(lambda: subscription.read() == after + 1, timeout=2, interval=0.002)


def test_a_silent_server_fails_after_an_unanswered_ping_and_recovers(make, database, proxy, other):
    subscription = make(database(proxy.port))
    before = subscription.read()
    timed = Timed(subscription)
    until = time.monotonic() + 2 * INTERVAL  # requests every 50 ms, and their pings, all answered
    while time.monotonic() < until:
        assert not timed.fails()
        time.sleep(0.05)

    proxy.freeze()
    elapsed = eventually(timed.fails, timeout=3 * INTERVAL + 1, interval=0.05)
    assert elapsed <= 2 * INTERVAL + 0.3, (
        elapsed
    )  # a ping within an interval, then an interval without answer
    assert "PostgreSQL did not answer a NOTIFY to itself" in error_of(subscription)
    started = time.monotonic()
    while time.monotonic() - started < 3 * INTERVAL:
        assert timed.fails()
        assert len(retry_threads(subscription)) <= 1
        time.sleep(0.05)
    assert timed.slowest < QUICK, timed.slowest

    proxy.restore()
    eventually(lambda: not fails(subscription), timeout=10, interval=0.02)
    after = subscription.read()
    assert after > before
    notify(other, "2")
    eventually(lambda: subscription.read() == after + 1, timeout=2, interval=0.002)


def test_a_connection_that_stops_getting_notifications_is_dropped(make):
    """What a pooler in transaction mode does (LISTEN lands on one server connection, the
    client moves on): the server still answers, but notifications no longer reach the
    subscription. Its ping is a notification, so it fails instead of trusting silence."""
    subscription = make()
    subscription.read()
    with subscription._lock:  # as a read holds it: nothing else uses the connection meanwhile
        pgconn = subscription._connection.pgconn
        pgconn.send_query(b"UNLISTEN *")
        pgconn.flush()
    elapsed = eventually(lambda: fails(subscription), timeout=3 * INTERVAL + 1, interval=0.05)
    assert elapsed <= 2 * INTERVAL + 0.3, elapsed
    assert "did not answer a NOTIFY to itself" in error_of(subscription)


def test_close_ends_the_subscription_for_good(make, other):
    subscription = make()
    subscription.read()
    pid = backend_pid(subscription)
    subscription.close()
    assert "closed" in error_of(subscription)
    time.sleep(INTERVAL + 0.1)
    assert fails(subscription)
    assert not retry_threads(subscription)
    alive = other.execute("SELECT count(*) FROM pg_stat_activity WHERE pid = %s", [pid]).fetchone()[0]
    assert alive == 0


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # fork() in a multi-threaded process
def test_a_forked_child_listens_anew_and_the_parent_keeps_its_connection(make, other):
    parent = make()
    before = parent.read()
    parent_pid = backend_pid(parent)
    results_r, results_w = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        status = 1
        try:
            os.close(results_r)
            count = parent.read()  # subscribes anew: the parent's connection is not the child's
            answer = {"backend": backend_pid(parent), "count": count}
            os.write(results_w, (json.dumps(answer) + "\n").encode())
            status = 0
        except BaseException as exc:
            os.write(results_w, (json.dumps({"error": repr(exc)}) + "\n").encode())
        finally:
            os._exit(status)
    os.close(results_w)
    try:
        assert select.select([results_r], [], [], 10)[0], "the child did not answer"
        child = json.loads(os.read(results_r, 4096).split(b"\n")[0])
        assert "error" not in child, child["error"]
        assert child["backend"] != parent_pid
    finally:
        os.close(results_r)
        deadline = time.monotonic() + 10
        while os.waitpid(pid, os.WNOHANG) == (0, 0):
            if time.monotonic() > deadline:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
                break
            time.sleep(0.01)

    # The child's exit ended its own connection, not the parent's.
    assert backend_pid(parent) == parent_pid
    notify(other, "1")
    eventually(lambda: parent.read() == before + 1, timeout=2, interval=0.002)
    listening = other.execute(
        "SELECT count(*) FROM pg_stat_activity WHERE pid = %s", [parent_pid]
    ).fetchone()[0]
    assert listening == 1


def test_one_subscription_per_process_and_database_and_close_all_ends_them(scale, database, settings):
    alias = database()
    shared = notices.database_notices(alias, interval=INTERVAL)
    try:
        assert isinstance(shared, PostgresNotices)
        assert notices.database_notices(alias, interval=INTERVAL) is shared
        shared.read()
    finally:
        notices.close_all()
    assert "closed" in error_of(shared)
    assert notices.database_notices(alias, interval=INTERVAL) is not shared
    notices.close_all()


def test_a_connection_no_request_pings_is_closed_by_the_server_and_made_again_on_demand(
    make, other, monkeypatch
):
    """A process that stops serving requests must not hold back PostgreSQL's notification queue:
    unpinged for ``idle_timeout``, its connection is closed by the server (idle_session_timeout)."""
    monkeypatch.setattr(PostgresNotices, "min_idle_timeout", 0.5)
    subscription = make(interval=0.1)  # raised to the least interval, 0.25 s: idle_timeout max(0.5, 0.75)
    assert subscription.idle_timeout == 0.75
    before = subscription.read()
    pid = backend_pid(subscription)

    def alive() -> bool:
        row = other.execute("SELECT count(*) FROM pg_stat_activity WHERE pid = %s", [pid]).fetchone()
        return bool(row[0])

    notify(other, "while idle")  # unread: it waits in the socket, as an idle process leaves it
    eventually(lambda: not alive(), timeout=3, interval=0.05)  # no request, no ping: closed by the server
    assert fails(subscription)  # the next request learns it at once, and polls the database
    eventually(lambda: not fails(subscription), timeout=3, interval=0.02)  # connected again, in a thread
    assert backend_pid(subscription) != pid
    assert subscription.read() > before  # what it may have missed counts as a notice


def test_requests_that_keep_pinging_keep_the_connection(make, other, monkeypatch):
    monkeypatch.setattr(PostgresNotices, "min_idle_timeout", 0.5)
    subscription = make(interval=0.1)
    subscription.read()
    pid = backend_pid(subscription)
    until = time.monotonic() + 3 * subscription.idle_timeout
    while time.monotonic() < until:
        assert not fails(subscription)  # a ping every 0.25 s, answered
        time.sleep(0.02)
    assert backend_pid(subscription) == pid
