"""An operator reviews, in Chromium, a check that the real face worker sent to review."""

from __future__ import annotations

import re
import uuid
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from playwright.async_api import Browser, Page, expect

from app.services import Services
from tests.conftest import FACES
from tests.e2e.conftest import horizontal_overflow, operator_signs_in
from tests.factories import applicant, certify, sign_in, staff_member, video_frame

pytestmark = pytest.mark.skipif(not FACES.exists(), reason="../shared/faces is not beside this clone")
VIDEO = FACES / "video" / "live_blink__eye_blink.mp4"
# Every visible control has a label (its own, aria-label, or its text), read by the browser itself.
UNLABELLED = """() => [...document.querySelectorAll('input:not([type=hidden]), select, textarea, button')]
  .filter(el => !(el.labels && el.labels.length) && !el.getAttribute('aria-label') && !el.textContent.trim())
  .map(el => el.outerHTML)"""


async def _accessible(page: Page) -> None:
    assert await page.evaluate(UNLABELLED) == []


async def test_an_operator_claims_views_and_decides_a_flagged_check(
    client: Any,
    services: Services,
    pool: asyncpg.Pool,
    importer: Any,
    tmp_path: Path,
    console_url: str,
    browser: Browser,
    page: Page,
    screenshots: Path,
) -> None:
    # The real worker: the same upload twice; the second is replayed media and waits for a person.
    who = await applicant(client, pool, importer, tmp_path, reference_photo=video_frame(VIDEO, 10, tmp_path))
    assert (await certify(client, pool, who, ["blink"], VIDEO.read_bytes()))["status"] == "passed"
    flagged = await certify(client, pool, who, ["blink"], VIDEO.read_bytes())
    assert flagged["status"] == "needs_review"
    alice = await staff_member(services, "alice", "Alice Operator")
    bob = await staff_member(services, "bob", "Bob Operator")
    auditor = await staff_member(services, "audrey", "Audrey Auditor", "auditor")

    await operator_signs_in(page, console_url, "alice", alice)
    await expect(page.get_by_role("heading", name="审核队列")).to_be_visible()
    await page.get_by_label("语言").select_option("en")
    await page.get_by_role("button", name="切换语言").click()
    await expect(page.get_by_role("heading", name="Review queue")).to_be_visible()
    await _accessible(page)
    row = page.locator(f'[data-check="{flagged["id"]}"]')
    await expect(row).to_contain_text("Video submitted before (replay)")  # the replay reason, at a glance
    await row.get_by_role("button", name=re.compile("^Claim")).click()

    # The check: frames beside the reference, served from the object store through short links.
    await expect(page.get_by_role("heading", name=re.compile("^Check:"))).to_be_visible()
    frames = page.locator("figure.frame img")
    assert await frames.count() >= 1
    for image in [page.locator("figure.reference img"), frames.first]:
        await expect(image).to_be_visible()
        assert await image.evaluate("img => img.complete && img.naturalWidth > 0"), "an image did not load"
    src = await frames.first.get_attribute("src")
    assert src is not None
    assert "X-Amz-Expires=300" in src
    await expect(page.get_by_role("heading", name="Challenged actions")).to_be_visible()
    await expect(page.get_by_role("row", name=re.compile("^blink"))).to_contain_text(" s")
    await expect(page.locator("#match-distance")).to_have_text(re.compile(r"^0\.\d{3}$"))
    await expect(page.get_by_text("Same or nearly the same as an earlier submission")).to_be_visible()
    await _accessible(page)
    await page.screenshot(path=str(screenshots / "console-check.png"), full_page=True)
    await page.set_viewport_size({"width": 640, "height": 900})
    assert await horizontal_overflow(page) <= 0
    await page.set_viewport_size({"width": 1280, "height": 900})

    # A second operator cannot take it.
    other = await browser.new_context()
    try:
        bobs = await other.new_page()
        await operator_signs_in(bobs, console_url, "bob", bob)
        held = bobs.locator(f'[data-check="{flagged["id"]}"]')
        await expect(held).to_contain_text("Alice Operator 正在处理")  # held: said, with no button to take it
        assert await held.get_by_role("button").count() == 0
        await bobs.goto(f"{console_url}/console/checks/{flagged['id']}")
        assert await bobs.locator("figure img").count() == 0  # no images without the claim
    finally:
        await other.close()

    # A reason is required; then the decision lands and the queue moves on.
    await page.get_by_label("Reject").check()
    await page.get_by_role("button", name="Submit the decision").click()
    reason = page.get_by_label("Reason (required; kept in the audit log)")
    assert await reason.evaluate("el => el.validity.valueMissing")  # the browser asks for it before sending
    assert (
        await pool.fetchval("SELECT status FROM certification_checks WHERE id = $1", uuid.UUID(flagged["id"]))
        == "needs_review"
    )
    await reason.fill("identical file to the previous submission")
    await page.get_by_role("button", name="Submit the decision").click()
    await expect(page.get_by_role("status")).to_have_text("The decision was recorded.")
    await expect(page.get_by_text("Nothing is waiting.")).to_be_visible()
    check = (await client.get(f"/v1/certifications/checks/{flagged['id']}", headers=who.headers)).json()
    assert check["status"] == "failed"
    rows = await pool.fetch(
        "SELECT action, details FROM audit_log WHERE subject = $1 ORDER BY at, seq", f"check:{flagged['id']}"
    )
    assert [(r["action"], r["details"].get("operator")) for r in rows] == [
        ("review.claimed", "alice"),
        ("biometric.viewed", "alice"),
        ("review.decided", "alice"),
    ]

    # The auditor finds the decision in the log, with the chain intact, and cannot act.
    audit_context = await browser.new_context()
    try:
        audits = await audit_context.new_page()
        await operator_signs_in(audits, console_url, "audrey", auditor)
        await expect(audits.locator("#chain")).to_contain_text("审计链完整")
        decided = audits.get_by_role("row", name=re.compile("review.decided"))
        await expect(decided).to_contain_text("Alice Operator")
        await expect(decided).to_contain_text("identical file to the previous submission")
        response = await audits.goto(f"{console_url}/console/queue")
        assert response is not None
        assert response.status == 403
    finally:
        await audit_context.close()


async def test_a_cardholder_token_opens_no_console_page(
    client: Any, pool: asyncpg.Pool, console_url: str, browser: Browser
) -> None:
    tokens = await sign_in(client, pool, "13912345670")
    context = await browser.new_context(extra_http_headers={"Authorization": f"Bearer {tokens['access_token']}"})
    try:
        page = await context.new_page()
        await page.goto(f"{console_url}/console/queue")
        await expect(page).to_have_url(re.compile(r"/console/sign-in\?next=%2Fconsole%2Fqueue$"))
        await expect(page.get_by_role("heading", name=re.compile("Sign in|登录"))).to_be_visible()
        assert await page.locator("table").count() == 0
    finally:
        await context.close()
