"""Grants as enforcement sees them: max_age boundaries, factor kinds, one-shot, and revocation."""

from __future__ import annotations

import time

import pytest
import time_machine
from django.contrib.auth import update_session_auth_hash

from stepup import binding, decide, enforce, grants
from stepup.exceptions import StepUpRequired
from stepup.models import DecisionLog
from tests.conftest import PASSWORD
from tests.enforcement import views
from tests.enforcement.conftest import VERIFY, challenge_of, complete

pytestmark = [pytest.mark.django_db, pytest.mark.urls("tests.enforcement.urls")]

T0 = 1_700_000_000.0


# --- max_age, to the second -------------------------------------------------------------


def test_max_age_boundary_with_frozen_time(rf_request, user, totp, policy):
    policy("billing", actions=["billing.update"], max_age=300)
    with time_machine.travel(T0, tick=False) as traveller:
        request = rf_request("post", "/billing/")
        grants.record_verification(request, user, "totp")
        assert time.time() == T0
        traveller.move_to(T0 + 300)
        assert decide(rf_request_with(request), "billing.update").outcome == "allow"
        traveller.move_to(T0 + 300.001)
        assert decide(rf_request_with(request), "billing.update").outcome == "step_up"


def rf_request_with(request):
    """The same session in a fresh request object (contexts are cached per request)."""
    from django.test import RequestFactory

    fresh = RequestFactory().post(request.path)
    fresh.session = request.session
    fresh.user = request.user
    return fresh


def test_max_age_boundary_through_the_client(logged_in, user, policy, stepup_verified):
    policy("billing", actions=["billing.update"], max_age=60)
    with time_machine.travel(T0, tick=False) as traveller, stepup_verified(logged_in, user):
        traveller.move_to(T0 + 60)
        assert logged_in.post("/billing/").status_code == 200
        traveller.move_to(T0 + 61)
        assert logged_in.post("/billing/").status_code == 302
    assert views.CALLS == ["billing"]


def test_strictest_max_age_wins(rf_request, user, totp, policy):
    policy("loose", actions=["billing.update"], max_age=3600)
    policy("strict", actions=["billing.update"], max_age=60)
    with time_machine.travel(T0, tick=False) as traveller:
        request = rf_request("post", "/billing/")
        grants.record_verification(request, user, "totp")
        traveller.move_to(T0 + 120)
        decision = decide(rf_request_with(request), "billing.update")
    assert decision.outcome == "step_up"
    assert decision.max_age == 60


# --- factor kinds -----------------------------------------------------------------------


def test_verified_totp_does_not_satisfy_a_webauthn_only_policy(rf_request, user, totp, policy):
    policy("keys-only", actions=["billing.update"], factors=["webauthn"])
    request = rf_request("post", "/billing/")
    grants.record_verification(request, user, "totp")
    decision = decide(request, "billing.update")
    assert decision.outcome == "step_up"
    assert decision.factors == ("webauthn",)


def test_factor_mismatch_through_the_client(logged_in, user, backup, policy, stepup_verified):
    policy("backup-only", actions=["billing.update"], factors=["static"])
    with stepup_verified(logged_in, user, factor="totp"):
        response = logged_in.post("/billing/")
        assert response.status_code == 302
        assert challenge_of(logged_in, response)["factors"] == ["static"]
    with stepup_verified(logged_in, user, factor="static"):
        assert logged_in.post("/billing/").status_code == 200


# --- single-request grants --------------------------------------------------------------


@pytest.fixture
def transfers(policy):
    return policy(
        "big-transfers",
        actions=["payments.transfer"],
        max_age=0,
        when={"attrs": {"amount": {"gt": 1000}}},
    )


def test_one_shot_grant_is_used_once(logged_in, user, transfers):
    data = {"amount": "5000", "to": "A"}
    response = logged_in.post("/transfer/", data)
    assert response.status_code == 302
    challenge = challenge_of(logged_in, response)
    assert challenge["one_shot"] is True
    complete(logged_in, user, challenge)
    assert logged_in.post("/transfer/", data).status_code == 200
    assert logged_in.post("/transfer/", data).status_code == 302  # not reusable
    assert views.CALLS == ["transfer 5000 to A"]


@pytest.mark.parametrize(
    "other",
    [{"amount": "50000", "to": "B"}, {"amount": "5000", "to": "B"}, {"amount": "50000", "to": "A"}],
)
def test_one_shot_grant_is_not_transferable(logged_in, user, transfers, other):
    response = logged_in.post("/transfer/", {"amount": "5000", "to": "A"})
    complete(logged_in, user, challenge_of(logged_in, response))
    assert logged_in.post("/transfer/", other).status_code == 302
    assert views.CALLS == []
    assert logged_in.post("/transfer/", {"amount": "5000", "to": "A"}).status_code == 200


def test_one_shot_grant_binds_numbers_and_strings_alike(rf_request, user, totp, transfers):
    request = rf_request("post", "/transfer/")
    digest = binding.attributes_digest("payments.transfer", "transfer", {"amount": 5000, "to": "A"})
    grants.record_verification(request, user, "totp", one_shot_digest=digest)
    assert enforce(request, "payments.transfer", {"amount": "5000", "to": "A"}).one_shot


def test_a_recent_verification_does_not_satisfy_max_age_0(logged_in, user, transfers, stepup_verified):
    with stepup_verified(logged_in, user):
        assert logged_in.post("/transfer/", {"amount": "5000", "to": "A"}).status_code == 302


def test_small_transfer_needs_nothing(logged_in, transfers):
    assert logged_in.post("/transfer/", {"amount": "10", "to": "A"}).status_code == 200


def test_two_one_shot_requirements_in_one_request_do_not_loop(logged_in, user, policy, recorder):
    """A URL policy (middleware) and an ``enforce()`` deep in the view both need a grant for this request.

    The second request's view code ran ("deep entered") before its ``enforce()``
    refused: the URL grant it used stays used, since the view may have done its
    work (tests/security/test_bruteforce.py). One more verification, and both
    grants are at hand.
    """
    policy("deep-url", urls=["deep"], max_age=0)
    policy("downloads", actions=["reports.download"], max_age=0)
    first = logged_in.post("/deep/", {"rows": "5"})
    complete(logged_in, user, challenge_of(logged_in, first))
    second = logged_in.post("/deep/", {"rows": "5"})  # URL grant used, then the action challenges
    assert second.status_code == 302
    assert views.CALLS == ["deep entered"]
    complete(logged_in, user, challenge_of(logged_in, second))
    third = logged_in.post("/deep/", {"rows": "5"})  # the URL grant is spent: asked for again
    assert third.status_code == 302
    assert views.CALLS == ["deep entered"]
    complete(logged_in, user, challenge_of(logged_in, third))
    fourth = logged_in.post("/deep/", {"rows": "5"})  # a URL grant, and the action's from before
    assert fourth.status_code == 200
    assert views.CALLS == ["deep entered", "deep entered", "deep"]
    assert logged_in.post("/deep/", {"rows": "5"}).status_code == 302  # and now both are used up
    assert len(recorder.challenged) == 4


# --- the session key rotates on verification --------------------------------------------


def test_session_key_rotates_on_verification(rf_request, user, totp):
    request = rf_request("get", "/plain/")
    request.session.save()
    before = request.session.session_key
    grants.record_verification(request, user, "totp")
    assert request.session.session_key != before


def test_stepup_verified_rotates_the_client_session(logged_in, user, stepup_verified):
    before = logged_in.cookies["sessionid"].value
    with stepup_verified(logged_in, user):
        assert logged_in.cookies["sessionid"].value != before


# --- revocation -------------------------------------------------------------------------


@pytest.fixture
def billing(policy):
    return policy("billing", actions=["billing.update"], max_age=3600)


def test_logout_clears_grants(logged_in, user, billing, stepup_verified):
    with stepup_verified(logged_in, user):
        assert logged_in.post("/billing/").status_code == 200
        logged_in.post("/accounts/logout/")
        logged_in.force_login(user)
        assert logged_in.post("/billing/").status_code == 302


def test_login_starts_fresh_even_in_the_same_session(logged_in, user, billing, stepup_verified):
    with stepup_verified(logged_in, user):
        logged_in.post("/accounts/login/", {"username": "erin", "password": PASSWORD})
        assert logged_in.post("/billing/").status_code == 302


def test_password_change_voids_grants(logged_in, user, billing, stepup_verified):
    with stepup_verified(logged_in, user):
        assert logged_in.post("/billing/").status_code == 200
        response = logged_in.post(
            "/accounts/password/",
            {
                "old_password": PASSWORD,
                "new_password1": "N3w-pass-phrase",
                "new_password2": "N3w-pass-phrase",
            },
        )
        assert response.status_code == 302  # still logged in (update_session_auth_hash)
        assert logged_in.get("/plain/").status_code == 200
        assert logged_in.post("/billing/").status_code == 302
    assert views.CALLS == ["billing", "plain"]


def test_password_change_voids_grants_request_factory(rf_request, user, totp, billing):
    request = rf_request("post", "/billing/")
    grants.record_verification(request, user, "totp")
    assert decide(rf_request_with(request), "billing.update").outcome == "allow"
    user.set_password("another-one-2")
    user.save()
    update_session_auth_hash(request, user)
    assert decide(rf_request_with(request), "billing.update").outcome == "step_up"


def test_device_removal_voids_grants(
    logged_in, user, totp, billing, stepup_verified, django_capture_on_commit_callbacks
):
    from django_otp.plugins.otp_static.models import StaticDevice

    StaticDevice.objects.create(user=user, name="spare", confirmed=True)
    with stepup_verified(logged_in, user):
        assert logged_in.post("/billing/").status_code == 200
        with django_capture_on_commit_callbacks(execute=True):
            totp.delete()
        assert logged_in.post("/billing/").status_code == 302


def test_deleting_a_user_with_devices_still_works(user, totp, django_capture_on_commit_callbacks):
    from django.contrib.auth import get_user_model

    with django_capture_on_commit_callbacks(execute=True):
        user.delete()
    assert not get_user_model().objects.filter(username="erin").exists()


def test_deleting_other_models_is_ignored(user, django_capture_on_commit_callbacks):
    from django.contrib.auth.models import Group

    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        Group.objects.create(name="x").delete()
    assert callbacks == []


def test_challenge_is_recorded_without_secrets(logged_in, policy):
    policy("transfers", actions=["payments.transfer"])
    logged_in.post(
        "/transfer/",
        {"amount": "5", "to": "A", "password": "hunter2"},
        HTTP_USER_AGENT="x" * 400,
        REMOTE_ADDR="203.0.113.9",
    )
    row = DecisionLog.objects.get()
    assert row.event == "challenged"
    assert row.action == "payments.transfer"
    assert row.url_name == "transfer"
    assert row.path == "/transfer/"
    assert row.outcome == "step_up"
    assert row.policies == ["transfers"]
    assert row.policy_version
    assert row.client_ip == "203.0.113.9"
    assert len(row.user_agent) == 300
    assert row.attrs == {"amount": "5", "to": "A"}
    assert "hunter2" not in str(row.__dict__)


def test_grant_bound_to_step_up_raises_for_callers(rf_request, totp, transfers):
    with pytest.raises(StepUpRequired) as caught:
        enforce(rf_request("post", "/transfer/"), "payments.transfer", {"amount": 5000, "to": "A"})
    assert caught.value.decision.max_age == 0
    assert VERIFY  # the module's constant stays used
