"""Lasting grants kept by the process (:mod:`stepup.grant_cache`): when they are, and what forgets them.

Across real processes: ``tests/scale/test_grant_cache.py``. Here, in one
process against a real Redis, each rule of the module doc: kept only with
Redis notices and a live subscription (or, on SQLite, while no other
connection committed), never a single-request grant, never
past a password change, forgotten at once by a change made here and on the
next request by a notice from elsewhere.
"""

from __future__ import annotations

import os
import secrets
import select
import sqlite3
import time
from collections.abc import Iterator
from typing import Any

import pytest
from django.db import connection, transaction
from django.test import RequestFactory
from django.test.utils import CaptureQueriesContext

from stepup import decide, grant_cache, grants, store
from stepup.models import Grant
from stepup.notices import GRANTS_PREFIX, RedisNotices
from tests.services import skip_or_fail

pytestmark = pytest.mark.django_db(transaction=True)  # changes commit, as in a request: kept reads need that

ACTION = "billing.update"


@pytest.fixture
def redis_url() -> str:
    url = os.environ.get("STEPUP_TEST_REDIS_URL")
    if not url:
        skip_or_fail("STEPUP_TEST_REDIS_URL is not set", what="the grant cache tests")
    return url


@pytest.fixture
def on_redis(settings: Any, redis_url: str) -> Iterator[RedisNotices]:
    """The default cache on Redis (a key prefix of its own): notices, so grants may be kept."""
    settings.CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": redis_url,
            "KEY_PREFIX": f"stepup-test-{secrets.token_hex(4)}",
        }
    }
    channel = store.change_notices()
    assert isinstance(channel, RedisNotices)
    yield channel


@pytest.fixture
def verified(rf_request: Any, user: Any, totp: Any, policy: Any) -> Any:
    """A session holding a TOTP verification, and a policy it satisfies."""
    policy("billing", actions=[ACTION], max_age=300, factors=["totp"])
    request = rf_request("post", "/billing/")
    grants.record_verification(request, user, "totp")
    return request


def again(request: Any) -> Any:
    """The same session and user in a new request (a request's context is cached on it)."""
    fresh = RequestFactory().post("/billing/")
    fresh.session = request.session
    fresh.user = request.user
    return fresh


def outcome_and_reads(request: Any) -> tuple[str, int]:
    """The decision on ``ACTION`` for a new request of this session, and how many grants queries it made."""
    with CaptureQueriesContext(connection) as captured:
        outcome = decide(again(request), ACTION).outcome
    return outcome, sum('"stepup_grant"' in q["sql"] for q in captured.captured_queries)


def test_with_redis_notices_the_next_request_reads_no_grants(on_redis, verified):
    assert outcome_and_reads(verified) == ("allow", 1)
    assert outcome_and_reads(verified) == ("allow", 0)
    assert outcome_and_reads(verified) == ("allow", 0)


def test_without_notices_grants_are_kept_only_on_sqlite(verified):
    """Without notices only SQLite can tell of commits made elsewhere (``PRAGMA data_version``).

    This test runs on PostgreSQL too (tests/audit/test_postgres.py), where every request reads.
    """
    assert store.change_notices() is None
    kept = connection.vendor == "sqlite"
    assert outcome_and_reads(verified) == ("allow", 1)
    for _ in range(2):
        assert outcome_and_reads(verified) == ("allow", 0 if kept else 1)
    assert grant_cache.size() == (1 if kept else 0)


def another_sqlite_connection() -> sqlite3.Connection:
    """A connection of its own to the test database, as another process (or thread) has."""
    params = connection.get_connection_params()
    return sqlite3.connect(params["database"], uri=True)


def test_on_sqlite_a_commit_by_another_connection_is_seen_on_the_next_request(verified):
    assert outcome_and_reads(verified) == ("allow", 1)
    assert outcome_and_reads(verified) == ("allow", 0)
    other = another_sqlite_connection()
    try:
        other.execute("DELETE FROM stepup_grant")  # a revocation elsewhere, with no notice at all
        other.commit()
    finally:
        other.close()
    assert outcome_and_reads(verified) == ("step_up", 1)


def test_on_sqlite_any_commit_elsewhere_reads_the_grants_again_and_a_commit_here_does_not(verified, user):
    assert outcome_and_reads(verified) == ("allow", 1)
    user.first_name = "Erin"
    user.save()  # this connection: data_version stays, and nothing a grant depends on changed
    assert outcome_and_reads(verified) == ("allow", 0)
    other = another_sqlite_connection()
    try:
        other.execute("UPDATE auth_user SET last_name = 'E.'")  # not a grant: read again all the same
        other.commit()
    finally:
        other.close()
    assert outcome_and_reads(verified) == ("allow", 1)
    assert outcome_and_reads(verified) == ("allow", 0)


def test_turned_off_every_request_reads_the_grants(on_redis, verified, settings):
    settings.STEPUP = {**settings.STEPUP, "GRANT_CACHE": False}
    for _ in range(3):
        assert outcome_and_reads(verified) == ("allow", 1)


def test_while_the_subscription_is_down_nothing_is_kept(on_redis, verified, monkeypatch):
    def down() -> int:
        raise OSError("Redis is down")

    monkeypatch.setattr(on_redis, "read_grants", down)
    for _ in range(3):
        assert outcome_and_reads(verified) == ("allow", 1)


def test_a_single_request_grant_is_never_kept(on_redis, rf_request, user, totp, policy):
    policy("transfer", actions=[ACTION], max_age=0, factors=["totp"])
    request = rf_request("post", "/billing/")
    digest = "d" * 64
    grants.record_verification(request, user, "totp", one_shot_digest=digest)
    for _ in range(3):
        with CaptureQueriesContext(connection) as captured:
            assert grants.one_shot_kinds(again(request), user, digest) == {"totp"}
        assert sum('"stepup_grant"' in q["sql"] for q in captured.captured_queries) == 1
    assert grant_cache.size() == 0


def test_a_password_change_reads_the_grants_again_and_they_no_longer_count(on_redis, verified, user):
    assert outcome_and_reads(verified)[0] == "allow"
    user.set_password("a new one")
    user.save()
    assert outcome_and_reads(verified) == ("step_up", 1)


@pytest.mark.parametrize(
    "void",
    [
        pytest.param(lambda request, user: grants.forget(request), id="logout"),
        pytest.param(lambda request, user: grants.clear(request), id="clear"),
        pytest.param(lambda request, user: grants.revoke_all(user), id="revoke_all"),
    ],
)
def test_a_change_made_in_this_process_is_seen_at_once(on_redis, verified, user, void):
    assert outcome_and_reads(verified) == ("allow", 1)
    assert outcome_and_reads(verified) == ("allow", 0)
    void(verified, user)
    assert outcome_and_reads(verified) == ("step_up", 1)


def test_a_used_single_request_grant_given_back_counts_again_at_once(
    on_redis, rf_request, user, totp, policy
):
    request = rf_request("post", "/billing/")
    digest = "d" * 64
    grants.record_verification(request, user, "totp", one_shot_digest=digest)
    used = grants.consume_one_shot(again(request), digest, user)
    assert used
    assert grants.one_shot_kinds(again(request), user, digest) == frozenset()  # the lasting grant is kept now
    assert grant_cache.size() == 1
    grants.restore_one_shot(again(request), used)
    assert grants.one_shot_kinds(again(request), user, digest) == {"totp"}


def test_a_notice_from_another_process_is_seen_on_the_next_request(on_redis, verified, redis_url):
    import redis

    assert outcome_and_reads(verified) == ("allow", 1)
    assert outcome_and_reads(verified) == ("allow", 0)
    Grant.objects.all()._raw_delete(using="default")  # another process deletes them...
    elsewhere = redis.Redis.from_url(redis_url)
    try:
        assert outcome_and_reads(verified) == ("allow", 0)  # (kept: no notice yet)
        elsewhere.publish(on_redis.channel, GRANTS_PREFIX + b"1")  # ...and tells every process
        assert select.select([on_redis._fd], [], [], 2)[0], "the notice never reached this process"
        assert outcome_and_reads(verified) == ("step_up", 1)
    finally:
        elsewhere.close()


def test_a_kept_grant_is_read_again_after_the_reload_interval(on_redis, verified, settings):
    settings.STEPUP = {**settings.STEPUP, "RELOAD_INTERVAL": 0.3}
    assert outcome_and_reads(verified) == ("allow", 1)
    assert outcome_and_reads(verified) == ("allow", 0)
    time.sleep(0.35)
    assert outcome_and_reads(verified) == ("allow", 1)


def test_grants_notices_and_policy_notices_are_counted_apart(on_redis, redis_url):
    import redis

    policies, kept = on_redis.read(), on_redis.read_grants()
    elsewhere = redis.Redis.from_url(redis_url)
    try:
        elsewhere.publish(on_redis.channel, GRANTS_PREFIX + b"1")
        assert select.select([on_redis._fd], [], [], 2)[0]
        assert (on_redis.read(), on_redis.read_grants()) == (policies, kept + 1)
        elsewhere.publish(on_redis.channel, b"12345")
        assert select.select([on_redis._fd], [], [], 2)[0]
        assert (on_redis.read(), on_redis.read_grants()) == (policies + 1, kept + 1)
    finally:
        elsewhere.close()


def test_a_forked_child_keeps_none_of_its_parents_grants(on_redis, verified):
    assert outcome_and_reads(verified) == ("allow", 1)
    assert grant_cache.size() == 1
    made_under = grant_cache.generation()
    grant_cache._drop_in_child()  # what os.register_at_fork runs in the child
    assert grant_cache.size() == 0
    assert grant_cache.generation() != made_under


def test_what_a_transaction_that_changed_grants_reads_is_not_kept_it_may_roll_back(
    on_redis, rf_request, user, totp, policy
):
    policy("billing", actions=[ACTION], max_age=300, factors=["totp"])
    request = rf_request("post", "/billing/")

    class RolledBack(Exception):
        pass

    with pytest.raises(RolledBack), transaction.atomic():
        grants.record_verification(request, user, "totp")
        assert outcome_and_reads(request) == ("allow", 1)  # its own uncommitted grant
        assert grant_cache.size() == 0
        raise RolledBack
    assert Grant.objects.count() == 0
    assert outcome_and_reads(request) == ("step_up", 1)  # the session still names the rolled-back subject

