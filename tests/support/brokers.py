"""Which broker the test session runs on: LOGIFLOW_TEST_BROKER=tansu (default) or kafka (Apache Kafka from jars).

KAFKA_BOOTSTRAP_SERVERS, when set, names an external broker instead and no broker process is started.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from apps.devstack.apache_kafka import ApacheKafkaBroker
from apps.devstack.process import free_port
from apps.devstack.tansu import EmbeddedBroker

BROKERS = ("tansu", "kafka")
Broker = EmbeddedBroker | ApacheKafkaBroker


def test_broker() -> str:
    name = os.environ.get("LOGIFLOW_TEST_BROKER", "tansu")
    if name not in BROKERS:
        raise ValueError(f"LOGIFLOW_TEST_BROKER={name!r}: expected one of {', '.join(BROKERS)}")
    return name


def new_broker(directory: Path) -> Broker:
    """A broker of the selected kind on a free port, logging (and for Kafka keeping its data) under `directory`."""
    directory.mkdir(parents=True, exist_ok=True)
    if test_broker() == "kafka":
        return ApacheKafkaBroker(port=free_port(), data_dir=directory / "kafka-data", log_path=directory / "kafka.log")
    return EmbeddedBroker(port=free_port(), log_path=directory / "tansu.log")


def restart_empty(broker: Broker) -> None:
    """Stop `broker` and start it holding nothing: Tansu always restarts so; Apache Kafka gets its data dir wiped
    (a new cluster id, as a cluster rebuilt on an empty volume)."""
    broker.stop()
    if isinstance(broker, ApacheKafkaBroker):
        shutil.rmtree(broker.data_dir)
    broker.start()
