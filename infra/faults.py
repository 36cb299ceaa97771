"""Which failures pass by themselves: a dependency that is down, restarting, overloaded or slow.

A job that meets one is tried again later, and a request that meets one is answered 503 with
Retry-After; anything else is a fault of the work itself and is not hidden behind a retry.
"""

from __future__ import annotations

import asyncpg
from botocore.exceptions import ClientError, HTTPClientError
from botocore.exceptions import ConnectionError as S3ConnectionError

# Answers of S3 that say "not now", not "never".
_S3_BUSY = frozenset({"SlowDown", "InternalError", "ServiceUnavailable", "RequestTimeout", "503", "500"})


class DependencyUnavailable(Exception):
    """A dependency did not answer in time, or said it could not serve now."""

    def __init__(self, dependency: str, detail: str) -> None:
        super().__init__(f"{dependency}: {detail}")
        self.dependency = dependency


def transient(exc: BaseException) -> bool:
    """True when `exc`, or what caused it, is a failure that may be gone on the next try."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if _transient_itself(current):
            return True
        current = current.__cause__ or current.__context__
    return False


def _transient_itself(exc: BaseException) -> bool:
    # OSError: a refused or reset connection, a missing socket while the database restarts. Jobs and
    # requests read no local files, so none of these is the work's own fault.
    if isinstance(exc, DependencyUnavailable | OSError | S3ConnectionError | HTTPClientError):
        return True
    if isinstance(
        exc,
        asyncpg.PostgresConnectionError  # lost, refused, "the database system is starting up"
        | asyncpg.InterfaceError  # the connection was closed under the query
        | asyncpg.QueryCanceledError  # statement timeout
        | asyncpg.DeadlockDetectedError
        | asyncpg.SerializationError
        | asyncpg.TooManyConnectionsError
        | asyncpg.InsufficientResourcesError
        | asyncpg.OperatorInterventionError,  # admin shutdown, crash shutdown
    ):
        return True
    if isinstance(exc, ClientError):
        return str(exc.response.get("Error", {}).get("Code", "")) in _S3_BUSY
    return False
