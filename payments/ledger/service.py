"""The medical personal account: yearly allocations from the fund, QR charges by hospital and
pharmacy terminals, refunds, and the cardholder's statement.

Charges and refunds run once per terminal Idempotency-Key (Brandur Leach's pattern): the key is
claimed in a short statement of its own, then one transaction on the same connection holds the
claim (locks its row), does the work, stores the answer and releases the claim, so a retry replays
the answer and a crash leaves nothing half done. A claim that no transaction holds any more is one
whose request died (its connection closed): a retry takes it over after a grace of seconds
(rules.CLAIM_GRACE), well within the QR code's minute. A key is kept with the person the request is
for (the QR code's card holder, the refunded charge's person), so that the key, the accounts and the
charge sit on one shard on Citus.

Every transfer stays within its person: the other side is the person's clearing account (for the
fund, or for the charging terminal). `settle` carries the clearing accounts' totals into the
system's fund and merchant accounts in batches; `reconcile` checks that the sums agree per account,
person, shard and in total.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import asyncpg
import msgspec
from asyncpg.pool import PoolConnectionProxy

from cards.service import CardService
from core.errors import AppError, BadRequest, Conflict, NotFound, PaymentRequired, Unprocessable
from core.paging import after, page
from core.principal import Principal
from core.records import RowError, RowProgress, detect_format
from infra import audit
from infra.config import Settings
from infra.crypto import lookup_hash, mask_account
from infra.db import Db, UnitOfWork, unit_of_work
from notifications.outbox import publish_event
from payments.disbursement.rules import yuan
from payments.ledger import repository as repo
from payments.ledger import rules
from persons.repository import find_by_national_id_hash

log = logging.getLogger(__name__)

SETTLE_JOB = "ledger.settle"
SETTLE_BATCH = 1_000  # clearing accounts carried per transaction

# A receipt as the terminal gets it, in JSON types: stored with the key and replayed from there.
# Its fields are app.http.medical.schemas.ChargeReceipt's and RefundReceipt's.
Receipt = dict[str, Any]


@dataclass(frozen=True)
class Idempotency:
    """A terminal request's Idempotency-Key and the fingerprint of what it asks (rules.request_hash)."""

    key: str
    request_hash: bytes


@dataclass(frozen=True)
class Statement:
    balance_fen: int
    entries: list[asyncpg.Record]
    next_cursor: str | None


@dataclass(frozen=True)
class Mismatch:
    """Sums of the ledger that should agree and do not (reconcile)."""

    place: str  # 'account', 'person', 'shard', 'system' or 'total'
    name: str
    off_fen: int
    rule: str


@dataclass
class AllocationReport:
    created: int = 0
    unchanged: int = 0
    errors: list[RowError] = field(default_factory=list)


def _refusal(status: int, code: str, params: dict[str, Any]) -> AppError:
    """A stored refusal, raised again for a replay (rendered in the language of the retry)."""
    error = AppError(code, **params)
    error.status = status
    return error


class MedicalAccountService:
    def __init__(self, pool: asyncpg.Pool, settings: Settings, cards: CardService) -> None:
        self._pool = pool
        self._settings = settings
        self._cards = cards

    # -- terminals -------------------------------------------------------------------------------
    async def charge(
        self, terminal: Principal, request: Idempotency, qr_token: str, amount_fen: int, description: str
    ) -> Receipt:
        # The person first (the code carries it), for the key's shard. Only the signature is checked
        # here: whether the code is still good is the work's question, so that a retry after the
        # code's minute still finds its answer.
        person_id = self._cards.token_claims(qr_token).person_id

        async def work(uow: UnitOfWork) -> Receipt:
            holder = await self._cards.consume_qr(uow, terminal, qr_token)
            if holder["person_id"] != person_id:  # a card is one person's for good: never expected
                raise BadRequest("qr_invalid")
            accounts = await repo.lock_accounts(uow, person_id, terminal.subject_id)
            medical, merchant = accounts["medical"], accounts["merchant_clearing"]
            if medical["balance_fen"] < amount_fen:
                # Raised inside the work's savepoint: the QR token's consumption is undone with it,
                # so the cardholder can pay a smaller amount (or otherwise) with the same code.
                raise PaymentRequired("insufficient_balance")
            charge = await repo.insert_charge(
                uow, terminal.subject_id, holder, amount_fen, description, (medical["id"], merchant["id"])
            )
            # The notice's params: the merchant as registered with the terminal, and none of the
            # terminal's own text, which only its receipt carries (notifications.templates says why).
            event = {"charge_id": str(charge["id"]), "amount_fen": amount_fen, "merchant": terminal.merchant}
            await publish_event(uow, "medical.charged", holder["person_id"], event, f"medical.charged:{charge['id']}")
            return {
                **event,
                "description": description,
                "masked_card_number": mask_account(holder["card_number"]),
                "masked_national_id": holder["national_id_masked"],
                "created_at": charge["created_at"],
            }

        return await self._once(terminal, person_id, request, work)

    async def refund(self, terminal: Principal, request: Idempotency, charge_id: uuid.UUID, amount_fen: int) -> Receipt:
        person_id = await repo.charge_person(self._pool, charge_id)
        if person_id is None:
            raise NotFound("charge_not_found")

        async def work(uow: UnitOfWork) -> Receipt:
            # Another merchant's charge is as good as unknown: no probing of charge ids.
            charge = await repo.charge_for_refund(uow, person_id, charge_id, terminal.merchant or "")
            if charge is None:
                raise NotFound("charge_not_found")
            left = rules.refundable_fen(charge["amount_fen"], charge["refunded_fen"])
            if amount_fen > left:
                raise Conflict("refund_exceeds_charge", refundable=yuan(left))
            # The money went to the person's clearing account for the charging terminal; it comes back
            # from there (after a settlement, that account goes below what it carried, and the next
            # settlement takes the difference back from the terminal's merchant account).
            accounts = await repo.lock_accounts(uow, person_id, charge["terminal_id"])
            refund = await repo.insert_refund(uow, person_id, charge_id, terminal.subject_id, amount_fen)
            clearing, medical = accounts["merchant_clearing"]["id"], accounts["medical"]["id"]
            await repo.transfer(uow, person_id, clearing, medical, amount_fen, "refund", refund["id"])
            event = {
                "refund_id": str(refund["id"]),
                "charge_id": str(charge_id),
                "amount_fen": amount_fen,
                "merchant": terminal.merchant,
            }
            await publish_event(uow, "medical.refunded", charge["person_id"], event, f"medical.refunded:{refund['id']}")
            return {
                **event,
                "description": charge["description"],
                "refundable_fen": left - amount_fen,
                "masked_card_number": mask_account(charge["card_number"]),
                "masked_national_id": charge["national_id_masked"],
                "created_at": refund["created_at"],
            }

        return await self._once(terminal, person_id, request, work)

    async def _once(
        self,
        terminal: Principal,
        person_id: uuid.UUID,
        request: Idempotency,
        work: Callable[[UnitOfWork], Awaitable[Receipt]],
    ) -> Receipt:
        """Run `work` once per key: a new key runs it; a key answered before replays its answer (a
        receipt, or the business refusal: insufficient balance, used code...), whatever happened
        since; a key in use by a running request or by another request is refused, and a claim whose
        request died is taken over (rules.CLAIM_GRACE)."""
        terminal_id = terminal.subject_id
        # One connection for the claim and the work, so that the claim is held (its row locked) two
        # round trips after it is made, never after a wait for the pool.
        async with self._pool.acquire() as conn:
            claimed = await self._claim(conn, person_id, terminal_id, request)
            if not isinstance(claimed, datetime):
                return claimed
            try:
                return await self._work(conn, person_id, terminal_id, request, claimed, work)
            except AppError:
                raise
            except Exception as exc:
                failed = exc
        # Nothing was stored (the transaction rolled back): let a retry run now rather than once the
        # claim counts as dead, on another connection (this one may be what failed). A cancelled
        # request is left to CLAIM_GRACE.
        await repo.release_key(self._pool, person_id, terminal_id, request.key, claimed)
        raise failed

    async def _work(
        self,
        conn: PoolConnectionProxy[Any],
        person_id: uuid.UUID,
        terminal_id: uuid.UUID,
        request: Idempotency,
        claimed: datetime,
        work: Callable[[UnitOfWork], Awaitable[Receipt]],
    ) -> Receipt:
        """`work` and its stored answer in one transaction that holds the claim throughout (as
        infra.db.unit_of_work, on the claim's connection)."""
        transaction = conn.transaction()
        await transaction.start()
        uow = UnitOfWork(conn)
        refused: AppError | None = None
        try:
            if not await repo.hold_key(uow, person_id, terminal_id, request.key, claimed, rules.HELD_IDLE_LIMIT):
                # We were taken for dead and another request took the key over: it answers.
                raise Conflict("request_in_flight")
            try:
                async with conn.transaction():  # a savepoint: a refusal undoes the work's writes
                    receipt = await work(uow)
            except AppError as refusal:
                refused = refusal
                stored = {"code": refusal.code, "params": refusal.params}
                await repo.answer_key(uow, person_id, terminal_id, request.key, refusal.status, stored)
            else:
                # Sent as a replay reads it back (JSON types), so first answer and replays are the same bytes.
                response: Receipt = msgspec.to_builtins(receipt)
                await repo.answer_key(uow, person_id, terminal_id, request.key, 201, response)
        except BaseException:
            await transaction.rollback()
            raise
        await transaction.commit()  # the refusal is stored too, and replayed
        if refused is not None:
            raise refused from None
        return response

    async def _claim(
        self, db: Db, person_id: uuid.UUID, terminal_id: uuid.UUID, request: Idempotency
    ) -> datetime | Receipt:
        """Our claim on the key (its lock time), or the stored answer to replay (a refusal is raised)."""
        lifetime = rules.KEY_LIFETIME
        for _ in range(3):  # a round is lost only to a concurrent request (a takeover, a purge): look again
            locked_at = await repo.claim_key(db, person_id, terminal_id, request.key, request.request_hash, lifetime)
            if locked_at is not None:
                return locked_at
            row = await repo.stored_key(db, person_id, terminal_id, request.key)
            if row is None:
                continue
            stored = rules.StoredKey(
                row["request_hash"], row["status_code"] is not None, row["locked_at"], row["expires_at"], row["held"]
            )
            state = rules.key_state(stored, request.request_hash, row["now"])
            if state is rules.KeyState.REUSED:
                raise Unprocessable("idempotency_key_reused")
            if state is rules.KeyState.IN_FLIGHT:
                raise Conflict("request_in_flight")
            if state is rules.KeyState.ANSWERED:
                answer: dict[str, Any] = row["response"]
                if row["status_code"] >= 400:
                    raise _refusal(row["status_code"], answer["code"], answer["params"])
                return answer
            locked_at = await repo.take_over_key(
                db, person_id, terminal_id, request.key, request.request_hash, lifetime, rules.CLAIM_GRACE
            )
            if locked_at is not None:
                return locked_at
        raise Conflict("request_in_flight")

    # -- the cardholder --------------------------------------------------------------------------
    async def statement(self, principal: Principal, cursor: str | None, limit: int) -> Statement:
        """The balance and a page of entries, newest first, read in one snapshot so they agree."""
        person_id = principal.linked_person
        start = after(cursor, uuid.UUID)
        async with self._pool.acquire() as conn, conn.transaction(isolation="repeatable_read", readonly=True):
            db = UnitOfWork(conn)
            balance = await repo.medical_balance(db, person_id)
            rows = await repo.entries(db, person_id, start[0] if start else None, limit + 1)
        shown, next_cursor = page(rows, limit, lambda row: (row["id"],))
        return Statement(balance, shown, next_cursor)

    # -- administrators --------------------------------------------------------------------------
    async def import_allocations(self, path: Path, actor: str, progress: RowProgress | None = None) -> AllocationReport:
        """Land every good row of a CSV or JSON-lines file of yearly allocations, each in its own
        transaction with its audit entry; `actor` is who the audit log names."""
        text = await asyncio.to_thread(path.read_text, encoding="utf-8-sig")
        rows, errors = rules.parse_allocations(text, detect_format(path.name))
        report = AllocationReport(errors=list(errors))
        for done, row in enumerate(rows, 1):
            outcome = await self._allocate(row, actor)
            if isinstance(outcome, RowError):
                report.errors.append(outcome)
            elif outcome:
                report.created += 1
            else:
                report.unchanged += 1
            if progress:
                progress(done, len(rows))
        report.errors.sort(key=lambda e: e.line)
        return report

    async def _allocate(self, row: rules.AllocationRow, actor: str) -> bool | RowError:
        """True when the allocation landed, False when it already had (a re-import), or why not."""
        async with unit_of_work(self._pool) as uow:
            person = await find_by_national_id_hash(uow, lookup_hash(self._settings.lookup_hash_key, row.national_id))
            if person is None:
                return RowError(row.line, "national_id", "no person with this national ID has been imported")
            allocation_id = await repo.insert_allocation(uow, person["id"], row.year, row.amount_fen, actor)
            if allocation_id is None:
                before = await repo.allocated_fen(uow, person["id"], row.year)
                if before == row.amount_fen:
                    return False
                # Never silently different from the file: a correction is a transfer of its own.
                return RowError(row.line, "amount_fen", f"{row.year} was already allocated {before} fen")
            accounts = await repo.lock_accounts(uow, person["id"], None)
            fund, medical = accounts["fund_clearing"]["id"], accounts["medical"]["id"]
            await repo.transfer(uow, person["id"], fund, medical, row.amount_fen, "allocation", allocation_id)
            await audit.record(
                uow,
                actor,
                "medical.allocated",
                f"person:{person['id']}",
                {"year": row.year, "amount_fen": row.amount_fen, "line": row.line},
            )
        return True

    # -- settlement ------------------------------------------------------------------------------
    async def settle(self, batch: int = SETTLE_BATCH) -> int:
        """Carry every clearing account's balance into the system's fund and merchant accounts, a
        batch of accounts per transaction; the number of accounts carried. Exact and idempotent: a
        carry moves an account's settled total from the value it read to the balance it read
        (compare-and-set), so a settlement killed at any point, run twice or run while charges go
        on carries each fen once; what moved since is carried by the next one."""
        carried = 0
        start: tuple[uuid.UUID, uuid.UUID] | None = None
        while True:
            async with unit_of_work(self._pool) as uow:
                await repo.lock_system_side(uow)
                accounts = await repo.unsettled(uow, start, batch)
                if not accounts:
                    return carried
                carried += await repo.carry(uow, accounts)
            start = (accounts[-1]["person_id"], accounts[-1]["id"])

    async def reconcile(self) -> list[Mismatch]:
        """Every sum of the ledger that does not agree: an account against the replay of its
        transfers, a person's and a shard's balances against 0, a person's settled totals and a
        system account against the settlements, and the whole (medical balances, what the clearing
        accounts hold unsettled and the system accounts) against 0. [] when the ledger balances."""
        async with self._pool.acquire() as conn, conn.transaction(isolation="repeatable_read", readonly=True):
            shard = "0"
            if await conn.fetchval(
                "SELECT EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'citus')"
            ) and await conn.fetchval(
                "SELECT EXISTS (SELECT 1 FROM citus_tables WHERE table_name = 'ledger_accounts'::regclass"
                " AND citus_table_type = 'distributed')"
            ):
                shard = "get_shard_id_for_distribution_column('ledger_accounts', person_id)"
            rows = await conn.fetch(repo.RECONCILE_SQL.format(shard=shard))
        return [Mismatch(r["place"], r["name"], r["off_fen"], r["rule"]) for r in rows]
