"""Recovery cases: the states, and what each step may do to the money. Pure, no I/O.

A case is opened for a death record with overpayments. What it is owed is the sum of that record's
overpayments not cancelled (derived, so a corrected date or a returned payment changes it). The bank
recovers some or all of it in answer to recalls; what stays unrecovered may be written off, asked by
one administrator and approved by another. All amounts are integer fen; nothing recovered or written
off ever passes what is owed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from core.errors import Conflict, Forbidden
from payments.disbursement.rules import yuan

OPENED = "opened"
RECALL_REQUESTED = "recall_requested"
RECOVERED_PARTLY = "recovered_partly"
RECOVERED = "recovered"
WRITTEN_OFF = "written_off"
CANCELLED = "cancelled"
STATES = (OPENED, RECALL_REQUESTED, RECOVERED_PARTLY, RECOVERED, WRITTEN_OFF, CANCELLED)
CLOSED = frozenset({RECOVERED, WRITTEN_OFF, CANCELLED})
# Cases a recall file asks the bank about: money still owed, no recall waiting for an answer.
RECALLABLE = frozenset({OPENED, RECOVERED_PARTLY})

_YUAN = re.compile(r"(0|[1-9][0-9]{0,12})(?:\.([0-9]{1,2}))?")


@dataclass(frozen=True)
class CaseMoney:
    state: str
    owed_fen: int
    recovered_fen: int
    written_off_fen: int = 0

    @property
    def outstanding_fen(self) -> int:
        return max(self.owed_fen - self.recovered_fen - self.written_off_fen, 0)


def settled_state(money: CaseMoney) -> str:
    """The state a case not closed by a person's decision stands in, from its money alone: recovered
    when nothing is outstanding, recovered in part when some came back, opened otherwise."""
    if money.owed_fen > 0 and money.outstanding_fen == 0:
        return RECOVERED
    return RECOVERED_PARTLY if money.recovered_fen > 0 else OPENED


def after_recovery(money: CaseMoney, amount_fen: int) -> CaseMoney:
    """The case once the bank answered a recall with `amount_fen` recovered (0: nothing came back)."""
    if money.state in CLOSED:
        raise Conflict("recovery_case_closed", state=money.state)
    if amount_fen < 0:
        raise Conflict("recovery_amount_invalid")
    if money.recovered_fen + amount_fen > money.owed_fen - money.written_off_fen:
        raise Conflict("recovery_exceeds_owed", owed=yuan(money.outstanding_fen))
    recovered = CaseMoney(money.state, money.owed_fen, money.recovered_fen + amount_fen, money.written_off_fen)
    return CaseMoney(settled_state(recovered), money.owed_fen, recovered.recovered_fen, money.written_off_fen)


def recall_amount(money: CaseMoney) -> int | None:
    """What a recall asks the bank for: what is outstanding; None when the case is not recallable."""
    if money.state not in RECALLABLE or money.outstanding_fen == 0:
        return None
    return money.outstanding_fen


def check_write_off_request(money: CaseMoney, recall_waiting: bool) -> None:
    """A write-off may be asked for an open case with money outstanding and no recall in flight
    (the bank's answer may yet bring the money back)."""
    if money.state in CLOSED:
        raise Conflict("recovery_case_closed", state=money.state)
    if recall_waiting:
        raise Conflict("recall_outstanding")
    if money.outstanding_fen == 0:
        raise Conflict("nothing_to_write_off")


def written_off(money: CaseMoney, asked_by: str | None, approver: str) -> CaseMoney:
    """The case once a second administrator approves the write-off asked by the first."""
    if asked_by is None:
        raise Conflict("write_off_not_asked")
    if asked_by == approver:
        raise Forbidden("write_off_needs_second_admin")
    if money.state in CLOSED:
        raise Conflict("recovery_case_closed", state=money.state)
    return CaseMoney(WRITTEN_OFF, money.owed_fen, money.recovered_fen, money.outstanding_fen)


def parse_yuan(text: str) -> int | None:
    """Exact fen from a bank's decimal yuan ('3500', '3500.5', '3500.01'); None when it is not one."""
    found = _YUAN.fullmatch(text.strip())
    if found is None:
        return None
    whole, cents = found.group(1), (found.group(2) or "").ljust(2, "0")
    return int(whole) * 100 + int(cents)
