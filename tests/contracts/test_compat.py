"""The compatibility gate's table: each change to a published version's contract, compatible or breaking, as pydantic
writes its schema; a breaking one is named with its event, field and rule, and what to do instead."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

import pytest
from pydantic import Field, create_model

from apps.contracts.base import Contract, DomainEvent
from apps.contracts.compat import Schema, breaches, contract

Fields = dict[str, Any]


def part(name: str, fields: Fields) -> type[Contract]:
    return create_model(name, __base__=Contract, **fields)


DEPOT: Fields = {"id": (int, ...), "name": (str, Field(min_length=1))}
STOP: Fields = {"sequence": (int, Field(ge=1)), "eta": (datetime, ...)}


def version(
    *, depot: Fields | None = None, stop: Fields | None = None, drop: tuple[str, ...] = (), reverse: bool = False,
    doc: str = "A truck was loaded.", key_prefix: str = "truck", key_field: str = "truck_id", aggregate: str = "truck",
    **changed: Any,
) -> Schema:
    """The contract of `TruckLoaded` v1 with the given changes (`name=(type, Field(...))` adds or replaces)."""
    fields: Fields = {
        "truck_id": (int, Field(gt=0)),
        "plate": (str, Field(min_length=1, max_length=20)),
        "weight_kg": (int, Field(ge=0, le=40000)),
        "load_ratio": (float, Field(ge=0)),
        "kind": (Literal["truck", "van", "lorry"], ...),
        "depot": (part("Depot", depot or DEPOT), ...),
        "stops": (list[part("Stop", stop or STOP)], Field(min_length=1)),  # type: ignore[misc]
        "note": (str | None, None),
    }
    for name in drop:
        del fields[name]
    fields.update(changed)
    if reverse:
        fields = dict(reversed(fields.items()))
    cls = create_model("TruckLoaded", __base__=DomainEvent, __doc__=doc, **fields)
    for name, value in {
        "context": "testing", "event_name": "TruckLoaded", "version": 1, "key_prefix": key_prefix,
        "key_field": key_field, "aggregate": aggregate, "aggregate_field": "truck_id",
    }.items():
        setattr(cls, name, value)
    return contract(cls)


PUBLISHED = version()

COMPATIBLE = {
    "nothing changed": version(),
    "an optional field added": version(co2_kg=(float | None, None)),
    "an optional field added to a nested object": version(depot={**DEPOT, "country": (str | None, None)}),
    "an optional field added to a list's items": version(stop={**STOP, "window": (str, "")}),
    "the description changed": version(doc="A truck was loaded at its depot."),
    "the fields reordered": version(reverse=True),
}

BREAKING = {
    "a field removed": (version(drop=("weight_kg",)), {("field-removed", "weight_kg")}),
    "an optional field removed": (version(drop=("note",)), {("field-removed", "note")}),
    "a field renamed": (
        version(drop=("plate",), registration=(str, Field(min_length=1, max_length=20))),
        {("field-removed", "plate"), ("field-added-required", "registration")},
    ),
    "a required field added": (version(axles=(int, ...)), {("field-added-required", "axles")}),
    "a type narrowed (number to integer)": (version(load_ratio=(int, Field(ge=0))), {("type-changed", "load_ratio")}),
    "a type widened (integer to number)": (
        version(weight_kg=(float, Field(ge=0, le=40000))), {("type-changed", "weight_kg")},
    ),
    "a field made nullable": (
        version(plate=(str | None, Field(min_length=1, max_length=20))), {("type-changed", "plate")},
    ),
    "a maxLength narrowed": (version(plate=(str, Field(min_length=1, max_length=10))), {("narrowed", "plate")}),
    "a maxLength widened": (version(plate=(str, Field(min_length=1, max_length=40))), {("widened", "plate")}),
    "a maximum narrowed": (version(weight_kg=(int, Field(ge=0, le=30000))), {("narrowed", "weight_kg")}),
    "a minimum raised": (version(weight_kg=(int, Field(ge=100, le=40000))), {("narrowed", "weight_kg")}),
    "an enum narrowed": (version(kind=(Literal["truck", "van"], ...)), {("narrowed", "kind")}),
    "an enum widened": (version(kind=(Literal["truck", "van", "lorry", "bike"], ...)), {("widened", "kind")}),
    "a pattern added": (
        version(plate=(str, Field(min_length=1, max_length=20, pattern="^[A-Z]"))), {("narrowed", "plate")},
    ),
    "an optional field made required": (version(note=(str | None, ...)), {("made-required", "note")}),
    "a required field made optional": (
        version(weight_kg=(int, Field(0, ge=0, le=40000))), {("made-optional", "weight_kg")},
    ),
    "a default changed": (version(note=(str | None, "")), {("default-changed", "note")}),
    "a nested field removed": (version(depot={"id": (int, ...)}), {("field-removed", "depot.name")}),
    "a bound narrowed in a list's items": (
        version(stop={**STOP, "sequence": (int, Field(ge=2))}), {("narrowed", "stops[].sequence")},
    ),
    "the key's prefix changed": (version(key_prefix="lorry"), {("key-changed", "(key)")}),
    "the key's field changed": (version(key_field="plate"), {("key-changed", "(key)")}),
    "the aggregate changed": (version(aggregate="fleet"), {("aggregate-changed", "(aggregate)")}),
}


@pytest.mark.parametrize("current", COMPATIBLE.values(), ids=COMPATIBLE.keys())
def test_a_compatible_change_passes_the_gate(current: Schema) -> None:
    assert breaches(PUBLISHED, current) == []


@pytest.mark.parametrize(("current", "expected"), BREAKING.values(), ids=BREAKING.keys())
def test_a_breaking_change_fails_the_gate_naming_the_event_field_and_rule(
    current: Schema, expected: set[tuple[str, str]],
) -> None:
    found = breaches(PUBLISHED, current)

    assert {(breach.rule, breach.field) for breach in found} == expected
    for breach in found:
        assert str(breach).startswith(f"logiflow.testing.TruckLoaded.v1: field {breach.field}: {breach.rule} (")
        assert "publish logiflow.testing.TruckLoaded.v2 beside logiflow.testing.TruckLoaded.v1" in str(breach)


def test_a_rename_reads_as_the_removal_it_is_with_the_new_name_suggested() -> None:
    renamed = version(drop=("plate",), registration=(str, Field(min_length=1, max_length=20)))

    removed = breaches(PUBLISHED, renamed)[0]

    assert str(removed) == (
        "logiflow.testing.TruckLoaded.v1: field plate: field-removed (no longer in the schema; renamed to "
        "registration?): consumers of the version that read it get nothing (and a later field of that name could "
        "mean something else). Instead: publish logiflow.testing.TruckLoaded.v2 beside "
        "logiflow.testing.TruckLoaded.v1 (both, until every consumer handles the new one); see "
        "docs/architecture.md, 'Evolving an event'."
    )


def test_a_required_field_added_is_told_it_could_have_been_optional() -> None:
    (added,) = breaches(PUBLISHED, version(axles=(int, ...)))

    assert "Instead: add it as optional (with a default), or publish logiflow.testing.TruckLoaded.v2" in str(added)
