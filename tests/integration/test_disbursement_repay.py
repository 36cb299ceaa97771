"""Returned payments paid again once the account is corrected, and payroll approval (maker-checker),
on the real database: the admin API, the person import, the CLI, reruns and a crash in the run's
last transaction."""

from __future__ import annotations

import asyncio
import csv
import io
import uuid
from datetime import date
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from app.services import Services
from infra.config import Settings
from payments.disbursement.service import DisbursementService
from tests.factories import (
    SamplePerson,
    console_sign_in,
    operator_headers_for,
    run_cli,
    sample_person,
    staff_member,
    write_jsonl,
)

NOV, DEC, JAN, FEB = date(2026, 11, 1), date(2026, 12, 1), date(2027, 1, 1), date(2027, 2, 1)
MONTHLY = 350000  # tests.factories: every sample pension
CLOSED, NEW = "6222020200112233445", "6222020200998877665"  # the sample account, and the corrected one
CHECKER, PAYER = "admin:00000000-0000-7000-8000-0000000000c1", "admin:00000000-0000-7000-8000-0000000000c2"


async def _import(importer: Any, pool: asyncpg.Pool, folder: Path, *persons: SamplePerson) -> list[uuid.UUID]:
    report = await importer.import_file(write_jsonl(folder / f"p-{uuid.uuid4()}.jsonl", [p.row() for p in persons]))
    assert report.created == len(persons), report.errors
    phones = [p.phone for p in persons]
    await pool.execute("UPDATE persons SET certified_until = '2099-12-31' WHERE phone = ANY ($1)", phones)
    return [await pool.fetchval("SELECT id FROM persons WHERE phone = $1", phone) for phone in phones]


async def _paid_and_released(services: Services, period: date) -> uuid.UUID:
    """The period's run, approved and released by two administrators (started by the system)."""
    run = await services.disbursements.run(period, "system:test")
    await services.disbursements.approve(run["id"], CHECKER)
    released = await services.disbursements.release(run["id"], PAYER)
    assert released["state"] in ("released", "reconciled")
    run_id: uuid.UUID = run["id"]
    return run_id


async def _return(services: Services, pool: asyncpg.Pool, person_id: uuid.UUID, period: date, kind: str) -> None:
    payment_id = await pool.fetchval(
        "SELECT id FROM pension_payments WHERE person_id = $1 AND period = $2 AND kind = $3", person_id, period, kind
    )
    report = await services.disbursements.import_returns(
        f"reference,result,reason\n{payment_id},returned,account closed\n", "system:test"
    )
    assert report.returned == 1, report.errors


async def _records(pool: asyncpg.Pool, person_id: uuid.UUID) -> list[tuple[date, str, int, str | None]]:
    rows = await pool.fetch(
        """SELECT period, kind, amount_fen, bank_account_masked FROM pension_payments
           WHERE person_id = $1 ORDER BY period, kind""",
        person_id,
    )
    return [(r["period"], r["kind"], r["amount_fen"], r["bank_account_masked"]) for r in rows]


async def test_a_returned_payment_is_paid_again_once_after_the_admin_corrects_the_account(
    client: Any, services: Services, pool: asyncpg.Pool, importer: Any, tmp_path: Path
) -> None:
    person, other = sample_person(), sample_person()
    person_id, other_id = await _import(importer, pool, tmp_path, person, other)
    await _paid_and_released(services, NOV)
    await _return(services, pool, person_id, NOV, "monthly")
    await _return(services, pool, other_id, NOV, "monthly")  # never corrected: stays returned
    await _paid_and_released(services, DEC)
    await _return(services, pool, person_id, DEC, "monthly")
    assert "repay" not in {r[1] for r in await _records(pool, person_id)}  # nothing corrected yet

    admin = await operator_headers_for(services, "accounts", "Acc Ounts", role="admin")
    body = {
        "national_id": person.national_id,
        "account": "6222 0202 0099 8877 665",
        "reason": "new card from the branch",
    }
    r = await client.post("/v1/admin/bank-accounts", json=body, headers=admin)
    assert r.status_code == 200, r.text
    answer = r.json()
    assert answer["bank_account_masked"] == "*" * 15 + "7665"
    assert answer["national_id_masked"].count("*") == 8
    assert (answer["changed"], answer["returned_awaiting"], answer["returned_awaiting_fen"]) == (True, 2, 2 * MONTHLY)
    assert NEW not in r.text
    assert person.national_id not in r.text
    entry = await pool.fetchrow("SELECT actor, details FROM audit_log WHERE action = 'person.bank_account_set'")
    assert entry is not None
    assert (entry["details"]["account_before"], entry["details"]["account"]) == ("*" * 15 + "3445", "*" * 15 + "7665")
    assert entry["details"]["operator"] == "accounts"
    assert NEW not in str(entry["details"])
    assert person.national_id not in str(entry["details"])
    notice = await pool.fetchrow("SELECT kind, params FROM notifications WHERE person_id = $1", person_id)
    assert notice is not None
    assert (notice["kind"], notice["params"]["account_masked"]) == ("bank_account.set", "*" * 15 + "7665")

    jan = await services.disbursements.run(JAN, "system:test")
    assert (jan["repay_count"], jan["repay_fen"], jan["paid_count"]) == (1, 2 * MONTHLY, 2)
    assert await _records(pool, person_id) == [
        (NOV, "monthly", MONTHLY, "*" * 15 + "3445"),
        (DEC, "monthly", MONTHLY, "*" * 15 + "3445"),
        (JAN, "monthly", MONTHLY, "*" * 15 + "7665"),
        (JAN, "repay", 2 * MONTHLY, "*" * 15 + "7665"),
    ]
    repay = await pool.fetchrow("SELECT id, covers, bank_status FROM pension_payments WHERE kind = 'repay'")
    assert repay is not None
    assert (repay["covers"], repay["bank_status"]) == ([NOV, DEC], "pending")
    repaid = await pool.fetch("SELECT person_id, repaid_by FROM pension_payments WHERE bank_status = 'returned'")
    assert sorted((r["person_id"] == person_id, r["repaid_by"] == repay["id"]) for r in repaid) == [
        (False, False),  # the other's account was never corrected
        (True, True),
        (True, True),
    ]

    # Running January again, and the runs after it, pay nothing twice.
    again = await services.disbursements.run(JAN, "system:test")
    assert again["repay_count"] == 1
    await services.disbursements.approve(jan["id"], CHECKER)
    await services.disbursements.release(jan["id"], PAYER)
    feb = await services.disbursements.run(FEB, "system:test")
    assert feb["repay_count"] == 0
    assert await pool.fetchval("SELECT count(*) FROM pension_payments WHERE kind = 'repay'") == 1

    # The re-payment goes to the bank in January's file, to the corrected account.
    r = await client.get(f"/v1/admin/disbursements/{jan['id']}/bank-file", headers=admin)
    assert r.status_code == 200, r.text
    lines = list(csv.reader(io.StringIO(r.text)))
    assert [line[2:] for line in lines if line[0] == str(repay["id"])] == [[NEW, "7000.00"]]
    assert lines[-1] == ["TRAILER", "3", "14000.00"]

    # The retiree's list and statement show it, and they are told once the run is released.
    await services.auth.support_token(phone=person.phone)  # the account of the phone
    await pool.execute("UPDATE accounts SET person_id = $1 WHERE phone = $2", person_id, person.phone)
    token = await services.auth.support_token(phone=person.phone)
    mine = {"Authorization": f"Bearer {token.access_token}", "Accept-Language": "en"}
    r = await client.get("/v1/payments?limit=3", headers=mine)
    assert r.status_code == 200, r.text
    assert [i["kind"] for i in r.json()["items"]] == ["monthly", "repay", "monthly"]  # February, then January
    item = r.json()["items"][1]
    assert (item["kind"], item["covers"], item["amount_fen"]) == ("repay", ["2026-11", "2026-12"], 2 * MONTHLY)
    r = await client.get("/v1/payments/statements/2027", headers=mine)
    jan_line = r.json()["months"][0]
    assert (jan_line["paid_fen"], jan_line["repaid_fen"], jan_line["repaid_covers"]) == (
        MONTHLY,
        2 * MONTHLY,
        ["2026-11", "2026-12"],
    )
    assert r.json()["repaid_fen"] == 2 * MONTHLY
    await services.notifications.announce_run(jan["id"])
    kinds = await pool.fetch("SELECT kind FROM notifications WHERE person_id = $1 ORDER BY kind", person_id)
    assert "payment.repaid" in [k["kind"] for k in kinds]


async def test_an_account_changed_by_the_person_import_is_picked_up_from_the_table(
    services: Services, pool: asyncpg.Pool, importer: Any, tmp_path: Path
) -> None:
    person = sample_person()
    (person_id,) = await _import(importer, pool, tmp_path, person)
    await _paid_and_released(services, NOV)
    await _return(services, pool, person_id, NOV, "monthly")
    # The core system sends the person again, with the amount changed but the same (closed) account:
    # nothing to pay again.
    row = person.row(pension={"monthly_amount": MONTHLY, "bank_account": CLOSED, "start_month": "2009-01"})
    await importer.import_file(write_jsonl(tmp_path / "same.jsonl", [row]))
    dec = await services.disbursements.run(DEC, "system:test")
    assert dec["repay_count"] == 0
    # Then with the new account.
    row = person.row(pension={"monthly_amount": MONTHLY, "bank_account": NEW, "start_month": "2009-01"})
    await importer.import_file(write_jsonl(tmp_path / "new.jsonl", [row]))
    jan = await services.disbursements.run(JAN, "system:test")
    assert (jan["repay_count"], jan["repay_fen"]) == (1, MONTHLY)


async def test_a_reopened_account_confirmed_by_an_admin_is_paid_again(
    services: Services, pool: asyncpg.Pool, importer: Any, tmp_path: Path
) -> None:
    person = sample_person()
    (person_id,) = await _import(importer, pool, tmp_path, person)
    await _paid_and_released(services, NOV)
    await _return(services, pool, person_id, NOV, "monthly")
    done = await services.bank_accounts.set_account(CHECKER, person.national_id, CLOSED, "the branch reopened it")
    assert (done.changed, done.returned_awaiting) == (False, 1)
    dec = await services.disbursements.run(DEC, "system:test")
    assert (dec["repay_count"], dec["repay_fen"]) == (1, MONTHLY)


async def test_a_crash_in_the_last_transaction_and_two_executors_pay_once(
    settings: Settings, services: Services, pool: asyncpg.Pool, importer: Any, tmp_path: Path
) -> None:
    people = [sample_person() for _ in range(6)]
    ids = await _import(importer, pool, tmp_path, *people)
    await _paid_and_released(services, NOV)
    for person_id in ids:
        await _return(services, pool, person_id, NOV, "monthly")
    for person in people:
        await services.bank_accounts.set_account(CHECKER, person.national_id, NEW, "new card")

    class Crashing(DisbursementService):
        async def _completed(self, uow: Any, run_id: uuid.UUID) -> None:
            raise ConnectionResetError("the connection went away at the last moment")

    from infra.crypto import FieldCipher

    cipher = FieldCipher(settings.data_encryption_key)
    run = await services.disbursements.request(DEC, "system:test")
    with pytest.raises(ConnectionResetError):
        await Crashing(pool, cipher, 15, 4).process(run["id"])
    assert await pool.fetchval("SELECT count(*) FROM pension_payments WHERE kind = 'repay'") == 0  # rolled back
    small = [DisbursementService(pool, cipher, 15, 4) for _ in range(2)]
    await asyncio.gather(*(s.process(run["id"]) for s in small))
    done = await services.disbursements.view(run["id"])
    assert (done["state"], done["repay_count"], done["repay_fen"]) == ("completed", 6, 6 * MONTHLY)
    assert await pool.fetchval("SELECT count(*) FROM pension_payments WHERE repaid_by IS NOT NULL") == 6


async def test_refusals_of_the_account_correction(
    client: Any, services: Services, pool: asyncpg.Pool, importer: Any, tmp_path: Path, operator_headers: Any
) -> None:
    person = sample_person()
    await _import(importer, pool, tmp_path, person)
    admin = await operator_headers_for(services, "accounts", "Acc Ounts", role="admin")
    good = {"national_id": person.national_id, "account": NEW, "reason": "new card"}
    r = await client.post("/v1/admin/bank-accounts", json=good, headers=operator_headers)
    assert r.status_code == 403  # administrators only
    for change, code in (
        ({"account": "12345"}, None),  # the schema's length: 400 too
        ({"account": "6222-0202-0099-88"}, "bank_account_invalid"),
        ({"national_id": person.national_id[:-1] + "X"}, "national_id_invalid"),
        ({"reason": "  a  "}, "reason_required"),
        ({"national_id": sample_person().national_id}, "pension_not_found"),
    ):
        r = await client.post("/v1/admin/bank-accounts", json={**good, **change}, headers=admin)
        assert r.status_code in (400, 404), (change, r.text)
        assert r.headers["content-type"] == "application/problem+json"
        if code is not None:
            assert r.json()["code"] == code, r.text


async def test_the_cli_signs_runs_and_sets_accounts(
    settings: Settings, services: Services, pool: asyncpg.Pool, importer: Any, tmp_path: Path
) -> None:
    person = sample_person()
    (person_id,) = await _import(importer, pool, tmp_path, person)
    await staff_member(services, "maker", "Ma Ker", "admin")
    await staff_member(services, "checker", "Che Cker", "admin")
    await staff_member(services, "reviewer", "Re Viewer", "operator")

    def cli(*argv: str) -> Any:
        return asyncio.to_thread(run_cli, settings, *argv)

    assert await cli("disburse", "--period", "2026-11") == 0  # started by the system (the CLI)
    out = tmp_path / "order.csv"
    assert await cli("bank-file", "--period", "2026-11", "--out", str(out)) == 2  # not approved
    assert await cli("disbursement", "release", "--period", "2026-11", "--as", "checker") == 3  # not approved
    assert await cli("disbursement", "approve", "--period", "2026-11", "--as", "reviewer") == 2  # no administrator
    assert await cli("disbursement", "approve", "--period", "2026-11", "--as", "checker") == 0
    assert await cli("bank-file", "--period", "2026-11", "--out", str(out)) == 2  # not released
    # The system started it: its approver alone cannot also release it.
    assert await cli("disbursement", "release", "--period", "2026-11", "--as", "checker") == 3
    assert await cli("disbursement", "release", "--period", "2026-11", "--as", "maker") == 0
    assert await cli("bank-file", "--period", "2026-11", "--out", str(out)) == 0
    lines = list(csv.reader(io.StringIO(out.read_text(encoding="utf-8"))))
    assert lines[-1] == ["TRAILER", "1", "3500.00"]
    returns = tmp_path / "returns.csv"
    returns.write_text(f"reference,result,reason\n{lines[1][0]},returned,account closed\n", encoding="utf-8")
    assert await cli("import", "bank-returns", str(returns)) == 0
    nov = await pool.fetchrow("SELECT state, approved_by, released_by FROM disbursement_runs WHERE period = $1", NOV)
    assert nov is not None
    assert nov["state"] == "reconciled"
    assert nov["approved_by"] != nov["released_by"]

    assert await cli("bank-account", "set", person.national_id, NEW, "--reason", "new card", "--as", "nobody") == 2
    assert await cli("bank-account", "set", person.national_id, NEW, "--reason", "new card", "--as", "maker") == 0
    assert await cli("disburse", "--period", "2026-12") == 0
    assert await _records(pool, person_id) == [
        (NOV, "monthly", MONTHLY, "*" * 15 + "3445"),
        (DEC, "monthly", MONTHLY, "*" * 15 + "7665"),
        (DEC, "repay", MONTHLY, "*" * 15 + "7665"),
    ]


async def test_the_console_run_page_signs_with_the_rule(
    client: Any, services: Services, pool: asyncpg.Pool, importer: Any, tmp_path: Path
) -> None:
    await _import(importer, pool, tmp_path, sample_person())
    maker = await staff_member(services, "maker", "Ma Ker", "admin")
    checker = await staff_member(services, "checker", "Che Cker", "admin")
    maker_id = await pool.fetchval("SELECT id FROM operators WHERE username = 'maker'")
    run = await services.disbursements.run(NOV, f"admin:{maker_id}")
    page = f"/console/runs/{run['id']}"

    csrf = await console_sign_in(client, "maker", maker)
    shown = await client.get(page)
    assert shown.status_code == 200
    assert f"{page}/approval" not in shown.text  # the maker is not offered their own approval
    r = await client.post(f"{page}/approval", data={"csrf": csrf})
    assert r.status_code == 403  # and refused if they ask, on a page
    await client.post("/console/sign-out", data={"csrf": csrf})

    csrf = await console_sign_in(client, "checker", checker)
    assert f"{page}/approval" in (await client.get(page)).text
    r = await client.post(f"{page}/approval", data={"csrf": csrf})
    assert r.status_code == 200, r.text  # followed to the run's page
    assert f"{page}/release" in r.text  # a person started it: the approver may release it
    r = await client.post(f"{page}/release", data={"csrf": csrf})
    assert r.status_code == 200
    assert (await services.disbursements.view(run["id"]))["state"] == "released"


async def test_a_payment_names_only_payments_and_death_records_of_its_own_person(
    services: Services, pool: asyncpg.Pool, importer: Any, tmp_path: Path
) -> None:
    """The keys between a person's payments, death records and overpayments hold person_id (issue 23,
    migration 0024): a mark or a claim naming another person's row is refused, as on a cluster's shard."""
    person_id, other_id = await _import(importer, pool, tmp_path, sample_person(), sample_person())
    await _paid_and_released(services, NOV)
    await _return(services, pool, person_id, NOV, "monthly")
    mine = await pool.fetchval("SELECT id FROM pension_payments WHERE person_id = $1", person_id)
    theirs = await pool.fetchval("SELECT id FROM pension_payments WHERE person_id = $1", other_id)
    with pytest.raises(asyncpg.ForeignKeyViolationError):  # checked at commit (0020), here the statement's
        await pool.execute("UPDATE pension_payments SET repaid_by = $2 WHERE id = $1", mine, theirs)
    died = await pool.fetchval(
        "INSERT INTO death_records (person_id, date_of_death, source) VALUES ($1, $2, 'test') RETURNING id",
        other_id,
        date(2026, 10, 15),
    )
    with pytest.raises(asyncpg.ForeignKeyViolationError):
        await pool.execute(
            "INSERT INTO overpayments (payment_id, person_id, death_record_id, amount_fen) VALUES ($1, $2, $3, 1)",
            mine,
            other_id,
            died,
        )
    with pytest.raises(asyncpg.ForeignKeyViolationError):
        await pool.execute(
            "INSERT INTO overpayments (payment_id, person_id, death_record_id, amount_fen) VALUES ($1, $2, $3, 1)",
            mine,
            person_id,
            died,
        )
