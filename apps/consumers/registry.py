"""The handler registry: which consumer group runs which function for which event type and version.

Apps register in their `handlers.py` (discovered at start-up):

    @handles(RouteCalculated, group="invoicing")
    def issue_invoice_for_route(event: RouteCalculated, meta: EventMeta) -> None:
        invoice_issue_for_route(route=event, ...)

A handler runs inside the consumer's database transaction, together with the inbox row that makes
redelivery a no-op; it should call a service and raise on failure (the runtime retries, then
dead-letters). It must not catch and swallow errors it cannot handle.

A registration may also name a batch handler (`@handles(..., batch=issue_invoices_for_routes)`): the runtime
then hands it a run of new events of that type, in order, as `[(event, meta), ...]`, in one savepoint with
their inbox rows. It must apply all of them or raise; if it raises, the runtime rolls the run back and
applies the same messages one by one through the single handler, with every failure rule of that path.
So the batch handler is an optimisation that must give exactly the single handler's results.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar
from uuid import UUID

from apps.contracts.base import DomainEvent

E = TypeVar("E", bound=DomainEvent)


@dataclass(frozen=True)
class EventMeta:
    """The envelope of a consumed event: CloudEvents attributes and where it was read from."""

    event_id: UUID
    ce_type: str
    source: str
    time: datetime
    key: bytes | None  # the Kafka key's bytes as received (the relay sends the aggregate id in UTF-8)
    traceparent: str | None
    topic: str
    partition: int
    offset: int
    group: str
    # The person's edit (apps.consumers.models.DeadLetterEdit) whose payload this is, when a dead letter was
    # edited before this replay; None for a message as its producer sent it.
    edit_id: int | None = None


Handler = Callable[[Any, EventMeta], None]
BatchHandler = Callable[[list[tuple[Any, EventMeta]]], None]


@dataclass(frozen=True)
class Fix:
    """What a person can do about a failure: a label and a link to a page of this site (a path, e.g. a
    prefilled add form), shown with the dead letter."""

    label: str
    url: str


class NonRetryableError(Exception):
    """Raised by a handler when retrying cannot help (e.g. data only a person can add): the message
    goes to the dead-letter ledger at once, with this error as the reason, to be replayed later. `fix`, when
    the handler knows it, is the page where a person removes the cause."""

    def __init__(self, *args: object, fix: Fix | None = None) -> None:
        super().__init__(*args)
        self.fix = fix


@dataclass(frozen=True)
class Registration:
    group: str
    event_class: type[DomainEvent]
    handler: Handler
    batch_handler: BatchHandler | None = None

    @property
    def name(self) -> str:
        return f"{self.handler.__module__}.{self.handler.__qualname__}"


_REGISTRY: dict[tuple[str, str], Registration] = {}


def handles(
    event_class: type[E], *, group: str, batch: Callable[[list[tuple[E, EventMeta]]], None] | None = None,
) -> Callable[[Callable[[E, EventMeta], None]], Callable[[E, EventMeta], None]]:
    """Register the decorated function as `group`'s handler for `event_class` (one per group and type),
    optionally with a `batch` handler for runs of new events (see the module docstring)."""

    def register(func: Callable[[E, EventMeta], None]) -> Callable[[E, EventMeta], None]:
        key = (group, event_class.ce_type())
        existing = _REGISTRY.get(key)
        if existing and existing.handler is not func:
            raise ValueError(f"{group} already handles {event_class.ce_type()} with {existing.name}")
        _REGISTRY[key] = Registration(group=group, event_class=event_class, handler=func, batch_handler=batch)
        return func

    return register


def handler_for(group: str, ce_type: str) -> Registration | None:
    return _REGISTRY.get((group, ce_type))


def groups() -> list[str]:
    return sorted({group for group, _ in _REGISTRY})


def topics_for(group: str) -> list[str]:
    return sorted({reg.event_class.topic() for (g, _), reg in _REGISTRY.items() if g == group})


def handled_types(group: str) -> list[str]:
    """The CloudEvents types (with version) `group` has handlers for."""
    return sorted(ce_type for g, ce_type in _REGISTRY if g == group)
