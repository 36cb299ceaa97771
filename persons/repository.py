"""SQL for persons, their pension entitlements and their cards, and for importing them in batches."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any, NamedTuple

import asyncpg

from core.errors import Conflict
from infra.db import Db, UnitOfWork


async def find_by_national_id_hash(uow: UnitOfWork, national_id_hash: bytes) -> asyncpg.Record | None:
    # The id through the national ID lookup table (written with each new person, write_merge), then the
    # person by id: each statement on one shard.
    person_id = await uow.fetchval(
        "SELECT person_id FROM person_national_ids WHERE national_id_hash = $1", national_id_hash
    )
    if person_id is None:
        return None
    return await uow.fetchrow(
        """SELECT p.id, p.name, p.birth_date, p.phone, p.region, p.locale, p.reference_photo_key,
                  e.monthly_amount_fen, e.bank_account_enc, e.start_month
           FROM persons p LEFT JOIN pension_entitlements e ON e.person_id = p.id
           WHERE p.id = $1""",
        person_id,
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
    "new_person_id",  # the id the person gets if new (infra.ids: not uuidv7() a row)
)
StagedRow = tuple[Any, ...]
# The fields a merge may change, in the order the audit log names them.
FIELDS = [
    "name",
    "birth_date",
    "phone",
    "region",
    "locale",
    "reference_photo",
    "pension.monthly_amount",
    "pension.bank_account",
    "pension.start_month",
]
PENSION_FIELDS = FIELDS[6:]
# Person imports merge one batch at a time across the database: a batch reads who exists, then writes,
# and another import's batch in between could create the same person twice.
_MERGE_LOCK = 0x50E12A


class ImportRun(NamedTuple):
    id: uuid.UUID
    through: int


async def start_import(db: Db, sha256: bytes, file_name: str, lines: int, actor: str) -> tuple[ImportRun, bool]:
    """The unfinished import of this file content, or a new one; and whether it was new."""
    row = await db.fetchrow(
        """INSERT INTO person_imports (file_sha256, file_name, lines, requested_by) VALUES ($1, $2, $3, $4)
           ON CONFLICT (file_sha256) WHERE state = 'running' DO NOTHING
           RETURNING id, through""",
        sha256,
        file_name,
        lines,
        actor,
    )
    if row is not None:
        return ImportRun(*row), True
    row = await db.fetchrow(
        "SELECT id, through FROM person_imports WHERE file_sha256 = $1 AND state = 'running'", sha256
    )
    if row is None:  # it completed between the two statements
        raise Conflict("import_running", detail="another process has just imported this file")
    return ImportRun(*row), False


async def open_batch(uow: UnitOfWork, run_id: uuid.UUID, after: int) -> None:
    """Start a batch of the import: the merge lock, the import's row checked (another process running
    the same file would have moved it on) and the batch's temporary tables."""
    await uow.execute("SELECT pg_advisory_xact_lock($1)", _MERGE_LOCK)
    at = await uow.fetchval("SELECT through FROM person_imports WHERE id = $1 AND state = 'running'", run_id)
    if at != after:
        raise Conflict("import_running", detail="another process is importing this file")
    # Temporary: no WAL, no shared buffers, gone at commit. The merge's own columns come first: the
    # scans that test them alone read no further into a row.
    await uow.execute("CREATE TEMP TABLE person_batch (LIKE person_import_rows) ON COMMIT DROP")
    # The stored persons the batch names, by line: resolved through the national ID lookup table before
    # persons is read by id (the two tables are distributed by different columns).
    await uow.execute("CREATE TEMP TABLE person_found (line int NOT NULL, person_id uuid NOT NULL) ON COMMIT DROP")
    await uow.execute(
        """CREATE TEMP TABLE person_merge (is_new boolean NOT NULL, needs_card boolean NOT NULL,
               changed text[] NOT NULL, stored_account bytea, person_id uuid NOT NULL,
               LIKE person_import_rows) ON COMMIT DROP"""
    )


async def stage(uow: UnitOfWork, rows: Sequence[StagedRow], *, held_back: bool = False) -> None:
    """COPY the batch's rows in (`held_back`: rows kept in person_import_rows to the import's end)."""
    if rows:
        table = "person_import_rows" if held_back else "person_batch"
        await uow.conn.copy_records_to_table(table, records=rows, columns=STAGED_COLUMNS)


async def take_held_back(uow: UnitOfWork, run_id: uuid.UUID) -> None:
    """The last held-back row of each national ID into the batch; the others are dropped."""
    await uow.execute(
        """WITH held AS (DELETE FROM person_import_rows WHERE import_id = $1 RETURNING *)
           INSERT INTO person_batch SELECT DISTINCT ON (national_id_hash) * FROM held
           ORDER BY national_id_hash, line DESC""",
        run_id,
    )


async def classify(uow: UnitOfWork) -> list[asyncpg.Record]:
    """person_batch beside what is stored, into person_merge: the person's id (a new UUIDv7 for a new
    person), the fields each row changes (for a new person, every field it sets), in FIELDS order.
    A stored bank account is encrypted: returned are (line, bank_account_hash, stored_account) of the
    pensions whose account the caller must compare, and `move_accounts` adds what it finds."""
    # The batch's national IDs probed by the lookup table's key, as one list: a batch is a small part
    # of a city, and joining the whole lookup table for each batch (the plan chosen otherwise) grows
    # with the city. A list of keys is also what a cluster routes to the shards that hold them.
    await uow.execute(
        """INSERT INTO person_found
           SELECT b.line, n.person_id FROM person_batch b
           JOIN person_national_ids n ON n.national_id_hash = b.national_id_hash
           WHERE n.national_id_hash = ANY (ARRAY(SELECT national_id_hash FROM person_batch))"""
    )
    await uow.execute(
        """INSERT INTO person_merge
           SELECT s.id IS NULL, NOT coalesce(s.carded, false),
                  array_remove(ARRAY[
                      CASE WHEN b.name IS DISTINCT FROM s.name THEN 'name' END,
                      CASE WHEN b.birth_date IS DISTINCT FROM s.birth_date THEN 'birth_date' END,
                      CASE WHEN b.phone IS DISTINCT FROM s.phone THEN 'phone' END,
                      CASE WHEN b.region IS DISTINCT FROM s.region THEN 'region' END,
                      CASE WHEN b.locale IS DISTINCT FROM s.locale THEN 'locale' END,
                      CASE WHEN b.reference_photo_key IS DISTINCT FROM s.reference_photo_key
                                AND b.reference_photo_key IS NOT NULL THEN 'reference_photo' END,
                      CASE WHEN b.monthly_amount_fen IS DISTINCT FROM s.monthly_amount_fen
                                AND b.monthly_amount_fen IS NOT NULL THEN 'pension.monthly_amount' END,
                      CASE WHEN NOT coalesce(s.entitled, false) AND b.monthly_amount_fen IS NOT NULL
                           THEN 'pension.bank_account' END,
                      CASE WHEN b.start_month IS DISTINCT FROM s.start_month
                                AND b.monthly_amount_fen IS NOT NULL THEN 'pension.start_month' END
                  ], NULL),
                  s.bank_account_enc, coalesce(s.id, b.new_person_id), b.*
           FROM person_batch b
           LEFT JOIN person_found f ON f.line = b.line
           -- The stored persons alone, by their key (a new person has none to probe), as above.
           LEFT JOIN (
               SELECT p.id, p.name, p.birth_date, p.phone, p.region, p.locale, p.reference_photo_key,
                      e.person_id IS NOT NULL AS entitled, e.monthly_amount_fen, e.start_month,
                      e.bank_account_enc, c.person_id IS NOT NULL AS carded
               FROM persons p
               LEFT JOIN pension_entitlements e ON e.person_id = p.id
               LEFT JOIN cards c ON c.person_id = p.id
               WHERE p.id = ANY (ARRAY(SELECT person_id FROM person_found))
           ) s ON s.id = f.person_id"""
    )
    return await uow.fetch(
        """SELECT line, bank_account_hash, stored_account FROM person_merge
           WHERE stored_account IS NOT NULL AND bank_account_hash IS NOT NULL"""
    )


async def move_accounts(uow: UnitOfWork, lines: Sequence[int]) -> None:
    """The rows at `lines` change the stored bank account."""
    if lines:
        await uow.execute(
            """UPDATE person_merge m SET changed = ARRAY(
                   SELECT f FROM unnest($2::text[]) WITH ORDINALITY AS u (f, i)
                   WHERE f = ANY (m.changed) OR f = 'pension.bank_account' ORDER BY i)
               WHERE m.line = ANY ($1::int[])""",
            list(lines),
            FIELDS,
        )


class MergeCounts(NamedTuple):
    created: int
    updated: int
    unchanged: int
    cards: int  # persons who need a card number


async def merge_counts(uow: UnitOfWork) -> MergeCounts:
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
    numbers: list[int] = await uow.fetchval(
        "SELECT array_agg(nextval('card_number_seq')) FROM generate_series(1, $1)", count
    )
    return numbers


async def write_merge(uow: UnitOfWork, card_numbers: Sequence[str], card_ids: Sequence[str]) -> None:
    """Land person_merge: new persons inserted with their national IDs' lookup rows, changed ones updated
    (a row without a photo keeps the stored one), changed pensions upserted, a card for each person
    without one (in line order, `card_numbers` and `card_ids` one each). One statement: the foreign keys
    are checked at its end. The lookup table's key keeps a national ID to one person."""
    await uow.execute(
        """WITH new_persons AS (
               INSERT INTO persons (id, national_id_hash, national_id_enc, national_id_masked, name, birth_date,
                                    phone, region, locale, reference_photo_key)
               SELECT person_id, national_id_hash, national_id_enc, national_id_masked, name, birth_date,
                      phone, region, locale, reference_photo_key
               FROM person_merge WHERE is_new
           ), new_national_ids AS (
               INSERT INTO person_national_ids (national_id_hash, person_id)
               SELECT national_id_hash, person_id FROM person_merge WHERE is_new
           ), changed_persons AS (
               UPDATE persons p SET name = m.name, birth_date = m.birth_date, phone = m.phone, region = m.region,
                      locale = m.locale, reference_photo_key = coalesce(m.reference_photo_key, p.reference_photo_key),
                      updated_at = now()
               FROM person_merge m WHERE p.id = m.person_id AND NOT m.is_new AND m.changed <> '{}'
           ), new_pensions AS (
               -- A new person's pension is new: a plain insert, without the upsert's speculative one.
               INSERT INTO pension_entitlements (person_id, monthly_amount_fen, bank_account_enc,
                                                 bank_account_masked, start_month)
               SELECT person_id, monthly_amount_fen, bank_account_enc, bank_account_masked, start_month
               FROM person_merge WHERE is_new AND changed && $2::text[]
           ), changed_pensions AS (
               INSERT INTO pension_entitlements (person_id, monthly_amount_fen, bank_account_enc,
                                                 bank_account_masked, start_month)
               SELECT person_id, monthly_amount_fen, bank_account_enc, bank_account_masked, start_month
               FROM person_merge WHERE NOT is_new AND changed && $2::text[]
               ON CONFLICT (person_id) DO UPDATE SET monthly_amount_fen = excluded.monthly_amount_fen,
                   bank_account_enc = excluded.bank_account_enc, bank_account_masked = excluded.bank_account_masked,
                   start_month = excluded.start_month, updated_at = excluded.updated_at
           ), carded AS (
               SELECT person_id, row_number() OVER (ORDER BY line) AS n
               FROM person_merge WHERE needs_card AND changed <> '{}'
           ), new_cards AS (
               INSERT INTO cards (id, person_id, card_number)
               SELECT number.id, c.person_id, number.card_number
               FROM carded c JOIN unnest($1::text[], $3::uuid[]) WITH ORDINALITY AS number (card_number, id, n) USING (n)
               RETURNING person_id, card_number
           )
           -- A card number's lookup row, with its card: its key keeps the number to one card.
           INSERT INTO card_numbers (card_number, person_id) SELECT card_number, person_id FROM new_cards""",
        list(card_numbers),
        PENSION_FIELDS,
        list(card_ids),
    )


async def close_batch(
    uow: UnitOfWork, run_id: uuid.UUID, through: int, errors: Sequence[tuple[int, int, str, str]], counts: MergeCounts
) -> None:
    """The batch's errors (line, n, field, reason) reported and the import's progress moved on."""
    if errors:
        await uow.conn.copy_records_to_table(
            "person_import_errors",
            records=[(run_id, *e) for e in errors],
            columns=("import_id", "line", "n", "field", "reason"),
        )
    await uow.execute(
        """UPDATE person_imports SET through = $2, created = created + $3, updated = updated + $4,
               unchanged = unchanged + $5
           WHERE id = $1""",
        run_id,
        through,
        counts.created,
        counts.updated,
        counts.unchanged,
    )


async def complete(uow: UnitOfWork, run_id: uuid.UUID) -> dict[str, Any]:
    row = await uow.fetchrow(
        """UPDATE person_imports SET state = 'completed', completed_at = now() WHERE id = $1
           RETURNING file_name, encode(file_sha256, 'hex') AS sha256, lines, created, updated, unchanged,
                     (SELECT count(*) FROM person_import_errors WHERE import_id = $1) AS errors""",
        run_id,
    )
    assert row is not None
    return dict(row)


class ImportTotals(NamedTuple):
    created: int
    updated: int
    unchanged: int
    errors: list[tuple[int, str, str]]  # line, field, reason


async def totals(db: Db, run_id: uuid.UUID) -> ImportTotals:
    counts = await db.fetchrow("SELECT created, updated, unchanged FROM person_imports WHERE id = $1", run_id)
    assert counts is not None
    errors = await db.fetch(
        "SELECT line, field, reason FROM person_import_errors WHERE import_id = $1 ORDER BY line, n", run_id
    )
    return ImportTotals(counts["created"], counts["updated"], counts["unchanged"], [tuple(e) for e in errors])
