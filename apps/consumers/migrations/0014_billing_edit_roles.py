"""Four eyes on billed fields: finance approves (or rejects) an edit of a dead letter's billing or identity fields;
operations, who propose edits, and finance see the edits."""

from django.db import migrations

from apps.common.groups import grant

VIEW = "consumers.view_deadletteredit"


def grant_roles(apps, schema_editor):
    grant(apps, schema_editor, group="finance", permissions=[VIEW, "consumers.approve_billing_edit"])
    grant(apps, schema_editor, group="operations", permissions=[VIEW])


class Migration(migrations.Migration):
    dependencies = [
        ("consumers", "0013_deadletter_edit_four_eyes"),
        ("auth", "0012_alter_user_first_name_max_length"),
        ("contenttypes", "0002_remove_content_type_name"),
    ]

    operations = [migrations.RunPython(grant_roles, migrations.RunPython.noop)]
