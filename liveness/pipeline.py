"""The face worker's core: `analyse` a liveness upload, `enroll` a reference photo.

Both take bytes and plain data and return plain data: no I/O, no database, no clock. Bad media
never raises; it becomes an outcome with a reason.

`analyse` is `judge(measure(media), ...)`: `measure` does everything that does not depend on the
challenge, the reference or earlier submissions once (decoding, face tracking, encodings, the
actions performed, capture quality, frame hashes, review frames); `judge` is cheap and pure.
"""

from __future__ import annotations

import dataclasses
import io
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TypeGuard

import cv2
import numpy as np
from PIL import Image

from liveness import actions, decision, faces, quality, replay, texture
from liveness.faces import Candidate, FaceTracker, Observation
from liveness.media import Frame, Image_, MediaError, decode_still, decode_video, frame_brightness, frames
from liveness.model import (
    Action,
    Analysis,
    DetectedAction,
    EarlierSubmission,
    Embedding,
    Enrollment,
    Media,
    Outcome,
    Reason,
    Thresholds,
)

DEFAULT_THRESHOLDS = Thresholds()
# One check at a time per analysing process (scale out with processes): OpenCV's worker threads
# for a 112-pixel optical flow cost more CPU than they save.
cv2.setNumThreads(1)
# Encodings cost 70-90 ms each: a few frames spread over the clip give a robust median match and
# catch a face swapped in mid-clip. One per ENCODING_EVERY_S of clip, within these bounds.
MIN_ENCODINGS, MAX_ENCODINGS = 3, 5
ENCODING_EVERY_S = 3.0
# Turned faces encoded to check their identity too (the best-seen ones; Thresholds.turned_distance).
TURNED_ENCODINGS = 2
# Candidates scoring below this share of the clip's best (turned, blinking or blurred faces)
# are not encoded: their encodings stray 0.4-0.7 from the person's own others.
MIN_CANDIDATE_SHARE = 0.5
# Thumbnails of every this many samples (0.67 s at 15 fps) are offered to the reviewer.
THUMBNAIL_EVERY = 10
# The scene around the face is hashed on every this many samples (7.5 a second at 15 fps), so
# that an excerpt of a few seconds still shares dozens of frames with the clip it was cut from.
SCENE_EVERY = 2
# A screen's or a print's pattern is sought on this many of the review thumbnails' frames, in a
# face crop of at most this many pixels a side.
PATTERN_FRAMES = 6
PATTERN_FACE_PX = 320
# Frames shown to the reviewer, and their size: enough to see the face and what surrounds it.
MIN_REVIEW_FRAMES, REVIEW_FRAMES = 3, 6
REVIEW_LONG_SIDE = 360
REVIEW_JPEG_QUALITY = 80
# Fewer plausible frontal frames than this cannot tell a still picture from a live face.
MIN_MOTION_FRAMES = 5
# A reference taken from a clip's frame is enrolled as a JPEG of this quality, as an imported photo.
REFERENCE_JPEG_QUALITY = 92


@dataclass(frozen=True)
class Measurements:
    """What one pass over an upload yields, whatever the challenge; `error` when it could not be read."""

    sha256: str
    error: Reason | None = None
    observations: tuple[Observation, ...] = ()
    encodings: tuple[tuple[float, Embedding], ...] = ()  # (time, encoding) of the chosen frames
    embedding: Embedding | None = None  # their mean
    identity_spread: float | None = None  # see `_identity_spread`
    turned_identity: float | None = None  # see `_turned_identity`
    actions: tuple[DetectedAction, ...] = ()  # every action performed, by onset
    still: bool = False  # the face never moved as a live one does: a picture
    capture: tuple[Reason, ...] = ()  # capture problems (quality.assess)
    face_seen: bool = False  # a detector saw a face at least once
    multi_face_keyframes: int = 0
    frame_hashes: tuple[int, ...] = ()  # replay.scene_hash of every SCENE_EVERY-th sample with a face
    frame_times: tuple[float, ...] = ()
    edited: bool = False  # the recording was cut and joined (texture.largest_jump)
    patterned: bool = False  # the face shows a screen's or a print's regular pattern (texture.periodic_pattern)
    review_frames: tuple[bytes, ...] = field(default=(), repr=False)  # JPEGs for the reviewer
    scores: dict[str, float] = field(default_factory=dict)  # those that do not depend on the challenge


def analyse(
    media: Media,
    challenge: Sequence[Action],
    reference: Embedding | None,  # None: no usable reference photo; the liveness verdict still counts
    earlier: Sequence[EarlierSubmission],
    thresholds: Thresholds = DEFAULT_THRESHOLDS,
) -> Analysis:
    """Judge one upload against its challenge and the person's reference embedding.

    Raises ValueError only for a malformed challenge (a server bug, not bad media).
    """
    _check(challenge)
    return judge(measure(media), challenge, reference, earlier, thresholds)


def measure(media: Media) -> Measurements:
    """Decode, track the face through the clip, encode a few chosen frames, and sum up the clip."""
    digest = replay.sha256([media.video] if media.video is not None else list(media.frames))
    observations: list[Observation] = []
    thumbnails: list[tuple[float, Image_]] = []
    scenes: list[tuple[float, int]] = []
    small: list[Image_] = []
    patterns: list[float] = []
    tracker = FaceTracker(keyframe_every=faces.KEYFRAME_EVERY if media.video is not None else 1)
    short_side = math.nan
    try:
        for index, frame in enumerate(frames(media)):
            observation = tracker.observe(frame)
            observations.append(observation)
            if index % THUMBNAIL_EVERY == 0:
                thumbnails.append((frame.t, _thumbnail(frame)))
                if observation.box is not None and len(patterns) < PATTERN_FRAMES:
                    patterns.append(texture.periodic_pattern(grey_face(frame.image, observation.box)))
            if index % SCENE_EVERY == 0 and observation.box is not None:
                scenes.append((frame.t, replay.scene_hash(frame.image, observation.box)))
            small.append(_grey_copy(frame.image))
            short_side = float(min(frame.image.shape[:2]))
    except MediaError as error:
        return Measurements(sha256=digest, error=error.reason)
    duration = observations[-1].t - observations[0].t
    wanted = min(MAX_ENCODINGS, max(MIN_ENCODINGS, round(duration / ENCODING_EVERY_S) + 1))
    chosen = _choose(list(tracker.candidates.values()), wanted)
    encodings = tuple(zip([c.t for c in chosen], faces.encode(chosen), strict=True))
    turned = sorted(tracker.turned.values(), key=lambda c: c.score, reverse=True)[:TURNED_ENCODINGS]
    measured = _summarise(digest, tuple(observations), encodings, thumbnails, short_side)
    turned_identity = _turned_identity(measured.embedding, faces.encode(turned))
    pattern = float(np.median(patterns)) if patterns else math.nan
    # A burst's stills are separate photos: only a video's frames follow each other.
    jump = texture.largest_jump(small) if media.video is not None else math.nan
    return dataclasses.replace(
        measured,
        frame_times=tuple(t for t, _ in scenes),
        frame_hashes=tuple(h for _, h in scenes),
        edited=jump > texture.MAX_JUMP,
        patterned=pattern > texture.MAX_PATTERN,
        turned_identity=turned_identity,
        scores={**measured.scores, "largest_jump": jump, "screen_pattern": pattern}
        | ({"turned_identity": turned_identity} if turned_identity is not None else {}),
    )


def _summarise(
    sha256: str,
    observations: tuple[Observation, ...],
    encodings: tuple[tuple[float, Embedding], ...],
    thumbnails: Sequence[tuple[float, Image_]],
    short_side_px: float,
) -> Measurements:
    """Everything the decision takes from the clip itself: the actions performed, motion, capture quality."""
    scores: dict[str, float] = {
        "frames_analysed": float(len(observations)),
        "keyframes": float(sum(o.face_count is not None for o in observations)),
        "duration_s": observations[-1].t - observations[0].t,
        "faces_max": float(max((o.face_count or 0 for o in observations), default=0)),
    }
    vectors = [encoding for _, encoding in encodings]
    identity_spread = _identity_spread(vectors)
    if identity_spread is not None:
        scores["identity_spread"] = identity_spread

    signals = actions.signals(
        [o.t for o in observations], [o.landmarks for o in observations], [o.turned for o in observations]
    )
    neutral = actions.baseline(signals)
    detected = tuple(actions.detect_actions(signals, neutral)) if neutral is not None else ()
    still = _still(detected, signals, neutral, observations, scores) or _pictured(
        detected, signals, neutral, observations, scores
    )

    capture = _capture(observations, short_side_px)
    scores.update(_capture_scores(capture))
    multi = sum(1 for o in observations if (o.face_count or 0) >= 2)
    scores["multi_face_keyframes"] = float(multi)
    moments = [t for t, _ in encodings] + [action.at_s for action in detected]
    return Measurements(
        sha256=sha256,
        observations=observations,
        encodings=encodings,
        embedding=np.mean(vectors, axis=0) if vectors else None,
        identity_spread=identity_spread,
        actions=detected,
        still=still,
        capture=quality.assess(capture),
        face_seen=any(o.seen for o in observations),
        multi_face_keyframes=multi,
        review_frames=_review_frames(thumbnails, moments),
        scores=scores,
    )


def judge(
    measured: Measurements,
    challenge: Sequence[Action],
    reference: Embedding | None,
    earlier: Sequence[EarlierSubmission],
    thresholds: Thresholds = DEFAULT_THRESHOLDS,
) -> Analysis:
    """The decision on measured media: liveness against the challenge, the match, replays."""
    _check(challenge)
    if measured.error is not None:
        # Only UNREADABLE_MEDIA and TOO_LONG end here (see liveness.media): the app's own recordings
        # are neither, so filming again is no remedy, unlike a capture problem.
        return Analysis(outcome=Outcome.FAILED, reasons=(measured.error,), scores={}, sha256=measured.sha256)
    scores = dict(measured.scores)
    match_distance = _match([encoding for _, encoding in measured.encodings], reference, scores)
    order = actions.match_challenge(challenge, measured.actions)
    liveness = ((Reason.NO_MOTION,) if measured.still else ()) + ((order,) if order is not None else ())
    copied = replay.find_replay(measured.sha256, measured.frame_times, measured.frame_hashes, measured.actions, earlier)
    if copied.offset_s is not None:
        scores.update(replay_offset_s=copied.offset_s, replay_events=float(copied.shared_events))

    evidence = decision.Evidence(
        face_seen=measured.face_seen,
        multi_face_keyframes=measured.multi_face_keyframes,
        identity_spread=measured.identity_spread,
        turned_identity=measured.turned_identity,
        liveness=liveness,
        capture=measured.capture,
        match_distance=match_distance,
        reference_missing=not _usable(reference),
        replay_of=copied.of,
        edited=measured.edited,
        patterned=measured.patterned,
    )
    outcome, reasons = decision.decide(evidence, thresholds)
    return Analysis(
        outcome=outcome,
        reasons=reasons,
        scores=_finite(scores),
        actions=measured.actions,
        sha256=measured.sha256,
        frame_hashes=measured.frame_hashes,
        frame_times=measured.frame_times,
        embedding=measured.embedding,
        replay_of=copied.of,
        review_frames=measured.review_frames,
    )


def enroll(photo: bytes) -> Enrollment:
    """A reference embedding from one photo (EXIF-transposed), or the reasons it cannot serve as one."""
    try:
        image = decode_still(photo)
    except MediaError as error:
        return Enrollment(embedding=None, reasons=(error.reason,), scores={})
    found = faces.detect_still(image)
    scores = {"faces": float(len(found))}
    if len(found) != 1:
        if found:
            return Enrollment(embedding=None, reasons=(Reason.MULTIPLE_FACES,), scores=scores)
        dark = frame_brightness(image) < quality.MIN_BRIGHTNESS
        return Enrollment(embedding=None, reasons=(Reason.TOO_DARK if dark else Reason.NO_FACE,), scores=scores)
    box = found[0]
    face_px = float(box[2] - box[0])
    brightness, sharpness = faces.face_quality(image, box)
    scores.update(face_px=face_px, brightness=brightness, sharpness=sharpness)
    # A portrait or a cropped ID photo may show the face at any share of the picture: only its
    # absolute size counts.
    if reasons := quality.face_problems(face_px, quality.MIN_FACE_PX, brightness, sharpness):
        return Enrollment(embedding=None, reasons=reasons, scores=_finite(scores))
    return Enrollment(embedding=faces.encode_box(image, box), reasons=(), scores=_finite(scores))


def reference_from_video(data: bytes, at_s: float) -> Embedding | None:
    """The reference a clip's own frame gives (its first sample at or after `at_s`), enrolled as an
    imported photo of that frame would be; None when the clip cannot be read, ends earlier, or the
    frame cannot serve as a reference. For evaluations, benchmarks and tests: the worker enrols photos."""
    try:
        frame = next((f for f in decode_video(data) if f.t >= at_s), None)
    except MediaError:
        return None
    if frame is None:
        return None
    buffer = io.BytesIO()
    Image.fromarray(frame.image).save(buffer, format="JPEG", quality=REFERENCE_JPEG_QUALITY)
    return enroll(buffer.getvalue()).embedding


def _finite(scores: dict[str, float]) -> dict[str, float]:
    """Scores without the measurements that did not exist (NaN: no face to measure)."""
    return {name: value for name, value in scores.items() if math.isfinite(value)}


def _check(challenge: Sequence[Action]) -> None:
    if not 1 <= len(challenge) <= len(Action) or len(set(challenge)) != len(challenge):
        raise ValueError(f"a challenge is 1-{len(Action)} distinct actions, got {list(challenge)}")


def grey_face(image: Image_, box: faces.Box) -> Image_:
    """The face in grey at the camera's resolution (within PATTERN_FACE_PX), for texture.periodic_pattern."""
    top, right, bottom, left = box
    crop = image[max(0, top) : max(0, bottom), max(0, left) : max(0, right)]
    if crop.size == 0:
        return np.zeros((0, 0), dtype=np.uint8)
    if crop.shape[0] > PATTERN_FACE_PX:
        # Keep the middle: scaling would blur away the pattern sought.
        y0 = (crop.shape[0] - PATTERN_FACE_PX) // 2
        x0 = max(0, (crop.shape[1] - PATTERN_FACE_PX) // 2)
        crop = crop[y0 : y0 + PATTERN_FACE_PX, x0 : x0 + PATTERN_FACE_PX]
    return np.asarray(cv2.cvtColor(np.ascontiguousarray(crop), cv2.COLOR_RGB2GRAY), dtype=np.uint8)


def _grey_copy(image: Image_) -> Image_:
    """A small grey copy of a whole frame, for texture.largest_jump."""
    height, width = image.shape[:2]
    # Every n-th pixel first: averaging all of a 720p frame's into 96 costs more than the rest.
    step = max(1, max(height, width) // (2 * texture.JUMP_FRAME_PX))
    sparse = image[::step, ::step]
    scale = texture.JUMP_FRAME_PX / max(sparse.shape[:2])
    size = (max(1, round(sparse.shape[1] * scale)), max(1, round(sparse.shape[0] * scale)))
    small = cv2.resize(sparse, size, interpolation=cv2.INTER_AREA)
    return np.asarray(cv2.cvtColor(small, cv2.COLOR_RGB2GRAY), dtype=np.uint8)


def _thumbnail(frame: Frame) -> Image_:
    image = frame.image
    height, width = image.shape[:2]
    scale = min(1.0, REVIEW_LONG_SIDE / max(height, width))
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    # Halved first while the half still holds the size: OpenCV averages 2 x 2 blocks in a tenth of the
    # time its general area resampling takes over a whole 720p frame, and the thumbnail looks the same.
    while height % 2 == 0 and width % 2 == 0 and width // 2 >= size[0] and height // 2 >= size[1]:
        height, width = height // 2, width // 2
        image = np.asarray(cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA), dtype=np.uint8)
    return np.asarray(cv2.resize(image, size, interpolation=cv2.INTER_AREA), dtype=np.uint8)


def _choose(candidates: list[Candidate], count: int) -> list[Candidate]:
    """The best candidate of every track segment (up to MAX_ENCODINGS), then good ones spread over the clip.

    Each segment must be encoded, however poor its frames, or a face cut in after the track was
    lost would never be compared with the first.
    """
    firsts: dict[int, Candidate] = {}
    for candidate in candidates:
        if candidate.segment not in firsts or candidate.score > firsts[candidate.segment].score:
            firsts[candidate.segment] = candidate
    chosen = sorted(firsts.values(), key=lambda c: c.score, reverse=True)[:MAX_ENCODINGS]
    best = max((candidate.score for candidate in candidates), default=0.0)
    rest = [c for c in candidates if c not in chosen]
    good = sorted((c for c in rest if c.score >= MIN_CANDIDATE_SHARE * best), key=lambda c: c.t)
    if (room := count - len(chosen)) > 0 and good:
        picks = np.linspace(0, len(good) - 1, room).round().astype(int)
        chosen += [good[i] for i in dict.fromkeys(picks.tolist())]
    # Too few good frames (a short clip, a face mostly turned): the best of the others.
    rest = sorted((c for c in rest if c not in chosen), key=lambda c: c.score, reverse=True)
    chosen += rest[: max(0, MIN_ENCODINGS - len(chosen))]
    return sorted(chosen, key=lambda c: c.t)


def _usable(reference: Embedding | None) -> TypeGuard[Embedding]:
    """A 128-float descriptor: a malformed or NaN one would match nothing, or everything."""
    return reference is not None and reference.shape == (128,) and bool(np.isfinite(reference).all())


def _match(encodings: list[Embedding], reference: Embedding | None, scores: dict[str, float]) -> float | None:
    if not encodings or not _usable(reference):
        return None
    distances = [float(np.linalg.norm(encoding - reference)) for encoding in encodings]
    scores["match_distance_min"] = min(distances)
    scores["match_distance_max"] = max(distances)
    scores["match_distance"] = float(np.median(distances))
    scores["encodings"] = float(len(distances))
    return scores["match_distance"]


def _turned_identity(frontal: Embedding | None, turned: Sequence[Embedding]) -> float | None:
    """The farthest a turned face's encoding lies from the frontal faces' mean (Thresholds.turned_distance)."""
    if frontal is None or not turned:
        return None
    return max(float(np.linalg.norm(encoding - frontal)) for encoding in turned)


def _identity_spread(encodings: list[Embedding]) -> float | None:
    """The largest median distance from one encoding to the others.

    One person's frames lie up to ~0.6 apart pairwise (glasses, expressions, blur), so a single
    far pair proves nothing; a face swapped in is far from every frame of the other face.
    """
    if len(encodings) < 2:
        return None
    return max(
        float(np.median([np.linalg.norm(a - b) for j, b in enumerate(encodings) if j != i]))
        for i, a in enumerate(encodings)
    )


def _still(
    detected: Sequence[DetectedAction],
    signals: actions.Signals,
    neutral: actions.Baseline | None,
    observations: Sequence[Observation],
    scores: dict[str, float],
) -> bool:
    """Whether the face moved no more than a picture held before the camera; adds baselines and motion to `scores`."""
    if neutral is None:
        return False
    scores.update(ear_baseline=neutral.ear, yaw_baseline=neutral.yaw, mouth_baseline=neutral.mouth)
    valid = actions.plausible(signals, neutral)
    shapes = [o.landmarks for o, ok in zip(observations, valid, strict=True) if ok and o.landmarks is not None]
    if len(shapes) < MIN_MOTION_FRAMES:
        return False
    scores["motion"] = actions.motion(shapes)
    # A face that did anything detectable moved, whatever the residual says: one blink in a still
    # sitter's clip is too few frames to lift the measure above landmark jitter.
    return scores["motion"] < actions.MIN_MOTION and not detected


def _pictured(
    detected: Sequence[DetectedAction],
    signals: actions.Signals,
    neutral: actions.Baseline | None,
    observations: Sequence[Observation],
    scores: dict[str, float],
) -> bool:
    """Whether the face moved as a picture does: its texture frozen, or a head turn without depth
    (`liveness.texture`) or without parallax (`actions.parallax`). Adds `stillness`,
    `turn_depth` and `turn_parallax`."""
    if neutral is None:
        return False
    resting = actions.resting(signals, neutral)
    chips = [o.chip for o in observations]
    rest = [int(i) for i in np.flatnonzero(resting) if chips[int(i)] is not None]
    if not rest:
        return False
    best = max(rest, key=lambda i: observations[i].face_score)
    reference = chips[best]
    assert reference is not None
    times = [observations[i].t for i in rest]
    scores["stillness"] = texture.stillness(times, [c for i in rest if (c := chips[i]) is not None], rest.index(best))
    depths, parallaxes = [], []
    shape = observations[best].landmarks
    assert shape is not None
    for turn in detected:
        if turn.action in (Action.TURN_LEFT, Action.TURN_RIGHT):
            held = [int(i) for i in np.flatnonzero(actions.held_turn(signals, neutral, turn))]
            depths.append(texture.depth([c for i in held if (c := chips[i]) is not None], reference))
            parallaxes.append(
                actions.parallax(shape, [p for i in held if (p := observations[i].landmarks) is not None])
            )
    flat = False
    for name, values, least in (
        ("turn_depth", depths, texture.MIN_TURN_DEPTH),
        ("turn_parallax", parallaxes, actions.MIN_PARALLAX),
    ):
        # The deepest turn: a picture has none, while a live clip may have a glance too slight to show much.
        if measured := [v for v in values if not math.isnan(v)]:
            scores[name] = max(measured)
            flat = flat or scores[name] < least
    return scores["stillness"] < texture.MIN_STILLNESS or flat


def _capture(observations: Sequence[Observation], short_side_px: float) -> quality.Capture:
    seen = [o for o in observations if o.seen]

    def median(values: list[float]) -> float:
        finite = [value for value in values if not math.isnan(value)]
        return float(np.median(finite)) if finite else math.nan

    return quality.Capture(
        duration_s=observations[-1].t - observations[0].t,
        frames=len(observations),
        seen_share=len(seen) / len(observations),
        face_px=median([o.face_px for o in seen]),
        short_side_px=short_side_px,
        brightness=median([o.brightness for o in seen]),
        sharpness=median([o.sharpness for o in seen]),
        frame_brightness=median([o.frame_brightness for o in observations]),
    )


def _capture_scores(capture: quality.Capture) -> dict[str, float]:
    return {
        "face_px": capture.face_px,
        "face_share": capture.face_px / capture.short_side_px,
        "brightness": capture.brightness,
        "sharpness": capture.sharpness,
        "seen_share": capture.seen_share,
    }


def _review_frames(thumbnails: Sequence[tuple[float, Image_]], moments: list[float]) -> tuple[bytes, ...]:
    """JPEGs of the thumbnails nearest to the encoded frames and the detected actions, in time order;
    evenly spread ones make up MIN_REVIEW_FRAMES."""
    if not thumbnails:
        return ()
    times = np.array([t for t, _ in thumbnails])
    picked = list(dict.fromkeys(int(np.argmin(np.abs(times - moment))) for moment in moments))[:REVIEW_FRAMES]
    spread = np.linspace(0, len(thumbnails) - 1, MIN_REVIEW_FRAMES).round().astype(int).tolist()
    for index in spread:
        if len(picked) < MIN_REVIEW_FRAMES and index not in picked:
            picked.append(index)
    encoded = []
    for index in sorted(picked):
        buffer = io.BytesIO()
        Image.fromarray(thumbnails[index][1]).save(buffer, format="JPEG", quality=REVIEW_JPEG_QUALITY)
        encoded.append(buffer.getvalue())
    return tuple(encoded)
