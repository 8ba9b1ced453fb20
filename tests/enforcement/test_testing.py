"""``stepup.testing`` and the pytest plugin, as our users' test suites use them."""

from __future__ import annotations

import subprocess
import sys

import pytest

from stepup.testing import assert_requires_stepup
from tests.enforcement import views

pytestmark = [pytest.mark.django_db, pytest.mark.urls("tests.enforcement.urls")]


@pytest.fixture
def billing(policy):
    return policy("billing", actions=["billing.update"])


def test_assert_requires_stepup_accepts_the_redirect(logged_in, billing):
    response = assert_requires_stepup(logged_in, "post", "/billing/", {"x": "1"})
    assert response.status_code == 302
    assert views.CALLS == []


def test_assert_requires_stepup_accepts_the_api_401(logged_in, billing):
    response = assert_requires_stepup(logged_in, "POST", "/billing/", headers={"accept": "application/json"})
    assert response.status_code == 401


def test_assert_requires_stepup_fails_when_the_view_runs(logged_in):
    with pytest.raises(AssertionError, match="not challenged"):
        assert_requires_stepup(logged_in, "post", "/plain/")
    assert views.CALLS == ["plain"]


def test_assert_requires_stepup_fails_for_the_login_redirect(client, billing):
    with pytest.raises(AssertionError, match="not to stepup:verify"):
        assert_requires_stepup(client, "post", "/billing/")


def test_assert_requires_stepup_fails_for_a_403(logged_in, policy):
    policy("no", actions=["billing.update"], decision="deny")
    with pytest.raises(AssertionError, match="status 403"):
        assert_requires_stepup(logged_in, "post", "/billing/")


def test_stepup_verified_allows_then_clears(logged_in, user, billing, stepup_verified):
    with stepup_verified(logged_in, user):
        assert logged_in.post("/billing/").status_code == 200
    assert_requires_stepup(logged_in, "post", "/billing/")
    assert views.CALLS == ["billing"]


def test_stepup_verified_with_a_one_shot_grant(logged_in, user, policy, stepup_verified):
    policy("transfers", actions=["payments.transfer"], max_age=0)
    attrs = {"amount": "5000", "to": "A"}
    with stepup_verified(logged_in, user, action="payments.transfer", url_name="transfer", attributes=attrs):
        assert logged_in.post("/transfer/", attrs).status_code == 200
        assert logged_in.post("/transfer/", attrs).status_code == 302


def test_plugin_fixture_is_the_context_manager(stepup_verified):
    from stepup.testing import stepup_verified as helper

    assert stepup_verified is helper


def test_plugin_imports_without_django_configured():
    code = (
        "import os, sys; os.environ.pop('DJANGO_SETTINGS_MODULE', None); "
        "import stepup.pytest_plugin; "
        "from django.conf import settings; "
        "assert not settings.configured; "
        "assert 'stepup.testing' not in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True, env={"PYTHONPATH": "."})


def test_assert_requires_stepup_passes_async_views_refused_before_they_run(logged_in, billing, policy):
    policy("access", actions=["access.modify"])
    assert_requires_stepup(logged_in, "post", "/abilling/")
    assert_requires_stepup(logged_in, "get", "/asettings/ops/")
    assert views.CALLS == []


def test_assert_requires_stepup_fails_for_a_refusal_inside_the_view_unless_told(logged_in, policy):
    policy("downloads", actions=["reports.download"])
    with pytest.raises(AssertionError, match="after the view's own code had started"):
        assert_requires_stepup(logged_in, "get", "/deep/")
    assert views.CALLS == ["deep entered"]
    assert_requires_stepup(logged_in, "get", "/deep/", refused_in_view=True)


def test_assert_requires_stepup_needs_the_request_to_tell_where_it_was_refused(logged_in, billing):
    class Relay:
        """A client that hands back a copy of the response only."""

        def post(self, url, **extra):
            response = logged_in.post(url, **extra)
            del response.wsgi_request
            return response

    with pytest.raises(AssertionError, match="carries no request"):
        assert_requires_stepup(Relay(), "post", "/billing/")
    assert_requires_stepup(Relay(), "post", "/billing/", refused_in_view=True)
