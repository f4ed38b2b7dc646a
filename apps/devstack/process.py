"""What the development brokers share: a free local port, and the broker as a child process."""

from __future__ import annotations

import socket
import subprocess


def free_port() -> int:
    """A port on 127.0.0.1 that nothing listened on a moment ago (the kernel picks it)."""
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
