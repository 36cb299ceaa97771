"""GB 11643 resident identity numbers: check character, validation, birth date, normalisation."""

from __future__ import annotations

import random
from datetime import date

import pytest

from core.national_id import birth_date_of, check_character, normalise, validate

PREFIXES = ["11010519491231002", "44030419800101123", "31011519951231456", "11010120000229123", "51010719630805004"]


def make_id(first17: str) -> str:
    return first17 + check_character(first17)


@pytest.mark.parametrize(
    ("first17", "expected"),
    [
        ("11010519491231002", "X"),
        ("44030419800101123", "9"),
        ("31011519951231456", "9"),
        ("11010120000229123", "X"),
        ("51010719630805004", "5"),
    ],
)
def test_check_character(first17: str, expected: str) -> None:
    assert check_character(first17) == expected


def test_check_character_by_hand() -> None:
    # Sum of digit * weight mod 11 indexes "10X98765432".
    weights = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
    first17 = "44030419800101123"
    total = sum(int(c) * w for c, w in zip(first17, weights, strict=True))
    assert check_character(first17) == "10X98765432"[total % 11]


def test_check_character_is_the_digit_by_digit_sum_for_any_digits() -> None:
    weights = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
    rng = random.Random(11643)
    for first17 in ["0" * 17, "9" * 17, *("".join(rng.choices("0123456789", k=17)) for _ in range(2000))]:
        total = sum(int(c) * w for c, w in zip(first17, weights, strict=True))
        assert check_character(first17) == "10X98765432"[total % 11], first17


def test_published_example_is_valid() -> None:
    assert validate("11010519491231002X") is None


@pytest.mark.parametrize("first17", PREFIXES)
def test_computed_ids_are_valid(first17: str) -> None:
    assert validate(make_id(first17)) is None


@pytest.mark.parametrize(
    "value", ["", "1101051949123100", "11010519491231002", "11010519491231002X0", "110105491231002"]
)
def test_wrong_length(value: str) -> None:
    assert validate(value) == "must be 18 characters"


@pytest.mark.parametrize(
    "value",
    [
        "11010519491231002x",  # lower-case x is only accepted after normalise
        "1101051949123100AX",
        "A1010519491231002X",
        "11010519491231002Y",
        "110105 9491231002X",
        "-1010519491231002X",
    ],
)
def test_bad_characters(value: str) -> None:
    assert validate(value) == "must be 17 digits followed by a digit or X"


@pytest.mark.parametrize(
    "birth",
    ["19490230", "19491301", "19490000", "19490100", "19000229", "20230229", "19490431"],
)
def test_impossible_birth_date(birth: str) -> None:
    national_id = make_id("110105" + birth + "002")
    assert validate(national_id) == "contains an impossible birth date"


def test_leap_day_is_possible() -> None:
    assert validate(make_id("110105" + "20000229" + "002")) is None


@pytest.mark.parametrize("first17", PREFIXES)
def test_every_wrong_check_character_is_rejected(first17: str) -> None:
    good = check_character(first17)
    for wrong in "0123456789X":
        if wrong != good:
            assert validate(first17 + wrong) == "check digit does not match (GB 11643)"


@pytest.mark.parametrize("first17", PREFIXES)
def test_any_single_digit_change_is_caught(first17: str) -> None:
    national_id = make_id(first17)
    for i in range(17):
        for digit in "0123456789":
            if digit == national_id[i]:
                continue
            changed = national_id[:i] + digit + national_id[i + 1 :]
            assert validate(changed) is not None, changed


@pytest.mark.parametrize("first17", PREFIXES)
def test_adjacent_transpositions_are_caught(first17: str) -> None:
    national_id = make_id(first17)
    for i in range(16):
        if national_id[i] == national_id[i + 1]:
            continue
        swapped = national_id[:i] + national_id[i + 1] + national_id[i] + national_id[i + 2 :]
        assert validate(swapped) is not None, swapped


def test_birth_date_of() -> None:
    assert birth_date_of("11010519491231002X") == date(1949, 12, 31)
    assert birth_date_of(make_id("11010120000229123")) == date(2000, 2, 29)


@pytest.mark.parametrize("value", ["110105194902300021", "110105194913010021", "1101051949", "", "110105ABCDEFGH002X"])
def test_birth_date_of_impossible_or_malformed(value: str) -> None:
    assert birth_date_of(value) is None


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("11010519491231002x", "11010519491231002X"),
        ("  11010519491231002x\n", "11010519491231002X"),
        ("\t440304198001011239 ", "440304198001011239"),
        ("11010519491231002X", "11010519491231002X"),
    ],
)
def test_normalise(raw: str, expected: str) -> None:
    assert normalise(raw) == expected
    assert validate(normalise(raw)) is None


def test_full_width_digits_are_rejected() -> None:
    full_width = "".join(chr(ord(c) + 0xFEE0) for c in "11010519491231002") + "X"
    assert validate(full_width) is not None


def test_superscript_digit_gives_a_reason_not_an_exception() -> None:
    assert validate("²1010519491231002X") == "must be 17 digits followed by a digit or X"
