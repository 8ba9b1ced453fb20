"""Throttling: django-otp's per-device back-off and stepup's per-user lockout."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest
from django.test import Client
from django.utils import timezone

from stepup import throttling
from stepup.models import DecisionLog, UserState
from stepup.signals import stepup_failed
from tests.verification.conftest import (
    API_VERIFY,
    FULLWIDTH_DIGITS,
    VERIFY,
    code,
    make_totp,
    wrong_code,
)

pytestmark = pytest.mark.django_db


def api_post(client: Client, data: dict[str, Any], **extra: Any) -> Any:
    return client.post(API_VERIFY, json.dumps(data), content_type="application/json", **extra)


def new_client(user: Any, ip: str) -> Client:
    client = Client(REMOTE_ADDR=ip)
    client.force_login(user)
    return client


# --- django-otp's per-device throttle ------------------------------------------------


def test_device_throttle_gives_429_with_retry_after(logged_in: Client, totp: Any) -> None:
    assert logged_in.post(VERIFY, {"token": wrong_code(totp)}).status_code == 200
    response = logged_in.post(VERIFY, {"token": code(totp)})
    assert response.status_code == 429
    assert int(response["Retry-After"]) >= 1
    assert "Try again in" in response.content.decode()
    assert response["X-Frame-Options"] == "DENY"
    totp.refresh_from_db()
    assert totp.last_t == -1  # the correct code was not even tried
    assert totp.throttling_failure_count == 1


def test_device_throttle_applies_to_the_chosen_device_only(logged_in: Client, user: Any, totp: Any) -> None:
    spare = make_totp(user, "Tablet")
    first = logged_in.post(VERIFY, {"device": totp.persistent_id, "token": wrong_code(totp)})
    assert first.status_code == 200
    blocked = logged_in.post(VERIFY, {"device": totp.persistent_id, "token": code(totp)})
    assert blocked.status_code == 429
    ok = logged_in.post(VERIFY, {"device": spare.persistent_id, "token": code(spare)})
    assert ok.status_code == 303


def test_success_on_one_device_keeps_the_other_devices_failures(
    logged_in: Client, user: Any, totp: Any
) -> None:
    spare = make_totp(user, "Tablet")
    logged_in.post(VERIFY, {"device": totp.persistent_id, "token": wrong_code(totp)})
    assert logged_in.post(VERIFY, {"device": spare.persistent_id, "token": code(spare)}).status_code == 303
    totp.refresh_from_db()
    assert totp.throttling_failure_count == 1
    assert totp.throttling_failure_timestamp is not None


def test_throttled_attempts_are_logged_but_not_counted(logged_in: Client, user: Any, totp: Any) -> None:
    logged_in.post(VERIFY, {"token": wrong_code(totp)})
    logged_in.post(VERIFY, {"token": wrong_code(totp)})
    assert UserState.objects.get(user=user).failures == 1
    assert DecisionLog.objects.filter(event="failed", outcome="throttled").count() == 1


# --- stepup's per-user lockout ----------------------------------------------------------


@pytest.fixture
def limit_three(stepup_settings: Any, no_device_throttle: None) -> None:
    stepup_settings(USER_FAILURE_LIMIT=3, USER_LOCKOUT_SECONDS=600)


@pytest.mark.usefixtures("limit_three")
def test_lockout_counts_html_and_api_across_sessions_and_ips(user: Any, totp: Any) -> None:
    first = new_client(user, "192.0.2.1")
    assert first.post(VERIFY, {"token": wrong_code(totp)}).status_code == 200
    second = new_client(user, "198.51.100.2")
    assert api_post(second, {"token": wrong_code(totp)}).status_code == 400
    third = new_client(user, "203.0.113.3")
    locking = third.post(VERIFY, {"token": wrong_code(totp)})
    assert locking.status_code == 429
    assert "verification is locked" in locking.content.decode()
    # Neither a fresh session nor a fresh IP nor the right code gets through now.
    fourth = new_client(user, "203.0.113.99")
    assert fourth.post(VERIFY, {"token": code(totp)}).status_code == 429
    response = api_post(new_client(user, "10.9.8.7"), {"token": code(totp)})
    assert response.status_code == 429
    assert response.json()["code"] == "locked"
    assert 590 <= int(response["Retry-After"]) <= 600
    totp.refresh_from_db()
    assert totp.last_t == -1
    assert DecisionLog.objects.filter(event="locked").count() == 3
    assert DecisionLog.objects.filter(event="locked", detail="lockout started").count() == 1
    assert DecisionLog.objects.filter(event="failed", outcome="invalid_token").count() == 3


@pytest.mark.usefixtures("limit_three")
def test_lockout_sends_stepup_failed_with_locked(logged_in: Client, totp: Any) -> None:
    received: list[bool] = []

    def receiver(locked: bool, **kwargs: Any) -> None:
        received.append(locked)

    stepup_failed.connect(receiver)
    try:
        for _ in range(4):
            logged_in.post(VERIFY, {"token": wrong_code(totp)})
    finally:
        stepup_failed.disconnect(receiver)
    assert received == [False, False, True, True]


@pytest.mark.usefixtures("limit_three")
def test_lockout_ends_and_leaves_a_fresh_allowance(logged_in: Client, user: Any, totp: Any) -> None:
    for _ in range(3):
        logged_in.post(VERIFY, {"token": wrong_code(totp)})
    state = UserState.objects.get(user=user)
    assert state.locked_until is not None and state.failures == 0
    UserState.objects.filter(pk=state.pk).update(locked_until=timezone.now() - timedelta(seconds=1))
    assert logged_in.post(VERIFY, {"token": code(totp)}).status_code == 303


@pytest.mark.usefixtures("limit_three")
def test_success_resets_the_user_count(logged_in: Client, user: Any, totp: Any) -> None:
    logged_in.post(VERIFY, {"token": wrong_code(totp)})
    logged_in.post(VERIFY, {"token": wrong_code(totp)})
    assert UserState.objects.get(user=user).failures == 2
    assert logged_in.post(VERIFY, {"token": code(totp)}).status_code == 303
    assert UserState.objects.get(user=user).failures == 0
    logged_in.post(VERIFY, {"token": wrong_code(totp)})
    assert logged_in.post(VERIFY, {"token": wrong_code(totp)}).status_code == 200


@pytest.mark.usefixtures("limit_three")
def test_locked_form_says_so_on_get(logged_in: Client, user: Any, totp: Any) -> None:
    UserState.objects.create(user=user, locked_until=timezone.now() + timedelta(minutes=5))
    html = logged_in.get(VERIFY).content.decode()
    assert "verification is locked" in html and "Try again in 5 minutes" in html


@pytest.mark.usefixtures("limit_three")
@pytest.mark.parametrize("zone", ["Europe/Berlin", "America/Los_Angeles"])
def test_a_lockout_says_when_in_the_users_time_zone(
    logged_in: Client, user: Any, totp: Any, settings: Any, zone: str
) -> None:
    """The clock time is the active time zone's (the user's, where the site activates one), never UTC."""
    until = timezone.now() + timedelta(minutes=5)
    UserState.objects.create(user=user, locked_until=until)
    with timezone.override(zone):
        html = logged_in.get(VERIFY).content.decode()
        local = timezone.localtime(until)
    assert f"Try again in 5 minutes (at {local:%H:%M})." in html
    assert "UTC" not in html


@pytest.mark.usefixtures("limit_three")
def test_a_short_wait_says_only_how_long(logged_in: Client, user: Any, totp: Any) -> None:
    UserState.objects.create(user=user, locked_until=timezone.now() + timedelta(seconds=30))
    html = logged_in.get(VERIFY).content.decode()
    assert "Try again in 3" in html and "(at " not in html and "UTC" not in html


@pytest.mark.usefixtures("limit_three")
def test_unusable_input_is_not_counted(logged_in: Client, user: Any, totp: Any) -> None:
    for token in ("", FULLWIDTH_DIGITS, "x" * 65):
        logged_in.post(VERIFY, {"token": token})
    assert UserState.objects.get(user=user).failures == 0


def test_lockout_of_one_user_leaves_others_alone(
    stepup_settings: Any, no_device_throttle: None, user: Any, other_user: Any, totp: Any
) -> None:
    stepup_settings(USER_FAILURE_LIMIT=1)
    assert new_client(user, "192.0.2.1").post(VERIFY, {"token": wrong_code(totp)}).status_code == 429
    theirs = make_totp(other_user)
    assert new_client(other_user, "192.0.2.1").post(VERIFY, {"token": code(theirs)}).status_code == 303


# --- the counter itself -------------------------------------------------------------------


def test_record_failure_counts_every_call_even_with_stale_rows(stepup_settings: Any, user: Any) -> None:
    stepup_settings(USER_FAILURE_LIMIT=5)
    stale = throttling.lock_user(user)
    results = [throttling.record_failure(stale) for _ in range(4)]
    assert results == [None] * 4
    assert UserState.objects.get(user=user).failures == 4
    lockout = throttling.record_failure(stale)
    assert lockout is not None and lockout.locked
    assert throttling.user_lockout(UserState.objects.get(user=user)) == lockout


def test_throttle_retry_after_rounds_up() -> None:
    now = timezone.now()
    throttle = throttling.Throttle(locked=False, until=now + timedelta(seconds=1.2))
    assert throttle.retry_after(now) == 2
    assert throttling.Throttle(locked=False, until=None).retry_after() is None
    assert throttling.Throttle(locked=True, until=now - timedelta(seconds=5)).retry_after(now) == 1
