"""SIGTERM to the API (what `socialcard up` sends to stop it) drains it: the requests it meets are
answered, new connections are answered for a second and refused after (never accepted and then
dropped), what is in flight finishes, and the process exits within its grace period (API_DRAIN_S),
its workers with it."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import asyncpg
import httpx

from infra.config import Settings, settings_env
from tests.factories import ROOT, free_port, sample_person

IN_FLIGHT = 32


@contextmanager
def api_process(settings: Settings, **env: str) -> Iterator[tuple[subprocess.Popen[bytes], int, Path]]:
    """`python -m app.cli serve` (granian, two workers) on a free port: its main process, the port once
    /health/ready answers, and the file its stderr goes to. Whatever is left of it is killed afterwards."""
    port = free_port()
    environ = {**os.environ, **settings_env(settings), "API_PORT": str(port), "API_WORKERS": "2", **env}
    with tempfile.TemporaryDirectory(prefix="socialcard-drain-") as folder:
        log_path = Path(folder) / "serve.stderr"
        with log_path.open("wb") as stderr:
            # A session of its own: the signal goes to the main process alone (as `up` sends it), and
            # whatever is left at the end can be killed as a group.
            process = subprocess.Popen(
                [sys.executable, "-m", "app.cli", "serve"],
                env=environ,
                cwd=ROOT,
                stdout=subprocess.DEVNULL,
                stderr=stderr,
                start_new_session=True,
            )
        try:
            deadline = time.monotonic() + 60
            while True:
                try:
                    if httpx.get(f"http://127.0.0.1:{port}/health/ready", timeout=1).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                assert process.poll() is None, log_path.read_text(errors="replace")
                assert time.monotonic() < deadline, log_path.read_text(errors="replace")
                time.sleep(0.2)
            yield process, port, log_path
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait(10)


async def _otp_request(port: int, phone: str) -> int | str:
    """POST /v1/auth/otp on a new connection: the answer's status, or how it ended without one."""
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
    except OSError as exc:
        return type(exc).__name__
    body = json.dumps({"phone": phone}).encode()
    try:
        writer.write(
            b"POST /v1/auth/otp HTTP/1.1\r\nHost: api\r\nContent-Type: application/json\r\nConnection: close\r\n"
            + f"Content-Length: {len(body)}\r\n\r\n".encode()
            + body
        )
        await writer.drain()
        raw = await asyncio.wait_for(reader.read(), timeout=30)
    except (OSError, TimeoutError) as exc:
        return type(exc).__name__
    finally:
        writer.close()
    if not raw.startswith(b"HTTP/1.1 "):
        return f"closed without an answer ({len(raw)} bytes)"
    return int(raw.split(b" ", 2)[1])


async def _new_connection(port: int) -> str:
    """GET /health/live on a new connection: 'refused', 'answered <status>', or what else happened."""
    try:
        async with httpx.AsyncClient(timeout=15) as client:
            r = await client.get(f"http://127.0.0.1:{port}/health/live")
        return f"answered {r.status_code}"
    except httpx.ConnectError:
        return "refused"
    except httpx.HTTPError as exc:
        return repr(exc)


async def _lock_waiters(conn: asyncpg.Connection) -> int:
    """Sessions of this database waiting on a lock (pg_stat_activity afresh, also within a transaction)."""
    await conn.execute("SELECT pg_stat_clear_snapshot()")
    count: int = await conn.fetchval(
        "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND datname = current_database()"
    )
    return count


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


async def test_sigterm_answers_every_request_in_flight(settings: Settings) -> None:
    drain_s = 10
    phone = sample_person().phone
    # Pools large enough that every request holds a connection and waits on the phone's lock, rather
    # than on the pool (whose acquisitions time out after 3 s).
    with api_process(settings, API_DRAIN_S=str(drain_s), DB_POOL_MAX="40") as (process, port, log_path):
        holder = await asyncpg.connect(settings.database_url)
        try:
            # The lock every sign-in code request for this phone takes (auth.repository.lock_phone),
            # held so that the requests stay in flight for a while.
            lock = holder.transaction()
            await lock.start()
            await holder.execute("SELECT pg_advisory_xact_lock(hashtextextended('otp:' || $1, 0))", phone)
            async with httpx.AsyncClient(timeout=15) as idle:
                # A kept-alive connection idle at the signal (a proxy's) must not hold the exit up.
                assert (await idle.get(f"http://127.0.0.1:{port}/health/live")).status_code == 200
                # The requests set off and the signal sent at once, as requests meet a restart: their
                # connections open while the API is being told to stop. Before the drain, none of the 32
                # was answered: the few accepted were dropped unread, the rest refused.
                answers = [asyncio.create_task(_otp_request(port, phone)) for _ in range(IN_FLIGHT)]
                process.send_signal(signal.SIGTERM)
                stopped_at = time.monotonic()
                await asyncio.sleep(0.3)
                early = await _new_connection(port)
                await asyncio.sleep(max(0.0, stopped_at + 1.4 - time.monotonic()))
                late = await _new_connection(port)  # the workers no longer accept by now
                waiting = await _lock_waiters(holder)
                await lock.rollback()  # the requests go on, ~1.5 s after the signal
                statuses = await asyncio.gather(*answers)
        finally:
            await holder.close()
        exit_code = await asyncio.to_thread(process.wait, drain_s + 5)
        took = time.monotonic() - stopped_at
        log = log_path.read_text(errors="replace")[-4000:]
        left = _group_alive(process.pid)

    cut = [s for s in statuses if isinstance(s, str)]
    assert not cut, f"{len(cut)} of {IN_FLIGHT} requests met by SIGTERM got no answer: {cut[:3]}\n{log}"
    assert sorted(statuses) == [202] * 5 + [429] * (IN_FLIGHT - 5), statuses  # 5 codes an hour per phone
    assert waiting == IN_FLIGHT, f"{waiting} requests were waiting on the lock when the workers began to stop"
    assert (early, late) == ("answered 200", "refused")
    assert took < drain_s, f"the API took {took:.1f} s to exit\n{log}"
    assert exit_code == 0, log
    assert not left, "a process of the API outlived it"


async def test_a_request_longer_than_the_grace_period_does_not_hold_the_exit(settings: Settings) -> None:
    drain_s = 3
    phone = sample_person().phone
    with api_process(settings, API_DRAIN_S=str(drain_s)) as (process, port, log_path):
        holder = await asyncpg.connect(settings.database_url)
        try:
            lock = holder.transaction()
            await lock.start()
            await holder.execute("SELECT pg_advisory_xact_lock(hashtextextended('otp:' || $1, 0))", phone)
            answers = [asyncio.create_task(_otp_request(port, phone)) for _ in range(4)]
            for _ in range(250):
                if await _lock_waiters(holder) == 4:
                    break
                await asyncio.sleep(0.02)
            else:
                raise AssertionError("the requests did not come to wait on the lock")
            process.send_signal(signal.SIGTERM)
            stopped_at = time.monotonic()
            exit_code = await asyncio.to_thread(process.wait, drain_s + 10)
            took = time.monotonic() - stopped_at
            statuses = await asyncio.gather(*answers)
        finally:
            await holder.close()
        log = log_path.read_text(errors="replace")[-4000:]
        left = _group_alive(process.pid)

    # Still waiting when the grace period ran out: stopped, the process gone in time, its workers too.
    assert drain_s - 0.5 < took < drain_s + 1.5, f"the API took {took:.1f} s to exit\n{log}"
    assert exit_code == 0, log
    assert not left, "a worker outlived the API"
    assert all(isinstance(s, str) for s in statuses), statuses
