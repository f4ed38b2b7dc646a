"""Operations sees the workers' heartbeats, the event-flow dashboard and /metrics; other roles do not."""

from django.db import migrations

from apps.common.groups import grant


def grant_roles(apps, schema_editor):
    grant(apps, schema_editor, group="operations", permissions=[
        "common.view_heartbeat", "common.view_flow_dashboard",
    ])


class Migration(migrations.Migration):
    dependencies = [
        ("common", "0001_heartbeat"),
        ("consumers", "0002_roles"),
        ("auth", "0012_alter_user_first_name_max_length"),
        ("contenttypes", "0002_remove_content_type_name"),
    ]

    operations = [migrations.RunPython(grant_roles, migrations.RunPython.noop)]
