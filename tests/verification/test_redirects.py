"""Where a successful verification goes: ``next`` only when it stays on this site."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client, RequestFactory

from stepup.flows.verification import is_safe_url, success_url
from tests.verification.conftest import VERIFY, code, verify_url

pytestmark = pytest.mark.django_db

OPEN_REDIRECTS = [
    "//evil.com",
    "/\\evil.com",
    "\\/evil.com",
    "http:\\\\evil.com",
    "https://evil.com",
    "http://evil.com/",
    "javascript:alert(1)",
    "JavaScript:alert(1)",
    "data:text/html,<script>alert(1)</script>",
    "%2F%2Fevil.com",
    "/%2F/evil.com",
    "%2f%2fevil.com",
    "/%09/evil.com",
    "/%5Cevil.com",
    "///evil.com",
    "////evil.com",
    "http://testserver@evil.com",
    "http://testserver:80@evil.com/",
    " //evil.com",
    "//evil.com ",
    "/\t/evil.com",
    "/\n/evil.com",
    "\x00//evil.com",
    "http:/evil.com",
    "http:evil.com",
    "evil.com",
    "pay/",
    "\uff0f\uff0fevil.com"  # full-width solidus,
    "ftp://testserver/",
]

SAFE = [
    "/pay/",
    "/pay/?amount=5000&note=a%20b",
    "/pay/?next=%2F%2Fevil.com",  # encoded in the query: only the path decides where we go
    "/search/?q=a%5Cb%09c",
    "/pay/#top",
    "/caf%C3%A9/",
    "http://testserver/pay/",
]


@pytest.mark.parametrize("next_url", OPEN_REDIRECTS)
def test_open_redirects_land_on_the_default_page(logged_in: Client, totp: Any, next_url: str) -> None:
    response = logged_in.post(VERIFY, {"token": code(totp), "next": next_url})
    assert response.status_code == 303
    assert response["Location"] == "/"


@pytest.mark.parametrize("next_url", OPEN_REDIRECTS[:6])
def test_open_redirects_in_the_query_string(logged_in: Client, totp: Any, next_url: str) -> None:
    response = logged_in.post(verify_url(next_url=next_url), {"token": code(totp)})
    assert response["Location"] == "/"


@pytest.mark.parametrize("next_url", SAFE)
def test_local_urls_are_followed(rf: RequestFactory, next_url: str) -> None:
    request = rf.get(VERIFY)
    assert is_safe_url(request, next_url)
    assert success_url(request, next_url) == next_url


@pytest.mark.parametrize("next_url", OPEN_REDIRECTS)
def test_is_safe_url_refuses(rf: RequestFactory, next_url: str) -> None:
    assert not is_safe_url(rf.get(VERIFY), next_url)


def test_https_request_refuses_http_next(rf: RequestFactory) -> None:
    request = rf.get(VERIFY, secure=True)
    assert not is_safe_url(request, "http://testserver/pay/")
    assert is_safe_url(request, "https://testserver/pay/")


def test_other_allowed_host_by_exact_name(rf: RequestFactory, settings: Any) -> None:
    settings.ALLOWED_HOSTS = ["testserver", "app.example.com", ".example.org", "*"]
    request = rf.get(VERIFY)
    assert is_safe_url(request, "http://app.example.com/x")
    assert not is_safe_url(request, "http://sub.example.org/x")
    assert not is_safe_url(request, "http://anything.test/x")


def test_missing_next_uses_login_redirect_url(rf: RequestFactory, settings: Any) -> None:
    settings.LOGIN_REDIRECT_URL = "login"
    assert success_url(rf.get(VERIFY), None) == "/accounts/login/"
