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
    in a process of its own); then the whole ``stepup validate`` and ``stepup
    sync`` commands on 10,000 policies, each in its own process, three times
    (:mod:`bench.commands`).

PostgreSQL and Redis come from ``STEPUP_BENCH_DATABASE_URL`` /
``STEPUP_BENCH_REDIS_URL``, else ``STEPUP_TEST_DATABASE_URL`` /
``STEPUP_TEST_REDIS_URL``. A fresh database is created from the PostgreSQL URL
and dropped at the end; Redis keys get a prefix of their own.
"""

from __future__ import annotations

import argparse
import contextlib
import json
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
TARGET_PROTECTED_RATIO = 1.15
TARGET_DECIDE_RATIO = 3.0
TARGET_THROUGHPUT = 0.85
TARGET_VALIDATE_10000_S = 4.0
TARGET_SYNC_10000_S = 10.0


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


def _child(module: str, database_url: str, *args: str) -> str:
    """``python -m module args`` on ``database_url`` as the default database: its last line of output."""
    import subprocess

    env = {**os.environ, "BENCH_DATABASE_URL": database_url, "DJANGO_SETTINGS_MODULE": "bench.settings"}
    env["PYTHONPATH"] = str(ROOT)
    result = subprocess.run(
        [sys.executable, "-m", module, *args], cwd=ROOT, env=env, capture_output=True, text=True, check=False
    )
    if result.returncode != 0:
        raise RuntimeError(f"{module} {' '.join(args)} failed:\n{result.stderr[-3000:]}")
    return result.stdout.strip().splitlines()[-1]


def _databases(stack: contextlib.ExitStack, postgres_url: str | None) -> list[tuple[str, str]]:
    """(label, URL): a SQLite file, and a fresh PostgreSQL database when there is a server."""
    folder = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="stepup-bench-stack-")))
    found = [("SQLite", f"sqlite:///{folder / 'stack.sqlite3'}")]
    if postgres_url:
        found.append(("PostgreSQL", stack.enter_context(FreshPostgres(postgres_url)).url))
    return found


def section_b(quick: bool, postgres_url: str | None, redis_url: str | None, summary: list[str]) -> list[str]:
    from bench import stack

    runs: list[stack.StackRun] = []
    throughputs: list[dict[str, Any]] = []
    with contextlib.ExitStack() as resources:
        databases = _databases(resources, postgres_url)
        for label, url in databases:
            args = [label, *(["--quick"] if quick else []), *(["--redis", redis_url] if redis_url else [])]
            runs.append(stack.parse(_child("bench.stack", url, *args)))
        # Throughput on the database several processes share: PostgreSQL when there is one, with
        # Redis carrying the notices, and again with PostgreSQL's LISTEN/NOTIFY instead.
        label, _ = databases[-1]
        notices = [["--redis", redis_url]] if redis_url else [[]]
        if label == "PostgreSQL":
            notices.append(["--notices", "database"])
        for kind in notices:
            with contextlib.ExitStack() as fresh:
                if label == "PostgreSQL":
                    assert postgres_url is not None
                    url = fresh.enter_context(FreshPostgres(postgres_url)).url
                else:
                    url = (
                        f"sqlite:///{Path(fresh.enter_context(tempfile.TemporaryDirectory())) / 'g.sqlite3'}"
                    )
                throughput = json.loads(
                    _child("bench.throughput", url, *(["--quick"] if quick else []), *kind)
                )
                throughput["database"] = label
                throughputs.append(throughput)
    _summarize_b(runs, throughputs, summary)
    out = stack.report(runs)
    for throughput in throughputs:
        out += _report_throughput(throughput)
    if not postgres_url:
        out.append("    PostgreSQL: skipped (set STEPUP_BENCH_DATABASE_URL or STEPUP_TEST_DATABASE_URL)")
    return out


def _summarize_b(runs: list[Any], throughputs: list[dict[str, Any]], summary: list[str]) -> None:
    for run in runs:
        v = run.variants
        cases = [("local-memory cache", v)]
        if run.redis:
            cases.append(("Redis carrying change notices", run.redis))
        if run.listen:
            cases.append(("LISTEN/NOTIFY carrying change notices", run.listen))
        for label, timings in cases:
            for route in ("minimal view", "demo home page"):
                with_, without = timings[f"{route}, with stepup"], timings[f"{route}, without"]
                overhead = with_.cpu_us / without.cpu_us - 1
                extra = with_.queries - without.queries
                ok = overhead <= TARGET_OVERHEAD and extra == 0
                summary.append(
                    f"unmatched route ≤ {TARGET_OVERHEAD:.0%}, 0 queries ({run.database}, {route}, {label}): "
                    f"{_verdict(ok)} ({overhead:+.1%} CPU, {with_.wall_us / without.wall_us - 1:+.1%} wall, "
                    f"{extra:+d} queries)"
                )
        for label, timings in cases:
            stepup, otp = timings["require_stepup"], timings["otp_required"]
            ratio, wall_ratio = stepup.cpu_us / otp.cpu_us, stepup.wall_us / otp.wall_us
            extra = stepup.queries - otp.queries
            mean_ratio = stepup.mean_wall_us / otp.mean_wall_us
            figures = (
                f"{ratio:.2f}x median CPU, {wall_ratio:.2f}x median wall, {mean_ratio:.2f}x mean wall; "
                f"{stepup.queries} vs {otp.queries} queries"
            )
            if timings is v and run.listen:
                # PostgreSQL with nothing telling a process of revocations elsewhere: it must read the
                # grants on every protected request. One setting (NOTICES = "database") gives it notices.
                summary.append(
                    f'    {run.database} with no notices at all (a local-memory cache, NOTICES = "cache"), '
                    f"no target: {figures}; every protected request reads the grants"
                )
                continue
            ok = max(ratio, wall_ratio) <= TARGET_PROTECTED_RATIO and extra <= 1
            summary.append(
                f"protected route ≤ {TARGET_PROTECTED_RATIO:g}x otp_required (median CPU and wall), ≤ 1 more "
                f"query ({run.database}, {label}): {_verdict(ok)} ({figures})"
            )
        decide_ratio = run.decide_us / run.engine_us
        summary.append(
            f"decide() ≤ {TARGET_DECIDE_RATIO:g}x the engine on a loaded context ({run.database}): "
            f"{_verdict(decide_ratio <= TARGET_DECIDE_RATIO)} "
            f"({run.decide_us:.2f} µs vs {run.engine_us:.2f} µs, {decide_ratio:.1f}x)"
        )
    for throughput in throughputs:
        rps = throughput["rps"]
        ratio = rps["require_stepup"] / rps["otp_required"]
        summary.append(
            f"gunicorn throughput ≥ {TARGET_THROUGHPUT:g}x otp_required ({throughput['database']}, "
            f"{throughput['notices']}): {_verdict(ratio >= TARGET_THROUGHPUT)} "
            f"({rps['require_stepup']:.0f} vs {rps['otp_required']:.0f} requests/s, {ratio:.2f}x)"
        )


def _report_throughput(throughput: dict[str, Any]) -> list[str]:
    rps, errors = throughput["rps"], throughput["errors"]
    return [
        f"(b) gunicorn, 2 sync workers, {throughput['database']}, notices: {throughput['notices']}, "
        f"persistent database connections; "
        f"{throughput['clients']} client threads on loopback in this process, "
        f"{throughput['seconds']:.0f} s per route in alternating rounds",
        *(
            f"{name:>30} {rps[name]:>8.1f} requests/s ({errors[name]} not 200)"
            for name in ("require_stepup", "otp_required")
        ),
        f"    allowed decisions in the log after the workers' graceful exit: {throughput['allowed_rows']}",
    ]


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
    from bench import commands, syncing

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
        if row.size == max(sizes):
            summary.append(
                f"    {row.database}, {row.size:,} policies: a policy change costs a process "
                f"{row.recompile_one_s * 1000:.0f} ms (compiling all: {row.recompile_full_s * 1000:.0f} ms)"
            )
    whole = _command_rows(max(sizes), postgres_url, repeats=1 if quick else commands.REPEATS)
    _summarize_commands(whole, summary)
    out = syncing.report(rows, loads)
    out += commands.report(whole)
    if not postgres_url:
        out.append("    PostgreSQL: skipped (set STEPUP_BENCH_DATABASE_URL or STEPUP_TEST_DATABASE_URL)")
    return out


def _command_rows(n: int, postgres_url: str | None, repeats: int) -> list[Any]:
    """The whole validate and sync commands on N policies: SQLite, and PostgreSQL when there is a server."""
    from bench import commands

    with tempfile.TemporaryDirectory(prefix="stepup-bench-commands-") as name:
        folder = Path(name)

        @contextlib.contextmanager
        def sqlite(i: int) -> Any:
            path = folder / f"commands-{i}.sqlite3"
            yield f"sqlite:///{path}"
            path.unlink(missing_ok=True)

        @contextlib.contextmanager
        def postgres(i: int) -> Any:
            assert postgres_url is not None
            with FreshPostgres(postgres_url) as database:
                yield database.url

        rows = [commands.run("SQLite", n, folder, sqlite, repeats)]
        if postgres_url:
            rows.append(commands.run("PostgreSQL", n, folder, postgres, repeats))
    return rows


def _summarize_commands(rows: list[Any], summary: list[str]) -> None:
    for row in rows:
        label = f"{row.size:,} policies"
        runs = len(row.runs["validate"])
        how = f"whole command, median of {runs}" if runs > 1 else "whole command, one run"
        validate, sync_s, resync = row.median("validate"), row.median("sync"), row.median("resync")
        if row.database == "SQLite" and row.size == 10_000:
            summary.append(
                f"{label}: validate < {TARGET_VALIDATE_10000_S:g} s ({row.database}): "
                f"{_verdict(validate < TARGET_VALIDATE_10000_S)} ({validate:.2f} s, {how})"
            )
            summary.append(
                f"{label}: sync < {TARGET_SYNC_10000_S:g} s ({row.database}): "
                f"{_verdict(sync_s < TARGET_SYNC_10000_S)} ({sync_s:.2f} s into an empty database, {how})"
            )
        else:
            summary.append(
                f"    {row.database}, {label}: validate {validate:.2f} s, sync {sync_s:.2f} s ({how}; "
                f"no target)"
            )
        summary.append(
            f"    {row.database}, {label}: sync with 10% changed and 2% deleted {resync:.2f} s ({how})"
        )


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
        lines += [*section_b(args.quick, postgres_url, redis_url, summary), ""]
    print("\n".join(lines))
    print("targets on this machine:")
    for line in summary:
        print(f"  {line}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
