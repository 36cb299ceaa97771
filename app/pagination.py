"""Keyset cursors: an opaque token naming the last item of a page by the columns the list is ordered on."""

from __future__ import annotations

import base64
import uuid
from collections.abc import Callable
from datetime import date, datetime
from typing import Any

from app.errors import BadRequest

_PARSERS: dict[type[Any], Callable[[str], Any]] = {
    datetime: datetime.fromisoformat,
    date: date.fromisoformat,
    uuid.UUID: uuid.UUID,
    int: int,
    str: str,
}


def encode_cursor(*values: datetime | date | uuid.UUID | int | str) -> str:
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
