"""Finance may look up the customer directory (it is written only by routing's CustomerUpserted events)."""

from django.db import migrations

from apps.common.groups import grant


def grant_directory(apps, schema_editor):
    grant(apps, schema_editor, group="finance", permissions=["invoicing.view_knowncustomer"])


class Migration(migrations.Migration):
    dependencies = [
        ("auth", "0012_alter_user_first_name_max_length"),
        ("contenttypes", "0002_remove_content_type_name"),
        ("invoicing", "0003_known_customer"),
    ]

    operations = [migrations.RunPython(grant_directory, migrations.RunPython.noop)]
