from datetime import date

import pytest

from payments.disbursement.rules import (
    CERTIFICATION_EXPIRED,
    NOT_CERTIFIED,
    PaymentFact,
    parse_period,
    parse_year,
    pay_date,
    statement,
    withheld_reason,
    yuan,
)


def test_periods_are_months() -> None:
    assert parse_period("2026-12") == date(2026, 12, 1)
    assert parse_period(" 2027-01 ") == date(2027, 1, 1)
    for bad in ("2026-13", "2026-00", "26-12", "2026/12", "2026-12-01", "", "1999-12"):
        with pytest.raises(ValueError, match=r"period|month"):
            parse_period(bad)
    assert pay_date(date(2026, 2, 1), 15) == date(2026, 2, 15)


# Full-width, Arabic-Indic and Devanagari digits, which `\d` and int() take for 2026.
UNICODE_YEARS = ("２０２６", "٢٠٢٦", "२०२६")


def test_years_and_periods_are_ascii_digits_only() -> None:
    assert parse_year("2026") == 2026
    for bad in (*UNICODE_YEARS, "+2026", "2_026", " 2026", "2026\n", "1999", "2101", "26", "20260"):
        with pytest.raises(ValueError, match="year"):
            parse_year(bad)
    for bad in (*(f"{year}-12" for year in UNICODE_YEARS), "2026-１２", "+2026-12", "2_026-12"):
        with pytest.raises(ValueError, match=r"period|month"):
            parse_period(bad)


def test_eligibility_is_judged_on_the_pay_date() -> None:
    on = date(2026, 12, 15)
    assert withheld_reason(None, on) == NOT_CERTIFIED
    assert withheld_reason(date(2026, 12, 14), on) == CERTIFICATION_EXPIRED
    assert withheld_reason(date(2026, 12, 15), on) is None  # certified through the pay date itself
    assert withheld_reason(date(2027, 6, 1), on) is None


def test_yuan_is_exact() -> None:
    assert yuan(350001) == "3500.01"
    assert yuan(5) == "0.05"
    assert yuan(0) == "0.00"
    assert yuan(-150) == "-1.50"
    assert yuan(10**15 + 1) == "10000000000000.01"


def test_statement_shows_each_kind_of_month() -> None:
    facts = [
        PaymentFact(date(2026, 1, 1), "monthly", "paid", 100_00),
        PaymentFact(date(2026, 2, 1), "monthly", "withheld", 100_00, withheld_reason=CERTIFICATION_EXPIRED),
        PaymentFact(date(2026, 3, 1), "monthly", "withheld", 100_00, withheld_reason=CERTIFICATION_EXPIRED),
        PaymentFact(date(2026, 4, 1), "monthly", "paid", 100_00, bank_status="pending"),
        PaymentFact(
            date(2026, 4, 1),
            "back_pay",
            "paid",
            200_00,
            covers=(date(2026, 2, 1), date(2026, 3, 1)),
            bank_status="pending",
        ),
        PaymentFact(date(2026, 5, 1), "monthly", "paid", 100_00, bank_status="returned", bank_return_reason="closed"),
        PaymentFact(date(2026, 6, 1), "monthly", "paid", 100_00, bank_status="confirmed", to_recover_fen=100_00),
        PaymentFact(date(2025, 12, 1), "monthly", "paid", 999),  # another year: not on this statement
    ]
    months = statement(2026, facts)
    assert [m.month for m in months] == list(range(1, 13))
    jan, feb, mar, apr, may, jun = months[:6]
    assert (jan.paid_fen, jan.withheld_fen) == (100_00, 0)
    assert (feb.withheld_fen, feb.withheld_reasons) == (100_00, [CERTIFICATION_EXPIRED])
    assert mar.withheld_fen == 100_00
    assert (apr.paid_fen, apr.back_pay_fen, apr.back_pay_covers) == (
        100_00,
        200_00,
        [date(2026, 2, 1), date(2026, 3, 1)],
    )
    assert (may.paid_fen, may.returned_fen, may.return_reasons) == (0, 100_00, ["closed"])
    assert (jun.paid_fen, jun.to_recover_fen) == (100_00, 100_00)
    assert sum(m.paid_fen for m in months) == 300_00
    assert all(m.paid_fen == m.withheld_fen == 0 for m in months[6:])
