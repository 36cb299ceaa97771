"""Biometric objects that no check names (S3 failing mid-upload, frames of an analysis that broke, a
presigned upload never submitted) are deleted by the nightly media job once past a grace period,
while everything a check names stays until its own retention ends.

The failure is real: the storage is the real one until its S3 endpoint becomes a port nobody listens
on, so the requests fail in botocore itself, after its own retries."""

from __future__ import annotations

import io
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, ClassVar

import asyncpg
import httpx
import msgspec
import pytest
from litestar.testing import AsyncTestClient
from PIL import Image

import app.services
from app.asgi import create_app
from app.services import Services
from certification import rules
from certification.service import CertificationService
from infra.config import Settings
from infra.crypto import FieldCipher
from infra.storage import ObjectStorage
from liveness.model import Analysis, Outcome
from liveness.worker import MAX_ANALYSIS_ATTEMPTS, FaceJobs
from tests.factories import Applicant, applicant, free_port, insert_check


class FlakyStorage(ObjectStorage):
    """The real object storage, whose S3 becomes unreachable after a number of puts: from then on its
    client talks to a closed port, for every request, until the outage ends. The switches are the
    class's, since the app builds its own instance."""

    puts_before_outage: ClassVar[int | None] = None
    down: ClassVar[bool] = False

    def __init__(self, settings: Settings, bucket: str | None = None) -> None:
        super().__init__(settings, bucket)
        unreachable = msgspec.structs.replace(settings, s3_endpoint_url=f"http://127.0.0.1:{free_port()}")
        self._dead = ObjectStorage(unreachable, self.bucket)._client

    @property
    def _client(self) -> Any:  # type: ignore[override]
        return self._dead if FlakyStorage.down else self._live

    @_client.setter
    def _client(self, client: Any) -> None:
        self._live = client

    @classmethod
    def fail_after(cls, puts: int) -> None:
        cls.puts_before_outage, cls.down = puts, False

    @classmethod
    def recover(cls) -> None:
        cls.puts_before_outage, cls.down = None, False

    def put_bytes(self, key: str, data: bytes, content_type: str) -> None:
        if FlakyStorage.puts_before_outage == 0:
            FlakyStorage.down = True
        elif FlakyStorage.puts_before_outage is not None:
            FlakyStorage.puts_before_outage -= 1
        super().put_bytes(key, data, content_type)


@pytest.fixture(autouse=True)
def _healthy_s3_after() -> Iterator[None]:
    yield
    FlakyStorage.recover()


def _jpeg() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (64, 64), "gray").save(out, "JPEG")
    return out.getvalue()


async def _submit_frames(client: Any, who: Applicant, n: int) -> tuple[dict[str, Any], Any]:
    challenge = (await client.post("/v1/certifications/challenges", headers=who.headers)).json()
    r = await client.post(
        f"/v1/certifications/challenges/{challenge['id']}/submission",
        files=[("frames", (f"f{i}.jpg", _jpeg(), "image/jpeg")) for i in range(n)],
        headers=who.headers,
    )
    return challenge, r


def _stored(storage: ObjectStorage, prefix: str) -> list[str]:
    objects, more = storage.listed(prefix)
    assert not more
    return [o.key for o in objects]


def _after_the_grace() -> datetime:
    return datetime.now(UTC) + rules.ORPHAN_GRACE + timedelta(minutes=1)


async def test_frames_left_by_an_upload_cut_short_are_swept_after_the_grace_and_named_media_stays(
    settings: Settings,
    services: Services,
    pool: asyncpg.Pool,
    importer: Any,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(app.services, "ObjectStorage", FlakyStorage)  # the API's storage
    async with AsyncTestClient(create_app(settings)) as client:
        who = await applicant(client, pool, importer, tmp_path)
        # A burst that landed: its check is queued, its frames named.
        _, r = await _submit_frames(client, who, 5)
        assert r.status_code == 202, r.text
        named = list(await pool.fetchval("SELECT media_keys FROM certification_checks"))
        # A presigned upload the app never submitted.
        unsubmitted = (await client.post("/v1/certifications/challenges", headers=who.headers)).json()
        post = unsubmitted["upload"]["presigned_post"]
        fields = {**post["fields"], "key": post["key_prefix"] + "selfie.mp4", "Content-Type": "video/mp4"}
        files = {"file": ("selfie.mp4", b"\x00\x00\x00\x18ftypmp42", "video/mp4")}
        async with httpx.AsyncClient(timeout=30) as s3:
            assert (await s3.post(post["url"], data=fields, files=files)).status_code in (200, 201, 204)
        # S3 goes away after 25 of 30 frames.
        FlakyStorage.fail_after(25)
        cut, r = await _submit_frames(client, who, 30)
        assert r.status_code >= 500, r.text  # 500, or 503 where S3 failures count as passing
        FlakyStorage.recover()
    # A decided check within its retention: named, kept until purge_media's day.
    decided = ["uploads/test/29/video", "reviews/test/29/frame-00.jpg"]
    for key in decided:
        services.storage.put_bytes(key, b"\x00\x00\x00\x18ftypmp42", "video/mp4")
    await insert_check(
        pool,
        who.person.phone,
        "failed",
        worker_outcome="failed",
        days_ago=29,
        media_keys=(decided[0],),
        review_frame_keys=(decided[1],),
    )

    cut_short = _stored(services.storage, cut["upload"]["presigned_post"]["key_prefix"])
    assert len(cut_short) == 25  # 25 of 30 frames stored, and no check names them
    assert (
        await pool.fetchval("SELECT count(*) FROM certification_checks WHERE challenge_id = $1", uuid.UUID(cut["id"]))
        == 0
    )
    orphans = {*cut_short, post["key_prefix"] + "selfie.mp4"}
    everything = set(_stored(services.storage, "uploads/")) | set(_stored(services.storage, "reviews/"))
    assert everything == orphans | set(named) | set(decided)

    # The retention purge never sees them (no check, no decision), nor does the sweep within the grace.
    assert await services.certification.purge_media() == 0
    assert await services.certification.sweep_orphan_media() == 0
    assert set(_stored(services.storage, "uploads/")) >= orphans
    # Past the grace they go, and only they.
    assert await services.certification.sweep_orphan_media(_after_the_grace(), page=7) == len(orphans)
    left = set(_stored(services.storage, "uploads/")) | set(_stored(services.storage, "reviews/"))
    assert left == set(named) | set(decided)
    assert await services.certification.sweep_orphan_media(_after_the_grace()) == 0


class _Analyser:
    """Stands in for the face analyser process (no dlib here): a clip sent to review with 8 frames."""

    async def analyse(self, *args: Any) -> Analysis:
        return Analysis(outcome=Outcome.NEEDS_REVIEW, reasons=(), scores={}, review_frames=(_jpeg(),) * 8)


async def test_review_frames_of_an_analysis_that_broke_are_kept_while_it_is_retried_then_swept(
    client: Any, settings: Settings, services: Services, pool: asyncpg.Pool, importer: Any, tmp_path: Path
) -> None:
    who = await applicant(client, pool, importer, tmp_path)
    _, r = await _submit_frames(client, who, 5)
    assert r.status_code == 202, r.text
    check_id = uuid.UUID(r.json()["check_id"])
    uploads = set(_stored(services.storage, "uploads/"))
    flaky = CertificationService(pool, FlakyStorage(settings), settings, FieldCipher(settings.data_encryption_key))
    worker = FaceJobs(flaky, _Analyser(), settings)  # type: ignore[arg-type]

    # S3 goes away after 3 of the 8 review frames: the worker hands the check back to the queue.
    FlakyStorage.fail_after(3)
    await worker.certify(check_id)
    assert await pool.fetchval("SELECT status FROM certification_checks WHERE id = $1", check_id) == "queued"
    frames = _stored(services.storage, "reviews/")
    assert len(frames) == 3
    # Kept while the check waits for its next attempt, whatever their age: that attempt writes them again.
    assert await services.certification.sweep_orphan_media(_after_the_grace()) == 0
    # S3 stays down: the last attempt gives the check to a reviewer without frames.
    for _ in range(MAX_ANALYSIS_ATTEMPTS - 1):
        await worker.certify(check_id)
    row = await pool.fetchrow(
        "SELECT status, reasons, review_frame_keys FROM certification_checks WHERE id = $1", check_id
    )
    assert (row["status"], row["reasons"], row["review_frame_keys"]) == ("needs_review", ["analysis_error"], [])
    FlakyStorage.recover()

    assert await services.certification.sweep_orphan_media() == 0  # within the grace
    assert await services.certification.sweep_orphan_media(_after_the_grace()) == 3
    assert _stored(services.storage, "reviews/") == []
    assert set(_stored(services.storage, "uploads/")) == uploads  # the check's own media stays
