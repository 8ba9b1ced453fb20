"""Hot reload across processes: two gunicorn servers, PostgreSQL, Redis.

A change committed in one process (the ORM in a worker process, or
``manage.py stepup sync``) must be enforced by every server from its very
next request on. The pair of servers polls the database only once an hour,
so only the notice through Redis can explain that; the control servers
without a shared cache show both the polling interval and what happens
without the notice.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.scale.conftest import across_notices
from tests.scale.harness import ROOT, Server, eventually, run_manage, running, totp_code

pytestmark = [pytest.mark.postgres, pytest.mark.redis]

GUARDED = "/probe/guarded/"
DENY_GUARDED = {
    "id": "scale-hot-deny",
    "description": "scale test: nobody may open the guarded probe",
    "match": {"urls": ["scale-guarded"]},
    "decision": "deny",
}


def warm(*servers: Server, path: str = GUARDED, session: str | None = None) -> None:
    """Several requests to each server, so that each has its policy set loaded and checked."""
    for server in servers:
        for _ in range(5):
            response = server.request("GET", path, session=session)
            assert response.status == 200, response.body
            assert response.body.startswith("ran ")


@across_notices
def test_a_change_committed_elsewhere_is_enforced_by_every_server_on_its_next_request(scale, pair):
    a, b = pair
    session = scale.worker("user", {"username": f"hot-orm-{scale.notices}", "sessions": 1})["sessions"][0]
    warm(a, b, session=session)
    versions = {a.stats()["version"], b.stats()["version"]}
    assert len(versions) == 1

    changed = scale.worker("policy", DENY_GUARDED)  # committed and announced when this returns
    for server in (b, a):
        response = server.request("GET", GUARDED, session=session)
        assert response.status == 403, (server.name, response.status, response.body)
        assert "ran guarded" not in response.body
        assert server.stats()["version"] == changed["version"]

    scale.worker("delete-policy", {"id": DENY_GUARDED["id"]})
    for server in (a, b):
        response = server.request("GET", GUARDED, session=session)
        assert (response.status, response.body) == (200, "ran guarded"), server.name


@across_notices
def test_a_policy_added_in_the_admin_of_one_server_is_enforced_by_the_other(scale, pair):
    a, b = pair
    admin = scale.worker(
        "user", {"username": f"scale-admin-{scale.notices}", "sessions": 1, "totp": True, "superuser": True}
    )
    warm(a, b)
    # The built-in policy: changing policies in the admin needs a recent second factor.
    verified = a.request(
        "POST",
        "/stepup/api/verify/",
        session=admin["sessions"][0],
        json_body={
            "device": admin["device"],
            "token": totp_code(admin["key"], admin["digits"], admin["step"]),
        },
    )
    assert verified.status == 200, verified.body
    session = verified.cookies["sessionid"]  # rotated by the verification
    saved = a.request(
        "POST",
        "/admin/stepup/policy/add/",
        session=session,
        form={
            "policy_id": "scale-admin-deny",
            "description": "scale test: added in the admin of server a",
            "decision": "deny",
            "max_age": "",
            "factors": "[]",
            "enabled": "on",
            "mode": "enforce",
            "actions": "[]",
            "urls": '["scale-guarded"]',
            "methods": "[]",
            "when": "{}",
            "change_reason": "scale test: hot reload through the admin",
            "_save": "Save",
        },
    )
    assert saved.status == 302, saved.body[-3000:]
    try:
        response = b.request("GET", GUARDED)
        assert response.status == 403, (response.status, response.body)
        assert a.request("GET", GUARDED).status == 403
    finally:
        scale.worker("delete-policy", {"id": "scale-admin-deny"})
    assert b.request("GET", GUARDED).status == 200


@across_notices
def test_a_sync_from_the_command_line_is_enforced_on_the_next_request(scale, pair, tmp_path: Path):
    a, b = pair
    warm(a, b)
    extra = tmp_path / "extra.yaml"
    extra.write_text(
        "version: 1\n"
        "policies:\n"
        "  - id: scale-sync-guard\n"
        "    description: scale test, synced from a second file\n"
        "    match: {urls: [scale-guarded], methods: [GET]}\n"
        "    decision: deny\n"
    )
    demo = str(ROOT / "fixtures" / "stepup" / "policies.yaml")
    run_manage(scale.env(), "stepup", "sync", demo, str(extra), "--reason", "scale: add")
    for server in (a, b):
        assert server.request("GET", GUARDED).status == 403, server.name
    run_manage(scale.env(), "stepup", "sync", demo, "--reason", "scale: remove")
    for server in (a, b):
        assert server.request("GET", GUARDED).status == 200, server.name


@across_notices
def test_requests_on_routes_no_policy_matches_run_no_sql(scale, pair):
    a, _ = pair
    warm(a, path="/probe/open/")
    a.stats(reset=True)
    for _ in range(50):
        assert a.request("GET", "/probe/open/").status == 200
    assert a.stats()["queries"].get("total", 0) == 0


def test_without_a_shared_cache_a_change_is_seen_within_the_reload_interval(scale):
    """Control: the same change, seen by polling (0.5 s) or, with an hour's interval, not at all."""
    polling = scale.server("poll", SCALE_STEPUP_CACHE="", SCALE_RELOAD_INTERVAL="0.5")
    deaf = scale.server("deaf", SCALE_STEPUP_CACHE="", SCALE_RELOAD_INTERVAL="3600")
    with running(polling, deaf):
        warm(polling, deaf)
        scale.worker("policy", {**DENY_GUARDED, "id": "scale-poll-deny"})
        elapsed = eventually(lambda: polling.request("GET", GUARDED).status == 403, timeout=3)
        time.sleep(1.0)
        # No notice, no poll for an hour: this process still runs the old set (what the
        # shared cache is for); a process without one relies on RELOAD_INTERVAL alone.
        assert deaf.request("GET", GUARDED).status == 200
        scale.worker("delete-policy", {"id": "scale-poll-deny"})
        eventually(lambda: polling.request("GET", GUARDED).status == 200, timeout=3)
    assert elapsed < 0.5 + 0.5  # the interval, plus a few requests' time on a busy machine
