"""Payroll approval (maker-checker): who may approve a run, release its payment order to the bank, and
when its bank file may be read. Pure rules over a run's signatures; the service records what they allow.

A run moves running -> completed -> approved -> released -> reconciled. The administrator who started a
run never approves it; the release needs a second person beside the approver: the one who started the
run, or anyone else when the system started it (the CLI, a schedule). Two people, never one, send money.
"""

from __future__ import annotations

from dataclasses import dataclass

from core.errors import Conflict, Forbidden

RUNNING, COMPLETED, APPROVED, RELEASED, RECONCILED = "running", "completed", "approved", "released", "reconciled"
STATES = (RUNNING, COMPLETED, APPROVED, RELEASED, RECONCILED)
_SYSTEM = "system:"  # actors that are no person: the CLI, tests, schedules


@dataclass(frozen=True)
class Signatures:
    state: str
    requested_by: str
    approved_by: str | None = None
    released_by: str | None = None


def is_person(actor: str | None) -> bool:
    return actor is not None and not actor.startswith(_SYSTEM)


def approve(run: Signatures, actor: str) -> bool:
    """True when `actor`'s approval is to be recorded now; False when they approved it already (a
    repeated request changes nothing). Refuses a run still running or approved by someone else (409),
    an approval by the run's starter or by no person (403)."""
    if run.state == RUNNING:
        raise Conflict("disbursement_running")
    if run.state != COMPLETED:
        if run.approved_by == actor:
            return False
        raise Conflict("disbursement_already_approved")
    if not is_person(actor):
        raise Forbidden("approval_needs_a_person")
    if actor == run.requested_by:
        raise Forbidden("approval_by_requester")
    return True


def release(run: Signatures, actor: str) -> bool:
    """True when `actor`'s release is to be recorded now; False when the run is released already.
    Refuses a run not approved yet (409), and a release that would leave one person alone (403)."""
    if run.state == RUNNING:
        raise Conflict("disbursement_running")
    if run.state == COMPLETED:
        raise Conflict("disbursement_not_approved")
    if run.state in (RELEASED, RECONCILED):
        return False
    people = {who for who in (run.requested_by, run.approved_by, actor) if is_person(who)}
    if not is_person(actor) or len(people) < 2:
        raise Forbidden("release_needs_two_people")
    return True


def bank_file_available(state: str) -> None:
    """The payment order is read only once released (it carries full account numbers and is what the
    bank pays from); before that, 409 with what is missing."""
    if state == RUNNING:
        raise Conflict("disbursement_running")
    if state == COMPLETED:
        raise Conflict("disbursement_not_approved")
    if state == APPROVED:
        raise Conflict("disbursement_not_released")
