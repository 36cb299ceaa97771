"""The cluster kept under var/: a worker `socialcard cluster grow` added is found again at the next start."""

from __future__ import annotations

from pathlib import Path

from infra.cluster import cluster_in, grown


def test_a_grown_worker_sits_beside_the_others_and_is_found_again(tmp_path: Path) -> None:
    cluster = cluster_in(tmp_path, tmp_path / "citus", port=9700)
    assert [(w.name, w.port) for w in cluster.workers] == [("worker1", 9701), ("worker2", 9702)]

    bigger = grown(cluster)
    added = bigger.workers[-1]
    assert (added.name, added.port, added.pgdata.parent) == ("worker3", 9703, cluster.workers[0].pgdata.parent)
    assert cluster_in(tmp_path, tmp_path / "citus", port=9700) == cluster  # not made yet: not found

    added.pgdata.mkdir(parents=True)
    (added.pgdata / "PG_VERSION").write_text("18\n")
    assert cluster_in(tmp_path, tmp_path / "citus", port=9700) == bigger
