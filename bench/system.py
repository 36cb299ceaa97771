"""The system as `make run` configures it, for a benchmark: embedded PostgreSQL and S3 in a private
folder, provisioned and migrated, and everything stopped and removed afterwards. `make bench-cluster`
puts a Citus cluster (`make run-cluster`'s) beside the embedded PostgreSQL, on the same S3 server."""

from __future__ import annotations

import asyncio
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from infra.cluster import Cluster, citus_install, cluster_in, form, running_cluster
from infra.config import APP_ROLE, Settings, dev_secrets, load_settings
from infra.embedded import Database, EmbeddedS3, provision, running_postgres, running_seaweedfs, service_env
from infra.migrate import migrate

ROOT = Path(__file__).resolve().parents[1]
DATABASE = "socialcard"


@contextmanager
def embedded_s3(prefix: str, s3_port: int) -> Iterator[tuple[EmbeddedS3, Path, dict[str, str]]]:
    """The S3 server in a new private folder; the server, the folder and the dev secrets written there.
    The folder is removed afterwards, with every database a caller started in it."""
    root = Path(tempfile.mkdtemp(prefix=prefix))
    secrets = dev_secrets(root)
    try:
        with running_seaweedfs(
            root / "s3",
            access_key=secrets["s3_access_key_id"],
            secret_key=secrets["s3_secret_access_key"],
            bucket="socialcard",
            s3_port=s3_port,
        ) as s3:
            yield s3, root, secrets
    finally:
        shutil.rmtree(root, ignore_errors=True)


@contextmanager
def citus_cluster(root: Path, port: int) -> Iterator[Cluster]:
    """A coordinator and two workers under `root` (the coordinator on `port`, the workers above it),
    Citus built once into the project's var/ as `make run-cluster` builds it."""
    with running_cluster(cluster_in(root, citus_install(ROOT / "var"), port=port)) as cluster:
        yield cluster


def migrated(database: Database, s3: EmbeddedS3, root: Path, secrets: dict[str, str], **extra_env: str) -> Settings:
    """Settings for the application's database on `database`, created and migrated (on a cluster the
    migrations also place the tables, as `make run-cluster` does)."""

    async def prepare() -> None:
        if isinstance(database, Cluster):
            await form(database, APP_ROLE, DATABASE)  # the role, database and Citus on every node; workers joined
        else:
            await provision(database.url("postgres", "postgres"), APP_ROLE, DATABASE)
        await migrate(database.url("postgres", DATABASE), APP_ROLE)

    asyncio.run(prepare())
    env = {
        **service_env(
            database,
            s3,
            database=DATABASE,
            bucket="socialcard",
            access_key=secrets["s3_access_key_id"],
            secret_key=secrets["s3_secret_access_key"],
        ),
        "VAR_DIR": str(root),
        "SOCIALCARD_ENV": "bench",
        **{k.upper(): v for k, v in secrets.items() if k.endswith("_key")},
        **extra_env,
    }
    return load_settings(env)


@contextmanager
def embedded_system(prefix: str, s3_port: int, **extra_env: str) -> Iterator[tuple[Settings, Path]]:
    """Settings for a fresh migrated database and bucket, and the private folder holding them."""
    with embedded_s3(prefix, s3_port) as (s3, root, secrets), running_postgres(root / "postgres") as postgres:
        yield migrated(postgres, s3, root, secrets, **extra_env), root
