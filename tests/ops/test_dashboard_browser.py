"""The event-flow dashboard and the dead-letter replay story in a real (headless) Chromium, as the `operations`
and `finance` role users: charts drawn, workers alive or silent, lag, failure groups leading to the ledger; then a
route without billing data dead-lettered, fixed by finance and replayed by operations. No CSP violation, nothing
wider than 1,280 px; screenshots of each step in BROWSER_SHOTS_DIR (else a temporary directory, named in the
run's summary).

Skipped without Playwright (requirements-browser.txt) or a Chromium binary (apt-get install chromium)."""

from __future__ import annotations

import math
import random
import re
import threading
from collections.abc import Callable
from datetime import timedelta

from django.db import connection
from django.utils import timezone
from pytest_django.fixtures import Settings as SettingsWrapper

from apps.common.models import Heartbeat
from apps.consumers.models import DeadLetter
from apps.invoicing.models import Invoice
from apps.ops.models import FlowSample, PartitionLag
from tests.consumers.factories import dead_letter, role_user
from tests.invoicing.factories import unbilled_route_dead_letter
from tests.ops.support import GROUP, produce, sample_until
from tests.support import browser
from tests.support.browser import assert_fits, browse, browse_as, shoot

browser.require_playwright()
pytestmark = browser.ROLE_MARKS
DASHBOARD = "/admin/common/heartbeat/flow/"
MINUTES = 24 * 60


# Axis labels drawn (partly) outside their chart's SVG, where nobody can read them.
CLIPPED_LABELS = """() => [...document.querySelectorAll("figure.flow-chart svg text")]
  .filter(t => { const b = t.getBBox(), svg = t.ownerSVGElement.viewBox.baseVal;
                 return b.x < 0 || b.y < 0 || b.x + b.width > svg.width + 0.5 || b.y + b.height > svg.height + 4; })
  .map(t => t.textContent)"""


def _workers() -> None:
    """A live invoicing consumer with two partitions, a live routing consumer, and a relay silent for an hour; the
    groups' lag as the last sample read it from the broker."""
    now = timezone.now()
    for group, topic, partition, committed, high in [("invoicing", "routing.events", 0, 900, 912),
                                                     ("invoicing", "routing.events", 3, 10, 52),
                                                     ("routing", "invoicing.events", 1, 5, 5)]:
        PartitionLag.objects.create(group=group, topic=topic, partition=partition, committed=committed, high=high,
                                    sampled_at=now, stuck_since=now if high > committed else None)
    Heartbeat.objects.create(
        kind="consumer", group="invoicing", host="worker-1", pid=7, started_at=now - timedelta(hours=3), beat_at=now,
        last_batch_at=now, partitions=[
            {"topic": "routing.events", "partition": 0, "committed": 900, "high": 912, "lag": 12},
            {"topic": "routing.events", "partition": 3, "committed": 10, "high": 52, "lag": 42},
        ],
    )
    Heartbeat.objects.create(kind="consumer", group="routing", host="worker-2", pid=8, started_at=now, beat_at=now,
                             partitions=[{"topic": "invoicing.events", "partition": 1, "committed": 5, "high": 5,
                                          "lag": 0}])
    Heartbeat.objects.create(kind="relay", host="worker-3", pid=9, started_at=now - timedelta(hours=5),
                             beat_at=now - timedelta(hours=1))


def _a_day_of_samples() -> None:
    """One FlowSample a minute for 24 h: traffic that rises by day and falls by night, with noise; an hour-long
    lag spike (a slow consumer) with latency following it; dead letters piling up in the afternoon."""
    noise = random.Random(12)
    now = timezone.now()  # not rounded down: the oldest sample stays a full minute inside the 24 h window
    samples = []
    for m in range(MINUTES):
        daylight = max(0.0, math.sin(math.pi * m / MINUTES))
        spike = 900 <= m < 960
        lag = 350 * math.sin(math.pi * (m - 900) / 60) if spike else noise.uniform(0, 8)
        samples.append(FlowSample(
            at=now - timedelta(minutes=MINUTES - 1 - m), window_seconds=60,
            published=round(20 + 180 * daylight + noise.uniform(-15, 15)), backlog=noise.randint(0, 6),
            oldest_pending_age_s=noise.uniform(0, 1.5), latency_p50_s=0.05 + noise.uniform(0, 0.04),
            latency_p95_s=0.25 + lag / 100 + noise.uniform(0, 0.15),
            lag={"invoicing": round(lag), "routing": noise.randint(0, 2)},
            dead_letters=0 if m < 800 else 1 + (m - 800) // 150, dead_lettered=0,
        ))
    FlowSample.objects.bulk_create(samples)


def _failure_groups() -> tuple[list[DeadLetter], DeadLetter]:
    """Three dead letters of one failure group ("billing account missing for customer N") and one of another."""
    group = [dead_letter(seq, key=f"truck-{seq}", scenario="",
                         error=RuntimeError(f"billing account missing for customer {seq}")) for seq in (11, 12, 13)]
    other = dead_letter(14, key="truck-14", scenario="", error=ValueError("tariff has no rate for zone 4"))
    return group, other


def _polyline_points(page: object) -> list[int]:
    return page.eval_on_selector_all(  # type: ignore[attr-defined]
        "figure.flow-chart svg polyline",
        "lines => lines.map(l => l.getAttribute('points').trim().split(/\\s+/).length)",
    )


def test_operations_sees_charts_workers_lag_and_failure_groups_that_lead_to_the_filtered_ledger(
    live_server: object,
) -> None:
    _workers()
    _a_day_of_samples()
    billing, other = _failure_groups()
    operations = role_user("operations")
    with browse(live_server.url, operations) as (page, violations):  # type: ignore[attr-defined]
        response = page.goto(live_server.url + DASHBOARD)  # type: ignore[attr-defined]
        assert response.status == 200
        shoot(page, "dashboard")

        # Six charts, each an SVG with unbroken lines across the day's samples.
        charts = page.locator("figure.flow-chart")
        assert charts.count() == 6
        assert page.locator("figure.flow-chart figcaption").all_inner_texts() == [
            "Events published per minute", "End-to-end latency, p95", "Consumer lag by group",
            "Outbox backlog", "Oldest outbox row waiting", "Unresolved dead letters",
        ]
        # One line per chart, two in the lag chart (a line per group, each named in the legend).
        assert _polyline_points(page) == [MINUTES] * 7
        assert charts.nth(2).locator("text.legend").all_text_contents() == ["invoicing", "routing"]
        assert all(box["width"] > 600 and box["height"] > 100 for box in
                   (charts.nth(i).locator("svg").bounding_box() for i in range(6)))
        assert "1440 samples" in page.locator("h3", has_text="Last 24 hours").inner_text()
        assert page.evaluate(CLIPPED_LABELS) == []

        # Workers: the silent relay is named at the top and in its row; the consumers are alive.
        assert page.locator(".flow-dashboard h2").inner_text() == "Silent: relay"
        workers = {row[0]: row[1] for row in _table(page, "Workers")}
        assert workers == {"relay worker-3:9": "silent", "consumer[invoicing] worker-1:7": "yes",
                           "consumer[routing] worker-2:8": "yes"}

        # Lag per group, its lagging partitions named, as read from the broker.
        assert _table(page, "Consumer lag") == [
            ["invoicing", "54", "routing.events[0]: 12, routing.events[3]: 42", "catching up"],
            ["routing", "0", "-", "caught up"],
        ]

        # Dead letters: the larger failure group first, with its count; its link filters the ledger on it.
        assert "4 unresolved" in page.locator("h3", has_text="Dead letters").inner_text()
        groups = _table(page, "Dead letters")
        assert [row[3] for row in groups] == ["3", "1"]
        assert "billing account missing for customer" in groups[0][0]
        assert_fits(page, DASHBOARD)

        page.get_by_role("link", name=re.compile("billing account missing for customer")).click()
        page.wait_for_url(re.compile(r"/admin/consumers/deadletter/\?fingerprint="))
        assert page.url.endswith(f"?fingerprint={billing[0].fingerprint}")
        shown = sorted(int(text) for text in page.locator("#result_list tbody th a").all_inner_texts())
        assert shown == sorted(letter.pk for letter in billing) and other.pk not in shown
        shoot(page, "dashboard-failure-group-ledger")
        assert_fits(page, "ledger filtered on a failure group")
    assert not violations, violations


def _table(page: object, heading: str) -> list[list[str]]:
    """The body rows (cell texts) of the table that follows the <h3> starting with `heading`."""
    table = page.locator(f"h3:has-text('{heading}') + table")  # type: ignore[attr-defined]
    return [[cell.strip() for cell in row.locator("td").all_inner_texts()] for row in table.locator("tbody tr").all()]


def test_operations_sees_a_stopped_consumers_lag_grow_and_the_group_flagged_stalled(
    live_server: object, stopped_group: str, settings: SettingsWrapper
) -> None:
    """The `testing` group committed and stopped; messages keep arriving. Beat's samples (taken here, at chosen
    times) read its lag from the broker: the dashboard names the partitions, flags the stall, and shows the lag
    growing by refreshing itself, the reader's scroll position kept."""
    settings.FLOW_DASHBOARD_REFRESH_S = 1
    now = timezone.now()
    produce(stopped_group, partition=0, count=2)
    sample_until(2, now=now - timedelta(seconds=45))  # lag first seen 45 s ago...
    sample_until(2, now=now)  # ...and the committed offset has not moved since
    operations = role_user("operations")
    with browse(live_server.url, operations) as (page, violations):  # type: ignore[attr-defined]
        page.set_viewport_size({"width": 1280, "height": 480})
        page.goto(live_server.url + DASHBOARD)  # type: ignore[attr-defined]
        before = _lag_row(page, GROUP)
        page.evaluate("() => { window.notReloaded = true; window.scrollTo(0, 150); }")
        assert before[1:] == ["2", f"{stopped_group}[0]: 2", "stalled: no progress for 45 s"]
        assert "stalled: testing" in page.locator(".flow-dashboard h2").inner_text()

        _elsewhere(lambda: produce(stopped_group, partition=0, count=1))
        _elsewhere(lambda: produce(stopped_group, partition=1, count=2))
        _elsewhere(lambda: sample_until(5, now=now + timedelta(seconds=5)))
        page.wait_for_function(  # the page's own refresh, within a few of its 1 s rounds
            "() => [...document.querySelectorAll('table.consumer-lag td')].some(td => td.textContent.includes(': 3,'))",
            timeout=15_000,
        )
        after = _lag_row(page, GROUP)
        assert page.evaluate("() => [window.notReloaded, window.scrollY]") == [True, 150]
        assert "Refreshed at" in page.locator("#flow-refreshed").inner_text()
        shoot(page, "dashboard-stopped-consumer")
        assert_fits(page, DASHBOARD)

    assert after[1:] == ["5", f"{stopped_group}[0]: 3, {stopped_group}[1]: 2", "stalled: no progress for 50 s"]
    assert not violations, violations


def _lag_row(page: object, group: str) -> list[str]:
    return next(row for row in _table(page, "Consumer lag") if row[0] == group)


def _elsewhere(work: Callable[[], object]) -> None:
    """Run `work` (ORM, broker) on another thread: Django refuses database calls beside Playwright's event loop."""
    failure: list[BaseException] = []

    def run() -> None:
        try:
            work()
        except BaseException as error:  # noqa: BLE001 - handed back to the test's thread
            failure.append(error)
        finally:
            connection.close()

    thread = threading.Thread(target=run)
    thread.start()
    thread.join(timeout=60)
    assert not thread.is_alive() and not failure, failure


def test_operations_replays_a_dead_letter_after_finance_adds_the_missing_billing_account(live_server: object) -> None:
    route, letter = unbilled_route_dead_letter(customer_name="Ege Foods")
    operations, finance = role_user("operations"), role_user("finance")
    base = live_server.url  # type: ignore[attr-defined]
    with browse_as(base, operations, finance) as ((ops, fin), violations):
        # Operations sees the new failure group on the dashboard and follows it to the dead letter.
        ops.goto(base + DASHBOARD)
        assert "1 unresolved" in ops.locator("h3", has_text="Dead letters").inner_text()
        shoot(ops, "story-1-dashboard")
        ops.get_by_role("link", name=re.compile("MissingBillingData")).click()
        ops.wait_for_url(re.compile(r"fingerprint="))
        shoot(ops, "story-2-ledger")
        ops.locator("#result_list tbody th a", has_text=str(letter.pk)).click()
        ops.wait_for_url(re.compile(rf"/deadletter/{letter.pk}/change/"))
        assert "has no billing account" in ops.locator(".field-error_message").inner_text()
        fix = ops.locator(".field-fix_link a")
        assert fix.inner_text() == "Add billing account for Ege Foods"
        shoot(ops, "story-3-dead-letter")
        assert_fits(ops, "dead letter page")

        # Operations may not add billing data: the fix link is finance's to follow.
        fix_url = base + fix.get_attribute("href")
        assert ops.goto(fix_url).status == 403
        fin.goto(fix_url)
        chosen = fin.locator(".field-customer .select2-selection__rendered").inner_text()
        assert chosen.endswith(f"Ege Foods (customer {route.customer_id})")
        fin.fill("input[name=name]", "Ege Foods A.S.")
        fin.fill("textarea[name=billing_address]", "Liman Cad. 12\n35210 Izmir")
        fin.fill("input[name=rate_per_km]", "1.25")
        fin.fill("input[name=fee_per_stop]", "15.00")
        fin.fill("input[name=vat_rate_percent]", "20")
        shoot(fin, "story-4-finance-adds-billing-account")
        assert_fits(fin, "billing account form")
        fin.locator("input[name=_save]").click()
        fin.wait_for_url(re.compile(r"/admin/invoicing/billingaccount/$"))
        assert "was added successfully" in fin.locator(".messagelist").inner_text()
        shoot(fin, "story-5-billing-account-added")

        # Back on the dead letter: Replay, confirm, and the letter is resolved.
        ops.goto(f"{base}/admin/consumers/deadletter/{letter.pk}/change/")
        ops.get_by_role("link", name="Replay", exact=True).click()
        ops.wait_for_url(re.compile(rf"/deadletter/{letter.pk}/replay/"))
        assert "replays 1 dead letter through the inbox of group invoicing" in ops.locator("#content").inner_text()
        shoot(ops, "story-6-confirm-replay")
        assert_fits(ops, "replay confirmation")
        ops.locator("input[type=submit][value=Replay]").click()
        ops.wait_for_url(re.compile(rf"/deadletter/{letter.pk}/change/"))
        assert "Replayed 1 dead letters: 1 applied" in ops.locator(".messagelist").inner_text()
        assert ops.locator(".field-status .readonly").inner_text() == "Replayed"
        history = ops.locator("#history-group tbody tr.has_original")
        assert history.count() == 1
        assert [history.locator(f"td.field-{name}").inner_text().strip() for name in ("action", "outcome", "who")] == [
            "Replay", "Applied", "operations"]
        shoot(ops, "story-7-replayed")
        assert_fits(ops, "replayed dead letter")

        ops.goto(base + DASHBOARD)
        assert "0 unresolved" in ops.locator("h3", has_text="Dead letters").inner_text()
        shoot(ops, "story-8-dashboard-after")
    assert not violations, violations

    letter.refresh_from_db()
    assert letter.status == DeadLetter.Status.REPLAYED
    history = letter.history.get()
    assert (history.action, history.outcome, history.actor.get_username()) == ("replay", "applied", "operations")
    invoice = Invoice.objects.get(route_id=route.pk)
    assert invoice.customer_id == route.customer_id
