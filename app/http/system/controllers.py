from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any

from litestar import Controller, get

from app.http.openapi import problems
from app.http.schemas import Body
from app.services import Services
from core.errors import ServiceUnavailable


class Health(Body):
    status: str
    database: bool | None = None
    storage: bool | None = None


class HealthController(Controller):
    path = "/health"
    tags = ["operations"]

    @get("/live", summary="The process is up")
    async def live(self) -> Health:
        return Health(status="ok")

    @get(
        "/ready",
        summary="The database and object storage are reachable (answered within 2 s)",
        responses=problems(ServiceUnavailable()),
    )
    async def ready(self, services: Services) -> Health:
        database, storage = await asyncio.gather(_within(_database(services)), _within(services.storage.ready()))
        if not (database and storage):
            raise ServiceUnavailable(headers={"Retry-After": str(READY_RETRY_S)})
        return Health(status="ok", database=database, storage=storage)


# A load balancer polls this: it must hear "not ready" while a dependency hangs, not wait with it.
READY_WITHIN_S = 1.5
READY_RETRY_S = 5


async def _database(services: Services) -> bool:
    return await services.pool.fetchval("SELECT true") is True


async def _within(check: Coroutine[Any, Any, bool]) -> bool:
    """The check's answer, or False once READY_WITHIN_S passed. A late check is cancelled but not waited
    for: cancelling a query on a frozen server waits on that server too."""
    task = asyncio.ensure_future(check)
    done, _ = await asyncio.wait({task}, timeout=READY_WITHIN_S)
    if not done:
        task.cancel()
        _abandoned.add(task)
        task.add_done_callback(_forget)
        return False
    try:
        return task.result()
    except Exception:  # whatever stopped the check (network, auth, a timeout), the answer is "not ready"
        return False


_abandoned: set[asyncio.Future[bool]] = set()  # referenced until their cancellation completes


def _forget(task: asyncio.Future[bool]) -> None:
    _abandoned.discard(task)
    if not task.cancelled():
        task.exception()  # read, so that asyncio does not log it as never retrieved: the answer was given
