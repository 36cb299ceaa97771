"""SQL for fund supervision: each finding as one set-based statement into pg_temp.findings, then the
alerts upserted from it; the keyed account hashes the shared-account finding groups by.

A finding is (kind, finding_key, person_ids, fingerprint, evidence). The fingerprint names what the
finding is made of (its persons; for activity after a death, each check, charge or certification):
a closed alert opens again only when a scan's fingerprint holds something the closed one did not.
Evidence names persons by id; the console resolves names and masked ID numbers when it shows them.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime

import asyncpg

from infra.db import Db, UnitOfWork

SCAN_LOCK = 0x5355_5056  # "SUPV": one scan at a time

CREATE_FINDINGS = """
    CREATE TEMP TABLE findings (
        kind text NOT NULL, finding_key text NOT NULL, person_ids uuid[] NOT NULL,
        fingerprint text[] NOT NULL, evidence jsonb NOT NULL
    ) ON COMMIT DROP"""

# Active pensions of living persons whose accounts hash alike. A hash computed from an older
# ciphertext than the entitlement holds is not trusted (refresh_account_hashes runs first).
SHARED_ACCOUNT_SQL = """
    INSERT INTO findings
    SELECT 'shared_account', 'shared_account:' || encode(h.account_hash, 'hex'),
           array_agg(e.person_id ORDER BY e.person_id), array_agg(e.person_id::text ORDER BY e.person_id),
           jsonb_build_object(
               'account', min(e.bank_account_masked),
               'pensions', jsonb_agg(jsonb_build_object('person_id', e.person_id,
                   'monthly_amount_fen', e.monthly_amount_fen, 'start_month', e.start_month) ORDER BY e.person_id))
    FROM supervision_account_hashes h
    JOIN pension_entitlements e ON e.person_id = h.person_id AND e.status = 'active'
    JOIN persons p ON p.id = e.person_id AND p.vital_status = 'alive'
    WHERE h.enc_sha256 = sha256(e.bank_account_enc)
    GROUP BY h.account_hash
    HAVING count(*) >= $1"""

# Each check passed in the window is probed (HNSW, nearest first) for other persons' faces: their
# reference photo or a check of theirs that passed. One alert per pair of persons.
SHARED_FACE_SQL = """
    WITH probe AS (
        SELECT c.id AS check_id, c.person_id, c.submitted_at, t.template
        FROM certification_checks c JOIN face_templates t ON t.person_id = c.person_id AND t.check_id = c.id
        WHERE c.status = 'passed' AND c.decided_at > $1 AND c.decided_at <= $2
    ), hit AS (
        SELECT probe.check_id, probe.person_id, probe.submitted_at,
               n.person_id AS other_id, n.check_id AS other_check, n.distance
        FROM probe CROSS JOIN LATERAL (
            SELECT o.person_id, o.check_id, o.template <-> probe.template AS distance
            FROM face_templates o
            WHERE o.person_id <> probe.person_id
            ORDER BY o.template <-> probe.template
            LIMIT 5
        ) n
        WHERE n.distance <= $3
          AND (n.check_id IS NULL
               OR EXISTS (SELECT 1 FROM certification_checks oc
                           WHERE oc.person_id = n.person_id AND oc.id = n.check_id AND oc.status = 'passed'))
    ), pair AS (
        SELECT least(person_id, other_id) AS a, greatest(person_id, other_id) AS b, * FROM hit
    )
    INSERT INTO findings
    SELECT 'shared_face', 'shared_face:' || a || ':' || b, ARRAY[a, b], ARRAY[a::text, b::text],
           jsonb_build_object('matches', jsonb_agg(jsonb_build_object(
               'check_id', check_id, 'person_id', person_id, 'submitted_at', submitted_at,
               'matched_person_id', other_id, 'matched_check_id', other_check,
               'matched', CASE WHEN other_check IS NULL THEN 'reference_photo' ELSE 'passed_check' END,
               'distance', round(distance::numeric, 3)) ORDER BY check_id, other_check))
    FROM pair GROUP BY a, b"""

# Passed checks submitted while a session of the person's account on a device was live, grouped by
# the device: one device certifying `$2` or more persons within `$1` days.
SHARED_DEVICE_SQL = """
    WITH certified AS (
        SELECT DISTINCT s.device_id, c.person_id, c.id AS check_id, c.submitted_at
        FROM certification_checks c
        JOIN accounts a ON a.person_id = c.person_id
        JOIN sessions s ON s.principal_kind = 'account' AND s.principal_id = a.id AND s.device_id IS NOT NULL
                       AND s.created_at <= c.submitted_at AND c.submitted_at <= coalesce(s.revoked_at, s.expires_at)
        WHERE c.status = 'passed' AND c.submitted_at > now() - make_interval(days => $1)
    ), shared AS (
        SELECT device_id FROM certified GROUP BY device_id HAVING count(DISTINCT person_id) >= $2
    )
    INSERT INTO findings
    SELECT 'shared_device', 'shared_device:' || md5(c.device_id),
           array_agg(DISTINCT c.person_id), array_agg(DISTINCT c.person_id::text),
           jsonb_build_object('device_id', c.device_id, 'checks', jsonb_agg(jsonb_build_object(
               'check_id', c.check_id, 'person_id', c.person_id, 'submitted_at', c.submitted_at)
               ORDER BY c.submitted_at))
    FROM certified c JOIN shared USING (device_id)
    GROUP BY c.device_id"""

# A standing death record, and what the person "did" after the day of death (China's calendar day):
# a face check that passed, a certification in person, a confirmation by data, a QR charge.
AFTER_DEATH_SQL = """
    WITH death AS (
        SELECT id, person_id, date_of_death FROM death_records WHERE reversed_at IS NULL
    ), event AS (
        SELECT d.id AS death_id, d.person_id, d.date_of_death, 'face_check' AS what, c.id::text AS item,
               c.submitted_at AS at, NULL::bigint AS amount_fen, NULL::text AS place
        FROM death d JOIN certification_checks c ON c.person_id = d.person_id AND c.status = 'passed'
        WHERE (c.submitted_at AT TIME ZONE 'Asia/Shanghai')::date > d.date_of_death
        UNION ALL
        SELECT d.id, d.person_id, d.date_of_death, 'in_person', i.id::text, i.recorded_at, NULL, i.method
        FROM death d JOIN in_person_certifications i ON i.person_id = d.person_id
        WHERE i.certified_on > d.date_of_death
        UNION ALL
        SELECT d.id, d.person_id, d.date_of_death, 'data_confirmation', l.pass_id::text, l.created_at, NULL, NULL
        FROM death d JOIN life_confirmations l ON l.person_id = d.person_id
        WHERE l.confirmed_on > d.date_of_death
        UNION ALL
        SELECT d.id, d.person_id, d.date_of_death, 'charge', m.id::text, m.created_at, m.amount_fen, t.merchant
        FROM death d JOIN medical_charges m ON m.person_id = d.person_id JOIN terminals t ON t.id = m.terminal_id
        WHERE (m.created_at AT TIME ZONE 'Asia/Shanghai')::date > d.date_of_death
    )
    INSERT INTO findings
    SELECT 'after_death', 'after_death:' || death_id, ARRAY[person_id], array_agg(what || ':' || item ORDER BY item),
           jsonb_build_object('death_record_id', death_id, 'date_of_death', date_of_death,
               'events', jsonb_agg(jsonb_build_object('what', what, 'id', item, 'at', at,
                   'amount_fen', amount_fen, 'place', place) ORDER BY at))
    FROM event GROUP BY death_id, person_id, date_of_death"""

# Each person's latest payment in the last `$1` months of runs, against their latest evidence of life
# up to its pay date (a passed face check, a certification in person, any evidence-of-life event:
# feeds and QR charges): stale when older than `$1` months, or none at all. The evidence adds up the
# payments made after the evidence went stale. The runs (`$2`…`$4`: id, period, pay date) are passed in,
# read beforehand by `find_no_life_evidence`: they are the coordinator's, and Citus joins no
# coordinator table with a distributed one.
NO_LIFE_EVIDENCE_SQL = """
    WITH paid AS (
        SELECT DISTINCT ON (p.person_id) p.person_id, r.pay_date
        FROM pension_payments p JOIN unnest($2::uuid[], $3::date[], $4::date[]) AS r (id, period, pay_date)
             ON r.id = p.run_id
        WHERE p.status = 'paid' AND p.bank_status <> 'returned'
          AND r.period >= date_trunc('month', now() - make_interval(months => $1))
        ORDER BY p.person_id, r.pay_date DESC
    ), latest AS (
        SELECT paid.person_id, paid.pay_date, ev.on_day, ev.source
        FROM paid LEFT JOIN LATERAL (
            SELECT x.on_day, x.source FROM (
                SELECT (c.submitted_at AT TIME ZONE 'Asia/Shanghai')::date AS on_day, 'face_check' AS source
                FROM certification_checks c WHERE c.person_id = paid.person_id AND c.status = 'passed'
                UNION ALL
                SELECT i.certified_on, 'in_person' FROM in_person_certifications i WHERE i.person_id = paid.person_id
                UNION ALL
                SELECT e.occurred_on, e.source FROM life_evidence_all e WHERE e.person_id = paid.person_id
            ) x
            WHERE x.on_day <= paid.pay_date
            ORDER BY x.on_day DESC LIMIT 1
        ) ev ON true
    ), stale AS (
        SELECT * FROM latest WHERE on_day IS NULL OR on_day < pay_date - make_interval(months => $1)
    ), money AS (
        SELECT s.person_id, count(*) AS payments, sum(p.amount_fen)::bigint AS amount_fen,
               min(p.period) AS first_period, max(p.period) AS last_period
        FROM stale s
        JOIN pension_payments p ON p.person_id = s.person_id AND p.status = 'paid' AND p.bank_status <> 'returned'
        JOIN unnest($2::uuid[], $3::date[], $4::date[]) AS r (id, period, pay_date) ON r.id = p.run_id
        WHERE s.on_day IS NULL OR r.pay_date > s.on_day + make_interval(months => $1)
        GROUP BY s.person_id
    )
    INSERT INTO findings
    SELECT 'no_life_evidence', 'no_life_evidence:' || s.person_id, ARRAY[s.person_id],
           ARRAY[s.person_id::text, 'evidence:' || coalesce(s.on_day::text, 'none')],
           jsonb_build_object('last_evidence_on', s.on_day, 'last_evidence_source', s.source,
               'paid_since', jsonb_build_object('payments', m.payments, 'amount_fen', m.amount_fen,
                                                'first_period', m.first_period, 'last_period', m.last_period))
    FROM stale s JOIN money m USING (person_id)"""


async def start_scan(uow: UnitOfWork) -> tuple[datetime | None, datetime]:
    """One scan at a time (a second waits, then finds what the first left); the previous scan's face
    watermark and the database's now (the checks' decision times are the database's clock, so the
    watermark is too); and an empty findings table for this transaction."""
    await uow.execute("SELECT pg_advisory_xact_lock($1)", SCAN_LOCK)
    await uow.execute(CREATE_FINDINGS)
    row = await uow.fetchrow("SELECT max(faces_through) AS through, clock_timestamp() AS now FROM supervision_scans")
    assert row is not None  # an aggregate always gives one row
    return row["through"], row["now"]


async def find(uow: UnitOfWork, sql: str, *args: object) -> int:
    status = await uow.execute(sql, *args)
    return int(status.split()[-1])


async def find_no_life_evidence(uow: UnitOfWork, months: int) -> int:
    runs = await uow.fetch("SELECT id, period, pay_date FROM disbursement_runs")
    return await find(
        uow,
        NO_LIFE_EVIDENCE_SQL,
        months,
        [r["id"] for r in runs],
        [r["period"] for r in runs],
        [r["pay_date"] for r in runs],
    )


# A closed alert whose finding now names something its closing did not see: open again.
REOPEN_SQL = """
    UPDATE supervision_alerts a
    SET state = 'open', reopened = a.reopened + 1, closed_at = NULL, closed_by = NULL, close_reason = NULL
    FROM findings f
    WHERE a.finding_key = f.finding_key AND a.state = 'closed' AND NOT (f.fingerprint <@ a.fingerprint)
    RETURNING a.id, a.kind"""

# New findings become alerts; known ones get the scan's evidence (a face pair keeps every match seen:
# each scan probes only the checks decided since the last) and the union of fingerprints.
UPSERT_SQL = """
    INSERT INTO supervision_alerts (kind, finding_key, person_ids, fingerprint, evidence)
    SELECT kind, finding_key, person_ids, fingerprint, evidence FROM findings
    ON CONFLICT (finding_key) DO UPDATE SET
        person_ids = excluded.person_ids,
        fingerprint = ARRAY(SELECT DISTINCT x FROM unnest(supervision_alerts.fingerprint || excluded.fingerprint) x
                            ORDER BY x),
        evidence = CASE WHEN supervision_alerts.kind = 'shared_face'
                        THEN jsonb_build_object('matches', (
                            SELECT jsonb_agg(DISTINCT m) FROM jsonb_array_elements(
                                (supervision_alerts.evidence -> 'matches') || (excluded.evidence -> 'matches')) m))
                        ELSE excluded.evidence END,
        last_seen_at = now()
    RETURNING id, kind, (xmax = 0) AS raised"""


async def upsert(uow: UnitOfWork) -> tuple[list[asyncpg.Record], list[asyncpg.Record]]:
    """(reopened, upserted) alerts."""
    reopened = await uow.fetch(REOPEN_SQL)
    return reopened, await uow.fetch(UPSERT_SQL)


async def finish_scan(uow: UnitOfWork, actor: str, faces_through: datetime, counts: str) -> uuid.UUID:
    scan_id: uuid.UUID = await uow.fetchval(
        "INSERT INTO supervision_scans (requested_by, faces_through, counts) VALUES ($1, $2, $3::jsonb) RETURNING id",
        actor,
        faces_through,
        counts,
    )
    return scan_id


# -- account hashes ---------------------------------------------------------------------------------
async def stale_account_hashes(db: Db, limit: int) -> list[asyncpg.Record]:
    """Entitlements whose account has no hash, or one made from another ciphertext than it holds."""
    return await db.fetch(
        """SELECT e.person_id, e.bank_account_enc
           FROM pension_entitlements e LEFT JOIN supervision_account_hashes h ON h.person_id = e.person_id
           WHERE h.person_id IS NULL OR h.enc_sha256 <> sha256(e.bank_account_enc)
           LIMIT $1""",
        limit,
    )


async def save_account_hashes(
    db: Db, person_ids: Sequence[uuid.UUID], ciphertexts: Sequence[bytes], hashes: Sequence[bytes]
) -> None:
    await db.execute(
        """INSERT INTO supervision_account_hashes (person_id, enc_sha256, account_hash)
           SELECT person_id, sha256(enc), hash FROM unnest($1::uuid[], $2::bytea[], $3::bytea[]) AS x (person_id, enc, hash)
           ON CONFLICT (person_id) DO UPDATE SET enc_sha256 = excluded.enc_sha256, account_hash = excluded.account_hash""",
        list(person_ids),
        list(ciphertexts),
        list(hashes),
    )


# -- operators --------------------------------------------------------------------------------------
_ALERT = """a.id, a.kind, a.state, a.person_ids, a.evidence, a.first_seen_at, a.last_seen_at, a.reopened,
            a.closed_at, a.closed_by, a.close_reason,
            (SELECT coalesce(jsonb_agg(jsonb_build_object('person_id', p.id, 'name', p.name,
                        'masked_national_id', p.national_id_masked, 'region', p.region,
                        'vital_status', p.vital_status) ORDER BY p.id), '[]')
             FROM persons p WHERE p.id = ANY (a.person_ids)) AS persons"""


async def alerts(
    db: Db, kind: str | None, state: str | None, before: uuid.UUID | None, limit: int
) -> list[asyncpg.Record]:
    """Newest first (ids are UUIDv7)."""
    return await db.fetch(
        f"""SELECT {_ALERT} FROM supervision_alerts a
            WHERE ($1::text IS NULL OR a.kind = $1) AND ($2::text IS NULL OR a.state = $2)
              AND ($3::uuid IS NULL OR a.id < $3)
            ORDER BY a.id DESC LIMIT $4""",
        kind,
        state,
        before,
        limit,
    )


async def alert(db: Db, alert_id: uuid.UUID) -> asyncpg.Record | None:
    return await db.fetchrow(f"SELECT {_ALERT} FROM supervision_alerts a WHERE a.id = $1", alert_id)


async def lock_alert(uow: UnitOfWork, alert_id: uuid.UUID) -> asyncpg.Record | None:
    return await uow.fetchrow(
        "SELECT id, kind, state, person_ids FROM supervision_alerts WHERE id = $1 FOR UPDATE", alert_id
    )


async def close_alert(uow: UnitOfWork, alert_id: uuid.UUID, actor: str, reason: str) -> None:
    await uow.execute(
        """UPDATE supervision_alerts SET state = 'closed', closed_at = now(), closed_by = $2, close_reason = $3
           WHERE id = $1""",
        alert_id,
        actor,
        reason,
    )
