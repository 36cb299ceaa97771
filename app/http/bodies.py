"""Request bodies, decoded in one place; whatever cannot be decoded is refused with a 4xx problem
that says why, never a 500.

JSON must come as `application/json` and is decoded strictly into the handler's Struct. Litestar's
own path decodes it to plain values first (no type, so nesting has no bound, and bad UTF-8 or a
stack too deep escaped as a 500), then converts them leniently ("100" and 1e2 became 100). Here
msgspec decodes it once, straight into the declared type, in strict mode.
"""

from __future__ import annotations

import json
from typing import Any, TypeVar

import msgspec
from litestar import Request
from litestar.datastructures import FormMultiDict

from core.errors import BadRequest, UnsupportedMedia

T = TypeVar("T")

JSON_MEDIA_TYPE = "application/json"


def is_json(content_type: tuple[str, dict[str, str]]) -> bool:
    """`application/json` (Litestar gives the media type lower-cased), with at most `charset=utf-8`:
    JSON is UTF-8 (RFC 8259), so a body declared in another charset would be misread."""
    media_type, params = content_type
    return media_type == JSON_MEDIA_TYPE and all(
        name == "charset" and value.lower() == "utf-8" for name, value in params.items()
    )


def read_json(body: bytes, type_: type[T]) -> T:
    """`body` as `type_`, or a BadRequest saying why not."""
    try:
        value = msgspec.json.decode(body, type=type_, strict=True)
        # Once the body is known to be well-formed JSON of the right shape (so its depth is bounded
        # by the type), the standard parser goes over it again for what msgspec lets through: a
        # repeated key (msgspec keeps the last) and U+0000, which PostgreSQL text cannot hold.
        _check_text(json.loads(body, object_pairs_hook=_check_object), "$")
    except UnicodeDecodeError:  # before ValueError, which it is
        raise BadRequest("body_encoding") from None
    except RecursionError:  # deeper than the stack allows; only an untyped target is decoded that far
        raise BadRequest("body_too_deep") from None
    except ValueError as exc:  # msgspec.DecodeError and ValidationError are ValueErrors
        raise BadRequest("invalid_body", detail=str(exc)) from None
    return value


def _check_object(pairs: list[tuple[str, Any]]) -> None:
    """The standard parser's hook for every object, innermost first; the objects themselves are not kept."""
    names: set[str] = set()
    for name, value in pairs:
        if name in names:
            raise BadRequest("duplicate_key", key=name)
        names.add(name)
        _check_text(name, name)
        _check_text(value, name)


def _check_text(value: Any, field: str) -> None:
    """Strings, and strings in arrays (objects were checked by their own hook call)."""
    if isinstance(value, str):
        if "\x00" in value:
            raise BadRequest("control_character", field=field)
    elif isinstance(value, list):
        for item in value:
            _check_text(item, field)


class StrictRequest(Request[Any, Any, Any]):
    """The app's request class: a body that cannot be decoded is the caller's mistake, a 4xx.

    Litestar calls `json()` to fill a handler's `data` argument; this one returns `data` already
    decoded into its declared type (Litestar's conversion then passes the instance through as it is).
    """

    async def json(self) -> Any:
        if not is_json(self.content_type):
            raise UnsupportedMedia("unsupported_media_type")
        field = self.route_handler.parsed_data_field
        return read_json(await self.body(), field.annotation if field else object)

    async def form(self) -> FormMultiDict:
        # Litestar decodes each multipart field with the charset its part names, UTF-8 by default.
        try:
            form = await super().form()
        except (UnicodeDecodeError, LookupError):  # bytes that are not that charset, or no such charset
            raise BadRequest("body_encoding") from None
        for name, value in form.multi_items():
            _check_text(name, name)
            _check_text(value, name)  # an uploaded file is not text: only its bytes are stored
        return form
