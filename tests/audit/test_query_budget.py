"""A protected request with a valid grant costs django-otp's queries plus one: the grants read."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth.models import Group
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django_otp.plugins.otp_static.models import StaticDevice

from stepup.models import DecisionLog
from stepup.testing import flush_decision_log

pytestmark = pytest.mark.django_db


def tables(queries: CaptureQueriesContext) -> list[str]:
    """The main table each captured statement reads or writes."""
    found = []
    for query in queries.captured_queries:
        sql = query["sql"]
        word = "INTO" if sql.startswith("INSERT") else "FROM"
        found.append(sql.split(f"{word} ", 1)[1].split()[0].strip('"`'))
    return found


def test_the_allowed_path_reads_session_user_device_and_grants_only(
    logged_in: Client, user: Any, policy: Any, stepup_verified: Any, settings: Any
) -> None:
    """Session, user and OTP device are django-otp's own; stepup adds the grants and nothing else."""
    user.groups.add(Group.objects.create(name="finance"))
    policy("transfers", actions=["payments.transfer"])
    device = StaticDevice.objects.get(user=user)
    with stepup_verified(logged_in, user, factor="static"):
        session = logged_in.session
        session["otp_device_id"] = device.persistent_id  # what django_otp.login stores
        session.save()
        assert logged_in.post("/transfer/", {"amount": "1"}).status_code == 200  # the policy set is loaded
        for amount in ("2", "3"):
            with CaptureQueriesContext(connection) as queries:
                assert logged_in.post("/transfer/", {"amount": amount}).status_code == 200
            assert tables(queries) == [
                "django_session",
                "auth_user",
                "otp_static_staticdevice",
                "stepup_grant",
            ]
    assert flush_decision_log() == 3
    assert DecisionLog.objects.filter(event="allowed", roles=["authenticated", "finance"]).count() == 3


def test_a_second_decision_in_the_request_reads_nothing_more(
    rf: Any, user: Any, policy: Any, django_assert_num_queries: Any
) -> None:
    """The context and the grants are read once per request, whatever number of decisions it makes."""
    from django.contrib.sessions.middleware import SessionMiddleware

    from stepup import decide, grants

    policy("transfers", actions=["payments.transfer"])
    policy("reports", actions=["reports.view"])
    request = rf.post("/transfer/")
    SessionMiddleware(lambda r: None).process_request(request)
    request.user = user
    grants.record_login(request)
    grants.record_verification(request, user, "static")
    decide(request, "payments.transfer", {"amount": "1"})  # loads the policy set and the grants
    with django_assert_num_queries(0):
        assert decide(request, "reports.view").outcome == "allow"
        assert decide(request, "payments.transfer", {"amount": "2"}).outcome == "allow"
