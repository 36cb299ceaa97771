"""The outbox: what use cases call, inside their own transaction, to say what happened.

`publish_event` writes the domain event and, for an event a person is told about, its notice and
deliveries in the same statement; a retried use case writes neither twice (one dedupe key). A
completed disbursement run is told person by person from its payment records, by a job queued
with the run's completion.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from infra.db import UnitOfWork
from infra.jobs import enqueue
from notifications import repository as repo
from notifications.rules import release_at
from notifications.templates import KINDS, URGENT

ANNOUNCE_RUN_JOB = "notifications.announce_run"
ANNOUNCE_CONFIRMATIONS_JOB = "notifications.announce_confirmations"

# One-time codes (`*.code`) are sent at once and never stored; scans and runs write their notices set-based.
_EVENT_NOTICES = frozenset(k for k in KINDS if not k.endswith(".code"))


async def publish_event(
    uow: UnitOfWork, kind: str, person_id: uuid.UUID | None, payload: dict[str, Any], dedupe_key: str
) -> None:
    """A person's event (and their notice, for a kind they are told of), or with no person the
    system's event, which nobody is told of. The dedupe key is unique within the person."""
    if person_id is None:
        await repo.publish_system(uow, kind, payload, dedupe_key)
        return
    notice = None
    if kind in _EVENT_NOTICES:
        urgent = kind in URGENT
        notice = (urgent, release_at(datetime.now(UTC), urgent=urgent))
    await repo.publish(uow, kind, person_id, payload, dedupe_key, notice)


async def queue_run_announcement(uow: UnitOfWork, run_id: uuid.UUID) -> None:
    await enqueue(uow, ANNOUNCE_RUN_JOB, str(run_id).encode(), f"{ANNOUNCE_RUN_JOB}:{run_id}")


async def queue_confirmations_announcement(uow: UnitOfWork, pass_id: uuid.UUID) -> None:
    """The persons a completed silent pass confirmed are told, by a job of its own: half a million
    notices are not written inside the pass."""
    await enqueue(uow, ANNOUNCE_CONFIRMATIONS_JOB, str(pass_id).encode(), f"{ANNOUNCE_CONFIRMATIONS_JOB}:{pass_id}")
