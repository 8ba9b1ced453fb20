"""Fail closed: the database or the cache dies under a running server.

Each server here reaches PostgreSQL or Redis through a :class:`TcpProxy`; cutting
it kills every open connection and answers new ones by hanging up, as a dead
server would, and counts how often the server tried. The probe views touch no
database, so what the responses show is stepup's own behaviour; the demo's
logged-in pages would fail with the database anyway.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from tests.scale.conftest import postgres_address, redis_address
from tests.scale.harness import Server, TcpProxy, eventually, running, with_address

pytestmark = [pytest.mark.postgres, pytest.mark.redis]

GUARDED = "/probe/guarded/"
INTERVAL = 0.5  # RELOAD_INTERVAL of these servers


@pytest.fixture
def db_proxy(scale) -> Iterator[TcpProxy]:
    proxy = TcpProxy(*postgres_address(scale.database.url))
    yield proxy
    proxy.close()


@pytest.fixture
def redis_proxy(scale) -> Iterator[TcpProxy]:
    proxy = TcpProxy(*redis_address(scale.redis_url))
    yield proxy
    proxy.close()


def behind_db_proxy(scale, name: str, proxy: TcpProxy) -> Server:
    url = with_address(scale.database.url, "127.0.0.1", proxy.port)
    return scale.server(
        name, DATABASE_URL=url, SCALE_RELOAD_INTERVAL=str(INTERVAL), SCALE_RESYNC_INTERVAL="3600"
    )


def behind_redis_proxy(scale, name: str, proxy: TcpProxy) -> Server:
    url = with_address(scale.redis_url, "127.0.0.1", proxy.port)
    return scale.server(
        name, REDIS_URL=url, SCALE_RELOAD_INTERVAL=str(INTERVAL), SCALE_RESYNC_INTERVAL="3600"
    )


def guarded_deny(policy_id: str, description: str) -> dict:
    return {
        "id": policy_id,
        "description": description,
        "match": {"urls": ["scale-guarded"]},
        "decision": "deny",
    }


def wait_until_the_cache_answers(server: Server) -> None:
    def cache_back() -> bool:
        server.request("GET", "/probe/open/")
        return "answers again" in server.log()

    eventually(cache_back, timeout=5, interval=0.1)


def delete_and_see_it_by_notice(scale, server: Server, policy_id: str) -> None:
    scale.worker("delete-policy", {"id": policy_id})
    # Seen through its notice (while the cache answers, the database is not polled), as
    # soon as the proxy, a thread of this process, has passed the notice on.
    eventually(lambda: server.request("GET", GUARDED).status == 200, timeout=INTERVAL, interval=0.01)


def is_login_redirect(response) -> bool:
    return response.status == 302 and response.headers["location"].startswith("/accounts/login/")


def hammer(server: Server, method: str, path: str, seconds: float) -> list:
    responses = []
    until = time.monotonic() + seconds
    while time.monotonic() < until:
        responses.append(server.request(method, path))
        time.sleep(0.04)
    return responses


def test_database_killed_mid_run_keeps_the_last_good_policy_set(scale, db_proxy):
    step_up = {
        "id": "scale-outage-guard",
        "description": "scale test: the guarded probe needs a second factor",
        "match": {"urls": ["scale-guarded"]},
        "decision": "step_up",
        "max_age": 300,
    }
    scale.worker("policy", step_up)
    server = behind_db_proxy(scale, "db-outage", db_proxy)
    with running(server):
        assert is_login_redirect(server.request("GET", GUARDED))  # loaded through the proxy

        db_proxy.cut()
        # Another process removes the policy: committed, and announced through Redis.
        # This server hears of it but can't read it: it keeps the set it has.
        scale.worker("delete-policy", {"id": step_up["id"]})
        tries_before = db_proxy.refused
        responses = hammer(server, "GET", GUARDED, seconds=4 * INTERVAL)
        assert len(responses) >= 15
        assert all(is_login_redirect(r) for r in responses), {r.status for r in responses}
        tries = db_proxy.refused - tries_before
        # At most one database attempt per RELOAD_INTERVAL, never one per request.
        assert 1 <= tries <= 4 + 2, tries
        log = server.log()
        assert "keeping the last good policy set" in log
        assert log.count("policy store unreachable") <= 4 + 2

        db_proxy.restore()
        eventually(lambda: server.request("GET", GUARDED).status == 200, timeout=5)
        assert "policy store reachable again" in server.log()


def test_no_good_policy_set_at_all_challenges_actions_and_refuses_unsafe_methods(scale, db_proxy):
    db_proxy.cut()  # down before the server ever read a policy
    server = behind_db_proxy(scale, "db-never", db_proxy)
    with running(server):
        action = server.request("GET", "/probe/action/")
        assert is_login_redirect(action), (action.status, action.body)  # declared action: challenged
        unsafe = server.request("POST", GUARDED)
        assert unsafe.status == 503, unsafe.body
        assert "no-store" in unsafe.headers.get("cache-control", "")
        assert "ran guarded" not in unsafe.body
        safe = server.request("GET", GUARDED)
        assert (safe.status, safe.body) == (200, "ran guarded")  # URL-only, safe method: allowed

        tries_before = db_proxy.refused
        responses = hammer(server, "POST", GUARDED, seconds=4 * INTERVAL)
        assert {r.status for r in responses} == {503}
        assert db_proxy.refused - tries_before <= 4 + 2
        assert "no policy set loaded yet" in server.log()

        db_proxy.restore()
        eventually(lambda: server.request("POST", GUARDED).status == 200, timeout=5)
        assert is_login_redirect(server.request("GET", "/probe/action/"))  # default requirement


def test_cache_down_falls_back_to_polling_the_database_without_errors(scale, redis_proxy):
    server = behind_redis_proxy(scale, "cache-outage", redis_proxy)
    deny = guarded_deny("scale-cache-outage-deny", "scale test: denied while the cache is down")
    with running(server):
        assert server.request("GET", GUARDED).status == 200
        server.stats(reset=True)

        redis_proxy.cut()
        responses = hammer(server, "GET", GUARDED, seconds=4 * INTERVAL)
        assert {r.status for r in responses} == {200}  # no error page
        stats = server.stats()
        assert stats["queries"].get("version", 0) <= 4 + 2, stats  # polling, not a query per request
        log = server.log()
        assert 1 <= log.count("is unreachable") <= 4 + 2

        scale.worker("policy", deny)  # its notice goes to Redis, which this server can't read
        elapsed = eventually(lambda: server.request("GET", GUARDED).status == 403, timeout=5)
        assert elapsed < INTERVAL + 0.5

        redis_proxy.restore()
        wait_until_the_cache_answers(server)
        delete_and_see_it_by_notice(scale, server, deny["id"])


def test_silent_cache_falls_back_to_polling_the_database_without_errors(scale, redis_proxy):
    """Redis keeps the connections open but answers nothing (a stopped process, a dead network path)."""
    server = behind_redis_proxy(scale, "cache-silent", redis_proxy)
    deny = guarded_deny("scale-cache-silent-deny", "scale test: denied while the cache is silent")
    deleted = False
    with running(server):
        assert server.request("GET", GUARDED).status == 200

        redis_proxy.freeze()
        # Committed by another process; its notice goes to Redis, whose messages never reach this server.
        scale.worker("policy", deny)
        try:
            responses = []

            def denied() -> bool:
                responses.append(server.request("GET", GUARDED))
                return responses[-1].status == 403

            # An unanswered PING (within ~3 intervals of the freeze), then a database poll.
            elapsed = eventually(denied, timeout=8 * INTERVAL, interval=0.04)
            assert elapsed < 4 * INTERVAL + 0.5, elapsed
            assert {r.status for r in responses} <= {200, 403}  # no error page
            log = server.log()
            assert "is unreachable (NoticesUnavailable: Redis did not answer a PING" in log, log[-3000:]

            server.stats(reset=True)
            responses = hammer(server, "GET", GUARDED, seconds=4 * INTERVAL)
            assert {r.status for r in responses} == {403}
            stats = server.stats()
            assert stats["queries"].get("version", 0) <= 4 + 2, stats  # polling, not a query per request

            redis_proxy.restore()
            wait_until_the_cache_answers(server)
            deleted = True  # deleting is the helper's first step
            delete_and_see_it_by_notice(scale, server, deny["id"])
        finally:
            if not deleted:
                scale.worker("delete-policy", {"id": deny["id"]})


def test_a_malformed_row_becomes_a_stricter_stand_in_and_the_others_stay(scale, pair):
    a, b = pair
    scale.worker(
        "policy",
        {
            "id": "scale-action-deny",
            "description": "scale test: the probe action is denied",
            "match": {"actions": ["scale.action"]},
            "decision": "deny",
        },
    )
    broken = {
        "id": "scale-broken",
        "description": "scale test: a row that no longer validates",
        "match": {"urls": ["scale-guarded"]},
        "when": {"no_such_condition": {"gt": 1}},
        "decision": "step_up",
        "max_age": 3600,
    }
    scale.worker("policy", broken)
    try:
        for server in (a, b):
            assert is_login_redirect(server.request("GET", GUARDED)), server.name
            assert server.request("GET", "/probe/action/").status == 403, server.name
            assert "scale-broken" in server.stats()["policies"]
        assert "stored policy 'scale-broken' is malformed" in a.log()
    finally:
        scale.worker("delete-policy", {"id": "scale-broken"})
        scale.worker("delete-policy", {"id": "scale-action-deny"})


def test_a_lost_listen_connection_falls_back_to_polling_and_listens_again(scale, pair_database_notices):
    """``NOTICES = "database"``: the server's LISTEN connection is terminated by PostgreSQL
    (a restart, an idle-connection killer). No error page; the database is polled every
    interval meanwhile; a background thread listens again and notices are seen at once."""
    server = pair_database_notices
    deny = guarded_deny("scale-listen-lost-deny", "scale test: denied while the LISTEN connection is gone")
    with running(server):
        assert server.request("GET", GUARDED).status == 200
        listening = scale.worker("listeners")
        assert len(listening) == 1, listening  # one per process (gunicorn: one worker here)
        scale.worker("terminate", {"pids": listening})
        responses = hammer(server, "GET", GUARDED, seconds=2 * INTERVAL)
        assert {r.status for r in responses} == {200}  # no error page
        log = server.log()
        assert "PostgreSQL's LISTEN/NOTIFY on the database 'default' is unreachable" in log, log[-3000:]

        wait_until_the_cache_answers(server)
        assert scale.worker("listeners") not in ([], listening)  # a new connection listens
        scale.worker("policy", deny)  # a NOTIFY: seen at once, the database poll is an hour off
        eventually(lambda: server.request("GET", GUARDED).status == 403, timeout=INTERVAL, interval=0.01)
        delete_and_see_it_by_notice(scale, server, deny["id"])


@pytest.fixture
def pair_database_notices(scale) -> Iterator[Server]:
    """A server whose notices go through LISTEN/NOTIFY (and the worker's too), no Redis at all."""
    scale.notices = "database"
    try:
        yield scale.server("listen-lost", SCALE_RELOAD_INTERVAL=str(INTERVAL), SCALE_RESYNC_INTERVAL="3600")
    finally:
        scale.notices = "redis"
