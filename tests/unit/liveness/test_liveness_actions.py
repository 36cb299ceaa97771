"""Liveness actions on synthetic landmarks: geometry, baselines, detectors, sequence matching."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pytest

from liveness import actions
from liveness.actions import Landmarks, Signals
from liveness.model import Action, DetectedAction, Reason

FPS = 15.0


def face(ear: float = 0.3, yaw: float = 0.0, mouth: float = 0.0, stretch: float = 0.6) -> Landmarks:
    """A schematic 68-point face with the eye corners 2 apart and the given measures.

    Eye corners at x = -1.3/-0.7 (the person's right eye) and 0.7/1.3 on the line y = 0, so the
    eye distance is 2; brows on y = -0.6, y growing downwards as in images.
    """
    points = np.zeros((68, 2))
    points[0:17] = [(1.6 * math.cos(a), 1.2 + 1.6 * math.sin(a)) for a in np.linspace(math.pi, 0, 17)]
    points[17:22] = [(-1.5 + 0.2 * i, -0.6) for i in range(5)]
    points[22:27] = [(0.7 + 0.2 * i, -0.6) for i in range(5)]
    nose_y = 2 * stretch - 0.6  # the brows are 0.6 above the eye line
    points[27:31] = [(yaw * 2 * i / 3, nose_y * i / 3) for i in range(4)]
    points[31:36] = [(-0.4 + 0.2 * i, nose_y + 0.1) for i in range(5)]
    h = ear * 0.3  # EAR = (2h + 2h) / (2 * 0.6)
    for centre, first in ((-1.0, 36), (1.0, 42)):
        points[first : first + 6] = [
            (centre - 0.3, 0.0),
            (centre - 0.1, -h),
            (centre + 0.1, -h),
            (centre + 0.3, 0.0),
            (centre + 0.1, h),
            (centre - 0.1, h),
        ]
    gap = mouth * 1.6
    points[48:60] = [(-0.8 + 1.6 * i / 11, 2.0 + (0.2 if i % 2 else -0.2)) for i in range(12)]
    points[48], points[54] = (-0.8, 2.0), (0.8, 2.0)
    points[60], points[64] = (-0.6, 2.0), (0.6, 2.0)
    points[61:64] = [(x, 2.0 - gap / 2) for x in (-0.3, 0.0, 0.3)]
    points[65:68] = [(x, 2.0 + gap / 2) for x in (0.3, 0.0, -0.3)]
    return points


def moved(points: Landmarks, scale: float = 1.0, angle: float = 0.0, shift: tuple[float, float] = (0, 0)) -> Landmarks:
    rotation = np.array([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])
    result: Landmarks = points @ rotation.T * scale + np.array(shift)
    return result


def clip(shapes: Sequence[Landmarks | None], turned: Sequence[int | None] | None = None) -> Signals:
    views = turned if turned is not None else [None if shape is None else 0 for shape in shapes]
    return actions.signals([i / FPS for i in range(len(shapes))], shapes, views)


def detect(shapes: Sequence[Landmarks | None], turned: Sequence[int | None] | None = None) -> list[DetectedAction]:
    s = clip(shapes, turned)
    neutral = actions.baseline(s)
    assert neutral is not None
    return actions.detect_actions(s, neutral)


def test_measures_read_back_the_schematic_face() -> None:
    points = face(ear=0.31, yaw=0.2, mouth=0.25, stretch=0.55)
    assert actions.eye_aspect_ratio(points) == pytest.approx(0.31)
    assert actions.yaw(points) == pytest.approx(0.2)
    assert actions.mouth_ratio(points) == pytest.approx(0.25)
    assert actions.stretch(points) == pytest.approx(0.55)


def test_measures_ignore_size_position_and_roll() -> None:
    points = face(ear=0.28, yaw=-0.3, mouth=0.1)
    other = moved(points, scale=87.0, angle=0.4, shift=(300, 200))
    for measure in (actions.eye_aspect_ratio, actions.yaw, actions.mouth_ratio, actions.stretch):
        assert measure(other) == pytest.approx(measure(points))


def test_yaw_is_positive_when_the_nose_moves_to_the_image_right() -> None:
    # Model.Action: in an unmirrored clip, the person's own left is the image's right.
    assert actions.yaw(face(yaw=0.3)) > 0
    assert actions.yaw(face(yaw=-0.3)) < 0


def test_baseline_is_the_neutral_pose_despite_a_long_turn() -> None:
    shapes = [face(yaw=0.05)] * 30 + [face(yaw=0.45)] * 20
    neutral = actions.baseline(clip(shapes))
    assert neutral is not None
    assert neutral.yaw == pytest.approx(0.05)
    assert neutral.ear == pytest.approx(0.3)


def test_baseline_needs_a_frontal_face() -> None:
    assert actions.baseline(clip([None] * 10)) is None
    assert actions.baseline(clip([face()] * 10, turned=[1] * 10)) is None


def test_a_short_dip_of_the_eyes_is_a_blink() -> None:
    shapes = [face()] * 10 + [face(ear=0.18), face(ear=0.12), face(ear=0.24)] + [face()] * 10
    found = detect(shapes)
    assert [a.action for a in found] == [Action.BLINK]
    assert found[0].at_s == pytest.approx(10 / FPS)
    assert found[0].strength == pytest.approx(0.6)


@pytest.mark.parametrize(
    ("dip", "why"),
    [
        ([face(ear=0.24)] * 3, "a replayed screen's eyes only narrow to 0.8 of the baseline"),
        ([face(ear=0.1)] * 12, "eyes closed for 0.8 s are not a blink"),
        ([face(ear=0.1), None, face(ear=0.1)], "a lost face is not a closed eye"),
        ([face(ear=0.15, stretch=0.42)] * 2, "a tilted picture squashes the nose as much as the eyes"),
    ],
)
def test_what_is_not_a_blink(dip: list[Landmarks | None], why: str) -> None:
    assert detect([face()] * 10 + dip + [face()] * 10) == [], why


def test_a_blink_of_a_face_seen_turned_does_not_count() -> None:
    shapes = [face()] * 10 + [face(ear=0.1)] * 2 + [face()] * 10
    turned = [0] * 10 + [1, 1] + [0] * 10
    assert detect(shapes, turned) == []


def test_a_held_turn_is_detected_with_its_direction_and_onset() -> None:
    shapes = [face()] * 10 + [face(yaw=0.35)] * 8 + [face()] * 10 + [face(yaw=-0.3)] * 8 + [face()] * 5
    found = detect(shapes)
    assert [(a.action, round(a.at_s * FPS)) for a in found] == [(Action.TURN_LEFT, 10), (Action.TURN_RIGHT, 28)]
    assert found[0].strength == pytest.approx(0.35)


def test_a_quick_swing_of_the_head_is_not_a_turn() -> None:
    assert detect([face()] * 10 + [face(yaw=0.35)] * 3 + [face()] * 10) == []


def test_the_turned_face_filter_carries_a_turn_past_the_landmarks_reach() -> None:
    # Past ~40 degrees the predictor's "yaw" is noise (here pointing the wrong way) and the
    # detector may lose the face altogether: the turn continues through both.
    shapes: list[Landmarks | None] = [face()] * 10 + [face(yaw=0.3)] + [face(yaw=-0.25)] * 6 + [None] * 4
    shapes += [face()] * 5
    turned = [0] * 10 + [0] + [1] * 6 + [None] * 4 + [0] * 5
    assert [a.action for a in detect(shapes, turned)] == [Action.TURN_LEFT]


def test_the_turned_face_filter_alone_does_not_make_a_turn() -> None:
    shapes = [face()] * 30
    turned = [0] * 10 + [-1] * 10 + [0] * 10
    assert detect(shapes, turned) == []


def test_a_held_open_mouth_is_detected() -> None:
    found = detect([face()] * 10 + [face(mouth=0.4)] * 10 + [face()] * 10)
    assert [(a.action, round(a.at_s * FPS)) for a in found] == [(Action.OPEN_MOUTH, 10)]


def test_speech_is_not_an_open_mouth() -> None:
    syllables = [face(mouth=0.3), face(mouth=0.3), face()] * 5
    assert detect([face()] * 10 + syllables + [face()] * 10) == []


def at(action: Action, seconds: float, lasting: float = 0.5, settling: float | None = 0.2) -> DetectedAction:
    """An action detected at `seconds`, held `lasting`, back to neutral `settling` later (None: never)."""
    settled = None if settling is None else seconds + lasting + settling
    return DetectedAction(action, seconds, 1.0, seconds + lasting, settled)


B, L, R, M = Action.BLINK, Action.TURN_LEFT, Action.TURN_RIGHT, Action.OPEN_MOUTH


@pytest.mark.parametrize(
    ("challenge", "detected", "expected"),
    [
        ([B], [at(B, 1)], None),
        ([L, B], [at(B, 1), at(L, 2), at(B, 3)], None),  # the blink before the turn is a natural one
        ([R, M, L], [at(R, 1), at(B, 2), at(M, 3), at(L, 4)], None),  # natural blinks anywhere
        ([L, R], [at(R, 1), at(L, 2)], Reason.WRONG_ORDER),
        ([L, B], [at(L, 1)], Reason.ACTION_NOT_DETECTED),
        ([M], [], Reason.ACTION_NOT_DETECTED),
        # Exactly the challenge: one action too many, or one done twice, is not it.
        ([L, M], [at(L, 1), at(R, 2), at(M, 3)], Reason.EXTRA_ACTION),
        ([L, M], [at(L, 1), at(M, 2), at(L, 3), at(M, 4)], Reason.EXTRA_ACTION),
        ([B, L, M], [*(at(a, 1 + i) for i, a in enumerate((B, L, R, M) * 2))], Reason.EXTRA_ACTION),
        # A challenged blink falls between the actions around it.
        ([L, B, M], [at(L, 1), at(B, 2), at(M, 3)], None),
        ([L, B, M], [at(B, 0.5), at(L, 1), at(M, 3)], Reason.WRONG_ORDER),
        ([L, B, M], [at(L, 1), at(M, 3), at(B, 4)], Reason.WRONG_ORDER),
        # Each action settles back to neutral before the next, which follows within the window.
        ([L, R], [at(L, 1, settling=None), at(R, 3)], Reason.ACTION_TIMING),
        ([L, R], [at(L, 1, lasting=1.0, settling=0.5), at(R, 2)], Reason.ACTION_TIMING),
        ([L, R], [at(L, 1), at(R, 1.7 + actions.STEP_WINDOW_S + 0.1)], Reason.ACTION_TIMING),
        ([L, R], [at(L, 1), at(R, 1.7 + actions.STEP_WINDOW_S - 0.1)], None),
        ([M, L], [at(M, actions.FIRST_STEP_S + 0.5), at(L, actions.FIRST_STEP_S + 2)], Reason.ACTION_TIMING),
    ],
)
def test_match_challenge(challenge: list[Action], detected: list[DetectedAction], expected: Reason | None) -> None:
    assert actions.match_challenge(challenge, detected) == expected


def test_match_challenge_orders_by_onset_not_by_list_order() -> None:
    detected = [at(L, 5), at(B, 1)]
    assert actions.match_challenge([B, L], detected) is None


def test_a_picture_moved_zoomed_and_tilted_has_no_motion() -> None:
    still = face()
    shapes = []
    for i in range(40):
        tilt = np.array([[1.0, 0.0], [0.0, 1 - 0.2 * math.sin(i / 6)]])  # a photo tilted back and forth
        shapes.append(
            moved(still @ tilt.T, scale=90 + 10 * math.sin(i / 5), angle=0.1 * math.sin(i / 4), shift=(i, 2 * i))
        )
    assert actions.motion(shapes) < 1e-9 < actions.MIN_MOTION


def test_a_live_face_deforms() -> None:
    shapes = [moved(face(yaw=0.3 * math.sin(i / 5), mouth=0.3 * (i % 10 < 4)), scale=90) for i in range(40)]
    assert actions.motion(shapes) > actions.MIN_MOTION


def test_motion_needs_a_few_frames() -> None:
    assert math.isnan(actions.motion([face(), face()]))


def _turned_in_depth(points: Landmarks, angle: float) -> Landmarks:
    """The face turned about its vertical axis, its nose standing out of it and its outline back."""
    depth = np.zeros(68)
    depth[27:36] = [0.3, 0.6, 0.9, 1.2, 0.8, 0.9, 1.0, 0.9, 0.8]  # the nose
    depth[0:17] = -np.abs(np.linspace(-1, 1, 17))  # the outline recedes towards the ears
    turned = points.copy()
    turned[:, 0] = points[:, 0] * math.cos(angle) + depth * math.sin(angle)
    return turned


def test_a_head_turn_shows_parallax_and_a_warped_picture_none() -> None:
    neutral = face()
    warp = np.array([[0.85, 0.3, 0.2], [0.05, 1.0, 0.1], [0.08, 0.0, 1.0]])  # a shear and a perspective
    mapped = np.c_[neutral, np.ones(68)] @ warp.T
    pictured = mapped[:, :2] / mapped[:, 2:3]
    assert actions.parallax(neutral, [pictured, pictured]) < 1e-6
    assert (
        actions.parallax(neutral, [_turned_in_depth(neutral, 0.4), _turned_in_depth(neutral, 0.5)])
        > actions.MIN_PARALLAX
    )
    assert math.isnan(actions.parallax(neutral, []))
