from __future__ import annotations

import uuid
from datetime import date
from typing import Annotated, Literal

import msgspec

from app.http.cards.schemas import CardStatus
from app.http.schemas import Body


class DeathReversalRequest(Body):
    national_id: Annotated[str, msgspec.Meta(min_length=1, max_length=32, description="the person's ID number")]
    reason: Annotated[
        str, msgspec.Meta(min_length=3, max_length=1000, pattern=r"\S", description="why; kept in the audit log")
    ]


class PersonRestored(Body):
    person_id: uuid.UUID
    masked_national_id: str
    vital_status: Literal["alive", "deceased"]
    card_status: CardStatus | None
    entitlement_status: Literal["active", "stopped"] | None
    overpayments_cancelled: int
    months_restored: Annotated[
        list[date], msgspec.Meta(description="months withheld while reported dead: the next run back-pays them")
    ]
