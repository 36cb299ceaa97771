"""The operators' review queue: list, claim, look (audited), decide."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg

from certification.metrics import count_decision
from certification.service import settle
from core.errors import Conflict, NotFound
from core.justification import stated
from core.paging import after, page
from core.principal import Principal
from infra import audit
from infra.config import Settings
from infra.db import unit_of_work
from infra.storage import ObjectStorage
from review import repository as repo

# decision -> (the check's status, the reason code the pensioner is shown)
DECISIONS: dict[str, tuple[str, str | None]] = {
    "approve": ("passed", None),
    "reject": ("failed", "review_rejected"),
    "home_visit": ("home_visit", "home_visit"),
}


# How many waiting checks claim_next reads at a time: enough that a few operators claiming at once
# still find one free in the first read.
CLAIM_CANDIDATES = 10


@dataclass(frozen=True)
class ReviewPage:
    rows: list[asyncpg.Record]
    next_cursor: str | None


@dataclass(frozen=True)
class ReviewView:
    """A check for an operator: its row, and its images only where they may be shown."""

    row: Mapping[str, Any]
    frame_urls: list[str]
    reference_url: str | None
    urls_expire_in: int
    media_purged: bool
    images_withheld: bool


class ReviewService:
    def __init__(self, pool: asyncpg.Pool, storage: ObjectStorage, settings: Settings) -> None:
        self._pool = pool
        self._storage = storage
        self._settings = settings

    async def queue(
        self,
        status: str,
        cursor: str | None,
        limit: int,
        *,
        reason: str | None = None,
        region: str | None = None,
        held_by: uuid.UUID | None = None,
    ) -> ReviewPage:
        rows = await repo.queue(
            self._pool,
            status,
            reason,
            region,
            held_by,
            after(cursor, datetime, uuid.UUID),
            limit + 1,
            self._settings.review_sla_h,
        )
        shown, next_cursor = page(rows, limit, lambda row: (row["submitted_at"], row["id"]))
        return ReviewPage(shown, next_cursor)

    async def queue_summary(
        self, principal: Principal, status: str, *, reason: str | None = None, region: str | None = None
    ) -> asyncpg.Record:
        """What the team faces under these filters: waiting, the oldest, late (past REVIEW_SLA_H), held by `principal`."""
        return await repo.queue_summary(
            self._pool, status, reason, region, principal.subject_id, self._settings.review_sla_h
        )

    async def _person(self, check_id: uuid.UUID) -> uuid.UUID:
        """The person of a check the operator names by its id (its row is on their shard)."""
        person_id = await repo.person_of_check(self._pool, check_id)
        if person_id is None:
            raise NotFound("check_not_found")
        return person_id

    async def claim(self, principal: Principal, check_id: uuid.UUID) -> datetime:
        person_id = await self._person(check_id)
        async with unit_of_work(self._pool) as uow:
            until = await repo.claim(uow, person_id, check_id, principal.subject_id, self._settings.review_claim_s)
            if until is None:
                row = await repo.check_for_review(uow, person_id, check_id)
                if row is None:
                    raise NotFound("check_not_found")
                if row["status"] not in repo.REVIEWABLE:
                    raise Conflict("check_not_reviewable")
                raise Conflict("check_claimed", operator=row["claimed_by_name"] or "")
            await audit.record(uow, principal.actor, "review.claimed", f"check:{check_id}", principal.named)
        return until

    async def claim_next(self, principal: Principal, reason: str | None, region: str | None) -> uuid.UUID | None:
        """Claim the oldest waiting check that nobody holds (None when there is none); two operators
        asking at once get different checks. The operator's other claims on waiting checks are let
        go: one moves on to the next, not onto a pile.

        The candidates are read without a lock, oldest first, and claimed one by one on their
        person's shard; a candidate another operator took meanwhile is passed over for the next."""
        async with unit_of_work(self._pool) as uow:
            await repo.release_claims(uow, principal.subject_id)
            passed: tuple[datetime, uuid.UUID] | None = None  # the last candidate passed over
            while candidates := await repo.claim_candidates(uow, reason, region, passed, CLAIM_CANDIDATES):
                for candidate in candidates:
                    check_id: uuid.UUID = candidate["id"]
                    if await repo.claim_candidate(
                        uow, candidate["person_id"], check_id, principal.subject_id, self._settings.review_claim_s
                    ):
                        await audit.record(uow, principal.actor, "review.claimed", f"check:{check_id}", principal.named)
                        return check_id
                passed = (candidates[-1]["submitted_at"], candidates[-1]["id"])
        return None

    async def filter_choices(self) -> asyncpg.Record:
        return await repo.filter_choices(self._pool)

    async def view(self, principal: Principal, check_id: uuid.UUID, *, reason: str | None = None) -> ReviewView:
        """The check: scores, reasons and actions. Its images (short-lived links to the frames and the
        reference photo) come by default only to the operator holding its claim while it is under
        review; to anyone else only when asked for with a reason (`reason`), and never while someone
        must claim it instead. What is shown is audited in the same transaction as the read, the
        reason with it, so no look goes unrecorded."""
        if reason is not None:
            reason = stated(reason)
        ttl = self._settings.presigned_url_ttl_s
        person_id = await self._person(check_id)
        async with unit_of_work(self._pool) as uow:
            row = await repo.check_for_review(uow, person_id, check_id)
            if row is None:
                raise NotFound("check_not_found")
            under_review = row["status"] in repo.REVIEWABLE
            holding = under_review and row["claimed_by"] == principal.subject_id and row["claim_live"]
            if under_review and not holding:
                raise Conflict("claim_required")
            with_images = holding or reason is not None
            purged = row["media_purged_at"] is not None
            frame_keys = list(row["review_frame_keys"]) if with_images and not purged else []
            reference_key = row["reference_photo_key"] if with_images else None
            details: dict[str, object] = {"person": str(row["person_id"]), **principal.named}
            if with_images:
                details |= {"frames": len(frame_keys), "reference": reference_key is not None}
            if reason is not None:
                details["reason"] = reason
            action = "biometric.viewed" if with_images else "biometric.scores_viewed"
            await audit.record(uow, principal.actor, action, f"check:{check_id}", details)
        # Signing is local (no request to S3), but botocore's signer is blocking code: one hop off the loop.
        frame_urls, reference_url = await asyncio.to_thread(
            lambda: (
                [self._storage.presigned_get(key, ttl) for key in frame_keys],
                self._storage.presigned_get(reference_key, ttl) if reference_key else None,
            )
        )
        return ReviewView(
            row,
            frame_urls=frame_urls,
            reference_url=reference_url,
            urls_expire_in=ttl,
            media_purged=purged,
            images_withheld=not with_images,
        )

    async def decide(self, principal: Principal, check_id: uuid.UUID, decision: str, reason: str) -> str:
        reason = stated(reason)
        status, shown_reason = DECISIONS[decision]
        person_id = await self._person(check_id)
        async with unit_of_work(self._pool) as uow:
            row = await repo.check_for_review(uow, person_id, check_id, lock=True)
            if row is None:
                raise NotFound("check_not_found")
            if row["status"] not in repo.REVIEWABLE:
                raise Conflict("check_not_reviewable")
            if row["claimed_by"] != principal.subject_id or not row["claim_live"]:
                raise Conflict("claim_required")
            reasons = [*row["reasons"], shown_reason] if shown_reason else list(row["reasons"])
            await repo.record_decision(uow, person_id, check_id, status, decision, reason, reasons, principal.actor)
            await settle(uow, row["person_id"], check_id, status, reasons, principal.actor)
            await audit.record(
                uow,
                principal.actor,
                "review.decided",
                f"check:{check_id}",
                {"decision": decision, "reason": reason, **principal.named},
            )
        count_decision(status, reasons, "reviewer")
        return status
