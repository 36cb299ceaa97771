"""Capture quality verdicts from clip summaries."""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import pytest

from liveness import quality
from liveness.model import Reason

GOOD = quality.Capture(
    duration_s=5.0,
    frames=75,
    seen_share=0.95,
    face_px=250.0,
    short_side_px=720.0,
    brightness=110.0,
    sharpness=150.0,
    frame_brightness=100.0,
)


def test_a_good_capture_has_no_problem() -> None:
    assert quality.assess(GOOD) == ()


@pytest.mark.parametrize(
    ("change", "reasons"),
    [
        ({"duration_s": 0.6}, (Reason.TOO_SHORT,)),
        ({"frames": 3}, (Reason.TOO_SHORT,)),
        ({"face_px": 150.0}, (Reason.FACE_TOO_SMALL,)),  # a fifth of the frame: a screen held up, or too far
        ({"face_px": 45.0, "short_side_px": 120.0}, (Reason.FACE_TOO_SMALL,)),  # too few pixels anyway
        ({"brightness": 30.0}, (Reason.TOO_DARK,)),
        ({"sharpness": 20.0}, (Reason.TOO_BLURRED,)),
        ({"seen_share": 0.4}, (Reason.FACE_LOST,)),
        ({"brightness": 30.0, "sharpness": 20.0}, (Reason.TOO_DARK, Reason.TOO_BLURRED)),
    ],
)
def test_capture_problems(change: dict[str, Any], reasons: tuple[Reason, ...]) -> None:
    assert quality.assess(dataclasses.replace(GOOD, **change)) == reasons


def test_no_face_in_the_dark_is_darkness_and_in_the_light_is_not_a_capture_problem() -> None:
    nothing = dataclasses.replace(GOOD, seen_share=0.0, face_px=math.nan, brightness=math.nan, sharpness=math.nan)
    assert quality.assess(dataclasses.replace(nothing, frame_brightness=12.0)) == (Reason.TOO_DARK,)
    assert quality.assess(nothing) == ()


def test_a_short_clip_is_too_short_whatever_else() -> None:
    assert quality.assess(dataclasses.replace(GOOD, duration_s=0.5, brightness=10.0)) == (Reason.TOO_SHORT,)


@pytest.mark.parametrize(
    ("face_px", "brightness", "sharpness", "reasons"),
    [
        (60.0, 110.0, 150.0, ()),
        (40.0, 110.0, 150.0, (Reason.FACE_TOO_SMALL,)),
        (60.0, 30.0, 20.0, (Reason.TOO_DARK, Reason.TOO_BLURRED)),
        (60.0, math.nan, math.nan, ()),  # not measured: nothing to hold against it
    ],
)
def test_face_problems_of_a_photo(
    face_px: float, brightness: float, sharpness: float, reasons: tuple[Reason, ...]
) -> None:
    assert quality.face_problems(face_px, quality.MIN_FACE_PX, brightness, sharpness) == reasons


def test_a_clip_holds_its_face_to_a_share_of_the_frame_a_photo_does_not() -> None:
    assert quality.face_problems(150.0, quality.MIN_FACE_PX, 110.0, 150.0) == ()
    assert quality.assess(dataclasses.replace(GOOD, face_px=150.0)) == (Reason.FACE_TOO_SMALL,)
