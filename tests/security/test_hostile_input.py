"""Hostile input: names and values built to make a worker spin or fail.

The adversary is logged in with the password and sends what the engine reads —
action and URL names, transaction attributes — crafted against it: names that
make pattern matching slow, numbers too long to parse, values of every type.
Each gets a clean answer (a decision that fails closed, or a ``400`` saying
what is wrong) in about the time a plain one takes: never a ``500``, never a
pinned worker.
"""

from __future__ import annotations

import itertools
import re
import timeit
from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stepup.policy.engine import compile_policies, glob_matches
from stepup.policy.model import Decision, Input, PolicySpec

# --- globs: matching is linear, whatever the name -------------------------------------------

# Patterns with names of a few KB that match nothing: crafted against a backtracking regex of
# the pattern, or to make a linear matcher scan the whole name.
CRAFTED = [
    ("*.*.*.export", "a." * 1000 + "x"),
    ("*:*:*_change", "a:" * 1000 + "x"),
    ("reports.*.*.*.csv", "reports." + "a." * 1000),
    ("*a*a*a*a*b", "a" * 2000),
    ("*.*.*.export", "a" * 2000 + ".export"),
    ("*ab*ab*x", "a" * 2000 + "x"),
]
PLAIN = "reports.export"
RATIO = 20
"""How many times slower than a plain name a crafted one may be (linear: about 2; the regex: 10^5 and up)."""


def per_call(fn: Callable[[], object]) -> float:
    """The best time of one call of ``fn`` over many repetitions (the minimum filters out noise)."""
    once = timeit.timeit(fn, number=1)
    if once > 0.05:  # already far too slow: no need to wait for repetitions
        return once
    number = max(1, int(0.002 / max(once, 1e-7)))
    return min(timeit.repeat(fn, number=number, repeat=7)) / number


@pytest.mark.parametrize(("pattern", "crafted"), CRAFTED)
def test_a_crafted_name_costs_a_glob_about_what_a_plain_one_does(pattern: str, crafted: str) -> None:
    assert not glob_matches(pattern, crafted)
    plain = per_call(lambda: glob_matches(pattern, PLAIN))
    worst = per_call(lambda: glob_matches(pattern, crafted))
    assert worst / plain < RATIO, f"{worst * 1e6:.1f} µs against {plain * 1e6:.2f} µs"


def test_a_crafted_action_costs_a_decision_about_what_a_plain_one_does() -> None:
    """Through the engine's index (a fresh name each call, so no cached lookup hides the work)."""
    specs = [
        PolicySpec(id=f"p{n}", actions=(pattern,), max_age=300) for n, (pattern, _) in enumerate(CRAFTED)
    ]
    policy_set = compile_policies(specs)
    count = itertools.count()

    def decide(name: str) -> Callable[[], Decision]:
        return lambda: policy_set.decide(Input(action=f"{name}{next(count)}"))

    plain = per_call(decide("billing.update"))
    worst = max(per_call(decide(crafted)) for _, crafted in CRAFTED)
    assert worst / plain < RATIO, f"{worst * 1e6:.1f} µs against {plain * 1e6:.2f} µs"


GLOB_PARTS = st.text("a.:*", max_size=8)


@settings(max_examples=400, deadline=None)
@given(GLOB_PARTS, st.text("a.:", max_size=12))
def test_globs_match_as_star_means_any_run_of_characters(pattern: str, name: str) -> None:
    """The linear matcher agrees with the definition, here a (small) regular expression."""
    expected = re.fullmatch(".*".join(map(re.escape, pattern.split("*"))), name) is not None
    assert glob_matches(pattern, name) is expected
    policy_set = compile_policies([PolicySpec(id="p", actions=(pattern,), urls=(pattern,), max_age=1)])
    assert bool(policy_set.policies_for_action(name)) is expected
    assert policy_set.names_url(name) is expected
