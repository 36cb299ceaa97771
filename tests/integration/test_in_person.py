"""The rungs below the face check (issue 19): a home visit or a service-point appointment asked for
from the app, scheduled and told, certified in person by an operator with a reason; and appeals
against a withheld month or a failed check, answered by a date, upheld (certified, paid back) or
rejected with the reason told. A death record wins over all of them."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, date, datetime, timedelta
from typing import Any

import asyncpg
import pytest

from app.services import Services
from infra.config import Settings
from notifications.rules import LOCAL_TZ
from notifications.templates import render
from tests.factories import insert_check, problem_code, run_cli, sample_person, write_jsonl

REQUESTS = "/v1/certifications/in-person-requests"
ADMIN_REQUESTS = "/v1/admin/in-person-requests"
CERTIFY = "/v1/admin/in-person-certifications"
APPEALS = "/v1/appeals"
ADMIN_APPEALS = "/v1/admin/appeals"


async def _notices(pool: asyncpg.Pool, phone: str) -> list[str]:
    rows = await pool.fetch(
        """SELECT n.kind FROM notifications n JOIN persons p ON p.id = n.person_id
           WHERE p.phone = $1 ORDER BY n.created_at""",
        phone,
    )
    return [r["kind"] for r in rows]


async def _uncertify(pool: asyncpg.Pool, phone: str) -> None:
    await pool.execute("UPDATE persons SET certified_until = current_date - 1 WHERE phone = $1", phone)


async def test_a_home_visit_is_asked_scheduled_and_certified_in_person(
    client: Any, pool: asyncpg.Pool, cardholder: dict[str, Any], operator_headers: dict[str, str]
) -> None:
    person, headers = cardholder["person"], cardholder["headers"]
    await _uncertify(pool, person.phone)
    r = await client.post(REQUESTS, json={"kind": "home_visit", "note": "bedridden; ring twice"}, headers=headers)
    assert r.status_code == 201, r.text
    asked = r.json()
    assert (asked["state"], asked["kind"]) == ("requested", "home_visit")
    # Asking again while it is open is the same request.
    again = await client.post(REQUESTS, json={"kind": "service_point"}, headers=headers)
    assert again.json()["id"] == asked["id"]

    listed = (await client.get(ADMIN_REQUESTS, headers=operator_headers)).json()["requests"]
    mine = next(r for r in listed if r["id"] == asked["id"])
    assert mine["masked_national_id"] != person.national_id
    assert "*" in mine["masked_national_id"]

    at = (datetime.now(UTC) + timedelta(days=2)).replace(microsecond=0)
    r = await client.post(
        f"{ADMIN_REQUESTS}/{asked['id']}/schedule",
        json={"scheduled_for": at.isoformat(), "place": "home address on file"},
        headers=operator_headers,
    )
    assert r.status_code == 200, r.text
    assert r.json()["state"] == "scheduled"
    assert "in_person.scheduled" in await _notices(pool, person.phone)

    r = await client.post(
        CERTIFY,
        json={"national_id": person.national_id, "method": "home_visit", "reason": "seen at home with ID card"},
        headers=operator_headers,
    )
    assert r.status_code == 201, r.text
    certified = r.json()
    assert certified["method"] == "home_visit"
    assert date.fromisoformat(certified["eligible_until"]) > date.today() + timedelta(days=360)
    status = (await client.get("/v1/certifications/status", headers=headers)).json()
    assert status["eligible_until"] == certified["eligible_until"]
    # The open request closed with it; the person was told; the audit log has the operator's reason.
    mine = (await client.get(REQUESTS, headers=headers)).json()["requests"]
    assert mine[0]["state"] == "certified"
    assert "certification.passed" in await _notices(pool, person.phone)
    audited = await pool.fetchrow("SELECT actor, details FROM audit_log WHERE action = 'certification.in_person'")
    assert audited["details"]["reason"] == "seen at home with ID card"
    assert audited["details"]["operator"] == "reviewer1"


async def test_a_request_can_be_cancelled_and_a_closed_one_not_scheduled(
    client: Any, cardholder: dict[str, Any], operator_headers: dict[str, str]
) -> None:
    headers = cardholder["headers"]
    asked = (await client.post(REQUESTS, json={"kind": "service_point"}, headers=headers)).json()
    r = await client.post(f"{REQUESTS}/{asked['id']}/cancellation", headers=headers)
    assert (r.status_code, r.json()["state"]) == (200, "cancelled")
    r = await client.post(f"{REQUESTS}/{asked['id']}/cancellation", headers=headers)
    assert (r.status_code, problem_code(r)) == (409, "request_closed")
    at = (datetime.now(UTC) + timedelta(days=1)).isoformat()
    r = await client.post(
        f"{ADMIN_REQUESTS}/{asked['id']}/schedule", json={"scheduled_for": at, "place": "x"}, headers=operator_headers
    )
    assert (r.status_code, problem_code(r)) == (409, "request_closed")


async def test_refusals_say_why(client: Any, cardholder: dict[str, Any], operator_headers: dict[str, str]) -> None:
    headers, person = cardholder["headers"], cardholder["person"]
    asked = (await client.post(REQUESTS, json={"kind": "home_visit"}, headers=headers)).json()
    past = (datetime.now(UTC) - timedelta(hours=1)).isoformat()
    r = await client.post(
        f"{ADMIN_REQUESTS}/{asked['id']}/schedule", json={"scheduled_for": past, "place": "x"}, headers=operator_headers
    )
    assert (r.status_code, problem_code(r)) == (400, "schedule_in_past")
    # The end of the calendar (found by trying it): refused, not stored to break the person's inbox later.
    r = await client.post(
        f"{ADMIN_REQUESTS}/{asked['id']}/schedule",
        json={"scheduled_for": "9999-12-31T23:59:00+00:00", "place": "x"},
        headers=operator_headers,
    )
    assert (r.status_code, problem_code(r)) == (400, "schedule_too_far")
    assert (await client.get("/v1/inbox", headers=headers)).status_code == 200
    r = await client.post(
        CERTIFY,
        json={"national_id": person.national_id, "method": "home_visit", "reason": "   "},
        headers=operator_headers,
    )
    assert r.status_code == 400
    # A cardholder cannot certify anyone; an operator cannot ask on a person's behalf through the app's route.
    r = await client.post(
        CERTIFY, json={"national_id": person.national_id, "method": "home_visit", "reason": "myself"}, headers=headers
    )
    assert r.status_code == 403
    r = await client.post(REQUESTS, json={"kind": "home_visit"}, headers=operator_headers)
    assert r.status_code == 403
    r = await client.post(REQUESTS, json={"kind": "teleport"}, headers=headers)
    assert r.status_code == 400


async def test_a_death_record_wins_over_an_operator(
    client: Any, pool: asyncpg.Pool, cardholder: dict[str, Any], operator_headers: dict[str, str]
) -> None:
    person = cardholder["person"]
    await pool.execute("UPDATE persons SET vital_status = 'deceased' WHERE phone = $1", person.phone)
    r = await client.post(
        CERTIFY,
        json={"national_id": person.national_id, "method": "service_point", "reason": "someone came with the ID"},
        headers=operator_headers,
    )
    assert (r.status_code, problem_code(r)) == (409, "person_deceased")
    assert await pool.fetchval("SELECT count(*) FROM in_person_certifications") == 0


async def test_an_upheld_appeal_against_a_withheld_month_certifies_and_pays_back(
    client: Any, pool: asyncpg.Pool, services: Services, cardholder: dict[str, Any], operator_headers: dict[str, str]
) -> None:
    person, headers = cardholder["person"], cardholder["headers"]
    await _uncertify(pool, person.phone)
    # Certified until yesterday: January's pay day finds the person uncertified.
    await services.disbursements.run(date(2027, 1, 1), "system:test")
    withheld = await pool.fetchrow(
        """SELECT m.id FROM pension_payments m JOIN persons p ON p.id = m.person_id
           WHERE p.phone = $1 AND m.status = 'withheld'""",
        person.phone,
    )
    assert withheld is not None
    body = {
        "subject": "payment",
        "subject_id": str(withheld["id"]),
        "statement": "I was in hospital and could not certify",
    }
    r = await client.post(APPEALS, json=body, headers=headers)
    assert r.status_code == 201, r.text
    appeal = r.json()
    assert appeal["state"] == "submitted"
    due = datetime.fromisoformat(appeal["due_at"]) - datetime.fromisoformat(appeal["submitted_at"])
    assert due == timedelta(days=15)
    assert (await client.post(APPEALS, json=body, headers=headers)).json()["id"] == appeal["id"]
    assert "appeal.received" in await _notices(pool, person.phone)

    open_ones = (await client.get(ADMIN_APPEALS, headers=operator_headers)).json()["appeals"]
    assert [a["id"] for a in open_ones] == [appeal["id"]]
    assert open_ones[0]["overdue"] is False

    r = await client.post(
        f"{ADMIN_APPEALS}/{appeal['id']}/decision",
        json={"outcome": "upheld", "reason": "hospital records confirm the stay"},
        headers=operator_headers,
    )
    assert (r.status_code, r.json()["state"]) == (200, "upheld")
    assert "appeal.upheld" in await _notices(pool, person.phone)
    method = await pool.fetchval("SELECT method FROM in_person_certifications")
    assert method == "appeal"
    # The next run pays the withheld month back, once.
    await services.disbursements.run(date(2027, 2, 1), "system:test")
    back_paid = await pool.fetchval(
        """SELECT count(*) FROM pension_payments m JOIN persons p ON p.id = m.person_id
           WHERE p.phone = $1 AND m.kind = 'back_pay' AND $2 = ANY (m.covers)""",
        person.phone,
        date(2027, 1, 1),
    )
    assert back_paid == 1
    r = await client.post(
        f"{ADMIN_APPEALS}/{appeal['id']}/decision",
        json={"outcome": "rejected", "reason": "changed mind"},
        headers=operator_headers,
    )
    assert (r.status_code, problem_code(r)) == (409, "appeal_decided")


async def test_a_rejected_appeal_against_a_failed_check_tells_the_reason(
    client: Any, pool: asyncpg.Pool, cardholder: dict[str, Any], operator_headers: dict[str, str]
) -> None:
    person, headers = cardholder["person"], cardholder["headers"]
    passed = await pool.fetchval(
        "SELECT k.id FROM certification_checks k JOIN persons p ON p.id = k.person_id WHERE p.phone = $1", person.phone
    )
    # Only a refusal can be appealed: a passed check, or another person's, is not a subject.
    r = await client.post(
        APPEALS, json={"subject": "check", "subject_id": str(passed), "statement": "x"}, headers=headers
    )
    assert (r.status_code, problem_code(r)) == (400, "appeal_subject_invalid")
    failed = await insert_check(pool, person.phone, "failed", worker_outcome="failed")
    r = await client.post(
        APPEALS, json={"subject": "check", "subject_id": str(failed), "statement": "it was me"}, headers=headers
    )
    assert r.status_code == 201, r.text
    r = await client.post(
        f"{ADMIN_APPEALS}/{r.json()['id']}/decision",
        json={"outcome": "rejected", "reason": "the video shows another person"},
        headers=operator_headers,
    )
    assert (r.status_code, r.json()["state"]) == (200, "rejected")
    params = await pool.fetchval(
        """SELECT n.params FROM notifications n JOIN persons p ON p.id = n.person_id
           WHERE p.phone = $1 AND n.kind = 'appeal.rejected'""",
        person.phone,
    )
    assert "the video shows another person" in render("appeal.rejected", "en", params).body
    mine = (await client.get(APPEALS, headers=headers)).json()["appeals"]
    assert mine[0]["outcome_reason"] == "the video shows another person"


async def test_a_request_is_certified_the_way_it_was_asked(
    client: Any, pool: asyncpg.Pool, cardholder: dict[str, Any], operator_headers: dict[str, str]
) -> None:
    headers = cardholder["headers"]
    asked = (await client.post(REQUESTS, json={"kind": "service_point"}, headers=headers)).json()
    r = await client.post(
        f"{ADMIN_REQUESTS}/{asked['id']}/certification",
        json={"reason": "came to window 3 with the ID card"},
        headers=operator_headers,
    )
    assert (r.status_code, r.json()["method"]) == (201, "service_point"), r.text
    r = await client.post(
        f"{ADMIN_REQUESTS}/{asked['id']}/certification", json={"reason": "again"}, headers=operator_headers
    )
    assert (r.status_code, problem_code(r)) == (409, "request_closed")


async def test_the_report_counts_each_way_per_region(
    client: Any,
    pool: asyncpg.Pool,
    importer: Any,
    tmp_path: Any,
    cardholder: dict[str, Any],
    operator_headers: dict[str, str],
    settings: Settings,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # The cardholder passed a face check today; a second pensioner is seen at home; a third in another
    # region is certified by nothing this year and lapsed; a fourth is dead and not counted at all.
    seen, idle, dead = sample_person(), sample_person(), sample_person()
    rows = [seen.row(), idle.row(region="320102"), dead.row()]
    report = await importer.import_file(write_jsonl(tmp_path / "more.jsonl", rows))
    assert report.created == 3, report.errors
    await pool.execute("UPDATE persons SET vital_status = 'deceased' WHERE phone = $1", dead.phone)
    r = await client.post(
        CERTIFY,
        json={"national_id": seen.national_id, "method": "home_visit", "reason": "seen at home"},
        headers=operator_headers,
    )
    assert r.status_code == 201, r.text
    year = datetime.now(UTC).astimezone(LOCAL_TZ).year
    # The cardholder's son filmed a second pass for them: counted as assisted too, certified once.
    son = await pool.fetchval("SELECT id FROM persons WHERE phone = $1", seen.phone)
    link = await pool.fetchval(
        """INSERT INTO relative_links (person_id, helper_id, relationship, state, requested_by, consented_at,
                                       consent_method, consented_by)
           SELECT id, $2, 'child', 'active', 'test', now(), 'operator', 'test' FROM persons WHERE phone = $1
           RETURNING id""",
        cardholder["person"].phone,
        son,
    )
    assisted = await insert_check(pool, cardholder["person"].phone, "passed", worker_outcome="passed")
    await pool.execute(
        "UPDATE certification_checks SET assisted_by = $2, assisted_link = $3 WHERE id = $1", assisted, son, link
    )

    r = await client.get(f"/v1/admin/certification-report?year={year}", headers=operator_headers)
    assert r.status_code == 200, r.text
    found = r.json()
    by_region = {row["region"]: row for row in found["regions"]}
    assert by_region["110101"] == {
        "region": "110101",
        "pensioners": 2,
        "by_data": 0,
        "by_face": 1,
        "assisted": 1,
        "in_person": 1,
        "certified": 2,
        "still_due": 0,
        "lapsed": 0,
    }
    assert (by_region["320102"]["pensioners"], by_region["320102"]["still_due"], by_region["320102"]["lapsed"]) == (
        1,
        1,
        1,
    )
    assert found["total"]["pensioners"] == 3
    assert found["total"]["certified"] == 2
    one = (
        await client.get(f"/v1/admin/certification-report?year={year}&region=320102", headers=operator_headers)
    ).json()
    assert [row["region"] for row in one["regions"]] == ["320102"]
    last_year = (await client.get(f"/v1/admin/certification-report?year={year - 1}", headers=operator_headers)).json()
    assert last_year["total"]["certified"] == 0
    # The same from the command line, as JSON lines for scripts.
    capsys.readouterr()
    assert await asyncio.to_thread(run_cli, settings, "certify", "report", "--year", str(year), "--json") == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [line["region"] for line in lines] == ["110101", "320102", "total"]
    assert lines[0] == found["regions"][0]
    r = await client.get("/v1/admin/certification-report?year=99999", headers=operator_headers)
    assert r.status_code == 400
    assert (
        await client.get(f"/v1/admin/certification-report?year={year}", headers=cardholder["headers"])
    ).status_code == 403
