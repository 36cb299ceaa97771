"""Settings: one typed object read from the environment and validated at start.

With no ``DATABASE_URL`` / ``S3_ENDPOINT_URL`` the embedded services under ``VAR_DIR`` are used;
``socialcard up`` starts them and hands explicit URLs to the processes it spawns.
"""

from __future__ import annotations

import base64
import json
import os
import re
import secrets
from collections.abc import Mapping
from pathlib import Path
from typing import TypeVar

import msgspec

from infra.base import APP_DATABASE as APP_DATABASE  # re-exported
from infra.base import APP_ROLE as APP_ROLE
from infra.base import SettingsError as SettingsError

# The liveness actions a challenge may ask for (liveness.model.Action names them for the worker).
ACTIONS = ("blink", "turn_left", "turn_right", "open_mouth")
# Evidence of life (issue 19): the feeds an administrator imports, and the product's own QR charges
# (certification.evidence names them for the rule; migration 0012 checks the imported ones).
EVIDENCE_FEEDS = (
    "hospital_visit",
    "pharmacy_purchase",
    "insurance_settlement",
    "civil_affairs",
    "police",
    "bank_activity",
)
EVIDENCE_SOURCES = (*EVIDENCE_FEEDS, "qr_charge")


class Settings(msgspec.Struct, frozen=True, kw_only=True):
    database_url: str
    migration_database_url: str
    s3_endpoint_url: str | None
    s3_bucket: str
    s3_region: str
    s3_access_key_id: str | None
    s3_secret_access_key: str | None
    s3_sse_kms_key_id: str | None
    token_signing_key: bytes
    qr_signing_key: bytes
    data_encryption_key: bytes
    lookup_hash_key: bytes
    # Keys the audit log's hash chain and signs its anchors; it must never be where the database owner
    # can read it, or the chain can be rebuilt (infra.audit).
    audit_chain_key: bytes
    var_dir: Path
    api_host: str = "127.0.0.1"
    api_port: int = 8000
    api_workers: int = 2
    # After SIGTERM the API answers what was sent before it, then exits within this (infra.supervise
    # gives `up`'s parts 30 s in all); a request still running then is cut.
    api_drain_s: int = 20
    db_pool_min: int = 2
    db_pool_max: int = 10
    # A request waits at most this for a pooled connection, and a statement runs at most this long,
    # before it is answered 503 with Retry-After (the worker's jobs get longer statements: infra.db).
    db_acquire_timeout_s: int = 3
    db_statement_timeout_s: int = 10
    # Every S3 call: the connection within 2 s, each answer within this, one retry.
    s3_timeout_s: int = 3
    sms_provider: str = "dev"
    log_level: str = "INFO"
    access_token_ttl_s: int = 15 * 60
    refresh_token_ttl_s: int = 30 * 24 * 3600
    qr_token_ttl_s: int = 60
    otp_ttl_s: int = 5 * 60
    otp_max_attempts: int = 5
    otp_max_per_hour: int = 5
    # SMS pumping: codes one client may have sent per hour (to any phones), and all clients together
    # per clock hour (the cost ceiling). A client is its address, see client_ip_header.
    otp_per_client_per_hour: int = 10
    otp_total_per_hour: int = 10_000
    # Operator sign-in failures one client may make per hour, across usernames.
    operator_failures_per_client_per_hour: int = 20
    # The header a trusted reverse proxy sets to the caller's address (X-Real-IP, or X-Forwarded-For,
    # whose last address the proxy appends), in ASGI's lower case. Unset, no header is believed and the
    # client is the connection's peer: behind a proxy that is not named here, every caller is the proxy.
    # Name a header only when every request reaches the API through a proxy that sets it.
    client_ip_header: str | None = None
    max_request_body_bytes: int = 1024 * 1024
    # Face certification: the challenge policy (e.g. blink-only for assisted mode) and limits.
    challenge_actions: tuple[str, ...] = ACTIONS
    challenge_min_actions: int = 2
    challenge_max_actions: int = 3
    challenge_ttl_s: int = 120
    media_retention_days: int = 30
    face_accept_distance: float = 0.469
    face_reject_distance: float = 0.6
    face_replay_distance: float = 0.15
    face_collision_distance: float = 0.35
    replay_lookback_days: int = 400
    review_claim_s: int = 15 * 60
    review_sla_h: int = 24  # a check waiting longer for a person is shown as late in the console's queue
    console_idle_s: int = 30 * 60  # a console session ends after this long without a request
    # The console's public origin behind a TLS proxy (https://console.example): posts must come from it,
    # and its cookie is Secure. Unset, the request's own scheme and Host decide.
    console_origin: str | None = None
    # The API docs UI at /schema (Swagger UI, whose scripts come from a CDN): for development only.
    # /schema/openapi.json is served either way.
    api_docs_ui: bool = False
    # Who may scrape /metrics (docs/metrics.md): with a token, whoever sends it as a bearer token;
    # without, only a client on this machine that did not come through a proxy.
    metrics_token: str | None = None
    presigned_url_ttl_s: int = 300
    failures_before_review: int = 3
    job_heartbeat_s: int = 30
    # Pensions: the day of the month they are paid (eligibility is judged on it) and how many
    # entitlements one disbursement transaction covers (a restarted run resumes after the last one).
    pension_pay_day: int = 15
    disbursement_batch: int = 20_000
    # Person imports: lines per transaction, staging and merging (an import run again resumes after one).
    import_batch: int = 50_000
    # Push: a service account sends to FCM; FCM_URL alone sends to a local FCM server without OAuth;
    # neither, and push goes to the log channel.
    fcm_project_id: str | None = None
    fcm_credentials_file: Path | None = None
    fcm_url: str | None = None
    # Notification delivery: attempts before a delivery is dead-lettered, how long a dispatcher
    # holds a claimed delivery (a killed one's deliveries are sent again after it), and the first
    # retry delay, doubled per attempt.
    notify_max_attempts: int = 6
    notify_lease_s: int = 60
    notify_retry_s: int = 30
    # Evidence of life: the rule that confirms a person from data (which sources count, how recent, how
    # many distinct events from how many sources), how many days ahead of their due date the daily silent
    # pass looks (before the 30-day reminder), and how many persons one of its transactions covers.
    evidence_sources: tuple[str, ...] = EVIDENCE_SOURCES
    evidence_within_days: int = 180
    evidence_min_events: int = 2
    evidence_min_sources: int = 2
    silent_pass_horizon_days: int = 35
    silent_pass_batch: int = 10_000
    # Assisted certification by a relative (certification.assisted): active relatives one elder may
    # have, elders one relative may have linked or be asking for, and how many distinct elders one
    # relative or one device may help within the window before their checks go to a person.
    assisted_max_helpers: int = 3
    assisted_max_elders: int = 2
    assisted_review_elders: int = 2
    assisted_window_days: int = 365


_SECRET_NAMES = ("token_signing_key", "qr_signing_key", "data_encryption_key", "lookup_hash_key", "audit_chain_key")


def _decode_key(name: str, value: str) -> bytes:
    try:
        raw = base64.b64decode(value, validate=True)
    except ValueError as exc:
        raise SettingsError(f"{name.upper()} must be base64 (32 random bytes): {exc}") from None
    if len(raw) != 32:
        raise SettingsError(f"{name.upper()} must decode to exactly 32 bytes, got {len(raw)}")
    return raw


def dev_secrets(var_dir: Path) -> dict[str, str]:
    """Keys for the embedded development setup, generated once and kept under var/ (never for production)."""
    path = var_dir / "dev-secrets.json"
    if path.exists():
        stored: dict[str, str] = json.loads(path.read_text())
        missing = [name for name in _SECRET_NAMES if name not in stored]
        if not missing:
            return stored
        # Written before a key was added (audit_chain_key): add it, keep the others (they decrypt data).
        generated = stored | {name: base64.b64encode(secrets.token_bytes(32)).decode() for name in missing}
    else:
        var_dir.mkdir(parents=True, exist_ok=True)
        generated = {name: base64.b64encode(secrets.token_bytes(32)).decode() for name in _SECRET_NAMES}
        generated["s3_access_key_id"] = "dev-" + secrets.token_hex(8)
        generated["s3_secret_access_key"] = secrets.token_urlsafe(24)
    path.write_text(json.dumps(generated, indent=2))
    path.chmod(0o600)
    return generated


N = TypeVar("N", int, float)


def _number(env: Mapping[str, str], name: str, default: N, low: N, high: N) -> N:
    """`name` from the environment as the default's type (int or float), within [low, high]."""
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    kind = type(default)
    try:
        value = kind(raw)
    except ValueError:
        what = "a whole number" if kind is int else "a number"
        raise SettingsError(f"{name} must be {what}, got {raw!r}") from None
    if not low <= value <= high:
        raise SettingsError(f"{name} must be between {low} and {high}, got {value}")
    return value


def embedded_s3_port(env: Mapping[str, str]) -> int:
    """Where the embedded S3 server listens (`EMBEDDED_S3_PORT`; its other ports derive from it)."""
    from infra.embedded import EMBEDDED_S3_PORT

    return _number(env, "EMBEDDED_S3_PORT", EMBEDDED_S3_PORT, 1024, 53000)


def _certification(env: Mapping[str, str], problems: list[str]) -> dict[str, object]:
    """The challenge policy, retention and face thresholds; every problem is collected."""
    ints: dict[str, int] = {}
    floats: dict[str, float] = {}
    actions = tuple(a.strip() for a in env.get("CHALLENGE_ACTIONS", ",".join(ACTIONS)).split(",") if a.strip())
    if not actions or any(a not in ACTIONS for a in actions) or len(set(actions)) != len(actions):
        problems.append(f"CHALLENGE_ACTIONS must be distinct names from {', '.join(ACTIONS)}")
    for name, default, low, high in (
        ("CHALLENGE_MIN_ACTIONS", 2, 1, 4),
        ("CHALLENGE_MAX_ACTIONS", 3, 1, 4),
        ("MEDIA_RETENTION_DAYS", 30, 1, 3650),
        ("FAILURES_BEFORE_REVIEW", 3, 1, 20),
        ("JOB_HEARTBEAT_S", 30, 2, 600),
        ("REPLAY_LOOKBACK_DAYS", 400, 1, 3650),
    ):
        try:
            ints[name.lower()] = _number(env, name, default, low, high)
        except SettingsError as exc:
            problems.append(str(exc))
    for name, fallback in (
        ("FACE_ACCEPT_DISTANCE", 0.469),
        ("FACE_REJECT_DISTANCE", 0.6),
        ("FACE_REPLAY_DISTANCE", 0.15),
        ("FACE_COLLISION_DISTANCE", 0.35),
    ):
        try:
            floats[name.lower()] = _number(env, name, fallback, 0.0, 1.5)
        except SettingsError as exc:
            problems.append(str(exc))
    if ints.get("challenge_min_actions", 2) > ints.get("challenge_max_actions", 3):
        problems.append("CHALLENGE_MIN_ACTIONS must not exceed CHALLENGE_MAX_ACTIONS")
    if ints.get("challenge_max_actions", 3) > len(actions) > 0:
        problems.append("CHALLENGE_MAX_ACTIONS must not exceed the number of CHALLENGE_ACTIONS")
    if floats.get("face_accept_distance", 0.0) > floats.get("face_reject_distance", 1.0):
        problems.append("FACE_ACCEPT_DISTANCE must not exceed FACE_REJECT_DISTANCE")
    return {"challenge_actions": actions, **ints, **floats}


def _evidence(env: Mapping[str, str], problems: list[str]) -> dict[str, object]:
    """The evidence-of-life rule and the silent pass; every problem is collected."""
    sources = tuple(s.strip() for s in env.get("EVIDENCE_SOURCES", ",".join(EVIDENCE_SOURCES)).split(",") if s.strip())
    if not sources or any(s not in EVIDENCE_SOURCES for s in sources) or len(set(sources)) != len(sources):
        problems.append(f"EVIDENCE_SOURCES must be distinct names from {', '.join(EVIDENCE_SOURCES)}")
    ints: dict[str, int] = {}
    for name, default, low, high in (
        ("EVIDENCE_WITHIN_DAYS", 180, 1, 3650),
        ("EVIDENCE_MIN_EVENTS", 2, 1, 100),
        ("EVIDENCE_MIN_SOURCES", 2, 1, len(EVIDENCE_SOURCES)),
        ("SILENT_PASS_HORIZON_DAYS", 35, 0, 366),
        ("SILENT_PASS_BATCH", 10_000, 1, 1_000_000),
    ):
        try:
            ints[name.lower()] = _number(env, name, default, low, high)
        except SettingsError as exc:
            problems.append(str(exc))
    if ints.get("evidence_min_sources", 1) > len(sources) > 0:
        problems.append("EVIDENCE_MIN_SOURCES must not exceed the number of EVIDENCE_SOURCES")
    if ints.get("evidence_min_sources", 1) > ints.get("evidence_min_events", 1):
        problems.append("EVIDENCE_MIN_SOURCES must not exceed EVIDENCE_MIN_EVENTS")
    return {"evidence_sources": sources, **ints}


def _fcm(env: Mapping[str, str], problems: list[str]) -> dict[str, object]:
    """The push settings; every problem is collected."""
    project = env.get("FCM_PROJECT_ID") or None
    credentials_file = Path(env["FCM_CREDENTIALS_FILE"]).resolve() if env.get("FCM_CREDENTIALS_FILE") else None
    url = env.get("FCM_URL") or None
    if credentials_file is not None and not credentials_file.is_file():
        problems.append(f"FCM_CREDENTIALS_FILE must be a service-account JSON file, {credentials_file} is not a file")
    if url is not None and not url.startswith(("http://", "https://")):
        problems.append(f"FCM_URL must start with http:// or https://, got {url!r}")
    if url is not None and credentials_file is None and project is None:
        problems.append("FCM_PROJECT_ID is required when FCM_URL is set without FCM_CREDENTIALS_FILE")
    return {"fcm_project_id": project, "fcm_credentials_file": credentials_file, "fcm_url": url}


def load_settings(env: Mapping[str, str] | None = None) -> Settings:
    """Build the settings from the environment; raise SettingsError naming every problem found."""
    env = os.environ if env is None else env
    var_dir = Path(env.get("VAR_DIR", "var")).resolve()
    embedded = "DATABASE_URL" not in env or "S3_ENDPOINT_URL" not in env
    dev = dev_secrets(var_dir) if embedded and env.get("SOCIALCARD_ENV", "dev") == "dev" else {}

    keys: dict[str, bytes] = {}
    problems: list[str] = []
    for name in _SECRET_NAMES:
        value = env.get(name.upper()) or dev.get(name)
        if not value:
            problems.append(f"{name.upper()} is required outside the embedded development setup")
            continue
        try:
            keys[name] = _decode_key(name, value)
        except SettingsError as exc:
            problems.append(str(exc))

    database_url = env.get("DATABASE_URL")
    if database_url is None:
        from infra.embedded import embedded_database_url

        database_url = embedded_database_url(var_dir, APP_ROLE)
    elif not database_url.startswith(("postgresql://", "postgres://")):
        problems.append("DATABASE_URL must start with postgresql://")
    migration_url = env.get("MIGRATION_DATABASE_URL")
    if migration_url is None:
        if "DATABASE_URL" in env:
            migration_url = database_url
        else:
            from infra.embedded import embedded_database_url

            migration_url = embedded_database_url(var_dir, "postgres")

    s3_endpoint = env.get("S3_ENDPOINT_URL")
    if s3_endpoint is None:
        s3_endpoint = f"http://127.0.0.1:{embedded_s3_port(env)}"
    sms_provider = env.get("SMS_PROVIDER", "dev")
    if sms_provider not in ("dev", "log"):
        problems.append(f"SMS_PROVIDER must be 'dev' or 'log', got {sms_provider!r}")
    numbers: dict[str, int] = {}
    for name, default, low, high in (
        ("API_PORT", 8000, 1, 65535),
        ("API_WORKERS", 2, 1, 64),
        ("API_DRAIN_S", 20, 2, 3600),
        ("DB_POOL_MIN", 2, 1, 100),
        ("DB_POOL_MAX", 10, 1, 500),
        ("DB_ACQUIRE_TIMEOUT_S", 3, 1, 600),
        ("DB_STATEMENT_TIMEOUT_S", 10, 1, 3600),
        ("S3_TIMEOUT_S", 3, 1, 600),
        ("PENSION_PAY_DAY", 15, 1, 28),
        ("DISBURSEMENT_BATCH", 20_000, 1, 1_000_000),
        ("IMPORT_BATCH", 50_000, 1, 1_000_000),
        ("NOTIFY_MAX_ATTEMPTS", 6, 1, 50),
        ("NOTIFY_LEASE_S", 60, 1, 3600),
        ("NOTIFY_RETRY_S", 30, 0, 3600),
        ("CONSOLE_IDLE_S", 30 * 60, 1, 24 * 3600),
        ("REVIEW_SLA_H", 24, 1, 720),
        ("OTP_PER_CLIENT_PER_HOUR", 10, 1, 1_000_000),
        ("OTP_TOTAL_PER_HOUR", 10_000, 1, 100_000_000),
        ("OPERATOR_FAILURES_PER_CLIENT_PER_HOUR", 20, 1, 1_000_000),
        ("ASSISTED_MAX_HELPERS", 3, 1, 20),
        ("ASSISTED_MAX_ELDERS", 2, 1, 20),
        ("ASSISTED_REVIEW_ELDERS", 2, 1, 100),
        ("ASSISTED_WINDOW_DAYS", 365, 1, 3650),
    ):
        try:
            numbers[name.lower()] = _number(env, name, default, low, high)
        except SettingsError as exc:
            problems.append(str(exc))
    if {"db_pool_min", "db_pool_max"} <= numbers.keys() and numbers["db_pool_min"] > numbers["db_pool_max"]:
        problems.append("DB_POOL_MIN must not exceed DB_POOL_MAX")
    console_origin = env.get("CONSOLE_ORIGIN") or None
    if console_origin is not None and not re.fullmatch(r"https?://[^/\s]+", console_origin):
        problems.append(
            f"CONSOLE_ORIGIN must be a scheme and host such as https://console.example, got {console_origin!r}"
        )
    client_ip_header = (env.get("CLIENT_IP_HEADER") or "").lower() or None
    if client_ip_header is not None and not re.fullmatch(r"[a-z0-9-]+", client_ip_header):
        problems.append(f"CLIENT_IP_HEADER must be a header name such as X-Real-IP, got {env['CLIENT_IP_HEADER']!r}")
    api_docs_ui = env.get("API_DOCS_UI") or "0"
    if api_docs_ui not in ("0", "1"):
        problems.append(f"API_DOCS_UI must be 0 or 1, got {api_docs_ui!r}")
    metrics_token = env.get("METRICS_TOKEN") or None
    if metrics_token is not None and (
        len(metrics_token) < 16 or not metrics_token.isprintable() or " " in metrics_token
    ):
        problems.append("METRICS_TOKEN must be at least 16 printable characters without spaces")
    certification = _certification(env, problems)
    evidence = _evidence(env, problems)
    fcm = _fcm(env, problems)
    if problems:
        raise SettingsError("invalid configuration:\n  - " + "\n  - ".join(problems))
    return Settings(
        database_url=database_url,
        migration_database_url=migration_url,
        s3_endpoint_url=s3_endpoint or None,
        s3_bucket=env.get("S3_BUCKET", "socialcard"),
        s3_region=env.get("S3_REGION", "us-east-1"),
        s3_access_key_id=env.get("S3_ACCESS_KEY_ID") or dev.get("s3_access_key_id"),
        s3_secret_access_key=env.get("S3_SECRET_ACCESS_KEY") or dev.get("s3_secret_access_key"),
        s3_sse_kms_key_id=env.get("S3_SSE_KMS_KEY_ID") or None,
        var_dir=var_dir,
        api_host=env.get("API_HOST", "127.0.0.1"),
        sms_provider=sms_provider,
        log_level=env.get("LOG_LEVEL", "INFO").upper(),
        token_signing_key=keys["token_signing_key"],
        qr_signing_key=keys["qr_signing_key"],
        data_encryption_key=keys["data_encryption_key"],
        lookup_hash_key=keys["lookup_hash_key"],
        audit_chain_key=keys["audit_chain_key"],
        console_origin=console_origin,
        client_ip_header=client_ip_header,
        api_docs_ui=api_docs_ui == "1",
        metrics_token=metrics_token,
        **numbers,  # type: ignore[arg-type]
        **certification,  # type: ignore[arg-type]
        **evidence,  # type: ignore[arg-type]
        **fcm,  # type: ignore[arg-type]
    )


def settings_env(settings: Settings) -> dict[str, str]:
    """The environment that reproduces these settings in a child process (used by `up` and tests)."""
    env = {
        "DATABASE_URL": settings.database_url,
        "MIGRATION_DATABASE_URL": settings.migration_database_url,
        "S3_ENDPOINT_URL": settings.s3_endpoint_url or "",
        "S3_BUCKET": settings.s3_bucket,
        "S3_REGION": settings.s3_region,
        "VAR_DIR": str(settings.var_dir),
        "API_HOST": settings.api_host,
        "API_PORT": str(settings.api_port),
        "API_WORKERS": str(settings.api_workers),
        "API_DRAIN_S": str(settings.api_drain_s),
        "SMS_PROVIDER": settings.sms_provider,
        "LOG_LEVEL": settings.log_level,
        "DB_ACQUIRE_TIMEOUT_S": str(settings.db_acquire_timeout_s),
        "DB_STATEMENT_TIMEOUT_S": str(settings.db_statement_timeout_s),
        "S3_TIMEOUT_S": str(settings.s3_timeout_s),
        "CHALLENGE_ACTIONS": ",".join(settings.challenge_actions),
        "CHALLENGE_MIN_ACTIONS": str(settings.challenge_min_actions),
        "CHALLENGE_MAX_ACTIONS": str(settings.challenge_max_actions),
        "MEDIA_RETENTION_DAYS": str(settings.media_retention_days),
        "FAILURES_BEFORE_REVIEW": str(settings.failures_before_review),
        "JOB_HEARTBEAT_S": str(settings.job_heartbeat_s),
        "PENSION_PAY_DAY": str(settings.pension_pay_day),
        "DISBURSEMENT_BATCH": str(settings.disbursement_batch),
        "IMPORT_BATCH": str(settings.import_batch),
        "NOTIFY_MAX_ATTEMPTS": str(settings.notify_max_attempts),
        "NOTIFY_LEASE_S": str(settings.notify_lease_s),
        "NOTIFY_RETRY_S": str(settings.notify_retry_s),
        "CONSOLE_IDLE_S": str(settings.console_idle_s),
        "REVIEW_SLA_H": str(settings.review_sla_h),
        "CONSOLE_ORIGIN": settings.console_origin or "",
        "API_DOCS_UI": "1" if settings.api_docs_ui else "0",
        "OTP_PER_CLIENT_PER_HOUR": str(settings.otp_per_client_per_hour),
        "OTP_TOTAL_PER_HOUR": str(settings.otp_total_per_hour),
        "OPERATOR_FAILURES_PER_CLIENT_PER_HOUR": str(settings.operator_failures_per_client_per_hour),
        "CLIENT_IP_HEADER": settings.client_ip_header or "",
        "FACE_ACCEPT_DISTANCE": repr(settings.face_accept_distance),
        "FACE_REJECT_DISTANCE": repr(settings.face_reject_distance),
        "FACE_REPLAY_DISTANCE": repr(settings.face_replay_distance),
        "FACE_COLLISION_DISTANCE": repr(settings.face_collision_distance),
        "REPLAY_LOOKBACK_DAYS": str(settings.replay_lookback_days),
        "EVIDENCE_SOURCES": ",".join(settings.evidence_sources),
        "EVIDENCE_WITHIN_DAYS": str(settings.evidence_within_days),
        "EVIDENCE_MIN_EVENTS": str(settings.evidence_min_events),
        "EVIDENCE_MIN_SOURCES": str(settings.evidence_min_sources),
        "SILENT_PASS_HORIZON_DAYS": str(settings.silent_pass_horizon_days),
        "SILENT_PASS_BATCH": str(settings.silent_pass_batch),
        "ASSISTED_MAX_HELPERS": str(settings.assisted_max_helpers),
        "ASSISTED_MAX_ELDERS": str(settings.assisted_max_elders),
        "ASSISTED_REVIEW_ELDERS": str(settings.assisted_review_elders),
        "ASSISTED_WINDOW_DAYS": str(settings.assisted_window_days),
    }
    if settings.s3_access_key_id and settings.s3_secret_access_key:
        env["S3_ACCESS_KEY_ID"] = settings.s3_access_key_id
        env["S3_SECRET_ACCESS_KEY"] = settings.s3_secret_access_key
    for name, value in (
        ("FCM_PROJECT_ID", settings.fcm_project_id),
        ("FCM_CREDENTIALS_FILE", settings.fcm_credentials_file),
        ("FCM_URL", settings.fcm_url),
        ("METRICS_TOKEN", settings.metrics_token),
    ):
        if value is not None:
            env[name] = str(value)
    for name in _SECRET_NAMES:
        env[name.upper()] = base64.b64encode(getattr(settings, name)).decode()
    return env
