"""``stepup.testing`` with DRF's ``APIClient``: session clients and token clients alike."""

from __future__ import annotations

from typing import Any

import pytest
from rest_framework.test import APIClient

from stepup.models import Grant
from stepup.testing import assert_requires_stepup, stepup_verified
from tests.api import urls

pytestmark = pytest.mark.django_db

GUARDED = "/t/guarded/"


@pytest.fixture
def things(policy: Any) -> Any:
    return policy("things", actions=["things.change"], methods=["POST"], max_age=300)


@pytest.mark.parametrize("client_kind", ["session_api", "token_api"])
def test_helpers_work_for_session_and_token_clients(
    request: Any, client_kind: str, user: Any, totp: Any, things: Any
) -> None:
    api: APIClient = request.getfixturevalue(client_kind)
    assert_requires_stepup(api, "post", GUARDED, {"amount": 1}, format="json")
    with stepup_verified(api, user):
        assert api.post(GUARDED, {"amount": 1}, format="json").status_code == 201
        subject = Grant.objects.get().subject
        assert subject.startswith("t:" if client_kind == "token_api" else "s:")
    assert Grant.objects.count() == 0  # removed again on exit
    assert_requires_stepup(api, "post", GUARDED, {"amount": 1}, format="json")
    assert urls.CALLS == ["guarded-post 1"]


def test_a_token_clients_grant_is_not_the_sessions(user: Any, token: Any, totp: Any, things: Any) -> None:
    both = APIClient()
    both.force_login(user)
    token_only = APIClient()
    token_only.credentials(HTTP_AUTHORIZATION=f"Token {token.key}")
    with stepup_verified(both, user):
        assert both.post(GUARDED, {}, format="json").status_code == 201
        assert token_only.post(GUARDED, {}, format="json").status_code == 401


def test_assert_requires_stepup_fails_for_an_unguarded_api(session_api: APIClient, things: Any) -> None:
    with pytest.raises(AssertionError, match="was not challenged"):
        assert_requires_stepup(session_api, "get", GUARDED)
