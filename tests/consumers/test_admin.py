"""The ledger in the admin: who sees which actions, replay now or in the background, failure groups, discard, edit."""

from __future__ import annotations

import re
from datetime import UTC, datetime

import pytest
from django.test import Client
from django.urls import reverse
from pytest_django.fixtures import Settings as SettingsWrapper

from apps.consumers.models import DeadLetter
from apps.consumers.registry import Fix, NonRetryableError
from logiflow.celery import app as celery_app
from tests.consumers.factories import dead_letter, parked_dead_letter, role_user
from tests.consumers.testapp.models import Effect

# The role groups come from data migrations; transactional tests elsewhere flush them, so restore them.
pytestmark = pytest.mark.django_db(serialized_rollback=True)
CHANGELIST = reverse("admin:consumers_deadletter_changelist")
Status = DeadLetter.Status


def logged_in(role: str) -> Client:
    client = Client()
    client.force_login(role_user(role))
    return client


def action_names(page: object) -> set[str]:
    form = page.context["action_form"]  # type: ignore[attr-defined]
    return {name for name, _ in form.fields["action"].choices} if form else set()


def act(client: Client, action: str, ids: list[int], **extra: str) -> object:
    return client.post(CHANGELIST, {"action": action, "_selected_action": [str(i) for i in ids], **extra}, follow=True)


def test_dispatcher_has_no_access_to_the_ledger_and_cannot_replay() -> None:
    letter = dead_letter(1, scenario="")
    client = logged_in("dispatcher")
    assert client.get(CHANGELIST).status_code == 403
    act(client, "replay_selected", [letter.pk])
    assert DeadLetter.objects.get(pk=letter.pk).status == Status.PENDING


def test_finance_sees_the_ledger_read_only_without_replay_or_discard_actions() -> None:
    letter = dead_letter(1, scenario="")
    client = logged_in("finance")
    page = client.get(CHANGELIST)
    assert page.status_code == 200
    assert not action_names(page) & {"replay_selected", "replay_failure_groups", "discard_selected"}
    act(client, "replay_selected", [letter.pk])
    assert DeadLetter.objects.get(pk=letter.pk).status == Status.PENDING
    assert client.get(reverse("admin:consumers_deadletter_edit_and_replay", args=[letter.pk])).status_code == 403
    detail = client.get(reverse("admin:consumers_deadletter_change", args=[letter.pk])).content.decode()
    assert "Edit payload then replay" not in detail


def test_role_groups_from_the_migration_hold_exactly_these_ledger_permissions() -> None:
    from django.contrib.auth.models import Group

    def ledger_perms(role: str) -> set[str]:
        return set(Group.objects.get(name=role).permissions.filter(content_type__app_label="consumers")
                   .values_list("codename", flat=True))

    assert ledger_perms("operations") == {
        "view_deadletter", "replay_deadletter", "discard_deadletter", "edit_deadletter", "view_deadletteredit",
    }
    # Four eyes: finance approves an edit of billed fields, and cannot make one.
    assert ledger_perms("finance") == {"view_deadletter", "view_deadletteredit", "approve_billing_edit"}
    assert ledger_perms("dispatcher") == set()


def test_operations_sees_the_actions_and_replays_selected_now() -> None:
    letter = dead_letter(1, scenario="")
    client = logged_in("operations")
    choices = action_names(client.get(CHANGELIST))
    assert {"replay_selected", "replay_failure_groups", "discard_selected"} <= choices
    assert "delete_selected" not in choices

    page = act(client, "replay_selected", [letter.pk])

    assert DeadLetter.objects.get(pk=letter.pk).status == Status.REPLAYED
    assert "Replayed 1 dead letter: 1 applied" in page.content.decode()
    assert Effect.objects.count() == 1


def test_a_large_selection_is_queued_for_a_background_replay(settings: object, django_capture_on_commit_callbacks: object) -> None:
    settings.CONSUMER_REPLAY_SYNC_LIMIT = 1  # type: ignore[attr-defined]
    letters = [dead_letter(seq, key=f"truck-{seq}", scenario="") for seq in (1, 2)]
    client = logged_in("operations")
    celery_app.conf.task_always_eager = True
    try:
        with django_capture_on_commit_callbacks(execute=False) as callbacks:  # type: ignore[operator]
            page = act(client, "replay_selected", [letter.pk for letter in letters])
        assert "Queued 2 dead letters for background replay" in page.content.decode()
        assert set(DeadLetter.objects.values_list("status", flat=True)) == {Status.REPLAYING}
        for callback in callbacks:
            callback()  # what the commit would run: the Celery task (eager here)
    finally:
        celery_app.conf.task_always_eager = False
    assert set(DeadLetter.objects.values_list("status", flat=True)) == {Status.REPLAYED}


def test_replay_all_in_a_failure_group_shows_the_count_and_replays_only_after_confirmation() -> None:
    same = [dead_letter(seq, key=f"truck-{seq}", scenario="", error=RuntimeError(f"route {seq} missing")) for seq in (1, 2, 3)]
    other = dead_letter(9, key="truck-9", scenario="", error=KeyError("other failure"))
    parked_dead_letter(10, same[0])
    client = logged_in("operations")

    page = act(client, "replay_failure_groups", [same[0].pk])

    assert "This replays <strong>3</strong> pending dead letters" in page.content.decode()
    assert DeadLetter.objects.filter(status=Status.PENDING).count() == 5

    act(client, "replay_failure_groups", [same[0].pk], confirm="yes")

    assert list(DeadLetter.objects.filter(status=Status.PENDING).values_list("id", flat=True)) == [other.pk]
    assert sorted(Effect.objects.values_list("seq", flat=True)) == [1, 2, 3, 10]


def test_discard_asks_for_a_reason_and_keeps_it_in_the_history() -> None:
    letter = dead_letter(1)
    client = logged_in("operations")
    assert "reason" in act(client, "discard_selected", [letter.pk]).context["form"].fields
    page = act(client, "discard_selected", [letter.pk], confirm="yes", reason="")
    assert page.context["form"].errors["reason"]
    assert DeadLetter.objects.get(pk=letter.pk).status == Status.PENDING

    act(client, "discard_selected", [letter.pk], confirm="yes", reason="duplicate order, cancelled by customer")

    letter.refresh_from_db()
    assert letter.status == Status.DISCARDED
    assert letter.history.get().reason == "duplicate order, cancelled by customer"


def test_changelist_shows_failure_group_counts_and_the_oldest_pending_age() -> None:
    for seq in (1, 2):
        dead_letter(seq, key=f"truck-{seq}", scenario="", error=RuntimeError(f"route {seq} missing"))
    page = logged_in("finance").get(CHANGELIST)
    groups = page.context["failure_groups"]
    assert [(g.count, g.exception_class, g.sample_message) for g in groups] == [(2, "builtins.RuntimeError", "route 2 missing")]
    assert page.context["oldest_failed_at"] == DeadLetter.objects.order_by("first_failed_at").first().first_failed_at
    assert 'id="oldest-pending"' in page.content.decode()


def test_search_finds_a_dead_letter_by_event_id_or_key() -> None:
    wanted = dead_letter(1, key="truck-1")
    dead_letter(2, key="truck-2")
    client = logged_in("finance")
    for term in (str(wanted.event_id), "truck-1"):
        assert list(client.get(CHANGELIST, {"q": term}).context["cl"].result_list) == [wanted]


def test_detail_page_shows_the_decoded_payload_headers_traceback_and_history() -> None:
    letter = dead_letter(1, scenario="")
    operations = logged_in("operations")
    act(operations, "replay_selected", [letter.pk])
    page = operations.get(reverse("admin:consumers_deadletter_change", args=[letter.pk])).content.decode()
    assert "&quot;seq&quot;: 1" in page  # pretty-printed JSON
    assert "ce_type" in page and "logiflow.testing.Happened.v1" in page
    assert "RuntimeError: boom 1" in page
    assert "Applied" in page  # the history row
    assert "Ordering scope" in page and "<code>truck-1</code>" in page  # whose later messages waited behind it


def test_edit_payload_then_replay_needs_the_edit_permission_and_validates_the_schema() -> None:
    letter = dead_letter(1, scenario="", value=b'{"key": "truck-1", "seq": "x"}')
    url = reverse("admin:consumers_deadletter_edit_and_replay", args=[letter.pk])
    client = logged_in("operations")
    page = client.post(url, {"payload": '{"key": "truck-1", "seq": -5}'})
    assert page.status_code == 200 and page.context["form"].errors["payload"]

    client.post(url, {"payload": '{"key": "truck-1", "seq": 5}'})

    letter.refresh_from_db()
    assert letter.status == Status.REPLAYED
    assert '+  "seq": 5' in letter.history.get().payload_diff


def test_a_binary_key_is_listed_escaped_shown_with_its_hex_and_found_by_its_escaped_form() -> None:
    java = dead_letter(1, raw_key=b"\x00\x00\x00\x07", headers=[("x-note", b"a\x00b")])
    client = logged_in("finance")

    listing = client.get(CHANGELIST).content.decode()
    detail = client.get(reverse("admin:consumers_deadletter_change", args=[java.pk])).content.decode()

    assert "\\x00\\x00\\x00\\x07" in listing
    assert "00000007" in detail and "4 bytes" in detail and "a\\x00b" in detail
    assert list(client.get(CHANGELIST, {"q": "\\x00\\x00\\x00\\x07"}).context["cl"].result_list) == [java]


def test_dead_letter_page_is_a_view_without_save_and_a_post_records_no_history() -> None:
    from django.contrib.admin.models import LogEntry

    letter = dead_letter(1, scenario="")
    client = logged_in("operations")
    url = reverse("admin:consumers_deadletter_change", args=[letter.pk])
    html = client.get(url).content.decode()
    assert "View dead letter" in html and "Change dead letter" not in html and 'name="_save"' not in html
    assert client.post(url, {}).status_code == 403
    assert not LogEntry.objects.exists()


def test_operations_replays_from_the_dead_letters_own_page_after_a_confirmation_with_failure_and_count() -> None:
    letter = dead_letter(1, scenario="")
    parked_dead_letter(2, letter)
    client = logged_in("operations")
    page = client.get(reverse("admin:consumers_deadletter_change", args=[letter.pk])).content.decode()
    replay_url = reverse("admin:consumers_deadletter_replay_one", args=[letter.pk])
    discard_url = reverse("admin:consumers_deadletter_discard_one", args=[letter.pk])
    assert f'href="{replay_url}"' in page and f'href="{discard_url}"' in page and "Edit payload then replay" in page

    confirm = client.get(replay_url).content.decode()
    assert "boom 1" in confirm, "the failure message"
    assert "replays <strong>1</strong> dead letter" in confirm and "<strong>1</strong> message parked" in confirm
    assert DeadLetter.objects.get(pk=letter.pk).status == Status.PENDING, "nothing happens before the POST"

    done = client.post(replay_url, follow=True)
    assert DeadLetter.objects.get(pk=letter.pk).status == Status.REPLAYED
    assert "Replayed 1 dead letter: 1 applied; 1 parked message released." in done.content.decode()


def test_discard_from_the_dead_letters_own_page_needs_a_reason_and_keeps_it() -> None:
    letter = dead_letter(1, scenario="")
    client = logged_in("operations")
    url = reverse("admin:consumers_deadletter_discard_one", args=[letter.pk])
    confirm = client.get(url).content.decode()
    assert "boom 1" in confirm and "discards <strong>1</strong> dead letter" in confirm
    refused = client.post(url, {"reason": "  "})
    assert refused.status_code == 200 and refused.context["form"].errors
    assert DeadLetter.objects.get(pk=letter.pk).status == Status.PENDING
    client.post(url, {"reason": "customer cancelled"})
    letter.refresh_from_db()
    assert letter.status == Status.DISCARDED
    assert letter.history.get().reason == "customer cancelled"


def test_the_page_buttons_are_gated_by_permission() -> None:
    letter = dead_letter(1, scenario="")
    client = logged_in("finance")
    page = client.get(reverse("admin:consumers_deadletter_change", args=[letter.pk])).content.decode()
    for name in ("replay_one", "discard_one"):
        url = reverse(f"admin:consumers_deadletter_{name}", args=[letter.pk])
        assert url not in page
        assert client.get(url).status_code == 403
        assert client.post(url, {"reason": "x"}).status_code == 403
    assert DeadLetter.objects.get(pk=letter.pk).status == Status.PENDING


def test_bulk_discard_confirmation_shows_each_failure_message() -> None:
    first, second = dead_letter(1, scenario=""), dead_letter(2, scenario="")
    page = act(logged_in("operations"), "discard_selected", [first.pk, second.pk]).content.decode()
    assert "Discard <strong>2</strong> dead letters" in page and "boom 1" in page and "boom 2" in page


def test_discarding_a_head_with_some_of_its_parked_messages_runs_none_of_the_selection() -> None:
    head = dead_letter(1)
    dropped, kept, dropped_too = (parked_dead_letter(seq, head) for seq in (2, 3, 4))

    page = act(logged_in("operations"), "discard_selected", [head.pk, dropped.pk, dropped_too.pk], confirm="yes",
               reason="orders cancelled").content.decode()

    assert sorted(Effect.objects.values_list("seq", flat=True)) == [3]  # only the one left out of the selection
    statuses = dict(DeadLetter.objects.values_list("id", "status"))
    assert statuses == {head.pk: Status.DISCARDED, dropped.pk: Status.DISCARDED, kept.pk: Status.REPLAYED,
                        dropped_too.pk: Status.DISCARDED}
    assert "Discarded 3 dead letters; 1 parked message released." in page


def test_the_list_truncates_a_long_error_with_the_full_text_in_its_title_and_loads_the_fitting_stylesheet() -> None:
    message = "customer 42 has no billing account; " * 10
    dead_letter(1, scenario="", error=RuntimeError(message))
    html = logged_in("operations").get(CHANGELIST).content.decode()
    assert f'<span title="{message}">{message[:79]}…</span>' in html
    assert "/static/common/admin.css" in html


def test_a_failure_that_names_its_fix_links_to_it_on_the_page_and_in_the_replay_confirmation() -> None:
    # A page no fix check is registered for: the link is all there is to say (tests/invoicing/test_dead_letter_fix.py
    # shows a registered one).
    fix = Fix(label="Correct the address of <Elbe> Kaffee AG", url="/admin/routing/customer/2/change/?focus=address")
    letter = dead_letter(1, scenario="", error=NonRetryableError("customer 2 has no billing account", fix=fix))
    client = logged_in("operations")

    page = client.get(f"{CHANGELIST}{letter.pk}/change/").content.decode()
    confirmation = client.get(f"{CHANGELIST}{letter.pk}/replay/").content.decode()

    link = ('<a href="/admin/routing/customer/2/change/?focus=address">'
            "Correct the address of &lt;Elbe&gt; Kaffee AG</a>")
    assert link in page and link in confirmation


@pytest.mark.parametrize("url", ["javascript:alert(1)", "https://elsewhere.example/x", "//elsewhere.example/x",
                                 "/admin/\x00", "/admin/\\\\elsewhere"])
def test_a_fix_that_is_not_a_path_of_this_site_is_not_kept(url: str) -> None:
    letter = dead_letter(1, scenario="", error=NonRetryableError("boom", fix=Fix(label="click", url=url)))

    assert (letter.fix_label, letter.fix_url) == ("", "")
    assert "click" not in logged_in("operations").get(f"{CHANGELIST}{letter.pk}/change/").content.decode()


def test_times_in_the_ledger_are_in_the_sites_time_zone_in_one_format_naming_the_zone(
    settings: SettingsWrapper,
) -> None:
    settings.TIME_ZONE = "Europe/Berlin"
    letter = dead_letter(1, scenario="")
    failed = datetime(2026, 12, 6, 13, 5, 9, tzinfo=UTC)
    DeadLetter.objects.filter(pk=letter.pk).update(first_failed_at=failed, last_failed_at=failed)
    client = logged_in("operations")

    listed = client.get(CHANGELIST).content.decode()
    detail = client.get(f"{CHANGELIST}{letter.pk}/change/").content.decode()

    assert "3 · 2026-12-06 14:05 CET" in listed  # the attempts column
    assert "(2026-12-06 14:05 CET)" in listed  # the oldest unresolved failure
    assert re.search(r'field-last_failed_at">.*?2026-12-06 14:05 CET', detail, re.DOTALL)
    assert "p.m." not in listed + detail and "Dec. 6" not in listed + detail


def test_a_dead_letters_page_shows_the_failure_before_where_the_message_was_read_from() -> None:
    letter = dead_letter(1, scenario="", error=NonRetryableError("customer 2 has no billing account"))

    page = logged_in("operations").get(f"{CHANGELIST}{letter.pk}/change/").content.decode()

    assert page.index("field-reason") < page.index("field-error_message") < page.index("field-topic")
    assert page.index("field-error_message") < page.index("field-partition") < page.index("field-offset")
