"""``stepup plan --replay DAYS``: which recent decisions would flip under the proposed files."""

from __future__ import annotations

import io
import textwrap
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import time_machine
from django.core.management import CommandError, call_command
from django.test import Client
from django.utils import timezone

from stepup.conf import conf
from stepup.models import DecisionLog
from stepup.policy.engine import compile_policies
from stepup.policy.loader import load_files, load_text
from stepup.replay import Flip, current_policy_set, input_of, replay
from stepup.sync import sync
from stepup.testing import flush_decision_log

pytestmark = pytest.mark.django_db

CURRENT = """
version: 1
policies:
  - id: billing-admins
    description: Admins changing billing need a recent factor.
    match: {actions: [billing.update], methods: [POST]}
    when: {roles: {any_of: [admins]}}
    decision: step_up
    max_age: 300
"""

TIGHTER = """
version: 1
policies:
  - id: billing-admins
    description: Admins and finance changing billing need a recent factor.
    match: {actions: [billing.update], methods: [POST]}
    when: {roles: {any_of: [admins, finance]}}
    decision: step_up
    max_age: 300
"""

OFFICE_EXEMPT = """
version: 1
policies:
  - id: billing-admins
    description: Admins changing billing need a recent factor, except in the office.
    match: {actions: [billing.update], methods: [POST]}
    when:
      roles: {any_of: [admins]}
      origin: {not_in: ["10.0.0.0/8"]}
    decision: step_up
    max_age: 300
"""


def write(tmp_path: Path, text: str, name: str = "proposed.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


@pytest.fixture
def current(db: Any) -> None:
    sync(load_text(textwrap.dedent(CURRENT), "current.yaml"), reason="current", commit="c0ffee")


def logged(
    event: str,
    *,
    user: str,
    roles: list[str],
    verified: dict[str, float] | None = None,
    action: str = "billing.update",
    method: str = "POST",
    ip: str = "203.0.113.7",
    days_ago: float = 0,
    facts: Any = "default",
    **fields: Any,
) -> DecisionLog:
    """One decision row as enforcement writes it."""
    outcome = {"allowed": "allow", "challenged": "step_up", "denied": "deny"}.get(event, "")
    row = DecisionLog.objects.create(
        event=event,
        username=user,
        action=action,
        method=method,
        roles=roles,
        client_ip=ip,
        outcome=outcome,
        facts={"url": None, "session_age": 600.0, "verified": verified or {}, "one_shot": []}
        if facts == "default"
        else facts,
        **fields,
    )
    if days_ago:
        DecisionLog.objects.filter(pk=row.pk).update(created_at=timezone.now() - timedelta(days=days_ago))
    return row


@pytest.fixture
def seeded_log(current: None) -> None:
    """143 finance updates allowed, 7 admin updates allowed after a factor, 5 admin updates challenged."""
    for i in range(143):
        logged("allowed", user=f"finance{i % 12}", roles=["authenticated", "finance"], days_ago=i % 6)
    for _ in range(7):
        logged("allowed", user="root", roles=["admins", "authenticated", "staff"], verified={"totp": 100.0})
    for _ in range(5):
        logged("challenged", user="root", roles=["admins", "authenticated", "staff"], ip="10.1.2.3")
    # not counted: too old, not decision events, or logged without facts
    logged("allowed", user="finance0", roles=["authenticated", "finance"], days_ago=8)
    logged("shadow", user="finance0", roles=["authenticated", "finance"], facts=None)
    logged("verified", user="root", roles=[], facts=None)
    logged("allowed", user="old", roles=["finance"], facts=None)


def run(proposed_text: str, days: float = 7) -> Any:
    proposed = compile_policies(load_text(textwrap.dedent(proposed_text), "proposed.yaml").policies)
    return replay(proposed, current_policy_set(default_max_age=conf.DEFAULT_MAX_AGE), days=days)


def test_counts_the_requests_that_would_now_need_step_up(seeded_log: None) -> None:
    result = run(TIGHTER)
    assert (result.replayed, result.skipped, result.unexplained) == (155, 1, 0)
    assert result.flips == (
        Flip("allow", "step_up", "billing.update", ("finance",), False, requests=143, users=12),
    )
    assert result.flipped == 143
    assert result.flips[0].describe() == (
        "143 requests (12 users) by role finance on billing.update would now need step-up (allow → step_up)"
    )


def test_counts_flips_the_other_way(seeded_log: None) -> None:
    result = run(OFFICE_EXEMPT)
    assert result.flips == (
        Flip("step_up", "allow", "billing.update", ("admins", "staff"), False, requests=5, users=1),
    )
    assert result.flips[0].describe() == (
        "5 requests (1 user) by roles admins, staff on billing.update would now be allowed (step_up → allow)"
    )


def test_the_window_is_respected(seeded_log: None) -> None:
    assert run(TIGHTER, days=8.5).flipped == 144  # now with the 8-day-old row
    assert run(TIGHTER, days=2.5).flipped == sum(1 for i in range(143) if i % 6 <= 2)


def test_no_change_no_flip(seeded_log: None) -> None:
    result = run(CURRENT)
    assert (result.flips, result.replayed) == ((), 155)


def test_decisions_the_current_policies_would_not_make_are_counted_apart(current: None) -> None:
    logged("challenged", user="finance0", roles=["authenticated", "finance"])  # finance isn't challenged now
    result = run(TIGHTER)
    assert (result.unexplained, result.flips) == (
        1,
        (Flip("allow", "step_up", "billing.update", ("finance",), False, requests=1, users=1),),
    )


@pytest.mark.parametrize(
    "facts",
    [
        {"url": None, "verified": "totp"},
        {"url": None, "session_age": "long"},
        {"verified": {"totp": None}},
        [],
    ],
)
def test_malformed_facts_are_skipped_not_guessed(current: None, facts: Any) -> None:
    row = logged("allowed", user="x", roles=["finance"], facts=facts)
    values = (
        DecisionLog.objects.filter(pk=row.pk)
        .values("event", "user_id", "username", "action", "method", "roles", "client_ip", "attrs", "facts")
        .get()
    )
    assert input_of(values) is None
    assert run(TIGHTER).skipped == 1


def test_the_command_reports_flips_and_keeps_plan_exit_codes(seeded_log: None, tmp_path: Path) -> None:
    out = io.StringIO()
    with pytest.raises(CommandError) as exited:
        call_command("stepup", "plan", "--replay", "7", str(write(tmp_path, TIGHTER)), stdout=out)
    assert exited.value.returncode == 2
    text = out.getvalue()
    assert "update billing-admins" in text
    assert "155 decisions replayed, 143 would flip." in text
    assert (
        "  143 requests (12 users) by role finance on billing.update would now need step-up (allow → step_up)"
        in text.splitlines()
    )
    unchanged = io.StringIO()
    call_command(
        "stepup", "plan", "--replay", "7", str(write(tmp_path, CURRENT, "same.yaml")), stdout=unchanged
    )
    assert "155 decisions replayed, 0 would flip." in unchanged.getvalue()


def test_the_command_refuses_a_bad_window(tmp_path: Path) -> None:
    for days in ("0", "-3", "soon"):
        with pytest.raises(CommandError, match="expected a number of days") as refused:
            call_command("stepup", "plan", "--replay", days, str(write(tmp_path, CURRENT)))
        assert refused.value.returncode == 1


# --- end to end: the facts enforcement logs are enough to replay its decisions -----------------


REAL_CURRENT = """
version: 1
policies:
  - id: transfers
    match: {actions: [payments.transfer]}
    decision: step_up
    max_age: 300
  - id: plain-posts
    match: {urls: [plain], methods: [POST]}
    decision: step_up
    max_age: 300
"""

REAL_PROPOSED = """
version: 1
policies:
  - id: transfers
    match: {actions: [payments.transfer]}
    decision: step_up
    max_age: 100
  - id: large-transfers-from-outside
    match: {actions: [payments.transfer]}
    when:
      attrs: {amount: {gt: 1000}}
      origin: {not_in: ["10.0.0.0/8"]}
      roles: {none_of: [admins]}
    decision: deny
  - id: plain-posts
    match: {urls: [plain], methods: [POST]}
    when: {session_age: {gt: 3600}}
    decision: step_up
    max_age: 300
"""


def test_replaying_real_traffic(logged_in: Client, user: Any, stepup_verified: Any, tmp_path: Path) -> None:
    current_file = write(tmp_path, REAL_CURRENT, "current.yaml")
    sync(load_files([current_file]), reason="current", commit="")
    with time_machine.travel("2026-03-02 10:00:00+00:00", tick=False) as clock:
        with stepup_verified(logged_in, user, factor="static"):
            assert logged_in.post("/transfer/", {"amount": "5"}).status_code == 200  # age 0
            assert logged_in.post("/transfer/", {"amount": "5000"}).status_code == 200  # age 0
            assert logged_in.post("/plain/").status_code == 200  # URL policy, age 0
            clock.shift(200)
            assert logged_in.post("/transfer/", {"amount": "7"}).status_code == 200  # age 200
        assert logged_in.post("/transfer/", {"amount": "9"}).status_code == 302  # challenged
    flush_decision_log()  # allowed rows are written in batches after the response
    assert sorted(DecisionLog.objects.values_list("event", flat=True)) == [
        "allowed",
        "allowed",
        "allowed",
        "allowed",
        "challenged",
    ]
    out = io.StringIO()
    with pytest.raises(CommandError) as exited:
        call_command("stepup", "plan", "--replay", "36500", str(write(tmp_path, REAL_PROPOSED)), stdout=out)
    assert exited.value.returncode == 2
    text = out.getvalue()
    assert "5 decisions replayed, 2 would flip." in text, text
    lines = [line.strip() for line in text.splitlines() if "would now" in line]
    assert sorted(lines) == [
        "1 request (1 user) by authenticated users without other roles on payments.transfer "
        "would now be denied (allow → deny)",
        "1 request (1 user) by authenticated users without other roles on payments.transfer "
        "would now need step-up (allow → step_up)",
    ]
