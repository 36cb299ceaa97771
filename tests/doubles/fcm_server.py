"""A local server speaking the FCM HTTP v1 send protocol, for tests and benchmarks.

Google ships no FCM emulator, so the tests point the real firebase-admin SDK at this server (the
`FCM_URL` setting, see `notifications.push`). It answers ``POST /v1/projects/{project}/messages:send``
as FCM does, counts what it receives, and fails chosen tokens with FCM's own error bodies.
``GET /stats`` returns the counts as JSON, for a benchmark that runs the server in its own process::

    python -m tests.doubles.fcm_server --port 8790 --fail 'gone-*=UNREGISTERED' --latency-ms 20

It speaks HTTP/1.1 with keep-alive, as `FcmPush` does, and HTTP/2 (told apart by the connection
preface), as FCM also does and the SDK's own async client would: without TLS by prior knowledge, or
over TLS when given a server context (`tls`), which offers h2 and http/1.1 by ALPN as FCM does.
Per request the HTTP/2 side costs this server about four times the CPU the HTTP/1.1 side does (h2's
pure-Python framing and HPACK). `latency` holds every answer back, standing in for the round trip
to FCM that a local server lacks.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import enum
import re
import signal
import ssl
import time
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, cast

import msgspec
from h2.config import H2Configuration
from h2.connection import H2Connection
from h2.events import ConnectionTerminated, DataReceived, RequestReceived, StreamEnded, StreamReset
from h2.exceptions import H2Error

_SEND_PATH = re.compile(r"/v1/projects/([^/]+)/messages:send")
_FCM_ERROR = "type.googleapis.com/google.firebase.fcm.v1.FcmError"
_BAD_REQUEST = "type.googleapis.com/google.rpc.BadRequest"
_H2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
# Header checks cost a third of the server's time and guard against clients other than httpx.
_H2_CONFIG = H2Configuration(
    client_side=False,
    header_encoding="utf-8",
    validate_inbound_headers=False,
    normalize_inbound_headers=False,
    validate_outbound_headers=False,
    normalize_outbound_headers=False,
)
_REASONS = {200: "OK", 400: "Bad Request", 403: "Forbidden", 404: "Not Found", 405: "Method Not Allowed"}
_REASONS |= {429: "Too Many Requests", 500: "Internal Server Error", 501: "Not Implemented", 503: "Service Unavailable"}

Reply = tuple[int, list[tuple[str, str]], bytes]  # status, extra headers, JSON body


class Fault(enum.StrEnum):
    """The FCM errors the server can answer with, named after FCM's error codes."""

    UNREGISTERED = "UNREGISTERED"
    SENDER_ID_MISMATCH = "SENDER_ID_MISMATCH"
    INVALID_TOKEN = "INVALID_TOKEN"
    INVALID_FIELD = "INVALID_FIELD"  # INVALID_ARGUMENT about another field (message.android.ttl)
    QUOTA_EXCEEDED = "QUOTA_EXCEEDED"
    UNAVAILABLE = "UNAVAILABLE"
    INTERNAL = "INTERNAL"
    HOLD = "HOLD"  # take the message and never answer: a client that gives up or dies has sent it


# fault -> HTTP status, google.rpc status, FcmError errorCode, violated field, message: as FCM sends them.
_ERRORS: dict[Fault, tuple[int, str, str, str | None, str]] = {
    Fault.UNREGISTERED: (404, "NOT_FOUND", "UNREGISTERED", None, "Requested entity was not found."),
    Fault.SENDER_ID_MISMATCH: (403, "PERMISSION_DENIED", "SENDER_ID_MISMATCH", None, "SenderId mismatch"),
    Fault.INVALID_TOKEN: (
        400,
        "INVALID_ARGUMENT",
        "INVALID_ARGUMENT",
        "message.token",
        "The registration token is not a valid FCM registration token",
    ),
    Fault.INVALID_FIELD: (
        400,
        "INVALID_ARGUMENT",
        "INVALID_ARGUMENT",
        "message.android.ttl",
        "Invalid value at 'message.android.ttl' (type.googleapis.com/google.protobuf.Duration)",
    ),
    Fault.QUOTA_EXCEEDED: (429, "RESOURCE_EXHAUSTED", "QUOTA_EXCEEDED", None, "Quota exceeded."),
    Fault.UNAVAILABLE: (503, "UNAVAILABLE", "UNAVAILABLE", None, "The service is currently unavailable."),
    Fault.INTERNAL: (500, "INTERNAL", "INTERNAL", None, "Internal error encountered."),
}


@dataclass
class Rule:
    """Answer with `fault` (and a Retry-After header if given); for the first `times` requests only if given."""

    fault: Fault
    retry_after: int | None = None
    times: int | None = None


@dataclass(frozen=True)
class Received:
    token: str | None
    message: dict[str, Any]
    status: int
    at: float


@dataclass
class FcmServer:
    """``async with FcmServer() as fcm:`` serves on a free port; `fcm.url` is a value for FCM_URL.

    Every send is counted when it arrives; the first `record_limit` are also kept whole in `received`.
    Each answer is sent `latency` seconds after its request arrived (HTTP/1.1 answers in order).
    """

    host: str = "127.0.0.1"
    port: int = 0
    record_limit: int = 10_000
    latency: float = 0.0
    tls: ssl.SSLContext | None = None  # a server context with its certificate: https, and h2 offered by ALPN
    received: list[Received] = field(default_factory=list, init=False)
    requests: int = field(default=0, init=False)
    statuses: collections.Counter[int] = field(default_factory=collections.Counter, init=False)
    connections: int = field(default=0, init=False)
    _tokens: dict[str, Rule] = field(default_factory=dict, init=False, repr=False)
    _prefixes: list[tuple[str, Rule]] = field(default_factory=list, init=False, repr=False)
    _server: asyncio.Server | None = field(default=None, init=False, repr=False)
    _open: set[asyncio.Transport] = field(default_factory=set, init=False, repr=False)

    def fail(self, token: str, rule: Rule, *, prefix: bool = False) -> None:
        """Answer requests for `token` (every token starting with it if `prefix`) by `rule`."""
        if prefix:
            self._prefixes.append((token, rule))
        else:
            self._tokens[token] = rule

    @property
    def url(self) -> str:
        """The FCM_URL for this server: `{0}` stands for the project, as in firebase-admin's own URL."""
        scheme = "http" if self.tls is None else "https"
        return f"{scheme}://{self.host}:{self.port}/v1/projects/{{0}}/messages:send"

    def requests_for(self, token: str) -> int:
        return sum(1 for r in self.received if r.token == token)

    def stats(self) -> dict[str, Any]:
        return {"requests": self.requests, "statuses": dict(self.statuses), "connections": self.connections}

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        if self.tls is not None:
            self.tls.set_alpn_protocols(["h2", "http/1.1"])
        self._server = await loop.create_server(
            lambda: _Connection(self), self.host, self.port, backlog=1024, ssl=self.tls
        )
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            # Clients keep idle connections open, and wait_closed waits for them (Python >= 3.12).
            for transport in list(self._open):
                transport.close()
            await self._server.wait_closed()
            self._server = None

    async def __aenter__(self) -> FcmServer:
        await self.start()
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()

    def respond(self, method: str, target: str, body: bytes) -> Reply | None:
        """The answer to a request; None holds it unanswered (Fault.HOLD)."""
        if target == "/stats" and method == "GET":
            return 200, [], msgspec.json.encode(self.stats())
        matched = _SEND_PATH.fullmatch(target)
        if matched is None:
            return _error(404, "NOT_FOUND", f"no such resource: {target}")
        if method != "POST":
            return _error(405, "INVALID_ARGUMENT", "only POST is allowed")
        try:
            message = msgspec.json.decode(body)["message"]
            token = message.get("token") or message.get("fid")
        except (msgspec.DecodeError, KeyError, TypeError, AttributeError):
            return _error(400, "INVALID_ARGUMENT", "the body must be a JSON object with a message")
        self.requests += 1
        rule = self._rule_for(token)
        reply: Reply | None
        if rule is None:
            reply = 200, [], msgspec.json.encode({"name": f"projects/{matched[1]}/messages/{self.requests}"})
        else:
            reply = None if rule.fault is Fault.HOLD else _fault(rule)
        status = 0 if reply is None else reply[0]
        self.statuses[status] += 1
        if len(self.received) < self.record_limit:
            self.received.append(Received(token, message, status, time.time()))
        return reply

    def _rule_for(self, token: str | None) -> Rule | None:
        if token is None:
            return None
        rule = self._tokens.get(token) or next((r for p, r in self._prefixes if token.startswith(p)), None)
        if rule is None or rule.times == 0:
            return None
        if rule.times is not None:
            rule.times -= 1
        return rule


def _error(status: int, rpc_status: str, message: str, details: list[dict[str, Any]] | None = None) -> Reply:
    error = {"code": status, "message": message, "status": rpc_status, "details": details or []}
    return status, [], msgspec.json.encode({"error": error})


def _fault(rule: Rule) -> Reply:
    status, rpc_status, error_code, violated, message = _ERRORS[rule.fault]
    details: list[dict[str, Any]] = [{"@type": _FCM_ERROR, "errorCode": error_code}]
    if violated is not None:
        details.append({"@type": _BAD_REQUEST, "fieldViolations": [{"field": violated, "description": message}]})
    status, _, payload = _error(status, rpc_status, message, details)
    return status, [] if rule.retry_after is None else [("retry-after", str(rule.retry_after))], payload


class _Connection(asyncio.Protocol):
    """One client connection: HTTP/2 if it opens with the HTTP/2 preface, else HTTP/1.1."""

    def __init__(self, server: FcmServer) -> None:
        self._server = server
        self._buffer = bytearray()
        self._transport = cast(asyncio.Transport, None)
        self._h2: H2Connection | None = None
        self._sniffing = True
        self._streams: dict[int, tuple[dict[str, str], bytearray]] = {}
        self._late: collections.deque[tuple[float, bytes, bool]] = collections.deque()  # HTTP/1.1 answers held back

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)  # uvloop's transports are not subclasses
        self._server.connections += 1
        self._server._open.add(self._transport)

    def connection_lost(self, exc: Exception | None) -> None:
        self._server._open.discard(self._transport)

    def data_received(self, data: bytes) -> None:
        if self._h2 is not None:
            self._h2_received(self._h2, data)
            return
        self._buffer += data
        if self._sniffing:
            if len(self._buffer) < len(_H2_PREFACE) and _H2_PREFACE.startswith(self._buffer):
                return
            self._sniffing = False
            if self._buffer.startswith(_H2_PREFACE):
                self._h2 = H2Connection(_H2_CONFIG)
                self._h2.initiate_connection()
                self._h2_received(self._h2, bytes(self._buffer))
                return
        self._h1_received()

    def _h2_received(self, h2: H2Connection, data: bytes) -> None:
        for event in h2.receive_data(data):
            if isinstance(event, RequestReceived) and event.stream_id is not None:
                pairs = cast(list[tuple[str, str]], event.headers)  # str, not bytes: header_encoding is set
                self._streams[event.stream_id] = (dict(pairs), bytearray())
            elif isinstance(event, DataReceived) and event.stream_id is not None and event.data is not None:
                self._streams[event.stream_id][1].extend(event.data)
                h2.acknowledge_received_data(event.flow_controlled_length or 0, event.stream_id)
            elif isinstance(event, StreamEnded) and event.stream_id is not None:
                headers, body = self._streams.pop(event.stream_id)
                reply = self._server.respond(headers[":method"], headers[":path"], bytes(body))
                if reply is None:
                    continue
                if self._server.latency > 0:
                    asyncio.get_running_loop().call_later(self._server.latency, self._h2_late, event.stream_id, reply)
                else:
                    _h2_reply(h2, event.stream_id, reply)
            elif isinstance(event, StreamReset) and event.stream_id is not None:
                self._streams.pop(event.stream_id, None)
            elif isinstance(event, ConnectionTerminated):
                self._transport.close()
        self._transport.write(h2.data_to_send())

    def _h2_late(self, stream_id: int, reply: Reply) -> None:
        if self._h2 is None or self._transport.is_closing():
            return
        try:
            _h2_reply(self._h2, stream_id, reply)
        except H2Error:  # the client reset the stream or ended the connection meanwhile
            return
        self._transport.write(self._h2.data_to_send())

    def _h1_received(self) -> None:
        """Answers every complete request in the buffer (clients may pipeline)."""
        while not self._transport.is_closing():
            end = self._buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            lines = self._buffer[:end].decode("latin-1").split("\r\n")
            try:
                method, target, version = lines[0].split(" ")
                headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
                length = int(headers.get("content-length", "0"))
            except ValueError:
                self._h1_reply((400, [], b""), close=True)
                return
            if "transfer-encoding" in headers:  # the SDK sends JSON with a Content-Length; nothing else is needed
                self._h1_reply((501, [], b""), close=True)
                return
            if len(self._buffer) < end + 4 + length:
                return
            body = bytes(self._buffer[end + 4 : end + 4 + length])
            del self._buffer[: end + 4 + length]
            close = headers.get("connection", "").lower() == "close" or version == "HTTP/1.0"
            reply = self._server.respond(method, target, body)
            if reply is None:  # held: answers on this connection would now come out of order
                self._buffer.clear()
                return
            self._h1_reply(reply, close=close)

    def _h1_reply(self, reply: Reply, *, close: bool) -> None:
        status, extra, payload = reply
        head = [f"HTTP/1.1 {status} {_REASONS.get(status, 'Error')}", "Content-Type: application/json; charset=UTF-8"]
        head += [f"Content-Length: {len(payload)}", *(f"{name}: {value}" for name, value in extra)]
        if close:
            head.append("Connection: close")
        answer = "\r\n".join(head).encode() + b"\r\n\r\n" + payload
        if self._server.latency <= 0 and not self._late:
            self._h1_write(answer, close)
            return
        loop = asyncio.get_running_loop()
        self._late.append((loop.time() + self._server.latency, answer, close))
        if len(self._late) == 1:
            loop.call_at(self._late[0][0], self._h1_late)

    def _h1_late(self) -> None:
        """Writes the held-back answers that are due, in order, and waits for the next."""
        loop = asyncio.get_running_loop()
        due = loop.time() + 0.001  # timers fire to the millisecond
        while self._late and self._late[0][0] <= due:
            _, answer, close = self._late.popleft()
            self._h1_write(answer, close)
        if self._late:
            loop.call_at(self._late[0][0], self._h1_late)

    def _h1_write(self, answer: bytes, close: bool) -> None:
        if self._transport.is_closing():
            return
        self._transport.write(answer)
        if close:
            self._transport.close()


def _h2_reply(h2: H2Connection, stream_id: int, reply: Reply) -> None:
    status, extra, payload = reply
    response = [(":status", str(status)), ("content-type", "application/json; charset=UTF-8")]
    h2.send_headers(stream_id, [*response, ("content-length", str(len(payload))), *extra])
    h2.send_data(stream_id, payload, end_stream=True)


def _parse_rule(text: str) -> tuple[str, bool, Rule]:
    """``TOKEN=FAULT[,times=K][,retry_after=N]``; a TOKEN ending in ``*`` is a prefix."""
    target, _, spec = text.partition("=")
    fault, *options = spec.split(",")
    try:
        values = {name: int(value) for name, value in (option.split("=") for option in options)}
        if not target or values.keys() - {"times", "retry_after"}:
            raise ValueError("unknown option or no token")
        rule = Rule(Fault(fault), retry_after=values.get("retry_after"), times=values.get("times"))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(
            f"expected TOKEN[*]=FAULT[,times=K][,retry_after=N], got {text!r}: {exc}"
        ) from None
    return target.removesuffix("*"), target.endswith("*"), rule


async def _serve(args: argparse.Namespace) -> None:
    server = FcmServer(args.host, args.port, record_limit=args.records, latency=args.latency_ms / 1000)
    for token, prefix, rule in args.fail:
        server.fail(token, rule, prefix=prefix)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    async with server:
        # One JSON line a parent process waits for; the last line, on SIGTERM, carries the final counts.
        stats_url = f"http://{server.host}:{server.port}/stats"
        print(msgspec.json.encode({"ready": True, "fcm_url": server.url, "stats_url": stats_url}).decode(), flush=True)
        await stop.wait()
    print(msgspec.json.encode({"stopped": True, **server.stats()}).decode(), flush=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m tests.doubles.fcm_server", description="A local FCM server.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port (see the ready line)")
    parser.add_argument("--records", type=int, default=0, help="keep this many sends whole (counts are always kept)")
    parser.add_argument("--latency-ms", type=float, default=0.0, help="hold every answer back this long")
    parser.add_argument(
        "--fail", type=_parse_rule, action="append", default=[], metavar="TOKEN[*]=FAULT[,times=K][,retry_after=N]"
    )
    args = parser.parse_args(argv)
    try:
        import uvloop
    except ImportError:  # uvloop is not built for Windows
        asyncio.run(_serve(args))
    else:
        uvloop.run(_serve(args))


if __name__ == "__main__":
    main()
