"""The system as `make run` configures it, for a benchmark: embedded PostgreSQL and S3 in a private
folder, provisioned and migrated, and everything stopped and removed afterwards."""

from __future__ import annotations

import asyncio
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from infra.config import APP_ROLE, Settings, dev_secrets, load_settings
from infra.embedded import provision, running_postgres, running_seaweedfs, service_env
from infra.migrate import migrate


@contextmanager
def embedded_system(prefix: str, s3_port: int, **extra_env: str) -> Iterator[tuple[Settings, Path]]:
    """Settings for a fresh migrated database and bucket, and the private folder holding them."""
    root = Path(tempfile.mkdtemp(prefix=prefix))
    secrets = dev_secrets(root)
    access_key, secret_key = secrets["s3_access_key_id"], secrets["s3_secret_access_key"]
    try:
        with (
            running_postgres(root / "postgres") as postgres,
            running_seaweedfs(
                root / "s3", access_key=access_key, secret_key=secret_key, bucket="socialcard", s3_port=s3_port
            ) as s3,
        ):
            asyncio.run(provision(postgres.url("postgres", "postgres"), APP_ROLE, "socialcard"))
            env = {
                **service_env(
                    postgres,
                    s3,
                    database="socialcard",
                    bucket="socialcard",
                    access_key=access_key,
                    secret_key=secret_key,
                ),
                "VAR_DIR": str(root),
                "SOCIALCARD_ENV": "bench",
                **{k.upper(): v for k, v in secrets.items() if k.endswith("_key")},
                **extra_env,
            }
            settings = load_settings(env)
            asyncio.run(migrate(settings.migration_database_url, APP_ROLE))
            yield settings, root
    finally:
        shutil.rmtree(root, ignore_errors=True)
