"""The decision's bands and precedence."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from liveness.decision import Evidence, decide, reconsider
from liveness.model import Action, Analysis, DetectedAction, EarlierSubmission, Outcome, Reason, Thresholds

LIVE = Evidence(
    face_seen=True,
    multi_face_keyframes=0,
    identity_spread=0.3,
    liveness=(),
    capture=(),
    match_distance=0.35,
    reference_missing=False,
    replay_of=None,
)


def judged(**change: Any) -> tuple[Outcome, tuple[Reason, ...]]:
    return decide(dataclasses.replace(LIVE, **change), Thresholds())


@pytest.mark.parametrize(
    ("distance", "expected"),
    [
        (0.35, (Outcome.PASSED, ())),
        (0.469, (Outcome.PASSED, ())),
        (0.5, (Outcome.NEEDS_REVIEW, (Reason.MATCH_UNCERTAIN,))),
        (0.6, (Outcome.NEEDS_REVIEW, (Reason.MATCH_UNCERTAIN,))),
        (0.65, (Outcome.FAILED, (Reason.NOT_SAME_PERSON,))),
    ],
)
def test_match_bands(distance: float, expected: tuple[Outcome, tuple[Reason, ...]]) -> None:
    assert judged(match_distance=distance) == expected


def test_a_replay_goes_to_review_even_when_everything_else_passes_or_fails() -> None:
    assert judged(replay_of="c1") == (Outcome.NEEDS_REVIEW, (Reason.REPLAYED_MEDIA,))
    outcome, reasons = judged(replay_of="c1", liveness=(Reason.ACTION_NOT_DETECTED,), multi_face_keyframes=3)
    assert outcome is Outcome.NEEDS_REVIEW
    assert reasons[:2] == (Reason.REPLAYED_MEDIA, Reason.MULTIPLE_FACES)


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"multi_face_keyframes": 2}, Reason.MULTIPLE_FACES),
        ({"identity_spread": 0.7}, Reason.IDENTITY_CHANGED),
        ({"liveness": (Reason.NO_MOTION, Reason.ACTION_NOT_DETECTED)}, Reason.NO_MOTION),
        ({"liveness": (Reason.WRONG_ORDER,)}, Reason.WRONG_ORDER),
    ],
)
def test_proof_against_the_person_fails_despite_a_perfect_match_and_poor_capture(
    change: dict[str, Any], reason: Reason
) -> None:
    outcome, reasons = judged(match_distance=0.1, capture=(Reason.TOO_DARK,), **change)
    assert outcome is Outcome.FAILED
    assert reasons[0] is reason
    assert Reason.TOO_DARK in reasons


def test_a_cut_recording_or_a_copy_of_the_reference_goes_to_review_unless_it_fails_on_proof() -> None:
    assert judged(edited=True) == (Outcome.NEEDS_REVIEW, (Reason.EDITED_MEDIA,))
    assert judged(match_distance=0.1) == (Outcome.NEEDS_REVIEW, (Reason.REFERENCE_COPY,))
    assert judged(match_distance=0.1, liveness=(Reason.NO_MOTION,))[0] is Outcome.FAILED
    assert judged(edited=True, face_seen=False, match_distance=None)[0] is Outcome.FAILED  # noise, not a cut


def _analysis(outcome: Outcome, reasons: tuple[Reason, ...]) -> Analysis:
    event = DetectedAction(Action.TURN_LEFT, 1.0, 0.5, 2.0, 2.2)
    blinks = tuple(DetectedAction(Action.BLINK, t, 0.5, t + 0.1, t + 0.2) for t in (0.5, 3.0))
    return Analysis(
        outcome, reasons, {}, actions=(event, *blinks), sha256="s", frame_hashes=(1, 2, 3), frame_times=(0.0, 1.0, 2.0)
    )


def test_reconsider_sends_a_copy_of_another_persons_recording_or_face_to_review() -> None:
    passed = _analysis(Outcome.PASSED, ())
    assert reconsider(passed, [], collided=False) is passed
    collided = reconsider(passed, [], collided=True)
    assert (collided.outcome, collided.reasons) == (Outcome.NEEDS_REVIEW, (Reason.FACE_COLLISION,))
    other = EarlierSubmission("c9", "s", None, (1, 2, 3), (0.0, 1.0, 2.0), passed.actions, person_id="p9")
    copied = reconsider(_analysis(Outcome.FAILED, (Reason.NO_MOTION,)), [other], collided=False)
    # The copied recording is another person's: its person is kept beside it, to read it on their shard.
    assert (copied.outcome, copied.reasons, copied.replay_of, copied.replay_of_person) == (
        Outcome.NEEDS_REVIEW,
        (Reason.REPLAYED_MEDIA, Reason.NO_MOTION),
        "c9",
        "p9",
    )
    # A copy of the person's own earlier recording, found first, stays theirs.
    own = dataclasses.replace(passed, replay_of="c1")
    assert (reconsider(own, [other], collided=False).replay_of_person, own.replay_of) == (None, "c1")


def test_one_second_face_is_not_enough_to_fail() -> None:
    assert judged(multi_face_keyframes=1) == (Outcome.PASSED, ())


@pytest.mark.parametrize(
    "change",
    [
        {"liveness": (Reason.ACTION_NOT_DETECTED,)},
        {"match_distance": 0.55},
        {"match_distance": 0.8},
        {"face_seen": False, "match_distance": None, "identity_spread": None},
    ],
)
def test_capture_problems_turn_weak_failures_into_a_retry(change: dict[str, Any]) -> None:
    outcome, reasons = judged(capture=(Reason.TOO_BLURRED,), **change)
    assert outcome is Outcome.RETRY
    assert reasons[0] is Reason.TOO_BLURRED


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"liveness": (Reason.ACTION_NOT_DETECTED,)}, (Outcome.FAILED, (Reason.ACTION_NOT_DETECTED,))),
        (
            {"face_seen": False, "match_distance": None, "identity_spread": None},
            (Outcome.FAILED, (Reason.NO_FACE,)),
        ),
        ({"match_distance": None}, (Outcome.FAILED, (Reason.NO_FACE,))),
        ({"reference_missing": True, "match_distance": None}, (Outcome.NEEDS_REVIEW, (Reason.REFERENCE_MISSING,))),
        (
            {"reference_missing": True, "liveness": (Reason.ACTION_NOT_DETECTED,)},
            (Outcome.FAILED, (Reason.ACTION_NOT_DETECTED, Reason.REFERENCE_MISSING)),
        ),
    ],
)
def test_remaining_failures_and_the_missing_reference(
    change: dict[str, Any], expected: tuple[Outcome, tuple[Reason, ...]]
) -> None:
    assert judged(**change) == expected


def test_a_turned_face_far_from_the_frontal_ones_is_another_identity() -> None:
    assert judged(turned_identity=0.6) == (Outcome.PASSED, ())  # one person's turned face reads poorly
    outcome, reasons = judged(turned_identity=0.85)
    assert (outcome, reasons[0]) == (Outcome.FAILED, Reason.IDENTITY_CHANGED)
