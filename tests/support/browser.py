"""A headless Chromium on the live server for the admin's browser tests: a logged-in page at 1,280 px, the CSP
violations it reports, the page-fit check, and where screenshots go.

Test modules call `pytest.importorskip("playwright.sync_api")` first and use `MARKS` (skipped without a Chromium)."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from django.contrib.auth.models import User
from django.test import Client

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
MARKS = [
    pytest.mark.skipif(CHROMIUM is None, reason="no Chromium binary on PATH (apt-get install chromium)"),
    pytest.mark.django_db(transaction=True),
]
WIDTH = 1280
# Screenshots to look at after a run (BROWSER_SHOTS_DIR), else a temporary directory.
SHOTS = Path(os.environ.get("BROWSER_SHOTS_DIR") or tempfile.mkdtemp(prefix="logiflow-shots-"))


@contextmanager
def browse(base: str, user: User | None = None) -> Iterator[tuple[object, list[str]]]:
    """A logged-in page (a superuser's unless `user` is given) at 1,280 px with tile requests refused; yields
    (page, CSP errors).

    Make the test's rows first: Playwright's sync API runs an event loop, and Django refuses ORM calls beside one."""
    from playwright import sync_api

    client = Client()
    client.force_login(user or User.objects.create_superuser("root", password="pw"))
    session = client.cookies["sessionid"].value
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        context = browser.new_context(viewport={"width": WIDTH, "height": 900})
        context.add_cookies([{"name": "sessionid", "value": session, "url": base}])
        context.route("https://tile.openstreetmap.org/**", lambda route: route.abort())
        page = context.new_page()
        violations: list[str] = []
        page.on("console", lambda msg: violations.append(msg.text) if "Content Security Policy" in msg.text else None)
        yield page, violations
        browser.close()


# Tables wider than the content column, or lists that scroll sideways; payloads and tracebacks may scroll.
OVERFLOWING = """() => {
  const right = document.querySelector("#content").getBoundingClientRect().right;
  const wide = [...document.querySelectorAll("#content table")]
    .filter(t => !t.closest("pre.payload") && t.getBoundingClientRect().right > right + 1);
  const scrolling = [...document.querySelectorAll("#content .results")].filter(r => r.scrollWidth > r.clientWidth + 1);
  return [...wide, ...scrolling].map(e => `${e.scrollWidth}>${e.clientWidth} ` + e.outerHTML.slice(0, 60));
}"""
