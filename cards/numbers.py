"""E-card numbers: an 11-digit serial and a Luhn check digit, so a mistyped digit is caught."""

from __future__ import annotations


def luhn_check_digit(digits: str) -> str:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch)
        if i % 2 == 0:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return str((10 - total % 10) % 10)


def card_number(sequence: int) -> str:
    serial = f"{sequence:011d}"
    return serial + luhn_check_digit(serial)
