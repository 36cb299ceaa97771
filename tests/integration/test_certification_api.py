"""The cardholder's certification flow over HTTP, up to the queue (the worker is tested elsewhere):
consent, challenges, both upload paths against the real S3 server, and every bad upload."""

from __future__ import annotations

import io
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from PIL import Image

from infra.config import Settings
from infra.storage import ObjectStorage
from tests.conftest import FACES
from tests.factories import applicant, insert_check, submit_video

VIDEO = FACES / "video" / "live_blink__eye_blink.mp4"
needs_faces = pytest.mark.skipif(not FACES.exists(), reason="../shared/faces is not beside this clone")


async def test_challenge_is_random_distinct_actions_with_both_upload_paths(
    client: Any, pool: asyncpg.Pool, importer: Any, tmp_path: Path
) -> None:
    who = await applicant(client, pool, importer, tmp_path)
    seen = set()
    for _ in range(6):
        r = await client.post("/v1/certifications/challenges", headers=who.headers)
        assert r.status_code == 201, r.text
        body = r.json()
        actions = body["actions"]
        assert 2 <= len(actions) <= 3
        assert len(set(actions)) == len(actions)
        assert set(actions) <= {"blink", "turn_left", "turn_right", "open_mouth"}
        seen.add(tuple(actions))
        post = body["upload"]["presigned_post"]
        assert post["key_prefix"].endswith(f"/{body['id']}/")
        assert post["max_bytes"] == 20 * 1024 * 1024
        assert body["upload"]["direct"]["url"].endswith(f"/v1/certifications/challenges/{body['id']}/submission")
    assert len(seen) > 1  # random, not a fixed script


async def test_policy_is_configurable(
    embedded: Any, settings: Settings, pool: asyncpg.Pool, importer: Any, tmp_path: Path
) -> None:
    from litestar.testing import AsyncTestClient

    from app.asgi import create_app
    from infra.config import load_settings, settings_env

    env = {
        **settings_env(settings),
        "CHALLENGE_ACTIONS": "blink",
        "CHALLENGE_MIN_ACTIONS": "1",
        "CHALLENGE_MAX_ACTIONS": "1",
    }
    async with AsyncTestClient(create_app(load_settings(env))) as assisted:
        who = await applicant(assisted, pool, importer, tmp_path)
        r = await assisted.post("/v1/certifications/challenges", headers=who.headers)
        assert r.json()["actions"] == ["blink"]


@needs_faces
async def test_consent_is_required_before_a_submission(
    client: Any, pool: asyncpg.Pool, importer: Any, tmp_path: Path
) -> None:
    who = await applicant(client, pool, importer, tmp_path, consent=False, locale="en")
    _, r = await submit_video(client, who.headers, VIDEO.read_bytes())
    assert r.status_code == 403
    assert r.json()["code"] == "consent_required"
    assert r.headers["content-type"].startswith("application/problem+json")
    assert await pool.fetchval("SELECT count(*) FROM certification_checks") == 0
    # Given, then withdrawn: refused again.
    assert (await client.post("/v1/consents/biometric", headers=who.headers)).status_code == 200
    assert (await client.delete("/v1/consents/biometric", headers=who.headers)).status_code == 204
    _, r = await submit_video(client, who.headers, VIDEO.read_bytes())
    assert r.status_code == 403
    actions = await pool.fetch("SELECT action FROM audit_log WHERE action LIKE 'consent.%' ORDER BY at, chain, seq")
    assert [a["action"] for a in actions] == ["consent.biometric_granted", "consent.biometric_withdrawn"]


@needs_faces
async def test_submission_queues_a_check_once_per_challenge(
    client: Any, pool: asyncpg.Pool, importer: Any, tmp_path: Path
) -> None:
    who = await applicant(client, pool, importer, tmp_path)
    challenge, r = await submit_video(client, who.headers, VIDEO.read_bytes())
    assert r.status_code == 202, r.text
    check_id = r.json()["check_id"]
    assert r.json()["status"] == "queued"
    assert await pool.fetchval("SELECT count(*) FROM pgqueuer WHERE entrypoint = 'liveness.certify'") == 1
    # The job names the check's person: the worker reads and writes that person's shard only.
    person_id = await pool.fetchval("SELECT person_id FROM certification_checks WHERE id = $1", uuid.UUID(check_id))
    payload = await pool.fetchval("SELECT payload FROM pgqueuer WHERE entrypoint = 'liveness.certify'")
    assert payload == f"{person_id} {check_id}".encode()
    r = await client.get(f"/v1/certifications/checks/{check_id}", headers=who.headers)
    assert r.json()["status"] == "queued"
    assert r.json()["actions"] == challenge["actions"]
    # Single use: the same challenge again is refused and queues nothing.
    r = await client.post(
        f"/v1/certifications/challenges/{challenge['id']}/submission",
        files={"video": ("again.mp4", VIDEO.read_bytes(), "video/mp4")},
        headers=who.headers,
    )
    assert r.status_code == 409
    assert r.json()["code"] == "challenge_used"
    assert await pool.fetchval("SELECT count(*) FROM certification_checks") == 1
    status = (await client.get("/v1/certifications/status", headers=who.headers)).json()
    assert status["last_check"]["id"] == check_id
    assert status["attempts_left"] == 3
    assert status["consent_given"] is True
    assert status["eligible_until"] is None


async def test_expired_and_foreign_challenges_are_refused(
    client: Any, pool: asyncpg.Pool, importer: Any, tmp_path: Path
) -> None:
    who = await applicant(client, pool, importer, tmp_path)
    other = await applicant(client, pool, importer, tmp_path)
    challenge = (await client.post("/v1/certifications/challenges", headers=who.headers)).json()
    url = f"/v1/certifications/challenges/{challenge['id']}/submission"
    files = {"video": ("v.mp4", b"\x00\x00\x00\x18ftypmp42" + b"\x00" * 64, "video/mp4")}
    r = await client.post(url, files=files, headers=other.headers)
    assert r.status_code == 404  # another person's challenge does not exist for them
    await pool.execute("UPDATE certification_challenges SET expires_at = now() - $1::interval", timedelta(seconds=1))
    r = await client.post(url, files=files, headers=who.headers)
    assert r.status_code == 410
    assert r.json()["code"] == "challenge_expired"


@pytest.mark.parametrize(
    ("name", "data", "status", "code"),
    [
        ("empty.mp4", b"", 400, "upload_empty"),
        ("notes.mp4", b"These are my notes, not a video at all.\n" * 20, 415, "not_a_video"),
        ("bomb.mp4", None, 415, "not_a_video"),
    ],
    ids=["empty", "text-named-mp4", "png-bomb"],
)
async def test_bad_video_uploads_get_a_reason(
    client: Any,
    pool: asyncpg.Pool,
    importer: Any,
    tmp_path: Path,
    name: str,
    data: bytes | None,
    status: int,
    code: str,
) -> None:
    if data is None:  # a small file that would decode to 400 megapixels
        buffer = io.BytesIO()
        Image.new("1", (20000, 20000)).save(buffer, "PNG")
        data = buffer.getvalue()
    who = await applicant(client, pool, importer, tmp_path, locale="en")
    _, r = await submit_video(client, who.headers, data, name=name)
    assert r.status_code == status, r.text
    assert r.json()["code"] == code
    assert r.json()["detail"]
    assert await pool.fetchval("SELECT count(*) FROM certification_checks") == 0


async def test_a_25_mb_upload_is_refused_with_413(
    client: Any, pool: asyncpg.Pool, importer: Any, tmp_path: Path
) -> None:
    who = await applicant(client, pool, importer, tmp_path)
    _, r = await submit_video(client, who.headers, b"\x00\x00\x00\x18ftypmp42" + b"\x00" * (25 * 1024 * 1024))
    assert r.status_code == 413
    assert r.json()["code"] == "body_too_large"


async def test_frame_bursts_are_checked(client: Any, pool: asyncpg.Pool, importer: Any, tmp_path: Path) -> None:
    who = await applicant(client, pool, importer, tmp_path)
    jpeg = io.BytesIO()
    Image.new("RGB", (64, 64), "gray").save(jpeg, "JPEG")
    png = io.BytesIO()
    Image.new("RGB", (64, 64), "gray").save(png, "PNG")
    for frames, status, code in (
        ([jpeg.getvalue()] * 3, 422, "frames_count"),
        ([jpeg.getvalue()] * 4 + [png.getvalue()], 415, "not_jpeg"),
    ):
        challenge = (await client.post("/v1/certifications/challenges", headers=who.headers)).json()
        r = await client.post(
            f"/v1/certifications/challenges/{challenge['id']}/submission",
            files=[("frames", (f"f{i}.jpg", f, "image/jpeg")) for i, f in enumerate(frames)],
            headers=who.headers,
        )
        assert (r.status_code, r.json()["code"]) == (status, code)
    challenge = (await client.post("/v1/certifications/challenges", headers=who.headers)).json()
    r = await client.post(
        f"/v1/certifications/challenges/{challenge['id']}/submission",
        content=b"raw bytes",
        headers={**who.headers, "Content-Type": "application/octet-stream"},
    )
    assert (r.status_code, r.json()["code"]) == (415, "submission_content_type")


@needs_faces
async def test_presigned_post_upload_is_enforced_by_the_s3_server(
    client: Any, pool: asyncpg.Pool, importer: Any, settings: Settings, tmp_path: Path
) -> None:
    who = await applicant(client, pool, importer, tmp_path)
    challenge = (await client.post("/v1/certifications/challenges", headers=who.headers)).json()
    post = challenge["upload"]["presigned_post"]
    video = VIDEO.read_bytes()

    def upload(key: str, content_type: str, data: bytes) -> httpx.Response:
        fields = {**post["fields"], "key": key, "Content-Type": content_type}
        return httpx.post(post["url"], data=fields, files={"file": ("selfie.mp4", data, content_type)}, timeout=30)

    other_prefix = post["key_prefix"].replace(challenge["id"], str(uuid.uuid4()))
    assert upload(other_prefix + "selfie.mp4", "video/mp4", video).status_code == 403  # outside the prefix
    assert upload(post["key_prefix"] + "selfie.txt", "text/plain", video).status_code == 403  # not a video type
    assert upload(post["key_prefix"] + "selfie.mp4", "video/mp4", video).status_code in (200, 201, 204)
    url = f"/v1/certifications/challenges/{challenge['id']}/submission"
    r = await client.post(url, json={"s3_key": other_prefix + "selfie.mp4"}, headers=who.headers)
    assert (r.status_code, r.json()["code"]) == (422, "upload_key_invalid")
    r = await client.post(url, json={"s3_key": post["key_prefix"] + "missing.mp4"}, headers=who.headers)
    assert (r.status_code, r.json()["code"]) == (422, "upload_missing")
    r = await client.post(url, json={"s3_key": post["key_prefix"] + "selfie.mp4"}, headers=who.headers)
    assert r.status_code == 202, r.text
    keys = await pool.fetchval(
        "SELECT media_keys FROM certification_checks WHERE id = $1", uuid.UUID(r.json()["check_id"])
    )
    assert ObjectStorage(settings).get_bytes(keys[0]) == video


async def test_certification_needs_a_linked_identity(client: Any, pool: asyncpg.Pool) -> None:
    from tests.factories import sign_in

    tokens = await sign_in(client, pool, "13912345678")
    r = await client.post(
        "/v1/certifications/challenges", headers={"Authorization": f"Bearer {tokens['access_token']}"}
    )
    assert (r.status_code, r.json()["code"]) == (403, "identity_not_linked")


async def test_failures_count_down_then_a_person_decides(
    client: Any, pool: asyncpg.Pool, importer: Any, tmp_path: Path
) -> None:
    who = await applicant(client, pool, importer, tmp_path)
    for _ in range(2):
        await insert_check(pool, who.person.phone, "failed", worker_outcome="failed")
    assert (await client.get("/v1/certifications/status", headers=who.headers)).json()["attempts_left"] == 1
    # The third failure went to review: no new challenge until a reviewer decides.
    await insert_check(pool, who.person.phone, "needs_review", worker_outcome="failed")
    assert (await client.get("/v1/certifications/status", headers=who.headers)).json()["attempts_left"] == 0
    r = await client.post("/v1/certifications/challenges", headers=who.headers)
    assert (r.status_code, r.json()["code"]) == (409, "certification_under_review")
