"""Prometheus metrics: every metric the system exports, defined once, and the text a scrape reads.

Counters and histograms are kept where things happen (the API's middleware, the job executor, the
certification decision, the notification dispatcher). The API runs as several granian worker
processes beside a job worker and a scheduler, and a scrape reaches one of them: each process's
counts alone would be a fraction that changes from scrape to scrape. So prometheus-client's
multiprocess mode is used: with PROMETHEUS_MULTIPROC_DIR set (before prometheus_client is first
imported, which is why `socialcard up` and `serve` set it in the environment of the processes they
start), every process writes its values to files of its own in that folder, and a scrape adds them
up (MultiProcessCollector). A process that exits leaves its files: its counts stay in the totals, as
counters must. There is no live gauge (which would need `mark_process_dead`): what is a level rather
than a count (queue depth, the notification backlog) is read from the database at scrape time, which
is right across any number of processes and machines.

Every label has a bounded set of values: route templates (never a raw path), a status class, known
methods, job names, decision outcomes, reason categories, channels and states.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from prometheus_client import CONTENT_TYPE_PLAIN_0_0_4, REGISTRY, Counter, Histogram, generate_latest
from prometheus_client.metrics_core import GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
# The classic text format (what generate_latest writes), which every Prometheus version reads; the
# HTTP response adds "; charset=utf-8" itself.
CONTENT_TYPE = CONTENT_TYPE_PLAIN_0_0_4.removesuffix("; charset=utf-8")

# -- HTTP ---------------------------------------------------------------------------------------
HTTP_REQUESTS = Counter(
    "socialcard_http_requests",
    "HTTP requests answered, by route template, method and status class",
    ["route", "method", "status"],
)
HTTP_DURATION = Histogram(
    "socialcard_http_request_duration_seconds",
    "Time to answer an HTTP request, by route template and method",
    ["route", "method"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
)
UNMATCHED_ROUTE = "unmatched"  # no route answered it (a 404, a 405): the raw path is never a label
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


def method_label(method: str | None) -> str:
    return method if method in METHODS else "other"


def status_class(status: int) -> str:
    return f"{status // 100}xx" if 100 <= status <= 599 else "other"


def observe_request(route: str | None, method: str | None, status: int, seconds: float) -> None:
    method = method_label(method)
    route = route or UNMATCHED_ROUTE
    HTTP_REQUESTS.labels(route, method, status_class(status)).inc()
    HTTP_DURATION.labels(route, method).observe(seconds)


# -- jobs ---------------------------------------------------------------------------------------
JOB_DURATION = Histogram(
    "socialcard_job_duration_seconds",
    "Time a background job ran, by job type and result (ok, retry: a passing failure, failed)",
    ["job", "result"],
    # A face check takes seconds; a dispatch job polls for its minute's window.
    buckets=(0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 900.0),
)
JOB_WAIT = Histogram(
    "socialcard_job_wait_seconds",
    "Time a background job waited in the queue, from when it was due to when a worker started it",
    ["job"],
    buckets=(0.1, 0.5, 1.0, 2.5, 5.0, 15.0, 30.0, 60.0, 300.0, 900.0, 3600.0),
)

# -- certification ------------------------------------------------------------------------------
DECISIONS = Counter(
    "socialcard_certification_decisions",
    "Certification decisions, by outcome and by who decided (worker, reviewer)",
    ["outcome", "decided_by"],
)
DECISION_REASONS = Counter(
    "socialcard_certification_decision_reasons",
    "Reasons given with certification decisions, by outcome and reason category",
    ["outcome", "category"],
)

# -- notifications ------------------------------------------------------------------------------
NOTIFICATIONS = Counter(
    "socialcard_notifications",
    "Notification events by channel (push, sms: each delivery attempt's outcome; inbox: first reads) and state",
    ["channel", "state"],
)


# -- the scrape ---------------------------------------------------------------------------------
def fresh_dir(path: Path) -> Path:
    """The folder for the multiprocess files, without any left by an earlier run (they would be added
    to this run's counts). Only those files are removed: the folder may be one an operator named."""
    path.mkdir(parents=True, exist_ok=True)
    for left in path.glob("*.db"):
        left.unlink(missing_ok=True)
    return path


def multiproc_dir() -> str | None:
    return os.environ.get(MULTIPROC_ENV) or None


@dataclass(frozen=True)
class Gauge:
    """A level read at scrape time (from the database): name, help, label names, (label values, value) rows."""

    name: str
    documentation: str
    labels: tuple[str, ...]
    rows: Iterable[tuple[tuple[str, ...], float]]

    def family(self) -> Metric:
        family = GaugeMetricFamily(self.name, self.documentation, labels=self.labels)
        for values, value in self.rows:
            family.add_metric(list(values), value)
        return family


class _Scrape:
    """This scrape's metrics: every process's counts, and the levels read for it."""

    def __init__(self, levels: Iterable[Gauge]) -> None:
        path = multiproc_dir()
        # registry=None: read once for this scrape, not registered anywhere.
        self._counts = MultiProcessCollector(None, path) if path else REGISTRY  # type: ignore[no-untyped-call]
        self._levels = levels

    def collect(self) -> Iterator[Metric]:
        yield from self._counts.collect()
        for level in self._levels:
            yield level.family()


def exposition(levels: Iterable[Gauge] = ()) -> bytes:
    """The Prometheus text format of all processes' counters and histograms and of `levels`."""
    return generate_latest(_Scrape(levels))
