"""Replay detection: digests, perceptual hashes, and the earlier submission a copy matches."""

from __future__ import annotations

import hashlib
import io

import numpy as np
import pytest
from PIL import Image

from liveness import replay
from liveness.model import EarlierSubmission, Thresholds

RNG = np.random.default_rng(7)


def scene(seed: int) -> np.ndarray:
    """A smooth random picture (real frames are smooth at the hash's 9 x 8 scale)."""
    coarse = np.random.default_rng(seed).integers(0, 255, (6, 8, 3), dtype=np.uint8)
    return np.asarray(Image.fromarray(coarse).resize((320, 240), Image.Resampling.BICUBIC))


def recompressed(image: np.ndarray, size: tuple[int, int], quality: int) -> np.ndarray:
    buffer = io.BytesIO()
    Image.fromarray(image).resize(size, Image.Resampling.BILINEAR).save(buffer, format="JPEG", quality=quality)
    return np.asarray(Image.open(buffer).convert("RGB"))


def test_sha256_of_a_video_is_of_its_bytes_and_a_burst_depends_on_every_still() -> None:
    assert replay.sha256([b"abc"]) == hashlib.sha256(b"abc").hexdigest()
    assert replay.sha256([b"ab", b"c"]) != replay.sha256([b"a", b"bc"])


def test_dhash_survives_rescaling_and_recompression() -> None:
    original = scene(1)
    copy = recompressed(original, (200, 150), 40)
    assert replay.hamming(replay.dhash(original), replay.dhash(copy)) <= 2


def test_dhash_tells_different_pictures_apart() -> None:
    distances = [replay.hamming(replay.dhash(scene(1)), replay.dhash(scene(seed))) for seed in range(2, 12)]
    assert min(distances) > 12


def test_dhash_is_64_bits_of_horizontal_gradients() -> None:
    ramp = np.tile(np.arange(0, 255, 2, dtype=np.uint8), (64, 1))
    assert replay.dhash(ramp) == 0  # brightness grows to the right: no cell brighter than its right neighbour
    assert replay.dhash(ramp[:, ::-1]) == 2**64 - 1


def test_hash_distance_ignores_order_and_trimming() -> None:
    ours = [0b1111, 0b1010, 0]
    theirs = [2**40, 0, 0b1011, 0b1111]
    assert replay.hash_distance(ours, theirs) == 0
    assert replay.hash_distance(ours, []) is None


EMBEDDING = RNG.normal(size=128) / 12


def earlier(
    check_id: str, sha: str = "other", hashes: tuple[int, ...] = (1, 2, 3), shift: float = 0.0
) -> EarlierSubmission:
    return EarlierSubmission(check_id=check_id, sha256=sha, embedding=EMBEDDING + shift, frame_hashes=hashes)


@pytest.mark.parametrize(
    ("submissions", "expected"),
    [
        ([earlier("a", sha="same", hashes=(2**63,), shift=1.0)], "a"),  # byte-identical
        ([earlier("a", hashes=(1, 2, 3), shift=0.005)], "a"),  # re-encoded copy
        ([earlier("a", hashes=(1, 2, 3), shift=0.05)], None),  # same room, new clip: the face moved on
        ([earlier("a", hashes=(2**63 - 1,), shift=0.0)], None),  # another scene
        ([earlier("a", hashes=())], None),
        ([earlier("a", shift=0.05), earlier("b", hashes=(3, 2, 1))], "b"),
    ],
)
def test_find_replay(submissions: list[EarlierSubmission], expected: str | None) -> None:
    assert replay.find_replay("same", (1, 2, 3), EMBEDDING, submissions, Thresholds()).of == expected


def test_find_replay_without_an_embedding_matches_bytes_only() -> None:
    assert replay.find_replay("x", (1, 2, 3), None, [earlier("a")], Thresholds()).of is None
    assert replay.find_replay("other", (1, 2, 3), None, [earlier("a")], Thresholds()).of == "a"


def test_find_replay_reports_the_nearest_earlier_frames() -> None:
    submissions = [earlier("a", hashes=(2**63 - 1,)), earlier("b", hashes=()), earlier("c", hashes=(0b111, 0b11))]
    assert replay.find_replay("x", (1, 2, 3), EMBEDDING, submissions, Thresholds()).hash_distance == 1
    assert replay.find_replay("x", (1, 2, 3), EMBEDDING, [earlier("b", hashes=())], Thresholds()).hash_distance is None
    assert replay.find_replay("x", (1, 2, 3), EMBEDDING, [], Thresholds()) == replay.Replay(None, None)
