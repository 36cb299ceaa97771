"""What the face's texture does over time: a picture has none of a living face's changes. Pure.

A clip made from one photo (zoomed, drifted, warped into a "turn", eyes and mouth painted) shows
in every frame a deformation of the same picture. Between two face chips (`faces.face_chip`) of
such a clip, dense optical flow explains everything but resampling and compression; a living
face does what no flow of one picture can: the eyes look about, skin and lips move, a turning
head hides one side of the face and shows the other. So:

- `residual`: after the best dense flow from one chip to another, how different they remain,
  in units of the chip's own contrast (so light, exposure and contrast do not matter);
- `stillness`: how far the clip's neutral chips stray from its best neutral one (the 90th
  percentile of their residuals: a living face changes now and then, gaze, a twitch, a breath):
  measured 0.018-0.039 on photos animated by the attack kit, 0.11 and 0.24 on the live clips;
- `depth`: the median residual of each head turn's chips against the neutral one: 0.07-0.20 on
  photos warped into turns, 0.69 and 1.06 on the live turns;
- `largest_jump`: the largest residual between consecutive whole frames: 0.03-0.17 in the live
  clips and 0.29 in the screen replay (a hand waving, a phone moving), 0.74-1.04 where the kit
  spliced another clip in, 0.77 at the film clip's cuts.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence

import cv2
import numpy as np
import numpy.typing as npt

from liveness import actions
from liveness.faces import CHIP_PX, FaceChip

Chip = npt.NDArray[np.uint8]

# The face proper inside a chip (rows, columns): the brows to the chin, cheek to cheek.
_ROWS = slice(round(0.12 * CHIP_PX), round(0.92 * CHIP_PX))
_COLUMNS = slice(round(0.18 * CHIP_PX), round(0.82 * CHIP_PX))
# Residuals are compared after this blur (chip pixels): camera noise and the noise an attacker
# adds are finer than what a living face changes.
_BLUR = 1.0
# Below these a clip is a picture: between the kit's photos and the live clips (module docstring),
# nearer the photos, so that a living face, however still, stays well above.
MIN_STILLNESS = 0.065
MIN_TURN_DEPTH = 0.35
# Above this a face shows a screen's or a print's regular pattern (periodic_pattern): twice the
# live clips' highest. Too few screens and prints were filmed here to say more of it.
MAX_PATTERN = 30.0
# Above this between two consecutive frames, the recording was cut (module docstring).
MAX_JUMP = 0.5
# Whole frames are compared at this long side.
JUMP_FRAME_PX = 96
# Chips compared for stillness are at least this far apart in time, up to this many of them, in
# the same pose: their rigid landmarks within this many chip pixels (RMS) of the reference's (the
# eyes are CHIP_EYES apart), or else the nearest few.
SAME_POSE_PX = 2.5
MIN_SAME_POSE = 4
MIN_APART_S = 0.5
MAX_COMPARED = 16


def residual(a: FaceChip, b: FaceChip) -> float:
    """What remains different between two face chips once `b` is moved onto `a`, first by the
    homography of their rigid landmarks (what any warp of a picture, however strong, comes down
    to near enough), then by dense optical flow; in units of `a`'s contrast over the face."""
    rigid = list(actions.RIGID)
    homography, _ = cv2.findHomography(b.points[rigid], a.points[rigid], 0)
    aligned = b.pixels
    if homography is not None:
        aligned = np.asarray(
            cv2.warpPerspective(b.pixels, homography, (CHIP_PX, CHIP_PX), borderMode=cv2.BORDER_REPLICATE),
            dtype=np.uint8,
        )
    return _flow_residual(a.pixels, aligned, face=True)


def _flow_residual(a: Chip, b: Chip, face: bool) -> float:
    """What remains different between two pictures once `b` is moved onto `a` by dense optical
    flow, in units of `a`'s contrast over the face (over the whole picture when not `face`)."""
    flow = np.asarray(_flow().calc(a, b, None), dtype=np.float32)  # type: ignore[call-overload]
    rows, columns = np.mgrid[0 : a.shape[0], 0 : a.shape[1]].astype(np.float32)
    moved = cv2.remap(b, columns + flow[..., 0], rows + flow[..., 1], cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    first, second = (_standardised(cv2.GaussianBlur(x.astype(np.float32), (0, 0), _BLUR), face) for x in (a, moved))
    return float(np.mean(np.abs(first - second)))


def _standardised(chip: npt.NDArray[np.generic], face_only: bool) -> npt.NDArray[np.float64]:
    face = np.asarray(chip[_ROWS, _COLUMNS] if face_only else chip, dtype=np.float64)
    spread = float(face.std())
    result: npt.NDArray[np.float64] = (face - face.mean()) / max(spread, 1.0)
    return result


def _flow() -> cv2.DISOpticalFlow:
    return cv2.DISOpticalFlow.create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)


def stillness(times: Sequence[float], chips: Sequence[FaceChip], reference: int) -> float:
    """The 90th percentile of the residuals against the reference chip of the chips at least
    MIN_APART_S from it that show the face in the same pose (their landmarks within
    SAME_POSE_PX of the reference's, or the nearest MIN_SAME_POSE): up to MAX_COMPARED of them,
    spread over the clip. A warped picture in another pose is not compared, so no warp, however
    hard to follow, passes for a living face's change. NaN when no chip is far enough apart."""
    rigid = list(actions.RIGID)
    apart = [i for i, t in enumerate(times) if abs(t - times[reference]) >= MIN_APART_S]
    if not apart:
        return math.nan
    target = chips[reference].points[rigid]
    pose = {i: float(np.sqrt(np.mean(np.sum((chips[i].points[rigid] - target) ** 2, axis=1)))) for i in apart}
    nearest = sorted(apart, key=pose.__getitem__)
    same = [i for i in nearest if pose[i] <= SAME_POSE_PX] or nearest[:MIN_SAME_POSE]
    same = sorted(same if len(same) >= MIN_SAME_POSE else nearest[:MIN_SAME_POSE])
    picked = [same[round(k)] for k in np.linspace(0, len(same) - 1, min(MAX_COMPARED, len(same)))]
    return float(np.percentile([residual(chips[reference], chips[i]) for i in dict.fromkeys(picked)], 90))


def periodic_pattern(face: Chip) -> float:
    """How far the strongest regular pattern in a face rises above its fine texture: a screen's
    pixel grid beating with the camera's (moire) or a print's halftone dots make sharp peaks in
    the spectrum, skin does not.

    The face (grey, at the camera's own resolution) is high-passed, windowed and transformed; the
    score is the 99.95th percentile of the magnitudes between 0.12 and 0.45 cycles per pixel over
    their median, leaving out the frequencies of the 8-pixel blocks video and JPEG compression
    leave (and the axes, where edges put their energy). Measured: live clips 7.5-17.4; the kit's
    screens and prints 15-74; the shared photos of a print and of a screen (sfas) 8.3 and 9.9,
    which this cue does not tell from the live photo's 7.5.
    """
    grey = face.astype(np.float32)
    detail = grey - cv2.GaussianBlur(grey, (0, 0), 1.5)
    height, width = detail.shape
    if min(height, width) < 32:
        return math.nan
    window = np.outer(np.hanning(height), np.hanning(width)).astype(np.float32)
    magnitude = np.abs(np.fft.fft2(detail * window))
    fy = np.abs(np.fft.fftfreq(height))[:, None]
    fx = np.abs(np.fft.fftfreq(width))[None, :]
    radius = np.hypot(fy, fx)
    tolerance = 1.5 / min(height, width)

    def on_block_grid(frequency: npt.NDArray[np.float64]) -> npt.NDArray[np.bool_]:
        result: npt.NDArray[np.bool_] = np.abs(frequency * 8 - np.round(frequency * 8)) < tolerance * 8
        return result

    band = (radius > 0.12) & (radius < 0.45) & ~on_block_grid(fy) & ~on_block_grid(fx)
    values = magnitude[band]
    return float(np.percentile(values, 99.95) / max(float(np.median(values)), 1e-9))


def largest_jump(frames: Sequence[Chip]) -> float:
    """The largest residual between consecutive frames (small grey copies of whole frames): where a
    recording was cut and joined, nothing moves one frame onto the next. NaN with fewer than two."""
    if len(frames) < 2:
        return math.nan
    return max(_flow_residual(a, b, face=False) for a, b in itertools.pairwise(frames))


def depth(chips: Sequence[FaceChip], reference: FaceChip) -> float:
    """The median residual of a head turn's chips (up to MAX_COMPARED, spread over the turn)
    against the neutral face; NaN without chips."""
    if not chips:
        return math.nan
    picked = dict.fromkeys(round(k) for k in np.linspace(0, len(chips) - 1, min(MAX_COMPARED // 2, len(chips))))
    return float(np.median([residual(reference, chips[i]) for i in picked]))
