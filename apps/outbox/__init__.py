"""The transactional outbox, the publishing half of the event spine. The rest of the code uses one verb:
`apps.outbox.publish(event)`; the relay (the package `relay`) sends committed rows to Kafka.

It may import `apps.contracts` and `apps.common`."""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from apps.contracts.base import DomainEvent


def publish(event: DomainEvent) -> uuid.UUID:
    """Write `event` to the outbox in the current transaction (see `apps.outbox.services.publish`)."""
    from apps.outbox.services import publish as _publish

    return _publish(event)
