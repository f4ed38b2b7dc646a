"""`manage.py outbox_resend`: send failed outbox rows again (what the admin's "Re-send" action does)."""

from __future__ import annotations

import getpass

from django.core.management.base import BaseCommand, CommandError, CommandParser

from apps.outbox.selectors import failed_event_ids
from apps.outbox.services import outbox_events_resend


class Command(BaseCommand):
    help = "Re-queue failed outbox rows for the relay: --ids 12 15 ... or --all-failed."

    def add_arguments(self, parser: CommandParser) -> None:
        which = parser.add_mutually_exclusive_group(required=True)
        which.add_argument("--ids", type=int, nargs="+", metavar="ID", help="outbox row ids (all must be failed)")
        which.add_argument("--all-failed", action="store_true", help="every failed row")

    def handle(self, *args: object, ids: list[int] | None, all_failed: bool, **options: object) -> None:
        if all_failed:
            ids = failed_event_ids()
        else:
            assert ids is not None
            not_failed = sorted(set(ids) - set(failed_event_ids(ids)))
            if not_failed:
                raise CommandError(f"not failed outbox rows (missing, pending or published): {not_failed}")
        resent = outbox_events_resend(event_ids=ids, actor=f"manage.py outbox_resend ({_os_user()})")
        self.stdout.write(f"re-sent {len(resent)} failed outbox events: {resent}")


def _os_user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown user"
