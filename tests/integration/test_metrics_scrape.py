"""/metrics scraped from the real processes: the API under granian with two workers and a job worker,
sharing one multiprocess folder as under `socialcard up`; the counts add up across all of them."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import uuid
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import msgspec
import pytest
from litestar.testing import AsyncTestClient
from pgqueuer.db import AsyncpgDriver
from pgqueuer.queries import Queries
from prometheus_client.metrics_core import Metric
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.parser import text_string_to_metric_families

from app.asgi import create_app
from app.services import Services
from infra.config import Settings, settings_env
from infra.jobs import PURGE_EXPIRED, enqueue_once
from infra.metrics import MULTIPROC_ENV
from tests.conftest import FACES
from tests.factories import ROOT, applicant, operator_headers_for, problem_code, serving

VIDEO = FACES / "video" / "live_blink__eye_blink.mp4"
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def parse(text: str) -> Samples:
    return parse_families(text_string_to_metric_families(text))


def parse_families(families: Iterable[Metric]) -> Samples:
    return {(s.name, frozenset(s.labels.items())): s.value for family in families for s in family.samples}


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def live_counts(metrics_dir: Path) -> dict[str, float]:
    """GET /health/live as each process counted it, read from its own file (counter_<pid>.db)."""
    counts = {}
    for path in metrics_dir.glob("counter_*.db"):
        samples = parse_families(MultiProcessCollector.merge([str(path)], accumulate=False))
        if n := value(samples, "socialcard_http_requests_total", route="/health/live", method="GET", status="2xx"):
            counts[path.stem] = n
    return counts


@pytest.fixture
def metrics_dir(tmp_path: Path) -> Path:
    path = tmp_path / "metrics"
    path.mkdir()
    return path


@pytest.fixture
def api(settings: Settings, metrics_dir: Path) -> Iterator[str]:
    with serving(settings, workers=2, env={MULTIPROC_ENV: str(metrics_dir)}) as base:
        yield base


async def scrape(http: httpx.AsyncClient) -> Samples:
    r = await http.get("/metrics")
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/plain; version=0.0.4")
    return parse(r.text)


def socialcard(settings: Settings, metrics_dir: Path, *argv: str) -> None:
    """`socialcard …argv` as a process of its own, writing its metrics where the API reads them."""
    env = {**os.environ, **settings_env(settings), MULTIPROC_ENV: str(metrics_dir)}
    done = subprocess.run(
        [sys.executable, "-m", "app.cli", *argv], env=env, cwd=ROOT, capture_output=True, text=True, timeout=180
    )
    assert done.returncode == 0, done.stderr[-3000:]


@pytest.mark.skipif(not VIDEO.exists(), reason="../shared/faces is not beside this clone")
async def test_metrics_add_up_across_api_workers_and_the_job_worker(
    api: str,
    settings: Settings,
    services: Services,
    pool: asyncpg.Pool,
    importer: Any,
    metrics_dir: Path,
    tmp_path: Path,
) -> None:
    fresh = httpx.Limits(max_keepalive_connections=0)  # each request a new connection: they spread over workers
    async with httpx.AsyncClient(base_url=api, limits=fresh, timeout=30) as http:
        # Requests by route template, answered by both API workers, counted once each. Connections are
        # not dealt out evenly: rounds of 40 at once go on until each worker has answered some.
        before = await scrape(http)
        sent = 0
        while len(live_counts(metrics_dir)) < 2:
            assert sent < 1000, "one API worker took every connection"
            answers = await asyncio.gather(*(http.get("/health/live") for _ in range(40)))
            assert {a.status_code for a in answers} == {200}
            sent += 40
        some_id = uuid.uuid4()
        assert (await http.get(f"/v1/certifications/checks/{some_id}")).status_code == 401
        assert (await http.get(f"/no/such/{some_id}")).status_code == 404
        # A local proxy does not make a remote client local.
        r = await http.get("/metrics", headers={"X-Forwarded-For": "203.0.113.9"})
        assert (r.status_code, problem_code(r)) == (403, "forbidden")

        # A certification decided by the worker process, then by a reviewer through the API.
        who = await applicant(http, pool, importer, tmp_path)
        challenge = (await http.post("/v1/certifications/challenges", headers=who.headers)).json()
        await pool.execute(
            "UPDATE certification_challenges SET actions = '{blink}' WHERE id = $1", uuid.UUID(challenge["id"])
        )
        r = await http.post(
            f"/v1/certifications/challenges/{challenge['id']}/submission",
            files={"video": ("selfie.mp4", VIDEO.read_bytes(), "video/mp4")},
            headers=who.headers,
        )
        assert r.status_code == 202, r.text
        check_id = r.json()["check_id"]
        conn = await asyncpg.connect(settings.database_url)
        try:
            await enqueue_once(Queries(AsyncpgDriver(conn)), PURGE_EXPIRED)
        finally:
            await conn.close()
        queued = await scrape(http)
        assert value(queued, "socialcard_job_queue_depth", job="liveness.certify", status="queued") == 1
        assert value(queued, "socialcard_job_queue_depth", job=PURGE_EXPIRED, status="queued") == 1
        assert value(queued, "socialcard_scrape_database_up") == 1

        await asyncio.to_thread(socialcard, settings, metrics_dir, "worker", "--drain")
        check = await pool.fetchrow(
            "SELECT status, reasons FROM certification_checks WHERE id = $1", uuid.UUID(check_id)
        )
        assert check is not None
        assert (check["status"], check["reasons"]) == ("needs_review", ["reference_missing"])
        operator = await operator_headers_for(services, "metrics-reviewer", "Reviewer")
        assert (await http.post(f"/v1/review/checks/{check_id}/claim", headers=operator)).status_code == 200
        r = await http.post(
            f"/v1/review/checks/{check_id}/decision",
            json={"decision": "approve", "reason": "matches the photo on file"},
            headers=operator,
        )
        assert r.status_code == 200, r.text

        # Notifications: the two decisions' notices go by SMS (no push device), sent by a dispatcher
        # process now (not after the night's quiet hours); one is read in the inbox, twice.
        pending = await pool.fetchval("SELECT count(*) FROM deliveries WHERE channel = 'sms' AND state = 'pending'")
        assert pending >= 1
        waiting = await scrape(http)
        assert value(waiting, "socialcard_notification_backlog", channel="sms", state="pending") == pending
        await pool.execute("UPDATE deliveries SET next_attempt_at = now() WHERE state = 'pending'")
        await asyncio.to_thread(socialcard, settings, metrics_dir, "notify", "dispatch", "--until-idle")
        notice = (await http.get("/v1/inbox", headers=who.headers)).json()["items"][0]["id"]
        for _ in range(2):
            assert (await http.post(f"/v1/inbox/{notice}/read", headers=who.headers)).status_code == 200

        after = await scrape(http)
        text = (await http.get("/metrics")).text

    def moved(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert moved("socialcard_http_requests_total", route="/health/live", method="GET", status="2xx") == sent
    assert moved("socialcard_http_request_duration_seconds_count", route="/health/live", method="GET") == sent
    assert (
        moved(
            "socialcard_http_requests_total",
            route="/v1/certifications/checks/{check_id}",
            method="GET",
            status="4xx",
        )
        == 1
    )
    assert moved("socialcard_http_requests_total", route="unmatched", method="GET", status="4xx") == 1
    assert str(some_id) not in text  # routes are templates: no id in a label
    assert moved("socialcard_job_duration_seconds_count", job="liveness.certify", result="ok") == 1
    assert moved("socialcard_job_duration_seconds_count", job=PURGE_EXPIRED, result="ok") == 1
    assert moved("socialcard_job_wait_seconds_count", job="liveness.certify") == 1
    assert value(after, "socialcard_job_queue_depth", job="liveness.certify", status="queued") == 0
    assert moved("socialcard_certification_decisions_total", outcome="needs_review", decided_by="worker") == 1
    assert moved("socialcard_certification_decision_reasons_total", outcome="needs_review", category="reference") == 1
    assert moved("socialcard_certification_decisions_total", outcome="passed", decided_by="reviewer") == 1
    sent = await pool.fetchval("SELECT count(*) FROM deliveries WHERE channel = 'sms' AND state = 'sent'")
    assert sent == pending
    assert moved("socialcard_notifications_total", channel="sms", state="sent") == sent
    assert moved("socialcard_notifications_total", channel="inbox", state="read") == 1
    assert value(after, "socialcard_notification_backlog", channel="sms", state="pending") == 0


async def test_metrics_are_refused_to_a_client_not_on_this_machine(settings: Settings) -> None:
    # The test client's peer is not a loopback address: as a remote client would be, it is refused.
    async with AsyncTestClient(create_app(settings)) as client:
        r = await client.get("/metrics")
        assert (r.status_code, problem_code(r)) == (403, "forbidden")
    token = "metrics-" + "x" * 24
    async with AsyncTestClient(create_app(msgspec.structs.replace(settings, metrics_token=token))) as client:
        r = await client.get("/metrics")
        assert (r.status_code, problem_code(r)) == (401, "unauthenticated")
        assert r.headers["www-authenticate"].startswith("Bearer")
        r = await client.get("/metrics", headers={"Authorization": f"Bearer {token}"})
        assert r.status_code == 200
        assert "socialcard_scrape_database_up 1.0" in r.text
