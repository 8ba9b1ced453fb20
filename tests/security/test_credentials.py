"""Clients authenticated by a header: a verification belongs to the client that made it.

For a request authenticated by ``Authorization`` rather than by a session,
the header may be shared: with HTTP Basic it *is* the password, and a static
API token is held by every copy of a script. So a verification hands the
client a step-up token of its own (``stepup_token``, sent back in the
``StepUp-Token`` header) and the grants are keyed on it, never on the
credential: anyone else holding the password or the API token inherits no
grant, not even an unused single-use one.
"""

from __future__ import annotations

import base64
from typing import Any

import pytest
from django_otp.plugins.otp_totp.models import TOTPDevice
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from stepup.models import Grant
from tests.conftest import PASSWORD
from tests.security import views
from tests.security.conftest import API_VERIFY, code
from tests.security.test_routing import challenged

pytestmark = [pytest.mark.django_db, pytest.mark.urls("tests.security.urls")]

BASIC_THINGS = "/t/api/basic-things/"
TOKEN_THINGS = "/t/api/things/"
OWNER_IP, OTHER_IP = "203.0.113.9", "198.51.100.77"


@pytest.fixture(autouse=True)
def _basic_auth_on(settings: Any) -> None:
    """DRF's default classes, HTTP Basic included, for ``api-verify`` too."""
    settings.REST_FRAMEWORK = {
        **settings.REST_FRAMEWORK,
        "DEFAULT_AUTHENTICATION_CLASSES": [
            "rest_framework.authentication.SessionAuthentication",
            "rest_framework.authentication.BasicAuthentication",
            "rest_framework.authentication.TokenAuthentication",
        ],
    }
    views.CALLS.clear()


def basic(user: Any) -> str:
    return "Basic " + base64.b64encode(f"{user.username}:{PASSWORD}".encode()).decode()


def client(authorization: str, ip: str, step_up_token: str | None = None) -> APIClient:
    api = APIClient(REMOTE_ADDR=ip)
    headers = {"HTTP_AUTHORIZATION": authorization}
    if step_up_token is not None:
        headers["HTTP_STEPUP_TOKEN"] = step_up_token
    api.credentials(**headers)
    return api


def step_up(api: APIClient, path: str, totp: TOTPDevice) -> str:
    """Be refused, answer the challenge with a code; return the step-up token handed out."""
    refused = api.post(path, {}, format="json")
    assert challenged(refused)
    answer = {"token": code(totp), "challenge": refused.json()["challenge"]}
    verified = api.post(API_VERIFY, answer, format="json")
    assert verified.status_code == 200, verified.content
    token = verified.json()["stepup_token"]
    assert isinstance(token, str) and len(token) >= 43
    return token


@pytest.mark.parametrize("max_age", [300, 0], ids=["grant", "single-use-grant"])
def test_a_basic_auth_verification_is_not_inherited_by_another_client_with_the_password(
    user: Any, totp: TOTPDevice, policy: Any, max_age: int
) -> None:
    policy("things", actions=["things.change"], max_age=max_age)
    owner = client(basic(user), OWNER_IP)
    token = step_up(owner, BASIC_THINGS, totp)
    other = client(basic(user), OTHER_IP)  # the same password, from elsewhere
    assert challenged(other.post(BASIC_THINGS, {}, format="json"))
    assert views.CALLS == []
    assert Grant.objects.filter(used_at__isnull=True).count() == (2 if max_age == 0 else 1)  # still unused
    owner.credentials(HTTP_AUTHORIZATION=basic(user), HTTP_STEPUP_TOKEN=token)
    assert owner.post(BASIC_THINGS, {}, format="json").status_code == 201  # the control
    assert views.CALLS == ["things-api POST"]


def test_a_shared_static_api_token_carries_no_grant_to_its_other_holders(
    user: Any, totp: TOTPDevice, policy: Any
) -> None:
    policy("things", actions=["things.change"], max_age=300)
    key = f"Token {Token.objects.create(user=user).key}"
    token = step_up(client(key, OWNER_IP), TOKEN_THINGS, totp)
    assert challenged(client(key, OTHER_IP).post(TOKEN_THINGS, {}, format="json"))
    assert client(key, OWNER_IP, token).post(TOKEN_THINGS, {}, format="json").status_code == 201


def test_no_grant_is_keyed_on_the_credential(user: Any, totp: TOTPDevice, policy: Any) -> None:
    policy("things", actions=["things.change"], max_age=300)
    authorization = basic(user)
    step_up(client(authorization, OWNER_IP), BASIC_THINGS, totp)
    from django.utils.crypto import salted_hmac

    keyed_credential = salted_hmac("stepup.grants.subject", authorization, algorithm="sha256").hexdigest()
    (grant,) = Grant.objects.all()
    assert keyed_credential not in grant.subject and PASSWORD not in grant.subject


def test_a_step_up_token_is_worth_nothing_with_another_users_credential(
    user: Any, other_user: Any, totp: TOTPDevice, policy: Any
) -> None:
    policy("things", actions=["things.change"], max_age=300)
    TOTPDevice.objects.create(user=other_user, name="Mallory's phone", confirmed=True)
    token = step_up(client(basic(user), OWNER_IP), BASIC_THINGS, totp)
    mallory = client(f"Token {Token.objects.create(user=other_user).key}", OTHER_IP, token)
    assert challenged(mallory.post(TOKEN_THINGS, {}, format="json"))
    assert views.CALLS == []


@pytest.mark.parametrize(
    "forged",
    ["", "x" * 43, "A" * 42, "A" * 44, "../" * 15, "Bearer " + "A" * 43, "\x00" * 43],
    ids=["empty", "random", "short", "long", "path", "prefixed", "nul"],
)
def test_a_made_up_step_up_token_grants_nothing(
    user: Any, totp: TOTPDevice, policy: Any, forged: str
) -> None:
    policy("things", actions=["things.change"], max_age=300)
    step_up(client(basic(user), OWNER_IP), BASIC_THINGS, totp)
    assert challenged(client(basic(user), OTHER_IP, forged).post(BASIC_THINGS, {}, format="json"))


def test_a_new_verification_retires_the_old_step_up_token(
    user: Any, totp: TOTPDevice, policy: Any, settings: Any
) -> None:
    import time

    import time_machine

    policy("things", actions=["things.change"], max_age=300)
    owner = client(basic(user), OWNER_IP)
    old = step_up(owner, BASIC_THINGS, totp)
    owner.credentials(HTTP_AUTHORIZATION=basic(user), HTTP_STEPUP_TOKEN=old)
    with time_machine.travel(time.time() + 31):  # the next TOTP step
        again = owner.post(API_VERIFY, {"token": code(totp)}, format="json")
        new = again.json()["stepup_token"]
        assert new != old
        assert challenged(client(basic(user), OWNER_IP, old).post(BASIC_THINGS, {}, format="json"))
        assert client(basic(user), OWNER_IP, new).post(BASIC_THINGS, {}, format="json").status_code == 201


def test_a_session_client_sending_a_step_up_token_keeps_to_its_session(
    user: Any, totp: TOTPDevice, policy: Any
) -> None:
    """A browser can't borrow a token client's grants by adding its header."""
    policy("things", actions=["things.change"], max_age=300)
    token = step_up(client(basic(user), OWNER_IP), BASIC_THINGS, totp)
    browser = APIClient(HTTP_STEPUP_TOKEN=token)
    browser.force_login(user)
    assert challenged(browser.post(TOKEN_THINGS, {}, format="json"))
