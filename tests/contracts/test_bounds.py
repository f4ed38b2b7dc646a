"""What an event may carry is bounded in its contract: a writer of the topic cannot make a consumer store, or an
invoice PDF render, unbounded lists, names or numbers. Over-bound messages are dead letters with the reason."""

from __future__ import annotations

import json
from typing import Any

import pytest
from pydantic import ValidationError

from apps.common.kafka import kafka_topic
from apps.consumers.models import DeadLetter
from apps.consumers.runtime import ConsumerWorker
from apps.contracts import CustomerUpserted, InvoiceGenerated, RouteCalculated
from apps.contracts.routing import MAX_NAME_LENGTH, MAX_STOPS
from tests.consumers.support import RawProducer, cloud_event_headers, drain
from tests.factories import invoice_generated, route_calculated


def _route(**changes: Any) -> dict[str, Any]:
    fields = route_calculated().model_dump(mode="json")
    fields.update(changes)
    return fields


def _stops(count: int, **changes: Any) -> list[dict[str, Any]]:
    stop = _route()["stops"][0]
    return [{**stop, "sequence": n, **changes} for n in range(1, count + 1)]


def _depot(**changes: Any) -> dict[str, Any]:
    return {**_route()["depot"], **changes}


OVER_BOUND: dict[str, dict[str, Any]] = {
    "too many stops": {"stops": _stops(MAX_STOPS + 1)},
    "a stop name too long": {"stops": _stops(1, name="n" * (MAX_NAME_LENGTH + 1))},
    "a customer name too long": {"customer_name": "c" * (MAX_NAME_LENGTH + 1)},
    "a depot name too long": {"depot": _depot(name="d" * (MAX_NAME_LENGTH + 1))},
    "a distance of a million digits": {"distance_km": "1e1000000"},
    "a leg longer than the model stores": {"stops": _stops(1, leg_distance_km="10000000.000")},
    "a duration past the column": {"duration_minutes": 2**31},
    "a route id past bigint": {"route_id": 2**63},
    "a truck id past bigint": {"truck_id": 2**63},
    "a customer id past bigint": {"customer_id": 2**63},
    "a depot id past bigint": {"depot": _depot(id=2**63)},
    "a calculation past the column": {"calculation": 2**31},
    "a stop sequence past the stop count": {"stops": _stops(1, sequence=MAX_STOPS + 1)},
}


@pytest.mark.parametrize("changes", OVER_BOUND.values(), ids=list(OVER_BOUND))
def test_route_calculated_refuses_what_is_over_its_bounds(changes: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        RouteCalculated.model_validate_json(json.dumps(_route(**changes)))


def test_route_calculated_takes_everything_at_its_bounds() -> None:
    at_bounds = _route(
        stops=_stops(MAX_STOPS, name="n" * MAX_NAME_LENGTH, leg_distance_km="9999999.999"),
        customer_name="c" * MAX_NAME_LENGTH, depot=_depot(name="d" * MAX_NAME_LENGTH, id=2**63 - 1),
        distance_km="9999999.999", duration_minutes=2**31 - 1, route_id=2**63 - 1, calculation=2**31 - 1,
    )
    assert len(RouteCalculated.model_validate_json(json.dumps(at_bounds)).stops) == MAX_STOPS


@pytest.mark.parametrize("changes", [
    {"net_total": "1e1000000"}, {"gross_total": "1" * 20 + ".00"}, {"invoice_id": 2**63}, {"customer_id": 2**63},
])
def test_invoice_generated_refuses_totals_and_ids_past_its_columns(changes: dict[str, Any]) -> None:
    fields = {**invoice_generated().model_dump(mode="json"), **changes}
    with pytest.raises(ValidationError):
        InvoiceGenerated.model_validate_json(json.dumps(fields))


def test_customer_upserted_refuses_an_id_past_bigint() -> None:
    with pytest.raises(ValidationError):
        CustomerUpserted.model_validate({"customer_id": 2**63, "revision": 1, "name": "x",
                                         "changed_at": "2026-01-01T00:00:00Z"})


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("isolated_topics")
def test_an_over_bound_route_on_the_topic_is_a_dead_letter_naming_the_bound(kafka_bootstrap: str) -> None:
    """A topic writer sends a route of 1,000 stops: invoicing refuses it as it reads it, nothing is stored but
    the dead letter, and its reason and message say what was over the bound."""
    event = route_calculated(route_id=880_001)
    value = json.dumps(_route(route_id=880_001, stops=_stops(1_000))).encode()
    producer = RawProducer(kafka_topic(RouteCalculated.topic()))
    headers = cloud_event_headers(event)
    producer.send(value=value, key=event.partition_key(), headers=headers)
    producer.flush()

    worker = ConsumerWorker("invoicing", group_id="invoicing-bounds")
    worker.setup()
    try:
        drain(worker, lambda: DeadLetter.objects.exists(), timeout=60)
    finally:
        worker.teardown()
    dead_letter = DeadLetter.objects.get()
    assert dead_letter.reason == DeadLetter.Reason.INVALID_PAYLOAD
    assert "stops" in dead_letter.error_message
    assert f"at most {MAX_STOPS} items" in dead_letter.error_message


def test_the_gate_lets_through_only_the_bounds_the_writers_always_kept() -> None:
    """The published v1 had no bound on the stop count; 200 is what routing's API never exceeded. Any other bound
    (one that rejects what our producers wrote) is still a breach."""
    from apps.contracts.compat import breaches, contract

    published = contract(RouteCalculated)
    unbounded = json.loads(json.dumps(published))
    unbounded["schema"]["properties"]["stops"].pop("maxItems")
    tighter = json.loads(json.dumps(published))
    tighter["schema"]["properties"]["stops"]["maxItems"] = 100

    assert breaches(unbounded, published) == []
    assert [b.field for b in breaches(unbounded, tighter)] == ["stops"]
