"""The plain data the face worker's pure core takes and gives: no I/O, no database, no S3.

The worker (imperative shell) loads media and the reference embedding, calls
`liveness.pipeline.analyse`, and stores the `Analysis` it returns.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

if TYPE_CHECKING:
    from infra.config import Settings

Embedding = npt.NDArray[np.float64]  # dlib ResNet face descriptor, 128 floats


class Action(StrEnum):
    """A liveness challenge action, named from the person's point of view (their own left).

    Videos are analysed as the camera recorded them (not mirrored): a person turning to their
    left shows the nose moving to the right of the image.
    """

    BLINK = "blink"
    TURN_LEFT = "turn_left"
    TURN_RIGHT = "turn_right"
    OPEN_MOUTH = "open_mouth"


class Outcome(StrEnum):
    PASSED = "passed"
    FAILED = "failed"
    NEEDS_REVIEW = "needs_review"
    RETRY = "retry"  # a quality problem the person can fix; not counted as a failure


class Reason(StrEnum):
    """Why a check did not pass; the API turns each into text and advice in the person's language."""

    # media
    UNREADABLE_MEDIA = "unreadable_media"
    TOO_SHORT = "too_short"
    TOO_LONG = "too_long"
    # faces
    NO_FACE = "no_face"
    MULTIPLE_FACES = "multiple_faces"
    IDENTITY_CHANGED = "identity_changed"
    # quality (retry)
    FACE_TOO_SMALL = "face_too_small"
    TOO_DARK = "too_dark"
    TOO_BLURRED = "too_blurred"
    FACE_LOST = "face_lost"
    # liveness
    ACTION_NOT_DETECTED = "action_not_detected"
    WRONG_ORDER = "wrong_order"
    EXTRA_ACTION = "extra_action"  # an action that was not asked for (a blink aside)
    ACTION_TIMING = "action_timing"  # too long before an action, or no return to neutral between two
    NO_MOTION = "no_motion"
    # matching
    MATCH_UNCERTAIN = "match_uncertain"
    NOT_SAME_PERSON = "not_same_person"
    # replay
    REPLAYED_MEDIA = "replayed_media"
    REFERENCE_COPY = "reference_copy"  # the clip was made from the reference photo itself
    FACE_COLLISION = "face_collision"  # the face is another pensioner's (1:N)
    EDITED_MEDIA = "edited_media"  # the recording was cut and joined
    PRESENTATION_ATTACK = "presentation_attack"  # a screen or a print held before the camera
    # reference enrolment
    REFERENCE_MISSING = "reference_missing"
    # the worker itself failed on this check, repeatedly: a person decides
    ANALYSIS_ERROR = "analysis_error"


@dataclass(frozen=True)
class Thresholds:
    """Decision bands; defaults calibrated on shared/faces/lfw-dev by `python -m tools.liveness.evaluate`."""

    accept_distance: float = 0.469  # bootstrap 95% upper bound of FMR on lfw-dev under 1e-4 (3.4e-5 measured)
    reject_distance: float = 0.6  # above: not the same person
    # A clip this close to the reference photo was made from it: a re-encoded copy of a photo lies
    # 0.04-0.14 from it, a live clip from a frame of the same sitting 0.19-0.23, another photo of
    # the person 0.31-0.43 (shared/faces/README.md and `tools.liveness.evaluate`).
    replay_distance: float = 0.15
    # Another pensioner's face this close is the same face (1:N). Tighter than accepting a match
    # 1:1: against millions of templates, an accept-band look-alike turns up for every query.
    collision_distance: float = 0.35
    # A turned face this far from the clip's frontal faces is someone else's (cut in where the
    # head turns): one person's turned face lies 0.31-0.63 from their frontal mean (the encoder
    # reads turned faces poorly), another person's turn spliced into a clip 0.68-0.82. Only the
    # plainest splices count here; the cut itself is what texture.largest_jump finds.
    turned_distance: float = 0.8

    @classmethod
    def configured(cls, settings: Settings) -> Thresholds:
        """The bands this deployment runs with (FACE_*_DISTANCE): the worker decides by them, the console shows them."""
        return cls(
            accept_distance=settings.face_accept_distance,
            reject_distance=settings.face_reject_distance,
            replay_distance=settings.face_replay_distance,
            collision_distance=settings.face_collision_distance,
        )


@dataclass(frozen=True)
class Media:
    """An upload: one video container, or a burst of still images (JPEG), as raw bytes."""

    video: bytes | None = None
    frames: tuple[bytes, ...] = ()


@dataclass(frozen=True)
class DetectedAction:
    action: Action
    at_s: float  # time of onset in the clip
    strength: float  # how far past the person's baseline (ratio or offset, per detector)
    until_s: float | None = None  # the last sample of the action
    # The first sample after it at which the face is back to neutral for this action (the head
    # facing ahead again, the mouth closed, the eyes open); None when it never came back.
    settled_s: float | None = None


@dataclass(frozen=True)
class EarlierSubmission:
    """What is kept of a submission to recognise a copy of it (`liveness.replay`)."""

    check_id: str
    sha256: str
    embedding: Embedding | None
    frame_hashes: tuple[int, ...]  # scene hashes (replay.scene_hash)
    frame_times: tuple[float, ...] = ()  # of each hashed frame
    events: tuple[DetectedAction, ...] = ()  # the actions it showed
    person_id: str | None = None  # whose it is, when it may be another person's (replay candidates)


@dataclass(frozen=True)
class Analysis:
    """Everything the decision rests on, stored with the check and shown to reviewers."""

    outcome: Outcome
    reasons: tuple[Reason, ...]
    scores: dict[str, float]  # match_distance, frames_analysed, face_px, brightness, sharpness, ...
    actions: tuple[DetectedAction, ...] = ()
    sha256: str = ""
    frame_hashes: tuple[int, ...] = ()  # scene hashes (replay.scene_hash)
    frame_times: tuple[float, ...] = ()
    embedding: Embedding | None = None  # mean of the matched frames' embeddings
    replay_of: str | None = None  # check id of the earlier submission this one copies
    replay_of_person: str | None = None  # its person, when another's (None: the same person)
    review_frames: tuple[bytes, ...] = field(default=(), repr=False)  # JPEGs for the reviewer


@dataclass(frozen=True)
class Enrollment:
    """The result of enrolling a reference photo: an embedding, or the reasons it cannot be used."""

    embedding: Embedding | None
    reasons: tuple[Reason, ...]
    scores: dict[str, float]
