"""How a certification decision is counted (infra.metrics): its outcome, who made it, and the
category of each reason given. Categories, not reason codes, keep the label's values few and stable
as reasons are added; every reason the worker can give has one (a unit test holds it)."""

from __future__ import annotations

from collections.abc import Iterable

from infra import metrics
from liveness.model import Outcome, Reason

# The check statuses a decision can leave: the worker's outcomes, and a reviewer's home visit.
OUTCOMES = frozenset({*(str(o) for o in Outcome), "home_visit"})

REASON_CATEGORIES: dict[str, str] = {
    **dict.fromkeys((Reason.UNREADABLE_MEDIA, Reason.TOO_SHORT, Reason.TOO_LONG), "media"),
    **dict.fromkeys((Reason.NO_FACE, Reason.MULTIPLE_FACES, Reason.IDENTITY_CHANGED), "face"),
    **dict.fromkeys((Reason.FACE_TOO_SMALL, Reason.TOO_DARK, Reason.TOO_BLURRED, Reason.FACE_LOST), "quality"),
    **dict.fromkeys(
        (
            Reason.ACTION_NOT_DETECTED,
            Reason.WRONG_ORDER,
            Reason.EXTRA_ACTION,
            Reason.ACTION_TIMING,
            Reason.NO_MOTION,
        ),
        "liveness",
    ),
    **dict.fromkeys((Reason.MATCH_UNCERTAIN, Reason.NOT_SAME_PERSON), "matching"),
    **dict.fromkeys(
        (
            Reason.REPLAYED_MEDIA,
            Reason.REFERENCE_COPY,
            Reason.FACE_COLLISION,
            Reason.EDITED_MEDIA,
            Reason.PRESENTATION_ATTACK,
        ),
        "attack",
    ),
    Reason.REFERENCE_MISSING: "reference",
    Reason.ANALYSIS_ERROR: "error",
    # Added by the rules and by reviewers (certification.rules.final_status, review.service.DECISIONS).
    **dict.fromkeys(("repeated_failures", "review_rejected", "home_visit"), "review"),
}


def reason_category(code: str) -> str:
    return REASON_CATEGORIES.get(code, "other")


def decision_labels(status: str, reasons: Iterable[str]) -> tuple[str, list[str]]:
    """The outcome label and one category label per reason, each from a bounded set."""
    return (status if status in OUTCOMES else "other"), [reason_category(code) for code in reasons]


def count_decision(status: str, reasons: Iterable[str], decided_by: str) -> None:
    """Count a decision once it is committed (`decided_by`: worker or reviewer)."""
    outcome, categories = decision_labels(status, reasons)
    metrics.DECISIONS.labels(outcome, decided_by).inc()
    for category in categories:
        metrics.DECISION_REASONS.labels(outcome, category).inc()
