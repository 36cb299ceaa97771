"""Face certification end to end: the real HTTP API, the real worker (pgqueuer, the analyser
process, dlib) and the real files in ../shared/faces; then the operators' review queue."""

from __future__ import annotations

import asyncio
import io
import os
import signal
import sys
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import av
import httpx
import pytest
from PIL import Image

from app.services import Services
from certification.rules import add_months, day_in_china
from infra.config import Settings, settings_env
from tests.conftest import FACES
from tests.factories import applicant, certify, finished, operator_headers_for, video_frame
from tools.liveness import attacks

pytestmark = pytest.mark.skipif(not FACES.exists(), reason="../shared/faces is not beside this clone")
VIDEOS = FACES / "video"
ROOT = Path(__file__).resolve().parents[2]


def still_video(photo: Path) -> bytes:
    """A printed-photo attack: one photo as a 3 s video, drifting and zooming a little."""
    image = Image.open(photo).convert("RGB")
    image.thumbnail((640, 640))
    width, height = (image.width // 2) * 2, (image.height // 2) * 2
    buffer = io.BytesIO()
    with av.open(buffer, "w", format="mp4") as out:
        stream = out.add_stream("libx264", rate=30)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        for i in range(90):
            zoom = 1 + 0.04 * (i / 90)
            shifted = image.resize((int(width * zoom), int(height * zoom))).crop(
                (i % 7, i % 5, i % 7 + width, i % 5 + height)
            )
            for packet in stream.encode(av.VideoFrame.from_image(shifted)):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return buffer.getvalue()


async def fetch(url: str) -> httpx.Response:
    async with httpx.AsyncClient(timeout=10) as http:
        return await http.get(url)


async def start_worker(env: dict[str, str]) -> asyncio.subprocess.Process:
    """`socialcard worker` in a process group of its own (with its analyser child)."""
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "app.cli", "worker", cwd=ROOT, env=env, start_new_session=True
    )


def codes(check: dict[str, Any]) -> set[str]:
    return {reason["code"] for reason in check["reasons"]}


async def test_live_blink_passes_and_the_card_can_be_activated(
    client: Any, pool: asyncpg.Pool, importer: Any, tmp_path: Path
) -> None:
    video = VIDEOS / "live_blink__eye_blink.mp4"
    who = await applicant(client, pool, importer, tmp_path, reference_photo=video_frame(video, 10, tmp_path))
    check = await certify(client, pool, who, ["blink"], video.read_bytes())
    assert check["status"] == "passed", check
    assert check["reasons"] == []
    status = (await client.get("/v1/certifications/status", headers=who.headers)).json()
    assert status["eligible_until"] == add_months(day_in_china(datetime.now(UTC)), 12).isoformat()
    assert status["last_check"]["status"] == "passed"
    r = await client.post("/v1/card/activation", json={"national_id": who.person.national_id}, headers=who.headers)
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "active"
    events = await pool.fetch("SELECT kind FROM domain_events WHERE kind LIKE 'certification.%'")
    assert [e["kind"] for e in events] == ["certification.passed"]
    # The embedding is stored encrypted: no plain float array in the row.
    sealed = await pool.fetchval("SELECT embedding_enc FROM certification_checks")
    assert sealed is not None
    assert len(sealed) > 128 * 8


async def test_live_turn_passes_exactly_the_challenge_it_performs(
    client: Any, pool: asyncpg.Pool, importer: Any, tmp_path: Path
) -> None:
    video = VIDEOS / "live_turn__zubair_real.mov"
    who = await applicant(
        client, pool, importer, tmp_path, reference_photo=video_frame(video, 10, tmp_path), locale="en"
    )
    done = await certify(client, pool, who, ["open_mouth", "turn_right", "turn_left"], video.read_bytes())
    assert done["status"] == "passed", done


async def test_one_live_clip_certifies_one_person_only(
    client: Any, pool: asyncpg.Pool, importer: Any, tmp_path: Path
) -> None:
    """A fraud ring's pattern: one live recording (one face) submitted for several pensioners."""
    video = VIDEOS / "live_turn__zubair_real.mov"
    challenge = ["open_mouth", "turn_right", "turn_left"]
    first = await applicant(client, pool, importer, tmp_path, reference_photo=video_frame(video, 10, tmp_path))
    assert (await certify(client, pool, first, challenge, video.read_bytes()))["status"] == "passed"
    for seed in (1, 2):
        again = await applicant(client, pool, importer, tmp_path, reference_photo=video_frame(video, 10, tmp_path))
        copy = attacks.encode(attacks.mirrored(attacks.decode(video.read_bytes())), crf=26 + seed)
        mirrored = ["open_mouth", "turn_left", "turn_right"]
        check = await certify(client, pool, again, mirrored, copy)
        assert check["status"] == "needs_review", check
        assert {"replayed_media", "face_collision"} <= codes(check), check
    replays = await pool.fetch(
        "SELECT person_id, replay_of, replay_of_person FROM certification_checks WHERE replay_of IS NOT NULL"
    )
    assert len(replays) == 2
    # The copied recording is another person's: no foreign key across persons, its person beside it.
    for replay in replays:
        assert replay["replay_of_person"] != replay["person_id"]
        copied = await pool.fetchval(
            "SELECT true FROM certification_checks WHERE person_id = $1 AND id = $2",
            replay["replay_of_person"],
            replay["replay_of"],
        )
        assert copied, replay


async def test_a_clip_cut_from_two_recordings_does_not_pass(
    client: Any, pool: asyncpg.Pool, importer: Any, tmp_path: Path
) -> None:
    blink, turn = VIDEOS / "live_blink__eye_blink.mp4", VIDEOS / "live_turn__zubair_real.mov"
    who = await applicant(client, pool, importer, tmp_path, reference_photo=video_frame(blink, 10, tmp_path))
    host = attacks.decode(blink.read_bytes())
    insert = attacks.segment(attacks.decode(turn.read_bytes()), 6.6, 7.8)  # someone else's head turn
    check = await certify(
        client, pool, who, ["blink", "turn_right"], attacks.encode(attacks.spliced(host, insert, 3.0))
    )
    assert check["status"] in ("failed", "needs_review"), check
    assert "edited_media" in codes(check)


@pytest.mark.parametrize("actions", [["blink"], ["turn_left", "turn_right"], ["open_mouth", "blink", "turn_left"]])
async def test_screen_replay_does_not_pass(
    client: Any, pool: asyncpg.Pool, importer: Any, tmp_path: Path, actions: list[str]
) -> None:
    live = VIDEOS / "live_turn__zubair_real.mov"
    who = await applicant(client, pool, importer, tmp_path, reference_photo=video_frame(live, 10, tmp_path))
    check = await certify(client, pool, who, actions, (VIDEOS / "replay_screen__zubair_fake.mp4").read_bytes())
    assert check["status"] != "passed", check
    assert check["reasons"]


async def test_a_photo_made_into_a_video_does_not_pass(
    client: Any, pool: asyncpg.Pool, importer: Any, tmp_path: Path
) -> None:
    photo = FACES / "stills" / "obama__obama.jpg"
    who = await applicant(client, pool, importer, tmp_path, reference_photo=photo)
    check = await certify(client, pool, who, ["blink", "turn_left"], still_video(photo))
    assert check["status"] == "failed", check
    assert codes(check) & {"no_motion", "action_not_detected"}


async def test_not_a_selfie_and_several_faces_fail_with_a_reason(
    client: Any, pool: asyncpg.Pool, importer: Any, tmp_path: Path
) -> None:
    who = await applicant(client, pool, importer, tmp_path, reference_photo=FACES / "stills" / "obama__obama.jpg")
    clip = await certify(client, pool, who, ["blink"], (VIDEOS / "not_selfie__hamilton_clip.mp4").read_bytes())
    assert clip["status"] == "failed", clip
    assert codes(clip) & {"multiple_faces", "identity_changed", "no_face"}
    burst = (FACES / "stills" / "multi__obama_and_biden.jpg").read_bytes()
    challenge = (await client.post("/v1/certifications/challenges", headers=who.headers)).json()
    r = await client.post(
        f"/v1/certifications/challenges/{challenge['id']}/submission",
        files=[("frames", (f"f{i}.jpg", burst, "image/jpeg")) for i in range(5)],
        headers=who.headers,
    )
    assert r.status_code == 202, r.text
    frames = await finished(client, pool, who, r.json()["check_id"])
    assert frames["status"] == "failed", frames
    assert "multiple_faces" in codes(frames)


async def test_an_impostor_fails(client: Any, pool: asyncpg.Pool, importer: Any, tmp_path: Path) -> None:
    someone_else = sorted((FACES / "lfw-dev").iterdir())[0]
    who = await applicant(client, pool, importer, tmp_path, reference_photo=sorted(someone_else.glob("*.jpg"))[0])
    check = await certify(client, pool, who, ["blink"], (VIDEOS / "live_blink__eye_blink.mp4").read_bytes())
    assert check["status"] == "failed", check
    assert "not_same_person" in codes(check)
    assert check["scores"]["match_distance"] > 0.6


async def test_a_video_with_no_face_fails_and_the_worker_goes_on(
    client: Any, pool: asyncpg.Pool, importer: Any, tmp_path: Path
) -> None:
    buffer = io.BytesIO()
    with av.open(buffer, "w", format="mp4") as out:
        stream = out.add_stream("libx264", rate=30)
        stream.width, stream.height, stream.pix_fmt = 320, 240, "yuv420p"
        for i in range(60):
            for packet in stream.encode(av.VideoFrame.from_image(Image.new("RGB", (320, 240), (i * 3, 90, 120)))):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    who = await applicant(client, pool, importer, tmp_path, reference_photo=FACES / "stills" / "obama__obama.jpg")
    check = await certify(client, pool, who, ["blink"], buffer.getvalue())
    assert check["status"] == "failed", check
    assert "no_face" in codes(check)
    # A truncated video (valid header, body cut off) is a reason too, and the next check still runs.
    truncated = (VIDEOS / "live_blink__eye_blink.mp4").read_bytes()[:4000]
    check = await certify(client, pool, who, ["blink"], truncated)
    assert check["status"] == "failed", check
    assert codes(check) == {"unreadable_media"}


async def test_the_same_upload_twice_goes_to_review_as_replayed_media(
    client: Any, services: Services, pool: asyncpg.Pool, importer: Any, tmp_path: Path, settings: Settings
) -> None:
    video = VIDEOS / "live_blink__eye_blink.mp4"
    who = await applicant(client, pool, importer, tmp_path, reference_photo=video_frame(video, 10, tmp_path))
    first = await certify(client, pool, who, ["blink"], video.read_bytes())
    assert first["status"] == "passed"
    second = await certify(client, pool, who, ["blink"], video.read_bytes())
    assert second["status"] == "needs_review", second
    assert "replayed_media" in codes(second)
    replay = await pool.fetchrow(
        "SELECT person_id, replay_of, replay_of_person FROM certification_checks WHERE id = $1", uuid.UUID(second["id"])
    )
    assert (str(replay["replay_of"]), replay["replay_of_person"]) == (first["id"], replay["person_id"])

    # The review queue: oldest first, one operator at a time, every look audited, a reason required.
    alice = await operator_headers_for(services, "alice", "Alice Operator")
    bob = await operator_headers_for(services, "bob", "Bob Operator")
    queue = (await client.get("/v1/review/checks?status=needs_review", headers=alice)).json()
    assert [item["id"] for item in queue["items"]] == [second["id"]]
    assert queue["items"][0]["reasons"] == ["replayed_media"]
    r = await client.get(f"/v1/review/checks/{second['id']}", headers=alice)
    assert (r.status_code, r.json()["code"]) == (409, "claim_required")
    assert (await client.post(f"/v1/review/checks/{second['id']}/claim", headers=alice)).status_code == 200
    r = await client.post(f"/v1/review/checks/{second['id']}/claim", headers={**bob, "Accept-Language": "en"})
    assert (r.status_code, r.json()["code"]) == (409, "check_claimed")
    assert "Alice Operator" in r.json()["detail"]
    view = (await client.get(f"/v1/review/checks/{second['id']}", headers=alice)).json()
    assert view["frame_urls"]
    assert view["reference_url"]
    assert view["urls_expire_in"] <= 300
    assert "match_distance" in view["scores"]
    frame = await fetch(view["frame_urls"][0])
    assert frame.status_code == 200
    assert frame.content[:3] == b"\xff\xd8\xff"
    assert (await fetch(view["reference_url"])).status_code == 200
    key = await pool.fetchval(
        "SELECT review_frame_keys[1] FROM certification_checks WHERE id = $1", uuid.UUID(second["id"])
    )
    assert (await fetch(f"{settings.s3_endpoint_url}/{settings.s3_bucket}/{key}")).status_code == 403  # private
    looks = await pool.fetch("SELECT actor, subject FROM audit_log WHERE action = 'biometric.viewed'")
    assert [(r["subject"]) for r in looks] == [f"check:{second['id']}"]
    r = await client.post(f"/v1/review/checks/{second['id']}/decision", json={"decision": "approve"}, headers=alice)
    assert r.status_code == 400
    r = await client.post(
        f"/v1/review/checks/{second['id']}/decision",
        json={"decision": "reject", "reason": "not mine to decide"},
        headers=bob,
    )
    assert (r.status_code, r.json()["code"]) == (409, "claim_required")
    r = await client.post(
        f"/v1/review/checks/{second['id']}/decision",
        json={"decision": "reject", "reason": "identical file to the previous submission"},
        headers=alice,
    )
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "failed"
    check = (await client.get(f"/v1/certifications/checks/{second['id']}", headers=who.headers)).json()
    assert check["status"] == "failed"
    assert "review_rejected" in codes(check)
    decided = await pool.fetchrow("SELECT details FROM audit_log WHERE action = 'review.decided'")
    assert decided["details"] == {
        "decision": "reject",
        "reason": "identical file to the previous submission",
        "operator": "alice",
    }
    assert (await client.get("/v1/review/checks", headers=alice)).json()["items"] == []


async def test_a_worker_killed_mid_job_leaves_one_result(
    client: Any, pool: asyncpg.Pool, importer: Any, tmp_path: Path, settings: Settings
) -> None:
    video = VIDEOS / "live_turn__zubair_real.mov"
    who = await applicant(client, pool, importer, tmp_path, reference_photo=video_frame(video, 10, tmp_path))
    r = await client.post("/v1/certifications/challenges", headers=who.headers)
    challenge = r.json()
    await pool.execute(
        "UPDATE certification_challenges SET actions = '{open_mouth,turn_right,turn_left}' WHERE id = $1",
        uuid.UUID(challenge["id"]),
    )
    r = await client.post(
        f"/v1/certifications/challenges/{challenge['id']}/submission",
        files={"video": ("selfie.mov", video.read_bytes(), "video/quicktime")},
        headers=who.headers,
    )
    check_id = uuid.UUID(r.json()["check_id"])
    env = {**os.environ, **settings_env(settings), "JOB_HEARTBEAT_S": "4", "LOG_LEVEL": "WARNING"}
    worker = await start_worker(env)
    try:
        deadline = time.monotonic() + 60
        while await pool.fetchval("SELECT status FROM certification_checks WHERE id = $1", check_id) != "processing":
            assert time.monotonic() < deadline, "the worker never took the check"
            await asyncio.sleep(0.05)
        os.killpg(worker.pid, signal.SIGKILL)  # the worker and its analyser process, mid-analysis
        await asyncio.wait_for(worker.wait(), 10)
        assert await pool.fetchval("SELECT status FROM certification_checks WHERE id = $1", check_id) == "processing"
    finally:
        if worker.returncode is None:
            os.killpg(worker.pid, signal.SIGKILL)
    # Another worker picks the job up once the dead one's heartbeat is stale.
    second = await start_worker(env)
    try:
        deadline = time.monotonic() + 120
        while (status := await pool.fetchval("SELECT status FROM certification_checks WHERE id = $1", check_id)) in (
            "queued",
            "processing",
        ):
            assert time.monotonic() < deadline, "the check was never completed"
            await asyncio.sleep(0.2)
    finally:
        os.killpg(second.pid, signal.SIGTERM)
        await asyncio.wait_for(second.wait(), 30)
    assert status == "passed"
    row = await pool.fetchrow("SELECT analysis_attempts FROM certification_checks WHERE id = $1", check_id)
    assert row["analysis_attempts"] == 2
    events = await pool.fetchval("SELECT count(*) FROM domain_events WHERE payload->>'check_id' = $1", str(check_id))
    assert events == 1


async def test_without_a_reference_photo_a_live_clip_goes_to_a_person(
    client: Any, services: Services, pool: asyncpg.Pool, importer: Any, tmp_path: Path
) -> None:
    who = await applicant(client, pool, importer, tmp_path)  # imported without a reference photo
    check = await certify(client, pool, who, ["blink"], (VIDEOS / "live_blink__eye_blink.mp4").read_bytes())
    assert check["status"] == "needs_review", check
    assert codes(check) == {"reference_missing"}
    operator = await operator_headers_for(services, "carol", "Carol Operator")
    assert (await client.post(f"/v1/review/checks/{check['id']}/claim", headers=operator)).status_code == 200
    view = (await client.get(f"/v1/review/checks/{check['id']}", headers=operator)).json()
    assert view["frame_urls"]  # the reviewer sees the clip's frames
    assert view["reference_url"] is None
    assert [a["action"] for a in view["detected_actions"]].count("blink") >= 1
    r = await client.post(
        f"/v1/review/checks/{check['id']}/decision",
        json={"decision": "approve", "reason": "matches the ID card photo on file at the office"},
        headers=operator,
    )
    assert (r.status_code, r.json()["status"]) == (200, "passed")
    status = (await client.get("/v1/certifications/status", headers=who.headers)).json()
    assert status["eligible_until"] == add_months(day_in_china(datetime.now(UTC)), 12).isoformat()
    r = await client.post("/v1/card/activation", json={"national_id": who.person.national_id}, headers=who.headers)
    assert r.json()["status"] == "active"
