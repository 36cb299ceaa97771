"""Recovery of the pension paid after a death: cases, recalls to the bank, its answers, write-offs.

A case opens with the death record's overpayments (in the death's own transaction, `sync_case`) and
is cancelled with its reversal (`cancel_case`). An administrator exports the recall file (a recall
per open case for what is outstanding), imports the bank's answers line by line, and may ask for the
rest to be written off, which a second administrator approves. Every step is audited.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import asyncpg

from core.errors import AppError, Conflict, NotFound
from core.justification import stated
from core.principal import Principal
from core.text import message
from infra import audit
from infra.crypto import FieldCipher, mask_name
from infra.db import UnitOfWork, unit_of_work
from payments.disbursement import bankfile
from payments.disbursement.rules import yuan
from payments.disbursement.service import ACCOUNT_CONTEXT
from payments.recovery import recallfile, rules
from payments.recovery import repository as repo

NO_CASE = NotFound("recovery_case_not_found")


def _money(row: asyncpg.Record) -> rules.CaseMoney:
    return rules.CaseMoney(row["state"], row["owed_fen"], row["recovered_fen"], row["written_off_fen"])


def _subject(row: asyncpg.Record) -> str:
    return f"recovery:{row['id']}"


async def sync_case(uow: UnitOfWork, person_id: uuid.UUID, death_record_id: uuid.UUID, actor: str) -> None:
    """After a death record's overpayments were (re)computed: its case opened when money is owed and it
    has none (a re-import finds the one it has), or, for a corrected date that leaves nothing owed
    and nothing recovered, cancelled."""
    case = await repo.case_of_death(uow, person_id, death_record_id)
    if case is None:
        owed = await repo.owed_for(uow, person_id, death_record_id)
        if owed == 0:
            return
        case_id = await repo.open_case(uow, person_id, death_record_id)
        details = {"death_record_id": str(death_record_id), "owed_fen": owed}
        await audit.record(uow, actor, "recovery.opened", f"recovery:{case_id}", details)
        return
    money = _money(case)
    if money.state in rules.CLOSED or money.state == rules.RECALL_REQUESTED:
        return
    state = rules.CANCELLED if money.owed_fen == 0 and money.recovered_fen == 0 else rules.settled_state(money)
    if state != money.state:
        await repo.save_money(uow, person_id, case["id"], state, money.recovered_fen, money.written_off_fen)
        await audit.record(uow, actor, "recovery.state_changed", _subject(case), {"state": state, **_amounts(money)})


async def cancel_case(
    uow: UnitOfWork, person_id: uuid.UUID, death_record_id: uuid.UUID, actor: str, reason: str
) -> str | None:
    """The death was reversed: its case is cancelled and a recall still waiting withdrawn. Money already
    recovered stays recorded on the case (returning it to the person is a payment of its own).
    The case's id, or None when the death had none."""
    case = await repo.case_of_death(uow, person_id, death_record_id)
    if case is None or case["state"] in rules.CLOSED:
        return None
    money = _money(case)
    withdrawn = await repo.cancel_recalls(uow, person_id, case["id"])
    await repo.save_money(uow, person_id, case["id"], rules.CANCELLED, money.recovered_fen, money.written_off_fen)
    await audit.record(
        uow,
        actor,
        "recovery.cancelled",
        _subject(case),
        {"reason": reason, "recalls_withdrawn": withdrawn, "to_return_fen": money.recovered_fen, **_amounts(money)},
    )
    return str(case["id"])


def _amounts(money: rules.CaseMoney) -> dict[str, int]:
    return {
        "owed_fen": money.owed_fen,
        "recovered_fen": money.recovered_fen,
        "written_off_fen": money.written_off_fen,
    }


@dataclass(frozen=True)
class RecallFile:
    recalls: int
    total_fen: int
    chunks: AsyncIterator[str]


@dataclass
class AnswerReport:
    recovered: int = 0  # recalls that brought back everything asked
    partly: int = 0  # some of it
    nothing: int = 0  # the bank recovered nothing
    unchanged: int = 0  # answered before with the same amount (a file imported again)
    recovered_fen: int = 0
    errors: list[bankfile.LineError] = field(default_factory=list)


@dataclass(frozen=True)
class CaseDetail:
    case: asyncpg.Record
    recalls: list[asyncpg.Record]


class RecoveryService:
    def __init__(self, pool: asyncpg.Pool, cipher: FieldCipher) -> None:
        self._pool = pool
        self._cipher = cipher

    async def cases(self, states: tuple[str, ...], after: uuid.UUID | None, limit: int) -> list[asyncpg.Record]:
        return await repo.cases(self._pool, states or rules.STATES, after, limit)

    async def case(self, case_id: uuid.UUID) -> CaseDetail:
        row = await repo.case_view(self._pool, case_id)
        if row is None:
            raise NO_CASE
        return CaseDetail(row, await repo.recalls_of(self._pool, row["person_id"], case_id))

    # -- recalls ------------------------------------------------------------------------------------
    async def recall_file(self, actor: str) -> RecallFile:
        """A recall for every open case no recall waits for, then the file of every recall waiting for
        the bank (so exporting again gives the same lines, and any new ones). It carries full account
        numbers: the export is audited before the first byte."""
        async with unit_of_work(self._pool) as uow:
            asked = [
                (row, amount)
                for row in await repo.recallable_cases(uow)
                if (amount := rules.recall_amount(_money(row))) is not None and row["bank_account_enc"] is not None
            ]
            await repo.request_recalls(
                uow,
                [row["person_id"] for row, _ in asked],
                [row["id"] for row, _ in asked],
                [amount for _, amount in asked],
                [row["bank_account_enc"] for row, _ in asked],
                actor,
            )
            await audit.record_many(
                uow, actor, "recovery.recall_requested", [(_subject(row), {"amount_fen": a}) for row, a in asked]
            )
            totals = await repo.waiting_totals(uow)
            await audit.record(
                uow,
                actor,
                "recovery.recall_file_exported",
                "recovery-recalls",
                {"new_recalls": len(asked), "recalls": totals["recalls"], "amount_fen": totals["amount_fen"]},
            )
        return RecallFile(totals["recalls"], totals["amount_fen"], self._recall_chunks())

    async def _recall_chunks(self) -> AsyncIterator[str]:
        order = bankfile.PaymentOrder()
        yield order.header()
        async with self._pool.acquire() as conn, conn.transaction():
            async for row in repo.waiting_recalls(conn):
                account = self._cipher.decrypt_text(row["bank_account_enc"], ACCOUNT_CONTEXT)
                yield order.line(bankfile.OrderLine(row["id"], mask_name(row["name"]), account, row["amount_fen"]))
        yield order.trailer()

    async def import_answers(self, text: str, actor: str) -> AnswerReport:
        """The bank's answers, each line on its own: good lines land, bad ones are reported by number.
        A recall is answered once; the same answer again is unchanged, a different one refused."""
        answers, errors = recallfile.parse_answers(text)
        report = AnswerReport(errors=list(errors))
        for answer in answers:
            try:
                outcome = await self._answer(answer, actor)
            except AppError as exc:
                report.errors.append(bankfile.LineError(answer.line, message(exc.code, "en", **exc.params)))
                continue
            setattr(report, outcome, getattr(report, outcome) + 1)
            if outcome != "unchanged":
                report.recovered_fen += answer.recovered_fen
        report.errors.sort(key=lambda e: e.line)
        return report

    async def _answer(self, answer: recallfile.RecallAnswer, actor: str) -> str:
        async with unit_of_work(self._pool) as uow:
            recall = await repo.lock_recall(uow, answer.reference)
            if recall is None:
                raise NotFound("recall_not_found")
            if recall["answered_at"] is not None:
                if recall["recovered_fen"] == answer.recovered_fen:
                    return "unchanged"
                raise Conflict("recall_answered", recovered=yuan(recall["recovered_fen"]))
            if recall["cancelled_at"] is not None:
                raise Conflict("recall_withdrawn")
            if answer.recovered_fen > recall["amount_fen"]:
                raise Conflict("recovery_exceeds_recall", asked=yuan(recall["amount_fen"]))
            case = await repo.lock_case(uow, recall["case_id"], recall["person_id"])
            assert case is not None  # a recall is made for a case, and cases are never deleted
            money = rules.after_recovery(_money(case), answer.recovered_fen)
            await repo.answer_recall(uow, recall["person_id"], recall["id"], answer.recovered_fen, answer.reason)
            await repo.save_money(
                uow, case["person_id"], case["id"], money.state, money.recovered_fen, money.written_off_fen
            )
            if money.state == rules.RECOVERED:
                await repo.settle_overpayments(uow, case["person_id"], case["death_record_id"], "recovered")
            await audit.record(
                uow,
                actor,
                "recovery.recall_answered",
                _subject(case),
                {
                    "recall_id": str(recall["id"]),
                    "asked_fen": recall["amount_fen"],
                    "answered_fen": answer.recovered_fen,
                    "bank_reason": answer.reason,
                    "state": money.state,
                    **_amounts(money),
                },
            )
        if answer.recovered_fen == 0:
            return "nothing"
        return "recovered" if answer.recovered_fen == recall["amount_fen"] else "partly"

    # -- write-off (maker-checker) --------------------------------------------------------------------
    async def ask_write_off(self, principal: Principal, case_id: uuid.UUID, reason: str) -> CaseDetail:
        reason = stated(reason)
        async with unit_of_work(self._pool) as uow:
            case = await repo.lock_case(uow, case_id)
            if case is None:
                raise NO_CASE
            money = _money(case)
            rules.check_write_off_request(money, case["recall_waiting"])
            await repo.ask_write_off(uow, case["person_id"], case_id, principal.actor, reason)
            await audit.record(
                uow,
                principal.actor,
                "recovery.write_off_asked",
                _subject(case),
                {"reason": reason, "outstanding_fen": money.outstanding_fen, **_amounts(money)},
            )
        return await self.case(case_id)

    async def approve_write_off(self, principal: Principal, case_id: uuid.UUID) -> CaseDetail:
        async with unit_of_work(self._pool) as uow:
            case = await repo.lock_case(uow, case_id)
            if case is None:
                raise NO_CASE
            money = _money(case)
            if case["recall_waiting"]:
                raise Conflict("recall_outstanding")
            done = rules.written_off(money, case["write_off_asked_by"], principal.actor)
            await repo.save_money(uow, case["person_id"], case_id, done.state, done.recovered_fen, done.written_off_fen)
            await repo.approve_write_off(uow, case["person_id"], case_id, principal.actor)
            await repo.settle_overpayments(uow, case["person_id"], case["death_record_id"], "written_off")
            await audit.record(
                uow,
                principal.actor,
                "recovery.written_off",
                _subject(case),
                {"asked_by": case["write_off_asked_by"], "reason": case["write_off_reason"], **_amounts(done)},
            )
        return await self.case(case_id)
