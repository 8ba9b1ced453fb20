"""``stepup prune-log``: delete decision-log entries older than the retention period, in batches."""

from __future__ import annotations

import io
from datetime import timedelta
from typing import Any

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.utils import timezone

from stepup.audit import prune_log
from stepup.models import DecisionLog

pytestmark = pytest.mark.django_db


def aged(*days: float) -> None:
    """One log row per age (in days)."""
    now = timezone.now()
    for age in days:
        row = DecisionLog.objects.create(event="challenged", username="alice")
        DecisionLog.objects.filter(pk=row.pk).update(created_at=now - timedelta(days=age))


def prune(*args: str) -> str:
    out = io.StringIO()
    call_command("stepup", "prune-log", *args, stdout=out)
    return out.getvalue()


def ages() -> list[int]:
    now = timezone.now()
    return sorted(
        round((now - c).total_seconds() / 86400)
        for c in DecisionLog.objects.values_list("created_at", flat=True)
    )


def test_default_retention_is_90_days() -> None:
    aged(1, 89, 91, 400)
    assert prune().startswith("Deleted 2 decision-log entries older than 90 days")
    assert ages() == [1, 89]


def test_retention_setting(settings: Any) -> None:
    settings.STEPUP = {**settings.STEPUP, "DECISION_LOG_RETENTION": 30}
    aged(1, 29, 31, 89)
    assert "Deleted 2 " in prune()
    assert ages() == [1, 29]


def test_days_option_and_dry_run() -> None:
    aged(1, 5, 12, 40)
    assert prune("--days", "10", "--dry-run").startswith("Dry run: 2 decision-log entries older than 10 days")
    assert len(ages()) == 4
    assert "Deleted 2 " in prune("--days", "10")
    assert ages() == [1, 5]
    assert "Deleted 2 " in prune("--days", "0")
    assert ages() == []


def test_batches(django_assert_num_queries: Any) -> None:
    aged(*([100] * 7), 1)
    before = timezone.now() - timedelta(days=90)
    # 4 batches of up to 2 rows (select ids + delete each), and the empty select that ends it
    with django_assert_num_queries(4 * 2 + 1):
        assert prune_log(before, batch_size=2) == 7
    assert ages() == [1]
    assert "Deleted 0 " in prune("--batch-size", "3")


@pytest.mark.parametrize("args", [("--days", "-1"), ("--batch-size", "0")])
def test_bad_options(args: tuple[str, ...]) -> None:
    aged(100)
    with pytest.raises(CommandError):
        prune(*args)
    assert len(ages()) == 1


def test_prune_log_also_deletes_expired_grants_and_challenges(django_user_model):
    from io import StringIO

    from django.core.management import call_command

    from stepup import grants
    from stepup.models import Grant, PendingChallenge

    user = django_user_model.objects.create_user("pruned")
    common = {"subject": "s", "user": user, "kind": "totp", "verified_at": 1.0, "auth": "x"}
    Grant.objects.create(**common, expires_at=grants.now() - 1)
    live = Grant.objects.create(**common, expires_at=grants.now() + 3600)
    PendingChallenge.objects.create(
        challenge_id="c1", subject="s", user=user, data={}, created_at=1.0, expires_at=grants.now() - 1
    )
    out = StringIO()
    call_command("stepup", "prune-log", "--dry-run", stdout=out)
    assert "2 expired grants and challenges would be deleted" in out.getvalue()
    assert Grant.objects.count() == 2
    out = StringIO()
    call_command("stepup", "prune-log", stdout=out)
    assert "Deleted 2 expired grants and challenges." in out.getvalue()
    assert list(Grant.objects.all()) == [live]
    assert not PendingChallenge.objects.exists()
