"""Grants kept by a process (:mod:`stepup.grant_cache`) across real processes: two gunicorn servers, PostgreSQL, Redis.

A server that read a session's lasting grants answers its next protected
requests without the grants query; a grant voided in another process
(``revoke_all`` in a worker, as a removed device does) must stop counting on
each server's very next request. The pair's database poll is an hour apart,
so only the grants notice through Redis can explain that. A grant deleted
behind stepup's back (no notice) stops counting within ``RELOAD_INTERVAL``,
shown on a server of its own with a 1 s interval.
"""

from __future__ import annotations

import time

import pytest

from tests.scale.conftest import across_notices
from tests.scale.harness import Server, eventually, running

pytestmark = [pytest.mark.postgres, pytest.mark.redis]

ACTION = "/probe/action/"
NEEDS_TOTP = {
    "id": "scale-grant-cache",
    "description": "scale test: the action needs an authenticator code from the last hour",
    "match": {"actions": ["scale.action"]},
    "decision": "step_up",
    "max_age": 3600,
    "factors": ["totp"],
}


@pytest.fixture
def needs_totp(scale):
    scale.worker("policy", NEEDS_TOTP)
    yield
    scale.worker("delete-policy", {"id": NEEDS_TOTP["id"]})


def verified_session(scale, username: str) -> str:
    """A logged-in session of a new user holding a TOTP verification."""
    session = scale.worker("user", {"username": username, "sessions": 1, "totp": True})["sessions"][0]
    return scale.worker("grant", {"username": username, "session": session})["session"]


def grants_queries(server: Server) -> int:
    return int(server.stats()["queries"].get("grants", 0))


def allowed(server: Server, session: str) -> bool:
    response = server.request("GET", ACTION, session=session)
    assert response.status in (200, 302), (server.name, response.status, response.body)
    return response.status == 200 and response.body == "ran action"


@across_notices
def test_a_kept_grant_costs_no_query_and_a_revocation_elsewhere_ends_it_on_the_next_request(
    scale, pair, needs_totp
):
    a, b = pair
    session = verified_session(scale, f"cache-revoke-{scale.notices}")
    for server in (a, b):
        for _ in range(8):  # each of the 8 threads may serve one, and the first of each reads
            assert allowed(server, session), server.name
    before = {server.name: grants_queries(server) for server in (a, b)}
    for server in (a, b):
        for _ in range(5):
            assert allowed(server, session), server.name
    assert {server.name: grants_queries(server) for server in (a, b)} == before, "kept grants were read again"

    scale.worker(
        "revoke", {"username": f"cache-revoke-{scale.notices}"}
    )  # committed and announced when this returns
    for server in (b, a):
        assert not allowed(server, session), f"{server.name} still used a revoked grant"
        assert grants_queries(server) > before[server.name]


@across_notices
def test_a_verification_elsewhere_moves_the_grants_and_the_old_session_key_keeps_none(
    scale, pair, needs_totp
):
    a, b = pair
    first = verified_session(scale, f"cache-rotate-{scale.notices}")
    assert allowed(b, first)
    second = scale.worker("grant", {"username": f"cache-rotate-{scale.notices}", "session": first})["session"]
    assert second != first
    assert not allowed(b, first), "the old session key still carried the grant"
    assert allowed(b, second)
    assert allowed(a, second)


def test_without_a_notice_a_grant_deleted_by_hand_stops_counting_within_the_reload_interval(
    scale, needs_totp
):
    server = scale.server("grant-cache-1s", SCALE_RELOAD_INTERVAL="1", SCALE_RESYNC_INTERVAL="3600")
    with running(server):
        session = verified_session(scale, "cache-by-hand")
        assert allowed(server, session)
        scale.worker("delete-grants", {"username": "cache-by-hand"})
        deleted_at = time.monotonic()
        eventually(lambda: not allowed(server, session), timeout=3)
        assert time.monotonic() - deleted_at < 1.0 + 0.5


def test_with_the_cache_turned_off_every_protected_request_reads_the_grants(scale, needs_totp):
    server = scale.server("grant-cache-off", SCALE_RELOAD_INTERVAL="3600", SCALE_GRANT_CACHE="0")
    with running(server):
        session = verified_session(scale, "cache-off")
        assert allowed(server, session)
        before = grants_queries(server)
        for _ in range(5):
            assert allowed(server, session)
        assert grants_queries(server) == before + 5
