"""`manage.py contracts snapshot|check`: the committed schema snapshots of the published event versions, written
and checked under the compatibility gate's rules (apps/contracts/compat.py)."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError, CommandParser

from apps.contracts.compat import Verdict, gate, snapshot_write

_SAYS = {
    "new": "no snapshot yet",
    "same": "matches its snapshot",
    "compatible": "changed compatibly; the snapshot needs refreshing (`manage.py contracts snapshot`)",
    "breaking": "BREAKING",
    "retired": "a snapshot without a registered version: delete it only once no producer or consumer of it runs",
}


class Command(BaseCommand):
    help = (
        "snapshot: write the snapshot of every new or compatibly changed event version (refused, writing nothing, "
        "if any change breaks a published version). check: compare without writing; fails unless all match."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("action", choices=["snapshot", "check"])

    def handle(self, *args: object, action: str, **options: object) -> None:
        verdicts = snapshot_write() if action == "snapshot" else gate()
        broken = [str(breach) for verdict in verdicts for breach in verdict.breaches]
        for verdict in verdicts:
            self.stdout.write(_line(verdict, wrote=action == "snapshot" and not broken))
        if broken:
            raise CommandError("the compatibility gate refuses:\n" + "\n".join(broken))
        if action == "check" and any(verdict.status != "same" for verdict in verdicts):
            raise CommandError("snapshots are not current: run `manage.py contracts snapshot` and commit them")


def _line(verdict: Verdict, *, wrote: bool) -> str:
    said = "snapshot written" if wrote and verdict.status in ("new", "compatible") else _SAYS[verdict.status]
    return f"{verdict.event}: {said}"
