"""`socialcard`: run the system and administer it from a shell."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import getpass
import json
import logging
import os
import re
import signal
import subprocess
import sys
import urllib.parse
import uuid
from collections.abc import Awaitable, Callable
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from app.progress import Counter
from app.services import Services, open_services
from certification.evidence.service import EvidenceImportReport
from core.principal import ADMIN, Principal
from core.records import RowError, RowProgress
from infra.config import (
    APP_DATABASE,
    APP_ROLE,
    EVIDENCE_FEEDS,
    Settings,
    SettingsError,
    dev_secrets,
    embedded_s3_port,
    load_settings,
    settings_env,
)
from infra.embedded import StartFailed
from infra.logging import configure_logging, logging_dictconfig
from infra.supervise import Part
from payments.recovery.rules import STATES as RECOVERY_STATES

if TYPE_CHECKING:
    from litestar.types import ASGIApp

log = logging.getLogger("socialcard")
T = TypeVar("T")


def _app_role(settings: Settings) -> str:
    return urllib.parse.urlparse(settings.database_url).username or APP_ROLE


def with_services(
    command: Callable[[argparse.Namespace, Services], Awaitable[int]],
) -> Callable[[argparse.Namespace], int]:
    """A one-shot admin command run against the services, with a small pool of its own."""

    def run(args: argparse.Namespace) -> int:
        async def body() -> int:
            async with open_services(load_settings(), pool_max=4, background=True) as services:
                return await command(args, services)

        return asyncio.run(body())

    return run


# -- running the system ------------------------------------------------------------------------
def cmd_up(args: argparse.Namespace) -> int:
    """Start the embedded services (unless external ones are configured), migrate, run everything, and
    keep every part running (infra.supervise) until Ctrl-C or SIGTERM."""
    from infra.embedded import (
        exit_on_sigterm,
        postgres_running,
        provision,
        running_postgres,
        running_seaweedfs,
        start_postgres,
    )
    from infra.migrate import migrate
    from infra.supervise import supervise

    var_dir = _var_dir()
    var_dir.mkdir(parents=True, exist_ok=True)
    exit_on_sigterm()
    parts: list[Part] = []
    with contextlib.ExitStack() as services:
        if args.cluster and "DATABASE_URL" not in os.environ:
            parts.append(_cluster(services, var_dir))
        elif "DATABASE_URL" not in os.environ:
            postgres = services.enter_context(running_postgres(var_dir / "postgres"))
            asyncio.run(provision(postgres.url("postgres", "postgres"), APP_ROLE, APP_DATABASE))
            log.info("embedded PostgreSQL ready", extra={"socket_dir": str(postgres.socket_dir)})
            # Stopped by running_postgres; down for a few seconds (an operator's restart) is left alone.
            pgdata = postgres.pgdata

            def start_again() -> None:
                start_postgres(pgdata)

            parts.append(
                Part(
                    "postgres",
                    alive=lambda: postgres_running(pgdata),
                    start=start_again,
                    stop=lambda: None,
                    grace_s=10.0,
                )
            )
        if "S3_ENDPOINT_URL" not in os.environ:
            secrets = dev_secrets(var_dir)
            s3 = services.enter_context(
                running_seaweedfs(
                    var_dir / "s3",
                    access_key=secrets["s3_access_key_id"],
                    secret_key=secrets["s3_secret_access_key"],
                    bucket=os.environ.get("S3_BUCKET", "socialcard"),
                    s3_port=embedded_s3_port(os.environ),
                )
            )
            log.info("embedded S3 server ready", extra={"endpoint": s3.endpoint_url})
            parts.append(Part("s3", alive=lambda: s3.process.poll() is None, start=s3.restart, stop=lambda: None))
        settings = load_settings()
        applied = asyncio.run(migrate(settings.migration_database_url, _app_role(settings)))
        log.info("database migrated", extra={"applied": applied})
        env = {**os.environ, **settings_env(settings), **_metrics_env(settings)}
        parts += [_child(name, env) for name in ("serve", "worker", "scheduler")]
        log.info("socialcard is up", extra={"api": f"http://{settings.api_host}:{settings.api_port}"})
        status = supervise(parts)
    log.info("socialcard is down")
    return status


def _var_dir() -> Path:
    return Path(os.environ.get("VAR_DIR", "var")).resolve()


def _cluster(services: contextlib.ExitStack, var_dir: Path) -> Part:
    """Citus built once (var/citus-*), its nodes started and joined; DATABASE_URL points at the coordinator."""
    from infra.cluster import citus_install, cluster_in, form, running_cluster, start_node
    from infra.embedded import postgres_running

    cluster = services.enter_context(running_cluster(cluster_in(var_dir, citus_install(var_dir))))
    asyncio.run(form(cluster, APP_ROLE, APP_DATABASE))
    os.environ["DATABASE_URL"] = cluster.url(APP_ROLE, APP_DATABASE)
    os.environ["MIGRATION_DATABASE_URL"] = cluster.url("postgres", APP_DATABASE)
    log.info("Citus cluster ready", extra={"nodes": [node.port for node in cluster.nodes]})

    def start_again() -> None:
        for node in cluster.nodes:
            start_node(cluster.install, node)

    return Part(
        "cluster",
        alive=lambda: all(postgres_running(node.pgdata) for node in cluster.nodes),
        start=start_again,
        stop=lambda: None,
        grace_s=10.0,
    )


def _metrics_env(settings: Settings) -> dict[str, str]:
    """The folder every process of this run writes its metrics to, so that /metrics, whichever API
    worker answers it, adds up all of them (infra.metrics): emptied here, before any part starts."""
    from infra.metrics import MULTIPROC_ENV, fresh_dir

    named = os.environ.get(MULTIPROC_ENV)
    return {MULTIPROC_ENV: str(fresh_dir(Path(named) if named else settings.var_dir / "metrics"))}


def _child(name: str, env: dict[str, str]) -> Part:
    """`socialcard <name>` as a supervised child process."""
    process: subprocess.Popen[bytes] | None = None

    def start() -> None:
        nonlocal process
        process = subprocess.Popen([sys.executable, "-m", "app.cli", name], env=env)
        log.info("part started", extra={"part": name, "pid": process.pid})

    def stop() -> None:
        if process is not None and process.poll() is None:
            process.send_signal(signal.SIGTERM)

    def wait(seconds: float) -> None:
        if process is None:
            return
        try:
            process.wait(seconds)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    start()
    return Part(name, alive=lambda: process is not None and process.poll() is None, start=start, stop=stop, wait=wait)


def served_app() -> ASGIApp:
    """The app as each granian worker loads it: the request id and access line wrap the whole app, so
    requests no route matches (a 404, a 405) are logged with their id too."""
    from app.asgi import create_app
    from app.http.system.observability import request_id_middleware

    return request_id_middleware(create_app(load_settings()))


# After SIGTERM (or Ctrl-C) the API goes on taking connections this long before its workers stop
# accepting: a request already sent but still in the kernel's accept queue, or not yet read by a worker,
# is answered rather than reset (granian finishes the requests it has read, and drops the others).
STOP_ACCEPTING_AFTER_S = 1


def cmd_serve(args: argparse.Namespace) -> int:
    from granian import Granian
    from granian.constants import Interfaces, Loops

    from infra.metrics import MULTIPROC_ENV

    settings = load_settings()
    if MULTIPROC_ENV not in os.environ:
        # Run alone (not by `up`): the API workers still need one metrics folder to share. It must be in
        # the environment before prometheus_client is imported, and this process has imported it (the
        # workers are forked from it): so it starts again, the same command, with the folder named.
        os.environ.update(_metrics_env(settings))
        os.execv(sys.executable, [sys.executable, *sys.orig_argv[1:]])  # noqa: S606 (our own command line)
    server = Granian(
        "app.cli:served_app",
        factory=True,
        interface=Interfaces.ASGI,
        address=settings.api_host,
        port=settings.api_port,
        workers=settings.api_workers,
        loop=Loops.uvloop,
        backlog=2048,
        log_access=False,
        log_dictconfig=logging_dictconfig(settings.log_level),
        respawn_failed_workers=True,
        # What is in flight when the workers are told to stop has the rest of API_DRAIN_S to finish;
        # a worker still busy then is killed, so the API is gone within API_DRAIN_S.
        workers_kill_timeout=max(1, settings.api_drain_s - STOP_ACCEPTING_AFTER_S),
    )
    # Start-up hooks run once granian has set its signal handlers, before it starts the workers.
    server.on_startup(lambda: _stop_accepting_later(server.signal_handler_interrupt, settings.api_drain_s))
    server.serve()
    return 0


def _stop_accepting_later(stop: Callable[[], object], drain_s: int) -> None:
    """Granian's SIGTERM and SIGINT handlers, replaced: the first signal stops the API (as granian's
    handler would) STOP_ACCEPTING_AFTER_S later, a second one at once."""
    import threading

    now = threading.Event()
    signalled = threading.Event()

    def stop_later() -> None:
        log.info("stopping the API", extra={"accepting_for_s": STOP_ACCEPTING_AFTER_S, "drain_s": drain_s})
        now.wait(STOP_ACCEPTING_AFTER_S)
        log.info("the API no longer accepts connections; finishing the requests in flight")
        stop()

    def handler(signum: int, frame: object) -> None:
        if signalled.is_set():
            now.set()
            return
        signalled.set()
        threading.Thread(target=stop_later, name="stop-accepting", daemon=True).start()

    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, handler)


def cmd_worker(args: argparse.Namespace) -> int:
    from app.jobs import run_worker

    asyncio.run(run_worker(load_settings(), drain=args.drain))
    return 0


def cmd_scheduler(args: argparse.Namespace) -> int:
    from app.jobs import run_scheduler

    asyncio.run(run_scheduler(load_settings()))
    return 0


def cmd_migrate(args: argparse.Namespace) -> int:
    from infra.migrate import migrate

    settings = load_settings()
    applied = asyncio.run(migrate(settings.migration_database_url, _app_role(settings)))
    print(f"applied {len(applied)} migration(s)" + (": " + ", ".join(applied) if applied else " (up to date)"))
    return 0


# -- administration ---------------------------------------------------------------------------
async def _import(file: str, what: str, load: Callable[[Path, str, RowProgress], Awaitable[T]]) -> T | None:
    """`load` run on the file as the CLI's actor, its progress counted on stderr; None (and a
    message) when the file cannot be read."""
    counter = Counter(what)
    try:
        return await load(Path(file), "system:cli", counter.update)
    except (FileNotFoundError, IsADirectoryError):
        print(f"no such file: {file}", file=sys.stderr)
    except UnicodeDecodeError:
        print(f"{file} is not UTF-8 text", file=sys.stderr)
    finally:
        counter.close()
    return None


@with_services
async def cmd_import_persons(args: argparse.Namespace, services: Services) -> int:
    if (report := await _import(args.file, "import persons", services.persons.import_file)) is None:
        return 2
    return _line_report(
        f"created {report.created}, updated {report.updated}, unchanged {report.unchanged}", report.errors
    )


@with_services
async def cmd_import_allocations(args: argparse.Namespace, services: Services) -> int:
    if (report := await _import(args.file, "import allocations", services.medical.import_allocations)) is None:
        return 2
    return _line_report(f"allocated {report.created}, unchanged {report.unchanged}", report.errors)


@with_services
async def cmd_import_deaths(args: argparse.Namespace, services: Services) -> int:
    if (report := await _import(args.file, "import deaths", services.deaths.import_file)) is None:
        return 2
    return _line_report(
        f"recorded {report.recorded}, updated {report.updated}, unchanged {report.unchanged}", report.errors
    )


@with_services
async def cmd_import_evidence(args: argparse.Namespace, services: Services) -> int:
    def load(path: Path, actor: str, progress: RowProgress) -> Awaitable[EvidenceImportReport]:
        return services.evidence.import_file(path, actor, args.source, progress)

    if (report := await _import(args.file, "import evidence", load)) is None:
        return 2
    return _line_report(f"recorded {report.recorded}, unchanged {report.unchanged}", report.errors)


@with_services
async def cmd_certify_report(args: argparse.Namespace, services: Services) -> int:
    """How pensioners were certified in a year, per region, as a table (or JSON lines with --json)."""
    found = await services.ladder.report(args.year, args.region)
    rows = [*found.regions, found.total]
    if args.json:
        for row in rows:
            print(json.dumps({**dataclasses.asdict(row), "region": row.region or "total", "still_due": row.still_due}))
        return 0
    heads = ("region", "pensioners", "by data", "by face", "assisted", "in person", "certified", "still due", "lapsed")
    print("".join(f"{h:>12}" for h in heads))
    for row in rows:
        counts = (
            row.pensioners,
            row.by_data,
            row.by_face,
            row.assisted,
            row.in_person,
            row.certified,
            row.still_due,
            row.lapsed,
        )
        print(f"{row.region or 'total':>12}" + "".join(f"{c:>12,}" for c in counts))
    return 0


@with_services
async def cmd_certify_silent_pass(args: argparse.Namespace, services: Services) -> int:
    judged = confirmed = 0
    counter = Counter("silent pass, persons judged")

    async def progress(scanned: int, newly: int) -> None:
        nonlocal judged, confirmed
        judged, confirmed = judged + scanned, confirmed + newly
        counter.update(judged, confirmed=confirmed)

    try:
        done = await services.evidence.run_pass("system:cli", progress)
    finally:
        counter.close()
    print(json.dumps({k: v if isinstance(v, int | dict) else str(v) for k, v in dataclasses.asdict(done).items()}))
    return 0


def _line_report(counts: str, errors: list[RowError]) -> int:
    """An import's refused lines on stderr, its counts on stdout; exit status 3 when a line was refused."""
    for e in errors:
        print(f"line {e.line}: {e.field}: {e.reason}", file=sys.stderr)
    print(f"{counts}, rejected {len({e.line for e in errors})} row(s)")
    return 3 if errors else 0


def _period(text: str) -> date:
    from payments.disbursement.rules import parse_period

    try:
        return parse_period(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


@with_services
async def cmd_disburse(args: argparse.Namespace, services: Services) -> int:
    done = 0
    counter = Counter(f"disburse {args.period:%Y-%m}, entitlements done")

    async def progress(scanned: int) -> None:
        # Printed, not logged: one-shot commands log only warnings.
        nonlocal done
        done += scanned
        counter.update(done)

    try:
        run = await services.disbursements.run(args.period, "system:cli", progress)
    finally:
        counter.close()
    print(json.dumps({k: str(v) if not isinstance(v, int) else v for k, v in dict(run).items()}))
    return 0


@with_services
async def cmd_bank_file(args: argparse.Namespace, services: Services) -> int:
    from core.errors import AppError

    run_id = await services.disbursements.run_of_period(args.period)
    if run_id is None:
        print(f"no disbursement run for {args.period:%Y-%m}", file=sys.stderr)
        return 2
    try:
        chunks = await services.disbursements.bank_order(run_id, "system:cli")
    except AppError as exc:
        print(f"no bank file: {exc.code}", file=sys.stderr)
        return 2
    # A one-shot command with nothing else on its loop: blocking writes cost nothing here.
    target = open(args.out, "w", encoding="utf-8", newline="") if args.out else contextlib.nullcontext(sys.stdout)  # noqa: ASYNC230, SIM115
    with target as out:
        async for chunk in chunks:
            out.write(chunk)
    return 0


async def _administrator(services: Services, username: str) -> Principal | None:
    """`--as USERNAME`: the enabled administrator the CLI acts as where two people must sign (the audit
    log names them); None, with the reason printed, for anyone else."""
    from auth import repository as auth_repo

    found = await auth_repo.administrator_id(services.pool, username)
    if found is None:
        print(f"no enabled administrator named {username}", file=sys.stderr)
        return None
    return Principal(role=ADMIN, subject_id=found, username=username)


@with_services
async def cmd_disbursement_sign(args: argparse.Namespace, services: Services) -> int:
    """Approve or release the period's run as a named administrator (maker-checker)."""
    from core.errors import AppError

    admin = await _administrator(services, args.admin)
    run_id = await services.disbursements.run_of_period(args.period)
    if admin is None or run_id is None:
        if run_id is None:
            print(f"no disbursement run for {args.period:%Y-%m}", file=sys.stderr)
        return 2
    sign = services.disbursements.approve if args.action == "approve" else services.disbursements.release
    try:
        run = await sign(run_id, admin.actor, admin.named)
    except AppError as exc:
        print(f"refused: {exc.code}", file=sys.stderr)
        return 3
    print(json.dumps({"id": str(run["id"]), "period": f"{run['period']:%Y-%m}", "state": run["state"]}))
    return 0


@with_services
async def cmd_bank_account_set(args: argparse.Namespace, services: Services) -> int:
    from core.errors import AppError

    admin = await _administrator(services, args.admin)
    if admin is None:
        return 2
    try:
        done = await services.bank_accounts.set_account(
            admin.actor, args.national_id, args.account, args.reason, admin.named
        )
    except AppError as exc:
        print(f"refused: {exc.code}", file=sys.stderr)
        return 3
    print(
        json.dumps(
            {
                "national_id_masked": done.national_id_masked,
                "bank_account_masked": done.bank_account_masked,
                "changed": done.changed,
                "returned_awaiting": done.returned_awaiting,
            }
        )
    )
    return 0


@with_services
async def cmd_import_bank_returns(args: argparse.Namespace, services: Services) -> int:
    try:
        text = await asyncio.to_thread(Path(args.file).read_text, encoding="utf-8")
    except (FileNotFoundError, IsADirectoryError, UnicodeDecodeError) as exc:
        print(f"cannot read {args.file}: {exc}", file=sys.stderr)
        return 2
    report = await services.disbursements.import_returns(text, "system:cli")
    for e in report.errors:
        print(f"line {e.line}: {e.reason}", file=sys.stderr)
    if report.errors:
        print(f"nothing imported: {len(report.errors)} line(s) cannot be taken", file=sys.stderr)
        return 3
    print(f"confirmed {report.confirmed}, returned {report.returned}, unchanged {report.unchanged}")
    return 0


@with_services
async def cmd_recovery_recall_file(args: argparse.Namespace, services: Services) -> int:
    made = await services.recovery.recall_file("system:cli")
    # A one-shot command with nothing else on its loop: blocking writes cost nothing here.
    target = open(args.out, "w", encoding="utf-8", newline="") if args.out else contextlib.nullcontext(sys.stdout)  # noqa: ASYNC230, SIM115
    with target as out:
        async for chunk in made.chunks:
            out.write(chunk)
    print(f"{made.recalls} recall(s), {made.total_fen} fen", file=sys.stderr)
    return 0


@with_services
async def cmd_import_recall_answers(args: argparse.Namespace, services: Services) -> int:
    try:
        text = await asyncio.to_thread(Path(args.file).read_text, encoding="utf-8")
    except (FileNotFoundError, IsADirectoryError, UnicodeDecodeError) as exc:
        print(f"cannot read {args.file}: {exc}", file=sys.stderr)
        return 2
    report = await services.recovery.import_answers(text, "system:cli")
    for e in report.errors:
        print(f"line {e.line}: {e.reason}", file=sys.stderr)
    print(
        f"recovered {report.recovered}, partly {report.partly}, nothing {report.nothing}, "
        f"unchanged {report.unchanged} ({report.recovered_fen} fen), rejected {len(report.errors)} line(s)"
    )
    return 3 if report.errors else 0


@with_services
async def cmd_recovery_list(args: argparse.Namespace, services: Services) -> int:
    for row in await services.recovery.cases(tuple(args.state or ()), None, args.limit):
        print(json.dumps({k: v if isinstance(v, int | bool | None) else str(v) for k, v in dict(row).items()}))
    return 0


@with_services
async def cmd_recovery_write_off(args: argparse.Namespace, services: Services) -> int:
    """Ask for a write-off, or approve one: two administrators, named by `--as`, never one."""
    from core.errors import AppError
    from core.text import message

    admin = await _administrator(services, args.admin)
    if admin is None:
        return 2
    try:
        if args.action == "write-off":
            done = await services.recovery.ask_write_off(admin, args.case, args.reason)
        else:
            done = await services.recovery.approve_write_off(admin, args.case)
    except AppError as exc:
        print(f"refused: {message(exc.code, 'en', **exc.params)}", file=sys.stderr)
        return 3
    print(json.dumps({k: v if isinstance(v, int | bool | None) else str(v) for k, v in dict(done.case).items()}))
    return 0


@with_services
async def cmd_supervise_scan(args: argparse.Namespace, services: Services) -> int:
    done = await services.supervision.scan("system:cli")
    print(json.dumps({k: str(v) if isinstance(v, uuid.UUID) else v for k, v in dataclasses.asdict(done).items()}))
    return 0


@with_services
async def cmd_operator_create(args: argparse.Namespace, services: Services) -> int:
    import pyotp

    password = os.environ.get("SOCIALCARD_OPERATOR_PASSWORD") or getpass.getpass("password (12+ characters): ")
    try:
        secret = await services.auth.create_operator(args.username, args.name or args.username, args.role, password)
    except ValueError as exc:
        print(exc, file=sys.stderr)
        return 2
    uri = pyotp.TOTP(secret).provisioning_uri(name=args.username, issuer_name="socialcard")
    print(json.dumps({"username": args.username, "role": args.role, "totp_secret": secret, "totp_uri": uri}))
    return 0


@with_services
async def cmd_terminal_create(args: argparse.Namespace, services: Services) -> int:
    key = await services.auth.create_terminal(args.merchant)
    print(json.dumps({"merchant": args.merchant, "api_key": key}))
    print("store this key now: it is shown only once", file=sys.stderr)
    return 0


@with_services
async def cmd_token(args: argparse.Namespace, services: Services) -> int:
    try:
        pair = await services.auth.support_token(phone=args.phone, operator=args.operator)
    except LookupError as exc:
        print(exc, file=sys.stderr)
        return 2
    print(
        json.dumps(
            {"access_token": pair.access_token, "refresh_token": pair.refresh_token, "expires_in": pair.expires_in}
        )
    )
    return 0


@with_services
async def cmd_dev_sms(args: argparse.Namespace, services: Services) -> int:
    from notifications.sms import recorded_messages

    messages = await recorded_messages(services.pool, args.phone, args.limit)
    if args.code:
        found = re.search(r"(?<![0-9])[0-9]{6}(?![0-9])", messages[0][1]) if messages else None
        if found is None:
            print("no sign-in code recorded", file=sys.stderr)
            return 1
        print(found.group(0))
        return 0
    for phone, text, at in messages:
        print(json.dumps({"at": at, "phone": phone, "body": text}, ensure_ascii=False))
    return 0


@with_services
async def cmd_notify_dispatch(args: argparse.Namespace, services: Services) -> int:
    from infra.jobs import freeze_start_up, stop_on_signals
    from notifications.dispatcher import CHANNELS, Dispatcher
    from notifications.push import push_channel

    push = push_channel(services.settings)
    stop = asyncio.Event()
    stop_on_signals(stop)
    dispatcher = Dispatcher(services.pool, services.settings, push, services.sms)
    window = None if args.until_idle else float("inf")
    channels = CHANNELS if args.channel == "all" else (args.channel,)
    freeze_start_up()
    try:
        handled = await asyncio.gather(*(dispatcher.run(c, window_s=window, stop=stop) for c in channels))
    finally:
        await push.aclose()
    print(json.dumps(dict(zip(channels, handled, strict=True))))
    return 0


@with_services
async def cmd_notify_remind(args: argparse.Namespace, services: Services) -> int:
    print(json.dumps(await services.notifications.remind(args.on)))
    return 0


@with_services
async def cmd_audit_verify(args: argparse.Namespace, services: Services) -> int:
    from infra import audit, audit_checkpoints

    settings = services.settings
    result, checkpoints = await audit_checkpoints.full_walk(
        services.pool, services.storage, settings.audit_chain_key, args.anchors if args.anchors > 0 else None
    )
    for broken in result.breaks:  # each chain is walked on its own: every broken chain is named
        print(f"audit chain broken at row {broken.row}: {broken.reason}")
    for finding in result.findings:
        print(f"audit log tampered: {finding}")
    if result.anchors:
        top = result.anchors[0]
        print(
            f"compared with {len(result.anchors)} anchor(s), the newest of {top.at:%Y-%m-%d %H:%M}: "
            f"{top.count} row(s) in {len(top.heads)} chain(s)"
        )
    elif not result.findings:
        # Not tampering in itself (a new log, the job not run yet), but the tail is unprotected until it is.
        print(f"no anchors in s3://{settings.s3_bucket}/{audit.ANCHOR_PREFIX} yet: the tail is not protected")
    if not result.intact:
        return 1
    legacy = f" ({result.legacy_rows} written before the chain was keyed)" if result.legacy_rows else ""
    used = sum(1 for c in result.chains if c.rows)
    print(f"audit chain intact: {result.rows} row(s) verified in {used} of {audit.CHAINS} chain(s){legacy}")
    if checkpoints:
        print(f"checkpoints recorded for {len(checkpoints)} chain(s): the console checks only the rows after them")
    return 0


def cmd_cluster_grow(args: argparse.Namespace) -> int:
    """One more worker for `make run-cluster`'s cluster on this machine, joined, then given its
    share of the shards while the system goes on."""
    from infra.cluster import citus_install, cluster_in, form, grown, start_node
    from infra.embedded import postgres_running

    var_dir = _var_dir()
    cluster = cluster_in(var_dir, citus_install(var_dir))
    if not postgres_running(cluster.coordinator.pgdata):
        raise SettingsError(
            f"no cluster runs under {cluster.coordinator.pgdata.parent}: start it with `make run-cluster`"
        )
    bigger = grown(cluster)
    worker = bigger.workers[-1]
    start_node(bigger.install, worker)
    asyncio.run(form(bigger, APP_ROLE, APP_DATABASE))
    print(f"{worker.name} joined on 127.0.0.1:{worker.port}")
    return _rebalance(bigger.url("postgres", APP_DATABASE))


def cmd_cluster_rebalance(args: argparse.Namespace) -> int:
    return _rebalance(load_settings().migration_database_url)


def _rebalance(url: str) -> int:
    from infra.cluster import rebalance

    done = asyncio.run(rebalance(url, progress=print))
    print(f"rebalanced: {done.moves} shard move(s) in {done.seconds:.1f} s")
    return 0


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="socialcard", description=__doc__)
    p.add_argument("--version", action="version", version=f"%(prog)s {_version()}", help="print the version and exit")
    sub = p.add_subparsers(dest="command", required=True)
    up = sub.add_parser("up", help="start PostgreSQL, S3, migrations, API, worker and scheduler")
    up.add_argument(
        "--cluster",
        action="store_true",
        help="a Citus cluster on this machine (a coordinator and two workers) instead of one PostgreSQL",
    )
    up.set_defaults(func=cmd_up)
    sub.add_parser("serve", help="run the API (granian)").set_defaults(func=cmd_serve)
    w = sub.add_parser("worker", help="run background jobs")
    w.add_argument("--drain", action="store_true", help="exit when the queue is empty")
    w.set_defaults(func=cmd_worker)
    sub.add_parser("scheduler", help="enqueue periodic jobs").set_defaults(func=cmd_scheduler)
    sub.add_parser("migrate", help="apply pending database migrations").set_defaults(func=cmd_migrate)

    imp = sub.add_parser("import", help="import data").add_subparsers(dest="what", required=True)
    persons = imp.add_parser("persons", help="persons and pensions from CSV or JSON lines")
    persons.add_argument("file", help="the file to import; a per-row report of what was refused is printed")
    persons.set_defaults(func=cmd_import_persons)
    allocations = imp.add_parser(
        "allocations", help="yearly medical account allocations (CSV or JSON lines: national_id,year,amount_fen)"
    )
    allocations.add_argument("file", help="the file to import; a per-row report of what was refused is printed")
    allocations.set_defaults(func=cmd_import_allocations)
    deaths = imp.add_parser("deaths", help="death records from the civil-affairs feed (CSV or JSON lines)")
    deaths.add_argument("file", help="the file to import; a per-row report of what was refused is printed")
    deaths.set_defaults(func=cmd_import_deaths)

    evidence = imp.add_parser(
        "evidence",
        help="evidence of life from a data feed (CSV or JSON lines: national_id,source,occurred_on,reference)",
    )
    evidence.add_argument("file", help="the file to import; a per-row report of what was refused is printed")
    evidence.add_argument("--source", choices=EVIDENCE_FEEDS, help="the source of the lines that name none")
    evidence.set_defaults(func=cmd_import_evidence)

    answers = imp.add_parser(
        "recall-answers", help="the bank's answers to recalls (CSV: reference,recovered,reason), line by line"
    )
    answers.add_argument("file", help="the bank's file; lines it cannot apply are reported by number")
    answers.set_defaults(func=cmd_import_recall_answers)

    returns = imp.add_parser("bank-returns", help="the bank's return file (CSV: reference,result,reason)")
    returns.add_argument("file", help="the bank's file; lines it cannot apply are reported by number")
    returns.set_defaults(func=cmd_import_bank_returns)

    disburse = sub.add_parser("disburse", help="run (or finish) the monthly pension disbursement of a period")
    disburse.add_argument("--period", type=_period, required=True, metavar="YYYY-MM", help="the month paid")
    disburse.set_defaults(func=cmd_disburse)
    bank = sub.add_parser("bank-file", help="write a released run's payment order for the bank (CSV)")
    bank.add_argument("--period", type=_period, required=True, metavar="YYYY-MM", help="the released run's month")
    bank.add_argument("--out", help="file to write (default: standard output)")
    bank.set_defaults(func=cmd_bank_file)
    signing = sub.add_parser("disbursement", help="sign a completed run: two administrators, never one")
    steps = signing.add_subparsers(dest="action", required=True)
    for action, what in (
        ("approve", "approve the period's completed run (not by the administrator who started it)"),
        ("release", "release the period's approved run to the bank (a second person beside the approver)"),
    ):
        step = steps.add_parser(action, help=what)
        step.add_argument("--period", type=_period, required=True, metavar="YYYY-MM", help="the run's month")
        step.add_argument("--as", dest="admin", required=True, metavar="USERNAME", help="the administrator signing")
        step.set_defaults(func=cmd_disbursement_sign)
    account = sub.add_parser("bank-account", help="pension bank accounts").add_subparsers(dest="action", required=True)
    set_account = account.add_parser(
        "set", help="set (or confirm) a pension's account; the next run pays returned payments again"
    )
    set_account.add_argument("national_id", help="the person's ID number")
    set_account.add_argument("account", help="12 to 30 digits (the one on file: confirmed, e.g. reopened)")
    set_account.add_argument("--reason", required=True, help="why; kept in the audit log")
    set_account.add_argument("--as", dest="admin", required=True, metavar="USERNAME", help="the administrator")
    set_account.set_defaults(func=cmd_bank_account_set)

    recovery = sub.add_parser("recovery", help="recovery of pensions paid after a death").add_subparsers(
        dest="action", required=True
    )
    recall = recovery.add_parser(
        "recall-file", help="recall what is outstanding on open cases; write every waiting recall (CSV, audited)"
    )
    recall.add_argument("--out", help="file to write (default: standard output)")
    recall.set_defaults(func=cmd_recovery_recall_file)
    cases = recovery.add_parser("list", help="recovery cases, oldest first, one JSON object a line")
    cases.add_argument("--state", action="append", choices=RECOVERY_STATES, help="only this state (repeatable)")
    cases.add_argument("--limit", type=int, default=100, help="at most this many (%(default)s)")
    cases.set_defaults(func=cmd_recovery_list)
    for action, what in (
        ("write-off", "ask to write off what a case has outstanding (another administrator approves)"),
        ("approve-write-off", "approve the write-off another administrator asked for"),
    ):
        step = recovery.add_parser(action, help=what)
        step.add_argument("case", type=uuid.UUID, help="the recovery case's id")
        if action == "write-off":
            step.add_argument("--reason", required=True, help="why; kept in the audit log")
        step.add_argument("--as", dest="admin", required=True, metavar="USERNAME", help="the administrator")
        step.set_defaults(func=cmd_recovery_write_off)
    supervise = sub.add_parser("supervise", help="fund supervision").add_subparsers(dest="action", required=True)
    supervise.add_parser("scan", help="raise supervision alerts (what the daily job does; idempotent)").set_defaults(
        func=cmd_supervise_scan
    )

    certify = sub.add_parser("certify", help="pension certification").add_subparsers(dest="action", required=True)
    silent = certify.add_parser(
        "silent-pass", help="confirm the persons due from evidence of life (resumes a pass that was cut short)"
    )
    silent.set_defaults(func=cmd_certify_silent_pass)
    report = certify.add_parser("report", help="how pensioners were certified in a year, per region")
    report.add_argument("--year", type=int, required=True, help="the cycle: a calendar year, China time")
    report.add_argument("--region", help="one region code only (six digits)")
    report.add_argument("--json", action="store_true", help="JSON lines, one per region and the total, for scripts")
    report.set_defaults(func=cmd_certify_report)

    op = sub.add_parser("operator", help="operators").add_subparsers(dest="action", required=True)
    create = op.add_parser("create", help="create an operator (password from SOCIALCARD_OPERATOR_PASSWORD or prompt)")
    create.add_argument("--username", required=True, help="what the operator signs in with")
    create.add_argument("--name", help="the name shown in the console and the audit log (default: the username)")
    create.add_argument(
        "--role", choices=["operator", "auditor", "admin"], default="operator", help="what they may do (%(default)s)"
    )
    create.set_defaults(func=cmd_operator_create)

    term = sub.add_parser("terminal", help="hospital and pharmacy terminals").add_subparsers(
        dest="action", required=True
    )
    tcreate = term.add_parser("create", help="create a terminal and print its API key once")
    tcreate.add_argument("--merchant", required=True, help="the registered merchant's name, as notices show it")
    tcreate.set_defaults(func=cmd_terminal_create)

    tok = sub.add_parser("token", help="mint an access token for a person (by phone) or an operator")
    who = tok.add_mutually_exclusive_group(required=True)
    who.add_argument("--phone", help="the cardholder's registered phone number")
    who.add_argument("--operator", metavar="USERNAME", help="an operator's username")
    tok.set_defaults(func=cmd_token)

    dev = sub.add_parser("dev", help="development helpers").add_subparsers(dest="what", required=True)
    sms = dev.add_parser("sms", help="messages recorded by the development SMS provider")
    sms.add_argument("--phone", help="only the messages to this number")
    sms.add_argument("--limit", type=int, default=20, help="at most this many, newest first (%(default)s)")
    sms.add_argument("--code", action="store_true", help="print only the code in the latest message")
    sms.set_defaults(func=cmd_dev_sms)

    notify = sub.add_parser("notify", help="notifications").add_subparsers(dest="action", required=True)
    dispatch = notify.add_parser("dispatch", help="send due notifications (what the worker's dispatch jobs do)")
    dispatch.add_argument("--channel", choices=["push", "sms", "all"], default="all", help="which (%(default)s)")
    dispatch.add_argument("--until-idle", action="store_true", help="exit when nothing is due instead of polling")
    dispatch.set_defaults(func=cmd_notify_dispatch)
    remind = notify.add_parser("remind", help="run the daily reminder scan (idempotent)")
    remind.add_argument("--on", type=date.fromisoformat, metavar="YYYY-MM-DD", help="the scan's day (default today)")
    remind.set_defaults(func=cmd_notify_remind)

    grow = sub.add_parser("cluster", help="a Citus cluster").add_subparsers(dest="action", required=True)
    grow.add_parser(
        "grow", help="add a worker to `make run-cluster`'s cluster on this machine and move its share of shards to it"
    ).set_defaults(func=cmd_cluster_grow)
    grow.add_parser(
        "rebalance", help="move shards until each worker holds its share (any Citus cluster, by MIGRATION_DATABASE_URL)"
    ).set_defaults(func=cmd_cluster_rebalance)

    aud = sub.add_parser("audit", help="the audit log").add_subparsers(dest="action", required=True)
    from infra.audit import DEFAULT_ANCHORS_CHECKED

    verify = aud.add_parser(
        "verify",
        help="recompute every keyed hash chain, compare each with its head in the signed anchors, name what "
        "was tampered; record the result as a signed checkpoint per chain",
    )
    verify.add_argument(
        "--anchors",
        type=int,
        default=DEFAULT_ANCHORS_CHECKED,
        metavar="N",
        help="compare with the N newest anchors (0: every anchor; default %(default)s)",
    )
    verify.set_defaults(func=cmd_audit_verify)
    return p


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("socialcard")
    except PackageNotFoundError:  # run from a checkout that was never installed
        return "unknown"


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    # Long-running parts log their progress; one-shot admin commands print results, not chatter.
    long_running = args.command in ("up", "serve", "worker", "scheduler")
    configure_logging(os.environ.get("LOG_LEVEL", "INFO" if long_running else "WARNING"))
    try:
        return int(args.func(args))
    except SettingsError as exc:
        print(f"socialcard: {exc}", file=sys.stderr)
        return 2
    except StartFailed as exc:
        # What was started is stopped again; the message says where to look, a traceback would not.
        log.error("could not start", extra={"error": str(exc)})
        return 1


if __name__ == "__main__":
    sys.exit(main())
