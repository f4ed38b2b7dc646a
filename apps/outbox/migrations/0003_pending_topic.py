"""The relay's queue keeps per-key order per (topic, key), the lock `publish` takes, not per key alone.

Rows queued at migration time get their topic from their outbox row. During a rolling deploy the previous
release still inserts `(id, key)` only: a trigger fills the topic from the outbox row in that case (it fires
only when the topic is missing, so the new release's inserts do not pay for it). Drop it once no release
older than this one runs.
"""

from django.db import migrations, models

FILL_TOPIC = """
CREATE FUNCTION outbox_pending_fill_topic() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    SELECT o.topic INTO NEW.topic FROM outbox_outboxevent o WHERE o.id = NEW.id;
    RETURN NEW;
END $$;
CREATE TRIGGER outbox_pending_fill_topic BEFORE INSERT ON outbox_pending
    FOR EACH ROW WHEN (NEW.topic IS NULL) EXECUTE FUNCTION outbox_pending_fill_topic();
"""

DROP_FILL_TOPIC = """
DROP TRIGGER outbox_pending_fill_topic ON outbox_pending;
DROP FUNCTION outbox_pending_fill_topic();
"""


class Migration(migrations.Migration):

    dependencies = [
        ("outbox", "0002_pending_queue"),
    ]

    operations = [
        migrations.AddField(
            model_name="pendingevent", name="topic", field=models.CharField(max_length=200, null=True),
        ),
        migrations.RunSQL(
            "UPDATE outbox_pending q SET topic = o.topic FROM outbox_outboxevent o WHERE o.id = q.id",
            reverse_sql=migrations.RunSQL.noop,
        ),
        migrations.AlterField(
            model_name="pendingevent", name="topic", field=models.CharField(max_length=200),
        ),
        migrations.RunSQL(FILL_TOPIC, reverse_sql=DROP_FILL_TOPIC),
        migrations.AddIndex(
            model_name="pendingevent",
            index=models.Index(fields=["topic", "key", "event"], name="outbox_pending_topic_key_idx"),
        ),
        migrations.RemoveIndex(model_name="pendingevent", name="outbox_pending_key_id_idx"),
    ]
