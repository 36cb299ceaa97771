"""Browser tests of the operator console: the app served by granian (as in production) and driven by Playwright
through Debian's Chromium (`make setup` installs it; Playwright's own browser downloads are never used)."""

from __future__ import annotations

import os
import re
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pyotp
import pytest
from axe_playwright_python.base import AXE_FILE_PATH
from playwright.async_api import Browser, Page, async_playwright, expect

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
WIDTHS = (1280, 390)  # a desk, and a phone (the width the issue measured at)
PASSWORD = "correct horse battery"
# axe-core's own script, from the wheel that carries it (its Python wrapper is not used).
_AXE = AXE_FILE_PATH.read_text(encoding="utf-8")
_AXE_RUN = """() => axe.run(document, {resultTypes: ['violations']}).then(r => r.violations
  .filter(v => v.impact === 'serious' || v.impact === 'critical')
  .map(v => v.id + ' (' + v.impact + '): ' + v.nodes.map(n => n.target.join(' ')).join(', ')))"""


async def accessibility_violations(page: Page) -> list[str]:
    """axe-core's serious and critical violations on the page as shown, one line each."""
    if not await page.evaluate("() => typeof axe !== 'undefined'"):
        await page.evaluate(_AXE)
    found: list[str] = await page.evaluate(_AXE_RUN)
    return found


async def horizontal_overflow(page: Page) -> int:
    """How many CSS pixels the page is wider than the window (0 when it reflows)."""
    overflow: int = await page.evaluate(
        "() => document.documentElement.scrollWidth - document.documentElement.clientWidth"
    )
    return overflow


async def operator_signs_in(page: Page, base: str, username: str, secret: str) -> None:
    """The console's sign-in form, filled and sent by keyboard as an operator does."""
    await page.goto(f"{base}/console")
    await expect(page).to_have_url(re.compile(r"/console/sign-in"))
    await page.get_by_label(re.compile("Username|用户名")).fill(username)
    await page.get_by_label(re.compile("Password|密码")).fill(PASSWORD)
    await page.get_by_label(re.compile("Authenticator|动态口令")).fill(pyotp.TOTP(secret).now())
    await page.keyboard.press("Enter")
    await expect(page.get_by_text(re.compile("Signed in as|当前用户"))).to_be_visible()


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
