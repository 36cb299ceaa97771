"""Base for every request and response body: unknown fields are refused, names are snake_case."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any, TypeVar

import asyncpg
import msgspec

from core.errors import BadRequest
from core.justification import REASON_MAX, REASON_MIN

T = TypeVar("T", bound=msgspec.Struct)

# Routes that need a bearer credential say so in OpenAPI (the guards enforce it); public ones say nothing.
BEARER: list[dict[str, list[str]]] = [{"BearerToken": []}]


class Body(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    pass


# What staff write to justify a decision (core.justification holds it again after trimming), and
# the refusals that come of it.
StaffReason = Annotated[
    str,
    msgspec.Meta(min_length=REASON_MIN, max_length=REASON_MAX, pattern=r"\S", description="why; kept in the audit log"),
]
STAFF_REASON_REFUSALS = (BadRequest("reason_required"), BadRequest("reason_too_long", most=REASON_MAX))


def to_schema(schema: type[T], row: asyncpg.Record | Mapping[str, Any], **computed: Any) -> T:
    """A response body from a database row plus computed fields: the Struct names what it shows, and
    msgspec checks every value against its type (a status outside its Literal fails here, not in a client)."""
    values = {name: computed[name] if name in computed else row[name] for name in schema.__struct_fields__}
    return msgspec.convert(values, schema)
