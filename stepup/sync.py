"""Plan, sync and export: keeping the database equal to the policy files.

The database is what is enforced; the files are the source of truth. A plan
is the field-by-field difference between them; ``sync`` applies a plan in one
transaction, under a lock, with a history row (and its reason) for every
change. It writes in bulk (10,000 policies in seconds): the policies with
``bulk_create``, grouped ``UPDATE``s and a plain ``DELETE``, and their history rows,
built here as django-simple-history builds them, with ``bulk_create``. No
``post_save``/``post_delete`` is sent for these writes; the one version bump
and change notice per sync is made by :func:`batched_policy_changes`.

Also here: the policy-set version every policy write bumps
(:func:`bump_policy_version`, called by :mod:`stepup.receivers`; many writes
share one bump inside :func:`batched_policy_changes`), and the drift report
the admin shows (:class:`FileComparison`).
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db import connections, router, transaction
from django.db.models import F
from django.http import HttpRequest
from django.utils import timezone
from simple_history.utils import get_change_reason_from_object

from stepup import store
from stepup.conf import conf
from stepup.models import Policy, PolicySetState, new_generation, spec_fields
from stepup.policy.collector import collector_paused
from stepup.policy.loader import dump_policies, load_files
from stepup.policy.model import SPEC_FIELDS, PolicyFile, PolicySpec
from stepup.state import state
from stepup.store import spec_from_row

ADVISORY_LOCK_KEY = 0x5735_7570  # "stepup": serialises syncs on PostgreSQL


@dataclass(frozen=True)
class FieldChange:
    field: str
    old: Any
    new: Any


@dataclass(frozen=True)
class Change:
    kind: str  # create | update | disable | enable | delete
    policy_id: str
    fields: tuple[FieldChange, ...] = ()
    spec: PolicySpec | None = None
    why: str = ""


@dataclass(frozen=True)
class Plan:
    changes: tuple[Change, ...]
    unchanged: tuple[str, ...] = field(default=())

    @property
    def empty(self) -> bool:
        return not self.changes

    def count(self, kind: str) -> int:
        return sum(1 for c in self.changes if c.kind == kind)

    def summary(self) -> str:
        kinds = ("create", "update", "enable", "disable", "delete")
        return ", ".join(f"{self.count(k)} to {k}" for k in kinds) + f", {len(self.unchanged)} unchanged"


def make_plan(
    policy_file: PolicyFile, using: str = "default", *, rows: Mapping[str, Policy] | None = None
) -> Plan:
    """The changes that would make the database equal to ``policy_file``.

    :param rows: the stored policies by id, when the caller has read them (``sync`` locks them).
    """
    if rows is None:
        rows = {row.policy_id: row for row in Policy.objects.using(using).all()}
    wanted = {spec.id: spec for spec in policy_file.policies}
    changes: list[Change] = []
    unchanged: list[str] = []
    for policy_id in sorted(wanted.keys() | rows.keys()):
        spec, row = wanted.get(policy_id), rows.get(policy_id)
        if row is None:
            assert spec is not None
            changes.append(
                Change("create", policy_id, _diff({}, spec_fields(spec)), spec, f"new in {spec.source}")
            )
        elif spec is None:
            changes.append(Change("delete", policy_id, why="no longer in the policy files"))
        else:
            diff = _diff(_row_fields(row), spec_fields(spec))
            if not diff:
                unchanged.append(policy_id)
                continue
            kind = "update"
            if [d.field for d in diff] == ["enabled"]:
                kind = "enable" if spec.enabled else "disable"
            changes.append(Change(kind, policy_id, diff, spec, f"differs from {spec.source}"))
    return Plan(tuple(changes), tuple(unchanged))


def _row_fields(row: Policy) -> dict[str, Any]:
    return {name: getattr(row, name) for name in SPEC_FIELDS}


def _diff(old: dict[str, Any], new: dict[str, Any]) -> tuple[FieldChange, ...]:
    return tuple(
        FieldChange(name, old.get(name), new[name]) for name in SPEC_FIELDS if old.get(name) != new[name]
    )


def _lock(using: str) -> None:
    """Serialise concurrent syncs for the rest of this transaction."""
    connection = connections[using]
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", [ADVISORY_LOCK_KEY])
    # Everywhere: the first statement writes the state row (a write that changes nothing). SQLite
    # then holds its write lock, other databases the row's lock, until commit. A read first would
    # let two SQLite syncs each hold a read lock and then both fail to write.
    states = PolicySetState.objects.using(using)
    if not states.filter(pk=1).update(version=F("version")):
        states.get_or_create(pk=1)


def sync(
    policy_file: PolicyFile,
    *,
    reason: str,
    commit: str = "",
    using: str = "default",
    dry_run: bool = False,
) -> Plan:
    """Make the database equal to ``policy_file`` in one transaction; return what changed.

    Raises ``ValueError`` (and changes nothing) when the file has errors.
    """
    if policy_file.errors:
        raise ValueError("the policy files have errors; nothing was changed")
    with collector_paused(), transaction.atomic(using=using):
        _lock(using)
        # A locking read: it sees what a sync that held the lock before committed, where a plain
        # read under REPEATABLE READ (MySQL) sees the snapshot taken before the wait for the lock.
        rows = {row.policy_id: row for row in Policy.objects.using(using).select_for_update()}
        plan = make_plan(policy_file, using, rows=rows)
        if dry_run or plan.empty:
            return plan
        with batched_policy_changes(using):
            _apply(plan, rows, reason=reason, commit=commit, using=using)
    return plan


def _apply(plan: Plan, rows: dict[str, Policy], *, reason: str, commit: str, using: str) -> None:
    """Write a plan in bulk: the policies, then one history row per change, in the caller's transaction.

    ``bulk_create``, ``UPDATE``s of many rows at once and a plain ``DELETE``
    send no ``post_save`` or ``post_delete``, so simple-history records nothing
    by itself: the history rows are built here as simple-history builds them
    (``bulk_history_create``: every tracked field, ``history_type`` ``+``,
    ``~`` or ``-``, the reason, the user) and inserted in bulk. The version
    bump those signals would have asked for is made once by
    :func:`batched_policy_changes` around this call.
    """
    now = timezone.now()
    created: list[Policy] = []
    updated: list[Policy] = []
    updates: dict[str, tuple[dict[str, Any], list[Policy]]] = {}
    deleted: list[Policy] = []
    for change in plan.changes:
        row = rows.get(change.policy_id)
        if change.kind == "delete":
            assert row is not None
            deleted.append(row)
        else:
            assert change.spec is not None
            if row is None:
                row = Policy(policy_id=change.policy_id)
                created.append(row)
            else:
                updated.append(row)
                _group_update(updates, row, change, commit, now)
            row.apply_spec(change.spec)
            row.source_file = change.spec.source
            row.source_commit = commit
            row.source_user = None
            row.updated_at = now
        row._change_reason = f"{reason} ({change.kind}: {change.why})"  # type: ignore[attr-defined]
    policies = Policy.objects.using(using)
    policies.bulk_create(created, batch_size=_BATCH)
    _fill_primary_keys(created, using)
    for values, group in updates.values():
        for start in range(0, len(group), _BATCH):
            policies.filter(pk__in=[row.pk for row in group[start : start + _BATCH]]).update(**values)
    history = [
        *_history_rows(created, "+", now),
        *_history_rows(updated, "~", now),
        *_history_rows(deleted, "-", now),
    ]
    for start in range(0, len(deleted), _BATCH):
        # A plain DELETE: QuerySet.delete() would load every row again to send post_delete.
        batch = [row.pk for row in deleted[start : start + _BATCH]]
        policies.filter(pk__in=batch)._raw_delete(using)
    Policy.history.model.objects.using(using).bulk_create(history, batch_size=_BATCH)


_BATCH = 500
"""Rows per ``INSERT`` and per ``DELETE``."""


def _group_update(
    updates: dict[str, tuple[dict[str, Any], list[Policy]]],
    row: Policy,
    change: Change,
    commit: str,
    now: Any,
) -> None:
    """Put ``row`` with the rows that get the same new values: one ``UPDATE … WHERE id IN`` per group.

    A sync usually changes many policies alike (``max_age: 300`` to ``600`` in
    a thousand of them), so this makes few statements; ``bulk_update`` would
    make a ``CASE`` over every row for every field, far slower.
    """
    assert change.spec is not None
    values = {item.field: item.new for item in change.fields}
    values.update(source_file=change.spec.source, source_commit=commit)
    key = json.dumps(values, sort_keys=True)
    values.update(source_user=None, updated_at=now)
    updates.setdefault(key, (values, []))[1].append(row)


def _fill_primary_keys(created: Sequence[Policy], using: str) -> None:
    """Primary keys of rows ``bulk_create`` could not return (MySQL), read back by their unique id."""
    missing = {row.policy_id: row for row in created if row.pk is None}
    if not missing:
        return
    ids = list(missing)
    for start in range(0, len(ids), _BATCH):
        found = Policy.objects.using(using).filter(policy_id__in=ids[start : start + _BATCH])
        for policy_id, pk in found.values_list("policy_id", "pk"):
            missing[policy_id].pk = pk


def _history_rows(rows: Sequence[Policy], history_type: str, date: Any) -> list[Any]:
    """Historical records of ``rows`` as simple-history's ``bulk_history_create`` makes them."""
    if not rows or not getattr(settings, "SIMPLE_HISTORY_ENABLED", True):
        return []
    model: Any = Policy.history.model
    tracked = [f.attname for f in model.tracked_fields]
    return [
        model(
            history_date=getattr(row, "_history_date", date),
            history_type=history_type,
            history_user=model.get_default_history_user(row),
            history_change_reason=get_change_reason_from_object(row),
            **{name: getattr(row, name) for name in tracked},
        )
        for row in rows
    ]


# --- the policy-set version -----------------------------------------------------------


def bump_policy_version(using: str = "default") -> None:
    """Record a policy change: a new version and generation in this transaction; announce it after commit.

    Until the transaction commits, only this thread sees the change
    (:func:`stepup.store.note_uncommitted_change`); after commit, this process
    re-reads the version and every other process is told through the shared
    cache (:func:`stepup.store.change_committed`). The ``UPDATE`` also locks the
    version row, so concurrent changes are serialised and each gets its own version.
    """
    state = PolicySetState.objects.using(using).filter(pk=1)
    updated = state.update(version=F("version") + 1, generation=new_generation())
    if not updated:
        PolicySetState.objects.using(using).get_or_create(pk=1, defaults={"version": 1})

    def committed() -> None:
        store.change_committed(committed)

    store.note_uncommitted_change(using, committed)
    transaction.on_commit(committed, using=using)


_batched: ContextVar[bool] = ContextVar("stepup_policy_batch", default=False)


@contextmanager
def batched_policy_changes(using: str = "default") -> Iterator[None]:
    """Save many policies with one version bump at the end (``sync`` and the admin's bulk delete use it)."""
    token = _batched.set(True)
    try:
        yield
    finally:
        _batched.reset(token)
    bump_policy_version(using)


def policy_changed(using: str = "default") -> None:
    """A policy row was saved or deleted: bump the version now, or once at the end of the batch."""
    if not _batched.get():
        bump_policy_version(using)


# --- the drift report the admin shows -------------------------------------------------


@dataclass
class FileComparison:
    """How the stored policies differ from the policy files: ``sync``'s own plan, read once per request."""

    error: str = ""
    changes: dict[str, Change] = field(default_factory=dict)
    unchanged: frozenset[str] = frozenset()

    @classmethod
    def load(cls) -> FileComparison:
        paths = conf.POLICY_FILES
        if not paths:
            return cls(error="no policy files configured")
        policy_file = load_files(paths)
        if policy_file.errors:
            return cls(error="files have errors")
        plan = make_plan(policy_file, using=router.db_for_read(Policy))
        return cls(changes={c.policy_id: c for c in plan.changes}, unchanged=frozenset(plan.unchanged))

    def differs(self, row: Policy) -> bool | None:
        """Whether ``row`` differs from the files; ``None`` when the files can't tell."""
        if self.error or (row.policy_id not in self.changes and row.policy_id not in self.unchanged):
            return None
        return row.policy_id in self.changes

    def describe(self, row: Policy) -> str:
        if self.error:
            return self.error
        change = self.changes.get(row.policy_id)
        if change is None:
            return "no" if row.policy_id in self.unchanged else "-"
        if change.kind == "delete":
            return "yes: not in the files"
        return "yes: " + ", ".join(item.field for item in change.fields)


def file_comparison(request: HttpRequest) -> FileComparison:
    """The comparison for this request (the files are read at most once per request)."""
    found = state(request).policy_files
    if not isinstance(found, FileComparison):
        found = state(request).policy_files = FileComparison.load()
    return found


# --- export and helpers ---------------------------------------------------------------


def export(using: str = "default", fmt: str = "yaml") -> tuple[str, list[str]]:
    """The database's policies as a policy file; also the ids of rows that no longer validate."""
    specs: list[PolicySpec] = []
    broken: list[str] = []
    for row in Policy.objects.using(using).all():
        spec = spec_from_row(row.policy_id, row.to_dict())
        if spec is None or store.is_stand_in(spec):
            broken.append(row.policy_id)
        if spec is not None:
            specs.append(spec)
    return dump_policies(specs, fmt=fmt), broken  # type: ignore[arg-type]


def load(paths: Sequence[str | Path]) -> PolicyFile:
    return load_files(paths)


def git_commit(paths: Sequence[str | Path]) -> str:
    """The git commit the files are at (``<sha>-dirty`` if they have uncommitted changes), or ``""``."""
    if not paths:
        return ""
    folder = Path(paths[0]).resolve().parent
    try:
        sha = _git(folder, "rev-parse", "--short=12", "HEAD")
        dirty = _git(folder, "status", "--porcelain", "--", *(str(Path(p).resolve()) for p in paths))
    except (OSError, subprocess.SubprocessError):
        return ""
    return f"{sha}-dirty" if dirty else sha


def _git(folder: Path, *args: str) -> str:
    result = subprocess.run(  # noqa: S603
        ["git", "-C", str(folder), *args],  # noqa: S607
        capture_output=True,
        text=True,
        timeout=10,
        check=True,
    )
    return result.stdout.strip()


def default_reason(paths: Sequence[str | Path], commit: str) -> str:
    names = ", ".join(str(p) for p in paths)
    return f"stepup sync from {names}" + (f" at {commit}" if commit else "")
