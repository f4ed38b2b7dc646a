"""The Apache Kafka launcher: the KRaft cluster id, and the three-node cluster of `make chaos` (a real one), with
SASL and ACLs as the chaos run has it."""

from __future__ import annotations

import base64
import time
import uuid
from collections.abc import Mapping
from pathlib import Path

import pytest
from confluent_kafka import KafkaError, Producer
from confluent_kafka.admin import (
    AclBinding,
    AclBindingFilter,
    AclOperation,
    AclPermissionType,
    AdminClient,
    ConfigResource,
    NewTopic,
    ResourcePatternType,
    ResourceType,
)

from apps.common.kafka_acls import ensure_acls
from apps.devstack.apache_kafka import ApacheKafkaCluster, Sasl, cluster_id, why_not_apache_kafka


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


def produce_one(config: Mapping[str, object], topic: str) -> KafkaError | None:
    """One acknowledged write with `config`: None when the cluster took it, else its delivery error."""
    outcome: list[KafkaError | None] = []
    producer = Producer({"acks": "all", "message.timeout.ms": 20_000, "log_level": 0, **config})
    producer.produce(topic, key=b"k", value=b"x", on_delivery=lambda error, _message: outcome.append(error))
    producer.flush(60)
    return outcome[0] if outcome else KafkaError(KafkaError._TIMED_OUT)


@pytest.mark.skipif(bool(why_not_apache_kafka()), reason=why_not_apache_kafka() or "Apache Kafka can run")
@pytest.mark.timeout(240)
def test_a_three_node_cluster_with_sasl_serves_its_users_as_their_acls_say_and_no_stranger(tmp_path: Path) -> None:
    """`make chaos`'s cluster as docker-compose.yml runs Kafka: SCRAM users on every node, the authorizer on; a
    DENY beside an ALLOW refuses (the chaos fault refuse_topic), and deleting it lets the writes through again."""
    sasl = Sasl(admin_password=uuid.uuid4().hex, users={"writer": uuid.uuid4().hex})
    cluster = ApacheKafkaCluster(nodes=3, data_dir=tmp_path / "kafka", log_dir=tmp_path, sasl=sasl)
    cluster.start()
    try:
        servers = {"bootstrap.servers": cluster.bootstrap_servers}
        admin = AdminClient({**servers, **cluster.client_config()})
        for future in admin.create_topics([NewTopic("t", 3, cluster.replication_factor)]).values():
            future.result()
        writer = {**servers, **sasl.client_config("writer")}
        assert produce_one(writer, "t") is not None  # no ACL allows it yet

        ensure_acls(admin, [acl("t", AclOperation.WRITE), acl("t", AclOperation.DESCRIBE)])
        assert produce_one(writer, "t") is None
        assert produce_one({**servers, "message.timeout.ms": 5_000}, "t") is not None  # no SASL: not served

        denial = acl("t", AclOperation.WRITE, AclPermissionType.DENY)
        ensure_acls(admin, [denial])
        refused = produce_one(writer, "t")
        assert refused is not None and refused.code() == KafkaError.TOPIC_AUTHORIZATION_FAILED, refused

        match = AclBindingFilter(denial.restype, denial.name, denial.resource_pattern_type, denial.principal,
                                 denial.host, denial.operation, denial.permission_type)
        for future in admin.delete_acls([match]).values():
            future.result()
        deadline = time.monotonic() + 30
        while (error := produce_one(writer, "t")) is not None:
            assert time.monotonic() < deadline, f"still refused after the denial was deleted: {error}"
            time.sleep(0.5)
    finally:
        cluster.stop()


def acl(topic: str, operation: AclOperation, permission: AclPermissionType = AclPermissionType.ALLOW) -> AclBinding:
    return AclBinding(ResourceType.TOPIC, topic, ResourcePatternType.LITERAL, "User:writer", "*", operation,
                      permission)
