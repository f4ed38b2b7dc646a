"""An Apache Kafka broker (KRaft, one combined broker+controller node) run from the Maven jars in var/kafka/lib.

The same interface as Tansu's `EmbeddedBroker` (`apps.devstack.tansu`), for the Kafka test lane, `make kafka`
and the benchmarks. Unlike Tansu it keeps its data on disk: a broker restarted on the same `data_dir` still has its
topics and committed offsets. Fetch the jars with `make kafka-jars`.
"""

from __future__ import annotations

import base64
import re
import shutil
import subprocess
import time
import uuid
from pathlib import Path

from apps.devstack.process import BrokerProcess, free_port

ROOT = Path(__file__).resolve().parent.parent.parent
DEFAULT_LIB_DIR = ROOT / "var" / "kafka" / "lib"
LOG4J_CONFIG = ROOT / "deploy" / "kafka" / "log4j2.properties"
JVM_OPTIONS = ["-XX:+UseG1GC", "-XX:MaxGCPauseMillis=20", "-Djava.awt.headless=true"]


def java_major_version() -> int:
    """The major version of the `java` on PATH (`openjdk version "17.0.15"` -> 17), 0 when there is none."""
    try:
        result = subprocess.run(["java", "-version"], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return 0
    match = re.search(r'version "(\d+)', result.stderr + result.stdout)
    return int(match.group(1)) if match else 0


def why_not_apache_kafka(lib_dir: Path = DEFAULT_LIB_DIR) -> str:
    """Why Apache Kafka cannot run here from `lib_dir`'s jars, "" when it can (Java 17+, and the jars fetched)."""
    if java_major_version() < 17:
        return "java 17+ is not on PATH"
    if not any(lib_dir.glob("kafka_2.13-*.jar")):
        if shutil.which("mvn") is None:
            return f"the Apache Kafka jars are not in {lib_dir} and mvn is not on PATH to fetch them"
        return f"the Apache Kafka jars are not in {lib_dir} (`make kafka-jars` fetches them)"
    return ""


def cluster_id() -> str:
    """A KRaft cluster id as `kafka-storage.sh random-uuid` prints it: 16 random bytes, base64url, unpadded."""
    while True:
        text = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not text.startswith("-"):  # Kafka's Uuid avoids ids that read as a command-line option
            return text


class ApacheKafkaBroker(BrokerProcess):
    stop_timeout = 30.0  # SIGTERM is Kafka's controlled shutdown: give it time before SIGKILL

    def __init__(
        self,
        *,
        port: int,
        host: str = "127.0.0.1",
        data_dir: Path,
        log_path: Path | None = None,
        lib_dir: Path = DEFAULT_LIB_DIR,
        heap: tuple[str, str] = ("512m", "256m"),
    ) -> None:
        self.host = host
        self.port = port
        self.data_dir = data_dir
        self.log_path = log_path
        self.lib_dir = lib_dir
        self.heap = heap
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, *, timeout: float = 60.0) -> None:
        """Format the storage (first start on this data dir only), start the broker, return once it serves metadata."""
        if not any(self.lib_dir.glob("kafka_2.13-*.jar")):
            raise RuntimeError(f"no Apache Kafka jars in {self.lib_dir}: run `make kafka-jars`")
        self.data_dir.mkdir(parents=True, exist_ok=True)
        properties = self._write_properties()
        if not (self.data_dir / "logs" / "meta.properties").exists():
            self._java("kafka.tools.StorageTool", "format", "-t", cluster_id(), "-c", str(properties))
        command = self._command("kafka.Kafka", str(properties), heap=self.heap)
        if self.log_path is None:
            self.process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
        else:
            with open(self.log_path, "ab") as log:  # the child keeps its own descriptor
                self.process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
        self._wait_until_serving(timeout)

    def _write_properties(self) -> Path:
        controller = free_port()
        properties = {
            "process.roles": "broker,controller",
            "node.id": "1",
            # Static voters: the controller's port may change between starts on the same data dir.
            "controller.quorum.voters": f"1@{self.host}:{controller}",
            "listeners": f"PLAINTEXT://{self.host}:{self.port},CONTROLLER://{self.host}:{controller}",
            "advertised.listeners": f"PLAINTEXT://{self.host}:{self.port}",
            "controller.listener.names": "CONTROLLER",
            "inter.broker.listener.name": "PLAINTEXT",
            "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
            "log.dirs": str(self.data_dir / "logs"),
            "num.partitions": "6",
            "auto.create.topics.enable": "false",
            "group.initial.rebalance.delay.ms": "0",
            "default.replication.factor": "1",
            "min.insync.replicas": "1",
            "offsets.topic.replication.factor": "1",
            "transaction.state.log.replication.factor": "1",
            "transaction.state.log.min.isr": "1",
            "share.coordinator.state.topic.replication.factor": "1",
            "share.coordinator.state.topic.min.isr": "1",
        }
        path = self.data_dir / "server.properties"
        path.write_text("".join(f"{key}={value}\n" for key, value in properties.items()))
        return path

    def _command(self, main_class: str, *args: str, heap: tuple[str, str]) -> list[str]:
        return [
            "java", f"-Xmx{heap[0]}", f"-Xms{heap[1]}", *JVM_OPTIONS,
            f"-Dlog4j2.configurationFile={LOG4J_CONFIG}", "-cp", f"{self.lib_dir}/*", main_class, *args,
        ]

    def _java(self, main_class: str, *args: str) -> None:
        """A short-lived tool from the same jars (StorageTool), on a small heap."""
        result = subprocess.run(
            self._command(main_class, *args, heap=("256m", "64m")), capture_output=True, text=True, timeout=120,
        )
        if result.returncode != 0:
            raise RuntimeError(f"{main_class} {args[0]} failed ({result.returncode}): {result.stdout}{result.stderr}")

    def _wait_until_serving(self, timeout: float) -> None:
        from confluent_kafka.admin import AdminClient

        admin = AdminClient({"bootstrap.servers": self.bootstrap_servers, "log_level": 0})
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                raise RuntimeError(
                    f"Apache Kafka exited with {self.process.returncode} (port {self.port} taken? see {self.log_path})"
                )
            try:
                if 1 in admin.list_topics(timeout=1).brokers:
                    return
            except Exception:  # noqa: BLE001 - KafkaException until the listener is up
                pass
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"Apache Kafka did not serve metadata on {self.bootstrap_servers} within {timeout}s")
