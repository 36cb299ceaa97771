"""Importing persons into the real database and object storage."""

from __future__ import annotations

import csv
import logging
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from infra.config import Settings
from infra.crypto import FieldCipher
from infra.storage import ObjectStorage
from tests.conftest import FACES
from tests.factories import sample_person, write_jsonl


async def test_good_rows_land_and_bad_rows_are_reported(importer: Any, pool: asyncpg.Pool, tmp_path: Path) -> None:
    good, also_good = sample_person(), sample_person()
    bad_id = good.national_id[:-1] + ("0" if good.national_id[-1] != "0" else "1")
    rows = [good.row(), sample_person().row(national_id=bad_id, phone="123"), also_good.row()]
    report = await importer.import_file(write_jsonl(tmp_path / "p.jsonl", rows))
    assert report.created == 2
    assert {(e.line, e.field) for e in report.errors} == {(2, "national_id"), (2, "phone")}
    assert await pool.fetchval("SELECT count(*) FROM persons") == 2
    assert await pool.fetchval("SELECT count(*) FROM cards WHERE status = 'pending_activation'") == 2
    assert await pool.fetchval("SELECT count(*) FROM pension_entitlements") == 2


async def test_national_id_is_encrypted_hashed_and_masked(
    importer: Any, pool: asyncpg.Pool, settings: Settings, tmp_path: Path
) -> None:
    person = sample_person()
    await importer.import_file(write_jsonl(tmp_path / "p.jsonl", [person.row()]))
    row = await pool.fetchrow("SELECT * FROM persons")
    assert row is not None
    raw = person.national_id.encode()
    assert all(raw not in v for v in row.values() if isinstance(v, bytes))
    assert all(person.national_id not in v for v in row.values() if isinstance(v, str))
    cipher = FieldCipher(settings.data_encryption_key)
    assert cipher.decrypt_text(row["national_id_enc"], "persons.national_id") == person.national_id
    assert row["national_id_masked"] == person.national_id[:6] + "********" + person.national_id[-4:]
    account = await pool.fetchrow("SELECT bank_account_enc, bank_account_masked FROM pension_entitlements")
    assert account is not None
    assert account["bank_account_masked"].endswith("3445")
    assert "6222" not in account["bank_account_masked"]


async def test_reimport_updates_the_one_person_and_audits_the_change(
    importer: Any, pool: asyncpg.Pool, tmp_path: Path
) -> None:
    person = sample_person()
    await importer.import_file(write_jsonl(tmp_path / "a.jsonl", [person.row()]))
    report = await importer.import_file(write_jsonl(tmp_path / "b.jsonl", [person.row()]))
    assert (report.created, report.updated, report.unchanged) == (0, 0, 1)
    moved = person.row(
        region="310104",
        pension={"monthly_amount": 360000, "bank_account": "6222020200112233445", "start_month": "2010-01"},
    )
    report = await importer.import_file(write_jsonl(tmp_path / "c.jsonl", [moved]))
    assert report.updated == 1
    assert await pool.fetchval("SELECT count(*) FROM persons") == 1
    assert await pool.fetchval("SELECT count(*) FROM cards") == 1
    assert await pool.fetchval("SELECT region FROM persons") == "310104"
    assert await pool.fetchval("SELECT monthly_amount_fen FROM pension_entitlements") == 360000
    details = await pool.fetchval("SELECT details FROM audit_log WHERE action = 'person.updated'")
    assert details["fields"] == ["region", "pension.monthly_amount"]
    assert person.national_id not in str(details)


async def test_a_national_id_is_found_through_its_lookup_row_which_keeps_it_to_one_person(
    importer: Any, pool: asyncpg.Pool, tmp_path: Path
) -> None:
    # persons is distributed by id on a cluster: the national ID's uniqueness is the lookup table's key.
    person, other = sample_person(), sample_person()
    await importer.import_file(write_jsonl(tmp_path / "a.jsonl", [person.row(), other.row()]))
    report = await importer.import_file(write_jsonl(tmp_path / "b.jsonl", [person.row(region="310104")]))
    assert (report.created, report.updated) == (0, 1)
    rows = await pool.fetch(
        "SELECT n.person_id, p.id FROM person_national_ids n LEFT JOIN persons p ON p.national_id_hash = n.national_id_hash"
    )
    assert len(rows) == 2
    assert all(r["person_id"] == r["id"] for r in rows)
    with pytest.raises(asyncpg.UniqueViolationError):
        await pool.execute(
            "INSERT INTO person_national_ids (national_id_hash, person_id) SELECT national_id_hash, gen_random_uuid() "
            "FROM persons LIMIT 1"
        )


async def test_duplicates_in_one_file_merge_into_one_record(importer: Any, pool: asyncpg.Pool, tmp_path: Path) -> None:
    person = sample_person()
    report = await importer.import_file(
        write_jsonl(tmp_path / "p.jsonl", [person.row(name="旧名"), person.row(name="新名")])
    )
    assert report.created == 1
    assert await pool.fetchval("SELECT name FROM persons") == "新名"


async def test_csv_with_flattened_pension_columns(importer: Any, pool: asyncpg.Pool, tmp_path: Path) -> None:
    person = sample_person()
    path = tmp_path / "persons.csv"
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(
            [
                "national_id",
                "name",
                "birth_date",
                "phone",
                "region",
                "locale",
                "reference_photo",
                "pension_monthly_amount",
                "pension_bank_account",
                "pension_start_month",
            ]
        )
        writer.writerow(
            [
                person.national_id,
                person.name,
                person.birth_date.isoformat(),
                person.phone,
                "110101",
                "en",
                "",
                "286050",
                "6217000010002345678",
                "2007-07",
            ]
        )
    report = await importer.import_file(path)
    assert report.created == 1, report.errors
    assert await pool.fetchval("SELECT monthly_amount_fen FROM pension_entitlements") == 286050
    assert await pool.fetchval("SELECT locale FROM persons") == "en"


@pytest.mark.skipif(not FACES.exists(), reason="../shared/faces is not beside this clone")
async def test_reference_photo_is_stored_in_object_storage(
    importer: Any, pool: asyncpg.Pool, settings: Settings, tmp_path: Path
) -> None:
    photo = FACES / "stills" / "obama__obama.jpg"
    person = sample_person()
    report = await importer.import_file(write_jsonl(tmp_path / "p.jsonl", [person.row(reference_photo=str(photo))]))
    assert report.created == 1, report.errors
    key = await pool.fetchval("SELECT reference_photo_key FROM persons")
    assert key.startswith("reference-photos/")
    assert key.endswith(".jpg")
    assert ObjectStorage(settings).get_bytes(key) == photo.read_bytes()
    # Not an image, or missing: the row is reported, nothing lands.
    (tmp_path / "notes.jpg").write_text("not an image")
    rows = [sample_person().row(reference_photo="notes.jpg"), sample_person().row(reference_photo="missing.jpg")]
    report = await importer.import_file(write_jsonl(tmp_path / "q.jsonl", rows))
    assert [(e.line, e.field) for e in report.errors] == [(1, "reference_photo"), (2, "reference_photo")]
    assert await pool.fetchval("SELECT count(*) FROM persons") == 1


async def test_s3_key_reference_must_exist_in_the_bucket(importer: Any, settings: Settings, tmp_path: Path) -> None:
    ObjectStorage(settings).put_bytes("incoming/ref.jpg", b"\xff\xd8\xff", "image/jpeg")
    ok = sample_person().row(reference_photo=f"s3://{settings.s3_bucket}/incoming/ref.jpg")
    missing = sample_person().row(reference_photo=f"s3://{settings.s3_bucket}/incoming/none.jpg")
    report = await importer.import_file(write_jsonl(tmp_path / "p.jsonl", [ok, missing]))
    assert report.created == 1
    assert [(e.line, e.reason) for e in report.errors] == [(2, "no such object in storage")]


async def test_no_national_id_in_any_log_line(importer: Any, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    from infra.logging import JsonFormatter

    person = sample_person()
    caplog.set_level(logging.DEBUG)
    await importer.import_file(write_jsonl(tmp_path / "p.jsonl", [person.row()]))
    logging.getLogger("test").info("imported %s", person.national_id, extra={"national_id": person.national_id})
    formatter = JsonFormatter()
    lines = [formatter.format(r) for r in caplog.records]
    assert lines
    assert not any(person.national_id in line for line in lines)


async def test_a_changed_bank_account_with_the_same_last_digits_is_audited(
    importer: Any, pool: asyncpg.Pool, tmp_path: Path
) -> None:
    person = sample_person()
    pension = {"monthly_amount": 350000, "bank_account": "6222020200112233445", "start_month": "2010-01"}
    await importer.import_file(write_jsonl(tmp_path / "a.jsonl", [person.row(pension=pension)]))
    moved = {**pension, "bank_account": "6217000000000003445"}
    report = await importer.import_file(write_jsonl(tmp_path / "b.jsonl", [person.row(pension=moved)]))
    assert report.updated == 1
    details = await pool.fetchval("SELECT details FROM audit_log WHERE action = 'person.updated'")
    assert details["fields"] == ["pension.bank_account"]
