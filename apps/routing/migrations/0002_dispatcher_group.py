"""The `dispatcher` role: manages routing's data, reads the outbox; no invoicing, no dead-letter replay, no deletes."""

from django.db import migrations

from apps.common.groups import grant

DISPATCHER_PERMISSIONS = [
    *(f"routing.{verb}_{model}" for model in ("depot", "truck", "customer", "route") for verb in ("add", "change", "view")),
    # Stops are written only by route calculation; dispatchers see them on the route.
    "routing.view_routestop",
    "outbox.view_outboxevent",
]


def create_dispatcher_group(apps, schema_editor):
    grant(apps, schema_editor, group="dispatcher", permissions=DISPATCHER_PERMISSIONS)


class Migration(migrations.Migration):
    dependencies = [
        ("auth", "0012_alter_user_first_name_max_length"),
        ("contenttypes", "0002_remove_content_type_name"),
        ("outbox", "0001_initial"),
        ("routing", "0001_initial"),
    ]

    operations = [migrations.RunPython(create_dispatcher_group, migrations.RunPython.noop)]
