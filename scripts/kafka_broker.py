"""`make kafka`: a single-node Apache Kafka (KRaft) on 127.0.0.1:$KAFKA_PORT (default 9092) until Ctrl-C/SIGTERM.

Runs from the jars `make kafka-jars` fetched; data stays in var/kafka/data across runs, the log goes to
var/kafka/broker.log. No Django here (its local settings would start the embedded PostgreSQL): the topics are
created by `manage.py kafka_topics`, which `make run` does itself when it runs on this broker.
"""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path
from types import FrameType

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from apps.devstack.apache_kafka import ApacheKafkaBroker  # noqa: E402


def main() -> int:
    var = ROOT / "var" / "kafka"
    broker = ApacheKafkaBroker(
        port=int(os.environ.get("KAFKA_PORT", "9092")), data_dir=var / "data", log_path=var / "broker.log"
    )
    try:
        broker.start()
    except RuntimeError as error:
        print(f"kafka_broker: {error} (see {broker.log_path})", file=sys.stderr)
        return 1

    def stop(_signum: int, _frame: FrameType | None) -> None:
        # Only signal here: the main thread is inside Popen.wait() (see manage.py embedded_broker).
        broker.terminate()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    print(f"Apache Kafka on {broker.bootstrap_servers} (data in {broker.data_dir}); Ctrl-C stops it", flush=True)
    code = broker.wait()
    print(f"Apache Kafka stopped (exit {code})", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
