"""A partial index on the invoices whose PDF is still pending (the dashboard's PDF queue, the stale-render sweep),
built CONCURRENTLY (hence a non-atomic migration): invoices keep being issued and rendered during the deploy, and
the older release neither knows nor minds the index."""

from django.contrib.postgres.operations import AddIndexConcurrently
from django.db import migrations, models


class Migration(migrations.Migration):

    atomic = False

    dependencies = [
        ('invoicing', '0006_billing_account_customer_directory'),
    ]

    operations = [
        AddIndexConcurrently(
            model_name='invoice',
            index=models.Index(condition=models.Q(('pdf_status', 'pending')), fields=['issued_at'], name='invoicing_pdf_pending_idx'),
        ),
    ]
