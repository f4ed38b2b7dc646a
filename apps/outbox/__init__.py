"""The transactional outbox, the publishing half of the event spine. The rest of the code uses one verb:
`apps.outbox.publish(event)` (`publish_many(events)` for a batch); the relay (the package `relay`) sends committed
rows to Kafka.

It may import `apps.contracts` and `apps.common`."""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Sequence

    from apps.contracts.base import DomainEvent


def publish(event: DomainEvent) -> uuid.UUID:
    """Write `event` to the outbox in the current transaction (see `apps.outbox.services.publish`)."""
    from apps.outbox.services import publish as _publish

    return _publish(event)


def publish_many(events: Sequence[DomainEvent], *, traceparents: Sequence[str | None] | None = None) -> list[uuid.UUID]:
    """Write `events` to the outbox in the current transaction, in one statement (see
    `apps.outbox.services.publish_many`)."""
    from apps.outbox.services import publish_many as _publish_many

    return _publish_many(events, traceparents=traceparents)
