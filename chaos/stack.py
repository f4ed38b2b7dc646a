"""The stack under test as real processes: an embedded PostgreSQL, a broker (Tansu, Apache Kafka, or a cluster of
Apache Kafka nodes), two relays, two members of each consumer group, Celery with beat and gunicorn. A supervisor
thread restarts whatever the faults killed (broker nodes included), or whatever exited on its own (with backoff), as
a process supervisor in production would.

Every process runs in a session of its own, so a kill reaches its children too (Celery's pool); logs go to
<run dir>/logs/<name>.log, appended across restarts.

Apache Kafka runs as docker-compose.yml does: SASL/SCRAM, the authorizer on and `manage.py kafka_acls`'s ACLs; each
process authenticates as its kind's principal (every one as the monitor, the relays as the relay, the consumers as
the consumer) and the driver itself as the admin.
"""

from __future__ import annotations

import logging
import os
import secrets
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from confluent_kafka.admin import (
    AclBinding,
    AclBindingFilter,
    AclOperation,
    AclPermissionType,
    AdminClient,
    ResourcePatternType,
    ResourceType,
)

from apps.common.kafka_acls import ensure_acls
from apps.devstack.apache_kafka import SCRAM, ApacheKafkaBroker, ApacheKafkaCluster, Sasl
from apps.devstack.process import free_port
from apps.devstack.tansu import EmbeddedBroker
from chaos.config import ROOT, Config
from logiflow.embedded_postgres import throwaway_database_url

logger = logging.getLogger("chaos")
PYTHON = sys.executable
SET_UP_TIMEOUT_S = 300
STOP_GRACE_S = 20
RESTART_BACKOFF_MAX_S = 30
STABLE_AFTER_S = 30  # a process that ran this long is healthy again: its next exit restarts it at once
RELAYS = ("relay-1", "relay-2")
CONSUMERS = ("invoicing-1", "invoicing-2", "routing-1", "routing-2")
PRINCIPALS = ("relay", "consumer", "monitor")  # the kinds `manage.py kafka_acls` grants, as docker-compose.yml names
ACL_TIMEOUT_S = 30.0
Broker = EmbeddedBroker | ApacheKafkaBroker | ApacheKafkaCluster


def username(kind: str) -> str:
    """The SCRAM user of a principal kind, as docker-compose.yml names them."""
    return f"logiflow-{kind}"


@dataclass
class Service:
    """One supervised process. `restart_at` set means "down on purpose, start again then"."""

    name: str
    argv: list[str]
    env: dict[str, str]
    log_path: Path
    process: subprocess.Popen[bytes] | None = None
    starts: int = 0
    started_at: float = 0.0
    restart_at: float | None = None
    exits_on_its_own: int = 0
    failures_in_a_row: int = 0
    exit_codes: list[int] = field(default_factory=list)

    def start(self) -> None:
        self.starts += 1
        with open(self.log_path, "ab") as log:
            log.write(f"--- chaos: start #{self.starts} at {time.strftime('%H:%M:%S')} ---\n".encode())
            log.flush()
            self.process = subprocess.Popen(
                self.argv, cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        self.started_at = time.monotonic()

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def signal_group(self, signum: int) -> None:
        """`signum` to the process and every process of its session (its group id is its pid)."""
        if self.process is None:
            return
        try:
            os.killpg(self.process.pid, signum)
        except (ProcessLookupError, PermissionError):
            pass


class Stack:
    def __init__(self, config: Config) -> None:
        self.config = config
        self.log_dir = config.run_dir / "logs"
        self.database_url = ""
        self.broker: Broker | None = None
        self.web_url = ""
        self.services: dict[str, Service] = {}
        self.broker_paused = False
        self.broker_generation = 1  # counts the brokers the run had: replace_broker starts an empty one
        # Apache Kafka's users (SCRAM, created when its storage is formatted); the same on a replaced broker.
        self.sasl = Sasl(admin_password=secrets.token_hex(16),
                         users={username(kind): secrets.token_hex(16) for kind in PRINCIPALS}
                         ) if config.broker == "kafka" else None
        self.node_restarts: dict[int, float] = {}  # a killed cluster node -> when the supervisor starts it again
        self._lock = threading.Lock()
        self._supervising = threading.Event()
        self._supervisor: threading.Thread | None = None

    # --- start ---------------------------------------------------------------------------------------------

    def start(self) -> None:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.database_url = throwaway_database_url()  # deleted when this process exits
        self.broker = self._broker()
        self.broker.start()
        logger.info("PostgreSQL at %s, %s at %s", self.database_url, self.config.broker, self.broker.bootstrap_servers)
        self._manage("migrate", "--noinput", "-v0")
        self._manage("create_demo_users", DJANGO_DEBUG="true")
        self._set_up_broker()
        if isinstance(self.broker, ApacheKafkaCluster):
            logger.info("Apache Kafka cluster of %d nodes, replication factor %d, min.insync.replicas %d",
                        len(self.broker.node_ids), self.broker.replication_factor, self.broker.min_insync)
        port = free_port()
        self.web_url = f"http://127.0.0.1:{port}"
        for service in self._services(port):
            self.services[service.name] = service
            service.start()
        self._supervising.set()
        self._supervisor = threading.Thread(target=self._supervise, name="chaos-supervisor", daemon=True)
        self._supervisor.start()

    def _broker(self, ports: list[int] | None = None) -> Broker:
        """A broker holding nothing yet, on `ports` (the replaced broker's address) or on free ones."""
        if self.config.broker == "tansu":
            return EmbeddedBroker(port=ports[0] if ports else free_port(), log_path=self.log_dir / "tansu.log")
        if self.config.broker == "kafka" and self.config.kafka_nodes > 1:
            return ApacheKafkaCluster(nodes=self.config.kafka_nodes, data_dir=self.config.run_dir / "kafka",
                                      log_dir=self.log_dir, ports=ports, sasl=self.sasl)
        if self.config.broker == "kafka":
            return ApacheKafkaBroker(port=ports[0] if ports else free_port(), data_dir=self.config.run_dir / "kafka",
                                     log_path=self.log_dir / "kafka.log", sasl=self.sasl)
        raise ValueError(f"CHAOS_BROKER must be tansu or kafka, not {self.config.broker!r}")

    def _set_up_broker(self) -> None:
        """The ACLs first (they name topics, which need not exist yet), so no process meets a topic it may not use."""
        if self.sasl is not None:
            self._manage("kafka_acls", **self.kafka_env("admin"))
        self._manage("kafka_topics", **self.kafka_env("admin"))

    def kafka_env(self, *kinds: str) -> dict[str, str]:
        """The KAFKA_* variables of a process authenticating as each of `kinds` (nothing on a broker without SASL);
        every kind's username, which `kafka_acls` names."""
        if self.sasl is None:
            return {}
        users = {kind: username(kind) for kind in PRINCIPALS} | {"admin": self.sasl.admin}
        passwords = self.sasl.users | {self.sasl.admin: self.sasl.admin_password}
        return {
            "KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT",
            "KAFKA_SASL_MECHANISM": SCRAM,
            **{f"KAFKA_{kind.upper()}_USERNAME": name for kind, name in users.items()},
            **{f"KAFKA_{kind.upper()}_PASSWORD": passwords[users[kind]] for kind in kinds},
        }

    def kafka_client(self) -> dict[str, str]:
        """librdkafka's settings for the driver's own clients: the admin (a super user) where there is SASL."""
        assert self.broker is not None
        return {"bootstrap.servers": self.broker.bootstrap_servers,
                **(self.sasl.client_config() if self.sasl else {})}

    def env(self, *kinds: str, **extra: str) -> dict[str, str]:
        assert self.broker is not None
        return {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "logiflow.settings.local",
            "DJANGO_DEBUG": "false",
            "DATABASE_URL": self.database_url,
            "KAFKA_BOOTSTRAP_SERVERS": self.broker.bootstrap_servers,
            "KAFKA_TOPIC_PREFIX": "",
            "CELERY_BROKER_URL": "filesystem://",
            "CELERY_FILESYSTEM_DIR": str(self.config.run_dir / "celery"),
            "MEDIA_ROOT": str(self.config.run_dir / "media"),
            "PYTHONUNBUFFERED": "1",
            # The clients are one load generator, not a crowd of users: the API's per-user rate limit on
            # recalculations would turn most of them into 429s.
            "API_THROTTLE_RECALCULATE": "6000/minute",
            "API_THROTTLE_REPLAY": "6000/minute",  # operations replaying the missing-account dead letters at once
            # The app's topics replicated as the cluster's internal ones are (1 on a single node).
            "KAFKA_TOPIC_REPLICATION_FACTOR": str(getattr(self.broker, "replication_factor", 1)),
            **self.kafka_env("monitor", *kinds),
            **extra,
        }

    def _manage(self, *args: str, **extra: str) -> None:
        with open(self.log_dir / "setup.log", "ab") as log:
            subprocess.run(
                [PYTHON, "manage.py", *args], cwd=ROOT, env=self.env(**extra), stdout=log, stderr=subprocess.STDOUT,
                check=True, timeout=SET_UP_TIMEOUT_S,
            )

    def _services(self, port: int) -> list[Service]:
        manage = [PYTHON, "manage.py"]
        celery_env = self.env(
            LOGIFLOW_CHAOS_PDF_LEAK_MB=str(self.config.pdf_leak_mb),
            CELERY_WORKER_MAX_MEMORY_PER_CHILD=str(self.config.worker_max_memory_kib),
        )
        commands = {
            **{name: [*manage, "relay_outbox"] for name in RELAYS},
            **{name: [*manage, "consume", name.split("-")[0]] for name in CONSUMERS},
            "celery": [
                PYTHON, "-m", "celery", "-A", "logiflow", "worker", "--beat", "--loglevel=INFO", "--concurrency=2",
                f"--schedule={self.config.run_dir / 'celerybeat-schedule'}", "--hostname=chaos@%h",
            ],
            "web": [
                PYTHON, "-m", "gunicorn", "logiflow.wsgi:application", f"--bind=127.0.0.1:{port}", "--workers=2",
                "--worker-class=gthread", "--threads=4", "--timeout=60", "--graceful-timeout=10",
            ],
        }
        envs = {**{name: self.env("relay") for name in RELAYS}, **{name: self.env("consumer") for name in CONSUMERS},
                "celery": celery_env}
        return [
            Service(name=name, argv=argv, env=envs.get(name) or self.env(), log_path=self.log_dir / f"{name}.log")
            for name, argv in commands.items()
        ]

    # --- faults --------------------------------------------------------------------------------------------

    def kill(self, name: str, *, restart_after: float) -> None:
        """SIGKILL the service and its children; the supervisor starts it again `restart_after` seconds later."""
        with self._lock:
            service = self.services[name]
            service.restart_at = time.monotonic() + restart_after
            service.signal_group(signal.SIGKILL)

    def pause_broker(self) -> None:
        self._signal_broker(signal.SIGSTOP)
        self.broker_paused = True

    def resume_broker(self) -> None:
        if self.broker_paused:
            self._signal_broker(signal.SIGCONT)
        self.broker_paused = False

    def _signal_broker(self, signum: int) -> None:
        if isinstance(self.broker, ApacheKafkaCluster):
            self.broker.signal_all(signum)
        elif self.broker is not None and self.broker.process is not None:
            os.kill(self.broker.process.pid, signum)

    def kill_broker_node(self, node: int, *, restart_after: float) -> None:
        """SIGKILL one node of the cluster; the supervisor starts it again (same data dir) `restart_after` s later."""
        assert isinstance(self.broker, ApacheKafkaCluster)
        with self._lock:
            self.broker.kill_node(node)
            self.node_restarts[node] = time.monotonic() + restart_after

    def replace_broker(self) -> None:
        """Broker amnesia: the broker (every node of a cluster) SIGKILLed and replaced by an empty one on the same
        address (Apache Kafka: wiped data dirs, so a new cluster id), then the topics created as at the start
        (`manage.py kafka_topics`); the relays must notice and send their window again."""
        assert self.broker is not None
        with self._lock:
            self.node_restarts.clear()
            old = self.broker
        ports = list(old.ports.values()) if isinstance(old, ApacheKafkaCluster) else [old.port]
        self.resume_broker()
        old.stop(timeout=0.5)  # SIGTERM then at once SIGKILL: the disks are lost, nothing to shut down cleanly
        if isinstance(old, ApacheKafkaCluster | ApacheKafkaBroker):
            shutil.rmtree(old.data_dir, ignore_errors=True)
        new = self._broker(ports)
        if isinstance(old, ApacheKafkaCluster) and isinstance(new, ApacheKafkaCluster):
            new.controller_ports = old.controller_ports  # the same address, controllers included
        new.start()
        with self._lock:
            self.broker = new
            self.broker_generation += 1
        self._set_up_broker()

    def refuse_topic(self, topic: str) -> None:
        """The authorizer refuses the relay's principal writes to `topic` (a DENY, which outweighs its ALLOW), from
        the moment the broker shows the denial; reading the topic back stays allowed."""
        ensure_acls(self._admin(), [self._denial(topic)], timeout=ACL_TIMEOUT_S)

    def lift_refusal(self, topic: str) -> None:
        """The denial deleted; returns once the broker no longer shows it."""
        admin = self._admin()
        denial = self._denial(topic)
        match = AclBindingFilter(denial.restype, denial.name, denial.resource_pattern_type, denial.principal,
                                 denial.host, denial.operation, denial.permission_type)
        deadline = time.monotonic() + ACL_TIMEOUT_S
        while True:
            for future in admin.delete_acls([match], request_timeout=ACL_TIMEOUT_S).values():
                future.result()
            if not admin.describe_acls(match, request_timeout=ACL_TIMEOUT_S).result():
                return
            if time.monotonic() >= deadline:
                raise TimeoutError(f"the broker still refuses {topic} to the relay {ACL_TIMEOUT_S}s later")
            time.sleep(0.1)

    def _admin(self) -> AdminClient:
        return AdminClient({**self.kafka_client(), "log_level": 0})

    def _denial(self, topic: str) -> AclBinding:
        if self.sasl is None:
            raise ValueError(f"{self.config.broker} runs without SASL: no principal to refuse {topic} to")
        return AclBinding(ResourceType.TOPIC, topic, ResourcePatternType.LITERAL, f"User:{username('relay')}", "*",
                          AclOperation.WRITE, AclPermissionType.DENY)

    # --- supervision ---------------------------------------------------------------------------------------

    def _supervise(self) -> None:
        while self._supervising.is_set():
            with self._lock:
                for service in self.services.values():
                    self._look_after(service, time.monotonic())
                self._restart_nodes(time.monotonic())
            time.sleep(0.5)

    def _restart_nodes(self, now: float) -> None:
        for node, at in list(self.node_restarts.items()):
            if now >= at and isinstance(self.broker, ApacheKafkaCluster):
                del self.node_restarts[node]
                self.broker.start_node(node)
                logger.info("broker node %d started again", node)

    def _look_after(self, service: Service, now: float) -> None:
        if service.running():
            if service.failures_in_a_row and now - service.started_at > STABLE_AFTER_S:
                service.failures_in_a_row = 0
            return
        if service.restart_at is None:  # nobody killed it: it exited on its own
            assert service.process is not None
            code = service.process.returncode
            service.exits_on_its_own += 1
            service.exit_codes.append(code)
            service.failures_in_a_row += 1
            delay = min(RESTART_BACKOFF_MAX_S, 2 ** (service.failures_in_a_row - 1))
            service.restart_at = now + delay
            logger.info("%s exited on its own (code %s); restarting in %ss", service.name, code, delay)
        elif now >= service.restart_at:
            service.restart_at = None
            service.start()

    def ensure_running(self, *, timeout: float = 40.0) -> list[str]:
        """Start now whatever is down (no more faults are coming); returns the names still down after `timeout`."""
        with self._lock:
            for service in self.services.values():
                if not service.running() and service.restart_at is not None:
                    service.restart_at = time.monotonic()
            for node in self.node_restarts:
                self.node_restarts[node] = time.monotonic()
        deadline = time.monotonic() + timeout
        while True:
            down = [name for name, service in self.services.items() if not service.running()]
            if isinstance(self.broker, ApacheKafkaCluster):
                down += [f"broker-{node}" for node in self.broker.down_nodes()]
            elif self.broker is None or self.broker.process is None or self.broker.process.poll() is not None:
                down.append("broker")  # not restarted by itself: replace_broker is the fault that does so
            if not down or time.monotonic() >= deadline:
                return down
            time.sleep(0.5)

    # --- stop ----------------------------------------------------------------------------------------------

    def stop(self) -> None:
        """Stop everything, bounded: SIGTERM to each main process, then SIGKILL to whatever is left."""
        self._supervising.clear()
        if self._supervisor is not None:
            self._supervisor.join(timeout=5)
        self.resume_broker()
        for service in self.services.values():
            if service.running():
                assert service.process is not None
                service.process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + STOP_GRACE_S
        for service in self.services.values():
            if service.process is not None:
                try:
                    service.process.wait(max(0.1, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    logger.info("%s did not stop within %ss of SIGTERM; killing it", service.name, STOP_GRACE_S)
            service.signal_group(signal.SIGKILL)  # pool children, or anything the main process left behind
            if service.process is not None:
                try:
                    service.process.wait(5)
                except subprocess.TimeoutExpired:
                    logger.warning("%s (pid %s) survived SIGKILL", service.name, service.process.pid)
        if self.broker is not None:
            self.broker.stop()
