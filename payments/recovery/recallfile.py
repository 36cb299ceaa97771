"""The recall file sent to the paying bank and the answers it sends back. Pure, no I/O.

The recall file has the shape of a run's payment order (`reference,name,account,amount` and a
`TRAILER,count,total` line; payments.disbursement.bankfile writes both): each line asks the bank to
take the amount back from the account the pension was paid into. The bank answers each reference
once with what it recovered: `reference,recovered,reason` (`3500.00,` in full, `1200.00,balance
short`, `0.00,account closed`). Unlike the payment order's returns, answers land line by line: a bad
line is reported and the good ones still count.
"""

from __future__ import annotations

import csv
import io
import uuid
from dataclasses import dataclass

from payments.disbursement.bankfile import LineError
from payments.recovery.rules import parse_yuan

ANSWER_HEADER = ("reference", "recovered", "reason")
MAX_ANSWER_LINES = 1_000_000


@dataclass(frozen=True)
class RecallAnswer:
    line: int
    reference: uuid.UUID
    recovered_fen: int
    reason: str | None


def parse_answers(text: str) -> tuple[list[RecallAnswer], list[LineError]]:
    """Every line the bank answered, and every line that cannot be read."""
    rows = list(csv.reader(io.StringIO(text.lstrip("\ufeff"))))
    if not rows or tuple(cell.strip().lower() for cell in rows[0]) != ANSWER_HEADER:
        return [], [LineError(1, "the first line must be: " + ",".join(ANSWER_HEADER))]
    if len(rows) - 1 > MAX_ANSWER_LINES:
        return [], [LineError(1, f"more than {MAX_ANSWER_LINES} lines")]
    answers: list[RecallAnswer] = []
    errors: list[LineError] = []
    seen: dict[uuid.UUID, int] = {}
    for number, row in enumerate(rows[1:], start=2):
        if not any(cell.strip() for cell in row):
            continue
        if len(row) != len(ANSWER_HEADER):
            errors.append(LineError(number, f"expected {len(ANSWER_HEADER)} fields, found {len(row)}"))
            continue
        ref_text, amount_text, reason = (cell.strip() for cell in row)
        try:
            reference = uuid.UUID(ref_text)
        except ValueError:
            errors.append(LineError(number, f"the reference {ref_text[:40]!r} is not one this system issued"))
            continue
        amount = parse_yuan(amount_text)
        if amount is None:
            errors.append(LineError(number, "the amount recovered must be yuan like 3500.00"))
            continue
        if reference in seen:
            errors.append(LineError(number, f"the same reference as line {seen[reference]}"))
            continue
        seen[reference] = number
        answers.append(RecallAnswer(number, reference, amount, reason[:200] or None))
    return answers, errors
