"""``stepup sync`` writes in bulk: the same rows and history as one ``save()``/``delete()`` per change.

The reference is the per-row path sync used before (kept here as
:func:`per_row_apply`): each test runs it in a transaction that is rolled
back, then the bulk path on the same database, and compares what both wrote.
"""

from __future__ import annotations

from collections.abc import Iterator
from io import StringIO
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from django.core.management import CommandError, call_command
from django.db import transaction
from django.db.models import QuerySet
from simple_history.models import HistoricalRecords

from stepup import store, sync
from stepup.models import Policy, PolicySetState
from stepup.policy.loader import load_files
from stepup.policy.model import SPEC_FIELDS

pytestmark = [pytest.mark.urls("tests.commands.urls"), pytest.mark.django_db]

HistoricalPolicy: Any = Policy.history.model  # type: ignore[attr-defined]

BEFORE = """\
version: 1
policies:
  - id: kept
    match: {actions: [billing.update]}
    decision: step_up
    max_age: 300
  - id: changed
    match: {actions: [billing.update]}
    decision: step_up
    max_age: 300
    factors: [totp]
  - id: switched-off
    match: {actions: [billing.*]}
    decision: deny
  - id: dropped
    match: {urls: ["admin:index"]}
    decision: step_up
    max_age: 60
"""
AFTER = """\
version: 1
policies:
  - id: kept
    match: {actions: [billing.update]}
    decision: step_up
    max_age: 300
  - id: changed
    description: {en: Billing, de: Abrechnung}
    match: {actions: [billing.update], methods: [POST]}
    when: {attrs: {amount: {gt: 1000}}}
    decision: step_up
    max_age: 30
    factors: [totp, static]
  - id: switched-off
    match: {actions: [billing.*]}
    decision: deny
    enabled: false
  - id: added
    match: {actions: [billing.update]}
    decision: deny
    mode: shadow
"""
IGNORED = {"history_id", "history_date", "updated_at", "id"}
"""Times differ between two runs, and ids (PostgreSQL's sequences are not rolled back); the
policies' ids in the history are checked against the stored rows instead."""


@pytest.fixture
def files(tmp_path: Path) -> tuple[Path, Path]:
    before, after = tmp_path / "before.yaml", tmp_path / "after.yaml"
    before.write_text(BEFORE)
    after.write_text(AFTER)
    return before, after


def per_row_apply(plan: sync.Plan, rows: dict[str, Policy], *, reason: str, commit: str, using: str) -> None:
    """How sync wrote before it wrote in bulk: one ``save()``/``delete()`` per change."""
    for change in plan.changes:
        row = rows.get(change.policy_id) or Policy(policy_id=change.policy_id)
        row._change_reason = f"{reason} ({change.kind}: {change.why})"  # type: ignore[attr-defined]
        if change.kind == "delete":
            row.delete(using=using)
            continue
        assert change.spec is not None
        row.apply_spec(change.spec)
        row.source_file = change.spec.source
        row.source_commit = commit
        row.source_user = None
        row.save(using=using)


def written_since(history_id: int) -> list[dict[str, Any]]:
    """The history rows after ``history_id``, without their times and ids, by policy."""
    rows = HistoricalPolicy.objects.filter(history_id__gt=history_id).order_by("policy_id").values()
    return [{k: v for k, v in row.items() if k not in IGNORED} for row in rows]


def policies() -> list[tuple[Any, ...]]:
    fields = ("policy_id", *SPEC_FIELDS, "source_file", "source_commit", "source_user")
    return list(Policy.objects.order_by("policy_id").values_list(*fields))


class Rollback(Exception):
    pass


def both_ways(path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Any, Any]:
    """(rows, history) written by the per-row path (rolled back), and by the bulk path."""
    last = HistoricalPolicy.objects.order_by("history_id").values_list("history_id", flat=True).last() or 0
    with monkeypatch.context() as patch:
        patch.setattr(sync, "_apply", per_row_apply)
        try:
            with transaction.atomic():
                sync.sync(load_files([path]), reason="PR #7", commit="abc123")
                reference = policies(), written_since(last)
                raise Rollback
        except Rollback:
            pass
    sync.sync(load_files([path]), reason="PR #7", commit="abc123")
    return reference, (policies(), written_since(last))


def test_bulk_sync_writes_what_per_row_saves_wrote(files: tuple[Path, Path], monkeypatch: Any) -> None:
    before, after = files
    reference, bulk = both_ways(before, monkeypatch)  # four creates
    assert bulk == reference
    assert [(r["policy_id"], r["history_type"]) for r in bulk[1]] == [
        ("changed", "+"),
        ("dropped", "+"),
        ("kept", "+"),
        ("switched-off", "+"),
    ]
    reference, bulk = both_ways(after, monkeypatch)  # a create, an update, a disable, a delete
    assert bulk == reference
    history = bulk[1]
    assert [(r["policy_id"], r["history_type"]) for r in history] == [
        ("added", "+"),
        ("changed", "~"),
        ("dropped", "-"),
        ("switched-off", "~"),
    ]  # exactly one row per changed policy, none for "kept"
    reasons = {r["policy_id"]: r["history_change_reason"] for r in history}
    assert reasons["added"].startswith("PR #7 (create: new in ")
    assert reasons["changed"].startswith("PR #7 (update: differs from ")
    assert reasons["switched-off"].startswith("PR #7 (disable: differs from ")
    assert reasons["dropped"] == "PR #7 (delete: no longer in the policy files)"
    assert all(r["history_user_id"] is None for r in history)
    changed = next(r for r in history if r["policy_id"] == "changed")
    assert (changed["max_age"], changed["factors"], changed["methods"]) == (30, ["totp", "static"], ["POST"])
    assert changed["description"] == {"en": "Billing", "de": "Abrechnung"}
    assert changed["when"] == {"attrs": {"amount": {"gt": 1000}}}
    assert changed["source_commit"] == "abc123"
    stored = dict(Policy.objects.values_list("policy_id", "pk"))
    latest = HistoricalPolicy.objects.order_by("history_id").values_list("policy_id", "id")
    assert {policy_id: pk for policy_id, pk in latest if policy_id in stored} == stored


def test_the_history_names_the_user_of_the_request_as_per_row_saves_did(
    files: tuple[Path, Path], monkeypatch: Any, django_user_model: Any
) -> None:
    user = django_user_model.objects.create_user("operator", password="pw")
    HistoricalRecords.context.request = SimpleNamespace(user=user)
    try:
        reference, bulk = both_ways(files[0], monkeypatch)
    finally:
        del HistoricalRecords.context.request
    assert bulk == reference
    assert {r["history_user_id"] for r in bulk[1]} == {user.pk}


def test_a_second_sync_of_the_same_file_writes_no_history(files: tuple[Path, Path]) -> None:
    sync.sync(load_files([files[0]]), reason="first")
    count = HistoricalPolicy.objects.count()
    plan = sync.sync(load_files([files[0]]), reason="again")
    assert plan.empty
    assert HistoricalPolicy.objects.count() == count


def snapshot() -> tuple[Any, ...]:
    history = list(HistoricalPolicy.objects.order_by("history_id").values())
    return policies(), history, PolicySetState.objects.values_list("version", "generation").first()


@pytest.mark.parametrize("failing", ["history insert", "policy update", "delete"])
def test_a_failure_in_the_middle_leaves_policies_and_history_as_they_were(
    files: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch, failing: str
) -> None:
    call_command("stepup", "sync", str(files[0]), stdout=StringIO())
    before = snapshot()
    calls: list[str] = []
    bulk_create, update_rows, raw_delete = (
        QuerySet.bulk_create,
        QuerySet.update,
        QuerySet._raw_delete,  # type: ignore[attr-defined]
    )

    def fail(what: str) -> None:
        calls.append(what)
        if what == failing:
            raise RuntimeError(f"{what} failed")

    def create(self: QuerySet[Any], objs: Any, *args: Any, **kwargs: Any) -> Any:
        result = bulk_create(self, objs, *args, **kwargs)
        fail("history insert" if self.model is HistoricalPolicy else "policy insert")
        return result

    def update(self: QuerySet[Any], **kwargs: Any) -> Any:
        result = update_rows(self, **kwargs)
        if self.model is Policy:  # not the lock's or the version's UPDATE
            fail("policy update")
        return result

    def delete(self: QuerySet[Any], using: str) -> Any:
        result = raw_delete(self, using)
        fail("delete")
        return result

    monkeypatch.setattr(QuerySet, "bulk_create", create)
    monkeypatch.setattr(QuerySet, "update", update)
    monkeypatch.setattr(QuerySet, "_raw_delete", delete)
    with pytest.raises(RuntimeError, match=f"{failing} failed"):
        call_command("stepup", "sync", str(files[1]), stdout=StringIO())
    assert failing in calls
    assert snapshot() == before


def test_one_change_notice_per_sync(files: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    """The version bump and the notice to other processes come once, after commit, as before."""
    announced: list[object] = []
    committed = store.change_committed

    def change_committed(on_commit: Any) -> None:
        announced.append(on_commit)
        committed(on_commit)

    monkeypatch.setattr(store, "change_committed", change_committed)
    state = store.current_state()
    with CaptureOnCommit() as callbacks:
        call_command("stepup", "sync", str(files[0]), stdout=StringIO())
        call_command("stepup", "sync", str(files[1]), stdout=StringIO())
        call_command("stepup", "sync", str(files[1]), stdout=StringIO())  # nothing to do
    for callback in callbacks:
        callback()
    assert len(announced) == 2
    assert store.current_state().version == state.version + 2
    specs = store.get_policy_set().specs
    assert {"added", "changed", "kept", "switched-off"} <= specs.keys() and "dropped" not in specs


class CaptureOnCommit:
    """The test transaction never commits: run what waits for the commit by hand."""

    def __enter__(self) -> list[Any]:
        from django.db import connection

        self.connection = connection
        self.start = len(connection.run_on_commit)
        self.callbacks: list[Any] = []
        return self.callbacks

    def __exit__(self, *exc: Any) -> None:
        pending = self.connection.run_on_commit[self.start :]
        del self.connection.run_on_commit[self.start :]
        self.callbacks.extend(callback for _, callback, _ in pending)


def test_primary_keys_bulk_create_did_not_return_are_read_back() -> None:
    """MySQL returns no ids from a bulk insert: the history rows need them."""
    rows = [Policy(policy_id=f"p{i}", actions=["x.y"], max_age=60) for i in range(3)]
    Policy.objects.bulk_create(rows)
    for row in rows:
        row.pk = None
    sync._fill_primary_keys(rows, "default")
    assert [row.pk for row in rows] == list(Policy.objects.order_by("policy_id").values_list("pk", flat=True))


def test_a_broken_file_of_many_policies_names_the_same_line_as_a_small_one(tmp_path: Path) -> None:
    """The fast reading keeps the line of an error deep in a big file (YAML and JSON)."""
    from bench.policies import make_policies
    from stepup.policy.loader import dump_policies

    specs = make_policies(2_000)
    for fmt in ("yaml", "json"):
        text = dump_policies(specs, fmt=fmt)
        lines = text.splitlines()
        at = next(i for i, line in enumerate(lines) if "p01500" in line)
        at = next(i for i in range(at, len(lines)) if "max_age" in lines[i])
        lines[at] = lines[at].replace("300", "-5")
        path = tmp_path / f"big.{fmt}"
        path.write_text("\n".join(lines) + "\n")
        with pytest.raises(CommandError):
            call_command("stepup", "sync", str(path), stdout=StringIO(), stderr=(err := StringIO()))
        assert f"{path.name}:{at + 1}" in err.getvalue() or f":{at + 1}:" in err.getvalue(), err.getvalue()
        assert Policy.objects.count() == 0


@pytest.fixture(autouse=True)
def _no_request_user() -> Iterator[None]:
    yield
    if hasattr(HistoricalRecords.context, "request"):
        del HistoricalRecords.context.request


def test_policies_changed_alike_are_updated_together_and_each_gets_its_history(
    files: tuple[Path, Path], monkeypatch: Any, tmp_path: Path
) -> None:
    sync.sync(load_files([files[0]]), reason="first")
    alike = tmp_path / "alike.yaml"
    alike.write_text(BEFORE.replace("max_age: 300", "max_age: 45"))  # "kept" and "changed" alike
    reference, bulk = both_ways(alike, monkeypatch)
    assert bulk == reference
    assert [(r["policy_id"], r["history_type"], r["max_age"]) for r in bulk[1]] == [
        ("changed", "~", 45),
        ("kept", "~", 45),
    ]
