"""Recovery cases' money and states, and the bank's answer file: pure rules, no I/O."""

from __future__ import annotations

import uuid

import pytest
from hypothesis import given
from hypothesis import strategies as st

from core.errors import Conflict, Forbidden
from payments.recovery import rules
from payments.recovery.recallfile import parse_answers
from payments.recovery.rules import CaseMoney


def test_the_bank_recovers_in_part_then_whole() -> None:
    case = CaseMoney(rules.RECALL_REQUESTED, owed_fen=700000, recovered_fen=0)
    part = rules.after_recovery(case, 300000)
    assert (part.state, part.recovered_fen, part.outstanding_fen) == (rules.RECOVERED_PARTLY, 300000, 400000)
    assert rules.recall_amount(part) == 400000
    whole = rules.after_recovery(part, 400000)
    assert (whole.state, whole.outstanding_fen) == (rules.RECOVERED, 0)
    assert rules.recall_amount(whole) is None


def test_nothing_recovered_leaves_a_case_opened_or_recovered_in_part() -> None:
    assert rules.after_recovery(CaseMoney(rules.RECALL_REQUESTED, 100, 0), 0).state == rules.OPENED
    assert rules.after_recovery(CaseMoney(rules.RECALL_REQUESTED, 100, 40), 0).state == rules.RECOVERED_PARTLY


def test_more_than_owed_or_a_closed_case_is_refused() -> None:
    with pytest.raises(Conflict) as raised:
        rules.after_recovery(CaseMoney(rules.RECOVERED_PARTLY, 700000, 300000), 400001)
    assert (raised.value.code, raised.value.params) == ("recovery_exceeds_owed", {"owed": "4000.00"})
    for closed in (rules.RECOVERED, rules.WRITTEN_OFF, rules.CANCELLED):
        with pytest.raises(Conflict, match="recovery_case_closed"):
            rules.after_recovery(CaseMoney(closed, 100, 0), 1)


@given(st.integers(1, 10**9), st.lists(st.integers(0, 10**9), max_size=8))
def test_recovered_never_passes_owed(owed: int, answers: list[int]) -> None:
    case = CaseMoney(rules.RECALL_REQUESTED, owed, 0)
    for amount in answers:
        try:
            case = rules.after_recovery(case, amount)
        except Conflict:
            continue
        assert 0 <= case.recovered_fen <= owed
        assert (case.state == rules.RECOVERED) == (case.recovered_fen == owed)
        if case.state == rules.RECOVERED:
            break


def test_a_write_off_needs_a_second_administrator() -> None:
    case = CaseMoney(rules.RECOVERED_PARTLY, 700000, 300000)
    rules.check_write_off_request(case, recall_waiting=False)
    with pytest.raises(Conflict, match="recall_outstanding"):
        rules.check_write_off_request(case, recall_waiting=True)
    with pytest.raises(Conflict, match="write_off_not_asked"):
        rules.written_off(case, None, "admin:b")
    with pytest.raises(Forbidden, match="write_off_needs_second_admin"):
        rules.written_off(case, "admin:a", "admin:a")
    done = rules.written_off(case, "admin:a", "admin:b")
    assert (done.state, done.written_off_fen, done.outstanding_fen) == (rules.WRITTEN_OFF, 400000, 0)
    with pytest.raises(Conflict, match="nothing_to_write_off"):
        rules.check_write_off_request(CaseMoney(rules.OPENED, 0, 0), recall_waiting=False)


def test_settled_state_from_the_money_alone() -> None:
    assert rules.settled_state(CaseMoney(rules.OPENED, 100, 0)) == rules.OPENED
    assert rules.settled_state(CaseMoney(rules.OPENED, 100, 50)) == rules.RECOVERED_PARTLY
    assert rules.settled_state(CaseMoney(rules.OPENED, 100, 100)) == rules.RECOVERED


@pytest.mark.parametrize(
    ("text", "fen"),
    [("3500", 350000), ("3500.5", 350050), ("3500.01", 350001), (" 0.00 ", 0), ("0", 0)],
)
def test_yuan_are_read_exactly(text: str, fen: int) -> None:
    assert rules.parse_yuan(text) == fen


@pytest.mark.parametrize("text", ["", "-1.00", "1.001", "1e3", "01.00", "1,000.00", "３５"])
def test_what_is_not_yuan_is_refused(text: str) -> None:
    assert rules.parse_yuan(text) is None


def test_the_answer_file_reports_each_bad_line() -> None:
    ref = uuid.uuid4()
    answers, errors = parse_answers(
        "reference,recovered,reason\n"
        f"{ref},1200.00,balance short\n"
        "not-a-uuid,1.00,\n"
        f"{uuid.uuid4()},lots,\n"
        f"{ref},1200.00,\n"
        f"{uuid.uuid4()},1.00\n"
        "\n"
    )
    assert [(a.line, a.reference, a.recovered_fen, a.reason) for a in answers] == [(2, ref, 120000, "balance short")]
    assert [e.line for e in errors] == [3, 4, 5, 6]
    assert "same reference as line 2" in errors[2].reason
    assert parse_answers("reference,result,reason\n")[1][0].line == 1
