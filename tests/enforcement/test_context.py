"""Turning a request into engine facts: client IP, URL name, method, lazy roles and grants."""

from __future__ import annotations

import ipaddress
from typing import Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from stepup import grants
from stepup.context import client_ip, get_context, matching_method, url_name
from tests.enforcement.conftest import resolved

pytestmark = [pytest.mark.django_db, pytest.mark.urls("tests.enforcement.urls")]

IP = ipaddress.ip_address


# --- client IP --------------------------------------------------------------------------


def _ip(rf_request: Any, remote: str, xff: str | None = None) -> Any:
    extra = {"REMOTE_ADDR": remote}
    if xff is not None:
        extra["HTTP_X_FORWARDED_FOR"] = xff
    return client_ip(rf_request("get", "/plain/", **extra))


def test_remote_addr_without_proxies(rf_request):
    assert _ip(rf_request, "203.0.113.9") == IP("203.0.113.9")


def test_spoofed_forwarded_for_from_untrusted_peer_is_ignored(rf_request, settings):
    assert _ip(rf_request, "203.0.113.9", "10.0.0.5") == IP("203.0.113.9")
    settings.STEPUP = {**settings.STEPUP, "TRUSTED_PROXIES": ["192.0.2.0/24"]}
    assert _ip(rf_request, "203.0.113.9", "10.0.0.5") == IP("203.0.113.9")


@pytest.fixture
def proxied(settings):
    settings.STEPUP = {**settings.STEPUP, "TRUSTED_PROXIES": ["192.0.2.0/24", "2001:db8::/32"]}


@pytest.mark.parametrize(
    ("xff", "expected"),
    [
        ("10.1.2.3", "10.1.2.3"),
        # the client claims an office address; the proxy appended the real one
        ("10.1.2.3, 203.0.113.9", "203.0.113.9"),
        # chained trusted proxies are skipped, rightmost untrusted hop wins
        ("10.1.2.3, 203.0.113.9, 192.0.2.77", "203.0.113.9"),
        ("198.51.100.1,203.0.113.9,192.0.2.77,192.0.2.78", "203.0.113.9"),
        ("  203.0.113.9  ", "203.0.113.9"),
        ("::ffff:203.0.113.9", "203.0.113.9"),
        ("2001:db9::1", "2001:db9::1"),
    ],
)
def test_forwarded_for_from_trusted_proxy(rf_request, proxied, xff, expected):
    assert _ip(rf_request, "192.0.2.10", xff) == IP(expected)


@pytest.mark.parametrize(
    "xff",
    [
        None,  # no header
        "",  # empty
        "192.0.2.5",  # only trusted hops
        "not-an-ip",
        "10.1.2.3, garbage",  # malformed entry before the first untrusted hop
        "203.0.113.9:4711",  # ports are not accepted
        "10.1.2.3,,",  # empty entries
        "unknown",
    ],
)
def test_unusable_forwarded_for_from_trusted_proxy_is_unknown_not_the_proxy(rf_request, proxied, xff):
    assert _ip(rf_request, "192.0.2.10", xff) is None


def test_malformed_entry_left_of_the_client_is_irrelevant(rf_request, proxied):
    assert _ip(rf_request, "192.0.2.10", "garbage, 203.0.113.9") == IP("203.0.113.9")


def test_ipv6_proxy_and_mapped_remote_addr(rf_request, proxied):
    assert _ip(rf_request, "2001:db8::1", "203.0.113.9") == IP("203.0.113.9")
    assert _ip(rf_request, "::ffff:192.0.2.10", "203.0.113.9") == IP("203.0.113.9")


def test_missing_or_bad_remote_addr_is_unknown(rf_request):
    assert _ip(rf_request, "") is None
    assert _ip(rf_request, "bogus") is None


# --- URL name and method ----------------------------------------------------------------


def test_url_name_from_resolver_match_is_namespaced(rf_request):
    request = resolved(rf_request("get", "/stepup/verify/"))
    assert url_name(request) == "stepup:verify"


def test_url_name_resolves_path_info_without_resolver_match(rf_request):
    assert url_name(rf_request("get", "/billing/")) == "billing"
    assert url_name(rf_request("get", "/no/such/page/")) is None


def test_unnamed_route_has_no_name(rf_request):
    assert url_name(resolved(rf_request("get", "/unnamed/"))) is None


def test_url_name_uses_path_info_not_the_raw_path(rf_request):
    request = rf_request("get", "/billing/")
    request.path = "/prefix/plain/"  # SCRIPT_NAME prefix: path differs, path_info decides
    assert url_name(request) == "billing"


@pytest.mark.parametrize(
    ("method", "path", "expected"),
    [
        ("get", "/plain/", "GET"),
        ("head", "/plain/", "GET"),
        ("post", "/plain/", "POST"),
        ("delete", "/plain/", "DELETE"),
        # A function view runs its one body for these: every policy's methods match them.
        ("options", "/plain/", "*"),
        ("trace", "/plain/", "*"),
        # A class-based view answers OPTIONS itself (and TRACE with 405).
        ("options", "/settings/team/", "OPTIONS"),
        ("trace", "/api/", "TRACE"),
    ],
)
def test_matching_method(rf_request, method, path, expected):
    assert matching_method(rf_request(method, path)) == expected


@pytest.mark.parametrize("path", ["/plain/", "/settings/team/", "/no/such/page/"])
def test_unknown_methods_match_every_policy(rf_request, path):
    request = rf_request("get", path)
    request.method = "PROPFIND"
    assert matching_method(request) == "*"


def test_method_override_headers_are_ignored(rf_request):
    request = rf_request("post", "/plain/?_method=GET", HTTP_X_HTTP_METHOD_OVERRIDE="GET")
    assert matching_method(request) == "POST"


# --- lazy facts -------------------------------------------------------------------------


def test_context_is_built_once_per_request(rf_request):
    request = rf_request("get", "/billing/")
    assert get_context(request) is get_context(request)


def test_context_is_rebuilt_when_the_user_changes(rf_request, user, other_user):
    request = rf_request("get", "/billing/")
    first = get_context(request)
    request.user = other_user
    assert get_context(request) is not first
    assert get_context(request).user is other_user


def test_the_context_holds_the_user_behind_the_lazy_proxies(rf_request, user, other_user):
    """django-otp wraps the auth middleware's SimpleLazyObject in one of its own: both are unwrapped once."""
    from django.utils.functional import SimpleLazyObject

    request = rf_request("get", "/billing/")
    loads: list[str] = []

    def load_user() -> Any:
        loads.append("auth")
        return user

    inner = SimpleLazyObject(load_user)
    request.user = SimpleLazyObject(lambda: inner)
    context = get_context(request)
    assert context.user is user  # the model instance itself, not a proxy
    assert get_context(request) is context  # the same proxy on the request: the same context
    assert loads == ["auth"]
    request.user = SimpleLazyObject(lambda: other_user)  # a login inside the request
    assert get_context(request).user is other_user


def test_a_request_without_a_user_keeps_one_anonymous_context(rf_request):
    request = rf_request("get", "/billing/", as_user=None)
    del request.user
    context = get_context(request)
    assert not context.authenticated
    assert get_context(request) is context


def test_roles_are_lazy_and_loaded_once(rf_request, user):
    from django.contrib.auth.models import Group

    user.groups.add(Group.objects.create(name="finance"))
    user.is_staff = True
    request = rf_request("get", "/billing/")
    with CaptureQueriesContext(connection) as queries:
        context = get_context(request)
    assert not context.roles.loaded
    assert not any("auth_group" in q["sql"] for q in queries.captured_queries)
    assert context.roles() == {"authenticated", "staff", "finance"}
    assert context.roles() == {"authenticated", "staff", "finance"}
    assert context.roles.calls == 1


def test_anonymous_has_no_roles_and_no_grants(rf_request):
    request = rf_request("get", "/billing/", as_user=None)
    context = get_context(request)
    assert context.roles() == frozenset()
    assert dict(context.verified) == {}
    assert context.session_age is None


def test_verification_ages_are_lazy(rf_request, user):
    request = rf_request("get", "/billing/")
    grants.record_verification(request, user, "totp")
    context = get_context(request)
    assert not context.verified.loaded  # type: ignore[attr-defined]
    with CaptureQueriesContext(connection) as queries:
        ages = dict(context.verified)
    assert set(ages) == {"totp"}
    assert len(queries) == 1  # the grant epoch
    with CaptureQueriesContext(connection) as queries:
        dict(context.verified)
    assert len(queries) == 0
