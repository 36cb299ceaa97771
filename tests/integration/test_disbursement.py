"""Disbursement runs on the real database: who is paid, withheld and back-paid; the bank's files;
what the retiree sees; the admin API."""

from __future__ import annotations

import asyncio
import csv
import io
import uuid
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import asyncpg

from app.services import Services
from infra.config import Settings
from infra.crypto import FieldCipher
from tests.factories import operator_headers_for, sample_person, write_jsonl

NOV, DEC, JAN, FEB = date(2026, 11, 1), date(2026, 12, 1), date(2027, 1, 1), date(2027, 2, 1)


async def import_pensioners(
    importer: Any, pool: asyncpg.Pool, folder: Path, count: int, amount: int = 350000
) -> list[uuid.UUID]:
    people = [sample_person() for _ in range(count)]
    rows = [
        p.row(
            pension={"monthly_amount": amount + i, "bank_account": f"62220202001122{i:05d}", "start_month": "2010-01"}
        )
        for i, p in enumerate(people)
    ]
    report = await importer.import_file(write_jsonl(folder / f"pensioners-{uuid.uuid4()}.jsonl", rows))
    assert report.created == count, report.errors
    return [await pool.fetchval("SELECT id FROM persons WHERE phone = $1", p.phone) for p in people]


async def certify_until(pool: asyncpg.Pool, person_id: uuid.UUID, until: date | None) -> None:
    await pool.execute("UPDATE persons SET certified_until = $2 WHERE id = $1", person_id, until)


async def records(pool: asyncpg.Pool, person_id: uuid.UUID) -> list[asyncpg.Record]:
    return await pool.fetch(
        """SELECT period, kind, status, withheld_reason, amount_fen, covers, back_paid_by
           FROM pension_payments WHERE person_id = $1 ORDER BY period, kind DESC""",
        person_id,
    )


async def test_a_run_pays_the_certified_and_withholds_the_rest_with_a_reason(
    services: Services, pool: asyncpg.Pool, importer: Any, tmp_path: Path
) -> None:
    certified, lapsed, never, not_started, deceased = await import_pensioners(importer, pool, tmp_path, 5)
    await certify_until(pool, certified, DEC + timedelta(days=14))  # through the pay date (the 15th)
    await certify_until(pool, lapsed, DEC + timedelta(days=13))  # one day short
    await certify_until(pool, not_started, date(2027, 12, 31))
    await pool.execute("UPDATE pension_entitlements SET start_month = $2 WHERE person_id = $1", not_started, JAN)
    await certify_until(pool, deceased, date(2027, 12, 31))
    await pool.execute("UPDATE persons SET vital_status = 'deceased', date_of_death = $2 WHERE id = $1", deceased, NOV)

    run = await services.disbursements.run(DEC, "system:test")
    assert run["state"] == "completed"
    assert (run["entitlements"], run["processed"]) == (3, 3)
    assert (run["paid_count"], run["withheld_count"], run["back_pay_count"]) == (1, 2, 0)
    assert run["paid_fen"] == 350000
    assert run["withheld_fen"] == 350001 + 350002

    assert [(r["status"], r["withheld_reason"]) for r in await records(pool, certified)] == [("paid", None)]
    assert [(r["status"], r["withheld_reason"]) for r in await records(pool, lapsed)] == [
        ("withheld", "certification_expired")
    ]
    assert [(r["status"], r["withheld_reason"]) for r in await records(pool, never)] == [("withheld", "not_certified")]
    assert await records(pool, not_started) == []  # the pension starts next month
    assert await records(pool, deceased) == []  # nothing for months after death

    # Running the period again changes nothing: one record per entitlement and month.
    again = await services.disbursements.run(DEC, "system:test")
    assert again["id"] == run["id"]
    assert await pool.fetchval("SELECT count(*) FROM pension_payments") == 3
    assert await pool.fetchval("SELECT count(*) FROM audit_log WHERE action = 'disbursement.completed'") == 1
    event = await pool.fetchrow("SELECT payload FROM system_events WHERE kind = 'disbursement.completed'")
    assert event is not None
    assert event["payload"] == {"run_id": str(run["id"]), "period": "2026-12-01"}


async def test_withheld_months_are_back_paid_once_after_a_later_pass(
    services: Services, pool: asyncpg.Pool, importer: Any, tmp_path: Path
) -> None:
    (person,) = await import_pensioners(importer, pool, tmp_path, 1, amount=200000)
    await certify_until(pool, person, NOV - timedelta(days=1))
    await services.disbursements.run(NOV, "system:test")
    await services.disbursements.run(DEC, "system:test")
    await certify_until(pool, person, date(2027, 12, 31))  # a pass before January's pay date
    jan = await services.disbursements.run(JAN, "system:test")
    await services.disbursements.run(FEB, "system:test")

    rows = await records(pool, person)
    assert [(r["period"], r["kind"], r["status"], r["amount_fen"]) for r in rows] == [
        (NOV, "monthly", "withheld", 200000),
        (DEC, "monthly", "withheld", 200000),
        (JAN, "monthly", "paid", 200000),
        (JAN, "back_pay", "paid", 400000),
        (FEB, "monthly", "paid", 200000),  # no second back-pay
    ]
    back_pay = await pool.fetchval("SELECT id FROM pension_payments WHERE kind = 'back_pay'")
    assert rows[3]["covers"] == [NOV, DEC]
    assert rows[0]["back_paid_by"] == rows[1]["back_paid_by"] == back_pay
    assert (jan["back_pay_count"], jan["back_pay_fen"]) == (1, 400000)


async def test_two_runs_of_one_period_at_once_make_the_same_records(
    settings: Settings, pool: asyncpg.Pool, importer: Any, tmp_path: Path
) -> None:
    people = await import_pensioners(importer, pool, tmp_path, 30)
    for person in people[::3]:
        await certify_until(pool, person, date(2027, 12, 31))
    # Batches of 4: the two runners interleave over many transactions.
    from payments.disbursement.service import DisbursementService

    cipher = FieldCipher(settings.data_encryption_key)
    small = [DisbursementService(pool, cipher, 15, 4) for _ in range(2)]
    first, second = await asyncio.gather(*(s.run(DEC, "system:test") for s in small))
    assert first["id"] == second["id"]
    counts = await pool.fetchrow(
        """SELECT count(*) AS n, count(DISTINCT person_id) AS people, count(*) FILTER (WHERE status = 'paid') AS paid
           FROM pension_payments"""
    )
    assert counts is not None
    assert (counts["n"], counts["people"], counts["paid"]) == (30, 30, 10)
    assert second["processed"] == 30


async def test_bank_file_and_returns(
    client: Any, services: Services, pool: asyncpg.Pool, importer: Any, tmp_path: Path
) -> None:
    admin = await operator_headers_for(services, "paymaster", "Pay Master", role="admin")
    people = await import_pensioners(importer, pool, tmp_path, 3)
    for person in people:
        await certify_until(pool, person, date(2027, 12, 31))

    r = await client.post("/v1/admin/disbursements", json={"period": "2026-12"}, headers=admin)
    assert r.status_code == 202, r.text
    run = r.json()
    assert run["state"] == "running"
    assert await pool.fetchval("SELECT count(*) FROM pgqueuer WHERE entrypoint = 'payments.disburse'") == 1
    r = await client.get(f"/v1/admin/disbursements/{run['id']}/bank-file", headers=admin)
    assert r.status_code == 409  # not before the run is complete
    assert r.json()["code"] == "disbursement_running"

    await services.disbursements.process(uuid.UUID(run["id"]))  # what the worker's job does
    r = await client.get(f"/v1/admin/disbursements/{run['id']}", headers=admin)
    assert r.json()["state"] == "completed"
    assert (r.json()["processed"], r.json()["paid_count"], r.json()["paid_fen"]) == (3, 3, 350000 * 3 + 3)

    # Maker-checker: the file waits for a second administrator's approval, then for the release.
    r = await client.get(f"/v1/admin/disbursements/{run['id']}/bank-file", headers=admin)
    assert (r.status_code, r.json()["code"]) == (409, "disbursement_not_approved")
    r = await client.post(f"/v1/admin/disbursements/{run['id']}/approval", headers=admin)
    assert (r.status_code, r.json()["code"]) == (403, "approval_by_requester")
    assert r.headers["content-type"] == "application/problem+json"
    checker = await operator_headers_for(services, "checker", "Che Cker", role="admin")
    r = await client.post(f"/v1/admin/disbursements/{run['id']}/approval", headers=checker)
    assert (r.status_code, r.json()["state"]) == (200, "approved"), r.text
    r = await client.get(f"/v1/admin/disbursements/{run['id']}/bank-file", headers=admin)
    assert (r.status_code, r.json()["code"]) == (409, "disbursement_not_released")
    r = await client.post(f"/v1/admin/disbursements/{run['id']}/release", headers=admin)
    assert (r.status_code, r.json()["state"], r.json()["unanswered_count"]) == (200, "released", 3), r.text

    r = await client.get(f"/v1/admin/disbursements/{run['id']}/bank-file", headers=admin)
    assert r.status_code == 200
    lines = list(csv.reader(io.StringIO(r.text)))
    assert lines[0] == ["reference", "name", "account", "amount"]
    assert lines[-1] == ["TRAILER", "3", "10500.03"]
    body = lines[1:-1]
    assert sorted(line[2] for line in body) == ["6222020200112200000", "6222020200112200001", "6222020200112200002"]
    assert all(line[1].startswith("测") and set(line[1][1:]) == {"*"} for line in body)
    assert await pool.fetchval("SELECT count(*) FROM audit_log WHERE action = 'disbursement.bank_file_exported'") == 1
    refs = [line[0] for line in body]

    # A file with one bad line is refused whole: nothing changes.
    bad = f"reference,result,reason\n{refs[0]},paid,\n{refs[1]},bounced,\n{uuid.uuid4()},paid,\n"
    r = await client.post("/v1/admin/disbursements/bank-returns", content=bad.encode(), headers=admin)
    assert r.status_code == 422, r.text
    assert [e["line"] for e in r.json()["errors"]] == [3]
    bad = f"reference,result,reason\n{refs[0]},paid,\n{uuid.uuid4()},paid,\n"
    r = await client.post("/v1/admin/disbursements/bank-returns", content=bad.encode(), headers=admin)
    assert r.status_code == 422
    assert [e["line"] for e in r.json()["errors"]] == [3]
    assert await pool.fetchval("SELECT count(*) FROM pension_payments WHERE bank_status <> 'pending'") == 0

    good = f"reference,result,reason\n{refs[0]},paid,\n{refs[1]},paid,\n{refs[2]},returned,account closed\n"
    r = await client.post("/v1/admin/disbursements/bank-returns", content=good.encode(), headers=admin)
    assert r.status_code == 200, r.text
    assert r.json() == {"confirmed": 2, "returned": 1, "unchanged": 0, "errors": [], "reconciled_runs": [run["id"]]}
    r = await client.post("/v1/admin/disbursements/bank-returns", content=good.encode(), headers=admin)
    assert r.json() == {"confirmed": 0, "returned": 0, "unchanged": 3, "errors": [], "reconciled_runs": []}
    # A returned payment cannot turn into a paid one.
    flip = f"reference,result,reason\n{refs[2]},paid,\n"
    r = await client.post("/v1/admin/disbursements/bank-returns", content=flip.encode(), headers=admin)
    assert r.status_code == 422

    r = await client.get("/v1/admin/payments/returned", headers=admin)
    assert [(i["id"], i["bank_return_reason"]) for i in r.json()["items"]] == [(refs[2], "account closed")]
    assert r.json()["items"][0]["national_id_masked"].count("*") == 8
    r = await client.get(f"/v1/admin/disbursements/{run['id']}", headers=admin)
    # The file's lines follow the payments' ids, not the pensioners' order: the returned one's amount is its own.
    returned_fen = await pool.fetchval("SELECT amount_fen FROM pension_payments WHERE id = $1", uuid.UUID(refs[2]))
    assert (r.json()["returned_count"], r.json()["returned_fen"]) == (1, returned_fen)
    assert (r.json()["state"], r.json()["unanswered_count"]) == ("reconciled", 0)
    actions = [row["action"] for row in await pool.fetch("SELECT action FROM audit_log ORDER BY at, chain, seq")]
    assert [a.removeprefix("disbursement.") for a in actions if a.startswith("disbursement.")] == [
        *("started", "completed", "approved", "released", "bank_file_exported"),
        *("reconciled", "bank_returns_imported", "bank_returns_imported"),  # the second import: all unchanged
    ]


async def test_staff_only_and_bad_periods(
    client: Any, services: Services, operator_headers: dict[str, str], cardholder: dict[str, Any]
) -> None:
    admin = await operator_headers_for(services, "paymaster", "Pay Master", role="admin")
    for headers in (operator_headers, cardholder["headers"]):
        r = await client.post("/v1/admin/disbursements", json={"period": "2026-12"}, headers=headers)
        assert r.status_code == 403
    r = await client.post("/v1/admin/disbursements", json={"period": "2026-12"})
    assert r.status_code == 401
    for period in ("2026-13", "2026-1", "december", ""):
        r = await client.post("/v1/admin/disbursements", json={"period": period}, headers=admin)
        assert r.status_code == 400, (period, r.text)
        assert r.headers["content-type"] == "application/problem+json"
    r = await client.post("/v1/admin/disbursements", json={"period": "2026-12", "force": True}, headers=admin)
    assert r.status_code == 400
    r = await client.get(f"/v1/admin/disbursements/{uuid.uuid4()}", headers=admin)
    assert r.status_code == 404
    r = await client.post("/v1/admin/disbursements/bank-returns", content=b"\xff\xfe\x00", headers=admin)
    assert r.status_code == 400


async def test_the_retiree_sees_payments_and_a_statement(
    client: Any, services: Services, pool: asyncpg.Pool, cardholder: dict[str, Any]
) -> None:
    person = await pool.fetchval("SELECT id FROM persons WHERE phone = $1", cardholder["person"].phone)
    headers = {**cardholder["headers"], "Accept-Language": "en"}
    await certify_until(pool, person, NOV - timedelta(days=1))
    await services.disbursements.run(NOV, "system:test")
    await services.disbursements.run(DEC, "system:test")
    await certify_until(pool, person, date(2027, 12, 31))
    await services.disbursements.run(JAN, "system:test")

    r = await client.get("/v1/payments?limit=2", headers=headers)
    assert r.status_code == 200, r.text
    page = r.json()
    assert [(i["period"], i["kind"]) for i in page["items"]] == [("2027-01", "monthly"), ("2027-01", "back_pay")]
    assert page["items"][1]["covers"] == ["2026-11", "2026-12"]
    r = await client.get(f"/v1/payments?limit=2&cursor={page['next_cursor']}", headers=headers)
    rest = r.json()
    assert [(i["period"], i["status"]) for i in rest["items"]] == [("2026-12", "withheld"), ("2026-11", "withheld")]
    assert rest["items"][0]["withheld_reason"]["code"] == "certification_expired"
    assert "certification had expired" in rest["items"][0]["withheld_reason"]["text"]
    assert rest["next_cursor"] is None
    assert (await client.get("/v1/payments?cursor=bm9wZQ==", headers=headers)).status_code == 400

    one = page["items"][1]
    r = await client.get(f"/v1/payments/{one['id']}", headers=headers)
    assert r.json() == one
    r = await client.get(f"/v1/payments/{uuid.uuid4()}", headers=headers)
    assert r.status_code == 404

    r = await client.get("/v1/payments/statements/2026", headers=headers)
    statement = r.json()
    nov, dec = statement["months"][10], statement["months"][11]
    assert (nov["month"], nov["withheld_fen"], nov["withheld_reasons"][0]["code"]) == (
        "2026-11",
        350000,
        "certification_expired",
    )
    assert dec["withheld_fen"] == 350000
    assert (statement["paid_fen"], statement["withheld_fen"]) == (0, 700000)
    r = await client.get("/v1/payments/statements/2027", headers=headers)
    jan = r.json()["months"][0]
    assert (jan["paid_fen"], jan["back_pay_fen"], jan["back_pay_covers"]) == (350000, 700000, ["2026-11", "2026-12"])
    assert (await client.get("/v1/payments/statements/1800", headers=headers)).status_code == 400
