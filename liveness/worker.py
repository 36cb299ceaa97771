"""The face worker's jobs: enrol a reference photo, analyse a submitted check.

The imperative shell around `liveness.pipeline`: it reads the check and media, runs the pure
analysis in the analyser process, and hands the result to the certification service, which
writes it once (a re-run of a killed worker's job finds the check decided and stops).
"""

from __future__ import annotations

import logging
import uuid
from datetime import timedelta

from infra.config import Settings
from infra.logging import request_id_var
from liveness import decision
from liveness.analyser import AnalyserCrashed, FaceAnalyser
from liveness.model import Action, Embedding, Media, Thresholds
from liveness.port import CertificationPort, WorkItem

log = logging.getLogger(__name__)

# A check whose analysis broke this many times goes to a reviewer, not round the queue forever.
MAX_ANALYSIS_ATTEMPTS = 3
RETRY_DELAY_S = 30


class FaceJobs:
    def __init__(self, certification: CertificationPort, analyser: FaceAnalyser, settings: Settings) -> None:
        self._cert = certification
        self._analyser = analyser
        self._thresholds = Thresholds.configured(settings)

    async def enroll(self, person_id: uuid.UUID, photo_key: str) -> Embedding | None:
        enrollment = await self._analyser.enroll(await self._cert.reference_photo(photo_key))
        await self._cert.save_enrollment(person_id, photo_key, enrollment)
        log.info("reference enrolled", extra={"person_id": str(person_id), "usable": enrollment.embedding is not None})
        return enrollment.embedding

    async def _reference(self, item: WorkItem) -> Embedding | None:
        if item.reference_photo_key is None:
            return None
        known = await self._cert.enrolled_reference(item.person_id, item.reference_photo_key)
        if known is not None:
            return known.embedding
        return await self.enroll(item.person_id, item.reference_photo_key)

    async def certify(self, check_id: uuid.UUID, person_id: uuid.UUID | None = None) -> None:
        """Analyse a check; `person_id`, its person, as the job names it (None in a job queued before)."""
        item = await self._cert.start_analysis(check_id, person_id)
        if item is None:
            log.info("check already decided", extra={"check_id": str(check_id)})
            return
        token = request_id_var.set(item.request_id)  # the request that caused the job names its log lines
        try:
            status = await self._certify(item)
            log.info("check analysed", extra={"check_id": str(check_id), "status": status, "attempt": item.attempts})
        except Exception:
            # Never leave a check stuck in "processing": try again later, then hand it to a person.
            log.exception("check analysis failed", extra={"check_id": str(check_id), "attempt": item.attempts})
            if item.attempts < MAX_ANALYSIS_ATTEMPTS:
                await self._cert.retry_later(item, timedelta(seconds=RETRY_DELAY_S * item.attempts))
            else:
                await self._cert.give_up(item)
        finally:
            request_id_var.reset(token)

    async def _certify(self, item: WorkItem) -> str | None:
        if item.attempts > MAX_ANALYSIS_ATTEMPTS:
            return await self._cert.give_up(item)
        # Without a usable reference photo the clip is still analysed (a reviewer sees its frames and
        # actions); the pipeline then sends a live clip to review, not the pensioner away.
        reference = await self._reference(item)
        blobs = await self._cert.load_media(item)
        media = Media(video=blobs[0]) if item.media_kind == "video" else Media(frames=blobs)
        earlier = await self._cert.earlier_submissions(item)
        challenge = [Action(a) for a in item.actions]
        for attempt in range(2):
            try:
                analysis = await self._analyser.analyse(media, challenge, reference, earlier, self._thresholds)
                break
            except AnalyserCrashed:
                log.warning("analyser process died", extra={"check_id": str(item.check_id), "try": attempt + 1})
        else:
            return await self._cert.give_up(item)
        # Then the whole population: a copy of another pensioner's recording, another pensioner's face.
        others = await self._cert.replay_candidates(item, analysis)
        collided = await self._cert.face_collision(item, analysis.embedding)
        analysis = decision.reconsider(analysis, others, collided is not None)
        keys = await self._cert.store_review_frames(item, analysis.review_frames)
        return await self._cert.record_analysis(item, analysis, keys)
