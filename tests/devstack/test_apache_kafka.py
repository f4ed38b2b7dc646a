"""The Apache Kafka launcher's parts that need no JVM: the KRaft cluster id."""

from __future__ import annotations

import base64

from apps.devstack.apache_kafka import cluster_id


def test_cluster_id_is_sixteen_random_bytes_never_read_as_an_option() -> None:
    ids = {cluster_id() for _ in range(200)}
    assert len(ids) == 200
    for text in ids:
        assert len(text) == 22 and not text.startswith("-")
        assert len(base64.urlsafe_b64decode(text + "==")) == 16
