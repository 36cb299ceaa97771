from __future__ import annotations

import uuid
from datetime import date, datetime
from typing import Annotated, Literal

import msgspec

from app.http.schemas import Body
from payments.disbursement.rules import PERIOD_PATTERN

Period = Annotated[str, msgspec.Meta(pattern=PERIOD_PATTERN, examples=["2026-12"], description="YYYY-MM")]


class DisbursementRequest(Body):
    period: Period


class RunProblem(Body):
    message: Annotated[str, msgspec.Meta(description="What stopped the run, for administrators")]
    at: datetime
    retrying: Annotated[bool, msgspec.Meta(description="The worker tries again by itself; false: it gave up")]


class Disbursement(Body):
    id: uuid.UUID
    period: str
    pay_date: date
    state: Literal["running", "completed"]
    entitlements: int
    processed: int
    requested_by: str
    started_at: datetime
    completed_at: datetime | None
    paid_count: int
    paid_fen: int
    withheld_count: int
    withheld_fen: int
    back_pay_count: int
    back_pay_fen: int
    returned_count: int
    returned_fen: int
    problem: RunProblem | None = None


class LineProblem(Body):
    line: int
    reason: str


class BankReturnReport(Body):
    confirmed: int
    returned: int
    unchanged: int
    errors: list[LineProblem]


class Reason(Body):
    code: str
    text: str


class Payment(Body):
    id: uuid.UUID
    period: str
    kind: Literal["monthly", "back_pay"]
    status: Literal["paid", "withheld"]
    amount_fen: int
    withheld_reason: Reason | None
    covers: list[str] | None
    bank_account_masked: str | None
    bank_status: Literal["pending", "confirmed", "returned"] | None
    bank_return_reason: str | None
    to_recover_fen: int
    created_at: datetime


class PaymentPage(Body):
    items: list[Payment]
    next_cursor: str | None


class StatementMonth(Body):
    month: str
    paid_fen: int
    withheld_fen: int
    withheld_reasons: list[Reason]
    back_pay_fen: int
    back_pay_covers: list[str]
    returned_fen: int
    return_reasons: list[str]
    to_recover_fen: int


class Statement(Body):
    year: int
    months: list[StatementMonth]
    paid_fen: int
    withheld_fen: int
    back_pay_fen: int
    returned_fen: int
    to_recover_fen: int


class ReturnedPayment(Body):
    id: uuid.UUID
    period: str
    kind: Literal["monthly", "back_pay"]
    amount_fen: int
    bank_account_masked: str | None
    bank_return_reason: str | None
    bank_updated_at: datetime | None
    national_id_masked: str
    name: str


class ReturnedPage(Body):
    items: list[ReturnedPayment]
    next_cursor: str | None
