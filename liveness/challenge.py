"""Which challenges are drawn, and how often: the one policy the API draws by and the evaluation
weighs its error rates by. Pure."""

from __future__ import annotations

import itertools
import random
from collections.abc import Sequence

from liveness.model import Action

HEAD_TURNS = frozenset({Action.TURN_LEFT, Action.TURN_RIGHT})

Challenge = tuple[Action, ...]


def odds(allowed: Sequence[Action], min_n: int, max_n: int) -> dict[Challenge, float]:
    """Each challenge's probability: a length drawn uniformly from min_n..max_n (within what is
    allowed), then every ordered selection of that many distinct actions alike, except that a
    challenge of two actions or more holds a head turn wherever turns are allowed. A blink or an
    open mouth can be drawn on a photo or painted onto it; only a turn shows the depth of a head.
    """
    low, high = min(min_n, len(allowed)), min(max_n, len(allowed))
    turns_allowed = bool(HEAD_TURNS & set(allowed))
    table: dict[Challenge, float] = {}
    for length in range(low, high + 1):
        drawn = [
            challenge
            for challenge in itertools.permutations(allowed, length)
            if length < 2 or not turns_allowed or HEAD_TURNS & set(challenge)
        ]
        for challenge in drawn:
            table[challenge] = table.get(challenge, 0.0) + 1 / ((high - low + 1) * len(drawn))
    return table


def draw(allowed: Sequence[Action], min_n: int, max_n: int, rng: random.Random) -> Challenge:
    """One challenge, by `odds`; the random order is what defeats a pre-recorded video, so the
    API draws with the system's CSPRNG."""
    table = odds(allowed, min_n, max_n)
    return rng.choices(list(table), weights=list(table.values()))[0]
