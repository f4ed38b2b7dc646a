"""A test event type on its own topic; each test points the topic at a fresh one (TESTAPP_EVENTS_TOPIC).

Not passed to register_event: the outbox never publishes it, and the real topic list stays as it is.
"""

from __future__ import annotations

from django.conf import settings
from pydantic import Field

from apps.contracts.base import DomainEvent


class Happened(DomainEvent):
    context = "testing"
    event_name = "Happened"
    version = 1
    key_field = "key"

    key: str = Field(min_length=1)
    scenario: str = ""
    seq: int = Field(ge=0)

    @classmethod
    def topic(cls) -> str:
        return settings.TESTAPP_EVENTS_TOPIC


class HappenedV2(Happened):
    """A second version the `testing` group declares it ignores (tests/consumers/testapp/handlers.py)."""

    version = 2
