"""``@require_stepup`` and ``StepUpRequiredMixin``: sync and async, with or without middleware."""

from __future__ import annotations

from typing import Any

import pytest
from asgiref.sync import async_to_sync
from django.core.exceptions import ImproperlyConfigured
from django.http import HttpResponse
from django.test import AsyncRequestFactory
from django.views import View

from stepup import StepUpRequiredMixin, grants, require_stepup
from stepup.models import DecisionLog
from tests.enforcement import views
from tests.enforcement.conftest import VERIFY

pytestmark = [pytest.mark.django_db, pytest.mark.urls("tests.enforcement.urls")]

NO_MIDDLEWARE = [
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django_otp.middleware.OTPMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
]


@pytest.fixture
def billing_policy(policy):
    return policy("billing-update", actions=["billing.update"], max_age=300)


# --- the decorator's surface ------------------------------------------------------------


def test_decorator_without_parentheses_is_a_clear_type_error():
    with pytest.raises(TypeError, match=r"needs an action name"):

        @require_stepup  # type: ignore[arg-type]
        def view(request):  # pragma: no cover
            return HttpResponse()


@pytest.mark.parametrize("action", ["", None, 3])
def test_decorator_rejects_a_bad_action(action):
    with pytest.raises(TypeError):
        require_stepup(action)


def test_decorator_rejects_non_callable_attributes():
    with pytest.raises(TypeError, match="attributes"):
        require_stepup("x.y", attributes={"amount": 1})  # type: ignore[arg-type]


def test_decorator_stamps_the_view_and_keeps_its_identity():
    assert getattr(views.billing, "stepup_action") == "billing.update"  # noqa: B009
    assert getattr(views.billing, "_stepup_enforced") is True  # noqa: B009
    assert views.billing.__name__ == "billing"
    assert getattr(views.abilling, "stepup_action") == "billing.update"  # noqa: B009


def test_async_view_stays_a_coroutine_function():
    from asgiref.sync import iscoroutinefunction

    assert iscoroutinefunction(views.abilling)
    assert not iscoroutinefunction(views.billing)


# --- sync, through RequestFactory (no middleware at all) --------------------------------


def test_sync_view_challenged_without_middleware(rf_request, totp, billing_policy):
    response = views.billing(rf_request("post", "/billing/"))
    assert response.status_code == 302
    assert response["Location"].startswith(VERIFY)
    assert views.CALLS == []


def test_sync_view_runs_when_verified(rf_request, user, totp, billing_policy):
    request = rf_request("post", "/billing/")
    grants.record_verification(request, user, "totp")
    assert views.billing(request).status_code == 200
    assert views.CALLS == ["billing"]


def test_uncovered_action_gets_the_default_requirement(rf_request, totp):
    response = views.billing(rf_request("post", "/billing/"))  # no policy names billing.update
    assert response.status_code == 302
    assert views.CALLS == []


def test_attributes_callable_receives_view_arguments(rf_request, user, totp, policy):
    policy("secret-report", actions=["reports.view"], when={"attrs": {"report": {"eq": "payroll"}}})
    assert views.report(rf_request("get", "/reports/sales/"), report="sales").status_code == 200
    response = views.report(rf_request("get", "/reports/payroll/"), report="payroll")
    assert response.status_code == 302
    assert views.CALLS == ["report sales"]


def test_attributes_decide_through_the_full_client(logged_in, policy):
    policy(
        "big-transfers",
        actions=["payments.transfer"],
        max_age=300,
        when={"attrs": {"amount": {"gt": 1000}}},
    )
    assert logged_in.post("/transfer/", {"amount": "50", "to": "A"}).status_code == 200
    response = logged_in.post("/transfer/", {"amount": "5000", "to": "A"})
    assert response.status_code == 302
    assert views.CALLS == ["transfer 50 to A"]


# --- async ------------------------------------------------------------------------------


def test_async_view_challenged_through_async_request_factory(user, totp, billing_policy):
    from django.contrib.sessions.middleware import SessionMiddleware

    request = AsyncRequestFactory().post("/abilling/")
    SessionMiddleware(lambda r: None).process_request(request)  # type: ignore[arg-type]
    request.user = user
    response = async_to_sync(views.abilling)(request)
    assert response.status_code == 302
    assert response["Location"].startswith(VERIFY)
    assert views.CALLS == []


def test_async_view_runs_when_verified_through_async_request_factory(user, totp, billing_policy):
    from django.contrib.sessions.middleware import SessionMiddleware

    request = AsyncRequestFactory().post("/abilling/")
    SessionMiddleware(lambda r: None).process_request(request)  # type: ignore[arg-type]
    request.user = user
    grants.record_verification(request, user, "totp")
    assert async_to_sync(views.abilling)(request).status_code == 200
    assert views.CALLS == ["abilling"]


def test_async_view_through_async_client(async_client, user, totp, billing_policy, stepup_verified):
    async_client.force_login(user)
    response = async_to_sync(async_client.post)("/abilling/")
    assert response.status_code == 302
    assert response["Location"].startswith(VERIFY)
    assert views.CALLS == []
    with stepup_verified(async_client, user):
        assert async_to_sync(async_client.post)("/abilling/").status_code == 200
    assert views.CALLS == ["abilling"]


def test_async_view_with_attributes(async_client, user, totp, policy):
    policy(
        "big-transfers",
        actions=["payments.transfer"],
        when={"attrs": {"amount": {"gt": 1000}}},
    )
    async_client.force_login(user)
    assert async_to_sync(async_client.post)("/atransfer/", {"amount": "10", "to": "A"}).status_code == 200
    assert async_to_sync(async_client.post)("/atransfer/", {"amount": "9999", "to": "A"}).status_code == 302
    assert views.CALLS == ["atransfer 10 to A"]


def test_async_client_gets_the_api_challenge(async_client, user, totp, billing_policy):
    async_client.force_login(user)
    response = async_to_sync(async_client.post)("/abilling/", headers={"accept": "application/json"})
    assert response.status_code == 401
    assert response.json()["code"] == "stepup_required"


# --- without the middleware, through the full client ------------------------------------


def test_decorator_and_mixin_enforce_without_the_middleware(logged_in, settings, billing_policy, policy):
    settings.MIDDLEWARE = NO_MIDDLEWARE
    policy("access", actions=["access.modify"])
    assert logged_in.post("/billing/").status_code == 302
    assert logged_in.get("/settings/red/").status_code == 302
    assert views.CALLS == []


# --- the mixin --------------------------------------------------------------------------


def test_mixin_stamps_the_class_for_the_middleware():
    view_class = getattr(views.SettingsView.as_view(), "view_class")  # noqa: B009
    assert view_class._stepup_enforced is True
    assert view_class.stepup_action == "access.modify"


def test_mixin_challenges_before_the_handler(logged_in, policy):
    policy("access", actions=["access.modify"], when={"attrs": {"team": {"eq": "red"}}})
    assert logged_in.get("/settings/blue/").status_code == 200
    response = logged_in.post("/settings/red/")
    assert response.status_code == 302
    assert response["Location"].startswith(VERIFY)
    assert views.CALLS == ["settings blue"]


def test_mixin_through_request_factory(rf_request, user, totp, policy):
    policy("access", actions=["access.modify"])
    view = views.SettingsView.as_view()
    assert view(rf_request("get", "/settings/red/"), team="red").status_code == 302
    request = rf_request("get", "/settings/red/")
    grants.record_verification(request, user, "totp")
    assert view(request, team="red").status_code == 200
    assert views.CALLS == ["settings red"]


def test_async_mixin_view(async_client, user, totp, policy, stepup_verified):
    policy("access", actions=["access.modify"])
    async_client.force_login(user)
    assert async_to_sync(async_client.get)("/asettings/red/").status_code == 302
    with stepup_verified(async_client, user):
        assert async_to_sync(async_client.get)("/asettings/red/").status_code == 200
    assert views.CALLS == ["asettings red"]


def test_mixin_without_an_action_is_improperly_configured(rf_request):
    class Broken(StepUpRequiredMixin, View):
        def get(self, request: Any) -> HttpResponse:  # pragma: no cover
            return HttpResponse()

    with pytest.raises(ImproperlyConfigured):
        Broken.as_view()(rf_request("get", "/plain/"))


def test_mixin_get_stepup_action_can_be_overridden(rf_request, user, totp, policy):
    policy("dynamic", actions=["dynamic.thing"], decision="deny")

    class Dynamic(StepUpRequiredMixin, View):
        def get_stepup_action(self) -> str:
            return "dynamic.thing"

        def get(self, request: Any) -> HttpResponse:  # pragma: no cover
            return HttpResponse()

    assert Dynamic.as_view()(rf_request("get", "/plain/")).status_code == 403


def test_deny_from_the_decorator_is_logged_and_403(logged_in, policy, recorder):
    policy("no-billing", actions=["billing.update"], decision="deny")
    response = logged_in.post("/billing/")
    assert response.status_code == 403
    assert views.CALLS == []
    assert len(recorder.denied) == 1
    assert DecisionLog.objects.filter(event="denied", action="billing.update").count() == 1


def test_mixin_after_view_is_refused_at_class_definition():
    with pytest.raises(ImproperlyConfigured, match="before the view classes"):

        class Wrong(View, StepUpRequiredMixin):  # View.dispatch would never call ours
            stepup_action = "access.modify"
