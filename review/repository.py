"""SQL for the operators' review queue."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

import asyncpg

from infra.db import Db, UnitOfWork

REVIEWABLE = ("needs_review", "home_visit")


_FILTERS = """k.status = $1 AND ($2::text IS NULL OR $2 = ANY(k.reasons)) AND ($3::text IS NULL OR p.region = $3)"""
# The checks an operator holds now (the queue's "mine"); a check waiting past the service level.
_HELD_BY = "k.claimed_by = {0} AND k.claimed_until > now()"
_LATE = "k.submitted_at < now() - make_interval(hours => {0})"


async def queue(
    db: Db,
    status: str,
    reason: str | None,
    region: str | None,
    held_by: uuid.UUID | None,
    after: tuple[datetime, uuid.UUID] | None,
    limit: int,
    late_after_h: int,
) -> list[asyncpg.Record]:
    """Oldest first; keyset pagination on (submitted_at, id) stays correct while checks leave the queue."""
    return await db.fetch(
        f"""SELECT k.id, k.status, k.reasons, k.scores, k.submitted_at, k.claimed_by, k.claimed_until,
                  o.display_name AS claimed_by_name, {_LATE.format("$8")} AS late,
                  p.region, p.national_id_masked AS masked_national_id, p.name
           FROM certification_checks k JOIN persons p ON p.id = k.person_id
           LEFT JOIN operators o ON o.id = k.claimed_by
           WHERE {_FILTERS} AND ($4::uuid IS NULL OR {_HELD_BY.format("$4")})
             AND ($5::timestamptz IS NULL OR (k.submitted_at, k.id) > ($5, $6::uuid))
           ORDER BY k.submitted_at, k.id LIMIT $7""",
        status,
        reason,
        region,
        held_by,
        after[0] if after else None,
        after[1] if after else None,
        limit,
        late_after_h,
    )


async def queue_summary(
    db: Db, status: str, reason: str | None, region: str | None, operator_id: uuid.UUID, late_after_h: int
) -> asyncpg.Record:
    """How many checks wait under these filters, since when, how many are late, how many this operator holds."""
    row: asyncpg.Record | None = await db.fetchrow(
        f"""SELECT count(*) AS waiting, min(k.submitted_at) AS oldest,
                   count(*) FILTER (WHERE {_LATE.format("$5")}) AS late,
                   count(*) FILTER (WHERE {_HELD_BY.format("$4")}) AS mine
            FROM certification_checks k JOIN persons p ON p.id = k.person_id
            WHERE {_FILTERS}""",
        status,
        reason,
        region,
        operator_id,
        late_after_h,
    )
    assert row is not None  # an aggregate always returns its row
    return row


async def release_claims(uow: UnitOfWork, operator_id: uuid.UUID) -> None:
    """Let go of the operator's live claims on checks waiting for review (on a cluster, every shard's)."""
    await uow.execute(
        """UPDATE certification_checks SET claimed_by = NULL, claimed_until = NULL
           WHERE claimed_by = $1 AND status = 'needs_review' AND claimed_until > now()""",
        operator_id,
    )


async def claim_candidates(
    db: Db, reason: str | None, region: str | None, after: tuple[datetime, uuid.UUID] | None, limit: int
) -> list[asyncpg.Record]:
    """Waiting checks nobody holds, oldest first, after `after` (submitted_at, id): a plain read, no
    lock (a cluster refuses FOR UPDATE across shards); `claim_candidate` then takes one."""
    return await db.fetch(
        f"""SELECT k.person_id, k.id, k.submitted_at
            FROM certification_checks k JOIN persons p ON p.id = k.person_id
            WHERE {_FILTERS} AND (k.claimed_by IS NULL OR k.claimed_until < now())
              AND ($4::timestamptz IS NULL OR (k.submitted_at, k.id) > ($4, $5::uuid))
            ORDER BY k.submitted_at, k.id LIMIT $6""",
        "needs_review",
        reason,
        region,
        after[0] if after else None,
        after[1] if after else None,
        limit,
    )


async def claim_candidate(
    uow: UnitOfWork, person_id: uuid.UUID, check_id: uuid.UUID, operator_id: uuid.UUID, claim_s: int
) -> bool:
    """Claim a candidate if it still waits and nobody holds it. An operator claiming it at the same
    moment holds the row until their commit; this statement then reads the row as they left it and
    takes nothing, so two operators never get one check."""
    claimed = await uow.fetchval(
        """UPDATE certification_checks SET claimed_by = $3, claimed_until = now() + make_interval(secs => $4)
           WHERE person_id = $1 AND id = $2 AND status = 'needs_review'
             AND (claimed_by IS NULL OR claimed_until < now())
           RETURNING id""",
        person_id,
        check_id,
        operator_id,
        claim_s,
    )
    return claimed is not None


async def filter_choices(db: Db) -> asyncpg.Record:
    """The reasons and regions of the checks waiting for a person: what the queue can be filtered by."""
    row: asyncpg.Record | None = await db.fetchrow(
        """SELECT coalesce(array_agg(DISTINCT r.reason ORDER BY r.reason), '{}') AS reasons,
                  coalesce(array_agg(DISTINCT p.region ORDER BY p.region), '{}') AS regions
           FROM certification_checks k JOIN persons p ON p.id = k.person_id
           LEFT JOIN LATERAL unnest(k.reasons) AS r (reason) ON true
           WHERE k.status = ANY($1::text[])""",
        list(REVIEWABLE),
    )
    assert row is not None  # an aggregate always returns its row
    return row


async def claim(
    uow: UnitOfWork, person_id: uuid.UUID, check_id: uuid.UUID, operator_id: uuid.UUID, claim_s: int
) -> datetime | None:
    """Claim (or extend one's own claim); None when another operator holds a live claim."""
    until: datetime | None = await uow.fetchval(
        """UPDATE certification_checks SET claimed_by = $3, claimed_until = now() + make_interval(secs => $4)
           WHERE person_id = $1 AND id = $2 AND status = ANY($5::text[])
             AND (claimed_by IS NULL OR claimed_by = $3 OR claimed_until < now())
           RETURNING claimed_until""",
        person_id,
        check_id,
        operator_id,
        claim_s,
        list(REVIEWABLE),
    )
    return until


async def person_of_check(db: Db, check_id: uuid.UUID) -> uuid.UUID | None:
    """The person of a check an operator knows by its id alone: on a cluster a read of every shard
    (certification_checks_id_idx), never a lock; what follows reads and locks on that person's."""
    person_id: uuid.UUID | None = await db.fetchval(
        "SELECT person_id FROM certification_checks WHERE id = $1", check_id
    )
    return person_id


async def check_for_review(
    db: Db, person_id: uuid.UUID, check_id: uuid.UUID, *, lock: bool = False
) -> dict[str, Any] | None:
    if lock:
        # The check's row alone, on its person's shard: the read below joins reference tables.
        await db.execute(
            "SELECT 1 FROM certification_checks WHERE person_id = $1 AND id = $2 FOR UPDATE", person_id, check_id
        )
    row = await db.fetchrow(
        """SELECT k.id, k.person_id, k.status, k.actions AS challenged_actions, k.reasons, k.scores,
                   k.actions_detected AS detected_actions, k.submitted_at, k.replay_of, k.claimed_by,
                   k.claimed_until, k.claimed_until > now() AS claim_live, k.review_frame_keys,
                   k.media_purged_at, k.worker_outcome, p.reference_photo_key, p.region,
                   p.national_id_masked AS masked_national_id, p.name,
                   o.display_name AS claimed_by_name, k.assisted_by,
                   l.relationship AS assisted_relationship, k.assisted_device
            FROM certification_checks k JOIN persons p ON p.id = k.person_id
            LEFT JOIN operators o ON o.id = k.claimed_by
            LEFT JOIN relative_links l ON l.person_id = k.person_id AND l.id = k.assisted_link
            WHERE k.person_id = $1 AND k.id = $2""",
        person_id,
        check_id,
    )
    if row is None:
        return None
    # The relative who helped is another person, on their own shard: read apart.
    helper = (
        await db.fetchrow("SELECT name, national_id_masked FROM persons WHERE id = $1", row["assisted_by"])
        if row["assisted_by"] is not None
        else None
    )
    return dict(row) | {
        "assisted_by_name": helper["name"] if helper else None,
        "assisted_by_masked_national_id": helper["national_id_masked"] if helper else None,
    }


async def record_decision(
    uow: UnitOfWork,
    person_id: uuid.UUID,
    check_id: uuid.UUID,
    status: str,
    decision: str,
    reason: str,
    reasons: list[str],
    decided_by: str,
) -> None:
    await uow.execute(
        """UPDATE certification_checks
           SET status = $2, review_decision = $3, review_reason = $4, reasons = $5, decided_at = now(),
               decided_by = $6, claimed_by = NULL, claimed_until = NULL
           WHERE person_id = $7 AND id = $1""",
        check_id,
        status,
        decision,
        reason,
        reasons,
        decided_by,
        person_id,
    )
