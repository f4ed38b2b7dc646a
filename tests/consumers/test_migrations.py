"""The ledger's migrations keep existing rows: text keys and headers become the same bytes."""

from __future__ import annotations

import base64
import uuid
from collections.abc import Iterator
from datetime import timedelta

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.utils import timezone

from apps.consumers.models import DeadLetter

pytestmark = pytest.mark.django_db(transaction=True)
BEFORE_BYTES = [("consumers", "0002_roles")]


@pytest.fixture
def at_text_keys() -> Iterator[MigrationExecutor]:
    """The ledger as it was before keys became bytes; migrated forward to the latest state afterwards (every app's:
    going back unapplies the migrations of other apps that depend on the ledger's, e.g. invoicing's `source_edit`)."""
    executor = MigrationExecutor(connection)
    latest = executor.loader.graph.leaf_nodes()
    executor.migrate(BEFORE_BYTES)
    yield executor
    executor = MigrationExecutor(connection)
    executor.migrate(latest)


def test_existing_text_keys_and_headers_become_their_exact_bytes(at_text_keys: MigrationExecutor) -> None:
    OldDeadLetter = at_text_keys.loader.project_state(BEFORE_BYTES).apps.get_model("consumers", "DeadLetter")
    OldDeadLetter.objects.create(
        group="testing", topic="t", partition=0, offset=1, key="truck-\\1 ü", value=b"{}", reason="handler_error",
        headers=[{"key": "ce_id", "value": "x"}, {"key": "bin", "value_b64": base64.b64encode(b"\xff\xfe").decode()},
                 {"key": "none", "value": None}],
        fingerprint="f", attempts=1, first_failed_at=timezone.now(), last_failed_at=timezone.now(),
    )
    executor = MigrationExecutor(connection)
    executor.migrate(executor.loader.graph.leaf_nodes())

    row = DeadLetter.objects.get()
    assert row.key_bytes() == "truck-\\1 ü".encode()  # a backslash stays a backslash
    assert row.header_pairs() == [("ce_id", b"x"), ("bin", b"\xff\xfe"), ("none", None)]


def test_messages_parked_behind_an_already_resolved_head_are_relinked_behind_the_oldest_of_them() -> None:
    executor = MigrationExecutor(connection)
    latest = executor.loader.graph.leaf_nodes()
    executor.migrate([("consumers", "0003_deadletter_bytes")])
    try:
        Old = executor.loader.project_state([("consumers", "0003_deadletter_bytes")]).apps.get_model(
            "consumers", "DeadLetter"
        )
        now = timezone.now()

        def row(offset: int, **fields: object) -> object:
            fields = {"reason": "parked", **fields}
            return Old.objects.create(group="testing", topic="t", partition=0, offset=offset, key=b"k", value=b"{}",
                                      event_id=uuid.uuid4(), fingerprint="f", first_failed_at=now, last_failed_at=now,
                                      **fields)

        head = row(1, status="replayed", reason="handler_error")
        first, second = row(2, blocked_by=head), row(3, blocked_by=head)
        live_head = row(4, status="pending", reason="handler_error")
        waiting = row(5, blocked_by=live_head)
    finally:
        executor = MigrationExecutor(connection)
        executor.migrate(latest)

    links = dict(DeadLetter.objects.values_list("id", "blocked_by_id"))
    assert links == {head.pk: None, first.pk: None, second.pk: first.pk, live_head.pk: None, waiting.pk: live_head.pk}
    assert "already been resolved" in DeadLetter.objects.get(pk=first.pk).error_message


def test_rows_of_one_message_become_one_the_copy_that_still_waits_with_all_their_history() -> None:
    """Before the ledger knew a message by what it is, a re-published event got a second row at its new offset."""
    before = [("consumers", "0008_replay_actor_name")]
    executor = MigrationExecutor(connection)
    latest = executor.loader.graph.leaf_nodes()
    executor.migrate(before)
    try:
        state = executor.loader.project_state(before).apps
        Old, OldHistory = state.get_model("consumers", "DeadLetter"), state.get_model("consumers", "DeadLetterReplay")
        now = timezone.now()

        def row(offset: int, event_id: uuid.UUID | None, **fields: object) -> object:
            fields = {"group": "testing", "status": "pending", "reason": "handler_error", "key": b"k", **fields}
            return Old.objects.create(topic="t", partition=0, offset=offset, value=b"{}",
                                      event_id=event_id, fingerprint="f", first_failed_at=now - timedelta(
                                          minutes=offset), last_failed_at=now, **fields)

        pending_id, discarded_id = uuid.uuid4(), uuid.uuid4()
        head = row(5, pending_id)
        copy = row(0, pending_id, reason="parked", blocked_by=head)  # the re-published copy, parked behind it
        discarded = row(6, discarded_id, status="discarded", key=b"j")
        OldHistory.objects.create(dead_letter=discarded, action="discard", outcome="discarded", at=now, reason="why")
        rerun = row(1, discarded_id, key=b"j")  # its copy ran again (the old ledger never asked) and failed
        behind = row(2, uuid.uuid4(), reason="parked", key=b"j", blocked_by=rerun)
        garbage = [row(offset, None, key=b"x", reason="missing_headers") for offset in (3, 4)]
        other_group = row(7, pending_id, group="testing-audit")
    finally:
        executor = MigrationExecutor(connection)
        executor.migrate(latest)

    rows = {row.pk: row for row in DeadLetter.objects.all()}
    assert sorted(rows) == sorted([head.pk, rerun.pk, behind.pk, garbage[0].pk, other_group.pk])
    assert rows[head.pk].first_failed_at == now - timedelta(minutes=5)
    assert (rows[rerun.pk].status, rows[rerun.pk].first_failed_at) == ("pending", now - timedelta(minutes=6))
    assert [h.reason for h in rows[rerun.pk].history.all()] == ["why"]
    assert rows[behind.pk].blocked_by_id == rerun.pk
    assert rows[garbage[0].pk].digest is not None
    assert copy.pk not in rows and discarded.pk not in rows


def test_failure_groups_recorded_under_the_old_rule_are_regrouped_without_their_quoted_values() -> None:
    import hashlib

    from apps.consumers.ledger import fingerprint

    def old_rule(message: str) -> str:  # the fingerprint before issue 21: ids and numbers only
        return hashlib.sha256(f"decode.E\x00\x00{message}".encode()).hexdigest()[:16]

    before = [("consumers", "0011_deadletter_scope")]
    executor = MigrationExecutor(connection)
    latest = executor.loader.graph.leaf_nodes()
    executor.migrate(before)
    try:
        Old = executor.loader.project_state(before).apps.get_model("consumers", "DeadLetter")
        now = timezone.now()

        def row(offset: int, message: str, fingerprint: str) -> object:
            return Old.objects.create(group="testing", topic="t", partition=0, offset=offset, key=b"k", value=b"{}",
                                      reason="missing_headers", exception_class="decode.E", error_message=message,
                                      fingerprint=fingerprint, first_failed_at=now, last_failed_at=now)

        junk = [row(i, f"unsupported ce_specversion '{word}'", old_rule(f"unsupported ce_specversion '{word}'"))
                for i, word in enumerate(["abc", "xyz"])]
        parked = row(9, "parked behind 'abc'", "fixedparkedprint")
    finally:
        executor = MigrationExecutor(connection)
        executor.migrate(latest)

    regrouped = fingerprint(exception_class="decode.E", handler="", message="unsupported ce_specversion 'abc'")
    assert {DeadLetter.objects.get(pk=r.pk).fingerprint for r in junk} == {regrouped}
    assert DeadLetter.objects.get(pk=parked.pk).fingerprint == "fixedparkedprint"
