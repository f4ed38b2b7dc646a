"""`make bench` (after bench/relay.py): invoicing's throughput against the stages around it. Prints `name=value`.

  relay_publish_per_s            `relay_outbox` publishing a pre-filled backlog of RouteCalculated rows
                                 (from their commit to the last one marked published)
  invoice_drain_per_s            one `consume invoicing` process turning that backlog, already in Kafka, into
                                 invoices (first to last invoice: process start and group join excluded), with
                                 the relay running (it publishes the InvoiceGenerated rows) and every invoice
                                 queueing its PDF task
  invoice_drain_vs_relay_ratio   the two above divided (target >= 0.5)
  drain_cpu_us_per_event         CPU time (user + system, all threads, /proc) per invoice of the consumer process,
  drain_db_cpu_us_per_event      of its PostgreSQL backends (found by application_name; embedded PostgreSQL only),
  drain_relay_cpu_us_per_event   of the relay publishing InvoiceGenerated meanwhile, of its backends
  drain_relay_db_cpu_us_per_event
  drain_broker_cpu_us_per_event  and of the broker this run started, from the first invoice to the last
  drain_total_cpu_us_per_event   their sum, and drain_max_per_s_on_2_cores = 2e6 / that sum: the drain rate that
                                 cost allows with both cores doing nothing else
  pdf_bare_renders_per_s         WeasyPrint alone on the invoice template's HTML, pre-rendered
  pdf_task_renders_per_s         the PDF task path in-process (Celery task -> service -> DB claim -> template ->
                                 WeasyPrint -> storage -> DB), interleaved with the bare renders invoice by invoice
  pdf_task_vs_bare_ratio         the two above divided (target >= 0.9)

Own database (BENCH_INVOICING_DATABASE, default logiflow_bench_invoicing, on DATABASE_URL's server: give concurrent
runs different names), own Tansu unless KAFKA_BOOTSTRAP_SERVERS is set (BENCH_BROKER=kafka: its own Apache Kafka,
names prefixed `kafka.`).
Sizes: BENCH_INVOICE_EVENTS (default 20000; 0 skips the drain), BENCH_PDF_INVOICES (default 30).
BENCH_BASELINE_ROOT=<another checkout> first runs the drain with that checkout's consumer on the same database, broker
and payload (`baseline_invoice_drain_per_s`, `baseline_drain_cpu_us_per_event`, ...): a change against its base in
one run. Its migrations must match.
BENCH_PROFILE=1 samples the consumer with py-spy (requirements-bench.txt) into var/bench/invoicing-consumer-profile.txt
(collapsed stacks) and, on the embedded PostgreSQL, loads pg_stat_statements: var/bench/invoicing-statements.txt.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import common  # noqa: E402
import cpu  # noqa: E402

EVENTS = int(os.environ.get("BENCH_INVOICE_EVENTS", "20000"))
PDF_INVOICES = int(os.environ.get("BENCH_PDF_INVOICES", "30"))
PROFILE = os.environ.get("BENCH_PROFILE", "") not in ("", "0")
BASELINE_ROOT = os.environ.get("BENCH_BASELINE_ROOT", "")
TRUCKS = 1000  # ordering keys
CUSTOMERS = 50
TOPIC = "routing.events"
TABLES = [
    "invoicing_invoiceline", "invoicing_invoice", "invoicing_invoicenumbercounter", "invoicing_billingaccount",
    "consumers_inboxentry", "consumers_deadletter", "outbox_outboxevent",
    "outbox_brokermark",  # each run has a fresh Tansu: old marks would read as a broker that forgot
]


def sample_route():  # noqa: ANN201
    from datetime import UTC, datetime, timedelta
    from decimal import Decimal

    from apps.contracts import DepotRef, PlannedStop, RouteCalculated

    start = datetime(2026, 11, 26, 8, 0, tzinfo=UTC)
    stops = [
        PlannedStop(sequence=i, name=f"Stop {i}", lat=39.9 + i / 10, lon=32.8 + i / 10,
                    eta=start + timedelta(hours=i), leg_distance_km=Decimal("120.500"))
        for i in range(1, 4)
    ]
    return RouteCalculated(
        route_id=1, calculation=1, truck_id=1, truck_plate="34 LF 007", customer_id=1,
        customer_name="Anadolu Textiles", depot=DepotRef(id=1, name="Istanbul Hub", lat=41.0, lon=28.9),
        stops=stops, distance_km=Decimal("361.500"), duration_minutes=300, eta=start + timedelta(hours=3),
        calculated_at=start,
    )


def reset() -> None:
    from decimal import Decimal

    from django.db import connection
    from django.utils import timezone

    from apps.invoicing.services.billing_accounts import billing_account_create
    from apps.invoicing.services.customers import known_customer_upsert

    with connection.cursor() as cursor:
        cursor.execute(f"TRUNCATE {', '.join(TABLES)} CASCADE")
    for customer_id in range(1, CUSTOMERS + 1):
        # Accounts are opened only for customers in the directory, as routing's CustomerUpserted leaves them.
        known_customer_upsert(customer_id=customer_id, name=f"Customer {customer_id}", revision=1,
                              changed_at=timezone.now())
        billing_account_create(
            customer_id=customer_id, name=f"Customer {customer_id}", billing_address="Istanbul", currency="EUR",
            rate_per_km=Decimal("1.25"), fee_per_stop=Decimal("15"), fuel_surcharge_percent=Decimal("7.5"),
            vat_rate_percent=Decimal("20"),
        )


def prefill(count: int) -> float:
    """Commit `count` RouteCalculated rows and their relay queue entries (distinct routes, spread over trucks and
    customers); returns the commit time. One statement, one transaction: its NOTIFY wakes the relay."""
    from django.db import connection, transaction

    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(
            """
            WITH written AS (
            INSERT INTO outbox_outboxevent
              (event_id, topic, key, event_type, source, payload, traceparent, created_at, state, attempts, last_error)
            SELECT gen_random_uuid(), %s, 'truck:' || (1 + g %% %s), 'logiflow.routing.RouteCalculated.v1',
                   '/logiflow/routing',
                   (%s::jsonb || jsonb_build_object('route_id', g, 'truck_id', 1 + g %% %s,
                                                    'customer_id', 1 + g %% %s))::text,
                   '', clock_timestamp(), 'pending', 0, ''
            FROM generate_series(1, %s) AS g
            RETURNING id, topic, key
            )
            INSERT INTO outbox_pending (id, topic, key) SELECT id, topic, key FROM written
            """,
            [TOPIC, TRUCKS, sample_route().model_dump_json(), TRUCKS, CUSTOMERS, count],
        )
        cursor.execute("SELECT pg_notify('logiflow_outbox', '')")
    return time.time()


def scalar(sql: str, params: list | None = None):  # noqa: ANN201
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(sql, params or [])
        return cursor.fetchone()[0]


def group_from_now(topic: str) -> str:
    """A consumer group id starting at the topic's current end (a reused external Kafka holds older runs)."""
    from confluent_kafka import Consumer, KafkaException, TopicPartition

    from apps.common.kafka import client_config

    group_id = f"bench-invoicing-{uuid.uuid4().hex[:8]}"
    consumer = Consumer(client_config(**{"group.id": group_id, "enable.auto.commit": False}))
    partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
    ends = [TopicPartition(topic, p, consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1])
            for p in partitions]
    deadline = time.monotonic() + 60
    while True:
        try:
            consumer.commit(offsets=ends, asynchronous=False)
            break
        except KafkaException as error:
            # A broker just started may still be loading its group coordinator (COORDINATOR_LOAD_IN_PROGRESS).
            if not error.args[0].retriable() or time.monotonic() > deadline:
                raise
            time.sleep(0.5)
    consumer.close()
    return group_id


DRAIN_APP = "logiflow-bench-drain"  # PGAPPNAME of the consumer's connections, to find its PostgreSQL backends
RELAY_APP = "logiflow-bench-drain-relay"


def drain_benchmark(url: str, bootstrap: str, count: int, *, root: Path = common.ROOT, prefix: str = "") -> None:
    """The drain lines (each name prefixed by `prefix`) for the consumer of the checkout `root`."""
    from apps.common.kafka import ensure_topics, kafka_topic

    ensure_topics([kafka_topic(TOPIC), kafka_topic("invoicing.events")])  # as the relay names them (the prefix)
    reset()
    group_id = group_from_now(kafka_topic(TOPIC))
    env = common.worker_env(url, bootstrap)
    relay = common.start_manage(["relay_outbox"], env={**env, "PGAPPNAME": RELAY_APP},
                                log=common.log_dir() / "invoicing-relay.log")
    consumer = profiler = None
    try:
        committed = prefill(count)
        unpublished = "SELECT count(*) FROM outbox_outboxevent WHERE state = 'pending'"
        if not common.wait_for_count("relay: published", lambda: count - scalar(unpublished), count, timeout=600):
            raise SystemExit(f"relay did not drain the backlog; see {common.log_dir() / 'invoicing-relay.log'}")
        last_published = scalar("SELECT extract(epoch FROM max(published_at)) FROM outbox_outboxevent")
        relay_rate = count / (float(last_published) - committed)
        common.figure(f"{prefix}relay_publish_per_s", relay_rate)

        consumer = common.start_manage(["consume", "invoicing", "--group-id", group_id], root=root,
                                       env={**env, "PGAPPNAME": DRAIN_APP},
                                       log=common.log_dir() / "invoicing-consumer.log")
        if PROFILE:
            profiler = start_profiler(consumer.pid)
            statements = reset_statements()
        meters = DrainMeters(consumer_pid=consumer.pid, relay_pid=relay.pid, prefix=prefix)
        issued = "SELECT count(*) FROM invoicing_invoice"
        if not common.wait_for_count("invoicing: issued", lambda: meters.observe(scalar(issued)), count,
                                     timeout=1800, interval=0.5):
            log = common.log_dir() / "invoicing-consumer.log"
            raise SystemExit(f"the consumer did not drain the backlog; see {log}")
        first, last = scalar("SELECT array[extract(epoch FROM min(issued_at)), extract(epoch FROM max(issued_at))] "
                             "FROM invoicing_invoice")
        if float(last) <= float(first):
            # issued_at is the transaction's time: a backlog that fits in one consumer batch cannot be timed.
            raise SystemExit(f"all {count} invoices were issued in one transaction; raise BENCH_INVOICE_EVENTS")
        drain_rate = (count - 1) / (float(last) - float(first))
        common.figure(f"{prefix}invoice_events", count)
        common.figure(f"{prefix}invoice_drain_per_s", drain_rate)
        common.figure(f"{prefix}invoice_drain_vs_relay_ratio", drain_rate / relay_rate)
        meters.report()
        if PROFILE and statements:
            from relay import statements_report

            (common.log_dir() / "invoicing-statements.txt").write_text(statements_report(limit=25))
        numbers = scalar("SELECT count(DISTINCT number) FROM invoicing_invoice")
        assert numbers == count, f"{numbers} distinct numbers for {count} invoices"
    finally:
        if profiler is not None:
            stop_profiler(profiler)
        for process, name in ((consumer, "consumer"), (relay, "relay")):
            if process is not None and common.stop(process) != 0:
                print(f"invoicing {name} exited non-zero; see {common.log_dir()}", file=sys.stderr)


class DrainMeters:
    """CPU time per invoice of the consumer, the relay (publishing InvoiceGenerated) and the broker, each with
    its PostgreSQL backends, from the first invoice seen to the last: process start and group join excluded."""

    def __init__(self, *, consumer_pid: int, relay_pid: int, prefix: str = "") -> None:
        self.prefix = prefix
        self.pids = {"drain": [consumer_pid], "drain_relay": [relay_pid], "drain_broker": list(common.BROKER_PIDS)}
        self.apps = {"drain": DRAIN_APP, "drain_relay": RELAY_APP}
        self.meters: dict[str, cpu.Meter] = {}
        self.first = self.last = 0

    def observe(self, issued: int) -> int:
        """The issued count, passed through; the meters start at the first invoice and read at each count."""
        if issued and not self.meters:
            self.first = issued
            for name, pids in self.pids.items():
                self.meters[name] = cpu.Meter().start(pids)
                if name in self.apps:
                    self.meters[f"{name}_db"] = cpu.Meter().start(cpu.backend_pids(self.apps[name]))
        if self.meters and issued > self.last:
            self.last = issued
            self.seconds = {name: self._read(name, meter) for name, meter in self.meters.items()}
        return issued

    def _read(self, name: str, meter: cpu.Meter) -> float:
        app = self.apps.get(name.removesuffix("_db")) if name.endswith("_db") else None
        return meter.stop(cpu.backend_pids(app) if app else [])

    def report(self) -> None:
        events = self.last - self.first
        if events <= 0:
            return
        total = 0.0
        for name, meter in self.meters.items():
            if meter.measured:
                us = cpu.per_event_us(self.seconds[name], events)
                total += us
                common.figure(f"{self.prefix}{name}_cpu_us_per_event", us)
        common.figure(f"{self.prefix}drain_cpu_events", events)
        common.figure(f"{self.prefix}drain_total_cpu_us_per_event", total)
        common.figure(f"{self.prefix}drain_max_per_s_on_2_cores", cpu.max_per_s(2, total))


def start_profiler(pid: int):  # noqa: ANN201
    """py-spy (requirements-bench.txt) sampling the consumer into var/bench/invoicing-consumer-profile.txt
    (collapsed stacks: one line per stack, its sample count last)."""
    import shutil
    import subprocess

    py_spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    out = common.log_dir() / "invoicing-consumer-profile.txt"
    return subprocess.Popen([py_spy, "record", "--pid", str(pid), "--format", "raw", "--rate", "200",
                             "--nonblocking", "--output", str(out)],
                            stdout=subprocess.DEVNULL, stderr=open(common.log_dir() / "py-spy.log", "ab"))  # noqa: SIM115


def reset_statements() -> bool:
    """pg_stat_statements emptied for the drain, if the server loaded it (the embedded one does with BENCH_PROFILE)."""
    from django.db import connection

    try:
        with connection.cursor() as cursor:
            cursor.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
            cursor.execute("SELECT pg_stat_statements_reset()")
    except Exception as error:  # noqa: BLE001 - not loaded on this server: the Python profile alone
        print(f"pg_stat_statements unavailable: {error}", file=sys.stderr)
        return False
    return True


def stop_profiler(profiler) -> None:  # noqa: ANN001
    import signal

    profiler.send_signal(signal.SIGINT)  # py-spy writes its report on SIGINT
    try:
        profiler.wait(60)
    except Exception:  # noqa: BLE001
        profiler.kill()


def pdf_benchmark(count: int) -> None:
    from apps.invoicing.models import Invoice
    from apps.invoicing.pdf import html_to_pdf, invoice_html
    from apps.invoicing.services.issuing import invoice_issue_for_route
    from apps.invoicing.tasks import render_invoice_pdf

    if Invoice.objects.count() < count + 1:
        reset()
        for route_id in range(1, count + 2):
            invoice_issue_for_route(route=sample_route().model_copy(update={"route_id": route_id}))
    invoices = list(Invoice.objects.order_by("id")[: count + 1])
    warm_up, invoices = invoices[0], invoices[1:]
    html_to_pdf(invoice_html(warm_up))  # fonts and WeasyPrint's caches load once, for both paths
    render_invoice_pdf.apply(args=[warm_up.pk], throw=True)

    bare = task = 0.0
    for invoice in invoices:
        html = invoice_html(invoice)
        started = time.perf_counter()
        html_to_pdf(html)
        bare += time.perf_counter() - started
        started = time.perf_counter()
        render_invoice_pdf.apply(args=[invoice.pk], throw=True)
        task += time.perf_counter() - started
    rendered = Invoice.objects.filter(pk__in=[i.pk for i in invoices], pdf_status="rendered").count()
    assert rendered == count, f"only {rendered} of {count} PDFs rendered"
    common.figure("pdf_invoices", count)
    common.figure("pdf_bare_renders_per_s", count / bare)
    common.figure("pdf_task_renders_per_s", count / task)
    common.figure("pdf_task_vs_bare_ratio", bare / task)


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="logiflow-bench-invoicing-") as scratch:
        # PDFs and queued Celery messages go to scratch folders (the worker processes inherit the environment).
        os.environ["MEDIA_ROOT"] = str(Path(scratch) / "media")
        os.environ["CELERY_FILESYSTEM_DIR"] = str(Path(scratch) / "celery")
        os.environ.setdefault("LOG_LEVEL", "WARNING")  # WeasyPrint and Celery log every step at INFO
        database = os.environ.get("BENCH_INVOICING_DATABASE", "logiflow_bench_invoicing")
        preload = ("pg_stat_statements",) if PROFILE else ()
        with common.environment(database, preload=preload) as (bootstrap, url):
            if EVENTS and BASELINE_ROOT:
                drain_benchmark(url, bootstrap, EVENTS, root=Path(BASELINE_ROOT).resolve(), prefix="baseline_")
            if EVENTS:
                drain_benchmark(url, bootstrap, EVENTS)
            pdf_benchmark(PDF_INVOICES)


if __name__ == "__main__":
    main()
