"""Base for every request and response body: unknown fields are refused, names are snake_case."""

from __future__ import annotations

import msgspec


class Body(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    pass
