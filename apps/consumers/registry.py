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

A group that reads a topic must decide about every event version published on it: handle it, or declare that it
ignores it, with the reason, beside its handlers (`coverage_gaps`, checked by the test suite):

    ignores(RouteCalculatedV2, group="invoicing", reason="invoices from v1 until the v2 migration, issue NN")

A declared version is skipped like a type the group has never heard of; an undeclared version of a type the group
handles is dead-lettered (apps.consumers.decoding).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar
from uuid import UUID

from apps.contracts.base import EVENT_TYPES, DomainEvent

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
_IGNORED: dict[tuple[str, str], str] = {}  # (group, ce_type) -> why the group does not read it


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


def ignores(event_class: type[DomainEvent], *, group: str, reason: str) -> None:
    """Declare that `group` deliberately does not read `event_class` (a version of it), and why."""
    if not reason.strip():
        raise ValueError(f"say why {group} ignores {event_class.ce_type()}: the reason is its documentation")
    if (group, event_class.ce_type()) in _REGISTRY:
        raise ValueError(f"{group} handles {event_class.ce_type()}; it cannot also ignore it")
    _IGNORED[(group, event_class.ce_type())] = reason


def is_ignored(group: str, ce_type: str) -> bool:
    return (group, ce_type) in _IGNORED


def ignored_types(group: str) -> dict[str, str]:
    """The CloudEvents types `group` declares it ignores, with the reasons."""
    return {ce_type: reason for (g, ce_type), reason in sorted(_IGNORED.items()) if g == group}


def coverage_gaps(published: Iterable[type[DomainEvent]] | None = None) -> list[str]:
    """Each published version (default: every registered one) that a group reading its topic neither handles nor
    declares it ignores, as a sentence saying what to add."""
    gaps = []
    for event_class in sorted(EVENT_TYPES.values() if published is None else published, key=lambda c: c.ce_type()):
        ce_type, name = event_class.ce_type(), event_class.__name__
        for group in groups():
            decided = handler_for(group, ce_type) or is_ignored(group, ce_type)
            if decided or event_class.topic() not in topics_for(group):
                continue
            base = ce_type.rpartition(".v")[0]
            knows_type = any(t.rpartition(".v")[0] == base for t in handled_types(group))
            fate = "dead-letter every message of it" if knows_type else "skip every message of it without a word"
            gaps.append(
                f"{ce_type} is published on {event_class.topic()}, which consumer group {group} reads, but {group} "
                f"neither handles it (@handles({name}, group=\"{group}\")) nor declares that it ignores it "
                f"(ignores({name}, group=\"{group}\", reason=...)); until then its consumer would {fate}"
            )
    return gaps


def registrations() -> list[Registration]:
    """Every registration, for the event catalogue (who reads what)."""
    return list(_REGISTRY.values())
