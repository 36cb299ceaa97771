"""The OpenAPI document's refusals: every operation lists the problem+json answers it can give.

What follows from how a route is built is derived once, for every route, by `document_route`: the
refusals of its guards (401, 403), a path id that names nothing (404), a parameter or JSON body that
does not validate (400, 413, 415), a database or object store that fails (503). What a use case
refuses is declared on its route with `problems(...)`, by the very AppError the service raises, so
the document's example carries the real code and text.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from http import HTTPStatus
from typing import Any, cast

import msgspec
from litestar.handlers import HTTPRouteHandler
from litestar.openapi.datastructures import ResponseSpec
from litestar.openapi.spec import (
    Example,
    OpenAPIFormat,
    OpenAPIHeader,
    OpenAPIMediaType,
    OpenAPIResponse,
    OpenAPIType,
    Operation,
    Parameter,
    Reference,
    RequestBody,
    Schema,
)
from litestar.routes import HTTPRoute

from app.http.problems import PROBLEM_JSON, RETRY_AFTER_S, ProblemDetails
from core.errors import AppError, BadRequest, Forbidden, NotFound, UnsupportedMedia
from core.text import message

IDEMPOTENCY_KEY = "Idempotency-Key"
_EXAMPLE_LOCALE = "en"  # the document is read by developers; the answers follow Accept-Language


@dataclass(frozen=True)
class Refusal:
    """A problem+json answer an operation can give: its status, stable code and message parameters."""

    status: int
    code: str
    params: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def of(cls, error: AppError | Refusal) -> Refusal:
        return error if isinstance(error, Refusal) else cls(error.status, error.code, error.params)


# Answers of the framework and of app.http.problems.classify that no AppError names.
BODY_TOO_LARGE = Refusal(413, "body_too_large")
DEPENDENCY_UNAVAILABLE = Refusal(503, "dependency_unavailable")
INVALID_BODY = BadRequest("invalid_body", detail="phone: Expected `str` of length <= 20")
# A cardholder signed in by phone whose account is not yet linked to a person (core.principal).
NOT_LINKED = Forbidden("identity_not_linked")
_DATA = (INVALID_BODY, BODY_TOO_LARGE, UnsupportedMedia("unsupported_media_type"))

_MEANING = {
    400: "The request does not validate: a parameter, the body, a cursor",
    401: "No valid credential: send Authorization: Bearer with a live token",
    402: "The account cannot cover the amount",
    403: "The credential's role or identity may not do this",
    404: "Nothing of that id for this caller",
    409: "The resource's state does not allow this now",
    410: "Expired: start again",
    413: "The body is larger than this operation takes",
    415: "A body of a media type this operation does not read",
    422: "Well-formed, but its content is refused",
    429: "Too many attempts: try again after Retry-After seconds",
    503: "A dependency (database, object storage) is unavailable: try again after Retry-After seconds",
}

# Parameters Litestar fills itself: they are not read from the request, so they cannot fail to validate.
_INJECTED = frozenset({"self", "request", "data", "services", "state", "scope", "headers", "cookies", "query"})


@dataclass
class ProblemResponse(ResponseSpec):
    """A ResponseSpec that remembers its refusals, so that derived and declared ones merge by status."""

    refusals: tuple[Refusal, ...] = ()


def problems(*errors: AppError | Refusal) -> dict[int, ResponseSpec]:
    """The `responses=` of a route: what its use case refuses beyond what `document_route` derives."""
    return _responses(Refusal.of(e) for e in errors)


def _responses(refusals: Iterable[Refusal], path: str = "") -> dict[int, ResponseSpec]:
    by_status: dict[int, list[Refusal]] = {}
    for refusal in refusals:
        if refusal not in by_status.setdefault(refusal.status, []):
            by_status[refusal.status].append(refusal)
    return {
        status: ProblemResponse(
            data_container=ProblemDetails,
            media_type=PROBLEM_JSON,
            generate_examples=False,
            description=_MEANING.get(status, HTTPStatus(status).phrase),
            examples=[_example(r, path) for r in found],
            refusals=tuple(found),
        )
        for status, found in sorted(by_status.items())
    }


def _example(refusal: Refusal, path: str) -> Example:
    params = dict(refusal.params)
    errors = params.pop("errors", None)
    text = message(refusal.code, _EXAMPLE_LOCALE, **params)
    body = ProblemDetails(
        type=f"urn:socialcard:problem:{refusal.code}",
        title=text,
        status=refusal.status,
        detail=text,
        code=refusal.code,
        instance=path,
        request_id="4bf92f3577b34da6a3ce929d0e0e4736",
        errors=errors,
    )
    return Example(summary=refusal.code, value=msgspec.to_builtins(body))


def derived_refusals(route: HTTPRoute, handler: HTTPRouteHandler) -> list[Refusal]:
    """What any operation built like this one can answer, whatever its use case."""
    found: list[AppError | Refusal] = []
    for layer in handler.ownership_layers:  # resolve_guards() would give them wrapped
        for guard in layer.guards or ():
            found.extend(getattr(guard, "refusals", ()))
    # A guard looks the bearer credential up in the database; `services` reach it or the object store.
    reaches_dependency = bool(found) or "services" in handler.parsed_fn_signature.parameters
    path_params = set(route.path_parameters)
    if any(p.type is not str for p in route.path_parameters.values()):
        found.append(NotFound())  # an id of the wrong form matches no route, as one that names nothing
    read = set(handler.parsed_fn_signature.parameters) - _INJECTED - path_params - set(handler.resolve_dependencies())
    if read:
        found.append(INVALID_BODY)
    if handler.parsed_data_field is not None:
        found.extend(_DATA)
    if reaches_dependency:
        found.append(DEPENDENCY_UNAVAILABLE)
    return [Refusal.of(r) for r in found]


def document_route(route: HTTPRoute) -> None:
    """Give each handler of the route its full list of refusals and the operation class that completes
    them (called for every route as the app registers it, before the document is built)."""
    for handler, _ in route.route_handler_map.values():
        declared = dict(handler.responses or {})
        refusals = derived_refusals(route, handler)
        for spec in declared.values():
            if isinstance(spec, ProblemResponse):
                refusals.extend(spec.refusals)
        others = {status: spec for status, spec in declared.items() if not isinstance(spec, ProblemResponse)}
        handler.responses = {**_responses(refusals, route.path_format or "/"), **others}
        if not issubclass(handler.operation_class, ApiOperation):
            handler.operation_class = ApiOperation


_RETRY_AFTER = OpenAPIHeader(
    schema=Schema(type=OpenAPIType.INTEGER, minimum=1, examples=[RETRY_AFTER_S]),
    description="Seconds to wait before trying again",
    required=True,
)


@dataclass
class ApiOperation(Operation):
    """What Litestar's ResponseSpec and Parameter cannot say: the Retry-After header of a 429 or 503,
    and an Idempotency-Key that is required (its parameter is optional only so that a missing key gets
    its own problem code, `idempotency_key_required`)."""

    def __post_init__(self) -> None:
        # Litestar adds its own 400 (its default error shape) to any operation with parameters: the
        # answers are problem+json, and one that names none (a path id of the wrong form is a 404) is dropped.
        self.responses = {
            status: response
            for status, response in (self.responses or {}).items()
            if not (
                status >= "4" and isinstance(response, OpenAPIResponse) and PROBLEM_JSON not in (response.content or {})
            )
        }
        for status in ("429", "503"):
            response = (self.responses or {}).get(status)
            if isinstance(response, OpenAPIResponse):
                response.headers = {**(response.headers or {}), "Retry-After": _RETRY_AFTER}
        if self.parameters:
            self.parameters = [
                replace(p, required=True, schema=_not_null(p.schema))
                if isinstance(p, Parameter) and p.param_in == "header" and p.name == IDEMPOTENCY_KEY
                else p
                for p in self.parameters
            ]


def _csv(example: str, *, upload: bool) -> dict[str, OpenAPIMediaType]:
    # An uploaded file is `binary`, so that generated clients send it as a file (bytes), as it is.
    text = Schema(type=OpenAPIType.STRING, format=OpenAPIFormat.BINARY if upload else None)
    return {"text/csv": OpenAPIMediaType(schema=text, example=example)}


def csv_download(header: Sequence[str]) -> type[ApiOperation]:
    """An operation whose answer is a CSV file with `header` (a Stream, which Litestar cannot describe):
    the bank's payment order, the recall file."""

    @dataclass
    class CsvDownload(ApiOperation):
        def __post_init__(self) -> None:
            super().__post_init__()
            ok = (self.responses or {}).get("200")
            if isinstance(ok, OpenAPIResponse):
                ok.content = _csv(",".join(header) + "\n", upload=False)

    return CsvDownload


def csv_upload(header: Sequence[str], example_line: str) -> type[ApiOperation]:
    """An operation whose body is a CSV file with `header`, read by the handler itself: the bank's
    answers to a payment order or to a recall."""

    @dataclass
    class CsvUpload(ApiOperation):
        def __post_init__(self) -> None:
            super().__post_init__()
            example = ",".join(header) + "\n" + example_line + "\n"
            self.request_body = RequestBody(required=True, content=_csv(example, upload=True))

    return CsvUpload


def _not_null(schema: Schema | Reference | None) -> Schema | Reference | None:
    """The schema of a value that may not be null: `str | None` becomes `str`."""
    if isinstance(schema, Schema) and schema.one_of:
        kept = [s for s in schema.one_of if not (isinstance(s, Schema) and s.type == OpenAPIType.NULL)]
        if len(kept) == 1:
            return kept[0]
    return schema


def struct_schema(struct: type[msgspec.Struct]) -> Schema:
    """A body's JSON Schema from its Struct, inline, for an operation that decodes the body itself
    (Litestar registers components only for the `data` it decodes)."""
    _, components = msgspec.json.schema_components([struct])
    # The document is serialised field by field; a mapping in place of a Schema object goes out as it is.
    return cast(Schema, components[struct.__name__])
