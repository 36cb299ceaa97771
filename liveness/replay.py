"""Replay detection: is this upload a copy of an earlier submission? Pure functions.

A byte-identical upload has the same SHA-256. A re-encoded, trimmed or rescaled copy does not,
but its frames keep their perceptual hashes (within a few bits) and its faces their embedding
(a re-compressed copy of a photo lies 0.04-0.14 from the original, two different photos of one
person 0.31-0.43). Both must agree: the same person filming again in the same room and light
gives similar frame hashes, but new expressions and poses move the mean embedding further.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from liveness.media import luma
from liveness.model import EarlierSubmission, Embedding, Thresholds

_HASH_COLUMNS, _HASH_ROWS = 9, 8  # 8 x 8 horizontal gradients: 64 bits


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


def hamming(a: int, b: int) -> int:
    return (a ^ b).bit_count()


def hash_distance(ours: Sequence[int], theirs: Sequence[int]) -> int | None:
    """Median over our frames of the distance to the nearest of their frames (order and trimming do not matter)."""
    if not ours or not theirs:
        return None
    return int(np.median([min(hamming(a, b) for b in theirs) for a in ours]))


@dataclass(frozen=True)
class Replay:
    of: str | None  # the check id of the earlier submission this upload copies
    hash_distance: int | None  # to the nearest earlier submission's frames; None: nothing to compare


def find_replay(
    sha256: str,
    frame_hashes: Sequence[int],
    embedding: Embedding | None,
    earlier: Sequence[EarlierSubmission],
    thresholds: Thresholds,
) -> Replay:
    """The earlier submission this upload copies, if any, and how near the nearest one's frames are."""
    distances = [hash_distance(frame_hashes, submission.frame_hashes) for submission in earlier]
    nearest = min((distance for distance in distances if distance is not None), default=None)
    return Replay(_copied(sha256, distances, embedding, earlier, thresholds), nearest)


def _copied(
    sha256: str,
    distances: Sequence[int | None],
    embedding: Embedding | None,
    earlier: Sequence[EarlierSubmission],
    thresholds: Thresholds,
) -> str | None:
    for submission in earlier:
        if submission.sha256 == sha256:
            return submission.check_id
    if embedding is None:
        return None
    for submission, distance in zip(earlier, distances, strict=True):
        if distance is None or distance > thresholds.replay_hash_bits or submission.embedding is None:
            continue
        if float(np.linalg.norm(submission.embedding - embedding)) < thresholds.replay_distance:
            return submission.check_id
    return None
