"""`make bench-cluster`: QR verify and a pension disbursement on a Citus cluster (a coordinator and two
workers, `make run-cluster`'s) against one embedded PostgreSQL, both started in this run on the same
machine, reported as cluster / single ratios; and the capacity model those rates give.

On one machine a cluster cannot be faster: its nodes share the same cores, so the ratio is Citus's
overhead (issue 23's target: >= 0.5). Both systems are migrated alike (on the cluster the migrations
place the tables) and measured turn about, single-cluster-cluster-single, so a change in the machine's
load during the run weighs on both alike. The load average is printed with every figure.

QR verify (cardholders and a terminal seeded by bench.qr_roundtrip; codes minted beforehand, they live
60 s), per system and turn:
  1. over HTTP, the API started as `make run` starts it (granian, 2 workers), 32 in flight;
  2. through the service in this process (terminal key resolved, then `CardService.verify_qr`, what the
     API does for a verify), 32 in flight: the database's share, without HTTP.
Disbursement (pensioners seeded by bench.seed), per system and turn: the next month's run through
`DisbursementService.run` with the CLI's wiring, as `socialcard disburse` runs it.

Which tables the cluster distributes is printed first (from citus_tables): until the person tables are
distributed (issue 23's key rework) they are Citus local tables on the coordinator, and the ratios
measure Citus's overhead on the coordinator, not work spread over the workers: its planning, and for a
statement it plans in steps (a modifying CTE: the QR consume, a disbursement batch) the intermediate
results it sends over connections of its own, which make the transaction a two-phase commit.
Figures go to bench-results/cluster.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import asyncpg
import uvloop

from app.services import Services, open_services
from bench.load import Call, closed_loop, mint_codes, percentile_ms, running_api, wait_for_api
from bench.qr_roundtrip import seed as seed_cardholders
from bench.seed import seed_pensioners
from bench.system import DATABASE, citus_cluster, embedded_s3, migrated
from infra.cluster import Cluster
from infra.config import Settings
from infra.crypto import FieldCipher
from infra.embedded import exit_on_sigterm, running_postgres

ROOT = Path(__file__).resolve().parents[1]
CLUSTER_PORT = 23300  # the coordinator; the workers on 23301 and 23302
# Its other ports derive from it (infra.embedded.weed_ports). Not 26300: that is the master port of an
# S3 server on 25300 (the test suites of a worktree beside this one), whose admin port 27300 would also
# be this one's master port.
S3_PORT = 26350
API_PORTS = {"single": 23310, "cluster": 23311}
SYSTEMS = ("single", "cluster")
# Issue 23's targets and the capacity model's demand.
TARGET_RATIO = 0.5
PENSIONERS = 8_000_000
WINDOW_S = 3600
QR_PEAK_PER_S = 5000
PERIODS = (date(2026, 11, 1), date(2026, 12, 1), date(2027, 1, 1), date(2027, 2, 1))


def _load() -> float:
    """The 1-minute load average: the machine is shared, so each figure says what it ran beside."""
    return round(os.getloadavg()[0], 2)


def _turns(rounds: int) -> list[tuple[int, str]]:
    """single, cluster, cluster, single, ...: a drift in the machine's load weighs on both alike."""
    order: list[tuple[int, str]] = []
    for n in range(rounds):
        order += [(n, s) for s in (SYSTEMS if n % 2 == 0 else reversed(SYSTEMS))]
    return order


async def placement(settings: Settings) -> dict[str, list[str]]:
    """The cluster's tables by Citus's kind (distributed, reference, local), as citus_tables has them."""
    conn = await asyncpg.connect(settings.migration_database_url)
    try:
        rows = await conn.fetch(
            """SELECT citus_table_type AS kind,
                      table_name::text || CASE WHEN distribution_column <> '<none>'
                                               THEN ' by ' || distribution_column ELSE '' END AS name
               FROM citus_tables ORDER BY 1, 2"""
        )
    finally:
        await conn.close()
    found: dict[str, list[str]] = {"distributed": [], "reference": [], "local": []}
    for row in rows:
        found.setdefault(row["kind"], []).append(row["name"])
    return found


# -- QR verify ---------------------------------------------------------------------------------------
async def _verify_http(settings: Settings, access: list[str], key: str, count: int, in_flight: int) -> dict[str, Any]:
    port = settings.api_port
    codes = await mint_codes(port, access, count)
    calls = [Call("/v1/terminal/qr/verify", key, json.dumps({"token": code}).encode()) for code in codes]
    result = await closed_loop(port, calls, in_flight, ok=200)
    assert result["failures"] == 0, result["refusals"]
    return {
        "verifies_per_s": result["succeeded_per_s"],
        "p50_ms": result["p50_ms"],
        "p99_ms": result["p99_ms"],
        "load": _load(),
    }


async def _verify_in_process(
    services: Services, access: list[str], key: str, count: int, in_flight: int
) -> dict[str, Any]:
    """What the API does for a verify (the terminal's key resolved, the code consumed), without HTTP."""
    holders = [await services.auth.resolve(token) for token in access]
    codes: list[str] = []

    async def mint(n: int) -> None:
        # As many at a time as verify: minted one by one on the cluster they took most of the 60 s
        # a code lives, and a code expired before its verify fails the run.
        while len(codes) < count:
            holder = holders[(len(codes) + n) % len(holders)]
            assert holder is not None
            codes.append((await services.cards.mint_qr(holder, render_svg=False)).token)

    await asyncio.gather(*(mint(n) for n in range(in_flight)))
    del codes[count:]
    latencies: list[float] = []
    queue = list(reversed(codes))

    async def worker() -> None:
        while queue:
            code = queue.pop()
            t0 = time.perf_counter()
            terminal = await services.auth.resolve(key)
            assert terminal is not None
            await services.cards.verify_qr(terminal, code)  # a refusal raises
            latencies.append(time.perf_counter() - t0)

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(in_flight)))
    elapsed = time.perf_counter() - started
    return {
        "verifies_per_s": round(count / elapsed, 1),
        "p50_ms": round(percentile_ms(latencies, 0.50), 2),
        "p99_ms": round(percentile_ms(latencies, 0.99), 2),
        "load": _load(),
    }


async def qr_verify(systems: dict[str, Settings], args: argparse.Namespace) -> dict[str, Any]:
    seeded = {
        name: await seed_cardholders(settings.migration_database_url, settings, args.holders)
        for name, settings in systems.items()
    }
    turns: dict[str, dict[str, list[dict[str, Any]]]] = {s: {"http": [], "in_process": []} for s in SYSTEMS}
    async with (
        open_services(systems["single"], pool_max=_api_pool(systems["single"]), background=True) as single,
        open_services(systems["cluster"], pool_max=_api_pool(systems["cluster"]), background=True) as cluster,
    ):
        services = {"single": single, "cluster": cluster}
        for name, settings in systems.items():
            await wait_for_api(settings.api_port)
            access, _, key, _ = seeded[name]
            await _verify_http(settings, access, key, 500, args.concurrency)  # warm-up: connections, plans
        for _, name in _turns(args.rounds):
            access, _, key, _ = seeded[name]
            http = await _verify_http(systems[name], access, key, args.verifies, args.concurrency)
            turns[name]["http"].append(http)
            here = await _verify_in_process(services[name], access, key, args.verifies, args.concurrency)
            turns[name]["in_process"].append(here)
            print(
                f"  {name:8} HTTP {http['verifies_per_s']:>8.1f}/s p99 {http['p99_ms']:>6.1f} ms (load {http['load']})"
                f"   in process {here['verifies_per_s']:>8.1f}/s p99 {here['p99_ms']:>6.1f} ms (load {here['load']})",
                flush=True,
            )
    result: dict[str, Any] = {"verifies_per_turn": args.verifies, "in_flight": args.concurrency, "turns": turns}
    for way in ("http", "in_process"):
        rate = {s: _mean(turns[s][way], "verifies_per_s") for s in SYSTEMS}
        result[way] = {
            "single_per_s": rate["single"],
            "cluster_per_s": rate["cluster"],
            "cluster_to_single": round(rate["cluster"] / rate["single"], 3),
        }
    return result


def _api_pool(settings: Settings) -> int:
    """As large as the two API workers' pools together, as bench.payments' in-process baseline."""
    return settings.api_workers * settings.db_pool_max


def _mean(turns: list[dict[str, Any]], key: str) -> float:
    return round(sum(float(t[key]) for t in turns) / len(turns), 1)


# -- disbursement ------------------------------------------------------------------------------------
async def _settle(settings: Settings, nodes: list[str]) -> None:
    """The same starting state for each turn: statistics fresh, dirty pages written out on every node."""
    conn = await asyncpg.connect(settings.migration_database_url)
    try:
        await conn.execute("VACUUM ANALYZE pension_payments")  # Citus passes it on to the shards
    finally:
        await conn.close()
    for url in nodes:
        node = await asyncpg.connect(url)
        try:
            await node.execute("CHECKPOINT")
        finally:
            await node.close()


async def disbursement(
    systems: dict[str, Settings], nodes: dict[str, list[str]], args: argparse.Namespace
) -> dict[str, Any]:
    owed: dict[str, int] = {}
    seed_s: dict[str, float] = {}
    for name, settings in systems.items():
        admin = await asyncpg.connect(settings.migration_database_url)
        try:
            t0 = time.perf_counter()
            owed[name] = await seed_pensioners(admin, args.pensions, FieldCipher(settings.data_encryption_key))
            await admin.execute("VACUUM ANALYZE")
            seed_s[name] = round(time.perf_counter() - t0, 1)
        finally:
            await admin.close()
    turns: dict[str, list[dict[str, Any]]] = {s: [] for s in SYSTEMS}
    for n, name in _turns(args.rounds):
        settings = systems[name]
        await _settle(settings, nodes[name])
        # The CLI's wiring (app.cli.with_services): a small pool of its own, background time limits.
        async with open_services(settings, pool_max=4, background=True) as services:
            t0 = time.perf_counter()
            run = await services.disbursements.run(PERIODS[n], "system:bench")
            run_s = time.perf_counter() - t0
        assert run["paid_fen"] == owed[name], (name, run["paid_fen"], owed[name])
        assert run["paid_count"] + run["withheld_count"] == args.pensions, (name, dict(run))
        turn = {
            "period": f"{PERIODS[n]:%Y-%m}",
            "run_s": round(run_s, 2),
            "records_per_s": round(args.pensions / run_s),
            "paid": run["paid_count"],
            "withheld": run["withheld_count"],
            "load": _load(),
        }
        turns[name].append(turn)
        print(
            f"  {name:8} {turn['period']}  {turn['run_s']:>8.2f} s  {turn['records_per_s']:>9,} records/s"
            f"  (load {turn['load']})",
            flush=True,
        )
    # Rates from the summed times: each turn weighs by its length, as the hour of the model does.
    rate = {s: round(args.pensions * len(turns[s]) / sum(t["run_s"] for t in turns[s])) for s in SYSTEMS}
    return {
        "entitlements": args.pensions,
        "batch": systems["single"].disbursement_batch,
        "seed_s": seed_s,
        "turns": turns,
        "single_records_per_s": rate["single"],
        "cluster_records_per_s": rate["cluster"],
        "cluster_to_single": round(rate["cluster"] / rate["single"], 3),
    }


# -- capacity model ----------------------------------------------------------------------------------
def capacity(qr: dict[str, Any], pay: dict[str, Any], workers: int) -> dict[str, Any]:
    """Nodes of this machine's size for issue 23's demand, from the rates measured in this run.

    A node of the cluster is taken to do what the single PostgreSQL did here, less the overhead the
    cluster showed (the measured ratio): a pension's records and a QR code's rows sit on one shard,
    so each worker does its shards' share alone, and the work grows by workers. The rates were measured
    with every process of both systems and the load generator on the same cores, so they are low
    and the node counts high. Growth by workers is an assumption until the person tables are
    distributed (the printed placement says whether they are) and the application sends a person's
    statements to any node (Citus keeps its metadata on every node); today the coordinator does all."""
    need_pay = PENSIONERS / WINDOW_S
    per_node_pay = pay["single_records_per_s"] * pay["cluster_to_single"]
    pay_workers = max(1, math.ceil(need_pay / per_node_pay))
    per_node_db = qr["in_process"]["single_per_s"] * qr["in_process"]["cluster_to_single"]
    qr_workers = max(1, math.ceil(QR_PEAK_PER_S / per_node_db))
    # The API's own rate: HTTP on the single node, where the database costs least (the cluster's
    # overhead is counted in the database nodes already).
    per_api = qr["http"]["single_per_s"]
    api_nodes = max(1, math.ceil(QR_PEAK_PER_S / per_api))
    return {
        "node": f"this machine: {os.cpu_count()} cores, shared with the load generator",
        "disbursement": {
            "demand_per_s": round(need_pay, 1),
            "per_node_per_s": round(per_node_pay),
            "worker_nodes": pay_workers,
            "nodes": pay_workers + 1,
            "arithmetic": (
                f"{PENSIONERS:,} pensions / {WINDOW_S:,} s = {need_pay:,.1f} records/s; per node "
                f"{pay['single_records_per_s']:,}/s (single) x {pay['cluster_to_single']} (cluster/single) "
                f"= {per_node_pay:,.0f}/s; workers = ceil({need_pay:,.1f} / {per_node_pay:,.0f}) = {pay_workers}, "
                f"+ 1 coordinator = {pay_workers + 1} nodes; at that rate 8 M take "
                f"{PENSIONERS / (per_node_pay * pay_workers) / 60:,.1f} min "
                f"(one PostgreSQL alone: {PENSIONERS / pay['single_records_per_s'] / 60:,.1f} min)"
            ),
        },
        "qr_verify": {
            "demand_per_s": QR_PEAK_PER_S,
            "per_database_node_per_s": round(per_node_db),
            "database_worker_nodes": qr_workers,
            "database_nodes": qr_workers + 1,
            "per_api_node_per_s": round(per_api),
            "api_nodes": api_nodes,
            "arithmetic": (
                f"database: per node {qr['in_process']['single_per_s']:,}/s (single, in process) x "
                f"{qr['in_process']['cluster_to_single']} (cluster/single) = {per_node_db:,.0f}/s; "
                f"workers = ceil({QR_PEAK_PER_S:,} / {per_node_db:,.0f}) = {qr_workers}, + 1 coordinator = "
                f"{qr_workers + 1} nodes. API (stateless, scaled apart): {per_api:,}/s per node "
                f"(HTTP on the single node, 2 granian workers); ceil({QR_PEAK_PER_S:,} / {per_api:,.0f}) = {api_nodes} nodes"
            ),
        },
        "cluster_workers_measured": workers,
    }


# -- running it --------------------------------------------------------------------------------------
def _write(results: dict[str, Any]) -> None:
    out = ROOT / "bench-results"
    out.mkdir(exist_ok=True)
    (out / "cluster.json").write_text(json.dumps(results, indent=2, ensure_ascii=False))


@contextmanager
def _systems() -> Iterator[tuple[dict[str, Settings], dict[str, list[str]], Cluster]]:
    """The embedded PostgreSQL and the cluster, migrated, on one S3 server; the superuser's URL of each
    system's nodes (to checkpoint them)."""
    with (
        embedded_s3("socialcard-bench-cluster-", S3_PORT) as (s3, root, secrets),
        running_postgres(root / "postgres") as single,
        citus_cluster(root / "citus", CLUSTER_PORT) as cluster,
    ):
        systems = {
            "single": migrated(single, s3, root, secrets, API_PORT=str(API_PORTS["single"]), LOG_LEVEL="WARNING"),
            "cluster": migrated(cluster, s3, root, secrets, API_PORT=str(API_PORTS["cluster"]), LOG_LEVEL="WARNING"),
        }
        nodes = {
            "single": [single.url("postgres", DATABASE)],
            "cluster": [node.url("postgres", DATABASE) for node in cluster.nodes],
        }
        yield systems, nodes, cluster


def _print_summary(results: dict[str, Any], args: argparse.Namespace) -> None:
    place, qr, pay, model = results["placement"], results["qr_verify"], results["disbursement"], results["capacity"]
    print()
    print(f"cluster / single (target >= {TARGET_RATIO}x), {args.rounds} turns each, load {results['config']['load']}")
    for way, label in (("http", "QR verify over HTTP"), ("in_process", "QR verify in process")):
        q = qr[way]
        print(
            f"  {label:28} single {q['single_per_s']:>9,.1f}/s  cluster {q['cluster_per_s']:>9,.1f}/s"
            f"  {q['cluster_to_single']:.2f}x"
        )
    print(
        f"  {'disbursement, ' + format(pay['entitlements'], ',') + ' pensions':28} single "
        f"{pay['single_records_per_s']:>9,}/s  cluster {pay['cluster_records_per_s']:>9,}/s"
        f"  {pay['cluster_to_single']:.2f}x"
    )
    if not place["distributed"]:
        print(
            "  (no table is distributed yet: the person tables are Citus local tables on the coordinator, so these\n"
            "   ratios are Citus's overhead on the coordinator (planning; the intermediate results and two-phase\n"
            "   commits of modifying CTEs), not work spread over the workers)"
        )
    print(f"capacity model (nodes of {model['node']}):")
    print(f"  disbursement of {PENSIONERS:,} within {WINDOW_S // 60} min: {model['disbursement']['arithmetic']}")
    print(f"  QR peak of {QR_PEAK_PER_S:,} verifies/s: {model['qr_verify']['arithmetic']}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pensions", type=int, default=1_000_000, help="pensioners seeded on each system")
    parser.add_argument("--verifies", type=int, default=4_000, help="QR verifies per system and turn")
    parser.add_argument("--rounds", type=int, default=2, choices=range(1, len(PERIODS) + 1), help="turns per system")
    parser.add_argument("--holders", type=int, default=200, help="cardholders minting the codes")
    parser.add_argument("--concurrency", type=int, default=32, help="verifies in flight")
    args = parser.parse_args()

    exit_on_sigterm()
    results: dict[str, Any] = {
        "config": {
            "pensions": args.pensions,
            "verifies": args.verifies,
            "rounds": args.rounds,
            "cpus": os.cpu_count(),
            "at": datetime.now(UTC).isoformat(timespec="seconds"),
            "load": _load(),
        }
    }
    with _systems() as (systems, nodes, cluster):
        results["placement"] = place = uvloop.run(placement(systems["cluster"]))
        results["config"]["cluster"] = f"1 coordinator + {len(cluster.workers)} workers on this machine"
        print(f"Citus cluster: 1 coordinator + {len(cluster.workers)} workers (ports {CLUSTER_PORT}-), tables placed:")
        for kind in ("distributed", "reference", "local"):
            print(f"  {kind:12} {len(place[kind]):>3}  {', '.join(place[kind]) or '(none)'}")
        print(f"QR verify, {args.verifies:,} codes per turn, {args.concurrency} in flight:", flush=True)
        with running_api(systems["single"]), running_api(systems["cluster"]):
            results["qr_verify"] = uvloop.run(qr_verify(systems, args))
        _write(results)
        print(f"disbursement of {args.pensions:,} pensions (`socialcard disburse`'s service):", flush=True)
        results["disbursement"] = uvloop.run(disbursement(systems, nodes, args))
    results["capacity"] = capacity(results["qr_verify"], results["disbursement"], len(cluster.workers))
    results["config"]["load"] = _load()
    _write(results)
    _print_summary(results, args)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
