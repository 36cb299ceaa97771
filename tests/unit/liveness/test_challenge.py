"""The challenge policy: what the API draws and what the evaluation weighs by."""

from __future__ import annotations

import math
import random
from collections import Counter

import pytest

from liveness import challenge
from liveness.model import Action

ALL = tuple(Action)


def test_odds_sum_to_one_with_lengths_alike() -> None:
    table = challenge.odds(ALL, 2, 3)
    assert math.isclose(sum(table.values()), 1.0)
    assert math.isclose(sum(p for c, p in table.items() if len(c) == 2), 0.5)
    assert (Action.BLINK, Action.OPEN_MOUTH) not in table
    assert math.isclose(table[(Action.BLINK, Action.TURN_LEFT)], 0.5 / 10)
    assert math.isclose(table[(Action.TURN_LEFT, Action.BLINK, Action.OPEN_MOUTH)], 0.5 / 24)


def test_odds_of_the_assisted_policy() -> None:
    assert challenge.odds((Action.BLINK,), 1, 1) == {(Action.BLINK,): 1.0}
    assert challenge.odds((Action.BLINK, Action.OPEN_MOUTH), 1, 3) == pytest.approx(
        {
            (Action.BLINK,): 0.25,
            (Action.OPEN_MOUTH,): 0.25,
            (Action.BLINK, Action.OPEN_MOUTH): 0.25,
            (Action.OPEN_MOUTH, Action.BLINK): 0.25,
        }
    )


def test_draws_follow_the_odds() -> None:
    rng = random.Random(3)
    counts = Counter(challenge.draw(ALL, 2, 3, rng) for _ in range(20_000))
    for drawn, p in challenge.odds(ALL, 2, 3).items():
        assert abs(counts[drawn] / 20_000 - p) < 0.01
