"""The policy store's reload rules, with a shared cache that can fail (no services needed).

A "foreign" change here is one made as another process would: rows and
version written without this process's signals, and a notice written straight
to the shared cache. The end-to-end versions of these rules, with real
processes, PostgreSQL and Redis, are in the other modules of this folder.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import pytest
from django.db import DatabaseError, connection, transaction
from django.db.models import F
from django.test.utils import CaptureQueriesContext

from stepup import notices, store
from stepup.exceptions import PolicyStoreUnavailable
from stepup.models import Policy, PolicySetState, new_generation
from stepup.policy.model import PolicySpec
from tests.scale import fakecache

CACHES = {
    "default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"},
    "shared": {"BACKEND": "tests.scale.fakecache.SharedCache"},
}


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch) -> Clock:
    clock = Clock()
    monkeypatch.setattr(store, "_clock", clock)
    return clock


@pytest.fixture
def shared(settings, clock) -> Iterator[fakecache._State]:
    settings.CACHES = CACHES
    settings.STEPUP = {"CACHE": "shared", "RELOAD_INTERVAL": 1.0, "RESYNC_INTERVAL": 30.0}
    fakecache.STATE.reset()
    store._store = store._Store()
    store.invalidate()
    yield fakecache.STATE
    fakecache.STATE.reset()
    store._store = store._Store()
    store.invalidate()


def foreign_change(policy_id: str, notice: str | None = "from-another-process") -> None:
    """What another process's commit leaves behind: a row, a new version, and maybe a notice."""
    Policy.objects.bulk_create([Policy(policy_id=policy_id, actions=[f"{policy_id}.act"], decision="deny")])
    PolicySetState.objects.get_or_create(pk=1)
    PolicySetState.objects.filter(pk=1).update(version=F("version") + 1, generation=new_generation())
    if notice is not None:
        fakecache.STATE.data[f":1:{notices.NOTICE_KEY}"] = notice


def ids() -> set[str]:
    return set(store.get_policy_set().specs)


def settled() -> None:
    """Load, and let the first notice settle (the first load finds none and puts one in)."""
    ids()
    ids()


pytestmark = pytest.mark.django_db


def test_local_memory_and_dummy_caches_are_not_shared(settings):
    settings.CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
    assert store.shared_cache() is None
    settings.CACHES = {"default": {"BACKEND": "django.core.cache.backends.dummy.DummyCache"}}
    assert store.shared_cache() is None
    settings.CACHES = CACHES
    settings.STEPUP = {"CACHE": "shared"}
    assert store.shared_cache() is not None
    settings.STEPUP = {"CACHE": None}
    assert store.shared_cache() is None
    settings.STEPUP = {"CACHE": "no-such-alias"}
    assert store.shared_cache() is None


def test_a_foreign_notice_is_acted_on_at_once_and_only_a_notice_is(shared, clock):
    settled()
    assert "one" not in ids()
    foreign_change("one", notice=None)
    clock.now += 5  # past RELOAD_INTERVAL, well within RESYNC_INTERVAL
    assert "one" not in ids()  # the notice it knows is still the latest: no database read
    foreign_change("two")
    assert {"one", "two"} <= ids()  # the new notice: read at once


def test_a_known_notice_costs_one_cache_read_and_no_query(shared, clock, django_assert_num_queries):
    settled()
    calls = shared.calls
    clock.now += 10
    with django_assert_num_queries(0):
        for _ in range(5):
            store.get_policy_set()
    assert shared.calls - calls == 5


def test_the_database_is_asked_again_after_the_resync_interval(shared, clock):
    settled()
    foreign_change("lost-notice", notice=None)  # e.g. the writer could not reach the cache
    clock.now += 29
    assert "lost-notice" not in ids()
    clock.now += 2
    assert "lost-notice" in ids()


def test_a_missing_notice_is_put_back_and_the_database_polled(shared, clock):
    ids()
    assert list(shared.data.values())  # the first load put a notice in
    shared.data.clear()  # the cache restarted empty
    foreign_change("after-flush", notice=None)
    clock.now += 1.5
    assert "after-flush" in ids()  # no notice to trust: polled like without a cache
    assert list(shared.data.values())


def test_cache_down_polls_the_database_and_logs_once_per_interval(shared, clock, caplog):
    ids()
    shared.down = True
    with caplog.at_level(logging.ERROR, logger="stepup.store"):
        for _ in range(20):
            store.get_policy_set()
        calls = shared.calls
        foreign_change("during-outage", notice=None)
        for _ in range(20):
            assert "during-outage" not in ids()
        assert shared.calls == calls  # not asked again within the interval
        clock.now += 1.01
        assert "during-outage" in ids()  # polled, like a process without a cache
    outage = [r for r in caplog.records if "is unreachable" in r.getMessage()]
    assert len(outage) == 2  # once when it failed, once more an interval later
    shared.down = False
    clock.now += 1.01
    with caplog.at_level(logging.WARNING, logger="stepup.store"):
        ids()
    assert "answers again" in caplog.text


def test_database_down_keeps_the_last_good_set_and_backs_off(shared, clock, monkeypatch, caplog):
    assert "stepup.builtin.policy-admin" in ids()
    good = store.get_policy_set()
    tries = []

    def unreachable(using: Any = None) -> store.SetState:
        tries.append(1)
        raise DatabaseError("connection refused")

    monkeypatch.setattr(store, "current_state", unreachable)
    foreign_change("unseen")  # a notice arrives; the database can't be read
    monkeypatch.setattr(store, "current_state", unreachable)
    with caplog.at_level(logging.ERROR, logger="stepup.store"):
        for _ in range(10):
            assert store.get_policy_set() is good
        assert len(tries) == 1
        clock.now += 1.01
        assert store.get_policy_set() is good
        assert len(tries) == 2
    assert caplog.text.count("keeping the last good policy set") == 2
    monkeypatch.undo()
    store._clock = clock  # undo() also restored the real clock
    clock.now += 1.01
    assert "unseen" in ids()


def test_database_down_with_no_set_at_all_raises_and_backs_off(shared, clock, monkeypatch):
    tries = []

    def unreachable(using: Any = None) -> store.SetState:
        tries.append(1)
        raise DatabaseError("connection refused")

    monkeypatch.setattr(store, "current_state", unreachable)
    for _ in range(5):
        with pytest.raises(PolicyStoreUnavailable):
            store.get_policy_set()
    assert len(tries) == 1


def test_a_committed_change_is_announced_with_a_new_notice(shared, django_capture_on_commit_callbacks):
    ids()
    before = dict(shared.data)
    with django_capture_on_commit_callbacks(execute=True):
        Policy.objects.create(policy_id="announced", actions=["x.y"], decision="deny")
    assert shared.data != before
    assert "announced" in ids()


def test_an_announcement_that_fails_is_logged_not_raised(shared, django_capture_on_commit_callbacks, caplog):
    ids()
    shared.down = True
    with (
        caplog.at_level(logging.ERROR, logger="stepup.store"),
        django_capture_on_commit_callbacks(execute=True),
    ):
        Policy.objects.create(policy_id="unannounced", actions=["x.y"], decision="deny")
    assert "could not publish a policy change" in caplog.text


# --- uncommitted changes stay private to their transaction ---------------------------


@pytest.mark.django_db(transaction=True)
def test_uncommitted_changes_are_seen_by_their_own_transaction_only(shared):
    def shared_ids() -> set[str]:
        current = store._store._set
        return set(current.specs) if current is not None else set()

    ids()
    with transaction.atomic():
        Policy.objects.create(policy_id="kept", actions=["k.act"], decision="deny")
        assert "kept" in ids()  # this transaction sees its own change
        assert "kept" not in shared_ids()  # the other threads' set does not
    assert "kept" in ids() and "kept" in shared_ids()

    with pytest.raises(RuntimeError), transaction.atomic():
        Policy.objects.create(policy_id="rolled-back", actions=["r.act"], decision="deny")
        assert "rolled-back" in ids()
        raise RuntimeError
    assert "rolled-back" not in ids()
    assert "rolled-back" not in shared_ids()

    with transaction.atomic():
        Policy.objects.create(policy_id="outer", actions=["o.act"], decision="deny")
        with pytest.raises(RuntimeError), transaction.atomic():
            Policy.objects.create(policy_id="inner", actions=["i.act"], decision="deny")
            assert {"outer", "inner"} <= ids()
            raise RuntimeError
        assert "outer" in ids() and "inner" not in ids()
    assert "outer" in ids() and "inner" not in ids()


@pytest.mark.django_db(transaction=True)
def test_reads_inside_a_transaction_never_replace_a_newer_set_with_an_older_one(shared, clock):
    settled()
    state = store._store._state
    assert state is not None
    store._store._state = state._replace(version=state.version + 5)  # as if a newer set were in force
    kept = store._store._set
    store._store.recheck()
    with transaction.atomic():
        assert store.get_policy_set() is kept
    with CaptureQueriesContext(connection):
        store._store.recheck()
        assert store.get_policy_set() is not kept  # outside a transaction: the database wins


# --- malformed rows ------------------------------------------------------------------


def test_a_malformed_row_keeps_the_targets_of_its_last_good_version():
    last_good = PolicySpec(id="p", actions=("billing.update",), urls=("admin:*",), max_age=300)
    broken = {"id": "p", "match": {"actions": "billing.update"}, "decision": "step_up"}  # not a list
    spec = store.stand_in("p", broken, last_good=last_good)
    assert spec is not None and store.is_stand_in(spec)
    assert (spec.actions, spec.urls, spec.decision, spec.max_age) == (
        ("billing.update",),
        ("admin:*",),
        "step_up",
        0,
    )
    unreadable = {"id": "p", "match": {"actions": 42}, "decision": "step_up"}
    assert store.stand_in("p", unreadable, last_good=last_good).actions == ("billing.update",)
    assert store.stand_in("p", unreadable) is None  # nothing readable and nothing to fall back on
    assert store.stand_in("p", broken).actions == ("billing.update",)  # one name, not a list


def test_a_malformed_row_of_a_deny_policy_stays_a_deny():
    last_good = PolicySpec(id="p", actions=("x.y",), decision="deny")
    spec = store.stand_in("p", {"match": {"actions": ["x.y"]}, "decision": "bogus"}, last_good=last_good)
    assert spec is not None and spec.decision == "deny"


@pytest.mark.django_db(transaction=True)
def test_a_malformed_row_is_replaced_on_reload_and_the_others_stay(shared, clock, caplog):
    Policy.objects.create(policy_id="fine", actions=["fine.act"], decision="deny")
    Policy.objects.create(policy_id="broken", actions=["broken.act"], urls=["plain"], max_age=60)
    assert {"fine", "broken"} <= ids()
    row = Policy.objects.get(policy_id="broken")
    with caplog.at_level(logging.ERROR, logger="stepup.store"):
        Policy.objects.filter(pk=row.pk).update(actions="not-a-list", when={"nope": 1})
        PolicySetState.objects.filter(pk=1).update(version=F("version") + 1, generation=new_generation())
        store._store.recheck()
        policy_set = store.get_policy_set()
    assert policy_set.specs["fine"].decision == "deny"
    stand_in = policy_set.specs["broken"]
    assert store.is_stand_in(stand_in)
    # What the row still names, plus what its last good version named; no conditions; max_age 0.
    assert (stand_in.actions, stand_in.urls, stand_in.max_age) == (
        ("not-a-list", "broken.act"),
        ("plain",),
        0,
    )
    assert "stored policy 'broken' is malformed" in caplog.text


# --- system checks ---------------------------------------------------------------------


def test_checks_report_an_unknown_cache_alias_and_bad_intervals(settings):
    from django.core.checks import run_checks

    settings.STEPUP = {"CACHE": "nowhere", "RELOAD_INTERVAL": -1, "RESYNC_INTERVAL": "soon"}
    ids = [m.id for m in run_checks() if m.id and m.id.startswith("stepup.")]
    assert ids.count("stepup.W003") == 1
    assert ids.count("stepup.E010") == 2
    settings.STEPUP = {"CACHE": None, "RELOAD_INTERVAL": 0.5, "RESYNC_INTERVAL": 60}
    ids = [m.id for m in run_checks() if m.id and m.id.startswith("stepup.")]
    assert "stepup.W003" not in ids and "stepup.E010" not in ids
