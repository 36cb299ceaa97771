"""The live OpenAPI document (issue 18): its refusals, bodies and headers, and the Python and TypeScript
clients generated from it, which must build and type-check.

The npm tools (pinned in tools/clients/package-lock.json) are installed once under var/npm-clients,
in a folder named by the lock file's hash, so a run after the first takes a few seconds.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import msgspec
import pytest

from app.http.problems import PROBLEM_JSON, ProblemDetails

ROOT = Path(__file__).resolve().parents[2]
TOOLS = ROOT / "tools" / "clients"
GUARDED_SAMPLE = [
    ("post", "/v1/terminal/qr/verify"),
    ("get", "/v1/card"),
    ("post", "/v1/review/checks/{check_id}/decision"),
    ("get", "/v1/admin/disbursements/{run_id}/bank-file"),
]
SUBMISSION = "/v1/certifications/challenges/{challenge_id}/submission"
MONEY = [("post", "/v1/terminal/charges"), ("post", "/v1/terminal/charges/{charge_id}/refunds")]


async def _document(client: Any) -> dict[str, Any]:
    r = await client.get("/schema/openapi.json")
    assert r.status_code == 200
    spec: dict[str, Any] = r.json()
    return spec


def _operations(spec: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [(m, p, op) for p, item in spec["paths"].items() for m, op in item.items() if m != "parameters"]


def _problems(op: dict[str, Any]) -> dict[str, list[str]]:
    """Status -> the codes of its examples, for every refusal of the operation."""
    found: dict[str, list[str]] = {}
    for status, response in op["responses"].items():
        if status >= "4":
            content = response["content"]
            assert list(content) == [PROBLEM_JSON], (status, content)  # never Litestar's own error shape
            assert content[PROBLEM_JSON]["schema"] == {"$ref": "#/components/schemas/ProblemDetails"}
            found[status] = [e["value"]["code"] for e in content[PROBLEM_JSON]["examples"].values()]
    return found


def _check_document(spec: dict[str, Any]) -> None:
    """What the issue asks of the document; the clients' checks below run on a document that passed it."""
    problem = spec["components"]["schemas"]["ProblemDetails"]
    assert set(problem["required"]) == {"type", "title", "status", "detail", "code", "instance"}
    for method, path, op in _operations(spec):
        refusals = _problems(op)
        if op.get("security"):
            assert {"401", "503"} <= set(refusals), (method, path, refusals)
        else:
            # A public operation may refuse its own credentials (a refresh token), never for a missing bearer.
            assert "unauthenticated" not in refusals.get("401", []), (method, path)
            assert "403" not in refusals, (method, path)
        for status in ("429", "503"):
            if status in refusals:
                assert op["responses"][status]["headers"]["Retry-After"]["required"], (method, path, status)
        if "{" in path and "{year}" not in path:
            assert "404" in refusals, (method, path)
        if "requestBody" in op:
            assert {"400", "413"} <= set(refusals), (method, path)
    ops = {(m, p): op for m, p, op in _operations(spec)}
    for key in GUARDED_SAMPLE:
        assert {"401", "403"} <= set(_problems(ops[key])), key
    verify = _problems(ops[("post", "/v1/terminal/qr/verify")])
    assert verify["410"] == ["qr_expired"]
    assert "qr_used" in verify["409"]
    assert "challenge_rate_limited" in _problems(ops[("post", "/v1/certifications/challenges")])["429"]
    assert _problems(ops[("get", "/health/live")]) == {}  # nothing behind it can fail

    submission = ops[("post", SUBMISSION)]
    assert {"413", "415", "422"} <= set(_problems(submission))
    form = submission["requestBody"]["content"]["multipart/form-data"]["schema"]
    assert form["properties"]["video"] == {**form["properties"]["video"], "type": "string", "format": "binary"}
    assert "application/json" in submission["requestBody"]["content"]

    for key in MONEY:
        (idempotency,) = [p for p in ops[key]["parameters"] if p["name"] == "Idempotency-Key"]
        assert idempotency["in"] == "header"
        assert idempotency["required"], key
        assert idempotency["schema"]["type"] == "string"
        assert "idempotency_key_required" in _problems(ops[key])["400"]

    bank_file = ops[("get", "/v1/admin/disbursements/{run_id}/bank-file")]["responses"]["200"]["content"]
    assert list(bank_file) == ["text/csv"]
    returns = ops[("post", "/v1/admin/disbursements/bank-returns")]
    assert list(returns["requestBody"]["content"]) == ["text/csv"]
    assert _problems(returns)["422"] == ["bank_file_refused"]
    # Examples for the bodies people type in first.
    phone = spec["components"]["schemas"]["OtpRequest"]["properties"]["phone"]
    assert phone.get("examples"), phone


async def test_the_document_lists_each_operations_real_refusals(client: Any) -> None:
    _check_document(await _document(client))


async def test_refusals_match_the_documented_problem_details(
    client: Any, cardholder: dict[str, Any], admin_headers: dict[str, str]
) -> None:
    """Real answers decode strictly (unknown fields refused) into the documented ProblemDetails."""
    answers = [
        await client.get("/v1/card"),
        await client.get("/v1/card", headers={"Authorization": "Bearer at.forged"}),
        await client.get("/v1/payments/00000000-0000-0000-0000-000000000000", headers=cardholder["headers"]),
        await client.post("/v1/card/activation", json={"national_id": 7}, headers=cardholder["headers"]),
        await client.post(
            "/v1/admin/disbursements/bank-returns", content=b"not,a,return\nfile\n", headers=admin_headers
        ),
    ]
    for r in answers:
        assert r.headers["content-type"].startswith(PROBLEM_JSON), r.text
        body = msgspec.json.decode(r.content, type=ProblemDetails, strict=True)
        assert body.status == r.status_code
    assert msgspec.json.decode(answers[-1].content, type=ProblemDetails).errors


async def test_the_docs_ui_loads_nothing_from_outside(settings: Any) -> None:
    """The Swagger UI page names only this server's assets, and they are served."""
    from litestar.testing import AsyncTestClient

    from app.asgi import create_app

    async with AsyncTestClient(create_app(msgspec.structs.replace(settings, api_docs_ui=True))) as docs:
        page = (await docs.get("/schema/swagger")).text
        assert "://" not in page
        assert "//cdn" not in page
        for asset in ("swagger-ui-bundle.js", "swagger-ui-standalone-preset.js", "swagger-ui.css"):
            assert f"/schema/assets/{asset}" in page
            r = await docs.get(f"/schema/assets/{asset}")
            assert r.status_code == 200, asset
            assert len(r.content) > 10_000, asset


# -- generated clients ---------------------------------------------------------------------------


def _run(*command: str | Path, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(c) for c in command], cwd=cwd, capture_output=True, text=True, timeout=240)


def _npm_tools() -> Path:
    """node_modules of tools/clients' lock file, installed once per lock file (atomically: a concurrent
    run installs its own copy and the first rename wins)."""
    lock = (TOOLS / "package-lock.json").read_bytes()
    home = ROOT / "var" / "npm-clients" / hashlib.sha256(lock).hexdigest()[:16]
    if (home / "node_modules" / ".bin" / "tsc").exists():
        return home / "node_modules" / ".bin"
    if shutil.which("npm") is None:
        pytest.fail("npm (Node 20+) is needed to type-check the TypeScript client")
    home.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix="install-", dir=home.parent))
    for name in ("package.json", "package-lock.json"):
        shutil.copy(TOOLS / name, staging / name)
    done = _run("npm", "ci", "--no-audit", "--no-fund", "--loglevel=error", cwd=staging)
    assert done.returncode == 0, done.stderr
    try:
        staging.rename(home)
    except OSError:  # another run got there first
        shutil.rmtree(staging, ignore_errors=True)
    return home / "node_modules" / ".bin"


def _typescript_errors(bin_dir: Path, spec: dict[str, Any], work: Path) -> str:
    """tsc's complaints about tools/clients/usage.ts against the client generated from `spec`."""
    work.mkdir()
    (work / "openapi.json").write_text(json.dumps(spec))
    generated = _run(bin_dir / "openapi-typescript", work / "openapi.json", "-o", work / "schema.d.ts")
    assert generated.returncode == 0, generated.stderr
    for name in ("usage.ts", "tsconfig.json"):
        shutil.copy(TOOLS / name, work / name)
    checked = _run(bin_dir / "tsc", "-p", work / "tsconfig.json")
    return "" if checked.returncode == 0 else checked.stdout + checked.stderr


async def test_generated_python_client_type_checks(client: Any, tmp_path: Path) -> None:
    spec = await _document(client)
    _check_document(spec)
    (tmp_path / "openapi.json").write_text(json.dumps(spec))
    generated = _run(
        Path(sys.executable).parent / "openapi-python-client",
        "generate",
        "--path",
        tmp_path / "openapi.json",
        "--output-path",
        tmp_path / "socialcard_client",
        "--meta",
        "none",
        "--config",
        TOOLS / "openapi-python-client.yaml",
    )
    assert generated.returncode == 0, generated.stdout + generated.stderr
    assert "WARNING" not in generated.stdout, generated.stdout  # an operation or body the generator skipped
    api = tmp_path / "socialcard_client" / "api"
    assert (api / "terminals" / "v1_terminal_qr_verify_verify.py").exists()
    checked = _run(
        sys.executable,
        "-m",
        "mypy",
        "--config-file",
        TOOLS / "mypy.ini",
        "--cache-dir",
        ROOT / "var" / "mypy-clients",
        "-p",
        "socialcard_client",
        cwd=tmp_path,
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr


async def test_generated_typescript_client_type_checks(client: Any, tmp_path: Path) -> None:
    spec = await _document(client)
    _check_document(spec)
    bin_dir = _npm_tools()
    assert _typescript_errors(bin_dir, spec, tmp_path / "live") == ""
    # The same check fails on a document that lost what usage.ts relies on: a schema renamed...
    renamed = json.loads(json.dumps(spec).replace("ProblemDetails", "Problem"))
    assert "ProblemDetails" in _typescript_errors(bin_dir, renamed, tmp_path / "renamed")
    # ... or the Idempotency-Key no longer required.
    optional_key = json.loads(json.dumps(spec))
    for parameter in optional_key["paths"]["/v1/terminal/charges"]["post"]["parameters"]:
        parameter["required"] = False
    assert "usage.ts" in _typescript_errors(bin_dir, optional_key, tmp_path / "optional-key")


def test_npm_tools_are_pinned() -> None:
    package = json.loads((TOOLS / "package.json").read_text())
    locked = json.loads((TOOLS / "package-lock.json").read_text())["packages"]
    for name, version in package["devDependencies"].items():
        assert version[0].isdigit(), (name, version)  # an exact version, no range
        assert locked[f"node_modules/{name}"]["version"] == version
    assert os.path.basename(str(TOOLS)) == "clients"
