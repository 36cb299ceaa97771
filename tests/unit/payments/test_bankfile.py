import csv
import io
import uuid

import pytest

from payments.disbursement.bankfile import OrderLine, PaymentOrder, parse_returns


def test_order_has_a_trailer_with_count_and_exact_total() -> None:
    order = PaymentOrder()
    refs = [uuid.uuid4() for _ in range(3)]
    text = order.header()
    for ref, amount in zip(refs, (350000, 1, 99), strict=True):
        text += order.line(OrderLine(ref, "张*", "6222020200112233445", amount))
    text += order.trailer()
    rows = list(csv.reader(io.StringIO(text)))
    assert rows[0] == ["reference", "name", "account", "amount"]
    assert rows[1] == [str(refs[0]), "张*", "6222020200112233445", "3500.00"]
    assert rows[2][3] == "0.01"
    assert rows[-1] == ["TRAILER", "3", "3501.00"]


def test_an_account_that_is_not_a_number_never_reaches_the_file() -> None:
    with pytest.raises(ValueError, match="bank account"):
        PaymentOrder().line(OrderLine(uuid.uuid4(), "x", "6222,=cmd|' /C calc'!A0", 1))


def test_return_file_lines_are_checked_one_by_one() -> None:
    a, b = uuid.uuid4(), uuid.uuid4()
    good, errors = parse_returns(f"reference,result,reason\n{a},paid,\n{b},returned,account closed\n")
    assert errors == []
    assert [(x.reference, x.result, x.reason) for x in good] == [(a, "paid", None), (b, "returned", "account closed")]

    text = "\n".join(
        [
            "reference,result,reason",
            f"{a},paid,",  # 2: fine
            "not-a-uuid,paid,",  # 3
            f"{b},bounced,",  # 4
            f"{b},returned,",  # 5: no reason
            f"{a},returned,closed",  # 6: same reference again
            f"{b},paid",  # 7: two fields
        ]
    )
    _, errors = parse_returns(text)
    assert [e.line for e in errors] == [3, 4, 5, 6, 7]
    assert "same reference as line 2" in errors[3].reason


def test_a_file_without_the_header_is_refused_whole() -> None:
    _, errors = parse_returns(f"{uuid.uuid4()},paid,\n")
    assert [e.line for e in errors] == [1]
    _, errors = parse_returns("")
    assert [e.line for e in errors] == [1]
