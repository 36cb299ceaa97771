"""Assisted certification by a relative: linking, the elder's separate consent, ending it, and the
relative's phone running the elder's challenge.

A relative (a cardholder whose account is linked to their own person) asks to link an elder by the
elder's national ID. Nothing follows until the elder consents, separately from the relative: by a
code sent to the elder's registered phone that the elder hands to the relative, by approving from
their own signed-in app, or before an operator who records it with a reason. That consent covers
face processing too (the code's text says so; certification needs the biometric consent). The elder,
the relative or an operator ends the link at any time. While it is active, the relative's phone
starts the elder's challenge and uploads the video of the elder: the check is the elder's, matched
against the elder's reference by the same worker, and records who helped, from which device and
session. A relative or a device that helped more elders in a window than a family has sends its
checks to a person (`assisted_limit`). Every step is audited and the elder is told.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import asyncpg

from auth import codes
from certification import repository as certification_repo
from certification.assisted import repository as repo
from certification.assisted import rules
from certification.service import Assistance, CertificationService, CheckView, NewChallenge, UploadMedia
from core import national_id as nid
from core.errors import BadRequest, Conflict, Forbidden, NotFound
from core.justification import stated
from core.principal import Principal
from infra import audit
from infra.config import Settings
from infra.crypto import lookup_hash
from infra.db import UnitOfWork, unit_of_work
from notifications.outbox import publish_event
from notifications.sms import SmsProvider

LINK_NOT_FOUND = NotFound("relative_link_not_found")
LINK_CLOSED = Conflict("relative_link_closed")


@dataclass(frozen=True)
class AskedLink:
    """A link asked for, and how long the code sent to the elder's phone lives (None: no code sent,
    the link is already active)."""

    link: repo.Link
    code_expires_in: int | None


def limits_of(settings: Settings) -> rules.Limits:
    return rules.Limits(
        max_helpers=settings.assisted_max_helpers,
        max_elders=settings.assisted_max_elders,
        review_elders=settings.assisted_review_elders,
        window_days=settings.assisted_window_days,
    )


class AssistedService:
    def __init__(
        self, pool: asyncpg.Pool, settings: Settings, sms: SmsProvider, certification: CertificationService
    ) -> None:
        self._pool = pool
        self._settings = settings
        self._sms = sms
        self._certification = certification
        self._limits = limits_of(settings)

    # -- the relative ----------------------------------------------------------------------------
    async def ask(self, principal: Principal, national_id: str, relationship: str) -> AskedLink:
        """Ask to link the elder of `national_id`; a code for their consent goes to their phone. Asking
        again while it waits sends a new code (the one before it ends); an active link is returned."""
        helper_id = principal.linked_person
        async with unit_of_work(self._pool) as uow:
            elder = await self._person(uow, national_id)
            await repo.lock_helper(uow, helper_id)
            existing = await repo.open_link(uow, elder["id"], helper_id)
            if existing is not None and existing["state"] == "active":
                return AskedLink(existing, None)
            if existing is None:
                refusal = rules.link_refusal(
                    await repo.open_links_of_helper(uow, helper_id),
                    await repo.active_helpers_of(uow, elder["id"]),
                    self._limits,
                    same_person=elder["id"] == helper_id,
                    elder_alive=elder["vital_status"] == "alive",
                )
                if refusal is not None:
                    raise self._refusal(refusal)
                # The relative is another person, on another shard: no foreign key keeps the link's
                # helper_id to a person, this read in the link's transaction does (persons are never deleted).
                helper = await repo.person_or_none(uow, helper_id)
                if helper is None:
                    raise Forbidden("identity_not_linked")
                link_id = await repo.insert_link(uow, elder["id"], helper_id, relationship, principal.actor)
                await audit.record(
                    uow,
                    principal.actor,
                    "relative.requested",
                    f"person:{elder['id']}",
                    {"link": str(link_id), "helper": str(helper_id), "relationship": relationship},
                )
                await publish_event(
                    uow,
                    "relative.requested",
                    elder["id"],
                    {"relative_name": helper["name"]},
                    f"relative:{link_id}:requested",
                )
            else:
                link_id = existing["id"]
            await repo.supersede_other_pending(uow, elder["id"], link_id)
        # Sent after the link is committed, in the codes' own transaction (their limits hold per phone and
        # per client); refused (too many codes), the request stays and asking again sends one.
        sent_at = datetime.now(UTC)
        helper = await repo.person(self._pool, helper_id)
        lifetime = await codes.issue(
            self._pool,
            self._settings,
            self._sms,
            elder["phone"],
            codes.RELATIVE_CONSENT,
            elder["locale"],
            {"relative_name": helper["name"]},
        )
        async with unit_of_work(self._pool) as uow:
            await repo.code_sent(uow, elder["id"], link_id, sent_at)
            link = await repo.link(uow, link_id, person_id=elder["id"])
        assert link is not None
        return AskedLink(link, lifetime)

    async def consent_by_code(self, principal: Principal, link_id: uuid.UUID, code: str) -> repo.Link:
        """The relative types in the code the elder was sent: the elder's consent, to the link and to face
        processing for certification (the code's text says both)."""
        helper_id = principal.linked_person
        async with unit_of_work(self._pool) as uow:
            link = await self._link(uow, link_id, lambda row: row["helper_id"] == helper_id)
            if link["state"] == "active":
                return link
            await self._consentable(uow, link)
            elder = await repo.person(uow, link["person_id"])
            await codes.redeem(
                uow, self._settings, elder["phone"], codes.RELATIVE_CONSENT, code, issued_after=link["requested_at"]
            )
            return await self._consent(uow, link, "sms_code", principal.actor, None, None)

    async def end_as_relative(self, principal: Principal, link_id: uuid.UUID) -> repo.Link:
        helper_id = principal.linked_person
        async with unit_of_work(self._pool) as uow:
            link = await self._link(uow, link_id, lambda row: row["helper_id"] == helper_id)
            return await self._end(uow, link, "ended_by_relative", principal.actor, {})

    async def elders(self, principal: Principal) -> list[repo.Link]:
        return await repo.links_as_helper(self._pool, principal.linked_person)

    # -- the relative's phone certifying the elder -------------------------------------------------
    async def new_challenge(self, principal: Principal, link_id: uuid.UUID) -> NewChallenge:
        return await self._certification.new_challenge(principal, await self._assistance(principal, link_id))

    async def submit_upload(
        self, principal: Principal, link_id: uuid.UUID, challenge_id: uuid.UUID, media: UploadMedia
    ) -> uuid.UUID:
        assistance = await self._assistance(principal, link_id)
        return await self._certification.submit_upload(principal, challenge_id, media, assistance)

    async def submit_stored(
        self, principal: Principal, link_id: uuid.UUID, challenge_id: uuid.UUID, key: str
    ) -> uuid.UUID:
        assistance = await self._assistance(principal, link_id)
        return await self._certification.submit_stored(principal, challenge_id, key, assistance)

    async def check(self, principal: Principal, check_id: uuid.UUID) -> CheckView:
        """A check this relative submitted for an elder, as the elder sees it."""
        person_id = await repo.assisted_check(self._pool, check_id, principal.linked_person)
        if person_id is None:
            raise NotFound("check_not_found")
        return await self._certification.check_of(person_id, check_id)

    async def _assistance(self, principal: Principal, link_id: uuid.UUID) -> Assistance:
        helper_id = principal.linked_person
        if principal.device_id is None:
            raise Forbidden("device_required")  # the limits count devices: a support token has none
        link = await repo.link(self._pool, link_id)
        if link is None or link["helper_id"] != helper_id:
            raise LINK_NOT_FOUND
        if link["state"] != "active":
            raise LINK_CLOSED
        elder_id: uuid.UUID = link["person_id"]
        device_id: str = principal.device_id
        limits = self._limits

        async def admit(uow: UnitOfWork) -> tuple[str, ...]:
            # Held (FOR SHARE) until the check is created: an end of the link waits for it, or refuses it.
            if await repo.lock_link_shared(uow, elder_id, link_id) != "active":
                raise LINK_CLOSED
            if await certification_repo.lock_person(uow, elder_id) != "alive":
                raise Conflict("person_deceased")  # a death record wins over any help
            await repo.lock_helper(uow, helper_id)
            await repo.lock_device(uow, device_id)
            since = datetime.now(UTC) - timedelta(days=limits.window_days)
            by_helper = await repo.elders_helped_by(uow, helper_id, since) | {elder_id}
            by_device = await repo.elders_helped_from(uow, device_id, since) | {elder_id}
            return rules.holds(len(by_helper), len(by_device), limits)

        return Assistance(elder_id, helper_id, link_id, device_id, principal.session_id, admit)

    # -- the elder ---------------------------------------------------------------------------------
    async def helpers(self, principal: Principal) -> list[repo.Link]:
        return await repo.links_as_elder(self._pool, principal.linked_person)

    async def approve(self, principal: Principal, link_id: uuid.UUID) -> repo.Link:
        """The elder approves from their own app: consent to the link and to face processing."""
        elder_id = principal.linked_person
        async with unit_of_work(self._pool) as uow:
            link = await self._link(uow, link_id, lambda row: row["person_id"] == elder_id, elder_id)
            if link["state"] == "active":
                return link
            await self._consentable(uow, link)
            return await self._consent(uow, link, "elder_app", principal.actor, principal.subject_id, None)

    async def revoke_as_elder(self, principal: Principal, link_id: uuid.UUID) -> repo.Link:
        """The elder ends a link (or declines a request) at any time."""
        elder_id = principal.linked_person
        async with unit_of_work(self._pool) as uow:
            link = await self._link(uow, link_id, lambda row: row["person_id"] == elder_id, elder_id)
            return await self._end(uow, link, "revoked_by_elder", principal.actor, {})

    # -- operators ---------------------------------------------------------------------------------
    async def consent_in_person(
        self, operator: Principal, elder_national_id: str, helper_national_id: str, reason: str
    ) -> repo.Link:
        """An operator saw the elder, who consents to the relative's request (and to face processing)."""
        reason = stated(reason)
        async with unit_of_work(self._pool) as uow:
            link = await self._between(uow, elder_national_id, helper_national_id)
            if link["state"] == "active":
                return link
            await self._consentable(uow, link)
            return await self._consent(uow, link, "operator", operator.actor, None, reason, operator.named)

    async def revoke_in_person(
        self, operator: Principal, elder_national_id: str, helper_national_id: str, reason: str
    ) -> repo.Link:
        reason = stated(reason)
        async with unit_of_work(self._pool) as uow:
            link = await self._between(uow, elder_national_id, helper_national_id)
            return await self._end(
                uow, link, "revoked_by_operator", operator.actor, {"reason": reason, **operator.named}
            )

    # -- shared ------------------------------------------------------------------------------------
    async def _person(self, db: UnitOfWork, national_id: str) -> asyncpg.Record:
        national_id = nid.normalise(national_id)
        if nid.validate(national_id) is not None:
            raise BadRequest("national_id_invalid")
        person = await repo.person_by_national_id(db, lookup_hash(self._settings.lookup_hash_key, national_id))
        if person is None:
            raise NotFound("person_not_found")
        return person

    async def _between(self, uow: UnitOfWork, elder_national_id: str, helper_national_id: str) -> repo.Link:
        elder = await self._person(uow, elder_national_id)
        helper = await self._person(uow, helper_national_id)
        link = await repo.link_between(uow, elder["id"], helper["id"])
        if link is None:
            raise LINK_NOT_FOUND
        return link

    async def _link(
        self,
        uow: UnitOfWork,
        link_id: uuid.UUID,
        mine: Callable[[repo.Link], bool],
        elder_id: uuid.UUID | None = None,
    ) -> repo.Link:
        """The caller's link, locked; `mine` says whether a row is the caller's (as relative or elder);
        `elder_id` the elder when the caller is the elder."""
        link = await repo.link(uow, link_id, person_id=elder_id, lock=True)
        if link is None or not mine(link):
            raise LINK_NOT_FOUND
        return link

    def _refusal(self, code: str) -> Exception:
        if code == "relative_elders_limit":
            return Conflict(code, most=self._limits.max_elders)
        if code == "relative_helpers_limit":
            return Conflict(code, most=self._limits.max_helpers)
        if code == "relative_self":
            return BadRequest(code)
        return Conflict(code)

    async def _consentable(self, uow: UnitOfWork, link: repo.Link) -> None:
        if await certification_repo.lock_person(uow, link["person_id"]) != "alive":
            raise Conflict("person_deceased")
        refusal = rules.consent_refusal(
            link["state"], await repo.active_helpers_of(uow, link["person_id"]), self._limits
        )
        if refusal is not None:
            raise self._refusal(refusal)

    async def _consent(
        self,
        uow: UnitOfWork,
        link: repo.Link,
        method: str,
        actor: str,
        account_id: uuid.UUID | None,
        reason: str | None,
        named: dict[str, str] | None = None,
    ) -> repo.Link:
        """The link becomes active; the elder's consent to face processing is recorded with it (kept if
        they had given it already), audited and told."""
        elder_id: uuid.UUID = link["person_id"]
        await repo.consent(uow, elder_id, link["id"], method, actor, reason)
        await certification_repo.grant_consent(
            uow,
            elder_id,
            account_id,
            certification_repo.CONSENT_TEXT_VERSION,
            None if account_id is not None else f"{actor} ({method})",
        )
        details: dict[str, str] = {"link": str(link["id"]), "helper": str(link["helper_id"]), "method": method}
        if reason is not None:
            details["reason"] = reason
        await audit.record(uow, actor, "relative.consented", f"person:{elder_id}", details | (named or {}))
        await audit.record(uow, actor, "consent.biometric_granted", f"person:{elder_id}", {"via": method})
        await publish_event(
            uow,
            "relative.consented",
            elder_id,
            {"relative_name": link["helper_name"]},
            f"relative:{link['id']}:consented",
        )
        shown = await repo.link(uow, link["id"], person_id=link["person_id"])
        assert shown is not None
        return shown

    async def _end(
        self, uow: UnitOfWork, link: repo.Link, reason: str, actor: str, details: dict[str, str]
    ) -> repo.Link:
        """End an open link (ending it again returns it as it is); audited, and the elder told."""
        if link["state"] not in rules.OPEN:
            return link
        elder_id: uuid.UUID = link["person_id"]
        await repo.end(uow, elder_id, link["id"], reason, actor)
        await audit.record(
            uow, actor, "relative.ended", f"person:{elder_id}", {"link": str(link["id"]), "why": reason, **details}
        )
        await publish_event(
            uow, "relative.ended", elder_id, {"relative_name": link["helper_name"]}, f"relative:{link['id']}:ended"
        )
        shown = await repo.link(uow, link["id"], person_id=link["person_id"])
        assert shown is not None
        return shown
