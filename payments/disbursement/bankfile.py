"""The paying bank's files: the payment order a run exports, and the return file the bank sends back.

Amounts are exact decimal yuan. The order ends with a trailer carrying the count and the total, so
the bank can tell a truncated file from a whole one. A return file is taken whole or not at all:
every line is checked first and any bad line refuses the file with a per-line report.
"""

from __future__ import annotations

import csv
import io
import re
import uuid
from collections.abc import Iterable
from dataclasses import dataclass

from payments.disbursement.rules import yuan

ORDER_HEADER = ("reference", "name", "account", "amount")
RETURN_HEADER = ("reference", "result", "reason")
RESULTS = ("paid", "returned")
MAX_RETURN_LINES = 2_000_000
_ACCOUNT = re.compile(r"[0-9]{8,32}")


@dataclass(frozen=True)
class OrderLine:
    reference: uuid.UUID
    masked_name: str
    account: str
    amount_fen: int


class PaymentOrder:
    """The payment order as CSV text, a line at a time: the header, one line per payment, and
    `TRAILER,<count>,<total>` last."""

    def __init__(self) -> None:
        self._out = io.StringIO()
        self._writer = csv.writer(self._out, lineterminator="\n")
        self.count = 0
        self.total_fen = 0

    def header(self) -> str:
        return self._row(ORDER_HEADER)

    def line(self, line: OrderLine) -> str:
        if not _ACCOUNT.fullmatch(line.account):
            raise ValueError(f"payment {line.reference}: the bank account is not a card or account number")
        self.count += 1
        self.total_fen += line.amount_fen
        return self._row((str(line.reference), line.masked_name, line.account, yuan(line.amount_fen)))

    def trailer(self) -> str:
        return self._row(("TRAILER", self.count, yuan(self.total_fen)))

    def _row(self, cells: Iterable[object]) -> str:
        self._writer.writerow(cells)
        text = self._out.getvalue()
        self._out.seek(0)
        self._out.truncate()
        return text


@dataclass(frozen=True)
class ReturnLine:
    line: int
    reference: uuid.UUID
    result: str  # paid | returned
    reason: str | None


@dataclass(frozen=True)
class LineError:
    line: int
    reason: str


def parse_returns(text: str) -> tuple[list[ReturnLine], list[LineError]]:
    """The bank's answers, and every line that cannot be taken (an empty error list means all can)."""
    rows = list(csv.reader(io.StringIO(text.lstrip("\ufeff"))))
    if not rows or tuple(cell.strip().lower() for cell in rows[0]) != RETURN_HEADER:
        return [], [LineError(1, "the first line must be: " + ",".join(RETURN_HEADER))]
    if len(rows) - 1 > MAX_RETURN_LINES:
        return [], [LineError(1, f"more than {MAX_RETURN_LINES} lines")]
    answers: list[ReturnLine] = []
    errors: list[LineError] = []
    seen: dict[uuid.UUID, int] = {}
    for number, row in enumerate(rows[1:], start=2):
        if not any(cell.strip() for cell in row):
            continue
        if len(row) != len(RETURN_HEADER):
            errors.append(LineError(number, f"expected {len(RETURN_HEADER)} fields, found {len(row)}"))
            continue
        ref_text, result, reason = (cell.strip() for cell in row)
        try:
            reference = uuid.UUID(ref_text)
        except ValueError:
            errors.append(LineError(number, f"the reference {ref_text[:40]!r} is not one this system issued"))
            continue
        if result not in RESULTS:
            errors.append(LineError(number, "the result must be 'paid' or 'returned'"))
            continue
        if (result == "returned") != bool(reason):
            errors.append(LineError(number, "a returned payment needs a reason; a paid one has none"))
            continue
        if reference in seen:
            errors.append(LineError(number, f"the same reference as line {seen[reference]}"))
            continue
        seen[reference] = number
        answers.append(ReturnLine(number, reference, result, reason[:200] or None))
    return answers, errors
