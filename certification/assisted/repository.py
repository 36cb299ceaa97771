"""SQL for relative links and the counts the assisted limits judge."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from datetime import datetime
from typing import Any

import asyncpg

from infra.db import Db, UnitOfWork

_LINK = (
    "l.person_id, l.id, l.helper_id, l.relationship, l.state, l.requested_at, l.code_sent_at, l.consented_at,"
    " l.consent_method, l.ended_at, l.end_reason"
)
# A link as either side sees it: the elder named and masked, and when the relative last helped the
# elder certify (both on the elder's shard); the relative, another person, is named by `_shown`.
_SHOWN = f"""
    SELECT {_LINK}, e.name AS elder_name, e.national_id_masked AS elder_masked_national_id,
           (SELECT max(k.submitted_at) FROM certification_checks k
            WHERE k.person_id = l.person_id AND k.assisted_link = l.id) AS last_assisted_at
    FROM relative_links l JOIN persons e ON e.id = l.person_id
"""
# A link shown: _SHOWN's columns with the relative's name and masked national ID.
Link = Mapping[str, Any]


async def _shown(db: Db, rows: list[asyncpg.Record]) -> list[Link]:
    """The links with their relatives named. A relative sits on their own shard, not the elder's: read
    by id in a statement of their own rather than joined."""
    if not rows:
        return []
    helpers = {
        h["id"]: h
        for h in await db.fetch(
            "SELECT id, name, national_id_masked FROM persons WHERE id = ANY ($1::uuid[])",
            list({r["helper_id"] for r in rows}),
        )
    }
    return [
        {
            **dict(r),
            "helper_name": helpers[r["helper_id"]]["name"],
            "helper_masked_national_id": helpers[r["helper_id"]]["national_id_masked"],
        }
        for r in rows
    ]


async def _one(db: Db, row: asyncpg.Record | None) -> Link | None:
    return None if row is None else (await _shown(db, [row]))[0]


async def person_by_national_id(db: Db, national_id_hash: bytes) -> asyncpg.Record | None:
    # The id through the national ID lookup table, then the person by id: each statement on one shard.
    person_id = await db.fetchval(
        "SELECT person_id FROM person_national_ids WHERE national_id_hash = $1", national_id_hash
    )
    return None if person_id is None else await person_or_none(db, person_id)


async def person_or_none(db: Db, person_id: uuid.UUID) -> asyncpg.Record | None:
    return await db.fetchrow("SELECT id, name, phone, locale, vital_status FROM persons WHERE id = $1", person_id)


async def person(db: Db, person_id: uuid.UUID) -> asyncpg.Record:
    row = await person_or_none(db, person_id)
    assert row is not None
    return row


async def lock_helper(uow: UnitOfWork, helper_id: uuid.UUID) -> None:
    """Serialise what one relative asks and submits (their limits counted, then acted on)."""
    await uow.execute("SELECT pg_advisory_xact_lock(hashtextextended('assist:' || $1::uuid::text, 0))", helper_id)


async def lock_device(uow: UnitOfWork, device_id: str) -> None:
    await uow.execute("SELECT pg_advisory_xact_lock(hashtextextended('assist-device:' || $1, 0))", device_id)


async def open_links_of_helper(uow: UnitOfWork, helper_id: uuid.UUID) -> int:
    count: int = await uow.fetchval(
        "SELECT count(*) FROM relative_links WHERE helper_id = $1 AND state IN ('pending', 'active')", helper_id
    )
    return count


async def active_helpers_of(uow: UnitOfWork, person_id: uuid.UUID) -> int:
    count: int = await uow.fetchval(
        "SELECT count(*) FROM relative_links WHERE person_id = $1 AND state = 'active'", person_id
    )
    return count


async def open_link(uow: UnitOfWork, person_id: uuid.UUID, helper_id: uuid.UUID) -> Link | None:
    return await _one(
        uow,
        await uow.fetchrow(
            f"{_SHOWN} WHERE l.person_id = $1 AND l.helper_id = $2 AND l.state IN ('pending', 'active')",
            person_id,
            helper_id,
        ),
    )


async def insert_link(
    uow: UnitOfWork, person_id: uuid.UUID, helper_id: uuid.UUID, relationship: str, actor: str
) -> uuid.UUID:
    link_id: uuid.UUID = await uow.fetchval(
        """INSERT INTO relative_links (person_id, helper_id, relationship, requested_by)
           VALUES ($1, $2, $3, $4) RETURNING id""",
        person_id,
        helper_id,
        relationship,
        actor,
    )
    return link_id


async def supersede_other_pending(uow: UnitOfWork, person_id: uuid.UUID, link_id: uuid.UUID) -> None:
    """A new consent code to the elder's phone replaces the one before it (auth.codes): the other
    requests still waiting on that code can no longer be consented to by it."""
    await uow.execute(
        """UPDATE relative_links SET state = 'superseded', ended_at = now()
           WHERE person_id = $1 AND id <> $2 AND state = 'pending'""",
        person_id,
        link_id,
    )


async def code_sent(uow: UnitOfWork, person_id: uuid.UUID, link_id: uuid.UUID, at: datetime) -> None:
    await uow.execute(
        "UPDATE relative_links SET code_sent_at = $3 WHERE person_id = $1 AND id = $2", person_id, link_id, at
    )


async def link(db: Db, link_id: uuid.UUID, *, person_id: uuid.UUID | None = None, lock: bool = False) -> Link | None:
    """A link by its id, shown; locked (FOR UPDATE of the link) for a change of state. Without its elder
    (`person_id`, when the caller knows it), the elder is found by the link's id first, unlocked: a lock
    is taken on the elder's shard only (a link's elder never changes)."""
    if person_id is None:
        person_id = await db.fetchval("SELECT person_id FROM relative_links WHERE id = $1", link_id)
        if person_id is None:
            return None
    return await _one(
        db,
        await db.fetchrow(
            f"{_SHOWN} WHERE l.person_id = $1 AND l.id = $2 {'FOR UPDATE OF l' if lock else ''}", person_id, link_id
        ),
    )


async def link_between(uow: UnitOfWork, person_id: uuid.UUID, helper_id: uuid.UUID) -> Link | None:
    """The open link between an elder and a relative, locked."""
    return await _one(
        uow,
        await uow.fetchrow(
            f"{_SHOWN} WHERE l.person_id = $1 AND l.helper_id = $2 AND l.state IN ('pending', 'active')"
            " FOR UPDATE OF l",
            person_id,
            helper_id,
        ),
    )


async def lock_link_shared(uow: UnitOfWork, person_id: uuid.UUID, link_id: uuid.UUID) -> str | None:
    """The link's state, held against a concurrent end until the caller's transaction ends."""
    state: str | None = await uow.fetchval(
        "SELECT state FROM relative_links WHERE person_id = $1 AND id = $2 FOR SHARE", person_id, link_id
    )
    return state


async def consent(
    uow: UnitOfWork, person_id: uuid.UUID, link_id: uuid.UUID, method: str, actor: str, reason: str | None
) -> None:
    await uow.execute(
        """UPDATE relative_links SET state = 'active', consented_at = now(), consent_method = $3,
                                     consented_by = $4, consent_reason = $5
           WHERE person_id = $1 AND id = $2""",
        person_id,
        link_id,
        method,
        actor,
        reason,
    )


async def end(uow: UnitOfWork, person_id: uuid.UUID, link_id: uuid.UUID, reason: str, actor: str) -> None:
    await uow.execute(
        """UPDATE relative_links SET state = 'ended', ended_at = now(), ended_by = $4, end_reason = $3
           WHERE person_id = $1 AND id = $2""",
        person_id,
        link_id,
        reason,
        actor,
    )


async def links_as_helper(db: Db, helper_id: uuid.UUID) -> list[Link]:
    return await _shown(
        db,
        await db.fetch(
            f"{_SHOWN} WHERE l.helper_id = $1 AND l.state IN ('pending', 'active') ORDER BY l.requested_at DESC",
            helper_id,
        ),
    )


async def links_as_elder(db: Db, person_id: uuid.UUID) -> list[Link]:
    return await _shown(
        db,
        await db.fetch(
            f"{_SHOWN} WHERE l.person_id = $1 AND l.state IN ('pending', 'active') ORDER BY l.requested_at DESC",
            person_id,
        ),
    )


async def elders_helped_by(uow: UnitOfWork, helper_id: uuid.UUID, since: datetime) -> set[uuid.UUID]:
    rows = await uow.fetch(
        "SELECT DISTINCT person_id FROM certification_checks WHERE assisted_by = $1 AND submitted_at > $2",
        helper_id,
        since,
    )
    return {r["person_id"] for r in rows}


async def elders_helped_from(uow: UnitOfWork, device_id: str, since: datetime) -> set[uuid.UUID]:
    rows = await uow.fetch(
        "SELECT DISTINCT person_id FROM certification_checks WHERE assisted_device = $1 AND submitted_at > $2",
        device_id,
        since,
    )
    return {r["person_id"] for r in rows}


async def assisted_check(db: Db, check_id: uuid.UUID, helper_id: uuid.UUID) -> uuid.UUID | None:
    """The person of a check this relative submitted, or None."""
    person_id: uuid.UUID | None = await db.fetchval(
        "SELECT person_id FROM certification_checks WHERE id = $1 AND assisted_by = $2", check_id, helper_id
    )
    return person_id
