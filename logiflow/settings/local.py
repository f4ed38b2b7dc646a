"""`make run`: everything embedded (PostgreSQL under var/, Tansu, a filesystem Celery transport) unless the
environment says otherwise."""

from logiflow import embedded_postgres

from .base import *  # noqa: F403
from .base import INSTALLED_APPS, VAR_DIR, database_config, env

# The development stack: `manage.py embedded_broker`, the Procfile's `broker` (never installed in production).
INSTALLED_APPS = [*INSTALLED_APPS, "apps.devstack"]

DEBUG = env.bool("DJANGO_DEBUG", default=True)
SECRET_KEY = env("DJANGO_SECRET_KEY", default="local-only-insecure-key-do-not-use-in-production")
ALLOWED_HOSTS = env.list("DJANGO_ALLOWED_HOSTS", default=["*"])
# `make run` keeps its data under var/postgres, so a restart keeps everything.
DATABASE_URL = env("DATABASE_URL", default="") or embedded_postgres.database_url(VAR_DIR / "postgres")
DATABASES = {"default": database_config(DATABASE_URL)}
KAFKA_SESSION_TIMEOUT_MS = env.int("KAFKA_SESSION_TIMEOUT_MS", default=6000)
# /metrics for a Prometheus on this machine; production opens it only with METRICS_TOKEN or networks it names.
METRICS_ALLOWED_NETWORKS = env.list("METRICS_ALLOWED_NETWORKS", default=["127.0.0.1/32", "::1/128"])
