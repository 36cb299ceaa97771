"""SQL for in-person requests, certifications made in person, and appeals."""

from __future__ import annotations

import uuid
from datetime import date, datetime

import asyncpg

from infra.db import Db, UnitOfWork

_REQUEST = "id, person_id, kind, note, state, requested_at, scheduled_for, place, scheduled_by, closed_at, closed_by"
_APPEAL = (
    "id, person_id, subject, subject_id, statement, state, submitted_at, due_at, decided_by, decided_at, outcome_reason"
)


async def person_by_national_id_hash(uow: UnitOfWork, national_id_hash: bytes) -> asyncpg.Record | None:
    # The id through the national ID lookup table, then the person by id: each statement on one shard.
    person_id = await uow.fetchval(
        "SELECT person_id FROM person_national_ids WHERE national_id_hash = $1", national_id_hash
    )
    if person_id is None:
        return None
    return await uow.fetchrow("SELECT id, national_id_masked FROM persons WHERE id = $1", person_id)


async def person_by_id(uow: UnitOfWork, person_id: uuid.UUID) -> asyncpg.Record:
    row = await uow.fetchrow("SELECT id, national_id_masked FROM persons WHERE id = $1", person_id)
    assert row is not None  # a request's person (a foreign key)
    return row


async def open_request(uow: UnitOfWork, person_id: uuid.UUID) -> asyncpg.Record | None:
    return await uow.fetchrow(
        f"SELECT {_REQUEST} FROM in_person_requests WHERE person_id = $1 AND state IN ('requested', 'scheduled')",
        person_id,
    )


async def insert_request(uow: UnitOfWork, person_id: uuid.UUID, kind: str, note: str) -> asyncpg.Record:
    row = await uow.fetchrow(
        f"INSERT INTO in_person_requests (person_id, kind, note) VALUES ($1, $2, $3) RETURNING {_REQUEST}",
        person_id,
        kind,
        note,
    )
    assert row is not None
    return row


async def requests_of(db: Db, person_id: uuid.UUID) -> list[asyncpg.Record]:
    return await db.fetch(
        f"SELECT {_REQUEST} FROM in_person_requests WHERE person_id = $1 ORDER BY requested_at DESC LIMIT 20",
        person_id,
    )


async def request_by_id(uow: UnitOfWork, request_id: uuid.UUID) -> asyncpg.Record | None:
    """A request, locked for a change of state."""
    return await uow.fetchrow(f"SELECT {_REQUEST} FROM in_person_requests WHERE id = $1 FOR UPDATE", request_id)


async def schedule(
    uow: UnitOfWork, person_id: uuid.UUID, request_id: uuid.UUID, at: datetime, place: str, operator: str
) -> asyncpg.Record:
    row = await uow.fetchrow(
        f"""UPDATE in_person_requests SET state = 'scheduled', scheduled_for = $3, place = $4, scheduled_by = $5
            WHERE person_id = $1 AND id = $2 RETURNING {_REQUEST}""",
        person_id,
        request_id,
        at,
        place,
        operator,
    )
    assert row is not None
    return row


async def close_request(
    uow: UnitOfWork, person_id: uuid.UUID, request_id: uuid.UUID, state: str, actor: str
) -> asyncpg.Record:
    row = await uow.fetchrow(
        f"""UPDATE in_person_requests SET state = $3, closed_at = now(), closed_by = $4
            WHERE person_id = $1 AND id = $2 RETURNING {_REQUEST}""",
        person_id,
        request_id,
        state,
        actor,
    )
    assert row is not None
    return row


# Persons shown to operators by their masked ID, name and region, the oldest request first.
OPEN_REQUESTS_SQL = f"""
    SELECT {", ".join("r." + c for c in _REQUEST.split(", "))}, p.national_id_masked AS masked_national_id, p.name, p.region
    FROM in_person_requests r JOIN persons p ON p.id = r.person_id
    WHERE r.state IN ('requested', 'scheduled')
    ORDER BY r.requested_at, r.id
    LIMIT $1
"""


async def open_requests(db: Db, limit: int) -> list[asyncpg.Record]:
    return await db.fetch(OPEN_REQUESTS_SQL, limit)


async def insert_certification(
    uow: UnitOfWork,
    person_id: uuid.UUID,
    method: str,
    request_id: uuid.UUID | None,
    operator: str,
    reason: str,
    certified_on: date,
    eligible_until: date,
) -> uuid.UUID:
    certification_id: uuid.UUID = await uow.fetchval(
        """INSERT INTO in_person_certifications
               (person_id, method, request_id, operator, reason, certified_on, eligible_until)
           VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id""",
        person_id,
        method,
        request_id,
        operator,
        reason,
        certified_on,
        eligible_until,
    )
    return certification_id


async def certifications_of(db: Db, person_id: uuid.UUID) -> list[asyncpg.Record]:
    return await db.fetch(
        """SELECT id, method, request_id, operator, reason, certified_on, eligible_until, recorded_at
           FROM in_person_certifications WHERE person_id = $1 ORDER BY recorded_at DESC LIMIT 20""",
        person_id,
    )


async def withheld_payment(uow: UnitOfWork, person_id: uuid.UUID, payment_id: uuid.UUID) -> asyncpg.Record | None:
    return await uow.fetchrow(
        "SELECT status, back_paid_by IS NOT NULL AS back_paid FROM pension_payments WHERE person_id = $1 AND id = $2",
        person_id,
        payment_id,
    )


async def check_status(uow: UnitOfWork, person_id: uuid.UUID, check_id: uuid.UUID) -> str | None:
    status: str | None = await uow.fetchval(
        "SELECT status FROM certification_checks WHERE person_id = $1 AND id = $2", person_id, check_id
    )
    return status


async def open_appeal(
    uow: UnitOfWork, person_id: uuid.UUID, subject: str, subject_id: uuid.UUID
) -> asyncpg.Record | None:
    return await uow.fetchrow(
        f"""SELECT {_APPEAL} FROM appeals
            WHERE person_id = $1 AND subject = $2 AND subject_id = $3 AND state = 'submitted'""",
        person_id,
        subject,
        subject_id,
    )


async def insert_appeal(
    uow: UnitOfWork, person_id: uuid.UUID, subject: str, subject_id: uuid.UUID, statement: str, answer_days: int
) -> asyncpg.Record:
    row = await uow.fetchrow(
        f"""INSERT INTO appeals (person_id, subject, subject_id, statement, due_at)
            VALUES ($1, $2, $3, $4, now() + make_interval(days => $5)) RETURNING {_APPEAL}""",
        person_id,
        subject,
        subject_id,
        statement,
        answer_days,
    )
    assert row is not None
    return row


async def appeals_of(db: Db, person_id: uuid.UUID) -> list[asyncpg.Record]:
    return await db.fetch(
        f"SELECT {_APPEAL} FROM appeals WHERE person_id = $1 ORDER BY submitted_at DESC LIMIT 20", person_id
    )


async def appeal_by_id(uow: UnitOfWork, appeal_id: uuid.UUID) -> asyncpg.Record | None:
    """An appeal, locked for its decision."""
    return await uow.fetchrow(f"SELECT {_APPEAL} FROM appeals WHERE id = $1 FOR UPDATE", appeal_id)


async def decide_appeal(
    uow: UnitOfWork, person_id: uuid.UUID, appeal_id: uuid.UUID, outcome: str, operator: str, reason: str
) -> asyncpg.Record:
    row = await uow.fetchrow(
        f"""UPDATE appeals SET state = $3, decided_by = $4, decided_at = now(), outcome_reason = $5
            WHERE person_id = $1 AND id = $2 RETURNING {_APPEAL}""",
        person_id,
        appeal_id,
        outcome,
        operator,
        reason,
    )
    assert row is not None
    return row


# The open appeals, the answer most due first, with who appealed.
OPEN_APPEALS_SQL = f"""
    SELECT {", ".join("a." + c for c in _APPEAL.split(", "))}, p.national_id_masked AS masked_national_id, p.name, p.region
    FROM appeals a JOIN persons p ON p.id = a.person_id
    WHERE a.state = 'submitted'
    ORDER BY a.due_at, a.id
    LIMIT $1
"""


async def open_appeals(db: Db, limit: int) -> list[asyncpg.Record]:
    return await db.fetch(OPEN_APPEALS_SQL, limit)
