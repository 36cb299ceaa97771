"""`make bench-notify`: push notifications through the dispatcher to the local FCM server, against a
naive baseline in the same run.

The FCM server runs in its own process (`python -m tests.doubles.fcm_server`), as FCM would be
elsewhere. Notices and their push deliveries (one device per person) are seeded straight into the
tables, as the outbox writes them.
  1. the baseline: the same dispatcher code claiming, sending and recording one delivery at a time,
     so each message is one request sent after the previous one's answer (`--baseline` messages);
  2. the product: `--dispatchers` processes of `socialcard notify dispatch --channel push --until-idle`
     (what the worker's dispatch jobs run), claims of 500 sent with `send_each_async`, from start-up
     to the last exit, for `--messages` messages; the peak memory of each process;
  3. firebase-admin and httpx alone: `FcmPush.send` with every request answered in this process, the
     CPU per message no dispatcher sending with the SDK can go below (set against what 20x allows).
Every delivery must end `sent` and the server must count exactly one request per message, or the
run fails. The CPU every process spent per message (dispatchers, PostgreSQL, the FCM server) gives
the most the machine's cores could send at that cost. `--profile N` instead runs one dispatcher in
this process under cProfile for N messages and prints where its own time went, by library. Figures go to bench-results/notify.json. `--fcm-latency-ms N` makes the server hold each
answer N ms, standing in for the round trip to FCM that a server on loopback lacks.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import cProfile
import json
import os
import pstats
import resource
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import msgspec
import uvloop

from app.services import open_services
from bench.seed import seed_pensioners
from bench.system import embedded_system
from infra.config import Settings, settings_env
from infra.crypto import FieldCipher
from infra.embedded import exit_on_sigterm
from notifications.dispatcher import Dispatcher, notice_push
from notifications.push import BATCH, FcmPush, push_channel
from notifications.templates import render

ROOT = Path(__file__).resolve().parents[1]
BENCH_S3_PORT = 38733
CPUS = len(os.sched_getaffinity(0))  # the cores this process may run on, as its children inherit

# Every seeded notice: one payment made, to a device in zh-CN.
PAID = {"period": "2026-12-01", "pay_date": "2026-12-15", "amount_fen": 350000, "account_masked": "***************3445"}
SEED_SQL = """
    WITH devices_made AS (
        INSERT INTO devices (person_id, push_token, platform, locale, app_version)
        SELECT id, 'bench-' || id, 'android', 'zh-CN', '3.2.1' FROM persons
        RETURNING id, person_id, push_token
    ), tokens AS (
        INSERT INTO push_tokens (push_token, person_id, device_id) SELECT push_token, person_id, id FROM devices_made
    ), notices AS (
        INSERT INTO notifications (person_id, kind, params, urgent, dedupe_key, shown_from)
        SELECT person_id, 'payment.paid', $1::jsonb, false, 'bench:' || person_id, now()
        FROM devices_made
        RETURNING id, person_id
    )
    INSERT INTO deliveries (person_id, notification_id, channel, device_id, next_attempt_at)
    SELECT n.person_id, n.id, 'push', d.id, now() - interval '1 hour' FROM notices n JOIN devices_made d USING (person_id)"""


@dataclass(frozen=True)
class LocalFcm:
    fcm_url: str
    stats_url: str
    pid: int


def _cpu_s(usage: resource.struct_rusage) -> float:
    return usage.ru_utime + usage.ru_stime


def _stat(pid: int) -> list[str]:
    """/proc/<pid>/stat's fields after the command name (which may hold spaces): [1] is the parent's pid,
    [11:13] the process's own user and system time, [13:15] its exited children's, in clock ticks."""
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()


def process_cpu_s(pid: int) -> float:
    """A running process's CPU time so far, its exited children's included."""
    return sum(map(int, _stat(pid)[11:15])) / os.sysconf("SC_CLK_TCK")


@contextmanager
def fcm_server(latency_ms: float) -> Iterator[LocalFcm]:
    server = subprocess.Popen(
        [sys.executable, "-m", "tests.doubles.fcm_server", "--latency-ms", str(latency_ms)],
        stdout=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    try:
        assert server.stdout is not None
        ready = json.loads(server.stdout.readline())
        yield LocalFcm(ready["fcm_url"], ready["stats_url"], server.pid)
    finally:
        server.terminate()
        server.wait()


def postmaster_pid(root: Path) -> int:
    [pid_file] = root.glob("postgres/**/postmaster.pid")
    return int(pid_file.read_text().split()[0])


def postgres_processes(postmaster: int) -> list[int]:
    """The postmaster's live children: its background processes and one backend per connection."""
    children = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, IndexError):  # a process that ended meanwhile
            if int(_stat(int(stat.parent.name))[1]) == postmaster:
                children.append(int(stat.parent.name))
    return children


def postgres_cpu_s(postmaster: int) -> float:
    """The database's CPU time so far: its live processes' own, then the postmaster's with its exited
    children's, read last so that a backend ending meanwhile is counted there rather than missed."""
    ticks = 0
    for pid in postgres_processes(postmaster):
        with contextlib.suppress(OSError):
            ticks += sum(map(int, _stat(pid)[11:13]))
    return ticks / os.sysconf("SC_CLK_TCK") + process_cpu_s(postmaster)


def fcm_requests(stats_url: str) -> int:
    with urllib.request.urlopen(stats_url, timeout=10) as answer:  # noqa: S310 (a local http URL)
        count: int = json.load(answer)["requests"]
    return count


async def seed(settings: Settings, count: int) -> None:
    admin = await asyncpg.connect(settings.migration_database_url)
    try:
        await seed_pensioners(admin, count, FieldCipher(settings.data_encryption_key))
        await admin.execute(SEED_SQL, json.dumps(PAID))
        await admin.execute("VACUUM ANALYZE")
    finally:
        await admin.close()


@contextlib.asynccontextmanager
async def push_dispatcher(settings: Settings, push_batch: int = BATCH) -> AsyncIterator[Dispatcher]:
    """A dispatcher in this process, sending to the configured FCM server."""
    async with open_services(settings, pool_max=2) as services:
        push = push_channel(settings)
        try:
            yield Dispatcher(services.pool, settings, push, services.sms, push_batch=push_batch)
        finally:
            await push.aclose()


async def baseline(settings: Settings, messages: int) -> dict[str, Any]:
    async with push_dispatcher(settings, push_batch=1) as naive:
        started = time.perf_counter()
        for _ in range(messages):
            assert await naive.dispatch("push") == 1
        elapsed = time.perf_counter() - started
    return {"messages": messages, "seconds": round(elapsed, 2), "per_s": round(messages / elapsed, 1)}


# firebase-admin and the HTTP client it sends with; the transport under it (`notifications.http1`) counts
# with the project, and httptools' parser, being C, with the builtins.
SDK_AND_HTTP = ("firebase_admin", "httpx")


async def profile(settings: Settings, messages: int) -> list[tuple[str, float]]:
    """Each library's share of one dispatcher's own time (cProfile), sending `messages` after a first claim."""
    async with push_dispatcher(settings) as dispatcher:
        await dispatcher.dispatch("push")  # connections open and caches warm before measuring
        profiler, sent = cProfile.Profile(), 0
        profiler.enable()
        while sent < messages:
            sent += await dispatcher.dispatch("push")
        profiler.disable()
    own: collections.Counter[str] = collections.Counter()
    for (path, _, _), (_, _, own_s, _, _) in pstats.Stats(profiler).stats.items():  # type: ignore[attr-defined]
        own[_library(path)] += own_s
    total = sum(own.values())
    return [(name, seconds / total) for name, seconds in own.most_common()]


SDK_ALONE_MESSAGES = 20_000
FCM_ANSWER = b'{"name": "projects/socialcard-bench/messages/1"}'


async def sdk_alone(settings: Settings, messages: int) -> float:
    """CPU ms per message of `FcmPush.send` (firebase-admin's encoding and `send_each_async`, httpx's client,
    the SDK's retries) with every request answered in this process: no sockets, no database, no templates
    (the seeded notice's text is rendered once). No dispatcher can spend less per message and still send
    with the SDK."""
    push = FcmPush(settings, wire=httpx.MockTransport(lambda _: httpx.Response(200, content=FCM_ANSWER)))
    text, notice = render("payment.paid", "zh-CN", PAID), str(uuid.uuid4())
    batch = [notice_push(f"bench-{i}", notice, "payment.paid", text, urgent=False) for i in range(BATCH)]
    try:
        await push.send(batch)  # caches warm before measuring
        started = time.process_time()
        for _ in range(messages // BATCH):
            assert {o.state for o in await push.send(batch)} == {"delivered"}
        return (time.process_time() - started) * 1000 / (messages // BATCH * BATCH)
    finally:
        await push.aclose()


def _library(path: str) -> str:
    """The library a profiled function's file belongs to: a package's name, the project's folder, or the stdlib."""
    if "site-packages/" in path:
        return path.split("site-packages/", 1)[1].split("/", 1)[0]
    if path.startswith(f"{ROOT}/"):
        return Path(path).relative_to(ROOT).parts[0]
    return "builtins" if path == "~" else "stdlib"  # cProfile files C functions under "~"


def dispatchers(settings: Settings, postmaster: int, fcm: LocalFcm, count: int) -> dict[str, Any]:
    """The dispatchers' run, and the CPU each side spent in it: dispatchers (start-up included),
    PostgreSQL, the FCM server."""
    env = {**os.environ, **settings_env(settings), "LOG_LEVEL": "WARNING"}
    background = len(postgres_processes(postmaster))
    database_cpu_s, fcm_cpu_s = postgres_cpu_s(postmaster), process_cpu_s(fcm.pid)
    started = time.perf_counter()
    children = [
        subprocess.Popen(
            [sys.executable, "-m", "app.cli", "notify", "dispatch", "--channel", "push", "--until-idle"],
            env=env,
            cwd=ROOT,
            stdout=subprocess.PIPE,
        )
        for _ in range(count)
    ]
    peaks_mb, handled, cpu_s = [], 0, 0.0
    for child in children:
        _, status, usage = os.wait4(child.pid, 0)
        assert status == 0, f"dispatcher exited with status {status}"
        assert child.stdout is not None
        handled += json.loads(child.stdout.read())["push"]
        peaks_mb.append(round(usage.ru_maxrss / 1024, 1))  # ru_maxrss is in KiB on Linux
        cpu_s += _cpu_s(usage)
    elapsed = time.perf_counter() - started
    fcm_cpu_s = process_cpu_s(fcm.pid) - fcm_cpu_s
    deadline = time.monotonic() + 10
    while len(postgres_processes(postmaster)) > background and time.monotonic() < deadline:
        time.sleep(0.05)  # the dispatchers' backends ending, and the postmaster counting their time
    database_cpu_s = postgres_cpu_s(postmaster) - database_cpu_s
    return {
        "dispatchers": count,
        "messages": handled,
        "seconds": round(elapsed, 2),
        "peak_rss_mb": peaks_mb,
        # Start-up (imports, connecting) included: the whole processes' CPU over the messages they sent.
        "cpu_ms_per_message": round(cpu_s * 1000 / handled, 3),
        "postgres_cpu_ms_per_message": round(database_cpu_s * 1000 / handled, 3),
        "fcm_server_cpu_ms_per_message": round(fcm_cpu_s * 1000 / handled, 3),
        "cores_busy": round((cpu_s + database_cpu_s + fcm_cpu_s) / elapsed / CPUS, 2),
    }


async def outcome(settings: Settings) -> dict[str, int]:
    conn = await asyncpg.connect(settings.database_url)
    try:
        rows = await conn.fetch("SELECT state, count(*) FROM deliveries GROUP BY state")
    finally:
        await conn.close()
    return {r["state"]: r["count"] for r in rows}


def print_profile(shares: list[tuple[str, float]], messages: int) -> int:
    print(f"one dispatcher's own time by library (cProfile, {messages:,} messages after a first claim)")
    stack = sum(share for name, share in shares if name in SDK_AND_HTTP)
    print(f"  firebase-admin and its HTTP client ({', '.join(SDK_AND_HTTP)}): {stack:.0%}")
    for name, share in shares[:15]:
        print(f"  {name:<16}{share:>6.1%}")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--messages", type=int, default=100_000)
    parser.add_argument("--baseline", type=int, default=2_000, help="messages the naive baseline sends")
    parser.add_argument("--dispatchers", type=int, default=2)
    parser.add_argument(
        "--profile", type=int, metavar="N", help="profile one dispatcher in this process for N messages, nothing else"
    )
    parser.add_argument(
        "--fcm-latency-ms",
        type=float,
        default=0.0,
        help="the server holds each answer this long, standing in for the round trip to FCM (default: none)",
    )
    args = parser.parse_args()

    exit_on_sigterm()
    with (
        fcm_server(args.fcm_latency_ms) as fcm,
        embedded_system("socialcard-bench-notify-", BENCH_S3_PORT, LOG_LEVEL="WARNING") as (
            settings,
            root,
        ),
    ):
        settings = msgspec.structs.replace(settings, fcm_url=fcm.fcm_url, fcm_project_id="socialcard-bench")
        if args.profile:
            uvloop.run(seed(settings, args.profile + BATCH))
            return print_profile(uvloop.run(profile(settings, args.profile)), args.profile)
        uvloop.run(seed(settings, args.messages + args.baseline))
        base = uvloop.run(baseline(settings, args.baseline))
        sdk_ms = uvloop.run(sdk_alone(settings, SDK_ALONE_MESSAGES))
        fast = dispatchers(settings, postmaster_pid(root), fcm, args.dispatchers)
        states = uvloop.run(outcome(settings))
        requests = fcm_requests(fcm.stats_url)
    total = args.messages + args.baseline
    assert fast["messages"] == args.messages, fast
    assert states == {"sent": total}, states
    assert requests == total, f"the server counted {requests} requests for {total} messages"
    per_s = round(fast["messages"] / fast["seconds"], 1)
    dispatch_ms, fcm_ms = fast["cpu_ms_per_message"], fast["fcm_server_cpu_ms_per_message"]
    cpu_ms = dispatch_ms + fast["postgres_cpu_ms_per_message"] + fcm_ms
    # The most the cores could send at this CPU per message: all of it spread over every core, yet
    # the dispatchers on no more cores than there are of them, and the one-process server on one.
    ceiling = min(CPUS * 1000 / cpu_ms, args.dispatchers * 1000 / dispatch_ms, 1000 / fcm_ms)
    # At 20x the baseline the cores allow this much CPU per message; the SDK alone, PostgreSQL and the
    # FCM server take their part before the dispatcher claims, renders, records or touches a socket.
    allowed_ms = CPUS * 1000 / (20 * base["per_s"])
    fixed_ms = sdk_ms + fast["postgres_cpu_ms_per_message"] + fcm_ms
    results = {
        "baseline": base,
        "sdk_alone_cpu_ms_per_message": round(sdk_ms, 3),
        "cpu_ms_per_message_allowed_at_20x": round(allowed_ms, 3),
        "dispatch": {**fast, "per_s": per_s},
        "speedup": round(per_s / base["per_s"], 1),
        "cpu_ms_per_message": round(cpu_ms, 3),
        "ceiling_per_s": round(ceiling, 1),
        "config": {
            "cpus": CPUS,
            "fcm_latency_ms": args.fcm_latency_ms,
            "at": datetime.now(UTC).isoformat(timespec="seconds"),
        },
    }
    out = ROOT / "bench-results"
    out.mkdir(exist_ok=True)
    name = "notify.json" if args.fcm_latency_ms == 0 else f"notify-latency-{args.fcm_latency_ms:g}ms.json"
    (out / name).write_text(json.dumps(results, indent=2))
    print(f"push notifications to the local FCM server ({CPUS} CPUs, answers after {args.fcm_latency_ms} ms)")
    print(f"  baseline, one per request in sequence   {base['per_s']:>9,.1f} /s   ({base['messages']:,} messages)")
    print(
        f"  {args.dispatchers} dispatcher processes, claims of 500  {per_s:>9,.1f} /s   "
        f"({fast['messages']:,} in {fast['seconds']} s, peak RSS {fast['peak_rss_mb']} MB)"
    )
    print(
        f"  CPU per message: dispatchers {fast['cpu_ms_per_message']} ms (start-up included), "
        f"PostgreSQL {fast['postgres_cpu_ms_per_message']} ms, FCM server {fcm_ms} ms"
    )
    print(
        f"  the {CPUS} cores {fast['cores_busy']:.0%} busy; at {results['cpu_ms_per_message']} ms of CPU per message "
        f"they could send at most {results['ceiling_per_s']:,.1f} /s"
    )
    print(f"  speedup {results['speedup']}x   (targets: >= 20x, >= 2,000/s, <= 300 MB)")
    print(
        f"  20x the baseline allows {allowed_ms:.3f} ms of CPU per message on these cores; firebase-admin and httpx "
        f"alone (answered in this process) take {sdk_ms:.3f} ms, PostgreSQL and the FCM server {fixed_ms - sdk_ms:.3f} ms, "
        f"leaving {allowed_ms - fixed_ms:.3f} ms for claiming, rendering, recording and the sockets "
        f"(the dispatchers spent {dispatch_ms - sdk_ms:.3f} ms on them, start-up included)"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
