"""E-card numbers: an 11-digit serial and a Luhn check digit, so a mistyped digit is caught."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

_SERIAL_DIGITS = 11
_PLACES = 10 ** np.arange(_SERIAL_DIGITS - 1, -1, -1, dtype=np.int64)  # most significant first


def _luhn_check_digits(digits: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
    """The Luhn check digit of each row of decimal digits (most significant first)."""
    from_right = digits[:, ::-1]
    doubled = from_right[:, 0::2] * 2  # the check digit goes to the right: the last digit is doubled
    total = (doubled - 9 * (doubled > 9)).sum(axis=1) + from_right[:, 1::2].sum(axis=1)
    checks: npt.NDArray[np.int64] = (10 - total % 10) % 10
    return checks


def luhn_check_digit(digits: str) -> str:
    return str(_luhn_check_digits(np.array([[int(ch) for ch in digits]], dtype=np.int64).reshape(1, -1))[0])


def card_numbers(sequences: Sequence[int]) -> list[str]:
    """The card number of each serial, at once (an import numbers a city's cards in batches)."""
    serials = np.asarray(sequences, dtype=np.int64).reshape(-1)
    if serials.size and (serials.min() < 0 or serials.max() >= 10**_SERIAL_DIGITS):
        raise ValueError(f"a card serial has {_SERIAL_DIGITS} digits")
    checks = _luhn_check_digits(serials[:, None] // _PLACES % 10)
    return [f"{serial:011d}{check}" for serial, check in zip(serials.tolist(), checks.tolist(), strict=True)]


def card_number(sequence: int) -> str:
    return card_numbers([sequence])[0]
