"""Decoding a message as a consumer group reads it: readers are open to fields added later, writers are closed."""

from __future__ import annotations

import json

import pytest
from pydantic import ValidationError

from apps.consumers.decoding import Decoded, DecodeFailure, decode
from apps.consumers.models import DeadLetter
from apps.contracts import RouteCalculated
from tests.consumers.support import cloud_event_headers, raw_message
from tests.factories import route_calculated


def with_fields(event: RouteCalculated, **added: object) -> bytes:
    payload = json.loads(event.model_dump_json())
    depot = added.pop("depot", None)
    if depot:
        payload["depot"].update(depot)
    return json.dumps({**payload, **added}).encode()


def test_a_v1_consumer_reads_a_v1_payload_with_an_optional_field_a_newer_producer_added() -> None:
    event = route_calculated()
    decoded = decode(raw_message(event, value=with_fields(event, co2_kg="12.5")), group="invoicing")

    assert isinstance(decoded, Decoded)
    assert decoded.event == event


def test_a_field_added_to_a_nested_part_of_the_payload_is_ignored_too() -> None:
    event = route_calculated()
    decoded = decode(raw_message(event, value=with_fields(event, depot={"country": "DE"})), group="invoicing")

    assert isinstance(decoded, Decoded)
    assert decoded.event == event


def test_a_producer_still_cannot_write_a_field_its_version_does_not_declare() -> None:
    fields = {**route_calculated().model_dump(), "co2_kg": "12.5"}
    with pytest.raises(ValidationError, match="co2_kg"):
        RouteCalculated(**fields)
    with pytest.raises(ValidationError, match="co2_kg"):
        RouteCalculated.model_validate(fields)


def test_a_version_the_group_does_not_know_of_a_type_it_handles_is_a_failure_naming_the_version() -> None:
    event = route_calculated()
    v2 = cloud_event_headers(event, ce_type="logiflow.routing.RouteCalculated.v2")

    with pytest.raises(DecodeFailure) as failure:
        decode(raw_message(event, headers=v2), group="invoicing")

    assert failure.value.reason == DeadLetter.Reason.UNKNOWN_TYPE
    assert str(failure.value) == "invoicing does not handle version 2 of logiflow.routing.RouteCalculated"
