"""The asyncpg pool and the unit of work: one transaction around one use case."""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, Protocol

import asyncpg
from asyncpg.pool import PoolConnectionProxy


class StatelessConnection(asyncpg.Connection):  # type: ignore[misc]
    """A pooled connection released without asyncpg's reset query (one round trip saved per use).

    Safe because pooled connections carry no session state: locks are transaction-scoped
    (pg_advisory_xact_lock), nothing LISTENs or SETs on them, and asyncpg still rolls back a
    transaction left open. The migrator and the queue use connections of their own.
    """

    def get_reset_query(self) -> str:
        return ""


def _jsonb(value: object) -> str:
    # A str is JSON text already: pgqueuer serialises its own jsonb values (job headers) before
    # handing them to a connection that may be this pool's. Our own jsonb values are dicts and lists.
    return value if isinstance(value, str) else json.dumps(value, allow_nan=False)


async def _init_connection(conn: asyncpg.Connection) -> None:
    await conn.set_type_codec("jsonb", encoder=_jsonb, decoder=json.loads, schema="pg_catalog")


class BoundedPool(asyncpg.Pool):  # type: ignore[misc]
    """A pool whose every acquisition waits at most `acquire_timeout` seconds (TimeoutError after), the
    pool's own fetch/execute shortcuts included: with the database frozen or every connection stuck,
    a request is answered 503 in seconds instead of queueing for as long as the freeze lasts."""

    def __init__(self, *args: Any, acquire_timeout: float, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._acquire_timeout = acquire_timeout

    def acquire(self, *, timeout: float | None = None) -> Any:
        return super().acquire(timeout=self._acquire_timeout if timeout is None else timeout)


async def create_pool(
    url: str,
    *,
    min_size: int = 2,
    max_size: int = 10,
    acquire_timeout_s: float = 3.0,
    statement_timeout_s: float = 10.0,
) -> asyncpg.Pool:
    """`statement_timeout_s` is kept by the client (command_timeout): it holds when the server does
    not answer at all, which a server-side statement_timeout cannot."""
    pool = BoundedPool(
        url,
        min_size=min_size,
        max_size=max_size,
        max_queries=50_000,
        max_inactive_connection_lifetime=300.0,
        setup=None,
        init=_init_connection,
        reset=None,
        loop=None,
        connection_class=StatelessConnection,
        record_class=asyncpg.Record,
        acquire_timeout=acquire_timeout_s,
        command_timeout=statement_timeout_s,
        timeout=max(acquire_timeout_s, 5.0),  # opening a connection
        # The process id tells, in pg_stat_activity, which API or worker process holds a connection.
        server_settings={"application_name": f"socialcard:{os.getpid()}", "timezone": "UTC"},
    )
    await pool
    return pool


class Db(Protocol):
    """What repositories need: a pool (one statement, no transaction) or a unit of work."""

    async def fetchrow(self, sql: str, /, *args: Any) -> asyncpg.Record | None: ...
    async def fetch(self, sql: str, /, *args: Any) -> list[asyncpg.Record]: ...
    async def fetchval(self, sql: str, /, *args: Any) -> Any: ...
    async def execute(self, sql: str, /, *args: Any) -> str: ...


class UnitOfWork:
    """A connection inside a transaction; repositories take it, services commit by leaving the block."""

    def __init__(self, conn: asyncpg.Connection[Any] | PoolConnectionProxy[Any]) -> None:
        self.conn = conn

    async def fetchrow(self, sql: str, *args: Any) -> asyncpg.Record | None:
        return await self.conn.fetchrow(sql, *args)

    async def fetch(self, sql: str, *args: Any) -> list[asyncpg.Record]:
        return await self.conn.fetch(sql, *args)

    async def fetchval(self, sql: str, *args: Any) -> Any:
        return await self.conn.fetchval(sql, *args)

    async def execute(self, sql: str, *args: Any) -> str:
        return await self.conn.execute(sql, *args)


class CommitThenRaise(Exception):
    """Raised inside a unit of work to keep what it wrote (a counted failed attempt, a revoked
    session) and still answer the caller with `error`."""

    def __init__(self, error: Exception) -> None:
        super().__init__(str(error))
        self.error = error


@asynccontextmanager
async def unit_of_work(pool: asyncpg.Pool) -> AsyncIterator[UnitOfWork]:
    """Commit when the block ends normally or with CommitThenRaise; roll back on any other error."""
    async with pool.acquire() as conn:
        transaction = conn.transaction()
        await transaction.start()
        try:
            yield UnitOfWork(conn)
        except CommitThenRaise as keep:
            await transaction.commit()
            raise keep.error from None
        except BaseException:
            await transaction.rollback()
            raise
        await transaction.commit()
