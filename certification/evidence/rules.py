"""The rule that confirms a person alive from data: a pure function over plain values (no I/O).

A person is confirmed on a day when, within the rule's window before it, the sources the rule counts
show at least `min_events` distinct events (one per source and day: a hospital visit and its
insurance settlement on the same day are two sources, two feeds' copies of one visit are one event)
from at least `min_sources` different sources. A death record always wins: a person who has one is
never confirmed, whatever the evidence.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any, NamedTuple


class Evidence(NamedTuple):
    # A tuple, not a dataclass: the silent pass builds one per candidate row, millions a pass.
    id: uuid.UUID
    source: str
    occurred_on: date


@dataclass(frozen=True)
class EvidenceRule:
    sources: frozenset[str]
    within_days: int
    min_events: int
    min_sources: int

    def since(self, on: date) -> date:
        """The first day an event counts on, for a decision on `on`."""
        return on - timedelta(days=self.within_days)

    def as_dict(self) -> dict[str, Any]:
        """As a pass keeps it (silent_passes.rule)."""
        return {
            "sources": sorted(self.sources),
            "within_days": self.within_days,
            "min_events": self.min_events,
            "min_sources": self.min_sources,
        }

    @classmethod
    def from_dict(cls, stored: Mapping[str, Any]) -> EvidenceRule:
        return cls(frozenset(stored["sources"]), stored["within_days"], stored["min_events"], stored["min_sources"])


def confirm(rule: EvidenceRule, evidence: Iterable[Evidence], on: date, *, died: bool) -> tuple[Evidence, ...]:
    """The evidence rows that confirm the person on `on` (the trail), or () when nothing does.

    The trail is the fewest rows that satisfy the rule, newest first: the newest event of each source
    until `min_sources` are named, then the newest of the rest until `min_events` are."""
    if died:
        return ()
    since = rule.since(on)
    events: dict[tuple[str, date], Evidence] = {}
    for e in evidence:
        if e.source in rule.sources and since <= e.occurred_on <= on:
            # One row per event; of two rows of one event, the trail names the smaller id, so a
            # decision does not depend on the order rows arrive in.
            kept = events.get((e.source, e.occurred_on))
            if kept is None or e.id < kept.id:
                events[(e.source, e.occurred_on)] = e
    newest = sorted(events.values(), key=lambda e: (e.occurred_on, e.source, e.id), reverse=True)
    if len(newest) < rule.min_events or len({e.source for e in newest}) < rule.min_sources:
        return ()
    trail: dict[uuid.UUID, Evidence] = {}
    named: set[str] = set()
    for e in newest:
        if e.source not in named and len(named) < rule.min_sources:
            trail[e.id] = e
            named.add(e.source)
    for e in newest:
        if len(trail) >= rule.min_events:
            break
        trail.setdefault(e.id, e)
    return tuple(sorted(trail.values(), key=lambda e: (e.occurred_on, e.source, e.id), reverse=True))
