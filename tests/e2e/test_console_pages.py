"""Every console page, in Chromium, in both languages, at a desk's 1280 px and a phone's 390 px: the page
reflows with no sideways scroll, and axe-core finds no serious or critical violation."""

from __future__ import annotations

import re
import uuid
from datetime import date
from pathlib import Path
from typing import Any

import asyncpg
from playwright.async_api import Browser, Page, expect

from app.services import Services
from tests.conftest import FACES
from tests.e2e.conftest import WIDTHS, accessibility_violations, horizontal_overflow, operator_signs_in
from tests.factories import insert_check, sample_person, staff_member, video_frame, write_jsonl
from tests.integration.test_deaths import _feed, _import

LANGUAGES = ("zh-CN", "en")
MISSING_RUN = "/console/runs/00000000-0000-7000-8000-000000000000"


async def _seeded(
    client: Any, services: Services, pool: asyncpg.Pool, importer: Any, tmp_path: Path, cardholder: dict[str, Any]
) -> dict[str, str]:
    """Something on every page: a flagged check, runs with a withheld payment, a recovery case, alerts,
    a visit request and an appeal, a dead letter; the pages' paths that need an id."""
    people = [sample_person() for _ in range(3)]
    ids = await _import(importer, pool, tmp_path, *people)
    await pool.execute("UPDATE persons SET certified_until = '2025-10-31' WHERE id = $1", ids[2])
    for period in (date(2025, 10, 1), date(2025, 11, 1), date(2025, 12, 1)):
        run = await services.disbursements.run(period, "system:test")
    feed = _feed(tmp_path, "deaths.csv", f"{people[0].national_id},2025-10-15")
    await services.deaths.import_file(feed, "system:test")
    await services.supervision.scan("system:test")
    person, headers = cardholder["person"], cardholder["headers"]
    await client.post(
        "/v1/certifications/in-person-requests",
        json={"kind": "home_visit", "note": "third floor, no lift"},
        headers=headers,
    )
    failed = await insert_check(pool, person.phone, "failed", worker_outcome="failed")
    await client.post(
        "/v1/appeals", json={"subject": "check", "subject_id": str(failed), "statement": "it was me"}, headers=headers
    )
    check = await insert_check(pool, people[1].phone, "needs_review", worker_outcome="needs_review")
    await pool.execute(
        """UPDATE certification_checks SET reasons = '{match_uncertain,replayed_media}',
                  scores = '{"match_distance": 0.52, "ear_baseline": 0.31}' WHERE id = $1""",
        check,
    )
    unclaimed = await insert_check(pool, people[2].phone, "needs_review", worker_outcome="needs_review")
    return {
        "run": f"/console/runs/{run['id']}",
        "person": f"/console/persons/{ids[1]}",
        "check": str(check),
        "unclaimed": f"/console/checks/{unclaimed}",
    }


async def _language(page: Page, base: str, locale: str) -> None:
    await page.goto(f"{base}/console/")
    await page.locator("#locale").select_option(locale)
    await page.locator("#locale ~ button").click()
    await expect(page.locator("html")).to_have_attribute("lang", locale)


async def _every_width_and_language(
    page: Page, base: str, paths: list[str], problems: list[str], refusing: dict[str, int] | None = None
) -> None:
    refusing = refusing or {}
    for locale in LANGUAGES:
        await _language(page, base, locale)
        for path in paths:
            for width in WIDTHS:
                await page.set_viewport_size({"width": width, "height": 900})
                response = await page.goto(base + path)
                assert response is not None, path
                assert response.status == refusing.get(path, 200), (path, response.status)
                if (overflow := await horizontal_overflow(page)) > 0:
                    problems.append(f"{locale} {width}px {path}: {overflow} px sideways")
                problems.extend(f"{locale} {width}px {path}: {v}" for v in await accessibility_violations(page))


async def test_every_page_reflows_at_390_px_and_passes_axe_in_both_languages(
    client: Any,
    services: Services,
    pool: asyncpg.Pool,
    importer: Any,
    tmp_path: Path,
    cardholder: dict[str, Any],
    console_url: str,
    browser: Browser,
    page: Page,
) -> None:
    seeded = await _seeded(client, services, pool, importer, tmp_path, cardholder)
    admin = await staff_member(services, "kim", "Kim Admin", "admin")
    auditor = await staff_member(services, "audrey", "Audrey Auditor", "auditor")
    problems: list[str] = []
    # The pages that answer with a refusal are pages too: an unknown run, a check someone must claim first.
    refusing = {MISSING_RUN: 404, seeded["unclaimed"]: 409}

    # Before sign-in the page speaks the browser's language (Accept-Language).
    for locale in LANGUAGES:
        strangers = await browser.new_context(locale=locale)
        try:
            stranger = await strangers.new_page()
            for width in WIDTHS:
                await stranger.set_viewport_size({"width": width, "height": 900})
                await stranger.goto(f"{console_url}/console/sign-in")
                await expect(stranger.locator("html")).to_have_attribute("lang", locale)
                problems.extend(f"{locale} {width}px sign-in: {v}" for v in await accessibility_violations(stranger))
                if (overflow := await horizontal_overflow(stranger)) > 0:
                    problems.append(f"{locale} {width}px sign-in: {overflow} px sideways")
        finally:
            await strangers.close()

    await operator_signs_in(page, console_url, "kim", admin)
    await page.goto(f"{console_url}/console/queue")
    await (
        page.locator(f'[data-check="{seeded["check"]}"]')
        .get_by_role("button", name=re.compile("^(Claim|领取)"))
        .click()
    )
    paths = [
        "/console/queue",
        "/console/queue?status=home_visit",
        f"/console/checks/{seeded['check']}",
        "/console/persons/",
        seeded["person"],
        "/console/visits",
        "/console/ladder",
        "/console/runs",
        seeded["run"],
        MISSING_RUN,
        seeded["unclaimed"],
        "/console/alerts/",
        "/console/recoveries/",
        "/console/notifications",
    ]
    await _every_width_and_language(page, console_url, paths, problems, refusing)

    auditors = await browser.new_context()
    try:
        audits = await auditors.new_page()
        await operator_signs_in(audits, console_url, "audrey", auditor)
        await _every_width_and_language(audits, console_url, ["/console/audit"], problems)
    finally:
        await auditors.close()
    assert not problems, "\n".join(problems)


async def _check_with_images(
    services: Services, pool: asyncpg.Pool, importer: Any, folder: Path, video: str, *, hours_ago: int
) -> uuid.UUID:
    """A check waiting for a person, with a reference photo and review frames from a real clip."""
    person = sample_person(locale="en")
    clip = FACES / "video" / video
    photo = video_frame(clip, 5, folder)
    report = await importer.import_file(
        write_jsonl(folder / f"{person.phone}.jsonl", [person.row(reference_photo=str(photo))])
    )
    assert report.created == 1, report.errors
    keys = []
    for index in (15, 40, 70):
        key = f"review-frames/{uuid.uuid4()}.jpg"
        services.storage.put_bytes(key, video_frame(clip, index, folder).read_bytes(), "image/jpeg")
        keys.append(key)
    check = await insert_check(
        pool, person.phone, "needs_review", worker_outcome="needs_review", review_frame_keys=tuple(keys)
    )
    await pool.execute(
        """UPDATE certification_checks SET reasons = '{match_uncertain}', submitted_at = now() - make_interval(hours => $2),
                  scores = '{"match_distance": 0.52, "encodings": 3, "frames_analysed": 41, "ear_baseline": 0.31}'
           WHERE id = $1""",
        check,
        hours_ago,
    )
    return check


async def test_a_check_is_claimed_examined_and_decided_by_keyboard_alone_landing_on_the_next(
    services: Services,
    pool: asyncpg.Pool,
    importer: Any,
    tmp_path: Path,
    console_url: str,
    page: Page,
    screenshots: Path,
) -> None:
    older = await _check_with_images(services, pool, importer, tmp_path, "live_blink__eye_blink.mp4", hours_ago=30)
    newer = await _check_with_images(services, pool, importer, tmp_path, "live_turn__zubair_real.mov", hours_ago=2)
    await operator_signs_in(page, console_url, "olga", await staff_member(services, "olga", "Olga Operator"))
    await _language(page, console_url, "en")

    # The queue: how many wait, how long, how many are late (past REVIEW_SLA_H, 24 h), and whose each is.
    await page.goto(f"{console_url}/console/queue")
    await expect(page.locator("#waiting-count")).to_have_text("2")
    await expect(page.locator("#late-count")).to_have_text("1")
    await expect(page.locator(f'[data-check="{older}"]')).to_contain_text("late")
    await expect(page.locator(f'[data-check="{older}"]')).to_contain_text("Match to the reference uncertain")
    for width in WIDTHS:
        await page.set_viewport_size({"width": width, "height": 900})
        await page.screenshot(path=str(screenshots / f"console-queue-{width}.png"), full_page=True)

    # N claims the oldest; its images are large, side by side, and Z enlarges them.
    await page.set_viewport_size({"width": 1280, "height": 900})
    await page.keyboard.press("n")
    await expect(page).to_have_url(re.compile(f"/console/checks/{older}"))
    reference, first_frame = page.locator("figure.reference img"), page.locator("figure.frame img").first
    for image in (reference, first_frame):
        await expect(image).to_be_visible()
        assert await image.evaluate("img => img.complete && img.naturalWidth > 0"), "an image did not load"
    box, beside = await reference.bounding_box(), await first_frame.bounding_box()
    assert box is not None
    assert beside is not None
    assert box["width"] >= 380  # twice the old 190 px
    assert abs(box["y"] - beside["y"]) < 2  # side by side
    decide = await page.locator("#decide").bounding_box()
    assert decide is not None
    assert decide["y"] < 900  # the decision form is in view beside the images, not thousands of pixels down
    await expect(page.get_by_text("Frames analysed")).to_be_attached()  # measurements named in words
    assert await page.get_by_text("ear_baseline").count() == 0
    for width in WIDTHS:
        await page.set_viewport_size({"width": width, "height": 900})
        await page.screenshot(path=str(screenshots / f"console-check-{width}.png"), full_page=True)
    await page.set_viewport_size({"width": 1280, "height": 900})
    await page.keyboard.press("z")
    zoomed = await reference.bounding_box()
    assert zoomed is not None
    assert zoomed["width"] > box["width"] * 1.5
    await page.keyboard.press("z")

    # R chooses Reject and moves to the reason; Ctrl+Enter decides and opens the next check.
    await page.keyboard.press("r")
    await expect(page.locator("#decision-reject")).to_be_checked()
    await expect(page.locator("#decision-reason")).to_be_focused()
    await page.keyboard.type("not the person in the reference photo")
    await page.keyboard.press("Control+Enter")
    await expect(page).to_have_url(re.compile(f"/console/checks/{newer}"))
    await expect(page.get_by_role("status")).to_have_text("The decision was recorded. This is the next check.")
    assert await pool.fetchval("SELECT status FROM certification_checks WHERE id = $1", older) == "failed"

    await page.keyboard.press("a")
    await page.keyboard.type("same person, good light")
    await page.keyboard.press("Control+Enter")
    await expect(page.get_by_role("status")).to_have_text("The decision was recorded.")
    await expect(page.get_by_text("Nothing is waiting.")).to_be_visible()
    assert await pool.fetchval("SELECT status FROM certification_checks WHERE id = $1", newer) == "passed"
