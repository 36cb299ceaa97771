"""The load generator the benchmarks share: a small HTTP client, closed- and open-loop drivers, and
the API started as `make run` starts it."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from infra.config import Settings, settings_env

ROOT = Path(__file__).resolve().parents[1]


class HttpConnection:
    """A minimal HTTP/1.1 keep-alive client, so the load generator costs little of the 2 cores."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def open(cls, port: int) -> HttpConnection:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        return cls(reader, writer)

    async def post(self, path: str, auth: str, body: bytes, extra: str = "") -> tuple[int, bytes]:
        """`extra`: more header lines, each ending in CRLF."""
        head = (
            f"POST {path} HTTP/1.1\r\nHost: bench\r\nAuthorization: Bearer {auth}\r\n{extra}"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
        ).encode()
        self.writer.write(head + body)
        raw = await self.reader.readuntil(b"\r\n\r\n")
        lines = raw.split(b"\r\n")
        status = int(lines[0].split()[1])
        length = next(int(v) for k, _, v in (ln.partition(b":") for ln in lines[1:]) if k.lower() == b"content-length")
        return status, await self.reader.readexactly(length)

    def close(self) -> None:
        self.writer.close()


def percentile_ms(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * p))] * 1000 if ordered else float("nan")


@dataclass(frozen=True)
class Call:
    path: str
    auth: str
    body: bytes
    headers: str = ""  # more header lines, each ending in CRLF


def _summary(latencies: list[float], elapsed: float, refusals: dict[str, int]) -> dict[str, Any]:
    done = len(latencies) - sum(refusals.values())
    return {
        "calls": len(latencies),
        "succeeded_per_s": round(done / elapsed, 1),
        "p50_ms": round(percentile_ms(latencies, 0.50), 2),
        "p99_ms": round(percentile_ms(latencies, 0.99), 2),
        "failures": sum(refusals.values()),
        "refusals": refusals,
    }


def _refused(refusals: dict[str, int], status: int, body: bytes) -> None:
    try:
        code = json.loads(body).get("code")
    except ValueError:
        code = None
    key = f"{status} {code}"
    refusals[key] = refusals.get(key, 0) + 1


async def closed_loop(port: int, calls: Sequence[Call], concurrency: int, ok: int) -> dict[str, Any]:
    """Each call once, over `concurrency` keep-alive connections each sending its next call as soon as
    the last is answered: throughput at `concurrency` in flight. Only answers `ok` count as done."""
    latencies: list[float] = []
    refusals: dict[str, int] = {}
    queue = list(reversed(calls))

    async def worker() -> None:
        conn = await HttpConnection.open(port)
        try:
            while queue:
                call = queue.pop()
                t0 = time.perf_counter()
                status, body = await conn.post(call.path, call.auth, call.body, call.headers)
                latencies.append(time.perf_counter() - t0)
                if status != ok:
                    _refused(refusals, status, body)
        finally:
            conn.close()

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return {"in_flight": concurrency, **_summary(latencies, time.perf_counter() - started, refusals)}


async def open_loop(port: int, calls: Sequence[Call], rate: float, ok: int) -> dict[str, Any]:
    """The calls started on a fixed schedule whatever the server does, latency measured from when
    each should have started (no coordinated omission); the rate reported is the one achieved."""
    conns = [await HttpConnection.open(port) for _ in range(64)]
    free: asyncio.Queue[HttpConnection] = asyncio.Queue()
    for c in conns:
        free.put_nowait(c)
    latencies: list[float] = []
    refusals: dict[str, int] = {}

    async def one(call: Call, scheduled: float) -> None:
        conn = await free.get()
        try:
            status, body = await conn.post(call.path, call.auth, call.body, call.headers)
        finally:
            free.put_nowait(conn)
        latencies.append(time.perf_counter() - scheduled)
        if status != ok:
            _refused(refusals, status, body)

    start = time.perf_counter() + 0.05
    tasks = []
    for n, call in enumerate(calls):
        scheduled = start + n / rate
        await asyncio.sleep(max(0.0, scheduled - time.perf_counter()))
        tasks.append(asyncio.create_task(one(call, scheduled)))
    await asyncio.gather(*tasks)
    elapsed = time.perf_counter() - start
    for c in conns:
        c.close()
    return {"target_rate_per_s": rate, **_summary(latencies, elapsed, refusals)}


async def mint_codes(port: int, access: Sequence[str], count: int) -> list[str]:
    """`count` QR codes minted over 16 connections by the cardholders whose access tokens are given."""
    conns = [await HttpConnection.open(port) for _ in range(16)]
    minted: list[str] = []

    async def worker(n: int) -> None:
        while len(minted) < count:
            status, body = await conns[n].post("/v1/card/qr?svg=false", access[(len(minted) + n) % len(access)], b"")
            assert status == 201, body
            minted.append(json.loads(body)["token"])

    await asyncio.gather(*(worker(n) for n in range(len(conns))))
    for c in conns:
        c.close()
    return minted[:count]


async def wait_for_api(port: int) -> None:
    for _ in range(300):
        try:
            (await HttpConnection.open(port)).close()
            return
        except OSError:
            await asyncio.sleep(0.1)
    raise RuntimeError(f"the API did not listen on {port} within 30 s")


@contextmanager
def running_api(settings: Settings) -> Iterator[None]:
    """`socialcard serve` (granian, API_WORKERS workers) on these settings, stopped afterwards."""
    api = subprocess.Popen(
        [sys.executable, "-m", "app.cli", "serve"],
        env={**os.environ, **settings_env(settings)},
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        yield
    finally:
        api.terminate()
        api.wait(30)
