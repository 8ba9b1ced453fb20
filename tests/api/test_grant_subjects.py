"""Grants kept server-side per grant subject: a session's random id, or a token's keyed hash."""

from __future__ import annotations

import hashlib
import re
import time
from typing import Any

import pytest
import time_machine
from django.http import HttpRequest
from django.test import Client, RequestFactory
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from stepup import binding, enforce, grants, pending
from stepup.exceptions import StepUpRequired
from stepup.models import Grant, PendingChallenge
from tests.api import urls
from tests.api.conftest import API_STATUS, API_VERIFY, code, wrong_code
from tests.clients import CredentialClient

pytestmark = pytest.mark.django_db

GUARDED = "/t/guarded/"
T0 = float(int(time.time()))  # now: sessions made now must not have expired at T0


@pytest.fixture
def things(policy: Any) -> Any:
    return policy("things", actions=["things.change"], methods=["POST"], max_age=300)


@pytest.fixture
def big_things(policy: Any) -> Any:
    """Every change over 1000 needs a verification for that very request."""
    return policy(
        "big-things",
        actions=["things.change"],
        methods=["POST"],
        when={"attrs": {"amount": {"gt": 1000}}},
        max_age=0,
    )


def verify(client: APIClient, device: Any, challenge: str | None = None) -> Any:
    data = {"device": device.persistent_id, "token": code(device)}
    if challenge:
        data["challenge"] = challenge
    return client.post(API_VERIFY, data, format="json")


# --- token clients ---------------------------------------------------------------------------


def test_token_client_steps_up_without_a_session(
    token_api: APIClient, token: Token, totp: Any, things: Any
) -> None:
    first = token_api.post(GUARDED, {"amount": 5}, format="json")
    assert first.status_code == 401
    verified = verify(token_api, totp, first.json()["challenge"])
    body = verified.json()
    step_up_token = body.pop("stepup_token")
    assert (verified.status_code, body) == (200, {"verified": True, "factor": "totp"})
    assert re.fullmatch(r"[A-Za-z0-9_-]{43}", step_up_token)  # 32 random bytes
    assert "sessionid" not in verified.cookies  # nothing to rotate, no session made up
    assert token_api.post(GUARDED, {"amount": 5}, format="json").status_code == 201
    (grant,) = Grant.objects.all()
    assert grant.subject.startswith("t:")
    for secret in (token.key, step_up_token):  # never a raw credential or step-up token
        assert secret not in grant.subject
        assert hashlib.sha256(secret.encode()).hexdigest() not in grant.subject  # keyed
    assert PendingChallenge.objects.count() == 0  # the answered challenge is gone
    assert urls.CALLS == ["guarded-post 5"]


def test_one_shot_grant_for_a_token_client_is_single_use(
    token_api: APIClient, totp: Any, big_things: Any
) -> None:
    refused = token_api.post(GUARDED, {"amount": 5000}, format="json")
    assert refused.json()["max_age"] == 0
    assert verify(token_api, totp, refused.json()["challenge"]).status_code == 200
    assert token_api.post(GUARDED, {"amount": 5001}, format="json").status_code == 401  # bound
    assert token_api.post(GUARDED, {"amount": 5000}, format="json").status_code == 201
    assert token_api.post(GUARDED, {"amount": 5000}, format="json").status_code == 401  # used up
    assert urls.CALLS == ["guarded-post 5000"]


def test_grants_do_not_cross_between_token_session_and_other_tokens(
    user: Any, token: Token, totp: Any, things: Any
) -> None:
    browser = APIClient()
    browser.force_login(user)
    with_token = CredentialClient()
    with_token.credentials(HTTP_AUTHORIZATION=f"Token {token.key}")
    assert verify(browser, totp).status_code == 200
    assert browser.post(GUARDED, {}, format="json").status_code == 201
    assert with_token.post(GUARDED, {}, format="json").status_code == 401  # the session's grant
    Token.objects.filter(user=user).delete()
    other = Token.objects.create(user=user)
    second = CredentialClient()
    second.credentials(HTTP_AUTHORIZATION=f"Token {other.key}")
    with time_machine.travel(time.time() + 60):  # the next TOTP step: the same code can't be used twice
        assert verify(second, totp).status_code == 200
        assert second.post(GUARDED, {}, format="json").status_code == 201
        with_token.credentials(HTTP_AUTHORIZATION=f"Token {token.key}")  # the deleted token
        assert with_token.post(GUARDED, {}, format="json").status_code == 403  # not authenticated


def test_a_token_challenge_is_not_the_sessions(
    user: Any, token_api: APIClient, totp: Any, big_things: Any
) -> None:
    challenge = token_api.post(GUARDED, {"amount": 5000}, format="json").json()["challenge"]
    browser = APIClient()
    browser.force_login(user)
    assert verify(browser, totp, challenge).status_code == 200  # a generic verification...
    assert browser.post(GUARDED, {"amount": 5000}, format="json").status_code == 401  # ...no grant
    assert token_api.post(GUARDED, {"amount": 5000}, format="json").status_code == 401


def test_status_reports_the_token_clients_own_grants(
    token_api: APIClient, session_api: APIClient, totp: Any, things: Any
) -> None:
    query = {"action": "things.change", "method": "POST"}
    assert token_api.get(API_STATUS, query).json()["outcome"] == "step_up"
    assert verify(token_api, totp).status_code == 200
    assert token_api.get(API_STATUS, query).json()["outcome"] == "allow"
    assert session_api.get(API_STATUS, query).json()["outcome"] == "step_up"
    claims = {**query, "verified": "totp", "verified.totp": "1", "outcome": "allow"}
    assert session_api.get(API_STATUS, claims).json()["outcome"] == "step_up"


def test_with_a_session_and_a_token_the_authenticating_one_owns_the_grants(
    django_user_model: Any, settings: Any, token: Token, totp: Any, things: Any
) -> None:
    """Erin's token and Mallory's session in one request: whoever DRF authenticates decides."""
    mallory = django_user_model.objects.create_user("mallory", password="pw")
    both = CredentialClient()
    both.force_login(mallory)
    both.credentials(HTTP_AUTHORIZATION=f"Token {token.key}")
    refused = verify(both, totp)  # SessionAuthentication comes first: this is Mallory
    assert (refused.status_code, refused.json()["code"]) == (400, "no_device")
    settings.REST_FRAMEWORK = {
        **settings.REST_FRAMEWORK,
        "DEFAULT_AUTHENTICATION_CLASSES": [
            "rest_framework.authentication.TokenAuthentication",
            "rest_framework.authentication.SessionAuthentication",
        ],
    }
    assert verify(both, totp).status_code == 200  # now it is Erin, by her token
    grant = Grant.objects.get()
    assert (grant.user_id, grant.subject[:2]) == (totp.user_id, "t:")
    token_only = APIClient()
    token_only.credentials(
        HTTP_AUTHORIZATION=f"Token {token.key}", HTTP_STEPUP_TOKEN=both._credentials["HTTP_STEPUP_TOKEN"]
    )
    assert token_only.post(GUARDED, {}, format="json").status_code == 201


# --- sessions: the subject survives key rotation, not login or logout -------------------------


def test_session_subject_is_new_at_verification_and_at_login(client: Client, user: Any, totp: Any) -> None:
    client.force_login(user)
    request = _session_request(client, user)
    subject = grants.subject(request)
    assert subject is not None and subject.startswith("s:")
    assert subject != client.session.session_key
    grants.record_verification(request, user, "totp")
    rotated = grants.subject(request)
    assert rotated not in (None, subject)  # a copy of the old session holds no grant (tests/security)
    assert set(Grant.objects.values_list("subject", flat=True)) == {rotated}
    assert request.session.session_key != client.cookies["sessionid"].value
    client.force_login(user)
    assert grants.subject(_session_request(client, user)) not in (None, subject, rotated)


def test_logout_deletes_the_subjects_grants_and_challenges(
    user: Any, totp: Any, things: Any, big_things: Any
) -> None:
    browser = APIClient()
    browser.force_login(user)
    browser.post(GUARDED, {"amount": 5000}, format="json")
    assert verify(browser, totp).status_code == 200
    browser.post(GUARDED, {"amount": 9000}, format="json")
    assert Grant.objects.count() == 1 and PendingChallenge.objects.count() == 2
    browser.post("/accounts/logout/")
    assert Grant.objects.count() == 0 and PendingChallenge.objects.count() == 0


def test_an_old_session_cookie_replayed_after_logout_has_no_grants(
    user: Any, totp: Any, things: Any, settings: Any
) -> None:
    settings.SESSION_ENGINE = "django.contrib.sessions.backends.signed_cookies"
    browser = Client()
    browser.force_login(user)
    assert browser.post(API_VERIFY, {"token": code(totp)}, content_type="application/json").status_code == 200
    stolen = browser.cookies["sessionid"].value
    assert browser.post(GUARDED, {}, content_type="application/json").status_code == 201
    browser.post("/accounts/logout/")
    thief = Client()
    thief.cookies["sessionid"] = stolen  # a signed cookie stays valid: only the grants are gone
    response = thief.post(GUARDED, {}, content_type="application/json")
    assert response.status_code == 401 and response.json()["code"] == "stepup_required"


# --- revocation applies to token grants too ----------------------------------------------------


def test_password_change_voids_token_grants(token_api: APIClient, user: Any, totp: Any, things: Any) -> None:
    assert verify(token_api, totp).status_code == 200
    assert token_api.post(GUARDED, {}, format="json").status_code == 201
    user.set_password("a-new-one-2")
    user.save()
    assert token_api.post(GUARDED, {}, format="json").status_code == 401


def test_device_removal_voids_token_grants(
    token_api: APIClient, user: Any, totp: Any, things: Any, django_capture_on_commit_callbacks: Any
) -> None:
    from django_otp.plugins.otp_static.models import StaticDevice

    StaticDevice.objects.create(user=user, name="spare", confirmed=True)
    assert verify(token_api, totp).status_code == 200
    with django_capture_on_commit_callbacks(execute=True):
        totp.delete()
    assert token_api.post(GUARDED, {}, format="json").status_code == 401
    assert Grant.objects.count() == 0


def test_a_grant_made_under_an_old_epoch_never_counts(rf_user_request: Any, user: Any, totp: Any) -> None:
    request = rf_user_request()
    grants.record_verification(request, user, "totp")
    Grant.objects.update(epoch=7)  # as if made before a device was removed
    assert grants.verification_ages(rf_user_request(request.session), user) == {}


def test_password_hash_digest_is_stored_not_the_hash(rf_user_request: Any, user: Any, totp: Any) -> None:
    grants.record_verification(rf_user_request(), user, "totp")
    grant = Grant.objects.get()
    assert grant.auth != user.get_session_auth_hash()
    assert user.password not in str(Grant.objects.values().get())


# --- single use under concurrency ----------------------------------------------------------------


def test_a_one_shot_grant_read_by_two_requests_is_used_by_one(
    rf_user_request: Any, user: Any, totp: Any, big_things: Any
) -> None:
    """Both requests see the grant, then both try to use it: the conditional UPDATE lets one win."""
    setup = rf_user_request()
    attrs = {"amount": "5000"}
    digest = binding.attributes_digest("things.change", "t-guarded", attrs)  # the request's route
    grants.record_verification(setup, user, "totp", one_shot_digest=digest)
    first, second = rf_user_request(setup.session), rf_user_request(setup.session)
    assert grants.one_shot_kinds(first, user, digest) == {"totp"}  # both loaded (and cached) it
    assert grants.one_shot_kinds(second, user, digest) == {"totp"}
    assert enforce(first, "things.change", attrs).one_shot
    with pytest.raises(StepUpRequired) as caught:
        enforce(second, "things.change", attrs)
    assert caught.value.decision.max_age == 0
    assert Grant.objects.filter(digest=digest, used_at__isnull=False).count() == 1


def test_consume_reports_what_it_used(rf_user_request: Any, user: Any, totp: Any) -> None:
    request = rf_user_request()
    grants.record_verification(request, user, "totp", one_shot_digest="d" * 64)
    assert len(grants.consume_one_shot(request, "d" * 64)) == 1
    assert grants.consume_one_shot(request, "d" * 64) == ()
    assert grants.consume_one_shot(request, "e" * 64) == ()


def test_expired_rows_are_pruned(rf_user_request: Any, user: Any, totp: Any, settings: Any) -> None:
    settings.SESSION_COOKIE_AGE = 100
    with time_machine.travel(T0, tick=False) as traveller:
        request = rf_user_request()
        grants.record_verification(request, user, "totp", one_shot_digest="d" * 64)
        pending.save_challenge(request, {"action": "x"})
        traveller.move_to(T0 + 99)
        assert grants.verification_ages(rf_user_request(request.session), user) == {"totp": 99.0}
        traveller.move_to(T0 + 1000)
        assert grants.verification_ages(rf_user_request(request.session), user) == {}
        assert grants.prune() == 3
    assert Grant.objects.count() == 0


@pytest.fixture
def rf_user_request(user: Any) -> Any:
    """``rf_user_request(session=None)``: a logged-in request on ``session`` (a new one by default)."""
    from django.contrib.sessions.backends.db import SessionStore

    def make(session: Any = None) -> HttpRequest:
        request = RequestFactory().post(GUARDED)
        request.session = session if session is not None else SessionStore()
        request.user = user
        return request

    return make


def _session_request(client: Client, user: Any) -> HttpRequest:
    request = HttpRequest()
    request.session = client.session
    request.user = user
    return request


def test_wrong_code_for_a_token_client_counts_toward_the_user_lockout(
    token_api: APIClient, user: Any, totp: Any, settings: Any
) -> None:
    settings.STEPUP = {**settings.STEPUP, "USER_FAILURE_LIMIT": 2}
    settings.OTP_TOTP_THROTTLE_FACTOR = 0
    assert token_api.post(API_VERIFY, {"token": wrong_code(totp)}, format="json").status_code == 400
    assert token_api.post(API_VERIFY, {"token": wrong_code(totp)}, format="json").status_code == 429
    browser = APIClient()
    browser.force_login(user)
    response = browser.post(API_VERIFY, {"token": code(totp)}, format="json")
    assert (response.status_code, response.json()["code"]) == (429, "locked")
    assert int(response["Retry-After"]) >= 1


def test_grants_cost_one_query_per_request(
    session_api: APIClient, user: Any, totp: Any, things: Any, big_things: Any
) -> None:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    assert verify(session_api, totp).status_code == 200
    with CaptureQueriesContext(connection) as queries:
        assert session_api.post(GUARDED, {"amount": 5}, format="json").status_code == 201
    table = f"FROM {connection.ops.quote_name('stepup_grant')}"  # "stepup_grant", or `stepup_grant` on MySQL
    reads = [q["sql"] for q in queries.captured_queries if table in q["sql"]]
    assert len(reads) == 1, reads  # verification ages and single-request grants: one read
