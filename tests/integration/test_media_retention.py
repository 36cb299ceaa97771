"""Raw selfies and review frames are deleted once the retention period after the final decision ends."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import asyncpg

from app.jobs import SCHEDULES
from app.services import Services
from certification.service import PURGE_MEDIA_JOB
from tests.factories import applicant, insert_check


async def _decided_check(services: Services, pool: asyncpg.Pool, phone: str, days_ago: int, n: int) -> list[str]:
    keys = [f"uploads/test/{n}/video", f"reviews/test/{n}/frame-00.jpg"]
    for key in keys:
        services.storage.put_bytes(key, b"\x00\x00\x00\x18ftypmp42", "video/mp4")
    await insert_check(
        pool,
        phone,
        "failed",
        worker_outcome="failed",
        days_ago=days_ago,
        media_keys=(keys[0],),
        review_frame_keys=(keys[1],),
    )
    return keys


async def test_media_is_purged_after_the_retention_period(
    client: Any, pool: asyncpg.Pool, services: Services, importer: Any, tmp_path: Path
) -> None:
    who = await applicant(client, pool, importer, tmp_path)
    old = await _decided_check(services, pool, who.person.phone, 31, 1)
    recent = await _decided_check(services, pool, who.person.phone, 29, 2)
    assert await services.certification.purge_media() == 1
    assert not any(services.storage.exists(key) for key in old)
    assert all(services.storage.exists(key) for key in recent)
    assert await pool.fetchval("SELECT count(*) FROM certification_checks WHERE media_purged_at IS NOT NULL") == 1
    assert await services.certification.purge_media() == 0  # a second run finds nothing more
    assert PURGE_MEDIA_JOB in SCHEDULES
