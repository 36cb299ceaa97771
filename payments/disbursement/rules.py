"""Pension payment rules: periods, the pay date, who is paid or withheld, and the yearly statement.

Pure functions over plain data. The disbursement SQL applies the same eligibility rule to whole
batches at once; `withheld_reason` is the one-person form (explanations, reminders, tests).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date, datetime

from core.pension import pay_date as pay_date  # re-exported

# Why a month was not paid; each is back-paid by the first run that pays the person again.
NOT_CERTIFIED = "not_certified"  # never passed a face check
CERTIFICATION_EXPIRED = "certification_expired"  # the last pass is more than 12 months old at the pay date
REPORTED_DECEASED = "reported_deceased"  # a death report, later reversed, stopped the payment

REPAY = "repay"  # the kind of record that pays returned payments again

# Years and pay periods (API paths and bodies, the CLI, the allocation file) are read here, in ASCII
# digits only: `\d` and int() also take full-width (２０２６), Arabic-Indic and other Unicode digits,
# and int() a sign, spaces and underscores besides.
YEARS = range(2000, 2101)
PERIOD_PATTERN = r"^[0-9]{4}-[0-9]{2}$"  # also the API schema's, so its documentation says the same
_YEAR = re.compile(r"[0-9]{4}")
_PERIOD = re.compile(PERIOD_PATTERN)


def parse_year(text: str) -> int:
    """`2026` -> 2026; ValueError for anything else, or a year outside YEARS."""
    if not _YEAR.fullmatch(text) or int(text) not in YEARS:
        raise ValueError(f"a year is written YYYY, from {YEARS[0]} to {YEARS[-1]}, got {text!r}")
    return int(text)


def parse_period(text: str) -> date:
    """`2026-12` -> 2026-12-01; ValueError for anything else."""
    text = text.strip()
    if _PERIOD.fullmatch(text) is None:
        raise ValueError(f"a period is written YYYY-MM, got {text!r}")
    year, month = int(text[:4]), int(text[5:])
    if year not in YEARS or not 1 <= month <= 12:
        raise ValueError(f"no such month: {text!r}")
    return date(year, month, 1)


def withheld_reason(certified_until: date | None, on: date) -> str | None:
    """None when a living person certified until `on` (or later) is paid; else why the month is withheld."""
    if certified_until is None:
        return NOT_CERTIFIED
    if certified_until < on:
        return CERTIFICATION_EXPIRED
    return None


def yuan(fen: int) -> str:
    """Exact decimal yuan for files and messages: 350001 -> '3500.01' (never through a float)."""
    sign = "-" if fen < 0 else ""
    whole, cents = divmod(abs(fen), 100)
    return f"{sign}{whole}.{cents:02d}"


@dataclass(frozen=True)
class PaymentFact:
    """One pension payment as the statement needs it."""

    period: date
    kind: str  # monthly | back_pay | repay
    status: str  # paid | withheld
    amount_fen: int
    withheld_reason: str | None = None
    covers: tuple[date, ...] = ()
    bank_status: str | None = None
    bank_return_reason: str | None = None
    to_recover_fen: int = 0


@dataclass
class StatementMonth:
    month: int
    paid_fen: int = 0
    withheld_fen: int = 0
    withheld_reasons: list[str] = field(default_factory=list)
    back_pay_fen: int = 0
    back_pay_covers: list[date] = field(default_factory=list)
    repaid_fen: int = 0
    repaid_covers: list[date] = field(default_factory=list)
    returned_fen: int = 0
    return_reasons: list[str] = field(default_factory=list)
    to_recover_fen: int = 0


def statement(year: int, facts: Iterable[PaymentFact]) -> list[StatementMonth]:
    """Twelve months of what was paid, withheld, back-paid, paid again after a return, returned by the
    bank and is to be recovered.

    A returned payment counts as returned, not paid: the money did not reach the person. Its re-payment
    counts in the month of the run that made it (as a back-payment does), naming the months it covers.
    """
    months = [StatementMonth(m) for m in range(1, 13)]
    for fact in facts:
        if fact.period.year != year:
            continue
        line = months[fact.period.month - 1]
        line.to_recover_fen += fact.to_recover_fen
        if fact.status == "withheld":
            line.withheld_fen += fact.amount_fen
            line.withheld_reasons.append(fact.withheld_reason or NOT_CERTIFIED)
        elif fact.bank_status == "returned":
            line.returned_fen += fact.amount_fen
            line.return_reasons.append(fact.bank_return_reason or "")
        elif fact.kind == "back_pay":
            line.back_pay_fen += fact.amount_fen
            line.back_pay_covers.extend(fact.covers)
        elif fact.kind == REPAY:
            line.repaid_fen += fact.amount_fen
            line.repaid_covers.extend(fact.covers)
        else:
            line.paid_fen += fact.amount_fen
    return months


@dataclass(frozen=True)
class ReturnedPayment:
    """A payment the bank returned, beside the person's account on file now (accounts in clear: the
    service decrypts them for this decision and keeps them nowhere)."""

    sent_to: str  # the account the payment was sent to
    returned_at: datetime
    on_file: str  # the entitlement's account now
    confirmed: tuple[str, datetime] | None = None  # an administrator's confirmation: account, when


def repay_due(payment: ReturnedPayment) -> bool:
    """Whether the account was corrected since the return, so the money can go out again.

    Corrected: the account on file differs from the one the bank returned the payment from (an import
    or an administrator changed it), or an administrator confirmed the account on file after the
    return (the same account, reopened). A confirmation the import has since overwritten counts no more.
    """
    if payment.on_file != payment.sent_to:
        return True
    if payment.confirmed is None:
        return False
    account, at = payment.confirmed
    return account == payment.on_file and at > payment.returned_at
