"""Liveness actions from per-frame landmarks: pure functions over plain measurements.

Every measure is a ratio of distances within the face, so it does not depend on the face's size,
position or in-plane rotation, and every threshold is relative to the person's own neutral
values (glasses, narrow eyes, a habitual head pose), measured on the clip's neutral frames.

The 68-point predictor always answers, also on a blurred, turned or half-visible face. A sample
counts only where the face detector saw a frontal face there and the face's vertical proportion
(nose tip below the brows, per eye distance) is within MAX_STRETCH of its neutral value.
That proportion survives blinks, an open mouth and small head turns, while a garbled fit, or a
photo or screen tilted to squash its eyes into a "blink", changes it.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from liveness.model import Action, DetectedAction, Reason

Landmarks = npt.NDArray[np.float64]  # 68 x 2 (x, y)
Series = npt.NDArray[np.float64]
Mask = npt.NDArray[np.bool_]

# iBUG 300-W indices. The person's right eye is 36-41 (the image's left in an unmirrored clip).
_RIGHT_EYE = (36, 37, 38, 39, 40, 41)
_LEFT_EYE = (42, 43, 44, 45, 46, 47)
_NOSE_TIP = 30
_BROW_MIDDLES = (19, 24)
_MOUTH_CORNERS = (48, 54)
_INNER_LIP_PAIRS = ((61, 67), (62, 66), (63, 65))

# Blink: the eyes close to below 70% of their open baseline and open again. Measured: blinks dip
# to 0.39-0.55 of the baseline (0.61 behind glasses), a screen replay's eyes never below 0.83.
# A blink keeps the eyes closed for 0.1-0.4 s and they reopen over 0.1-0.3 s.
BLINK_CLOSED = 0.7
BLINK_OPEN = 0.85
MAX_BLINK_S = 0.5
BLINK_REOPEN_S = 0.4
# Turn: the nose moves along the eye line by this fraction of the eye distance from the neutral
# pose (~15 degrees). Measured: turns on request peak at 0.55-1.0; frontal frames stay within
# 0.04 of neutral for a still head and 0.12 (95th percentile) for a lively talker.
TURN_OFFSET = 0.18
# A turn is held this long: a quick swing of the head while talking or shifting in the chair is
# not one (measured: such swings last 0.1-0.2 s, a turn on request 1-2 s).
MIN_TURN_S = 0.3
# Open mouth: the inner-lip gap per mouth width rises this much above the closed baseline and
# stays there. Measured: a closed mouth within 0.06 of its baseline, a smile with parted lips
# 0.15-0.18, "ah" more; an open mouth lasts longer than the 0.1-0.2 s syllables of speech.
MOUTH_OPEN = 0.1
MOUTH_MIN_S = 0.4
# The same action seen again this soon after it ended is one action held through a dip.
MERGE_S = 0.6
# A challenged action starts within this long after the one before it settled back to neutral
# (the app shows the next prompt at once), the first within FIRST_STEP_S of the recording's start.
# Measured: the live clip's actions follow each other after 0.3-1.1 s.
STEP_WINDOW_S = 5.0
FIRST_STEP_S = 8.0
# Samples further apart than this are not consecutive (the face was lost in between).
MAX_GAP_S = 0.3
# Frames within this yaw of the neutral pose are neutral, for the baselines.
NEUTRAL_YAW = 0.12
# See the module docstring. Measured on frontal frames (95th percentile): 0.03 off neutral for a
# still head, 0.17 for a lively one, 0.23 for a phone screen tilted about; garbled fits 0.3-0.9.
MAX_STRETCH = 0.25
# Landmarks of a flat picture moved, zoomed or tilted before the camera stay an affine map of
# each other; a live face deforms (3D rotation, eyelids, lips). Residual after the best affine
# fit to the clip's median shape, per eye distance (90th percentile over frames). Measured:
# a photo made into a clip 0.010; live clips 0.033 (sitting still, blinking) to 0.08 (talking,
# turning).
MIN_MOTION = 0.02


@dataclass(frozen=True)
class Signals:
    """Per-sample measurements; NaN where the frame had no face."""

    t: Series
    ear: Series  # eye aspect ratio, both eyes averaged
    yaw: Series  # nose offset along the eye line per eye distance; positive: the person's left
    mouth: Series  # inner-lip gap per mouth width
    stretch: Series  # nose tip below the eye line per eye distance
    turned: Series  # the face detector's view: +1 turned to the person's left, -1 right, 0 frontal, NaN unseen


@dataclass(frozen=True)
class Baseline:
    ear: float
    yaw: float
    mouth: float
    stretch: float


def eye_aspect_ratio(points: Landmarks) -> float:
    return (_eye_ratio(points, _RIGHT_EYE) + _eye_ratio(points, _LEFT_EYE)) / 2


def _eye_ratio(points: Landmarks, eye: tuple[int, ...]) -> float:
    p1, p2, p3, p4, p5, p6 = (points[i] for i in eye)
    width = float(np.linalg.norm(p1 - p4))
    if width == 0:
        return math.nan
    return float(np.linalg.norm(p2 - p6) + np.linalg.norm(p3 - p5)) / (2 * width)


def _eye_frame(points: Landmarks) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64], float]:
    """Midpoint between the eyes, unit vector along the eye line (towards the person's left), eye distance.

    From the eye corners only: eyelids move in a blink, corners do not.
    """
    right = (points[36] + points[39]) / 2
    left = (points[42] + points[45]) / 2
    axis = left - right
    distance = float(np.linalg.norm(axis))
    unit = axis / distance if distance > 0 else np.array([1.0, 0.0])
    return (right + left) / 2, unit, distance


def yaw(points: Landmarks) -> float:
    """Nose tip offset along the eye line per eye distance: positive when the person turns to their left."""
    middle, unit, distance = _eye_frame(points)
    if distance == 0:
        return math.nan
    return float(np.dot(points[_NOSE_TIP] - middle, unit)) / distance


def stretch(points: Landmarks) -> float:
    """Nose tip below the middle of the brows, per eye distance: the face's vertical proportion.

    From the brows, not the eyes: with glasses the predictor moves the eye corners down as the
    lids close, by up to 40% of this height, while the brows stay put.
    """
    _, unit, distance = _eye_frame(points)
    if distance == 0:
        return math.nan
    down = np.array([-unit[1], unit[0]])
    brows = (points[_BROW_MIDDLES[0]] + points[_BROW_MIDDLES[1]]) / 2
    return float(np.dot(points[_NOSE_TIP] - brows, down)) / distance


def mouth_ratio(points: Landmarks) -> float:
    width = float(np.linalg.norm(points[_MOUTH_CORNERS[0]] - points[_MOUTH_CORNERS[1]]))
    if width == 0:
        return math.nan
    gap = np.mean([np.linalg.norm(points[a] - points[b]) for a, b in _INNER_LIP_PAIRS])
    return float(gap) / width


def signals(times: Sequence[float], shapes: Sequence[Landmarks | None], turned: Sequence[int | None]) -> Signals:
    def series(measure: Callable[[Landmarks], float]) -> Series:
        return np.array([math.nan if shape is None else measure(shape) for shape in shapes], dtype=np.float64)

    return Signals(
        t=np.asarray(times, dtype=np.float64),
        ear=series(eye_aspect_ratio),
        yaw=series(yaw),
        mouth=series(mouth_ratio),
        stretch=series(stretch),
        turned=np.array([math.nan if view is None else view for view in turned], dtype=np.float64),
    )


def baseline(s: Signals) -> Baseline | None:
    """The person's neutral face: medians over frontal frames near their habitual head direction.

    The yaw centre is refined once around the first median, so that a long turn to one side does
    not drag the neutral pose towards it. The mouth baseline is a low percentile because a
    challenge may keep the mouth open for a third of the clip. None without a frontal frame.
    """
    frontal = (s.turned == 0) & ~np.isnan(s.yaw)
    if not frontal.any():
        return None
    centre = float(np.median(s.yaw[frontal]))
    near = frontal & (np.abs(s.yaw - centre) < 2 * NEUTRAL_YAW)
    centre = float(np.median(s.yaw[near]))
    neutral = frontal & (np.abs(s.yaw - centre) < NEUTRAL_YAW)
    if not neutral.any():
        neutral = frontal
    return Baseline(
        ear=float(np.median(s.ear[neutral])),
        yaw=centre,
        mouth=float(np.percentile(s.mouth[neutral], 25)),
        stretch=float(np.median(s.stretch[neutral])),
    )


def resting(s: Signals, b: Baseline) -> Mask:
    """Plausible samples of the neutral face: looking ahead, the mouth closed, the eyes open."""
    with np.errstate(invalid="ignore"):
        result: Mask = (
            plausible(s, b)
            & (np.abs(s.yaw - b.yaw) < NEUTRAL_YAW / 2)
            & (s.mouth - b.mouth < MOUTH_OPEN / 2)
            & (s.ear >= BLINK_OPEN * b.ear)
        )
    return result


def held_turn(s: Signals, b: Baseline, turn: DetectedAction) -> Mask:
    """The samples of a detected turn that the landmarks measure past TURN_OFFSET, in plausible
    proportions (beyond ~40 degrees the predictor guesses, and so would a chip cut by its guess)."""
    sign = 1.0 if turn.action is Action.TURN_LEFT else -1.0
    end = turn.until_s if turn.until_s is not None else turn.at_s
    with np.errstate(invalid="ignore"):
        result: Mask = (
            (s.t >= turn.at_s)
            & (s.t <= end)
            & (sign * (s.yaw - b.yaw) > TURN_OFFSET)
            & (np.abs(s.stretch / b.stretch - 1) <= MAX_STRETCH)
        )
    return result


def plausible(s: Signals, b: Baseline) -> Mask:
    """Samples whose landmarks describe a frontal face in its own proportions (module docstring)."""
    with np.errstate(invalid="ignore"):
        result: Mask = (s.turned == 0) & (np.abs(s.stretch / b.stretch - 1) <= MAX_STRETCH)
    return result


def _runs(mask: Mask, t: Series) -> list[tuple[int, int]]:
    """Maximal runs [start, end] of True samples with no time gap longer than MAX_GAP_S."""
    runs: list[tuple[int, int]] = []
    start: int | None = None
    for i, inside in enumerate(mask):
        if inside and start is not None and t[i] - t[i - 1] > MAX_GAP_S:
            runs.append((start, i - 1))
            start = i
        elif inside and start is None:
            start = i
        elif not inside and start is not None:
            runs.append((start, i - 1))
            start = None
    if start is not None:
        runs.append((start, len(mask) - 1))
    return runs


def detect_blinks(s: Signals, b: Baseline) -> list[DetectedAction]:
    """Short runs of closed eyes with open eyes measured shortly before and after.

    Every sample from the last open one before to the first open one after must be plausible:
    a lost or garbled face is not a closed eye.
    """
    valid = plausible(s, b)
    closed = valid & (s.ear < BLINK_CLOSED * b.ear)
    opened = valid & (s.ear >= BLINK_OPEN * b.ear)
    found: list[DetectedAction] = []
    for start, end in _runs(closed, s.t):
        if s.t[end] - s.t[start] > MAX_BLINK_S:
            continue
        before = _nearest(opened, s.t, start, -1)
        after = _nearest(opened, s.t, end, +1)
        if before is None or after is None or not valid[before : after + 1].all():
            continue
        depth = 1 - float(np.min(s.ear[start : end + 1])) / b.ear
        found.append(
            DetectedAction(Action.BLINK, float(s.t[start]), round(depth, 3), float(s.t[end]), float(s.t[after]))
        )
    return found


def _nearest(mask: Mask, t: Series, index: int, step: int) -> int | None:
    """The nearest sample from `index` in direction `step` where mask holds, within BLINK_REOPEN_S."""
    i = index + step
    while 0 <= i < len(mask) and abs(t[i] - t[index]) <= BLINK_REOPEN_S:
        if mask[i]:
            return i
        i += step
    return None


def detect_turns(s: Signals, b: Baseline) -> list[DetectedAction]:
    """Head turns held for MIN_TURN_S, at least one sample of them measured by the landmarks.

    The landmarks measure a turn up to ~40 degrees; beyond, the predictor returns a frontal-looking
    guess whose "yaw" can point either way. There the detector's turned-face filter says which way
    the head points: it continues a turn the landmarks started, and so do frames where no detector
    sees the face (turned past both). The filter never starts a turn on its own, as it also fires
    on a head held a little sideways. A landmark reading counts where the filter agrees, or where
    it sees a frontal face in plausible proportions.
    """
    offset = s.yaw - b.yaw
    valid = plausible(s, b)
    unseen = np.isnan(s.turned)
    found: list[DetectedAction] = []
    for action, sign in ((Action.TURN_LEFT, 1.0), (Action.TURN_RIGHT, -1.0)):
        agrees = s.turned == sign
        with np.errstate(invalid="ignore"):
            measured = (sign * offset > TURN_OFFSET) & (agrees | valid)
        turned = measured | agrees
        for start, end in _runs(turned | unseen, s.t):
            inside = np.flatnonzero(turned[start : end + 1]) + start
            window = measured[start : end + 1]
            if inside.size and window.any() and s.t[inside[-1]] - s.t[inside[0]] >= MIN_TURN_S:
                peak = float(np.max(sign * offset[start : end + 1][window]))
                with np.errstate(invalid="ignore"):
                    # Back to neutral, or past it: a head swinging to the other side crosses the middle
                    # between two samples, often turned enough for the detector to call it turned.
                    back = (sign * offset < TURN_OFFSET / 2) & (np.abs(s.stretch / b.stretch - 1) <= MAX_STRETCH)
                found.append(
                    DetectedAction(
                        action, float(s.t[inside[0]]), round(peak, 3), float(s.t[inside[-1]]), _first(back, s.t, end)
                    )
                )
    return found


def detect_mouth(s: Signals, b: Baseline) -> list[DetectedAction]:
    valid = plausible(s, b)
    with np.errstate(invalid="ignore"):
        opened = valid & (s.mouth - b.mouth > MOUTH_OPEN)
        closed = valid & (s.mouth - b.mouth < MOUTH_OPEN / 2)
    found: list[DetectedAction] = []
    for start, end in _runs(opened, s.t):
        if s.t[end] - s.t[start] >= MOUTH_MIN_S:
            peak = float(np.max(s.mouth[start : end + 1])) - b.mouth
            found.append(
                DetectedAction(
                    Action.OPEN_MOUTH, float(s.t[start]), round(peak, 3), float(s.t[end]), _first(closed, s.t, end)
                )
            )
    return found


def _first(mask: Mask, t: Series, after: int) -> float | None:
    """The time of the first sample after index `after` where `mask` holds."""
    later = np.flatnonzero(mask[after + 1 :])
    return float(t[after + 1 + later[0]]) if later.size else None


def detect_actions(s: Signals, b: Baseline) -> list[DetectedAction]:
    found = detect_blinks(s, b) + detect_turns(s, b) + detect_mouth(s, b)
    return sorted(found, key=lambda action: action.at_s)


def match_challenge(challenge: Sequence[Action], detected: Sequence[DetectedAction]) -> Reason | None:
    """None when the clip performs exactly the challenge: its actions in order, each settling back
    to neutral before the next starts, each within STEP_WINDOW_S of the one before.

    Blinks come naturally every few seconds, so a blink is never an extra action; where the
    challenge asks for one, a blink must fall in its place between the actions around it. Any
    other action not asked for (a turn, an open mouth, one done twice) is EXTRA_ACTION.
    """
    ordered = sorted(detected, key=lambda action: action.at_s)
    moves = _held_through_dips([found for found in ordered if found.action is not Action.BLINK])
    wanted = [action for action in challenge if action is not Action.BLINK]
    done = [found.action for found in moves]
    if done != wanted:
        if any(done.count(action) < wanted.count(action) for action in set(wanted)):
            return Reason.ACTION_NOT_DETECTED
        if len(done) > len(wanted):
            return Reason.EXTRA_ACTION
        return Reason.WRONG_ORDER
    steps: list[DetectedAction] = list(moves)
    if Action.BLINK in challenge:
        place = challenge.index(Action.BLINK)
        after = moves[place - 1].settled_s if place > 0 else -math.inf
        before = moves[place].at_s if place < len(moves) else math.inf
        blinks = [found for found in ordered if found.action is Action.BLINK]
        inside = [blink for blink in blinks if after is not None and after <= blink.at_s < before]
        if not inside:
            return Reason.WRONG_ORDER if blinks else Reason.ACTION_NOT_DETECTED
        steps.insert(place, inside[0])
    return _timing(steps)


def _held_through_dips(moves: Sequence[DetectedAction]) -> list[DetectedAction]:
    """An action seen again within MERGE_S of its end is one action held through a dip (a mouth
    open through a word, a turn through a glance): one step, settling when the second one does."""
    joined: list[DetectedAction] = []
    for move in moves:
        last = joined[-1] if joined else None
        if (
            last is not None
            and last.action is move.action
            and last.until_s is not None
            and move.at_s - last.until_s < MERGE_S
        ):
            joined[-1] = DetectedAction(
                last.action, last.at_s, max(last.strength, move.strength), move.until_s, move.settled_s
            )
        else:
            joined.append(move)
    return joined


def _timing(steps: Sequence[DetectedAction]) -> Reason | None:
    """ACTION_TIMING when an action starts late, or before the one before it settled back to neutral."""
    if steps and steps[0].at_s > FIRST_STEP_S:
        return Reason.ACTION_TIMING
    for previous, step in itertools.pairwise(steps):
        if previous.settled_s is None or previous.settled_s > step.at_s:
            return Reason.ACTION_TIMING
        if step.at_s - previous.settled_s > STEP_WINDOW_S:
            return Reason.ACTION_TIMING
    return None


# The points of the face that move with the head, not with an expression: outline, brows, nose,
# eye corners, mouth corners.
RIGID = (*range(0, 36), 36, 39, 42, 45, 48, 54)
# A head that turns shows parallax: the nose moves against the outline in a way no single
# homography of the neutral face explains. Measured (RMS residual per eye distance, median over a
# turn's frames): a photo sheared or turned in perspective 0.06 (a homography, so landmark noise
# only), the live turns 0.13 and 0.19; photos warped by a landmark mesh 0.05-0.10, which only
# texture.depth tells from a head.
MIN_PARALLAX = 0.08


def parallax(neutral: Landmarks, turned: Sequence[Landmarks]) -> float:
    """The median over `turned` of how far the best homography from the neutral face's rigid
    points misses the turned face's, per eye distance; NaN without turned shapes."""
    if not turned:
        return math.nan
    source = neutral[list(RIGID)]
    misses = []
    for shape in turned:
        target = shape[list(RIGID)]
        projected = _homography(source, target)
        _, _, distance = _eye_frame(shape)
        misses.append(float(np.sqrt(np.mean(np.sum((projected - target) ** 2, axis=1)))) / max(distance, 1e-9))
    return float(np.median(misses))


def _homography(source: Landmarks, target: Landmarks) -> Landmarks:
    """`source` mapped by the least-squares homography onto `target` (direct linear transform on
    points normalised to the origin and unit spread)."""

    def normalising(points: Landmarks) -> npt.NDArray[np.float64]:
        centre = points.mean(axis=0)
        scale = math.sqrt(2) / max(float(np.mean(np.linalg.norm(points - centre, axis=1))), 1e-9)
        return np.array([[scale, 0, -scale * centre[0]], [0, scale, -scale * centre[1]], [0, 0, 1]])

    ns, nt = normalising(source), normalising(target)
    a = (np.c_[source, np.ones(len(source))] @ ns.T)[:, :2]
    b = (np.c_[target, np.ones(len(target))] @ nt.T)[:, :2]
    rows = []
    for (x, y), (u, v) in zip(a, b, strict=True):
        rows.append([-x, -y, -1, 0, 0, 0, u * x, u * y, u])
        rows.append([0, 0, 0, -x, -y, -1, v * x, v * y, v])
    _, _, vt = np.linalg.svd(np.asarray(rows))
    homography = np.linalg.inv(nt) @ vt[-1].reshape(3, 3) @ ns
    mapped = np.c_[source, np.ones(len(source))] @ homography.T
    result: Landmarks = mapped[:, :2] / mapped[:, 2:3]
    return result


def motion(shapes: Sequence[Landmarks]) -> float:
    """How much the face deforms beyond what moving a flat picture could do (MIN_MOTION).

    NaN with fewer than 3 frames.
    """
    if len(shapes) < 3:
        return math.nan
    stack = np.stack([_normalised(shape) for shape in shapes])
    reference = np.median(stack, axis=0)
    residuals = []
    for shape in stack:
        design = np.hstack([shape, np.ones((len(shape), 1))])
        solution, *_ = np.linalg.lstsq(design, reference, rcond=None)
        residuals.append(float(np.sqrt(np.mean(np.sum((design @ solution - reference) ** 2, axis=1)))))
    return float(np.percentile(residuals, 90))


def _normalised(points: Landmarks) -> Landmarks:
    """The landmarks with the eye midpoint at the origin, the eye line horizontal, eye distance 1."""
    middle, unit, distance = _eye_frame(points)
    rotation = np.array([[unit[0], unit[1]], [-unit[1], unit[0]]])
    result: Landmarks = (points - middle) @ rotation.T / max(distance, 1e-9)
    return result
