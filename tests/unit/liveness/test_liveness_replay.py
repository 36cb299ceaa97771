"""Replay detection: digests, perceptual hashes, and the earlier submission a copy matches."""

from __future__ import annotations

import hashlib
import io

import numpy as np
import pytest
from PIL import Image

from liveness import replay
from liveness.model import Action, DetectedAction, EarlierSubmission


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


def test_a_mirror_image_hashes_to_the_mirrored_hash() -> None:
    for seed in range(1, 6):
        picture = scene(seed)
        assert replay.hamming(replay.dhash(picture[:, ::-1]), replay.mirrored(replay.dhash(picture))) <= 2
    assert replay.mirrored(replay.mirrored(0x0123456789ABCDEF)) == 0x0123456789ABCDEF


def test_the_scene_hash_follows_the_face_not_the_frame() -> None:
    frame = scene(3)
    box = (90, 190, 150, 130)  # a 60 px face in the middle
    cropped = frame[20:220, 30:300]  # the same recording cropped: the face moved in the frame
    shifted_box = (70, 160, 130, 100)
    assert replay.hamming(replay.scene_hash(frame, box), replay.scene_hash(cropped, shifted_box)) <= 3
    assert replay.hamming(replay.scene_hash(frame, box), replay.scene_hash(scene(4), box)) > 12


def test_index_keys_are_signed_halves_and_cover_mirror_images() -> None:
    value = 0xFFFFFFFF00000001
    assert replay.index_keys([value]) == [-1, 1]
    assert set(replay.index_keys([value])) <= set(replay.index_keys([value], mirror=True))
    assert len(replay.index_keys([value], mirror=True)) == 4


B, L, R, M = Action.BLINK, Action.TURN_LEFT, Action.TURN_RIGHT, Action.OPEN_MOUTH


def event(action: Action, at: float, lasting: float = 0.3) -> DetectedAction:
    return DetectedAction(action, at, 1.0, at + lasting, at + lasting + 0.1)


# A recording: blinks and turns at these times, a scene hash every 0.13 s.
EVENTS = (event(B, 0.8, 0.1), event(L, 1.5, 1.2), event(B, 3.1, 0.1), event(R, 4.0, 1.0), event(B, 5.6, 0.1))
TIMES = tuple(round(0.133 * i, 3) for i in range(50))
HASHES = tuple(int(h) for h in np.random.default_rng(5).integers(0, 2**63, 50))


def earlier(
    check_id: str, sha: str = "other", events: tuple[DetectedAction, ...] = EVENTS, hashes=HASHES, times=TIMES
) -> EarlierSubmission:
    return EarlierSubmission(check_id, sha, None, tuple(hashes), tuple(times), events)


def shifted(events: tuple[DetectedAction, ...], by: float) -> tuple[DetectedAction, ...]:
    return tuple(
        DetectedAction(e.action, e.at_s + by, e.strength, (e.until_s or 0) + by, (e.settled_s or 0) + by)
        for e in events
    )


def near(hashes: tuple[int, ...], bits: int) -> tuple[int, ...]:
    return tuple(h ^ ((1 << bits) - 1) for h in hashes)


def test_a_byte_identical_upload_is_a_replay() -> None:
    assert replay.find_replay("same", (), (), (), [earlier("a", sha="same")]).of == "a"


def test_a_reencoded_copy_is_a_replay() -> None:
    found = replay.find_replay("x", TIMES, near(HASHES, 3), EVENTS, [earlier("a")])
    assert (found.of, found.mirrored, found.offset_s, found.shared_events) == ("a", False, 0.0, 3.5)


def test_an_excerpt_is_a_replay_at_its_offset() -> None:
    start = 20  # the excerpt starts 2.66 s into the original
    offset = TIMES[start]
    times = tuple(round(t - offset, 3) for t in TIMES[start:])
    events = shifted(tuple(e for e in EVENTS if e.at_s >= offset), -offset)
    found = replay.find_replay("x", times, near(HASHES[start:], 2), events, [earlier("a")])
    assert found.of == "a"
    assert found.offset_s == pytest.approx(offset, abs=0.01)


def test_a_mirrored_copy_is_a_replay_with_the_turns_swapped() -> None:
    flipped = tuple(
        DetectedAction({L: R, R: L}.get(e.action, e.action), e.at_s, e.strength, e.until_s, e.settled_s) for e in EVENTS
    )
    found = replay.find_replay("x", TIMES, tuple(replay.mirrored(h) for h in HASHES), flipped, [earlier("a")])
    assert (found.of, found.mirrored) == ("a", True)


def test_the_same_scene_filmed_again_is_no_replay() -> None:
    # Same chair, same light (the scene hashes agree), but the actions come at other moments.
    again = (event(B, 0.5, 0.1), event(L, 1.0, 1.4), event(B, 3.6, 0.1), event(R, 4.4, 1.2), event(B, 6.5, 0.1))
    assert replay.find_replay("x", TIMES, HASHES, again, [earlier("a")]).of is None


def test_the_same_timing_in_another_scene_is_no_replay() -> None:
    other_scene = tuple(int(h) for h in np.random.default_rng(9).integers(0, 2**63, 50))
    assert replay.find_replay("x", TIMES, other_scene, EVENTS, [earlier("a")]).of is None


def test_one_shared_action_is_not_enough() -> None:
    single = (EVENTS[1],)
    assert replay.find_replay("x", TIMES, HASHES, single, [earlier("a")]).of is None


def test_two_blinks_in_place_are_not_enough_but_a_turn_and_a_blink_are() -> None:
    blinks = (EVENTS[0], EVENTS[2])  # a new recording in the same chair can blink where the old one did
    assert replay.find_replay("x", TIMES, HASHES, blinks, [earlier("a")]).of is None
    assert replay.find_replay("x", TIMES, HASHES, (EVENTS[1], EVENTS[2]), [earlier("a")]).of == "a"
    assert replay.find_replay("x", TIMES, HASHES, (EVENTS[0], EVENTS[2], EVENTS[4]), [earlier("a")]).of == "a"


def test_the_first_earlier_submission_copied_is_named() -> None:
    other_scene = tuple(int(h) for h in np.random.default_rng(9).integers(0, 2**63, 50))
    submissions = [earlier("a", hashes=other_scene), earlier("b")]
    assert replay.find_replay("x", TIMES, HASHES, EVENTS, submissions).of == "b"
    assert replay.find_replay("x", TIMES, HASHES, EVENTS, []) == replay.Replay(None)
