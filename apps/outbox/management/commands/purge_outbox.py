"""`manage.py purge_outbox`: delete published outbox rows past retention (what the beat task does)."""

from __future__ import annotations

from datetime import timedelta

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from apps.common.progress import Progress
from apps.outbox.services import outbox_events_purge


class Command(BaseCommand):
    help = "Delete published outbox rows older than OUTBOX_RETENTION_HOURS, in short batches."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--older-than-hours", type=float, default=None, help="override the retention")
        parser.add_argument("--batch-size", type=int, default=None, help="rows per transaction")

    def handle(self, *args: object, older_than_hours: float | None, batch_size: int | None, **options: object) -> None:
        hours = settings.OUTBOX_RETENTION_HOURS if older_than_hours is None else older_than_hours
        if hours < 0 or (batch_size is not None and batch_size < 1):
            raise CommandError("--older-than-hours must be >= 0 and --batch-size >= 1")
        with Progress(self.stderr, "purging published outbox rows") as progress:
            purged = outbox_events_purge(
                older_than=timedelta(hours=hours), batch_size=batch_size, on_batch=progress.advance
            )
        self.stdout.write(f"purged {purged} published outbox events older than {hours:g} h")
