"""After a policy change a process validates and compiles only the rows that changed, and decides alike."""

from __future__ import annotations

from typing import Any

import pytest
from django.db.models import F

from stepup import store
from stepup.models import Policy, PolicySetState, new_generation
from stepup.policy import engine
from stepup.policy.model import Input

pytestmark = pytest.mark.django_db(transaction=True)  # committed changes, as other processes see them


@pytest.fixture(autouse=True)
def _fresh(settings: Any) -> Any:
    settings.STEPUP = {"RELOAD_INTERVAL": 0, "CACHE": None}
    store.invalidate()
    yield
    store.invalidate()


@pytest.fixture
def counted(monkeypatch: Any) -> dict[str, list[str]]:
    """The ids validated and compiled from now on."""
    seen: dict[str, list[str]] = {"validated": [], "compiled": []}
    validate, compile_one = store.validate_policy, engine._compile_policy

    def validating(data: dict[str, Any], **kwargs: Any) -> Any:
        seen["validated"].append(data["id"])
        return validate(data, **kwargs)

    def compiling(spec: Any) -> Any:
        seen["compiled"].append(spec.id)
        return compile_one(spec)

    monkeypatch.setattr(store, "validate_policy", validating)
    monkeypatch.setattr(engine, "_compile_policy", compiling)
    return seen


def policies(n: int) -> None:
    for i in range(n):
        Policy.objects.create(policy_id=f"p{i:03}", actions=[f"act.{i}"], decision="step_up", max_age=60 + i)


def decisions(policy_set: Any, n: int) -> list[tuple[str, tuple[str, ...]]]:
    out = []
    for i in range(n):
        decision = policy_set.decide(Input(action=f"act.{i}", method="POST", verified={"totp": 100}))
        out.append((decision.outcome, decision.policies))
    return out


def test_one_changed_policy_is_the_only_one_validated_and_compiled(counted: dict[str, list[str]]) -> None:
    policies(50)
    store.get_policy_set()
    counted["validated"].clear(), counted["compiled"].clear()
    row = Policy.objects.get(policy_id="p007")
    row.max_age = 10
    row.save()
    Policy.objects.get(policy_id="p011").delete()
    Policy.objects.create(policy_id="p999", actions=["act.new"], decision="deny")
    reloaded = store.get_policy_set()
    assert sorted(counted["validated"]) == ["p007", "p999"]
    assert [i for i in counted["compiled"] if not i.startswith("stepup.")] == ["p007", "p999"]
    assert "p011" not in reloaded.specs and reloaded.specs["p007"].max_age == 10
    store.invalidate()
    full = store.get_policy_set()  # compiled from scratch
    assert decisions(reloaded, 50) == decisions(full, 50)
    assert reloaded.specs == full.specs


def test_a_row_changed_behind_the_orms_back_is_seen(counted: dict[str, list[str]]) -> None:
    policies(5)
    store.get_policy_set()
    Policy.objects.filter(policy_id="p002").update(decision="deny", max_age=None)  # no save(), no timestamp
    PolicySetState.objects.filter(pk=1).update(version=F("version") + 1, generation=new_generation())
    store._store.recheck()
    assert store.get_policy_set().decide(Input(action="act.2", method="POST")).outcome == "deny"


def test_invalidate_recompiles_everything(counted: dict[str, list[str]]) -> None:
    policies(5)
    store.get_policy_set()
    counted["validated"].clear()
    store.invalidate()
    store.get_policy_set()
    assert len(counted["validated"]) == 5


def test_a_json_column_changed_behind_the_orms_back_is_seen_and_only_its_row_is_compiled(
    counted: dict[str, list[str]],
) -> None:
    """The JSON columns are compared as the database's text, not decoded: a change there still counts."""
    policies(5)
    store.get_policy_set()
    counted["validated"].clear()
    Policy.objects.filter(policy_id="p003").update(actions=["act.moved"], factors=["webauthn"])
    PolicySetState.objects.filter(pk=1).update(version=F("version") + 1, generation=new_generation())
    store._store.recheck()
    reloaded = store.get_policy_set()
    assert counted["validated"] == ["p003"]
    assert (reloaded.specs["p003"].actions, reloaded.specs["p003"].factors) == (("act.moved",), ("webauthn",))
    assert reloaded.decide(Input(action="act.3", method="POST")).policies == ("stepup.default",)
    assert reloaded.decide(Input(action="act.moved", method="POST")).policies == ("p003",)


def test_the_same_content_written_as_other_text_decides_alike(counted: dict[str, list[str]]) -> None:
    from django.db import connection

    policies(5)
    before = store.get_policy_set()
    counted["validated"].clear()
    table = connection.ops.quote_name(Policy._meta.db_table)
    with connection.cursor() as cursor:  # what a hand-written UPDATE leaves: other spacing, same JSON
        cursor.execute(f"UPDATE {table} SET actions = %s WHERE policy_id = %s", ['[ "act.4" ]', "p004"])
    PolicySetState.objects.filter(pk=1).update(version=F("version") + 1, generation=new_generation())
    store._store.recheck()
    reloaded = store.get_policy_set()
    # Other text is a recompile at most (none on PostgreSQL, whose jsonb keeps no spacing).
    assert counted["validated"] in ([], ["p004"])
    assert reloaded.specs == before.specs
    assert decisions(reloaded, 5) == decisions(before, 5)
