"""Certification in person and appeals over HTTP: what the pensioner asks and sees, what operators
list, schedule and decide."""

from __future__ import annotations

import uuid
from datetime import date, datetime
from typing import Annotated, Literal

import msgspec

from app.http.schemas import Body, StaffReason
from certification.in_person.rules import NOTE_MAX, PLACE_MAX, STATEMENT_MAX

RequestKind = Literal["home_visit", "service_point"]
RequestState = Literal["requested", "scheduled", "certified", "cancelled"]
Method = Literal["home_visit", "service_point", "appeal"]
AppealSubject = Literal["payment", "check"]
AppealState = Literal["submitted", "upheld", "rejected"]


class InPersonRequestBody(Body):
    kind: Annotated[RequestKind, msgspec.Meta(description="a visit at home, or an appointment at a service point")]
    note: Annotated[str, msgspec.Meta(max_length=NOTE_MAX, description="anything staff should know: access, times")] = (
        ""
    )


class InPersonRequest(Body):
    id: uuid.UUID
    kind: RequestKind
    note: str
    state: RequestState
    requested_at: datetime
    scheduled_for: datetime | None
    place: str | None


class InPersonRequestList(Body):
    requests: list[InPersonRequest]


class OpenInPersonRequest(InPersonRequest):
    masked_national_id: str
    name: str
    region: str
    waiting_days: int


class OpenInPersonRequestList(Body):
    requests: list[OpenInPersonRequest]


class Schedule(Body):
    scheduled_for: Annotated[datetime, msgspec.Meta(description="when, with its UTC offset")]
    place: Annotated[
        str, msgspec.Meta(min_length=1, max_length=PLACE_MAX, pattern=r"\S", description="the address or service point")
    ]


class InPersonCertificationBody(Body):
    national_id: Annotated[str, msgspec.Meta(min_length=15, max_length=18)]
    method: Annotated[Literal["home_visit", "service_point"], msgspec.Meta(description="where the person was seen")]
    reason: StaffReason
    request_id: uuid.UUID | None = None


class InPersonCertification(Body):
    id: uuid.UUID
    masked_national_id: str
    method: Method
    eligible_until: date


class RequestCertificationBody(Body):
    reason: StaffReason


class RegionCounts(Body):
    region: Annotated[str, msgspec.Meta(description="the region code; empty in the total")]
    pensioners: Annotated[int, msgspec.Meta(description="alive, with a pension being paid")]
    by_data: Annotated[int, msgspec.Meta(description="confirmed by evidence of life from data in the cycle")]
    by_face: Annotated[int, msgspec.Meta(description="passed a face check they filmed themselves in the cycle")]
    assisted: Annotated[int, msgspec.Meta(description="passed a face check a linked relative filmed in the cycle")]
    in_person: Annotated[int, msgspec.Meta(description="certified in person (visit, service point, appeal)")]
    certified: Annotated[int, msgspec.Meta(description="certified any way in the cycle (each person once)")]
    still_due: Annotated[int, msgspec.Meta(description="not certified any way yet in the cycle")]
    lapsed: Annotated[
        int, msgspec.Meta(description="certified until before today, or never: the next payment is withheld")
    ]


class LadderReport(Body):
    year: int
    regions: list[RegionCounts]
    total: RegionCounts


class AppealBody(Body):
    subject: Annotated[AppealSubject, msgspec.Meta(description="a withheld payment, or a face check that did not pass")]
    subject_id: Annotated[uuid.UUID, msgspec.Meta(description="the payment's or the check's id")]
    statement: Annotated[str, msgspec.Meta(min_length=1, max_length=STATEMENT_MAX, pattern=r"\S")]


class Appeal(Body):
    id: uuid.UUID
    subject: AppealSubject
    subject_id: uuid.UUID
    statement: str
    state: AppealState
    submitted_at: datetime
    due_at: Annotated[datetime, msgspec.Meta(description="the answer is promised by then")]
    decided_at: datetime | None
    outcome_reason: str | None


class AppealList(Body):
    appeals: list[Appeal]


class OpenAppeal(Appeal):
    masked_national_id: str
    name: str
    region: str
    overdue: bool


class OpenAppealList(Body):
    appeals: list[OpenAppeal]


class AppealDecision(Body):
    outcome: Annotated[Literal["upheld", "rejected"], msgspec.Meta(description="upheld certifies the person")]
    reason: StaffReason
