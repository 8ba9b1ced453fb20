"""(c) ``sync`` of large policy files, with a history row per change, on SQLite and PostgreSQL.

For each size: a file of N policies (the generated set of :mod:`bench.policies`)
is synced into an empty database (N creates), then synced again unchanged (a
plan and nothing to do), then with one policy in ten changed (N/10 updates).
Needs Django set up with :mod:`bench.settings`.
"""

from __future__ import annotations

import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.policies import make_policies

SIZES = (1_000, 10_000)


@dataclass
class SyncRow:
    database: str
    size: int
    create_s: float
    unchanged_s: float
    update_s: float
    history_rows: int
    recompile_full_s: float = 0.0  # a process compiling every stored policy
    recompile_one_s: float = 0.0  # the same process after one policy changed


def _file(n: int, folder: Path, *, changed: bool = False) -> Path:
    from dataclasses import replace

    from stepup.policy.loader import dump_policies

    specs = make_policies(n)
    if changed:
        specs = [
            replace(s, max_age=600) if s.decision == "step_up" and i % 10 == 0 else s
            for i, s in enumerate(specs)
        ]
    path = folder / f"policies-{n}{'-changed' if changed else ''}.json"
    path.write_text(dump_policies(specs, fmt="json"))
    return path


def _load(path: Path) -> Any:
    from stepup.sync import load

    policy_file = load([path])
    assert policy_file.ok, policy_file.errors[:3]
    return policy_file


def _timed_sync(policy_file: Any, using: str) -> tuple[float, int]:
    """Seconds for ``sync`` itself (plan, lock, writes, history, commit); the file is already read."""
    from stepup.sync import sync

    started = time.perf_counter()
    plan = sync(policy_file, reason="bench", using=using)
    return time.perf_counter() - started, len(plan.changes)


def load_times(sizes: tuple[int, ...]) -> list[tuple[int, float, float]]:
    """Seconds to read and validate a file of N policies, as YAML and as JSON (no database)."""
    from stepup.policy.loader import dump_policies, load_files

    rows = []
    with tempfile.TemporaryDirectory(prefix="stepup-bench-load-") as folder:
        for n in sizes:
            specs = make_policies(n)
            times = []
            for fmt in ("yaml", "json"):
                path = Path(folder) / f"policies-{n}.{fmt}"
                path.write_text(dump_policies(specs, fmt=fmt))
                started = time.perf_counter()
                assert load_files([path]).ok
                times.append(time.perf_counter() - started)
            rows.append((n, times[0], times[1]))
    return rows


def run(alias: str, label: str, sizes: tuple[int, ...] = SIZES) -> list[SyncRow]:
    with tempfile.TemporaryDirectory(prefix="stepup-bench-") as folder:
        return _run(alias, label, sizes, Path(folder))


def _run(alias: str, label: str, sizes: tuple[int, ...], folder: Path) -> list[SyncRow]:
    from stepup.models import Policy

    rows = []
    for n in sizes:
        for row in Policy.objects.using(alias).all():
            row.delete(using=alias)
        Policy.history.using(alias).all().delete()
        policies, changed = _load(_file(n, folder)), _load(_file(n, folder, changed=True))
        create, created = _timed_sync(policies, alias)
        unchanged, nothing = _timed_sync(policies, alias)
        update, updated = _timed_sync(changed, alias)
        assert (nothing, updated) == (0, len([i for i in range(0, n, 10) if i % 7 != 3])), (nothing, updated)
        assert created >= n
        history = Policy.history.using(alias).count()
        full, one = _recompile_times(alias)
        rows.append(SyncRow(label, n, create, unchanged, update, history, full, one))
    return rows


def _recompile_times(alias: str) -> tuple[float, float]:
    """Seconds to compile every stored policy, then to reload after a change to one (item 6 of issue 18)."""
    from stepup import store
    from stepup.models import Policy

    state = store.current_state(alias)
    started = time.perf_counter()
    policy_set, stamps = store.reload_policy_set(state, using=alias)
    full = time.perf_counter() - started
    row = Policy.objects.using(alias).order_by("policy_id").first()
    assert row is not None
    row.description = "changed by the benchmark"
    row.save(using=alias)
    state = store.current_state(alias)
    started = time.perf_counter()
    changed, _ = store.reload_policy_set(state, using=alias, previous=policy_set, stamps=stamps)
    one = time.perf_counter() - started
    assert changed.specs[row.policy_id].description == "changed by the benchmark"
    assert len(changed) == len(policy_set)
    return full, one


def report(rows: list[SyncRow], loads: list[tuple[int, float, float]]) -> list[str]:
    out = [
        "(c) stepup sync, seconds for sync itself (plan, lock, bulk writes and a history row per change, "
        "commit), the file already read",
        f"{'database':>10} {'policies':>9} {'create all':>11} {'unchanged':>10} {'update 10%':>11} "
        f"{'history rows':>13}",
    ]
    for row in rows:
        out.append(
            f"{row.database:>10} {row.size:>9} {row.create_s:>11.2f} {row.unchanged_s:>10.2f} "
            f"{row.update_s:>11.2f} {row.history_rows:>13}"
        )
    out.append(f"{'':>10} {'policies':>9} {'compile all':>12} {'reload, 1 changed':>18}")
    for row in rows:
        out.append(
            f"{row.database:>10} {row.size:>9} {row.recompile_full_s:>12.3f} {row.recompile_one_s:>18.3f}"
        )
    out.append("    compile all / reload: a process compiling every stored policy, then after one changed")
    out.append("    reading and validating the file first (stepup sync does both), seconds:")
    for n, yaml_s, json_s in loads:
        out.append(f"{'':>10} {n:>9}  YAML {yaml_s:.2f}  JSON {json_s:.2f}")
    return out


def main() -> None:
    """``python -m bench.syncing SIZES LABEL``: migrate, sync, print the rows as JSON (run by run.py)."""
    import json
    import logging
    import sys

    import django
    from django.core.management import call_command

    django.setup()
    logging.getLogger("stepup").setLevel(logging.ERROR)
    call_command("migrate", verbosity=0)
    sizes = tuple(int(n) for n in sys.argv[1].split(","))
    rows = run("default", sys.argv[2], sizes)
    print(json.dumps([row.__dict__ for row in rows]))


if __name__ == "__main__":
    main()
