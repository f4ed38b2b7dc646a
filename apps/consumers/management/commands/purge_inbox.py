"""`manage.py purge_inbox`: delete inbox rows older than CONSUMER_INBOX_RETENTION_DAYS (also a Celery beat task)."""

from __future__ import annotations

from datetime import timedelta

from django.core.management.base import BaseCommand, CommandError, CommandParser

from apps.common.progress import Progress
from apps.consumers.inbox import inbox_purge


class Command(BaseCommand):
    help = "Delete consumer inbox rows past their retention."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--days", type=float, default=None, help="retention in days (default: the setting)")

    def handle(self, *args: object, days: float | None, **options: object) -> None:
        if days is not None and days < 0:
            raise CommandError("--days must not be negative")
        with Progress(self.stderr, "purging inbox rows") as progress:
            deleted = inbox_purge(
                older_than=timedelta(days=days) if days is not None else None, on_batch=progress.advance
            )
        self.stdout.write(f"deleted {deleted} inbox rows")
