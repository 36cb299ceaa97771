"""Who sees a check's face images (issue 16, item 2): the operator holding its claim while it is under
review, by default; anyone else, and everyone once it is decided, only by asking with a reason that the
audit log keeps. The scores, reasons and actions stay visible. Through the API and the console alike."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import asyncpg
import httpx

from app.services import Services
from tests.factories import applicant, console_sign_in, flagged_check, operator_headers_for, staff_member

FRAMES = ("review/media-access/0.jpg", "review/media-access/1.jpg")
REFERENCE = "references/media-access.jpg"
JPEG = b"\xff\xd8\xff\xe0 not really a picture"


async def _check_with_images(client: Any, services: Services, pool: asyncpg.Pool, importer: Any, tmp_path: Path) -> str:
    """A check the worker sent to review, with review frames and a reference photo in the object store."""
    who = await applicant(client, pool, importer, tmp_path)
    check = await flagged_check(services, pool, who.person.phone)
    await pool.execute("UPDATE certification_checks SET review_frame_keys = $2 WHERE id = $1", uuid.UUID(check), FRAMES)
    await pool.execute("UPDATE persons SET reference_photo_key = $2 WHERE phone = $1", who.person.phone, REFERENCE)
    for key in (*FRAMES, REFERENCE):
        await asyncio.to_thread(services.storage.put_bytes, key, JPEG, "image/jpeg")
    return check


def _expires_in(url: str) -> int:
    return int(parse_qs(urlsplit(url).query)["X-Amz-Expires"][0])


async def _looks(pool: asyncpg.Pool, check: str) -> list[tuple[str, dict[str, Any]]]:
    rows = await pool.fetch(
        "SELECT action, details FROM audit_log WHERE subject = $1 AND action LIKE 'biometric.%' ORDER BY at, chain, seq",
        f"check:{check}",
    )
    return [(r["action"], r["details"]) for r in rows]


async def test_a_decided_check_shows_its_images_to_nobody_by_default(
    client: Any, services: Services, pool: asyncpg.Pool, importer: Any, tmp_path: Path
) -> None:
    check = await _check_with_images(client, services, pool, importer, tmp_path)
    alice = await operator_headers_for(services, "alice", "Alice Operator")
    bob = await operator_headers_for(services, "bob", "Bob Operator")
    url = f"/v1/review/checks/{check}"

    # Under review: the images go to the claim holder only.
    assert (await client.post(f"{url}/claim", headers=alice)).status_code == 200
    held = (await client.get(url, headers=alice)).json()
    assert len(held["frame_urls"]) == 2
    assert held["reference_url"]
    r = await client.get(url, headers=bob)
    assert (r.status_code, r.json()["code"]) == (409, "claim_required")

    r = await client.post(f"{url}/decision", json={"decision": "approve", "reason": "same face"}, headers=alice)
    assert r.status_code == 200, r.text
    # Decided: the scores, reasons and actions for anyone, the decider included; no image.
    for operator in (alice, bob):
        r = await client.get(url, headers=operator)
        assert r.status_code == 200, r.text
        view = r.json()
        assert (view["status"], view["scores"], view["reasons"]) == (
            "passed",
            {"match_distance": 0.52},
            ["match_uncertain"],
        )
        assert view["challenged_actions"] == ["blink"]
        assert (view["frame_urls"], view["reference_url"]) == ([], None)
        assert "X-Amz" not in r.text
        assert view["images_withheld"] is True  # and how to ask for them: POST …/media-access
    assert held["images_withheld"] is False
    looks = await _looks(pool, check)
    assert [(action, details["operator"]) for action, details in looks] == [
        ("biometric.viewed", "alice"),  # the claim holder's look, with the images
        ("biometric.scores_viewed", "alice"),
        ("biometric.scores_viewed", "bob"),
    ]
    assert looks[0][1]["frames"] == 2


async def test_images_of_a_decided_check_come_only_for_a_reason_kept_in_the_audit_log(
    client: Any, services: Services, pool: asyncpg.Pool, importer: Any, tmp_path: Path
) -> None:
    check = await _check_with_images(client, services, pool, importer, tmp_path)
    alice = await operator_headers_for(services, "alice", "Alice Operator")
    bob = await operator_headers_for(services, "bob", "Bob Operator")
    url = f"/v1/review/checks/{check}"
    ask = f"{url}/media-access"

    # Under review nobody reaches the images by asking: whoever needs them claims the check.
    r = await client.post(ask, json={"reason": "complaint from the family"}, headers=bob)
    assert (r.status_code, r.json()["code"]) == (409, "claim_required")
    assert (await client.post(f"{url}/claim", headers=alice)).status_code == 200
    r = await client.post(ask, json={"reason": "complaint from the family"}, headers=bob)
    assert (r.status_code, r.json()["code"]) == (409, "claim_required")
    r = await client.post(f"{url}/decision", json={"decision": "reject", "reason": "not the same man"}, headers=alice)
    assert r.status_code == 200, r.text

    # Decided: a reason is required, and padding is no reason.
    r = await client.post(ask, json={}, headers=bob)
    assert r.status_code == 400
    r = await client.post(ask, json={"reason": "  a  "}, headers={**bob, "Accept-Language": "en"})
    assert (r.status_code, r.json()["code"], r.json()["detail"]) == (400, "reason_required", "Give a reason.")
    r = await client.post(ask, json={"reason": "x" * 1001}, headers=bob)
    assert r.status_code == 400
    assert await _looks(pool, check) == []  # nothing refused was shown, nor written down as shown

    r = await client.post(ask, json={"reason": "  pensioner's appeal no. 2026-17  "}, headers=bob)
    assert r.status_code == 200, r.text
    shown = r.json()
    assert (shown["id"], shown["status"], shown["images_withheld"]) == (check, "failed", False)
    assert len(shown["frame_urls"]) == 2
    assert shown["reference_url"]
    for link in (*shown["frame_urls"], shown["reference_url"]):
        assert _expires_in(link) == shown["urls_expire_in"] <= 300  # short-lived
        async with httpx.AsyncClient(timeout=10) as http:
            assert (await http.get(link)).content == JPEG
    person = str(await pool.fetchval("SELECT person_id FROM certification_checks WHERE id = $1", uuid.UUID(check)))
    assert await _looks(pool, check) == [
        (
            "biometric.viewed",
            {
                "person": person,
                "frames": 2,
                "reference": True,
                "reason": "pensioner's appeal no. 2026-17",
                "operator": "bob",
            },
        )
    ]
    # Asking once shows the images once: the check's page is without them again.
    assert (await client.get(url, headers=bob)).json()["frame_urls"] == []


async def test_the_console_shows_a_decided_check_without_images_and_asks_for_a_reason(
    client: Any, services: Services, pool: asyncpg.Pool, importer: Any, tmp_path: Path
) -> None:
    check = await _check_with_images(client, services, pool, importer, tmp_path)
    alice = await operator_headers_for(services, "alice", "Alice Operator")
    assert (await client.post(f"/v1/review/checks/{check}/claim", headers=alice)).status_code == 200
    r = await client.post(
        f"/v1/review/checks/{check}/decision", json={"decision": "approve", "reason": "same face"}, headers=alice
    )
    assert r.status_code == 200, r.text
    page_url = f"/console/checks/{check}"

    # An operator who never held it, and an administrator: the same rule.
    for username, role in (("olga", "operator"), ("adam", "admin")):
        client.cookies.clear()
        csrf = await console_sign_in(client, username, await staff_member(services, username, username.title(), role))
        await client.post("/console/language", data={"csrf": csrf, "locale": "en", "next": "/console/queue"})
        page = await client.get(page_url)
        assert page.status_code == 200, page.text
        assert "X-Amz" not in page.text
        assert "<img" not in page.text
        assert "match_distance" in page.text  # the scores are still there
        assert f'action="{page_url}/media-access"' in page.text
        assert 'for="media-reason"' in page.text  # the reason's field has its label

        r = await client.post(f"{page_url}/media-access", data={"csrf": csrf, "reason": "  "})
        assert r.status_code == 400
        assert "Give a reason." in r.text
        assert "X-Amz" not in r.text

        r = await client.post(f"{page_url}/media-access", data={"csrf": csrf, "reason": f"audit sample by {username}"})
        assert r.status_code == 200, r.text
        assert r.text.count("X-Amz-Expires=") == 3  # two frames and the reference photo
        assert f'action="{page_url}/media-access"' not in r.text
        # A form from elsewhere shows nothing.
        r = await client.post(f"{page_url}/media-access", data={"csrf": "forged", "reason": "curious"})
        assert r.status_code == 403
        assert "X-Amz" not in r.text

    asked = await pool.fetch(
        """SELECT details->>'operator' AS who, details->>'reason' AS reason FROM audit_log
           WHERE subject = $1 AND action = 'biometric.viewed' AND details ? 'reason' ORDER BY at, seq""",
        f"check:{check}",
    )
    assert [(r["who"], r["reason"]) for r in asked] == [
        ("olga", "audit sample by olga"),
        ("adam", "audit sample by adam"),
    ]
