"""E-card numbers: 11-digit serial plus a Luhn check digit."""

from __future__ import annotations

import pytest

from cards.numbers import card_number, card_numbers, luhn_check_digit


def luhn_valid(number: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(number)):
        d = int(ch)
        if i % 2 == 1:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return total % 10 == 0


SEQUENCES = [0, 1, 9, 42, 1234, 123456789, 10_000_000_000, 99_999_999_999]


def test_helper_against_published_examples() -> None:
    assert luhn_valid("79927398713")
    assert not luhn_valid("79927398710")
    assert luhn_valid("4539578763621486")


def test_luhn_check_digit_published_example() -> None:
    assert luhn_check_digit("7992739871") == "3"


@pytest.mark.parametrize("sequence", SEQUENCES)
def test_card_number_is_12_digits_and_luhn_valid(sequence: int) -> None:
    number = card_number(sequence)
    assert len(number) == 12
    assert number.isdigit()
    assert number[:11] == f"{sequence:011d}"
    assert luhn_valid(number)


def test_luhn_check_digit_of_any_length() -> None:
    assert luhn_check_digit("") == "0"
    for digits in ["0", "9", "18", "453957876362148", "1234567890123456789"]:
        assert luhn_valid(digits + luhn_check_digit(digits)), digits


def test_card_numbers_at_once_are_card_number_each() -> None:
    sequences = [*SEQUENCES, *range(10_000_001, 10_003_001)]
    assert card_numbers(sequences) == [card_number(n) for n in sequences]
    assert card_numbers(sequences) == [f"{n:011d}" + luhn_check_digit(f"{n:011d}") for n in sequences]
    assert card_numbers([]) == []


@pytest.mark.parametrize("sequence", [-1, 100_000_000_000])
def test_a_serial_beyond_eleven_digits_is_refused(sequence: int) -> None:
    with pytest.raises(ValueError, match="11 digits"):
        card_number(sequence)


def test_card_numbers_are_distinct() -> None:
    numbers = {card_number(n) for n in range(2000)}
    assert len(numbers) == 2000


@pytest.mark.parametrize("sequence", SEQUENCES)
def test_any_single_digit_change_breaks_luhn(sequence: int) -> None:
    number = card_number(sequence)
    for i in range(len(number)):
        for digit in "0123456789":
            if digit != number[i]:
                changed = number[:i] + digit + number[i + 1 :]
                assert not luhn_valid(changed), changed


@pytest.mark.parametrize("sequence", SEQUENCES)
def test_adjacent_transpositions_mostly_break_luhn(sequence: int) -> None:
    number = card_number(sequence)
    for i in range(len(number) - 1):
        a, b = number[i], number[i + 1]
        if a == b or {a, b} == {"0", "9"}:  # Luhn cannot see 09 <-> 90
            continue
        swapped = number[:i] + b + a + number[i + 2 :]
        assert not luhn_valid(swapped), swapped
