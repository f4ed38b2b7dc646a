"""`make bench`: the relay against a raw confluent-kafka producer, on the same broker and payload.

Prints, one per line:
  raw_producer_msgs_per_s   a bare idempotent producer (acks=all) sending the relay's messages
  relay_depth1_events_per_s, relay_depth2_events_per_s
                            `manage.py relay_outbox` draining a pre-filled outbox on PostgreSQL, with
                            OUTBOX_RELAY_PIPELINE_DEPTH 1 and 2 (one relay process each, one after the other)
  relay_events_per_s        the one at the default depth (2)
  relay_vs_producer_ratio   relay_events_per_s / raw_producer_msgs_per_s
  producer_cpu_us_per_event, producer_broker_cpu_us_per_event
                            CPU time (user + system, all threads, /proc) per message of the bare producer's process
                            and of the broker while it sends
  relay_cpu_us_per_event, relay_db_cpu_us_per_event, relay_broker_cpu_us_per_event
                            the same for the relay process (default depth), its PostgreSQL backends (found by
                            application_name; the embedded PostgreSQL only) and the broker, over its drain
  producer_max_per_s_on_2_cores, relay_max_per_s_on_2_cores
                            2e6 / the CPU µs per event of each with the broker's: the rate that cost allows on 2 cores
  relay_vs_producer_cpu_ratio
                            the producer's CPU per event ÷ the relay's: the ratio the CPU cost allows on any machine
  relay_first_row_ms        commit → published of the first row a fresh relay sends (its producer's start-up)
  latency_p50_ms / _p99_ms  commit → broker-acknowledged-and-marked, at a steady 200 events/s, after that first row

BENCH_BASELINE_ROOT=<another checkout> also runs that checkout's relay at both depths on the same database, broker
and payload (`baseline_depth1_events_per_s`, ...): how a change compares, in one run. Its migrations must match.
BENCH_PROFILE=1 runs the relay once more (default depth) under pyinstrument (requirements-bench.txt) and, on the
embedded PostgreSQL, with pg_stat_statements loaded: the reports go to var/bench/relay-profile.txt and
var/bench/relay-statements.txt.

Uses its own database (logiflow_bench, or BENCH_DATABASE_NAME, on DATABASE_URL's server) and its own Tansu unless
KAFKA_BOOTSTRAP_SERVERS is set (BENCH_BROKER=kafka: its own Apache Kafka, names prefixed `kafka.`).
Sizes: BENCH_EVENTS (default 100000), BENCH_LATENCY_SECONDS (15).
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import common  # noqa: E402
import cpu  # noqa: E402

EVENTS = int(os.environ.get("BENCH_EVENTS", "100000"))
WARMUP = 10_000
KEYS = 1000  # trucks: the ordering keys
LATENCY_RATE = 200  # events per second
LATENCY_SECONDS = float(os.environ.get("BENCH_LATENCY_SECONDS", "15"))
BASELINE_ROOT = os.environ.get("BENCH_BASELINE_ROOT", "")
PROFILE = os.environ.get("BENCH_PROFILE", "") not in ("", "0")
PRELOAD = ("pg_stat_statements",) if PROFILE else ()
TOPIC = "routing.events"
RAW_TOPIC = "bench.raw"
RELAY_APP = "logiflow-bench-relay"  # PGAPPNAME of the relay's connections, to find its PostgreSQL backends
cpu_us: dict[str, float] = {}  # CPU µs per event of each process in the last measured run (bench/cpu.py)


def sample_event(truck_id: int = 1):  # noqa: ANN201
    from datetime import UTC, datetime, timedelta
    from decimal import Decimal

    from apps.contracts import DepotRef, PlannedStop, RouteCalculated

    start = datetime(2026, 11, 26, 8, 0, tzinfo=UTC)
    stops = [
        PlannedStop(
            sequence=i, name=f"Stop {i}", lat=39.9 + i / 10, lon=32.8 + i / 10,
            eta=start + timedelta(hours=i), leg_distance_km=Decimal("120.500"),
        )
        for i in range(1, 4)
    ]
    return RouteCalculated(
        route_id=1, calculation=1, truck_id=truck_id, truck_plate="34 LF 007", customer_id=3,
        customer_name="Anadolu Textiles", depot=DepotRef(id=1, name="Istanbul Hub", lat=41.0, lon=28.9),
        stops=stops, distance_km=Decimal("361.500"), duration_minutes=300, eta=start + timedelta(hours=3),
        calculated_at=start,
    )


def raw_producer_rate(payload: str, count: int) -> float:
    """Messages/s of a bare producer (the project's producer_config) sending the relay's messages."""
    import uuid

    from confluent_kafka import Producer
    from apps.common.kafka import producer_config
    from apps.outbox.models import cloudevents_headers

    producer = Producer(producer_config())
    delivered = 0

    def on_delivery(error, _message) -> None:  # noqa: ANN001
        nonlocal delivered
        if error is None:
            delivered += 1

    def send(n: int) -> None:
        for i in range(n):
            headers = cloudevents_headers(
                event_id=str(uuid.uuid4()), source="/logiflow/routing", event_type="logiflow.routing.RouteCalculated.v1",
                time="2026-11-26T08:00:00.123456Z", traceparent="",
            )
            while True:
                try:
                    producer.produce(RAW_TOPIC, payload, str(i % KEYS), headers=headers, on_delivery=on_delivery)
                    break
                except BufferError:
                    producer.poll(0.05)
            if i % 1000 == 0:
                producer.poll(0)
        producer.flush(60)

    send(WARMUP)
    delivered = 0
    broker = cpu.Meter().start(common.BROKER_PIDS)
    cpu_started = time.process_time()  # this process, every thread (librdkafka's too)
    started = time.perf_counter()
    send(count)
    elapsed = time.perf_counter() - started
    cpu_us["producer"] = cpu.per_event_us(time.process_time() - cpu_started, count)
    if broker.measured:
        cpu_us["producer_broker"] = cpu.per_event_us(broker.stop(), count)
    assert delivered == count, f"raw producer delivered {delivered} of {count}"
    producer.close()
    return count / elapsed


def prefill(payload: str, count: int) -> None:
    """Commit `count` pending rows and their queue entries in one transaction (its NOTIFY wakes the relay)."""
    from django.db import transaction

    with transaction.atomic():
        common.insert_pending(topic=TOPIC, keys=KEYS, payload=payload, count=count)


def pending() -> int:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM outbox_pending")
        return cursor.fetchone()[0]


def reset_outbox() -> None:
    from django.db import connection

    with connection.cursor() as cursor:
        # Marks too: each run has a fresh Tansu, and the previous run's marks would read as a forgetful broker.
        cursor.execute("TRUNCATE outbox_pending, outbox_outboxevent, outbox_brokermark")
    _vacuum()


def _vacuum() -> None:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("VACUUM ANALYZE outbox_outboxevent, outbox_pending")


def relay_rate(payload: str, count: int, *, command: list[str], env: dict[str, str], root: Path) -> float:
    """Events/s of one relay process started by `command` (from `root`), on an emptied outbox."""
    reset_outbox()
    log = common.log_dir() / "relay.log"
    relay = common.start_manage(command, env={**env, "PGAPPNAME": RELAY_APP}, log=log, root=root)
    try:
        return _drain_rate(payload, count, relay.pid)
    finally:
        code = common.stop(relay, timeout=120)
        if code != 0:
            print(f"relay exited with {code}; see {log}", file=sys.stderr)


def _drain_rate(payload: str, count: int, relay_pid: int) -> float:
    """Events/s: from the commit of `count` rows to the last one marked published. CPU time per event of the
    relay, its PostgreSQL backends and the broker over the same window go to `cpu_us`."""
    from django.db import connection

    prefill(payload, WARMUP)
    if not common.wait_until(lambda: pending() == 0, timeout=120, interval=0.05):
        raise SystemExit(f"relay did not drain the warm-up rows; see {common.log_dir() / 'relay.log'}")
    _vacuum()
    meters = {"relay": cpu.Meter().start([relay_pid]), "relay_db": cpu.Meter().start(cpu.backend_pids(RELAY_APP)),
              "relay_broker": cpu.Meter().start(common.BROKER_PIDS)}
    prefill(payload, count)
    committed = time.time()  # the relay cannot see a row before this commit
    if not common.wait_for_count("relay: published", lambda: count - pending(), count, timeout=600):
        raise SystemExit(f"relay did not drain the outbox; see {common.log_dir() / 'relay.log'}")
    backends = cpu.backend_pids(RELAY_APP)
    for name, meter in meters.items():
        seconds = meter.stop(backends if name == "relay_db" else [])
        if meter.measured:
            cpu_us[name] = cpu.per_event_us(seconds, count)
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*), extract(epoch FROM max(published_at)) FROM outbox_outboxevent "
            "WHERE state = 'published' AND id > (SELECT max(id) - %s FROM outbox_outboxevent)",
            [count],
        )
        published, last = cursor.fetchone()
    assert published == count, f"{published} of {count} published"
    return count / (float(last) - committed)


def cpu_figures() -> None:
    """CPU µs per event of the bare producer and of the last relay run (the default depth's, unless a baseline
    ran after it), each with the broker's, and the rate each cost allows with 2 cores doing nothing else."""
    for name in ("producer", "producer_broker", "relay", "relay_db", "relay_broker"):
        if name in cpu_us:
            common.figure(f"{name}_cpu_us_per_event", cpu_us[name])
    producer = cpu_us["producer"] + cpu_us.get("producer_broker", 0.0)
    relay = sum(cpu_us.get(name, 0.0) for name in ("relay", "relay_db", "relay_broker"))
    common.figure("producer_max_per_s_on_2_cores", cpu.max_per_s(2, producer))
    if relay:
        common.figure("relay_max_per_s_on_2_cores", cpu.max_per_s(2, relay))
        common.figure("relay_vs_producer_cpu_ratio", producer / relay)


def commit_latencies(seconds: float) -> list[float]:
    """Publish through `outbox.publish` at a steady rate; latency = published_at - commit time (ms)."""
    from django.db import connection, transaction

    from apps import outbox
    from apps.common.progress import Progress

    committed: dict[str, float] = {}
    interval = 1.0 / LATENCY_RATE
    next_at = time.monotonic()
    total = int(seconds * LATENCY_RATE)
    with Progress(sys.stderr, f"latency: publishing at {LATENCY_RATE}/s", total=total) as progress:
        for i in range(total):
            next_at += interval
            with transaction.atomic():
                event_id = outbox.publish(sample_event(truck_id=1 + i % KEYS))
            committed[str(event_id)] = time.time()
            progress.advance()
            time.sleep(max(0.0, next_at - time.monotonic()))
    if not common.wait_until(lambda: pending() == 0, timeout=60, interval=0.05):
        raise SystemExit(f"relay did not publish the latency events; see {common.log_dir() / 'relay.log'}")
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT event_id::text, extract(epoch FROM published_at) FROM outbox_outboxevent "
            "WHERE event_id = ANY(%s::uuid[])",
            [list(committed)],
        )
        return [(float(published) - committed[event_id]) * 1000 for event_id, published in cursor.fetchall()]


def first_row_ms() -> float:
    """Commit -> published of the relay's first row: its producer's start-up, kept out of the steady latency.

    An idempotent producer sends nothing before it holds a producer id, which librdkafka asks for on a 500 ms
    timer once it is connected to the node the metadata names: about 0.9 s on Tansu, tens of ms on Apache Kafka."""
    from django.db import connection, transaction

    from apps import outbox

    with transaction.atomic():
        outbox.publish(sample_event())
    committed = time.time()
    if not common.wait_until(lambda: pending() == 0, timeout=60, interval=0.01):
        raise SystemExit(f"relay did not publish its first row; see {common.log_dir() / 'relay.log'}")
    with connection.cursor() as cursor:
        cursor.execute("SELECT extract(epoch FROM max(published_at)) FROM outbox_outboxevent")
        return (float(cursor.fetchone()[0]) - committed) * 1000


def statements_report(limit: int = 12) -> str:
    """The top statements by total execution time since the last reset (pg_stat_statements)."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT calls, round(total_exec_time::numeric, 1), round(mean_exec_time::numeric, 3), rows,"
            " regexp_replace(query, '\\s+', ' ', 'g') FROM pg_stat_statements"
            " WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database())"
            " ORDER BY total_exec_time DESC LIMIT %s",
            [limit],
        )
        lines = ["calls  total_ms  mean_ms  rows  query"]
        lines += [f"{c}  {t}  {m}  {r}  {q[:300]}" for c, t, m, r, q in cursor.fetchall()]
    return "\n".join(lines) + "\n"


def profiled_rate(payload: str, env: dict[str, str]) -> float:
    """One more run of the relay under pyinstrument, and pg_stat_statements around it when loaded."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM pg_extension WHERE extname = 'pg_stat_statements'")
        statements = bool(cursor.fetchone()[0])
        if not statements:
            try:
                cursor.execute("CREATE EXTENSION pg_stat_statements")
                statements = True
            except Exception as error:  # noqa: BLE001 - not loaded on this server: the Python profile alone
                print(f"pg_stat_statements unavailable: {error}", file=sys.stderr)
    profile = common.log_dir() / "relay-profile.txt"
    command = ["-m", "pyinstrument", "--no-color", "-r", "text", "-o", str(profile), "manage.py", "relay_outbox"]
    reset_outbox()
    if statements:
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_stat_statements_reset()")
    rate = relay_rate(payload, EVENTS, command=command, env=env, root=common.ROOT)
    if statements:
        (common.log_dir() / "relay-statements.txt").write_text(statements_report())
    return rate


def main() -> None:
    with common.environment("logiflow_bench", preload=PRELOAD) as (bootstrap, url):
        from apps.common.kafka import ensure_topics, kafka_topic

        ensure_topics([kafka_topic(TOPIC), RAW_TOPIC])  # the relay's as it names them (the prefix), the producer's
        payload = sample_event().model_dump_json()
        common.figure("payload_bytes", len(payload))
        common.figure("events", EVENTS)
        raw = raw_producer_rate(payload, EVENTS)
        common.figure("raw_producer_msgs_per_s", raw)

        env = common.worker_env(url, bootstrap)
        manage = ["manage.py", "relay_outbox"]
        roots = [("relay", common.ROOT)]
        if BASELINE_ROOT:
            roots.append(("baseline", Path(BASELINE_ROOT).resolve()))
        rates: dict[str, float] = {}
        for name, root in roots:
            for depth in (1, 2):
                depth_env = {**env, "OUTBOX_RELAY_PIPELINE_DEPTH": str(depth)}
                rates[f"{name}_depth{depth}"] = relay_rate(payload, EVENTS, command=manage, env=depth_env, root=root)
                common.figure(f"{name}_depth{depth}_events_per_s", rates[f"{name}_depth{depth}"])
        rate = rates["relay_depth2"]
        common.figure("relay_events_per_s", rate)
        common.figure("relay_vs_producer_ratio", rate / raw)
        cpu_figures()
        if PROFILE:
            common.figure("relay_profiled_events_per_s", profiled_rate(payload, env))

        reset_outbox()
        log = common.log_dir() / "relay.log"
        started_lines = log.read_text(errors="replace").count("relay started")
        relay = common.start_manage(["relay_outbox"], env=env, log=log)
        try:
            # From the relay's first claim on: its start-up (Django, connections) is not the outbox's latency.
            if not common.wait_until(lambda: log.read_text(errors="replace").count("relay started") > started_lines,
                                     timeout=60, interval=0.1):
                raise SystemExit(f"relay did not start; see {log}")
            common.figure("relay_first_row_ms", first_row_ms())
            latencies = commit_latencies(LATENCY_SECONDS)
            common.figure("latency_events", len(latencies))
            common.figure("latency_p50_ms", common.percentile(latencies, 0.50))
            common.figure("latency_p99_ms", common.percentile(latencies, 0.99))
        finally:
            code = common.stop(relay)
            if code != 0:
                print(f"relay exited with {code}; see {common.log_dir() / 'relay.log'}", file=sys.stderr)


if __name__ == "__main__":
    main()
