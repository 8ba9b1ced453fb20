"""Routing: every way to reach a protected view that its policy did not anticipate.

The adversary is logged in with the password but has no second factor. A policy
names a declared action (enforced wherever the view is reached) or a URL name
(enforced for every path Django resolves to that name). Each attack below must
leave the protected side effect undone: no row written, the view not run.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import quote

import pytest
from django.core.handlers.wsgi import get_script_name
from django.test import Client
from django.urls import set_script_prefix

from stepup.testing import stepup_verified
from tests.security import views
from tests.security.conftest import VERIFY
from tests.shop.models import BillingProfile

pytestmark = pytest.mark.django_db

BILLING = {
    "company_name": "Initech",
    "billing_email": "ap@initech.example",
    "card_last4": "1234",
    "address": "4120 Freidrich Lane",
}
BILLING_EDIT = "/billing/edit/"


def challenged(response: Any) -> bool:
    """A 302 to the verification page (browser) or the RFC 9470 401 (API)."""
    if response.status_code == 401:
        return "insufficient_user_authentication" in response.headers.get("WWW-Authenticate", "")
    return response.status_code == 302 and VERIFY in response.headers.get("Location", "")


# --- the control: the attack target really is reachable with a second factor ------------


@pytest.mark.usefixtures("synced_policies")
def test_control_a_verified_user_does_update_billing(attacker: Client, user: Any) -> None:
    """Shows the billing rows below would exist had any attack gone through."""
    with stepup_verified(attacker, user):
        attacker.post(BILLING_EDIT, BILLING)
    assert BillingProfile.objects.filter(user=user).exists()


# --- path spellings against the demo ---------------------------------------------------

RAW_PATHS = [
    "//billing/edit/",
    "///billing/edit/",
    "/billing//edit/",
    "/billing/edit//",
    "/BILLING/EDIT/",
    "/Billing/Edit/",
    "/billing/Edit/",
    "/billing%2Fedit/",  # PATH_INFO as a server that does not decode %2F passes it
    "/billing%2fedit/",
    "/billing/edit%2F",
    "/billing/%65dit/",
    "/billing/edit/.",
    "/billing/./edit/",
    "/billing/x/../edit/",
    "/billing/edit;x=1/",
    "/billing/edit/\x00",
    "/billing/edit\uff0f",  # a full-width solidus
    "/billing\\edit\\",
    " /billing/edit/",
]


@pytest.mark.usefixtures("synced_policies")
@pytest.mark.parametrize("raw_path", RAW_PATHS)
def test_raw_path_spellings_never_reach_the_view_unchallenged(attacker: Client, raw_path: str) -> None:
    """Django resolves ``PATH_INFO`` exactly: a spelling either resolves (and is enforced) or 404s."""
    wsgi_path = raw_path.encode("utf-8").decode("iso-8859-1")  # as a WSGI server hands it over
    response = attacker.post(BILLING_EDIT, BILLING, PATH_INFO=wsgi_path)
    assert response.status_code in (302, 301, 404)
    if response.status_code == 302:
        assert challenged(response)
    assert not BillingProfile.objects.exists()


@pytest.mark.usefixtures("synced_policies")
@pytest.mark.parametrize("url", ["/billing%2Fedit/", "/billing/%65dit/", "/%62illing/edit/"])
def test_percent_encoded_urls_decode_to_the_protected_view_and_are_challenged(
    attacker: Client, url: str
) -> None:
    """A server that decodes percent-escapes hands Django the canonical path: still enforced."""
    assert challenged(attacker.post(url, BILLING))
    assert not BillingProfile.objects.exists()


@pytest.mark.usefixtures("synced_policies")
@pytest.mark.parametrize("method", ["post", "put", "patch", "delete"])
def test_append_slash_redirect_does_not_carry_the_write(attacker: Client, method: str) -> None:
    """``/billing/edit`` (no slash): ``CommonMiddleware`` redirects; the write never happens."""
    response = getattr(attacker, method)("/billing/edit", BILLING)
    assert response.status_code in (301, 308)
    assert response["Location"] == BILLING_EDIT
    assert not BillingProfile.objects.exists()


@contextmanager
def served_under(environ_script_name: str = "") -> Iterator[dict[str, str]]:
    """What Django's ``WSGIHandler`` does (the test client does not): set the script prefix."""
    prefix = get_script_name({"SCRIPT_NAME": environ_script_name})
    set_script_prefix(prefix)
    try:
        yield {"SCRIPT_NAME": environ_script_name} if environ_script_name else {}
    finally:
        set_script_prefix("/")


@pytest.mark.usefixtures("synced_policies")
@pytest.mark.parametrize("prefix", ["/app", "/app/sub", "/billing"])
def test_script_name_prefixes_do_not_change_what_is_enforced(attacker: Client, prefix: str) -> None:
    with served_under(prefix) as environ:
        response = attacker.post(BILLING_EDIT, BILLING, **environ)
    assert challenged(response)
    assert response["Location"].startswith(f"{prefix}{VERIFY}")
    assert "next=" + quote(f"{prefix}{BILLING_EDIT}", safe="") in response["Location"]
    assert not BillingProfile.objects.exists()


@pytest.mark.usefixtures("synced_policies")
def test_force_script_name_does_not_change_what_is_enforced(attacker: Client, settings: Any) -> None:
    settings.FORCE_SCRIPT_NAME = "/mounted"
    with served_under():
        response = attacker.post(BILLING_EDIT, BILLING)
    assert challenged(response)
    assert response["Location"].startswith(f"/mounted{VERIFY}")
    assert not BillingProfile.objects.exists()


@pytest.mark.urls("tests.security.urls")
@pytest.mark.parametrize("prefix", ["", "/app"])
def test_a_protect_everything_policy_leaves_the_login_page_reachable_under_a_prefix(
    client: Client, policy: Any, prefix: str
) -> None:
    """``urls: ["*"]`` must not loop anonymous users between the login page and itself."""
    policy("everything", urls=["*"])
    with served_under(prefix) as environ:
        assert client.get("/accounts/login/", **environ).status_code == 200
        protected = client.post("/t/edit/", **environ)
    assert protected.status_code == 302
    assert protected["Location"].startswith(f"{prefix}/accounts/login/")
    assert views.CALLS == []


# --- methods ----------------------------------------------------------------------------


@pytest.mark.usefixtures("synced_policies")
@pytest.mark.parametrize(
    "extra",
    [
        {"HTTP_X_HTTP_METHOD_OVERRIDE": "GET"},
        {"HTTP_X_HTTP_METHOD": "GET"},
        {"HTTP_X_METHOD_OVERRIDE": "GET"},
        {"QUERY_STRING": "_method=GET"},
    ],
)
def test_method_override_headers_cannot_turn_a_post_into_a_get(attacker: Client, extra: Any) -> None:
    response = attacker.post(BILLING_EDIT, {**BILLING, "_method": "GET"}, **extra)
    assert challenged(response)
    assert not BillingProfile.objects.exists()


@pytest.mark.usefixtures("synced_policies")
def test_method_override_on_the_api_cannot_turn_a_put_into_a_get(user: Any, totp: Any) -> None:
    from rest_framework.test import APIClient

    api = APIClient()
    api.force_login(user)
    response = api.put("/api/billing/", BILLING, format="json", HTTP_X_HTTP_METHOD_OVERRIDE="GET")
    assert challenged(response)
    assert not BillingProfile.objects.exists()


@pytest.mark.urls("tests.security.urls")
def test_head_is_held_to_a_get_policy(attacker: Client, policy: Any) -> None:
    policy("reads", urls=["edit"], methods=["GET"])
    assert challenged(attacker.head("/t/edit/"))
    assert views.CALLS == []


@pytest.mark.urls("tests.security.urls")
@pytest.mark.parametrize("method", ["OPTIONS", "TRACE", "PROPFIND", "FOO"])
def test_a_function_view_serves_any_method_so_a_get_policy_holds_for_them(
    attacker: Client, policy: Any, method: str
) -> None:
    """A function view runs its one body for any method: a read policy must not be dodged by OPTIONS."""
    policy("reads", urls=["edit"], methods=["GET"])
    response = attacker.generic(method, "/t/edit/")
    assert challenged(response)
    assert views.CALLS == []


@pytest.mark.urls("tests.security.urls")
@pytest.mark.parametrize("method", ["PROPFIND", "FOO"])
def test_a_function_view_serves_any_method_so_a_write_policy_holds_for_unknown_ones(
    attacker: Client, policy: Any, method: str
) -> None:
    policy("writes", urls=["edit"], methods=["POST", "PUT", "PATCH", "DELETE"])
    response = attacker.generic(method, "/t/edit/")
    assert challenged(response)
    assert views.CALLS == []


@pytest.mark.urls("tests.security.urls")
def test_options_on_a_class_based_view_runs_no_handler(attacker: Client, policy: Any) -> None:
    """``View.options`` answers OPTIONS without calling ``get``: a GET policy need not apply."""
    policy("things", actions=["things.change"], methods=["GET", "POST"])
    response = attacker.options("/t/thing/")
    assert response.status_code == 200
    assert views.CALLS == []


# --- names: one view, several routes -----------------------------------------------------


@pytest.mark.urls("tests.security.urls")
@pytest.mark.parametrize("path", ["/t/ci/edit/", "/t/CI/EDIT/", "/t/Ci/Edit/"])
def test_a_case_insensitive_route_is_one_name_and_every_spelling_is_enforced(
    attacker: Client, policy: Any, path: str
) -> None:
    policy("ci", urls=["ci-edit"])
    assert challenged(attacker.post(path))
    assert views.CALLS == []


@pytest.mark.urls("tests.security.urls")
@pytest.mark.parametrize(
    "path", ["/t/files/a", "/t/files/a/b/c", "/t/files/../x", "/t/files/%2e%2e%2fx", "/t/files/x%00"]
)
def test_path_parameters_do_not_escape_a_url_policy(attacker: Client, policy: Any, path: str) -> None:
    policy("files", urls=["file"])
    assert challenged(attacker.post(path))
    assert views.CALLS == []


@pytest.mark.urls("tests.security.urls")
def test_a_url_policy_inside_an_include_is_enforced(attacker: Client, policy: Any) -> None:
    policy("nested", urls=["nested-edit"])
    assert challenged(attacker.post("/nested/edit/"))
    assert views.CALLS == []


@pytest.mark.urls("tests.security.urls")
@pytest.mark.parametrize("path", ["/t/decorated/", "/t/thing/", "/t/api/things/", "/t/api/things.json"])
def test_a_declared_action_is_enforced_on_every_route(attacker: Client, policy: Any, path: str) -> None:
    policy("things", actions=["things.change"], methods=["POST"])
    response = attacker.post(path, {}, content_type="application/json")
    assert challenged(response)
    assert views.CALLS == []


# --- DRF format suffixes -------------------------------------------------------------------


@pytest.mark.usefixtures("synced_policies")
@pytest.mark.parametrize("url", ["/api/billing.json", "/api/billing/?format=json", "/api/billing.api"])
def test_drf_format_suffixes_reach_the_same_decision(user: Any, totp: Any, url: str) -> None:
    from rest_framework.test import APIClient

    api = APIClient()
    api.force_login(user)
    response = api.put(url, BILLING, format="json")
    assert response.status_code in (401, 404)
    if response.status_code == 401:
        assert challenged(response)
    assert not BillingProfile.objects.exists()


@pytest.mark.urls("tests.security.urls")
@pytest.mark.parametrize("path", ["/t/api/url/", "/t/api/url.json", "/t/api/url/?format=json"])
def test_drf_format_suffixes_keep_the_url_name(attacker: Client, policy: Any, path: str) -> None:
    policy("url-api", urls=["url-api"], methods=["POST"])
    assert challenged(attacker.post(path, {}, content_type="application/json"))
    assert views.CALLS == []


@pytest.mark.urls("tests.security.urls")
@pytest.mark.parametrize("method", ["get", "post"])
def test_a_drf_view_that_drops_stepup_permission_for_some_requests_is_still_held_to_url_policies(
    attacker: Client, policy: Any, method: str
) -> None:
    """``get_permissions()`` may leave ``StepUpPermission`` out: URL policies must hold anyway."""
    policy("per-method", urls=["per-method-api"])
    response = getattr(attacker, method)("/t/api/per-method/", {}, content_type="application/json")
    assert challenged(response)
    assert views.CALLS == []


@pytest.mark.urls("tests.security.urls")
@pytest.mark.parametrize("method", ["get", "post"])
def test_permission_classes_overridden_in_as_view_are_held_to_url_policies(
    attacker: Client, policy: Any, method: str
) -> None:
    """``as_view(permission_classes=[...])`` replaces the class's ``StepUpPermission``."""
    policy("open-api", urls=["open-api"])
    response = getattr(attacker, method)("/t/api/open/", {}, content_type="application/json")
    assert challenged(response)
    assert views.CALLS == []


# --- i18n language prefixes ----------------------------------------------------------------


@pytest.fixture
def i18n(settings: Any) -> None:
    settings.ROOT_URLCONF = "tests.security.urls_i18n"
    settings.USE_I18N = True
    settings.LANGUAGE_CODE = "en"
    settings.LANGUAGES = [("en", "English"), ("de", "German"), ("fr", "French")]
    middleware = list(settings.MIDDLEWARE)
    middleware.insert(
        middleware.index("django.middleware.common.CommonMiddleware"),
        "django.middleware.locale.LocaleMiddleware",
    )
    settings.MIDDLEWARE = middleware


@pytest.mark.usefixtures("i18n")
@pytest.mark.parametrize("path", ["/t/edit/", "/de/t/edit/", "/fr/t/edit/"])
@pytest.mark.parametrize("language", ["", "de", "fr;q=0.9, en;q=0.1"])
def test_language_prefixes_are_one_url_name(attacker: Client, policy: Any, path: str, language: str) -> None:
    policy("edit", urls=["edit"])
    response = attacker.post(path, HTTP_ACCEPT_LANGUAGE=language)
    assert response.status_code in (302, 404)
    if response.status_code == 302 and VERIFY not in response["Location"]:
        # LocaleMiddleware redirecting to a language prefix: follow it, still a POST.
        response = attacker.post(response["Location"], HTTP_ACCEPT_LANGUAGE=language)
    if response.status_code != 404:
        assert challenged(response)
    assert views.CALLS == []


@pytest.mark.usefixtures("i18n")
@pytest.mark.parametrize("path", ["/t/thing/", "/de/t/thing/"])
def test_language_prefixes_and_declared_actions(attacker: Client, policy: Any, path: str) -> None:
    policy("things", actions=["things.change"])
    assert challenged(attacker.post(path))
    assert views.CALLS == []


# --- the same view under two names ---------------------------------------------------------

TWICE_POLICY = """\
version: 1
policies:
  - id: twice
    description: Needs a recent second factor.
    match: {urls: [%s]}
    decision: step_up
    max_age: 300
"""


def run_stepup(*args: str) -> tuple[int, str, str]:
    from io import StringIO

    from django.core.management import CommandError, call_command

    out, err = StringIO(), StringIO()
    try:
        call_command("stepup", *args, stdout=out, stderr=err)
    except CommandError as exc:
        return exc.returncode, out.getvalue(), err.getvalue()
    return 0, out.getvalue(), err.getvalue()


def twice_warnings(err: str) -> list[str]:
    return [line for line in err.splitlines() if "tests.security.views.twice" in line]


@pytest.mark.urls("tests.security.urls")
def test_the_second_name_of_a_view_is_not_covered_by_a_policy_on_the_first(
    attacker: Client, policy: Any
) -> None:
    """By design (a URL policy names routes, not views): shown here, reported by the tests below."""
    policy("twice", urls=["twice"])
    assert challenged(attacker.post("/t/twice/"))
    assert views.CALLS == []
    attacker.post("/t/twice-again/")
    assert views.CALLS == ["twice POST"]


@pytest.mark.urls("tests.security.urls")
@pytest.mark.parametrize("subcommand", ["validate", "routes"])
def test_a_view_mounted_under_a_second_name_is_reported(tmp_path: Any, subcommand: str) -> None:
    """URL-name policies are per name by design; the uncovered second route must not go unnoticed."""
    path = tmp_path / "policies.yaml"
    path.write_text(TWICE_POLICY % "twice")
    code, _, err = run_stepup(subcommand, str(path))
    assert code == 0
    [warning] = twice_warnings(err)
    assert warning.startswith("warning: view tests.security.views.twice is mounted under several routes")
    assert "'twice' (/t/twice/, URL policies twice)" in warning
    assert "'twice-again' (/t/twice-again/, no URL policy)" in warning
    assert "unnamed (/t/twice-unnamed/)" in warning


@pytest.mark.urls("tests.security.urls")
def test_naming_both_routes_still_reports_the_unnamed_one(tmp_path: Any) -> None:
    path = tmp_path / "policies.yaml"
    path.write_text(TWICE_POLICY % "twice, twice-again")
    _, _, err = run_stepup("validate", str(path))
    [warning] = twice_warnings(err)
    assert "no URL policy" not in warning
    assert "unnamed (/t/twice-unnamed/)" in warning


@pytest.mark.urls("tests.security.urls")
def test_require_coverage_catches_the_second_name(tmp_path: Any) -> None:
    path = tmp_path / "policies.yaml"
    path.write_text(TWICE_POLICY % "twice")
    code, _, err = run_stepup("routes", str(path), "--require-coverage", "twice*")
    assert code == 1
    assert "route 'twice-again'" in err


@pytest.mark.urls("tests.security.urls")
def test_the_second_name_is_enforced_once_the_policy_names_it(attacker: Client, policy: Any) -> None:
    policy("twice", urls=["twice", "twice-again"])
    assert challenged(attacker.post("/t/twice/"))
    assert challenged(attacker.post("/t/twice-again/"))
    assert views.CALLS == []


def test_the_demo_mounts_no_view_under_unevenly_covered_routes() -> None:
    code, _, err = run_stepup("validate")
    assert code == 0
    assert "mounted under several routes" not in err


# --- stepup's own views under another namespace ------------------------------------------------


@pytest.mark.urls("tests.security.urls_mfa")
def test_a_protect_everything_policy_never_guards_the_verification_views_themselves(
    attacker: Client, policy: Any, totp: Any
) -> None:
    """Exempt by what they are, not by the namespace they happen to be included under."""
    from tests.security.conftest import code

    policy("all-writes", urls=["*"], methods=["POST"])
    refused = attacker.post("/t/edit/")
    assert refused.status_code == 302 and refused["Location"].startswith("/mfa/verify/")
    verified = attacker.post(refused["Location"], {"token": code(totp)})
    assert verified.status_code == 200 and b'action="/t/edit/"' in verified.content  # confirm the POST
    attacker.post("/t/edit/")
    assert views.CALLS == ["edit POST"]


@pytest.mark.urls("tests.security.urls")
@pytest.mark.parametrize("path", ["/t/api/per-method/", "/t/api/open/"])
@pytest.mark.parametrize("method", ["get", "post"])
def test_token_clients_of_such_drf_views_are_held_to_url_policies_and_can_verify(
    user: Any, totp: Any, policy: Any, path: str, method: str
) -> None:
    from rest_framework.authtoken.models import Token

    from tests.clients import CredentialClient
    from tests.security.conftest import API_VERIFY, code

    policy("per-method", urls=["per-method-api", "open-api"])
    api = CredentialClient()
    api.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=user).key}")
    refused = getattr(api, method)(path, {}, format="json")
    assert challenged(refused)
    assert refused.json()["code"] == "stepup_required"
    assert views.CALLS == []
    answer = {"token": code(totp), "challenge": refused.json()["challenge"]}
    assert api.post(API_VERIFY, answer, format="json").status_code == 200
    assert getattr(api, method)(path, {}, format="json").status_code in (200, 201)
    assert [f"url-api {method.upper()}"] == views.CALLS
