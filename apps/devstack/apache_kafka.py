"""Apache Kafka (KRaft) run from the Maven jars in var/kafka/lib: one combined broker+controller node
(`ApacheKafkaBroker`), or a cluster of such nodes with a static voter quorum (`ApacheKafkaCluster`, for `make chaos`).

The same interface as Tansu's `EmbeddedBroker` (`apps.devstack.tansu`), for the Kafka test lane, `make kafka`
and the benchmarks. Unlike Tansu it keeps its data on disk: a broker restarted on the same `data_dir` still has its
topics and committed offsets. Fetch the jars with `make kafka-jars`.

`ApacheKafkaBroker(sasl=Sasl(...))` (and `ApacheKafkaCluster(sasl=...)`, every node alike) runs as docker-compose.yml
does: clients authenticate with SASL/SCRAM-SHA-512 (the users created when the storage is formatted), the
StandardAuthorizer refuses what no ACL allows, and `admin` is the super user the node itself and the setup commands
(`kafka_topics`, `kafka_acls`) use.
"""

from __future__ import annotations

import base64
import os
import re
import shutil
import subprocess
import time
import uuid
from dataclasses import dataclass, field
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


SCRAM = "SCRAM-SHA-512"
AUTHORIZER = "org.apache.kafka.metadata.authorizer.StandardAuthorizer"


@dataclass(frozen=True)
class Sasl:
    """SASL on the client listener: SCRAM-SHA-512 users (name -> password) created at format time, `admin` among
    them as the super user. The controller listener takes PLAIN from `admin` only (KRaft controllers cannot check
    SCRAM: the credentials live in the metadata they serve)."""

    admin_password: str
    users: dict[str, str] = field(default_factory=dict)
    admin: str = "admin"

    def scram_arguments(self) -> list[str]:
        """StorageTool format's `--add-scram` arguments, one per user and the admin."""
        users = {**self.users, self.admin: self.admin_password}
        return [arg for name, password in users.items()
                for arg in ("--add-scram", f"{SCRAM}=[name={name},password={password}]")]

    def client_config(self, username: str | None = None, password: str | None = None) -> dict[str, str]:
        """librdkafka's settings for `username` (default: the admin) on this node's listener."""
        if username is None:
            username, password = self.admin, self.admin_password
        return {"security.protocol": "SASL_PLAINTEXT", "sasl.mechanism": SCRAM,
                "sasl.username": username, "sasl.password": password or self.users[username]}


def sasl_properties(sasl: Sasl) -> dict[str, str]:
    """What turns a node's PLAINTEXT listener into SASL_PLAINTEXT, with the authorizer on (see `Sasl`)."""
    admin, password = sasl.admin, sasl.admin_password
    return {
        "listener.security.protocol.map": "SASL_PLAINTEXT:SASL_PLAINTEXT,CONTROLLER:SASL_PLAINTEXT",
        "inter.broker.listener.name": "SASL_PLAINTEXT",
        "sasl.enabled.mechanisms": SCRAM,
        "sasl.mechanism.inter.broker.protocol": SCRAM,
        "listener.name.sasl_plaintext.scram-sha-512.sasl.jaas.config":
            f'org.apache.kafka.common.security.scram.ScramLoginModule required username="{admin}" '
            f'password="{password}";',
        "sasl.mechanism.controller.protocol": "PLAIN",
        "listener.name.controller.sasl.enabled.mechanisms": "PLAIN",
        "listener.name.controller.plain.sasl.jaas.config":
            f'org.apache.kafka.common.security.plain.PlainLoginModule required username="{admin}" '
            f'password="{password}" user_{admin}="{password}";',
        "authorizer.class.name": AUTHORIZER,
        "super.users": f"User:{admin}",
        "allow.everyone.if.no.acl.found": "false",
    }


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
        sasl: Sasl | None = None,
    ) -> None:
        self.host = host
        self.sasl = sasl
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
            scram = self.sasl.scram_arguments() if self.sasl else []  # SCRAM users exist from the first start
            run_tool(self.lib_dir, "kafka.tools.StorageTool", "format", "-t", cluster_id(), "-c", str(properties),
                     *scram)
        command = java_command(self.lib_dir, "kafka.Kafka", str(properties), heap=self.heap)
        if self.log_path is None:
            self.process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
        else:
            with open(self.log_path, "ab") as log:  # the child keeps its own descriptor
                self.process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
        self._wait_until_serving(timeout)

    def _write_properties(self) -> Path:
        controller = free_port()
        # Static voters: the controller's port may change between starts on the same data dir.
        properties = node_properties(
            node_id=1, host=self.host, port=self.port, controller_port=controller,
            voters=f"1@{self.host}:{controller}", data_dir=self.data_dir, replication_factor=1, min_insync=1,
            sasl=self.sasl,
        )
        return write_properties(self.data_dir, properties)

    def client_config(self) -> dict[str, str]:
        """What a client needs besides the address to reach this node as its admin (nothing without SASL)."""
        return self.sasl.client_config() if self.sasl else {}

    def _wait_until_serving(self, timeout: float) -> None:
        from confluent_kafka.admin import AdminClient

        admin = AdminClient({"bootstrap.servers": self.bootstrap_servers, "log_level": 0, **self.client_config()})
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                raise RuntimeError(
                    f"Apache Kafka exited with {self.process.returncode} (port {self.port} taken? see {self.log_path})"
                )
            if serving(admin, {1}):
                return
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"Apache Kafka did not serve metadata on {self.bootstrap_servers} within {timeout}s")


def node_properties(
    *, node_id: int, host: str, port: int, controller_port: int, voters: str, data_dir: Path,
    replication_factor: int, min_insync: int, sasl: Sasl | None = None,
) -> dict[str, str]:
    """server.properties of one combined broker+controller node; every replicated topic (the app's by default, the
    internal offsets, transaction and share-state topics) gets `replication_factor` replicas and `min_insync`.
    With `sasl`, the client listener is SASL_PLAINTEXT and the authorizer is on (`sasl_properties`)."""
    properties = {
        "process.roles": "broker,controller",
        "node.id": str(node_id),
        "controller.quorum.voters": voters,
        "listeners": f"PLAINTEXT://{host}:{port},CONTROLLER://{host}:{controller_port}",
        "advertised.listeners": f"PLAINTEXT://{host}:{port}",
        "controller.listener.names": "CONTROLLER",
        "inter.broker.listener.name": "PLAINTEXT",
        "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
        "log.dirs": str(data_dir / "logs"),
        "num.partitions": "6",
        "auto.create.topics.enable": "false",
        "group.initial.rebalance.delay.ms": "0",
        "default.replication.factor": str(replication_factor),
        "min.insync.replicas": str(min_insync),
        "offsets.topic.replication.factor": str(replication_factor),
        "transaction.state.log.replication.factor": str(replication_factor),
        "transaction.state.log.min.isr": str(min_insync),
        "share.coordinator.state.topic.replication.factor": str(replication_factor),
        "share.coordinator.state.topic.min.isr": str(min_insync),
    }
    if sasl is not None:
        listener = f"SASL_PLAINTEXT://{host}:{port}"
        properties |= {"listeners": f"{listener},CONTROLLER://{host}:{controller_port}",
                       "advertised.listeners": listener, **sasl_properties(sasl)}
    return properties


def write_properties(data_dir: Path, properties: dict[str, str]) -> Path:
    path = data_dir / "server.properties"
    path.write_text("".join(f"{key}={value}\n" for key, value in properties.items()))
    return path


def java_command(lib_dir: Path, main_class: str, *args: str, heap: tuple[str, str]) -> list[str]:
    return [
        "java", f"-Xmx{heap[0]}", f"-Xms{heap[1]}", *JVM_OPTIONS,
        f"-Dlog4j2.configurationFile={LOG4J_CONFIG}", "-cp", f"{lib_dir}/*", main_class, *args,
    ]


def run_tool(lib_dir: Path, main_class: str, *args: str) -> None:
    """A short-lived tool from the same jars (StorageTool), on a small heap."""
    result = subprocess.run(
        java_command(lib_dir, main_class, *args, heap=("256m", "64m")), capture_output=True, text=True, timeout=120,
    )
    if result.returncode != 0:
        raise RuntimeError(f"{main_class} {args[0]} failed ({result.returncode}): {result.stdout}{result.stderr}")


def serving(admin: object, node_ids: set[int]) -> bool:
    """Whether the cluster's metadata lists every node of `node_ids` as a live broker."""
    try:
        return node_ids <= set(admin.list_topics(timeout=1).brokers)  # type: ignore[attr-defined] # an AdminClient
    except Exception:  # noqa: BLE001 - KafkaException until the listeners are up
        return False


class ApacheKafkaCluster:
    """`nodes` combined broker+controller nodes on 127.0.0.1, each with its own ports and data dir
    (`data_dir/node-<id>`), a static quorum of every node as a voter (a KRaft majority survives the loss of a
    minority), and replication factor min(3, nodes) with `min.insync.replicas` one less (at least 1): with 3 nodes,
    acks=all writes go on while one node is down. `kill_node`/`start_node` take one node down and back."""

    stop_timeout = 30.0

    def __init__(
        self,
        *,
        nodes: int = 3,
        host: str = "127.0.0.1",
        data_dir: Path,
        log_dir: Path | None = None,
        lib_dir: Path = DEFAULT_LIB_DIR,
        heap: tuple[str, str] = ("384m", "128m"),
        ports: list[int] | None = None,
        sasl: Sasl | None = None,
    ) -> None:
        if nodes < 1:
            raise ValueError("a cluster needs at least one node")
        self.host = host
        self.node_ids = list(range(1, nodes + 1))
        self.ports = dict(zip(self.node_ids, ports or [free_port() for _ in self.node_ids], strict=True))
        # Static: every node names every voter by address, so a node restarted alone finds the quorum again.
        self.controller_ports = {node: free_port() for node in self.node_ids}
        self.data_dir = data_dir
        self.log_dir = log_dir
        self.lib_dir = lib_dir
        self.heap = heap
        self.sasl = sasl
        self.replication_factor = min(3, nodes)
        self.min_insync = max(1, self.replication_factor - 1)
        self.processes: dict[int, subprocess.Popen[bytes] | None] = dict.fromkeys(self.node_ids)

    @property
    def bootstrap_servers(self) -> str:
        return ",".join(f"{self.host}:{self.ports[node]}" for node in self.node_ids)

    def node_dir(self, node: int) -> Path:
        return self.data_dir / f"node-{node}"

    def start(self, *, timeout: float = 120.0) -> None:
        """Format every node's storage with one cluster id (first start on these data dirs only), start them all,
        return once the metadata lists every node as a broker."""
        if not any(self.lib_dir.glob("kafka_2.13-*.jar")):
            raise RuntimeError(f"no Apache Kafka jars in {self.lib_dir}: run `make kafka-jars`")
        unformatted = [node for node in self.node_ids
                       if not (self.node_dir(node) / "logs" / "meta.properties").exists()]
        cluster = cluster_id()
        scram = self.sasl.scram_arguments() if self.sasl else []  # every node formats the same SCRAM users
        formats = [
            subprocess.Popen(java_command(self.lib_dir, "kafka.tools.StorageTool", "format", "-t", cluster, "-c",
                                          str(self._write_properties(node)), *scram, heap=("256m", "64m")),
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
            for node in unformatted
        ]
        for node, tool in zip(unformatted, formats, strict=True):
            output, _ = tool.communicate(timeout=120)
            if tool.returncode != 0:
                raise RuntimeError(f"StorageTool format of node {node} failed ({tool.returncode}): {output.decode()}")
        for node in self.node_ids:
            self.start_node(node)
        self._wait_until_serving(timeout)

    def start_node(self, node: int) -> None:
        """Start one node (its storage already formatted) without waiting for it: it rejoins on its own."""
        properties = self._write_properties(node)
        command = java_command(self.lib_dir, "kafka.Kafka", str(properties), heap=self.heap)
        if self.log_dir is None:
            self.processes[node] = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
            return
        with open(self.log_dir / f"kafka-{node}.log", "ab") as log:  # the child keeps its own descriptor
            self.processes[node] = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)

    def kill_node(self, node: int) -> None:
        """SIGKILL one node (no controlled shutdown): its partitions' leadership fails over to the others."""
        process = self.processes[node]
        if process is not None:
            process.kill()
            process.wait()
        self.processes[node] = None

    def running_processes(self) -> list[subprocess.Popen[bytes]]:
        return [process for process in self.processes.values() if process is not None and process.poll() is None]

    def down_nodes(self) -> list[int]:
        return [node for node, process in self.processes.items() if process is None or process.poll() is not None]

    def stop(self, *, timeout: float | None = None) -> None:
        """SIGTERM to every node (a controlled shutdown), SIGKILL to those still running after `timeout`."""
        for process in self.running_processes():
            process.terminate()
        deadline = time.monotonic() + (self.stop_timeout if timeout is None else timeout)
        for node, running in self.processes.items():
            if running is not None:
                try:
                    running.wait(max(0.1, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    running.kill()
                    running.wait()
            self.processes[node] = None

    def client_config(self) -> dict[str, str]:
        """What a client needs besides the addresses to reach the cluster as its admin (nothing without SASL)."""
        return self.sasl.client_config() if self.sasl else {}

    def signal_all(self, signum: int) -> None:
        """`signum` (SIGSTOP, SIGCONT) to every running node."""
        for process in self.running_processes():
            try:
                os.kill(process.pid, signum)
            except ProcessLookupError:
                pass

    def _write_properties(self, node: int) -> Path:
        directory = self.node_dir(node)
        directory.mkdir(parents=True, exist_ok=True)
        voters = ",".join(f"{n}@{self.host}:{self.controller_ports[n]}" for n in self.node_ids)
        return write_properties(directory, node_properties(
            node_id=node, host=self.host, port=self.ports[node], controller_port=self.controller_ports[node],
            voters=voters, data_dir=directory, replication_factor=self.replication_factor, min_insync=self.min_insync,
            sasl=self.sasl,
        ))

    def _wait_until_serving(self, timeout: float) -> None:
        from confluent_kafka.admin import AdminClient

        admin = AdminClient({"bootstrap.servers": self.bootstrap_servers, "log_level": 0, **self.client_config()})
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            exited = [node for node in self.down_nodes() if self.processes[node] is not None]
            if exited:
                self.stop()
                raise RuntimeError(f"Apache Kafka node(s) {exited} exited (a port taken? see {self.log_dir})")
            if serving(admin, set(self.node_ids)):
                return
            time.sleep(0.5)
        self.stop()
        raise RuntimeError(
            f"the Apache Kafka cluster did not serve metadata on {self.bootstrap_servers} within {timeout}s"
        )
