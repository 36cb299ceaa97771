"""Fund-supervision alerts (issue 20) on the real database: each kind raised once with its evidence by
the scan (and again by a second scan: updated, not duplicated), closed with a reason, and shown to
operators in the console in both languages."""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from app.services import Services
from infra.config import Settings
from notifications.rules import LOCAL_TZ
from tests.factories import console_sign_in, form_token, insert_check, run_cli, sample_person, staff_member
from tests.integration.test_deaths import _feed, _import

_VECTOR = [0.1] * 128


def _template(shift: float = 0.0) -> str:
    return "[" + ",".join(f"{x + (shift if i == 0 else 0):.4f}" for i, x in enumerate(_VECTOR)) + "]"


async def _alerts(pool: asyncpg.Pool) -> dict[str, list[asyncpg.Record]]:
    found: dict[str, list[asyncpg.Record]] = {}
    for row in await pool.fetch("SELECT * FROM supervision_alerts ORDER BY id"):
        found.setdefault(row["kind"], []).append(row)
    return found


async def _passed_check(pool: asyncpg.Pool, phone: str, template: str | None = None) -> uuid.UUID:
    check_id = await insert_check(pool, phone, "passed", worker_outcome="passed")
    if template is not None:
        await pool.execute(
            "INSERT INTO face_templates (person_id, check_id, template) SELECT person_id, id, $2::vector "
            "FROM certification_checks WHERE id = $1",
            check_id,
            template,
        )
    return check_id


async def _signed_in_on(pool: asyncpg.Pool, person_id: uuid.UUID, phone: str, device: str) -> None:
    """The person's account signed in on `device` an hour ago, the session still live."""
    await pool.execute(
        """WITH a AS (INSERT INTO accounts (phone, person_id) VALUES ($1, $2) RETURNING id)
           INSERT INTO sessions (principal_kind, principal_id, device_id, platform, created_at, expires_at)
           SELECT 'account', a.id, $3, 'android', now() - interval '1 hour', now() + interval '30 days' FROM a""",
        phone,
        person_id,
        device,
    )


async def test_each_kind_of_alert_is_raised_once_with_its_evidence_and_closed_with_a_reason(
    client: Any,
    services: Services,
    importer: Any,
    pool: asyncpg.Pool,
    operator_headers: dict[str, str],
    settings: Settings,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    people = [sample_person() for _ in range(6)]
    ids = await _import(importer, pool, tmp_path, *people)
    a, b, c, d, e, dead = ids
    # Every sample pension is paid into one account: all six share it. A later import moves four of
    # them to accounts of their own (the scan sees the changed ciphertexts and hashes them again).
    moved = [
        p.row(pension={"monthly_amount": 350000, "bank_account": f"62220202001122{n:05d}", "start_month": "2010-01"})
        for n, p in enumerate(people[2:])
    ]
    path = tmp_path / "moved.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in moved), encoding="utf-8")
    await importer.import_file(path)

    # One face: b's passed check shows a's reference photo.
    await pool.execute("INSERT INTO face_templates (person_id, template) VALUES ($1, $2::vector)", a, _template())
    face_check = await _passed_check(pool, people[1].phone, _template(0.01))
    # One device: c, d and e certified from the same phone.
    device_checks = []
    for person_id, person in ((c, people[2]), (d, people[3]), (e, people[4])):
        await _signed_in_on(pool, person_id, person.phone, "shared-phone-0001")
        device_checks.append(await _passed_check(pool, person.phone))
    # After a death: a check passed today, a QR charge today; the death recorded for yesterday.
    await _passed_check(pool, people[5].phone)
    yesterday = datetime.now(LOCAL_TZ).date() - timedelta(days=1)
    await services.deaths.import_file(_feed(tmp_path, "d.csv", f"{people[5].national_id},{yesterday}"), "t")
    terminal = await pool.fetchval(
        "INSERT INTO terminals (merchant, key_hash) VALUES ('Kang Pharmacy', '\\x00') RETURNING id"
    )
    card = await pool.fetchval("SELECT id FROM cards WHERE person_id = $1", dead)
    charge = await pool.fetchval(
        """INSERT INTO medical_charges (terminal_id, person_id, card_id, qr_token_id, amount_fen, description)
           VALUES ($1, $2, $3, gen_random_uuid(), 4250, 'medicine') RETURNING id""",
        terminal,
        dead,
        card,
    )
    # Paid without evidence of life: a's pension paid this month, their only evidence 13 months old.
    this_month = datetime.now(UTC).date().replace(day=1)
    run = await services.disbursements.run(this_month, "system:test")
    assert run["paid_count"] == 5
    await pool.execute(
        """INSERT INTO life_evidence (person_id, source, occurred_on, reference, feed, imported_by)
           VALUES ($1, 'hospital_visit', current_date - 400, 'visit-1', 'test', 'system:test')""",
        a,
    )
    await pool.execute(
        "INSERT INTO life_evidence (person_id, source, occurred_on, reference, feed, imported_by) "
        "SELECT id, 'pharmacy_purchase', current_date - 3, 'buy-' || id, 'test', 'system:test' FROM persons WHERE id <> $1",
        a,
    )

    first = await services.supervision.scan("system:test")
    assert first.raised == {
        "shared_account": 1,
        "shared_face": 1,
        "shared_device": 1,
        "after_death": 1,
        "no_life_evidence": 1,
    }
    alerts = await _alerts(pool)
    (account,) = alerts["shared_account"]
    assert account["person_ids"] == sorted([a, b])
    assert account["evidence"]["account"] == "***************3445"
    (face,) = alerts["shared_face"]
    assert face["person_ids"] == sorted([a, b])
    (match,) = face["evidence"]["matches"]
    assert (match["check_id"], match["matched"], match["matched_person_id"]) == (
        str(face_check),
        "reference_photo",
        str(a),
    )
    (device,) = alerts["shared_device"]
    assert device["person_ids"] == sorted([c, d, e])
    assert device["evidence"]["device_id"] == "shared-phone-0001"
    assert sorted(x["check_id"] for x in device["evidence"]["checks"]) == sorted(map(str, device_checks))
    (after,) = alerts["after_death"]
    assert after["person_ids"] == [dead]
    assert after["evidence"]["date_of_death"] == yesterday.isoformat()
    assert sorted(x["what"] for x in after["evidence"]["events"]) == ["charge", "face_check"]
    assert [x["place"] for x in after["evidence"]["events"] if x["what"] == "charge"] == ["Kang Pharmacy"]
    (stale,) = alerts["no_life_evidence"]
    assert stale["person_ids"] == [a]
    assert stale["evidence"]["last_evidence_source"] == "hospital_visit"
    assert stale["evidence"]["paid_since"]["payments"] == 1
    assert stale["evidence"]["paid_since"]["amount_fen"] == 350000

    # The same findings again: updated, not duplicated (here by the command line).
    assert await asyncio.to_thread(run_cli, settings, "supervise", "scan") == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["raised"] == {}
    assert printed["found"]["shared_face"] == 0  # only checks decided since the last scan are probed
    assert {k: len(v) for k, v in (await _alerts(pool)).items()} == dict.fromkeys(
        ("shared_account", "shared_face", "shared_device", "after_death", "no_life_evidence"), 1
    )

    # Operators list them by kind and state, and close each with a reason.
    r = await client.get("/v1/admin/alerts?kind=after_death&state=open", headers=operator_headers)
    assert r.status_code == 200, r.text
    (shown,) = r.json()["items"]
    assert shown["persons"][0]["masked_national_id"].endswith(people[5].national_id[-4:])
    assert people[5].national_id not in r.text
    path = f"/v1/admin/alerts/{shown['id']}/closing"
    assert (await client.post(path, json={"reason": " "}, headers=operator_headers)).status_code == 400
    r = await client.post(path, json={"reason": "family returned the card; charge refunded"}, headers=operator_headers)
    assert r.status_code == 200, r.text
    assert (r.json()["state"], r.json()["close_reason"]) == ("closed", "family returned the card; charge refunded")
    r = await client.post(path, json={"reason": "again"}, headers=operator_headers)
    assert (r.status_code, r.json()["code"]) == (409, "alert_closed")
    audit = await pool.fetchrow("SELECT actor, details FROM audit_log WHERE action = 'supervision.alert_closed'")
    assert audit is not None
    assert audit["details"]["reason"] == "family returned the card; charge refunded"
    assert audit["actor"].startswith("operator:")

    # Seen again unchanged, it stays closed; a new charge after the death opens it again.
    await services.supervision.scan("system:test")
    assert (
        await pool.fetchval("SELECT state FROM supervision_alerts WHERE id = $1", uuid.UUID(shown["id"]))
    ) == "closed"
    await pool.execute(
        """INSERT INTO medical_charges (terminal_id, person_id, card_id, qr_token_id, amount_fen, description)
           VALUES ($1, $2, $3, gen_random_uuid(), 900, 'more') """,
        terminal,
        dead,
        card,
    )
    again = await services.supervision.scan("system:test")
    assert again.reopened == {"after_death": 1}
    row = await pool.fetchrow(
        "SELECT state, reopened, evidence FROM supervision_alerts WHERE id = $1", uuid.UUID(shown["id"])
    )
    assert row is not None
    assert (row["state"], row["reopened"], len(row["evidence"]["events"])) == ("open", 1, 3)
    assert charge is not None


async def test_the_console_lists_alerts_by_kind_and_closes_them_in_both_languages(
    client: Any, services: Services, importer: Any, pool: asyncpg.Pool, tmp_path: Path
) -> None:
    first, second = sample_person(), sample_person()
    await _import(importer, pool, tmp_path, first, second)  # one account, two pensions
    await services.supervision.scan("system:test")
    alert_id = await pool.fetchval("SELECT id FROM supervision_alerts")

    await console_sign_in(client, "olga", await staff_member(services, "olga", "Olga Operator"))
    page = await client.get("/console/alerts")
    assert page.status_code == 200
    assert "一个银行账户领取多份养老金" in page.text
    assert first.name in page.text
    assert first.national_id not in page.text
    csrf = form_token(page.text)
    await client.post("/console/language", data={"csrf": csrf, "locale": "en"})
    page = await client.get("/console/alerts?kind=shared_account&state=open")
    assert "One bank account, several pensions" in page.text
    # The table scrolls inside its own named region, reachable by keyboard.
    assert '<div class="scroll" tabindex="0" role="region" aria-label="Supervision alerts"><table>' in page.text
    assert f'<label for="close-{alert_id}">' in page.text
    assert "No alert matches." in (await client.get("/console/alerts?kind=shared_face")).text

    # A reason too short is refused on the page, in words; then the alert closes.
    r = await client.post(f"/console/alerts/{alert_id}/closing", data={"csrf": csrf, "reason": "x"})
    assert r.status_code == 400
    assert 'role="alert"' in r.text
    assert "Give a reason." in r.text
    r = await client.post(
        f"/console/alerts/{alert_id}/closing",
        data={"csrf": csrf, "reason": "husband and wife, one joint account: checked"},
        follow_redirects=False,
    )
    assert r.status_code == 303
    page = await client.get(r.headers["location"])
    assert "The alert was closed." in page.text
    closed = await client.get("/console/alerts?state=closed")
    assert "husband and wife, one joint account: checked" in closed.text
    assert date.today().isoformat()[:4] in closed.text
