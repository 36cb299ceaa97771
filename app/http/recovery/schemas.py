from __future__ import annotations

import uuid
from datetime import date, datetime
from typing import Annotated, Literal

import msgspec

from app.http.schemas import Body, StaffReason

CaseState = Literal["opened", "recall_requested", "recovered_partly", "recovered", "written_off", "cancelled"]
Fen = Annotated[int, msgspec.Meta(description="integer fen (1/100 yuan)")]


class RecoveryCase(Body):
    id: uuid.UUID
    person_id: uuid.UUID
    name: str
    masked_national_id: str
    death_record_id: uuid.UUID
    date_of_death: date | None
    state: CaseState
    owed_fen: Annotated[int, msgspec.Meta(description="paid after the month of death and not returned by the bank")]
    recovered_fen: Fen
    written_off_fen: Fen
    outstanding_fen: Fen
    recall_waiting: Annotated[bool, msgspec.Meta(description="a recall is with the bank, not answered yet")]
    write_off_asked_by: str | None
    write_off_reason: str | None
    approved_by: str | None
    opened_at: datetime
    closed_at: datetime | None


class Recall(Body):
    id: uuid.UUID
    amount_fen: Fen
    requested_by: str
    requested_at: datetime
    recovered_fen: Fen | None
    bank_reason: str | None
    answered_at: datetime | None
    cancelled_at: datetime | None


class RecoveryCaseDetail(Body):
    case: RecoveryCase
    recalls: list[Recall]


class RecoveryCasePage(Body):
    items: list[RecoveryCase]
    next_cursor: str | None


class WriteOffRequest(Body):
    reason: StaffReason


class LineRefusal(Body):
    line: int
    reason: str


class RecallAnswerReport(Body):
    recovered: Annotated[int, msgspec.Meta(description="recalls answered with everything asked")]
    partly: Annotated[int, msgspec.Meta(description="recalls answered with part of it")]
    nothing: Annotated[int, msgspec.Meta(description="recalls the bank could recover nothing of")]
    unchanged: Annotated[int, msgspec.Meta(description="answers already imported (a file sent again)")]
    recovered_fen: Fen
    errors: Annotated[list[LineRefusal], msgspec.Meta(description="lines not taken; the others landed")]
