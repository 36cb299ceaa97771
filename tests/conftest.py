"""Integration fixtures: the real embedded PostgreSQL and SeaweedFS, started once per session.

Each test gets its own database (cloned from a migrated template) and its own bucket. With
TEST_CLUSTER=1 (`make test-cluster`) the database is a Citus cluster on this machine instead, a
coordinator and two workers (infra.cluster), and each test's database is cloned on every node.
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import os
import secrets
import shutil
import ssl
import tempfile
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from app.services import Services, open_services
from infra.cluster import Cluster, citus_install, cluster_in, form, running_cluster
from infra.config import APP_ROLE, Settings, load_settings
from infra.embedded import (
    EmbeddedPostgres,
    EmbeddedS3,
    provision,
    running_postgres,
    running_seaweedfs,
    service_env,
    write_self_signed,
)
from infra.migrate import migrate

TEMPLATE_DB = "socialcard_template"
CLUSTER = os.environ.get("TEST_CLUSTER") == "1"
TEST_S3_PORT = int(os.environ.get("TEST_S3_PORT", "28333"))  # other ports derive from it; clear of make run
# Citus is built once into the project's own var/, as make run-cluster does, and kept between runs.
PROJECT_VAR = Path(__file__).resolve().parents[1] / "var"
TEST_CLUSTER_PORT = TEST_S3_PORT - 3000  # the cluster's nodes: clear of the S3 server's ports and of make run-cluster
FACES = Path(__file__).resolve().parents[1].parent / "shared" / "faces"


@dataclass(frozen=True)
class Embedded:
    postgres: EmbeddedPostgres | Cluster
    s3: EmbeddedS3
    access_key: str
    secret_key: str
    keys: dict[str, str]
    root: Path

    def env(self, database: str, bucket: str) -> dict[str, str]:
        """Settings for one test's database and bucket on the session's services."""
        return {
            **service_env(
                self.postgres,
                self.s3,
                database=database,
                bucket=bucket,
                access_key=self.access_key,
                secret_key=self.secret_key,
            ),
            "VAR_DIR": str(self.root / "var"),
            "SOCIALCARD_ENV": "test",
            "LOG_LEVEL": "WARNING",
            **self.keys,
        }


@pytest.fixture(scope="session")
def embedded() -> Iterator[Embedded]:
    # A private folder, not pytest's rotating basetemp: a concurrent pytest run must not reap it.
    root = Path(tempfile.mkdtemp(prefix="socialcard-test-"))
    access, secret = "test-" + secrets.token_hex(4), secrets.token_urlsafe(18)
    keys = {
        name: base64.b64encode(secrets.token_bytes(32)).decode()
        for name in ("TOKEN_SIGNING_KEY", "QR_SIGNING_KEY", "DATA_ENCRYPTION_KEY", "LOOKUP_HASH_KEY", "AUDIT_CHAIN_KEY")
    }
    database = (
        running_cluster(cluster_in(root, citus_install(PROJECT_VAR), port=TEST_CLUSTER_PORT))
        if CLUSTER
        else running_postgres(root / "pg")
    )
    try:
        with (
            database as postgres,
            running_seaweedfs(
                root / "s3", access_key=access, secret_key=secret, bucket="bootstrap", s3_port=TEST_S3_PORT
            ) as s3,
        ):

            async def prepare() -> None:
                if isinstance(postgres, Cluster):
                    await form(postgres, APP_ROLE, TEMPLATE_DB)
                else:
                    await provision(postgres.url("postgres", "postgres"), APP_ROLE, TEMPLATE_DB)
                await migrate(postgres.url("postgres", TEMPLATE_DB), APP_ROLE)
                if isinstance(postgres, Cluster):
                    await _seal_template(postgres)

            asyncio.run(prepare())
            yield Embedded(postgres, s3, access, secret, keys, root)
    finally:
        shutil.rmtree(root, ignore_errors=True)


_counter = itertools.count()


@pytest.fixture
async def settings(embedded: Embedded) -> AsyncIterator[Settings]:
    n = f"{os.getpid()}_{next(_counter)}"
    database, bucket = f"test_{n}", f"test-{n.replace('_', '-')}"
    # On a cluster, every node's copy of the template: the coordinator's metadata and the workers'
    # shards were made together, so the copies agree (Citus reaches a worker's database by the same name).
    await _on_every_node(embedded, f'CREATE DATABASE "{database}" TEMPLATE {TEMPLATE_DB}')
    settings = load_settings(embedded.env(database, bucket))
    from infra.storage import ObjectStorage

    ObjectStorage(settings).ensure_bucket()
    yield settings
    await _on_every_node(embedded, f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')


async def _seal_template(cluster: Cluster) -> None:
    """Citus keeps a maintenance session in each of its databases, and a template with sessions cannot
    be copied: the template is closed to connections and its sessions ended, on every node."""
    await _on_every_node(
        cluster,
        f"ALTER DATABASE {TEMPLATE_DB} WITH ALLOW_CONNECTIONS false",
        f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{TEMPLATE_DB}'",
    )


async def _on_every_node(database: Embedded | Cluster, *statements: str) -> None:
    """Run `statements` as the superuser on the embedded server, or on each node of the cluster."""
    server = database.postgres if isinstance(database, Embedded) else database
    for node in server.nodes if isinstance(server, Cluster) else (server,):
        admin = await asyncpg.connect(node.url("postgres", "postgres"))
        try:
            for statement in statements:
                await admin.execute(statement)
        finally:
            await admin.close()


@pytest.fixture
async def services(settings: Settings) -> AsyncIterator[Services]:
    """The same wiring as the API and the CLI (app.services), on this test's database and bucket."""
    async with open_services(settings, pool_max=5) as services:
        yield services


@pytest.fixture
def pool(services: Services) -> asyncpg.Pool:
    return services.pool


@pytest.fixture
async def client(settings: Settings) -> AsyncIterator[Any]:
    from litestar.testing import AsyncTestClient

    from app.asgi import create_app

    async with AsyncTestClient(create_app(settings)) as client:
        yield client


class Importer:
    """The person import as the CLI runs it, under a test actor."""

    def __init__(self, services: Services) -> None:
        self._persons = services.persons

    async def import_file(self, path: Path) -> Any:
        return await self._persons.import_file(path, "system:test")


@pytest.fixture
def importer(services: Services) -> Importer:
    return Importer(services)


@pytest.fixture
async def cardholder(client: Any, pool: asyncpg.Pool, importer: Importer, tmp_path: Path) -> dict[str, Any]:
    """An imported person, signed in on a device, with an activated card."""
    from tests.factories import activated_cardholder

    return await activated_cardholder(client, pool, importer, tmp_path)


@pytest.fixture
async def terminal_headers(services: Services) -> dict[str, str]:
    key = await services.auth.create_terminal("Test Pharmacy")
    return {"Authorization": f"Bearer {key}"}


@pytest.fixture
async def operator_headers(services: Services) -> dict[str, str]:
    from tests.factories import operator_headers_for

    return await operator_headers_for(services, "reviewer1", "Reviewer One")


@pytest.fixture
async def admin_headers(services: Services) -> dict[str, str]:
    from tests.factories import operator_headers_for

    return await operator_headers_for(services, "admin1", "Admin One", role="admin")


@pytest.fixture
async def fcm() -> AsyncIterator[Any]:
    """A local FCM-protocol server for this test (it records requests and answers as told)."""
    from tests.doubles.fcm_server import FcmServer

    async with FcmServer() as server:
        yield server


@dataclass(frozen=True)
class LocalTls:
    """A self-signed certificate for 127.0.0.1: the file a client is told to trust, and a server context with it."""

    ca_file: Path
    server: ssl.SSLContext


@pytest.fixture(scope="session")
def local_tls(tmp_path_factory: pytest.TempPathFactory) -> LocalTls:
    ca_file, key_file = write_self_signed(
        tmp_path_factory.mktemp("tls") / "cert", "socialcard test server", days=1, ip="127.0.0.1"
    )
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.load_cert_chain(ca_file, key_file)
    return LocalTls(ca_file, server)
