"""Integration fixtures: the real embedded PostgreSQL and SeaweedFS, started once per session.

Each test gets its own database (cloned from a migrated template) and its own bucket.
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import os
import secrets
import shutil
import tempfile
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from infra.config import APP_ROLE, Settings, load_settings
from infra.embedded import EmbeddedPostgres, EmbeddedS3, provision, start_postgres, start_seaweedfs
from infra.migrate import migrate

TEMPLATE_DB = "socialcard_template"
TEST_WEED_PORTS = {"s3": 28333, "master": 29333, "volume": 29340, "filer": 28888, "admin": 25646}
FACES = Path(__file__).resolve().parents[1].parent / "shared" / "faces"


@dataclass(frozen=True)
class Embedded:
    postgres: EmbeddedPostgres
    s3: EmbeddedS3
    access_key: str
    secret_key: str
    keys: dict[str, str]
    root: Path


@pytest.fixture(scope="session")
def embedded() -> Iterator[Embedded]:
    # A private folder, not pytest's rotating basetemp: a concurrent pytest run must not reap it.
    root = Path(tempfile.mkdtemp(prefix="socialcard-test-"))
    postgres = start_postgres(root / "pg")
    access, secret = "test-" + secrets.token_hex(4), secrets.token_urlsafe(18)
    try:
        s3 = start_seaweedfs(
            root / "s3", access_key=access, secret_key=secret, bucket="bootstrap", ports=TEST_WEED_PORTS
        )
    except BaseException:
        postgres.stop()
        raise
    admin = postgres.url("postgres", "postgres")

    async def prepare() -> None:
        await provision(admin, APP_ROLE, TEMPLATE_DB)
        await migrate(postgres.url("postgres", TEMPLATE_DB), APP_ROLE)

    keys = {
        name: base64.b64encode(secrets.token_bytes(32)).decode()
        for name in ("TOKEN_SIGNING_KEY", "QR_SIGNING_KEY", "DATA_ENCRYPTION_KEY", "LOOKUP_HASH_KEY")
    }
    try:
        asyncio.run(prepare())
        yield Embedded(postgres, s3, access, secret, keys, root)
    finally:
        s3.stop()
        postgres.stop()
        shutil.rmtree(root, ignore_errors=True)


_counter = itertools.count()


def settings_env(embedded: Embedded, database: str, bucket: str) -> dict[str, str]:
    return {
        "DATABASE_URL": embedded.postgres.url(APP_ROLE, database),
        "MIGRATION_DATABASE_URL": embedded.postgres.url("postgres", database),
        "S3_ENDPOINT_URL": embedded.s3.endpoint_url,
        "S3_BUCKET": bucket,
        "S3_ACCESS_KEY_ID": embedded.access_key,
        "S3_SECRET_ACCESS_KEY": embedded.secret_key,
        "VAR_DIR": str(embedded.root / "var"),
        "SOCIALCARD_ENV": "test",
        "LOG_LEVEL": "WARNING",
        **embedded.keys,
    }


@pytest.fixture
async def settings(embedded: Embedded) -> AsyncIterator[Settings]:
    n = f"{os.getpid()}_{next(_counter)}"
    database, bucket = f"test_{n}", f"test-{n.replace('_', '-')}"
    admin = await asyncpg.connect(embedded.postgres.url("postgres", "postgres"))
    try:
        await admin.execute(f'CREATE DATABASE "{database}" TEMPLATE {TEMPLATE_DB}')
    finally:
        await admin.close()
    settings = load_settings(settings_env(embedded, database, bucket))
    from infra.storage import ObjectStorage

    ObjectStorage(settings).ensure_bucket()
    yield settings
    admin = await asyncpg.connect(embedded.postgres.url("postgres", "postgres"))
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
    finally:
        await admin.close()


@pytest.fixture
async def pool(settings: Settings) -> AsyncIterator[asyncpg.Pool]:
    from infra.db import create_pool

    pool = await create_pool(settings.database_url, min_size=1, max_size=5)
    yield pool
    await pool.close()


@pytest.fixture
async def client(settings: Settings) -> AsyncIterator[Any]:
    from litestar.testing import AsyncTestClient

    from app.asgi import create_app

    async with AsyncTestClient(create_app(settings)) as client:
        yield client


@pytest.fixture
async def importer(settings: Settings, pool: asyncpg.Pool) -> Any:
    from app.persons.service import PersonImporter, PersonKeys
    from infra.crypto import FieldCipher
    from infra.storage import ObjectStorage

    return PersonImporter(
        pool,
        ObjectStorage(settings),
        PersonKeys(FieldCipher(settings.data_encryption_key), settings.lookup_hash_key),
        "system:test",
    )


@pytest.fixture
async def cardholder(client: Any, pool: asyncpg.Pool, importer: Any, tmp_path: Path) -> dict[str, Any]:
    """An imported person, signed in on a device, with an activated card."""
    from tests.factories import bearer, sample_person, sign_in, write_jsonl

    person = sample_person()
    report = await importer.import_file(write_jsonl(tmp_path / "p.jsonl", [person.row()]))
    assert report.created == 1, report.errors
    tokens = await sign_in(client, pool, person.phone)
    r = await client.post(
        "/v1/card/activation", json={"national_id": person.national_id}, headers=bearer(tokens["access_token"])
    )
    assert r.status_code == 200, r.text
    return {"person": person, "tokens": tokens, "headers": bearer(tokens["access_token"]), "card": r.json()}


@pytest.fixture
async def terminal_headers(settings: Settings, pool: asyncpg.Pool) -> dict[str, str]:
    from app.auth.service import AuthService
    from notifications.sms import DevSmsProvider

    key = await AuthService(pool, settings, DevSmsProvider()).create_terminal("Test Pharmacy")
    return {"Authorization": f"Bearer {key}"}
