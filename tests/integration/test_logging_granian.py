"""The API's logs as `socialcard serve` writes them under granian (issue 16, item 9): every line on stdout
and stderr one JSON object, masked, with the request id where a request caused it, and a traceback only
as a field of its JSON line."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import asyncpg
import httpx

from infra.config import Settings, settings_env
from tests.factories import ROOT, free_port

PHONE = "13812345678"
NATIONAL_ID = "110101194503072319"


async def _fail_otp_inserts(settings: Settings) -> None:
    """A fault the API does not expect, whose message carries a phone number and a national ID (as a
    driver's or a library's error text may): the sign-in code's INSERT raises from a trigger."""
    conn = await asyncpg.connect(settings.migration_database_url)
    try:
        await conn.execute(
            f"""CREATE FUNCTION refuse_otp() RETURNS trigger LANGUAGE plpgsql AS $$
                BEGIN RAISE EXCEPTION 'refused % for {NATIONAL_ID}', NEW.phone; END $$;
                CREATE TRIGGER refuse_otp BEFORE INSERT ON otp_codes FOR EACH ROW EXECUTE FUNCTION refuse_otp();"""
        )
    finally:
        await conn.close()


def _serve_and_call(settings: Settings, folder: Path) -> tuple[str, dict[str, httpx.Response]]:
    """`socialcard serve` (granian, two workers) with its stdout and stderr kept, called once per case, then
    stopped with SIGTERM; returns both streams and the answers by request id."""
    port = free_port()
    env = {
        **os.environ,
        **settings_env(settings),
        "API_PORT": str(port),
        "API_WORKERS": "2",
        "LOG_LEVEL": "INFO",
    }
    out, err = folder / "stdout", folder / "stderr"
    with out.open("wb") as stdout, err.open("wb") as stderr:
        process = subprocess.Popen(
            [sys.executable, "-m", "app.cli", "serve"], env=env, cwd=ROOT, stdout=stdout, stderr=stderr
        )

    def streams() -> str:
        return out.read_text(encoding="utf-8", errors="replace") + err.read_text(encoding="utf-8", errors="replace")

    base = f"http://127.0.0.1:{port}"
    answers: dict[str, httpx.Response] = {}
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{base}/health/live", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert process.poll() is None, f"the API exited at start:\n{streams()[-5000:]}"
            assert time.monotonic() < deadline, f"the API did not start within 60 s:\n{streams()[-5000:]}"
            time.sleep(0.2)
        with httpx.Client(base_url=base, timeout=30) as client:
            for rid, method, path, body in (
                ("test-ok-00000001", "GET", "/health/ready", None),
                ("test-missing-0001", "GET", f"/v1/persons/{PHONE}/{NATIONAL_ID}", None),  # no such route
                ("test-method-00001", "DELETE", "/health/live", None),
                ("test-error-000001", "POST", "/v1/auth/otp", {"phone": PHONE}),
            ):
                answers[rid] = client.request(method, path, json=body, headers={"X-Request-Id": rid})
        time.sleep(1)  # the access line is written once the answer is sent
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)
            raise
    return streams(), answers


async def test_every_line_under_granian_is_masked_json_with_the_request_id(settings: Settings) -> None:
    await _fail_otp_inserts(settings)
    with tempfile.TemporaryDirectory(prefix="socialcard-logs-") as folder:
        text, answers = _serve_and_call(settings, Path(folder))

    assert [a.status_code for a in answers.values()] == [200, 404, 405, 500], text[-5000:]
    assert PHONE not in text
    assert NATIONAL_ID not in text
    lines: list[dict[str, Any]] = []
    for raw in text.splitlines():
        try:
            lines.append(json.loads(raw))
        except json.JSONDecodeError:
            raise AssertionError(f"a line that is not JSON: {raw!r}\n\nall output:\n{text[-8000:]}") from None
    assert all(isinstance(line, dict) for line in lines)
    assert any(line.get("logger") == "_granian" for line in lines), "granian's own lines are missing"

    for rid, answer in answers.items():
        assert answer.headers["x-request-id"] == rid
        access = [line for line in lines if line.get("logger") == "socialcard.access" and line.get("request_id") == rid]
        assert len(access) == 1, (rid, text[-5000:])
        assert access[0]["status"] == answer.status_code
        assert access[0]["method"] == answer.request.method
        assert access[0]["path"] == answer.request.url.path.replace(PHONE, "138****5678").replace(
            NATIONAL_ID, "110101********2319"
        )
        assert isinstance(access[0]["ms"], float | int)

    errors = [line for line in lines if "exc" in line]
    assert len(errors) == 1, text[-5000:]
    assert errors[0]["request_id"] == "test-error-000001"
    assert errors[0]["level"] == "error"
    assert "RaiseError" in errors[0]["exc"]
    assert "Traceback" in errors[0]["exc"]
    assert "138****5678" in errors[0]["exc"]
    # No line a request caused lacks its id: whatever names our paths or fails carries one.
    for line in lines:
        if line["level"] in ("warning", "error", "critical") or "/v1/" in json.dumps(line):
            assert line.get("request_id") in answers, line


def test_no_library_handler_warning_or_uncaught_exception_writes_past_the_json_formatter() -> None:
    """What the API process does besides log calls: Litestar's constructor installs plain-text handlers
    (before `socialcard serve` configures logging again), a library warns, an exception goes uncaught."""
    script = f"""
import logging, warnings
from litestar import Litestar
from infra.logging import configure_logging

configure_logging()
Litestar()
configure_logging()
logging.getLogger("litestar").error("litestar's own logger, phone %s", "{PHONE}")
warnings.warn("a library's warning about {NATIONAL_ID}")
raise RuntimeError("nothing caught this, {NATIONAL_ID}")
"""
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=60)
    text = done.stdout + done.stderr
    assert done.returncode == 1, text
    assert PHONE not in text
    assert NATIONAL_ID not in text
    try:
        lines = [json.loads(raw) for raw in text.splitlines()]
    except json.JSONDecodeError:
        raise AssertionError(f"a line that is not JSON in:\n{text}") from None
    assert [(line["logger"], line["level"]) for line in lines] == [
        ("litestar", "error"),
        ("py.warnings", "warning"),
        ("socialcard", "critical"),
    ], text
    assert "RuntimeError: nothing caught this, 110101********2319" in lines[2]["exc"]
