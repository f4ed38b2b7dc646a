"""`manage.py relay_outbox` as its own process, with the broker's answer for one topic replaced by a refusal a
person must fix (TOPIC_AUTHORIZATION_FAILED), as tests/outbox/test_refusals.py injects it: the benchmark's
`refusal_isolation_ratio` only. Usage: `python bench/refusing_relay.py <topic>` from the checkout's root.

An injected refusal, not a real one: a broker asked for a deleted topic answers only after
`topic.metadata.propagation.max.ms` (or creates it again), which would time the client, not the relay.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from unittest import mock

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def main(refused: str) -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "logiflow.settings.local")
    import django

    django.setup()
    from confluent_kafka import KafkaError
    from django.core.management import call_command

    from apps.common.kafka import kafka_topic
    from apps.outbox.relay.batch import Batch

    real = Batch.report
    refused = kafka_topic(refused)
    refusal = KafkaError(KafkaError.TOPIC_AUTHORIZATION_FAILED, "refused by the benchmark")

    def report(self: Batch, slot: int, error: KafkaError | None, message) -> None:  # noqa: ANN001
        real(self, slot, refusal if message.topic() == refused else error, message)

    with mock.patch.object(Batch, "report", report):
        call_command("relay_outbox")


if __name__ == "__main__":
    main(sys.argv[1])
