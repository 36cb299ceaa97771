from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any, Literal

import msgspec

from app.http.schemas import Body, StaffReason

AlertKind = Literal["shared_account", "shared_face", "shared_device", "after_death", "no_life_evidence"]
AlertState = Literal["open", "closed"]


class AlertPerson(Body):
    person_id: uuid.UUID
    name: str
    masked_national_id: str
    region: str
    vital_status: Literal["alive", "deceased"]


class Alert(Body):
    id: uuid.UUID
    kind: AlertKind
    state: AlertState
    persons: list[AlertPerson]
    evidence: Annotated[
        dict[str, Any], msgspec.Meta(description="what the scan found; its fields per kind: docs/supervision.md")
    ]
    first_seen_at: datetime
    last_seen_at: datetime
    reopened: Annotated[int, msgspec.Meta(description="times a closed alert opened again on a new finding")]
    closed_at: datetime | None
    closed_by: str | None
    close_reason: str | None


class AlertList(Body):
    items: list[Alert]
    next_cursor: str | None


class AlertClosing(Body):
    reason: StaffReason
