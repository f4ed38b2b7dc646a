"""A billing account belongs to a customer of the directory: `customer_id` becomes a one-to-one key to
KnownCustomer (same column, same values), after giving every account whose customer was never announced a
directory entry named like the account."""

from django.db import migrations, models
import django.db.models.deletion


def backfill_directory(apps, schema_editor):
    BillingAccount = apps.get_model("invoicing", "BillingAccount")
    KnownCustomer = apps.get_model("invoicing", "KnownCustomer")
    missing = BillingAccount.objects.exclude(customer_id__in=KnownCustomer.objects.values("customer_id"))
    # Revision 0: routing's revisions start at 1, so the customer's first real CustomerUpserted replaces the
    # account's name with routing's.
    KnownCustomer.objects.bulk_create(
        [KnownCustomer(customer_id=account.customer_id, name=account.name, revision=0, changed_at=account.created_at)
         for account in missing.only("customer_id", "name", "created_at").iterator()],
        batch_size=1000,
    )


class Migration(migrations.Migration):

    dependencies = [
        ("invoicing", "0005_invoice_number_past_999999"),
    ]

    operations = [
        migrations.RunPython(backfill_directory, migrations.RunPython.noop, elidable=True),
        # Name the column explicitly first, so the rename below is a rename in the model state only.
        migrations.AlterField(
            model_name="billingaccount",
            name="customer_id",
            field=models.PositiveBigIntegerField(db_column="customer_id", primary_key=True, serialize=False),
        ),
        migrations.RenameField(model_name="billingaccount", old_name="customer_id", new_name="customer"),
        migrations.AlterField(
            model_name="billingaccount",
            name="customer",
            field=models.OneToOneField(
                db_column="customer_id", help_text="A customer routing has announced (the customer directory).",
                on_delete=django.db.models.deletion.PROTECT, primary_key=True, related_name="billing_account",
                serialize=False, to="invoicing.knowncustomer",
            ),
        ),
    ]
