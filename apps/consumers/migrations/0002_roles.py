"""Roles for the dead-letter ledger: operations replays, discards and edits; finance may only look.

Dispatchers get nothing here: routing's migration gives them exactly routing and the read-only outbox.
"""

from django.db import migrations

from apps.common.groups import grant

VIEW = "consumers.view_deadletter"


def grant_roles(apps, schema_editor):
    grant(apps, schema_editor, group="operations", permissions=[
        VIEW, "consumers.replay_deadletter", "consumers.discard_deadletter", "consumers.edit_deadletter",
    ])
    grant(apps, schema_editor, group="finance", permissions=[VIEW])


class Migration(migrations.Migration):
    dependencies = [
        ("consumers", "0001_initial"),
        ("auth", "0012_alter_user_first_name_max_length"),
        ("contenttypes", "0002_remove_content_type_name"),
    ]

    operations = [migrations.RunPython(grant_roles, migrations.RunPython.noop)]
