"""(a) Decision latency: stepup, Cedar and CEL on the same policy sets, checked equal first."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any

from bench import engines
from bench.policies import Facts, input_table, late_match, make_policies, no_match
from bench.timing import interleaved_cpu_us

SIZES = (10, 100, 1_000, 10_000)


class Mismatch(AssertionError):
    pass


@dataclass
class Row:
    size: int
    checked: int
    outcomes: Counter[str]
    late: dict[str, float]
    none: dict[str, float]
    hand_written: float  # the late match decided by engines.hand_written: the floor for Python


def check_equal(built: dict[str, Any], table: list[Facts]) -> Counter[str]:
    """Each engine's outcome on each input; :class:`Mismatch` at the first difference."""
    outcomes: Counter[str] = Counter()
    for facts in table:
        answers = {name: engine.decide(engine.prepare(facts)) for name, engine in built.items()}
        if len(set(answers.values())) != 1:
            raise Mismatch(f"engines disagree on {facts.describe()}: {answers}")
        outcomes[answers["stepup"]] += 1
    return outcomes


def run(sizes: tuple[int, ...] = SIZES, *, quick: bool = False) -> tuple[list[Row], dict[str, str | None]]:
    status = engines.available()
    rows = []
    for n in sizes:
        specs = make_policies(n)
        built = {name: engines.ENGINES[name](specs) for name, why in status.items() if why is None}
        table = input_table(n, size=60 if quick else 240)
        outcomes = check_equal(built, table)
        rounds = 7 if quick else 21
        late, none = late_match(n), no_match()
        floor = engines.hand_written(late)
        prepared = built["stepup"].prepare(late)
        assert floor(prepared) == built["stepup"].decide(prepared) == "allow"
        late_calls = {k: (e.decide, e.prepare(late)) for k, e in built.items()}
        timed = interleaved_cpu_us({**late_calls, "hand-written": (floor, prepared)}, rounds=rounds)
        rows.append(
            Row(
                n,
                len(table),
                outcomes,
                {k: timed[k] for k in built},
                interleaved_cpu_us({k: (e.decide, e.prepare(none)) for k, e in built.items()}, rounds=rounds),
                timed["hand-written"],
            )
        )
    return rows, status


def report(rows: list[Row], status: dict[str, str | None]) -> list[str]:
    names = [n for n, why in status.items() if why is None]
    out = [
        "(a) decision latency, median CPU µs per decision (engines taking turns in 21 rounds, garbage "
        "collector paused; inputs and engines prepared outside the timed loop)"
    ]
    for name in names:
        out.append(f"    {name:>6}: {engines.HOW[name]}")
    for name, why in status.items():
        if why is not None:
            out.append(f"    {name:>6}: skipped: {why}")
    header = f"{'policies':>9} {'checked':>8}"
    for case in ("late match", "no match"):
        for name in names:
            header += f" {name + ' ' + case:>18}"
        for name in names[1:]:
            header += f" {name + '/stepup':>13}"
    out.append(header)
    for row in rows:
        line = f"{row.size:>9} {row.checked:>8}"
        for timings in (row.late, row.none):
            for name in names:
                line += f" {timings[name]:>18.2f}"
            for name in names[1:]:
                line += f" {timings[name] / timings['stepup']:>12.1f}x"
        out.append(line)
    if rows:
        seen = sum((r.outcomes for r in rows), Counter())
        out.append(
            f"    every engine gave the same outcome on all {sum(r.checked for r in rows)} inputs "
            f"({', '.join(f'{k}: {v}' for k, v in sorted(seen.items()))})"
        )
        floors = ", ".join(f"{r.hand_written:.2f}" for r in rows)
        out.append(
            "    the late match hand-written in Python for the one policy that applies (no lookup, no "
            f"generality: the least Python can do), µs at each size: {floors}"
        )
    return out
