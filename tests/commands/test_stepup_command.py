"""`manage.py stepup` subcommands and their exit codes (CONTRACT section 4)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from stepup.models import Policy

from .conftest import GOOD

pytestmark = [pytest.mark.urls("tests.commands.urls"), pytest.mark.django_db]

ROOT = Path(__file__).resolve().parents[2]

BROKEN = """\
version: 1
policies:
  - id: billing-update
    match: {actions: [billing.update]}
    decision: step_up
    max_age: -5
  - id: billing-update
    match: {actions: [billing.update]}
    decision: deny
"""


# --- validate ------------------------------------------------------------------------------


def test_validate_ok(run, good):
    result = run("validate", good)
    assert result.code == 0
    assert "OK: 2 policies and 2 tests" in result.out


def test_validate_reports_every_error_with_line(run, write):
    path = write(BROKEN)
    result = run("validate", path)
    assert result.code == 1
    assert f"{path}:6" in result.err  # max_age: -5
    assert f"{path}:7" in result.err  # duplicate id
    assert result.err.splitlines()[-1] == "CommandError: 2 errors."


def test_manage_py_prints_the_error_and_exits_with_its_code(write):
    path = write(BROKEN)
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "tests.settings"}
    done = subprocess.run(
        [sys.executable, "manage.py", "stepup", "validate", path],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 1, done.stderr
    assert f"error: {path}:6: " in done.stderr
    assert done.stderr.splitlines()[-1] == "CommandError: 2 errors."
    assert done.stdout == ""


def test_validate_checks_url_names_against_the_urlconf(run, write):
    path = write(GOOD.replace("admin:auth_user_*", "admin:auth_usr_change"))
    result = run("validate", path)
    assert result.code == 1
    assert "admin:auth_usr_change" in result.err
    assert "did you mean 'admin:auth_user_change'" in result.err


def test_validate_reports_declared_actions_without_policy(run, good):
    result = run("validate", good)
    assert result.code == 0
    assert "'brand.new' has no policy" in result.err


def test_validate_warns_about_a_policy_action_no_code_declares(run, write):
    path = write(GOOD.replace("actions: [billing.update]", "actions: [biling.update]"))
    result = run("validate", path)
    assert result.code == 0  # a warning: the action may be enforced where stepup can't see it
    assert (
        "policy 'billing-update' names action 'biling.update', which no view declares or enforces"
        in result.err
    )
    assert "did you mean 'billing.update'?" in result.err


def test_validate_knows_actions_enforced_in_views_code(run, write):
    """A literal, a module constant passed through a helper, a class view's method, a glob."""
    policies = "".join(
        f"  - id: p{number}\n    match: {{actions: ['{action}']}}\n    decision: step_up\n    max_age: 60\n"
        for number, action in enumerate(("payments.send", "reports.export", "archive.purge", "archive.*"))
    )
    result = run("validate", write(GOOD.replace("tests:", policies + "tests:")))
    assert result.code == 0, result.err
    assert "which no view declares" not in result.err
    assert "'payments.send' has no policy" not in result.err


def test_routes_counts_actions_enforced_in_a_views_code_as_coverage(run, write):
    policy = "  - id: pay\n    match: {actions: [payments.send]}\n    decision: step_up\n    max_age: 60\n"
    path = write(GOOD.replace("tests:", policy + "tests:"))
    listing = run("routes", path).out
    assert "name=pay-in-code" in listing and "action=- (in code: payments.send)  policies=pay" in listing
    assert "name=export-in-code" in listing and "(in code: reports.export)" in listing
    assert "(in code: archive.purge)" in listing
    assert (
        "name=dynamic-in-code  view=tests.commands.urls.computes_its_action  methods=*  action=-  " in listing
    )
    assert run("routes", path, "--require-coverage", "pay-in-code").code == 0
    assert run("routes", path, "--require-coverage", "export-in-code").code == 1  # no policy for it
    (row,) = [
        r for r in json.loads(run("routes", path, "--format", "json").out) if r["name"] == "pay-in-code"
    ]
    assert (row["action"], row["actions_in_code"], row["policies"]) == (None, ["payments.send"], ["pay"])


def test_validate_uses_settings_files_by_default(run, good, settings):
    settings.STEPUP = {"POLICY_FILES": [good]}
    assert run("validate").code == 0


# --- test ----------------------------------------------------------------------------------


def test_test_passes_and_lists_unexercised_policies(run, good):
    result = run("test", good)
    assert result.code == 0
    assert "2 passed, 0 failed" in result.out
    assert "warning: no test exercises" not in result.out


def test_test_failure_shows_expected_actual_and_trace(run, write):
    path = write(GOOD.replace("expect: {decision: allow}", "expect: {decision: deny}"))
    result = run("test", path)
    assert result.code == 1
    assert "FAIL admin post with fresh factor" in result.out
    assert "decision: expected deny, got allow" in result.out
    assert "policy admin-users: satisfied" in result.out
    assert "1 passed, 1 failed" in result.out
    assert result.err.splitlines()[-1] == "CommandError: 1 policy test failed."


def test_test_reports_policy_no_test_exercises(run, write):
    path = write(
        GOOD.replace(
            '    input: {url: "admin:auth_user_change", method: POST, verified: {totp: 5}}',
            '    input: {url: "admin:auth_user_change", method: GET}',
        )
    )
    result = run("test", path)
    assert "warning: no test exercises policy 'admin-users'" in result.out


def test_demo_policies_pass_their_own_tests(run, settings):
    result = run("test", str(settings.BASE_DIR / "fixtures" / "stepup" / "policies.yaml"))
    assert result.code == 0, result.out + result.err
    assert "0 failed" in result.out
    assert "warning" not in result.out


# --- plan / sync / export ------------------------------------------------------------------


def test_plan_then_sync_then_plan(run, good):
    plan = run("plan", good)
    assert plan.code == 2
    assert plan.err == (
        "CommandError: the database differs from the policy files: "
        "2 to create, 0 to update, 0 to enable, 0 to disable, 0 to delete, 0 unchanged.\n"
    )
    assert "create admin-users" in plan.out
    assert "create billing-update" in plan.out
    assert run("sync", good).code == 0
    assert Policy.objects.count() == 2
    again = run("plan", good)
    assert again.code == 0
    assert "No changes" in again.out


def test_sync_records_history_with_reason_and_source(run, good):
    run("sync", good, "--reason", "PR #42: tighten billing")
    row = Policy.objects.get(policy_id="billing-update")
    assert row.source_file == good
    record = row.history.get()
    assert record.history_type == "+"
    assert record.history_change_reason.startswith("PR #42: tighten billing")


def test_sync_default_reason_names_files(run, good):
    run("sync", good)
    reason = Policy.objects.get(policy_id="billing-update").history.get().history_change_reason
    assert good in reason


def test_shell_edit_is_drift_that_plan_shows_field_by_field(run, good):
    run("sync", good)
    row = Policy.objects.get(policy_id="billing-update")
    row.max_age = 3600
    row.save()
    result = run("plan", good)
    assert result.code == 2
    assert "update billing-update" in result.out
    assert "max_age: 3600 -> 300" in result.out


def test_sync_updates_disables_and_deletes(run, good, write):
    run("sync", good)
    changed = GOOD.replace("max_age: 300", "max_age: 120").replace(
        "    max_age: 60\n", "    max_age: 60\n    enabled: false\n"
    )
    path = write(changed, "changed.yaml")
    result = run("sync", path)
    assert result.code == 0
    assert "update billing-update" in result.out
    assert "disable admin-users" in result.out
    assert Policy.objects.get(policy_id="billing-update").max_age == 120
    assert Policy.objects.get(policy_id="admin-users").enabled is False

    only_one = write(GOOD.split("  - id: admin-users")[0], "one.yaml")
    result = run("sync", only_one)
    assert "delete admin-users" in result.out
    assert not Policy.objects.filter(policy_id="admin-users").exists()
    deleted = Policy.history.filter(policy_id="admin-users", history_type="-").get()
    assert "no longer in the policy files" in deleted.history_change_reason


def test_sync_of_broken_file_changes_nothing(run, good, write):
    run("sync", good)
    before = list(Policy.history.values_list("history_id", flat=True))
    rows = list(Policy.objects.values())
    result = run("sync", write(BROKEN, "broken.yaml"))
    assert result.code == 1
    assert list(Policy.history.values_list("history_id", flat=True)) == before
    assert list(Policy.objects.values()) == rows


def test_sync_dry_run_changes_nothing(run, good):
    result = run("sync", good, "--dry-run")
    assert result.code == 0
    assert "create billing-update" in result.out
    assert Policy.objects.count() == 0


def test_second_sync_is_a_no_op(run, good):
    run("sync", good)
    count = Policy.history.count()
    assert run("sync", good).code == 0
    assert Policy.history.count() == count


def test_export_round_trips_through_sync(run, good, tmp_path):
    run("sync", good)
    out = tmp_path / "exported.yaml"
    assert run("export", "-o", str(out)).code == 0
    assert run("validate", str(out)).code == 0
    count = Policy.history.count()
    assert run("plan", str(out)).code == 0
    assert run("sync", str(out)).code == 0
    assert Policy.history.count() == count


def test_export_json_to_stdout(run, good):
    run("sync", good)
    result = run("export", "--format", "json")
    data = json.loads(result.out)
    assert [p["id"] for p in data["policies"]] == ["admin-users", "billing-update"]


def test_sync_bumps_the_policy_version_once(run, good):
    from stepup.store import current_state

    before = current_state()
    run("sync", good)
    after = current_state()
    assert after.version == before.version + 1
    assert after.generation != before.generation


def test_synced_policies_are_enforced_at_once(run, good):
    from stepup.policy.model import Input
    from stepup.store import get_policy_set

    assert get_policy_set().decide(Input(action="billing.update", method="POST")).policies == (
        "stepup.default",
    )
    run("sync", good)
    assert get_policy_set().decide(Input(action="billing.update", method="POST")).policies == (
        "billing-update",
    )


# --- explain / routes ----------------------------------------------------------------------


def test_explain_traces_every_condition(run, good):
    run("sync", good)
    result = run(
        "explain",
        "--input",
        '{"action": "billing.update", "method": "POST", "verified": {"totp": 900}}',
    )
    assert result.code == 0
    assert "decision: step_up" in result.out
    assert "policy billing-update: unsatisfied" in result.out


def test_explain_against_files_and_from_a_file(run, good, tmp_path):
    data = tmp_path / "input.json"
    data.write_text('{"url": "admin:auth_user_change", "method": "POST"}')
    result = run("explain", "--input", str(data), "--policies", good)
    assert "decision: step_up" in result.out
    assert "policy admin-users: unsatisfied" in result.out


def test_explain_rejects_bad_input(run):
    result = run("explain", "--input", '{"action": 5}')
    assert result.code == 1
    last = result.err.splitlines()[-1]
    assert last.startswith("CommandError: --input: input.action: "), last  # named once, not twice
    assert "invalid --input" not in result.err


def test_routes_lists_actions_and_policies(run, good):
    result = run("routes", good, "--format", "json")
    routes = {r["name"]: r for r in json.loads(result.out)}
    assert routes["billing-update"]["action"] == "billing.update"
    assert routes["billing-update"]["policies"] == ["billing-update"]
    assert routes["admin:auth_user_change"]["policies"] == ["admin-users"]
    assert routes["plain"]["policies"] == []


def test_routes_require_coverage(run, good):
    assert run("routes", good, "--require-coverage", "admin:auth_user_*").code == 0
    result = run("routes", good, "--require-coverage", "admin:auth_group_*", "*-delete")
    assert result.code == 1
    assert "admin:auth_group_change" in result.err
    assert "thing-delete" in result.err
    assert result.err.splitlines()[-1].endswith(" unprotected routes.")


@pytest.mark.django_db(transaction=True)
def test_a_policy_change_without_its_version_bump_is_rolled_back(monkeypatch):
    """Outside any transaction, a save whose version bump fails must leave nothing behind."""
    from stepup import sync

    def broken_bump(using="default"):
        raise RuntimeError("version bump failed")

    monkeypatch.setattr(sync, "bump_policy_version", broken_bump)
    with pytest.raises(RuntimeError):
        Policy.objects.create(policy_id="p", actions=["a"], decision="deny")
    assert not Policy.objects.filter(policy_id="p").exists()
    assert not Policy.history.filter(policy_id="p").exists()


# --- methods a URL policy leaves out ----------------------------------------------------------

METHODS = """\
version: 1
policies:
  - id: writes
    match: {{urls: [{urls}], methods: [{methods}]}}
    decision: step_up
    max_age: 300
"""


@pytest.mark.parametrize("subcommand", ["validate", "routes"])
def test_a_method_restricted_url_policy_on_a_view_taking_other_writes_is_warned_about(run, write, subcommand):
    path = write(METHODS.format(urls="plain, thing-delete, post-and-delete", methods="POST"))
    result = run(subcommand, path)
    assert result.code == 0, result.err
    warning = [line for line in result.err.splitlines() if "policy 'writes'" in line]
    assert len(warning) == 1, result.err
    assert "matches only POST" in warning[0]
    assert "PUT, PATCH, DELETE on 'plain', 'thing-delete'" in warning[0]  # function views take anything
    assert "DELETE on 'post-and-delete'" in warning[0]  # a class-based view: the handlers it defines


@pytest.mark.parametrize(
    ("urls", "methods"),
    [
        ("post-only", "POST"),  # @require_POST
        ("reads-only", "GET"),  # @require_safe
        ("post-and-delete", "POST, DELETE"),
        ("plain", "GET, POST, PUT, PATCH, DELETE"),
    ],
)
def test_no_warning_when_the_policy_names_every_write_the_view_takes(run, write, urls, methods):
    result = run("validate", write(METHODS.format(urls=urls, methods=methods)))
    assert result.code == 0
    assert "policy 'writes'" not in result.err, result.err


def test_no_warning_for_a_url_policy_without_methods(run, write):
    result = run("validate", write(METHODS.replace(", methods: [{methods}]", "").format(urls="plain")))
    assert "policy 'writes'" not in result.err, result.err


def test_routes_shows_the_methods_django_decorators_let_through(run, good):
    routes = {r["name"]: r for r in json.loads(run("routes", good, "--format", "json").out)}
    assert routes["post-only"]["methods"] == ["POST"]
    assert routes["reads-only"]["methods"] == ["GET", "HEAD"]
    assert routes["post-and-delete"]["methods"] == ["POST", "DELETE"]
    assert routes["plain"]["methods"] == ["*"]


# --- wording (issue 17, polish) -----------------------------------------------------------


def test_validate_counts_in_words(run, write):
    one = write("version: 1\npolicies:\n  - id: a\n    match: {actions: [a.b]}\n    decision: deny\n")
    result = run("validate", one)
    assert result.code == 0
    assert "OK: 1 policy and 0 tests in" in result.out


def test_only_sync_says_nothing_was_changed(run, write):
    path = write(BROKEN)
    assert run("validate", path).err.splitlines()[-1] == "CommandError: 2 errors."
    assert run("sync", path).err.splitlines()[-1] == "CommandError: 2 errors; nothing was changed."


def test_an_unsupported_version_reads_as_a_sentence(run, write):
    result = run("validate", write("version: 2\npolicies: []\n"))
    assert result.code == 1
    assert "this file format has only version 1, not the number 2; write version: 1" in result.err
    assert "unsupported version the number" not in result.err
