"""FlowSample's move from common to ops is a change of bookkeeping only: the table keeps its name and its rows,
and no migration step drops or creates it, going forwards or back."""

from __future__ import annotations

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.test.utils import CaptureQueriesContext

from apps.ops.models import FlowSample
from tests.support.migrations import latest, migrate

BEFORE_THE_MOVE = [("common", "0003_flowsample"), ("ops", None)]


def _table_oid() -> int:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 'common_flowsample'::regclass::oid")
        return cursor.fetchone()[0]


def _schema_statements(queries: CaptureQueriesContext) -> list[str]:
    return [q["sql"] for q in queries.captured_queries
            if q["sql"].lstrip().upper().startswith(("CREATE", "DROP", "ALTER"))]


@pytest.mark.django_db(transaction=True)
def test_the_move_to_ops_keeps_the_samples_and_never_drops_or_creates_their_table() -> None:
    newest = latest("common") + latest("ops")
    after_the_move = latest("common") + [("ops", "0001_flowsample")]  # later ops migrations are other stories
    migrate(BEFORE_THE_MOVE)
    try:
        oid = _table_oid()
        with connection.cursor() as cursor:  # what common's FlowSample wrote before the move
            cursor.execute(
                "INSERT INTO common_flowsample (at, window_seconds, published, backlog, oldest_pending_age_s, lag,"
                " dead_letters, dead_lettered) VALUES (now(), 60, 3, 1, 0.5, '{\"invoicing\": 2}', 0, 0)"
            )
        with CaptureQueriesContext(connection) as forwards:
            migrate(after_the_move)
        with CaptureQueriesContext(connection) as backwards:
            migrate(BEFORE_THE_MOVE)
        assert _table_oid() == oid  # the same table, not one dropped and made again
    finally:
        migrate(newest)

    [sample] = FlowSample.objects.all()
    assert (sample.published, sample.backlog, sample.lag) == (3, 1, {"invoicing": 2})
    assert _table_oid() == oid
    assert _schema_statements(forwards) == [] and _schema_statements(backwards) == []


@pytest.mark.django_db(transaction=True)
def test_after_the_move_common_has_no_flow_sample_and_ops_has_it_on_the_same_table() -> None:
    state = MigrationExecutor(connection).loader.project_state()
    assert ("common", "flowsample") not in state.models
    assert state.models["ops", "flowsample"].options["db_table"] == "common_flowsample"
