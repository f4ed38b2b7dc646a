"""Repair the damage of redeliveries that parked messages behind an already resolved head.

Before the ledger was authoritative on redelivery, a redelivered message whose dead letter had been replayed
or discarded could become the "head" again in the consumer's memory, and later messages of its key were parked
behind that resolved row, for good (releasing happens only when a head is resolved). Here the oldest such
message of each resolved head becomes a pending head of its own and the others wait behind it, so one replay
(or discard) runs them in order, as for any other head.
"""

from django.db import migrations
from django.utils import timezone

UNRESOLVED = ("pending", "replaying")


def relink(apps, schema_editor):
    DeadLetter = apps.get_model("consumers", "DeadLetter")
    orphans = (
        DeadLetter.objects.filter(status__in=UNRESOLVED, blocked_by__isnull=False)
        .exclude(blocked_by__status__in=UNRESOLVED)
        .order_by("blocked_by_id", "id")
        .values_list("blocked_by_id", "id")
    )
    by_head: dict[int, list[int]] = {}
    for head_id, orphan_id in orphans:
        by_head.setdefault(head_id, []).append(orphan_id)
    for head_id, (first, *rest) in by_head.items():
        DeadLetter.objects.filter(pk=first).update(
            blocked_by=None, status="pending", last_failed_at=timezone.now(),
            error_message=f"was parked behind dead letter #{head_id}, which had already been resolved; "
                          "replay or discard this one to run it and the rest of its key in order",
        )
        DeadLetter.objects.filter(pk__in=rest).update(blocked_by_id=first)


class Migration(migrations.Migration):

    dependencies = [
        ("consumers", "0003_deadletter_bytes"),
    ]

    operations = [
        migrations.RunPython(relink, migrations.RunPython.noop),
    ]
