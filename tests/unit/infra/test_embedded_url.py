"""The CLI in a second terminal finds the database the system runs on: `make run`'s embedded
PostgreSQL, or else `make run-cluster`'s coordinator (read from its postmaster.pid, as PostgreSQL
writes it)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from infra.base import SettingsError
from infra.embedded import CLUSTER_COORDINATOR, embedded_database_url


def _running(pgdata: Path, port: int) -> None:
    """A postmaster.pid of a ready server: this process stands in for the postmaster."""
    pgdata.mkdir(parents=True)
    lines = [str(os.getpid()), str(pgdata), "0", str(port), str(pgdata), "127.0.0.1", "0 0", "ready"]
    (pgdata / "postmaster.pid").write_text("\n".join(lines) + "\n")


def test_the_embedded_server_first_then_the_clusters_coordinator(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="make run-cluster"):
        embedded_database_url(tmp_path, "socialcard_app")
    _running(tmp_path / CLUSTER_COORDINATOR, 9700)
    assert embedded_database_url(tmp_path, "socialcard_app") == (
        f"postgresql://socialcard_app@/socialcard?host={str(tmp_path / CLUSTER_COORDINATOR).replace('/', '%2F')}&port=9700"
    )
    _running(tmp_path / "postgres", 5432)
    assert embedded_database_url(tmp_path, "postgres").endswith("&port=5432")
