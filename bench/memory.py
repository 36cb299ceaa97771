"""`make bench-memory`: the API's memory over 100,000 requests, which should stay flat.

Starts the system as `make run` configures it (embedded PostgreSQL and S3 in a private folder, granian
with 2 API workers, logging at INFO) and seeds cardholders with active cards and a terminal. Then 32
keep-alive connections (each opened again after 100 requests) send a realistic mix, in rounds of 20:
  4 GET /health/live, 1 GET /health/ready (PostgreSQL and S3), 3 POST /v1/auth/otp (one code sent to a
  new phone from a new client address, two refused with 429 by the phone's and the client's hourly
  limits; clients named in X-Real-IP as a proxy would), 5 GET /v1/card, 3 QR mints (POST /v1/card/qr,
  one with its SVG) each verified by the terminal (POST /v1/terminal/qr/verify), 1 refusal (401 for
  a bad token or 404 for an unknown path).
The RSS of the API's processes (granian's main process and its workers) is sampled once the API is
up, after a warm-up of WARM_UP requests, and after every 10,000 of the measured requests. The report
gives the growth from after the warm-up to the end, in MiB and %, and a pass/fail line against the
bound; bench-results/memory.json keeps the last run.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

import psutil
import uvloop

from bench.load import ROOT, HttpConnection, wait_for_api
from bench.qr_roundtrip import seed
from bench.system import embedded_system
from infra.config import Settings, settings_env
from infra.embedded import exit_on_sigterm

BENCH_S3_PORT = 38833  # clear of make run's, the tests' and the other benchmarks' (infra.embedded.weed_ports)
API_PORT = 8097
ROUND = 20  # requests per round of the mix
WARM_UP = 5_000
SAMPLE_EVERY = 10_000
CONNECTIONS = 32
REQUESTS_PER_CONNECTION = 100
# Pass: the API's RSS after the measured requests is at most this much above its RSS after the warm-up.
BOUND_MIB = 20.0
BOUND_PCT = 10.0
MIB = 1024 * 1024


class Connection(HttpConnection):
    """bench.load's keep-alive client, for any method; the last answer's body is kept."""

    last_body: bytes = b""

    async def call(self, method: str, path: str, auth: str | None = None, body: bytes = b"", extra: str = "") -> int:
        head = f"{method} {path} HTTP/1.1\r\nHost: bench\r\n{extra}"
        if auth is not None:
            head += f"Authorization: Bearer {auth}\r\n"
        if method == "POST":
            head += f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
        self.writer.write((head + "\r\n").encode() + body)
        raw = await self.reader.readuntil(b"\r\n\r\n")
        lines = raw.split(b"\r\n")
        length = next(int(v) for k, _, v in (ln.partition(b":") for ln in lines[1:]) if k.lower() == b"content-length")
        self.last_body = await self.reader.readexactly(length)
        return int(lines[0].split()[1])


def api_processes(main: psutil.Process) -> list[psutil.Process]:
    return [main, *main.children(recursive=True)]


def sample(main: psutil.Process, requests: int, label: str) -> dict[str, Any]:
    """RSS (and PSS, which counts pages the workers share with the main process once) of every API process."""
    processes = []
    for p in api_processes(main):
        try:
            full = p.memory_full_info()
        except psutil.NoSuchProcess:
            continue
        processes.append({"pid": p.pid, "rss_mib": round(full.rss / MIB, 1), "pss_mib": round(full.pss / MIB, 1)})
    return {
        "label": label,
        "requests": requests,
        "rss_mib": round(sum(p["rss_mib"] for p in processes), 1),
        "pss_mib": round(sum(p["pss_mib"] for p in processes), 1),
        "processes": processes,
    }


class Mix:
    """Rounds of the request mix over keep-alive connections, with a count of every status seen."""

    def __init__(self, access: list[str], terminal_key: str) -> None:
        self.access, self.key = access, terminal_key
        self.statuses: dict[str, int] = {}
        self.rounds = 0

    def _seen(self, what: str, status: int) -> None:
        key = f"{what} {status}"
        self.statuses[key] = self.statuses.get(key, 0) + 1

    async def round(self, conn: Connection) -> None:
        n = self.rounds = self.rounds + 1
        holder = self.access[n % len(self.access)]
        for _ in range(4):
            self._seen("GET /health/live", await conn.call("GET", "/health/live"))
        self._seen("GET /health/ready", await conn.call("GET", "/health/ready"))
        for i in range(3):
            # One code for a new phone from a new client address (sent, 202), two for a few phones from a
            # few addresses whose hourly limits are spent (refused, 429): a sign-in storm's mix.
            k = 3 * n + i
            phone, client = (
                (f"136{k:08d}", f"10.{k >> 16 & 255}.{k >> 8 & 255}.{k & 255}")
                if i == 0
                else (f"137{k % 50:08d}", f"192.168.0.{k % 20}")
            )
            body = json.dumps({"phone": phone}).encode()
            extra = f"X-Real-IP: {client}\r\n"
            self._seen("POST /v1/auth/otp", await conn.call("POST", "/v1/auth/otp", body=body, extra=extra))
        for _ in range(5):
            self._seen("GET /v1/card", await conn.call("GET", "/v1/card", holder))
        for i in range(3):
            # The first with its SVG rendering, as apps that do not draw the code ask for it.
            status = await conn.call("POST", "/v1/card/qr" if i == 0 else "/v1/card/qr?svg=false", holder)
            self._seen("POST /v1/card/qr", status)
            token = json.loads(conn.last_body)["token"] if status == 201 else "none"
            verify = json.dumps({"token": token}).encode()
            self._seen(
                "POST /v1/terminal/qr/verify", await conn.call("POST", "/v1/terminal/qr/verify", self.key, verify)
            )
        if n % 2:
            self._seen("GET /v1/card (bad token)", await conn.call("GET", "/v1/card", "at.not-a-token"))
        else:
            self._seen("GET /nowhere", await conn.call("GET", "/nowhere"))


async def drive(port: int, mix: Mix, requests: int, on_progress: Callable[[int], None] | None = None) -> float:
    """`requests` requests of the mix (whole rounds) over CONNECTIONS connections; seconds taken.
    `on_progress(done)` is called each time a round completes."""
    rounds_left = requests // ROUND
    done = 0

    async def client() -> None:
        nonlocal rounds_left, done
        conn: Connection | None = None
        used = 0
        try:
            while rounds_left > 0:
                rounds_left -= 1
                if conn is None or used >= REQUESTS_PER_CONNECTION:
                    if conn is not None:
                        conn.close()
                    reader, writer = await asyncio.open_connection("127.0.0.1", port)
                    conn, used = Connection(reader, writer), 0
                await mix.round(conn)
                used += ROUND
                done += ROUND
                if on_progress is not None:
                    on_progress(done)
        finally:
            if conn is not None:
                conn.close()

    started = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(CONNECTIONS)))
    return time.perf_counter() - started


@contextmanager
def api(settings: Settings) -> Iterator[psutil.Process]:
    """`socialcard serve` as `make run` starts it; its main process, stopped afterwards."""
    process = subprocess.Popen(
        [sys.executable, "-m", "app.cli", "serve"],
        env={**os.environ, **settings_env(settings)},
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        yield psutil.Process(process.pid)
    finally:
        process.terminate()
        process.wait(60)


def measure(settings: Settings, args: argparse.Namespace) -> dict[str, Any]:
    async def run(main: psutil.Process) -> dict[str, Any]:
        access, _, key, _ = await seed(settings.migration_database_url, settings, args.holders)
        await wait_for_api(settings.api_port)
        for _ in range(100):  # both workers up: granian's main process and its two children
            if len(api_processes(main)) == 3:
                break
            await asyncio.sleep(0.1)
        await asyncio.sleep(1.0)
        samples = [sample(main, 0, "API up, no request yet")]
        mix = Mix(access, key)
        warm_s = await drive(settings.api_port, mix, WARM_UP)
        samples.append(sample(main, 0, f"after a warm-up of {WARM_UP:,} requests"))
        mark = SAMPLE_EVERY

        def progress(done: int) -> None:
            nonlocal mark
            if done >= mark:
                samples.append(sample(main, done, f"after {done:,} requests"))
                mark += SAMPLE_EVERY

        measured_s = await drive(settings.api_port, mix, args.requests, progress)
        return {
            "samples": samples,
            "warm_up_s": round(warm_s, 1),
            "measured_s": round(measured_s, 1),
            "requests_per_s": round(args.requests / measured_s, 1),
            "statuses": dict(sorted(mix.statuses.items())),
        }

    with api(settings) as main:
        return uvloop.run(run(main))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=100_000, help="measured requests (a multiple of 20)")
    parser.add_argument("--holders", type=int, default=200)
    args = parser.parse_args()

    exit_on_sigterm()
    # The sign-in limits as in production, per client address: the load generator names its clients in
    # X-Real-IP (as a proxy would), so that codes are both sent and refused.
    with embedded_system(
        "socialcard-bench-memory-",
        BENCH_S3_PORT,
        API_PORT=str(API_PORT),
        LOG_LEVEL="INFO",
        CLIENT_IP_HEADER="X-Real-IP",
    ) as (settings, _):
        results = measure(settings, args)

    samples = results["samples"]
    base, end = samples[1], samples[-1]
    growth = end["rss_mib"] - base["rss_mib"]
    growth_pct = 100 * growth / base["rss_mib"]
    second_half = [s for s in samples[2:] if s["requests"] >= args.requests // 2]
    results["growth"] = {
        "rss_mib": round(growth, 1),
        "rss_pct": round(growth_pct, 1),
        "pss_mib": round(end["pss_mib"] - base["pss_mib"], 1),
        "second_half_rss_mib": round(second_half[-1]["rss_mib"] - second_half[0]["rss_mib"], 1)
        if second_half
        else None,
    }
    passed = growth <= BOUND_MIB and growth_pct <= BOUND_PCT
    results["bound"] = {"rss_mib": BOUND_MIB, "rss_pct": BOUND_PCT, "passed": passed}
    results["config"] = {
        "requests": args.requests,
        "warm_up": WARM_UP,
        "connections": CONNECTIONS,
        "requests_per_connection": REQUESTS_PER_CONNECTION,
        "holders": args.holders,
        "api_workers": settings.api_workers,
        "cpus": os.cpu_count(),
        "at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    out = ROOT / "bench-results"
    out.mkdir(exist_ok=True)
    (out / "memory.json").write_text(json.dumps(results, indent=2))

    print(f"{'':40}{'RSS MiB':>10}{'PSS MiB':>10}   per process (RSS)")
    for s in samples:
        per = " ".join(f"{p['rss_mib']:.0f}" for p in s["processes"])
        print(f"{s['label']:40}{s['rss_mib']:>10.1f}{s['pss_mib']:>10.1f}   {per}")
    g = results["growth"]
    print(
        f"{args.requests:,} requests in {results['measured_s']} s ({results['requests_per_s']}/s); "
        f"statuses: {', '.join(f'{k}: {v:,}' for k, v in results['statuses'].items())}"
    )
    print(
        f"RSS growth after the warm-up: {g['rss_mib']:+.1f} MiB ({g['rss_pct']:+.1f}%), PSS {g['pss_mib']:+.1f} MiB; "
        f"over the second half {g['second_half_rss_mib']:+.1f} MiB"
    )
    print(
        f"{'PASS' if passed else 'FAIL'}: growth {g['rss_mib']:+.1f} MiB ({g['rss_pct']:+.1f}%), "
        f"bound <= {BOUND_MIB:g} MiB and <= {BOUND_PCT:g}%"
    )
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
