"""Replay detection: is this upload a copy of an earlier submission, of this person or anyone? Pure.

A byte-identical upload has the same SHA-256. A copy re-encoded, cropped, rescaled, mirrored or
cut to an excerpt does not, but it keeps two things no new recording repeats together:

- the scene around the face, frame by frame (`scene_hash`: a difference hash of the square three
  face-heights wide centred on the face, so cropping and rescaling the video leave it alone; a
  mirrored copy's hashes are the mirror images of the original's, `mirrored`);
- the moments of its actions: blinks, turns and an open mouth start and end at the same times
  relative to each other, to a sample or two.

The scene alone is not enough: a pensioner who films again a minute later in the same chair
gives the same scene hashes (measured: 3 bits median between the halves of one live clip, 1-3
bits for a re-encoded copy). Nor is the timing alone: two people can blink alike. A replay is
an earlier recording whose actions line up with this one's at some offset (MIN_SHARED_EVENTS of
them, mirrored turns swapping sides) while the scene, compared frame for frame at that offset,
is the same (median SCENE_BITS or less).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np
import numpy.typing as npt

from liveness.media import luma
from liveness.model import Action, DetectedAction, EarlierSubmission

Box = tuple[int, int, int, int]  # top, right, bottom, left

_HASH_COLUMNS, _HASH_ROWS = 9, 8  # 8 x 8 horizontal gradients: 64 bits
# The scene around the face: a square this many face heights wide.
SCENE_FACES = 3.0
# Overlapping frames of one recording differ by a few bits (a re-encoded or rescaled copy 1-3
# median; cropped, rescaled and re-encoded harder, or mirrored, up to 11 where the detector's box
# sits a little differently); another scene by 20 and more.
SCENE_BITS = 14
# A copy's actions start where the original's do to within a sample or two (15 fps); where they
# end is less sure (a turn's last measured sample moves with the copy's sampling and quality:
# up to 0.54 s seen on a mirrored, re-encoded copy).
EVENT_TOLERANCE_S = 0.2
END_TOLERANCE_S = 0.6
# How much of the actions must line up for a replay (with the scene agreeing there): a turn or an
# open mouth counts 1, a blink half (blinks come every few seconds, so two of a pensioner's new
# recording can fall where two of the old one's did). A turn and a blink suffice, since a copy's
# detector can miss or add a blink (an excerpt of three actions kept two of them in place).
MIN_SHARED_EVENTS = 1.5
# Frames compared for the scene at the aligned offset: their times within this of each other.
FRAME_TOLERANCE_S = 0.2

_MIRRORED = {Action.TURN_LEFT: Action.TURN_RIGHT, Action.TURN_RIGHT: Action.TURN_LEFT}


def sha256(parts: Sequence[bytes]) -> str:
    """SHA-256 over the upload: the video's bytes, or a burst's stills in order (length-prefixed)."""
    digest = hashlib.sha256()
    if len(parts) == 1:
        digest.update(parts[0])
    else:
        for part in parts:
            digest.update(len(part).to_bytes(8, "big"))
            digest.update(part)
    return digest.hexdigest()


def dhash(image: npt.NDArray[np.uint8]) -> int:
    """64-bit difference hash: is each cell of a 9 x 8 grey thumbnail brighter than its right neighbour.

    The thumbnail averages whole blocks of pixels, so compression noise and rescaling leave it alone.
    """
    grey = luma(image) if image.ndim == 3 else image.astype(np.float64)
    height, width = grey.shape
    rows = np.linspace(0, height, _HASH_ROWS + 1).astype(int)
    columns = np.linspace(0, width, _HASH_COLUMNS + 1).astype(int)
    cells = np.add.reduceat(np.add.reduceat(grey, rows[:-1], axis=0), columns[:-1], axis=1)
    cells /= np.outer(np.diff(rows), np.diff(columns))
    bits = (cells[:, :-1] > cells[:, 1:]).flatten()
    return int(sum(1 << i for i, bit in enumerate(bits) if bit))


def scene_hash(image: npt.NDArray[np.uint8], box: Box) -> int:
    """`dhash` of the square SCENE_FACES face heights wide centred on the face (the frame's edges
    repeated where the square reaches past them)."""
    top, right, bottom, left = box
    side = max(2.0, SCENE_FACES * (bottom - top))
    y0, x0 = (top + bottom) / 2 - side / 2, (left + right) / 2 - side / 2
    height, width = image.shape[:2]
    iy0, ix0 = max(0, round(y0)), max(0, round(x0))
    iy1, ix1 = min(height, round(y0 + side)), min(width, round(x0 + side))
    columns, rows = _HASH_COLUMNS * 4, _HASH_ROWS * 4
    if iy1 - iy0 < 2 or ix1 - ix0 < 2:
        return 0
    # Averaging whole blocks (INTER_AREA) keeps the thumbnail free of aliasing, so a copy's hash
    # does not depend on where the pixel grid fell.
    fx, fy = columns / side, rows / side
    size = (max(1, round((ix1 - ix0) * fx)), max(1, round((iy1 - iy0) * fy)))
    # Every n-th pixel first (still 4 or more per thumbnail pixel each way): a quarter of the cost.
    step = max(1, int(side // (columns * 4)))
    small = cv2.resize(image[iy0:iy1:step, ix0:ix1:step], size, interpolation=cv2.INTER_AREA)
    pad_top, pad_left = round((iy0 - y0) * fy), round((ix0 - x0) * fx)
    padded = cv2.copyMakeBorder(
        small,
        pad_top,
        max(0, rows - pad_top - size[1]),
        pad_left,
        max(0, columns - pad_left - size[0]),
        cv2.BORDER_REPLICATE,
    )
    return dhash(np.asarray(padded[:rows, :columns], dtype=np.uint8))


def mirrored(value: int) -> int:
    """The dhash of the mirror image: each row's gradients in reverse order, each of them reversed."""
    result = 0
    for row in range(_HASH_ROWS):
        bits = (value >> (row * 8)) & 0xFF
        reversed_bits = int(f"{bits:08b}"[::-1], 2)
        result |= (~reversed_bits & 0xFF) << (row * 8)
    return result


def index_keys(hashes: Sequence[int], mirror: bool = False) -> list[int]:
    """Both 32-bit halves of every hash (and of its mirror image, for a query), as signed 32-bit
    integers: keys for an index that finds recordings sharing frames with these (a copy shares
    many; `find_replay` then decides)."""
    values = [*hashes, *(mirrored(h) for h in hashes)] if mirror else list(hashes)
    halves = {half for value in values for half in (value >> 32, value & 0xFFFFFFFF)}
    return sorted(half - (1 << 32) if half >= 1 << 31 else half for half in halves)


def hamming(a: int, b: int) -> int:
    return (a ^ b).bit_count()


@dataclass(frozen=True)
class Replay:
    of: str | None  # the check id of the earlier submission this upload copies
    mirrored: bool = False
    offset_s: float | None = None  # where this upload starts in the earlier one
    shared_events: float = 0.0  # the actions that lined up (see MIN_SHARED_EVENTS)
    person: str | None = None  # the earlier submission's person, when it named one


def find_replay(
    sha256: str,
    frame_times: Sequence[float],
    frame_hashes: Sequence[int],
    events: Sequence[DetectedAction],
    earlier: Sequence[EarlierSubmission],
) -> Replay:
    """The earlier submission this upload copies, if any (see the module docstring)."""
    for submission in earlier:
        if submission.sha256 == sha256:
            return Replay(submission.check_id, person=submission.person_id)
    for submission in earlier:
        for flipped in (False, True):
            # Every offset at which enough actions line up, most first: the scene decides among them
            # (a copy's detector can shift an action enough for a wrong offset to line up as many).
            for offset, shared in _alignments(events, submission.events, flipped):
                distance = scene_distance(frame_times, frame_hashes, submission, offset, flipped)
                if distance is not None and distance <= SCENE_BITS:
                    return Replay(submission.check_id, flipped, round(offset, 3), shared, submission.person_id)
    return Replay(None)


def _kind(event: DetectedAction, flipped: bool) -> Action:
    return _MIRRORED.get(event.action, event.action) if flipped else event.action


def _alignments(
    ours: Sequence[DetectedAction], theirs: Sequence[DetectedAction], flipped: bool
) -> list[tuple[float, float]]:
    """The offsets (their time minus ours) at which our events fall on theirs, weighing
    MIN_SHARED_EVENTS or more, with their weight, most first."""
    found = []
    offsets = {their.at_s - our.at_s for our in ours for their in theirs if _kind(our, flipped) is their.action}
    for offset in sorted(offsets):
        shared = sum(
            (0.5 if our.action is Action.BLINK else 1.0)
            * any(
                _kind(our, flipped) is their.action
                and abs(their.at_s - (our.at_s + offset)) <= EVENT_TOLERANCE_S
                and (
                    our.until_s is None
                    or their.until_s is None
                    or abs(their.until_s - (our.until_s + offset)) <= END_TOLERANCE_S
                )
                for their in theirs
            )
            for our in ours
        )
        if shared >= MIN_SHARED_EVENTS:
            found.append((offset, shared))
    return sorted(found, key=lambda alignment: -alignment[1])


def scene_distance(
    frame_times: Sequence[float],
    frame_hashes: Sequence[int],
    submission: EarlierSubmission,
    offset: float,
    flipped: bool,
) -> int | None:
    """Median Hamming distance between our frames and theirs at the same moment of the recording
    (ours shifted by `offset`, theirs mirrored back when `flipped`); None when none overlap."""
    if not submission.frame_times:
        return None
    times = np.asarray(submission.frame_times)
    distances = []
    for t, value in zip(frame_times, frame_hashes, strict=True):
        nearest = int(np.argmin(np.abs(times - (t + offset))))
        if abs(times[nearest] - (t + offset)) <= FRAME_TOLERANCE_S:
            theirs = submission.frame_hashes[nearest]
            distances.append(hamming(value, mirrored(theirs) if flipped else theirs))
    return int(np.median(distances)) if distances else None
