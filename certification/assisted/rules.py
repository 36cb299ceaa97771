"""Who may help whom certify, and when a helper's checks go to a person: pure rules over plain data."""

from __future__ import annotations

from dataclasses import dataclass

RELATIONSHIPS = ("child", "spouse", "grandchild", "sibling", "other")
OPEN = ("pending", "active")
# How the elder's consent was given: the code sent to their phone, typed in by the relative; an
# approval from the elder's own signed-in app; an operator who saw the elder in person.
CONSENT_METHODS = ("sms_code", "elder_app", "operator")
END_REASONS = ("revoked_by_elder", "ended_by_relative", "revoked_by_operator")
# The reason code a check is held for when its relative or device helped too many elders.
ASSISTED_LIMIT = "assisted_limit"


@dataclass(frozen=True)
class Limits:
    """The limits of settings: ASSISTED_MAX_HELPERS, ASSISTED_MAX_ELDERS, ASSISTED_REVIEW_ELDERS and
    ASSISTED_WINDOW_DAYS."""

    max_helpers: int  # active relatives one elder may have
    max_elders: int  # elders one relative may have linked or be asking for at once
    review_elders: int  # distinct elders one relative or one device may help in the window unreviewed
    window_days: int


def link_refusal(
    helper_open_links: int, elder_active_helpers: int, limits: Limits, *, same_person: bool, elder_alive: bool
) -> str | None:
    """Why a relative may not ask to link this elder (an error code), or None.

    Asking counts against the relative's elders while it waits: a stranger cannot have codes sent to
    many phones at once. The elder's own limit counts only consented helpers, so that a pending
    request by someone unknown cannot keep the elder's family out."""
    if same_person:
        return "relative_self"
    if not elder_alive:
        return "person_deceased"
    if helper_open_links >= limits.max_elders:
        return "relative_elders_limit"
    if elder_active_helpers >= limits.max_helpers:
        return "relative_helpers_limit"
    return None


def consent_refusal(state: str, elder_active_helpers: int, limits: Limits) -> str | None:
    """Why a link cannot be consented to now (an error code), or None. Consenting twice is harmless:
    the caller returns the active link as it is."""
    if state not in OPEN:
        return "relative_link_closed"
    if state == "pending" and elder_active_helpers >= limits.max_helpers:
        return "relative_helpers_limit"
    return None


def holds(elders_by_helper: int, elders_by_device: int, limits: Limits) -> tuple[str, ...]:
    """The reasons a person must decide an assisted check for: the relative, or the device, helped more
    distinct elders in the window than a family has (both counts include this check's elder)."""
    if elders_by_helper > limits.review_elders or elders_by_device > limits.review_elders:
        return (ASSISTED_LIMIT,)
    return ()
