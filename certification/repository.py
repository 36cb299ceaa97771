"""SQL for consents, challenges, checks, reference enrolments and the events decisions write."""

from __future__ import annotations

import uuid
from datetime import date, datetime
from typing import Any

import asyncpg

from certification.rules import extended_until
from infra.db import Db, UnitOfWork

CONSENT_TEXT_VERSION = "2026-11"


# -- consent -------------------------------------------------------------------------------------
async def grant_consent(
    uow: UnitOfWork, person_id: uuid.UUID, account_id: uuid.UUID | None, version: str, recorded_by: str | None = None
) -> datetime:
    """The standing consent's grant time; granting again keeps the first grant. Given without the
    person's own account (to a relative, before an operator), `recorded_by` names who recorded it.
    `account_id` is the request's signed-in account, whose session was resolved for the request, and
    accounts are never deleted: that keeps it an account, as no foreign key can (accounts are the
    coordinator's, consents a person's)."""
    granted: datetime | None = await uow.fetchval(
        """INSERT INTO biometric_consents (person_id, account_id, text_version, recorded_by) VALUES ($1, $2, $3, $4)
           ON CONFLICT (person_id) WHERE withdrawn_at IS NULL DO NOTHING RETURNING granted_at""",
        person_id,
        account_id,
        version,
        recorded_by,
    )
    if granted is None:
        granted = await uow.fetchval(
            "SELECT granted_at FROM biometric_consents WHERE person_id = $1 AND withdrawn_at IS NULL", person_id
        )
    assert granted is not None
    return granted


async def withdraw_consent(uow: UnitOfWork, person_id: uuid.UUID) -> bool:
    status = await uow.execute(
        "UPDATE biometric_consents SET withdrawn_at = now() WHERE person_id = $1 AND withdrawn_at IS NULL", person_id
    )
    return status != "UPDATE 0"


async def has_consent(db: Db, person_id: uuid.UUID) -> bool:
    return bool(
        await db.fetchval(
            "SELECT EXISTS (SELECT 1 FROM biometric_consents WHERE person_id = $1 AND withdrawn_at IS NULL)", person_id
        )
    )


# -- challenges ----------------------------------------------------------------------------------
async def challenges_since(db: Db, person_id: uuid.UUID, since: datetime) -> int:
    count: int = await db.fetchval(
        "SELECT count(*) FROM certification_challenges WHERE person_id = $1 AND created_at > $2", person_id, since
    )
    return count


async def create_challenge(
    uow: UnitOfWork,
    challenge_id: uuid.UUID,
    person_id: uuid.UUID,
    actions: tuple[str, ...],
    upload_prefix: str,
    expires_at: datetime,
    assisted_by: uuid.UUID | None = None,
) -> None:
    await uow.execute(
        """INSERT INTO certification_challenges (id, person_id, actions, upload_prefix, expires_at, assisted_by)
           VALUES ($1, $2, $3, $4, $5, $6)""",
        challenge_id,
        person_id,
        list(actions),
        upload_prefix,
        expires_at,
        assisted_by,
    )


async def challenge_for_submission(
    uow: UnitOfWork, challenge_id: uuid.UUID, person_id: uuid.UUID
) -> asyncpg.Record | None:
    """The person's challenge, locked, with whether it was already used. Locked alone first, then read:
    Citus takes `FOR UPDATE` on a single-shard query without subqueries only."""
    await uow.execute(
        "SELECT 1 FROM certification_challenges WHERE person_id = $2 AND id = $1 FOR UPDATE", challenge_id, person_id
    )
    return await uow.fetchrow(
        """SELECT c.id, c.actions, c.upload_prefix, c.expires_at, c.expires_at < now() AS expired, c.assisted_by,
                  EXISTS (SELECT 1 FROM certification_checks k
                          WHERE k.person_id = c.person_id AND k.challenge_id = c.id) AS used
           FROM certification_challenges c WHERE c.id = $1 AND c.person_id = $2""",
        challenge_id,
        person_id,
    )


# -- checks --------------------------------------------------------------------------------------
async def create_check(
    uow: UnitOfWork,
    person_id: uuid.UUID,
    challenge_id: uuid.UUID,
    actions: list[str],
    media_kind: str,
    media_keys: list[str],
    media_bytes: int,
    request_id: str | None,
    assisted: tuple[uuid.UUID, uuid.UUID, str | None, uuid.UUID | None] | None = None,
    hold_reasons: tuple[str, ...] = (),
) -> uuid.UUID:
    """A check; `assisted`: the relative who submitted it for the person (helper, link, device, session)."""
    helper, link, device, session = assisted or (None, None, None, None)
    check_id: uuid.UUID = await uow.fetchval(
        """INSERT INTO certification_checks
               (person_id, challenge_id, actions, media_kind, media_keys, media_bytes, request_id,
                assisted_by, assisted_link, assisted_device, assisted_session, hold_reasons)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) RETURNING id""",
        person_id,
        challenge_id,
        actions,
        media_kind,
        media_keys,
        media_bytes,
        request_id,
        helper,
        link,
        device,
        session,
        list(hold_reasons),
    )
    return check_id


async def hold_reasons(db: Db, person_id: uuid.UUID, check_id: uuid.UUID) -> list[str]:
    held: list[str] = await db.fetchval(
        "SELECT hold_reasons FROM certification_checks WHERE person_id = $1 AND id = $2", person_id, check_id
    )
    return held


async def person_of_check(db: Db, check_id: uuid.UUID) -> uuid.UUID | None:
    """The person of a check known only by its id (an operator's link, a job queued before its payload
    named the person): on a cluster a read of every shard (certification_checks_id_idx), never a lock."""
    person_id: uuid.UUID | None = await db.fetchval(
        "SELECT person_id FROM certification_checks WHERE id = $1", check_id
    )
    return person_id


async def helper(db: Db, helper_id: uuid.UUID) -> asyncpg.Record | None:
    """A relative who helped, by their person id: another person, read on their own shard."""
    return await db.fetchrow("SELECT id, name, national_id_masked FROM persons WHERE id = $1", helper_id)


async def assisted_by(db: Db, person_id: uuid.UUID, check_id: uuid.UUID) -> asyncpg.Record | None:
    """The relative who submitted a check for its person (their id and name), or None."""
    helper_id: uuid.UUID | None = await db.fetchval(
        "SELECT assisted_by FROM certification_checks WHERE person_id = $1 AND id = $2", person_id, check_id
    )
    return await helper(db, helper_id) if helper_id is not None else None


# What the pensioner is shown of a check (schemas.Check), and the language to show it in; a check a
# relative submitted names them (`_named`: the relative is another person, read on their own shard).
CHECK_COLUMNS = "k.id, k.status, k.actions, k.reasons, k.submitted_at, k.decided_at, p.locale, k.assisted_by"
CHECKS = "certification_checks k JOIN persons p ON p.id = k.person_id"


async def _named(db: Db, row: asyncpg.Record | None) -> dict[str, Any] | None:
    if row is None:
        return None
    shown = dict(row)
    if row["assisted_by"] is not None:
        helped_by = await helper(db, row["assisted_by"])
        shown["assisted_by"] = helped_by["name"] if helped_by is not None else None
    return shown


async def check_of_person(db: Db, check_id: uuid.UUID, person_id: uuid.UUID) -> dict[str, Any] | None:
    return await _named(
        db,
        await db.fetchrow(
            f"SELECT {CHECK_COLUMNS} FROM {CHECKS} WHERE k.person_id = $1 AND k.id = $2", person_id, check_id
        ),
    )


async def latest_check(db: Db, person_id: uuid.UUID) -> dict[str, Any] | None:
    return await _named(
        db,
        await db.fetchrow(
            f"""SELECT {CHECK_COLUMNS} FROM {CHECKS} WHERE k.person_id = $1
                ORDER BY k.submitted_at DESC LIMIT 1""",
            person_id,
        ),
    )


async def failures_since(db: Db, person_id: uuid.UUID, since: datetime) -> int:
    """Checks the worker failed in the window (including the one it sent on to review for being one
    too many), counted from the last human decision: a review restarts the count."""
    count: int = await db.fetchval(
        """SELECT count(*) FROM certification_checks
           WHERE person_id = $1 AND worker_outcome = 'failed'
             AND analysed_at > greatest($2, (SELECT max(decided_at) FROM certification_checks
                                             WHERE person_id = $1 AND decided_by <> 'worker'))""",
        person_id,
        since,
    )
    return count


async def pending_review(db: Db, person_id: uuid.UUID) -> bool:
    return bool(
        await db.fetchval(
            """SELECT EXISTS (SELECT 1 FROM certification_checks
                              WHERE person_id = $1 AND status IN ('needs_review', 'home_visit'))""",
            person_id,
        )
    )


async def lock_person(uow: UnitOfWork, person_id: uuid.UUID) -> str | None:
    """Serialise a person's certification changes (limits counted, then acted on); their vital status."""
    status: str | None = await uow.fetchval("SELECT vital_status FROM persons WHERE id = $1 FOR UPDATE", person_id)
    return status


async def start_analysis(uow: UnitOfWork, person_id: uuid.UUID, check_id: uuid.UUID) -> asyncpg.Record | None:
    """Take a check for analysis; None when it was already decided (a retried job does nothing)."""
    return await uow.fetchrow(
        """UPDATE certification_checks k SET status = 'processing', analysis_attempts = analysis_attempts + 1
           FROM persons p
           WHERE k.person_id = $1 AND k.id = $2 AND k.status IN ('queued', 'processing') AND p.id = k.person_id
           RETURNING k.id, k.person_id, k.actions, k.media_kind, k.media_keys, k.analysis_attempts,
                     k.request_id, p.reference_photo_key""",
        person_id,
        check_id,
    )


async def requeue(uow: UnitOfWork, person_id: uuid.UUID, check_id: uuid.UUID) -> bool:
    status = await uow.execute(
        "UPDATE certification_checks SET status = 'queued' WHERE person_id = $1 AND id = $2 AND status = 'processing'",
        person_id,
        check_id,
    )
    return status == "UPDATE 1"


# What liveness.replay compares an upload with.
EARLIER = "id, person_id, sha256, embedding_enc, frame_hashes, frame_times, actions_detected"


async def earlier_submissions(db: Db, person_id: uuid.UUID, check_id: uuid.UUID) -> list[asyncpg.Record]:
    return await db.fetch(
        f"""SELECT {EARLIER} FROM certification_checks
           WHERE person_id = $1 AND id <> $2 AND sha256 IS NOT NULL ORDER BY submitted_at DESC LIMIT 50""",
        person_id,
        check_id,
    )


async def replay_candidates(
    db: Db, person_id: uuid.UUID, keys: list[int], since: datetime, limit: int = 10
) -> list[asyncpg.Record]:
    """Other persons' checks since `since` that share scene keys with an upload, most shared first:
    an index lookup that finds candidates; liveness.replay decides which, if any, it copies."""
    return await db.fetch(
        f"""SELECT {EARLIER} FROM certification_checks
           WHERE scene_keys && $2::int[] AND person_id <> $1 AND submitted_at > $3 AND sha256 IS NOT NULL
           -- Shared keys counted without INTERSECT, which Citus refuses in a subquery.
           ORDER BY (SELECT count(*) FROM unnest(scene_keys) AS k WHERE k = ANY ($2::int[])) DESC
           LIMIT $4""",
        person_id,
        keys,
        since,
        limit,
    )


async def save_template(uow: UnitOfWork, person_id: uuid.UUID, check_id: uuid.UUID | None, template: str) -> None:
    """A face template for 1:N search: a check's, or the person's one reference (replaced)."""
    if check_id is None:
        await uow.execute(
            """INSERT INTO face_templates (person_id, template) VALUES ($1, $2::vector)
               ON CONFLICT (person_id) WHERE check_id IS NULL
               DO UPDATE SET template = EXCLUDED.template, created_at = EXCLUDED.created_at""",
            person_id,
            template,
        )
    else:
        await uow.execute(
            """INSERT INTO face_templates (person_id, check_id, template) VALUES ($1, $2, $3::vector)
               ON CONFLICT (person_id, check_id) DO NOTHING""",
            person_id,
            check_id,
            template,
        )


async def nearest_other_face(db: Db, person_id: uuid.UUID, template: str, since: datetime) -> asyncpg.Record | None:
    """The nearest template of another person (references, and checks since `since`), with its distance."""
    return await db.fetchrow(
        """SELECT person_id, template <-> $2::vector AS distance FROM face_templates
           WHERE person_id <> $1 AND (check_id IS NULL OR created_at > $3)
           ORDER BY template <-> $2::vector LIMIT 1""",
        person_id,
        template,
        since,
    )


async def record_analysis(
    uow: UnitOfWork,
    person_id: uuid.UUID,
    check_id: uuid.UUID,
    *,
    status: str,
    worker_outcome: str,
    reasons: list[str],
    scores: dict[str, Any],
    actions_detected: list[dict[str, Any]],
    sha256: str,
    frame_hashes: list[int],
    frame_times: list[float],
    scene_keys: list[int],
    embedding_enc: bytes | None,
    replay_of: tuple[uuid.UUID, uuid.UUID] | None,
    review_frame_keys: list[str],
    final: bool,
) -> bool:
    """Write the worker's result once: only a check still being processed takes it. `replay_of`: the
    person and the id of the check this one copies (maybe another person's)."""
    replayed_person, replayed = replay_of or (None, None)
    status_text = await uow.execute(
        """UPDATE certification_checks SET status = $2, worker_outcome = $3, reasons = $4, scores = $5,
               actions_detected = $6, sha256 = $7, frame_hashes = $8, embedding_enc = $9, replay_of = $10,
               review_frame_keys = $11, analysed_at = now(), frame_times = $13, scene_keys = $14,
               decided_at = CASE WHEN $12 THEN (SELECT now()) END, decided_by = CASE WHEN $12 THEN 'worker' END,
               replay_of_person = $15
           WHERE person_id = $16 AND id = $1 AND status = 'processing'""",
        check_id,
        status,
        worker_outcome,
        reasons,
        scores,
        actions_detected,
        sha256,
        frame_hashes,
        embedding_enc,
        replayed,
        review_frame_keys,
        final,
        frame_times,
        scene_keys,
        replayed_person,
        person_id,
    )
    return status_text == "UPDATE 1"


# rules.eligible_until in SQL, for `UPDATE persons p SET ...`: eligibility reaching `{extended}`
# (rules.extended_until of the pass's day), never shorter than an earlier pass left it (greatest
# ignores NULL: a person never certified gets `{extended}`). A face pass (settle) and a confirmation by
# data (certification.evidence) extend eligibility with it alike.
EXTEND_ELIGIBILITY = "certified_until = greatest({extended}, p.certified_until), updated_at = now()"


async def extend_eligibility(uow: UnitOfWork, person_id: uuid.UUID, passed_on: date) -> date:
    """Eligibility after a pass on `passed_on`."""
    until: date = await uow.fetchval(
        f"UPDATE persons p SET {EXTEND_ELIGIBILITY.format(extended='$2::date')} WHERE p.id = $1 RETURNING certified_until",
        person_id,
        extended_until(passed_on),
    )
    return until


async def certified_until(db: Db, person_id: uuid.UUID) -> date | None:
    value: date | None = await db.fetchval("SELECT certified_until FROM persons WHERE id = $1", person_id)
    return value


# -- reference enrolment -------------------------------------------------------------------------
async def enrollment(db: Db, person_id: uuid.UUID, photo_key: str) -> asyncpg.Record | None:
    return await db.fetchrow(
        "SELECT embedding_enc, reasons FROM reference_enrollments WHERE person_id = $1 AND photo_key = $2",
        person_id,
        photo_key,
    )


async def save_enrollment(
    uow: UnitOfWork,
    person_id: uuid.UUID,
    photo_key: str,
    embedding_enc: bytes | None,
    reasons: list[str],
    scores: dict[str, Any],
) -> None:
    await uow.execute(
        """INSERT INTO reference_enrollments (person_id, photo_key, status, embedding_enc, reasons, scores)
           VALUES ($1, $2, CASE WHEN $3::bytea IS NULL THEN 'unusable' ELSE 'enrolled' END, $3, $4, $5)
           ON CONFLICT (person_id, photo_key) DO UPDATE
           SET status = excluded.status, embedding_enc = excluded.embedding_enc, reasons = excluded.reasons,
               scores = excluded.scores, enrolled_at = excluded.enrolled_at""",
        person_id,
        photo_key,
        embedding_enc,
        reasons,
        scores,
    )


# -- retention -----------------------------------------------------------------------------------
async def media_to_purge(db: Db, retention_days: int, batch: int) -> list[asyncpg.Record]:
    return await db.fetch(
        """SELECT person_id, id, media_keys, review_frame_keys FROM certification_checks
           WHERE media_purged_at IS NULL AND decided_at < now() - make_interval(days => $1)
           ORDER BY decided_at LIMIT $2""",
        retention_days,
        batch,
    )


async def mark_purged(db: Db, checks: list[tuple[uuid.UUID, uuid.UUID]]) -> None:
    """Mark each check (person_id, id) purged: a statement per check, each on its person's shard (a
    nightly batch; an interrupted run marks the rest next time)."""
    for person_id, check_id in checks:
        await db.execute(
            "UPDATE certification_checks SET media_purged_at = now() WHERE person_id = $1 AND id = $2",
            person_id,
            check_id,
        )


async def unowned_media(
    db: Db, keys: list[str], persons: list[uuid.UUID | None], review_checks: list[uuid.UUID | None]
) -> list[str]:
    """Those of `keys` no check whose media is not yet purged names, except review frames in the
    folder of a check still queued or processing (`review_checks`, one per key: its worker is about
    to name them). `persons`, one per key: the person whose folder holds it (rules.folder_person), so
    only their shards are read; a key outside any person's folder is looked for in every check.
    Looked up through certification_checks_named_media_idx (0010_orphan_media.sql)."""
    named_sql = """SELECT DISTINCT m.key FROM certification_checks k
                   CROSS JOIN LATERAL unnest(k.media_keys || k.review_frame_keys) AS m (key)
                   WHERE k.media_purged_at IS NULL AND (k.media_keys || k.review_frame_keys) && $1::text[]
                     AND m.key = ANY($1::text[])"""
    if None in persons:
        rows = await db.fetch(named_sql, keys)
    else:
        rows = await db.fetch(named_sql + " AND k.person_id = ANY($2::uuid[])", keys, list(set(persons)))
    named = {row["key"] for row in rows}
    folders = [(p, c) for p, c in zip(persons, review_checks, strict=True) if p is not None and c is not None]
    busy: set[uuid.UUID] = set()
    if folders:
        rows = await db.fetch(
            """SELECT id FROM certification_checks
               WHERE person_id = ANY($1::uuid[]) AND id = ANY($2::uuid[]) AND status IN ('queued', 'processing')""",
            list({p for p, _ in folders}),
            list({c for _, c in folders}),
        )
        busy = {row["id"] for row in rows}
    return [
        key
        for key, check in zip(keys, review_checks, strict=True)
        if key not in named and (check is None or check not in busy)
    ]
