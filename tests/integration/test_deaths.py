"""Death records from the civil-affairs feed, the overpayments they reveal, and an operator's
reversal of a wrong report, on the real database with real disbursement runs."""

from __future__ import annotations

import asyncio
import uuid
from datetime import date
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from app.services import Services
from infra.config import Settings
from infra.db import unit_of_work
from payments.deaths import repository as deaths_repository
from payments.disbursement import repository as disbursement_repository
from tests.factories import SamplePerson, bearer, run_cli, sample_person, until_waiting_on_a_lock, write_jsonl

SEP, OCT, NOV, DEC = date(2025, 9, 1), date(2025, 10, 1), date(2025, 11, 1), date(2025, 12, 1)
JAN, FEB = date(2026, 1, 1), date(2026, 2, 1)
MONTHLY = 350000  # tests.factories: every sample pension


async def _import(importer: Any, pool: asyncpg.Pool, folder: Path, *persons: SamplePerson) -> list[uuid.UUID]:
    """Imported and certified until long after every run here; their person ids."""
    report = await importer.import_file(write_jsonl(folder / f"p-{persons[0].phone}.jsonl", [p.row() for p in persons]))
    assert report.created == len(persons), report.errors
    phones = [p.phone for p in persons]
    await pool.execute("UPDATE persons SET certified_until = '2099-12-31' WHERE phone = ANY ($1)", phones)
    return [await pool.fetchval("SELECT id FROM persons WHERE phone = $1", phone) for phone in phones]


def _feed(folder: Path, name: str, *lines: str) -> Path:
    path = folder / name
    path.write_text("national_id,date_of_death\n" + "".join(f"{line}\n" for line in lines), encoding="utf-8")
    return path


async def _run(services: Services, *periods: date) -> None:
    for period in periods:
        run = await services.disbursements.run(period, "system:test")
        assert run["state"] == "completed"


async def _overpayments(pool: asyncpg.Pool, person_id: uuid.UUID) -> list[tuple[date, str, int, str]]:
    rows = await pool.fetch(
        """SELECT p.period, p.kind, o.amount_fen, o.status
           FROM overpayments o JOIN pension_payments p ON p.id = o.payment_id
           WHERE o.person_id = $1 ORDER BY p.period, p.kind""",
        person_id,
    )
    return [(r["period"], r["kind"], r["amount_fen"], r["status"]) for r in rows]


async def _state(pool: asyncpg.Pool, person_id: uuid.UUID) -> tuple[str, date | None, str, str]:
    row = await pool.fetchrow(
        """SELECT p.vital_status, p.date_of_death, c.status AS card, e.status AS entitlement
           FROM persons p JOIN cards c ON c.person_id = p.id JOIN pension_entitlements e ON e.person_id = p.id
           WHERE p.id = $1""",
        person_id,
    )
    assert row is not None
    return row["vital_status"], row["date_of_death"], row["card"], row["entitlement"]


async def _return_to_bank(services: Services, pool: asyncpg.Pool, person_id: uuid.UUID, period: date) -> None:
    payment_id = await pool.fetchval(
        "SELECT id FROM pension_payments WHERE person_id = $1 AND period = $2 AND kind = 'monthly'", person_id, period
    )
    # The bank answers only for an order released to it: two administrators sign the run first.
    run_id = await pool.fetchval("SELECT run_id FROM pension_payments WHERE id = $1", payment_id)
    await services.disbursements.approve(run_id, "admin:checker")
    await services.disbursements.release(run_id, "admin:payer")
    report = await services.disbursements.import_returns(
        f"reference,result,reason\n{payment_id},returned,account closed\n", "system:test"
    )
    assert report.returned == 1, report.errors


async def test_feed_lines_land_or_are_reported(
    services: Services, importer: Any, pool: asyncpg.Pool, tmp_path: Path
) -> None:
    dead, born_later, alive = sample_person(), sample_person(), sample_person()
    dead_id, born_later_id, alive_id = await _import(importer, pool, tmp_path, dead, born_later, alive)
    stranger = sample_person()  # a valid number nobody imported
    bad_check = dead.national_id[:-1] + ("0" if dead.national_id[-1] != "0" else "1")
    feed = _feed(
        tmp_path,
        "deaths.csv",
        f"{dead.national_id},2025-10-20",
        f"{bad_check},2025-10-20",
        f"{stranger.national_id},2025-10-20",
        f"{born_later.national_id},1930-01-01",
        f"{alive.national_id},2999-01-01",
        f"{alive.national_id},not-a-date",
    )
    report = await services.deaths.import_file(feed, "system:test")
    assert (report.recorded, report.updated, report.unchanged) == (1, 0, 0)
    assert [(e.line, e.field, e.reason) for e in report.errors] == [
        (3, "national_id", "check digit does not match (GB 11643)"),
        (4, "national_id", "no person with this national ID"),
        (5, "date_of_death", "is before the person's birth date"),
        (6, "date_of_death", "is in the future"),
        (7, "date_of_death", "must be a date like 2026-03-07"),
    ]
    assert await _state(pool, dead_id) == ("deceased", date(2025, 10, 20), "cancelled", "stopped")
    for living in (born_later_id, alive_id):
        assert await _state(pool, living) == ("alive", None, "pending_activation", "active")
    record = await pool.fetchrow("SELECT * FROM death_records")
    assert record is not None
    assert (record["person_id"], record["source"], record["card_status_before"]) == (
        dead_id,
        "deaths.csv:2",
        "pending_activation",
    )
    audit = await pool.fetch("SELECT actor, subject, details FROM audit_log WHERE action = 'person.death_recorded'")
    assert len(audit) == 1
    assert (audit[0]["actor"], audit[0]["subject"]) == ("system:test", f"person:{dead_id}")
    details = audit[0]["details"]
    assert details["masked_national_id"] == dead.national_id[:6] + "********" + dead.national_id[-4:]
    assert (details["source"], details["date_of_death"]) == ("deaths.csv:2", "2025-10-20")
    assert dead.national_id not in str(details)


async def test_the_cli_prints_the_line_report_and_exits_3(
    importer: Any, pool: asyncpg.Pool, settings: Settings, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    person = sample_person()
    await _import(importer, pool, tmp_path, person)
    feed = write_jsonl(
        tmp_path / "deaths.jsonl",
        [
            {"national_id": person.national_id, "date_of_death": "2025-10-20"},
            {"national_id": sample_person().national_id, "date_of_death": "2025-10-20"},
        ],
    )

    assert await asyncio.to_thread(run_cli, settings, "import", "deaths", str(feed)) == 3
    out, err = capsys.readouterr()
    assert out.strip() == "recorded 1, updated 0, unchanged 0, rejected 1 row(s)"
    assert err.strip() == "line 2: national_id: no person with this national ID"
    assert await pool.fetchval("SELECT vital_status FROM persons WHERE phone = $1", person.phone) == "deceased"


async def test_overpayments_are_the_paid_months_after_the_month_of_death(
    services: Services, importer: Any, pool: asyncpg.Pool, tmp_path: Path
) -> None:
    plain, returned, back_paid = sample_person(), sample_person(), sample_person()
    plain_id, returned_id, back_paid_id = await _import(importer, pool, tmp_path, plain, returned, back_paid)
    # `back_paid` is not certified for October and November: December pays them back.
    await _run(services, SEP)
    await pool.execute("UPDATE persons SET certified_until = NULL WHERE id = $1", back_paid_id)
    await _run(services, OCT, NOV)
    await pool.execute("UPDATE persons SET certified_until = '2099-12-31' WHERE id = $1", back_paid_id)
    await _run(services, DEC)
    covers = await pool.fetchval(
        "SELECT covers FROM pension_payments WHERE person_id = $1 AND kind = 'back_pay'", back_paid_id
    )
    assert covers == [OCT, NOV]
    await _return_to_bank(services, pool, returned_id, NOV)  # never reached the person

    feed = _feed(
        tmp_path,
        "deaths.csv",
        f"{plain.national_id},2025-10-31",
        f"{returned.national_id},2025-10-01",
        f"{back_paid.national_id},2025-10-15",
    )
    report = await services.deaths.import_file(feed, "system:test")
    assert (report.recorded, report.errors) == (3, [])
    # October, the month of death, is owed; the months after it are not.
    assert await _overpayments(pool, plain_id) == [
        (NOV, "monthly", MONTHLY, "to_recover"),
        (DEC, "monthly", MONTHLY, "to_recover"),
    ]
    assert await _overpayments(pool, returned_id) == [(DEC, "monthly", MONTHLY, "to_recover")]
    # The back-payment made in December covered October (owed) and November (not owed).
    assert await _overpayments(pool, back_paid_id) == [
        (DEC, "back_pay", MONTHLY, "to_recover"),
        (DEC, "monthly", MONTHLY, "to_recover"),
    ]
    audit = await pool.fetchval(
        "SELECT details FROM audit_log WHERE action = 'person.death_recorded' AND subject = $1",
        f"person:{back_paid_id}",
    )
    assert (audit["overpayments"], audit["overpaid_fen"]) == (2, 2 * MONTHLY)

    # Deceased persons get no record from later runs.
    await _run(services, JAN)
    assert not await pool.fetchval(
        "SELECT count(*) FROM pension_payments WHERE period = $1 AND person_id = ANY ($2)",
        JAN,
        [plain_id, returned_id, back_paid_id],
    )

    # The same feed again changes nothing and writes no audit entry.
    again = await services.deaths.import_file(feed, "system:test")
    assert (again.recorded, again.updated, again.unchanged) == (0, 0, 3)
    assert await pool.fetchval("SELECT count(*) FROM audit_log WHERE action = 'person.death_recorded'") == 3
    assert await pool.fetchval("SELECT count(*) FROM overpayments") == 5


async def test_the_same_report_landing_twice_at_once_is_recorded_once(
    services: Services, importer: Any, pool: asyncpg.Pool, tmp_path: Path
) -> None:
    person = sample_person()
    (person_id,) = await _import(importer, pool, tmp_path, person)
    await _run(services, SEP, OCT)
    feed = _feed(tmp_path, "deaths.csv", f"{person.national_id},2025-09-03")
    reports = await asyncio.gather(*(services.deaths.import_file(feed, "system:test") for _ in range(4)))
    assert sorted((r.recorded, r.unchanged) for r in reports) == [(0, 1), (0, 1), (0, 1), (1, 0)]
    assert await pool.fetchval("SELECT count(*) FROM death_records") == 1
    assert await _overpayments(pool, person_id) == [(OCT, "monthly", MONTHLY, "to_recover")]
    assert await pool.fetchval("SELECT count(*) FROM audit_log WHERE action = 'person.death_recorded'") == 1


async def test_a_corrected_date_recomputes_the_overpayments(
    services: Services, importer: Any, pool: asyncpg.Pool, tmp_path: Path
) -> None:
    person = sample_person()
    (person_id,) = await _import(importer, pool, tmp_path, person)
    await _run(services, SEP, OCT, NOV, DEC)
    await services.deaths.import_file(_feed(tmp_path, "a.csv", f"{person.national_id},2025-09-30"), "system:test")
    assert [o[0] for o in await _overpayments(pool, person_id)] == [OCT, NOV, DEC]

    later = await services.deaths.import_file(_feed(tmp_path, "b.csv", f"{person.national_id},2025-11-02"), "t")
    assert (later.recorded, later.updated) == (0, 1)
    assert await _overpayments(pool, person_id) == [
        (OCT, "monthly", MONTHLY, "cancelled"),
        (NOV, "monthly", MONTHLY, "cancelled"),
        (DEC, "monthly", MONTHLY, "to_recover"),
    ]
    assert await pool.fetchval("SELECT date_of_death FROM persons WHERE id = $1", person_id) == date(2025, 11, 2)
    record = await pool.fetchrow("SELECT date_of_death, source FROM death_records WHERE person_id = $1", person_id)
    assert record is not None
    assert (record["date_of_death"], record["source"]) == (date(2025, 11, 2), "b.csv:2")
    details = await pool.fetchval(
        "SELECT details FROM audit_log WHERE action = 'person.death_recorded' ORDER BY at DESC, chain DESC, seq DESC LIMIT 1"
    )
    assert details["previous_date_of_death"] == "2025-09-30"

    earlier = await services.deaths.import_file(_feed(tmp_path, "c.csv", f"{person.national_id},2025-08-15"), "t")
    assert earlier.updated == 1
    assert [(o[0], o[3]) for o in await _overpayments(pool, person_id)] == [
        (SEP, "to_recover"),
        (OCT, "to_recover"),
        (NOV, "to_recover"),
        (DEC, "to_recover"),
    ]
    assert await pool.fetchval("SELECT count(*) FROM death_records") == 1


async def test_an_operator_reverses_a_wrong_report_and_the_next_run_pays_the_months_back(
    client: Any,
    services: Services,
    pool: asyncpg.Pool,
    cardholder: dict[str, Any],
    operator_headers: dict[str, str],
    tmp_path: Path,
) -> None:
    person: SamplePerson = cardholder["person"]
    person_id = await pool.fetchval("SELECT id FROM persons WHERE phone = $1", person.phone)
    await _run(services, SEP, OCT)
    await services.deaths.import_file(_feed(tmp_path, "deaths.csv", f"{person.national_id},2025-09-10"), "t")
    assert await _state(pool, person_id) == ("deceased", date(2025, 9, 10), "cancelled", "stopped")
    assert await _overpayments(pool, person_id) == [(OCT, "monthly", MONTHLY, "to_recover")]
    r = await client.post("/v1/card/qr", headers=cardholder["headers"])
    assert r.status_code == 409
    # The statement shows October as money to recover.
    months = (await client.get("/v1/payments/statements/2025", headers=cardholder["headers"])).json()["months"]
    assert (months[9]["paid_fen"], months[9]["to_recover_fen"]) == (MONTHLY, MONTHLY)
    await _run(services, NOV, DEC)  # the wrong report stopped these two months

    r = await client.post(
        "/v1/admin/death-reversals",
        json={
            "national_id": person.national_id.lower(),
            "reason": "  the civil-affairs office named the wrong person ",
        },
        headers=operator_headers,
    )
    assert r.status_code == 200, r.text
    assert r.json() == {
        "person_id": str(person_id),
        "masked_national_id": person.national_id[:6] + "********" + person.national_id[-4:],
        "vital_status": "alive",
        "card_status": "active",
        "entitlement_status": "active",
        "overpayments_cancelled": 1,
        "months_restored": ["2025-11-01", "2025-12-01"],
    }
    assert await _state(pool, person_id) == ("alive", None, "active", "active")
    assert await _overpayments(pool, person_id) == [(OCT, "monthly", MONTHLY, "cancelled")]
    record = await pool.fetchrow("SELECT * FROM death_records WHERE person_id = $1", person_id)
    assert record is not None
    assert record["reversed_at"] is not None
    assert record["reversal_reason"] == "the civil-affairs office named the wrong person"
    assert record["reversed_by"].startswith("operator:")
    withheld = await pool.fetch(
        """SELECT p.period, p.withheld_reason, p.amount_fen, r.period AS run_period
           FROM pension_payments p JOIN disbursement_runs r ON r.id = p.run_id
           WHERE p.person_id = $1 AND p.status = 'withheld' ORDER BY p.period""",
        person_id,
    )
    assert [tuple(w) for w in withheld] == [
        (NOV, "reported_deceased", MONTHLY, NOV),
        (DEC, "reported_deceased", MONTHLY, DEC),
    ]
    event = await pool.fetchrow("SELECT * FROM domain_events WHERE kind = 'death.reversed'")
    assert event is not None
    assert event["person_id"] == person_id
    assert event["dedupe_key"] == f"death.reversed:{record['id']}"
    assert event["payload"]["months_restored"] == ["2025-11-01", "2025-12-01"]
    audit = await pool.fetchrow("SELECT actor, details FROM audit_log WHERE action = 'person.death_reversed'")
    assert audit is not None
    assert audit["actor"] == record["reversed_by"]
    assert audit["details"]["reason"] == "the civil-affairs office named the wrong person"
    assert person.national_id not in str(audit["details"])
    # The card works again.
    assert (await client.post("/v1/card/qr", headers=cardholder["headers"])).status_code == 201

    # The next run pays January and the two restored months back, once.
    await _run(services, JAN)
    back_pay = await pool.fetchrow(
        "SELECT id, period, amount_fen, covers FROM pension_payments WHERE person_id = $1 AND kind = 'back_pay'",
        person_id,
    )
    assert back_pay is not None
    assert (back_pay["period"], back_pay["amount_fen"], back_pay["covers"]) == (JAN, 2 * MONTHLY, [NOV, DEC])
    assert await pool.fetchval(
        "SELECT array_agg(period ORDER BY period) FROM pension_payments WHERE back_paid_by = $1", back_pay["id"]
    ) == [NOV, DEC]
    # The statements show each step: withheld for the wrong report, then paid back in January.
    headers = {**cardholder["headers"], "Accept-Language": "en"}
    months = (await client.get("/v1/payments/statements/2025", headers=headers)).json()["months"]
    assert [(m["month"], m["paid_fen"], m["withheld_fen"], m["to_recover_fen"]) for m in months[8:]] == [
        ("2025-09", MONTHLY, 0, 0),
        ("2025-10", MONTHLY, 0, 0),  # the overpayment was cancelled
        ("2025-11", 0, MONTHLY, 0),
        ("2025-12", 0, MONTHLY, 0),
    ]
    assert months[10]["withheld_reasons"][0]["code"] == "reported_deceased"
    assert "withdrawn" in months[10]["withheld_reasons"][0]["text"]
    january = (await client.get("/v1/payments/statements/2026", headers=headers)).json()["months"][0]
    assert (january["paid_fen"], january["back_pay_fen"], january["back_pay_covers"]) == (
        MONTHLY,
        2 * MONTHLY,
        ["2025-11", "2025-12"],
    )
    await _run(services, JAN, FEB)
    assert (
        await pool.fetchval(
            "SELECT count(*) FROM pension_payments WHERE person_id = $1 AND kind = 'back_pay'", person_id
        )
        == 1
    )
    assert (
        await pool.fetchval(
            "SELECT count(*) FROM pension_payments WHERE person_id = $1 AND kind = 'monthly' AND status = 'paid'",
            person_id,
        )
        == 4
    )  # September, October, January, February

    # Reversed already: nothing stands to reverse.
    r = await client.post(
        "/v1/admin/death-reversals",
        json={"national_id": person.national_id, "reason": "again"},
        headers=operator_headers,
    )
    assert (r.status_code, r.json()["code"]) == (409, "not_deceased")


async def test_months_before_the_pension_starts_are_not_restored(
    client: Any,
    services: Services,
    importer: Any,
    pool: asyncpg.Pool,
    operator_headers: dict[str, str],
    tmp_path: Path,
) -> None:
    person = sample_person()
    row = person.row(
        pension={"monthly_amount": 120000, "bank_account": "6222020200112233445", "start_month": "2025-12"}
    )
    report = await importer.import_file(write_jsonl(tmp_path / "p.jsonl", [row]))
    assert report.created == 1
    await pool.execute("UPDATE persons SET certified_until = '2099-12-31'")
    await services.deaths.import_file(_feed(tmp_path, "deaths.csv", f"{person.national_id},2025-10-03"), "t")
    await _run(services, OCT, NOV, DEC)
    r = await client.post(
        "/v1/admin/death-reversals",
        json={"national_id": person.national_id, "reason": "wrong person"},
        headers=operator_headers,
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert (body["months_restored"], body["overpayments_cancelled"], body["card_status"]) == (
        ["2025-12-01"],
        0,
        "pending_activation",
    )
    assert await pool.fetchval("SELECT amount_fen FROM pension_payments WHERE period = $1", DEC) == 120000


async def test_reversal_refusals(
    client: Any,
    services: Services,
    importer: Any,
    pool: asyncpg.Pool,
    cardholder: dict[str, Any],
    operator_headers: dict[str, str],
    tmp_path: Path,
) -> None:
    dead, living = sample_person(), sample_person()
    await _import(importer, pool, tmp_path, dead, living)
    await services.deaths.import_file(_feed(tmp_path, "deaths.csv", f"{dead.national_id},2025-10-03"), "t")
    url = "/v1/admin/death-reversals"
    en = {**operator_headers, "Accept-Language": "en"}

    for body in ({"national_id": dead.national_id}, {"national_id": dead.national_id, "reason": "   "}):
        r = await client.post(url, json=body, headers=en)
        assert (r.status_code, r.json()["code"]) == (400, "invalid_body")
    r = await client.post(url, json={"national_id": dead.national_id, "reason": "wrong person"}, headers=bearer("x"))
    assert r.status_code == 401
    r = await client.post(
        url, json={"national_id": dead.national_id, "reason": "wrong person"}, headers=cardholder["headers"]
    )
    assert (r.status_code, r.json()["code"]) == (403, "forbidden")
    r = await client.post(url, json={"national_id": living.national_id, "reason": "wrong person"}, headers=en)
    assert (r.status_code, r.json()["code"]) == (409, "not_deceased")
    assert r.json()["detail"] == "This person is not registered as deceased: nothing to reverse."
    r = await client.post(url, json={"national_id": sample_person().national_id, "reason": "wrong person"}, headers=en)
    assert (r.status_code, r.json()["code"]) == (404, "person_not_found")
    r = await client.post(url, json={"national_id": dead.national_id[:-1] + "Y", "reason": "wrong person"}, headers=en)
    assert (r.status_code, r.json()["code"]) == (400, "national_id_invalid")

    # Nothing of it changed the dead person's record.
    assert await pool.fetchval("SELECT vital_status FROM persons WHERE phone = $1", dead.phone) == "deceased"
    assert not await pool.fetchval("SELECT count(*) FROM audit_log WHERE action = 'person.death_reversed'")


async def test_a_run_that_has_not_reached_the_person_pays_the_month_itself(
    client: Any,
    services: Services,
    pool: asyncpg.Pool,
    importer: Any,
    operator_headers: dict[str, str],
    tmp_path: Path,
) -> None:
    person = sample_person()
    (person_id,) = await _import(importer, pool, tmp_path, person)
    await _run(services, SEP)
    await services.deaths.import_file(_feed(tmp_path, "deaths.csv", f"{person.national_id},2025-09-10"), "t")
    await _run(services, OCT)  # skips the person
    november = await services.disbursements.request(NOV, "system:test")  # started, no batch done yet
    r = await client.post(
        "/v1/admin/death-reversals",
        json={"national_id": person.national_id, "reason": "the wrong person was reported"},
        headers=operator_headers,
    )
    assert r.status_code == 200, r.text
    assert r.json()["months_restored"] == ["2025-10-01"]  # not November: its run has yet to reach them
    await services.disbursements.process(november["id"])
    rows = await pool.fetch(
        "SELECT period, kind, status FROM pension_payments WHERE person_id = $1 ORDER BY period, kind DESC",
        person_id,
    )
    assert [tuple(row) for row in rows] == [
        (SEP, "monthly", "paid"),
        (OCT, "monthly", "withheld"),
        (NOV, "monthly", "paid"),  # paid on time, by the run itself
        (NOV, "back_pay", "paid"),  # October, back-paid
    ]


async def test_recording_a_death_waits_for_payment_writers_who_do_not_wait_for_each_other(pool: asyncpg.Pool) -> None:
    """A bank-answers transaction and a batch hold the payment records' lock shared, a death exclusively."""

    async def record_death() -> None:
        async with unit_of_work(pool) as uow:
            assert await deaths_repository.lock_person(uow, b"no such person") is None

    async with unit_of_work(pool) as answers:
        await disbursement_repository.record_bank_answers(answers, [], [], [], [])
        async with unit_of_work(pool) as batch:  # a second shared holder gets in at once
            await asyncio.wait_for(disbursement_repository.lock_payment_records(batch, shared=True), 2)
        death = asyncio.create_task(record_death())
        await until_waiting_on_a_lock(pool)
        assert not death.done()  # still waiting for the bank answers' transaction
    await asyncio.wait_for(death, 5)
