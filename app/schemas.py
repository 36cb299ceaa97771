"""Base for every request and response body: unknown fields are refused, names are snake_case."""

from __future__ import annotations

import msgspec

# Routes that need a bearer credential say so in OpenAPI (the guards enforce it); public ones say nothing.
BEARER: list[dict[str, list[str]]] = [{"BearerToken": []}]


class Body(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    pass
