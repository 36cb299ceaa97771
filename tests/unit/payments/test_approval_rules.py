"""Maker-checker on disbursement runs and the re-payment of returned payments: the pure rules."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta

import pytest

from core.errors import Conflict, Forbidden
from payments.disbursement.approval import Signatures, approve, bank_file_available, release
from payments.disbursement.rules import PaymentFact, ReturnedPayment, repay_due, statement

ALICE, BOB, CAROL, CLI = "admin:a", "admin:b", "admin:c", "system:cli"


def _refused(kind: type[Exception], code: str, call: Callable[[], object]) -> None:
    with pytest.raises(kind) as caught:
        call()
    assert caught.value.args[0] == code


def test_a_run_is_approved_by_anyone_but_its_starter_and_once() -> None:
    done = Signatures("completed", ALICE)
    assert approve(done, BOB) is True
    _refused(Forbidden, "approval_by_requester", lambda: approve(done, ALICE))
    _refused(Forbidden, "approval_needs_a_person", lambda: approve(done, CLI))
    _refused(Conflict, "disbursement_running", lambda: approve(Signatures("running", ALICE), BOB))
    approved = Signatures("approved", ALICE, BOB)
    assert approve(approved, BOB) is False  # the same approval again: nothing to record
    _refused(Conflict, "disbursement_already_approved", lambda: approve(approved, CAROL))
    assert approve(Signatures("released", ALICE, BOB, ALICE), BOB) is False


def test_a_release_needs_two_people_among_starter_approver_and_releaser() -> None:
    by_person = Signatures("approved", ALICE, BOB)
    assert release(by_person, ALICE) is True  # the starter
    assert release(by_person, BOB) is True  # the approver: Alice started it, two people signed
    assert release(by_person, CAROL) is True
    by_system = Signatures("approved", CLI, BOB)
    assert release(by_system, CAROL) is True
    _refused(Forbidden, "release_needs_two_people", lambda: release(by_system, BOB))  # Bob alone
    _refused(Forbidden, "release_needs_two_people", lambda: release(by_person, CLI))
    _refused(Conflict, "disbursement_not_approved", lambda: release(Signatures("completed", ALICE), BOB))
    _refused(Conflict, "disbursement_running", lambda: release(Signatures("running", ALICE), BOB))
    assert release(Signatures("released", ALICE, BOB, ALICE), CAROL) is False
    assert release(Signatures("reconciled", ALICE, BOB, ALICE), ALICE) is False


@pytest.mark.parametrize(
    ("state", "code"),
    [
        ("running", "disbursement_running"),
        ("completed", "disbursement_not_approved"),
        ("approved", "disbursement_not_released"),
    ],
)
def test_the_bank_file_waits_for_the_release(state: str, code: str) -> None:
    _refused(Conflict, code, lambda: bank_file_available(state))


@pytest.mark.parametrize("state", ["released", "reconciled"])
def test_the_bank_file_of_a_released_run(state: str) -> None:
    bank_file_available(state)


RETURNED = datetime(2026, 12, 20, 9, tzinfo=UTC)


def test_a_returned_payment_is_paid_again_once_the_account_is_corrected() -> None:
    closed, new = "6222020200112233445", "6222020200998877665"
    assert repay_due(ReturnedPayment(closed, RETURNED, new))  # the import (or an admin) changed it
    assert not repay_due(ReturnedPayment(closed, RETURNED, closed))  # nothing changed: it would bounce again
    later, earlier = RETURNED + timedelta(days=3), RETURNED - timedelta(days=3)
    assert repay_due(ReturnedPayment(closed, RETURNED, closed, (closed, later)))  # reopened, confirmed after
    assert not repay_due(ReturnedPayment(closed, RETURNED, closed, (closed, earlier)))  # confirmed before it bounced
    # Confirmed, then the import put back an account that differs from the confirmed one: only
    # "differs from the one sent" can count, and here it does not.
    assert not repay_due(ReturnedPayment(closed, RETURNED, closed, (new, later)))


def test_a_statement_shows_the_return_in_its_month_and_the_repayment_in_the_run_month() -> None:
    facts = [
        PaymentFact(date(2026, 11, 1), "monthly", "paid", 350000, bank_status="returned", bank_return_reason="closed"),
        PaymentFact(date(2026, 12, 1), "monthly", "paid", 350000, bank_status="pending"),
        PaymentFact(date(2026, 12, 1), "repay", "paid", 350000, covers=(date(2026, 11, 1),), bank_status="pending"),
    ]
    nov, dec = statement(2026, facts)[10:]
    assert (nov.returned_fen, nov.return_reasons, nov.paid_fen) == (350000, ["closed"], 0)
    assert (dec.paid_fen, dec.repaid_fen, dec.repaid_covers) == (350000, 350000, [date(2026, 11, 1)])
    returned_again = PaymentFact(date(2026, 12, 1), "repay", "paid", 350000, bank_status="returned")
    assert statement(2026, [returned_again])[11].returned_fen == 350000  # a returned re-payment reached nobody
