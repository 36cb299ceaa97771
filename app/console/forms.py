"""The console's form bodies: msgspec Structs, unknown fields refused, like every API body."""

from __future__ import annotations

from typing import Any, Literal, TypeVar

import msgspec
from litestar import Request

from app.http.review.schemas import DecisionKind
from app.http.schemas import Body
from core.errors import BadRequest

F = TypeVar("F", bound=Body)


class SignInForm(Body):
    csrf: str
    username: str
    password: str
    totp: str
    next: str = ""


class TokenForm(Body):
    """A post that carries nothing but its form token (claim, sign out, retry)."""

    csrf: str


class LanguageForm(Body):
    csrf: str
    locale: Literal["zh-CN", "en"]
    next: str = ""


class ClaimNextForm(Body):
    """Claim the next check, or a given one, from the queue under these filters."""

    csrf: str
    reason: str = ""
    region: str = ""


class SearchForm(Body):
    csrf: str
    q: str


class DecisionForm(Body):
    csrf: str
    decision: DecisionKind
    reason: str = ""  # the service's rule says what is wrong with it
    # The queue's filters the check was opened from: the next check comes from the same queue.
    queue_reason: str = ""
    queue_region: str = ""


class MediaAccessForm(Body):
    csrf: str
    reason: str = ""  # the service's rule says what is wrong with it


class ScheduleForm(Body):
    csrf: str
    scheduled_for: str  # an <input type="datetime-local">: China time, no offset
    place: str = ""


class ReasonForm(Body):
    """A post whose one field is the operator's reason (the service's rule says what is wrong with it)."""

    csrf: str
    reason: str = ""


class AppealDecisionForm(Body):
    csrf: str
    outcome: Literal["upheld", "rejected"]
    reason: str = ""


class AlertClosingForm(Body):
    csrf: str
    reason: str = ""  # the service's rule says what is wrong with it


async def read_form(request: Request[Any, Any, Any], form: type[F]) -> F:
    """The posted form as `form`; a field missing, unknown or out of its choices is a 400 with the field named."""
    values = {key: value for key, value in (await request.form()).items() if isinstance(value, str)}
    try:
        return msgspec.convert(values, form)
    except msgspec.ValidationError as exc:
        raise BadRequest("invalid_body", detail=str(exc)) from None
