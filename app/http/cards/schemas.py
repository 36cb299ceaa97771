from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Literal

import msgspec

from app.http.schemas import Body

CardStatus = Literal["pending_activation", "active", "suspended", "reported_lost", "cancelled"]


class Card(Body):
    card_number: str
    status: CardStatus
    masked_national_id: str
    name: str
    issued_on: date
    activated_at: datetime | None


class Activation(Body):
    national_id: Annotated[
        str,
        msgspec.Meta(
            min_length=1, max_length=32, description="the holder's ID number", examples=["11010119450307231X"]
        ),
    ]


class Recovery(Body):
    code: Annotated[
        str, msgspec.Meta(pattern=r"^[0-9]{6}$", description="the 6-digit code from POST /v1/card/recovery/code")
    ]


class RecoveryApprovalRequest(Body):
    national_id: Annotated[str, msgspec.Meta(min_length=1, max_length=32, description="the holder's ID number")]
    reason: Annotated[
        str,
        msgspec.Meta(
            min_length=3,
            max_length=1000,
            pattern=r"\S",
            description="how the person was checked; kept in the audit log",
        ),
    ]


class RecoveryApproved(Body):
    card_number: str
    card_status: CardStatus
    masked_national_id: str
    approved_at: datetime


class QrCode(Body):
    token: str
    expires_at: datetime
    svg: str | None


class QrVerification(Body):
    token: Annotated[str, msgspec.Meta(min_length=1, max_length=256)]


class QrHolder(Body):
    card_number: str
    card_status: CardStatus
    name: str
    masked_national_id: str
