"""Which method a policy sees: HEAD is GET; OPTIONS is OPTIONS for class-based views only; overrides change nothing."""

from __future__ import annotations

import pytest

from tests.enforcement import views

pytestmark = [pytest.mark.django_db, pytest.mark.urls("tests.enforcement.urls")]


@pytest.fixture
def reads(policy):
    return policy("plain-reads", urls=["plain"], methods=["GET"])


def test_policy_on_get_covers_head(logged_in, reads):
    assert logged_in.get("/plain/").status_code == 302
    assert logged_in.head("/plain/").status_code == 302
    assert views.CALLS == []


def test_policy_on_get_covers_options_on_a_function_view(logged_in, reads):
    """A function view runs its body for OPTIONS too: the GET policy must hold."""
    assert logged_in.options("/plain/").status_code == 302
    assert views.CALLS == []


def test_policy_on_get_does_not_cover_options_on_a_class_based_view(logged_in, policy):
    policy("api-reads", urls=["api"], methods=["GET"])
    assert logged_in.get("/api/").status_code == 401  # a DRF view: the RFC 9470 answer
    assert logged_in.options("/api/").status_code == 200  # APIView.options: no handler runs
    assert views.CALLS == []


def test_policy_on_post_covers_post_only(logged_in, policy):
    policy("plain-writes", urls=["plain"], methods=["POST", "DELETE"])
    assert logged_in.get("/plain/").status_code == 200
    assert logged_in.head("/plain/").status_code == 200
    assert logged_in.post("/plain/").status_code == 302
    assert logged_in.delete("/plain/").status_code == 302
    assert logged_in.options("/plain/").status_code == 302  # a function view: any method may write


@pytest.mark.parametrize(
    "headers",
    [
        {"x-http-method-override": "GET"},
        {"x-http-method": "GET"},
        {"x-method-override": "GET"},
    ],
)
def test_override_headers_cannot_dodge_a_post_policy(logged_in, policy, headers):
    policy("plain-writes", urls=["plain"], methods=["POST"])
    assert logged_in.post("/plain/?_method=GET", {"_method": "GET"}, headers=headers).status_code == 302
    assert views.CALLS == []


def test_override_headers_cannot_trigger_a_post_policy_on_get(logged_in, policy):
    policy("plain-writes", urls=["plain"], methods=["POST"])
    response = logged_in.get("/plain/", headers={"x-http-method-override": "POST"})
    assert response.status_code == 200


def test_policy_without_methods_covers_every_method(logged_in, policy):
    policy("plain-all", urls=["plain"])
    for send in (logged_in.get, logged_in.head, logged_in.options, logged_in.post, logged_in.put):
        assert send("/plain/").status_code == 302
