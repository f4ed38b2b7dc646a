"""The run's settings, read once from the CHAOS_* environment variables (README, "make chaos")."""

from __future__ import annotations

import os
import random
import time
from dataclasses import dataclass
from pathlib import Path

from apps.devstack.apache_kafka import why_not_apache_kafka

ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Config:
    seed: int
    seconds: float  # of traffic and faults; the quiet wait and the checks come after
    clients: int
    think_seconds: float  # a client's mean pause between two requests
    # The longest wait for quiet after the faults: more than a consumer group's rebalance timeout (Kafka's
    # max.poll.interval.ms, 300 s), the longest a group may legitimately wait for a member it lost.
    quiet_seconds: float
    run_dir: Path
    pdf_leak_mb: int
    worker_max_memory_kib: int
    faults: tuple[str, ...]  # empty: every kind
    broker: str  # "kafka" (Apache Kafka from the jars of `make kafka-jars`) where it can run, else "tansu"
    why_not_kafka: str  # why the default fell back to Tansu ("" when it did not)
    kafka_nodes: int  # Apache Kafka nodes (3: a cluster with replication factor 3; 1: the single node)

    @classmethod
    def from_env(cls) -> Config:
        broker = os.environ.get("CHAOS_BROKER") or ""
        why_not_kafka = "" if broker else why_not_apache_kafka()
        seed = int(os.environ.get("CHAOS_SEED") or random.SystemRandom().randrange(1, 1_000_000))
        stamp = time.strftime("%Y%m%d-%H%M%S")
        return cls(
            seed=seed,
            seconds=float(os.environ.get("CHAOS_SECONDS") or 600),
            clients=int(os.environ.get("CHAOS_CLIENTS") or 3),
            think_seconds=float(os.environ.get("CHAOS_THINK_SECONDS") or 1.5),
            quiet_seconds=float(os.environ.get("CHAOS_QUIET_SECONDS") or 360),
            run_dir=Path(os.environ.get("CHAOS_DIR") or ROOT / "var" / "chaos" / f"{stamp}-seed{seed}"),
            pdf_leak_mb=int(os.environ.get("CHAOS_PDF_LEAK_MB") or 20),
            worker_max_memory_kib=int(os.environ.get("CHAOS_WORKER_MAX_MEMORY_KIB") or 250_000),
            faults=tuple(kind.strip() for kind in os.environ.get("CHAOS_FAULTS", "").split(",") if kind.strip()),
            broker=broker or ("tansu" if why_not_kafka else "kafka"),
            why_not_kafka=why_not_kafka,
            kafka_nodes=int(os.environ.get("CHAOS_KAFKA_NODES") or 3),
        )
