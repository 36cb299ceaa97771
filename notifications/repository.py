"""SQL for the outbox, deliveries, devices and the inbox.

Every writer of notices ends in `_ROUTE`: over a CTE `notice (id, person_id, release_at)` it writes
one push delivery per active device of the person, or one SMS delivery when they have none. The
event, its notice and their deliveries are one statement in the caller's transaction.

Every row is keyed by its person (issue 23: a person's rows sit on one shard of a Citus cluster), and
every query names the person wherever its caller knows them.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import UTC, date, datetime
from typing import Any

import asyncpg
import msgspec

from core.pension import DUE, WITHHELD_REASON
from infra.db import Db, UnitOfWork
from infra.ids import uuid7_texts
from notifications.rules import ReminderWindow

# A row per active device, or one with no device (the SMS). An outer join rather than NOT EXISTS: Citus
# refuses a correlated subquery beside a CTE.
_ROUTE = """
    INSERT INTO deliveries (person_id, notification_id, channel, device_id, next_attempt_at)
    SELECT n.person_id, n.id, CASE WHEN d.id IS NULL THEN 'sms' ELSE 'push' END, d.id, n.release_at
    FROM notice n LEFT JOIN devices d ON d.person_id = n.person_id AND d.deactivated_at IS NULL"""

PUBLISH_SQL = f"""
    WITH event AS (
        INSERT INTO domain_events (kind, person_id, payload, dedupe_key) VALUES ($1, $2, $3, $4)
        ON CONFLICT (person_id, dedupe_key) DO NOTHING
        RETURNING person_id
    ), notice AS (
        INSERT INTO notifications (person_id, kind, params, urgent, dedupe_key, shown_from)
        SELECT person_id, $1, $3, $5, $4, now() FROM event WHERE $6
        ON CONFLICT (person_id, dedupe_key) DO NOTHING
        RETURNING id, person_id, $7::timestamptz AS release_at
    ) {_ROUTE}"""


async def publish(
    uow: UnitOfWork,
    kind: str,
    person_id: uuid.UUID,
    payload: dict[str, Any],
    dedupe_key: str,
    notice: tuple[bool, datetime] | None,
) -> None:
    """The person's event; with `notice` (urgent, release time) also its notification and deliveries."""
    urgent, release = notice if notice is not None else (False, None)
    await uow.execute(PUBLISH_SQL, kind, person_id, payload, dedupe_key, urgent, notice is not None, release)


async def publish_system(uow: UnitOfWork, kind: str, payload: dict[str, Any], dedupe_key: str) -> None:
    """An event of no person: the coordinator's, told to nobody."""
    await uow.execute(
        """INSERT INTO system_events (kind, payload, dedupe_key) VALUES ($1, $2, $3)
           ON CONFLICT (dedupe_key) DO NOTHING""",
        kind,
        payload,
        dedupe_key,
    )


# One batch of a run's payments in (person, kind) order: a notice per payment record, shown from `$7`
# (the pay date's morning, or now if that is past) and released at `$6` (the same, out of quiet
# hours). Kinds sort 'back_pay' < 'monthly' < 'repay'.
ANNOUNCE_BATCH_SQL = f"""
    WITH batch AS (
        SELECT pp.id, pp.person_id, pp.kind, pp.status, pp.period, pp.amount_fen, pp.withheld_reason,
               pp.covers, pp.bank_account_masked
        FROM pension_payments pp
        WHERE pp.run_id = $1 AND ($2::uuid IS NULL OR (pp.person_id, pp.kind) > ($2, $3::text))
        ORDER BY pp.person_id, pp.kind
        LIMIT $4
    ), notice AS (
        INSERT INTO notifications (person_id, kind, params, urgent, dedupe_key, shown_from)
        SELECT b.person_id,
               CASE WHEN b.kind = 'back_pay' THEN 'payment.back_paid' WHEN b.kind = 'repay' THEN 'payment.repaid'
                    WHEN b.status = 'paid' THEN 'payment.paid' ELSE 'payment.withheld' END,
               jsonb_strip_nulls(jsonb_build_object(
                   'payment_id', b.id, 'period', b.period, 'pay_date', $5::date, 'amount_fen', b.amount_fen,
                   'reason', b.withheld_reason, 'covers', b.covers, 'account_masked', b.bank_account_masked)),
               false, 'payment:' || b.id, $7
        FROM batch b
        ON CONFLICT (person_id, dedupe_key) DO NOTHING
        RETURNING id, person_id, $6::timestamptz AS release_at
    ), routed AS ({_ROUTE} RETURNING 1)
    SELECT (SELECT count(*) FROM batch) AS scanned, (SELECT count(*) FROM notice) AS written, last.person_id, last.kind
    FROM (SELECT NULL) one
    LEFT JOIN LATERAL (SELECT person_id, kind FROM batch ORDER BY person_id DESC, kind DESC LIMIT 1) last ON true"""


async def announce_batch(
    uow: UnitOfWork,
    run_id: uuid.UUID,
    after: tuple[uuid.UUID, str] | None,
    batch: int,
    pay_on: date,
    release: datetime,
    shown: datetime,
) -> asyncpg.Record:
    last_person, last_kind = after if after is not None else (None, None)
    row = await uow.fetchrow(ANNOUNCE_BATCH_SQL, run_id, last_person, last_kind, batch, pay_on, release, shown)
    assert row is not None
    return row


# One batch of a silent pass's confirmations in person order: a notice each, in the inbox at once and
# released at `$4` (out of quiet hours).
ANNOUNCE_CONFIRMATIONS_SQL = f"""
    WITH batch AS (
        SELECT c.person_id, c.eligible_until FROM life_confirmations c
        WHERE c.pass_id = $1 AND c.person_id > $2
        ORDER BY c.person_id
        LIMIT $3
    ), notice AS (
        INSERT INTO notifications (person_id, kind, params, urgent, dedupe_key, shown_from)
        SELECT person_id, 'certification.confirmed_by_data', jsonb_build_object('eligible_until', eligible_until),
               false, 'certification.confirmed_by_data:' || $1 || ':' || person_id, now()
        FROM batch
        ON CONFLICT (person_id, dedupe_key) DO NOTHING
        RETURNING id, person_id, $4::timestamptz AS release_at
    ), routed AS ({_ROUTE} RETURNING 1)
    SELECT (SELECT count(*) FROM batch) AS scanned, (SELECT count(*) FROM notice) AS written, last.person_id
    FROM (SELECT NULL) one
    LEFT JOIN LATERAL (SELECT person_id FROM batch ORDER BY person_id DESC LIMIT 1) last ON true"""


async def announce_confirmations_batch(
    uow: UnitOfWork, pass_id: uuid.UUID, after: uuid.UUID, batch: int, release: datetime
) -> asyncpg.Record:
    row = await uow.fetchrow(ANNOUNCE_CONFIRMATIONS_SQL, pass_id, after, batch, release)
    assert row is not None
    return row


async def run_to_announce(db: Db, run_id: uuid.UUID) -> asyncpg.Record | None:
    # The job is queued when the run is released (payments.disbursement); a run still running has no notices.
    return await db.fetchrow("SELECT id, pay_date FROM disbursement_runs WHERE id = $1 AND state <> 'running'", run_id)


REMIND_DUE_SQL = f"""
    WITH due AS (
        SELECT p.id AS person_id, p.certified_until, w.stage
        FROM unnest($1::int[], $2::date[], $3::date[]) AS w (stage, first_due, last_due)
        JOIN persons p ON p.certified_until BETWEEN w.first_due AND w.last_due AND p.vital_status = 'alive'
        JOIN pension_entitlements e ON e.person_id = p.id AND e.status = 'active'
    ), notice AS (
        INSERT INTO notifications (person_id, kind, params, urgent, dedupe_key, shown_from)
        SELECT person_id, 'certification.due',
               jsonb_build_object('due_date', certified_until, 'days_left', certified_until - $4::date, 'stage', stage),
               false, 'certification.due:' || person_id || ':' || certified_until || ':' || stage, now()
        FROM due
        ON CONFLICT (person_id, dedupe_key) DO NOTHING
        RETURNING id, person_id, $5::timestamptz AS release_at
    ), routed AS ({_ROUTE} RETURNING 1)
    SELECT count(*) FROM notice"""


async def remind_due(uow: UnitOfWork, windows: Sequence[ReminderWindow], today: date, release: datetime) -> int:
    written: int = await uow.fetchval(
        REMIND_DUE_SQL,
        [w.stage for w in windows],
        [w.first_due for w in windows],
        [w.last_due for w in windows],
        today,
        release,
    )
    return written


WARN_WITHHELD_SQL = f"""
    WITH warned AS (
        SELECT p.id AS person_id, e.monthly_amount_fen, {WITHHELD_REASON.format(pay_date="$2")} AS reason
        FROM pension_entitlements e JOIN persons p ON p.id = e.person_id
        WHERE {DUE.format(period="$1")}
    ), notice AS (
        INSERT INTO notifications (person_id, kind, params, urgent, dedupe_key, shown_from)
        SELECT person_id, 'payment.will_be_withheld',
               jsonb_build_object('period', $1::date, 'pay_date', $2::date, 'amount_fen', monthly_amount_fen,
                                  'reason', reason),
               false, 'payment.will_be_withheld:' || person_id || ':' || $1::date, now()
        FROM warned WHERE reason IS NOT NULL
        ON CONFLICT (person_id, dedupe_key) DO NOTHING
        RETURNING id, person_id, $3::timestamptz AS release_at
    ), routed AS ({_ROUTE} RETURNING 1)
    SELECT count(*) FROM notice"""


async def warn_withheld(uow: UnitOfWork, period: date, pay_on: date, release: datetime) -> int:
    written: int = await uow.fetchval(WARN_WITHHELD_SQL, period, pay_on, release)
    return written


# -- dispatch ----------------------------------------------------------------------------------

# Due deliveries of one channel, oldest first, each claimed for `$3` seconds and its attempt counted.
# The claim is an UPDATE of the rows a plain SELECT found, not a SELECT … FOR UPDATE SKIP LOCKED (which
# Citus refuses across shards). Two dispatchers may find the same rows: the second one's UPDATE waits
# for the first to commit, then checks the row again (READ COMMITTED), and a row the first claimed is
# no longer due (its lease runs out later), so each delivery goes to one claim.
_CLAIMED = """
    WITH claimed AS (
        UPDATE deliveries d SET attempts = d.attempts + 1, next_attempt_at = now() + make_interval(secs => $3)
        FROM (SELECT person_id, id FROM deliveries
              WHERE channel = $1 AND state = 'pending' AND next_attempt_at <= now()
              ORDER BY next_attempt_at LIMIT $2) due
        WHERE d.person_id = due.person_id AND d.id = due.id AND d.state = 'pending' AND d.next_attempt_at <= now()
        RETURNING d.person_id, d.id, d.notification_id, d.device_id, d.attempts
    )
    SELECT c.person_id, c.id, c.attempts, c.notification_id, c.device_id, n.kind, n.params, n.urgent"""

_NOTICE = "JOIN notifications n ON n.person_id = c.person_id AND n.id = c.notification_id"

# Each channel joins only what it sends with: a push its device, an SMS its person.
CLAIM_SQL = {
    "push": f"""{_CLAIMED}, v.push_token, v.locale AS device_locale, v.deactivated_at IS NOT NULL AS device_gone
        FROM claimed c {_NOTICE} JOIN devices v ON v.person_id = c.person_id AND v.id = c.device_id""",
    "sms": f"""{_CLAIMED}, p.phone, p.locale AS person_locale
        FROM claimed c {_NOTICE} JOIN persons p ON p.id = c.person_id""",
}


async def claim(db: Db, channel: str, limit: int, lease_s: int) -> list[asyncpg.Record]:
    return await db.fetch(CLAIM_SQL[channel], channel, limit, float(lease_s))


# An outcome counts only for the claim that sent it: a dispatcher that outlived its lease does not
# overwrite what the next claim recorded. The time it was sent is a parameter: Citus refuses a stable
# function in a CASE of a write across shards, even as a subquery.
RECORD_SQL = """
    UPDATE deliveries d
    SET state = o.state, last_error = o.error, next_attempt_at = coalesce(o.next_at, d.next_attempt_at),
        sent_at = CASE WHEN o.state = 'sent' THEN $7::timestamptz END
    FROM unnest($1::uuid[], $2::uuid[], $3::int[], $4::text[], $5::text[], $6::timestamptz[])
         AS o (person_id, id, attempts, state, error, next_at)
    WHERE d.person_id = o.person_id AND d.id = o.id AND d.attempts = o.attempts AND d.state = 'pending'"""

DEACTIVATE_SQL = """
    UPDATE devices SET deactivated_at = now(), deactivated_reason = o.error
    FROM unnest($1::uuid[], $2::uuid[], $3::text[]) AS o (person_id, id, error)
    WHERE devices.person_id = o.person_id AND devices.id = o.id AND devices.deactivated_at IS NULL"""

# A notice whose devices all turned out dead goes by SMS, unless a push of it already arrived.
FALL_BACK_SQL = """
    INSERT INTO deliveries (person_id, notification_id, channel, device_id, next_attempt_at)
    SELECT n.person_id, n.id, 'sms', NULL, $3 FROM notifications n
    WHERE (n.person_id, n.id) IN (SELECT * FROM unnest($1::uuid[], $2::uuid[]))
      AND NOT EXISTS (SELECT 1 FROM devices d WHERE d.person_id = n.person_id AND d.deactivated_at IS NULL)
      AND NOT EXISTS (SELECT 1 FROM deliveries x
                      WHERE x.person_id = n.person_id AND x.notification_id = n.id AND x.state = 'sent')
    ON CONFLICT (person_id, notification_id, channel, device_id) DO NOTHING"""


class Outcome(msgspec.Struct, frozen=True):
    """What a dispatcher learnt about one claimed delivery: sent, pending again at `next_at`, dead
    or cancelled (its device is gone)."""

    person_id: uuid.UUID
    id: uuid.UUID
    attempts: int  # the claim's count: see RECORD_SQL
    state: str
    error: str | None = None
    next_at: datetime | None = None


async def record(
    uow: UnitOfWork,
    outcomes: Sequence[Outcome],
    gone: Sequence[tuple[uuid.UUID, uuid.UUID, str]],
    fall_back: Sequence[tuple[uuid.UUID, uuid.UUID]],
    release: datetime,
) -> None:
    """The outcomes; the devices `gone` (person, device, why) retired; the notices in `fall_back`
    (person, notice) sent by SMS if their person has no device left."""
    await uow.execute(
        RECORD_SQL,
        [o.person_id for o in outcomes],
        [o.id for o in outcomes],
        [o.attempts for o in outcomes],
        [o.state for o in outcomes],
        [o.error for o in outcomes],
        [o.next_at for o in outcomes],
        datetime.now(UTC),
    )
    if gone:
        await uow.execute(DEACTIVATE_SQL, [g[0] for g in gone], [g[1] for g in gone], [g[2] for g in gone])
    if fall_back:
        await uow.execute(FALL_BACK_SQL, [f[0] for f in fall_back], [f[1] for f in fall_back], release)


# -- devices -----------------------------------------------------------------------------------


async def session_current(uow: UnitOfWork, session_id: uuid.UUID) -> bool:
    """Whether the sign-in is still on, held so until the transaction ends: a logout or a loss report
    (which retires the session's devices) waits for the registration or comes before it."""
    revoked: asyncpg.Record | None = await uow.fetchrow(
        "SELECT revoked_at FROM sessions WHERE id = $1 FOR SHARE", session_id
    )
    return revoked is not None and revoked["revoked_at"] is None


# The token's owner, its row locked for the transaction: registrations of one token take turns. A
# token seen first is taken by `$2` under the new id `$3`; the no-op update returns the owner it had.
CLAIM_INSTALL_SQL = """
    INSERT INTO push_tokens AS t (push_token, person_id, device_id) VALUES ($1, $2, $3)
    ON CONFLICT (push_token) DO UPDATE SET device_id = t.device_id
    RETURNING t.person_id, t.device_id"""

REGISTER_DEVICE_SQL = """
    INSERT INTO devices (person_id, id, push_token, platform, locale, app_version, session_id)
    VALUES ($1, $2, $3, $4, $5, $6, $7)
    ON CONFLICT (person_id, id) DO UPDATE
    SET platform = excluded.platform, locale = excluded.locale, app_version = excluded.app_version,
        session_id = excluded.session_id, registered_at = excluded.registered_at,
        deactivated_at = NULL, deactivated_reason = NULL
    RETURNING id, platform, locale, app_version, registered_at"""


async def register_device(
    uow: UnitOfWork,
    person_id: uuid.UUID,
    session_id: uuid.UUID | None,
    token: str,
    platform: str,
    locale: str,
    app_version: str,
) -> asyncpg.Record:
    """The person's device for `token`. A token another person registered before moves to this one:
    theirs stops getting pushes (its pending ones go by SMS instead), and the device keeps its id, the
    app install's, under its new person."""
    owner = await uow.fetchrow(CLAIM_INSTALL_SQL, token, person_id, uuid.UUID(uuid7_texts(1)[0]))
    assert owner is not None
    device_id: uuid.UUID = owner["device_id"]
    if owner["person_id"] != person_id:
        await uow.execute(
            """UPDATE devices SET deactivated_at = now(), deactivated_reason = 'moved'
               WHERE person_id = $1 AND id = $2 AND deactivated_at IS NULL""",
            owner["person_id"],
            device_id,
        )
        await uow.execute("UPDATE push_tokens SET person_id = $2 WHERE push_token = $1", token, person_id)
    row = await uow.fetchrow(
        REGISTER_DEVICE_SQL, person_id, device_id, token, platform, locale, app_version, session_id
    )
    assert row is not None
    return row


async def deactivate_surplus_devices(uow: UnitOfWork, person_id: uuid.UUID, keep: int) -> None:
    """The person's newest `keep` devices stay active; older ones stop getting pushes."""
    await uow.execute(
        """UPDATE devices SET deactivated_at = now(), deactivated_reason = 'replaced'
           WHERE person_id = $1 AND deactivated_at IS NULL
             AND id NOT IN (SELECT id FROM devices WHERE person_id = $1 AND deactivated_at IS NULL
                            ORDER BY registered_at DESC LIMIT $2)""",
        person_id,
        keep,
    )


async def retire_for_sessions(uow: UnitOfWork, person_id: uuid.UUID, session_ids: list[uuid.UUID], reason: str) -> None:
    """The phones registered under sessions that ended (a logout, a loss report, a stolen refresh token)
    get no more pushes: the person's notices must not reach a phone that is no longer theirs."""
    await uow.execute(
        """UPDATE devices SET deactivated_at = now(), deactivated_reason = $3
           WHERE person_id = $1 AND session_id = ANY($2::uuid[]) AND deactivated_at IS NULL""",
        person_id,
        session_ids,
        reason,
    )


async def remove_device(db: Db, person_id: uuid.UUID, device_id: uuid.UUID) -> bool:
    """False if the person has no such device: one whose token moved to someone else is theirs now."""
    status = await db.execute(
        """UPDATE devices SET deactivated_at = coalesce(deactivated_at, (SELECT now())),
                              deactivated_reason = coalesce(deactivated_reason, 'removed')
           WHERE person_id = $1 AND id = $2 AND deactivated_reason IS DISTINCT FROM 'moved'""",
        person_id,
        device_id,
    )
    return status != "UPDATE 0"


# -- inbox -------------------------------------------------------------------------------------


async def inbox(
    db: Db, person_id: uuid.UUID, before: tuple[datetime, uuid.UUID] | None, limit: int
) -> list[asyncpg.Record]:
    """Newest shown first: a payment notice written days ahead takes its place on its pay date."""
    shown, notice = before if before is not None else (None, None)
    return await db.fetch(
        """SELECT id, kind, params, shown_from, read_at FROM notifications
           WHERE person_id = $1 AND shown_from <= now()
             AND ($2::timestamptz IS NULL OR (shown_from, id) < ($2, $3::uuid))
           ORDER BY shown_from DESC, id DESC LIMIT $4""",
        person_id,
        shown,
        notice,
        limit,
    )


async def unread_count(db: Db, person_id: uuid.UUID) -> int:
    count: int = await db.fetchval(
        "SELECT count(*) FROM notifications WHERE person_id = $1 AND read_at IS NULL AND shown_from <= now()",
        person_id,
    )
    return count


async def mark_read(db: Db, person_id: uuid.UUID, notification_id: uuid.UUID) -> asyncpg.Record | None:
    return await db.fetchrow(
        """UPDATE notifications SET read_at = coalesce(read_at, (SELECT now()))
           WHERE id = $1 AND person_id = $2 AND shown_from <= now()
           RETURNING id, kind, params, shown_from, read_at, read_at = (SELECT now()) AS first_read""",
        notification_id,
        person_id,
    )


# -- dead letters ------------------------------------------------------------------------------

# Deliveries waiting to be sent and dead letters waiting for an administrator, per channel: each
# branch is answered from its state's partial index (deliveries_due_idx, deliveries_dead_idx).
BACKLOG_SQL = """
    SELECT channel, 'pending' AS state, count(*) AS n FROM deliveries WHERE state = 'pending' GROUP BY channel
    UNION ALL
    SELECT channel, 'dead', count(*) FROM deliveries WHERE state = 'dead' GROUP BY channel"""


async def backlog(db: Db) -> list[asyncpg.Record]:
    return await db.fetch(BACKLOG_SQL)


# An administrator names a delivery by its id alone: these read every person's (a read across shards
# on a cluster), and the view gives the person the retry then writes under.
_DELIVERY_VIEW = """
    SELECT d.person_id, d.id, d.notification_id, d.channel, d.device_id, d.state, d.attempts, d.last_error,
           d.next_attempt_at, d.created_at, n.kind, p.national_id_masked
    FROM deliveries d JOIN notifications n ON n.person_id = d.person_id AND n.id = d.notification_id
    JOIN persons p ON p.id = d.person_id"""


async def deliveries_in_state(db: Db, state: str, after_id: uuid.UUID | None, limit: int) -> list[asyncpg.Record]:
    return await db.fetch(
        f"{_DELIVERY_VIEW} WHERE d.state = $1 AND ($2::uuid IS NULL OR d.id > $2) ORDER BY d.id LIMIT $3",
        state,
        after_id,
        limit,
    )


async def delivery(db: Db, delivery_id: uuid.UUID) -> asyncpg.Record | None:
    return await db.fetchrow(f"{_DELIVERY_VIEW} WHERE d.id = $1", delivery_id)


async def retry_dead(uow: UnitOfWork, person_id: uuid.UUID, delivery_id: uuid.UUID) -> asyncpg.Record | None:
    """A dead delivery made due now with its attempts counted afresh; None if it is not dead."""
    return await uow.fetchrow(
        """UPDATE deliveries SET state = 'pending', attempts = 0, next_attempt_at = now()
           WHERE person_id = $1 AND id = $2 AND state = 'dead'
           RETURNING channel, last_error""",
        person_id,
        delivery_id,
    )
