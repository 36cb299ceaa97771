"""E-card use cases: view, activate, report lost, recover, mint and verify QR tokens."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, timedelta

import asyncpg

from app.auth.principal import Principal
from app.cards import qr
from app.cards import repository as repo
from app.errors import BadRequest, Conflict, Forbidden, Gone, NotFound
from app.persons import national_id as nid
from infra import audit
from infra.config import Settings
from infra.crypto import lookup_hash, mask_account
from infra.db import CommitThenRaise, Db, unit_of_work
from notifications.outbox import publish_event


@dataclass(frozen=True)
class CardView:
    card_number: str
    status: str
    masked_national_id: str
    name: str
    issued_on: date
    activated_at: datetime | None


@dataclass(frozen=True)
class MintedQr:
    token: str
    expires_at: datetime
    svg: str | None


@dataclass(frozen=True)
class VerifiedQr:
    card_number: str
    card_status: str
    name: str
    masked_national_id: str


def _view(row: asyncpg.Record) -> CardView:
    return CardView(
        row["card_number"], row["status"], row["national_id_masked"], row["name"], row["issued_on"], row["activated_at"]
    )


class CardService:
    def __init__(self, pool: asyncpg.Pool, settings: Settings) -> None:
        self._pool = pool
        self._settings = settings

    @staticmethod
    def _person_of(principal: Principal) -> uuid.UUID:
        if principal.person_id is None:
            raise NotFound("card_not_activated")
        return principal.person_id

    async def get(self, principal: Principal) -> CardView:
        row = await repo.card_of_person(self._pool, self._person_of(principal))
        if row is None:
            raise NotFound("card_not_activated")
        return _view(row)

    async def activate(self, principal: Principal, national_id: str) -> CardView:
        national_id = nid.normalise(national_id)
        if nid.validate(national_id) is not None:
            raise BadRequest("activation_mismatch")
        async with unit_of_work(self._pool) as uow:
            person = await repo.person_for_activation(uow, lookup_hash(self._settings.lookup_hash_key, national_id))
            # One answer for "unknown ID" and "someone else's phone": no probing who is registered.
            if person is None or person["phone"] != principal.phone:
                raise Forbidden("activation_mismatch")
            card = await repo.card_of_person(uow, person["id"], lock=True)
            if card is None or card["status"] == "cancelled" or person["vital_status"] != "alive":
                raise Conflict("card_cancelled")
            await repo.link_account(uow, principal.subject_id, person["id"])
            view = _view(card)
            if card["status"] == "pending_activation":
                if not person["certified"]:
                    # A face check passed within the last 12 months (a pass sets certified_until).
                    # Keep the link: it is what lets this account take the face check next.
                    raise CommitThenRaise(Conflict("certification_required"))
                activated_at = await repo.set_status(uow, card["id"], "active")
                await audit.record(uow, principal.actor, "card.activated", f"card:{card['id']}", {})
                view = replace(view, status="active", activated_at=activated_at)
        return view

    async def _transition(
        self, principal: Principal, allowed_from: str, to: str, refusal: str, action: str
    ) -> CardView:
        async with unit_of_work(self._pool) as uow:
            card = await repo.card_of_person(uow, self._person_of(principal), lock=True)
            if card is None:
                raise NotFound("card_not_activated")
            if card["status"] != allowed_from:
                if card["status"] == to:
                    return _view(card)  # a retried request: already done
                raise Conflict(refusal, card_status=card["status"])
            activated_at = await repo.set_status(uow, card["id"], to)
            await audit.record(uow, principal.actor, action, f"card:{card['id']}", {"from": allowed_from, "to": to})
            # Told at once: a loss the holder did not report is someone else holding their account.
            await publish_event(
                uow,
                action,
                card["person_id"],
                {"card_masked": mask_account(card["card_number"])},
                f"{action}:{card['id']}:{card['status_changed_at'].isoformat()}",
            )
        return replace(_view(card), status=to, activated_at=activated_at)

    async def report_loss(self, principal: Principal) -> CardView:
        return await self._transition(principal, "active", "reported_lost", "card_not_active", "card.reported_lost")

    async def recover(self, principal: Principal) -> CardView:
        return await self._transition(principal, "reported_lost", "active", "card_not_lost", "card.recovered")

    async def mint_qr(self, principal: Principal, *, render_svg: bool = True) -> MintedQr:
        if principal.session_id is None or not principal.device_id:
            raise Forbidden("device_required")
        person_id = self._person_of(principal)
        token_id = uuid.uuid4()
        expires_at = (datetime.now(UTC) + timedelta(seconds=self._settings.qr_token_ttl_s)).replace(microsecond=0)
        card_id = await self._pool.fetchval(repo.MINT_QR_SQL, token_id, principal.session_id, expires_at, person_id)
        if card_id is None:
            card = await repo.card_of_person(self._pool, person_id)
            if card is None:
                raise NotFound("card_not_activated")
            raise Conflict("card_not_active", card_status=card["status"])
        claims = qr.QrClaims(token_id, card_id, int(expires_at.timestamp()))
        token = qr.encode(self._settings.qr_signing_key, claims)
        return MintedQr(token, expires_at, qr.render_svg(token) if render_svg else None)

    async def verify_qr(self, terminal: Principal, token: str) -> VerifiedQr:
        row = await self.consume_qr(self._pool, terminal, token)
        return VerifiedQr(row["card_number"], row["status"], row["name"], row["national_id_masked"])

    async def consume_qr(self, db: Db, terminal: Principal, token: str) -> asyncpg.Record:
        """Use up a QR token for `terminal`; the token, its card and holder (qr_token_id, card_id,
        person_id, card_number, status, name, national_id_masked). `db` is the pool, or the caller's
        unit of work: a charge refused after this step rolls the consumption back with it."""
        claims = qr.decode(self._settings.qr_signing_key, token)
        if claims is None:
            raise BadRequest("qr_invalid")  # forged or altered: refused before any database lookup
        if claims.expires_at <= datetime.now(UTC).timestamp():
            raise Gone("qr_expired")
        row = await db.fetchrow(repo.CONSUME_QR_SQL, claims.token_id, claims.card_id, terminal.subject_id)
        if row is not None:
            return row
        why = await db.fetchrow(repo.QR_REFUSAL_SQL, claims.token_id, claims.card_id)
        if why is None:
            raise BadRequest("qr_invalid")
        if why["used"]:
            raise Conflict("qr_used")
        if why["expired"]:
            raise Gone("qr_expired")
        raise Conflict("qr_card_unusable")
