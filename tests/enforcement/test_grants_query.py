"""The grants read of every protected request: a statement written once per database, equal to the ORM's."""

from __future__ import annotations

import itertools
from typing import Any

import pytest
from django.db import connection

from stepup import grants
from stepup.models import Grant, UserState

pytestmark = pytest.mark.django_db

NOW = 1_900_000_000.0
SUBJECT = "s:subject-one"
AUTH = "a" * 64


def grant(user: Any, **fields: Any) -> Grant:
    values = {
        "subject": SUBJECT,
        "user": user,
        "kind": "totp",
        "digest": "",
        "verified_at": NOW - 100,
        "expires_at": NOW + 100,
        "epoch": 0,
        "auth": AUTH,
        **fields,
    }
    return Grant.objects.create(**values)


@pytest.fixture
def rows(user: Any, other_user: Any) -> dict[str, Grant]:
    """One grant that counts and one for each reason a grant must not."""
    return {
        "valid": grant(user),
        "one-shot": grant(user, kind="static", digest="d" * 64, verified_at=NOW - 5.25, expires_at=NOW + 0.5),
        "other subject": grant(user, subject="s:subject-two"),
        "other user": grant(other_user),
        "other password": grant(user, auth="b" * 64),
        "used": grant(user, digest="e" * 64, used_at=NOW - 1),
        "expired": grant(user, expires_at=NOW),
        "old epoch": grant(user, epoch=7),
    }


def both(user: Any, at: float = NOW, subject: str = SUBJECT, auth: str = AUTH) -> tuple[list[Any], list[Any]]:
    raw = grants.valid_grants(subject, user.pk, auth, at)
    orm = [tuple(row) for row in grants.valid_grants_queryset(subject, user.pk, auth, at)]
    return raw, orm


def test_only_valid_unused_grants_of_this_subject_user_and_password_count(
    user: Any, rows: dict[str, Grant]
) -> None:
    raw, orm = both(user)
    assert raw == orm
    assert [pk for pk, *_ in raw] == [rows["valid"].pk, rows["one-shot"].pk]
    assert raw[1] == (rows["one-shot"].pk, "static", "d" * 64, NOW - 5.25, NOW + 0.5)


def test_the_users_grant_epoch_decides(user: Any, rows: dict[str, Grant]) -> None:
    UserState.objects.create(user=user, grant_epoch=7)
    raw, orm = both(user)
    assert raw == orm == [(rows["old epoch"].pk, "totp", "", NOW - 100, NOW + 100)]
    UserState.objects.filter(user=user).update(grant_epoch=8)
    assert both(user) == ([], [])


@pytest.mark.parametrize(
    ("at", "subject", "auth"),
    list(itertools.product([NOW - 1000, NOW, NOW + 0.5, NOW + 100], [SUBJECT, "s:nobody"], [AUTH, "b" * 64])),
)
def test_equal_to_the_orm_for_every_time_subject_and_password(
    user: Any, rows: dict[str, Grant], at: float, subject: str, auth: str
) -> None:
    raw, orm = both(user, at, subject, auth)
    assert raw == orm


def test_a_value_is_never_part_of_the_statement(user: Any, rows: dict[str, Grant]) -> None:
    hostile = "s:' OR '1'='1"
    assert grants.valid_grants(hostile, user.pk, AUTH, NOW) == []
    sql = grants._grants_sql(connection.alias, connection.vendor)
    assert "'" not in sql and sql.count("%s") == 5


def test_one_query_per_request_and_none_once_loaded(
    rf_request: Any, user: Any, django_assert_num_queries: Any
) -> None:
    request = rf_request("get", "/billing/")
    grants.record_verification(request, user, "totp")
    with django_assert_num_queries(1):
        first = grants.verification_ages(request, user)
        again = grants.verification_ages(request, user)
    assert set(first) == set(again) == {"totp"}


def test_a_password_changed_within_the_request_voids_the_grants_read(rf_request: Any, user: Any) -> None:
    request = rf_request("get", "/billing/")
    grants.record_verification(request, user, "totp")
    assert set(grants.verification_ages(request, user)) == {"totp"}
    user.set_password("a-new-password-2")
    assert grants.verification_ages(request, user) == {}


def test_no_single_request_grant_read_means_none_without_another_read(
    rf_request: Any, user: Any, django_assert_num_queries: Any
) -> None:
    request = rf_request("get", "/billing/")
    grants.record_verification(request, user, "totp")
    grants.verification_ages(request, user)
    with django_assert_num_queries(0):
        assert grants.holds_one_shot(request, user) is False
    grants.record_verification(request, user, "static", one_shot_digest="d" * 64)
    assert grants.holds_one_shot(request, user) is True
    assert grants.one_shot_kinds(request, user, "d" * 64) == {"static"}


def test_an_empty_digest_binds_no_lasting_grant(rf_request: Any, user: Any) -> None:
    """A lasting grant's digest is empty: asking for the single-request grants of "" finds none
    and uses up nothing (it found the lasting ``totp`` grant, and used it up, before)."""
    request = rf_request("post", "/billing/")
    grants.record_verification(request, user, "totp")
    assert grants.one_shot_kinds(request, user, "") == frozenset()
    assert grants.consume_one_shot(request, "", user) == ()
    assert set(grants.verification_ages(request, user)) == {"totp"}  # still there, still unused
