"""Browser tests drive the system's Chromium through Playwright: one browser process for the whole session, each
module opening its own contexts in it. Their needs (Redis, povray, chromium) are checked in tests/conftest.py."""
from __future__ import annotations

import shutil
from collections.abc import Iterator
from typing import Any

import pytest


def chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        raise pytest.UsageError("chromium is not installed: apt-get install -y chromium (or run .ci/run)")
    return found


@pytest.fixture(scope="session")
def browser() -> Iterator[tuple[Any, Any]]:
    """(playwright, browser): started once, shared by every browser test."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium(), args=["--no-sandbox", "--disable-gpu"])
        try:
            yield p, browser
        finally:
            browser.close()
