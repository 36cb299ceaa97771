"""E-card use cases: view, activate, report lost, recover, mint and verify QR tokens."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, timedelta

import asyncpg

from auth import codes
from auth import repository as sessions
from cards import qr
from cards import repository as repo
from core import national_id as nid
from core.errors import BadRequest, Conflict, Forbidden, Gone, NotFound
from core.justification import stated
from core.principal import Principal
from infra import audit
from infra.config import Settings
from infra.crypto import lookup_hash, mask_account
from infra.db import CommitThenRaise, Db, UnitOfWork, unit_of_work
from notifications.outbox import publish_event
from notifications.sms import SmsProvider


@dataclass(frozen=True)
class CardView:
    card_number: str
    status: str
    masked_national_id: str
    name: str
    issued_on: date
    activated_at: datetime | None


@dataclass(frozen=True)
class RecoveryApproval:
    card: CardView
    approved_at: datetime


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

    async def _card_of(self, db: Db, principal: Principal, *, lock: bool = False) -> asyncpg.Record:
        card = await repo.card_of_person(db, self._person_of(principal), lock=lock)
        if card is None:
            raise NotFound("card_not_activated")
        return card

    async def get(self, principal: Principal) -> CardView:
        return _view(await self._card_of(self._pool, principal))

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
            await repo.link_account(uow, principal.subject_id, person)
            view = _view(card)
            if card["status"] == "pending_activation":
                if not person["certified"]:
                    # A face check passed within the last 12 months (a pass sets certified_until).
                    # Keep the link: it is what lets this account take the face check next.
                    raise CommitThenRaise(Conflict("certification_required"))
                activated_at = await repo.set_status(uow, card["person_id"], card["id"], "active")
                await audit.record(uow, principal.actor, "card.activated", f"card:{card['id']}", {})
                view = replace(view, status="active", activated_at=activated_at)
        return view

    @staticmethod
    async def _move(
        uow: UnitOfWork, card: asyncpg.Record, to: str, action: str, actor: str, details: dict[str, str]
    ) -> CardView:
        activated_at = await repo.set_status(uow, card["person_id"], card["id"], to)
        await audit.record(uow, actor, action, f"card:{card['id']}", {"from": card["status"], "to": to, **details})
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
        """Report the card lost, and end every other sign-in of the person (their refresh tokens and QR
        codes with them): the session of a stolen phone must not outlive the report. Reported again, the
        sessions begun since end too."""
        async with unit_of_work(self._pool) as uow:
            card = await self._card_of(uow, principal, lock=True)
            if card["status"] not in ("active", "reported_lost"):
                raise Conflict("card_not_active", card_status=card["status"])
            # Sessions before the audit rows: the audit chain's lock is taken last everywhere (a logout
            # holds its session while it waits for that lock).
            ended = await sessions.revoke_person_sessions(
                uow, card["person_id"], principal.session_id, "card_reported_lost"
            )
            if card["status"] == "active":
                view = await self._move(uow, card, "reported_lost", "card.reported_lost", principal.actor, {})
            else:
                view = _view(card)  # a retried request: already done
            if ended:
                await audit.record(
                    uow,
                    principal.actor,
                    "auth.sessions_ended",
                    f"person:{card['person_id']}",
                    {"reason": "card_reported_lost", "sessions": ended},
                )
        return view

    @staticmethod
    def _require_lost(card: asyncpg.Record | None) -> asyncpg.Record:
        if card is None or card["status"] != "reported_lost":
            raise Conflict("card_not_lost")
        return card

    @staticmethod
    async def _recovery_proof(db: Db, card: asyncpg.Record) -> str:
        """What proves the person is the one cancelling the report; 409 when nothing does yet. A new SMS
        code alone would not: a stolen phone with its SIM receives it."""
        proof = await repo.recovery_proof(db, card["person_id"], card["id"], card["status_changed_at"])
        if proof is None:
            raise Conflict("recovery_proof_required")
        return proof

    async def send_recovery_code(self, principal: Principal, locale: str, sms: SmsProvider) -> int:
        """Send a code for cancelling the loss report to the person's registered phone, once a face check
        passed since the report (or an operator vouched for them); its lifetime in seconds."""
        card = self._require_lost(await self._card_of(self._pool, principal))
        await self._recovery_proof(self._pool, card)
        return await codes.issue(self._pool, self._settings, sms, card["phone"], codes.CARD_RECOVERY, locale)

    async def recover(self, principal: Principal, code: str) -> CardView:
        """Cancel the loss report with fresh proof: a recovery code sent since the report, and a face check
        passed since it or an operator who vouched for the person since it."""
        async with unit_of_work(self._pool) as uow:
            card = await self._card_of(uow, principal, lock=True)
            if card["status"] == "active":
                return _view(card)  # a retried request: already done
            proof = await self._recovery_proof(uow, self._require_lost(card))
            await codes.redeem(
                uow, self._settings, card["phone"], codes.CARD_RECOVERY, code, issued_after=card["status_changed_at"]
            )
            return await self._move(uow, card, "active", "card.recovered", principal.actor, {"proof": proof})

    async def approve_recovery(self, operator: Principal, national_id: str, reason: str) -> RecoveryApproval:
        """An operator who checked the person (at a service office, with their ID card) vouches for them in
        place of a face check; the holder still cancels the report with a new code. Audited, with the reason."""
        reason = stated(reason)
        national_id = nid.normalise(national_id)
        if nid.validate(national_id) is not None:
            raise BadRequest("national_id_invalid")
        async with unit_of_work(self._pool) as uow:
            person = await repo.person_for_activation(uow, lookup_hash(self._settings.lookup_hash_key, national_id))
            if person is None:
                raise NotFound("person_not_found")
            card = self._require_lost(await repo.card_of_person(uow, person["id"], lock=True))
            approved_at = await repo.approve_recovery(uow, card["person_id"], card["id"], operator.actor, reason)
            await audit.record(
                uow,
                operator.actor,
                "card.recovery_approved",
                f"card:{card['id']}",
                {"reason": reason, "masked_national_id": card["national_id_masked"], **operator.named},
            )
        return RecoveryApproval(_view(card), approved_at)

    async def mint_qr(self, principal: Principal, *, render_svg: bool = True) -> MintedQr:
        # The token is minted under the caller's session, which resolving the principal found live:
        # what the foreign key to sessions kept before they became the coordinator's.
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
        claims = qr.QrClaims(token_id, person_id, int(expires_at.timestamp()))
        token = qr.encode(self._settings.qr_signing_key, claims)
        return MintedQr(token, expires_at, qr.render_svg(token) if render_svg else None)

    async def verify_qr(self, terminal: Principal, token: str) -> VerifiedQr:
        async with unit_of_work(self._pool) as uow:  # a refusal after the consumption undoes it
            row = await self.consume_qr(uow, terminal, token)
        return VerifiedQr(row["card_number"], row["status"], row["name"], row["national_id_masked"])

    def token_claims(self, token: str) -> qr.QrClaims:
        """A genuine token's claims, expired or not (whose code it is, before any database lookup)."""
        key = self._settings.qr_signing_key
        claims = qr.decode(key, token)
        if claims is None:
            if qr.superseded(key, token):
                # Genuine, minted before version 2 (a minute at most before it): the holder refreshes it.
                raise Gone("qr_expired")
            raise BadRequest("qr_invalid")  # forged or altered: refused before any database lookup
        return claims

    async def consume_qr(self, uow: UnitOfWork, terminal: Principal, token: str) -> asyncpg.Record:
        """Use up a QR token for `terminal`; the token, its card and holder (qr_token_id, card_id,
        person_id, card_number, status, name, national_id_masked). In the caller's unit of work: a
        refusal after this step (here, a minting session since ended; a charge's) rolls it back."""
        claims = self.token_claims(token)
        if claims.expires_at <= datetime.now(UTC).timestamp():
            raise Gone("qr_expired")
        row = await uow.fetchrow(repo.CONSUME_QR_SQL, claims.person_id, claims.token_id, terminal.subject_id)
        if row is not None:
            # The minting session signed out or ended by a loss report: the code went with it.
            if not await uow.fetchval(repo.LIVE_SESSION_SQL, row["session_id"]):
                raise Conflict("qr_card_unusable")
            return row
        why = await uow.fetchrow(repo.QR_REFUSAL_SQL, claims.person_id, claims.token_id)
        if why is None:
            raise BadRequest("qr_invalid")
        if why["used"]:
            raise Conflict("qr_used")
        if why["expired"]:
            raise Gone("qr_expired")
        raise Conflict("qr_card_unusable")
