"""The metrics' labels stay bounded, and a scrape is valid Prometheus text."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from infra import metrics
from infra.jobs import waited_s


def test_labels_are_a_status_class_and_a_known_method() -> None:
    assert [metrics.status_class(s) for s in (101, 200, 302, 404, 503)] == ["1xx", "2xx", "3xx", "4xx", "5xx"]
    assert metrics.status_class(0) == metrics.status_class(999) == "other"
    assert metrics.method_label("GET") == "GET"
    assert metrics.method_label("BREW") == metrics.method_label(None) == "other"


def test_a_request_no_route_answered_is_counted_without_its_path() -> None:
    labels = ("unmatched", "GET", "4xx")
    before = metrics.HTTP_REQUESTS.labels(*labels)._value.get()
    metrics.observe_request(None, "GET", 404, 0.01)
    assert metrics.HTTP_REQUESTS.labels(*labels)._value.get() == before + 1


def test_a_scrape_is_prometheus_text_with_the_levels_read_for_it() -> None:
    level = metrics.Gauge("socialcard_test_level", "A level", ("job",), [(("a",), 2.0), (("b",), 0.0)])
    families = {f.name: f for f in text_string_to_metric_families(metrics.exposition([level]).decode())}
    assert [(s.labels, s.value) for s in families["socialcard_test_level"].samples] == [
        ({"job": "a"}, 2.0),
        ({"job": "b"}, 0.0),
    ]
    assert "socialcard_http_requests" in families  # the counters defined in infra.metrics


def test_the_folder_is_emptied_of_earlier_runs_files_only(tmp_path: Path) -> None:
    folder = tmp_path / "metrics"
    folder.mkdir()
    (folder / "counter_123.db").write_bytes(b"x")
    (folder / "README").write_text("kept")
    assert metrics.fresh_dir(folder) == folder
    assert sorted(p.name for p in folder.iterdir()) == ["README"]
    assert metrics.fresh_dir(tmp_path / "new").is_dir()


def test_a_jobs_wait_runs_from_when_it_was_due() -> None:
    now = datetime(2025, 1, 1, 12, tzinfo=UTC)
    assert waited_s(now - timedelta(seconds=30), now - timedelta(seconds=30), now) == 30
    assert waited_s(now - timedelta(minutes=5), now - timedelta(seconds=2), now) == 2  # a retry's delay
    assert waited_s(now, now + timedelta(seconds=1), now) == 0  # clocks apart: never negative
