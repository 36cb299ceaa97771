"""Every background job kind and schedule, wired to the services: what `socialcard worker` and
`socialcard scheduler` run."""

from __future__ import annotations

import logging
import uuid
from contextlib import AsyncExitStack

from pgqueuer.models import Job

from app.certification.service import CERTIFY_JOB, ENROLL_JOB, PURGE_MEDIA_JOB
from app.services import open_services
from infra import jobs
from infra.config import Settings
from liveness.analyser import FaceAnalyser
from liveness.worker import FaceJobs
from payments.disbursement.service import DISBURSE_JOB

log = logging.getLogger(__name__)

SCHEDULES: dict[str, str] = {
    jobs.PURGE_EXPIRED: "*/10 * * * *",
    PURGE_MEDIA_JOB: "17 3 * * *",  # raw selfies past their retention period, nightly
}


async def run_worker(settings: Settings, *, drain: bool = False) -> None:
    async with AsyncExitStack() as stack:
        services = await stack.enter_async_context(open_services(settings, pool_max=4))
        face = FaceJobs(services.certification, stack.enter_context(FaceAnalyser()), settings)

        async def purge_expired(job: Job) -> None:
            log.info("expired rows purged", extra={"removed": await jobs.purge_expired(services.pool)})

        async def certify(job: Job) -> None:
            await face.certify(uuid.UUID((job.payload or b"").decode()))

        async def enroll(job: Job) -> None:
            person_id, _, photo_key = (job.payload or b"").decode().partition(" ")
            await face.enroll(uuid.UUID(person_id), photo_key)

        async def purge_media(job: Job) -> None:
            log.info("certification media purged", extra={"checks": await services.certification.purge_media()})

        async def disburse(job: Job) -> None:
            await services.disbursements.process(uuid.UUID((job.payload or b"").decode()))

        handlers = {
            jobs.PURGE_EXPIRED: purge_expired,
            CERTIFY_JOB: certify,
            ENROLL_JOB: enroll,
            PURGE_MEDIA_JOB: purge_media,
            DISBURSE_JOB: disburse,
        }
        await jobs.run_worker(settings, handlers, drain=drain)


async def run_scheduler(settings: Settings) -> None:
    await jobs.run_scheduler(settings, SCHEDULES)
