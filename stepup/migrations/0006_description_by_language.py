# A policy's description may be texts by language ({"en": …, "de": …}): the column becomes
# JSON. Text can't be cast to JSON in place on every database (PostgreSQL rejects prose
# as jsonb, SQLite's JSON check constraint too), so the text moves to a new JSON column.

import stepup.models
from django.db import migrations


def text_to_json(apps, schema_editor):
    for name in ("Policy", "HistoricalPolicy"):
        model = apps.get_model("stepup", name)
        rows = model.objects.using(schema_editor.connection.alias)
        for pk, text in rows.values_list("pk", "description_text").iterator():
            rows.filter(pk=pk).update(description=text or "")


def json_to_text(apps, schema_editor):
    for name in ("Policy", "HistoricalPolicy"):
        model = apps.get_model("stepup", name)
        rows = model.objects.using(schema_editor.connection.alias)
        for pk, value in rows.values_list("pk", "description").iterator():
            text = value if isinstance(value, str) else (value or {}).get("en", "")
            rows.filter(pk=pk).update(description_text=text)


class Migration(migrations.Migration):

    dependencies = [
        ('stepup', '0005_policy_set_generation'),
    ]

    operations = [
        migrations.RenameField(model_name='policy', old_name='description', new_name='description_text'),
        migrations.RenameField(model_name='historicalpolicy', old_name='description', new_name='description_text'),
        migrations.AddField(
            model_name='policy',
            name='description',
            field=stepup.models.DescriptionField(blank=True, default=str),
        ),
        migrations.AddField(
            model_name='historicalpolicy',
            name='description',
            field=stepup.models.DescriptionField(blank=True, default=str),
        ),
        migrations.RunPython(text_to_json, json_to_text, elidable=False),
        migrations.RemoveField(model_name='policy', name='description_text'),
        migrations.RemoveField(model_name='historicalpolicy', name='description_text'),
    ]
