"""FlowSample moves here from the common app: state only. Its table, `common_flowsample`, and its rows stay where
common's 0003 created them; common's 0004 then forgets the model, also in state only, so no step drops or creates
the table. The model's content type follows it (common → ops), so its permission rows keep their ids and grants."""

from django.db import migrations, models


def content_type_to_ops(apps, schema_editor):
    _relabel(apps, schema_editor, old="common", new="ops")


def content_type_to_common(apps, schema_editor):
    _relabel(apps, schema_editor, old="ops", new="common")


def _relabel(apps, schema_editor, *, old, new):
    content_types = apps.get_model("contenttypes", "ContentType").objects.using(schema_editor.connection.alias)
    if not content_types.filter(app_label=new, model="flowsample").exists():
        content_types.filter(app_label=old, model="flowsample").update(app_label=new)


class Migration(migrations.Migration):

    initial = True

    dependencies = [
        ("common", "0003_flowsample"),
        ("contenttypes", "0002_remove_content_type_name"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.CreateModel(
                    name='FlowSample',
                    fields=[
                        ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                        ('at', models.DateTimeField(db_index=True)),
                        ('window_seconds', models.FloatField(help_text="The span this sample's counts cover (normally 60 s).")),
                        ('published', models.IntegerField(help_text="Outbox rows that left the relay's queue in the window.", null=True)),
                        ('backlog', models.IntegerField(help_text='Outbox rows waiting for the relay at `at`.')),
                        ('oldest_pending_age_s', models.FloatField(help_text='Age of the oldest waiting outbox row at `at` (0: none).')),
                        ('latency_p50_s', models.FloatField(help_text='Outbox row created → applied by a consumer group.', null=True)),
                        ('latency_p95_s', models.FloatField(null=True)),
                        ('lag', models.JSONField(default=dict, help_text='Consumer group → total lag, from live heartbeats.')),
                        ('dead_letters', models.IntegerField(help_text='Unresolved dead letters at `at`.')),
                        ('dead_lettered', models.IntegerField(help_text='Dead letters recorded in the window.')),
                    ],
                    options={
                        'db_table': 'common_flowsample',
                        'ordering': ['at'],
                    },
                ),
            ],
        ),
        migrations.RunPython(content_type_to_ops, content_type_to_common),
    ]
