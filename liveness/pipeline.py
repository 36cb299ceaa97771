"""The face worker's core: `analyse` a liveness upload, `enroll` a reference photo.

Both take bytes and plain data and return plain data: no I/O, no database, no clock. Bad media
never raises; it becomes an outcome with a reason.

`analyse` is `judge(measure(media), ...)`: `measure` does the expensive, challenge-independent
work once (decoding, face tracking, encodings); `judge` is cheap and pure.
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image

from liveness import actions, decision, faces, quality, replay
from liveness.faces import Candidate, FaceTracker, Observation
from liveness.media import Frame, Image_, MediaError, decode_still, frames
from liveness.model import (
    RETRY_REASONS,
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
# Encodings cost 70-90 ms each: a few frames spread over the clip give a robust median match and
# catch a face swapped in mid-clip. One per ENCODING_EVERY_S of clip, within these bounds.
MIN_ENCODINGS, MAX_ENCODINGS = 3, 5
ENCODING_EVERY_S = 3.0
# Candidates scoring below this share of the clip's best (turned, blinking or blurred faces)
# are not encoded: their encodings stray 0.4-0.7 from the person's own others.
MIN_CANDIDATE_SHARE = 0.5
# Thumbnails of every this many samples (0.67 s at 15 fps) are hashed for replay detection and
# offered to the reviewer.
THUMBNAIL_EVERY = 10
# Frames shown to the reviewer, and their size: enough to see the face and what surrounds it.
MIN_REVIEW_FRAMES, REVIEW_FRAMES = 3, 6
REVIEW_LONG_SIDE = 360
REVIEW_JPEG_QUALITY = 80
# Fewer plausible frontal frames than this cannot tell a still picture from a live face.
MIN_MOTION_FRAMES = 5


@dataclass(frozen=True)
class Measurements:
    """What one pass over an upload yields, whatever the challenge; `error` when it could not be read."""

    sha256: str
    error: Reason | None = None
    observations: tuple[Observation, ...] = ()
    encodings: tuple[tuple[float, Embedding], ...] = ()  # (time, encoding) of the chosen frames
    thumbnails: tuple[tuple[float, Image_], ...] = ()  # every THUMBNAIL_EVERY-th sample
    short_side_px: float = math.nan


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
    """Decode, track the face through the clip and encode a few chosen frames."""
    digest = replay.sha256([media.video] if media.video is not None else list(media.frames))
    observations: list[Observation] = []
    thumbnails: list[tuple[float, Image_]] = []
    tracker = FaceTracker(keyframe_every=faces.KEYFRAME_EVERY if media.video is not None else 1)
    short_side = math.nan
    try:
        for index, frame in enumerate(frames(media)):
            observations.append(tracker.observe(frame))
            if index % THUMBNAIL_EVERY == 0:
                thumbnails.append((frame.t, _thumbnail(frame)))
            short_side = float(min(frame.image.shape[:2]))
    except MediaError as error:
        return Measurements(sha256=digest, error=error.reason)
    duration = observations[-1].t - observations[0].t
    wanted = min(MAX_ENCODINGS, max(MIN_ENCODINGS, round(duration / ENCODING_EVERY_S) + 1))
    chosen = _choose(list(tracker.candidates.values()), wanted)
    return Measurements(
        sha256=digest,
        observations=tuple(observations),
        encodings=tuple(zip([c.t for c in chosen], faces.encode(chosen), strict=True)),
        thumbnails=tuple(thumbnails),
        short_side_px=short_side,
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
        outcome = Outcome.RETRY if measured.error in RETRY_REASONS else Outcome.FAILED
        return Analysis(outcome=outcome, reasons=(measured.error,), scores={}, sha256=measured.sha256)
    observations = measured.observations
    scores: dict[str, float] = {
        "frames_analysed": float(len(observations)),
        "keyframes": float(sum(o.face_count is not None for o in observations)),
        "duration_s": observations[-1].t - observations[0].t,
        "faces_max": float(max((o.face_count or 0 for o in observations), default=0)),
    }
    encodings = [encoding for _, encoding in measured.encodings]
    embedding = np.mean(encodings, axis=0) if encodings else None
    match_distance = _match(encodings, reference, scores)
    identity_spread = _identity_spread(encodings)
    if identity_spread is not None:
        scores["identity_spread"] = identity_spread

    signals = actions.signals(
        [o.t for o in observations], [o.landmarks for o in observations], [o.turned for o in observations]
    )
    neutral = actions.baseline(signals)
    detected = actions.detect_actions(signals, neutral) if neutral is not None else []
    liveness = _liveness(challenge, detected, signals, neutral, observations, scores)

    capture = _capture(measured)
    scores.update(_capture_scores(capture))
    multi = sum(1 for o in observations if (o.face_count or 0) >= 2)
    scores["multi_face_keyframes"] = float(multi)

    frame_hashes = tuple(replay.dhash(thumbnail) for _, thumbnail in measured.thumbnails)
    replay_of = replay.find_replay(measured.sha256, frame_hashes, embedding, earlier, thresholds)
    hash_distances = [replay.hash_distance(frame_hashes, submission.frame_hashes) for submission in earlier]
    if known := [distance for distance in hash_distances if distance is not None]:
        scores["replay_hash_distance"] = float(min(known))

    evidence = decision.Evidence(
        face_seen=any(o.detected or not math.isnan(o.face_score) for o in observations),
        multi_face_keyframes=multi,
        identity_spread=identity_spread,
        liveness=liveness,
        capture=quality.assess(capture),
        match_distance=match_distance,
        reference_missing=not _usable(reference),
        replay_of=replay_of,
    )
    outcome, reasons = decision.decide(evidence, thresholds)
    moments = [t for t, _ in measured.encodings] + [action.at_s for action in detected]
    return Analysis(
        outcome=outcome,
        reasons=reasons,
        scores=_finite(scores),
        actions=tuple(detected),
        sha256=measured.sha256,
        frame_hashes=frame_hashes,
        embedding=embedding,
        replay_of=replay_of,
        review_frames=_review_frames(measured.thumbnails, moments),
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
        dark = float(faces.luma(image[::4, ::4]).mean()) < quality.MIN_BRIGHTNESS
        return Enrollment(embedding=None, reasons=(Reason.TOO_DARK if dark else Reason.NO_FACE,), scores=scores)
    box = found[0]
    brightness, sharpness = faces.face_quality(image, box)
    scores.update(face_px=float(box[2] - box[0]), brightness=brightness, sharpness=sharpness)
    # A photo is one frame, and a portrait or a cropped ID photo may show the face at any share
    # of the picture: only its absolute size counts.
    capture = quality.Capture(
        duration_s=math.inf,
        frames=quality.MIN_FRAMES,
        seen_share=1.0,
        face_px=float(box[2] - box[0]),
        short_side_px=0.0,
        brightness=brightness,
        sharpness=sharpness,
        frame_brightness=brightness,
    )
    if reasons := quality.assess(capture):
        return Enrollment(embedding=None, reasons=reasons, scores=_finite(scores))
    return Enrollment(embedding=faces.encode_box(image, box), reasons=(), scores=_finite(scores))


def _finite(scores: dict[str, float]) -> dict[str, float]:
    """Scores without the measurements that did not exist (NaN: no face to measure)."""
    return {name: value for name, value in scores.items() if math.isfinite(value)}


def _check(challenge: Sequence[Action]) -> None:
    if not 1 <= len(challenge) <= len(Action) or len(set(challenge)) != len(challenge):
        raise ValueError(f"a challenge is 1-{len(Action)} distinct actions, got {list(challenge)}")


def _thumbnail(frame: Frame) -> Image_:
    image = Image.fromarray(frame.image)
    image.thumbnail((REVIEW_LONG_SIDE, REVIEW_LONG_SIDE), Image.Resampling.BILINEAR, reducing_gap=1.0)
    return np.asarray(image)


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


def _usable(reference: Embedding | None) -> bool:
    """A 128-float descriptor: a malformed or NaN one would match nothing, or everything."""
    return reference is not None and reference.shape == (128,) and bool(np.isfinite(reference).all())


def _match(encodings: list[Embedding], reference: Embedding | None, scores: dict[str, float]) -> float | None:
    if not encodings or reference is None or not _usable(reference):
        return None
    distances = [float(np.linalg.norm(encoding - reference)) for encoding in encodings]
    scores["match_distance_min"] = min(distances)
    scores["match_distance_max"] = max(distances)
    scores["match_distance"] = float(np.median(distances))
    scores["encodings"] = float(len(distances))
    return scores["match_distance"]


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


def _liveness(
    challenge: Sequence[Action],
    detected: list[DetectedAction],
    signals: actions.Signals,
    neutral: actions.Baseline | None,
    observations: Sequence[Observation],
    scores: dict[str, float],
) -> tuple[Reason, ...]:
    reasons: list[Reason] = []
    if neutral is not None:
        scores.update(ear_baseline=neutral.ear, yaw_baseline=neutral.yaw, mouth_baseline=neutral.mouth)
        valid = actions.plausible(signals, neutral)
        shapes = [o.landmarks for o, ok in zip(observations, valid, strict=True) if ok and o.landmarks is not None]
        if len(shapes) >= MIN_MOTION_FRAMES:
            scores["motion"] = actions.motion(shapes)
            # A face that did anything detectable moved, whatever the residual says: one blink in
            # a still sitter's clip is too few frames to lift the measure above landmark jitter.
            if scores["motion"] < actions.MIN_MOTION and not detected:
                reasons.append(Reason.NO_MOTION)
    order = actions.match_sequence(challenge, detected)
    if order is not None:
        reasons.append(order)
    return tuple(reasons)


def _capture(measured: Measurements) -> quality.Capture:
    observations = measured.observations
    seen = [o for o in observations if o.detected or not math.isnan(o.face_score)]

    def median(values: list[float]) -> float:
        finite = [value for value in values if not math.isnan(value)]
        return float(np.median(finite)) if finite else math.nan

    return quality.Capture(
        duration_s=observations[-1].t - observations[0].t,
        frames=len(observations),
        seen_share=len(seen) / len(observations),
        face_px=median([o.face_px for o in seen]),
        short_side_px=measured.short_side_px,
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
