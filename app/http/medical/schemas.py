from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Literal

import msgspec

from app.http.schemas import Body
from payments.ledger.rules import MAX_AMOUNT_FEN

AmountFen = Annotated[
    int, msgspec.Meta(gt=0, le=MAX_AMOUNT_FEN, description="in fen (1/100 yuan), at most 100,000 yuan")
]


class ChargeRequest(Body):
    qr_token: Annotated[
        str,
        msgspec.Meta(
            min_length=1,
            max_length=256,
            description="the scanned QR code",
            examples=["AQGd3xkq8m0SkX7hQ2Vr1g.Xb3w0kqzJ4yY0a6o9mD1sw"],
        ),
    ]
    amount_fen: AmountFen
    description: Annotated[
        str,
        msgspec.Meta(
            min_length=1,
            max_length=200,
            pattern=r"\S",
            description="what is paid for, on the receipt",
            examples=["Prescription 2026-0307-12"],
        ),
    ]


class RefundRequest(Body):
    amount_fen: AmountFen


class ChargeReceipt(Body):
    """What the terminal prints: never the cardholder's balance."""

    charge_id: uuid.UUID
    amount_fen: int
    description: str
    merchant: str
    masked_card_number: str
    masked_national_id: str
    created_at: datetime


class RefundReceipt(Body):
    refund_id: uuid.UUID
    charge_id: uuid.UUID
    amount_fen: int
    refundable_fen: Annotated[int, msgspec.Meta(description="what is left to refund of the charge")]
    description: str
    merchant: str
    masked_card_number: str
    masked_national_id: str
    created_at: datetime


class AccountEntry(Body):
    id: uuid.UUID
    kind: Literal["allocation", "charge", "refund"]
    amount_fen: int  # + money in (allocations, refunds), - money out (charges)
    balance_after_fen: int
    merchant: str | None
    description: str | None
    charge_id: uuid.UUID | None  # the charge a charge or refund entry belongs to
    year: int | None  # the year an allocation is for
    created_at: datetime


class MedicalAccount(Body):
    balance_fen: int
    entries: list[AccountEntry]
    next_cursor: str | None
