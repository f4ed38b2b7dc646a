"""`manage.py events`: `tail` reads a topic on the session's broker, hostile messages included, without a consumer
group or a commit; `validate` checks a payload with the errors a consumer would record."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from confluent_kafka import OFFSET_INVALID, Consumer, TopicPartition
from django.core.management import CommandError, call_command

from apps.common.kafka import client_config
from apps.consumers import tail as tail_module
from apps.consumers.decoding import DecodeFailure, decode
from apps.consumers.tail import TOOL_GROUP
from tests.consumers.support import RawProducer, cloud_event_headers, happened, raw_message
from tests.factories import route_calculated

JAVA_KEY = b"\x00\x00\x00\x07"


def tail(*args: str) -> str:
    out = io.StringIO()
    call_command("events", "tail", *args, "--idle-timeout", "60", stdout=out)
    return out.getvalue()


def tail_json(*args: str) -> list[dict[str, object]]:
    return [json.loads(line) for line in tail(*args, "--json").splitlines()]


@pytest.fixture
def hostile_topic(producer: RawProducer) -> str:
    """Partition 0: a valid RouteCalculated, a Java integer key with a non-JSON value and no headers, a tombstone
    without a key, CloudEvents headers over a non-JSON value, a type this release does not know, a valid one after.
    Partition 1: nothing."""
    event = route_calculated()
    producer.event(event)
    producer.send(value=b"\xff\x00 not json", key=JAVA_KEY, headers=[])
    producer.send(value=None, key=None, headers=[])
    producer.send(value=b"{not json", key=b"truck:8", headers=cloud_event_headers(event))
    producer.event(happened(key="k\x00", seq=1))
    producer.event(route_calculated(truck_id=9))
    producer.flush()
    return producer.topic


@pytest.mark.django_db
def test_tail_shows_each_message_decoded_or_why_not_and_survives_hostile_ones(hostile_topic: str) -> None:
    shown = tail_json(hostile_topic, "--from-offset", "0", "--max-messages", "6")

    assert [(m["partition"], m["offset"]) for m in shown] == [(0, offset) for offset in range(6)]
    valid, java, tombstone, not_json, unknown, last = shown
    assert valid["valid"] and valid["payload"] == json.loads(route_calculated().model_dump_json())
    assert (valid["key"], valid["type"]) == ("truck:7", "logiflow.routing.RouteCalculated.v1")
    assert valid["trace_id"] == "0af7651916cd43dd8448eb211c80319c"
    assert ("ce_specversion", "1.0") in [tuple(pair) for pair in valid["headers"]]  # type: ignore[attr-defined]
    assert (java["key"], java["valid"], java["reason"]) == ("\\x00\\x00\\x00\\x07", False, "missing_headers")
    assert java["value"] == "\\xff\\x00 not json" and java["headers"] == []
    assert (tombstone["key"], tombstone["value"], tombstone["reason"]) == (None, None, "missing_headers")
    assert (not_json["reason"], not_json["value"]) == ("not_json", "{not json")
    assert unknown["reason"] == "unknown_type"
    assert unknown["error"] == "'logiflow.testing.Happened.v1' is not an event type (or version) this release knows"
    assert last["valid"] and last["key"] == "truck:9"


@pytest.mark.django_db
def test_tail_in_text_prints_hostile_messages_escaped(hostile_topic: str) -> None:
    text = tail(hostile_topic, "--from-offset", "0", "--max-messages", "3")

    assert f"{hostile_topic}[0]@1 " in text and 'key="\\x00\\x00\\x00\\x07" (no ce_type)' in text
    assert "  INVALID (missing_headers): missing CloudEvents headers: ce_specversion, ce_id" in text
    assert "  value \\xff\\x00 not json" in text
    assert "key=(none)" in text
    assert "  payload {" in text and "  trace 0af7651916cd43dd8448eb211c80319c" in text


@pytest.mark.django_db
def test_tail_filters_by_type_and_by_key_as_shown(hostile_topic: str) -> None:
    by_type = tail_json(hostile_topic, "--from-offset", "0", "--type", "RouteCalculated", "--max-messages", "3")
    by_key = tail_json(hostile_topic, "--from-offset", "0", "--key", "\\x00\\x00\\x00\\x07", "--max-messages", "1")

    # The non-JSON value under RouteCalculated's headers is of the type too.
    assert [m["offset"] for m in by_type] == [0, 3, 5]
    assert [m["offset"] for m in by_key] == [1]


@pytest.mark.django_db
def test_tail_reads_a_range_of_offsets_of_one_partition_then_stops(hostile_topic: str) -> None:
    shown = tail_json(hostile_topic, "--partition", "0", "--from-offset", "1", "--to-offset", "2")

    assert [(m["partition"], m["offset"]) for m in shown] == [(0, 1), (0, 2)]


@pytest.mark.django_db
def test_tail_without_follow_stops_at_the_end_of_an_empty_partition(hostile_topic: str) -> None:
    assert tail(hostile_topic, "--partition", "1", "--no-follow") == ""


class RecordingConsumer(Consumer):
    """The tool's consumer, its settings kept to ask the broker afterwards what its group committed."""

    configs: list[dict[str, object]] = []

    def __init__(self, config: dict[str, object]) -> None:
        RecordingConsumer.configs.append(config)
        super().__init__(config)

    def subscribe(self, *args: object, **kwargs: object) -> None:
        raise AssertionError("the tool must assign partitions, never subscribe (that joins a group)")


@pytest.mark.django_db
def test_tail_joins_no_consumer_group_and_commits_nothing(
    hostile_topic: str, monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(RecordingConsumer, "configs", [])
    monkeypatch.setattr(tail_module, "Consumer", RecordingConsumer)
    tail(hostile_topic, "--from-offset", "0", "--max-messages", "6")

    (config,) = RecordingConsumer.configs
    assert str(config["group.id"]).startswith(TOOL_GROUP) and config["enable.auto.commit"] is False
    asking = Consumer(client_config(**{"group.id": config["group.id"], "enable.auto.commit": False}))
    try:
        committed = asking.committed([TopicPartition(hostile_topic, 0), TopicPartition(hostile_topic, 1)], timeout=10)
    finally:
        asking.close()
    assert [position.offset for position in committed] == [OFFSET_INVALID, OFFSET_INVALID]


def test_tail_names_a_missing_topic_or_partition(kafka_bootstrap: str, testing_topic: str) -> None:
    with pytest.raises(CommandError, match="not 7"):
        tail(testing_topic, "--partition", "7")


@pytest.fixture
def payload_file(tmp_path: Path) -> Path:
    return tmp_path / "payload.json"


def test_validate_accepts_a_valid_payload(payload_file: Path) -> None:
    payload_file.write_text(route_calculated().model_dump_json())
    out = io.StringIO()

    call_command("events", "validate", str(payload_file), "--type", "RouteCalculated", "--version", "1", stdout=out)

    assert out.getvalue().startswith("valid logiflow.routing.RouteCalculated.v1: {")


@pytest.mark.parametrize("value", [b'{"route_id": -1}', b"{not json"], ids=["invalid", "not JSON"])
def test_validate_reports_what_the_consumer_would_record(payload_file: Path, value: bytes) -> None:
    payload_file.write_bytes(value)
    event = route_calculated()
    with pytest.raises(DecodeFailure) as recorded:
        decode(raw_message(event, value=value), group="invoicing")

    with pytest.raises(CommandError) as said:
        call_command("events", "validate", str(payload_file), "--type", "logiflow.routing.RouteCalculated.v1")

    assert str(said.value) == f"invalid ({recorded.value.reason}): {recorded.value}"


def test_validate_refuses_an_unknown_type_or_version_and_an_unreadable_file(payload_file: Path) -> None:
    payload_file.write_text("{}")
    with pytest.raises(CommandError, match="no event type 'RouteCalculated' version 9; known: logiflow.invoicing"):
        call_command("events", "validate", str(payload_file), "--type", "RouteCalculated", "--version", "9")
    with pytest.raises(CommandError, match="cannot read .*missing.json: No such file"):
        call_command("events", "validate", str(payload_file.with_name("missing.json")), "--type", "RouteCalculated")
