"""The review queue's API on checks the worker's recording path sent to review (no face analysis
here: the end-to-end tests with the real worker are in test_face_worker.py)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import asyncpg

from app.services import Services
from core.principal import OPERATOR, Principal
from tests.factories import applicant, flagged_check, operator_headers_for, staff_member


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


async def test_operators_claiming_at_once_each_get_a_different_check(
    client: Any, services: Services, pool: asyncpg.Pool, importer: Any, tmp_path: Path
) -> None:
    """The claim reads candidates without a lock (a cluster refuses FOR UPDATE across shards), then
    claims one on its person's shard: an operator who loses a check to another moves on to the next."""
    waiting = set()
    for _ in range(3):
        who = await applicant(client, pool, importer, tmp_path)
        waiting.add(await flagged_check(services, pool, who.person.phone))
    operators = []
    for n in range(5):
        await staff_member(services, f"op{n}", f"Operator {n}")
        operator_id = await pool.fetchval("SELECT id FROM operators WHERE username = $1", f"op{n}")
        operators.append(Principal(role=OPERATOR, subject_id=operator_id, username=f"op{n}"))

    claimed = await asyncio.gather(*(services.review.claim_next(op, None, None) for op in operators))

    got = [str(check) for check in claimed if check is not None]
    assert sorted(got) == sorted(waiting)  # every check claimed once, by one operator
    assert claimed.count(None) == 2
    holders = await pool.fetch("SELECT id, claimed_by FROM certification_checks")
    assert {str(r["id"]): r["claimed_by"] for r in holders} == {
        str(check): op.subject_id for op, check in zip(operators, claimed, strict=True) if check is not None
    }
