"""The face layer around face_recognition (dlib): detection, tracking, landmarks, encodings.

Cost drives the design. Measured on this 2-core machine: a HOG detection over a 640 px frame
~23 ms, over a 135 px patch around the face ~2 ms, the 68 landmarks ~1.5-3 ms, one encoding
~90 ms. So:

- keyframes (every KEYFRAME_EVERY-th sample) run the full detector, to count the faces in the
  frame and to (re)acquire the face;
- in between, the box is derived from the previous sample's landmarks, and every other sample
  runs the detector on a patch around it. That confirms a face is still there and says which of
  dlib's five HOG filters sees it: frontal, or turned to either side. The 68-point predictor
  breaks down on faces turned past ~40 degrees and the full detector loses them past ~30, so a
  head turn is followed by that filter, not by landmarks alone;
- encodings are computed at the end, for a few frames chosen from face crops kept while tracking.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Generic, TypeVar

import cv2
import face_recognition
import numpy as np
import numpy.typing as npt

from liveness import actions, media
from liveness.media import Frame, Image_, luma
from liveness.model import Embedding

Box = tuple[int, int, int, int]  # top, right, bottom, left: face_recognition's order
K = TypeVar("K", int, tuple[int, int])  # how a time slice is keyed
Landmarks = npt.NDArray[np.float64]  # 68 x 2 (x, y), the iBUG 300-W points dlib predicts

# face_recognition's own dlib HOG detector: its `run` also reports each detection's score and
# which of its five filters fired (face_recognition.face_locations drops both).
_DETECTOR = face_recognition.api.face_detector
_PREDICTOR_68 = face_recognition.api.pose_predictor_68_point
_RECTANGLE = face_recognition.api.dlib.rectangle
# dlib's filters: 0 frontal, 1 and 2 faces turned so the nose points to the image's left / right,
# 3 and 4 frontal faces rolled. In an unmirrored recording, nose to the image's right is the
# person's own left (checked on the live clip and its mirror image).
_NOSE_IMAGE_LEFT, _NOSE_IMAGE_RIGHT = 1, 2

# Detection runs on a copy scaled to this long side (up or down): the HOG window finds faces of
# ~65 px and more there, i.e. a tenth of the frame's long side, whatever the source resolution.
DETECT_LONG_SIDE = 640
# Full detections every second at 15 fps count the faces in the frame; the patch detections in
# between carry the track. Without a track, or while the patch detector misses the tracked face
# (turned away, or the track drifted off it), every other sample searches the whole frame.
KEYFRAME_EVERY = 10
SEARCH_EVERY = 2
# Between keyframes the detector looks at the tracked face scaled to this size (its window is
# 80 px) with a quarter face of margin: a 135 px patch. Brightness and sharpness are measured on
# the same patch.
PATCH_FACE_PX = 90
# Patch detections below dlib's usual threshold of 0 are kept: a face turned past ~30 degrees
# scores -0.9..0 in the turned-face filters (measured on the live turns), an empty patch lower.
PATCH_DETECT_THRESHOLD = -0.9
# A tracked face not seen by any detector for longer than this is dropped.
MAX_UNCONFIRMED_S = 1.0
# A tracked box stays within this factor of the last detected face size.
MAX_SIZE_DRIFT = 1.2
# The dlib HOG box relative to its own landmarks, in eye-to-mouth distances: its centre lies
# 0.56 of the way from the eyes to the mouth corners, its side is 2.31 times that distance
# (medians over 256 detections in the two live videos, spread 0.09 and 0.12).
_BOX_CENTRE, _BOX_SIZE = 0.56, 2.31
# Candidate frames for encodings: the best frame of each slice of this length is kept.
CANDIDATE_SLICE_S = 1.0
# Encoding crops keep the face at most this high: twice the encoder's 150 px chip keeps all detail.
CROP_FACE_PX = 200
# A single photo is searched with the HOG detector upsampled this many times; every encoding is
# one pass (no jitter) aligned by the 5-point landmarks.
STILL_UPSAMPLE = 1
ENCODING_JITTERS = 1
ENCODING_LANDMARKS = "small"
# Names the still detector and encoder above (`tools.liveness.evaluate` keys its cache with it).
STILL_ENCODER = f"hog-upsample{STILL_UPSAMPLE}-{ENCODING_LANDMARKS}-jitter{ENCODING_JITTERS}"

# Face chips: a CHIP_PX square, the eyes' outer corners CHIP_EYES apart at CHIP_EYE_ROW from the
# top, which leaves the brows above and the chin below inside the square.
CHIP_PX = 112
CHIP_EYES = 48
CHIP_EYE_ROW = 40


@dataclass(frozen=True)
class Observation:
    """What one sampled frame shows. Without a face: box and landmarks None, measurements NaN."""

    t: float
    box: Box | None
    landmarks: Landmarks | None
    face_count: int | None  # faces the full detector found; None between keyframes
    # The detector's view of the tracked face (on keyframes the full detection, else the patch's,
    # every other sample the previous sample's): its score, NaN when no detector saw the face,
    # and its pose, +1 turned to the person's left, -1 to their right, 0 frontal.
    face_score: float
    turned: int | None
    brightness: float  # mean luma of the face box, 0-255
    sharpness: float  # variance of the Laplacian of the face at PATCH_FACE_PX
    face_px: float  # face box height in analysis pixels
    frame_brightness: float  # mean luma of the whole frame (keyframes), to tell darkness from absence
    # The face in grey, turned and scaled by its landmarks to stand upright in a CHIP_PX square
    # (liveness.texture compares these over time); None without landmarks.
    chip: FaceChip | None = None

    @property
    def seen(self) -> bool:
        """A detector saw the face: on this sample, or on the one before for a sample that kept its view.

        A full detection always sets the score, so this also covers the frames the full detector found it on.
        """
        return not math.isnan(self.face_score)


@dataclass(frozen=True)
class Candidate:
    """A face crop kept for a possible encoding: the frame's best face within its time slice."""

    t: float
    score: float
    segment: int  # the track segment (see FaceTracker) the face belongs to
    crop: Image_
    box: Box  # the face within the crop


@dataclass(frozen=True)
class _SliceBest(Generic[K]):
    """The best face so far of the time slice being sampled, kept whole: only a slice's final best
    is cropped (`_crop` scales the face down, which costs more than the rest of a sample's work
    when the best changes often)."""

    key: K
    t: float
    score: float
    segment: int
    image: Image_
    box: Box  # the face within the image

    def candidate(self) -> Candidate:
        crop, box = _crop(self.image, self.box)
        return Candidate(self.t, self.score, self.segment, crop, box)


@dataclass(frozen=True)
class _Detection:
    box: Box
    score: float
    turned: int


@dataclass
class FaceTracker:
    """Takes the sampled frames in order; keeps where the face is and the candidates for encodings.

    A segment is a stretch of one continuous track. A new one starts whenever the full detector
    (re)acquires a face because there was no track, or the track lost its face or drifted off it:
    a face that differs between segments is another person cut in.

    `keyframe_every` is 1 for a burst of stills: each is a photo of its own, in which the
    exactly-one-face rule applies.
    """

    keyframe_every: int = KEYFRAME_EVERY
    segment: int = -1
    # Past slices' best faces (see `candidates` and `turned`), and the current slices'.
    _frontal: dict[tuple[int, int], Candidate] = field(default_factory=dict)
    _turned: dict[int, Candidate] = field(default_factory=dict)
    _frontal_now: _SliceBest[tuple[int, int]] | None = None
    _turned_now: _SliceBest[int] | None = None
    _box: Box | None = None  # where to look on the next sample
    _view: _Detection | None = None  # the detector's view of the tracked face when it last looked
    _carried: bool = False  # the last sample reused the view of the one before
    _seen_at: float = -math.inf  # when a detector last saw the tracked face
    _detected_px: float = 0.0  # the size of the last fully detected box
    _since_keyframe: int = KEYFRAME_EVERY

    def observe(self, frame: Frame) -> Observation:
        image, t = frame.image, frame.t
        found: list[_Detection] = []
        face_count: int | None = None
        frame_brightness = math.nan
        if self._keyframe_due():
            found = detect(image)
            face_count = len(found)
            frame_brightness = media.frame_brightness(image)
        near = _overlapping(found, self._box) if found and self._box is not None else None
        detected = near is not None
        box = near.box if near is not None else self._box
        if box is not None and not _inside(box, image.shape):
            box = None
        # The patch detector runs on every other sample while it keeps seeing the face; the
        # sample in between keeps the view before it (a head turns little in 67 ms).
        alternate = face_count is None and self._view is not None and not self._carried
        carried = self._view if box is not None and alternate else None
        self._carried = carried is not None
        patch = _patch(image, box) if box is not None and carried is None else None
        if patch is not None and near is None:
            near = _detect_near(patch)
        if near is None and found:
            # The largest frontal face found takes over (the person faces their phone); another
            # face next to a tracked one only counts.
            near = max(found, key=lambda d: (d.turned == 0, d.box[2] - d.box[0]))
            box, patch, detected = near.box, _patch(image, near.box), True
            self.segment += 1
        if box is None:
            return self._lost(t, face_count, frame_brightness)
        if carried is None:
            self._view = near
        if near is not None:
            self._seen_at = t
        elif carried is None and t - self._seen_at > MAX_UNCONFIRMED_S:
            return self._lost(t, face_count, frame_brightness)
        brightness, sharp = _quality(image, patch) if patch is not None else (math.nan, math.nan)
        points = landmarks(image, box)
        if detected:
            self._detected_px = float(box[2] - box[0])
            # Landmarks depend on where the box puts the predictor's initial shape: boxes always
            # derived from landmarks keep that placement consistent from sample to sample.
            box = _tracked_box(points, self._detected_px)
            points = landmarks(image, box)
        view = near or carried
        self._follow(view, near, points)
        if near is not None and near.turned == 0 and near.score >= 0:
            self._consider(t, image, box, points, near.score)
        elif near is not None and near.turned != 0:
            offer = _SliceBest(int(t // CANDIDATE_SLICE_S), t, near.score, self.segment, image, near.box)
            self._turned_now = _keep_best(self._turned_now, offer, self._turned)
        return Observation(
            t=t,
            box=box,
            landmarks=points,
            face_count=face_count,
            face_score=math.nan if view is None else view.score,
            turned=None if view is None else view.turned,
            brightness=brightness,
            sharpness=sharp,
            face_px=float(box[2] - box[0]),
            frame_brightness=frame_brightness,
            chip=face_chip(image, points),
        )

    def _keyframe_due(self) -> bool:
        """Every keyframe_every samples; every SEARCH_EVERY while there is no face seen to follow."""
        self._since_keyframe += 1
        searching = self._box is None or self._view is None
        if self._since_keyframe < (min(SEARCH_EVERY, self.keyframe_every) if searching else self.keyframe_every):
            return False
        self._since_keyframe = 0
        return True

    def _follow(self, view: _Detection | None, near: _Detection | None, points: Landmarks) -> None:
        """Where to look next: the landmarks locate a frontal face best; on a turned face they are
        guesses and the turned-face filter's box follows the head; unseen, the face stays put."""
        if view is not None and not view.turned:
            self._box = _tracked_box(points, self._detected_px)
        elif near is not None:
            self._box = near.box

    def _lost(self, t: float, face_count: int | None, frame_brightness: float) -> Observation:
        self._box, self._view = None, None
        return Observation(
            t=t,
            box=None,
            landmarks=None,
            face_count=face_count,
            face_score=math.nan,
            turned=None,
            brightness=math.nan,
            sharpness=math.nan,
            face_px=math.nan,
            frame_brightness=frame_brightness,
        )

    def _consider(self, t: float, image: Image_, box: Box, points: Landmarks, face_score: float) -> None:
        """Keep the frame if it is its time slice's best for an encoding so far.

        The frontal filter's score grows with how clearly a frontal face shows (pose, blur,
        shadows): the frames the encoder, trained on frontal photos, reads best. Only frames the
        detector would report at its own threshold (score >= 0) qualify; closed eyes count against.
        """
        score = face_score * min(1.0, actions.eye_aspect_ratio(points) / 0.25)
        offer = _SliceBest((self.segment, int(t // CANDIDATE_SLICE_S)), t, score, self.segment, image, box)
        self._frontal_now = _keep_best(self._frontal_now, offer, self._frontal)

    @property
    def candidates(self) -> dict[tuple[int, int], Candidate]:
        """The best frontal face of each time slice of each segment, by (segment, time slice)."""
        return _with_current(self._frontal, self._frontal_now)

    @property
    def turned(self) -> dict[int, Candidate]:
        """The best turned face of each time slice: its identity is checked too (a head turn is
        where another person's frames are cut in, since frontal frames are matched)."""
        return _with_current(self._turned, self._turned_now)


def _keep_best(current: _SliceBest[K] | None, offer: _SliceBest[K], past: dict[K, Candidate]) -> _SliceBest[K]:
    """The better of the current slice's best and `offer`; a slice left behind (samples come in
    time order, so it does not come back) goes into `past`, cropped."""
    if current is None or current.key != offer.key:
        if current is not None:
            past[current.key] = current.candidate()
        return offer
    return offer if offer.score > current.score else current


def _with_current(past: dict[K, Candidate], current: _SliceBest[K] | None) -> dict[K, Candidate]:
    return past if current is None else {**past, current.key: current.candidate()}


@dataclass(frozen=True)
class FaceChip:
    """The face in grey, upright and scaled by its landmarks (`face_chip`), and where its
    landmarks fall in the chip."""

    pixels: Image_
    points: Landmarks


def face_chip(image: Image_, points: Landmarks) -> FaceChip:
    """The face in grey, upright, the eyes' outer corners CHIP_EYES apart on a level line at
    CHIP_EYE_ROW: the same part of the face at the same place in every chip, however the head
    moved in the frame. Only the chip's pixels are computed (one affine resampling)."""
    right, left = points[36], points[45]
    middle = (right + left) / 2
    axis = left - right
    scale = CHIP_EYES / max(float(np.linalg.norm(axis)), 1e-6)
    angle = math.atan2(float(axis[1]), float(axis[0]))
    cos, sin = scale * math.cos(angle), scale * math.sin(angle)
    # Rotate by -angle and scale about the eyes' middle, then move it to its place in the chip.
    transform = np.array(
        [
            [cos, sin, CHIP_PX / 2 - (cos * middle[0] + sin * middle[1])],
            [-sin, cos, CHIP_EYE_ROW - (-sin * middle[0] + cos * middle[1])],
        ]
    )
    chip = cv2.warpAffine(image, transform, (CHIP_PX, CHIP_PX), flags=cv2.INTER_AREA, borderMode=cv2.BORDER_REPLICATE)
    return FaceChip(
        np.asarray(cv2.cvtColor(chip, cv2.COLOR_RGB2GRAY), dtype=np.uint8),
        np.c_[points, np.ones(len(points))] @ transform.T,
    )


def detect(image: Image_) -> list[_Detection]:
    """Faces the HOG detector finds on a DETECT_LONG_SIDE copy (dlib's threshold 0), in `image` pixels."""
    height, width = image.shape[:2]
    scale = DETECT_LONG_SIDE / max(height, width)
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    small = np.asarray(cv2.resize(image, size, interpolation=cv2.INTER_AREA), dtype=np.uint8)
    return _run(small, scale, 0.0, (0, 0))


@dataclass(frozen=True)
class _Patch:
    """A face and a quarter face around it, scaled so that the face spans PATCH_FACE_PX."""

    box: Box  # the face in the frame
    pixels: Image_
    scale: float
    origin: tuple[int, int]  # the patch's (top, left) in the frame


def _patch(image: Image_, box: Box) -> _Patch:
    top, right, bottom, left = box
    size = max(1, bottom - top)
    margin = size // 4
    y0, x0 = max(0, top - margin), max(0, left - margin)
    crop = image[y0 : max(y0 + 1, bottom + margin), x0 : max(x0 + 1, right + margin)]
    scale = PATCH_FACE_PX / size
    return _Patch(box, _scaled(crop, scale), scale, (y0, x0))


def _detect_near(patch: _Patch) -> _Detection | None:
    """The best detection in the patch around the tracked face, down to PATCH_DETECT_THRESHOLD."""
    found = _run(patch.pixels, patch.scale, PATCH_DETECT_THRESHOLD, patch.origin)
    return max((d for d in found if _overlap(d.box, patch.box) > 0.3), key=lambda d: d.score, default=None)


def _quality(image: Image_, patch: _Patch) -> tuple[float, float]:
    """Mean luma and sharpness of the face box, measured at PATCH_FACE_PX or less.

    One scale for every face keeps sharpness comparable across resolutions; a smaller face is
    measured as it is, since enlarging it would blur it.
    """
    top, right, bottom, left = _clip(patch.box, image.shape)
    if patch.scale < 1:
        y0, x0 = patch.origin
        top, right, bottom, left = (
            round((top - y0) * patch.scale),
            round((right - x0) * patch.scale),
            round((bottom - y0) * patch.scale),
            round((left - x0) * patch.scale),
        )
        face = patch.pixels[top:bottom, left:right]
    else:
        face = image[top:bottom, left:right]
    if face.shape[0] < 3 or face.shape[1] < 3:
        return math.nan, math.nan
    grey = luma(face)
    return float(grey.mean()), sharpness(grey)


def face_quality(image: Image_, box: Box) -> tuple[float, float]:
    """Mean luma (0-255) and sharpness (see `sharpness`) of a face, measured at PATCH_FACE_PX or less."""
    return _quality(image, _patch(image, box))


def _run(image: Image_, scale: float, threshold: float, offset: tuple[int, int]) -> list[_Detection]:
    rectangles, scores, filters = _DETECTOR.run(image, 0, threshold)
    y0, x0 = offset
    return [
        _Detection(
            box=(
                y0 + round(rect.top() / scale),
                x0 + round(rect.right() / scale),
                y0 + round(rect.bottom() / scale),
                x0 + round(rect.left() / scale),
            ),
            score=float(score),
            turned=1 if index == _NOSE_IMAGE_RIGHT else -1 if index == _NOSE_IMAGE_LEFT else 0,
        )
        for rect, score, index in zip(rectangles, scores, filters, strict=True)
    ]


def landmarks(image: Image_, box: Box) -> Landmarks:
    """The 68 landmarks in iBUG order: dlib's predictor as face_recognition.face_landmarks calls it,
    without its regrouping by feature, which this would only undo (up to two calls a sample: the
    Python around them counts)."""
    top, right, bottom, left = box
    shape = _PREDICTOR_68(image, _RECTANGLE(left, top, right, bottom))
    return np.array([(point.x, point.y) for point in shape.parts()], dtype=np.float64)


def encode(candidates: list[Candidate]) -> list[Embedding]:
    return [encode_box(candidate.crop, candidate.box) for candidate in candidates]


def encode_box(image: Image_, box: Box) -> Embedding:
    found = face_recognition.face_encodings(image, [box], ENCODING_JITTERS, ENCODING_LANDMARKS)
    return np.asarray(found[0], dtype=np.float64)


def detect_still(image: Image_) -> list[Box]:
    """Faces in a single photo: time allows upsampling once, which finds faces down to ~40 px."""
    found: list[Box] = face_recognition.face_locations(image, STILL_UPSAMPLE, "hog")
    return found


def sharpness(gray: npt.NDArray[np.float64]) -> float:
    """Variance of the 4-neighbour Laplacian: low when edges are smeared by focus or motion blur."""
    laplacian = gray[1:-1, :-2] + gray[1:-1, 2:] + gray[:-2, 1:-1] + gray[2:, 1:-1] - 4 * gray[1:-1, 1:-1]
    return float(laplacian.var())


def _scaled(image: Image_, scale: float) -> Image_:
    height, width = image.shape[:2]
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    # Area averaging down (as PIL's antialiased filters do, in a third of the time), linear up.
    interpolation = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
    # A crop of a frame is read in place: OpenCV takes strided rows, and copying them costs as much as the resampling.
    return np.asarray(cv2.resize(image, size, interpolation=interpolation), dtype=np.uint8)


def _tracked_box(points: Landmarks, detected_px: float) -> Box:
    """The square box the detector would draw around these landmarks, from the eyes and mouth corners.

    Those points hold still through blinks, a dropped jaw and head turns, unlike the outline:
    a box sized from the landmarks' extent shrinks on a turned face (the predictor answers inside
    its box), the next box is smaller still, and within a second the track collapses. The size is
    also held near the last detection's: a head turning or nodding keeps its size.
    """
    eyes = (points[36] + points[39] + points[42] + points[45]) / 4
    down = (points[48] + points[54]) / 2 - eyes
    centre_x, centre_y = eyes + _BOX_CENTRE * down
    size = _BOX_SIZE * float(np.linalg.norm(down))
    if detected_px > 0:
        size = min(max(size, detected_px / MAX_SIZE_DRIFT), detected_px * MAX_SIZE_DRIFT)
    half = size / 2
    return round(centre_y - half), round(centre_x + half), round(centre_y + half), round(centre_x - half)


def _inside(box: Box, shape: tuple[int, ...]) -> bool:
    """Most of the box lies within the frame: a face sliding out leaves landmarks guessed on the border."""
    top, right, bottom, left = box
    clipped = _clip(box, shape)
    area = (bottom - top) * (right - left)
    inside = max(0, clipped[2] - clipped[0]) * max(0, clipped[1] - clipped[3])
    return area > 0 and inside >= 0.6 * area


def _overlapping(found: list[_Detection], box: Box) -> _Detection | None:
    """The detection of the tracked face, if the detector found it."""
    best = max(found, key=lambda d: _overlap(d.box, box), default=None)
    return best if best is not None and _overlap(best.box, box) > 0.3 else None


def _overlap(a: Box, b: Box) -> float:
    """Intersection over union."""
    top, right, bottom, left = max(a[0], b[0]), min(a[1], b[1]), min(a[2], b[2]), max(a[3], b[3])
    inter = max(0, bottom - top) * max(0, right - left)
    union = (a[2] - a[0]) * (a[1] - a[3]) + (b[2] - b[0]) * (b[1] - b[3]) - inter
    return inter / union if union > 0 else 0.0


def _clip(box: Box, shape: tuple[int, ...]) -> Box:
    top, right, bottom, left = box
    return max(0, top), min(shape[1], right), min(shape[0], bottom), max(0, left)


def _crop(image: Image_, box: Box) -> tuple[Image_, Box]:
    """The face with half a face of margin each side (the encoder's chip reaches past the box)."""
    top, right, bottom, left = box
    size = bottom - top
    margin = size // 2
    y0, y1 = max(0, top - margin), min(image.shape[0], bottom + margin)
    x0, x1 = max(0, left - margin), min(image.shape[1], right + margin)
    crop = image[y0:y1, x0:x1]
    shifted = (top - y0, right - x0, bottom - y0, left - x0)
    scale = min(1.0, CROP_FACE_PX / max(1, size))
    if scale == 1.0:
        return np.ascontiguousarray(crop), shifted
    small = _scaled(crop, scale)
    return small, (
        round(shifted[0] * scale),
        round(shifted[1] * scale),
        round(shifted[2] * scale),
        round(shifted[3] * scale),
    )
