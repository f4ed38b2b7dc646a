"""`make bench` (after relay.py and invoicing.py): what a user of LogiFlow feels, one `name=value` line each.

  e2e_latency_p50_ms, e2e_latency_p99_ms
        commit of a route's transaction (`route_calculate`, in this process, at a steady BENCH_STORY_RATE routes/s
        for BENCH_STORY_SECONDS) -> commit of the invoicing handler's transaction for it, with `relay_outbox` and
        `consume invoicing` as their own processes. Both ends are PostgreSQL's commit timestamps
        (`pg_xact_commit_timestamp` of the route's and the invoice's rows: the benchmark's own cluster runs with
        `track_commit_timestamp = on`); on a server without it (`e2e_latency_clock` says which), the route's end is
        this process's clock right after the service returned and the invoice's is its `issued_at` (the handler's
        transaction start: the figure is then a little low). Target p99 <= 50 ms.
  e2e_relay_p50_ms, e2e_broker_to_consumer_p50_ms, e2e_handler_p50_ms (and _p99_ms)
        where that time went: the route's commit -> the relay's commit of its outbox row -> the invoice's
        `issued_at` (taken in the handler's transaction) -> the invoice's commit (see `e2e_stages`).
  e2e_machine_busy_pct, e2e_machine_cpu_ms_per_route, e2e_max_routes_per_s_on_this_machine
        every core's busy share while the routes came in (/proc/stat: all processes, this one's route_calculate
        calls too), that CPU time per route, and the rate it allows with every core busy: near 100 % busy, the
        latency tail is processes queueing for a core.
  outbox_write_overhead_ratio
        `route_calculate` with its `outbox.publish` / the same call with publish patched to a no-op (here only),
        same database and data, the two interleaved call by call; medians. Target <= 1.10.
  claim_cost_1m_vs_10k_ratio
        seconds per row of a relay draining the same pending backlog with 1,000,000 published rows retained in the
        outbox / with 10,000 (cost, so the target <= 1.2 reads as "at most 20 % slower"; the median of three drains
        each, each drained backlog deleted again); then one
        `outbox_events_purge` run over the million (`outbox_purge_rows_per_s`) and the relay's rate right after it,
        before any vacuum (`relay_after_purge_events_per_s`).
  cascade_routing_p99_ratio
        p99 of `POST /api/v1/routes/` over real HTTP (gunicorn, BENCH_HTTP_CLIENTS concurrent clients) while the
        invoicing consumer is stopped / while it runs (relay running throughout). Target <= 1.1.
  api_routes_per_s, routes_invoiced_per_s
        the same clients' sustained rate while the consumer runs, and those routes invoiced per second (from the
        phase's first request to the last of its invoices' commit).
  relay_scale_2_vs_1_ratio, drain_scale_2_vs_1_ratio
        two relay processes / one on the same backlog; two members of one invoicing group / one (informational).
  refusal_isolation_ratio
        one topic's relay rate while another topic is refused / before (target >= 0.9). The refusal is injected
        (bench/refusing_relay.py patches the delivery report of the refused topic, as the tests do).

Own database (logiflow_bench_story, or BENCH_STORY_DATABASE), own broker as the other benchmarks (BENCH_BROKER=kafka:
names prefixed `kafka.`); KAFKA_TOPIC_PREFIX is honoured (tests/bench runs it on fresh topics of the test broker).
Sizes: BENCH_STORY_SECONDS (15), BENCH_STORY_RATE (200), BENCH_OVERHEAD_CALLS (400 of each), BENCH_RETAINED_SMALL
(10000), BENCH_RETAINED_LARGE (1000000), BENCH_CLAIM_BACKLOG (50000), BENCH_HTTP_REQUESTS (per phase, 800),
BENCH_HTTP_CLIENTS (4), BENCH_SCALE_EVENTS (20000), BENCH_SCALE_INVOICES (4000), BENCH_REFUSAL_EVENTS (20000).
BENCH_STORY_ONLY=e2e,overhead,cascade,refusal,relay_scale,drain_scale,claim_cost (any of them, comma-separated)
runs only those, in that order.
"""

from __future__ import annotations

import http.client
import json
import os
import statistics
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from unittest import mock

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import common  # noqa: E402
import cpu  # noqa: E402


def _size(name: str, default: int) -> int:
    return int(os.environ.get(name, str(default)))


SECONDS = float(os.environ.get("BENCH_STORY_SECONDS", "15"))
RATE = _size("BENCH_STORY_RATE", 200)
OVERHEAD_CALLS = _size("BENCH_OVERHEAD_CALLS", 400)
RETAINED_SMALL = _size("BENCH_RETAINED_SMALL", 10_000)
RETAINED_LARGE = _size("BENCH_RETAINED_LARGE", 1_000_000)
CLAIM_BACKLOG = _size("BENCH_CLAIM_BACKLOG", 50_000)
CLAIM_ROUNDS = 3  # drains per outbox size, the median taken: one drain is a second or two on a noisy machine
HTTP_REQUESTS = _size("BENCH_HTTP_REQUESTS", 800)
HTTP_CLIENTS = _size("BENCH_HTTP_CLIENTS", 4)
SCALE_EVENTS = _size("BENCH_SCALE_EVENTS", 20_000)
SCALE_INVOICES = _size("BENCH_SCALE_INVOICES", 4000)
REFUSAL_EVENTS = _size("BENCH_REFUSAL_EVENTS", 20_000)
ONLY = os.environ.get("BENCH_STORY_ONLY", "")  # e.g. "e2e,cascade": those measurements only, in that order
ROUTING = "routing.events"
INVOICING = "invoicing.events"
CUSTOMERS = 50
TRUCKS = 200
WRITERS = 4  # threads calling route_calculate for the e2e run: one call may take longer than 1 / RATE
WAIT = 600.0  # seconds: any wait longer than this is a broken run, not a slow one


# --- Data ---------------------------------------------------------------------------------------------------


def sql(statement: str, params: list | None = None) -> list[tuple]:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(statement, params or [])
        return cursor.fetchall() if cursor.description else []


def scalar(statement: str, params: list | None = None):  # noqa: ANN201
    return sql(statement, params)[0][0]


def seed() -> None:
    """An empty system with one depot, TRUCKS trucks and CUSTOMERS customers known to both contexts (ids from 1)."""
    from decimal import Decimal

    from django.utils import timezone

    from apps.invoicing.services.billing_accounts import billing_account_create
    from apps.invoicing.services.customers import known_customer_upsert
    from apps.routing import services

    sql("TRUNCATE routing_depot, routing_truck, routing_customer, routing_route, routing_routestop,"
        " invoicing_invoiceline, invoicing_invoice, invoicing_invoicenumbercounter, invoicing_billingaccount,"
        " invoicing_knowncustomer, consumers_inboxentry, consumers_deadletter, outbox_pending, outbox_outboxevent,"
        " outbox_brokermark, outbox_relayproblem RESTART IDENTITY CASCADE")
    _REFERENCES.clear()
    depot = services.depot_create(name="Istanbul Hub", lat=41.0, lon=28.9)
    for i in range(1, TRUCKS + 1):
        services.truck_create(plate=f"34 LF {i:03d}", depot=depot, capacity_kg=12000, average_speed_kmh=80)
    for i in range(1, CUSTOMERS + 1):
        customer = services.customer_create(name=f"Customer {i}")
        known_customer_upsert(customer_id=customer.pk, name=customer.name, revision=1, changed_at=timezone.now())
        billing_account_create(
            customer_id=customer.pk, name=customer.name, billing_address="Istanbul", currency="EUR",
            rate_per_km=Decimal("1.25"), fee_per_stop=Decimal("15"), fuel_surcharge_percent=Decimal("7.5"),
            vat_rate_percent=Decimal("20"),
        )
    # Invoicing already knows the customers: their announcements need not travel.
    sql("TRUNCATE outbox_pending, outbox_outboxevent")


def reset_outbox() -> None:
    sql("TRUNCATE outbox_pending, outbox_outboxevent, outbox_brokermark, outbox_relayproblem")
    sql("VACUUM ANALYZE outbox_outboxevent, outbox_pending")


STOPS = [("Izmit", 40.77, 29.92), ("Bursa", 40.19, 29.06), ("Eskisehir", 39.78, 30.52)]


_REFERENCES: dict[str, list] = {}


def new_route(i: int):  # noqa: ANN201 - a Route
    """route_calculate for truck and customer number `i` (read once: a dispatcher's screen already has them)."""
    from apps.routing import services
    from apps.routing.models import Customer, Truck

    if not _REFERENCES:
        _REFERENCES["trucks"] = list(Truck.objects.select_related("depot").order_by("pk"))
        _REFERENCES["customers"] = list(Customer.objects.order_by("pk"))
    return services.route_calculate(
        truck=_REFERENCES["trucks"][i % TRUCKS], customer=_REFERENCES["customers"][i % CUSTOMERS],
        stops=[services.StopInput(name=n, lat=a, lon=o) for n, a, o in STOPS],
    )


def route_payload(i: int) -> dict:
    return {"truck": 1 + i % TRUCKS, "customer": 1 + i % CUSTOMERS,
            "stops": [{"name": n, "lat": a, "lon": o} for n, a, o in STOPS]}


def prefill(topic: str, count: int, payload: str) -> float:
    """Commit `count` pending rows of `topic` (keys over TRUCKS trucks) in one transaction; the time just before
    its commit (no relay can see them earlier, so a rate from it is never overstated, however busy the machine)."""
    from django.db import transaction

    with transaction.atomic():
        common.insert_pending(topic=topic, keys=TRUCKS, payload=payload, count=count)
        committing = time.time()
    return committing


def retain(count: int, payload: str) -> None:
    """`count` rows published 200 hours ago (older than the default retention): what a busy week leaves."""
    sql(
        """
        INSERT INTO outbox_outboxevent
          (event_id, topic, key, event_type, source, payload, traceparent, created_at, published_at, state,
           attempts, last_error, partition, "offset")
        SELECT gen_random_uuid(), %s, 'truck:' || (g %% %s), 'logiflow.routing.RouteCalculated.v1',
               '/logiflow/routing', %s, '', now() - interval '200 hours', now() - interval '200 hours',
               'published', 1, '', g %% 6, g
        FROM generate_series(1, %s) AS g
        """,
        [ROUTING, TRUCKS, payload, count],
    )
    sql("VACUUM ANALYZE outbox_outboxevent, outbox_pending")


def payload_json() -> str:
    from relay import sample_event

    return sample_event().model_dump_json()


# --- Processes ----------------------------------------------------------------------------------------------


class Stack:
    """The worker processes of one measurement, each with its log in var/bench/."""

    def __init__(self, env: dict[str, str]) -> None:
        self.env = env
        self.processes: list[tuple[str, subprocess.Popen[bytes]]] = []

    def start(self, name: str, args: list[str], *, ready: str, env: dict[str, str] | None = None) -> None:
        """Start `args` (a management command, or a script) and wait for `ready` in its log."""
        log = common.log_dir() / f"story-{name}.log"
        seen = log.read_text(errors="replace").count(ready) if log.exists() else 0
        process = common.start_manage(args, env=env or self.env, log=log)
        self.processes.append((name, process))
        if not common.wait_until(lambda: log.read_text(errors="replace").count(ready) > seen or
                                 process.poll() is not None, timeout=120, interval=0.1) or process.poll() is not None:
            raise SystemExit(f"{name} did not start; see {log}")

    def stop(self, name: str) -> None:
        for entry in [e for e in self.processes if e[0] == name]:
            self.processes.remove(entry)
            if common.stop(entry[1]) != 0:
                print(f"{name} exited non-zero; see {common.log_dir()}", file=sys.stderr)

    def stop_all(self) -> None:
        for name in {name for name, _ in self.processes}:
            self.stop(name)


def relay(stack: Stack, name: str = "relay") -> None:
    stack.start(name, ["relay_outbox"], ready="relay started")


def warm_relays(payload: str) -> None:
    """A first small backlog through the relays just started: their first round reads the broker's marks before it
    claims (apps/outbox/relay/broker_memory.py; about 1 s on a loaded machine), which is not the relay's rate."""
    left = "SELECT count(*) FROM outbox_pending WHERE topic = %s"
    prefill(ROUTING, 1000, payload)
    if not common.wait_until(lambda: scalar(left, [ROUTING]) == 0, timeout=WAIT):
        raise SystemExit(f"the relay did not drain its warm-up rows; see {common.log_dir()}")


def consumer(stack: Stack, group_id: str, name: str = "consumer") -> None:
    stack.start(name, ["consume", "invoicing", "--group-id", group_id], ready="subscribed to")


def group_from_now() -> str:
    from invoicing import group_from_now as at_end

    from apps.common.kafka import kafka_topic

    return at_end(kafka_topic(ROUTING))


def invoiced(route_ids: list[int]) -> int:
    return scalar("SELECT count(*) FROM invoicing_invoice WHERE kind = 'invoice' AND route_id = ANY(%s)", [route_ids])


def wait_invoiced(label: str, route_ids: list[int]) -> None:
    if not common.wait_for_count(label, lambda: invoiced(route_ids), len(route_ids), timeout=WAIT, interval=0.05):
        raise SystemExit(f"{label}: not every route was invoiced; see {common.log_dir()}/story-consumer.log")


def warm_up(label: str) -> None:
    """One route through the whole chain: group joined, connections open, caches warm."""
    route = new_route(0)
    wait_invoiced(f"{label}: warm-up", [route.pk])


def drain_rate(topic: str, count: int, payload: str) -> float:
    """Events/s of the running relays over `count` new rows of `topic`: their commit to the last one published."""
    first_id = scalar("SELECT coalesce(max(id), 0) FROM outbox_outboxevent")
    committed = prefill(topic, count, payload)
    left = "SELECT count(*) FROM outbox_pending WHERE id > %s AND topic = %s"
    if not common.wait_for_count(f"relay: {topic}", lambda: count - scalar(left, [first_id, topic]), count,
                                 timeout=WAIT):
        raise SystemExit(f"the relay did not drain {topic}; see {common.log_dir()}")
    last = scalar("SELECT extract(epoch FROM max(published_at)) FROM outbox_outboxevent WHERE id > %s AND topic = %s",
                  [first_id, topic])
    return count / (float(last) - committed)


# --- Measurements -------------------------------------------------------------------------------------------


def e2e_latency(stack: Stack) -> None:
    commit_timestamps = scalar("SHOW track_commit_timestamp") == "on"
    relay(stack)
    consumer(stack, group_from_now())
    warm_up("e2e")
    committed: dict[int, float] = {}
    total = max(1, int(SECONDS * RATE))
    started = time.monotonic()

    def dispatcher(offset: int) -> None:
        """Every WRITERS-th route on a fixed schedule: together a steady RATE, whatever one call costs."""
        from django.db import connection

        try:
            for i in range(offset, total, WRITERS):
                time.sleep(max(0.0, started + i / RATE - time.monotonic()))
                route = new_route(i)
                committed[route.pk] = time.time()  # the service's transaction committed as it returned
        finally:
            connection.close()

    threads = [threading.Thread(target=dispatcher, args=(n,)) for n in range(WRITERS)]
    busy_before, total_before = cpu.machine_ticks()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    sent_for = time.monotonic() - started
    busy_after, total_after = cpu.machine_ticks()
    if len(committed) != total:
        raise SystemExit(f"e2e: {total - len(committed)} route_calculate calls failed")
    wait_invoiced("e2e: invoiced", list(committed))
    ids = list(committed)
    if commit_timestamps:
        routes = dict(sql("SELECT id, extract(epoch FROM pg_xact_commit_timestamp(xmin)) FROM routing_route "
                          "WHERE id = ANY(%s)", [ids]))
        invoices = sql("SELECT route_id, extract(epoch FROM pg_xact_commit_timestamp(xmin)) FROM invoicing_invoice "
                       "WHERE kind = 'invoice' AND route_id = ANY(%s)", [ids])
    else:
        routes = committed
        invoices = sql("SELECT route_id, extract(epoch FROM issued_at) FROM invoicing_invoice "
                       "WHERE kind = 'invoice' AND route_id = ANY(%s)", [ids])
    latencies = [(float(at) - float(routes[route_id])) * 1000 for route_id, at in invoices]
    stages = e2e_stages(ids, routes, commit_timestamps=commit_timestamps)
    stack.stop_all()
    common.figure("e2e_latency_clock", "commit_timestamps" if commit_timestamps else "client_commit_to_issued_at")
    common.figure("e2e_routes", len(latencies))
    common.figure("e2e_routes_per_s", len(latencies) / sent_for)
    common.figure("e2e_latency_p50_ms", common.percentile(latencies, 0.50))
    common.figure("e2e_latency_p99_ms", common.percentile(latencies, 0.99))
    for stage, values in stages.items():
        common.figure(f"e2e_{stage}_p50_ms", common.percentile(values, 0.50))
        common.figure(f"e2e_{stage}_p99_ms", common.percentile(values, 0.99))
    # How busy the machine was while routes came in: near 100 %, the tail is every process queueing for a core.
    cpu_ms_per_route = (busy_after - busy_before) / cpu.TICKS * 1000 / total
    common.figure("e2e_machine_busy_pct", 100 * (busy_after - busy_before) / (total_after - total_before))
    common.figure("e2e_machine_cpu_ms_per_route", cpu_ms_per_route)
    common.figure("e2e_max_routes_per_s_on_this_machine", cpu.max_per_s(os.cpu_count() or 1, cpu_ms_per_route * 1000))


def e2e_stages(ids: list[int], routes: dict, *, commit_timestamps: bool) -> dict[str, list[float]]:
    """Where each route's latency went (ms): its commit -> the relay's commit of its outbox row (`relay`) -> the
    invoicing handler's transaction start, the invoice's `issued_at` (`broker_to_consumer`: the broker, the
    consumer's fetch and its wait for a batch) -> the invoice's commit (`handler`). Without commit timestamps the
    relay's end is the row's `published_at` and the handler stage is not measured."""
    relayed = "pg_xact_commit_timestamp(o.xmin)" if commit_timestamps else "o.published_at"
    finished = "pg_xact_commit_timestamp(i.xmin)" if commit_timestamps else "i.issued_at"
    rows = sql(
        f"""
        SELECT i.route_id, extract(epoch FROM {relayed}), extract(epoch FROM i.issued_at),
               extract(epoch FROM {finished})
        FROM invoicing_invoice i
        JOIN outbox_outboxevent o ON o.event_type LIKE '%%.RouteCalculated.%%'
             AND (o.payload::jsonb ->> 'route_id')::bigint = i.route_id
        WHERE i.kind = 'invoice' AND i.route_id = ANY(%s)
        """,
        [ids],
    )
    stages: dict[str, list[float]] = {"relay": [], "broker_to_consumer": [], "handler": []}
    for route_id, relayed_at, issued_at, committed_at in rows:
        stages["relay"].append((float(relayed_at) - float(routes[route_id])) * 1000)
        stages["broker_to_consumer"].append((float(issued_at) - float(relayed_at)) * 1000)
        stages["handler"].append((float(committed_at) - float(issued_at)) * 1000)
    if not commit_timestamps:
        del stages["handler"]
    return stages


def outbox_write_overhead() -> None:
    """route_calculate with and without its publish, call by call, on the same database and data."""
    from apps import outbox

    def noop(event: object) -> uuid.UUID:
        return uuid.uuid4()

    timings: dict[bool, list[float]] = {True: [], False: []}
    for i in range(10):  # warm-up: connections, caches, the first plans
        new_route(i)
    for i in range(2 * OVERHEAD_CALLS):
        publishing = (i // 2 + i) % 2 == 0  # ABBA: neither side always goes first
        started = time.perf_counter()
        if publishing:
            new_route(i)
        else:
            with mock.patch.object(outbox, "publish", noop):
                new_route(i)
        timings[publishing].append(time.perf_counter() - started)
    with_publish, without = statistics.median(timings[True]), statistics.median(timings[False])
    common.figure("route_calculate_ms", with_publish * 1000)
    common.figure("route_calculate_noop_publish_ms", without * 1000)
    common.figure("outbox_write_overhead_ratio", with_publish / without)


def claim_cost(stack: Stack, payload: str) -> None:
    from apps.outbox.services import outbox_events_purge

    rates = {}
    for retained in (RETAINED_SMALL, RETAINED_LARGE):
        reset_outbox()
        retain(retained, payload)
        relay(stack)
        warm_relays(payload)
        rates[retained] = statistics.median(fresh_drain_rate(payload) for _ in range(CLAIM_ROUNDS))
        stack.stop("relay")
    common.figure("relay_retained_small_events_per_s", rates[RETAINED_SMALL])
    common.figure("relay_retained_large_events_per_s", rates[RETAINED_LARGE])
    common.figure("claim_cost_1m_vs_10k_ratio", rates[RETAINED_SMALL] / rates[RETAINED_LARGE])

    # The retained rows are older than OUTBOX_RETENTION_HOURS: one purge run, as beat runs it hourly.
    started = time.perf_counter()
    purged = outbox_events_purge()
    elapsed = time.perf_counter() - started
    common.figure("outbox_purge_rows", purged)
    common.figure("outbox_purge_rows_per_s", purged / elapsed)
    relay(stack)
    warm_relays(payload)
    common.figure("relay_after_purge_events_per_s", drain_rate(ROUTING, CLAIM_BACKLOG, payload))
    stack.stop("relay")


def fresh_drain_rate(payload: str) -> float:
    """drain_rate over CLAIM_BACKLOG rows, which are then deleted: the outbox holds the retained rows again."""
    first_id = scalar("SELECT coalesce(max(id), 0) FROM outbox_outboxevent")
    rate = drain_rate(ROUTING, CLAIM_BACKLOG, payload)
    sql("DELETE FROM outbox_outboxevent WHERE id > %s", [first_id])
    sql("VACUUM ANALYZE outbox_outboxevent, outbox_pending")
    return rate


def http_phase(port: int, token: str, *, first: int) -> tuple[list[float], float, list[int]]:
    """HTTP_REQUESTS route creations from HTTP_CLIENTS threads: latencies (ms), seconds taken, route ids."""
    latencies: list[float] = []
    ids: list[int] = []
    errors: list[str] = []
    lock = threading.Lock()

    def client(offset: int) -> None:
        for i in range(offset, HTTP_REQUESTS, HTTP_CLIENTS):
            body = json.dumps(route_payload(first + i))
            started = time.perf_counter()
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
            try:
                connection.request("POST", "/api/v1/routes/", body, {
                    "Content-Type": "application/json", "Authorization": f"Token {token}"})
                response = connection.getresponse()
                data = response.read()
            finally:
                connection.close()
            elapsed = (time.perf_counter() - started) * 1000
            with lock:
                if response.status != 201:
                    errors.append(f"{response.status}: {data[:200]!r}")
                    return
                latencies.append(elapsed)
                ids.append(json.loads(data)["id"])

    threads = [threading.Thread(target=client, args=(n,)) for n in range(HTTP_CLIENTS)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise SystemExit(f"POST /api/v1/routes/ failed: {errors[0]}")
    return latencies, time.perf_counter() - started, ids


def cascade(stack: Stack) -> None:
    from django.contrib.auth import get_user_model
    from knox.models import AuthToken

    from apps.devstack.process import free_port

    user = get_user_model().objects.create_superuser(f"bench-{uuid.uuid4().hex[:8]}", password=uuid.uuid4().hex)
    token = AuthToken.objects.create(user=user)[1]
    port = free_port()
    web_env = {**stack.env, "API_THROTTLE_USER": "1000000/minute", "LOG_LEVEL": "WARNING"}
    stack.start("web", ["-m", "gunicorn", "logiflow.wsgi:application", "--bind", f"127.0.0.1:{port}",
                        "--workers", "2", "--error-logfile", "-", "--log-level", "info"],
                ready="Booting worker", env=web_env)
    relay(stack)
    consumer(stack, group_from_now())
    warm_up("cascade")
    _, _, warm = http_phase(port, token, first=0)  # the web workers' first requests: imports, connections
    wait_invoiced("cascade: warm-up", warm)  # the measured phase starts with no backlog
    phase_start = time.time()
    running, seconds, ids = http_phase(port, token, first=HTTP_REQUESTS)
    wait_invoiced("cascade: invoiced", ids)
    last = scalar("SELECT extract(epoch FROM max(issued_at)) FROM invoicing_invoice WHERE route_id = ANY(%s)", [ids])
    stack.stop("consumer")
    stopped, _, _ = http_phase(port, token, first=2 * HTTP_REQUESTS)
    stack.stop_all()
    common.figure("cascade_requests", len(running))
    common.figure("routing_p50_ms_consumer_running", common.percentile(running, 0.50))
    common.figure("routing_p50_ms_consumer_stopped", common.percentile(stopped, 0.50))
    common.figure("routing_p99_ms_consumer_running", common.percentile(running, 0.99))
    common.figure("routing_p99_ms_consumer_stopped", common.percentile(stopped, 0.99))
    common.figure("cascade_routing_p99_ratio",
                  common.percentile(stopped, 0.99) / common.percentile(running, 0.99))
    common.figure("api_routes_per_s", len(ids) / seconds)
    common.figure("routes_invoiced_per_s", len(ids) / (float(last) - phase_start))


def relay_scale(stack: Stack, payload: str) -> None:
    rates = {}
    for relays in (1, 2):
        reset_outbox()
        for n in range(relays):
            relay(stack, f"relay{n}")
        warm_relays(payload)
        rates[relays] = drain_rate(ROUTING, SCALE_EVENTS, payload)
        stack.stop_all()
    common.figure("relay_1_events_per_s", rates[1])
    common.figure("relay_2_events_per_s", rates[2])
    common.figure("relay_scale_2_vs_1_ratio", rates[2] / rates[1])


def drain_scale(stack: Stack) -> None:
    """One backlog of RouteCalculated in Kafka, drained by a fresh group of one member, then of two."""
    from invoicing import prefill as route_backlog

    groups = {members: group_from_now() for members in (1, 2)}  # both start before the backlog
    relay(stack)
    committed = route_backlog(SCALE_INVOICES)  # routes 1..N, customers 1..50 (seeded), distinct trucks
    left = "SELECT count(*) FROM outbox_pending WHERE topic = %s"
    if not common.wait_until(lambda: scalar(left, [ROUTING]) == 0, timeout=WAIT):
        raise SystemExit("the relay did not publish the invoicing backlog")
    del committed
    rates = {}
    INVOICES = "SELECT count(*) FROM invoicing_invoice"  # noqa: N806 - a constant of this function
    for members, group_id in groups.items():
        sql("TRUNCATE invoicing_invoiceline, invoicing_invoice, invoicing_invoicenumbercounter, consumers_inboxentry,"
            " consumers_deadletter CASCADE")
        for n in range(members):
            consumer(stack, group_id, f"consumer{n}")
        if not common.wait_for_count(f"drain: {members} member(s)", lambda: scalar(INVOICES), SCALE_INVOICES,
                                     timeout=WAIT, interval=0.2):
            raise SystemExit(f"the invoicing group did not drain the backlog; see {common.log_dir()}")
        first, last = sql("SELECT extract(epoch FROM min(issued_at)), extract(epoch FROM max(issued_at)) "
                          "FROM invoicing_invoice")[0]
        if float(last) <= float(first):
            raise SystemExit("the backlog was invoiced in one transaction; raise BENCH_SCALE_INVOICES")
        rates[members] = (SCALE_INVOICES - 1) / (float(last) - float(first))
        for n in range(members):
            stack.stop(f"consumer{n}")
    stack.stop_all()
    common.figure("drain_1_invoices_per_s", rates[1])
    common.figure("drain_2_invoices_per_s", rates[2])
    common.figure("drain_scale_2_vs_1_ratio", rates[2] / rates[1])


def refusal_isolation(stack: Stack, payload: str) -> None:
    from apps.common.kafka import kafka_topic

    reset_outbox()
    stack.start("refusing-relay", ["bench/refusing_relay.py", INVOICING], ready="relay started")
    warm_relays(payload)
    before = drain_rate(ROUTING, REFUSAL_EVENTS, payload)
    # The refused topic's rows take the lowest ids; the figure is the steady state once the relay holds the topic.
    prefill(INVOICING, REFUSAL_EVENTS, payload)
    problems = "SELECT count(*) FROM outbox_relayproblem WHERE topic = %s"  # the topic's name on the cluster
    if not common.wait_until(lambda: scalar(problems, [kafka_topic(INVOICING)]) > 0, timeout=WAIT, interval=0.05):
        raise SystemExit("the relay never reported the refused topic")
    during = drain_rate(ROUTING, REFUSAL_EVENTS, payload)
    refused = scalar("SELECT count(*) FROM outbox_pending WHERE topic = %s", [INVOICING])
    stack.stop_all()
    assert refused == REFUSAL_EVENTS, f"{REFUSAL_EVENTS - refused} refused rows left the queue"
    common.figure("relay_before_refusal_events_per_s", before)
    common.figure("relay_during_refusal_events_per_s", during)
    common.figure("refusal_isolation_ratio", during / before)


SECTIONS = ["e2e", "overhead", "cascade", "refusal", "relay_scale", "drain_scale", "claim_cost"]


def main() -> None:
    os.environ.setdefault("LOG_LEVEL", "INFO")  # the readiness lines ("relay started") are INFO
    chosen = [name.strip() for name in ONLY.split(",") if name.strip()] or SECTIONS
    unknown = set(chosen) - set(SECTIONS)
    if unknown:
        raise SystemExit(f"BENCH_STORY_ONLY: unknown {', '.join(sorted(unknown))}; known: {', '.join(SECTIONS)}")
    database = os.environ.get("BENCH_STORY_DATABASE", "logiflow_bench_story")
    with common.environment(database, restart_settings=("track_commit_timestamp = on",)) as (bootstrap, url):
        from apps.common.kafka import ensure_topics, kafka_topic

        ensure_topics([kafka_topic(ROUTING), kafka_topic(INVOICING)])
        payload = payload_json()
        stack = Stack(common.worker_env(url, bootstrap))
        sections: dict[str, Callable[[], None]] = {
            "e2e": lambda: e2e_latency(stack),
            "overhead": outbox_write_overhead,
            "cascade": lambda: cascade(stack),
            "refusal": lambda: refusal_isolation(stack, payload),
            "relay_scale": lambda: relay_scale(stack, payload),
            "drain_scale": lambda: drain_scale(stack),
            "claim_cost": lambda: claim_cost(stack, payload),
        }
        assert list(sections) == SECTIONS
        try:
            for name in chosen:
                seed()  # each measurement starts from the same empty system
                sections[name]()
        finally:
            stack.stop_all()


if __name__ == "__main__":
    main()
