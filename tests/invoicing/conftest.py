"""Invoicing test fixtures: a private media root and a private Celery queue folder per test."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from pytest_django.fixtures import Settings

from logiflow.celery import app as celery_app
from logiflow.settings.base import filesystem_transport_options


@pytest.fixture(autouse=True)
def media_root(settings: Settings, tmp_path: Path) -> Path:
    """PDFs land in a temporary MEDIA_ROOT, never in the worktree's var/media."""
    settings.MEDIA_ROOT = str(tmp_path / "media")
    return Path(settings.MEDIA_ROOT)


@pytest.fixture(autouse=True)
def celery_queue(tmp_path: Path) -> Iterator[Path]:
    """Point Celery's filesystem transport at a temporary folder, so tasks scheduled on commit are
    inspectable and a real worker process started with CELERY_FILESYSTEM_DIR=<this folder> receives them."""
    folder = tmp_path / "celery"
    previous = celery_app.conf.broker_transport_options
    celery_app.conf.broker_transport_options = filesystem_transport_options(folder)
    _drop_connections()
    yield folder
    celery_app.conf.broker_transport_options = previous
    _drop_connections()


def queued_messages(folder: Path) -> list[Path]:
    queue = folder / "queue"
    return sorted(queue.glob("*.msg")) if queue.exists() else []


def queued_tasks(folder: Path) -> list[tuple[str, list]]:
    """(task name, args) of every message waiting in the filesystem transport's queue."""
    tasks = []
    for path in queued_messages(folder):
        message = json.loads(path.read_text())
        args, _kwargs, _embed = json.loads(base64.b64decode(message["body"]))
        tasks.append((message["headers"]["task"], args))
    return tasks


def _drop_connections() -> None:
    # The app caches its connection and producer pools, built with the transport options of their time;
    # Celery drops them the same way after a fork.
    if celery_app._pool is not None:
        celery_app._pool.force_close_all()
    celery_app._after_fork()
