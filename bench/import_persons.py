"""`make bench-import`: importing 1,000,000 persons, against a bare COPY of the same file in the same run.

  1. a CSV of `--persons` valid synthetic persons (GB 11643 check digits, birth dates matching the
     IDs, a pension each) is written to the run's private folder;
  2. the baseline: the same file sent with COPY (asyncpg `copy_to_table`, CSV, header) into a plain
     table of text columns in a database of its own, no index, no check, no encryption;
  3. the product: `socialcard import persons FILE` as an administrator runs it, a process of its own,
     into the fresh migrated database: time from start to exit, and that process's peak RSS
     (`os.wait4`). Its progress lines go to stderr as they would to a log.
Beside the wall times, the CPU seconds each phase cost the import process and the PostgreSQL server
(all its processes, from /proc): on a machine shared with other work the wall time says how busy the
machine was, the CPU time what the import costs.
The import must create every person with a pension and a card, or the run fails. Figures go to
bench-results/import.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg

from bench.system import embedded_system
from core.national_id import check_character
from infra.config import Settings, settings_env
from infra.embedded import exit_on_sigterm

ROOT = Path(__file__).resolve().parents[1]
BENCH_S3_PORT = 38933  # clear of make run's, the tests' and the other benchmarks' (infra.embedded.weed_ports)
HEADER = (
    "national_id,name,birth_date,phone,region,locale,reference_photo,"
    "pension_monthly_amount,pension_bank_account,pension_start_month\n"
)
_BORN_FROM = date(1940, 1, 1)


def person_line(n: int) -> str:
    """The n-th synthetic person as a CSV line: a distinct valid national ID for every n below 10**7
    (1,000 sequence numbers per birth day), its birth date, a phone, a pension."""
    born = _BORN_FROM + timedelta(days=n // 1000)
    first17 = f"110101{born:%Y%m%d}{n % 1000:03d}"
    return (
        f"{first17}{check_character(first17)},测试{n},{born.isoformat()},139{n:08d},110101,zh-CN,,"
        f"{100_000 + n % 50_000},62220202{n:011d},2010-01\n"
    )


def write_persons(path: Path, count: int) -> None:
    with path.open("w", encoding="utf-8", newline="") as f:
        f.write(HEADER)
        for start in range(0, count, 10_000):
            f.writelines(person_line(n) for n in range(start, min(start + 10_000, count)))


_TICK = os.sysconf("SC_CLK_TCK")


def _cpu_s(stat: str, *, children: bool) -> float:
    fields = stat[stat.rindex(")") + 2 :].split()  # after the command name, which may hold spaces
    used = int(fields[11]) + int(fields[12])  # utime, stime
    if children:
        used += int(fields[13]) + int(fields[14])  # cutime, cstime: the exited backends it reaped
    return used / _TICK


def postgres_cpu_s(root: Path) -> float:
    """CPU seconds the PostgreSQL server under `root` has used: the postmaster with the backends it
    has reaped, and the processes still running under it."""
    postmaster = int(next(root.rglob("postmaster.pid")).read_text().split()[0])
    total = 0.0
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            stat = (proc / "stat").read_text()
        except OSError:  # gone meanwhile
            continue
        pid, ppid = int(proc.name), int(stat[stat.rindex(")") + 2 :].split()[1])
        if pid == postmaster or ppid == postmaster:
            total += _cpu_s(stat, children=pid == postmaster)
    return total


async def bare_copy(settings: Settings, root: Path, path: Path) -> tuple[float, float]:
    """Seconds for COPY of the file into a plain text table, in a database of its own, and the CPU
    seconds PostgreSQL spent on it."""
    admin = await asyncpg.connect(settings.migration_database_url)
    try:
        await admin.execute("CREATE DATABASE bare_copy")
    finally:
        await admin.close()
    conn = await asyncpg.connect(settings.migration_database_url, database="bare_copy")
    try:
        columns = HEADER.strip().split(",")
        await conn.execute(f"CREATE TABLE persons_bare ({', '.join(f'{c} text' for c in columns)})")
        await conn.execute("CHECKPOINT")
        cpu_0, t0 = postgres_cpu_s(root), time.perf_counter()
        await conn.copy_to_table("persons_bare", source=path, format="csv", header=True)
        elapsed, cpu = time.perf_counter() - t0, postgres_cpu_s(root) - cpu_0
        assert await conn.fetchval("SELECT count(*) FROM persons_bare") == sum(1 for _ in path.open()) - 1
        return elapsed, cpu
    finally:
        await conn.close()


def run_import(settings: Settings, path: Path) -> tuple[float, int, str, float]:
    """Seconds, peak RSS in bytes, the report line and the CPU seconds of `socialcard import persons`
    run on the file."""
    env = {**os.environ, **settings_env(settings)}
    t0 = time.perf_counter()
    child = subprocess.Popen(
        [sys.executable, "-m", "socialcard", "import", "persons", str(path)], env=env, stdout=subprocess.PIPE
    )
    assert child.stdout is not None
    out = child.stdout.read().decode()
    _, status, usage = os.wait4(child.pid, 0)
    elapsed = time.perf_counter() - t0
    child.returncode = os.waitstatus_to_exitcode(status)
    assert child.returncode == 0, (child.returncode, out)
    cpu = usage.ru_utime + usage.ru_stime
    return elapsed, usage.ru_maxrss * 1024, out.strip(), cpu  # ru_maxrss is in KiB on Linux


async def landed(settings: Settings) -> dict[str, int]:
    conn = await asyncpg.connect(settings.migration_database_url)
    try:
        row = await conn.fetchrow(
            """SELECT (SELECT count(*) FROM persons) AS persons, (SELECT count(*) FROM pension_entitlements) AS pensions,
                      (SELECT count(*) FROM cards) AS cards, (SELECT count(*) FROM audit_log) AS audit_entries"""
        )
        assert row is not None
        return dict(row)
    finally:
        await conn.close()


def _write(results: dict[str, Any]) -> None:
    out = ROOT / "bench-results"
    out.mkdir(exist_ok=True)
    results["config"] = {"cpus": os.cpu_count(), "at": datetime.now(UTC).isoformat(timespec="seconds")}
    (out / "import.json").write_text(json.dumps(results, indent=2))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--persons", type=int, default=1_000_000)
    args = parser.parse_args()
    if not 0 < args.persons <= 10_000_000:
        parser.error("--persons must be between 1 and 10,000,000 (distinct national IDs)")

    exit_on_sigterm()
    with embedded_system("socialcard-bench-import-", BENCH_S3_PORT, LOG_LEVEL="WARNING") as (settings, root):
        path = root / "persons.csv"
        t0 = time.perf_counter()
        write_persons(path, args.persons)
        written_s = time.perf_counter() - t0
        bare_s, bare_pg = asyncio.run(bare_copy(settings, root, path))
        pg_0 = postgres_cpu_s(root)
        import_s, peak_rss, report, import_cpu = run_import(settings, path)
        import_pg = postgres_cpu_s(root) - pg_0
        counts = asyncio.run(landed(settings))
        assert counts["persons"] == counts["pensions"] == counts["cards"] == args.persons, counts
        results = {
            "persons": args.persons,
            "file_mb": round(path.stat().st_size / 1e6, 1),
            "write_file_s": round(written_s, 1),
            "bare_copy_s": round(bare_s, 2),
            "bare_copy_rows_per_s": round(args.persons / bare_s),
            "import_s": round(import_s, 2),
            "import_rows_per_s": round(args.persons / import_s),
            "import_to_bare_ratio": round(import_s / bare_s, 2),
            "import_peak_rss_mb": round(peak_rss / 1e6, 1),
            "cpu_s": {
                "bare_copy_postgres": round(bare_pg, 2),
                "import_process": round(import_cpu, 1),
                "import_postgres": round(import_pg, 1),
            },
            "load_average": os.getloadavg()[0],
            "batch": settings.import_batch,
            "report": report,
            **counts,
        }
        _write(results)
    r = results
    print(f"import of {r['persons']:,} persons ({r['file_mb']} MB of CSV, batches of {r['batch']:,} lines)")
    print(f"  bare COPY of the file        {r['bare_copy_s']:>8.2f} s   ({r['bare_copy_rows_per_s']:,} rows/s)")
    print(f"  socialcard import persons    {r['import_s']:>8.2f} s   ({r['import_rows_per_s']:,} rows/s)")
    print(f"  import / bare COPY           {r['import_to_bare_ratio']:>8.2f} x   (target <= 3x, import <= 60 s)")
    print(f"  import peak RSS              {r['import_peak_rss_mb']:>8.1f} MB  (target <= 500 MB)")
    c = r["cpu_s"]
    print(f"  CPU, bare COPY               {c['bare_copy_postgres']:>8.2f} s PostgreSQL")
    print(
        f"  CPU, import                  {c['import_process']:>8.1f} s import process, {c['import_postgres']:.1f} s PostgreSQL"
    )
    print(f"  load average (1 min) at the end: {r['load_average']:.1f} on {os.cpu_count()} cores")
    print(f"  landed: {r['persons']:,} persons, {r['pensions']:,} pensions, {r['cards']:,} cards; {r['report']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
