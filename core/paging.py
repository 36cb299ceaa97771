"""Keyset cursors: an opaque token naming the last item of a page by the columns the list is ordered on."""

from __future__ import annotations

import base64
import uuid
from collections.abc import Callable, Sequence
from datetime import date, datetime
from typing import Any, TypeVar

from core.errors import BadRequest

R = TypeVar("R")
Value = datetime | date | uuid.UUID | int | str


_PARSERS: dict[type[Any], Callable[[str], Any]] = {
    datetime: datetime.fromisoformat,
    date: date.fromisoformat,
    uuid.UUID: uuid.UUID,
    int: int,
    str: str,
}


def encode_cursor(*values: Value) -> str:
    text = "|".join(v.isoformat() if isinstance(v, date) else str(v) for v in values)
    return base64.urlsafe_b64encode(text.encode()).decode()


def decode_cursor(cursor: str, *types: type[Any]) -> tuple[Any, ...]:
    """The values `encode_cursor` packed, parsed as `types`; a cursor that is not one is a 400."""
    try:
        parts = base64.urlsafe_b64decode(cursor.encode()).decode().split("|")
        if len(parts) != len(types):
            raise ValueError(cursor)
        return tuple(_PARSERS[kind](part) for kind, part in zip(types, parts, strict=True))
    except ValueError:
        raise BadRequest("cursor_invalid") from None


def after(cursor: str | None, *types: type[Any]) -> tuple[Any, ...] | None:
    """Where the page starts: the key the cursor names, or None for the first page."""
    return decode_cursor(cursor, *types) if cursor else None


def page(rows: Sequence[R], limit: int, key: Callable[[R], tuple[Value, ...]]) -> tuple[list[R], str | None]:
    """A page from `limit + 1` fetched rows (the extra one only says there is more), and the cursor
    to the next page: the `key` of the page's last row; None on the last page."""
    if len(rows) <= limit:
        return list(rows), None
    return list(rows[:limit]), encode_cursor(*key(rows[limit - 1]))
