"""A dead letter is known by what its message is, never by where it sat: one row per group and event id, or, for a
message without a readable event id, per group and digest of its bytes (was: per group, topic, partition and
offset, which a rebuilt broker hands to new, different events).

Rows from before: the ones without an event id get the digest of their stored bytes; the rows of one message and
group (an event re-published at a new offset got a second row) become one. The row kept is the first unresolved
head, else the first unresolved row, else the first row: the message's fate is the one of the copy that still
waits. It takes over the others' history, what was parked behind them waits behind it (or behind its own head),
and the others are deleted. The first ALTER TABLE holds the ledger's table until the migration commits (a
ledger is small: consumers of the old code wait a moment, then meet the new constraints and record minimally).
"""

from django.db import migrations, models
from django.db.models import Count

from apps.consumers.decoding import message_digest
from apps.consumers.models import decode_headers

UNRESOLVED = ("pending", "retrying", "replaying")


def merge_copies(apps, schema_editor):
    DeadLetter = apps.get_model("consumers", "DeadLetter")
    DeadLetterReplay = apps.get_model("consumers", "DeadLetterReplay")
    schema_editor.execute("SET CONSTRAINTS ALL IMMEDIATE")  # no pending FK checks before the unique indexes
    for row in DeadLetter.objects.filter(event_id__isnull=True).only("key", "value", "headers").iterator():
        key = bytes(row.key) if row.key is not None else None
        row.digest = message_digest(key=key, value=bytes(row.value), headers=decode_headers(row.headers))
        row.save(update_fields=["digest"])
    for rows in _copies(DeadLetter):
        unresolved = [row for row in rows if row.status in UNRESOLVED]
        keep = ([row for row in unresolved if row.blocked_by_id is None] or unresolved or rows)[0]
        others = [row.pk for row in rows if row.pk != keep.pk]
        if keep.blocked_by_id in others:
            keep.blocked_by_id = None  # it waited behind a copy of itself
        keep.first_failed_at = min(row.first_failed_at for row in rows)
        keep.save(update_fields=["blocked_by", "first_failed_at"])
        DeadLetterReplay.objects.filter(dead_letter_id__in=others).update(dead_letter_id=keep.pk)
        followers = DeadLetter.objects.filter(blocked_by_id__in=others).exclude(pk__in=[keep.pk, *others])
        followers.update(blocked_by_id=keep.blocked_by_id or keep.pk)
        DeadLetter.objects.filter(pk__in=others).update(blocked_by=None)
        DeadLetter.objects.filter(pk__in=others).delete()
    schema_editor.execute("SET CONSTRAINTS ALL DEFERRED")


def _copies(DeadLetter):
    """The rows of each message and group that has more than one, oldest first."""
    for field, without_id in (("event_id", False), ("digest", True)):
        rows = DeadLetter.objects.filter(event_id__isnull=without_id)
        for found in rows.values("group", field).annotate(n=Count("id")).filter(n__gt=1):
            yield list(rows.filter(group=found["group"], **{field: found[field]}).order_by("id"))


class Migration(migrations.Migration):

    dependencies = [
        ('consumers', '0009_replay_started_at'),
    ]

    operations = [
        migrations.RemoveConstraint(
            model_name='deadletter',
            name='consumers_deadletter_message_uniq',
        ),
        migrations.AddField(
            model_name='deadletter',
            name='digest',
            field=models.BinaryField(blank=True, help_text='SHA-256 of key, value and headers as received: how a message without a readable event id is known.', max_length=32, null=True),
        ),
        migrations.RunPython(merge_copies, migrations.RunPython.noop),
        migrations.AddConstraint(
            model_name='deadletter',
            constraint=models.UniqueConstraint(condition=models.Q(('event_id__isnull', False)), fields=('group', 'event_id'), name='consumers_deadletter_event_uniq'),
        ),
        migrations.AddConstraint(
            model_name='deadletter',
            constraint=models.UniqueConstraint(condition=models.Q(('event_id__isnull', True)), fields=('group', 'digest'), name='consumers_deadletter_bytes_uniq'),
        ),
    ]
