"""The person import in batches: set-based merges across batch boundaries, the per-line report, the
audit entries per batch, and an import killed mid-way (SIGKILL) then run again on the same file."""

from __future__ import annotations

import asyncio
import gc
import itertools
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from app.services import Services
from cards.numbers import card_number
from core.records import parse_import
from infra import audit
from infra.config import Settings, settings_env
from infra.crypto import FieldCipher
from persons import repository
from persons.service import ImportReport, PersonImporter
from tests.factories import ROOT, sample_person, write_jsonl


def importer_with(services: Services, batch: int) -> PersonImporter:
    settings = services.settings
    return PersonImporter(
        services.pool, services.storage, FieldCipher(settings.data_encryption_key), settings.lookup_hash_key, batch
    )


async def run(importer: PersonImporter, path: Path) -> ImportReport:
    return await importer.import_file(path, "system:test")


async def test_a_national_id_repeated_across_batches_lands_once_from_its_last_row(
    services: Services, pool: asyncpg.Pool, tmp_path: Path
) -> None:
    a, b, c = sample_person(), sample_person(), sample_person()
    rows = [
        a.row(name="旧名"),
        b.row(),
        b.row(phone="123"),  # a bad later row: b's good first row still lands
        c.row(),
        a.row(name="新名", region="310104"),
        sample_person().row(birth_date="2001-01-01"),
    ]
    report = await run(importer_with(services, 2), write_jsonl(tmp_path / "p.jsonl", rows))
    assert (report.created, report.updated, report.unchanged) == (3, 0, 0)
    assert [(e.line, e.field) for e in report.errors] == [(3, "phone"), (6, "birth_date")]
    assert await pool.fetchval("SELECT count(*) FROM persons") == 3
    assert await pool.fetchval("SELECT count(*) FROM cards") == 3
    assert await pool.fetchval("SELECT count(*) FROM pension_entitlements") == 3
    assert await pool.fetchrow("SELECT name, region FROM persons WHERE phone = $1", a.phone) == ("新名", "310104")
    # Created persons are audited by their batch, not one by one; nothing is held back after the end.
    batches = await pool.fetch(
        "SELECT details FROM audit_log WHERE action = 'person.import_batch' ORDER BY at, chain, seq"
    )
    assert [(d["details"]["created"], d["details"]["lines"]) for d in batches] == [
        (0, [1, 2]),  # a and b are held back: the file names them twice
        (1, [3, 4]),  # c
        (0, [5, 6]),
        (2, "held back (repeated national IDs)"),  # a from line 5, b from line 2 (its line 3 is bad)
    ]
    assert await pool.fetchval("SELECT count(*) FROM audit_log WHERE action = 'person.updated'") == 0
    assert await pool.fetchval("SELECT count(*) FROM person_import_rows") == 0
    assert await pool.fetchval("SELECT state FROM person_imports") == "completed"


async def test_a_second_file_updates_changed_persons_only_and_audits_each(
    services: Services, pool: asyncpg.Pool, tmp_path: Path
) -> None:
    people = [sample_person() for _ in range(7)]
    importer = importer_with(services, 3)
    first = await run(importer, write_jsonl(tmp_path / "a.jsonl", [p.row() for p in people]))
    assert (first.created, first.updated, first.unchanged) == (7, 0, 0)
    moved_account = {"monthly_amount": 350000, "bank_account": "6217000000000003445", "start_month": "2010-01"}
    second_rows = [p.row() for p in people]
    second_rows[1] = people[1].row(phone="13700000001")
    second_rows[5] = people[5].row(pension=moved_account)
    second_rows.append(sample_person().row())
    second = await run(importer, write_jsonl(tmp_path / "b.jsonl", second_rows))
    assert (second.created, second.updated, second.unchanged) == (1, 2, 5)
    updates = await pool.fetch(
        "SELECT details FROM audit_log WHERE action = 'person.updated' ORDER BY (details->>'line')::int"
    )
    assert [(u["details"]["line"], u["details"]["fields"]) for u in updates] == [
        (2, ["phone"]),
        (6, ["pension.bank_account"]),
    ]
    assert await pool.fetchval("SELECT count(*) FROM cards") == 8
    assert await pool.fetchval("SELECT count(DISTINCT card_number) FROM cards") == 8
    # The same content again is a new import (the first one completed): all unchanged.
    again = await run(importer, write_jsonl(tmp_path / "c.jsonl", second_rows))
    assert (again.created, again.updated, again.unchanged, again.resumed) == (0, 0, 8, False)
    assert again.import_id != second.import_id
    assert await audit.verify(pool) == (await pool.fetchval("SELECT count(*) FROM audit_log"), None)


async def test_cards_are_numbered_in_line_order_across_batches(
    services: Services, pool: asyncpg.Pool, tmp_path: Path
) -> None:
    people = [sample_person() for _ in range(7)]
    await run(importer_with(services, 3), write_jsonl(tmp_path / "p.jsonl", [p.row() for p in people]))
    rows = await pool.fetch(
        "SELECT p.phone, c.card_number FROM cards c JOIN persons p ON p.id = c.person_id ORDER BY c.card_number"
    )
    assert [r["phone"] for r in rows] == [p.phone for p in people]  # numbers of 12 digits: text order is theirs
    assert [r["card_number"] for r in rows] == [card_number(int(r["card_number"][:11])) for r in rows]


async def test_collection_and_the_switch_interval_are_restored_after_an_import_that_failed_too(
    services: Services, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # While its batches run the import turns the cyclic collector off and shortens the GIL's switch
    # interval (persons.service._bulk_work); the process gets both back as they were.
    interval = sys.getswitchinterval()
    importer = importer_with(services, 2)
    await run(importer, write_jsonl(tmp_path / "a.jsonl", [sample_person().row() for _ in range(3)]))
    assert (gc.isenabled(), sys.getswitchinterval()) == (True, interval)

    async def broken(*_: object) -> None:
        assert (gc.isenabled(), sys.getswitchinterval()) == (False, 0.0005)
        raise RuntimeError("merge failed")

    monkeypatch.setattr(repository, "write_merge", broken)
    with pytest.raises(RuntimeError, match="merge failed"):
        await run(importer, write_jsonl(tmp_path / "b.jsonl", [sample_person().row() for _ in range(3)]))
    assert (gc.isenabled(), sys.getswitchinterval()) == (True, interval)


def _file_with_mistakes(path: Path, count: int) -> Path:
    """`count` persons, every 97th row bad, every 50th repeating an earlier person with a new phone."""
    rows: list[dict[str, Any]] = []
    people = [sample_person() for _ in range(count)]
    for n, person in enumerate(people):
        if n % 97 == 5:
            rows.append(person.row(region="x"))
        elif n % 50 == 49:
            rows.append(people[n - 40].row(phone=f"137{n:08d}"))
        else:
            rows.append(person.row())
    return write_jsonl(path, rows)


def _cli(settings: Settings, path: Path, batch: int) -> subprocess.Popen[bytes]:
    env = {**os.environ, **settings_env(settings), "IMPORT_BATCH": str(batch), "LOG_LEVEL": "WARNING"}
    return subprocess.Popen(
        [sys.executable, "-m", "socialcard", "import", "persons", str(path)],
        env=env,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


async def _through(pool: asyncpg.Pool) -> int:
    return int(await pool.fetchval("SELECT coalesce(max(through), 0) FROM person_imports"))


async def _kill_past(child: subprocess.Popen[bytes], pool: asyncpg.Pool, line: int) -> int:
    """SIGKILL the import once it has committed its batches past `line`; the line it got to."""
    deadline = time.monotonic() + 120
    try:
        for _ in itertools.count():
            if await _through(pool) >= line:
                break
            assert child.poll() is None, child.communicate()
            assert time.monotonic() < deadline, "the import did not get going"
            await asyncio.sleep(0.005)
        child.send_signal(signal.SIGKILL)
    finally:
        child.wait(30)
    return await _through(pool)


async def test_an_import_killed_mid_way_resumes_and_ends_as_one_clean_run(
    services: Services, settings: Settings, pool: asyncpg.Pool, tmp_path: Path
) -> None:
    path = _file_with_mistakes(tmp_path / "city.jsonl", 3000)
    expected, expected_errors = parse_import(path.read_text(encoding="utf-8"), "jsonl")
    cut_at = await _kill_past(_cli(settings, path, batch=100), pool, 600)  # a few batches committed
    assert 600 <= cut_at < 3000, cut_at
    assert await pool.fetchval("SELECT state FROM person_imports") == "running"
    assert await pool.fetchval("SELECT count(*) FROM persons") < len(expected)

    report = await run(importer_with(services, 100), path)
    assert report.resumed
    assert (report.created, report.updated, report.unchanged) == (len(expected), 0, 0)
    assert report.errors == expected_errors
    assert await pool.fetchval("SELECT count(*) FROM person_imports") == 1
    # No duplicate, no gap: every good national ID once, with its last row's phone, a card and a pension.
    assert await pool.fetchval("SELECT count(*) FROM persons") == len(expected)
    phones = {r["phone"] for r in await pool.fetch("SELECT phone FROM persons")}
    assert phones == {r.phone for r in expected}
    assert await pool.fetchval("SELECT count(DISTINCT card_number) FROM cards") == len(expected)
    assert await pool.fetchval("SELECT count(*) FROM pension_entitlements") == len(expected)
    # The batches' audit entries cover the file's lines once each, without overlap.
    ranges = sorted(
        tuple(r["details"]["lines"])
        for r in await pool.fetch("SELECT details FROM audit_log WHERE action = 'person.import_batch'")
        if isinstance(r["details"]["lines"], list)
    )
    assert all(prev[1] + 1 == nxt[0] for prev, nxt in itertools.pairwise(ranges)), ranges
    assert ranges[0][0] == 1
    assert await audit.verify(pool) == (await pool.fetchval("SELECT count(*) FROM audit_log"), None)


async def test_the_cli_reports_a_resumed_import_like_a_clean_one(
    settings: Settings, pool: asyncpg.Pool, tmp_path: Path
) -> None:
    path = _file_with_mistakes(tmp_path / "persons.jsonl", 400)
    assert 100 <= await _kill_past(_cli(settings, path, batch=50), pool, 100) < 400
    resumed = _cli(settings, path, batch=50)
    out, err = resumed.communicate(timeout=120)
    assert resumed.returncode == 3, err  # 3: some lines were refused
    expected, errors = parse_import(path.read_text(encoding="utf-8"), "jsonl")
    rejected = len({e.line for e in errors})
    assert out.decode().strip() == f"created {len(expected)}, updated 0, unchanged 0, rejected {rejected} row(s)"
    assert [line for line in err.decode().splitlines() if line.startswith("line ")] == [
        f"line {e.line}: {e.field}: {e.reason}" for e in errors
    ]


@pytest.mark.parametrize("batch", [1, 1000])
async def test_batch_size_does_not_change_the_outcome(
    services: Services, pool: asyncpg.Pool, tmp_path: Path, batch: int
) -> None:
    path = _file_with_mistakes(tmp_path / "p.jsonl", 120)
    expected, errors = parse_import(path.read_text(encoding="utf-8"), "jsonl")
    report = await run(importer_with(services, batch), path)
    assert (report.created, report.errors) == (len(expected), errors)
    assert await pool.fetchval("SELECT count(*) FROM persons") == len(expected)
