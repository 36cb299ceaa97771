"""Evidence of life over HTTP: the feed import's report, the trail of a confirmation by data (the
person's own view and the operators'), and the silent pass."""

from __future__ import annotations

import uuid
from datetime import date, datetime
from typing import Annotated, Literal

import msgspec

from app.http.schemas import Body

EvidenceFeed = Literal[
    "hospital_visit", "pharmacy_purchase", "insurance_settlement", "civil_affairs", "police", "bank_activity"
]
EvidenceSource = Literal[
    "hospital_visit",
    "pharmacy_purchase",
    "insurance_settlement",
    "civil_affairs",
    "police",
    "bank_activity",
    "qr_charge",
]


class LineError(Body):
    line: int
    field: Annotated[str, msgspec.Meta(description="the column, or - for the whole line")]
    reason: str


class EvidenceImport(Body):
    recorded: Annotated[int, msgspec.Meta(description="new evidence rows")]
    unchanged: Annotated[int, msgspec.Meta(description="lines whose source and reference were recorded already")]
    rejected: Annotated[int, msgspec.Meta(description="lines refused; each is in errors (the first 1,000)")]
    errors: list[LineError]


class Event(Body):
    source: EvidenceSource
    occurred_on: date


class StaffEvent(Body):
    id: uuid.UUID
    source: EvidenceSource
    occurred_on: date
    reference: Annotated[
        str, msgspec.Meta(description="the source's own id of the event (for a QR charge, the charge)")
    ]


class Confirmation(Body):
    confirmed_on: date
    eligible_until: date
    evidence: Annotated[list[Event], msgspec.Meta(description="the records that showed you were alive and well")]


class StaffConfirmation(Body):
    pass_id: uuid.UUID
    confirmed_on: date
    previous_until: date | None
    eligible_until: date
    evidence: Annotated[list[StaffEvent], msgspec.Meta(description="the evidence rows that satisfied the rule")]


class OwnEvidence(Body):
    masked_national_id: str
    eligible_until: date | None
    confirmations: Annotated[
        list[Confirmation], msgspec.Meta(description="certifications made from your records, newest first")
    ]


class PersonEvidence(Body):
    person_id: uuid.UUID
    masked_national_id: str
    vital_status: Literal["alive", "deceased"]
    eligible_until: date | None
    confirmations: list[StaffConfirmation]
    events: Annotated[list[StaffEvent], msgspec.Meta(description="the latest 200 events recorded, newest first")]


class EvidenceRule(Body):
    sources: list[EvidenceSource]
    within_days: int
    min_events: int
    min_sources: int


class SilentPass(Body):
    id: uuid.UUID
    run_on: date
    due_by: Annotated[date, msgspec.Meta(description="persons certified until this day, or never, are judged")]
    rule: EvidenceRule
    state: Literal["running", "completed"]
    scanned: int
    confirmed: int
    requested_by: str
    started_at: datetime
    completed_at: datetime | None
