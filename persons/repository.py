"""SQL for persons, their pension entitlements and their cards, and for importing them in batches."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any, NamedTuple

import asyncpg

from core.errors import Conflict
from infra.db import Db, UnitOfWork


async def find_by_national_id_hash(uow: UnitOfWork, national_id_hash: bytes) -> asyncpg.Record | None:
    return await uow.fetchrow(
        """SELECT p.id, p.name, p.birth_date, p.phone, p.region, p.locale, p.reference_photo_key,
                  e.monthly_amount_fen, e.bank_account_enc, e.start_month
           FROM persons p LEFT JOIN pension_entitlements e ON e.person_id = p.id
           WHERE p.national_id_hash = $1""",
        national_id_hash,
    )


# -- imports -------------------------------------------------------------------------------------
# The staged row, in person_import_rows' column order (COPY names them).
STAGED_COLUMNS = (
    "import_id",
    "line",
    "national_id_hash",
    "national_id_enc",
    "national_id_masked",
    "name",
    "birth_date",
    "phone",
    "region",
    "locale",
    "reference_photo_key",
    "monthly_amount_fen",
    "bank_account_enc",
    "bank_account_masked",
    "bank_account_hash",
    "start_month",
)
StagedRow = tuple[Any, ...]
PENSION_FIELDS = ["pension.monthly_amount", "pension.bank_account", "pension.start_month"]
# Person imports merge one batch at a time across the database: a batch reads who exists, then writes,
# and another import's batch in between could create the same person twice.
_MERGE_LOCK = 0x50E12A


class ImportRun(NamedTuple):
    id: uuid.UUID
    state: str
    lines: int
    loaded_through: int
    merged_through: int
    staged: int


_RUN = "id, state, lines, loaded_through, merged_through, staged"


async def start_import(db: Db, sha256: bytes, file_name: str, lines: int, actor: str) -> tuple[ImportRun, bool]:
    """The unfinished import of this file content, or a new one; and whether it was new."""
    row = await db.fetchrow(
        f"""INSERT INTO person_imports (file_sha256, file_name, lines, requested_by) VALUES ($1, $2, $3, $4)
            ON CONFLICT (file_sha256) WHERE state <> 'completed' DO NOTHING
            RETURNING {_RUN}""",
        sha256,
        file_name,
        lines,
        actor,
    )
    if row is not None:
        return ImportRun(*row), True
    row = await db.fetchrow(
        f"SELECT {_RUN} FROM person_imports WHERE file_sha256 = $1 AND state <> 'completed'", sha256
    )
    assert row is not None, "an unfinished import vanished"  # it could only have completed in between
    return ImportRun(*row), False


async def staging_lost(db: Db, run: ImportRun) -> bool:
    """Whether PostgreSQL emptied the unlogged staging table since (a crash truncates it)."""
    held: int = await db.fetchval("SELECT count(*) FROM person_import_rows WHERE import_id = $1", run.id)
    return held != run.staged


async def restage(uow: UnitOfWork, run: ImportRun) -> ImportRun:
    """Load again every line not merged yet: forget what was staged and reported after it."""
    await uow.execute("DELETE FROM person_import_rows WHERE import_id = $1", run.id)
    await uow.execute("DELETE FROM person_import_errors WHERE import_id = $1 AND line > $2", run.id, run.merged_through)
    row = await uow.fetchrow(
        f"""UPDATE person_imports SET state = 'loading', loaded_through = merged_through, staged = 0
            WHERE id = $1 RETURNING {_RUN}""",
        run.id,
    )
    assert row is not None
    return ImportRun(*row)


async def _claim(uow: UnitOfWork, run_id: uuid.UUID, column: str, expected: int) -> None:
    """Lock the import's row, and refuse when another process has moved it on (both run the file)."""
    at = await uow.fetchval(f"SELECT {column} FROM person_imports WHERE id = $1 FOR UPDATE", run_id)
    if at != expected:
        raise Conflict("import_running", detail="another process is importing this file")


async def stage(
    uow: UnitOfWork,
    run_id: uuid.UUID,
    after: int,
    through: int,
    rows: Sequence[StagedRow],
    errors: Sequence[tuple[int, int, str, str]],
) -> None:
    """One loaded batch: its rows staged, its errors reported (line, n, field, reason), progress moved."""
    await _claim(uow, run_id, "loaded_through", after)
    if rows:
        await uow.conn.copy_records_to_table("person_import_rows", records=rows, columns=STAGED_COLUMNS)
    if errors:
        await uow.conn.copy_records_to_table(
            "person_import_errors",
            records=[(run_id, *e) for e in errors],
            columns=("import_id", "line", "n", "field", "reason"),
        )
    await uow.execute(
        "UPDATE person_imports SET loaded_through = $2, staged = staged + $3 WHERE id = $1", run_id, through, len(rows)
    )


async def drop_superseded(uow: UnitOfWork, run: ImportRun) -> None:
    """Loading done: of the rows for one national ID, only the file's last stays (one person, one
    record, as across files); the import moves on to merging."""
    await _claim(uow, run.id, "loaded_through", run.loaded_through)
    # One hash aggregate over the whole import: sized so that a city's file does not spill to disk.
    await uow.execute("SET LOCAL work_mem = '256MB'")
    await uow.execute(
        """WITH last AS (
               SELECT national_id_hash, max(line) AS line FROM person_import_rows WHERE import_id = $1
               GROUP BY national_id_hash HAVING count(*) > 1
           ), gone AS (
               DELETE FROM person_import_rows r USING last
               WHERE r.import_id = $1 AND r.national_id_hash = last.national_id_hash AND r.line < last.line
               RETURNING 1
           )
           UPDATE person_imports SET state = 'merging', staged = staged - (SELECT count(*) FROM gone)
           WHERE id = $1""",
        run.id,
    )


async def lock_merge(uow: UnitOfWork, run_id: uuid.UUID, after: int) -> None:
    await uow.execute("SELECT pg_advisory_xact_lock($1)", _MERGE_LOCK)
    await _claim(uow, run_id, "merged_through", after)


async def staged_accounts(uow: UnitOfWork, run_id: uuid.UUID, first: int, last: int) -> list[asyncpg.Record]:
    """(line, bank_account_hash, the stored bank_account_enc) of the batch's pensions for persons who
    have one already: the service decrypts the stored account to tell whether it changed."""
    return await uow.fetch(
        """SELECT s.line, s.bank_account_hash, e.bank_account_enc
           FROM person_import_rows s
           JOIN persons p ON p.national_id_hash = s.national_id_hash
           JOIN pension_entitlements e ON e.person_id = p.id
           WHERE s.import_id = $1 AND s.line BETWEEN $2 AND $3 AND s.bank_account_hash IS NOT NULL""",
        run_id,
        first,
        last,
    )


class MergeCounts(NamedTuple):
    created: int
    updated: int
    unchanged: int
    cards: int  # persons who need a card number


async def classify(
    uow: UnitOfWork, run_id: uuid.UUID, first: int, last: int, moved_accounts: Sequence[int]
) -> MergeCounts:
    """Take the batch's staged rows (lines first..last) into pg_temp.person_merge beside what is
    stored, with the fields each changes (for a new person, every field it sets), in the order the
    audit log names them; `moved_accounts` are the lines whose bank account differs from the stored."""
    await uow.execute(
        """CREATE TEMP TABLE person_merge (LIKE person_import_rows, person_id uuid NOT NULL,
               is_new boolean NOT NULL, needs_card boolean NOT NULL, changed text[] NOT NULL) ON COMMIT DROP"""
    )
    await uow.execute(
        """WITH batch AS (
               DELETE FROM person_import_rows WHERE import_id = $1 AND line BETWEEN $2 AND $3 RETURNING *
           )
           INSERT INTO person_merge
           SELECT b.*, coalesce(p.id, uuidv7()), p.id IS NULL, c.person_id IS NULL,
                  array_remove(ARRAY[
                      CASE WHEN b.name IS DISTINCT FROM p.name THEN 'name' END,
                      CASE WHEN b.birth_date IS DISTINCT FROM p.birth_date THEN 'birth_date' END,
                      CASE WHEN b.phone IS DISTINCT FROM p.phone THEN 'phone' END,
                      CASE WHEN b.region IS DISTINCT FROM p.region THEN 'region' END,
                      CASE WHEN b.locale IS DISTINCT FROM p.locale THEN 'locale' END,
                      CASE WHEN b.reference_photo_key IS DISTINCT FROM p.reference_photo_key
                                AND b.reference_photo_key IS NOT NULL THEN 'reference_photo' END,
                      CASE WHEN b.monthly_amount_fen IS DISTINCT FROM e.monthly_amount_fen
                                AND b.monthly_amount_fen IS NOT NULL THEN 'pension.monthly_amount' END,
                      CASE WHEN (e.person_id IS NULL OR moved.line IS NOT NULL)
                                AND b.monthly_amount_fen IS NOT NULL THEN 'pension.bank_account' END,
                      CASE WHEN b.start_month IS DISTINCT FROM e.start_month
                                AND b.monthly_amount_fen IS NOT NULL THEN 'pension.start_month' END
                  ], NULL)
           FROM batch b
           LEFT JOIN persons p ON p.national_id_hash = b.national_id_hash
           LEFT JOIN pension_entitlements e ON e.person_id = p.id
           LEFT JOIN cards c ON c.person_id = p.id
           LEFT JOIN unnest($4::int[]) AS moved (line) ON moved.line = b.line""",
        run_id,
        first,
        last,
        list(moved_accounts),
    )
    row = await uow.fetchrow(
        """SELECT count(*) FILTER (WHERE is_new) AS created,
                  count(*) FILTER (WHERE NOT is_new AND changed <> '{}') AS updated,
                  count(*) FILTER (WHERE changed = '{}') AS unchanged,
                  count(*) FILTER (WHERE needs_card AND changed <> '{}') AS cards
           FROM person_merge"""
    )
    assert row is not None
    return MergeCounts(*row)


async def merged_changes(uow: UnitOfWork) -> list[asyncpg.Record]:
    """The batch's updated persons and new reference photos: what is audited or enrolled one by one."""
    return await uow.fetch(
        """SELECT person_id, line, national_id_masked, changed, is_new, reference_photo_key FROM person_merge
           WHERE changed <> '{}' AND (NOT is_new OR 'reference_photo' = ANY (changed)) ORDER BY line"""
    )


async def card_sequence_numbers(uow: UnitOfWork, count: int) -> list[int]:
    rows = await uow.fetch("SELECT nextval('card_number_seq') AS n FROM generate_series(1, $1)", count)
    return [r["n"] for r in rows]


async def write_merge(uow: UnitOfWork, card_numbers: Sequence[str]) -> None:
    """Land pg_temp.person_merge: new persons inserted, changed ones updated (a row without a photo
    keeps the stored one), changed pensions upserted, a card for each person without one (in line
    order, `card_numbers` one each). One statement: the foreign keys are checked at its end."""
    await uow.execute(
        """WITH new_persons AS (
               INSERT INTO persons (id, national_id_hash, national_id_enc, national_id_masked, name, birth_date,
                                    phone, region, locale, reference_photo_key)
               SELECT person_id, national_id_hash, national_id_enc, national_id_masked, name, birth_date,
                      phone, region, locale, reference_photo_key
               FROM person_merge WHERE is_new
           ), changed_persons AS (
               UPDATE persons p SET name = m.name, birth_date = m.birth_date, phone = m.phone, region = m.region,
                      locale = m.locale, reference_photo_key = coalesce(m.reference_photo_key, p.reference_photo_key),
                      updated_at = now()
               FROM person_merge m WHERE p.id = m.person_id AND NOT m.is_new AND m.changed <> '{}'
           ), pensions AS (
               INSERT INTO pension_entitlements (person_id, monthly_amount_fen, bank_account_enc,
                                                 bank_account_masked, start_month)
               SELECT person_id, monthly_amount_fen, bank_account_enc, bank_account_masked, start_month
               FROM person_merge WHERE changed && $2::text[]
               ON CONFLICT (person_id) DO UPDATE SET monthly_amount_fen = excluded.monthly_amount_fen,
                   bank_account_enc = excluded.bank_account_enc, bank_account_masked = excluded.bank_account_masked,
                   start_month = excluded.start_month, updated_at = now()
           ), carded AS (
               SELECT person_id, row_number() OVER (ORDER BY line) AS n
               FROM person_merge WHERE needs_card AND changed <> '{}'
           )
           INSERT INTO cards (person_id, card_number)
           SELECT c.person_id, number.card_number
           FROM carded c JOIN unnest($1::text[]) WITH ORDINALITY AS number (card_number, n) USING (n)""",
        list(card_numbers),
        PENSION_FIELDS,
    )


async def merged(uow: UnitOfWork, run_id: uuid.UUID, through: int, counts: MergeCounts) -> None:
    await uow.execute(
        """UPDATE person_imports SET merged_through = $2, staged = staged - $3 - $4 - $5,
               created = created + $3, updated = updated + $4, unchanged = unchanged + $5
           WHERE id = $1""",
        run_id,
        through,
        counts.created,
        counts.updated,
        counts.unchanged,
    )


class ImportTotals(NamedTuple):
    created: int
    updated: int
    unchanged: int
    errors: list[tuple[int, str, str]]  # line, field, reason


async def complete(uow: UnitOfWork, run_id: uuid.UUID) -> asyncpg.Record:
    row = await uow.fetchrow(
        """UPDATE person_imports SET state = 'completed', completed_at = now()
           WHERE id = $1 AND state = 'merging'
           RETURNING file_name, encode(file_sha256, 'hex') AS sha256, lines, created, updated, unchanged,
                     (SELECT count(*) FROM person_import_errors WHERE import_id = $1) AS errors""",
        run_id,
    )
    if row is None:
        raise Conflict("import_running", detail="another process is importing this file")
    return row


async def totals(db: Db, run_id: uuid.UUID) -> ImportTotals:
    counts = await db.fetchrow("SELECT created, updated, unchanged FROM person_imports WHERE id = $1", run_id)
    assert counts is not None
    errors = await db.fetch(
        "SELECT line, field, reason FROM person_import_errors WHERE import_id = $1 ORDER BY line, n", run_id
    )
    return ImportTotals(counts["created"], counts["updated"], counts["unchanged"], [tuple(e) for e in errors])
