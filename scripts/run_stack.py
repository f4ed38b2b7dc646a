"""`make run`'s process runner: the embedded PostgreSQL, migrations, demo users, then supervisord over the Procfile.

This process owns the embedded PostgreSQL (data under var/postgres, kept across runs): it starts it, hands
its URL to every process of the stack, and stops it when the stack has stopped. With DATABASE_URL set,
that server is used instead.

The broker (LOGIFLOW_RUN_BROKER): unset (or `embedded`, its old name) picks Apache Kafka where Java 17+ and the
jars of `make kafka-jars` are here, else Tansu, saying in one line why and what that costs; `kafka` and `tansu`
insist on one; `external` runs on the Kafka at KAFKA_BOOTSTRAP_SERVERS (e.g. `make kafka`'s) instead of the
Procfile's `broker` process, the topics created first. The other processes start once the broker serves.

Why supervisord (the PyPI package `supervisor`): a failure in one process must never stop the others, and
honcho, like foreman, stops the whole stack when any process exits. supervisord is the long-kept standard
for exactly this job: it restarts a process that exits or is killed, stops a process with SIGTERM and a
grace period before SIGKILL, lets an operator stop, start and inspect each process by name
(`supervisorctl -c var/run/supervisord.conf status`), and is pure Python with no dependencies. circus does the
same over ZeroMQ, a heavier stack for no gain here. supervisord's one gap, a process left FATAL after
`startretries` quick failures, is closed by scripts/supervisor_retry.py (retried forever, with a capped backoff).

The supervisor configuration is generated from the Procfile (one list of processes) into var/run/. Each
process's output goes to var/log/<process>.log and, prefixed with its name, to this terminal. On Ctrl-C
(SIGINT/SIGTERM here) supervisord sends every process SIGTERM at once and gives it up to 30 s (Celery's warm
shutdown, the consumers' "finish the batch, commit, leave the group") before SIGKILL, then stops the broker;
this process then stops the embedded PostgreSQL.
"""

from __future__ import annotations

import ctypes
import os
import re
import shlex
import signal
import subprocess
import sys
import threading
import time
import urllib.request
import xmlrpc.client
from pathlib import Path
from types import FrameType

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from apps.devstack.apache_kafka import why_not_apache_kafka  # noqa: E402
from apps.devstack.tansu import WORKER_ENVIRONMENT as TANSU_WORKER_ENVIRONMENT  # noqa: E402

GRACE_SECONDS = 30
START_SECONDS = 10  # a process must stay up this long to count as started; one that dies sooner is retried
START_RETRIES = 3  # quick retries (1 s, 2 s, 3 s apart) before supervisor_retry.py's slower ones take over
BROKER_READY_TIMEOUT_S = 180
WEB_READY_TIMEOUT_S = 120
GROUP = "logiflow"  # every Procfile process but the broker: stopped together, before the broker
TANSU_COST = (
    "memory only: topics and offsets are forgotten at each restart, and a broker pause (a laptop that sleeps) "
    "can livelock a consumer group"
)
PROCFILE_LINE = re.compile(r"^([A-Za-z0-9_-]+):\s*(.+)$")


def var_dir() -> Path:
    """`make run`'s local state (LOGIFLOW_VAR_DIR, default var/), the folders its processes write into made."""
    var = Path(os.environ.get("LOGIFLOW_VAR_DIR") or ROOT / "var")
    for folder in ("media", "celery", "log", "run"):
        (var / folder).mkdir(parents=True, exist_ok=True)
    return var


def manage(*args: str) -> None:
    subprocess.run([sys.executable, str(ROOT / "manage.py"), *args], cwd=ROOT, check=True)


def procfile() -> dict[str, str]:
    """The Procfile's processes, name -> shell command, in their order."""
    lines = (PROCFILE_LINE.match(line.strip()) for line in (ROOT / "Procfile").read_text().splitlines())
    return {match.group(1): match.group(2) for match in lines if match}


def broker_choice() -> tuple[str, str]:
    """The broker to run on (`kafka`, `tansu` or `external`) and, when the automatic choice fell back to Tansu,
    the one line that says why and what it costs."""
    asked = os.environ.get("LOGIFLOW_RUN_BROKER") or "embedded"
    if asked == "external":
        if not os.environ.get("KAFKA_BOOTSTRAP_SERVERS"):
            raise SystemExit("LOGIFLOW_RUN_BROKER=external needs KAFKA_BOOTSTRAP_SERVERS (make kafka: 127.0.0.1:9092)")
        return "external", ""
    if asked == "tansu":
        return "tansu", ""
    if asked not in ("kafka", "embedded", "auto"):
        raise SystemExit(f"LOGIFLOW_RUN_BROKER={asked!r}: expected kafka, tansu or external (unset: the best here)")
    missing = why_not_apache_kafka()
    if not missing:
        return "kafka", ""
    if asked == "kafka":
        raise SystemExit(f"LOGIFLOW_RUN_BROKER=kafka, but {missing}")
    return "tansu", f"run_stack: broker Tansu, not Apache Kafka, because {missing}; Tansu is {TANSU_COST}"


def _ini(value: object) -> str:
    return str(value).replace("%", "%%")  # supervisord expands %(name)s in every value


def supervisord_config(var: Path, processes: dict[str, str], *, broker_first: bool) -> str:
    """supervisord's configuration for `processes` (Procfile name -> command), logging under var/log."""
    sections = [
        ("unix_http_server", {"file": var / "run" / "supervisor.sock", "chmod": "0700"}),
        ("supervisord", {
            "nodaemon": "true", "logfile": var / "log" / "supervisord.log", "logfile_maxbytes": "10MB",
            "pidfile": var / "run" / "supervisord.pid", "childlogdir": var / "log",
            **({"user": "root"} if os.geteuid() == 0 else {}),  # as root on purpose (containers, CI): say so
        }),
        ("rpcinterface:supervisor", {"supervisor.rpcinterface_factory": "supervisor.rpcinterface:make_main_rpcinterface"}),
        ("supervisorctl", {"serverurl": f"unix://{var / 'run' / 'supervisor.sock'}"}),
        ("eventlistener:retry", {
            "command": f"{shlex.quote(sys.executable)} scripts/supervisor_retry.py", "directory": ROOT,
            "events": "PROCESS_STATE_FATAL,PROCESS_STATE_RUNNING,TICK_5", "autorestart": "true",
            "stdout_logfile": "NONE",  # its stdout is supervisord's event protocol
            "stderr_logfile": var / "log" / "retry.log", "stderr_logfile_maxbytes": "1MB",
        }),
    ]
    for name, command in processes.items():
        sections.append((f"program:{name}", {
            "command": f"/bin/sh -c {shlex.quote(command)}",
            "directory": ROOT,
            "priority": 100 if name == "broker" else 200,  # started first, stopped last (after the group)
            # The broker starts first; the others once it serves (run_stack starts their group).
            "autostart": "true" if name == "broker" or not broker_first else "false",
            "autorestart": "true",
            "startsecs": START_SECONDS,
            "startretries": START_RETRIES,
            "stopsignal": "TERM",
            "stopwaitsecs": GRACE_SECONDS,
            "stopasgroup": "true",  # the broker's JVM or Tansu too; Celery is behind signal_leader.py
            "killasgroup": "true",
            "redirect_stderr": "true",
            "stdout_logfile": var / "log" / f"{name}.log",
            "stdout_logfile_maxbytes": "10MB",
            "stdout_logfile_backups": "3",
        }))
    sections.append((f"group:{GROUP}", {"programs": ",".join(name for name in processes if name != "broker"),
                                        "priority": "200"}))
    return "".join(
        f"[{title}]\n" + "".join(f"{key}={_ini(value)}\n" for key, value in values.items()) + "\n"
        for title, values in sections
    )


class LogTail(threading.Thread):
    """Prints the lines supervisord appends to each process's log, prefixed `hh:mm:ss name |`, as honcho did."""

    def __init__(self, logs: dict[str, Path]) -> None:
        super().__init__(name="log-tail", daemon=True)
        self.logs = logs
        self.width = max(map(len, logs))
        # (inode, offset) per log: what was there before this run is not shown again.
        self.read_to = {name: self._position(path) for name, path in logs.items()}
        self.partial = dict.fromkeys(logs, b"")
        self.stopping = threading.Event()

    @staticmethod
    def _position(path: Path) -> tuple[int, int]:
        try:
            stat = path.stat()
        except FileNotFoundError:
            return 0, 0
        return stat.st_ino, stat.st_size

    def run(self) -> None:
        while not self.stopping.wait(0.2):
            self.drain()
        self.drain()

    def drain(self) -> None:
        for name, path in self.logs.items():
            try:
                with open(path, "rb") as log:
                    inode, offset = self.read_to[name]
                    stat = os.fstat(log.fileno())
                    if stat.st_ino != inode or stat.st_size < offset:  # rotated: a new file from its start
                        offset = 0
                    log.seek(offset)
                    data = log.read()
                    self.read_to[name] = (stat.st_ino, offset + len(data))
            except FileNotFoundError:
                continue
            *lines, self.partial[name] = (self.partial[name] + data).split(b"\n")
            stamp = time.strftime("%H:%M:%S")
            for line in lines:
                sys.stdout.write(f"{stamp} {name:<{self.width}} | {line.decode(errors='replace').rstrip()}\n")
            sys.stdout.flush()


def stop_with_parent() -> None:
    """In supervisord before exec: SIGTERM when run_stack dies, so a killed run_stack still stops the stack."""
    if sys.platform == "linux":
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def rpc(var: Path) -> xmlrpc.client.ServerProxy:
    from supervisor.xmlrpc import SupervisorTransport

    return xmlrpc.client.ServerProxy(
        "http://127.0.0.1", SupervisorTransport("", "", f"unix://{var / 'run' / 'supervisor.sock'}")
    )


def wait_for(condition: object, supervisor: subprocess.Popen[bytes], timeout: float) -> bool:
    """Poll `condition()` until true, `timeout` or supervisord exiting (Ctrl-C); True when it held."""
    deadline = time.monotonic() + timeout
    while supervisor.poll() is None and time.monotonic() < deadline:
        try:
            if condition():  # type: ignore[operator]
                return True
        except OSError:
            pass
        time.sleep(0.2)
    return False


def web_answers() -> bool:
    port = os.environ.get("LOGIFLOW_WEB_PORT") or "8000"
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as response:
        return response.status == 200


def main(argv: list[str]) -> int:
    started = time.monotonic()
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "logiflow.settings.local")
    # The Procfile's `python` is this interpreter (the venv's), however run_stack was started.
    os.environ["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    os.environ["PYTHONUNBUFFERED"] = "1"  # each line reaches its log (and this terminal) as it is written
    var = var_dir()
    broker, why_tansu = broker_choice()
    print(why_tansu or f"run_stack: broker {broker}", flush=True)
    processes = procfile()
    if broker == "external":
        del processes["broker"]
    else:
        os.environ["LOGIFLOW_RUN_BROKER"] = broker  # the Procfile's broker line: --kind kafka or tansu
    if broker == "tansu":
        for name, value in TANSU_WORKER_ENVIRONMENT.items():
            os.environ.setdefault(name, value)
    if not os.environ.get("DATABASE_URL"):
        from logiflow.embedded_postgres import database_url

        os.environ["DATABASE_URL"] = database_url(var / "postgres")
        print(f"run_stack: embedded PostgreSQL at {os.environ['DATABASE_URL']}", flush=True)
    manage("migrate", "--noinput")
    manage("create_demo_users")
    if broker == "external":
        manage("kafka_topics")  # fails here, before anything starts, when that Kafka is not reachable
    ready_file = var / "run" / "broker.ready"
    ready_file.unlink(missing_ok=True)
    config = var / "run" / "supervisord.conf"
    config.write_text(supervisord_config(var, processes, broker_first=broker != "external"))

    tail = LogTail({name: var / "log" / f"{name}.log" for name in [*processes, "retry"]})
    supervisor = subprocess.Popen(
        [sys.executable, "-m", "supervisor.supervisord", "-c", str(config), *argv], cwd=ROOT,
        preexec_fn=stop_with_parent,  # noqa: PLW1509 - no thread runs yet
    )
    tail.start()

    def stop(_signum: int, _frame: FrameType | None) -> None:
        supervisor.send_signal(signal.SIGTERM)  # supervisord stops every process, then itself

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    if broker != "external":
        if not wait_for(ready_file.exists, supervisor, BROKER_READY_TIMEOUT_S) and supervisor.poll() is None:
            print(f"run_stack: the broker is not ready after {BROKER_READY_TIMEOUT_S} s (var/log/broker.log); "
                  "starting the other processes anyway", flush=True)
        if supervisor.poll() is None:
            wait_for(lambda: rpc(var).supervisor.startProcessGroup(GROUP, False) or True, supervisor, 30)
    if wait_for(web_answers, supervisor, WEB_READY_TIMEOUT_S):
        print(f"run_stack: the stack serves http://127.0.0.1:{os.environ.get('LOGIFLOW_WEB_PORT') or 8000}/ "
              f"{time.monotonic() - started:.1f} s after start; Ctrl-C stops it", flush=True)
    code = supervisor.wait()
    tail.stopping.set()
    tail.join(timeout=5)
    print(f"run_stack: every process stopped (supervisord exit {code}); stopping PostgreSQL", flush=True)
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
