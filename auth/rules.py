"""Pure rules of the sign-in limits: who the client is, which TOTP step a code proves, and how long a
limited caller waits. No I/O: the counts they judge are kept in PostgreSQL by the services."""

from __future__ import annotations

import hmac
import ipaddress
import math
from collections.abc import Sequence
from datetime import datetime, timedelta

import pyotp


def client_key(peer: str | None, claimed: str | None) -> str:
    """What a per-client limit counts by. `claimed` is the trusted proxy's header (CLIENT_IP_HEADER),
    if one is configured: its last address, the one the proxy itself wrote (in X-Forwarded-For every
    earlier one is whatever the caller sent). Without a readable one, the connection's peer.

    An IPv6 client is its /64, the block one subscriber is given: addresses within it are one client."""
    last = claimed.rsplit(",", 1)[-1].strip() if claimed else ""
    for text in (last, peer):
        if not text:
            continue
        try:
            address = ipaddress.ip_address(text)
        except ValueError:
            continue
        if isinstance(address, ipaddress.IPv6Address):
            if address.ipv4_mapped is not None:
                return str(address.ipv4_mapped)
            return str(ipaddress.IPv6Network((address, 64), strict=False))
        return str(address)
    return peer or "unknown"


def totp_step(secret: str, code: str, now: datetime, last_step: int | None) -> int | None:
    """The time step `code` is the TOTP of: the current one or a neighbour (clocks drift), and later
    than `last_step`, the step of the last code accepted; None otherwise. A code is accepted once, and
    after it no earlier one (RFC 6238, section 5.2)."""
    totp = pyotp.TOTP(secret)
    current = totp.timecode(now)
    found = None
    for step in (current - 1, current, current + 1):
        if hmac.compare_digest(totp.generate_otp(step), code) and (last_step is None or step > last_step):
            found = step
    return found


def wait_seconds(times: Sequence[datetime], limit: int, window: timedelta, now: datetime) -> int | None:
    """How long until one more fits, when `times` (oldest first, all within the sliding `window`) are
    counted against `limit`; None when it fits now. At least a second: a Retry-After of 0 invites a loop."""
    if len(times) < limit:
        return None
    frees_at = times[len(times) - limit] + window
    return max(1, math.ceil((frees_at - now).total_seconds()))


def seconds_to_next_hour(now: datetime) -> int:
    """How long until a budget counted per clock hour starts again."""
    next_hour = now.replace(minute=0, second=0, microsecond=0) + timedelta(hours=1)
    return max(1, math.ceil((next_hour - now).total_seconds()))
