"""Where each topic's queue starts, so a claim skips a held (refused) topic's rows without reading them.

Built concurrently: the queue is written by every business transaction, which a plain CREATE INDEX would block.
"""

from django.contrib.postgres.operations import AddIndexConcurrently
from django.db import migrations, models


class Migration(migrations.Migration):
    atomic = False

    dependencies = [
        ("outbox", "0006_broker_marks"),
    ]

    operations = [
        AddIndexConcurrently(
            model_name="pendingevent",
            index=models.Index(fields=["topic", "event"], name="outbox_pending_topic_id_idx"),
        ),
    ]
