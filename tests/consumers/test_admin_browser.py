"""The dead-letter ledger in a real (headless) Chromium at 1,280 px, as the `operations` role user: the failure-group
table beside the filters, and replaying a failure group from its confirmation. Screenshots in BROWSER_SHOTS_DIR.

Skipped without Playwright (requirements-browser.txt) or a Chromium binary (apt-get install chromium)."""

from __future__ import annotations

import re

from apps.consumers.ledger import Failure, deadletter_record
from apps.consumers.models import DeadLetter
from tests.consumers.factories import role_user
from tests.consumers.support import happened, raw_message
from tests.support import browser
from tests.support.browser import assert_fits, browse, shoot

browser.require_playwright()
pytestmark = browser.ROLE_MARKS
LEDGER = "/admin/consumers/deadletter/"
HANDLER = "apps.invoicing.handlers.issue_invoice_for_route_with_a_long_qualified_name"

# Each failure-group row's height, and where the table ends and the filters beside the list begin.
GEOMETRY = """() => ({
  rows: [...document.querySelectorAll("#deadletter-summary tr.failure-group")]
    .map(r => r.getBoundingClientRect().height),
  table: document.querySelector("#deadletter-summary table").getBoundingClientRect().right,
  filter: document.querySelector("#changelist-filter").getBoundingClientRect().left,
})"""


class MissingBillingDataForTheRoutesCustomerError(Exception):
    """A handler's exception with a long qualified name, as real ones have."""


def _letter(seq: int, error: Exception) -> DeadLetter:
    raw = raw_message(happened(key=f"truck-{seq}", scenario="", seq=seq), offset=seq)
    return deadletter_record(group="testing", raw=raw, failure=Failure.from_exception(error, handler=HANDLER),
                             attempts=3)


def _failure_groups() -> list[DeadLetter]:
    """Two failure groups with the long messages and names real handlers have: three letters and one."""
    message = ("cannot invoice route {}: customer 17 (Anatolian Fresh Produce Wholesale Cooperative) has no billing "
               "account; add it under Invoicing › Billing accounts, then replay this message")
    letters = [_letter(seq, MissingBillingDataForTheRoutesCustomerError(message.format(seq))) for seq in (1, 2, 3)]
    letters.append(_letter(4, ValueError("tariff has no rate for zone 4 " * 6)))
    return letters


def test_the_failure_group_table_fits_beside_the_filters_at_1280_px_reason_first_without_tall_rows(
    live_server: object,
) -> None:
    _failure_groups()
    operations = role_user("operations")
    with browse(live_server.url, operations) as (page, violations):  # type: ignore[attr-defined]
        page.goto(live_server.url + LEDGER)  # type: ignore[attr-defined]
        shoot(page, "ledger-failure-groups")
        geometry = page.evaluate(GEOMETRY)
        headings = page.locator("#deadletter-summary thead th").all_inner_texts()
        listed = page.locator("#result_list thead th").all_inner_texts()
        assert_fits(page, "ledger")
    assert not violations, violations

    assert len(geometry["rows"]) == 2
    assert geometry["table"] <= geometry["filter"], geometry
    assert max(geometry["rows"]) < 100, geometry  # a line or three each, not a column of broken words
    assert [h.strip().lower() for h in headings][0] == "failure"
    columns = [h.strip().lower() for h in listed]
    assert columns.index("reason") < columns.index("key") and columns.index("error") < columns.index("group")


def test_the_group_replay_confirmation_names_the_failure_group_and_the_result_counts_in_words(
    live_server: object,
) -> None:
    letters = _failure_groups()
    operations = role_user("operations")
    with browse(live_server.url, operations) as (page, violations):  # type: ignore[attr-defined]
        page.goto(live_server.url + LEDGER)  # type: ignore[attr-defined]
        page.locator(f"input[name=_selected_action][value='{letters[0].pk}']").check()
        page.select_option("select[name=action]", "replay_failure_groups")
        page.locator("button[name=index]").click()
        page.wait_for_selector("#replay-count")
        shoot(page, "ledger-confirm-group-replay")
        groups = page.locator("#failure-groups li").all_inner_texts()
        content = page.locator("#content").inner_text()
        assert_fits(page, "group replay confirmation")
        page.locator("input[type=submit]").click()
        page.wait_for_url(re.compile(re.escape(LEDGER) + "$"))
        done = page.locator(".messagelist").inner_text()
    assert not violations, violations

    assert len(groups) == 1
    assert "MissingBillingDataForTheRoutesCustomerError" in groups[0] and "Handler failed after retries" in groups[0]
    assert "customer 17 (Anatolian Fresh Produce" in groups[0] and "3 dead letters" in groups[0]
    assert letters[0].fingerprint not in content  # a fingerprint is no name a person can read
    assert "Replayed 3 dead letters: 3 applied" in done
