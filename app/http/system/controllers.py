"""Operations: health for load balancers, metrics for Prometheus."""

from __future__ import annotations

import asyncio
import hmac
import ipaddress
from collections.abc import Coroutine, Mapping
from typing import Any, TypeVar

from litestar import Controller, Request, Response, get

from app.http.openapi import problems
from app.http.schemas import Body
from app.services import Services
from core.errors import AppError, Forbidden, ServiceUnavailable, Unauthorized
from infra import jobs, metrics

T = TypeVar("T")


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


async def _within(check: Coroutine[Any, Any, T]) -> T | None:
    """The check's answer, or None once READY_WITHIN_S passed. A late check is cancelled but not waited
    for: cancelling a query on a frozen server waits on that server too."""
    task = asyncio.ensure_future(check)
    done, _ = await asyncio.wait({task}, timeout=READY_WITHIN_S)
    if not done:
        task.cancel()
        _abandoned.add(task)
        task.add_done_callback(_forget)
        return None
    try:
        return task.result()
    except Exception:  # whatever stopped the check (network, auth, a timeout), the answer is "not ready"
        return None


_abandoned: set[asyncio.Future[Any]] = set()  # referenced until their cancellation completes


def _forget(task: asyncio.Future[Any]) -> None:
    _abandoned.discard(task)
    if not task.cancelled():
        task.exception()  # read, so that asyncio does not log it as never retrieved: the answer was given


class MetricsController(Controller):
    """The Prometheus scrape. Not in the OpenAPI document: it is for the monitoring system, not for apps."""

    path = "/metrics"
    include_in_schema = False

    @get("/", summary="Prometheus metrics of every process (docs/metrics.md)")
    async def scrape(self, request: Request[Any, Any, Any], services: Services) -> Response[bytes]:
        settings = services.settings
        peer = request.client.host if request.client else None
        refused = scrape_refusal(settings.metrics_token, request.headers, peer, settings.client_ip_header)
        if refused is not None:
            raise refused
        # Levels are read from the database now: a scrape that cannot reach it still answers, with the
        # counts, and says so (socialcard_scrape_database_up 0), rather than failing the whole scrape.
        queue, backlog = await asyncio.gather(
            _within(jobs.queue_depth(services.pool)), _within(services.notifications.backlog())
        )
        levels = [
            metrics.Gauge(
                "socialcard_scrape_database_up",
                "1 when this scrape read the queue and the notification backlog from the database",
                (),
                [((), float(queue is not None and backlog is not None))],
            ),
            metrics.Gauge(
                "socialcard_job_queue_depth",
                "Background jobs in the queue, by job type and status (queued, picked, failed)",
                ("job", "status"),
                [((job, status), n) for job, status, n in queue or ()],
            ),
            metrics.Gauge(
                "socialcard_notification_backlog",
                "Notification deliveries pending (to be sent) and dead (awaiting an administrator), by channel",
                ("channel", "state"),
                [((channel, state), n) for channel, state, n in backlog or ()],
            ),
        ]
        return Response(metrics.exposition(levels), media_type=metrics.CONTENT_TYPE)


# Headers a reverse proxy adds: a request that came through one is not the local monitoring agent,
# however local the proxy's own address.
PROXY_HEADERS = ("forwarded", "x-forwarded-for", "x-real-ip")


def scrape_refusal(
    token: str | None, headers: Mapping[str, str], peer: str | None, client_ip_header: str | None
) -> AppError | None:
    """Who may scrape: with METRICS_TOKEN set, whoever sends it as a bearer token; without it, only a
    client on this machine (a loopback address) that did not come through a proxy. None: allowed."""
    if token is not None:
        scheme, _, given = headers.get("authorization", "").partition(" ")
        if scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), token.encode()):
            return None
        return Unauthorized(headers={"WWW-Authenticate": 'Bearer realm="metrics"'})
    proxied = any(name in headers for name in (*PROXY_HEADERS, *((client_ip_header,) if client_ip_header else ())))
    if not proxied and _loopback(peer):
        return None
    return Forbidden()


def _loopback(host: str | None) -> bool:
    try:
        return host is not None and ipaddress.ip_address(host).is_loopback
    except ValueError:  # not an address (a test client's made-up name)
        return False
