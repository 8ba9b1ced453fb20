"""``StepUpMiddleware``: URL policies, never twice, cost, deep ``enforce()``, store outages."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from asgiref.sync import async_to_sync, iscoroutinefunction
from django.db import connection
from django.http import HttpRequest, HttpResponse
from django.test.utils import CaptureQueriesContext

from stepup import binding, grants, store
from stepup.enforcement import decide, enforce
from stepup.exceptions import PolicyStoreUnavailable, StepUpRequired
from stepup.middleware import StepUpMiddleware, declares_action
from stepup.models import DecisionLog
from stepup.policy.engine import compile_policies
from stepup.policy.model import PolicySpec
from tests.enforcement import views
from tests.enforcement.conftest import VERIFY, challenge_of, resolved

pytestmark = [pytest.mark.django_db, pytest.mark.urls("tests.enforcement.urls")]


def _middleware() -> StepUpMiddleware:
    return StepUpMiddleware(lambda request: HttpResponse("downstream"))


def _process(request: Any) -> Any:
    request = resolved(request)
    return _middleware().process_view(request, request.resolver_match.func, (), {})


# --- capabilities -----------------------------------------------------------------------


def test_middleware_is_sync_and_async_capable():
    assert StepUpMiddleware.sync_capable and StepUpMiddleware.async_capable

    async def downstream(request: Any) -> HttpResponse:
        return HttpResponse("async")

    middleware = StepUpMiddleware(downstream)
    assert iscoroutinefunction(middleware)
    assert async_to_sync(middleware)(HttpRequest()).content == b"async"
    assert not iscoroutinefunction(_middleware())


# --- URL-name policies ------------------------------------------------------------------


def test_url_policy_challenges_through_request_factory(rf_request, totp, policy):
    policy("plain-writes", urls=["plain"], methods=["POST"])
    response = _process(rf_request("post", "/plain/"))
    assert response.status_code == 302
    assert response["Location"].startswith(VERIFY)
    assert _process(rf_request("get", "/plain/")) is None


def test_url_policy_through_the_full_client(logged_in, policy, stepup_verified, user):
    policy("plain-writes", urls=["plain"], methods=["POST"])
    assert logged_in.get("/plain/").status_code == 200
    response = logged_in.post("/plain/")
    assert response.status_code == 302
    assert views.CALLS == ["plain"]
    with stepup_verified(logged_in, user):
        assert logged_in.post("/plain/").status_code == 200
    assert views.CALLS == ["plain", "plain"]


def test_url_glob_policy(logged_in, policy):
    policy("reports", urls=["repo*"])
    assert logged_in.get("/reports/x/").status_code == 302  # the view's action is uncovered too


def test_admin_user_change_needs_stepup_for_post(client, django_user_model, policy, stepup_verified):
    admin = django_user_model.objects.create_superuser("root", password="pw")
    from django_otp.plugins.otp_totp.models import TOTPDevice

    TOTPDevice.objects.create(user=admin, name="Phone", confirmed=True)
    target = django_user_model.objects.create_user("victim", password="pw")
    policy("admin-users", urls=["admin:auth_user_change"], methods=["POST"], max_age=300)
    client.force_login(admin)
    url = f"/admin/auth/user/{target.pk}/change/"
    assert client.get(url).status_code == 200
    data = {"username": "renamed", "date_joined_0": "2024-01-01", "date_joined_1": "00:00:00"}
    response = client.post(url, data)
    assert response.status_code == 302
    assert response["Location"].startswith(VERIFY)
    target.refresh_from_db()
    assert target.username == "victim"
    challenge = challenge_of(client, response)
    assert challenge["url_name"] == "admin:auth_user_change"
    assert challenge["post"]["username"] == ["renamed"]
    assert "csrfmiddlewaretoken" not in challenge["post"]


def test_verification_views_are_never_subject_to_url_policies(logged_in, policy):
    policy("everything", urls=["*"])
    assert logged_in.get("/plain/").status_code == 302
    response = logged_in.get(VERIFY)
    assert response.status_code != 302  # the verify view itself answers (501 until it lands)


def test_unnamed_and_unknown_routes_are_not_matched(logged_in, policy):
    policy("everything", urls=["*"])
    assert logged_in.post("/unnamed/").status_code == 200
    assert logged_in.post("/no/such/route/").status_code == 404


# --- who declares an action -------------------------------------------------------------


def test_declares_action_detection():
    from stepup.middleware import _is_stepup_permission

    assert declares_action(views.billing)
    assert declares_action(views.SettingsView.as_view())
    assert declares_action(views.GuardedApiView.as_view())
    assert not declares_action(views.ApiView.as_view())
    assert not declares_action(views.plain)

    class Other:
        pass

    class And:  # DRF's OperandHolder for ``A & B`` / ``A | B``
        def __init__(self, name: str, a: Any, b: Any) -> None:
            self.operator_class = type(name, (), {})
            self.op1_class, self.op2_class = a, b

    assert _is_stepup_permission(And("AND", Other, views.StepUpPermission))
    assert not _is_stepup_permission(And("OR", Other, views.StepUpPermission))
    assert not _is_stepup_permission(Other)


def test_drf_view_without_its_own_action_gets_url_policies_as_api(logged_in, policy):
    policy("api-writes", urls=["api"], methods=["POST"])
    assert logged_in.get("/api/").status_code == 200
    response = logged_in.post("/api/", {}, content_type="application/json")
    assert response.status_code == 401
    assert response.json()["code"] == "stepup_required"
    assert views.CALLS == ["api"]


def test_drf_view_with_the_permission_is_left_to_it(logged_in, policy, recorder):
    policy("guarded", actions=["api.guarded"])
    policy("guarded-url", urls=["api-guarded"])
    response = logged_in.get("/api/guarded/")
    assert response.status_code == 401  # raised inside DRF, answered by process_exception
    assert len(recorder.challenged) == 1
    assert set(recorder.challenged[0]["decision"].policies) == {"guarded", "guarded-url"}
    assert views.CALLS == []


# --- never twice ------------------------------------------------------------------------


def test_decorated_view_with_url_policy_is_challenged_once(logged_in, policy, recorder):
    policy("billing-action", actions=["billing.update"], max_age=300)
    policy("billing-url", urls=["billing"], max_age=60)
    response = logged_in.post("/billing/")
    assert response.status_code == 302
    assert len(recorder.challenged) == 1
    assert DecisionLog.objects.filter(event="challenged").count() == 1
    decision = recorder.challenged[0]["decision"]
    assert set(decision.policies) == {"billing-action", "billing-url"}
    assert decision.max_age == 60
    assert challenge_of(logged_in, response)["max_age"] == 60


def test_deep_enforce_after_url_policy_is_challenged_once(logged_in, policy, recorder):
    policy("deep-url", urls=["deep"])
    policy("downloads", actions=["reports.download"])
    response = logged_in.get("/deep/")
    assert response.status_code == 302
    assert views.CALLS == []  # the middleware stopped it before the view
    assert len(recorder.challenged) == 1
    assert DecisionLog.objects.filter(event="challenged").count() == 1


def test_deep_enforce_does_not_re_include_enforced_url_policies(rf_request, user, totp, policy):
    policy("deep-url", urls=["deep"], max_age=60)
    policy("downloads", actions=["reports.download"], max_age=300)
    request = rf_request("get", "/deep/")
    grants.record_verification(request, user, "totp")
    assert _process(request) is None  # the URL policy is met and marked as enforced
    assert decide(request, "reports.download").policies == ("downloads",)


def test_deep_enforce_raises_and_process_exception_answers(logged_in, policy, recorder):
    policy("downloads", actions=["reports.download"], when={"attrs": {"rows": {"gt": 100000}}})
    assert logged_in.get("/deep/?rows=10").status_code == 200
    response = logged_in.get("/deep/?rows=120000")
    assert response.status_code == 302
    assert response["Location"].startswith(VERIFY)
    assert views.CALLS == ["deep entered", "deep", "deep entered"]
    assert len(recorder.challenged) == 1
    assert recorder.challenged[0]["attributes"] == {"rows": "120000"}


def test_repeated_enforce_in_one_request_decides_once(rf_request, user, totp, policy):
    policy("downloads", actions=["reports.download"], max_age=0)
    request = rf_request("get", "/deep-twice/")
    digest = binding.attributes_digest("reports.download", "deep-twice", {"rows": "10"})
    grants.record_verification(request, user, "totp", one_shot_digest=digest)
    assert views.deep_twice(request).status_code == 200  # the one-shot grant covers the request
    assert grants.one_shot_kinds(request, user, digest) == frozenset()  # and is used up


def test_process_exception_ignores_other_exceptions(rf_request):
    assert _middleware().process_exception(rf_request("get", "/plain/"), ValueError("x")) is None


def test_step_up_raised_outside_a_policy_is_answered(rf_request, totp):
    request = resolved(rf_request("get", "/plain/"))
    from stepup.policy.model import Decision

    exc = StepUpRequired(Decision("step_up", max_age=30, policies=("x",)))
    response = _middleware().process_exception(request, exc)
    assert response is not None
    assert response.status_code == 302


# --- cost -------------------------------------------------------------------------------


def test_no_query_for_an_unmatched_url(rf_request, policy, django_assert_num_queries):
    policy("billing", actions=["billing.update"], urls=["billing", "admin:*"])
    store.get_policy_set()  # warm
    request = resolved(rf_request("post", "/unmatched/"))
    request.session = type(request.session)()  # a fresh, unloaded session: touching it would query
    with django_assert_num_queries(0):
        assert _process(request) is None
    assert not request.session.accessed


def test_no_query_for_an_unmatched_url_through_the_client(logged_in, policy, django_assert_num_queries):
    policy("billing", actions=["billing.update"], urls=["billing"])
    store.get_policy_set()
    with django_assert_num_queries(0):
        assert logged_in.post("/unmatched/").status_code == 200


def test_roles_loaded_at_most_once_per_request(logged_in, user, policy):
    from django.contrib.auth.models import Group

    user.groups.add(Group.objects.create(name="finance"))
    policy("deep-url", urls=["deep"], when={"roles": {"any_of": ["finance"]}}, methods=["POST"])
    policy("downloads-a", actions=["reports.download"], when={"roles": {"any_of": ["ops"]}})
    policy("downloads-b", actions=["reports.download"], when={"roles": {"none_of": ["finance"]}})
    with CaptureQueriesContext(connection) as queries:
        assert logged_in.get("/deep/").status_code == 200
    group_queries = [q for q in queries.captured_queries if "auth_group" in q["sql"]]
    assert len(group_queries) == 1


# --- the policy store unreachable -------------------------------------------------------


@pytest.fixture
def store_down(monkeypatch):
    def unavailable() -> Any:
        raise PolicyStoreUnavailable("down")

    monkeypatch.setattr(store, "get_policy_set", unavailable)


def test_store_down_declared_action_fails_closed(logged_in, store_down, caplog):
    with caplog.at_level(logging.ERROR, logger="stepup"):
        response = logged_in.post("/billing/")
    assert response.status_code == 302
    assert challenge_of(logged_in, response)["max_age"] == 300
    assert views.CALLS == []
    assert "policy store unavailable" in caplog.text


def test_store_down_declared_action_allows_a_fresh_verification(logged_in, user, store_down, stepup_verified):
    with stepup_verified(logged_in, user):
        assert logged_in.post("/billing/").status_code == 200


def test_store_down_url_only_unsafe_method_is_503(logged_in, store_down, caplog):
    with caplog.at_level(logging.ERROR, logger="stepup"):
        response = logged_in.post("/plain/")
    assert response.status_code == 503
    assert "no-store" in response["Cache-Control"]
    assert views.CALLS == []
    assert "policy store unavailable" in caplog.text
    api = logged_in.post("/plain/", {}, content_type="application/json")
    assert api.status_code == 503
    assert api.json()["code"] == "stepup_unavailable"


def test_store_down_url_only_safe_method_is_allowed_and_logged(logged_in, store_down, caplog):
    with caplog.at_level(logging.ERROR, logger="stepup"):
        assert logged_in.get("/plain/").status_code == 200
        assert logged_in.head("/plain/").status_code == 200
    assert caplog.text.count("policy store unavailable") == 2


def test_store_down_verification_views_still_work(logged_in, store_down):
    assert logged_in.post(VERIFY).status_code != 503


def test_store_down_deep_enforce_fails_closed(rf_request, totp, store_down):
    with pytest.raises(StepUpRequired) as caught:
        enforce(rf_request("get", "/plain/"), "reports.download")
    assert caught.value.decision.max_age == 300


# --- a hand-built policy set (monkeypatched store) --------------------------------------


def test_monkeypatched_policy_set_is_used(rf_request, totp, monkeypatch):
    specs = [PolicySpec(id="p", urls=("plain",), methods=("DELETE",), max_age=10)]
    policy_set = compile_policies(specs, version="hand-built")
    monkeypatch.setattr(store, "get_policy_set", lambda: policy_set)
    assert _process(rf_request("delete", "/plain/")).status_code == 302
    assert _process(rf_request("put", "/plain/")) is None


def test_url_policy_on_the_login_page_does_not_loop_anonymous_users(client, policy, user, totp):
    policy("everything", urls=["*"])
    assert client.get("/accounts/login/").status_code == 200
    assert client.get("/plain/")["Location"].startswith("/accounts/login/")
    client.force_login(user)
    assert client.get("/accounts/login/").status_code == 302  # logged in: a normal challenge


def test_url_policy_through_the_async_stack(async_client, user, totp, policy, stepup_verified):
    policy("plain-writes", urls=["plain"], methods=["POST"])
    policy("no-plain-delete", urls=["plain"], methods=["DELETE"], decision="deny")
    async_client.force_login(user)
    assert async_to_sync(async_client.get)("/plain/").status_code == 200
    assert async_to_sync(async_client.post)("/plain/").status_code == 302
    assert async_to_sync(async_client.delete)("/plain/").status_code == 403
    with stepup_verified(async_client, user):
        assert async_to_sync(async_client.post)("/plain/").status_code == 200
    assert views.CALLS == ["plain", "plain"]
