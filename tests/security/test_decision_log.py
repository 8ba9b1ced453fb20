"""The decision log under ``ATOMIC_REQUESTS``: a refused request's transaction rolls back, its log row must not.

Django wraps each view in a transaction when ``ATOMIC_REQUESTS`` is on, and
rolls it back when the view raises (``enforce()`` raising ``StepUpRequired``
or ``PermissionDenied``) or when DRF's exception handler refuses the request.
A security log that loses its denials lets an attacker probe unseen.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from django.db import connection
from django.test import Client
from django_otp.plugins.otp_totp.models import TOTPDevice
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from stepup.models import DecisionLog
from stepup.testing import flush_decision_log
from tests.security import views
from tests.security.test_routing import challenged

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.urls("tests.security.urls")]


@pytest.fixture(autouse=True)
def atomic_requests() -> Iterator[None]:
    before = connection.settings_dict["ATOMIC_REQUESTS"]
    connection.settings_dict["ATOMIC_REQUESTS"] = True
    yield
    connection.settings_dict["ATOMIC_REQUESTS"] = before


@pytest.fixture
def browser(client: Client, user: Any, totp: TOTPDevice) -> Client:
    client.force_login(user)
    return client


@pytest.fixture
def token_client(user: Any, totp: TOTPDevice) -> APIClient:
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=user).key}")
    return api


def events() -> list[tuple[str, str, str]]:
    flush_decision_log()  # allowed rows are written in batches after the response
    return list(DecisionLog.objects.order_by("created_at", "pk").values_list("event", "action", "url_name"))


STEP_UP = {"decision": "step_up", "max_age": 300}
DENY = {"decision": "deny"}


@pytest.mark.parametrize(
    ("path", "event_action", "url"),
    [
        ("/t/deep/", "things.change", "deep"),  # enforce() raises inside the view
        ("/t/decorated/", "things.change", "decorated"),  # @require_stepup
        ("/t/thing/", "things.change", "thing"),  # StepUpRequiredMixin
    ],
)
@pytest.mark.parametrize(("effect", "event"), [(STEP_UP, "challenged"), (DENY, "denied")])
def test_refusals_of_plain_views_are_logged(
    browser: Client, policy: Any, path: str, event_action: str, url: str, effect: Any, event: str
) -> None:
    policy("things", actions=["things.change"], **effect)
    response = browser.post(path)
    assert challenged(response) if event == "challenged" else response.status_code == 403
    assert views.CALLS == []
    assert events() == [(event, event_action, url)]


@pytest.mark.parametrize(("effect", "event"), [(STEP_UP, "challenged"), (DENY, "denied")])
@pytest.mark.parametrize("who", ["browser", "token_client"])
def test_refusals_of_drf_views_are_logged(
    request: Any, policy: Any, effect: Any, event: str, who: str
) -> None:
    """DRF's exception handler marks the transaction for rollback: the row must outlive it."""
    client = request.getfixturevalue(who)
    policy("things", actions=["things.change"], **effect)
    response = (
        client.post("/t/api/things/", {}, format="json")
        if who == "token_client"
        else client.post("/t/api/things/", {}, content_type="application/json")
    )
    assert response.status_code == (401 if event == "challenged" else 403)
    assert views.CALLS == []
    assert events() == [(event, "things.change", "things-api")]


@pytest.mark.parametrize(("effect", "event"), [(STEP_UP, "challenged"), (DENY, "denied")])
def test_refusals_by_url_policies_are_logged(browser: Client, policy: Any, effect: Any, event: str) -> None:
    policy("edit", urls=["edit"], **effect)
    browser.post("/t/edit/")
    assert views.CALLS == []
    assert events() == [(event, "", "edit")]


def test_allowed_requests_are_logged_once(browser: Client, user: Any, policy: Any) -> None:
    from stepup.testing import stepup_verified

    policy("things", actions=["things.change"], **STEP_UP)
    with stepup_verified(browser, user):
        for path in ("/t/deep/", "/t/decorated/", "/t/thing/"):
            assert browser.post(path).status_code == 200
    assert [e for e, _, _ in events()] == ["allowed"] * 3


def test_rows_of_a_request_that_fails_later_are_kept_once(
    browser: Client, user: Any, policy: Any, django_capture_on_commit_callbacks: Any
) -> None:
    """Allowed, then the view crashes (its transaction rolls back): the decision is still logged, once."""
    from stepup.testing import stepup_verified

    policy("things", actions=["things.change"], **STEP_UP)
    crashing = Client(raise_request_exception=False)
    crashing.cookies = browser.cookies
    with stepup_verified(crashing, user), django_capture_on_commit_callbacks(execute=True):
        assert crashing.post("/t/crash/").status_code == 500
    assert views.CALLS == ["crash POST"]
    assert events() == [("allowed", "things.change", "crash")]


def test_a_committed_request_writes_its_rows_once(
    browser: Client, policy: Any, django_capture_on_commit_callbacks: Any
) -> None:
    policy("things", actions=["things.change"], **DENY)
    with django_capture_on_commit_callbacks(execute=True):
        assert browser.post("/t/decorated/").status_code == 403  # the decorator answers: a commit
    assert events() == [("denied", "things.change", "decorated")]


def test_without_the_middleware_a_decorator_refusal_is_still_logged(
    browser: Client, policy: Any, settings: Any
) -> None:
    """The decorator answers the refusal itself: the view's transaction commits with the row."""
    settings.MIDDLEWARE = [m for m in settings.MIDDLEWARE if m != "stepup.middleware.StepUpMiddleware"]
    policy("things", actions=["things.change"], **DENY)
    assert browser.post("/t/decorated/").status_code == 403
    assert events() == [("denied", "things.change", "decorated")]


@pytest.mark.filterwarnings("ignore:Overriding setting DATABASES")
def test_a_project_without_the_middleware_is_warned_that_its_log_loses_rows(settings: Any) -> None:
    from stepup.checks import check_settings

    settings.MIDDLEWARE = [m for m in settings.MIDDLEWARE if m != "stepup.middleware.StepUpMiddleware"]
    settings.DATABASES = {"default": {**settings.DATABASES["default"], "ATOMIC_REQUESTS": True}}
    assert "stepup.W004" in {message.id for message in check_settings()}
    settings.DATABASES = {"default": {**settings.DATABASES["default"], "ATOMIC_REQUESTS": False}}
    assert "stepup.W004" not in {message.id for message in check_settings()}
