"""Assisted certification by a relative (issue 19, the family rung): a relative links an elder, the
elder consents separately (the code sent to their phone, their own app, an operator in person) and
can end it; the relative's phone films the elder and the worker matches the video against the
elder's reference, recorded as assisted; a relative or device that helps too many elders goes to a
person; a death record wins."""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from app.jobs import run_worker
from app.services import Services
from certification.rules import add_months, day_in_china
from liveness.model import Analysis, Outcome
from tests.conftest import FACES
from tests.factories import (
    SamplePerson,
    bearer,
    console_sign_in,
    last_code,
    problem_code,
    sample_person,
    sign_in,
    staff_member,
    video_frame,
    write_jsonl,
)

ELDERS = "/v1/family/elders"
HELPERS = "/v1/family/helpers"
ADMIN = "/v1/admin/relative-links"
BLINK = FACES / "video" / "live_blink__eye_blink.mp4"


@dataclass(frozen=True)
class Member:
    """An imported person; `headers` once signed in with their identity linked (an app user)."""

    person: SamplePerson
    id: uuid.UUID
    headers: dict[str, str]


async def _imported(importer: Any, pool: asyncpg.Pool, folder: Path, reference_photo: Path | None = None) -> Member:
    person = sample_person()
    row = person.row(reference_photo=str(reference_photo)) if reference_photo else person.row()
    report = await importer.import_file(write_jsonl(folder / f"{person.phone}.jsonl", [row]))
    assert report.created == 1, report.errors
    person_id = await pool.fetchval("SELECT id FROM persons WHERE phone = $1", person.phone)
    return Member(person, person_id, {})


async def _app_user(client: Any, pool: asyncpg.Pool, member: Member, device: str) -> Member:
    """Signed in on `device`, identity linked by activation (which then asks for a face check)."""
    tokens = await sign_in(client, pool, member.person.phone, device_id=device)
    headers = bearer(tokens["access_token"])
    r = await client.post("/v1/card/activation", json={"national_id": member.person.national_id}, headers=headers)
    assert r.status_code in (200, 409), r.text
    return Member(member.person, member.id, headers)


async def _relative(client: Any, pool: asyncpg.Pool, importer: Any, folder: Path, device: str) -> Member:
    return await _app_user(client, pool, await _imported(importer, pool, folder), device)


async def _ask(client: Any, relative: Member, elder: Member, relationship: str = "child") -> dict[str, Any]:
    r = await client.post(
        ELDERS, json={"national_id": elder.person.national_id, "relationship": relationship}, headers=relative.headers
    )
    assert r.status_code == 201, r.text
    asked: dict[str, Any] = r.json()
    return asked


async def _linked(client: Any, pool: asyncpg.Pool, relative: Member, elder: Member) -> str:
    """An active link: asked, and consented by the code the elder was sent."""
    link_id: str = (await _ask(client, relative, elder))["link"]["id"]
    code = await last_code(pool, elder.person.phone)
    r = await client.post(f"{ELDERS}/{link_id}/consent", json={"code": code}, headers=relative.headers)
    assert r.status_code == 200, r.text
    assert r.json()["state"] == "active"
    return link_id


async def _notices(pool: asyncpg.Pool, person_id: uuid.UUID) -> list[str]:
    rows = await pool.fetch("SELECT kind FROM notifications WHERE person_id = $1 ORDER BY created_at", person_id)
    return [r["kind"] for r in rows]


async def _audited(pool: asyncpg.Pool, action: str, subject: str) -> list[dict[str, Any]]:
    rows = await pool.fetch("SELECT details FROM audit_log WHERE action = $1 AND subject = $2", action, subject)
    return [dict(r["details"]) for r in rows]


async def _submit(client: Any, relative: Member, link_id: str, video: bytes) -> str:
    r = await client.post(f"{ELDERS}/{link_id}/challenges", headers=relative.headers)
    assert r.status_code == 201, r.text
    challenge = r.json()
    assert challenge["upload"]["direct"]["url"].endswith(f"{ELDERS}/{link_id}/challenges/{challenge['id']}/submission")
    r = await client.post(
        f"{ELDERS}/{link_id}/challenges/{challenge['id']}/submission",
        files={"video": ("elder.mp4", video, "video/mp4")},
        headers=relative.headers,
    )
    assert r.status_code == 202, r.text
    check_id: str = r.json()["check_id"]
    return check_id


async def test_a_relative_links_an_elder_with_the_elders_code_and_the_elder_ends_it(
    client: Any, pool: asyncpg.Pool, importer: Any, tmp_path: Path
) -> None:
    relative = await _relative(client, pool, importer, tmp_path, "relative-phone-1")
    elder = await _imported(importer, pool, tmp_path)

    bad = await client.post(
        ELDERS, json={"national_id": "110101194503072311", "relationship": "child"}, headers=relative.headers
    )
    assert (bad.status_code, problem_code(bad)) == (400, "national_id_invalid")
    unknown = sample_person()
    r = await client.post(
        ELDERS, json={"national_id": unknown.national_id, "relationship": "child"}, headers=relative.headers
    )
    assert (r.status_code, problem_code(r)) == (404, "person_not_found")
    r = await client.post(
        ELDERS, json={"national_id": relative.person.national_id, "relationship": "child"}, headers=relative.headers
    )
    assert (r.status_code, problem_code(r)) == (400, "relative_self")
    r = await client.post(
        ELDERS, json={"national_id": elder.person.national_id, "relationship": "cousin"}, headers=relative.headers
    )
    assert r.status_code == 400, r.text

    asked = await _ask(client, relative, elder)
    link = asked["link"]
    assert (link["state"], asked["code_expires_in"]) == ("pending", 300)
    assert link["elder_name"] is None  # a typed-in ID number does not reveal a name before consent
    assert "*" in link["elder_masked_national_id"]
    # The code went to the elder's registered phone, naming who asks.
    sms = await pool.fetchval(
        "SELECT body FROM dev_sms_messages WHERE phone = $1 ORDER BY id DESC LIMIT 1", elder.person.phone
    )
    assert relative.person.name in sms

    # Nothing before the elder consents.
    r = await client.post(f"{ELDERS}/{link['id']}/challenges", headers=relative.headers)
    assert (r.status_code, problem_code(r)) == (409, "relative_link_closed")
    code = await last_code(pool, elder.person.phone)
    wrong = "000000" if code != "000000" else "111111"
    r = await client.post(f"{ELDERS}/{link['id']}/consent", json={"code": wrong}, headers=relative.headers)
    assert (r.status_code, problem_code(r)) == (400, "otp_invalid")
    r = await client.post(f"{ELDERS}/{link['id']}/consent", json={"code": code}, headers=relative.headers)
    assert r.status_code == 200, r.text
    active = r.json()
    assert (active["state"], active["consent_method"], active["elder_name"]) == (
        "active",
        "sms_code",
        elder.person.name,
    )
    # The elder's consent to face processing came with it.
    consent = await pool.fetchrow(
        "SELECT account_id, recorded_by FROM biometric_consents WHERE person_id = $1 AND withdrawn_at IS NULL", elder.id
    )
    assert consent is not None
    assert consent["account_id"] is None
    assert "sms_code" in consent["recorded_by"]
    listed = (await client.get(ELDERS, headers=relative.headers)).json()["links"]
    assert [x["id"] for x in listed] == [link["id"]]

    # The elder, in their own app, sees the relative and ends the link.
    elder_app = await _app_user(client, pool, elder, "elder-phone")
    mine = (await client.get(HELPERS, headers=elder_app.headers)).json()["links"]
    assert [(x["id"], x["helper_name"]) for x in mine] == [(link["id"], relative.person.name)]
    r = await client.post(f"{HELPERS}/{link['id']}/revocation", headers=relative.headers)
    assert (r.status_code, problem_code(r)) == (404, "relative_link_not_found")  # not the relative's to revoke here
    r = await client.post(f"{HELPERS}/{link['id']}/revocation", headers=elder_app.headers)
    assert r.status_code == 200, r.text
    assert (r.json()["state"], r.json()["end_reason"]) == ("ended", "revoked_by_elder")
    r = await client.post(f"{ELDERS}/{link['id']}/challenges", headers=relative.headers)
    assert (r.status_code, problem_code(r)) == (409, "relative_link_closed")

    assert await _notices(pool, elder.id) == ["relative.requested", "relative.consented", "relative.ended"]
    subject = f"person:{elder.id}"
    assert len(await _audited(pool, "relative.requested", subject)) == 1
    assert (await _audited(pool, "relative.consented", subject))[0]["method"] == "sms_code"
    assert (await _audited(pool, "relative.ended", subject))[0]["why"] == "revoked_by_elder"


async def test_the_elder_approves_in_the_app_or_an_operator_records_consent_in_person(
    client: Any,
    pool: asyncpg.Pool,
    importer: Any,
    tmp_path: Path,
    operator_headers: dict[str, str],
) -> None:
    elder = await _app_user(client, pool, await _imported(importer, pool, tmp_path), "elder-phone")
    first = await _relative(client, pool, importer, tmp_path, "relative-phone-1")
    second = await _relative(client, pool, importer, tmp_path, "relative-phone-2")

    one = (await _ask(client, first, elder))["link"]
    # A second request sends a new code, which replaces the first one's: the first waits no more.
    two = (await _ask(client, second, elder, "grandchild"))["link"]
    r = await client.post(
        f"{ELDERS}/{one['id']}/consent", json={"code": await last_code(pool, elder.person.phone)}, headers=first.headers
    )
    assert (r.status_code, problem_code(r)) == (409, "relative_link_closed")
    assert (await client.get(ELDERS, headers=first.headers)).json()["links"] == []

    r = await client.post(f"{HELPERS}/{two['id']}/approval", headers=elder.headers)
    assert r.status_code == 200, r.text
    assert (r.json()["state"], r.json()["consent_method"]) == ("active", "elder_app")
    granted_by = await pool.fetchval(
        "SELECT account_id FROM biometric_consents WHERE person_id = $1 AND withdrawn_at IS NULL", elder.id
    )
    assert granted_by is not None  # the elder's own account

    # The first relative asks again; the elder comes to a service point and consents there.
    again = (await _ask(client, first, elder))["link"]
    body = {
        "elder_national_id": elder.person.national_id,
        "helper_national_id": first.person.national_id,
        "reason": "  a  ",
    }
    r = await client.post(f"{ADMIN}/consent", json=body, headers=operator_headers)
    assert (r.status_code, problem_code(r)) == (400, "reason_required")
    body["reason"] = "elder seen at the Xicheng service point with ID card; agrees"
    r = await client.post(f"{ADMIN}/consent", json=body, headers=first.headers)
    assert r.status_code == 403
    r = await client.post(f"{ADMIN}/consent", json=body, headers=operator_headers)
    assert r.status_code == 200, r.text
    assert (r.json()["id"], r.json()["state"], r.json()["consent_method"]) == (again["id"], "active", "operator")
    audited = await _audited(pool, "relative.consented", f"person:{elder.id}")
    assert any(a.get("reason") == body["reason"] and a.get("operator") == "reviewer1" for a in audited)

    # An operator ends it too, with a reason; the relative can end their own.
    body["reason"] = "the elder called 12333 to end it"
    r = await client.post(f"{ADMIN}/revocation", json=body, headers=operator_headers)
    assert (r.status_code, r.json()["end_reason"]) == (200, "revoked_by_operator")
    r = await client.post(f"{ELDERS}/{two['id']}/end", headers=second.headers)
    assert (r.status_code, r.json()["end_reason"]) == (200, "ended_by_relative")
    assert (await client.get(HELPERS, headers=elder.headers)).json()["links"] == []


async def test_limits_per_relative_and_per_elder(
    client: Any, pool: asyncpg.Pool, importer: Any, tmp_path: Path, services: Services, operator_headers: dict[str, str]
) -> None:
    relative = await _relative(client, pool, importer, tmp_path, "relative-phone-1")
    elders = [await _imported(importer, pool, tmp_path) for _ in range(3)]
    await _ask(client, relative, elders[0])
    await _ask(client, relative, elders[1])
    r = await client.post(
        ELDERS, json={"national_id": elders[2].person.national_id, "relationship": "child"}, headers=relative.headers
    )
    assert (r.status_code, problem_code(r)) == (409, "relative_elders_limit")
    assert "2" in r.json()["detail"]

    # One elder, three consented relatives: a fourth may ask, but the elder cannot consent to a fourth.
    elder = elders[2]
    helpers = [await _relative(client, pool, importer, tmp_path, f"helper-phone-{i}") for i in range(4)]
    for helper in helpers[:3]:
        await _linked(client, pool, helper, elder)
    r = await client.post(
        ELDERS, json={"national_id": elder.person.national_id, "relationship": "other"}, headers=helpers[3].headers
    )
    assert (r.status_code, problem_code(r)) == (409, "relative_helpers_limit")
    assert (
        await pool.fetchval("SELECT count(*) FROM relative_links WHERE person_id = $1 AND state = 'active'", elder.id)
        == services.settings.assisted_max_helpers
    )


@pytest.mark.skipif(not FACES.exists(), reason="../shared/faces is not beside this clone")
async def test_the_relatives_phone_films_the_elder_and_the_worker_matches_the_elders_reference(
    client: Any, pool: asyncpg.Pool, importer: Any, tmp_path: Path
) -> None:
    elder = await _imported(importer, pool, tmp_path, reference_photo=video_frame(BLINK, 10, tmp_path))
    relative = await _relative(client, pool, importer, tmp_path, "relative-phone-1")
    link_id = await _linked(client, pool, relative, elder)

    r = await client.post(f"{ELDERS}/{link_id}/challenges", headers=relative.headers)
    assert r.status_code == 201, r.text
    challenge = r.json()
    # The challenge is the elder's (their folder, their hourly limit), and the relative's alone to submit.
    row = await pool.fetchrow(
        "SELECT person_id, assisted_by, upload_prefix FROM certification_challenges WHERE id = $1",
        uuid.UUID(challenge["id"]),
    )
    assert (row["person_id"], row["assisted_by"]) == (elder.id, relative.id)
    assert row["upload_prefix"].startswith(f"uploads/{elder.id}/")
    await pool.execute(
        "UPDATE certification_challenges SET actions = '{blink}' WHERE id = $1", uuid.UUID(challenge["id"])
    )
    r = await client.post(
        f"/v1/certifications/challenges/{challenge['id']}/submission",
        files={"video": ("elder.mp4", BLINK.read_bytes(), "video/mp4")},
        headers=relative.headers,
    )
    assert r.status_code in (403, 404), r.text  # not through the relative's own certification
    r = await client.post(
        f"{ELDERS}/{link_id}/challenges/{challenge['id']}/submission",
        files={"video": ("elder.mp4", BLINK.read_bytes(), "video/mp4")},
        headers=relative.headers,
    )
    assert r.status_code == 202, r.text
    check_id = r.json()["check_id"]
    await asyncio.wait_for(run_worker(client.app.state.services.settings, drain=True), timeout=180)

    r = await client.get(f"/v1/family/checks/{check_id}", headers=relative.headers)
    assert r.status_code == 200, r.text
    check = r.json()
    assert check["status"] == "passed", check
    assert check["assisted_by"] == relative.person.name
    stored = await pool.fetchrow(
        """SELECT person_id, assisted_by, assisted_link, assisted_device, assisted_session, hold_reasons,
                  scores->>'match_distance' AS distance
           FROM certification_checks WHERE id = $1""",
        uuid.UUID(check_id),
    )
    assert (stored["person_id"], stored["assisted_by"], str(stored["assisted_link"])) == (
        elder.id,
        relative.id,
        link_id,
    )
    assert stored["assisted_device"] == "relative-phone-1"
    assert stored["assisted_session"] is not None
    assert stored["hold_reasons"] == []
    assert float(stored["distance"]) < 0.469  # matched against the elder's reference
    until = await pool.fetchval("SELECT certified_until FROM persons WHERE id = $1", elder.id)
    assert until == add_months(day_in_china(datetime.now(UTC)), 12)
    assert await pool.fetchval("SELECT certified_until FROM persons WHERE id = $1", relative.id) is None
    notices = await _notices(pool, elder.id)
    assert {"certification.passed", "relative.certified"} <= set(notices)
    # The elder sees who filmed them; the relative's own certification is untouched.
    elder_app = await _app_user(client, pool, elder, "elder-phone")
    status = (await client.get("/v1/certifications/status", headers=elder_app.headers)).json()
    assert status["last_check"]["assisted_by"] == relative.person.name
    mine = (await client.get(HELPERS, headers=elder_app.headers)).json()["links"]
    assert mine[0]["last_assisted_at"] is not None
    assert (await client.get("/v1/certifications/status", headers=relative.headers)).json()["last_check"] is None


async def test_a_relative_or_device_that_helps_too_many_elders_goes_to_review(
    client: Any,
    pool: asyncpg.Pool,
    importer: Any,
    tmp_path: Path,
    services: Services,
    operator_headers: dict[str, str],
) -> None:
    video = b"\x00\x00\x00\x18ftypmp42" + bytes(4096)  # the upload's type is all the submission checks
    relative = await _relative(client, pool, importer, tmp_path, "shared-phone")
    elders = [await _imported(importer, pool, tmp_path) for _ in range(4)]
    first = await _linked(client, pool, relative, elders[0])
    await _submit(client, relative, first, video)
    second = await _linked(client, pool, relative, elders[1])
    await _submit(client, relative, second, video)
    # Two elders is a family: nothing held so far.
    assert await pool.fetchval("SELECT count(*) FROM certification_checks WHERE hold_reasons <> '{}'") == 0
    r = await client.post(f"{ELDERS}/{first}/end", headers=relative.headers)
    assert r.status_code == 200, r.text
    third = await _linked(client, pool, relative, elders[2])
    held = await _submit(client, relative, third, video)

    # The worker finds a good match; the check goes to a person all the same.
    item = await services.certification.start_analysis(uuid.UUID(held))
    assert item is not None
    assert item.person_id == elders[2].id
    passed = Analysis(outcome=Outcome.PASSED, reasons=(), scores={"match_distance": 0.3})
    assert await services.certification.record_analysis(item, passed, []) == "needs_review"
    check = (await client.get(f"/v1/family/checks/{held}", headers=relative.headers)).json()
    assert check["status"] == "needs_review"
    assert [x["code"] for x in check["reasons"]] == ["assisted_limit"]
    assert check["reasons"][0]["advice"]
    assert await pool.fetchval("SELECT certified_until FROM persons WHERE id = $1", elders[2].id) is None

    # The operator sees who helped, from which device.
    r = await client.post(f"/v1/review/checks/{held}/claim", headers=operator_headers)
    assert r.status_code == 200, r.text
    view = (await client.get(f"/v1/review/checks/{held}", headers=operator_headers)).json()
    assert (view["assisted_by_name"], view["assisted_relationship"], view["assisted_device"]) == (
        relative.person.name,
        "child",
        "shared-phone",
    )
    assert "*" in view["assisted_by_masked_national_id"]

    # Another relative on the same phone: their first elder, but the phone's fourth.
    other = await _relative(client, pool, importer, tmp_path, "shared-phone")
    fourth = await _linked(client, pool, other, elders[3])
    on_device = await _submit(client, other, fourth, video)
    held_on_device = await pool.fetchval(
        "SELECT hold_reasons FROM certification_checks WHERE id = $1", uuid.UUID(on_device)
    )
    assert held_on_device == ["assisted_limit"]
    # The console's check page names the relative and the device too.
    await console_sign_in(client, "console1", await staff_member(services, "console1", "Console One"))
    page = await client.get(f"/console/checks/{on_device}")
    assert page.status_code == 200, page.text
    assert other.person.name in page.text
    assert "shared-phone" in page.text


async def test_a_death_record_wins_over_a_relatives_help(
    client: Any, pool: asyncpg.Pool, importer: Any, tmp_path: Path, services: Services
) -> None:
    video = b"\x00\x00\x00\x18ftypmp42" + bytes(4096)
    relative = await _relative(client, pool, importer, tmp_path, "relative-phone-1")
    elder = await _imported(importer, pool, tmp_path)
    link_id = await _linked(client, pool, relative, elder)
    r = await client.post(f"{ELDERS}/{link_id}/challenges", headers=relative.headers)
    assert r.status_code == 201, r.text
    challenge_id = r.json()["id"]
    pending = await _imported(importer, pool, tmp_path)
    waiting = (await _ask(client, relative, pending))["link"]

    feed = tmp_path / "deaths.csv"
    died = (date.today() - timedelta(days=3)).isoformat()
    feed.write_text(
        f"national_id,date_of_death\n{elder.person.national_id},{died}\n{pending.person.national_id},{died}\n",
        encoding="utf-8",
    )
    report = await services.deaths.import_file(feed, "system:test")
    assert not report.errors

    r = await client.post(
        f"{ELDERS}/{link_id}/challenges/{challenge_id}/submission",
        files={"video": ("elder.mp4", video, "video/mp4")},
        headers=relative.headers,
    )
    assert (r.status_code, problem_code(r)) == (409, "person_deceased")
    r = await client.post(f"{ELDERS}/{link_id}/challenges", headers=relative.headers)
    assert (r.status_code, problem_code(r)) == (409, "person_deceased")
    r = await client.post(
        f"{ELDERS}/{waiting['id']}/consent",
        json={"code": await last_code(pool, pending.person.phone)},
        headers=relative.headers,
    )
    assert (r.status_code, problem_code(r)) == (409, "person_deceased")
    assert await pool.fetchval("SELECT count(*) FROM certification_checks") == 0
    r = await client.post(
        ELDERS, json={"national_id": elder.person.national_id, "relationship": "child"}, headers=relative.headers
    )
    assert r.status_code == 201  # the active link is returned as it is; nothing can be done with it
