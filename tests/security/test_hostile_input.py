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
import json
import re
import timeit
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import pytest
from django.test import Client
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from stepup.policy.engine import compile_policies, glob_matches
from stepup.policy.model import Decision, Input, PolicySpec, as_number
from tests.paths import API_DECIDE, API_STATUS
from tests.security import views
from tests.security.test_routing import challenged
from tests.shop.models import Transfer

# --- globs: matching is linear, whatever the name -------------------------------------------

# Patterns with names that match nothing, crafted against a backtracking regex of the pattern,
# or to make a linear matcher scan the whole name: ``crafted(n)`` is about 2n characters long.
CRAFTED: list[tuple[str, Callable[[int], str]]] = [
    ("*.*.*.export", lambda n: "a." * n + "x"),
    ("*:*:*_change", lambda n: "a:" * n + "x"),
    ("reports.*.*.*.csv", lambda n: "reports." + "a." * n),
    ("*a*a*a*a*b", lambda n: "a" * 2 * n),
    ("*.*.*.export", lambda n: "a" * 2 * n + ".export"),
    ("*ab*ab*x", lambda n: "a" * 2 * n + "x"),
]
SIZE = 1000
"""Crafted names of about 2 KB."""
RATIO = 20
"""How many times slower than a plain name a crafted action may make a decision."""
GROWTH = 8
"""How many times longer a name four times as long may take (linear: 4; quadratic: 16; the regex: 10^5 and up)."""


def per_call(*fns: Callable[[], object]) -> list[float]:
    """The best time of one call of each of ``fns``, their repetitions taking turns.

    The minimum filters out noise, and taking turns lets a burst of load from
    another process land on all of them alike.
    """
    numbers = []
    for fn in fns:
        once = timeit.timeit(fn, number=1)
        numbers.append(max(1, int(0.002 / max(once, 1e-7))) if once < 0.05 else 1)  # far too slow: once
    best = [float("inf")] * len(fns)
    for _ in range(7):
        for i, (fn, number) in enumerate(zip(fns, numbers, strict=True)):
            best[i] = min(best[i], timeit.timeit(fn, number=number) / number)
    return best


@pytest.mark.parametrize(("pattern", "crafted"), CRAFTED)
def test_a_crafted_name_costs_a_glob_linear_time(pattern: str, crafted: Callable[[int], str]) -> None:
    name, longer = crafted(SIZE), crafted(4 * SIZE)
    assert not glob_matches(pattern, name) and not glob_matches(pattern, longer)
    small, big = per_call(lambda: glob_matches(pattern, name), lambda: glob_matches(pattern, longer))
    assert big / small < GROWTH, (
        f"{big * 1e6:.1f} µs for {len(longer)} characters, {small * 1e6:.1f} for {len(name)}"
    )


def test_a_crafted_action_costs_a_decision_about_what_a_plain_one_does() -> None:
    """Through the engine's index (a fresh name each call, so no cached lookup hides the work)."""
    specs = [
        PolicySpec(id=f"p{n}", actions=(pattern,), max_age=300) for n, (pattern, _) in enumerate(CRAFTED)
    ]
    policy_set = compile_policies(specs)
    count = itertools.count()

    def decide(name: str) -> Callable[[], Decision]:
        return lambda: policy_set.decide(Input(action=f"{name}{next(count)}"))

    plain = per_call(decide("billing.update"))[0]
    worst = max(per_call(decide(crafted(SIZE)))[0] for _, crafted in CRAFTED)
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


# --- names from clients are bounded -----------------------------------------------------------


@pytest.fixture
def logged_in(client: Client, user: Any) -> Client:
    client.force_login(user)
    return client


@pytest.mark.django_db
@pytest.mark.parametrize("key", ["action", "url"])
def test_api_status_refuses_a_name_longer_than_200_characters(logged_in: Client, key: str) -> None:
    assert logged_in.get(API_STATUS, {key: "a" * 200}).status_code == 200
    for name in ("a" * 201, "a." * 4096):
        response = logged_in.get(API_STATUS, {key: name})
        assert response.status_code == 400
        body = response.json()
        assert body["code"] == "invalid_input"
        assert body["errors"][0]["field"] == f"input.{key}"
        assert "at most 200 characters" in body["errors"][0]["message"]


@pytest.mark.django_db
@pytest.mark.parametrize("key", ["action", "url"])
def test_api_decide_refuses_a_name_longer_than_200_characters(
    logged_in: Client, auditor: Any, key: str
) -> None:
    assert logged_in.post(API_DECIDE, {key: "a" * 200}, content_type="application/json").status_code == 200
    response = logged_in.post(API_DECIDE, {key: "a." * 4096}, content_type="application/json")
    assert response.status_code == 400
    assert "at most 200 characters" in response.json()["errors"][0]["message"]


# --- numbers: no value makes a decision fail ---------------------------------------------------

HUGE = [
    "9" * 5000,  # more digits than int() reads
    "-" + "9" * 5000,
    "9" * 5000 + ".5",
    "0." + "9" * 5000,
    "1" + "0" * 4300,
    "\uff19" * 5000,  # full-width digits
    "1e999999999",
    "9" * 101,
]
JSON_LIKE = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.tuples(st.sampled_from([1, -1]), st.sampled_from([64, 100, 5000])).map(lambda s: s[0] * 10 ** s[1])
    | st.floats()
    | st.text()
    | st.sampled_from(HUGE)
    | st.from_regex(r"\A[+-]?[0-9]{0,120}(\.[0-9]{0,120})?\Z")
    | st.decimals()
    | st.sampled_from([Decimal(v) for v in ("1e999999999", "-1e999999999", "1e-999999999", "sNaN", "-Inf")])
    | st.binary(max_size=10),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=5), children, max_size=3)
    ),
    max_leaves=6,
)
SMALL_AND_LARGE = compile_policies(
    [
        PolicySpec(id="large", actions=("pay",), decision="deny", when={"attrs": {"amount": {"gt": 1000}}}),
        PolicySpec(
            id="small", actions=("pay",), decision="deny", when={"attrs": {"amount": {"lte": "1000"}}}
        ),
        PolicySpec(
            id="equal",
            actions=("pay",),
            max_age=0,
            when={"attrs": {"amount": {"eq": 5, "ne": "five", "in": [1.5, "EUR", True], "not_in": [0]}}},
        ),
    ]
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(JSON_LIKE)
def test_any_attribute_value_gets_a_decision_that_fails_closed(value: Any) -> None:
    """Whatever the value, one of "large" and "small" applies: no value escapes both."""
    number = as_number(value)
    assert number is None or isinstance(number, int | Decimal)

    for trace in (False, True):
        decision = SMALL_AND_LARGE.decide(Input(action="pay", attrs={"amount": value}), trace=trace)
        assert isinstance(decision, Decision)
        assert decision.outcome == "deny"
        assert {"large", "small"} & set(decision.policies)
        assert all(len(reason) < 500 for reason in decision.reasons)


@pytest.mark.django_db
@pytest.mark.urls("tests.security.urls")
@pytest.mark.parametrize("amount", HUGE)
def test_a_huge_amount_to_a_decorated_view_is_a_step_up(attacker: Client, policy: Any, amount: str) -> None:
    policy("pay", actions=["things.pay"], when={"attrs": {"amount": {"gt": 1000}}}, max_age=0)
    response = attacker.post("/t/pay/", {"amount": amount})
    assert challenged(response)
    assert views.CALLS == []


@pytest.mark.django_db
@pytest.mark.usefixtures("synced_policies")
def test_a_huge_amount_to_the_demo_transfer_page_is_a_step_up(attacker: Client) -> None:
    response = attacker.post("/transfers/", {"amount": "9" * 5000, "account": "DE89370400440532013000"})
    assert challenged(response)
    assert not Transfer.objects.exists()


@pytest.mark.django_db
@pytest.mark.urls("tests.security.urls")
@pytest.mark.parametrize(
    "body",
    [
        *(json.dumps({"amount": amount}) for amount in HUGE),
        '{"amount": 1e999}',  # read as infinity
        '{"amount": -1e999}',
        '{"amount": [1, 2]}',
        '{"amount": {"value": 5}}',
        '{"amount": ' + "9" * 5000 + "}",  # more digits than json reads: a 400
    ],
)
def test_a_huge_amount_to_a_drf_view_is_a_step_up_or_a_400(attacker: Client, policy: Any, body: str) -> None:
    policy("pay", actions=["things.pay"], when={"attrs": {"amount": {"gt": 1000}}}, max_age=0)
    response = attacker.post("/t/api/pay/", body, content_type="application/json")
    assert challenged(response) or response.status_code == 400
    assert views.CALLS == []


@pytest.mark.django_db
@pytest.mark.usefixtures("synced_policies")
@pytest.mark.parametrize("amount", HUGE)
def test_api_status_answers_a_huge_amount_with_the_strict_reading(logged_in: Client, amount: str) -> None:
    query = {"action": "payments.transfer", "method": "POST", "attrs.amount": amount}
    response = logged_in.get(API_STATUS, query)
    assert response.status_code == 200
    assert response.json()["outcome"] == "step_up"
    assert "payments-transfer-large" in response.json()["policies"]


@pytest.mark.django_db
@pytest.mark.usefixtures("synced_policies")
@pytest.mark.parametrize("amount", [*HUGE, 1e300, [1], {"a": "b"}, True])
def test_api_decide_answers_a_huge_amount_with_the_strict_reading(
    logged_in: Client, auditor: Any, amount: Any
) -> None:
    body = {"action": "payments.transfer", "method": "POST", "attrs": {"amount": amount}}
    response = logged_in.post(API_DECIDE, body, content_type="application/json")
    assert response.status_code == 200
    decision = response.json()["decision"]
    assert decision["outcome"] == "step_up"
    assert "payments-transfer-large" in decision["policies"]


@pytest.mark.django_db
@pytest.mark.parametrize(
    "extra",
    [
        '"session_age": 1' + "0" * 400,
        '"verified": {"totp": 1' + "0" * 400 + "}",
        '"session_age": 1e999',
        '"attrs": {"amount": 1' + "0" * 5000 + "}",
    ],
    ids=["session-age", "verified", "infinite-age", "amount-digits"],
)
def test_api_decide_refuses_numbers_too_large_to_read_with_a_400(
    logged_in: Client, auditor: Any, extra: str
) -> None:
    body = '{"action": "payments.transfer", ' + extra + "}"
    response = logged_in.post(API_DECIDE, body, content_type="application/json")
    assert response.status_code == 400
    assert response.json()["code"] in ("invalid_input", "invalid_json")


def test_a_huge_integer_attribute_still_has_a_grant_digest() -> None:
    """A view doing arithmetic may hand the policy an int no decimal string can hold."""
    from stepup import binding

    huge = 10**5000
    assert binding.attributes_digest("things.pay", None, {"amount": huge}) != binding.attributes_digest(
        "things.pay", None, {"amount": huge + 1}
    )


def test_a_deeply_nested_body_to_a_request_bound_view_is_no_server_error() -> None:
    """bind_request digests the body: JSON nested past any recursion limit is no 500."""
    from types import SimpleNamespace

    from django.test import RequestFactory

    from stepup import binding

    depth = 100_000
    body = "[" * depth + "]" * depth
    request = RequestFactory().post("/t/pay-bound/", body, content_type="application/json")
    # Too deep to parse: bound to its bytes, so the very same body still matches its grant.
    assert binding.request_fingerprint(request) == binding.request_fingerprint(request)
    nested: list = []
    for _ in range(depth):
        nested = [nested]
    parsed = SimpleNamespace(_request=request, data={"amount": nested})  # as a DRF Request, already parsed
    first, second = binding.request_fingerprint(parsed), binding.request_fingerprint(parsed)
    assert (
        first != second
    )  # too deep to write out: bound to nothing, so no grant can ever match (fail closed)
