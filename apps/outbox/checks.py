"""System checks of the outbox (`manage.py check`, and every command and server start)."""

from __future__ import annotations

from typing import Any

from django.core.checks import CheckMessage, Error
from django.db import DEFAULT_DB_ALIAS, connections

ENGINE = "apps.common.db"


def engine_defers_writes(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """`publish` hands its write to the database engine, which sends it with the transaction's COMMIT: the default
    database must run on LogiFlow's engine (or one derived from it)."""
    if hasattr(connections[DEFAULT_DB_ALIAS], "defer_until_commit"):
        return []
    engine = connections.settings[DEFAULT_DB_ALIAS]["ENGINE"]
    return [Error(
        f"the outbox writes its events with the transaction's COMMIT, which the database engine {engine!r} cannot do",
        hint=f"set DATABASES['default']['ENGINE'] to {ENGINE!r} (logiflow.settings.base.database_config does)",
        id="outbox.E001",
    )]
