"""Operations looks at the outbox and re-sends failed rows (`outbox.resend_outboxevent`)."""

from django.db import migrations

from apps.common.groups import grant


def grant_resend(apps, schema_editor):
    grant(apps, schema_editor, group="operations", permissions=[
        "outbox.view_outboxevent", "outbox.resend_outboxevent", "outbox.view_relayproblem",
    ])


class Migration(migrations.Migration):
    dependencies = [
        ("outbox", "0004_resend_and_relay_problems"),
        ("auth", "0012_alter_user_first_name_max_length"),
        ("contenttypes", "0002_remove_content_type_name"),
    ]

    operations = [migrations.RunPython(grant_resend, migrations.RunPython.noop)]
