"""Evidence of life from data on the real database: feeds imported (service, CLI and API) with a
per-line report and landed once; the silent pass confirming from them (QR charges included) as a face
pass would, with the trail recorded, audited and shown; death winning; a pass that crashes resumes
with no person confirmed twice or skipped."""

from __future__ import annotations

import asyncio
import uuid
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import msgspec
import pytest

from app.services import Services
from certification.evidence import service as evidence_service
from certification.evidence.service import EvidenceService
from certification.rules import extended_until
from infra import audit
from infra.config import Settings
from notifications.rules import LOCAL_TZ
from tests.factories import (
    Pensioner,
    activated_cardholder,
    import_pensioners,
    operator_headers_for,
    problem_code,
    run_cli,
)

TODAY = datetime.now(LOCAL_TZ).date()  # the pass's day: China's
HEADER = "national_id,source,occurred_on,reference\n"


def _day(days_ago: int) -> str:
    return (TODAY - timedelta(days=days_ago)).isoformat()


def _feed(folder: Path, name: str, *lines: str, header: str = HEADER) -> Path:
    path = folder / name
    path.write_text(header + "".join(f"{line}\n" for line in lines), encoding="utf-8")
    return path


def _alive_lines(p: Pensioner, tag: str = "") -> list[str]:
    """A hospital visit and a pharmacy purchase last month: enough for the default rule."""
    return [
        f"{p.national_id},hospital_visit,{_day(30)},H-{p.phone}{tag}",
        f"{p.national_id},pharmacy_purchase,{_day(20)},P-{p.phone}{tag}",
    ]


async def _until(pool: asyncpg.Pool, person_id: uuid.UUID) -> date | None:
    until: date | None = await pool.fetchval("SELECT certified_until FROM persons WHERE id = $1", person_id)
    return until


# -- import ---------------------------------------------------------------------------------------
async def test_a_feed_lands_once_with_a_line_report(
    importer: Any, services: Services, pool: asyncpg.Pool, tmp_path: Path
) -> None:
    a, b = await import_pensioners(importer, pool, tmp_path, 2)
    stranger = "11010519491231002X"
    feed = _feed(
        tmp_path,
        "hospital.csv",
        f"{a.national_id},hospital_visit,{_day(3)},V-1",
        f"{b.national_id},,{_day(4)},V-2",
        f"{stranger},hospital_visit,{_day(5)},V-3",
        f"{a.national_id},hospital_visit,not-a-day,V-4",
        f"{a.national_id},hospital_visit,{_day(3)},V-1",
    )
    report = await services.evidence.import_file(feed, "system:test", "hospital_visit")
    assert (report.recorded, report.unchanged) == (2, 1)
    assert [(e.line, e.field, e.reason) for e in report.errors] == [
        (4, "national_id", "no person with this national ID"),
        (5, "occurred_on", "must be a date like 2026-03-07"),
    ]
    rows = await pool.fetch("SELECT person_id, source, reference, feed FROM life_evidence ORDER BY reference")
    assert [(r["person_id"], r["source"], r["reference"], r["feed"]) for r in rows] == [
        (a.id, "hospital_visit", "V-1", "hospital.csv:2"),
        (b.id, "hospital_visit", "V-2", "hospital.csv:3"),
    ]
    # The same feed again: nothing new; a reference recorded before with another day is refused.
    again = await services.evidence.import_file(feed, "system:test", "hospital_visit")
    assert (again.recorded, again.unchanged) == (0, 3)
    moved = _feed(tmp_path, "moved.csv", f"{a.national_id},hospital_visit,{_day(9)},V-1")
    refused = await services.evidence.import_file(moved, "system:test")
    assert [(e.line, e.field) for e in refused.errors] == [(2, "occurred_on")]
    assert await pool.fetchval("SELECT count(*) FROM life_evidence") == 2
    imported = await pool.fetch("SELECT subject, details FROM audit_log WHERE action = 'evidence.imported'")
    assert [(r["subject"], r["details"]["recorded"]) for r in imported] == [("feed:hospital.csv", 2)]


async def test_the_cli_imports_a_feed_and_exits_3_on_refused_lines(
    importer: Any, services: Services, settings: Settings, pool: asyncpg.Pool, tmp_path: Path
) -> None:
    (a,) = await import_pensioners(importer, pool, tmp_path, 1)
    good = _feed(tmp_path, "bank.csv", f"{a.national_id},{_day(1)},B-1", header="national_id,occurred_on,reference\n")
    assert await asyncio.to_thread(run_cli, settings, "import", "evidence", str(good), "--source", "bank_activity") == 0
    bad = tmp_path / "mixed.jsonl"
    bad.write_text(
        f'{{"national_id": "{a.national_id}", "source": "police", "occurred_on": "{_day(2)}", "reference": "P-1"}}\n'
        f'{{"national_id": "{a.national_id}", "source": "qr_charge", "occurred_on": "{_day(2)}", "reference": "Q"}}\n',
        encoding="utf-8",
    )
    assert await asyncio.to_thread(run_cli, settings, "import", "evidence", str(bad)) == 3
    sources = await pool.fetch("SELECT source FROM life_evidence ORDER BY source")
    assert [r["source"] for r in sources] == ["bank_activity", "police"]
    assert await asyncio.to_thread(run_cli, settings, "import", "evidence", str(tmp_path / "none.csv")) == 2


async def test_the_api_imports_a_feed_for_administrators_only(
    importer: Any, client: Any, services: Services, pool: asyncpg.Pool, tmp_path: Path
) -> None:
    (a,) = await import_pensioners(importer, pool, tmp_path, 1)
    admin = await operator_headers_for(services, "admin1", "Admin", role="admin")
    operator = await operator_headers_for(services, "op1", "Operator")
    body = HEADER + f"{a.national_id},insurance_settlement,{_day(6)},S-1\n{a.national_id},nowhere,{_day(6)},S-2\n"
    csv = {"Content-Type": "text/csv"}
    r = await client.post("/v1/admin/evidence?feed=settlements-06", content=body, headers={**admin, **csv})
    assert r.status_code == 200, r.text
    assert r.json() == {
        "recorded": 1,
        "unchanged": 0,
        "rejected": 1,
        "errors": [{"line": 3, "field": "source", "reason": r.json()["errors"][0]["reason"]}],
    }
    assert await pool.fetchval("SELECT feed FROM life_evidence") == "settlements-06:2"
    jsonl = f'{{"national_id": "{a.national_id}", "occurred_on": "{_day(2)}", "reference": "C-1"}}\n'
    r = await client.post(
        "/v1/admin/evidence?source=civil_affairs",
        content=jsonl,
        headers={**admin, "Content-Type": "application/x-ndjson"},
    )
    assert (r.status_code, r.json()["recorded"]) == (200, 1)
    r = await client.post("/v1/admin/evidence", content=body, headers={**admin, "Content-Type": "application/json"})
    assert (r.status_code, problem_code(r)) == (415, "evidence_feed_media_type")
    r = await client.post("/v1/admin/evidence?source=qr_charge", content=body, headers={**admin, **csv})
    assert r.status_code == 400
    r = await client.post(
        "/v1/admin/evidence?feed=a%00b", content=body, headers={**admin, **csv, "Accept-Language": "en"}
    )
    assert (r.status_code, problem_code(r)) == (400, "control_character")
    assert r.json()["detail"] == "The field `feed` contains a character that is not allowed (U+0000)."
    r = await client.post("/v1/admin/evidence", content=b"\xff\xfe", headers={**admin, **csv})
    assert (r.status_code, problem_code(r)) == (400, "body_encoding")
    r = await client.post("/v1/admin/evidence", content=body, headers={**operator, **csv})
    assert r.status_code == 403


# -- the silent pass --------------------------------------------------------------------------------
async def test_the_silent_pass_extends_eligibility_like_a_pass_and_keeps_the_trail(
    importer: Any, services: Services, pool: asyncpg.Pool, tmp_path: Path
) -> None:
    alive, silent, thin, later = await import_pensioners(importer, pool, tmp_path, 4)
    far = TODAY + timedelta(days=300)
    await pool.execute("UPDATE persons SET certified_until = $2 WHERE id = $1", later.id, far)
    await pool.execute("UPDATE persons SET certified_until = $2 WHERE id = $1", alive.id, TODAY + timedelta(days=10))
    old = f"{thin.national_id},bank_activity,{_day(400)},B-old"  # outside the window
    lines = [*_alive_lines(alive), *_alive_lines(later), f"{thin.national_id},bank_activity,{_day(3)},B-1", old]
    await services.evidence.import_file(_feed(tmp_path, "mixed.csv", *lines), "system:test")

    done = await services.evidence.run_pass("system:test")
    assert (done.state, done.scanned, done.confirmed) == ("completed", 3, 1)  # `later` is not due yet
    assert await _until(pool, alive.id) == extended_until(TODAY)
    assert await _until(pool, silent.id) is None  # no evidence: still due, for the face path and its reminders
    assert await _until(pool, thin.id) is None  # one event of one source is not enough
    assert await _until(pool, later.id) == far

    trail = await services.evidence.trail_for_staff(_staff(), alive.id)
    (confirmation,) = trail.confirmations
    assert (confirmation.confirmed_on, confirmation.eligible_until) == (TODAY, extended_until(TODAY))
    assert confirmation.previous_until == TODAY + timedelta(days=10)
    assert [(e.source, e.reference) for e in confirmation.evidence] == [
        ("pharmacy_purchase", f"P-{alive.phone}"),
        ("hospital_visit", f"H-{alive.phone}"),
    ]
    (entry,) = await pool.fetch(
        "SELECT actor, subject, details FROM audit_log WHERE action = 'certification.confirmed_by_data'"
    )
    assert (entry["actor"], entry["subject"]) == ("system:silent-pass", f"silent_pass:{done.id}")
    (audited,) = entry["details"]["confirmations"]
    assert audited["person"] == str(alive.id)
    assert [e[0] for e in audited["evidence"]] == [str(e.id) for e in confirmation.evidence]
    assert audited["eligible_until"] == extended_until(TODAY).isoformat()
    assert (await audit.verify(pool))[1] is None
    # The confirmed person is told, by a job of its own after the pass; the job run twice tells once.
    queued = "SELECT count(*) FROM pgqueuer WHERE entrypoint = 'notifications.announce_confirmations'"
    assert await pool.fetchval(queued) == 1
    assert await services.notifications.announce_confirmations(done.id) == 1
    assert await services.notifications.announce_confirmations(done.id) == 0
    told = await pool.fetch("SELECT person_id, kind, params FROM notifications WHERE kind LIKE 'certification.%'")
    assert [(r["person_id"], r["params"]) for r in told] == [
        (alive.id, {"eligible_until": extended_until(TODAY).isoformat()})
    ]
    # Run again: nobody is due any more who could be confirmed, and nobody is confirmed twice.
    again = await services.evidence.run_pass("system:test")
    assert (again.id != done.id, again.confirmed) == (True, 0)
    assert await pool.fetchval("SELECT count(*) FROM life_confirmations") == 1


def _staff() -> Any:
    from core.principal import OPERATOR, Principal

    return Principal(role=OPERATOR, subject_id=uuid.uuid4(), username="tester")


async def test_a_death_record_always_wins_over_evidence(
    importer: Any, services: Services, pool: asyncpg.Pool, tmp_path: Path
) -> None:
    (dead,) = await import_pensioners(importer, pool, tmp_path, 1)
    await services.evidence.import_file(_feed(tmp_path, "ev.csv", *_alive_lines(dead)), "system:test")
    deaths = tmp_path / "deaths.csv"
    deaths.write_text(f"national_id,date_of_death\n{dead.national_id},{_day(40)}\n", encoding="utf-8")
    assert (await services.deaths.import_file(deaths, "system:test")).recorded == 1
    done = await services.evidence.run_pass("system:test")
    assert done.confirmed == 0
    assert await _until(pool, dead.id) is None
    assert await pool.fetchval("SELECT count(*) FROM life_confirmations") == 0


async def test_a_death_recorded_after_the_batch_was_read_still_wins(
    importer: Any, services: Services, settings: Settings, pool: asyncpg.Pool, tmp_path: Path
) -> None:
    # The persons row says deceased by the time the batch writes: the write leaves them be.
    (dead,) = await import_pensioners(importer, pool, tmp_path, 1)
    await services.evidence.import_file(_feed(tmp_path, "ev.csv", *_alive_lines(dead)), "system:test")
    real = evidence_service.repo.candidates

    async def read_then_die(*args: Any) -> Any:
        rows = await real(*args)
        await pool.execute("UPDATE persons SET vital_status = 'deceased' WHERE id = $1", dead.id)
        return rows

    evidence_service.repo.candidates = read_then_die  # type: ignore[assignment]
    try:
        done = await services.evidence.run_pass("system:test")
    finally:
        evidence_service.repo.candidates = real  # type: ignore[assignment]
    assert done.confirmed == 0
    assert await _until(pool, dead.id) is None


async def test_a_qr_charge_is_evidence(
    importer: Any, client: Any, services: Services, pool: asyncpg.Pool, tmp_path: Path
) -> None:
    holder = await activated_cardholder(client, pool, importer, tmp_path)
    person_id = await pool.fetchval("SELECT id FROM persons WHERE phone = $1", holder["person"].phone)
    await pool.execute("UPDATE persons SET certified_until = current_date + 5 WHERE id = $1", person_id)
    await services.auth.create_terminal("Demo Pharmacy")
    charge_id = await pool.fetchval(
        """INSERT INTO medical_charges (terminal_id, person_id, card_id, qr_token_id, amount_fen, description)
           SELECT (SELECT id FROM terminals), $1, (SELECT id FROM cards WHERE person_id = $1), gen_random_uuid(),
                  1200, '药品'
           RETURNING id""",
        person_id,
    )
    visit = f"{holder['person'].national_id},hospital_visit,{_day(12)},H-1"
    await services.evidence.import_file(_feed(tmp_path, "h.csv", visit), "system:test")
    done = await services.evidence.run_pass("system:test")
    assert done.confirmed == 1
    # The person sees what confirmed them, by source and day, with their ID masked.
    r = await client.get("/v1/certifications/evidence", headers=holder["headers"])
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["masked_national_id"].count("*") >= 8
    (shown,) = body["confirmations"]
    assert shown["evidence"] == [
        {"source": "qr_charge", "occurred_on": TODAY.isoformat()},
        {"source": "hospital_visit", "occurred_on": _day(12)},
    ]
    assert shown["eligible_until"] == extended_until(TODAY).isoformat()
    # Operators see the rows themselves; the look is audited.
    staff = await operator_headers_for(services, "op2", "Operator Two")
    r = await client.get(f"/v1/admin/evidence/persons/{person_id}", headers=staff)
    assert r.status_code == 200, r.text
    seen = r.json()
    assert [e["reference"] for e in seen["confirmations"][0]["evidence"]] == [str(charge_id), "H-1"]
    assert {e["source"] for e in seen["events"]} == {"qr_charge", "hospital_visit"}
    assert await pool.fetchval("SELECT count(*) FROM audit_log WHERE action = 'person.evidence_viewed'") == 1
    r = await client.get(f"/v1/admin/evidence/persons/{uuid.uuid4()}", headers=staff)
    assert r.status_code == 404
    r = await client.get(f"/v1/admin/evidence/persons/{person_id}", headers=holder["headers"])
    assert r.status_code == 403


# -- crashes and resumption -------------------------------------------------------------------------
class Crash(Exception):
    pass


@pytest.mark.parametrize("where", ["between batches", "inside a batch"])
async def test_a_pass_that_crashes_resumes_with_no_duplicate_and_no_gap(
    importer: Any,
    where: str,
    settings: Settings,
    services: Services,
    pool: asyncpg.Pool,
    tmp_path: Path,
    monkeypatch: Any,
) -> None:
    # In the pass's order (person id), the last one without evidence: two batches of two confirm four.
    people = sorted(await import_pensioners(importer, pool, tmp_path, 7), key=lambda p: p.id)
    lines = [line for p in people[:6] for line in _alive_lines(p)]
    await services.evidence.import_file(_feed(tmp_path, "ev.csv", *lines), "system:test")
    small = EvidenceService(pool, msgspec.structs.replace(settings, silent_pass_batch=2))
    batches = 0

    async def crash_after_two(scanned: int, confirmed: int) -> None:
        nonlocal batches
        batches += 1
        if batches == 2:
            raise Crash

    if where == "between batches":
        with pytest.raises(Crash):
            await small.run_pass("system:test", crash_after_two)
    else:
        real = audit.record_many
        calls = 0

        async def fail_third_batch(*args: Any) -> None:
            # The first call audits the pass's start; then one per batch.
            nonlocal calls
            calls += 1
            if calls == 4:
                raise Crash
            await real(*args)

        monkeypatch.setattr(audit, "record_many", fail_third_batch)
        with pytest.raises(Crash):
            await small.run_pass("system:test")
        monkeypatch.setattr(audit, "record_many", real)
    halfway = await pool.fetchval("SELECT count(*) FROM life_confirmations")
    assert halfway == 4  # two whole batches; the third left nothing behind
    # Started again (by the scheduler or the CLI): the same pass goes on where it stopped.
    done = await small.run_pass("system:test")
    assert (done.state, done.scanned, done.confirmed) == ("completed", 7, 6)
    assert await pool.fetchval("SELECT count(DISTINCT pass_id) FROM life_confirmations") == 1
    confirmed = {r["person_id"] for r in await pool.fetch("SELECT person_id FROM life_confirmations")}
    assert confirmed == {p.id for p in people[:6]}
    audited = await pool.fetchval(
        """SELECT count(*) FROM audit_log, jsonb_array_elements(details -> 'confirmations')
           WHERE action = 'certification.confirmed_by_data'"""
    )
    assert audited == 6
    assert (await audit.verify(pool))[1] is None


async def test_two_executors_share_one_pass(
    importer: Any, settings: Settings, services: Services, pool: asyncpg.Pool, tmp_path: Path
) -> None:
    people = await import_pensioners(importer, pool, tmp_path, 6)
    lines = [line for p in people for line in _alive_lines(p)]
    await services.evidence.import_file(_feed(tmp_path, "ev.csv", *lines), "system:test")
    small = EvidenceService(pool, msgspec.structs.replace(settings, silent_pass_batch=1))
    first, second = await asyncio.gather(small.run_pass("system:cli"), small.run_pass("system:scheduler"))
    assert first.id == second.id
    assert (first.confirmed, await pool.fetchval("SELECT count(*) FROM life_confirmations")) == (6, 6)


async def test_the_cli_runs_the_silent_pass(
    importer: Any, settings: Settings, services: Services, pool: asyncpg.Pool, tmp_path: Path, capsys: Any
) -> None:
    (p,) = await import_pensioners(importer, pool, tmp_path, 1)
    await services.evidence.import_file(_feed(tmp_path, "ev.csv", *_alive_lines(p)), "system:test")
    assert await asyncio.to_thread(run_cli, settings, "certify", "silent-pass") == 0
    out, _ = capsys.readouterr()
    assert '"confirmed": 1' in out
    assert await _until(pool, p.id) == extended_until(TODAY)


async def test_an_administrator_queues_the_pass(
    importer: Any, client: Any, services: Services, pool: asyncpg.Pool
) -> None:
    admin = await operator_headers_for(services, "admin2", "Admin", role="admin")
    r = await client.post("/v1/admin/evidence/silent-passes", headers=admin)
    assert r.status_code == 202, r.text
    assert r.json()["state"] == "running"
    again = await client.post("/v1/admin/evidence/silent-passes", headers=admin)
    assert again.json()["id"] == r.json()["id"]
    assert await pool.fetchval("SELECT count(*) FROM pgqueuer WHERE entrypoint = 'certification.silent_pass'") == 1
