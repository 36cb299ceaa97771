from __future__ import annotations

from litestar import Controller, get

from app.errors import ServiceUnavailable
from app.schemas import Body
from app.services import Services


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

    @get("/ready", summary="The database and object storage are reachable")
    async def ready(self, services: Services) -> Health:
        try:
            database = await services.pool.fetchval("SELECT true", timeout=2) is True
        except Exception:  # whatever stops the query (network, auth, timeout), the answer is "not ready"
            database = False
        storage = await services.storage.ready()
        if not (database and storage):
            raise ServiceUnavailable()
        return Health(status="ok", database=database, storage=storage)
