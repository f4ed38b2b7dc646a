"""`make run`: everything embedded (PostgreSQL under var/, Tansu, a filesystem Celery transport) unless the
environment says otherwise."""

import os
import secrets
from pathlib import Path

from logiflow import embedded_postgres

from .base import *  # noqa: F403
from .base import INSTALLED_APPS, VAR_DIR, database_config, env

# The development stack: `manage.py embedded_broker`, the Procfile's `broker` (never installed in production).
INSTALLED_APPS = [*INSTALLED_APPS, "apps.devstack"]

DEBUG = env.bool("DJANGO_DEBUG", default=True)


def local_secret_key(path: Path) -> str:
    """This checkout's own key, generated at the first start and kept (0600) in var/: a restart keeps sessions."""
    if path.exists():
        return path.read_text().strip()
    path.parent.mkdir(parents=True, exist_ok=True)
    draft = path.with_name(f".{path.name}.{os.getpid()}")
    descriptor = os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as key_file:
        key_file.write(secrets.token_urlsafe(50) + "\n")
    try:
        os.link(draft, path)  # appears whole or not at all; of processes starting together, the first one wins
    except FileExistsError:
        pass
    finally:
        draft.unlink()
    return path.read_text().strip()


SECRET_KEY = env("DJANGO_SECRET_KEY", default="") or local_secret_key(VAR_DIR / "secret_key")
ALLOWED_HOSTS = env.list("DJANGO_ALLOWED_HOSTS", default=["*"])
# `make run` keeps its data under var/postgres, so a restart keeps everything.
DATABASE_URL = env("DATABASE_URL", default="") or embedded_postgres.database_url(VAR_DIR / "postgres")
DATABASES = {"default": database_config(DATABASE_URL)}
KAFKA_SESSION_TIMEOUT_MS = env.int("KAFKA_SESSION_TIMEOUT_MS", default=6000)
# /metrics for a Prometheus on this machine; production opens it only with METRICS_TOKEN or networks it names.
METRICS_ALLOWED_NETWORKS = env.list("METRICS_ALLOWED_NETWORKS", default=["127.0.0.1/32", "::1/128"])
