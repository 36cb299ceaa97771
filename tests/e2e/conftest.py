"""Browser tests of the operator console: the app served by granian (as in production) and driven by Playwright
through Debian's Chromium (`make setup` installs it; Playwright's own browser downloads are never used)."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from playwright.async_api import Browser, Page, async_playwright

from infra.config import Settings
from tests.factories import serving

CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
# No sandbox: the tests may run as root. The rest keep a closed network quiet and fast: no GPU, no QUIC, no
# first-run, sync, component update or background requests to Google, and /tmp instead of a small /dev/shm.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
]
TIMEOUT_MS = 15_000
ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"  # tests/artifacts, ignored by git


@pytest.fixture
def console_url(settings: Settings) -> Iterator[str]:
    """The base URL of the app served as one granian worker on this test's database and bucket."""
    with serving(settings, workers=1) as base:
        yield base


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    if not os.access(CHROMIUM, os.X_OK):
        pytest.fail(f"no Chromium at {CHROMIUM}: run `make setup` (installs Debian's chromium) or set CHROMIUM")
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            await browser.close()


@pytest.fixture
async def page(browser: Browser) -> AsyncIterator[Page]:
    """A page in a fresh context (no cookies or storage shared with another test), 1280x900."""
    context = await browser.new_context(viewport={"width": 1280, "height": 900})
    context.set_default_timeout(TIMEOUT_MS)
    context.set_default_navigation_timeout(TIMEOUT_MS)
    try:
        yield await context.new_page()
    finally:
        await context.close()


@pytest.fixture(scope="session")
def screenshots() -> Path:
    """The folder for screenshots (and other artifacts) of browser tests."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS
