"""The operator console over HTTP (the browser tests in tests/e2e drive the same pages in Chromium):
sessions, form tokens, roles, the audited person search, runs, dead letters and the audit log."""

from __future__ import annotations

import re
import uuid
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import pyotp

from app.console.text import label
from app.services import Services
from certification.rules import day_in_china
from core.text import money
from infra import audit
from infra.db import unit_of_work
from tests.conftest import FACES
from tests.factories import (
    applicant,
    bearer,
    concurrent_client,
    console_sign_in,
    flagged_check,
    form_token,
    import_pensioners,
    post_sign_in,
    sign_in,
    staff_member,
    video_frame,
)


async def test_no_session_and_api_tokens_get_no_console_page(
    client: Any, services: Services, pool: asyncpg.Pool, operator_headers: dict[str, str]
) -> None:
    for path in ("/console", "/console/queue", "/console/persons", "/console/audit"):
        r = await client.get(path, follow_redirects=False)
        assert r.status_code == 303, (path, r.status_code)
        assert r.headers["location"].startswith("/console/sign-in?next=")
    # A bearer token is the API's credential, not the console's: neither a cardholder's nor an operator's opens a page.
    tokens = await sign_in(client, pool, "13912345678")
    for headers in (bearer(tokens["access_token"]), operator_headers):
        r = await client.get("/console/queue", headers=headers, follow_redirects=False)
        assert r.status_code == 303
        assert r.headers["location"].startswith("/console/sign-in")
        assert "审核队列" not in r.text
    r = await client.post("/console/checks/" + str(uuid.uuid4()) + "/claim", headers=operator_headers)
    assert r.status_code == 200  # followed to the sign-in page
    assert r.url.path == "/console/sign-in"
    assert await pool.fetchval("SELECT count(*) FROM audit_log WHERE action = 'review.claimed'") == 0


async def test_sign_in_sets_a_strict_http_only_cookie_and_refuses_wrong_codes(
    client: Any, services: Services, pool: asyncpg.Pool
) -> None:
    secret = await staff_member(services, "carol", "Carol Operator")
    page = await client.get("/console/sign-in", headers={"Accept-Language": "en"})
    assert 'for="totp"' in page.text  # every control has its label
    r = await post_sign_in(client, form_token(page.text), "carol", "000000", headers={"Accept-Language": "en"})
    assert r.status_code == 401
    assert "Wrong username, password or authenticator code." in r.text
    assert "console_session" not in r.headers.get("set-cookie", "")
    # A sign-in form from elsewhere (no token of ours) is refused before the password is looked at.
    r = await post_sign_in(client, "forged", "carol", pyotp.TOTP(secret).now())
    assert r.status_code == 403
    page = await client.get("/console/sign-in")
    r = await post_sign_in(
        client, form_token(page.text), "carol", pyotp.TOTP(secret).now(), next="https://evil.example/console"
    )
    assert r.status_code == 303
    assert r.headers["location"] == "/console"  # never off-site
    cookie = next(c for c in r.headers.get_list("set-cookie") if c.startswith("console_session="))
    assert "HttpOnly" in cookie
    assert "samesite=strict" in cookie.lower()
    assert "Path=/console" in cookie
    assert "Secure" not in cookie  # plain HTTP here; over TLS the cookie is Secure
    queue = await client.get("/console/queue")
    assert queue.status_code == 200
    assert queue.headers["cache-control"] == "no-store"
    assert "frame-ancestors 'none'" in queue.headers["content-security-policy"]
    audit = await pool.fetchrow("SELECT details FROM audit_log WHERE action = 'auth.console_sign_in'")
    assert audit["details"] == {"role": "operator", "operator": "carol"}


async def test_posts_need_the_session_form_token(client: Any, services: Services, pool: asyncpg.Pool) -> None:
    secret = await staff_member(services, "dan", "Dan Operator")
    csrf = await console_sign_in(client, "dan", secret)
    r = await client.post("/console/language", data={"locale": "en", "next": "/console/queue"})
    assert r.status_code == 403
    r = await client.post("/console/language", data={"csrf": "x" + csrf, "locale": "en", "next": "/console/queue"})
    assert r.status_code == 403
    assert "页面已过期" in r.text
    r = await client.post(
        "/console/language",
        data={"csrf": csrf, "locale": "en", "next": "/console/queue"},
        headers={"Origin": "https://evil.example"},
    )
    assert r.status_code == 403
    r = await client.post("/console/language", data={"csrf": csrf, "locale": "en", "next": "/console/queue"})
    assert r.status_code == 200
    assert "Review queue" in r.text  # the operator's choice, kept with their account
    assert await pool.fetchval("SELECT locale FROM operators WHERE username = 'dan'") == "en"


async def test_idle_sessions_end_and_sign_out_ends_the_session(
    client: Any, services: Services, pool: asyncpg.Pool
) -> None:
    secret = await staff_member(services, "erin", "Erin Operator")
    csrf = await console_sign_in(client, "erin", secret)
    await pool.execute("UPDATE sessions SET last_seen_at = now() - interval '29 minutes' WHERE platform = 'console'")
    assert (await client.get("/console/queue", follow_redirects=False)).status_code == 200  # and counts as activity
    await pool.execute("UPDATE sessions SET last_seen_at = now() - interval '31 minutes' WHERE platform = 'console'")
    r = await client.get("/console/queue", follow_redirects=False)
    assert r.status_code == 303
    assert await pool.fetchval("SELECT revoke_reason FROM sessions WHERE platform = 'console'") == "idle"
    await pool.execute("UPDATE sessions SET last_seen_at = now() WHERE platform = 'console'")
    assert (await client.get("/console/queue", follow_redirects=False)).status_code == 303  # ended for good

    # A TOTP code signs in once: a person would wait for the next one (up to 30 s); the test forgets the last.
    await pool.execute("UPDATE operators SET totp_last_step = NULL WHERE username = 'erin'")
    csrf = await console_sign_in(client, "erin", secret)
    r = await client.post("/console/sign-out", data={"csrf": csrf}, follow_redirects=False)
    assert r.status_code == 303
    assert (await client.get("/console/queue", follow_redirects=False)).status_code == 303


async def test_roles_see_their_own_pages(client: Any, services: Services, pool: asyncpg.Pool) -> None:
    auditor = await staff_member(services, "frank", "Frank Auditor", "auditor")
    await console_sign_in(client, "frank", auditor)
    assert (await client.get("/console/queue")).status_code == 403
    assert (await client.get("/console/persons")).status_code == 403
    assert (await client.get("/console/notifications")).status_code == 403
    log = await client.get("/console/audit")
    assert log.status_code == 200
    assert "审计链完整" in log.text
    posts = re.findall(r'<form method="post" action="([^"]+)"', log.text)
    assert set(posts) <= {"/console/language", "/console/sign-out"}  # read-only: no form posts but those two

    operator = await staff_member(services, "gina", "Gina Operator")
    await client.post("/console/sign-out", data={"csrf": form_token(log.text)})
    await console_sign_in(client, "gina", operator)
    assert (await client.get("/console/audit")).status_code == 403
    assert (await client.get("/console/notifications")).status_code == 403
    assert (await client.get("/console/runs")).status_code == 200


async def test_a_person_search_is_audited_and_shows_only_masked_numbers(
    client: Any, services: Services, pool: asyncpg.Pool, importer: Any, tmp_path: Path
) -> None:
    [pensioner] = await import_pensioners(importer, pool, tmp_path, 1)
    secret = await staff_member(services, "hana", "Hana Operator")
    csrf = await console_sign_in(client, "hana", secret)

    async def search(q: str) -> Any:
        return await client.post("/console/persons", data={"csrf": csrf, "q": q}, headers={"Accept-Language": "en"})

    r = await search(pensioner.national_id)
    assert r.status_code == 200
    assert pensioner.national_id not in r.text
    masked = pensioner.national_id[:6] + "********" + pensioner.national_id[-4:]
    assert masked in r.text
    person_id = await pool.fetchval("SELECT id FROM persons")
    assert f"/console/persons/{person_id}" in r.text
    card = await pool.fetchval("SELECT card_number FROM cards")
    by_card = await search(card)
    assert f"/console/persons/{person_id}" in by_card.text
    by_phone = await search(pensioner.phone)
    assert f"/console/persons/{person_id}" in by_phone.text
    bad = await search("1101")
    assert bad.status_code == 400
    assert "请输入完整的18位身份证号码" in bad.text  # in the operator's language; never a search on a fragment
    assert 'name="q"' in bad.text
    wrong = await search(card[:-1] + str((int(card[-1]) + 1) % 10))
    assert wrong.status_code == 400
    view = await client.get(f"/console/persons/{person_id}")
    assert view.status_code == 200
    assert pensioner.national_id not in view.text
    assert pensioner.phone not in view.text
    assert card in view.text
    searches = await pool.fetch(
        "SELECT actor, subject, details FROM audit_log WHERE action = 'person.searched' ORDER BY at, chain, seq"
    )
    assert [row["subject"] for row in searches] == [
        f"national_id:{masked}",
        f"card_number:{card}",
        f"phone:{pensioner.phone[:3]}****{pensioner.phone[-4:]}",
    ]
    assert all(row["details"]["operator"] == "hana" for row in searches)
    assert all(pensioner.national_id not in str(row) for row in await pool.fetch("SELECT * FROM audit_log"))
    viewed = await pool.fetchrow("SELECT subject, details FROM audit_log WHERE action = 'person.viewed'")
    assert viewed["subject"] == f"person:{person_id}"
    assert viewed["details"] == {"operator": "hana"}


async def test_bad_input_gets_a_page_in_the_operators_language_never_a_500(
    client: Any, services: Services, pool: asyncpg.Pool
) -> None:
    secret = await staff_member(services, "ivan", "Ivan Operator")
    csrf = await console_sign_in(client, "ivan", secret)
    refusals = {
        ("GET", "/console/no-such-page", None): 404,
        ("GET", "/console/checks/not-a-uuid", None): 404,
        ("GET", "/console/sign-out", None): 405,
        ("GET", "/console/queue?region=%00", None): 400,
        ("GET", "/console/queue?status=passed", None): 400,
        ("GET", f"/console/checks/{uuid.uuid4()}", None): 404,
        ("POST", "/console/language", (("csrf", "令牌"), ("locale", "en"))): 403,
        ("POST", "/console/language", (("csrf", csrf), ("locale", "fr"))): 400,
        (
            "POST",
            f"/console/checks/{uuid.uuid4()}/decision",
            (("csrf", csrf), ("decision", "approve"), ("reason", "ok!")),
        ): 404,
    }
    for (method, path, form), status in refusals.items():
        r = await client.request(method, path, data=dict(form) if form else None)
        assert r.status_code == status, (path, r.status_code, r.text[:300])
        assert r.headers["content-type"].startswith("text/html"), path
        assert "frame-ancestors 'none'" in r.headers["content-security-policy"], path
        assert r.headers["cache-control"] == "no-store", path
        assert 'role="alert"' in r.text, path
        assert "Traceback" not in r.text
    # An operator who signed in again leaves no live session behind.
    first = await pool.fetchval("SELECT id FROM sessions WHERE platform = 'console' AND revoked_at IS NULL")
    # A TOTP code signs in once: a person would wait for the next one (up to 30 s); the test forgets the last.
    await pool.execute("UPDATE operators SET totp_last_step = NULL WHERE username = 'ivan'")
    await console_sign_in(client, "ivan", secret)
    assert await pool.fetchval("SELECT revoke_reason FROM sessions WHERE id = $1", first) == "signed_in_again"
    # After a language change the browser goes back only to a console page.
    csrf = form_token((await client.get("/console/queue")).text)
    for target in (
        "/console/../v1/health/ready",
        "//evil.example/console",
        "https://evil.example/console",
        "/consolex",
    ):
        r = await client.post(
            "/console/language", data={"csrf": csrf, "locale": "zh-CN", "next": target}, follow_redirects=False
        )
        assert r.headers["location"] == "/console", target
    await client.post("/console/sign-out", data={"csrf": csrf})
    await console_sign_in(client, "nora", await staff_member(services, "nora", "Nora Auditor", "auditor"))
    assert (await client.get("/console/audit?before=0/99999999999999999999")).status_code == 400  # beyond int64
    assert (await client.get("/console/audit?before=99999/1")).status_code == 400  # beyond smallint
    assert (await client.get("/console/audit?before=1")).status_code == 400  # a row is chain/seq
    newest = await client.get("/console/audit")
    older = await client.get("/console/audit?before=0/1")
    assert older.status_code == 200
    assert 'id="chain"' in newest.text  # the chain checked with every page, from the newest checkpoint
    assert 'id="chain"' in older.text
    viewed = await pool.fetch("SELECT details FROM audit_log WHERE action = 'audit.viewed' ORDER BY at, chain, seq")
    assert [("rows" in v["details"], v["details"].get("before")) for v in viewed[-2:]] == [(True, None), (True, "0/1")]


async def test_runs_show_progress_and_totals_and_an_administrator_sends_a_dead_letter_again(
    client: Any, services: Services, pool: asyncpg.Pool, importer: Any, tmp_path: Path
) -> None:
    paid, _ = await import_pensioners(importer, pool, tmp_path, 2)
    await pool.execute("UPDATE persons SET certified_until = '2027-12-31' WHERE id = $1", paid.id)
    run = await services.disbursements.run(date(2026, 12, 1), "system:test")
    # The run's announcement wrote notices; one push is made a dead letter.
    await services.notifications.announce_run(run["id"])
    await services.notifications.register_device(paid.id, None, "token-1", "android", "en", "1.0")
    notice = await pool.fetchval("SELECT id FROM notifications WHERE person_id = $1", paid.id)
    dead = await pool.fetchval(
        """INSERT INTO deliveries (person_id, notification_id, channel, device_id, state, attempts, last_error,
                                   next_attempt_at)
           SELECT person_id, $1, 'push', id, 'dead', 6, 'UNAVAILABLE', now() FROM devices RETURNING id""",
        notice,
    )

    operator = await staff_member(services, "jane", "Jane Operator")
    csrf = await console_sign_in(client, "jane", operator)
    runs = await client.get("/console/runs")
    assert f"/console/runs/{run['id']}" in runs.text
    assert 'value="2"' in runs.text  # progress: 2 of 2
    totals = await client.get(f"/console/runs/{run['id']}")
    assert (run["paid_count"], run["withheld_count"]) == (1, 1)
    for row, count, fen in (
        ("paid", 1, run["paid_fen"]),
        ("withheld", 1, run["withheld_fen"]),
        ("back_pay", 0, 0),
        ("returned", 0, 0),
    ):  # each row its own count and amount, where paid and withheld happen to be the same money
        assert (
            f'<th scope="row">{label(row, "zh-CN")}</th><td>{count}</td><td>{money(fen, "zh-CN")}</td>' in totals.text
        )
    assert (await client.get("/console/notifications")).status_code == 403
    await client.post("/console/sign-out", data={"csrf": csrf})

    admin = await staff_member(services, "kim", "Kim Admin", "admin")
    csrf = await console_sign_in(client, "kim", admin)
    letters = await client.get("/console/notifications")
    assert f"/console/notifications/{dead}/retry" in letters.text
    assert "UNAVAILABLE" in letters.text
    r = await client.post(f"/console/notifications/{dead}/retry", data={"csrf": csrf})
    assert r.status_code == 200
    assert f"/console/notifications/{dead}/retry" not in r.text
    assert await pool.fetchval("SELECT state FROM deliveries WHERE id = $1", dead) == "pending"
    retried = await pool.fetchrow("SELECT actor, subject FROM audit_log WHERE action = 'notification.retried'")
    assert retried["subject"] == f"delivery:{dead}"
    r = await client.post(f"/console/notifications/{dead}/retry", data={"csrf": csrf})
    assert r.status_code == 409  # not dead any more: said, not done twice


async def test_a_decision_needs_a_reason_of_3_to_1000_characters(
    client: Any, services: Services, pool: asyncpg.Pool, importer: Any, tmp_path: Path
) -> None:
    who = await applicant(client, pool, importer, tmp_path)
    check = await flagged_check(services, pool, who.person.phone)
    csrf = await console_sign_in(client, "nia", await staff_member(services, "nia", "Nia Operator"))
    assert (await client.post(f"/console/checks/{check}/claim", data={"csrf": csrf})).status_code == 200
    for reason, said in (("  a  ", "请填写理由。"), ("x" * 1001, "理由不能超过1000个字。")):
        r = await client.post(
            f"/console/checks/{check}/decision", data={"csrf": csrf, "decision": "approve", "reason": reason}
        )
        assert r.status_code == 400, reason[:10]
        assert 'name="decision"' in r.text  # the check page again, to correct the reason
        assert said in r.text
        assert re.search(r'id="decision-error">([^<]*)<', r.text)[1] == said  # type: ignore[index]
    assert await pool.fetchval("SELECT status FROM certification_checks WHERE id = $1", uuid.UUID(check)) == (
        "needs_review"
    )


async def test_claim_next_hands_each_operator_a_different_check_and_lets_go_of_the_last(
    client: Any, services: Services, pool: asyncpg.Pool, importer: Any, tmp_path: Path
) -> None:
    who = await applicant(client, pool, importer, tmp_path)
    first, second = [await flagged_check(services, pool, who.person.phone) for _ in range(2)]
    lena, mo = await staff_member(services, "lena", "Lena Operator"), await staff_member(services, "mo", "Mo Operator")
    csrf = await console_sign_in(client, "lena", lena)
    r = await client.post("/console/queue/next", data={"csrf": csrf}, follow_redirects=False)
    assert r.headers["location"] == f"/console/checks/{first}"  # the oldest
    page = await client.get(r.headers["location"])
    assert 'name="decision"' in page.text
    region = await pool.fetchval("SELECT region FROM persons")
    queue = await client.get("/console/queue")
    assert f'<option value="{region}"' in queue.text
    assert '<option value="match_uncertain"' in queue.text  # filters from the waiting checks themselves

    async with concurrent_client(services.settings) as other:
        other_csrf = await console_sign_in(other, "mo", mo)
        r = await other.post("/console/queue/next", data={"csrf": other_csrf}, follow_redirects=False)
        assert r.headers["location"] == f"/console/checks/{second}"  # the one Lena does not hold
        r = await other.post("/console/queue/next", data={"csrf": other_csrf}, follow_redirects=False)
        assert r.headers["location"] == f"/console/checks/{second}"  # nothing else free: keeps its own
        r = await other.post(
            "/console/queue/next", data={"csrf": other_csrf, "reason": "replayed_media"}, follow_redirects=False
        )
        assert r.headers["location"] == "/console/queue?reason=replayed_media&note=queue_empty"
    holders = await pool.fetch("SELECT id, claimed_by IS NOT NULL AS held FROM certification_checks ORDER BY id")
    assert {str(row["id"]): row["held"] for row in holders} == {first: True, second: False}


async def test_a_check_whose_video_is_deleted_still_shows_the_reference_photo(
    client: Any, services: Services, pool: asyncpg.Pool, importer: Any, tmp_path: Path
) -> None:
    photo = video_frame(FACES / "video" / "live_blink__eye_blink.mp4", 10, tmp_path)
    who = await applicant(client, pool, importer, tmp_path, reference_photo=photo)
    check = await flagged_check(services, pool, who.person.phone)
    await pool.execute("UPDATE certification_checks SET media_purged_at = now() WHERE id = $1", uuid.UUID(check))
    csrf = await console_sign_in(client, "pia", await staff_member(services, "pia", "Pia Operator"))

    page = await client.post(f"/console/checks/{check}/claim", data={"csrf": csrf})

    assert page.status_code == 200
    assert label("media_purged", "zh-CN") in page.text
    # The enrolment photo is kept.
    assert re.search(r'<figure class="reference">\s*<button [^>]*><img src="http', page.text)
    assert 'class="frame"' not in page.text


def _audit_ids(page: str) -> list[str]:
    """The rows a page shows, as it names them: chain/seq."""
    return re.findall(r"<tr>\s*<td>(\d+/\d+)</td>", page)


_ROW = "chain::text || '/' || seq AS id"
_NEWEST_FIRST = "ORDER BY at DESC, chain DESC, seq DESC"


async def test_the_audit_log_filters_by_actor_action_subject_and_day(
    client: Any, services: Services, pool: asyncpg.Pool
) -> None:
    async with unit_of_work(pool) as uow:  # one batch: 55 rows of the same instant, told apart by seq
        await audit.record_many(uow, "system:a", "test.many", [("thing:many", {"n": n}) for n in range(55)])
    for n in range(3):
        async with unit_of_work(pool) as uow:
            await audit.record(uow, "system:b", "test.other", "person:x", {"n": n})
    async with unit_of_work(pool) as uow:
        await audit.record(uow, "system:a", "test.other", "person:y", {"long": "长" * 300})
    many = [
        r["id"] for r in await pool.fetch(f"SELECT {_ROW} FROM audit_log WHERE action = 'test.many' {_NEWEST_FIRST}")
    ]
    await console_sign_in(client, "olga", await staff_member(services, "olga", "Olga Auditor", "auditor"))

    first = await client.get("/console/audit", params={"action": "test.many"})
    assert _audit_ids(first.text) == many[:50]  # newest first
    older = re.search(r'href="(/console/audit\?[^"]*before=[^"]*)"', first.text)
    assert older is not None
    assert "action=test.many" in older.group(1)  # the next page keeps the filter
    assert _audit_ids((await client.get(older.group(1).replace("&amp;", "&"))).text) == many[50:]

    def ids(rows: list[asyncpg.Record]) -> list[str]:
        return [r["id"] for r in rows]

    by_b = await pool.fetch(f"SELECT {_ROW} FROM audit_log WHERE actor = 'system:b' {_NEWEST_FIRST}")
    assert _audit_ids((await client.get("/console/audit", params={"actor": "system:b"})).text) == ids(by_b)
    one = await pool.fetchval(f"SELECT {_ROW} FROM audit_log WHERE subject = 'person:y'")
    for params in ({"subject": "person:y"}, {"actor": "system:a", "action": "test.other"}):
        page = await client.get("/console/audit", params=params)
        assert _audit_ids(page.text) == [one], params
    assert "<dd>" + "长" * 300 + "</dd>" in page.text  # the whole value, to wrap in its cell

    today = day_in_china(datetime.now(UTC))
    other = await pool.fetch(f"SELECT {_ROW} FROM audit_log WHERE action = 'test.other' {_NEWEST_FIRST}")
    days = {"action": "test.other", "from": today.isoformat(), "to": today.isoformat()}
    assert _audit_ids((await client.get("/console/audit", params=days)).text) == ids(other)
    before = {"to": (today - timedelta(days=1)).isoformat()}
    page = await client.get("/console/audit", params=before)
    assert (_audit_ids(page.text), label("audit_none", "zh-CN") in page.text) == ([], True)
    assert (await client.get("/console/audit", params={"from": "2026-13-01"})).status_code == 400

    # Each look is audited, with what it was narrowed to.
    viewed = await pool.fetch("SELECT details FROM audit_log WHERE action = 'audit.viewed' ORDER BY at, chain, seq")
    assert len(viewed) == 8  # the home page after signing in, and the seven above
    assert {k: viewed[-2]["details"][k] for k in days} == days
    assert viewed[-1]["details"]["to"] == before["to"]
    assert all(v["details"]["operator"] == "olga" and "rows" in v["details"] for v in viewed)


async def test_the_audit_page_is_labelled_for_assistive_technology(client: Any, services: Services) -> None:
    await console_sign_in(client, "pat", await staff_member(services, "pat", "Pat Auditor", "auditor"))
    page = (await client.get("/console/audit")).text
    form = page[page.index('<form method="get" action="/console/audit"') :]
    form = form[: form.index("</form>")]
    for control in re.findall(r'<(?:input|select) id="([^"]+)"', form):
        assert f'<label for="{control}">' in form, control
    assert '<caption id="audit-caption">' in page
    # A table that may scroll sideways is a region the keyboard can reach.
    assert 'role="region" aria-labelledby="audit-caption" tabindex="0"' in page
    assert all(th.startswith('<th scope="col">') for th in re.findall(r"<th(?: [^>]*)?>", page))


async def test_the_queue_counts_what_waits_and_a_decision_opens_the_next_check_of_the_same_region(
    client: Any, services: Services, pool: asyncpg.Pool, importer: Any, tmp_path: Path
) -> None:
    people = await import_pensioners(importer, pool, tmp_path, 4)
    await pool.execute("UPDATE persons SET region = '310101' WHERE id = $1", people[2].id)
    checks = [uuid.UUID(await flagged_check(services, pool, p.person.phone)) for p in people]
    for check, hours in zip(checks, (30, 3, 2, 1), strict=True):
        await pool.execute(
            "UPDATE certification_checks SET submitted_at = now() - make_interval(hours => $2) WHERE id = $1",
            check,
            hours,
        )
    await staff_member(services, "vic", "Vic Operator")
    await pool.execute(
        """UPDATE certification_checks SET claimed_by = (SELECT id FROM operators WHERE username = 'vic'),
                  claimed_until = now() + interval '10 minutes' WHERE id = $1""",
        checks[1],
    )
    csrf = await console_sign_in(client, "uma", await staff_member(services, "uma", "Uma Operator"))

    def card(page: str, check: uuid.UUID) -> str:
        found = re.search(rf'data-check="{check}">(.*?)</li>\s*(?:<li class="queued|</ol>)', page, re.S)
        assert found is not None, check
        return found.group(1)

    queue = (await client.get("/console/queue")).text
    counts = {name: re.search(rf'id="{name}-count"[^>]*>([\d,]+)<', queue) for name in ("waiting", "late", "mine")}
    assert {name: m.group(1) for name, m in counts.items() if m} == {"waiting": "4", "late": "1", "mine": "0"}
    assert "已超时" in card(queue, checks[0])
    assert "Vic Operator 正在处理" in card(queue, checks[1])
    assert "<button" not in card(queue, checks[1])  # held by a colleague: nothing to press
    assert people[0].person.name in card(queue, checks[0])

    # Claimed from the queue filtered by region, the check carries the filter; "mine" shows it alone.
    r = await client.post(f"/console/checks/{checks[0]}/claim", data={"csrf": csrf, "region": "110101"})
    assert r.status_code == 200
    assert 'name="queue_region" value="110101"' in r.text
    mine = (await client.get("/console/queue?mine=true")).text
    assert re.findall(r'data-check="([^"]+)"', mine) == [str(checks[0])]
    assert f"/console/checks/{checks[0]}?reason=&amp;region=" in mine  # "Continue", not "Claim"

    # Deciding opens the next check of that region nobody holds (not the older one of another region).
    r = await client.post(
        f"/console/checks/{checks[0]}/decision",
        data={"csrf": csrf, "decision": "reject", "reason": "not the same person", "queue_region": "110101"},
        follow_redirects=False,
    )
    assert r.status_code == 303
    assert r.headers["location"] == f"/console/checks/{checks[3]}?region=110101&note=decided_next"
    page = await client.get(r.headers["location"])
    assert label("decided_next", "zh-CN") in page.text
    r = await client.post(
        f"/console/checks/{checks[3]}/decision",
        data={"csrf": csrf, "decision": "approve", "reason": "same person", "queue_region": "110101"},
        follow_redirects=False,
    )
    assert r.headers["location"] == "/console/queue?region=110101&note=decided"
    statuses = await pool.fetch("SELECT id, status FROM certification_checks WHERE id = ANY($1)", checks)
    assert {row["id"]: row["status"] for row in statuses} == {
        checks[0]: "failed",
        checks[1]: "needs_review",
        checks[2]: "needs_review",
        checks[3]: "passed",
    }
