"""The log a person reads: one line per failed request, no per-render chatter from the PDF renderer."""

from __future__ import annotations

import copy
import io
import logging
from collections.abc import Iterator

import pytest
from django.conf import settings
from django.utils.log import configure_logging


@pytest.fixture
def debug_log(capsys: pytest.CaptureFixture[str]) -> Iterator[io.StringIO]:
    """The LOGGING setting applied as `manage.py runserver` applies it under DEBUG, its console in a buffer;
    whatever Django's own default handlers print lands in captured stderr, which the test reads too."""
    stream = io.StringIO()
    config = copy.deepcopy(settings.LOGGING)
    config["handlers"]["console"]["stream"] = stream
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(settings, "DEBUG", True)
        configure_logging(settings.LOGGING_CONFIG, config)
        yield stream
    configure_logging(settings.LOGGING_CONFIG, settings.LOGGING)


def served(status: int) -> dict[str, object]:
    """The extra runserver's request handler logs with."""
    return {"status_code": status, "server_time": "28/Nov/2026 15:00:00"}


def _lines(stream: io.StringIO, capsys: pytest.CaptureFixture[str]) -> list[str]:
    return [line for line in (stream.getvalue() + capsys.readouterr().err).splitlines() if line.strip()]


def test_a_4xx_under_runserver_is_one_line(debug_log: io.StringIO, capsys: pytest.CaptureFixture[str]) -> None:
    # What Django logs for a 400 answered by runserver: django.request's line and the access log's line.
    logging.getLogger("django.request").warning("Bad Request: /api/v1/routes/", extra={"status_code": 400})
    logging.getLogger("django.server").warning('"POST /api/v1/routes/ HTTP/1.1" 400 52', extra=served(400))
    assert len([line for line in _lines(debug_log, capsys) if "/api/v1/routes/" in line]) == 1


def test_a_5xx_traceback_is_printed_once(debug_log: io.StringIO, capsys: pytest.CaptureFixture[str]) -> None:
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        logging.getLogger("django.request").error("Internal Server Error: /x", exc_info=True)
    assert sum("RuntimeError: boom" in line for line in _lines(debug_log, capsys)) == 1


def test_successful_requests_stay_in_the_access_log(debug_log: io.StringIO, capsys: pytest.CaptureFixture[str]) -> None:
    logging.getLogger("django.server").info('"GET /admin/ HTTP/1.1" 200 512', extra=served(200))
    assert len([line for line in _lines(debug_log, capsys) if "/admin/" in line]) == 1


def test_weasyprint_logs_only_warnings() -> None:
    assert logging.getLogger("weasyprint.progress").getEffectiveLevel() == logging.WARNING
    assert logging.getLogger("weasyprint").getEffectiveLevel() == logging.WARNING
