"""The decision: one outcome and its reasons from everything measured. Pure.

Precedence, first match wins (every reason found is still reported, in this order):

1. Replayed media (a copy of an earlier submission, of this person or another) or another
   pensioner's face (1:N, `reconsider`) -> NEEDS_REVIEW, whatever else holds. These are the
   signature of someone certifying for pensioners who can no longer do it (or have died): an
   operator must see it even when it would otherwise pass, and even when it fails anyway.
2. Proof against the person -> FAILED: several faces, a face that changes identity mid-clip, a
   picture (no motion, a face whose texture never changes, a turn without depth), actions in the
   wrong order. No lighting or blur explains these, so a liveness failure fails even when the
   face matches perfectly.
3. A recording cut and joined, a face showing a screen's or a print's pattern, or a clip made
   from the reference photo itself (closer to it than a new recording comes) -> NEEDS_REVIEW.
4. Capture problems (too short, small, dark, blurred, face lost) -> RETRY. They also explain
   the weaker failures that remain (an action or a face not detected, a poor match): the fix is
   to film again, and a retry never passes anyone.
5. No face at all, or the challenge not performed as asked (an action missing, one not asked for,
   too long a wait, no return to neutral between two) -> FAILED.
6. No usable reference photo -> NEEDS_REVIEW: the clip is live but there is nothing to match.
7. The match: distance <= accept -> PASSED; > reject -> FAILED (NOT_SAME_PERSON); between ->
   NEEDS_REVIEW (MATCH_UNCERTAIN). The accept threshold (FMR 1e-4 on lfw-dev) sends more
   genuine pensioners to a reviewer (a third of single-photo pairs) rather than pay the one
   look-alike in 150 that the usual 0.6 lets through.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass

from liveness import replay
from liveness.model import Analysis, EarlierSubmission, Outcome, Reason, Thresholds

# A second face must show on at least this many keyframes (1 s apart, closer while searching):
# one detection can be the detector's false positive on a patterned background, a bystander stays.
MIN_MULTI_FACE_KEYFRAMES = 2

_PROOF_AGAINST = (Reason.MULTIPLE_FACES, Reason.IDENTITY_CHANGED, Reason.NO_MOTION, Reason.WRONG_ORDER)
# Another pensioner's recording or face: an operator looks, whatever else holds.
_FRAUD_RING = (Reason.REPLAYED_MEDIA, Reason.FACE_COLLISION)
# Media that someone made or edited: an operator looks, unless it fails on proof anyway.
_MADE = (Reason.EDITED_MEDIA, Reason.REFERENCE_COPY, Reason.PRESENTATION_ATTACK)
# The challenge was not performed as asked: a failure, unless a capture problem explains it.
_NOT_PERFORMED = (Reason.ACTION_NOT_DETECTED, Reason.EXTRA_ACTION, Reason.ACTION_TIMING)


@dataclass(frozen=True)
class Evidence:
    face_seen: bool  # a face was detected at least once
    multi_face_keyframes: int  # keyframes on which the detector found two faces or more
    identity_spread: float | None  # largest median distance from one of the clip's encodings to the others
    liveness: tuple[Reason, ...]  # from actions: NO_MOTION, WRONG_ORDER and the _NOT_PERFORMED reasons
    capture: tuple[Reason, ...]  # from quality.assess
    match_distance: float | None  # median distance of the clip's encodings to the reference
    reference_missing: bool
    replay_of: str | None
    turned_identity: float | None = None  # a turned face's distance to the frontal faces' mean
    edited: bool = False  # cut and joined
    patterned: bool = False  # a screen's or a print's pattern on the face


def decide(evidence: Evidence, thresholds: Thresholds) -> tuple[Outcome, tuple[Reason, ...]]:
    reasons = found_reasons(evidence, thresholds)
    if any(reason in _FRAUD_RING for reason in reasons):
        return Outcome.NEEDS_REVIEW, reasons
    if any(reason in _PROOF_AGAINST for reason in reasons):
        return Outcome.FAILED, reasons
    if any(reason in _MADE for reason in reasons):
        return Outcome.NEEDS_REVIEW, reasons
    if evidence.capture:
        return Outcome.RETRY, reasons
    if any(reason in (Reason.NO_FACE, Reason.NOT_SAME_PERSON, *_NOT_PERFORMED) for reason in reasons):
        return Outcome.FAILED, reasons
    if Reason.REFERENCE_MISSING in reasons or Reason.MATCH_UNCERTAIN in reasons:
        return Outcome.NEEDS_REVIEW, reasons
    return Outcome.PASSED, reasons


def found_reasons(evidence: Evidence, thresholds: Thresholds) -> tuple[Reason, ...]:
    """Every reason the evidence supports, in order of precedence."""
    found: list[Reason] = []
    if evidence.replay_of is not None:
        found.append(Reason.REPLAYED_MEDIA)
    if evidence.multi_face_keyframes >= MIN_MULTI_FACE_KEYFRAMES:
        found.append(Reason.MULTIPLE_FACES)
    if (evidence.identity_spread is not None and evidence.identity_spread > thresholds.reject_distance) or (
        evidence.turned_identity is not None and evidence.turned_identity > thresholds.turned_distance
    ):
        found.append(Reason.IDENTITY_CHANGED)
    if evidence.face_seen:
        found.extend(reason for reason in _PROOF_AGAINST if reason in evidence.liveness)
        if evidence.edited:
            found.append(Reason.EDITED_MEDIA)
        if evidence.patterned:
            found.append(Reason.PRESENTATION_ATTACK)
    if evidence.match_distance is not None and evidence.match_distance < thresholds.replay_distance:
        found.append(Reason.REFERENCE_COPY)
    found.extend(evidence.capture)
    if not evidence.face_seen:
        found.append(Reason.NO_FACE)
        return _unique(found)
    found.extend(reason for reason in _NOT_PERFORMED if reason in evidence.liveness)
    if evidence.reference_missing:
        found.append(Reason.REFERENCE_MISSING)
    elif evidence.match_distance is None:
        found.append(Reason.NO_FACE)
    elif (band := match_band(evidence.match_distance, thresholds)) is not None:
        found.append(band)
    return _unique(found)


def reconsider(analysis: Analysis, others: Sequence[EarlierSubmission], collided: bool) -> Analysis:
    """The analysis once the whole population was searched: a copy of another pensioner's
    recording (`others`, candidates from the index) or a face that is another pensioner's sends
    the check to an operator, whatever it was."""
    copied = replay.find_replay(analysis.sha256, analysis.frame_times, analysis.frame_hashes, analysis.actions, others)
    found = [Reason.REPLAYED_MEDIA] if copied.of is not None else []
    found += [Reason.FACE_COLLISION] if collided else []
    if not found:
        return analysis
    scores = dict(analysis.scores)
    if copied.offset_s is not None and analysis.replay_of is None:
        scores.update(replay_offset_s=copied.offset_s, replay_events=float(copied.shared_events))
    return dataclasses.replace(
        analysis,
        outcome=Outcome.NEEDS_REVIEW,
        reasons=_unique([*found, *analysis.reasons]),
        scores=scores,
        replay_of=analysis.replay_of or copied.of,
        replay_of_person=analysis.replay_of_person if analysis.replay_of else copied.person,
    )


def match_band(distance: float, thresholds: Thresholds) -> Reason | None:
    """Where a match distance falls: None at or below accept, MATCH_UNCERTAIN up to reject, then NOT_SAME_PERSON."""
    if distance > thresholds.reject_distance:
        return Reason.NOT_SAME_PERSON
    if distance > thresholds.accept_distance:
        return Reason.MATCH_UNCERTAIN
    return None


def _unique(reasons: Sequence[Reason]) -> tuple[Reason, ...]:
    return tuple(dict.fromkeys(reasons))
