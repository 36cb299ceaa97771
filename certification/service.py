"""Certification use cases: consent, challenge, submission, status, and recording the worker's
analysis; `settle` applies a decision's effects for the worker and reviewers alike."""

from __future__ import annotations

import asyncio
import math
import random
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

import asyncpg
import numpy as np

from certification import repository as repo
from certification import rules
from certification.metrics import count_decision
from certification.reasons import Explanation, explain
from certification.uploads import UPLOAD_MAX_BYTES
from core.errors import Conflict, Forbidden, Gone, NotFound, TooManyRequests, Unprocessable
from core.principal import Principal
from infra import audit, jobs
from infra.config import Settings
from infra.crypto import FieldCipher, TemplateRotation
from infra.db import UnitOfWork, unit_of_work
from infra.logging import request_id_var
from infra.storage import ObjectStorage
from liveness import replay
from liveness.model import Action, Analysis, DetectedAction, EarlierSubmission, Embedding, Enrollment, Outcome, Reason
from liveness.port import WorkItem
from notifications.outbox import publish_event

CERTIFY_JOB = "liveness.certify"


def certify_payload(person_id: uuid.UUID, check_id: uuid.UUID) -> bytes:
    """A certify job's payload: the person, so that the worker reads and writes their shard only, then
    the check. A job queued before the person was named carries the check alone (certify_job)."""
    return f"{person_id} {check_id}".encode()


def certify_job(payload: bytes) -> tuple[uuid.UUID | None, uuid.UUID]:
    """The (person, check) of a certify job's payload; the person None in a job of the old form."""
    first, _, second = payload.decode().partition(" ")
    return (uuid.UUID(first), uuid.UUID(second)) if second else (None, uuid.UUID(first))


ENROLL_JOB = "liveness.enroll"
PURGE_MEDIA_JOB = "liveness.purge_media"
CHALLENGES_PER_HOUR = 10
FAILURE_WINDOW = timedelta(days=30)
FINAL = frozenset({"passed", "failed", "retry"})  # needs_review and home_visit wait for a person


@dataclass(frozen=True)
class UploadMedia:
    """A validated multipart upload: one video, or 5-30 JPEG frames."""

    kind: str  # "video" | "frames"
    parts: tuple[tuple[bytes, str], ...]  # (data, content type)


def embedding_bytes(embedding: Embedding) -> bytes:
    return np.asarray(embedding, dtype="<f8").tobytes()


def embedding_from(data: bytes) -> Embedding:
    return np.frombuffer(data, dtype="<f8").astype(np.float64)


def _signed64(value: int) -> int:
    """PostgreSQL has no unsigned bigint: store the 64-bit hash as its two's complement."""
    return value - (1 << 64) if value >= 1 << 63 else value


def _unsigned64(value: int) -> int:
    return value + (1 << 64) if value < 0 else value


def _detected_json(action: DetectedAction) -> dict[str, Any]:
    """A detected action as stored with its check (actions_detected)."""

    def rounded(value: float | None) -> float | None:
        return None if value is None else round(value, 3)

    return {
        "action": str(action.action),
        "at_s": round(action.at_s, 3),
        "strength": round(action.strength, 3),
        "until_s": rounded(action.until_s),
        "settled_s": rounded(action.settled_s),
    }


def _detected(stored: dict[str, Any]) -> DetectedAction:
    return DetectedAction(
        Action(stored["action"]), stored["at_s"], stored["strength"], stored.get("until_s"), stored.get("settled_s")
    )


def finite(scores: dict[str, Any]) -> dict[str, Any]:
    """JSON has no NaN or infinity: a score that could not be measured is stored as null."""
    return {k: None if isinstance(v, float) and not math.isfinite(v) else v for k, v in scores.items()}


@dataclass(frozen=True)
class Assistance:
    """A relative running a person's challenge from their own phone (certification.assisted): the
    challenge and the check are the person's, matched against the person's reference, and record who
    helped, through which link, from which device and session."""

    person_id: uuid.UUID
    helper_id: uuid.UUID
    link_id: uuid.UUID
    device_id: str | None
    session_id: uuid.UUID | None
    # Checked in the transaction that makes the challenge and the one that creates the check: refuses
    # when the relative may no longer act for the person (a link ended meanwhile), otherwise the
    # reasons a person must decide the check for (too many elders helped by one relative or device).
    admit: Callable[[UnitOfWork], Awaitable[tuple[str, ...]]]


def _subject(principal: Principal, assistance: Assistance | None) -> uuid.UUID:
    """Whose certification it is: the caller's own, or the elder a relative helps."""
    return assistance.person_id if assistance is not None else principal.linked_person


@dataclass(frozen=True)
class CheckView:
    """A check as its person sees it: the stored row and the reasons explained in their language."""

    row: Mapping[str, Any]
    reasons: list[Explanation]


@dataclass(frozen=True)
class NewChallenge:
    id: uuid.UUID
    actions: tuple[str, ...]
    expires_at: datetime
    max_bytes: int
    # The presigned S3 form for a direct upload from the phone.
    post_url: str
    post_fields: dict[str, str]
    key_prefix: str


@dataclass(frozen=True)
class CertificationStatus:
    eligible_until: date | None
    due_date: date
    last_check: CheckView | None
    attempts_left: int
    consent_given: bool


def _check_view(row: Mapping[str, Any]) -> CheckView:
    # A pass needs no explanation; the reasons stay with the check for reviewers.
    shown = () if row["status"] == "passed" else row["reasons"]
    return CheckView(row, [explain(code, row["locale"]) for code in shown])


async def settle(
    uow: UnitOfWork, person_id: uuid.UUID, check_id: uuid.UUID, status: str, reasons: list[str], decided_by: str
) -> None:
    """The effects of a check's status: a pass extends eligibility; every status is an event."""
    payload: dict[str, Any] = {"check_id": str(check_id), "status": status, "reasons": reasons}
    if status == "passed":
        until = await repo.extend_eligibility(uow, person_id, rules.day_in_china(datetime.now(UTC)))
        payload["eligible_until"] = until.isoformat()
    payload["decided_by"] = "worker" if decided_by == "worker" else "reviewer"
    await publish_event(uow, f"certification.{status}", person_id, payload, f"certification:{check_id}:{status}")
    if status == "passed" and (helper := await repo.assisted_by(uow, person_id, check_id)) is not None:
        # Told apart from the pass itself: the elder learns who certified them, and can object.
        await publish_event(
            uow,
            "relative.certified",
            person_id,
            {"relative_name": helper["name"], "eligible_until": payload["eligible_until"]},
            f"certification:{check_id}:assisted",
        )


class CertificationService:
    def __init__(self, pool: asyncpg.Pool, storage: ObjectStorage, settings: Settings, cipher: FieldCipher) -> None:
        self._pool = pool
        self._storage = storage
        self._settings = settings
        self._cipher = cipher
        self._rotation = TemplateRotation(settings.lookup_hash_key)
        self._rng = random.SystemRandom()

    # -- consent ---------------------------------------------------------------------------------
    async def grant_consent(self, principal: Principal) -> datetime:
        person_id = principal.linked_person
        async with unit_of_work(self._pool) as uow:
            granted = await repo.grant_consent(uow, person_id, principal.subject_id, repo.CONSENT_TEXT_VERSION)
            await audit.record(uow, principal.actor, "consent.biometric_granted", f"person:{person_id}", {})
        return granted

    async def withdraw_consent(self, principal: Principal) -> None:
        person_id = principal.linked_person
        async with unit_of_work(self._pool) as uow:
            if await repo.withdraw_consent(uow, person_id):
                await audit.record(uow, principal.actor, "consent.biometric_withdrawn", f"person:{person_id}", {})

    # -- the cardholder's flow -------------------------------------------------------------------
    async def new_challenge(self, principal: Principal, assistance: Assistance | None = None) -> NewChallenge:
        """A random challenge, unless the person is over the hourly limit or waiting for a reviewer."""
        person_id = _subject(principal, assistance)
        s = self._settings
        now = datetime.now(UTC)
        challenge_id = uuid.uuid4()
        actions = rules.draw_challenge(s.challenge_actions, s.challenge_min_actions, s.challenge_max_actions, self._rng)
        expires_at = (now + timedelta(seconds=s.challenge_ttl_s)).replace(microsecond=0)
        prefix = rules.upload_prefix(person_id, challenge_id)
        async with unit_of_work(self._pool) as uow:
            if await repo.lock_person(uow, person_id) != "alive":
                raise Conflict("person_deceased")
            if assistance is not None:
                await assistance.admit(uow)
            if await repo.challenges_since(uow, person_id, now - timedelta(hours=1)) >= CHALLENGES_PER_HOUR:
                raise TooManyRequests("challenge_rate_limited", headers={"Retry-After": "3600"})
            if await repo.pending_review(uow, person_id):
                raise Conflict("certification_under_review")
            await repo.create_challenge(
                uow, challenge_id, person_id, actions, prefix, expires_at, assistance.helper_id if assistance else None
            )
        post = await asyncio.to_thread(
            self._storage.presigned_post,
            prefix,
            max_bytes=UPLOAD_MAX_BYTES,
            content_type_prefix="video/",
            expires_s=s.challenge_ttl_s,
        )
        return NewChallenge(
            id=challenge_id,
            actions=tuple(actions),
            expires_at=expires_at,
            max_bytes=UPLOAD_MAX_BYTES,
            post_url=post["url"],
            post_fields=post["fields"],
            key_prefix=prefix,
        )

    async def _usable_challenge(
        self, uow: UnitOfWork, challenge_id: uuid.UUID, person_id: uuid.UUID, assistance: Assistance | None
    ) -> asyncpg.Record:
        challenge = await repo.challenge_for_submission(uow, challenge_id, person_id)
        # A challenge a relative started is theirs alone to submit, and a person's own is theirs.
        if challenge is None or challenge["assisted_by"] != (assistance.helper_id if assistance else None):
            raise NotFound("challenge_not_found")
        if challenge["used"]:
            raise Conflict("challenge_used")
        if challenge["expired"]:
            raise Gone("challenge_expired")
        if not await repo.has_consent(uow, person_id):
            raise Forbidden("consent_required")
        return challenge

    async def submit_upload(
        self, principal: Principal, challenge_id: uuid.UUID, media: UploadMedia, assistance: Assistance | None = None
    ) -> uuid.UUID:
        person_id = _subject(principal, assistance)
        async with unit_of_work(self._pool) as uow:  # refuse early, before storing anything
            challenge = await self._usable_challenge(uow, challenge_id, person_id, assistance)
        prefix: str = challenge["upload_prefix"]
        if media.kind == "video":
            keys = [prefix + "video"]
        else:
            keys = [f"{prefix}frame-{i:02d}.jpg" for i in range(len(media.parts))]
        for key, (data, content_type) in zip(keys, media.parts, strict=True):
            await asyncio.to_thread(self._storage.put_bytes, key, data, content_type)
        size = sum(len(data) for data, _ in media.parts)
        return await self._create_check(person_id, challenge_id, media.kind, keys, size, assistance)

    async def submit_stored(
        self, principal: Principal, challenge_id: uuid.UUID, key: str, assistance: Assistance | None = None
    ) -> uuid.UUID:
        """A video uploaded straight to S3 with the challenge's presigned POST."""
        person_id = _subject(principal, assistance)
        async with unit_of_work(self._pool) as uow:
            challenge = await self._usable_challenge(uow, challenge_id, person_id, assistance)
        if not key.startswith(challenge["upload_prefix"]) or ".." in key:
            raise Unprocessable("upload_key_invalid")
        size = await asyncio.to_thread(self._storage.size, key)
        if size is None:
            raise Unprocessable("upload_missing")
        if size > UPLOAD_MAX_BYTES:
            raise Unprocessable("upload_too_large", max_mb=UPLOAD_MAX_BYTES // (1024 * 1024))
        return await self._create_check(person_id, challenge_id, "video", [key], size, assistance)

    async def _create_check(
        self,
        person_id: uuid.UUID,
        challenge_id: uuid.UUID,
        kind: str,
        keys: list[str],
        size: int,
        assistance: Assistance | None,
    ) -> uuid.UUID:
        async with unit_of_work(self._pool) as uow:
            # re-checked under the lock
            challenge = await self._usable_challenge(uow, challenge_id, person_id, assistance)
            holds = await assistance.admit(uow) if assistance is not None else ()
            assisted = (
                (assistance.helper_id, assistance.link_id, assistance.device_id, assistance.session_id)
                if assistance is not None
                else None
            )
            check_id = await repo.create_check(
                uow,
                person_id,
                challenge_id,
                list(challenge["actions"]),
                kind,
                keys,
                size,
                request_id_var.get(),
                assisted,
                holds,
            )
            await jobs.enqueue(uow, CERTIFY_JOB, certify_payload(person_id, check_id), f"certify:{check_id}")
        return check_id

    async def check(self, principal: Principal, check_id: uuid.UUID) -> CheckView:
        return await self.check_of(principal.linked_person, check_id)

    async def check_of(self, person_id: uuid.UUID, check_id: uuid.UUID) -> CheckView:
        row = await repo.check_of_person(self._pool, check_id, person_id)
        if row is None:
            raise NotFound("check_not_found")
        return _check_view(row)

    async def status(self, principal: Principal) -> CertificationStatus:
        person_id = principal.linked_person
        until = await repo.certified_until(self._pool, person_id)
        latest = await repo.latest_check(self._pool, person_id)
        failures = await repo.failures_since(self._pool, person_id, datetime.now(UTC) - FAILURE_WINDOW)
        return CertificationStatus(
            eligible_until=until,
            # Certification is due when eligibility ends; a person never certified is due now.
            due_date=until if until is not None else rules.day_in_china(datetime.now(UTC)),
            last_check=_check_view(latest) if latest is not None else None,
            attempts_left=rules.attempts_left(failures, self._settings.failures_before_review),
            consent_given=await repo.has_consent(self._pool, person_id),
        )

    # -- the worker's side -----------------------------------------------------------------------
    async def start_analysis(self, check_id: uuid.UUID, person_id: uuid.UUID | None = None) -> WorkItem | None:
        """Take a check for analysis. A job queued before its payload named the person finds it first."""
        if person_id is None and (person_id := await repo.person_of_check(self._pool, check_id)) is None:
            return None
        async with unit_of_work(self._pool) as uow:
            row = await repo.start_analysis(uow, person_id, check_id)
        if row is None:
            return None
        return WorkItem(
            check_id=row["id"],
            person_id=row["person_id"],
            actions=tuple(row["actions"]),
            media_kind=row["media_kind"],
            media_keys=tuple(row["media_keys"]),
            attempts=row["analysis_attempts"],
            reference_photo_key=row["reference_photo_key"],
            request_id=row["request_id"],
        )

    async def load_media(self, item: WorkItem) -> tuple[bytes, ...]:
        return tuple([await asyncio.to_thread(self._storage.get_bytes, key) for key in item.media_keys])

    async def reference_photo(self, key: str) -> bytes:
        return await asyncio.to_thread(self._storage.get_bytes, key)

    def _reference_context(self, person_id: uuid.UUID) -> bytes:
        return f"reference_enrollments.embedding:{person_id}".encode()

    def _check_context(self, check_id: uuid.UUID) -> bytes:
        return f"certification_checks.embedding:{check_id}".encode()

    async def enrolled_reference(self, person_id: uuid.UUID, photo_key: str) -> Enrollment | None:
        """The stored enrolment (its embedding is None when the photo is unusable); None when not yet enrolled."""
        row = await repo.enrollment(self._pool, person_id, photo_key)
        if row is None:
            return None
        embedding = (
            embedding_from(self._cipher.decrypt(row["embedding_enc"], self._reference_context(person_id)))
            if row["embedding_enc"] is not None
            else None
        )
        return Enrollment(embedding=embedding, reasons=tuple(Reason(r) for r in row["reasons"]), scores={})

    async def save_enrollment(self, person_id: uuid.UUID, photo_key: str, enrollment: Enrollment) -> None:
        sealed = (
            self._cipher.encrypt(embedding_bytes(enrollment.embedding), self._reference_context(person_id))
            if enrollment.embedding is not None
            else None
        )
        async with unit_of_work(self._pool) as uow:
            await repo.save_enrollment(
                uow, person_id, photo_key, sealed, [str(r) for r in enrollment.reasons], enrollment.scores
            )
            if enrollment.embedding is not None:
                await repo.save_template(uow, person_id, None, self._template(enrollment.embedding))
            if sealed is None:
                # A bad reference photo is the administrators' problem, never the pensioner's.
                await publish_event(
                    uow,
                    "reference.unusable",
                    person_id,
                    {"photo_key": photo_key, "reasons": [str(r) for r in enrollment.reasons]},
                    f"reference:{person_id}:{photo_key}",
                )

    async def earlier_submissions(self, item: WorkItem) -> list[EarlierSubmission]:
        """This person's earlier submissions, for the pipeline to recognise a copy of one."""
        rows = await repo.earlier_submissions(self._pool, item.person_id, item.check_id)
        return [self._earlier(row) for row in rows]

    async def replay_candidates(self, item: WorkItem, analysis: Analysis) -> list[EarlierSubmission]:
        """Other persons' submissions within REPLAY_LOOKBACK_DAYS sharing scene keys with this one
        (mirrored too): the candidates liveness.decision.reconsider compares it with."""
        if not analysis.frame_hashes:
            return []
        keys = replay.index_keys(analysis.frame_hashes, mirror=True)
        since = datetime.now(UTC) - timedelta(days=self._settings.replay_lookback_days)
        rows = await repo.replay_candidates(self._pool, item.person_id, keys, since)
        return [self._earlier(row) for row in rows]

    async def face_collision(self, item: WorkItem, embedding: Embedding | None) -> uuid.UUID | None:
        """Another person whose reference photo, or check within REPLAY_LOOKBACK_DAYS, shows this face."""
        if embedding is None:
            return None
        since = datetime.now(UTC) - timedelta(days=self._settings.replay_lookback_days)
        nearest = await repo.nearest_other_face(self._pool, item.person_id, self._template(embedding), since)
        if nearest is None or nearest["distance"] > self._settings.face_collision_distance:
            return None
        other: uuid.UUID = nearest["person_id"]
        return other

    def _template(self, embedding: Embedding) -> str:
        """A face template as pgvector reads it, rotated by the deployment's secret (TemplateRotation)."""
        return "[" + ",".join(f"{x:.7f}" for x in self._rotation.rotate(embedding)) + "]"

    def _earlier(self, row: asyncpg.Record) -> EarlierSubmission:
        return EarlierSubmission(
            check_id=str(row["id"]),
            sha256=row["sha256"],
            embedding=(
                embedding_from(self._cipher.decrypt(row["embedding_enc"], self._check_context(row["id"])))
                if row["embedding_enc"] is not None
                else None
            ),
            frame_hashes=tuple(_unsigned64(h) for h in row["frame_hashes"]),
            frame_times=tuple(row["frame_times"]),
            events=tuple(_detected(event) for event in row["actions_detected"]),
            person_id=str(row["person_id"]),
        )

    async def store_review_frames(self, item: WorkItem, frames: tuple[bytes, ...]) -> list[str]:
        keys = [rules.review_frame_key(item.person_id, item.check_id, i) for i in range(len(frames))]
        for key, data in zip(keys, frames, strict=True):
            await asyncio.to_thread(self._storage.put_bytes, key, data, "image/jpeg")
        return keys

    async def record_analysis(self, item: WorkItem, analysis: Analysis, review_frame_keys: list[str]) -> str | None:
        """Store the result and apply its effects once; None when another run already did."""
        sealed = (
            self._cipher.encrypt(embedding_bytes(analysis.embedding), self._check_context(item.check_id))
            if analysis.embedding is not None
            else None
        )
        async with unit_of_work(self._pool) as uow:
            # Counted under the person's lock: two failing checks at once cannot both miss the limit.
            await repo.lock_person(uow, item.person_id)
            failures = await repo.failures_since(uow, item.person_id, datetime.now(UTC) - FAILURE_WINDOW)
            reasons = [str(r) for r in analysis.reasons]
            holds = await repo.hold_reasons(uow, item.person_id, item.check_id)
            verdict = rules.final_status(
                str(analysis.outcome), reasons, failures, self._settings.failures_before_review, holds
            )
            written = await repo.record_analysis(
                uow,
                item.person_id,
                item.check_id,
                status=verdict.status,
                worker_outcome=str(analysis.outcome),
                reasons=list(verdict.reasons),
                scores=finite(analysis.scores),
                actions_detected=[_detected_json(a) for a in analysis.actions],
                sha256=analysis.sha256,
                frame_hashes=[_signed64(h) for h in analysis.frame_hashes],
                frame_times=[round(t, 3) for t in analysis.frame_times],
                scene_keys=replay.index_keys(analysis.frame_hashes),
                embedding_enc=sealed,
                replay_of=(
                    (uuid.UUID(analysis.replay_of_person or str(item.person_id)), uuid.UUID(analysis.replay_of))
                    if analysis.replay_of
                    else None
                ),
                review_frame_keys=review_frame_keys,
                final=verdict.status in FINAL,
            )
            if not written:
                return None
            if analysis.embedding is not None:
                await repo.save_template(uow, item.person_id, item.check_id, self._template(analysis.embedding))
            await settle(uow, item.person_id, item.check_id, verdict.status, list(verdict.reasons), "worker")
        count_decision(verdict.status, verdict.reasons, "worker")
        return verdict.status

    async def retry_later(self, item: WorkItem, delay: timedelta) -> None:
        """Hand a check whose analysis broke back to the queue, to be tried again after `delay`."""
        async with unit_of_work(self._pool) as uow:
            if await repo.requeue(uow, item.person_id, item.check_id):
                await jobs.enqueue(
                    uow,
                    CERTIFY_JOB,
                    certify_payload(item.person_id, item.check_id),
                    f"certify:{item.check_id}:{item.attempts}",
                    delay,
                )

    async def give_up(self, item: WorkItem) -> str | None:
        """Hand a check the worker cannot analyse to a person: the machine alone never stops a pension."""
        broken = Analysis(
            outcome=Outcome.NEEDS_REVIEW, reasons=(Reason.ANALYSIS_ERROR,), scores={"attempts": item.attempts}
        )
        return await self.record_analysis(item, broken, [])

    async def purge_media(self, batch: int = 200) -> int:
        """Delete raw media and review frames of checks decided longer ago than the retention period.

        Objects go first, outside any transaction; a check is marked purged only once S3 confirmed
        every deletion, so an interrupted run is simply done again (deleting twice is harmless)."""
        purged = 0
        while rows := await repo.media_to_purge(self._pool, self._settings.media_retention_days, batch):
            keys = [key for row in rows for key in (*row["media_keys"], *row["review_frame_keys"])]
            await asyncio.to_thread(self._storage.delete, keys)
            await repo.mark_purged(self._pool, [(row["person_id"], row["id"]) for row in rows])
            purged += len(rows)
        return purged

    async def sweep_orphan_media(self, now: datetime | None = None, page: int = 1000) -> int:
        """Delete the biometric objects no check names (an upload cut short by an S3 failure,
        frames of an analysis that broke, a presigned upload never submitted, leftovers of a purged
        check) once older than rules.ORPHAN_GRACE; the number deleted.

        The bucket is listed under each biometric prefix, a page at a time, and the database asked
        which of the page's old objects a check whose media is not yet purged names (or which lie in
        the review folder of a check still being analysed). Run after purge_media by the same
        nightly job; an interrupted run is simply done again."""
        now = now or datetime.now(UTC)
        removed = 0
        for prefix in rules.BIOMETRIC_PREFIXES:
            after: str | None = None
            more = True
            while more:
                objects, more = await asyncio.to_thread(self._storage.listed, prefix, after, page)
                if not objects:
                    break
                after = objects[-1].key
                old = [o.key for o in objects if rules.past_grace(o.last_modified, now)]
                if not old:
                    continue
                orphans = await repo.unowned_media(
                    self._pool, old, [rules.folder_person(k) for k in old], [rules.review_folder_check(k) for k in old]
                )
                if orphans:
                    await asyncio.to_thread(self._storage.delete, orphans)
                    removed += len(orphans)
        return removed
