"""Capture quality verdicts: problems the person can fix by filming again (Outcome.RETRY).

Pure functions over per-clip summaries of the face measurements. Medians over the frames with a
face, so a few blurred frames during a head turn or a blink do not condemn a clip.
"""

from __future__ import annotations

from dataclasses import dataclass

from liveness.model import Reason

# The face's height as a share of the frame's short side. A selfie at arm's length fills 30-60%
# (the live clips here: 0.32-0.40); a face filmed off a phone screen held up to the camera, or a
# person standing back, fills less (the replay clip: 0.20).
MIN_FACE_SHARE = 0.25
# Below this many pixels the encoder's 150 px chip is mostly interpolation. The match thresholds
# were calibrated on LFW faces of 60-65 px, which still match reliably.
MIN_FACE_PX = 50
# Mean luma of the face box, 0-255. The live clips here measure 71-128; faces in a dim room
# (the film clip's audience) 35-46, where landmarks and encodings degrade. "More light" is
# advice a person can follow.
MIN_BRIGHTNESS = 45.0
# Variance of the Laplacian of the face scaled to 90 px (faces.sharpness). Live clips here measure
# medians of 76-164 (the lowest from a 270p webcam), a face filmed off a phone screen 30.
MIN_SHARPNESS = 40.0
# Share of the sampled frames in which a detector saw the face. Head turns past the detectors'
# reach cost the live clips up to 9%; below this the person left the frame or covered the camera.
MIN_SEEN_SHARE = 0.6
# A challenge takes more than a second; shorter uploads are interrupted recordings.
MIN_CLIP_S = 1.0
MIN_FRAMES = 5


@dataclass(frozen=True)
class Capture:
    """A clip's capture measurements (medians over frames with a face; NaN when there was none)."""

    duration_s: float
    frames: int
    seen_share: float  # share of sampled frames where a detector saw the face
    face_px: float
    short_side_px: float  # the analysed frames' short side
    brightness: float  # face region
    sharpness: float
    frame_brightness: float  # whole frames, also when no face was found


def assess(capture: Capture) -> tuple[Reason, ...]:
    """The capture problems, most basic first; empty when the clip is fit to judge."""
    if capture.frames < MIN_FRAMES or capture.duration_s < MIN_CLIP_S:
        return (Reason.TOO_SHORT,)
    if capture.seen_share == 0:
        # No face at all: darkness is the one cause the person can fix by themselves.
        return (Reason.TOO_DARK,) if capture.frame_brightness < MIN_BRIGHTNESS else ()
    min_px = max(MIN_FACE_PX, MIN_FACE_SHARE * capture.short_side_px)
    reasons = face_problems(capture.face_px, min_px, capture.brightness, capture.sharpness)
    if capture.seen_share < MIN_SEEN_SHARE:
        reasons += (Reason.FACE_LOST,)
    return reasons


def face_problems(face_px: float, min_px: float, brightness: float, sharpness: float) -> tuple[Reason, ...]:
    """What is wrong with a face as measured (a clip's medians, or a photo's one face); NaN passes."""
    reasons: list[Reason] = []
    if face_px < min_px:
        reasons.append(Reason.FACE_TOO_SMALL)
    if brightness < MIN_BRIGHTNESS:
        reasons.append(Reason.TOO_DARK)
    if sharpness < MIN_SHARPNESS:
        reasons.append(Reason.TOO_BLURRED)
    return tuple(reasons)
