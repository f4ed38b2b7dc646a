"""Headless-Chromium helpers for the browser tests: a logged-in page at 1,280 px that records CSP violations,
the width checks, and where screenshots go.

A browser test module starts with `sync_api = browser.require_playwright()` and `pytestmark = browser.MARKS`
(`ROLE_MARKS` to log in as a role group's user),
so it is skipped, with the reason, when Playwright (requirements-browser.txt) or a Chromium binary (apt-get
install chromium) is missing — and only then. Make database rows before entering `browse`: Playwright's sync API
runs an event loop, and Django refuses ORM calls beside one (`off_loop` runs one where it may).
"""

from __future__ import annotations

import importlib
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType
from typing import Any, TypeVar

import pytest
from django.contrib.auth.models import AbstractBaseUser
from django.db import connection
from django.test import Client

WIDTH = 1280
# CI sets it: a missing Playwright or Chromium then fails the browser tests instead of skipping them.
REQUIRED = bool(os.environ.get("LOGIFLOW_REQUIRE_BROWSER"))
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
NEEDS_CHROMIUM = pytest.mark.skipif(
    CHROMIUM is None and not REQUIRED, reason="no Chromium binary on PATH (apt-get install chromium)"
)
# A live server needs committed rows; `serialized_rollback` brings back the role groups the data migrations made
# (transactional tests flush them), for tests that log in as a role rather than as a superuser.
MARKS = [NEEDS_CHROMIUM, pytest.mark.django_db(transaction=True)]
ROLE_MARKS = [NEEDS_CHROMIUM, pytest.mark.django_db(transaction=True, serialized_rollback=True)]
T = TypeVar("T")


def require_playwright() -> ModuleType:
    """playwright.sync_api, or skip the calling module with the reason (fail it when LOGIFLOW_REQUIRE_BROWSER)."""
    if REQUIRED:
        return importlib.import_module("playwright.sync_api")
    return pytest.importorskip("playwright.sync_api", reason="playwright is not installed (requirements-browser.txt)")


def shots_dir() -> Path:
    """BROWSER_SHOTS_DIR (screenshots to look at after a run), else a temporary directory (the run's summary
    names it: tests/conftest.py)."""
    global _SHOTS
    if _SHOTS is None:
        chosen = os.environ.get("BROWSER_SHOTS_DIR")
        _SHOTS = Path(chosen) if chosen else Path(tempfile.mkdtemp(prefix="logiflow-shots-"))
        _SHOTS.mkdir(parents=True, exist_ok=True)
    return _SHOTS


_SHOTS: Path | None = None


def shots_taken() -> Path | None:
    """Where this run's screenshots went, None when no test took one."""
    return _SHOTS


def session_cookie(user: AbstractBaseUser) -> str:
    """A session of `user` (made without the browser, so without an ORM call on Playwright's loop)."""
    client = Client()
    client.force_login(user)
    return client.cookies["sessionid"].value


@contextmanager
def browse(base: str, *sessions: str) -> Iterator[tuple[Any, list[str]]]:
    """A page at 1,280 px per session (in order; several sessions are several people, each in their own context)
    with map tile requests refused; yields (the first page, or all pages when more than one session, and the CSP
    violations any of them logged)."""
    sync_api = require_playwright()
    assert CHROMIUM, "LOGIFLOW_REQUIRE_BROWSER is set but no Chromium binary is on PATH (apt-get install chromium)"
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        violations: list[str] = []
        pages = [_page(browser, base, session, violations) for session in sessions]
        try:
            yield (pages[0] if len(pages) == 1 else pages), violations
        finally:
            browser.close()


def _page(browser: Any, base: str, session: str, violations: list[str]) -> Any:
    context = browser.new_context(viewport={"width": WIDTH, "height": 900})
    context.add_cookies([{"name": "sessionid", "value": session, "url": base}])
    context.route("https://tile.openstreetmap.org/**", lambda route: route.abort())
    page = context.new_page()
    page.on("console", lambda msg: violations.append(msg.text) if "Content Security Policy" in msg.text else None)
    return page


def off_loop(function: Callable[[], T]) -> T:
    """Run ORM work while a browser is open: on a thread of its own (its own connection), beside the event loop."""

    def run() -> T:
        try:
            return function()
        finally:
            connection.close()

    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(run).result()


def shoot(page: Any, name: str) -> Path:
    """A full-page screenshot `name`.png in the shots directory."""
    path = shots_dir() / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


# Tables wider than the content column, or lists that scroll sideways; payloads and tracebacks may scroll.
OVERFLOWING = """() => {
  const right = document.querySelector("#content").getBoundingClientRect().right;
  const wide = [...document.querySelectorAll("#content table")]
    .filter(t => !t.closest("pre.payload") && t.getBoundingClientRect().right > right + 1);
  const scrolling = [...document.querySelectorAll("#content .results")].filter(r => r.scrollWidth > r.clientWidth + 1);
  return [...wide, ...scrolling].map(e => `${e.scrollWidth}>${e.clientWidth} ` + e.outerHTML.slice(0, 60));
}"""


def assert_fits(page: Any, what: str = "") -> None:
    """Nothing wider than 1,280 px: neither the page nor a table in the content column."""
    assert page.evaluate("document.documentElement.scrollWidth") <= WIDTH, what
    assert page.evaluate(OVERFLOWING) == [], what
