"""Cluster mode's own parts on a real 1+2 Citus cluster (issue 23): Citus built against the embedded
PostgreSQL, the nodes started and joined, the migrations applied and the tables placed, every step
idempotent. The domain suites run on a cluster with `make test-cluster` (tests/conftest.py)."""

from __future__ import annotations

import os
from pathlib import Path

import asyncpg
import pytest

from infra.base import APP_ROLE
from infra.cluster import DEFAULT_CITUS_SOURCE, citus_install, cluster_in, form, running_cluster
from infra.migrate import migrate, migration_files
from infra.placement import PLACEMENTS, read_schema, ready, violations
from tests.conftest import PROJECT_VAR, TEST_CLUSTER_PORT

pytestmark = pytest.mark.skipif(
    not (Path(os.environ.get("CITUS_SOURCE", DEFAULT_CITUS_SOURCE)) / "build.sh").exists(),
    reason="../shared/citus (the Citus release and its build script) is not beside this clone",
)
DATABASE = "cluster_smoke"


async def test_a_cluster_forms_migrates_and_places_its_tables_and_does_it_again_unchanged(tmp_path: Path) -> None:
    # Ports apart from the session's cluster (make test-cluster) and from make run-cluster's.
    cluster = cluster_in(tmp_path, citus_install(PROJECT_VAR), port=TEST_CLUSTER_PORT + 10)
    with running_cluster(cluster):
        for _ in range(2):  # a restart forms the same cluster again
            await form(cluster, APP_ROLE, DATABASE)
        assert await migrate(cluster.url("postgres", DATABASE), APP_ROLE) == [p.name for p in migration_files()]
        assert await migrate(cluster.url("postgres", DATABASE), APP_ROLE) == []

        conn = await asyncpg.connect(cluster.url("postgres", DATABASE))
        try:
            workers = await conn.fetch("SELECT node_port FROM citus_get_active_worker_nodes() ORDER BY node_port")
            assert [w["node_port"] for w in workers] == [w.port for w in cluster.workers]
            placed = {
                row["table_name"]: row["citus_table_type"]
                for row in await conn.fetch("SELECT table_name::text, citus_table_type FROM citus_tables")
            }
            expected = ready(PLACEMENTS, violations(await read_schema(conn)))
            assert {t for t, kind in placed.items() if kind == "reference"} == {
                p.table for p in expected if p.place == "reference"
            }
            assert {t for t, kind in placed.items() if kind == "distributed"} == {
                p.table for p in expected if p.place == "distributed"
            }
            operator = await conn.fetchval(
                """INSERT INTO operators (username, display_name, role, password_hash, totp_secret_enc)
                   VALUES ('olga', 'Olga', 'operator', 'x', '\\x00') RETURNING id"""
            )
        finally:
            await conn.close()
        # A reference table's row is on every worker, read there as the application reads it.
        for worker in cluster.workers:
            on_worker = await asyncpg.connect(worker.url("postgres", DATABASE))
            try:
                assert await on_worker.fetchval("SELECT username FROM operators WHERE id = $1", operator) == "olga"
            finally:
                await on_worker.close()
        # The application's role works through the coordinator, as the API does.
        app = await asyncpg.connect(cluster.url(APP_ROLE, DATABASE))
        try:
            assert await app.fetchval("SELECT count(*) FROM operators") == 1
        finally:
            await app.close()
