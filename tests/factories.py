"""Test data: valid national IDs and persons, the real sign-in flow (code read from the dev SMS table),
and the API served as a real process."""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import re
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import asyncpg
import av
import httpx
import pyotp
from litestar.testing import AsyncTestClient

from app.asgi import create_app
from app.cli import main
from app.jobs import run_worker
from app.services import Services
from certification.service import settle
from core.national_id import check_character
from infra.config import Settings, settings_env
from infra.db import unit_of_work
from liveness.model import Analysis, Outcome, Reason

_seq = itertools.count(1)
ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class SamplePerson:
    national_id: str
    name: str
    birth_date: date
    phone: str
    region: str = "110101"
    locale: str = "zh-CN"

    def row(self, **overrides: Any) -> dict[str, Any]:
        row: dict[str, Any] = {
            "national_id": self.national_id,
            "name": self.name,
            "birth_date": self.birth_date.isoformat(),
            "phone": self.phone,
            "region": self.region,
            "locale": self.locale,
            "pension": {"monthly_amount": 350000, "bank_account": "6222020200112233445", "start_month": "2010-01"},
        }
        row.update(overrides)
        return row


def sample_person(n: int | None = None, *, locale: str = "zh-CN") -> SamplePerson:
    n = next(_seq) if n is None else n
    birth = date(1940 + n % 30, 1 + n % 12, 1 + n % 28)
    first17 = f"110101{birth:%Y%m%d}{n % 1000:03d}"
    return SamplePerson(
        national_id=first17 + check_character(first17),
        name=f"测试{n}",
        birth_date=birth,
        phone=f"139{n:08d}",
        locale=locale,
    )


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


async def last_code(pool: asyncpg.Pool, phone: str) -> str:
    body = await pool.fetchval("SELECT body FROM dev_sms_messages WHERE phone = $1 ORDER BY id DESC LIMIT 1", phone)
    assert body, f"no SMS recorded for {phone}"
    match = re.search(r"(\d{6})", body)
    assert match
    return match.group(1)


async def sign_in(
    client: AsyncTestClient[Any], pool: asyncpg.Pool, phone: str, device_id: str = "device-0001"
) -> dict[str, Any]:
    r = await client.post("/v1/auth/otp", json={"phone": phone})
    assert r.status_code == 202, r.text
    code = await last_code(pool, phone)
    r = await client.post(
        "/v1/auth/otp/verify", json={"phone": phone, "code": code, "device_id": device_id, "platform": "android"}
    )
    assert r.status_code == 200, r.text
    tokens: dict[str, Any] = r.json()
    return tokens


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def insert_check(
    pool: asyncpg.Pool,
    phone: str,
    status: str,
    *,
    worker_outcome: str | None = None,
    days_ago: int = 0,
    media_keys: tuple[str, ...] = ("uploads/test/video",),
    review_frame_keys: tuple[str, ...] = (),
) -> uuid.UUID:
    """A check (and its challenge) in `status`, analysed and decided by the worker `days_ago` days ago
    when that status is final, straight into the tables."""
    check_id: uuid.UUID = await pool.fetchval(
        """WITH p AS (SELECT id FROM persons WHERE phone = $1),
                c AS (INSERT INTO certification_challenges (id, person_id, actions, upload_prefix, expires_at)
                      SELECT gen_random_uuid(), p.id, '{blink}', 'uploads/test/', now() FROM p RETURNING id, person_id)
           INSERT INTO certification_checks (person_id, challenge_id, actions, media_kind, media_keys, media_bytes,
                                             status, worker_outcome, review_frame_keys, analysed_at, decided_at,
                                             decided_by)
           SELECT person_id, id, '{blink}', 'video', $2, 1, $3, $6, $4, t.at, CASE WHEN $7 THEN t.at END,
                  CASE WHEN $7 THEN 'worker' END
           FROM c, (SELECT now() - make_interval(days => $5) AS at) t RETURNING id""",
        phone,
        list(media_keys),
        status,
        list(review_frame_keys),
        days_ago,
        worker_outcome,
        status in ("passed", "failed", "retry"),
    )
    return check_id


async def record_passed_check(pool: asyncpg.Pool, phone: str) -> None:
    """A face check passed today, with its effects applied as the worker applies them (eligibility)."""
    check_id = await insert_check(pool, phone, "passed", worker_outcome="passed")
    async with unit_of_work(pool) as uow:
        person_id = await uow.fetchval("SELECT person_id FROM certification_checks WHERE id = $1", check_id)
        await settle(uow, person_id, check_id, "passed", [], "worker")


@dataclass(frozen=True)
class Applicant:
    """An imported pensioner, signed in, identity linked, ready to certify."""

    person: SamplePerson
    headers: dict[str, str]


async def applicant(
    client: AsyncTestClient[Any],
    pool: asyncpg.Pool,
    importer: Any,
    folder: Path,
    *,
    reference_photo: Path | None = None,
    consent: bool = True,
    locale: str = "zh-CN",
) -> Applicant:
    person = sample_person(locale=locale)
    row = person.row(reference_photo=str(reference_photo)) if reference_photo else person.row()
    report = await importer.import_file(write_jsonl(folder / f"{person.phone}.jsonl", [row]))
    assert report.created == 1, report.errors
    tokens = await sign_in(client, pool, person.phone)
    headers = bearer(tokens["access_token"])
    # Activation links the account to the person, then asks for the face check first.
    r = await client.post("/v1/card/activation", json={"national_id": person.national_id}, headers=headers)
    assert r.status_code == 409, r.text
    assert r.json()["code"] == "certification_required"
    if consent:
        r = await client.post("/v1/consents/biometric", headers=headers)
        assert r.status_code == 200, r.text
    return Applicant(person, headers)


async def submit_video(
    client: AsyncTestClient[Any], headers: dict[str, str], video: bytes, *, name: str = "selfie.mp4"
) -> tuple[dict[str, Any], Any]:
    """A new challenge and a multipart submission of `video`; (challenge, response)."""
    r = await client.post("/v1/certifications/challenges", headers=headers)
    assert r.status_code == 201, r.text
    challenge: dict[str, Any] = r.json()
    r = await client.post(
        f"/v1/certifications/challenges/{challenge['id']}/submission",
        files={"video": (name, video, "video/mp4")},
        headers=headers,
    )
    return challenge, r


async def operator_headers_for(
    services: Services, username: str, display_name: str, role: str = "operator"
) -> dict[str, str]:
    """A signed-in member of staff (support token: no password round trip, which the auth tests cover)."""
    await staff_member(services, username, display_name, role)
    pair = await services.auth.support_token(operator=username)
    return {"Authorization": f"Bearer {pair.access_token}"}


@asynccontextmanager
async def concurrent_client(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    """The app on this event loop behind httpx's ASGI transport, so that gathered requests overlap.
    (Litestar's AsyncTestClient runs each request to its end in a portal thread, blocking the loop:
    its requests never overlap.)"""
    app = create_app(settings)
    async with (
        app.lifespan(),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://testserver.local") as client,
    ):
        yield client


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@contextmanager
def serving(
    settings: Settings, workers: int = 2, *, ready_within: float = 60, env: dict[str, str] | None = None
) -> Iterator[str]:
    """`python -m app.cli serve` (granian, `workers` processes) on a free port with this test's settings
    and `env`; yields its base URL once /health/ready answers 200, and stops it after. Its stderr goes to
    a file in a temporary folder, quoted in the assertion when it exits or is not ready in time."""
    port = free_port()
    env = {**os.environ, **settings_env(settings), **(env or {}), "API_PORT": str(port), "API_WORKERS": str(workers)}
    base = f"http://127.0.0.1:{port}"
    with tempfile.TemporaryDirectory(prefix="socialcard-serve-") as folder:
        log_path = Path(folder) / "serve.stderr"
        with log_path.open("wb") as stderr:  # the child has its own copy of the descriptor
            process = subprocess.Popen(
                [sys.executable, "-m", "app.cli", "serve"],
                env=env,
                cwd=ROOT,
                stdout=subprocess.DEVNULL,
                stderr=stderr,
            )

        def log() -> str:  # its start (the error; RUST_BACKTRACE=1 appends a long trace) and its end
            text = log_path.read_text(encoding="utf-8", errors="replace")
            return (text if len(text) <= 8000 else f"{text[:3000]}\n[...]\n{text[-5000:]}") or "(stderr empty)"

        deadline = time.monotonic() + ready_within
        try:
            while True:
                try:
                    if httpx.get(f"{base}/health/ready", timeout=1).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                assert process.poll() is None, f"the API exited at start ({process.returncode}):\n{log()}"
                assert time.monotonic() < deadline, f"the API was not ready within {ready_within:g} s:\n{log()}"
                time.sleep(0.2)
            yield base
        finally:
            process.terminate()
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()  # not left running past the test (and holding the temporary folder's file)
                process.wait(10)
                raise


def problem_code(r: Any) -> str:
    """The `code` of a problem+json answer (and that it is one)."""
    assert r.headers["content-type"].startswith("application/problem+json"), r.text
    code: str = r.json()["code"]
    return code


def run_cli(settings: Settings, *argv: str) -> int:
    """`socialcard …argv` in this process, configured for the test's database and bucket (run it in a thread)."""
    saved = dict(os.environ)
    os.environ.update(settings_env(settings))
    try:
        return main(list(argv))
    finally:
        os.environ.clear()
        os.environ.update(saved)


async def person_id_of(pool: asyncpg.Pool, phone: str) -> uuid.UUID:
    person_id: uuid.UUID = await pool.fetchval("SELECT id FROM persons WHERE phone = $1", phone)
    return person_id


@dataclass(frozen=True)
class Pensioner:
    id: uuid.UUID
    person: SamplePerson

    @property
    def phone(self) -> str:
        return self.person.phone

    @property
    def national_id(self) -> str:
        return self.person.national_id


async def import_pensioners(
    importer: Any, pool: asyncpg.Pool, folder: Path, count: int, *, locale: str = "zh-CN"
) -> list[Pensioner]:
    """`count` imported pensioners (350000 fen a month since 2010), none signed in."""
    people = [sample_person(locale=locale) for _ in range(count)]
    report = await importer.import_file(write_jsonl(folder / f"people-{uuid.uuid4()}.jsonl", [p.row() for p in people]))
    assert report.created == count, report.errors
    rows = await pool.fetch("SELECT id, phone FROM persons WHERE phone = ANY($1::text[])", [p.phone for p in people])
    ids = {r["phone"]: r["id"] for r in rows}
    return [Pensioner(ids[p.phone], p) for p in people]


async def activated_cardholder(
    client: AsyncTestClient[Any], pool: asyncpg.Pool, importer: Any, folder: Path
) -> dict[str, Any]:
    """An imported person, signed in on a device, certified, with an activated card."""
    person = sample_person()
    report = await importer.import_file(write_jsonl(folder / f"{person.phone}.jsonl", [person.row()]))
    assert report.created == 1, report.errors
    tokens = await sign_in(client, pool, person.phone)
    await record_passed_check(pool, person.phone)
    headers = bearer(tokens["access_token"])
    r = await client.post("/v1/card/activation", json={"national_id": person.national_id}, headers=headers)
    assert r.status_code == 200, r.text
    return {"person": person, "tokens": tokens, "headers": headers, "card": r.json()}


async def mint_qr(client: Any, headers: dict[str, str]) -> str:
    """A QR token for the cardholder signed in with `headers` (no SVG)."""
    r = await client.post("/v1/card/qr?svg=false", headers=headers)
    assert r.status_code == 201, r.text
    token: str = r.json()["token"]
    return token


async def post_charge(
    client: Any,
    terminal: dict[str, str],
    token: str,
    amount_fen: int,
    key: str | None = None,
    description: str = "门诊西药费",
) -> Any:
    """POST /v1/terminal/charges with an Idempotency-Key (a fresh one unless given)."""
    headers = {**terminal, "Idempotency-Key": key or uuid.uuid4().hex}
    return await client.post(
        "/v1/terminal/charges",
        json={"qr_token": token, "amount_fen": amount_fen, "description": description},
        headers=headers,
    )


_CSRF = re.compile(r'name="csrf" value="([^"]+)"')


def form_token(html: str) -> str:
    """The form token a console page carries in its forms."""
    found = _CSRF.search(html)
    assert found, "the page has no form token"
    return found.group(1)


async def staff_member(services: Services, username: str, display_name: str, role: str = "operator") -> str:
    """A member of staff with a password (`correct horse battery`); returns their TOTP secret."""
    return await services.auth.create_operator(username, display_name, role, "correct horse battery")


async def post_sign_in(
    client: Any, csrf: str, username: str, totp: str, *, headers: dict[str, str] | None = None, **fields: str
) -> Any:
    """The console's sign-in form as a browser posts it (password `correct horse battery`)."""
    return await client.post(
        "/console/sign-in",
        data={"csrf": csrf, "username": username, "password": "correct horse battery", "totp": totp, **fields},
        headers=headers,
        follow_redirects=False,
    )


async def console_sign_in(client: Any, username: str, totp_secret: str) -> str:
    """Sign in to the console through its form, as a browser does; returns the session's form token."""
    page = await client.get("/console/sign-in")
    assert page.status_code == 200, page.text
    r = await post_sign_in(client, form_token(page.text), username, pyotp.TOTP(totp_secret).now())
    assert r.status_code == 303, r.text
    home = await client.get(r.headers["location"])
    assert home.status_code == 200, home.text
    return form_token(home.text)


def video_frame(video: Path, index: int, folder: Path) -> Path:
    """Frame `index` of a video as a JPEG file (a reference photo taken from the clip itself)."""
    with av.open(str(video)) as container:
        for i, frame in enumerate(container.decode(video=0)):
            if i == index:
                path = folder / f"{video.stem}-{index}.jpg"
                frame.to_image().save(path, "JPEG", quality=92)
                return path
    raise AssertionError(f"{video} has fewer than {index + 1} frames")


async def certify(
    client: Any, pool: asyncpg.Pool, who: Applicant, actions: list[str] | None, video: bytes
) -> dict[str, Any]:
    """Ask for a challenge, fix its actions (the draw is random), submit, run the worker, read the check."""
    r = await client.post("/v1/certifications/challenges", headers=who.headers)
    assert r.status_code == 201, r.text
    challenge = r.json()
    if actions is not None:
        await pool.execute(
            "UPDATE certification_challenges SET actions = $2 WHERE id = $1", uuid.UUID(challenge["id"]), actions
        )
    r = await client.post(
        f"/v1/certifications/challenges/{challenge['id']}/submission",
        files={"video": ("selfie.mp4", video, "video/mp4")},
        headers=who.headers,
    )
    assert r.status_code == 202, r.text
    return await finished(client, pool, who, r.json()["check_id"])


async def finished(client: Any, pool: asyncpg.Pool, who: Applicant, check_id: str) -> dict[str, Any]:
    settings = client.app.state.services.settings
    await asyncio.wait_for(run_worker(settings, drain=True), timeout=180)
    r = await client.get(f"/v1/certifications/checks/{check_id}", headers=who.headers)
    assert r.status_code == 200, r.text
    check: dict[str, Any] = r.json()
    row = await pool.fetchrow(
        "SELECT scores, worker_outcome FROM certification_checks WHERE id = $1", uuid.UUID(check_id)
    )
    check["scores"], check["worker_outcome"] = row["scores"], row["worker_outcome"]
    return check


async def flagged_check(services: Services, pool: asyncpg.Pool, phone: str) -> str:
    """A check recorded by the worker's own path as needing a person (an uncertain match)."""
    check_id = await insert_check(pool, phone, "queued")
    item = await services.certification.start_analysis(check_id)
    assert item is not None
    uncertain = Analysis(
        outcome=Outcome.NEEDS_REVIEW, reasons=(Reason.MATCH_UNCERTAIN,), scores={"match_distance": 0.52}
    )
    assert await services.certification.record_analysis(item, uncertain, []) == "needs_review"
    assert await services.certification.record_analysis(item, uncertain, []) is None  # written once
    return str(check_id)


async def until_waiting_on_a_lock(pool: asyncpg.Pool) -> None:
    """Returns once some session of this database waits on a lock; fails after 5 s."""
    for _ in range(250):
        if await pool.fetchval(
            "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND datname = current_database()"
        ):
            return
        await asyncio.sleep(0.02)
    raise AssertionError("nothing came to wait on a lock")


async def recover_card(client: Any, pool: asyncpg.Pool, phone: str, headers: dict[str, str]) -> Any:
    """Cancel a loss report as the app does once a face check passed (or an operator vouched) since it:
    a new recovery code sent to the registered phone, then that code; the answer to the second step."""
    r = await client.post("/v1/card/recovery/code", headers=headers)
    assert r.status_code == 202, r.text
    return await client.post("/v1/card/recovery", json={"code": await last_code(pool, phone)}, headers=headers)
