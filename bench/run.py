"""The stepup benchmark: ``make bench`` (or ``python bench/run.py [--quick] [--sections abc]``).

(a) Decision latency at 10/100/1,000/10,000 policies for stepup, AWS Cedar
    (``cedarpy``) and CEL (``common-expression-language``), each engine's
    decisions checked equal on a table of inputs before anything is timed
    (:mod:`bench.decisions`).
(b) One request through the full middleware stack with stepup and without it,
    for a route no policy matches and for a protected route with a valid grant,
    with the SQL queries each makes (:mod:`bench.stack`); with Redis too when a
    Redis URL is given.
(c) ``sync`` of 1,000 and 10,000 policies with history, on SQLite and, when a
    PostgreSQL URL is given, on PostgreSQL (:mod:`bench.syncing`, each database
    in a process of its own).

PostgreSQL and Redis come from ``STEPUP_BENCH_DATABASE_URL`` /
``STEPUP_BENCH_REDIS_URL``, else ``STEPUP_TEST_DATABASE_URL`` /
``STEPUP_TEST_REDIS_URL``. A fresh database is created from the PostgreSQL URL
and dropped at the end; Redis keys get a prefix of their own.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import platform
import secrets
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

TARGET_DECISION_US = 5.0
TARGET_RATIO = 10.0
TARGET_OVERHEAD = 0.03
TARGET_SYNC_1000_S = 5.0


def _env(*names: str) -> str | None:
    return next((os.environ[n] for n in names if os.environ.get(n)), None)


def _verdict(ok: bool) -> str:
    return "met" if ok else "NOT met"


def section_a(quick: bool, summary: list[str]) -> list[str]:
    from bench import decisions

    rows, status = decisions.run(decisions.SIZES, quick=quick)
    worst = max(max(r.late["stepup"], r.none["stepup"]) for r in rows)
    summary.append(
        f"decision median < {TARGET_DECISION_US:g} µs at every size: {_verdict(worst < TARGET_DECISION_US)} "
        f"(worst {worst:.2f} µs)"
    )
    for name in ("cedar", "cel", "cel-scan"):
        if status.get(name) is not None:
            summary.append(f"≥ {TARGET_RATIO:g}x faster than {name}: not measured ({status[name]})")
            continue
        ratio = min(min(r.late[name] / r.late["stepup"], r.none[name] / r.none["stepup"]) for r in rows)
        summary.append(
            f"≥ {TARGET_RATIO:g}x faster than {name}: {_verdict(ratio >= TARGET_RATIO)} (least {ratio:.1f}x)"
        )
        if ratio < TARGET_RATIO:
            best = min(rows, key=lambda r: r.late[name] / r.hand_written)
            summary.append(
                f"    even hand-written Python for the one matching policy ({best.hand_written:.2f} µs) "
                f"is only {best.late[name] / best.hand_written:.1f}x faster than {name} "
                f"({best.late[name]:.2f} µs) at {best.size} policies"
            )
    return decisions.report(rows, status)


def _with_database(url: str, name: str) -> str:
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, f"/{name}", parts.query, parts.fragment))


class FreshPostgres:
    """A PostgreSQL database created for this run from ``url``, dropped at the end."""

    def __init__(self, url: str) -> None:
        self.admin_url = url
        self.name = f"stepup_bench_{os.getpid()}_{secrets.token_hex(3)}"
        self.url = _with_database(url, self.name)

    def _admin(self, sql: str) -> None:
        import psycopg

        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            conn.execute(sql)  # type: ignore[arg-type]

    def __enter__(self) -> FreshPostgres:
        self._admin(f'CREATE DATABASE "{self.name}"')
        return self

    def __exit__(self, *exc: Any) -> None:
        self._admin(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')


def setup_django(database_url: str) -> None:
    """Django with :mod:`bench.settings` on ``database_url``, migrated."""
    os.environ["BENCH_DATABASE_URL"] = database_url
    os.environ["DJANGO_SETTINGS_MODULE"] = "bench.settings"
    import django
    from django.core.management import call_command

    django.setup()
    logging.getLogger("stepup").setLevel(logging.ERROR)
    call_command("migrate", verbosity=0)


def section_b(quick: bool, redis_url: str | None, database: str, summary: list[str]) -> list[str]:
    from bench import stack

    user = stack.setup()
    cases = stack.run(user, quick=quick, redis_url=redis_url)
    unmatched = cases[0]
    extra = unmatched.with_queries - unmatched.without_queries
    measured = [("local-memory cache", unmatched)]
    if unmatched.redis is not None:
        measured.append(("Redis carrying change notices", unmatched.redis))
    ok = extra == 0 and all(case.overhead_cpu < TARGET_OVERHEAD for _, case in measured)
    summary.append(
        f"< {TARGET_OVERHEAD:.0%} overhead and zero extra queries on unmatched routes: {_verdict(ok)} "
        f"({extra} extra queries)"
    )
    for label, case in measured:
        added = case.with_us[1] - case.without_us[1]
        summary.append(
            f"    minimal view, {label}: {case.overhead_cpu:.1%} CPU, {case.overhead_wall:.1%} wall "
            f"(+{added:.1f} µs CPU)"
        )
    page = cases[1]
    summary.append(
        f"    the demo's home page: {page.overhead_cpu:.1%} CPU, {page.overhead_wall:.1%} wall "
        f"(+{page.with_us[1] - page.without_us[1]:.1f} µs CPU); "
        f"{page.with_queries - page.without_queries} extra queries"
    )
    return stack.report(cases, database, redis_url)


def _sync_rows(database_url: str, label: str, sizes: tuple[int, ...]) -> list[Any]:
    """Run :mod:`bench.syncing` in a process of its own, with ``database_url`` as the default database."""
    import json
    import subprocess

    from bench.syncing import SyncRow

    env = {**os.environ, "BENCH_DATABASE_URL": database_url, "DJANGO_SETTINGS_MODULE": "bench.settings"}
    env["PYTHONPATH"] = str(ROOT)
    result = subprocess.run(
        [sys.executable, "-m", "bench.syncing", ",".join(map(str, sizes)), label],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(f"sync benchmark on {label} failed:\n{result.stderr[-3000:]}")
    return [SyncRow(**row) for row in json.loads(result.stdout.strip().splitlines()[-1])]


def section_c(quick: bool, postgres_url: str | None, summary: list[str]) -> list[str]:
    from bench import syncing

    sizes = (1_000,) if quick else syncing.SIZES
    with tempfile.TemporaryDirectory(prefix="stepup-bench-sync-") as folder:
        rows = _sync_rows(f"sqlite:///{Path(folder) / 'sync.sqlite3'}", "sqlite", sizes)
    if postgres_url:
        with FreshPostgres(postgres_url) as database:
            rows += _sync_rows(database.url, "postgresql", sizes)
    loads = syncing.load_times(sizes)
    yaml_1000 = next(yaml_s for n, yaml_s, _ in loads if n == 1_000)
    for row in rows:
        if row.size == 1_000:
            total = row.create_s + yaml_1000
            summary.append(
                f"sync of 1,000 policies < {TARGET_SYNC_1000_S:g} s ({row.database}): "
                f"{_verdict(total < TARGET_SYNC_1000_S)} ({row.create_s:.2f} s sync + {yaml_1000:.2f} s "
                "reading the YAML file)"
            )
    out = syncing.report(rows, loads)
    if not postgres_url:
        out.append("    PostgreSQL: skipped (set STEPUP_BENCH_DATABASE_URL or STEPUP_TEST_DATABASE_URL)")
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer inputs and repeats (a smoke run)")
    parser.add_argument("--sections", default="abc", help="which sections to run, e.g. 'a' or 'bc'")
    args = parser.parse_args(argv)
    logging.getLogger("stepup.policy").setLevel(logging.ERROR)  # fail-closed notes on the test table

    postgres_url = _env("STEPUP_BENCH_DATABASE_URL", "STEPUP_TEST_DATABASE_URL")
    redis_url = _env("STEPUP_BENCH_REDIS_URL", "STEPUP_TEST_REDIS_URL")
    print(
        f"stepup benchmark: Python {platform.python_version()} on {platform.machine()}, "
        f"{os.cpu_count()} CPUs, load {os.getloadavg()[0]:.2f}"
    )
    summary: list[str] = []
    lines: list[str] = []
    if "a" in args.sections:
        lines += [*section_a(args.quick, summary), ""]
    if "c" in args.sections:
        lines += [*section_c(args.quick, postgres_url, summary), ""]
    if "b" in args.sections:
        # On PostgreSQL when there is one (what several processes share), else a SQLite file.
        with contextlib.ExitStack() as stack:
            if postgres_url:
                database_url, label = stack.enter_context(FreshPostgres(postgres_url)).url, "PostgreSQL"
            else:
                folder = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="stepup-bench-stack-")))
                database_url, label = f"sqlite:///{folder / 'stack.sqlite3'}", "SQLite"
            setup_django(database_url)
            lines += [*section_b(args.quick, redis_url, label, summary), ""]
            from django.db import connections

            connections.close_all()
    print("\n".join(lines))
    print("targets on this machine:")
    for line in summary:
        print(f"  {line}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
