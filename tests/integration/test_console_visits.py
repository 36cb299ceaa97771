"""The console's pages for the rungs below the face check: visits and appointments to arrange and
certify, appeals to answer, and the report of how pensioners were certified."""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg

from app.services import Services
from notifications.rules import LOCAL_TZ
from tests.factories import console_sign_in, form_token, import_pensioners, insert_check, staff_member


async def test_an_operator_arranges_and_certifies_a_visit_and_answers_an_appeal(
    client: Any, services: Services, pool: asyncpg.Pool, cardholder: dict[str, Any]
) -> None:
    person, headers = cardholder["person"], cardholder["headers"]
    asked = (
        await client.post(
            "/v1/certifications/in-person-requests",
            json={"kind": "home_visit", "note": "third floor, no lift"},
            headers=headers,
        )
    ).json()
    failed = await insert_check(pool, person.phone, "failed", worker_outcome="failed")
    appeal = (
        await client.post(
            "/v1/appeals",
            json={"subject": "check", "subject_id": str(failed), "statement": "it was me"},
            headers=headers,
        )
    ).json()

    await console_sign_in(client, "olga", await staff_member(services, "olga", "Olga Operator"))
    await client.post(
        "/console/language", data={"csrf": form_token((await client.get("/console/visits")).text), "locale": "en"}
    )
    page = await client.get("/console/visits")
    assert page.status_code == 200
    assert "third floor, no lift" in page.text
    assert "it was me" in page.text
    assert person.national_id not in page.text  # masked only
    csrf = form_token(page.text)

    # A time already past is refused on the page, in words, and nothing changes.
    past = (datetime.now(LOCAL_TZ) - timedelta(hours=2)).strftime("%Y-%m-%dT%H:%M")
    r = await client.post(
        f"/console/visits/requests/{asked['id']}/schedule", data={"csrf": csrf, "scheduled_for": past, "place": "home"}
    )
    assert r.status_code == 400
    assert 'role="alert"' in r.text
    assert "The appointment must be in the future." in r.text
    soon = (datetime.now(LOCAL_TZ) + timedelta(days=1)).replace(hour=10, minute=0)
    r = await client.post(
        f"/console/visits/requests/{asked['id']}/schedule",
        data={"csrf": csrf, "scheduled_for": soon.strftime("%Y-%m-%dT%H:%M"), "place": "home address on file"},
        follow_redirects=False,
    )
    assert r.status_code == 303, r.text
    scheduled = await pool.fetchval("SELECT scheduled_for FROM in_person_requests WHERE id = $1", asked["id"])
    assert scheduled.astimezone(LOCAL_TZ).strftime("%H:%M") == "10:00"  # the operator typed China time
    assert "Scheduled; the person has been told." in (await client.get("/console/visits?note=done_scheduled")).text

    r = await client.post(f"/console/visits/requests/{asked['id']}/certification", data={"csrf": csrf, "reason": " "})
    assert (r.status_code, 'role="alert"' in r.text) == (400, True)
    r = await client.post(
        f"/console/visits/requests/{asked['id']}/certification",
        data={"csrf": csrf, "reason": "seen at home with the ID card"},
        follow_redirects=False,
    )
    assert r.status_code == 303, r.text
    assert await pool.fetchval("SELECT state FROM in_person_requests WHERE id = $1", asked["id"]) == "certified"
    # A second operator who certifies it too is told on the same page, and nothing changes.
    r = await client.post(
        f"/console/visits/requests/{asked['id']}/certification", data={"csrf": csrf, "reason": "seen again"}
    )
    assert r.status_code == 409
    assert "This request is closed and cannot be changed." in r.text
    assert await pool.fetchval("SELECT count(*) FROM in_person_certifications") == 1

    r = await client.post(
        f"/console/visits/appeals/{appeal['id']}/decision",
        data={"csrf": csrf, "outcome": "rejected", "reason": "the video shows someone else"},
        follow_redirects=False,
    )
    assert r.status_code == 303, r.text
    assert await pool.fetchval("SELECT state FROM appeals WHERE id = $1", appeal["id"]) == "rejected"
    page = await client.get("/console/visits")
    assert "No open request." in page.text
    assert "No open appeal." in page.text

    report = await client.get("/console/ladder")
    assert report.status_code == 200
    row = re.search(r'<th scope="row">110101</th>((?:<td>[^<]*</td>)+)</tr>', report.text)
    assert row is not None, report.text
    # pensioners, by data, by face, assisted, in person, certified, still due, lapsed
    assert re.findall(r"<td>([^<]*)</td>", row.group(1)) == ["1", "0", "1", "0", "1", "1", "0", "0"]
    assert (await client.get("/console/ladder?year=1999")).status_code == 400


async def test_a_persons_page_shows_what_confirmed_them_from_data(
    client: Any, services: Services, pool: asyncpg.Pool, importer: Any, tmp_path: Path
) -> None:
    (person,) = await import_pensioners(importer, pool, tmp_path, 1)
    on = datetime.now(LOCAL_TZ).date()
    feed = tmp_path / "feed.csv"
    feed.write_text(
        "national_id,source,occurred_on,reference\n"
        f"{person.national_id},hospital_visit,{on - timedelta(days=30)},H-1\n"
        f"{person.national_id},pharmacy_purchase,{on - timedelta(days=20)},P-1\n",
        encoding="utf-8",
    )
    await services.evidence.import_file(feed, "system:test")
    assert (await services.evidence.run_pass("system:test")).confirmed == 1

    await console_sign_in(client, "piet", await staff_member(services, "piet", "Piet Operator"))
    await client.post(
        "/console/language", data={"csrf": form_token((await client.get("/console/visits")).text), "locale": "en"}
    )
    page = await client.get(f"/console/persons/{person.id}")
    assert page.status_code == 200
    assert "Confirmed by data" in page.text
    assert "hospital visit" in page.text
    assert "pharmacy purchase" in page.text
    viewed = await pool.fetchval("SELECT count(*) FROM audit_log WHERE action = 'person.evidence_viewed'")
    assert viewed == 1
