"""The outbox relay: sends committed outbox rows to Kafka; a row is marked published only after its ack.

One module per story: `loop` (the worker: one thread, batches overlapping the broker's work), `claims` (the claim
and mark SQL), `batch` (a batch's rows and what it records), `verdicts` (what a delivery report means for its row,
a pure function), `ordering` (per-key order bookkeeping), `broker_memory` (does the cluster still hold what it
acknowledged?).
"""

from apps.outbox.relay.batch import Batch
from apps.outbox.relay.loop import OutboxRelay

__all__ = ["Batch", "OutboxRelay"]
