"""The database engine's deferred writes: sent with the COMMIT or RELEASE that ends them, or before the next
statement; never without their transaction, never after what follows them."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Group
from django.db import IntegrityError, connection, transaction
from django.test.utils import CaptureQueriesContext

INSERT_GROUP = "INSERT INTO auth_group (name) VALUES (%s)"


def _statements(queries: CaptureQueriesContext) -> list[str]:
    """What the connection sent, without the BEGIN Django logs as a transaction opens."""
    return [query["sql"] for query in queries if query["sql"] != "BEGIN"]


def _in_id_order() -> list[str]:
    return list(Group.objects.filter(name__startswith="x-").order_by("id").values_list("name", flat=True))


def _names() -> list[str]:
    return sorted(Group.objects.filter(name__startswith="x-").values_list("name", flat=True))  # not the role groups


@pytest.mark.django_db(transaction=True)
def test_a_deferred_write_travels_with_the_commit_as_one_query() -> None:
    with CaptureQueriesContext(connection) as queries, transaction.atomic():
        Group.objects.create(name="x-business")
        connection.defer_until_commit(INSERT_GROUP, ["x-deferred"])
    statements = _statements(queries)
    assert len(statements) == 2, statements
    assert statements[1].endswith("COMMIT") and "'x-deferred'" in statements[1]
    assert _names() == ["x-business", "x-deferred"]


@pytest.mark.django_db(transaction=True)
def test_the_next_statement_sends_the_deferred_writes_first_so_the_transaction_reads_its_own_writes() -> None:
    with transaction.atomic():
        connection.defer_until_commit(INSERT_GROUP, ["x-first"])
        connection.defer_until_commit(INSERT_GROUP, ["x-second"])
        assert _in_id_order() == ["x-first", "x-second"]
        Group.objects.create(name="x-third")
    assert _in_id_order() == ["x-first", "x-second", "x-third"]


@pytest.mark.django_db(transaction=True)
def test_a_savepoint_sends_its_deferred_writes_with_its_release_and_drops_them_when_rolled_back() -> None:
    with CaptureQueriesContext(connection) as queries, transaction.atomic():
        Group.objects.create(name="x-outer")
        with transaction.atomic():
            connection.defer_until_commit(INSERT_GROUP, ["x-kept"])
        with pytest.raises(RuntimeError), transaction.atomic():
            connection.defer_until_commit(INSERT_GROUP, ["x-dropped"])
            raise RuntimeError("the savepoint fails")
    released = [statement for statement in _statements(queries) if "'x-kept'" in statement]
    assert len(released) == 1 and released[0].startswith("INSERT") and "RELEASE SAVEPOINT" in released[0]
    assert not any("'x-dropped'" in query["sql"] for query in queries)
    assert _names() == ["x-kept", "x-outer"]


@pytest.mark.django_db(transaction=True)
def test_a_failing_deferred_write_fails_the_commit_and_nothing_of_the_transaction_stays() -> None:
    Group.objects.create(name="x-taken")
    with pytest.raises(IntegrityError), transaction.atomic():
        Group.objects.create(name="x-business")
        connection.defer_until_commit(INSERT_GROUP, ["x-taken"])  # a unique violation, raised by the COMMIT
    assert _names() == ["x-taken"]
    assert not connection.deferred_writes
    with transaction.atomic():  # the connection is usable again
        connection.defer_until_commit(INSERT_GROUP, ["x-after"])
    assert _names() == ["x-after", "x-taken"]


@pytest.mark.django_db(transaction=True)
def test_a_rolled_back_transaction_sends_none_of_its_deferred_writes() -> None:
    with CaptureQueriesContext(connection) as queries, pytest.raises(RuntimeError), transaction.atomic():
        connection.defer_until_commit(INSERT_GROUP, ["x-never"])
        raise RuntimeError("business failure")
    assert not any("x-never" in query["sql"] for query in queries)
    assert not connection.deferred_writes and _names() == []


@pytest.mark.django_db(transaction=True)
def test_deferring_outside_a_transaction_is_refused() -> None:
    with pytest.raises(transaction.TransactionManagementError, match="transaction.atomic"):
        connection.defer_until_commit(INSERT_GROUP, ["x-nowhere"])
    assert _names() == []
