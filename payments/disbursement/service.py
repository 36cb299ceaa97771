"""Disbursement runs, the bank's files and a retiree's payment history.

A run makes exactly one record per entitlement and month, batch after batch; each batch and the
run's progress commit together, so a run killed at any point and started again (or two executors
of one period at once) end with the same records. The transaction that completes a run also pays
again, once, the returned payments whose account has been corrected since. A completed run's payment
order goes to the bank only once a second administrator has approved it and it has been released.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import date
from typing import Any

import asyncpg

from core.errors import NotFound
from infra import audit, jobs
from infra.crypto import FieldCipher, mask_name
from infra.db import UnitOfWork, unit_of_work
from notifications.outbox import publish_event, queue_run_announcement
from payments.disbursement import approval, bankfile
from payments.disbursement import repository as repo
from payments.disbursement.rules import (
    PaymentFact,
    ReturnedPayment,
    StatementMonth,
    pay_date,
    repay_due,
    statement,
)

log = logging.getLogger(__name__)

DISBURSE_JOB = "payments.disburse"
ACCOUNT_CONTEXT = "pension_entitlements.bank_account"


@dataclass(frozen=True)
class ReturnReport:
    confirmed: int = 0
    returned: int = 0
    unchanged: int = 0
    errors: list[bankfile.LineError] = field(default_factory=list)
    reconciled: list[uuid.UUID] = field(default_factory=list)  # runs the bank has now answered for whole


# What a run's completion, approval and release record of it in the audit log.
_TOTALS = (
    "paid_count",
    "paid_fen",
    "withheld_count",
    "withheld_fen",
    "back_pay_count",
    "back_pay_fen",
    "repay_count",
    "repay_fen",
)

# A bank answer may confirm or return a pending payment, or return a confirmed one (a recall);
# a returned payment stays returned.
_ALLOWED = {("pending", "paid"), ("pending", "returned"), ("confirmed", "returned")}
_SAME = {("confirmed", "paid"), ("returned", "returned")}


class DisbursementService:
    def __init__(self, pool: asyncpg.Pool, cipher: FieldCipher, pay_day: int, batch: int) -> None:
        self._pool = pool
        self._cipher = cipher
        self._pay_day = pay_day
        self._batch = batch

    async def _start(self, uow: UnitOfWork, period: date, actor: str) -> uuid.UUID:
        """The period's run: started now (audited) or the one already there."""
        run_id, created = await repo.start_run(uow, period, pay_date(period, self._pay_day), actor)
        if created:
            await audit.record(uow, actor, "disbursement.started", f"disbursement:{run_id}", {"period": str(period)})
        return run_id

    async def request(self, period: date, actor: str) -> dict[str, Any]:
        """Start (or find) the period's run and queue it for a worker; the API's entry point."""
        async with unit_of_work(self._pool) as uow:
            run_id = await self._start(uow, period, actor)
            await jobs.enqueue(uow, DISBURSE_JOB, str(run_id).encode(), f"disburse:{run_id}")
        return await self.view(run_id)

    async def run(
        self, period: date, actor: str, on_batch: Callable[[int], Awaitable[None]] | None = None
    ) -> dict[str, Any]:
        """Start (or find) the period's run and carry it to completion here; the CLI's entry point."""
        async with unit_of_work(self._pool) as uow:
            run_id = await self._start(uow, period, actor)
        await self.process(run_id, on_batch)
        return await self.view(run_id)

    async def process(self, run_id: uuid.UUID, on_batch: Callable[[int], Awaitable[None]] | None = None) -> None:
        """Batches until the run is complete; safe to call from any number of processes at once."""
        while True:
            async with unit_of_work(self._pool) as uow:
                run = await repo.lock_run(uow, run_id)
                if run is None:
                    raise NotFound("disbursement_not_found")
                if run["state"] != approval.RUNNING:
                    return
                # The run ends on an empty batch, so completion never rests on batch arithmetic.
                scanned = await repo.run_batch(uow, run, self._batch)
                if scanned == 0:
                    await self._repay(uow, run)
                    await self._completed(uow, run_id)
            if on_batch is not None and scanned:
                await on_batch(scanned)

    async def note_problem(self, run_id: uuid.UUID, problem: str, *, gave_up: bool) -> None:
        """Show administrators why the run is not moving (on the run), and whether it is still being tried.
        Best effort: the failure may be the database itself, and then the log line is all there is."""
        level = logging.ERROR if gave_up else logging.WARNING
        log.log(
            level, "disbursement run stalled", extra={"run_id": str(run_id), "problem": problem, "gave_up": gave_up}
        )
        try:
            await repo.note_problem(self._pool, run_id, problem[:500], gave_up)
        except Exception:
            log.warning("could not record the run's problem", extra={"run_id": str(run_id)}, exc_info=True)

    async def _repay(self, uow: UnitOfWork, run: asyncpg.Record) -> None:
        """Pay again, in this run, the returned payments of the persons it pays whose account has been
        corrected since the return: one `repay` record per person. In the run's last transaction, after
        every batch, so a person's monthly record tells whether they are paid; a crash before its commit
        leaves the run running, and the next executor does it again from the start."""
        chosen: list[tuple[uuid.UUID, uuid.UUID]] = []
        accounts: dict[uuid.UUID, tuple[uuid.UUID, bytes, str]] = {}
        for row in await repo.returned_of_paid(uow, run):
            confirmed = (
                (self._account(row["confirmed_enc"]), row["confirmed_at"]) if row["confirmed_enc"] is not None else None
            )
            returned = ReturnedPayment(
                self._account(row["sent_enc"]), row["returned_at"], self._account(row["on_file_enc"]), confirmed
            )
            if repay_due(returned):
                chosen.append((row["id"], row["person_id"]))
                accounts[row["person_id"]] = (row["person_id"], row["on_file_enc"], row["on_file_masked"])
        if chosen:
            done = await repo.repay(uow, run, chosen, list(accounts.values()))
            log.info("returned payments paid again", extra={"run_id": str(run["id"]), **dict(done)})

    def _account(self, sealed: bytes) -> str:
        return self._cipher.decrypt_text(sealed, ACCOUNT_CONTEXT)

    async def _completed(self, uow: UnitOfWork, run_id: uuid.UUID) -> None:
        totals = await repo.run_view(uow, run_id)
        assert totals is not None
        summary = {key: totals[key] for key in _TOTALS}
        await audit.record(uow, "system:disbursement", "disbursement.completed", f"disbursement:{run_id}", summary)
        # One event for the run; each person is told of their payment once the run is released.
        await publish_event(
            uow,
            "disbursement.completed",
            None,
            {"run_id": str(run_id), "period": str(totals["period"])},
            f"disbursement.completed:{run_id}",
        )
        log.info("disbursement run completed", extra={"run_id": str(run_id), **summary})

    async def view(self, run_id: uuid.UUID) -> dict[str, Any]:
        row = await repo.run_view(self._pool, run_id)
        if row is None:
            raise NotFound("disbursement_not_found")
        return row

    async def withheld_by_reason(self, run_id: uuid.UUID) -> list[asyncpg.Record]:
        return await repo.withheld_by_reason(self._pool, run_id)

    async def recent_runs(self, limit: int) -> list[asyncpg.Record]:
        """The latest runs, newest period first, with their progress (no totals: those read every payment)."""
        return await repo.recent_runs(self._pool, limit)

    async def run_of_period(self, period: date) -> uuid.UUID | None:
        return await repo.run_of_period(self._pool, period)

    # -- maker-checker -------------------------------------------------------------------------------
    async def approve(self, run_id: uuid.UUID, actor: str, named: dict[str, str] | None = None) -> dict[str, Any]:
        """A second administrator's approval of a completed run (approval.approve says who may); the
        totals approved are kept in the audit log. Approving again changes nothing."""
        async with unit_of_work(self._pool) as uow:
            run = await self._signatures(uow, run_id)
            if approval.approve(run, actor):
                await repo.approve(uow, run_id, actor)
                await self._signed(uow, run_id, actor, "disbursement.approved", named)
        return await self.view(run_id)

    async def release(self, run_id: uuid.UUID, actor: str, named: dict[str, str] | None = None) -> dict[str, Any]:
        """Release an approved run's payment order to the bank (approval.release says who may): its
        file can be read from now on, and each person is told of their payment. Releasing again
        changes nothing. A run with nothing for the bank to answer is reconciled at once."""
        async with unit_of_work(self._pool) as uow:
            run = await self._signatures(uow, run_id)
            if approval.release(run, actor):
                await repo.release(uow, run_id, actor)
                await self._signed(uow, run_id, actor, "disbursement.released", named)
                await queue_run_announcement(uow, run_id)
                await self._reconcile(uow, [run_id])
        return await self.view(run_id)

    async def _signatures(self, uow: UnitOfWork, run_id: uuid.UUID) -> approval.Signatures:
        row = await repo.signatures(uow, run_id)
        if row is None:
            raise NotFound("disbursement_not_found")
        return approval.Signatures(row["state"], row["requested_by"], row["approved_by"], row["released_by"])

    async def _signed(
        self, uow: UnitOfWork, run_id: uuid.UUID, actor: str, action: str, named: dict[str, str] | None
    ) -> None:
        totals = await repo.run_view(uow, run_id)
        assert totals is not None
        details = {"period": str(totals["period"]), **{key: totals[key] for key in _TOTALS}, **(named or {})}
        await audit.record(uow, actor, action, f"disbursement:{run_id}", details)

    async def _reconcile(self, uow: UnitOfWork, run_ids: list[uuid.UUID]) -> list[uuid.UUID]:
        done = await repo.reconcile(uow, run_ids)
        for row in done:
            await audit.record(
                uow,
                "system:disbursement",
                "disbursement.reconciled",
                f"disbursement:{row['id']}",
                {"period": str(row["period"]), "confirmed": row["confirmed"], "returned": row["returned"]},
            )
        return [row["id"] for row in done]

    async def bank_order(self, run_id: uuid.UUID, actor: str) -> AsyncIterator[str]:
        """The run's payment order for the bank, streamed; only a released run's may be read.

        The file carries full account numbers, so each export is audited before the first byte.
        """
        state = await repo.run_state(self._pool, run_id)
        if state is None:
            raise NotFound("disbursement_not_found")
        approval.bank_file_available(state)
        async with unit_of_work(self._pool) as uow:
            await audit.record(uow, actor, "disbursement.bank_file_exported", f"disbursement:{run_id}", {})
        return self._order_chunks(run_id)

    async def _order_chunks(self, run_id: uuid.UUID) -> AsyncIterator[str]:
        order = bankfile.PaymentOrder()
        yield order.header()
        async with self._pool.acquire() as conn, conn.transaction():
            async for row in repo.order_rows(conn, run_id):
                account = self._cipher.decrypt_text(row["bank_account_enc"], ACCOUNT_CONTEXT)
                yield order.line(bankfile.OrderLine(row["id"], mask_name(row["name"]), account, row["amount_fen"]))
        yield order.trailer()

    async def import_returns(self, text: str, actor: str) -> ReturnReport:
        """Apply the bank's return file whole, or nothing when any line cannot be taken."""
        answers, errors = bankfile.parse_returns(text)
        if errors:
            return ReturnReport(errors=errors)
        async with unit_of_work(self._pool) as uow:
            states = await repo.bank_states(uow, [a.reference for a in answers])
            changes: list[bankfile.ReturnLine] = []
            unchanged = 0
            for answer in answers:
                row = states.get(answer.reference)
                if row is None:
                    errors.append(
                        bankfile.LineError(answer.line, f"no payment {answer.reference} was sent to the bank")
                    )
                elif row["run_state"] not in (approval.RELEASED, approval.RECONCILED):
                    errors.append(
                        bankfile.LineError(answer.line, f"the payment order of {answer.reference} was not released")
                    )
                elif (row["bank_status"], answer.result) in _SAME:
                    unchanged += 1
                elif (row["bank_status"], answer.result) in _ALLOWED:
                    changes.append(answer)
                else:
                    errors.append(
                        bankfile.LineError(
                            answer.line, f"the payment is already {row['bank_status']}: cannot be {answer.result}"
                        )
                    )
            if errors:
                return ReturnReport(errors=errors)  # leaving the block commits nothing: no change was made
            await repo.record_bank_answers(
                uow,
                [states[c.reference]["person_id"] for c in changes],
                [c.reference for c in changes],
                [c.result for c in changes],
                [c.reason for c in changes],
            )
            reconciled = await self._reconcile(uow, sorted({row["run_id"] for row in states.values()}))
            report = ReturnReport(
                confirmed=sum(c.result == "paid" for c in changes),
                returned=sum(c.result == "returned" for c in changes),
                unchanged=unchanged,
                reconciled=reconciled,
            )
            await audit.record(
                uow,
                actor,
                "disbursement.bank_returns_imported",
                "bank-returns",
                {"confirmed": report.confirmed, "returned": report.returned, "unchanged": report.unchanged},
            )
        return report

    # -- the retiree's view --------------------------------------------------------------------------
    async def payments(
        self, person_id: uuid.UUID, after: tuple[date, str, uuid.UUID] | None, limit: int
    ) -> list[asyncpg.Record]:
        return await repo.payments_page(self._pool, person_id, after, limit)

    async def payment(self, person_id: uuid.UUID, payment_id: uuid.UUID) -> asyncpg.Record | None:
        return await repo.payment(self._pool, person_id, payment_id)

    async def statement(self, person_id: uuid.UUID, year: int) -> list[StatementMonth]:
        rows = await repo.payments_of_year(self._pool, person_id, year)
        return statement(year, (fact_of(row) for row in rows))

    async def returned(self, after: uuid.UUID | None, limit: int) -> list[asyncpg.Record]:
        return await repo.returned_payments(self._pool, after, limit)


def fact_of(row: asyncpg.Record) -> PaymentFact:
    return PaymentFact(
        period=row["period"],
        kind=row["kind"],
        status=row["status"],
        amount_fen=row["amount_fen"],
        withheld_reason=row["withheld_reason"],
        covers=tuple(row["covers"] or ()),
        bank_status=row["bank_status"],
        bank_return_reason=row["bank_return_reason"],
        to_recover_fen=row["to_recover_fen"],
    )
