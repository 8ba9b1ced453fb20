"""(c) The whole ``stepup validate`` and ``stepup sync`` commands on big files, each in its own process.

What a user waits for: Python starting, Django set up with its system
checks, the YAML file read and validated, the URLconf checks, and for
``sync`` the plan, the lock, the writes with their history rows and the
commit. For each repeat, on a fresh migrated database (migrating is not
timed):

- ``validate FILE.yaml`` (N policies);
- ``sync FILE.yaml`` into the empty database (N creates);
- ``sync CHANGED.yaml``: one policy in ten changed (``max_age``), one in fifty
  deleted, the rest unchanged.

Each figure is the median of the repeats; the runs are printed too. The
files and SQLite databases live in a temporary folder that is removed at
the end.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field, replace
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
REPEATS = 3
COMMANDS = ("validate", "sync", "resync")


@dataclass
class CommandRow:
    database: str
    size: int
    runs: dict[str, list[float]] = field(default_factory=dict)
    """Seconds of each repeat, by command: ``validate``, ``sync`` (into an empty database), ``resync``."""
    changes: str = ""
    """What the ``resync`` changed, as the command summed it up."""

    def median(self, command: str) -> float:
        return statistics.median(self.runs[command])


def write_files(n: int, folder: Path) -> tuple[Path, Path]:
    """A YAML file of ``n`` generated policies, and the same with 10 % changed and 2 % deleted."""
    from bench.policies import make_policies
    from stepup.policy.loader import dump_policies

    specs = make_policies(n)
    changed = [
        replace(s, max_age=600) if s.decision == "step_up" and i % 10 == 0 else s
        for i, s in enumerate(specs)
        if i % 50 != 7
    ]
    path, changed_path = folder / f"policies-{n}.yaml", folder / f"policies-{n}-changed.yaml"
    path.write_text(dump_policies(specs, fmt="yaml"))
    changed_path.write_text(dump_policies(changed, fmt="yaml"))
    return path, changed_path


def _manage(database_url: str, *args: str) -> tuple[float, str]:
    """Run ``manage.py ARGS`` on ``database_url`` with :mod:`bench.settings`: wall seconds and output."""
    env = {**os.environ, "BENCH_DATABASE_URL": database_url, "DJANGO_SETTINGS_MODULE": "bench.settings"}
    env["PYTHONPATH"] = str(ROOT)
    started = time.perf_counter()
    result = subprocess.run(
        [sys.executable, str(ROOT / "manage.py"), *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    elapsed = time.perf_counter() - started
    if result.returncode != 0:
        raise RuntimeError(f"manage.py {' '.join(args)} failed:\n{result.stderr[-3000:]}")
    return elapsed, result.stdout


def run(
    label: str,
    n: int,
    folder: Path,
    fresh_database: Callable[[int], AbstractContextManager[str]],
    repeats: int = REPEATS,
) -> CommandRow:
    """Time the three commands ``repeats`` times, each time on a database from ``fresh_database(i)``."""
    path, changed = write_files(n, folder)
    row = CommandRow(label, n, {command: [] for command in COMMANDS})
    for i in range(repeats):
        with fresh_database(i) as url:
            _manage(url, "migrate", "--verbosity", "0")
            row.runs["validate"].append(_manage(url, "stepup", "validate", str(path))[0])
            row.runs["sync"].append(_manage(url, "stepup", "sync", str(path), "--reason", "bench")[0])
            seconds, out = _manage(url, "stepup", "sync", str(changed), "--reason", "bench: 10% changed")
            row.runs["resync"].append(seconds)
            row.changes = out.strip().splitlines()[-1].removeprefix("Synced: ").rstrip(".")
    return row


def report(rows: list[CommandRow]) -> list[str]:
    out = [
        "(c) the whole commands, each in a process of its own (Python, Django setup and checks included), "
        "seconds, median of the runs",
        f"{'database':>10} {'policies':>9} {'validate':>9} {'sync, empty db':>15} {'sync, 10% changed':>18}",
    ]
    for row in rows:
        out.append(
            f"{row.database:>10} {row.size:>9} {row.median('validate'):>9.2f} {row.median('sync'):>15.2f} "
            f"{row.median('resync'):>18.2f}"
        )
    for row in rows:
        runs = "; ".join(f"{c} " + ", ".join(f"{s:.2f}" for s in row.runs[c]) for c in COMMANDS)
        out.append(f"    {row.database}, {row.size:,}: runs {runs}")
    if rows:
        out.append(f"    10% changed: {rows[0].changes}")
    return out
