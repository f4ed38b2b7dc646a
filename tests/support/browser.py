"""A headless Chromium on the live server for the admin's browser tests: logged-in pages at 1,280 px, the CSP
violations they report, the page-fit check, and where screenshots go.

Test modules call `require_playwright()` first and use `MARKS` (`ROLE_MARKS` to log in as a role group's user):
skipped, with the reason, when Playwright (requirements-browser.txt) or a Chromium binary (apt-get install chromium)
is missing — and only then; with LOGIFLOW_REQUIRE_BROWSER set (CI) that is a failure instead. Make the test's rows
before entering `browse`: Playwright's sync API runs an event loop, and Django refuses ORM calls beside one.
"""

from __future__ import annotations

import importlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.test import Client

# CI sets it: a missing Playwright or Chromium then fails the browser tests instead of skipping them.
REQUIRED = bool(os.environ.get("LOGIFLOW_REQUIRE_BROWSER"))
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
NEEDS_CHROMIUM = pytest.mark.skipif(
    CHROMIUM is None and not REQUIRED, reason="no Chromium binary on PATH (apt-get install chromium)"
)
MARKS = [NEEDS_CHROMIUM, pytest.mark.django_db(transaction=True)]
# `serialized_rollback` brings back the role groups the data migrations made (transactional tests flush them),
# for tests that log in as a role's user rather than as a superuser.
ROLE_MARKS = [NEEDS_CHROMIUM, pytest.mark.django_db(transaction=True, serialized_rollback=True)]
WIDTH = 1280
# Screenshots to look at after a run (BROWSER_SHOTS_DIR), else a temporary directory (named in the run's summary).
SHOTS = Path(os.environ.get("BROWSER_SHOTS_DIR") or tempfile.mkdtemp(prefix="logiflow-shots-"))


def require_playwright() -> ModuleType:
    """playwright.sync_api, or skip the calling module with the reason (an error with LOGIFLOW_REQUIRE_BROWSER)."""
    if REQUIRED:
        return importlib.import_module("playwright.sync_api")
    return pytest.importorskip("playwright.sync_api", reason="playwright is not installed (requirements-browser.txt)")


@contextmanager
def browse(base: str, user: User | None = None) -> Iterator[tuple[Any, list[str]]]:
    """A logged-in page (a superuser's unless `user` is given) at 1,280 px with tile requests refused; yields
    (page, CSP errors)."""
    with browse_as(base, user or User.objects.create_superuser("root", password="pw")) as (pages, violations):
        yield pages[0], violations


@contextmanager
def browse_as(base: str, *users: User) -> Iterator[tuple[list[Any], list[str]]]:
    """One page per user, each in a browser context of its own (several people at once); yields (pages, the CSP
    errors any of them reported)."""
    sessions = [_session(user) for user in users]  # ORM work, before Playwright's loop starts
    sync_api = require_playwright()
    assert CHROMIUM, "LOGIFLOW_REQUIRE_BROWSER is set but no Chromium binary is on PATH (apt-get install chromium)"
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        violations: list[str] = []
        try:
            yield [_page(browser, base, session, violations) for session in sessions], violations
        finally:
            browser.close()


def _session(user: User) -> str:
    client = Client()
    client.force_login(user)
    return client.cookies["sessionid"].value


def _page(browser: Any, base: str, session: str, violations: list[str]) -> Any:
    context = browser.new_context(viewport={"width": WIDTH, "height": 900})
    context.add_cookies([{"name": "sessionid", "value": session, "url": base}])
    context.route("https://tile.openstreetmap.org/**", lambda route: route.abort())
    page = context.new_page()
    page.on("console", lambda msg: violations.append(msg.text) if "Content Security Policy" in msg.text else None)
    return page


def shoot(page: Any, name: str) -> Path:
    """A full-page screenshot `name`.png in SHOTS."""
    path = SHOTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


def shots_taken() -> Path | None:
    """SHOTS when this run saved a screenshot there, else None."""
    return SHOTS if SHOTS.is_dir() and any(SHOTS.glob("*.png")) else None


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


# How many lines each matching element's text takes (distinct line boxes of its text), keyed by its text.
TEXT_LINES = """selector => [...document.querySelectorAll(selector)].map(el => {
  const range = document.createRange(); range.selectNodeContents(el);
  const tops = new Set([...range.getClientRects()].filter(r => r.width > 0).map(r => Math.round(r.top)));
  return [el.innerText.trim(), tops.size];
})"""


def text_lines(page: Any, selector: str) -> list[tuple[str, int]]:
    """(text, lines) of each element `selector` matches: a cell whose plate or time wraps takes more than one."""
    return [tuple(row) for row in page.evaluate(TEXT_LINES, selector)]  # type: ignore[misc]
