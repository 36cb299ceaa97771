"""Every background job kind and schedule, wired to the services: what `socialcard worker` and
`socialcard scheduler` run."""

from __future__ import annotations

import asyncio
import logging
import uuid
from contextlib import AsyncExitStack

from pgqueuer.models import Job

from app.services import open_services
from certification.evidence.service import SILENT_ACTOR, SILENT_JOB
from certification.service import CERTIFY_JOB, ENROLL_JOB, PURGE_MEDIA_JOB, certify_job
from infra import audit, audit_checkpoints, jobs
from infra.config import Settings
from liveness.analyser import FaceAnalyser
from liveness.worker import FaceJobs
from notifications.dispatcher import CHANNELS, DISPATCH_JOBS, Channel, Dispatcher
from notifications.outbox import ANNOUNCE_CONFIRMATIONS_JOB, ANNOUNCE_RUN_JOB
from notifications.push import push_channel
from notifications.service import REMIND_JOB
from payments.disbursement.service import DISBURSE_JOB
from payments.ledger.service import SETTLE_JOB
from payments.supervision.service import SCAN_ACTOR, SCAN_JOB

log = logging.getLogger(__name__)

SCHEDULES: dict[str, str] = {
    jobs.PURGE_EXPIRED: "*/10 * * * *",
    PURGE_MEDIA_JOB: "17 3 * * *",  # raw selfies past their retention period, and orphans, nightly
    REMIND_JOB: "0 1 * * *",  # 09:00 in China
    # Before the reminders: a person the data confirms is not reminded to film a selfie.
    SILENT_JOB: "30 0 * * *",
    # Fund supervision after the night's silent pass, before the operators' day (07:00 in China).
    SCAN_JOB: "0 23 * * *",
    # The audit chain's head, signed into the object store: rows younger than this can still be cut
    # from the tail unnoticed, so the interval is that window (a count(*) of the log is its cost).
    # Before it, the chain walked onward from its newest checkpoint, and in full once a day
    # (infra.audit_checkpoints), which bounds what the console's audit page walks.
    audit.ANCHOR_JOB: "*/10 * * * *",
    # The persons' clearing accounts carried into the fund's and the merchants' accounts, then the
    # ledger reconciled: hourly, so a merchant's account is never more than an hour behind.
    SETTLE_JOB: "5 * * * *",
    # A dispatcher polls for a minute's window, then the next tick starts the next one.
    **{DISPATCH_JOBS[channel]: "* * * * *" for channel in CHANNELS},
}
DISPATCH_WINDOW_S = 55.0


def _uuid_of(job: Job) -> uuid.UUID:
    """The id a job was queued with (its payload)."""
    return uuid.UUID((job.payload or b"").decode())


async def run_worker(settings: Settings, *, drain: bool = False) -> None:
    async with AsyncExitStack() as stack:
        services = await stack.enter_async_context(open_services(settings, pool_max=4, background=True))
        face = FaceJobs(services.certification, stack.enter_context(FaceAnalyser()), settings)
        push = push_channel(settings)
        stack.push_async_callback(push.aclose)
        dispatcher = Dispatcher(services.pool, settings, push, services.sms)
        stopping = asyncio.Event()

        async def purge_expired(job: Job) -> None:
            log.info("expired rows purged", extra={"removed": await jobs.purge_expired(services.pool)})

        async def certify(job: Job) -> None:
            person_id, check_id = certify_job(job.payload or b"")
            await face.certify(check_id, person_id)

        async def enroll(job: Job) -> None:
            person_id, _, photo_key = (job.payload or b"").decode().partition(" ")
            await face.enroll(uuid.UUID(person_id), photo_key)

        async def purge_media(job: Job) -> None:
            checks = await services.certification.purge_media()
            # Then what no check names (uploads cut short, frames of broken analyses), past a grace.
            orphans = await services.certification.sweep_orphan_media()
            log.info("certification media purged", extra={"checks": checks, "orphans": orphans})

        async def disburse(job: Job) -> None:
            run_id = _uuid_of(job)
            try:
                await services.disbursements.process(run_id)
            except Exception as exc:
                gave_up = jobs.next_try(job, exc) is None
                await services.disbursements.note_problem(run_id, f"{type(exc).__name__}: {exc}", gave_up=gave_up)
                raise

        async def announce_run(job: Job) -> None:
            await services.notifications.announce_run(_uuid_of(job))

        async def announce_confirmations(job: Job) -> None:
            await services.notifications.announce_confirmations(_uuid_of(job))

        async def remind(job: Job) -> None:
            await services.notifications.remind()

        async def silent_pass(job: Job) -> None:
            # Queued by the schedule (no payload) or by an administrator (the pass): either way the
            # running pass is resumed, or today's started.
            done = await services.evidence.run_pass(SILENT_ACTOR)
            log.info("silent pass done", extra={"pass_id": str(done.id), "confirmed": done.confirmed})

        async def supervision_scan(job: Job) -> None:
            done = await services.supervision.scan(SCAN_ACTOR)
            log.info("supervision scan done", extra={"scan_id": str(done.id), "raised": done.raised})

        async def anchor_audit(job: Job) -> None:
            # The walk first: a full one once a day, else each chain onward from its newest checkpoint
            # (the console then walks only what came since); then every chain's head, signed together.
            key = settings.audit_chain_key
            checkpoints = await audit_checkpoints.advance(services.pool, services.storage, key)
            problems = list(dict.fromkeys(p for c in checkpoints for p in c.problems))
            if problems:
                log.error("audit chain tampered", extra={"problems": problems})
            anchor = await audit.write_anchor(services.pool, services.storage, key)
            log.info(
                "audit chain anchored",
                extra={
                    "rows": anchor.count if anchor else None,
                    "chains": len(anchor.heads) if anchor else None,
                    "checkpoints": len(checkpoints),
                    "full_walk": checkpoints[0].full_walk if checkpoints else None,
                },
            )

        async def settle_ledger(job: Job) -> None:
            carried = await services.medical.settle()
            mismatches = await services.medical.reconcile()
            if mismatches:
                log.error("ledger does not reconcile", extra={"mismatches": [repr(m) for m in mismatches]})
            log.info("ledger settled", extra={"accounts": carried, "reconciled": not mismatches})

        def dispatch(channel: Channel) -> jobs.Handler:
            async def handler(job: Job) -> None:
                await dispatcher.run(channel, window_s=DISPATCH_WINDOW_S, stop=stopping)

            return handler

        handlers = {
            jobs.PURGE_EXPIRED: purge_expired,
            CERTIFY_JOB: certify,
            ENROLL_JOB: enroll,
            PURGE_MEDIA_JOB: purge_media,
            DISBURSE_JOB: disburse,
            ANNOUNCE_RUN_JOB: announce_run,
            ANNOUNCE_CONFIRMATIONS_JOB: announce_confirmations,
            REMIND_JOB: remind,
            SILENT_JOB: silent_pass,
            SCAN_JOB: supervision_scan,
            audit.ANCHOR_JOB: anchor_audit,
            SETTLE_JOB: settle_ledger,
            **{DISPATCH_JOBS[channel]: dispatch(channel) for channel in CHANNELS},
        }
        await jobs.run_worker(settings, handlers, drain=drain, stopping=stopping)


async def run_scheduler(settings: Settings) -> None:
    await jobs.run_scheduler(settings, SCHEDULES)
