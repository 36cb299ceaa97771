"""Hung dependencies have a time limit (issue 17, item 4): with PostgreSQL or S3 frozen (SIGSTOP), the
readiness check answers within 2 s, and a request that needs the frozen part gets a 503 problem with
Retry-After in seconds, not after the freeze; once thawed, everything answers again."""

from __future__ import annotations

import signal
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import asyncpg
import msgspec
import psutil
import pytest

from infra.config import Settings
from tests.conftest import FACES, Embedded, Importer
from tests.factories import applicant, problem_code, submit_video

# Short request limits, so the test waits for them and not for the defaults (3 s and 10 s).
LIMITS = {"db_acquire_timeout_s": 2, "db_statement_timeout_s": 2, "s3_timeout_s": 2}


@pytest.fixture
async def limited(settings: Settings) -> AsyncIterator[Any]:
    from litestar.testing import AsyncTestClient

    from app.asgi import create_app

    async with AsyncTestClient(create_app(msgspec.structs.replace(settings, **LIMITS))) as client:
        yield client


@contextmanager
def frozen(processes: list[psutil.Process]) -> Iterator[None]:
    for process in processes:
        process.send_signal(signal.SIGSTOP)
    try:
        yield
    finally:
        for process in processes:
            process.send_signal(signal.SIGCONT)


def _postgres(embedded: Embedded) -> list[psutil.Process]:
    postmaster = psutil.Process(int((embedded.postgres.pgdata / "postmaster.pid").read_text().splitlines()[0]))
    return [postmaster, *postmaster.children(recursive=True)]


async def _timed(call: Any) -> tuple[Any, float]:
    started = time.monotonic()
    answer = await call
    return answer, time.monotonic() - started


def _assert_unavailable(r: Any, code: str) -> None:
    assert r.status_code == 503, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    assert int(r.headers["retry-after"]) > 0
    assert problem_code(r) == code


async def test_a_frozen_database_gets_a_503_in_seconds(
    limited: Any, pool: asyncpg.Pool, embedded: Embedded, importer: Importer, tmp_path: Path
) -> None:
    who = await applicant(limited, pool, importer, tmp_path)
    assert (await limited.get("/v1/card", headers=who.headers)).status_code == 200
    with frozen(_postgres(embedded)):
        r, took = await _timed(limited.get("/health/ready"))
        _assert_unavailable(r, "service_unavailable")
        assert took < 2.0, took
        r, took = await _timed(limited.get("/v1/card", headers={**who.headers, "Accept-Language": "en"}))
        _assert_unavailable(r, "dependency_unavailable")
        assert "try again" in r.json()["detail"]
        assert took < 6.0, took  # the statement limit (2 s) plus the acquisition limit at worst
    # Thawed: the same pool serves again (the connections cut by the timeout are replaced).
    deadline = time.monotonic() + 20
    while (r := await limited.get("/v1/card", headers=who.headers)).status_code != 200:
        assert time.monotonic() < deadline, r.text
    assert (await limited.get("/health/ready")).status_code == 200


async def test_a_frozen_object_store_gets_a_503_in_seconds(
    limited: Any, pool: asyncpg.Pool, embedded: Embedded, importer: Importer, tmp_path: Path
) -> None:
    who = await applicant(limited, pool, importer, tmp_path)
    video = (FACES / "video" / "live_blink__eye_blink.mp4").read_bytes()
    with frozen([psutil.Process(embedded.s3.process.pid)]):
        r, took = await _timed(limited.get("/health/ready"))
        _assert_unavailable(r, "service_unavailable")
        assert took < 2.0, took
        (_, r), took = await _timed(submit_video(limited, who.headers, video))
        _assert_unavailable(r, "dependency_unavailable")
        assert took < 15.0, took  # two tries of 2 s each, and their connection attempts
        print(f"submission with S3 frozen answered 503 after {took:.1f} s")
    assert await pool.fetchval("SELECT count(*) FROM certification_checks") == 0  # nothing half-recorded
    deadline = time.monotonic() + 20
    while (r := await limited.get("/health/ready")).status_code != 200:
        assert time.monotonic() < deadline, r.text
    _, r = await submit_video(limited, who.headers, video)
    assert r.status_code == 202, r.text
