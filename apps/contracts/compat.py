"""The compatibility gate: how a published event version's contract may change, and how each breach is explained.

A version's contract is its topic, its key and aggregate formats and its JSON Schema (from pydantic); a snapshot of
it is committed per version (`apps/contracts/snapshots/`, written by `manage.py contracts snapshot`). The rule is
FULL compatibility, as a schema registry means it: a consumer of the version must read what any producer of it
writes, old or new release, and the reverse, because during a rolling deploy both run at once. Writers are closed
and readers open (`apps.contracts.base.Contract`), so the one compatible change of the data is a new optional field;
any other change to what a field accepts rejects some message on one side. Annotations (title, description,
examples) may change freely. Constraints pydantic does not put in the schema (e.g. `decimal_places`) are not seen.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from apps.contracts.base import EVENT_TYPES, DomainEvent

Schema = dict[str, Any]

ANNOTATIONS = frozenset({"title", "description", "examples", "deprecated", "$comment"})
# Walked, not compared as values.
_STRUCTURE = frozenset({"properties", "required", "items", "$ref", "$defs", "anyOf", "oneOf", "allOf", "type"})
_UPPER = frozenset({"maximum", "exclusiveMaximum", "maxLength", "maxItems", "maxProperties"})
_LOWER = frozenset({"minimum", "exclusiveMinimum", "minLength", "minItems", "minProperties"})

_WHY = {
    "field-removed": "consumers of the version that read it get nothing (and a later field of that name could mean "
                     "something else)",
    "field-added-required": "messages written before, and by producers still on the old release, lack it: the new "
                            "consumer rejects them",
    "made-required": "producers still on the old release may omit it: the new consumer rejects their messages",
    "made-optional": "a new producer may omit it: consumers still on the old release reject those messages",
    "type-changed": "one side rejects values the other writes",
    "narrowed": "the new consumer rejects values that producers of the old schema wrote",
    "widened": "consumers still on the old schema reject values the new one allows",
    "changed": "each side rejects some values the other accepts",
    "default-changed": "a message without the field means one thing to old consumers and another to new ones",
    "key-changed": "a key picks the partition and the order: old-format and new-format keys of one aggregate would "
                   "be two keys, unordered between them",
    "aggregate-changed": "consumers park a dead letter's later messages by aggregate: old and new would not park "
                         "behind each other",
    "topic-changed": "consumers of the version read the old topic",
}


# Narrowings that reject nothing a LogiFlow producer ever wrote: each value was already bounded where it is written
# (routing's and invoicing's columns: bigint ids, integer counters, 200-character names; routing's API: at most
# ROUTING_MAX_STOPS stops, 50 unless raised). They bound what a *foreign* writer of the topic can make a consumer
# store or render (docs/architecture.md, Security). A deployment that raised ROUTING_MAX_STOPS above 200 must let its
# consumers drain such routes before upgrading. (event, field, keyword) -> (the bound, why): only that constraint,
# added where there was none, passes; any other change of it stays a breach.
_BIGINT = (2**63 - 1, "ids come from bigint primary keys")
_POSITIVE = (0, "ids come from primary keys, which start at 1")
_COUNTER = (2**31 - 1, "an integer column holds it")
_NAME = (200, "routing stores names in 200-character columns")
_STOPS = (200, "routing's API takes at most ROUTING_MAX_STOPS stops (50 unless raised)")
_BOUNDED_BY_THE_WRITERS: dict[tuple[str, str, str], tuple[int, str]] = {
    **{("logiflow.routing.RouteCalculated.v1", field, "maximum"): _BIGINT
       for field in ("route_id", "truck_id", "customer_id", "depot.id")},
    ("logiflow.routing.RouteCalculated.v1", "depot.id", "exclusiveMinimum"): _POSITIVE,
    ("logiflow.routing.RouteCalculated.v1", "calculation", "maximum"): _COUNTER,
    ("logiflow.routing.RouteCalculated.v1", "duration_minutes", "maximum"): _COUNTER,
    **{("logiflow.routing.RouteCalculated.v1", field, "maxLength"): _NAME
       for field in ("customer_name", "depot.name", "stops[].name")},
    ("logiflow.routing.RouteCalculated.v1", "stops", "maxItems"): _STOPS,
    ("logiflow.routing.RouteCalculated.v1", "stops[].sequence", "maximum"): _STOPS,
    ("logiflow.routing.CustomerUpserted.v1", "customer_id", "maximum"): _BIGINT,
    ("logiflow.routing.CustomerUpserted.v1", "revision", "maximum"): _COUNTER,
    **{("logiflow.invoicing.InvoiceGenerated.v1", field, "maximum"): _BIGINT
       for field in ("invoice_id", "route_id", "customer_id")},
}


@dataclass(frozen=True)
class Breach:
    """One incompatible change of a published version, with what to do instead."""

    event: str  # the CloudEvents type with its version, e.g. logiflow.routing.RouteCalculated.v1
    field: str  # `depot.name`, `stops[].eta`, or `(key)`, `(aggregate)`, `(topic)`
    rule: str
    change: str

    def __str__(self) -> str:
        name, _, version = self.event.rpartition(".v")
        nxt = f"{name}.v{int(version) + 1}" if version.isdigit() else f"{name}.v<next>"
        instead = f"publish {nxt} beside {self.event} (both, until every consumer handles the new one)"
        if self.rule == "field-added-required":
            instead = f"add it as optional (with a default), or {instead}"
        return (
            f"{self.event}: field {self.field}: {self.rule} ({self.change}): {_WHY[self.rule]}. "
            f"Instead: {instead}; see docs/architecture.md, 'Evolving an event'."
        )


def contract(event_class: type[DomainEvent]) -> Schema:
    """What consumers of the version depend on: the snapshot's content."""
    key = f"<{event_class.key_field}>"
    key = f"{event_class.key_prefix}:{key}" if event_class.key_prefix else key
    aggregate = f"{event_class.aggregate}:<{event_class.aggregate_field}>" if event_class.aggregate else None
    return {
        "event": event_class.ce_type(), "topic": event_class.topic(), "key": key, "aggregate": aggregate,
        "schema": event_class.model_json_schema(mode="validation"),
    }


def render(snapshot: Schema) -> str:
    """The snapshot file's text: stable, so a regenerated snapshot that did not change makes no diff."""
    return json.dumps(snapshot, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def breaches(old: Schema, new: Schema) -> list[Breach]:
    """Every incompatible change from the published contract `old` to the current `new` (empty: compatible)."""
    event = old["event"]
    found = [
        Breach(event, f"({part})", f"{part}-changed", f"{old[part]} -> {new[part]}")
        for part in ("topic", "key", "aggregate") if old.get(part) != new.get(part)
    ]
    walk = _Walk(event, old["schema"], new["schema"])
    walk.compare(old["schema"], new["schema"], "")
    return found + walk.found


class _Walk:
    def __init__(self, event: str, old_root: Schema, new_root: Schema) -> None:
        self.event, self.old_root, self.new_root = event, old_root, new_root
        self.found: list[Breach] = []
        self._seen: set[tuple[str, str, str]] = set()

    def compare(self, old: Schema, new: Schema, path: str) -> None:
        refs = (old.get("$ref", ""), new.get("$ref", ""), path)
        if refs[0] and refs[1]:
            if refs in self._seen:  # a recursive type: compared once
                return
            self._seen.add(refs)
        old, new = _resolve(old, self.old_root), _resolve(new, self.new_root)
        if _shape(old) != _shape(new):
            self.add(path, "type-changed", f"{_shape(old)} -> {_shape(new)}")
            return
        if "default" in old and "default" in new and old["default"] != new["default"]:
            self.add(path, "default-changed", f"default {_text(old['default'])} -> {_text(new['default'])}")
        for keyword in sorted((old.keys() | new.keys()) - ANNOTATIONS - _STRUCTURE - {"default"}):
            if old.get(keyword) != new.get(keyword):
                change = f"{keyword} {_text(old.get(keyword))} -> {_text(new.get(keyword))}"
                rule = _direction(keyword, old.get(keyword), new.get(keyword))
                bound = _BOUNDED_BY_THE_WRITERS.get((self.event, path, keyword))
                if bound is not None and old.get(keyword) is None and new.get(keyword) == bound[0]:
                    continue
                self.add(path, rule, change)
        self.properties(old, new, path)
        if "items" in old:
            self.compare(old["items"], new["items"], f"{path}[]")
        for combinator in ("anyOf", "oneOf", "allOf"):
            old_parts, new_parts = old.get(combinator, []), new.get(combinator, [])
            if len(old_parts) != len(new_parts):
                self.add(path, "changed", f"{combinator} of {len(old_parts)} -> {len(new_parts)} schemas")
                continue
            for old_part, new_part in zip(old_parts, new_parts, strict=True):
                self.compare(old_part, new_part, path)

    def properties(self, old: Schema, new: Schema, path: str) -> None:
        old_props, new_props = old.get("properties", {}), new.get("properties", {})
        old_required, new_required = set(old.get("required", [])), set(new.get("required", []))
        added = [name for name in new_props if name not in old_props]
        for name in old_props:
            field = f"{path}.{name}" if path else name
            if name not in new_props:
                renamed = f"; renamed to {added[0]}?" if len(added) == 1 else ""
                self.add(field, "field-removed", f"no longer in the schema{renamed}")
                continue
            if name in new_required and name not in old_required:
                self.add(field, "made-required", "optional -> required")
            elif name in old_required and name not in new_required:
                self.add(field, "made-optional", "required -> optional")
            self.compare(old_props[name], new_props[name], field)
        for name in added:
            if name in new_required:
                self.add(f"{path}.{name}" if path else name, "field-added-required", "a new required field")

    def add(self, field: str, rule: str, change: str) -> None:
        self.found.append(Breach(self.event, field or "(payload)", rule, change))


def _direction(keyword: str, old: Any, new: Any) -> str:
    """`narrowed` (fewer values valid), `widened` (more) or `changed` (neither contains the other)."""
    if old is None:
        return "narrowed"  # a constraint was added
    if new is None:
        return "widened"  # a constraint was dropped
    if keyword in _UPPER:
        return "narrowed" if new < old else "widened"
    if keyword in _LOWER:
        return "narrowed" if new > old else "widened"
    if keyword == "enum":
        if set(map(_text, new)) < set(map(_text, old)):
            return "narrowed"
        if set(map(_text, new)) > set(map(_text, old)):
            return "widened"
    if keyword == "additionalProperties" and old is False:
        return "widened"
    return "changed"


def _resolve(schema: Schema, root: Schema) -> Schema:
    while "$ref" in schema:
        name = schema["$ref"].removeprefix("#/$defs/")
        schema = {**root.get("$defs", {}).get(name, {}), **{k: v for k, v in schema.items() if k != "$ref"}}
    return schema


def _shape(schema: Schema) -> str:
    """The kind of value a schema takes: `integer`, `string | null`, `array`, `object`."""
    for combinator in ("anyOf", "oneOf"):
        if combinator in schema:
            return " | ".join(_shape(part) for part in schema[combinator])
    kind = schema.get("type") or schema.get("$ref", "any").removeprefix("#/$defs/")
    return " | ".join(kind) if isinstance(kind, list) else str(kind)


def _text(value: Any) -> str:
    return "(none)" if value is None else json.dumps(value, sort_keys=True)


# The committed snapshots, one file per published version: `<ce_type>.json`.
SNAPSHOTS = Path(__file__).resolve().parent / "snapshots"


@dataclass(frozen=True)
class Verdict:
    """How a published version's current contract stands against its snapshot."""

    event: str
    status: str  # new (no snapshot yet), same, compatible (snapshot to refresh), breaking, retired (no such version)
    breaches: tuple[Breach, ...] = ()


def gate(directory: Path | None = None) -> list[Verdict]:
    """Every registered version against its snapshot in `directory` (default SNAPSHOTS), and every snapshot whose
    version is no longer registered."""
    directory = directory or SNAPSHOTS
    verdicts = []
    for ce_type, event_class in sorted(EVENT_TYPES.items()):
        path = directory / f"{ce_type}.json"
        current = contract(event_class)
        if not path.exists():
            verdicts.append(Verdict(ce_type, "new"))
            continue
        published = json.loads(path.read_text())
        found = tuple(breaches(published, current))
        status = "breaking" if found else "same" if render(published) == render(current) else "compatible"
        verdicts.append(Verdict(ce_type, status, found))
    retired = sorted(path.stem for path in directory.glob("*.json") if path.stem not in EVENT_TYPES)
    return verdicts + [Verdict(ce_type, "retired") for ce_type in retired]


def snapshot_write(directory: Path | None = None) -> list[Verdict]:
    """Write the snapshot of every new or compatibly changed version; with any breaking change, write nothing and
    return the verdicts (the caller reports them)."""
    directory = directory or SNAPSHOTS
    verdicts = gate(directory)
    if any(verdict.status == "breaking" for verdict in verdicts):
        return verdicts
    directory.mkdir(parents=True, exist_ok=True)
    for verdict in verdicts:
        if verdict.status in ("new", "compatible"):
            (directory / f"{verdict.event}.json").write_text(render(contract(EVENT_TYPES[verdict.event])))
    return verdicts
