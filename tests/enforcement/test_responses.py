"""What a refused request gets back: 302 to verify, RFC 9470 401, login, enrol, 403."""

from __future__ import annotations

import re
from urllib.parse import parse_qs, urlsplit

import pytest

from stepup import binding
from stepup.models import DecisionLog
from stepup.policy.model import Decision
from stepup.responses import build_challenge, is_api_request, www_authenticate
from stepup.testing import flush_decision_log
from tests.enforcement import views
from tests.enforcement.conftest import VERIFY, challenge_of, resolved

pytestmark = [pytest.mark.django_db, pytest.mark.urls("tests.enforcement.urls")]

# RFC 7235: challenge = auth-scheme [ 1*SP ( token68 / #auth-param ) ]
#           auth-param = token BWS "=" BWS ( token / quoted-string )
TOKEN = r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+"
QUOTED = r'"(?:[\t \x21\x23-\x5b\x5d-\x7e\x80-\xff]|\\[\t \x21-\x7e\x80-\xff])*"'
PARAM = rf"{TOKEN}[ \t]*=[ \t]*(?:{TOKEN}|{QUOTED})"
CHALLENGE = re.compile(rf"^Bearer (?:{PARAM})(?:[ \t]*,[ \t]*{PARAM})*$")
PARAM_PARTS = re.compile(rf"({TOKEN})[ \t]*=[ \t]*({TOKEN}|{QUOTED})")


def auth_params(header: str) -> dict[str, str]:
    assert CHALLENGE.fullmatch(header), header
    return {k: v[1:-1] if v.startswith('"') else v for k, v in PARAM_PARTS.findall(header[len("Bearer ") :])}


@pytest.fixture
def billing_policy(policy):
    return policy(
        "billing-update",
        actions=["billing.update"],
        max_age=120,
        factors=["totp", "webauthn"],
        description="Changing billing details needs a recent second factor.",
    )


# --- HTML -------------------------------------------------------------------------------


def test_html_challenge_is_302_to_verify_with_next_and_challenge(logged_in, billing_policy):
    response = logged_in.post("/billing/?tab=card", {"iban": "DE00", "csrfmiddlewaretoken": "x"})
    assert response.status_code == 302
    location = urlsplit(response["Location"])
    assert location.path == VERIFY
    query = parse_qs(location.query)
    assert query["next"] == ["/billing/?tab=card"]
    assert "no-store" in response["Cache-Control"]
    challenge = challenge_of(logged_in, response)
    assert {k: v for k, v in challenge.items() if k != "expires"} == {
        "action": "billing.update",
        "url_name": "billing",
        "method": "POST",
        "path": "/billing/?tab=card",
        "attrs": {},
        "digest": binding.attributes_digest("billing.update", "billing", {}),
        "policies": ["billing-update"],
        "descriptions": ["Changing billing details needs a recent second factor."],
        "max_age": 120,
        "factors": ["totp", "webauthn"],
        "one_shot": False,
        "post": {"iban": ["DE00"]},
        "post_secrets": [],
        "next": "/billing/?tab=card",
        "labels": {},
        "display": {},
        "form_url": None,
        "download": False,
    }


def test_get_challenge_saves_no_post(logged_in, policy):
    policy("plain-reads", urls=["plain"], max_age=0)
    response = logged_in.get("/plain/?a=1")
    challenge = challenge_of(logged_in, response)
    assert challenge["post"] is None
    assert challenge["one_shot"] is True
    assert challenge["next"] == "/plain/?a=1"


def test_challenge_attrs_are_strings_and_secrets_redacted(rf_request, totp):
    from stepup.exceptions import StepUpRequired

    exc = StepUpRequired(
        Decision("step_up", max_age=60),
        "payments.transfer",
        {"amount": 5000, "api_token": "s3cr3t"},
    )
    challenge = build_challenge(rf_request("post", "/transfer/"), exc).to_dict()
    assert challenge["attrs"] == {"amount": "5000", "api_token": "[redacted]"}
    assert challenge["digest"] == binding.attributes_digest(
        "payments.transfer", None, {"amount": "5000", "api_token": "s3cr3t"}
    )


def test_secret_fields_are_left_out_of_the_saved_post_and_named_once_per_value(rf_request, totp):
    from stepup.exceptions import StepUpRequired

    request = rf_request(
        "post", "/billing/", {"amount": "5", "pin": ["1234", "5678"], "csrfmiddlewaretoken": "x"}
    )
    challenge = build_challenge(request, StepUpRequired(Decision("step_up", max_age=1))).to_dict()
    assert challenge["post"] == {"amount": ["5"]}
    assert challenge["post_secrets"] == ["pin", "pin"]


def test_huge_post_is_not_saved(rf_request, totp):
    from stepup.exceptions import StepUpRequired

    request = rf_request("post", "/billing/", {"blob": "x" * 70000})
    challenge = build_challenge(request, StepUpRequired(Decision("step_up", max_age=1))).to_dict()
    assert challenge["post"] is None


# --- API --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "extra",
    [
        {"headers": {"accept": "application/json"}},
        {"headers": {"accept": "application/json, text/html;q=0.5"}},
        {"headers": {"x-requested-with": "XMLHttpRequest"}},
        {"data": "{}", "content_type": "application/json"},
        {"data": "{}", "content_type": "application/vnd.api+json"},
    ],
)
def test_api_challenge_is_rfc9470_401(logged_in, billing_policy, extra):
    response = logged_in.post("/billing/", **extra)
    assert response.status_code == 401
    params = auth_params(response["WWW-Authenticate"])
    assert params["error"] == "insufficient_user_authentication"
    assert params["max_age"] == "120"
    assert params["error_description"]
    body = response.json()
    assert body["code"] == "stepup_required"
    assert body["max_age"] == 120
    assert body["factors"] == ["totp", "webauthn"]
    verify = urlsplit(body["verify_url"])
    assert verify.path == VERIFY
    assert parse_qs(verify.query)["next"] == ["/billing/"]
    assert challenge_of(logged_in, response)["post"] is None
    assert "no-store" in response["Cache-Control"]
    assert views.CALLS == []


@pytest.mark.parametrize(
    "accept",
    ["text/html", "text/html,application/json;q=0.9", "*/*", "application/json;q=0.1, text/html"],
)
def test_browsers_get_the_redirect(logged_in, billing_policy, accept):
    assert logged_in.post("/billing/", headers={"accept": accept}).status_code == 302


def test_drf_view_is_an_api_request(rf_request):
    assert is_api_request(resolved(rf_request("get", "/api/")))
    assert not is_api_request(resolved(rf_request("get", "/plain/")))


@pytest.mark.parametrize(
    "description",
    ['evil", max_age=0, x="', "back\\slash", "new\nline", "tab\there", "ünïcode"],
)
def test_www_authenticate_description_cannot_break_the_header(description):
    params = auth_params(www_authenticate(30, description))
    assert params["max_age"] == "30"
    assert set(params) == {"error", "error_description", "max_age"}


def test_one_shot_api_challenge_says_max_age_0(logged_in, policy):
    policy("transfers", actions=["payments.transfer"], max_age=0)
    response = logged_in.post("/transfer/", {"amount": "1"}, headers={"accept": "application/json"})
    assert auth_params(response["WWW-Authenticate"])["max_age"] == "0"
    assert response.json()["max_age"] == 0


# --- anonymous --------------------------------------------------------------------------


def test_anonymous_gets_the_login_redirect(client, billing_policy, recorder):
    response = client.post("/billing/?x=1")
    assert response.status_code == 302
    location = urlsplit(response["Location"])
    assert location.path == "/accounts/login/"
    assert parse_qs(location.query)["next"] == ["/billing/?x=1"]
    assert recorder.challenged == []
    flush_decision_log()
    assert DecisionLog.objects.count() == 0


def test_anonymous_api_gets_401(client, billing_policy):
    response = client.post("/billing/", headers={"accept": "application/json"})
    assert response.status_code == 401
    assert response.json()["code"] == "not_authenticated"
    assert "insufficient_user_authentication" not in response["WWW-Authenticate"]


def test_anonymous_url_policy_gets_the_login_redirect(client, policy):
    policy("plain", urls=["plain"])
    assert client.get("/plain/")["Location"].startswith("/accounts/login/")


def test_decide_gives_step_up_for_anonymous(rf_request, billing_policy):
    from stepup import decide

    assert decide(rf_request("post", "/billing/", as_user=None), "billing.update").outcome == "step_up"


# --- deny -------------------------------------------------------------------------------


def test_deny_is_403(logged_in, policy, recorder):
    policy("no-plain-delete", urls=["plain"], methods=["DELETE"], decision="deny")
    response = logged_in.delete("/plain/")
    assert response.status_code == 403
    assert views.CALLS == []
    assert len(recorder.denied) == 1
    row = DecisionLog.objects.get(event="denied")
    assert (row.username, row.url_name, row.method, row.outcome) == (
        "erin",
        "plain",
        "DELETE",
        "deny",
    )
    assert row.policies == ["no-plain-delete"]


def test_deny_is_json_403_for_api(logged_in, policy):
    policy("no-api-post", urls=["api"], methods=["POST"], decision="deny")
    response = logged_in.post("/api/", {}, content_type="application/json")
    assert response.status_code == 403
    assert response.json()["code"] == "stepup_denied"


def test_deny_even_when_verified(logged_in, user, policy, stepup_verified):
    policy("no-billing", actions=["billing.update"], decision="deny")
    with stepup_verified(logged_in, user):
        assert logged_in.post("/billing/").status_code == 403


# --- no acceptable device ---------------------------------------------------------------


def test_no_device_redirects_to_enroll_url(client, user, billing_policy, settings):
    settings.STEPUP = {**settings.STEPUP, "ENROLL_URL": "/enroll/"}
    client.force_login(user)
    response = client.post("/billing/")
    assert response.status_code == 302
    assert response["Location"] == "/enroll/?next=%2Fbilling%2F"
    assert "no-store" in response["Cache-Control"]


def test_enroll_url_defaults_to_the_devices_page_when_included(client, user, billing_policy, settings):
    settings.STEPUP = {k: v for k, v in settings.STEPUP.items() if k != "ENROLL_URL"}
    client.force_login(user)
    assert client.post("/billing/")["Location"] == "/stepup/devices/?next=%2Fbilling%2F"


def test_enroll_url_may_be_a_url_name(client, user, billing_policy, settings):
    settings.STEPUP = {**settings.STEPUP, "ENROLL_URL": "plain"}
    client.force_login(user)
    assert client.post("/billing/")["Location"] == "/plain/?next=%2Fbilling%2F"


def test_no_device_without_enroll_url_is_a_403_page(client, user, billing_policy, settings):
    settings.STEPUP = {**settings.STEPUP, "ENROLL_URL": None}  # unset, it is stepup:devices
    client.force_login(user)
    response = client.post("/billing/")
    assert response.status_code == 403
    assert b"Set up a second factor" in response.content
    assert b"totp, webauthn" in response.content
    assert views.CALLS == []


def test_wrong_kind_of_device_counts_as_none(client, user, backup, billing_policy):
    client.force_login(user)  # backup codes only; the policy wants totp or webauthn
    assert client.post("/billing/")["Location"] == "/stepup/devices/?next=%2Fbilling%2F"


def test_no_device_api_is_json_403(client, user, billing_policy):
    client.force_login(user)
    response = client.post("/billing/", headers={"accept": "application/json"})
    assert response.status_code == 403
    assert response.json()["code"] == "stepup_enroll_required"


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("/plain/?a=1", "/plain/?a=1"),
        ("//evil.example/", "/"),
        ("/\\evil.example/", "/"),
        ("x", "/"),
    ],
)
def test_enroll_page_links_only_to_this_site(path, expected):
    from stepup.responses import _local

    assert _local(path) == expected


def test_any_device_kind_satisfies_a_policy_without_factors(client, user, backup, policy):
    policy("billing", actions=["billing.update"])
    client.force_login(user)
    assert client.post("/billing/").status_code == 302
