"""The review queue's API on checks the worker's recording path sent to review (no face analysis
here: the end-to-end tests with the real worker are in test_face_worker.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import asyncpg

from app.services import Services
from tests.factories import applicant, flagged_check, operator_headers_for


async def test_the_queue_pages_oldest_first(
    client: Any, services: Services, pool: asyncpg.Pool, importer: Any, tmp_path: Path
) -> None:
    who = await applicant(client, pool, importer, tmp_path)
    flagged = [await flagged_check(services, pool, who.person.phone) for _ in range(3)]
    operator = await operator_headers_for(services, "dave", "Dave Operator")
    seen: list[str] = []
    url = "/v1/review/checks?limit=1"
    for _ in range(3):
        page = (await client.get(url, headers=operator)).json()
        assert len(page["items"]) == 1
        assert page["items"][0]["reasons"] == ["match_uncertain"]
        assert page["items"][0]["scores"] == {"match_distance": 0.52}
        seen.append(page["items"][0]["id"])
        url = f"/v1/review/checks?limit=1&cursor={page['next_cursor']}"
    assert seen == flagged
    assert page["next_cursor"] is None
    r = await client.get("/v1/review/checks?cursor=not-a-cursor", headers={**operator, "Accept-Language": "en"})
    assert (r.status_code, r.json()["code"]) == (400, "cursor_invalid")
    # Decided checks leave the queue; home visits wait in a queue of their own.
    assert (await client.post(f"/v1/review/checks/{flagged[0]}/claim", headers=operator)).status_code == 200
    r = await client.post(
        f"/v1/review/checks/{flagged[0]}/decision",
        json={"decision": "home_visit", "reason": "bedridden, family asked for a visit"},
        headers=operator,
    )
    assert r.json()["status"] == "home_visit"
    waiting = (await client.get("/v1/review/checks", headers=operator)).json()["items"]
    assert [item["id"] for item in waiting] == flagged[1:]
    visits = (await client.get("/v1/review/checks?status=home_visit", headers=operator)).json()["items"]
    assert [item["id"] for item in visits] == [flagged[0]]
    r = await client.post(
        f"/v1/review/checks/{flagged[1]}/decision", json={"decision": "approve", "reason": "   "}, headers=operator
    )
    assert r.status_code == 400
    assert (await client.post(f"/v1/review/checks/{flagged[1]}/claim", headers=operator)).status_code == 200
    r = await client.post(  # three characters, two of them padding
        f"/v1/review/checks/{flagged[1]}/decision", json={"decision": "approve", "reason": " a "}, headers=operator
    )
    assert (r.status_code, r.json()["code"]) == (400, "reason_required")
