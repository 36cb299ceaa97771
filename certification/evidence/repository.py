"""SQL for evidence of life: landing feed lines, the silent pass's batches, and the trail shown to
the person and to operators. Events are read through life_evidence_all (imported rows and QR charges)."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import date
from typing import Any

import asyncpg

from certification.repository import EXTEND_ELIGIBILITY
from infra.db import Db, UnitOfWork

_NO_PERSON = uuid.UUID(int=0)  # below every id: a pass starts after it

# A chunk of feed lines lands in three statements, each of which a cluster sends to the shards that
# hold it: the lines' persons from the national ID lookup table (distributed by the hash, not by the
# person, so it is not joined to the person tables), the days recorded before for the lines'
# references (read before the insert: `recorded_on` is the earlier day only), and the new events (a
# source and reference already recorded is left as it is).
PERSONS_SQL = """
    SELECT national_id_hash, person_id FROM person_national_ids WHERE national_id_hash = ANY ($1::bytea[])"""
RECORDED_SQL = """
    SELECT person_id, source, reference, occurred_on FROM life_evidence
    WHERE person_id = ANY ($1::uuid[]) AND reference = ANY ($2::text[])"""
INSERT_SQL = """
    INSERT INTO life_evidence (person_id, source, occurred_on, reference, feed, imported_by)
    SELECT person_id, source, occurred_on, reference, $6 || ':' || line, $7
    FROM unnest($1::int[], $2::uuid[], $3::text[], $4::date[], $5::text[])
         AS l (line, person_id, source, occurred_on, reference)
    ORDER BY line
    ON CONFLICT (person_id, source, reference) DO NOTHING
    RETURNING person_id, source, reference"""


async def insert_evidence(
    uow: UnitOfWork,
    lines: Sequence[int],
    hashes: Sequence[bytes],
    sources: Sequence[str],
    days: Sequence[date],
    references: Sequence[str],
    feed: str,
    actor: str,
) -> list[dict[str, Any]]:
    """For every line, in order: whether its person is known, whether it landed, and the day recorded
    before for its reference (None when there was none)."""
    person_of = {row["national_id_hash"]: row["person_id"] for row in await uow.fetch(PERSONS_SQL, list(set(hashes)))}
    persons = [person_of.get(h) for h in hashes]
    known = [i for i, person in enumerate(persons) if person is not None]
    recorded = {
        (row["person_id"], row["source"], row["reference"]): row["occurred_on"]
        for row in await uow.fetch(
            RECORDED_SQL, list({persons[i] for i in known}), list({references[i] for i in known})
        )
    }
    landed = {
        (row["person_id"], row["source"], row["reference"])
        for row in await uow.fetch(
            INSERT_SQL,
            [lines[i] for i in known],
            [persons[i] for i in known],
            [sources[i] for i in known],
            [days[i] for i in known],
            [references[i] for i in known],
            feed,
            actor,
        )
    }
    return [
        {
            "line": line,
            "known": person is not None,
            "landed": (person, source, reference) in landed,
            "recorded_on": recorded.get((person, source, reference)),
        }
        for line, person, source, reference in zip(lines, persons, sources, references, strict=True)
    ]


# -- the silent pass ---------------------------------------------------------------------------------
_SILENT_COLUMNS = (
    "id, run_on, due_by, rule, state, resume_after, scanned, confirmed, requested_by, started_at, completed_at"
)


async def start_pass(db: Db, run_on: date, due_by: date, rule: dict[str, Any], actor: str) -> tuple[uuid.UUID, bool]:
    """The running pass: started now (True), or the one already running (False), which goes on with
    its own day and rule."""
    created: uuid.UUID | None = await db.fetchval(
        """INSERT INTO silent_passes (run_on, due_by, rule, requested_by) VALUES ($1, $2, $3, $4)
           ON CONFLICT ((true)) WHERE state = 'running' DO NOTHING RETURNING id""",
        run_on,
        due_by,
        rule,
        actor,
    )
    if created is not None:
        return created, True
    running: uuid.UUID | None = await db.fetchval("SELECT id FROM silent_passes WHERE state = 'running'")
    if running is None:  # it completed between the two statements: start the next
        return await start_pass(db, run_on, due_by, rule, actor)
    return running, False


async def lock_pass(uow: UnitOfWork, pass_id: uuid.UUID) -> asyncpg.Record | None:
    """Taken at the start of each batch: executors of one pass (a restart, the scheduler and the CLI) take turns."""
    return await uow.fetchrow(f"SELECT {_SILENT_COLUMNS} FROM silent_passes WHERE id = $1 FOR UPDATE", pass_id)


async def pass_view(db: Db, pass_id: uuid.UUID) -> asyncpg.Record | None:
    return await db.fetchrow(f"SELECT {_SILENT_COLUMNS} FROM silent_passes WHERE id = $1", pass_id)


# The next persons due after the last one done, in person order: pensioners alive, certified until
# `due_by` or never; with each, whether a death record stands and the events the rule may count
# (its sources, its window). The rule itself is judged on them in certification.evidence.rules.
CANDIDATES_SQL = """
    SELECT p.id AS person_id, p.certified_until,
           EXISTS (SELECT 1 FROM death_records d WHERE d.person_id = p.id AND d.reversed_at IS NULL) AS died,
           x.ids, x.sources, x.days
    FROM persons p
    JOIN pension_entitlements e ON e.person_id = p.id
    -- Per person, on the person's shard; evaluated only for the batch's rows (the LIMIT stops the scan).
    LEFT JOIN LATERAL (
        SELECT array_agg(v.id) AS ids, array_agg(v.source) AS sources, array_agg(v.occurred_on) AS days
        FROM life_evidence_all v
        WHERE v.person_id = p.id AND v.occurred_on BETWEEN $4 AND $5 AND v.source = ANY ($6::text[])
    ) x ON true
    WHERE p.id > $1 AND p.vital_status = 'alive' AND e.status = 'active'
      AND (p.certified_until IS NULL OR p.certified_until <= $2)
    ORDER BY p.id
    LIMIT $3"""


async def candidates(
    db: Db, after: uuid.UUID | None, due_by: date, batch: int, since: date, on: date, sources: Sequence[str]
) -> list[asyncpg.Record]:
    return await db.fetch(CANDIDATES_SQL, after or _NO_PERSON, due_by, batch, since, on, list(sources))


# The batch's confirmations, in one statement: eligibility extended as a face pass extends it (for the
# living only: a death recorded since the batch was read wins), and each confirmation recorded with its
# trail. The trails come as uuid[] literals: one array per person, of any length.
CONFIRM_SQL = f"""
    WITH chosen AS (
        SELECT c.person_id, c.trail::uuid[] AS evidence_ids, c.previous_until
        FROM unnest($1::uuid[], $2::text[], $3::date[]) AS c (person_id, trail, previous_until)
    ), extended AS (
        UPDATE persons p SET {EXTEND_ELIGIBILITY.format(extended="$5::date")}
        FROM chosen c
        WHERE p.id = c.person_id AND p.vital_status = 'alive'
        RETURNING p.id, p.certified_until
    )
    INSERT INTO life_confirmations (person_id, pass_id, confirmed_on, previous_until, eligible_until, evidence_ids)
    SELECT x.id, $4, $6, c.previous_until, x.certified_until, c.evidence_ids
    FROM extended x JOIN chosen c ON c.person_id = x.id
    ON CONFLICT (person_id, pass_id) DO NOTHING
    RETURNING person_id, eligible_until"""


async def confirm_batch(
    uow: UnitOfWork,
    pass_id: uuid.UUID,
    on: date,
    extended: date,
    person_ids: Sequence[uuid.UUID],
    trails: Sequence[Sequence[uuid.UUID]],
    previous: Sequence[date | None],
) -> dict[uuid.UUID, date]:
    """Each confirmed person's eligibility now."""
    literals = ["{" + ",".join(str(i) for i in trail) + "}" for trail in trails]
    rows = await uow.fetch(CONFIRM_SQL, person_ids, literals, previous, pass_id, extended, on)
    return {row["person_id"]: row["eligible_until"] for row in rows}


async def advance_pass(
    uow: UnitOfWork, pass_id: uuid.UUID, last_person: uuid.UUID | None, scanned: int, confirmed: int
) -> None:
    """The pass's progress, in the batch's transaction; a batch that found nobody completes it."""
    await uow.execute(
        """UPDATE silent_passes SET resume_after = coalesce($2, resume_after), scanned = scanned + $3,
               confirmed = confirmed + $4,
               state = CASE WHEN $3 = 0 THEN 'completed' ELSE state END,
               completed_at = CASE WHEN $3 = 0 THEN (SELECT now()) END
           WHERE id = $1""",
        pass_id,
        last_person,
        scanned,
        confirmed,
    )


# -- the trail ---------------------------------------------------------------------------------------
async def person(db: Db, person_id: uuid.UUID) -> asyncpg.Record | None:
    return await db.fetchrow(
        "SELECT id, national_id_masked, vital_status, certified_until FROM persons WHERE id = $1", person_id
    )


async def confirmations(db: Db, person_id: uuid.UUID, limit: int) -> list[asyncpg.Record]:
    """The person's confirmations, newest first, each with the evidence rows that made it."""
    return await db.fetch(
        """SELECT c.pass_id, c.confirmed_on, c.previous_until, c.eligible_until, c.created_at,
                  coalesce(jsonb_agg(jsonb_build_object('id', v.id, 'source', v.source,
                                                        'occurred_on', v.occurred_on, 'reference', v.reference)
                                     ORDER BY v.occurred_on DESC, v.source, v.id)
                           FILTER (WHERE v.id IS NOT NULL), '[]') AS evidence
           FROM life_confirmations c
           LEFT JOIN life_evidence_all v ON v.person_id = c.person_id AND v.id = ANY (c.evidence_ids)
           WHERE c.person_id = $1
           GROUP BY c.person_id, c.pass_id
           ORDER BY c.confirmed_on DESC, c.pass_id DESC
           LIMIT $2""",
        person_id,
        limit,
    )


async def recent_evidence(db: Db, person_id: uuid.UUID, limit: int) -> list[asyncpg.Record]:
    """Every event recorded for the person (QR charges included), newest first."""
    return await db.fetch(
        """SELECT id, source, occurred_on, reference FROM life_evidence_all
           WHERE person_id = $1 ORDER BY occurred_on DESC, source, id LIMIT $2""",
        person_id,
        limit,
    )
