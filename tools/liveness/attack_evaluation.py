"""Presentation attacks and live clips through the face pipeline, on the challenges the API draws.

Part of `python -m tools.liveness.evaluate`. For every attack class of the kit (`tools.liveness.attacks`) it
generates variants, each judged as the API would: a clip an attacker makes per challenge (a
photo animated to answer it) answers one challenge drawn by the API's odds; a fixed clip (one
doing every action twice, a replay, a splice) is judged under every challenge, weighted by how
often the API draws it. APCER is the share of attempts that pass. The live clips are judged only
under the challenges they perform exactly (their natural blinks labelled), so BPCER counts
the live person turned away for doing what was asked. Statistics are pure; measuring runs in a
process pool at the bottom.
"""

from __future__ import annotations

import math
import multiprocessing
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import numpy as np

from liveness import challenge
from liveness.model import Action, EarlierSubmission, Embedding, Outcome, Thresholds
from tools.liveness import attacks

B, L, R, M = Action.BLINK, Action.TURN_LEFT, Action.TURN_RIGHT, Action.OPEN_MOUTH
# The API's default policy (CHALLENGE_ACTIONS, _MIN_, _MAX_) and the assisted one (blink alone).
DRAWN = challenge.odds(tuple(Action), 2, 3)
ASSISTED = challenge.odds((B,), 1, 1)


@dataclass(frozen=True)
class LiveClip:
    """A bona fide recording, or a part of one, and the challenge it performs exactly.

    `blinks_at` lists its natural blinks (onsets, s into the part, from watching it): allowed,
    since the challenge does not ask for a blink. The reference is the clip's frame at
    `reference_at_s` (of the whole file), enrolled as a photo, outside the part judged where the
    clip allows.
    """

    file: str
    performs: tuple[Action, ...]
    reference_at_s: float
    start_s: float = 0.0
    end_s: float | None = None
    mirrored: bool = False
    blinks_at: tuple[float, ...] = ()

    @property
    def name(self) -> str:
        part = "" if self.start_s == 0 and self.end_s is None else f" {self.start_s:g}-{self.end_s or 'end'} s"
        return f"{self.file}{part}{' mirrored' if self.mirrored else ''}"


LIVE_CLIPS = (
    LiveClip("live_turn__zubair_real.mov", (M, R, L), 12.9, blinks_at=(1.9, 5.3, 5.8, 12.5)),
    LiveClip("live_turn__zubair_real.mov", (R, L), 12.9, 5.2, 11.6, blinks_at=(0.1, 0.6)),
    LiveClip("live_turn__zubair_real.mov", (M, R), 12.9, 0.0, 9.1, blinks_at=(1.9, 5.3, 5.8)),
    LiveClip("live_turn__zubair_real.mov", (M, L, R), 12.9, mirrored=True, blinks_at=(1.9, 5.3, 5.8, 12.5)),
    LiveClip("live_turn__zubair_real.mov", (L, R), 12.9, 5.2, 11.6, mirrored=True, blinks_at=(0.1, 0.6)),
    # Blinks only: the assisted policy (CHALLENGE_ACTIONS=blink) is the one it performs.
    LiveClip("live_blink__eye_blink.mp4", (B,), 1.0, blinks_at=(0.6, 1.6, 2.5, 3.5, 4.4, 5.4, 6.4)),
)
# Shared attack recordings, fixed clips judged under every drawn challenge, and whose face they show.
SHARED_ATTACKS = {
    "replay_screen__zubair_fake.mp4": ("live_turn__zubair_real.mov", 0.5),
    "not_selfie__hamilton_clip.mp4": ("not_selfie__hamilton_clip.mp4", 5.3),
}


# ---------------------------------------------------------------------------------------------
# Statistics (pure)
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Trial:
    """One attempt: an attack variant, or a live clip, and what the pipeline made of it."""

    kind: str  # the attack class, or "bona_fide"
    source: str
    seed: int
    passed_share: float  # of the draws it answers, weighted by the odds; a live clip: 1.0 when it passed
    outcome: str  # under its own challenge, or the most drawn outcome for a fixed clip
    reasons: tuple[str, ...]
    scores: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class ClassRate:
    kind: str
    variants: int
    apcer: float  # mean passed share
    passed_any: int  # variants passing at least one draw
    upper_95: float  # rule of three on the variants when none passed, else Wilson
    reasons: dict[str, int]  # how often each reason stopped it


def weighted_pass(outcomes: dict[tuple[Action, ...], Outcome], odds: dict[tuple[Action, ...], float]) -> float:
    """The chance a fixed clip passes a drawn challenge."""
    return sum(p for drawn, p in odds.items() if outcomes.get(drawn) is Outcome.PASSED)


def class_rates(trials: Sequence[Trial]) -> list[ClassRate]:
    from tools.liveness.evaluate import rule_of_three, wilson_interval

    rates = []
    for kind in dict.fromkeys(t.kind for t in trials if t.kind != "bona_fide"):
        chosen = [t for t in trials if t.kind == kind]
        passed_any = sum(1 for t in chosen if t.passed_share > 0)
        reasons: dict[str, int] = {}
        for trial in chosen:
            for reason in trial.reasons:
                reasons[reason] = reasons.get(reason, 0) + 1
        apcer = float(np.mean([t.passed_share for t in chosen]))
        upper = rule_of_three(len(chosen)) if passed_any == 0 else wilson_interval(passed_any, len(chosen))[1]
        rates.append(
            ClassRate(kind, len(chosen), apcer, passed_any, upper, dict(sorted(reasons.items(), key=lambda r: -r[1])))
        )
    return rates


def bpcer(trials: Sequence[Trial]) -> tuple[int, int]:
    """(live attempts turned away, live attempts), each under a challenge it performs exactly."""
    live = [t for t in trials if t.kind == "bona_fide"]
    return sum(1 for t in live if t.passed_share < 1.0), len(live)


def cue_margins(
    trials: Sequence[Trial], cues: dict[str, tuple[str, float]]
) -> list[tuple[str, float, float, float, int]]:
    """For each liveness cue (score name -> (which side a live clip lies on, threshold)): the
    threshold, the nearest live value, the nearest attack value, and how many live clips it rests on."""
    rows = []
    for name, (side, threshold) in cues.items():
        live = [t.scores[name] for t in trials if t.kind == "bona_fide" and name in t.scores]
        fake = [t.scores[name] for t in trials if t.kind != "bona_fide" and name in t.scores]
        pick = min if side == "above" else max
        other = max if side == "above" else min
        rows.append(
            (
                name,
                threshold,
                pick(live) if live else math.nan,
                other([v for v in fake if (v < threshold) == (side == "above")] or [math.nan]),
                len(live),
            )
        )
    return rows


# ---------------------------------------------------------------------------------------------
# Shell: making the clips and measuring them
# ---------------------------------------------------------------------------------------------


def _reference(reference: attacks.Reference) -> Embedding | None:
    from liveness.pipeline import enroll, reference_from_video

    data = Path(reference.path).read_bytes()
    return enroll(data).embedding if reference.at_s is None else reference_from_video(data, reference.at_s)


def _earlier(check_id: str, video: bytes) -> EarlierSubmission:
    from liveness.model import Media
    from liveness.pipeline import measure

    measured = measure(Media(video=video))
    return EarlierSubmission(
        check_id, measured.sha256, measured.embedding, measured.frame_hashes, measured.frame_times, measured.actions
    )


def _scores(scores: dict[str, float]) -> dict[str, float]:
    kept = ("stillness", "turn_depth", "largest_jump", "screen_pattern", "match_distance", "motion")
    return {name: round(float(scores[name]), 4) for name in kept if name in scores}


@dataclass(frozen=True)
class _Task:
    kind: str
    seed: int
    faces: str
    thresholds: Thresholds


def run_attack(task: _Task) -> Trial:
    """One variant of one attack class, judged as the API and the worker would."""
    from liveness.decision import reconsider
    from liveness.model import Media
    from liveness.pipeline import judge, measure

    library = attacks.Library.load(task.faces)
    drawn = challenge.draw(tuple(Action), 2, 3, random.Random(f"draw:{task.kind}:{task.seed}"))
    attack = attacks.make(task.kind, library, task.seed, drawn)
    reference = _reference(attack.reference)
    earlier = [_earlier(f"earlier-{i}", video) for i, video in enumerate(attack.earlier)]
    own, others = ([], earlier) if attack.earlier_by_other_person else (earlier, [])
    measured = measure(Media(video=attack.video))

    def judged(challenge_drawn: tuple[Action, ...]) -> tuple[Outcome, tuple[str, ...], dict[str, float]]:
        analysis = judge(measured, challenge_drawn, reference, own, task.thresholds)
        collided = any(
            other.embedding is not None
            and analysis.embedding is not None
            and float(np.linalg.norm(other.embedding - analysis.embedding)) <= task.thresholds.collision_distance
            for other in others
        )
        analysis = reconsider(analysis, others, collided)
        return analysis.outcome, tuple(r.value for r in analysis.reasons), analysis.scores

    if attack.made_for is not None:
        outcome, reasons, scores = judged(attack.made_for)
        return Trial(
            task.kind,
            attack.source,
            task.seed,
            float(outcome is Outcome.PASSED),
            outcome.value,
            reasons,
            _scores(scores),
        )
    results = {drawn_challenge: judged(drawn_challenge) for drawn_challenge in DRAWN}
    outcomes = {c: r[0] for c, r in results.items()}
    worst = max(results.values(), key=lambda r: r[0] is Outcome.PASSED)
    return Trial(
        task.kind, attack.source, task.seed, weighted_pass(outcomes, DRAWN), worst[0].value, worst[1], _scores(worst[2])
    )


def run_live(clip: LiveClip, faces: str, thresholds: Thresholds) -> Trial:
    from liveness.model import Media
    from liveness.pipeline import judge, measure, reference_from_video

    path = Path(faces) / "video" / clip.file
    data = path.read_bytes()
    if clip.start_s or clip.end_s is not None or clip.mirrored:
        part = attacks.decode(data)
        part = attacks.segment(part, clip.start_s, clip.end_s or part.duration_s)
        data = attacks.encode(attacks.mirrored(part) if clip.mirrored else part, crf=18)
    reference = reference_from_video(path.read_bytes(), clip.reference_at_s)
    analysis = judge(measure(Media(video=data)), clip.performs, reference, [], thresholds)
    passed = analysis.outcome is Outcome.PASSED
    reasons = tuple(r.value for r in analysis.reasons)
    return Trial(
        "bona_fide",
        f"{clip.name}: {'+'.join(a.value for a in clip.performs)}",
        0,
        float(passed),
        analysis.outcome.value,
        reasons,
        _scores(analysis.scores),
    )


def run_shared(file: str, faces: str, thresholds: Thresholds) -> Trial:
    from liveness.model import Media
    from liveness.pipeline import judge, measure, reference_from_video

    video = Path(faces) / "video"
    source, at_s = SHARED_ATTACKS[file]
    reference = reference_from_video((video / source).read_bytes(), at_s)
    measured = measure(Media(video=(video / file).read_bytes()))
    outcomes = {}
    last = None
    for drawn in DRAWN:
        last = judge(measured, drawn, reference, [], thresholds)
        outcomes[drawn] = last.outcome
    assert last is not None
    return Trial(
        "shared:" + file.split("__")[0],
        file,
        0,
        weighted_pass(outcomes, DRAWN),
        last.outcome.value,
        tuple(r.value for r in last.reasons),
        _scores(last.scores),
    )


def still_patterns(faces: Path) -> dict[str, float]:
    """texture.periodic_pattern on the face of each sfas still: a live face (T1), a printed photo
    (F1) and a screen (F2), as the worker would crop them."""
    from liveness import faces as face_layer
    from liveness import texture
    from liveness.media import decode_still
    from liveness.pipeline import grey_face

    found = {}
    for path in sorted((faces / "stills").glob("sfas__*.jp*g")):
        image = decode_still(path.read_bytes())
        boxes = face_layer.detect_still(image)
        if boxes:
            found[path.name] = texture.periodic_pattern(grey_face(image, boxes[0]))
    return found


def _run(job: Callable[[], Trial]) -> Trial:
    return job()


def evaluate(
    faces: Path, thresholds: Thresholds, variants: int, workers: int, kinds: Sequence[str] = attacks.KINDS
) -> list[Trial]:
    """Every live clip, the shared attack recordings, and `variants` of every attack class."""
    import sys

    jobs: list[Callable[[], Trial]] = [partial(run_live, clip, str(faces), thresholds) for clip in LIVE_CLIPS]
    jobs += [partial(run_shared, f, str(faces), thresholds) for f in SHARED_ATTACKS if (faces / "video" / f).is_file()]
    jobs += [
        partial(run_attack, _Task(kind, seed, str(faces), thresholds)) for kind in kinds for seed in range(variants)
    ]
    trials = []
    with multiprocessing.get_context("spawn").Pool(workers) as pool:
        for done, trial in enumerate(pool.imap_unordered(_run, jobs), 1):
            trials.append(trial)
            if done % 10 == 0 or done == len(jobs):
                print(f"attempts judged: {done}/{len(jobs)}", file=sys.stderr, flush=True)
    return trials
