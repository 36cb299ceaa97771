"""Recovery of the pension paid after a death (issue 20), on the real database: a case per death with
overpayments, the recall file and the bank's answers, write-offs by two administrators, reversal."""

from __future__ import annotations

import asyncio
import csv
import io
import json
import uuid
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from app.services import Services
from infra.config import Settings
from tests.factories import console_sign_in, operator_headers_for, run_cli, sample_person, staff_member
from tests.integration.test_deaths import DEC, MONTHLY, NOV, OCT, SEP, _feed, _import, _run

ACCOUNT = "6222020200112233445"  # tests.factories: every sample pension


async def _cases(pool: asyncpg.Pool) -> list[asyncpg.Record]:
    return await pool.fetch("SELECT * FROM recovery_cases ORDER BY id")


async def _recall_file(client: Any, headers: dict[str, str]) -> list[list[str]]:
    r = await client.post("/v1/admin/recoveries/recall-file", headers=headers)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/csv")
    return list(csv.reader(io.StringIO(r.text)))


async def _answers(client: Any, headers: dict[str, str], *lines: str) -> dict[str, Any]:
    body = "reference,recovered,reason\n" + "".join(f"{line}\n" for line in lines)
    r = await client.post(
        "/v1/admin/recoveries/recall-answers", content=body.encode(), headers={**headers, "Content-Type": "text/csv"}
    )
    assert r.status_code == 200, r.text
    result: dict[str, Any] = r.json()
    return result


async def _actions(pool: asyncpg.Pool, case_id: uuid.UUID) -> list[str]:
    rows = await pool.fetch("SELECT action FROM audit_log WHERE subject = $1 ORDER BY at, seq", f"recovery:{case_id}")
    return [r["action"] for r in rows]


async def test_a_death_opens_one_case_the_bank_recovers_it_in_part_then_whole(
    client: Any,
    services: Services,
    importer: Any,
    pool: asyncpg.Pool,
    admin_headers: dict[str, str],
    settings: Settings,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    dead, died_late = sample_person(), sample_person()
    dead_id, _ = await _import(importer, pool, tmp_path, dead, died_late)
    await _run(services, SEP, OCT, NOV, DEC)
    feed = _feed(tmp_path, "deaths.csv", f"{dead.national_id},2025-10-31", f"{died_late.national_id},2025-12-20")
    assert (await services.deaths.import_file(feed, "system:test")).recorded == 2

    # One case, for the death with overpayments (November and December); none for the other.
    (case,) = await _cases(pool)
    assert (case["person_id"], case["state"], case["recovered_fen"]) == (dead_id, "opened", 0)
    case_id = case["id"]
    shown = (await client.get(f"/v1/admin/recoveries/{case_id}", headers=admin_headers)).json()
    assert shown["case"]["owed_fen"] == shown["case"]["outstanding_fen"] == 2 * MONTHLY
    assert shown["case"]["masked_national_id"] == dead.national_id[:6] + "********" + dead.national_id[-4:]
    # The same feed again, and a later correction of the date that keeps both months owed: still one case.
    await services.deaths.import_file(feed, "system:test")
    await services.deaths.import_file(_feed(tmp_path, "again.csv", f"{dead.national_id},2025-10-30"), "t")
    assert [c["id"] for c in await _cases(pool)] == [case_id]

    # The recall file: the run's bank-file shape, the account in full, the amount outstanding.
    lines = await _recall_file(client, admin_headers)
    assert lines[0] == ["reference", "name", "account", "amount"]
    assert lines[1][1:] == [dead.name[0] + "*" * (len(dead.name) - 1), ACCOUNT, "7000.00"]
    assert lines[2] == ["TRAILER", "1", "7000.00"]
    recall = lines[1][0]
    assert await _recall_file(client, admin_headers) == lines  # exported again: the same recall, not a second
    assert (await pool.fetchval("SELECT state FROM recovery_cases")) == "recall_requested"

    # The bank recovers part; unknown references and bad amounts are reported while good lines land.
    report = await _answers(
        client, admin_headers, f"{recall},3000.00,balance short", f"{uuid.uuid4()},1.00,", f"{recall[:8]},x,"
    )
    assert {k: report[k] for k in ("recovered", "partly", "nothing", "unchanged", "recovered_fen")} == {
        "recovered": 0,
        "partly": 1,
        "nothing": 0,
        "unchanged": 0,
        "recovered_fen": 300000,
    }
    assert [e["line"] for e in report["errors"]] == [3, 4]
    assert "No recall" in report["errors"][0]["reason"]
    again = await _answers(client, admin_headers, f"{recall},3000.00,balance short", f"{recall},3000.00,")
    assert (again["unchanged"], [e["line"] for e in again["errors"]]) == (1, [3])
    changed = await _answers(client, admin_headers, f"{recall},3100.00,")
    assert changed["errors"][0]["line"] == 2  # answered once: a different amount is refused
    case = (await _cases(pool))[0]
    assert (case["state"], case["recovered_fen"]) == ("recovered_partly", 300000)

    # The next recall asks for the rest; more than asked is refused; the rest closes the case.
    lines = await _recall_file(client, admin_headers)
    assert lines[1][3] == "4000.00"
    assert lines[1][0] != recall
    second = lines[1][0]
    too_much = await _answers(client, admin_headers, f"{second},4000.01,")
    assert too_much["errors"][0]["line"] == 2
    # The answer by the command line, as a bank file arrives on an administrator's machine.
    answers = tmp_path / "answers.csv"
    answers.write_text(f"reference,recovered,reason\n{second},4000.00,\n", encoding="utf-8")
    assert await asyncio.to_thread(run_cli, settings, "import", "recall-answers", str(answers)) == 0
    assert "recovered 1, partly 0, nothing 0, unchanged 0 (400000 fen)" in capsys.readouterr().out
    case = (await _cases(pool))[0]
    assert (case["state"], case["recovered_fen"], case["closed_at"] is not None) == ("recovered", 2 * MONTHLY, True)
    statuses = await pool.fetch("SELECT DISTINCT status FROM overpayments WHERE person_id = $1", dead_id)
    assert [s["status"] for s in statuses] == ["recovered"]
    assert await _recall_file(client, admin_headers) == [
        ["reference", "name", "account", "amount"],
        ["TRAILER", "0", "0.00"],
    ]
    assert await _actions(pool, case_id) == [
        "recovery.opened",
        "recovery.recall_requested",
        "recovery.recall_answered",
        "recovery.recall_requested",
        "recovery.recall_answered",
    ]
    exports = await pool.fetchval("SELECT count(*) FROM audit_log WHERE action = 'recovery.recall_file_exported'")
    assert exports == 4
    listed = (await client.get("/v1/admin/recoveries?state=recovered", headers=admin_headers)).json()
    assert [c["id"] for c in listed["items"]] == [str(case_id)]


async def test_a_write_off_needs_a_second_administrator(
    client: Any, services: Services, importer: Any, pool: asyncpg.Pool, admin_headers: dict[str, str], tmp_path: Path
) -> None:
    person = sample_person()
    (person_id,) = await _import(importer, pool, tmp_path, person)
    await _run(services, SEP, OCT)
    await services.deaths.import_file(_feed(tmp_path, "d.csv", f"{person.national_id},2025-09-05"), "t")
    (case,) = await _cases(pool)
    path = f"/v1/admin/recoveries/{case['id']}/write-off"

    # A recall is waiting: the bank's answer may bring the money back, so no write-off yet.
    recall = (await _recall_file(client, admin_headers))[1][0]
    r = await client.post(path, json={"reason": "estate has no assets"}, headers=admin_headers)
    assert (r.status_code, r.json()["code"]) == (409, "recall_outstanding")
    assert (await _answers(client, admin_headers, f"{recall},0.00,account closed"))["nothing"] == 1
    assert (await _cases(pool))[0]["state"] == "opened"

    r = await client.post(path, json={"reason": "  "}, headers=admin_headers)
    assert r.status_code == 400
    r = await client.post(path, json={"reason": "account closed, estate has no assets"}, headers=admin_headers)
    assert r.status_code == 200, r.text
    assert r.json()["case"]["state"] == "opened"
    r = await client.post(f"{path}/approval", headers=admin_headers)
    assert (r.status_code, r.json()["code"]) == (403, "write_off_needs_second_admin")
    operator = await operator_headers_for(services, "op1", "Operator One")
    assert (await client.post(f"{path}/approval", headers=operator)).status_code == 403
    second = await operator_headers_for(services, "admin2", "Admin Two", role="admin")
    r = await client.post(f"{path}/approval", headers=second)
    assert r.status_code == 200, r.text
    shown = r.json()["case"]
    assert (shown["state"], shown["written_off_fen"], shown["outstanding_fen"]) == ("written_off", MONTHLY, 0)
    assert shown["approved_by"] != shown["write_off_asked_by"]
    assert [
        r["status"] for r in await pool.fetch("SELECT status FROM overpayments WHERE person_id = $1", person_id)
    ] == ["written_off"]
    r = await client.post(f"{path}/approval", headers=second)
    assert (r.status_code, r.json()["code"]) == (409, "recovery_case_closed")
    details = await pool.fetchval(
        "SELECT details FROM audit_log WHERE action = 'recovery.written_off' AND subject = $1", f"recovery:{case['id']}"
    )
    assert (details["reason"], details["written_off_fen"]) == ("account closed, estate has no assets", MONTHLY)


async def test_a_reversed_death_cancels_its_case_and_withdraws_the_recall(
    client: Any,
    services: Services,
    importer: Any,
    pool: asyncpg.Pool,
    admin_headers: dict[str, str],
    operator_headers: dict[str, str],
    tmp_path: Path,
) -> None:
    person = sample_person()
    await _import(importer, pool, tmp_path, person)
    await _run(services, SEP, OCT)
    await services.deaths.import_file(_feed(tmp_path, "d.csv", f"{person.national_id},2025-09-05"), "t")
    recall = (await _recall_file(client, admin_headers))[1][0]
    r = await client.post(
        "/v1/admin/death-reversals",
        json={"national_id": person.national_id, "reason": "the wrong person was reported"},
        headers=operator_headers,
    )
    assert r.status_code == 200, r.text
    (case,) = await _cases(pool)
    assert case["state"] == "cancelled"
    assert await pool.fetchval("SELECT cancelled_at IS NOT NULL FROM recovery_recalls WHERE id = $1", uuid.UUID(recall))
    assert len(await _recall_file(client, admin_headers)) == 2  # header and trailer: nothing to recall
    late = await _answers(client, admin_headers, f"{recall},3500.00,")
    assert late["errors"][0]["line"] == 2  # the bank is told to give it back, by a person
    assert "recovery.cancelled" in await _actions(pool, case["id"])


async def test_the_command_line_writes_off_with_two_administrators(
    services: Services,
    importer: Any,
    pool: asyncpg.Pool,
    settings: Settings,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    person = sample_person()
    await _import(importer, pool, tmp_path, person)
    await _run(services, SEP, OCT)
    await services.deaths.import_file(_feed(tmp_path, "d.csv", f"{person.national_id},2025-09-05"), "t")
    case_id = str((await _cases(pool))[0]["id"])
    for name in ("amy", "bo"):
        await staff_member(services, name, name.title(), role="admin")

    def cli(*argv: str) -> int:
        return run_cli(settings, "recovery", *argv)

    assert await asyncio.to_thread(cli, "write-off", case_id, "--reason", "no estate", "--as", "amy") == 0
    assert await asyncio.to_thread(cli, "approve-write-off", case_id, "--as", "amy") == 3
    assert "another administrator" in capsys.readouterr().err
    assert await asyncio.to_thread(cli, "approve-write-off", case_id, "--as", "nobody") == 2
    assert await asyncio.to_thread(cli, "approve-write-off", case_id, "--as", "bo") == 0
    assert json.loads(capsys.readouterr().out.splitlines()[-1])["state"] == "written_off"


async def test_two_administrators_write_off_in_the_console(
    client: Any, services: Services, importer: Any, pool: asyncpg.Pool, tmp_path: Path
) -> None:
    person = sample_person()
    await _import(importer, pool, tmp_path, person)
    await _run(services, SEP, OCT)
    await services.deaths.import_file(_feed(tmp_path, "d.csv", f"{person.national_id},2025-09-05"), "t")
    case_id = (await _cases(pool))[0]["id"]
    amy = await staff_member(services, "amy", "Amy", role="admin")
    bo = await staff_member(services, "bo", "Bo", role="admin")

    csrf = await console_sign_in(client, "amy", amy)
    page = await client.get("/console/recoveries")
    assert page.status_code == 200
    assert "多发待追回" in page.text
    assert person.national_id not in page.text
    await client.post("/console/language", data={"csrf": csrf, "locale": "en"})
    page = await client.get("/console/recoveries")
    assert "Overpayment recovery" in page.text
    assert f'<label for="why-{case_id}">' in page.text
    r = await client.post(f"/console/recoveries/{case_id}/write-off", data={"csrf": csrf, "reason": "no estate left"})
    assert r.status_code == 200  # followed to the page, with the note
    assert "another administrator approves it" in r.text
    r = await client.post(f"/console/recoveries/{case_id}/write-off/approval", data={"csrf": csrf})
    assert r.status_code == 403
    assert 'role="alert"' in r.text
    assert "another administrator than the one who asked" in r.text

    await client.post("/console/sign-out", data={"csrf": csrf})
    csrf = await console_sign_in(client, "bo", bo)
    r = await client.post(f"/console/recoveries/{case_id}/write-off/approval", data={"csrf": csrf})
    assert r.status_code == 200
    assert (await _cases(pool))[0]["state"] == "written_off"
    shown = await client.get("/console/recoveries?state=written_off")
    assert "no estate left" in shown.text
