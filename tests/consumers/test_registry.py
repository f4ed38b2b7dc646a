"""The handler registry's coverage: every published version is handled, or declared ignored, by every consumer
group that reads its topic."""

from __future__ import annotations

import pytest

from apps.consumers import registry
from apps.consumers.decoding import SKIP, decode
from apps.contracts import EVENT_TYPES, DomainEvent, RouteCalculated
from tests.consumers.support import cloud_event_headers, happened, raw_message
from tests.consumers.testapp.events import HappenedV2


class RouteCalculatedV2(RouteCalculated):
    """A v2 published beside v1 that no group has heard of (not registered: the real list stays as it is)."""

    version = 2


def test_every_published_version_is_handled_or_declared_ignored_by_every_group_reading_its_topic() -> None:
    gaps = registry.coverage_gaps()

    assert not gaps, "\n".join(gaps)


def test_a_published_version_no_group_reading_its_topic_handles_or_ignores_is_a_gap_named_clearly() -> None:
    gaps = registry.coverage_gaps(published=[*EVENT_TYPES.values(), RouteCalculatedV2])

    assert gaps == [
        "logiflow.routing.RouteCalculated.v2 is published on routing.events, which consumer group invoicing reads, "
        "but invoicing neither handles it (@handles(RouteCalculatedV2, group=\"invoicing\")) nor declares that it "
        "ignores it (ignores(RouteCalculatedV2, group=\"invoicing\", reason=...)); until then its consumer would "
        "dead-letter every message of it"
    ]


def test_a_declared_ignore_needs_a_reason() -> None:
    with pytest.raises(ValueError, match="reason"):
        registry.ignores(RouteCalculatedV2, group="invoicing", reason=" ")


def test_a_version_the_group_declares_it_ignores_is_skipped_not_dead_lettered() -> None:
    event = happened()
    v2 = cloud_event_headers(event, ce_type=HappenedV2.ce_type())

    assert decode(raw_message(event, headers=v2), group="testing") is SKIP
    assert registry.ignored_types("testing") == {HappenedV2.ce_type(): (
        "the tests keep reading v1; v2 exists to test the declaration"
    )}


def test_a_new_type_on_a_topic_a_group_reads_is_a_gap_too_as_it_would_be_skipped_without_a_word() -> None:
    class TruckRetired(DomainEvent):
        context = "routing"
        event_name = "TruckRetired"
        version = 1
        key_prefix = "truck"
        key_field = "truck_id"

        truck_id: int

    (gap,) = registry.coverage_gaps(published=[TruckRetired])

    assert gap.startswith("logiflow.routing.TruckRetired.v1 is published on routing.events, which consumer group "
                          "invoicing reads")
    assert gap.endswith("its consumer would skip every message of it without a word")
