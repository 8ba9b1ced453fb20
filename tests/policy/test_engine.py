"""The decision semantics of CONTRACT section 3, one test per rule, plus properties."""

from __future__ import annotations

import ipaddress
import random
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stepup.policy.engine import DEFAULT_POLICY_ID, compile_policies, input_from_dict
from stepup.policy.model import FACTOR_KINDS, Input, PolicySpec, as_number


def policy(pid: str = "p", **kw) -> PolicySpec:
    kw.setdefault("actions", ("billing.update",))
    kw.setdefault("decision", "step_up")
    if kw["decision"] == "step_up":
        kw.setdefault("max_age", 300)
    return PolicySpec(id=pid, **kw)


def decide(specs, **inp):
    inp.setdefault("action", "billing.update")
    return compile_policies(specs, default_max_age=300).decide(input_from_dict(inp))


# --- applying ------------------------------------------------------------------------------


def test_no_applying_policy_allows():
    d = decide([policy(when={"roles": {"any_of": ["finance"]}})], roles=["authenticated"])
    assert d.outcome == "allow"
    assert d.policies == ()


def test_step_up_without_verification():
    d = decide([policy()])
    assert (d.outcome, d.max_age, d.policies) == ("step_up", 300, ("p",))


def test_method_filter():
    specs = [policy(methods=("POST",))]
    assert decide(specs, method="GET").outcome == "allow"
    assert decide(specs, method="POST").outcome == "step_up"


def test_every_when_condition_must_hold():
    specs = [policy(when={"roles": {"any_of": ["finance"]}, "attrs": {"amount": {"gt": 1000}}})]
    assert decide(specs, roles=["finance"], attrs={"amount": 5}).outcome == "allow"
    assert decide(specs, roles=["sales"], attrs={"amount": 5000}).outcome == "allow"
    assert decide(specs, roles=["finance"], attrs={"amount": 5000}).outcome == "step_up"


@pytest.mark.parametrize(
    ("op", "roles", "applies"),
    [
        ("any_of", ["a"], True),
        ("any_of", ["c"], False),
        ("all_of", ["a", "b"], True),
        ("all_of", ["a"], False),
        ("none_of", ["c"], True),
        ("none_of", ["b", "c"], False),
    ],
)
def test_role_operators(op, roles, applies):
    d = decide([policy(when={"roles": {op: ["a", "b"]}})], roles=roles)
    assert (d.outcome == "step_up") is applies


@pytest.mark.parametrize(
    ("op", "ip", "applies"),
    [
        ("in", "10.1.2.3", True),
        ("in", "11.0.0.1", False),
        ("not_in", "10.1.2.3", False),
        ("not_in", "203.0.113.9", True),
        ("in", "::ffff:10.1.2.3", True),  # IPv4-mapped IPv6 is the IPv4 address
        ("in", "2001:db8::1", False),
        ("in", "fd00::5", True),
    ],
)
def test_origin_operators(op, ip, applies):
    d = decide([policy(when={"origin": {op: ["10.0.0.0/8", "fd00::/8"]}})], origin=ip)
    assert (d.outcome == "step_up") is applies


@pytest.mark.parametrize(
    ("op", "age", "applies"),
    [
        ("gt", 3601, True),
        ("gt", 3600, False),
        ("gte", 3600, True),
        ("lt", 3600, False),
        ("lte", 3600, True),
    ],
)
def test_session_age_operators(op, age, applies):
    d = decide([policy(when={"session_age": {op: 3600}})], session_age=age)
    assert (d.outcome == "step_up") is applies


# --- combining -----------------------------------------------------------------------------


def test_deny_wins_over_step_up_and_verification():
    specs = [policy("a"), policy("b", decision="deny")]
    d = decide(specs, verified={"totp": 1})
    assert d.outcome == "deny"
    assert set(d.policies) == {"a", "b"}


def test_every_step_up_must_be_satisfied():
    specs = [policy("a", max_age=600), policy("b", max_age=60)]
    d = decide(specs, verified={"totp": 100})
    assert (d.outcome, d.max_age) == ("step_up", 60)
    assert decide(specs, verified={"totp": 59}).outcome == "allow"


def test_max_age_boundary_is_inclusive():
    assert decide([policy(max_age=300)], verified={"totp": 300}).outcome == "allow"
    assert decide([policy(max_age=300)], verified={"totp": 300.001}).outcome == "step_up"


def test_factor_aware_freshness():
    specs = [policy(factors=("webauthn",))]
    d = decide(specs, verified={"totp": 1})
    assert d.outcome == "step_up"
    assert d.factors == ("webauthn",)
    assert decide(specs, verified={"webauthn": 1}).outcome == "allow"


def test_factors_offered_are_common_to_unsatisfied_policies():
    specs = [policy("a", factors=("totp", "webauthn")), policy("b", factors=("webauthn", "static"))]
    assert decide(specs).factors == ("webauthn",)
    specs = [policy("a", factors=("totp",)), policy("b", factors=("static",))]
    assert decide(specs).factors == ("totp", "static")  # no common kind: one at a time
    assert decide([policy()]).factors == ()  # any kind


def test_max_age_zero_needs_a_single_request_grant():
    specs = [policy(max_age=0)]
    assert decide(specs, verified={"totp": 1}).outcome == "step_up"
    d = decide(specs, verified={"totp": 0})
    assert d.outcome == "allow"
    assert d.one_shot is True


def test_single_request_grant_of_the_wrong_kind():
    assert decide([policy(max_age=0, factors=("webauthn",))], verified={"totp": 0}).outcome == "step_up"


def test_uncovered_declared_action_falls_back_to_default():
    d = decide([policy(actions=("other.thing",))], action="new.action")
    assert (d.outcome, d.max_age, d.policies) == ("step_up", 300, (DEFAULT_POLICY_ID,))
    assert any("no policy covers" in r for r in d.reasons)
    assert decide([], action="new.action", verified={"static": 200}).outcome == "allow"


def test_covered_action_without_applying_policy_allows():
    # The action is named, the condition does not hold: no fallback.
    d = decide([policy(when={"roles": {"any_of": ["x"]}})], roles=["y"])
    assert d.outcome == "allow"


def test_disabled_and_shadow_policies_do_not_cover_an_action():
    for spec in (policy(enabled=False), policy(mode="shadow")):
        d = decide([spec])
        assert d.policies == (DEFAULT_POLICY_ID,)


def test_url_only_requests_have_no_fallback():
    d = compile_policies([]).decide(Input(url="shop:home"))
    assert d.outcome == "allow"


@pytest.mark.parametrize(
    "specs",
    [
        [],
        [policy(mode="shadow")],
        [policy(enabled=False)],
        [policy("u", actions=(), urls=("shop:*",))],
        [policy(actions=("billing.*",))],
    ],
)
def test_may_match_an_action_always_and_a_url_only_where_a_policy_names_it(specs):
    """What lets a caller skip reading facts: for an action, a policy or the default always applies."""
    ps = compile_policies(specs)
    for action in ("billing.update", "new.action"):
        assert ps.may_match(action, None) and ps.may_match(action, "shop:home")
        assert ps.decide(Input(action=action)).policies  # a decision with a policy behind it, always
    names_shop = any(s.enabled and "shop:*" in s.urls for s in specs)
    assert ps.may_match(None, "shop:home") is names_shop
    assert not ps.may_match(None, None)


def test_glob_actions_and_urls():
    specs = [
        policy("a", actions=("billing.*",)),
        policy("u", actions=(), urls=("admin:auth_user_*",)),
    ]
    ps = compile_policies(specs)
    assert ps.decide(Input(action="billing.refund")).policies == ("a",)
    assert ps.decide(Input(action="billingxrefund")).policies == (DEFAULT_POLICY_ID,)
    assert ps.decide(Input(url="admin:auth_user_change")).policies == ("u",)
    assert ps.decide(Input(url="admin:auth_group_change")).outcome == "allow"


def test_action_and_url_policies_combine():
    specs = [policy("a"), policy("u", actions=(), urls=("shop:billing-update",), max_age=60)]
    d = compile_policies(specs).decide(
        Input(action="billing.update", url="shop:billing-update", verified={"totp": 100})
    )
    assert (d.outcome, d.policies, d.max_age) == ("step_up", ("a", "u"), 60)


def test_shadow_policies_are_reported_but_never_enforced():
    specs = [policy("s", decision="deny", mode="shadow"), policy("a")]
    d = decide(specs, verified={"totp": 1})
    assert d.outcome == "allow"
    assert d.shadow == ("s",)
    assert d.policies == ("a",)


# --- attributes ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "applies"),
    [
        (5000, True),
        ("5000", True),
        ("12.50", False),
        ("1000.01", True),
        (Decimal("1000.0001"), True),
        (1000, False),
        ("1000", False),
        (999.99, False),
        (" 5000", True),  # padded: not a number -> holds
        ("５０００", True),  # full-width digits are not a number -> holds
        ("1e9", True),
        ("NaN", True),
        (float("nan"), True),
        (float("inf"), True),
        (True, True),
        ([5000], True),
        ({"a": 1}, True),
        (None, True),
    ],
)
def test_numeric_comparison_and_fail_closed(value, applies):
    d = decide([policy(when={"attrs": {"amount": {"gt": 1000}}})], attrs={"amount": value})
    assert (d.outcome == "step_up") is applies


def test_missing_attribute_holds_and_says_so():
    d = decide([policy(when={"attrs": {"amount": {"lt": 10}}})])
    assert d.outcome == "step_up"
    assert any("amount missing" in r for r in d.reasons)


@pytest.mark.parametrize(
    ("ops", "value", "applies"),
    [
        ({"eq": "DE"}, "DE", True),
        ({"eq": "DE"}, "FR", False),
        ({"ne": "DE"}, "FR", True),
        ({"ne": "DE"}, "DE", False),
        ({"eq": 5}, "5.0", True),
        ({"in": ["DE", "FR"]}, "FR", True),
        ({"in": ["DE", "FR"]}, "US", False),
        ({"not_in": ["DE", "FR"]}, "US", True),
        ({"not_in": ["DE", "FR"]}, "DE", False),
        ({"in": [1, 2]}, "2", True),
        ({"eq": True}, True, True),
        ({"eq": True}, False, False),
        ({"eq": "DE"}, 7, True),  # wrong type: holds
        ({"ne": "DE"}, 7, True),
        ({"not_in": ["DE"]}, ["DE"], True),
    ],
)
def test_equality_operators(ops, value, applies):
    d = decide([policy(when={"attrs": {"country": ops}})], attrs={"country": value})
    assert (d.outcome == "step_up") is applies


def test_as_number():
    assert as_number("12.50") == Decimal("12.50")
    assert as_number("007") == 7
    assert as_number(True) is None
    assert as_number("1,000") is None


@pytest.mark.parametrize(
    ("value", "number"),
    [
        ("9" * 100, int("9" * 100)),
        ("-" + "9" * 99, -int("9" * 99)),
        ("9" * 101, None),  # longer than NUMBER_MAX_LENGTH: not a number
        ("9" * 5000, None),  # more digits than int() reads
        ("0." + "9" * 5000, None),
        (10**5000, 10**5000),
        (Decimal("1e999999999"), Decimal("1e999999999")),
        (Decimal("sNaN"), None),
        (Decimal("-Infinity"), None),
        (float("nan"), None),
        (b"5", None),
        (["5"], None),
        ({"5": 5}, None),
        (None, None),
    ],
    ids=lambda value: type(value).__name__,
)
def test_as_number_never_raises_and_bounds_strings(value, number):
    assert as_number(value) == number


def test_a_huge_decimal_operand_compiles_and_compares_at_once():
    """A spec built in code may hold any Decimal: never turned into an int of a billion digits."""
    specs = [policy(when={"attrs": {"amount": {"gt": Decimal("1e999999999")}}})]
    assert decide(specs, attrs={"amount": 5}).outcome == "allow"
    assert decide(specs, attrs={"amount": Decimal("1e1000000000")}).outcome == "step_up"
    assert decide(specs, attrs={"amount": 10**5000}).outcome == "allow"


def test_a_fail_closed_note_shows_a_value_briefly_whatever_it_is():
    specs = [policy(when={"attrs": {"amount": {"gt": 1000}, "country": {"eq": "DE"}}})]
    d = decide(specs, attrs={"amount": "9" * 5000, "country": 10**5000})
    assert d.outcome == "step_up"
    assert all(len(reason) < 200 for reason in d.reasons), d.reasons
    assert any("attrs.amount='99999" in reason and "is not a number" in reason for reason in d.reasons)
    assert any("attrs.country=<int> has the wrong type" in reason for reason in d.reasons)


def test_unknown_origin_and_session_age_hold():
    specs = [
        policy("o", when={"origin": {"in": ["10.0.0.0/8"]}}),
        policy("s", when={"session_age": {"gt": 99}}),
    ]
    d = decide(specs)
    assert set(d.policies) == {"o", "s"}


# --- explain -------------------------------------------------------------------------------


def test_trace_explains_every_candidate():
    specs = [
        policy("a", when={"roles": {"any_of": ["finance"]}}),
        policy("b", methods=("DELETE",)),
        policy("c", enabled=False),
        policy("d", actions=("other",)),
    ]
    d = compile_policies(specs).decide(
        input_from_dict({"action": "billing.update", "roles": ["sales"]}), trace=True
    )
    by_id = {t.policy: t for t in d.trace}
    assert set(by_id) == {"a", "b", "c"}
    assert by_id["a"].effect == "condition failed"
    assert by_id["a"].conditions[0].field == "when.roles.any_of"
    assert by_id["a"].conditions[0].held is False
    assert by_id["b"].effect == "not matched"
    assert by_id["c"].effect == "disabled"
    assert (
        d.outcome
        == compile_policies(specs)
        .decide(input_from_dict({"action": "billing.update", "roles": ["sales"]}))
        .outcome
    )


def test_roles_are_loaded_lazily_and_once():
    calls = []

    def roles():
        calls.append(1)
        return frozenset({"finance"})

    ps = compile_policies([policy(when={"roles": {"any_of": ["finance"]}, "attrs": {"n": {"gt": 5}}})])
    ps.decide(Input(action="billing.update", roles=roles, attrs={"n": 1}))
    assert calls == []  # cheap condition failed first
    inp = Input(action="billing.update", roles=roles, attrs={"n": 10})
    ps.decide(inp)
    ps.decide(inp)
    assert calls == [1]
    ps.decide(Input(action="unrelated", url="x", roles=roles))
    assert calls == [1]


# --- properties ----------------------------------------------------------------------------

actions = st.sampled_from(["billing.update", "billing.refund", "payments.transfer"])
patterns = st.sampled_from(["billing.update", "billing.*", "payments.transfer", "*"])
policies = st.builds(
    lambda i, pattern, decision, max_age, factors, methods, mode, role, amount: PolicySpec(
        id=f"p{i}",
        actions=(pattern,),
        methods=methods,
        when={"roles": {"any_of": [role]}, "attrs": {"amount": {"gt": amount}}},
        decision=decision,
        max_age=max_age if decision == "step_up" else None,
        factors=factors if decision == "step_up" else (),
        mode=mode,
    ),
    st.integers(0, 10_000),
    patterns,
    st.sampled_from(["step_up", "deny"]),
    st.integers(0, 1000),
    st.sets(st.sampled_from(FACTOR_KINDS), max_size=2).map(lambda s: tuple(sorted(s))),
    st.sampled_from([(), ("POST",), ("GET", "POST")]),
    st.sampled_from(["enforce", "shadow"]),
    st.sampled_from(["finance", "staff", "authenticated"]),
    st.integers(0, 2000),
)
policy_lists = st.lists(policies, max_size=8, unique_by=lambda p: p.id)
inputs = st.builds(
    lambda action, method, roles, verified, amount: Input(
        action=action,
        method=method,
        roles=frozenset(roles),
        origin=ipaddress.ip_address("203.0.113.9"),
        session_age=10.0,
        verified=verified,
        attrs={"amount": amount},
    ),
    actions,
    st.sampled_from(["GET", "POST"]),
    st.sets(st.sampled_from(["finance", "staff", "authenticated"])),
    st.dictionaries(st.sampled_from(FACTOR_KINDS), st.floats(0.5, 2000), max_size=3),
    st.one_of(st.integers(0, 3000), st.just("1500"), st.none()),
)


def _key(d):
    return (d.outcome, d.max_age, set(d.factors), set(d.policies), set(d.shadow))


@settings(max_examples=300, deadline=None)
@given(policy_lists, inputs, st.randoms())
def test_order_never_changes_a_decision(specs, inp, rnd):
    shuffled = list(specs)
    rnd.shuffle(shuffled)
    assert _key(compile_policies(specs).decide(inp)) == _key(compile_policies(shuffled).decide(inp))


@settings(max_examples=300, deadline=None)
@given(policy_lists, inputs, policies)
def test_adding_a_deny_never_loosens(specs, inp, extra):
    extra = PolicySpec(
        **{**extra.__dict__, "id": "zz-extra", "decision": "deny", "max_age": None, "factors": ()}
    )
    before = compile_policies(specs).decide(inp)
    after = compile_policies([*specs, extra]).decide(inp).outcome
    if before.outcome == "deny":
        assert after == "deny"
    # Stronger: nothing loosens at all, except the fallback for an action no
    # policy named: a deny that names the action covers it (CONTRACT section 3).
    if DEFAULT_POLICY_ID not in before.policies:
        strictness = {"allow": 0, "step_up": 1, "deny": 2}
        assert strictness[after] >= strictness[before.outcome]


@settings(max_examples=200, deadline=None)
@given(policy_lists, inputs)
def test_trace_and_fast_path_agree(specs, inp):
    fast = compile_policies(specs).decide(inp)
    traced = compile_policies(specs).decide(inp, trace=True)
    assert _key(fast) == _key(traced)


def test_candidate_cache_is_bounded():
    ps = compile_policies([policy(actions=("a.*",))])
    for i in range(10_000):
        ps.decide(Input(action=f"a.{random.random()}{i}"))
    assert len(ps._cache) <= 4096


def test_head_is_matched_as_get_in_the_engine():
    specs = [policy(methods=("GET",))]
    assert decide(specs, method="HEAD").outcome == "step_up"
    traced = compile_policies(specs).decide(
        input_from_dict({"action": "billing.update", "method": "HEAD"}), trace=True
    )
    assert traced.outcome == "step_up"


_SHARED = compile_policies(
    [
        policy("a", when={"attrs": {"amount": {"gt": 1000}}}, factors=("totp",)),
        policy("b", max_age=0, when={"roles": {"any_of": ["finance"]}}),
        policy("c", decision="deny", when={"roles": {"any_of": ["auditor"]}}),
        policy("s", decision="deny", mode="shadow", when={"attrs": {"amount": {"gt": 5000}}}),
    ]
)


@settings(max_examples=300, deadline=None)
@given(inputs)
def test_a_long_lived_set_never_serves_a_stale_shared_decision(inp):
    """Decisions are shared between inputs that evaluate alike; never between inputs that don't."""
    fresh = _SHARED.decide(inp, trace=True)  # the trace path builds every decision anew
    assert _key(_SHARED.decide(inp)) == _key(fresh)
    assert _SHARED.decide(inp).reasons == fresh.reasons
    assert _SHARED.decide(inp).one_shot == fresh.one_shot
