"""The policy store: bad files, bad rows, typos, half-done and concurrent syncs.

None of them may open a path the intended policies close: a file with any
error changes nothing; a row that no longer validates is enforced as a
stricter stand-in; an action nobody's policy names gets the default step-up;
a sync is all or nothing.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator
from io import StringIO
from pathlib import Path
from typing import Any

import pytest
from django.core.management import call_command
from django.db import connection, connections, transaction
from django.db.models import QuerySet
from django.test import Client
from django_otp.plugins.otp_totp.models import TOTPDevice

from stepup import store
from stepup.models import PendingChallenge, Policy, PolicySetState
from stepup.policy.model import SPEC_FIELDS, Input
from stepup.sync import load, sync
from stepup.testing import stepup_verified
from tests.security import views
from tests.security.conftest import DEMO_POLICIES, LOCK_WAITS, wait_for_a_lock_wait
from tests.security.test_routing import BILLING, BILLING_EDIT, challenged, run_stepup
from tests.shop.models import BillingProfile

pytestmark = pytest.mark.django_db

HistoricalPolicy = Policy.history.model


def snapshot() -> tuple[Any, ...]:
    """Everything a sync may touch: rows, history, the version."""
    rows = tuple(Policy.objects.order_by("policy_id").values_list(*("policy_id", *SPEC_FIELDS)))
    version = PolicySetState.objects.values_list("version", flat=True).first()
    return rows, HistoricalPolicy.objects.count(), version


GOOD = DEMO_POLICIES.read_text()
ONE_GOOD_POLICY = """\
version: 1
policies:
  - id: billing-update
    description: x
    match: {actions: [billing.update]}
    decision: step_up
    max_age: 300
"""
BAD_FILES = {
    "yaml syntax": "version: 1\npolicies: [\n",
    "unknown key": GOOD.replace("    decision: deny\n", "    decison: deny\n    decision: deny\n", 1),
    "duplicate key": GOOD.replace("    max_age: 300\n", "    max_age: 300\n    max_age: 30000\n", 1),
    "duplicate id": GOOD.replace(
        "policies:\n", "policies:\n" + ONE_GOOD_POLICY.split("policies:\n", 1)[1], 1
    ),
    "bad cidr": GOOD.replace('"198.51.100.0/24"', '"198.51.100.0/33"'),
    "negative age": GOOD.replace("max_age: 300", "max_age: -1", 1),
    "unknown factor": GOOD.replace("factors: [totp, webauthn, static]", "factors: [totp, sms]"),
    "url typo": GOOD.replace('"admin:auth_user_password_change"', '"admin:auth_user_pasword_change"'),
    "unknown method": GOOD.replace("methods: [POST, PUT, PATCH, DELETE]", "methods: [POST, PROPFIND]", 1),
    "decision allow": GOOD.replace("decision: deny", "decision: allow", 1),
    "mode typo": GOOD.replace("mode: shadow", "mode: shadows"),
    "empty match": GOOD.replace(
        "      actions: [billing.update]\n      methods: [POST, PUT, PATCH, DELETE]\n",
        "      methods: [POST]\n",
        1,
    ),
    "anchors": GOOD.replace("factors: [totp, webauthn, static]", "factors: &f [totp]") + "\n# *f\n",
    "alias bomb": 'version: 1\na: &a ["x","x","x","x","x","x","x","x","x"]\nb: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]\n'
    "c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]\nd: [*c,*c,*c,*c,*c,*c,*c,*c,*c]\npolicies: []\n",
    "empty": "",
    "not a mapping": "- just\n- a list\n",
    "json duplicate key": '{"version": 1, "version": 1, "policies": []}',
    "full-width operand": GOOD.replace("amount: {gt: 1000}", 'amount: {gt: "\uff11\uff10\uff10\uff10"}'),
    "yaml 1.1 boolean": GOOD.replace("    mode: shadow\n", "    mode: shadow\n    enabled: off\n"),
    "octal max_age": GOOD.replace("max_age: 300", "max_age: 0300", 1),
    "nul in a description": GOOD.replace(
        "description: Changing billing details", 'description: "\\0Changing billing details', 1
    ).replace("from the last 5 minutes.\n", 'from the last 5 minutes."\n', 1),
}
PYTHON_TAGS = [
    "!!python/object/apply:os.system ['touch {marker}']",
    "!!python/object/apply:subprocess.check_output [['touch', '{marker}']]",
    "!!python/object/new:os.system ['touch {marker}']",
    "!!python/name:os.system",
    "!!python/module:os",
    "!!binary dG91Y2g=",
    "!!set {{a: null}}",
    "!Custom touch",
]


@pytest.fixture
def synced(db: Any) -> tuple[Any, ...]:
    sync(load([DEMO_POLICIES]), reason="tests/security")
    store.invalidate()
    return snapshot()


@pytest.mark.parametrize("name", sorted(BAD_FILES))
@pytest.mark.parametrize("subcommand", ["sync", "validate"])
def test_a_bad_file_changes_nothing(tmp_path: Path, synced: Any, name: str, subcommand: str) -> None:
    path = tmp_path / ("policies.json" if name.startswith("json") else "policies.yaml")
    path.write_text(BAD_FILES[name])
    code, _, err = run_stepup(subcommand, str(path))
    assert code == 1, err
    assert "error" in err
    assert snapshot() == synced


@pytest.mark.parametrize("tag", PYTHON_TAGS)
def test_a_yaml_tag_never_builds_a_python_object(tmp_path: Path, synced: Any, tag: str) -> None:
    marker = tmp_path / "pwned"
    path = tmp_path / "policies.yaml"
    path.write_text(
        GOOD.replace(
            "description: Changing billing details",
            f"description: {tag.format(marker=marker)}\n    x: Changing billing details",
            1,
        ).replace("\n    x: Changing", "\n    # Changing", 1)
    )
    code, _, err = run_stepup("sync", str(path))
    assert code == 1 and "tag" in err.lower()
    assert not marker.exists()
    assert snapshot() == synced


def test_a_tag_inside_a_value_is_refused_too(tmp_path: Path, synced: Any) -> None:
    marker = tmp_path / "pwned"
    path = tmp_path / "policies.yaml"
    path.write_text(
        GOOD.replace("max_age: 300", f"max_age: !!python/object/apply:os.system ['touch {marker}']", 1)
    )
    assert run_stepup("sync", str(path))[0] == 1
    assert not marker.exists()
    assert snapshot() == synced


def test_a_full_width_operand_is_refused_as_the_engine_refuses_it_in_an_attribute(
    tmp_path: Path, synced: Any
) -> None:
    """Full-width digits are no number to the engine at run time, so none in a file either."""
    path = tmp_path / "policies.yaml"
    path.write_text(GOOD.replace("amount: {gt: 1000}", 'amount: {gt: "\uff11\uff10\uff10\uff10"}'))
    code, _, err = run_stepup("sync", str(path))
    assert code == 1
    assert (
        "when.attrs.amount.gt: expected a number, or a string holding a decimal number in ASCII digits" in err
    )
    assert snapshot() == synced


# --- malformed rows -----------------------------------------------------------------------

ROW_DAMAGE = [
    {"when": {"roles": {"any_off": ["auditor"]}}},
    {"when": {"origin": {"not_in": ["not-a-cidr"]}}},
    {"factors": ["sms"]},
    {"methods": ["POST", "PROPFIND"]},
    {"methods": "POST"},
    {"decision": "allow"},
    {"mode": "shadows"},
    {"max_age": None},
    {"actions": "billing.update"},
    {"actions": ["billing.update", 7]},
    {"when": {"attrs": {"amount": {"gt": "a lot"}}}},
    {"when": {"attrs": {"amount": {"gt": "\uff11\uff10\uff10\uff10"}}}},
    {"when": {"attrs": {"amount": {"gt": "1" * 101}}}},
    {"description": "Changing billing\x1b[2J details"},
    {"when": "always"},
]


@pytest.mark.parametrize("damage", ROW_DAMAGE, ids=lambda d: "-".join(f"{k}={v}" for k, v in d.items()))
def test_a_damaged_row_is_enforced_as_a_stricter_stand_in(
    client: Client, django_user_model: Any, synced: Any, damage: dict[str, Any]
) -> None:
    """A row edited behind the loader's back (a raw UPDATE): still protects what it protected."""
    user = django_user_model.objects.create_user("erin", password="pw")
    TOTPDevice.objects.create(user=user, name="Phone", confirmed=True)
    client.force_login(user)
    Policy.objects.filter(policy_id="billing-update").update(**damage)  # no save(): no validation
    PolicySetState.objects.filter(pk=1).update(version=999)
    store.invalidate()
    with stepup_verified(client, user):  # even a verified user: the stand-in wants a fresh code
        assert challenged(client.post(BILLING_EDIT, BILLING))
    assert not BillingProfile.objects.exists()


# --- typos ------------------------------------------------------------------------------------


@pytest.mark.urls("tests.security.urls")
@pytest.mark.parametrize(
    "fields",
    [
        {"actions": ["things.chnage"]},  # a typo in the file
        {"actions": ["thing.*"]},  # a glob that misses
        {"actions": ["things.change"], "enabled": False},
        {"actions": ["things.change"], "mode": "shadow"},
    ],
    ids=["typo", "glob", "disabled", "shadow"],
)
@pytest.mark.parametrize("path", ["/t/decorated/", "/t/deep/", "/t/thing/"])
def test_an_action_no_enforced_policy_names_gets_the_default_step_up(
    client: Client, django_user_model: Any, policy: Any, fields: dict[str, Any], path: str
) -> None:
    """Whether the typo is in the file or the code, the declared action is held to DEFAULT_MAX_AGE."""
    user = django_user_model.objects.create_user("erin", password="pw")
    TOTPDevice.objects.create(user=user, name="Phone", confirmed=True)
    client.force_login(user)
    policy("things", decision="deny", **fields)  # would deny outright, had it matched
    response = client.post(path)
    assert challenged(response)
    challenge = PendingChallenge.objects.get().data
    assert (challenge["max_age"], challenge["policies"]) == (300, ["stepup.default"])
    assert views.CALLS == []


@pytest.mark.urls("tests.security.urls")
def test_a_code_side_action_typo_is_reported_by_validate(tmp_path: Path) -> None:
    path = tmp_path / "policies.yaml"
    path.write_text(ONE_GOOD_POLICY.replace("billing.update", "things.chnage"))
    code, _, err = run_stepup("validate", str(path))
    assert code == 0
    assert "declared action 'things.change' has no policy" in err


def test_a_url_name_typo_is_refused_with_a_suggestion(tmp_path: Path, synced: Any) -> None:
    path = tmp_path / "policies.yaml"
    path.write_text(GOOD.replace('"admin:auth_user_password_change"', '"admin:auth_user_pasword_change"'))
    code, _, err = run_stepup("sync", str(path))
    assert code == 1
    assert "did you mean 'admin:auth_user_password_change'" in err
    assert snapshot() == synced


# --- a sync that fails halfway ---------------------------------------------------------------


def test_a_sync_interrupted_halfway_changes_nothing(
    tmp_path: Path, synced: Any, monkeypatch: pytest.MonkeyPatch, client: Client, django_user_model: Any
) -> None:
    changed = GOOD.replace("max_age: 300", "max_age: 30").replace(
        "decision: deny", "decision: step_up\n    max_age: 1", 1
    )
    path = tmp_path / "policies.yaml"
    path.write_text(changed)
    # sync writes in bulk: the policies first, then their history rows. Fail at the history.
    original_update, original_create = QuerySet.update, QuerySet.bulk_create
    written: list[int] = []

    def update(self: QuerySet[Any], **kwargs: Any) -> int:
        count = original_update(self, **kwargs)
        if self.model is Policy:
            written.append(count)
        return count

    def bulk_create(self: QuerySet[Any], objs: Any, *args: Any, **kwargs: Any) -> Any:
        if self.model is Policy.history.model:  # type: ignore[attr-defined]
            raise RuntimeError("the database went away halfway")
        return original_create(self, objs, *args, **kwargs)

    monkeypatch.setattr(QuerySet, "update", update)
    monkeypatch.setattr(QuerySet, "bulk_create", bulk_create)
    with pytest.raises(RuntimeError):
        call_command("stepup", "sync", str(path), stdout=StringIO(), stderr=StringIO())
    assert sum(written) > 0  # rows were written before the failure ...
    assert snapshot() == synced  # ... and rolled back with their history and the version bump
    monkeypatch.setattr(QuerySet, "update", original_update)
    monkeypatch.setattr(QuerySet, "bulk_create", original_create)
    user = django_user_model.objects.create_user("audrey", password="pw")
    from django.contrib.auth.models import Group

    user.groups.add(Group.objects.get_or_create(name="auditor")[0])
    client.force_login(user)
    with stepup_verified(client, user):
        assert client.post(BILLING_EDIT, BILLING).status_code == 403  # the deny still stands
    assert not BillingProfile.objects.exists()


def test_a_sync_interrupted_by_a_deletion_changes_nothing(
    tmp_path: Path, synced: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "policies.yaml"
    path.write_text(ONE_GOOD_POLICY)  # deletes every other policy

    original = QuerySet._raw_delete  # type: ignore[attr-defined]
    deleted: list[int] = []

    def failing_delete(self: QuerySet[Any], using: str) -> int:  # sync deletes with plain DELETEs
        count = original(self, using)
        deleted.append(count)
        if self.model is Policy:
            raise RuntimeError("interrupted")
        return count

    monkeypatch.setattr(QuerySet, "_raw_delete", failing_delete)
    with pytest.raises(RuntimeError):
        call_command("stepup", "sync", str(path), stdout=StringIO(), stderr=StringIO())
    assert deleted and deleted[0] > 0  # rows were deleted before the failure ...
    assert snapshot() == synced  # ... and are back


# --- concurrent syncs ---------------------------------------------------------------------------


@pytest.fixture
def two_files(tmp_path: Path) -> Iterator[tuple[Path, Path]]:
    a = tmp_path / "a.yaml"
    b = tmp_path / "b.yaml"
    a.write_text(GOOD.replace("max_age: 300", "max_age: 60"))
    b.write_text(
        GOOD.replace("max_age: 300", "max_age: 600").replace("    mode: shadow\n", "    mode: enforce\n")
    )
    yield a, b


@pytest.mark.django_db(transaction=True)
def test_concurrent_syncs_are_serialised_or_fail_cleanly(two_files: tuple[Path, Path]) -> None:
    """SQLite: one writer at a time, or a clean "database is locked"; never a mix of the two files."""
    sync(load([DEMO_POLICIES]), reason="base")
    expected = {}
    for path in two_files:
        plan = load([path])
        expected[path] = {s.id: (s.max_age, s.mode) for s in plan.policies}
    before_history = HistoricalPolicy.objects.count()
    outcomes: dict[Path, Any] = {}
    barrier = threading.Barrier(len(two_files))

    def run(path: Path) -> None:
        try:
            barrier.wait()
            outcomes[path] = sync(load([path]), reason=f"sync {path.name}")
        except Exception as exc:
            outcomes[path] = exc
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(p,)) for p in two_files]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    succeeded = [p for p, result in outcomes.items() if not isinstance(result, Exception)]
    assert succeeded, outcomes
    state = {row.policy_id: (row.max_age, row.mode) for row in Policy.objects.all()}
    assert state in [expected[p] for p in succeeded]  # exactly one file's policies, never a mix
    per_sync = {p: sum(1 for c in outcomes[p].changes) for p in succeeded}
    assert HistoricalPolicy.objects.count() == before_history + sum(per_sync.values())
    for p in set(two_files) - set(succeeded):
        assert "locked" in str(outcomes[p]).lower()


@pytest.mark.django_db(transaction=True)
def test_a_sync_that_waited_for_another_plans_from_what_that_one_committed(tmp_path: Path) -> None:
    """The waiting sync reads the rows as they are once it holds the lock, not as they were.

    Under REPEATABLE READ (a MySQL or MariaDB server's own default, when a site
    keeps it), a transaction's plain reads see the snapshot of its first read,
    taken before the wait: it would neither see nor delete a policy the other
    sync added meanwhile, and report the database equal to its file.
    """
    if connection.vendor not in LOCK_WAITS:
        pytest.skip("SQLite has no row locks; tests/mysql runs this on MariaDB")
    only_billing = policy_file(tmp_path, ONE_GOOD_POLICY, "a.yaml")
    sync(only_billing, reason="base")
    outcomes: list[Any] = []

    def waiting_sync() -> None:
        try:
            outcomes.append(sync(only_billing, reason="second"))
        except Exception as exc:
            outcomes.append(exc)
        finally:
            connection.close()

    waiting = threading.Thread(target=waiting_sync)
    with transaction.atomic():  # another sync, holding the lock
        list(PolicySetState.objects.select_for_update().filter(pk=1))
        waiting.start()
        wait_for_a_lock_wait()
        Policy.objects.create(policy_id="added-meanwhile", actions=["reports.export"], max_age=60)
    waiting.join(30)
    assert [c.policy_id for c in outcomes[0].changes] == ["added-meanwhile"], outcomes
    assert list(Policy.objects.values_list("policy_id", flat=True)) == ["billing-update"]


# --- the set in force is the database's, whatever happened to the database ------------------------
#
# A process keeps its compiled set until the database holds a different one. The
# version number alone can't say so: a flush or a restore from a backup sets it back,
# and later changes reach the same number again with other policies.

ROOT = Path(__file__).resolve().parents[2]
DENY_BILLING = ONE_GOOD_POLICY.replace("decision: step_up\n    max_age: 300", "decision: deny")


def policy_file(tmp_path: Path, text: str, name: str) -> Any:
    path = tmp_path / name
    path.write_text(text)
    return load([path])


def billing_outcome() -> str:
    """What this process enforces on ``billing.update`` now."""
    return store.get_policy_set().decide(Input(action="billing.update", method="POST")).outcome


def test_two_transactional_tests_in_a_row_each_enforce_what_they_synced(tmp_path: Path) -> None:
    """A user's suite: the flush between two transactional tests sets the version back to 0."""
    (tmp_path / "a.yaml").write_text(ONE_GOOD_POLICY)
    (tmp_path / "b.yaml").write_text(DENY_BILLING)
    suite = tmp_path / "test_users_suite.py"
    suite.write_text(
        textwrap.dedent(
            f"""
            import pytest
            from stepup import store
            from stepup.policy.model import Input
            from stepup.sync import load, sync


            def outcome():
                return store.get_policy_set().decide(Input(action="billing.update", method="POST")).outcome


            @pytest.mark.django_db(transaction=True)
            def test_one_syncs_set_a():
                sync(load([{str(tmp_path / "a.yaml")!r}]), reason="a")
                assert outcome() == "step_up"


            @pytest.mark.django_db(transaction=True)
            def test_two_syncs_set_b_to_the_same_version():
                sync(load([{str(tmp_path / "b.yaml")!r}]), reason="b")
                assert outcome() == "deny"
            """
        )
    )
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--ds=tests.settings", str(suite)],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert "2 passed" in result.stdout


@pytest.fixture
def polling(settings: Any) -> None:
    """No shared cache and no reload interval: every call reads the state row, as after an interval."""
    settings.STEPUP = {**settings.STEPUP, "RELOAD_INTERVAL": 0}


def restore(rows: list[Policy], state: PolicySetState, using: str = "default") -> None:
    """Put back a backup as a restore does: raw rows, no signals, no version bump."""
    with transaction.atomic(using=using), connections[using].cursor() as cursor:
        cursor.execute(f"DELETE FROM {Policy._meta.db_table}")
        PolicySetState.objects.using(using).all().delete()
        Policy.objects.using(using).bulk_create(rows)
        PolicySetState.objects.using(using).bulk_create([state])


@pytest.mark.django_db(transaction=True)
def test_a_database_restored_from_an_older_backup_is_enforced(tmp_path: Path, polling: None) -> None:
    sync(policy_file(tmp_path, ONE_GOOD_POLICY, "a.yaml"), reason="a")
    backup = list(Policy.objects.all()), PolicySetState.objects.get()
    sync(policy_file(tmp_path, DENY_BILLING, "b.yaml"), reason="b")
    assert billing_outcome() == "deny"
    restore(*backup)
    # Before this process looks again, a change brings the version back to the number it knows.
    sync(policy_file(tmp_path, ONE_GOOD_POLICY.replace("max_age: 300", "max_age: 30"), "c.yaml"), reason="c")
    assert PolicySetState.objects.get().version == 2
    assert billing_outcome() == "step_up"
    assert store.get_policy_set().specs["billing-update"].max_age == 30
    restore(*backup)
    assert billing_outcome() == "step_up"
    assert store.get_policy_set().specs["billing-update"].max_age == 300


class SecondDatabase:
    """Routes stepup's models to the ``second`` database."""

    def db_for_write(self, model: Any, **hints: Any) -> str | None:
        return "second" if model._meta.app_label == "stepup" else None

    db_for_read = db_for_write


@pytest.mark.django_db(transaction=True, databases=["default", "second"])
def test_two_databases_at_the_same_version_are_told_apart(
    tmp_path: Path, polling: None, settings: Any
) -> None:
    sync(policy_file(tmp_path, ONE_GOOD_POLICY, "a.yaml"), reason="a")
    sync(policy_file(tmp_path, DENY_BILLING, "b.yaml"), reason="b", using="second")
    versions = {alias: PolicySetState.objects.using(alias).get().version for alias in ("default", "second")}
    assert versions == {"default": 1, "second": 1}
    assert billing_outcome() == "step_up"
    settings.DATABASE_ROUTERS = [f"{__name__}.SecondDatabase"]
    assert billing_outcome() == "deny"


# --- the admin ------------------------------------------------------------------------------------


def test_a_stolen_staff_session_cannot_loosen_policies_in_the_admin(
    client: Client, django_user_model: Any, synced: Any
) -> None:
    root = django_user_model.objects.create_superuser("root", "root@example.com", "pw-root-1")
    TOTPDevice.objects.create(user=root, name="Phone", confirmed=True)
    client.force_login(root)
    row = Policy.objects.get(policy_id="billing-update")
    history = row.history.first()
    attempts = [
        (
            f"/admin/stepup/policy/{row.pk}/change/",
            {"policy_id": row.policy_id, "enabled": "", "decision": "step_up"},
        ),
        (f"/admin/stepup/policy/{row.pk}/delete/", {"post": "yes"}),
        ("/admin/stepup/policy/", {"action": "delete_selected", "_selected_action": [row.pk], "post": "yes"}),
        ("/admin/stepup/policy/add/", {"policy_id": "allow-all", "decision": "step_up", "max_age": "999999"}),
        (f"/admin/stepup/policy/{row.pk}/history/{history.pk}/", {"enabled": ""}),
    ]
    for url, data in attempts:
        response = client.post(url, data)
        assert challenged(response), url
    assert snapshot() == synced
