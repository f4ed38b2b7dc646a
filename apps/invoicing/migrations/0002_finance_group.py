"""The `finance` role: manages billing accounts, reads invoices and acts on them (re-render, mark as sent)."""

from django.db import migrations

from apps.common.groups import grant

FINANCE_PERMISSIONS = [
    "invoicing.view_billingaccount",
    "invoicing.add_billingaccount",
    "invoicing.change_billingaccount",
    "invoicing.view_invoice",
    # Invoices are immutable; `change` only unlocks the admin actions "Re-render PDF" and "Mark as sent".
    "invoicing.change_invoice",
    "invoicing.view_invoiceline",
]


def create_finance_group(apps, schema_editor):
    grant(apps, schema_editor, group="finance", permissions=FINANCE_PERMISSIONS)


class Migration(migrations.Migration):
    dependencies = [
        ("auth", "0012_alter_user_first_name_max_length"),
        ("contenttypes", "0002_remove_content_type_name"),
        ("invoicing", "0001_initial"),
    ]

    operations = [migrations.RunPython(create_finance_group, migrations.RunPython.noop)]
