"""`manage.py relay_outbox`: publish committed outbox rows to Kafka until SIGTERM/SIGINT."""

from __future__ import annotations

import logging
import os
import sys

from django.core.management.base import BaseCommand

from apps.common.workers import run_worker
from apps.outbox.relay import OutboxRelay, RelayWedged

logger = logging.getLogger(__name__)


class Command(BaseCommand):
    help = "Relay outbox rows to Kafka (several relays may run at once on PostgreSQL)."

    def handle(self, *args: object, **options: object) -> None:
        relay = OutboxRelay()
        try:
            run_worker(relay)
        except RelayWedged as wedged:
            # A lane thread is stuck where no timeout reaches: a normal exit would wait for it for ever.
            # Its connection dies with the process, so its rows' locks go too; the supervisor restarts us.
            logger.critical("%s", wedged)
            logging.shutdown()
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(wedged.code)
        self.stdout.write(
            f"relay stopped: {relay.totals['published']} published, {relay.totals['failed']} failed"
        )
