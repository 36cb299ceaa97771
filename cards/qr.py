"""The dynamic QR token: signed, short-lived, single use (the single use is kept by the database).

Wire form: base64url(version | token id | person id | expiry) + "." + base64url(truncated HMAC).
The person id is what takes a terminal's lookup of the token to the person's shard (docs/cluster.md).
A terminal's request with a forged or altered token fails the HMAC before any database lookup.

Version 1 carried the card id where version 2 carries the person id, so a token is as long as before
(73 characters, a version 5 QR code of 37 modules at level M, either way). A version 1 token, minted
before the change and alive for a minute at most, is not looked up (its card id alone would ask every
shard): it is told apart from a forged one (`superseded`) and answered as expired, so the holder
refreshes the code.
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

_VERSION = 2
_SUPERSEDED = 1
_LAYOUT = struct.Struct(">B16s16sI")  # both versions: version | token id | person (v1: card) id | expiry
_TAG_BYTES = 16


@dataclass(frozen=True)
class QrClaims:
    token_id: uuid.UUID
    person_id: uuid.UUID
    expires_at: int  # unix seconds


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _tag(key: bytes, body: bytes) -> bytes:
    return hmac.new(key, b"qr" + body, hashlib.sha256).digest()[:_TAG_BYTES]


def encode(key: bytes, claims: QrClaims) -> str:
    body = _LAYOUT.pack(_VERSION, claims.token_id.bytes, claims.person_id.bytes, claims.expires_at)
    return f"{_b64(body)}.{_b64(_tag(key, body))}"


def _open(key: bytes, token: str) -> tuple[int, bytes, bytes, int] | None:
    """The fields of a genuine token of any version; None when forged, altered or malformed."""
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
    version, token_id, person_id, expires_at = _LAYOUT.unpack(body)
    return version, token_id, person_id, expires_at


def decode(key: bytes, token: str) -> QrClaims | None:
    """The claims of a genuine token (expired or not); None when forged, altered, malformed or of
    another version."""
    fields = _open(key, token)
    if fields is None or fields[0] != _VERSION:
        return None
    _, token_id, person_id, expires_at = fields
    return QrClaims(uuid.UUID(bytes=token_id), uuid.UUID(bytes=person_id), expires_at)


def superseded(key: bytes, token: str) -> bool:
    """Whether a token `decode` refuses is a genuine one of version 1 (read only on that failure path)."""
    fields = _open(key, token)
    return fields is not None and fields[0] == _SUPERSEDED


def render_svg(token: str) -> str:
    out = io.BytesIO()
    # A fixed mask: any mask gives a valid code, and choosing the "best" of eight costs 5 ms a mint.
    segno.make(token, error="m", mode="byte", mask=0).save(out, kind="svg", scale=4, border=2, xmldecl=False)
    return out.getvalue().decode()
