"""The dynamic QR token: signed, short-lived, single use (the single use is kept by the database).

Wire form: base64url(version | token id | card id | expiry) + "." + base64url(truncated HMAC).
A terminal's request with a forged or altered token fails the HMAC before any database lookup.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import io
import struct
import uuid
from dataclasses import dataclass

import segno

_VERSION = 1
_LAYOUT = struct.Struct(">B16s16sI")
_TAG_BYTES = 16


@dataclass(frozen=True)
class QrClaims:
    token_id: uuid.UUID
    card_id: uuid.UUID
    expires_at: int  # unix seconds


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _tag(key: bytes, body: bytes) -> bytes:
    return hmac.new(key, b"qr" + body, hashlib.sha256).digest()[:_TAG_BYTES]


def encode(key: bytes, claims: QrClaims) -> str:
    body = _LAYOUT.pack(_VERSION, claims.token_id.bytes, claims.card_id.bytes, claims.expires_at)
    return f"{_b64(body)}.{_b64(_tag(key, body))}"


def decode(key: bytes, token: str) -> QrClaims | None:
    """The claims of a genuine token (expired or not); None when forged, altered or malformed."""
    if len(token) > 128:
        return None
    head, _, tail = token.partition(".")
    try:
        body = base64.urlsafe_b64decode(head + "=" * (-len(head) % 4))
        tag = base64.urlsafe_b64decode(tail + "=" * (-len(tail) % 4))
    except ValueError:
        return None
    # Re-encoding must give back the exact text: no alternative spellings of one token.
    if len(body) != _LAYOUT.size or _b64(body) != head or _b64(tag) != tail:
        return None
    if not hmac.compare_digest(tag, _tag(key, body)):
        return None
    version, token_id, card_id, expires_at = _LAYOUT.unpack(body)
    if version != _VERSION:
        return None
    return QrClaims(uuid.UUID(bytes=token_id), uuid.UUID(bytes=card_id), expires_at)


def render_svg(token: str) -> str:
    out = io.BytesIO()
    # A fixed mask: any mask gives a valid code, and choosing the "best" of eight costs 5 ms a mint.
    segno.make(token, error="m", mode="byte", mask=0).save(out, kind="svg", scale=4, border=2, xmldecl=False)
    return out.getvalue().decode()
