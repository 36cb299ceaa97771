"""`make bench`: QR mint + terminal verify over HTTP, and the same SQL through bare asyncpg.

Starts the system as `make run` configures it (embedded PostgreSQL, two granian API workers) in a
private folder, seeds cardholders and a terminal, then measures in one run:
  1. HTTP round trips (mint, then verify) at full speed: verifications/s, p50/p99 per request;
  2. verify latency at a fixed 300 requests/s (open loop): p50/p99;
  3. bare asyncpg running the same statements the API runs for a round trip: round trips/s.
It prints a table and the HTTP/bare ratio, and writes the figures to bench-results/qr.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import uvloop

from auth import repository as auth_repo
from auth import tokens
from bench.load import Call, HttpConnection, mint_codes, open_loop, percentile_ms, running_api, wait_for_api
from bench.system import embedded_system
from cards import repository as card_repo
from infra.config import Settings
from infra.db import StatelessConnection
from infra.embedded import exit_on_sigterm

ROOT = Path(__file__).resolve().parents[1]
BENCH_S3_PORT = 38433  # its other ports derive from it (infra.embedded.weed_ports)


async def seed(url: str, settings: Any, holders: int) -> tuple[list[str], list[uuid.UUID], str, uuid.UUID]:
    """Cardholders with active cards and device sessions, and one terminal (straight into the tables)."""
    conn = await asyncpg.connect(url)
    access: list[str] = []
    sessions: list[uuid.UUID] = []
    try:
        for i in range(holders):
            person_id = await conn.fetchval(
                """WITH p AS (
                       INSERT INTO persons (national_id_hash, national_id_enc, national_id_masked, name, birth_date,
                                            phone, region) VALUES ($1, '\\x00', '110101********0000', $2, '1950-01-01',
                                            $3, '110101') RETURNING id, national_id_hash
                   ), n AS (INSERT INTO person_national_ids (national_id_hash, person_id) SELECT national_id_hash, id FROM p)
                   SELECT id FROM p""",
                uuid.uuid4().bytes,
                f"bench{i}",
                f"139{i:08d}",
            )
            await conn.execute(
                """WITH card AS (INSERT INTO cards (person_id, card_number, status) VALUES ($1, $2, 'active'))
                   INSERT INTO card_numbers (card_number, person_id) VALUES ($2, $1)""",
                person_id,
                f"{i:012d}",
            )
            account_id = await conn.fetchval(
                "INSERT INTO accounts (phone, person_id) VALUES ($1, $2) RETURNING id", f"139{i:08d}", person_id
            )
            expires = datetime.now(UTC) + timedelta(days=1)
            session_id = await conn.fetchval(
                """INSERT INTO sessions (principal_kind, principal_id, device_id, platform, expires_at)
                   VALUES ('account', $1, $2, 'android', $3) RETURNING id""",
                account_id,
                f"bench-device-{i}",
                expires,
            )
            sessions.append(session_id)
            access.append(tokens.issue_access_token(settings.token_signing_key, session_id, "account", expires))
        terminal_id = uuid.uuid4()
        key, key_hash = tokens.new_terminal_key(terminal_id)
        await conn.execute(
            "INSERT INTO terminals (id, merchant, key_hash) VALUES ($1, 'bench', $2)", terminal_id, key_hash
        )
    finally:
        await conn.close()
    return access, sessions, key, terminal_id


async def http_throughput(
    port: int, access: list[str], key: str, seconds: float, concurrency: int, mint_path: str
) -> dict[str, Any]:
    mint_lat: list[float] = []
    verify_lat: list[float] = []
    failures = 0
    deadline = time.perf_counter() + seconds

    async def loop(n: int) -> None:
        nonlocal failures
        conn = await HttpConnection.open(port)
        holder = access[n % len(access)]
        try:
            while time.perf_counter() < deadline:
                t0 = time.perf_counter()
                status, body = await conn.post(mint_path, holder, b"")
                t1 = time.perf_counter()
                if status != 201:
                    failures += 1
                    continue
                token = json.loads(body)["token"]
                status, _ = await conn.post("/v1/terminal/qr/verify", key, json.dumps({"token": token}).encode())
                t2 = time.perf_counter()
                if status != 200:
                    failures += 1
                    continue
                mint_lat.append(t1 - t0)
                verify_lat.append(t2 - t1)
        finally:
            conn.close()

    started = time.perf_counter()
    await asyncio.gather(*(loop(n) for n in range(concurrency)))
    elapsed = time.perf_counter() - started
    return {
        "verifications_per_s": round(len(verify_lat) / elapsed, 1),
        "requests_per_s": round(2 * len(verify_lat) / elapsed, 1),
        "mint_p50_ms": round(percentile_ms(mint_lat, 0.50), 2),
        "mint_p99_ms": round(percentile_ms(mint_lat, 0.99), 2),
        "verify_p50_ms": round(percentile_ms(verify_lat, 0.50), 2),
        "verify_p99_ms": round(percentile_ms(verify_lat, 0.99), 2),
        "failures": failures,
    }


async def http_fixed_rate(port: int, access: list[str], key: str, rate: int, seconds: float) -> dict[str, Any]:
    """Verifications on a fixed schedule (open loop) of codes minted beforehand (they live 60 s)."""
    codes = await mint_codes(port, access, int(rate * seconds))
    calls = [Call("/v1/terminal/qr/verify", key, json.dumps({"token": code}).encode()) for code in codes]
    return await open_loop(port, calls, rate, ok=200)


async def bare_asyncpg(
    url: str, sessions: list[uuid.UUID], terminal_id: uuid.UUID, seconds: float, concurrency: int
) -> dict[str, Any]:
    """The statements the API runs for one round trip, without HTTP, Litestar or the token codecs."""
    # Same connection class as the API's pool, so the comparison is HTTP + Litestar alone.
    pool = await asyncpg.create_pool(
        url, min_size=concurrency, max_size=concurrency, connection_class=StatelessConnection
    )
    assert pool is not None
    done: list[float] = []
    deadline = time.perf_counter() + seconds

    async def loop(n: int) -> None:
        session_id = sessions[n % len(sessions)]
        while time.perf_counter() < deadline:
            t0 = time.perf_counter()
            # mint: resolve the session, insert the token for the active card
            who = await pool.fetchrow(auth_repo.ACCOUNT_SESSION_SQL, session_id)
            assert who is not None
            token_id = uuid.uuid4()
            expires = datetime.now(UTC) + timedelta(seconds=60)
            assert await pool.fetchval(card_repo.MINT_QR_SQL, token_id, session_id, expires, who["person_id"])
            # verify: resolve the terminal, consume the token and check its session in one transaction
            assert await pool.fetchrow(auth_repo.TERMINAL_SQL, terminal_id) is not None
            async with pool.acquire() as conn, conn.transaction():
                consumed = await conn.fetchrow(card_repo.CONSUME_QR_SQL, who["person_id"], token_id, terminal_id)
                assert consumed is not None
                assert await conn.fetchval(card_repo.LIVE_SESSION_SQL, consumed["session_id"])
            done.append(time.perf_counter() - t0)

    started = time.perf_counter()
    await asyncio.gather(*(loop(n) for n in range(concurrency)))
    elapsed = time.perf_counter() - started
    await pool.close()
    return {
        "round_trips_per_s": round(len(done) / elapsed, 1),
        "round_trip_p50_ms": round(percentile_ms(done, 0.5), 2),
        "round_trip_p99_ms": round(percentile_ms(done, 0.99), 2),
    }


def _measure(settings: Settings, args: argparse.Namespace) -> dict[str, Any]:
    """Seed, start the API as `make run` does (granian, 2 workers), and run every phase."""

    async def run() -> dict[str, Any]:
        access, sessions, key, terminal_id = await seed(settings.migration_database_url, settings, args.holders)
        await wait_for_api(settings.api_port)
        port, c = settings.api_port, args.concurrency
        await http_throughput(port, access, key, 2, c, "/v1/card/qr?svg=false")  # warm-up
        http = await http_throughput(port, access, key, args.seconds, c, "/v1/card/qr?svg=false")
        http_svg = await http_throughput(port, access, key, args.seconds, c, "/v1/card/qr")
        fixed = await http_fixed_rate(port, access, key, 300, min(args.seconds, 20))
        bare = await bare_asyncpg(settings.database_url, sessions, terminal_id, args.seconds, c)
        return {"http": http, "http_with_svg": http_svg, "http_at_300_per_s": fixed, "bare_asyncpg": bare}

    with running_api(settings):
        return uvloop.run(run())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--holders", type=int, default=50)
    args = parser.parse_args()

    exit_on_sigterm()
    # The API port is its own, clear of `make run`'s; it logs at INFO as `make run` does.
    with embedded_system("socialcard-bench-", BENCH_S3_PORT, API_PORT="8099", LOG_LEVEL="INFO") as (settings, _):
        results = _measure(settings, args)

    ratio = results["http"]["verifications_per_s"] / results["bare_asyncpg"]["round_trips_per_s"]
    results["http_to_bare_ratio"] = round(ratio, 3)
    results["config"] = {
        "seconds": args.seconds,
        "concurrency": args.concurrency,
        "api_workers": 2,
        "cpus": os.cpu_count(),
        "at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    out = ROOT / "bench-results"
    out.mkdir(exist_ok=True)
    (out / "qr.json").write_text(json.dumps(results, indent=2))
    h, f, b = results["http"], results["http_at_300_per_s"], results["bare_asyncpg"]
    hs = results["http_with_svg"]
    print(f"{'':34}{'per s':>10}{'p50 ms':>10}{'p99 ms':>10}")
    print(
        f"{'HTTP mint+verify (verifications)':34}{h['verifications_per_s']:>10}{h['verify_p50_ms']:>10}{h['verify_p99_ms']:>10}"
    )
    print(f"{'HTTP mint (same run)':34}{'':>10}{h['mint_p50_ms']:>10}{h['mint_p99_ms']:>10}")
    print(
        f"{'HTTP mint with SVG + verify':34}{hs['verifications_per_s']:>10}{hs['verify_p50_ms']:>10}{hs['verify_p99_ms']:>10}"
    )
    print(f"{'HTTP verify at 300/s (achieved)':34}{f['succeeded_per_s']:>10}{f['p50_ms']:>10}{f['p99_ms']:>10}")
    print(
        f"{'bare asyncpg, same SQL':34}{b['round_trips_per_s']:>10}{b['round_trip_p50_ms']:>10}{b['round_trip_p99_ms']:>10}"
    )
    print(
        f"HTTP / bare asyncpg throughput: {ratio:.2f}  (failures: {h['failures']} + {hs['failures']} + {f['failures']})"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
