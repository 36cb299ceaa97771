from __future__ import annotations

import uuid
from datetime import date, datetime
from typing import Annotated, Literal

import msgspec

from app.http.schemas import Body, StaffReason
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
    state: Annotated[
        Literal["running", "completed", "approved", "released", "reconciled"],
        msgspec.Meta(
            description="running -> completed -> approved (by a second administrator) -> released (the bank "
            "file may be read) -> reconciled (the bank answered for every payment)"
        ),
    ]
    entitlements: int
    processed: int
    requested_by: str
    started_at: datetime
    completed_at: datetime | None
    approved_by: str | None
    approved_at: datetime | None
    released_by: str | None
    released_at: datetime | None
    reconciled_at: datetime | None
    paid_count: int
    paid_fen: int
    withheld_count: int
    withheld_fen: int
    back_pay_count: int
    back_pay_fen: int
    repay_count: Annotated[int, msgspec.Meta(description="records paying returned payments again")]
    repay_fen: int
    unanswered_count: Annotated[int, msgspec.Meta(description="paid records the bank has not answered for yet")]
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
    reconciled_runs: Annotated[list[uuid.UUID], msgspec.Meta(description="runs the bank has now answered for whole")]


class Reason(Body):
    code: str
    text: str


PaymentKind = Annotated[
    Literal["monthly", "back_pay", "repay"],
    msgspec.Meta(description="repay: pays again payments the bank returned, once the account was corrected"),
]
RepaidBy = Annotated[uuid.UUID | None, msgspec.Meta(description="a returned payment: the record that paid it again")]


class Payment(Body):
    id: uuid.UUID
    period: str
    kind: PaymentKind
    status: Literal["paid", "withheld"]
    amount_fen: int
    withheld_reason: Reason | None
    covers: Annotated[list[str] | None, msgspec.Meta(description="back_pay, repay: the months it pays")]
    bank_account_masked: str | None
    bank_status: Literal["pending", "confirmed", "returned"] | None
    bank_return_reason: str | None
    repaid_by: RepaidBy
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
    repaid_fen: int
    repaid_covers: list[str]
    returned_fen: int
    return_reasons: list[str]
    to_recover_fen: int


class Statement(Body):
    year: int
    months: list[StatementMonth]
    paid_fen: int
    withheld_fen: int
    back_pay_fen: int
    repaid_fen: int
    returned_fen: int
    to_recover_fen: int


class ReturnedPayment(Body):
    id: uuid.UUID
    period: str
    kind: PaymentKind
    amount_fen: int
    bank_account_masked: str | None
    bank_return_reason: str | None
    bank_updated_at: datetime | None
    repaid_by: RepaidBy
    national_id_masked: str
    name: str


class ReturnedPage(Body):
    items: list[ReturnedPayment]
    next_cursor: str | None


class BankAccountRequest(Body):
    national_id: Annotated[str, msgspec.Meta(min_length=1, max_length=32, description="the person's ID number")]
    account: Annotated[
        str,
        msgspec.Meta(
            min_length=12,
            max_length=40,
            examples=["6222020200112233445"],
            description="12 to 30 digits (spaces ignored); the one on file confirms it (reopened)",
        ),
    ]
    reason: StaffReason


class BankAccountSet(Body):
    person_id: uuid.UUID
    national_id_masked: str
    bank_account_masked: str
    changed: Annotated[bool, msgspec.Meta(description="a new number; false: the number on file, confirmed")]
    returned_awaiting: Annotated[
        int, msgspec.Meta(description="returned payments the next run pays again if it pays the person")
    ]
    returned_awaiting_fen: int
