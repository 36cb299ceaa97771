"""Assisted certification over HTTP: links between a relative and an elder, as each side and
operators see them."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from datetime import datetime
from typing import Annotated, Any, Literal

import msgspec

from app.http.schemas import Body, StaffReason, to_schema

Relationship = Literal["child", "spouse", "grandchild", "sibling", "other"]
LinkState = Literal["pending", "active", "superseded", "ended"]
ConsentMethod = Literal["sms_code", "elder_app", "operator"]
EndReason = Literal["revoked_by_elder", "ended_by_relative", "revoked_by_operator"]
NationalId = Annotated[str, msgspec.Meta(min_length=15, max_length=18)]


class RelativeLinkBody(Body):
    national_id: Annotated[NationalId, msgspec.Meta(description="the elder's national ID number")]
    relationship: Annotated[
        Relationship, msgspec.Meta(description="what you are to the elder (child: their son or daughter)")
    ]


class ConsentCode(Body):
    code: Annotated[
        str, msgspec.Meta(pattern=r"^[0-9]{6}$", description="the code sent to the elder's phone, which they gave you")
    ]


class RelativeLink(Body):
    id: uuid.UUID
    relationship: Relationship
    state: LinkState
    requested_at: datetime
    consented_at: datetime | None
    consent_method: ConsentMethod | None
    ended_at: datetime | None
    end_reason: EndReason | None
    # The elder is named only once they consented: a national ID typed in does not reveal a name.
    elder_name: str | None
    elder_masked_national_id: str
    helper_name: str
    helper_masked_national_id: str
    last_assisted_at: Annotated[datetime | None, msgspec.Meta(description="when the relative last filmed the elder")]


class RelativeLinkRequested(Body):
    link: RelativeLink
    code_expires_in: Annotated[
        int | None, msgspec.Meta(description="seconds the code sent to the elder's phone lives; null: already linked")
    ]


class RelativeLinkList(Body):  # not "Relatives" with a field "relatives": a generated client breaks on that
    links: list[RelativeLink]


class InPersonLinkDecision(Body):
    elder_national_id: NationalId
    helper_national_id: Annotated[NationalId, msgspec.Meta(description="the relative's national ID number")]
    reason: StaffReason


def link_of(row: Mapping[str, Any]) -> RelativeLink:
    return to_schema(RelativeLink, row, elder_name=row["elder_name"] if row["consented_at"] is not None else None)
