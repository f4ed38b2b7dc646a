"""After the faults: wait (bounded) until the stack is quiet, then measure what must have survived them.

Everything is read from the database and the broker, never from what the clients were told: a request cut by
a fault may have committed or not.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from dataclasses import dataclass
from typing import Any

import psycopg
from confluent_kafka import Consumer, KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient

from chaos.faults import APPLICATION_NAME
from chaos.hostile import TOPICS, Delivered
from chaos.refusal import ON_TIME_S, Window

logger = logging.getLogger("chaos")
ON_TIME_SHARE = 0.5  # while a topic is refused, at least this share of the other's rows go out within ON_TIME_S
STABLE_POLLS = 3  # quiet: nothing queued, nothing unread, and the counts unchanged over this many polls
POLL_S = 3.0


@dataclass(frozen=True)
class Figure:
    """One `name=value` line; `failed` says why an invariant does not hold ("" if it holds or only informs)."""

    name: str
    value: Any
    failed: str = ""


def in_force(alias: str = "") -> str:
    """SQL condition: an invoice in force (not cancelled by a credit note); `alias` names the table."""
    column = f"{alias}." if alias else ""
    return f"{column}kind = 'invoice' AND {column}status <> 'credited'"


def connect(database_url: str) -> psycopg.Connection:
    return psycopg.connect(database_url, autocommit=True, application_name=APPLICATION_NAME, connect_timeout=10)


def _one(conn: psycopg.Connection, sql: str, params: Any = None) -> Any:
    return conn.execute(sql, params).fetchone()[0]


# --- quiet ---------------------------------------------------------------------------------------------------


class Lag:
    """Unread messages of each group's topic: end offsets minus the group's committed offsets."""

    def __init__(self, kafka: dict[str, str]) -> None:
        self.kafka = kafka  # the address, and the admin's credentials where the broker has SASL
        self.consumers = {
            group: Consumer({**kafka, "group.id": group, "enable.auto.commit": False,
                             "client.id": "logiflow-chaos-lag"})
            for group, _ in TOPICS.values()
        }

    def of(self, group: str) -> int:
        """-1 when the broker did not answer in time."""
        topic = next(topic for topic, (reader, _) in TOPICS.items() if reader == group)
        consumer = self.consumers[group]
        try:
            partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
            committed = consumer.committed([TopicPartition(topic, p) for p in partitions], timeout=10)
            unread = 0
            for position in committed:
                low, high = consumer.get_watermark_offsets(position, timeout=10)
                unread += max(0, high - (position.offset if position.offset >= 0 else low))
            return unread
        except KafkaException:
            return -1

    def detail(self, group: str) -> list[str]:
        """Each partition of `group`'s topic with unread messages: `topic[p] committed/high owner=<member>`, the
        owner being the member the broker says holds it (its client id and host), or `none`. What a stuck group
        needs to be told from a slow one, at the end of a run that did not go quiet."""
        topic = next(topic for topic, (reader, _) in TOPICS.items() if reader == group)
        consumer = self.consumers[group]
        try:
            partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
            committed = consumer.committed([TopicPartition(topic, p) for p in partitions], timeout=10)
            owners = self._owners(group)
            lines = []
            for position in committed:
                low, high = consumer.get_watermark_offsets(position, timeout=10)
                start = position.offset if position.offset >= 0 else low
                if high > start:
                    owner = owners.get((topic, position.partition), "none" if owners else "?")
                    lines.append(f"{topic}[{position.partition}] committed={start} high={high} owner={owner}")
            return lines
        except KafkaException as error:
            return [f"{group}: not read ({error})"]

    def _owners(self, group: str) -> dict[tuple[str, int], str]:
        admin = AdminClient(self.kafka)
        try:
            description = admin.describe_consumer_groups([group], request_timeout=10)[group].result(timeout=15)
        except Exception as error:  # noqa: BLE001 - a diagnostic: an unanswered describe must not hide the lag
            logger.info("group %s not described: %s", group, error)
            return {}
        return {
            (tp.topic, tp.partition): f"{member.client_id}@{member.host}({description.state})"
            for member in description.members
            for tp in (member.assignment.topic_partitions if member.assignment else [])
        }

    def close(self) -> None:
        for consumer in self.consumers.values():
            consumer.close()


def progress(conn: psycopg.Connection, lag: Lag) -> dict[str, int]:
    return {
        "outbox_pending": _one(conn, "SELECT count(*) FROM outbox_outboxevent WHERE state = 'pending'"),
        "ledger_replaying": _one(conn, "SELECT count(*) FROM consumers_deadletter WHERE status = 'replaying'"),
        "lag_invoicing": lag.of("invoicing"),
        "lag_routing": lag.of("routing"),
        "documents": _one(conn, "SELECT count(*) FROM invoicing_invoice"),
        "routes_marked": _one(conn, "SELECT count(*) FROM routing_route WHERE invoice_number <> ''"),
        "ledger": _one(conn, "SELECT count(*) FROM consumers_deadletter"),
    }


def wait_for_quiet(
    database_url: str, kafka: dict[str, str], *, timeout: float, notes: list[str] | None = None
) -> tuple[bool, float, dict[str, int]]:
    """Until nothing is queued or unread and the counts stop moving, or `timeout` (a stuck stack).
    Returns (quiet, seconds waited, the last reading); on a timeout, what was left (and each lagging partition's
    owner) is appended to `notes`."""
    started = time.monotonic()
    lag = Lag(kafka)
    readings: list[dict[str, int]] = []
    try:
        while True:
            try:
                with connect(database_url) as conn:
                    reading = progress(conn, lag)
            except psycopg.Error as error:
                logger.info("quiet wait: database not answering (%s)", error)
                reading = {}
            readings.append(reading)
            recent = readings[-STABLE_POLLS:]
            idle = reading and all(reading[name] == 0 for name in ("outbox_pending", "ledger_replaying",
                                                                    "lag_invoicing", "lag_routing"))
            waited = time.monotonic() - started
            if idle and len(recent) == STABLE_POLLS and all(r == reading for r in recent):
                return True, waited, reading
            if waited >= timeout:
                left = [f"not quiet after {waited:.0f}s: {reading}"]
                left += [f"{group} lag {line}" for group in ("invoicing", "routing") for line in lag.detail(group)]
                for line in left:
                    logger.info("%s", line)
                if notes is not None:
                    notes += left
                return False, waited, reading
            time.sleep(POLL_S)
    finally:
        lag.close()


# --- invariants ----------------------------------------------------------------------------------------------


def directory_before_settling(database_url: str) -> list[Figure]:
    with connect(database_url) as conn:
        return customers_in_directory(conn)


def measure(database_url: str, hostile: list[Delivered], *, broker_generation: int = 1) -> list[Figure]:
    with connect(database_url) as conn:
        return [
            *_invoicing(conn),
            *customers_in_directory(conn, name="customers_in_directory_at_end")[1:],
            _duplicate_effects(conn),
            _numbers_gapless(conn),
            *hostile_in_ledger(conn, hostile, broker_generation=broker_generation),
            *_stuck(conn),
            *_timing(conn),
        ]


def _invoicing(conn: psycopg.Connection) -> list[Figure]:
    routes = _one(conn, "SELECT count(*) FROM routing_route WHERE calculation > 0")
    invoices = _one(conn, f"SELECT count(*) FROM invoicing_invoice WHERE {in_force()}")
    without = [row[0] for row in conn.execute(
        f"SELECT id FROM routing_route r WHERE calculation > 0 AND NOT EXISTS "
        f"(SELECT 1 FROM invoicing_invoice i WHERE i.route_id = r.id AND {in_force('i')}) ORDER BY id"
    )]
    # A recalculation that bills the same (a new truck speed) keeps the invoice of an older calculation: what must
    # match the route's latest plan is what the invoice bills, its distance and its stops.
    behind = _one(conn, f"SELECT count(*) FROM invoicing_invoice i JOIN routing_route r ON r.id = i.route_id "
                        f"WHERE {in_force('i')} AND (i.route_calculation > r.calculation "
                        f"OR (i.route_summary->>'distance_km')::numeric <> r.distance_km "
                        f"OR jsonb_array_length(i.route_summary->'stops') <> "
                        f"(SELECT count(*) FROM routing_routestop s WHERE s.route_id = r.id))")
    marked = _one(conn, f"SELECT count(*) FROM routing_route r JOIN invoicing_invoice i ON i.route_id = r.id "
                        f"AND {in_force('i')} WHERE r.invoice_number = i.number")
    sample = ",".join(map(str, without[:10])) + ("…" if len(without) > 10 else "")
    return [
        Figure("routes_created", routes),
        Figure("invoices_in_force", invoices,
               "" if invoices == routes else f"{invoices} invoices in force for {routes} routes; "
                                             f"routes without one: {sample or 'none'}"),
        Figure("invoices_behind_route", behind,
               "" if behind == 0 else f"{behind} invoices in force bill another plan than their route's latest"),
        Figure("routes_marked_invoiced", marked,
               "" if marked == routes else f"{routes - marked} routes do not show their invoice in force"),
    ]


def _duplicate_effects(conn: psycopg.Connection) -> Figure:
    checks = {
        # a route with two invoices in force
        "in_force_twice": f"SELECT route_id FROM invoicing_invoice WHERE {in_force()} GROUP BY 1 HAVING count(*) > 1",
        # two documents of one kind for one calculation of a route
        "document_twice": "SELECT 1 FROM invoicing_invoice GROUP BY route_id, route_calculation, kind "
                          "HAVING count(*) > 1",
        # an invoice announced twice
        "announced_twice": "SELECT payload::jsonb->>'invoice_id' FROM outbox_outboxevent "
                           "WHERE event_type LIKE 'logiflow.invoicing.InvoiceGenerated.%' GROUP BY 1 HAVING count(*) > 1",
        # one calculation of a route published twice
        "calculated_twice": "SELECT 1 FROM outbox_outboxevent WHERE event_type LIKE 'logiflow.routing.RouteCalculated.%' "
                            "GROUP BY payload::jsonb->>'route_id', payload::jsonb->>'calculation' HAVING count(*) > 1",
        # a credited invoice without its credit note, or a credit note for an invoice still in force
        "credit_mismatch": "SELECT 1 FROM invoicing_invoice i WHERE i.kind = 'invoice' AND (i.status = 'credited') "
                           "<> EXISTS (SELECT 1 FROM invoicing_invoice c WHERE c.credit_for_id = i.id)",
    }
    found = {name: _one(conn, f"SELECT count(*) FROM ({sql}) AS found") for name, sql in checks.items()}
    total = sum(found.values())
    detail = ", ".join(f"{name}={count}" for name, count in found.items() if count)
    return Figure("duplicate_effects", total, detail)


def _numbers_gapless(conn: psycopg.Connection) -> Figure:
    counters = dict(conn.execute("SELECT year, last_number FROM invoicing_invoicenumbercounter").fetchall())
    issued: dict[int, list[int]] = {}
    for (number,) in conn.execute("SELECT number FROM invoicing_invoice"):
        _, year, sequence = number.split("-")
        issued.setdefault(int(year), []).append(int(sequence))
    problems = []
    for year in sorted(set(counters) | set(issued)):
        numbers = sorted(issued.get(year, []))
        if numbers != list(range(1, counters.get(year, 0) + 1)):
            missing = sorted(set(range(1, counters.get(year, 0) + 1)) - set(numbers))[:10]
            problems.append(f"{year}: {len(numbers)} numbers for counter {counters.get(year)}, "
                            f"{len(numbers) - len(set(numbers))} repeated, missing {missing}")
    return Figure("numbers_gapless", 0 if problems else 1, "; ".join(problems))


def customers_in_directory(conn: psycopg.Connection, *, name: str = "customers_in_directory") -> list[Figure]:
    """Every customer's latest change reached invoicing's directory: routing's revision = invoicing's. A customer's
    change depends on no route, so it must hold once the stack is quiet, before anyone replays a dead letter."""
    behind = conn.execute(
        "SELECT c.id, c.revision, k.revision FROM routing_customer c "
        "LEFT JOIN invoicing_knowncustomer k ON k.customer_id = c.id "
        "WHERE k.revision IS DISTINCT FROM c.revision ORDER BY c.id"
    ).fetchall()
    customers = _one(conn, "SELECT count(*) FROM routing_customer")
    sample = ", ".join(f"{customer} at revision {known or 'none'} of {revision}"
                       for customer, revision, known in behind[:10])
    return [
        Figure("customers", customers),
        Figure(name, customers - len(behind),
               "" if not behind else f"{len(behind)} customers' latest change not in invoicing's directory: "
                                     f"{sample}{'…' if len(behind) > 10 else ''}"),
    ]


def hostile_in_ledger(
    conn: psycopg.Connection, hostile: list[Delivered], *, broker_generation: int = 1
) -> list[Figure]:
    """Each hostile message the broker acknowledged has its dead letter: the row of its group at the position the
    broker gave it, holding that very message (its event id, or its key where it has none). A message acknowledged
    by a broker that replace_broker threw away may have gone with it unread: counted, not required."""
    recorded = set(conn.execute(
        'SELECT h.n FROM consumers_deadletter d '
        'JOIN unnest(%s::int[], %s::text[], %s::text[], %s::int[], %s::bigint[], %s::uuid[], %s::bytea[]) '
        'AS h(n, grp, topic, part, off, event_id, key) '
        'ON d."group" = h.grp AND d.topic = h.topic AND d.partition = h.part AND d."offset" = h.off '
        'AND (d.event_id = h.event_id OR (h.event_id IS NULL AND d.key = h.key))',
        [list(range(len(hostile))), [m.group for m in hostile], [m.topic for m in hostile],
         [m.partition for m in hostile], [m.offset for m in hostile], [m.event_id for m in hostile],
         [m.key for m in hostile]],
    ).fetchall())
    absent = [m for n, m in enumerate(hostile) if (n,) not in recorded]
    lost_with_broker = [m for m in absent if m.generation < broker_generation]
    missing = Counter(f"{m.kind}@{m.topic}" for m in absent if m.generation >= broker_generation)
    others = conn.execute(
        "SELECT reason, count(*) FROM consumers_deadletter GROUP BY 1 ORDER BY 1"
    ).fetchall()
    total = sum(count for _, count in others)
    return [
        Figure("hostile_injected", len(hostile)),
        Figure("hostile_in_ledger", len(recorded),
               "" if not missing else "no dead letter for " + ", ".join(f"{k}×{n}" for k, n in sorted(missing.items()))),
        Figure("hostile_lost_with_broker", len(lost_with_broker)),
        Figure("dead_letters_other", total - len(recorded)),
        Figure("dead_letters_by_reason", ",".join(f"{reason}:{count}" for reason, count in others) or "none"),
    ]


def refused_topic(windows: list[Window], *, scheduled: int) -> list[Figure]:
    """While the broker refused the relay one topic, the other kept flowing. Fails when one of the `scheduled`
    refusals was not applied and measured, when the refused topic's rows went through (no refusal at all), when a window had no traffic on the other topic (nothing measured), when
    the other topic stood still in a window (nothing published or no invoice issued), or when fewer than
    ON_TIME_SHARE of its rows went out within ON_TIME_S (held back with the refused one)."""
    if not windows:
        return [Figure("refused_topic", "none", f"{scheduled} refusals made, none measured" if scheduled else "")]
    through = [w for w in windows if w.refused_published]
    idle = [_at(w) for w in windows if not w.other_created]
    still = [f"{_at(w)} ({w.other_published} published, {w.invoices_issued} invoices)"
             for w in windows if w.other_created and not (w.other_published and w.invoices_issued)]
    late = [f"{_at(w)} ({w.other_on_time}/{w.other_due})"
            for w in windows if w.other_on_time < ON_TIME_SHARE * w.other_due]
    other = windows[0].other
    return [
        Figure("refused_topic", ",".join(sorted({w.topic for w in windows})),
               f"{scheduled} refusals made, {len(windows)} measured" if len(windows) < scheduled else ""),
        Figure("refusal_seconds", round(sum(w.seconds for w in windows), 1)),
        Figure("refused_topic_published_during_refusal", sum(w.refused_published for w in windows),
               f"the broker took {through[0].topic} rows while it refused them: the refusal from "
               f"{', '.join(_at(w) for w in through)} did not take" if through else ""),
        Figure("other_topic_created_during_refusal", sum(w.other_created for w in windows),
               f"no {other} rows created in the window from {', '.join(idle)}: nothing measured" if idle else ""),
        Figure("other_topic_published_during_refusal", sum(w.other_published for w in windows),
               f"{other} stood still in the window from {', '.join(still)}" if still else ""),
        Figure("invoices_issued_during_refusal", sum(w.invoices_issued for w in windows)),
        Figure("other_topic_on_time_during_refusal",
               f"{sum(w.other_on_time for w in windows)}/{sum(w.other_due for w in windows)}",
               f"{other} rows held back: fewer than {ON_TIME_SHARE:.0%} out within {ON_TIME_S:.0f}s in the window "
               f"from {', '.join(late)}" if late else ""),
    ]


def _at(window: Window) -> str:
    return f"{window.started:%H:%M:%S}"


def _stuck(conn: psycopg.Connection) -> list[Figure]:
    pending = _one(conn, "SELECT count(*) FROM outbox_outboxevent WHERE state = 'pending'")
    replaying = _one(conn, "SELECT count(*) FROM consumers_deadletter WHERE status = 'replaying'")
    failed = _one(conn, "SELECT count(*) FROM outbox_outboxevent WHERE state = 'failed'")
    # Dead letters still retried automatically (on a backoff schedule) are not stuck, but not applied either.
    retrying = _one(conn, "SELECT count(*) FROM consumers_deadletter WHERE status = 'retrying'")
    stuck = pending + replaying
    return [
        Figure("stuck", stuck, "" if stuck == 0 else f"{pending} outbox rows pending, {replaying} dead letters replaying"),
        Figure("outbox_failed", failed),
        Figure("ledger_retrying", retrying),
    ]


def _timing(conn: psycopg.Connection) -> list[Figure]:
    """Seconds from the RouteCalculated row's commit-time stamp to the invoice it caused."""
    worst, median = conn.execute(
        "SELECT max(s), percentile_cont(0.5) WITHIN GROUP (ORDER BY s) FROM ("
        "SELECT extract(epoch FROM i.issued_at - o.created_at) AS s FROM invoicing_invoice i "
        "JOIN outbox_outboxevent o ON o.event_id = i.source_event_id WHERE i.kind = 'invoice') AS delays"
    ).fetchone()
    pdfs = dict(conn.execute("SELECT pdf_status, count(*) FROM invoicing_invoice GROUP BY 1").fetchall())
    return [
        Figure("max_seconds_to_invoice", round(float(worst), 1) if worst is not None else "none"),
        Figure("median_seconds_to_invoice", round(float(median), 1) if median is not None else "none"),
        *(Figure(f"pdfs_{status}", pdfs.get(status, 0)) for status in ("rendered", "pending", "failed")),
    ]
