"""Queueing a task by name: a name not yet registered is found by importing the apps' task modules, without
setting Django up again."""

from __future__ import annotations

import logging
from unittest import mock

import pytest

from apps.common.queueing import enqueue


def test_looking_up_an_unregistered_task_leaves_django_setup_and_the_log_handlers_alone() -> None:
    handler = logging.NullHandler()
    logging.getLogger().addHandler(handler)
    try:
        with mock.patch("django.setup") as setup, pytest.raises(KeyError, match="apps.nowhere.tasks.missing"):
            enqueue("apps.nowhere.tasks.missing")
        assert handler in logging.getLogger().handlers
        setup.assert_not_called()
    finally:
        logging.getLogger().removeHandler(handler)
