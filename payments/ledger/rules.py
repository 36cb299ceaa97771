"""The medical account's pure rules: amounts, idempotency keys and request fingerprints, refund
arithmetic, and the allocation file's rows. No I/O."""

from __future__ import annotations

import enum
import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from core import national_id as nid
from core.records import RowError, field_text, read_rows
from payments.disbursement.rules import YEARS, parse_year

# 100,000 yuan: above it, a charge, refund or yearly allocation is a unit mistake (yuan typed as fen).
MAX_AMOUNT_FEN = 10_000_000

# A claim is *held* while its request works: the work's transaction locks the key's row (hold_key)
# two round trips after the claim, on the same connection, until it stores the answer; and
# PostgreSQL drops that lock the moment the claiming process's connection ends (a killed process's
# kernel closes its socket). So an unanswered claim that no transaction holds and that is older
# than CLAIM_GRACE (the gap between claim and hold, with a wide margin) belongs to a request that
# died: a retry takes it over at once, long before the 60 s QR code expires. A held claim is never
# taken over, however slow its request: a double charge is the worst outcome.
CLAIM_GRACE = timedelta(seconds=2)
# A connection that falls silent inside the work's transaction without closing (its host froze or
# lost power, the network was cut) is ended by PostgreSQL after this long idle (the transaction's
# idle_in_transaction_session_timeout, set by hold_key), which rolls its work back and drops its
# lock as a death does. A live request is never idle that long between two statements.
HELD_IDLE_LIMIT = timedelta(seconds=10)
KEY_LIFETIME = timedelta(hours=24)

_KEY = re.compile(r"[\x20-\x7e]{1,255}")  # printable ASCII
_DIGITS = re.compile(r"[0-9]{1,12}")


def valid_amount(amount_fen: int) -> bool:
    return 0 < amount_fen <= MAX_AMOUNT_FEN


def refundable_fen(charged_fen: int, refunded_fen: int) -> int:
    return charged_fen - refunded_fen


# -- idempotency ---------------------------------------------------------------------------------
def valid_idempotency_key(key: str | None) -> bool:
    return key is not None and _KEY.fullmatch(key) is not None


def canonical_json(body: Mapping[str, Any]) -> bytes:
    """One byte string per meaning: keys sorted, no spaces, UTF-8 as is."""
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode()


def request_hash(method: str, path: str, body: Mapping[str, Any]) -> bytes:
    """The fingerprint a key is bound to: the same key with another operation or body is a reuse."""
    return hashlib.sha256(b"\n".join((method.upper().encode(), path.encode(), canonical_json(body)))).digest()


class KeyState(enum.Enum):
    ANSWERED = "answered"  # replay the stored answer
    REUSED = "reused"  # the key belongs to another request: 422
    IN_FLIGHT = "in_flight"  # its first request is still running: 409
    TAKE_OVER = "take_over"  # expired, or claimed by a request that died: run the request now


@dataclass(frozen=True)
class StoredKey:
    request_hash: bytes
    answered: bool
    locked_at: datetime | None
    expires_at: datetime
    held: bool  # a transaction holds the key's row: its request is working


def claim_dead(stored: StoredKey, now: datetime) -> bool:
    """An unanswered claim whose request died: no transaction holds it, and it is older than the
    grace in which its live request would have taken hold of it (`now` is the database's clock)."""
    return (
        not stored.answered
        and not stored.held
        and stored.locked_at is not None
        and stored.locked_at <= now - CLAIM_GRACE
    )


def key_state(stored: StoredKey, request_hash: bytes, now: datetime) -> KeyState:
    """What to do with a request whose key is already stored (`now` is the database's clock)."""
    if stored.expires_at <= now:
        return KeyState.TAKE_OVER  # an expired key is forgotten: it may name a new request
    if stored.request_hash != request_hash:
        return KeyState.REUSED
    if stored.answered:
        return KeyState.ANSWERED
    if claim_dead(stored, now):
        return KeyState.TAKE_OVER
    return KeyState.IN_FLIGHT


# -- yearly allocations --------------------------------------------------------------------------
@dataclass(frozen=True)
class AllocationRow:
    line: int
    national_id: str
    year: int
    amount_fen: int


ALLOCATION_COLUMNS = ("national_id", "year", "amount_fen")


def validate_allocation(line: int, raw: dict[str, Any]) -> AllocationRow | list[RowError]:
    errors: list[RowError] = []
    national_id = nid.normalise(field_text(raw, "national_id"))
    id_reason = nid.validate(national_id) if national_id else "is required"
    if id_reason:
        errors.append(RowError(line, "national_id", id_reason))
    # Whole numbers only, as digits: a JSON float (12.5) or boolean reads as text that is not digits.
    year = 0
    try:
        year = parse_year(field_text(raw, "year"))
    except ValueError:
        errors.append(RowError(line, "year", f"must be a year from {YEARS[0]} to {YEARS[-1]}"))
    amount_text = field_text(raw, "amount_fen")
    amount = int(amount_text) if _DIGITS.fullmatch(amount_text) else 0
    if not valid_amount(amount):
        errors.append(RowError(line, "amount_fen", f"must be a whole number of fen from 1 to {MAX_AMOUNT_FEN:,}"))
    return errors or AllocationRow(line, national_id, year, amount)


def parse_allocations(text: str, fmt: str) -> tuple[list[AllocationRow], list[RowError]]:
    """Every good row in file order (a repeated person and year is the service's no-op), and every bad one."""
    rows, errors = read_rows(text, fmt, ALLOCATION_COLUMNS)
    good: list[AllocationRow] = []
    for line, raw in rows:
        result = validate_allocation(line, raw)
        if isinstance(result, list):
            errors.extend(result)
        else:
            good.append(result)
    return good, sorted(errors, key=lambda e: e.line)
