"""Access tokens and secret handling: pure functions, no I/O.

An access token is ``at.<payload>.<mac>``: the payload names the session, the principal and the
expiry; the HMAC lets the API refuse a forged token before it touches the database. The session
row decides whether a well-formed token is still good (logout revokes it at once).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import uuid
from datetime import datetime

import msgspec


class AccessClaims(msgspec.Struct, array_like=True, frozen=True):
    session_id: uuid.UUID
    kind: str  # 'account' | 'operator'
    expires_at: int  # unix seconds


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _mac(key: bytes, data: bytes) -> bytes:
    return hmac.new(key, data, hashlib.sha256).digest()


def issue_access_token(key: bytes, session_id: uuid.UUID, kind: str, expires_at: datetime) -> str:
    payload = msgspec.msgpack.encode(AccessClaims(session_id, kind, int(expires_at.timestamp())))
    return f"at.{_b64(payload)}.{_b64(_mac(key, payload))}"


def parse_access_token(key: bytes, token: str, now: datetime) -> AccessClaims | None:
    """The claims of a genuine, unexpired token; None for anything else."""
    parts = token.split(".")
    if len(parts) != 3 or parts[0] != "at":
        return None
    try:
        payload, mac = _unb64(parts[1]), _unb64(parts[2])
        # One spelling per token: the text must be exactly what issue_access_token would write.
        if _b64(payload) != parts[1] or _b64(mac) != parts[2]:
            return None
        if not hmac.compare_digest(mac, _mac(key, payload)):
            return None
        claims = msgspec.msgpack.decode(payload, type=AccessClaims)
    except (ValueError, msgspec.DecodeError):
        return None
    return claims if claims.expires_at > now.timestamp() else None


def new_secret_token(prefix: str) -> tuple[str, bytes]:
    """A 256-bit random token and the SHA-256 that is stored instead of it."""
    token = f"{prefix}.{secrets.token_urlsafe(32)}"
    return token, hashlib.sha256(token.encode()).digest()


def secret_hash(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


def csrf_token(key: bytes, session_id: uuid.UUID) -> str:
    """The console's form token: bound to one session, so a page of another session cannot post."""
    return _b64(_mac(key, b"csrf:" + session_id.bytes))


def new_terminal_key(terminal_id: uuid.UUID) -> tuple[str, bytes]:
    """``tk_<terminal id>.<secret>``: the id finds the row, the secret's hash proves possession."""
    secret = secrets.token_urlsafe(32)
    return f"tk_{terminal_id.hex}.{secret}", hashlib.sha256(secret.encode()).digest()


def split_terminal_key(key: str) -> tuple[uuid.UUID, bytes] | None:
    head, _, secret = key.partition(".")
    if not head.startswith("tk_") or not secret:
        return None
    try:
        terminal_id = uuid.UUID(hex=head[3:])
    except ValueError:
        return None
    return terminal_id, hashlib.sha256(secret.encode()).digest()


def otp_code() -> str:
    return f"{secrets.randbelow(1_000_000):06d}"


def otp_hash(key: bytes, phone: str, code: str) -> bytes:
    return _mac(key, f"otp:{phone}:{code}".encode())
