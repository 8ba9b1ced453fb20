"""Per-language policy descriptions on the Django side: validate, storage, the admin's field, the migration."""

from __future__ import annotations

import textwrap
from io import StringIO
from pathlib import Path
from typing import Any

import pytest
from django.core.exceptions import ValidationError
from django.core.management import CommandError, call_command
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.utils import translation

from stepup import store
from stepup.i18n import localized_description
from stepup.models import DescriptionFormField, Policy
from stepup.sync import export

BY_LANGUAGE = {"en": "Payments need a fresh code.", "de": "Zahlungen brauchen einen frischen Code."}

FILE = """\
version: 1
policies:
  - id: pay
    description: {description}
    match: {{actions: [billing.update]}}
    decision: step_up
    max_age: 300
"""


def validate(tmp_path: Path, description: str) -> tuple[int, str]:
    path = tmp_path / "policies.yaml"
    path.write_text(textwrap.dedent(FILE.format(description=description)), encoding="utf-8")
    err = StringIO()
    try:
        call_command("stepup", "validate", str(path), stdout=StringIO(), stderr=err)
    except CommandError as exc:
        return exc.returncode, err.getvalue()
    return 0, err.getvalue()


def test_validate_accepts_languages_django_knows(tmp_path: Path) -> None:
    code, err = validate(tmp_path, "{en: Pay, de: Zahlen, pt-br: Pagar, zh-hans: 付款}")
    assert code == 0, err


def test_validate_rejects_a_language_django_does_not_know(tmp_path: Path) -> None:
    code, err = validate(tmp_path, "{en: Pay, xx: Zahlen}")
    assert code == 1
    assert "policies[0].description.xx: 'xx' is not a language Django knows" in err


def test_localized_description_follows_the_active_language() -> None:
    with translation.override("de"):
        assert localized_description(BY_LANGUAGE) == BY_LANGUAGE["de"]
    with translation.override("fr"):
        assert localized_description(BY_LANGUAGE) == BY_LANGUAGE["en"]
    assert localized_description(BY_LANGUAGE, "de") == BY_LANGUAGE["de"]


@pytest.mark.django_db
def test_a_stored_per_language_description_is_enforced_and_exported(policy: Any) -> None:
    store.invalidate()
    try:
        policy("pay", actions=["billing.update"], description=BY_LANGUAGE)
        assert store.get_policy_set().specs["pay"].description == BY_LANGUAGE
        text, broken = export()
        assert broken == []
        assert "Zahlungen brauchen einen frischen Code." in text
    finally:
        store.invalidate()


@pytest.mark.parametrize(
    ("typed", "value"),
    [
        ("Plain text, no quotes.", "Plain text, no quotes."),
        ('  {"en": "Pay", "de": "Zahlen"}', {"en": "Pay", "de": "Zahlen"}),
        ("", ""),
        ('"quoted" stays text', '"quoted" stays text'),
    ],
)
def test_the_admin_field_takes_text_or_a_json_object(typed: str, value: Any) -> None:
    assert DescriptionFormField(required=False).clean(typed) == value


@pytest.mark.parametrize("typed", ["{not json", '{"en": "a"', "{}x"])
def test_the_admin_field_rejects_a_broken_json_object(typed: str) -> None:
    with pytest.raises(ValidationError):
        DescriptionFormField(required=False).clean(typed)


def test_the_admin_field_shows_text_as_text_and_objects_as_json() -> None:
    field = DescriptionFormField(required=False)
    assert field.prepare_value("Pay.") == "Pay."
    assert '"de": "Zahlen"' in field.prepare_value({"en": "Pay", "de": "Zahlen"})
    assert not field.has_changed({"en": "Pay"}, '{"en": "Pay"}')
    assert field.has_changed("Pay", "Pay now")


@pytest.mark.django_db(transaction=True)
def test_the_migration_keeps_every_text_description_and_its_history() -> None:
    before = [("stepup", "0005_policy_set_generation")]
    after = [("stepup", "0006_description_by_language")]
    executor = MigrationExecutor(connection)
    executor.migrate(before)
    old = executor.loader.project_state(before).apps
    row = old.get_model("stepup", "Policy").objects.create(
        policy_id="old", description="Kept as it was.", decision="step_up", max_age=60
    )
    old.get_model("stepup", "HistoricalPolicy").objects.create(
        id=row.pk,
        policy_id="old",
        description="An older text.",
        decision="step_up",
        history_date="2026-01-01T00:00:00Z",
        updated_at="2026-01-01T00:00:00Z",
        history_type="+",
    )
    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate(after)
    new = executor.loader.project_state(after).apps
    assert new.get_model("stepup", "Policy").objects.get().description == "Kept as it was."
    assert new.get_model("stepup", "HistoricalPolicy").objects.get().description == "An older text."
    # And back: a per-language description leaves its English text.
    new.get_model("stepup", "Policy").objects.update(description=BY_LANGUAGE)
    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate(before)
    back = executor.loader.project_state(before).apps
    assert back.get_model("stepup", "Policy").objects.get().description == BY_LANGUAGE["en"]
    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate(executor.loader.graph.leaf_nodes("stepup"))
    Policy.objects.all().delete()


def admin_form(description: str) -> Any:
    from stepup.admin import PolicyAdminForm

    return PolicyAdminForm(
        data={
            "policy_id": "pay",
            "description": description,
            "actions": '["billing.update"]',
            "urls": "[]",
            "methods": "[]",
            "when": "{}",
            "decision": "step_up",
            "max_age": "300",
            "factors": "[]",
            "enabled": "on",
            "mode": "enforce",
            "change_reason": "tests",
        }
    )


@pytest.mark.django_db
def test_the_admin_form_stores_a_per_language_description() -> None:
    form = admin_form('{"en": "Pay.", "de": "Zahlen."}')
    assert form.is_valid(), form.errors
    assert form.cleaned_data["description"] == {"en": "Pay.", "de": "Zahlen."}


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("description", "says"),
    [
        ('{"en": "Pay.", "xx": "Zahlen."}', "'xx' is not a language Django knows"),
        ('{"de": "Zahlen."}', "the 'en' text is missing"),
        ('{"en": "Pay.", "DE": "Zahlen."}', "'DE' is not a language code"),
    ],
)
def test_the_admin_form_refuses_what_validate_refuses(description: str, says: str) -> None:
    form = admin_form(description)
    assert not form.is_valid()
    assert says in " ".join(form.errors.get("description", [])), form.errors
