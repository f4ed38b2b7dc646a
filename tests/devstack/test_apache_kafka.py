"""The Apache Kafka launcher: the KRaft cluster id, and the three-node cluster of `make chaos` (a real one)."""

from __future__ import annotations

import base64
import time
from pathlib import Path

import pytest
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, ConfigResource, NewTopic

from apps.devstack.apache_kafka import ApacheKafkaCluster, cluster_id, why_not_apache_kafka


def test_cluster_id_is_sixteen_random_bytes_never_read_as_an_option() -> None:
    ids = {cluster_id() for _ in range(200)}
    assert len(ids) == 200
    for text in ids:
        assert len(text) == 22 and not text.startswith("-")
        assert len(base64.urlsafe_b64decode(text + "==")) == 16


@pytest.mark.skipif(bool(why_not_apache_kafka()), reason=why_not_apache_kafka() or "Apache Kafka can run")
@pytest.mark.timeout(240)
def test_a_three_node_cluster_takes_acknowledged_writes_while_a_node_is_down_and_takes_the_node_back(
    tmp_path: Path,
) -> None:
    """`make chaos`'s cluster: replication factor 3 and min.insync.replicas 2, so acks=all writes go on with one
    node killed (its leaderships fail over), and the node restarted on its data dir rejoins."""
    cluster = ApacheKafkaCluster(nodes=3, data_dir=tmp_path / "kafka", log_dir=tmp_path)
    cluster.start()
    try:
        admin = AdminClient({"bootstrap.servers": cluster.bootstrap_servers})
        for future in admin.create_topics([NewTopic("t", 3, cluster.replication_factor)]).values():
            future.result()
        resource = ConfigResource(ConfigResource.Type.TOPIC, "t")
        config = next(iter(admin.describe_configs([resource]).values())).result()
        assert config["min.insync.replicas"].value == "2"

        cluster.kill_node(2)
        producer = Producer({"bootstrap.servers": cluster.bootstrap_servers, "acks": "all",
                             "enable.idempotence": True, "message.timeout.ms": 60_000})
        errors: list[object] = []
        for n in range(30):
            producer.produce("t", key=str(n).encode(), value=b"x",
                             on_delivery=lambda error, _message: errors.append(error) if error else None)
        assert producer.flush(90) == 0 and errors == []
        assert cluster.down_nodes() == [2]

        cluster.start_node(2)
        deadline = time.monotonic() + 90
        while 2 not in admin.list_topics(timeout=5).brokers:
            assert time.monotonic() < deadline, "node 2 did not rejoin"
            time.sleep(0.5)
    finally:
        cluster.stop()
    assert cluster.down_nodes() == [1, 2, 3]
