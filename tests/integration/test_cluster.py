"""Cluster mode's own parts on a real 1+2 Citus cluster (issue 23): Citus built against the embedded
PostgreSQL, the nodes started and joined, the migrations applied and the tables placed, every step
idempotent. The domain suites run on a cluster with `make test-cluster` (tests/conftest.py)."""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import pytest

from infra.base import APP_ROLE
from infra.cluster import (
    DEFAULT_CITUS_SOURCE,
    Cluster,
    citus_install,
    cluster_in,
    form,
    grown,
    rebalance,
    running_cluster,
    start_node,
)
from infra.migrate import migrate, migration_files
from infra.placement import PLACEMENTS, Placement, apply, read_schema, ready, violations
from tests.conftest import PROJECT_VAR, TEST_CLUSTER_PORT

pytestmark = pytest.mark.skipif(
    not (Path(os.environ.get("CITUS_SOURCE", DEFAULT_CITUS_SOURCE)) / "build.sh").exists(),
    reason="../shared/citus (the Citus release and its build script) is not beside this clone",
)
DATABASE = "cluster_smoke"


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    # A private folder, not pytest's rotating basetemp, which a concurrent pytest run may reap under
    # the running nodes; ports apart from the session's cluster (make test-cluster) and make run-cluster's.
    folder = Path(tempfile.mkdtemp(prefix="socialcard-cluster-"))
    try:
        with running_cluster(cluster_in(folder, citus_install(PROJECT_VAR), port=TEST_CLUSTER_PORT + 10)) as running:
            yield running
    finally:
        shutil.rmtree(folder, ignore_errors=True)


async def test_a_cluster_forms_migrates_and_places_its_tables_and_does_it_again_unchanged(cluster: Cluster) -> None:
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


# A small schema shaped as the person tables are: a reference table, a person table, a table
# co-located with it by a composite key, and a lookup table of its own group.
_LAYOUT = (
    Placement("terminals", "reference"),
    Placement("persons", "distributed", column="id"),
    Placement("cards", "distributed"),
    Placement("card_numbers", "distributed", column="card_number", group="card_numbers"),
)
_SCHEMA = """
CREATE TABLE terminals (id uuid PRIMARY KEY);
CREATE TABLE persons (id uuid PRIMARY KEY, name text NOT NULL);
CREATE TABLE cards (
    person_id uuid NOT NULL REFERENCES persons (id),
    id uuid NOT NULL,
    terminal_id uuid REFERENCES terminals (id),
    PRIMARY KEY (person_id, id));
CREATE TABLE card_numbers (card_number text PRIMARY KEY, person_id uuid NOT NULL);
CREATE FUNCTION touch() RETURNS trigger LANGUAGE plpgsql AS 'BEGIN RETURN NEW; END';
CREATE TRIGGER cards_touch BEFORE UPDATE ON cards FOR EACH ROW EXECUTE FUNCTION touch();
"""


async def test_the_person_tables_wait_until_none_breaks_a_rule_then_are_distributed_together_keeping_rows_and_keys(
    cluster: Cluster,
) -> None:
    await form(cluster, APP_ROLE, "cluster_flip")
    conn = await asyncpg.connect(cluster.url("postgres", "cluster_flip"))
    try:
        await conn.execute(_SCHEMA)
        person, terminal = uuid.uuid4(), uuid.uuid4()
        await conn.execute("INSERT INTO terminals VALUES ($1)", terminal)
        await conn.execute("INSERT INTO persons VALUES ($1, 'Wang')", person)
        await conn.execute("INSERT INTO cards VALUES ($1, $2, $3)", person, uuid.uuid4(), terminal)

        # The trigger on cards keeps every person table where it is; the reference table goes.
        assert await apply(conn, _LAYOUT) == ["terminals"]
        kinds = dict(await conn.fetch("SELECT table_name::text, citus_table_type FROM citus_tables"))
        assert kinds == {"terminals": "reference", "persons": "local", "cards": "local"}

        await conn.execute("DROP TRIGGER cards_touch ON cards")
        assert await apply(conn, _LAYOUT) == ["card_numbers", "persons", "cards"]
        assert await apply(conn, _LAYOUT) == []
        groups = dict(
            await conn.fetch(
                "SELECT table_name::text, colocation_id FROM citus_tables WHERE citus_table_type = 'distributed'"
            )
        )
        assert groups["persons"] == groups["cards"] != groups["card_numbers"]
        # The rows came along, and the foreign keys hold on the shards.
        assert await conn.fetchval("SELECT count(*) FROM cards WHERE person_id = $1", person) == 1
        with pytest.raises(asyncpg.ForeignKeyViolationError):
            await conn.execute("INSERT INTO cards VALUES ($1, $2, NULL)", uuid.uuid4(), uuid.uuid4())
        with pytest.raises(asyncpg.ForeignKeyViolationError):
            await conn.execute("INSERT INTO cards VALUES ($1, $2, $3)", person, uuid.uuid4(), uuid.uuid4())
    finally:
        await conn.close()


async def test_a_worker_added_under_load_takes_its_share_of_shards_and_no_write_is_lost_or_doubled(
    cluster: Cluster,
) -> None:
    await form(cluster, APP_ROLE, "cluster_growth")
    url = cluster.url("postgres", "cluster_growth")
    conn = await asyncpg.connect(url)
    try:
        await conn.execute("CREATE TABLE persons (id uuid PRIMARY KEY, balance bigint NOT NULL)")
        await conn.execute("SELECT create_distributed_table('persons', 'id')")
        await conn.execute("INSERT INTO persons SELECT gen_random_uuid(), 0 FROM generate_series(1, 20000)")
        old = [row["id"] for row in await conn.fetch("SELECT id FROM persons LIMIT 256")]  # on every shard
        written: list[uuid.UUID] = []
        moving = True

        async def write() -> None:  # a new person and a payment to an old one, over and over
            writer = await asyncpg.connect(url)
            try:
                while moving:
                    person = uuid.uuid4()
                    async with writer.transaction():
                        await writer.execute("INSERT INTO persons VALUES ($1, 100)", person)
                        await writer.execute(
                            "UPDATE persons SET balance = balance + 1 WHERE id = $1", old[len(written) % len(old)]
                        )
                    written.append(person)
            finally:
                await writer.close()

        bigger = grown(cluster)
        start_node(bigger.install, bigger.workers[-1])
        await form(bigger, APP_ROLE, "cluster_growth")
        writers = [asyncio.create_task(write()) for _ in range(2)]
        try:
            done = await rebalance(url)
        finally:
            moving = False
            await asyncio.gather(*writers)

        assert done.moves > 0
        per_node = dict(await conn.fetch("SELECT nodeport, count(*) FROM citus_shards GROUP BY nodeport"))
        assert set(per_node) == {w.port for w in bigger.workers}
        assert max(per_node.values()) - min(per_node.values()) <= 1
        assert len(written) > 100, "the writes went on while the shards moved"
        found = await conn.fetchval("SELECT count(*) FROM persons WHERE id = ANY($1::uuid[])", written)
        assert found == len(written) == len(set(written))
        assert await conn.fetchval("SELECT count(*) FROM persons") == 20000 + len(written)
        assert await conn.fetchval("SELECT sum(balance) FROM persons") == 101 * len(written)
    finally:
        await conn.close()


async def test_a_distributed_cluster_takes_a_later_migration_statement_by_statement(
    cluster: Cluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    await form(cluster, APP_ROLE, "cluster_upgrade")
    url = cluster.url("postgres", "cluster_upgrade")
    every = migration_files()
    monkeypatch.setattr("infra.migrate.migration_files", lambda: every[:-1])
    await migrate(url, APP_ROLE)  # placed: the person tables distributed
    monkeypatch.undo()
    assert await migrate(url, APP_ROLE) == [every[-1].name]  # Citus passes each statement to the shards
    conn = await asyncpg.connect(url)
    try:
        assert violations(await read_schema(conn)) == {}
        kinds = dict(await conn.fetch("SELECT table_name::text, citus_table_type FROM citus_tables"))
        assert {kinds[p.table] for p in PLACEMENTS if p.place == "distributed"} == {"distributed"}
    finally:
        await conn.close()
