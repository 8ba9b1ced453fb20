"""Decision latency of the stepup engine as the policy set grows.

Run with ``make bench``. For each size it builds a policy set of N policies
(nine in ten on exact action names, one in ten on ``*`` globs, all with
conditions), then times ``PolicySet.decide`` for:

- an action whose policy comes last in the file and whose conditions hold, and
- an action that no policy matches.

Figures are medians over repeated batches (this machine is noisy); the ratio
column compares each size with the smallest, to show the cost stays flat.
"""

from __future__ import annotations

import ipaddress
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from stepup.policy.engine import compile_policies
from stepup.policy.model import Input, PolicySpec

SIZES = (10, 100, 1_000, 10_000)
BATCH = 2_000
REPEATS = 15


def make_policies(n: int) -> list[PolicySpec]:
    specs = []
    for i in range(n):
        action = f"svc{i}.*" if i % 10 == 9 else f"svc{i}.action"
        specs.append(
            PolicySpec(
                id=f"p{i:05d}",
                actions=(action,),
                methods=("POST",),
                when={
                    "roles": {"any_of": ["finance", f"team{i}"]},
                    "origin": {"not_in": ["10.0.0.0/8"]},
                    "attrs": {"amount": {"gt": 1000}},
                },
                decision="step_up",
                max_age=300,
                factors=("totp",),
            )
        )
    return specs


def median_us(func: object, inp: Input) -> float:
    decide = func  # bound method
    samples = []
    for _ in range(REPEATS):
        start = time.perf_counter()
        for _ in range(BATCH):
            decide(inp)  # type: ignore[operator]
        samples.append((time.perf_counter() - start) / BATCH * 1e6)
    return statistics.median(samples)


def main() -> None:
    rows = []
    for n in SIZES:
        policy_set = compile_policies(make_policies(n), default_max_age=300)
        late = Input(
            action=f"svc{n - 2}.action",
            method="POST",
            roles=frozenset({"authenticated", "finance"}),
            origin=ipaddress.ip_address("203.0.113.9"),
            session_age=100.0,
            verified={"totp": 10.0},
            attrs={"amount": "5000"},
        )
        none = Input(action="nothing.here", url="demo:home", method="GET")
        assert policy_set.decide(late).outcome == "allow", policy_set.decide(late)
        assert policy_set.decide(Input(action="nothing.here")).outcome == "step_up"
        policy_set.decide(Input(url="demo:home"))
        rows.append(
            (
                n,
                median_us(policy_set.decide, late),
                median_us(policy_set.decide, Input(url="demo:home")),
            )
        )
        del none
    base_late, base_none = rows[0][1], rows[0][2]
    print(
        f"stepup decision latency (median of {REPEATS} batches of {BATCH}; Python {sys.version.split()[0]})"
    )
    print(f"{'policies':>9} {'late match µs':>14} {'x size 10':>10} {'no match µs':>12} {'x size 10':>10}")
    for n, late_us, none_us in rows:
        print(
            f"{n:>9} {late_us:>14.2f} {late_us / base_late:>10.2f} "
            f"{none_us:>12.2f} {none_us / base_none:>10.2f}"
        )
    worst = max(max(r[1], r[2]) for r in rows)
    print(
        f"target: median < 5 µs at every size -> {'met' if worst < 5 else 'NOT met'} (worst {worst:.2f} µs)"
    )


if __name__ == "__main__":
    main()
