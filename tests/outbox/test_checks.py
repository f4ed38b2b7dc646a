"""The outbox's system check: publish needs the database engine that sends its write with the COMMIT."""

from __future__ import annotations

from unittest import mock

from django.core import checks
from django.db import connections

from apps.outbox import checks as outbox_checks


def test_the_project_runs_on_the_engine_the_outbox_needs() -> None:
    assert outbox_checks.engine_defers_writes() == []
    assert not [message for message in checks.run_checks() if message.id == "outbox.E001"]


def test_an_engine_that_cannot_defer_a_write_is_refused_at_start_with_the_setting_to_change() -> None:
    stock = mock.MagicMock(spec=["vendor"])  # Django's own PostgreSQL engine has no defer_until_commit
    with mock.patch.dict(connections.settings["default"], {"ENGINE": "django.db.backends.postgresql"}), \
            mock.patch.object(outbox_checks, "connections", mock.MagicMock(
                __getitem__=lambda self, alias: stock, settings=connections.settings)):
        [error] = outbox_checks.engine_defers_writes()
    assert error.id == "outbox.E001" and error.level == checks.ERROR
    assert "'django.db.backends.postgresql'" in error.msg and "apps.common.db" in error.hint
