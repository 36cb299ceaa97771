"""Domain events: what happened to a person, written in the transaction that made it happen.

The notification dispatcher reads them; the dedupe key makes a retried use case write its event once.
"""

from __future__ import annotations

import uuid
from typing import Any

from infra.db import UnitOfWork


async def add_event(
    uow: UnitOfWork, kind: str, person_id: uuid.UUID | None, payload: dict[str, Any], dedupe_key: str
) -> None:
    await uow.execute(
        """INSERT INTO domain_events (kind, person_id, payload, dedupe_key) VALUES ($1, $2, $3, $4)
           ON CONFLICT (dedupe_key) DO NOTHING""",
        kind,
        person_id,
        payload,
        dedupe_key,
    )
