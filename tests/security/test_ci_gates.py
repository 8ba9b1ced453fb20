"""The CI gates users rely on: ``assert_requires_stepup`` and ``routes --require-coverage``.

A gate that passes what it is there to catch is worse than none: the test
suite stays green while the view does its work before the challenge, or
while the only policy on a route enforces nothing.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from django.test import Client

from stepup.testing import assert_requires_stepup, stepup_verified
from tests.security import views
from tests.security.test_routing import run_stepup

pytestmark = [pytest.mark.django_db, pytest.mark.urls("tests.security.urls")]


# --- assert_requires_stepup: the protected view did not run ----------------------------------


def test_the_helper_fails_when_the_view_did_its_work_before_the_challenge(attacker: Client) -> None:
    with pytest.raises(AssertionError, match="challenged only after the view's own code had started"):
        assert_requires_stepup(attacker, "post", "/t/work-then-enforce/")
    assert views.CALLS == ["work-then-enforce POST"]  # what the helper is there to catch


def test_the_helper_fails_when_a_decorated_view_is_refused_after_its_work(
    attacker: Client, user: Any, policy: Any
) -> None:
    policy("notify-fresh", actions=["things.notify"], max_age=0)
    with stepup_verified(attacker, user), pytest.raises(AssertionError, match="had started"):
        assert_requires_stepup(attacker, "post", "/t/pay/", {"amount": "5"})
    assert views.CALLS == ["pay POST"]


def test_the_caller_can_say_a_refusal_inside_the_view_is_expected(attacker: Client) -> None:
    """``enforce()`` first thing in the view: only the test's author can know nothing ran before it."""
    with pytest.raises(AssertionError, match="refused_in_view=True"):
        assert_requires_stepup(attacker, "post", "/t/deep/")
    response = assert_requires_stepup(attacker, "post", "/t/deep/", refused_in_view=True)
    assert response.status_code == 302
    assert views.CALLS == []


@pytest.mark.parametrize(
    ("path", "extra"),
    [
        ("/t/decorated/", {}),
        ("/t/thing/", {}),
        ("/t/edit/", {}),
        ("/t/api/things/", {"content_type": "application/json"}),
        ("/t/api/url/", {"content_type": "application/json"}),
    ],
    ids=["decorator", "mixin", "middleware", "drf-action", "drf-url"],
)
def test_the_helper_passes_views_refused_before_they_run(
    attacker: Client, policy: Any, path: str, extra: dict[str, Any]
) -> None:
    policy("urls", urls=["edit", "url-api"])
    response = assert_requires_stepup(attacker, "post", path, **extra)
    assert response.status_code in (302, 401)
    assert views.CALLS == []


# --- routes --require-coverage: only enforced policies cover -------------------------------------

COVERAGE = """\
version: 1
policies:
  - id: edit-policy
    match: {{urls: [edit], actions: [things.change]}}
    decision: step_up
    max_age: 300
    {field}
"""


@pytest.mark.parametrize(
    ("field", "why"),
    [("mode: shadow", "edit-policy (shadow)"), ("enabled: false", "edit-policy (disabled)")],
    ids=["shadow", "disabled"],
)
@pytest.mark.parametrize("route", ["edit", "decorated"], ids=["url-policy", "declared-action"])
def test_a_route_covered_only_by_a_policy_that_enforces_nothing_is_not_covered(
    tmp_path: Path, field: str, why: str, route: str
) -> None:
    path = tmp_path / "policies.yaml"
    path.write_text(COVERAGE.format(field=field))
    code, _, err = run_stepup("routes", str(path), "--require-coverage", route)
    assert code == 1, err
    assert f"route {route!r}" in err
    assert f"only shadow/disabled policies: {why}" in err


def test_a_route_covered_by_an_enforced_policy_passes_the_gate(tmp_path: Path) -> None:
    path = tmp_path / "policies.yaml"
    path.write_text(COVERAGE.format(field="mode: enforce"))
    code, _, err = run_stepup("routes", str(path), "--require-coverage", "edit", "decorated")
    assert code == 0, err
