"""How each pensioner was certified in a cycle (a calendar year, China time), per region: by data,
by face (on their own, or filmed by a relative: assisted), in person, and how many are still to certify. A person certified more than one way counts
under each way, and once in `certified`."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime

import asyncpg

from certification.rules import day_in_china

# Pensioners being paid (alive, an active pension), with each way they were certified in the cycle
# [$1, $2). Read on one snapshot; at a million pensioners it is one pass over persons and an index
# range of each certification table. `lapsed`: certified until before $3 (today) or never, so the
# next payment would be withheld.
REPORT_SQL = """
    WITH pensioner AS (
        SELECT p.id, p.region, p.certified_until
        FROM persons p JOIN pension_entitlements e ON e.person_id = p.id
        WHERE p.vital_status = 'alive' AND e.status = 'active' AND ($4::text IS NULL OR p.region = $4)
    ), by_data AS (
        SELECT DISTINCT person_id FROM life_confirmations WHERE confirmed_on >= $1 AND confirmed_on < $2
    ), passed AS (
        SELECT person_id, bool_or(assisted_by IS NULL) AS own, bool_or(assisted_by IS NOT NULL) AS assisted
        FROM certification_checks
        WHERE status = 'passed' AND decided_at >= ($1::date AT TIME ZONE 'Asia/Shanghai')
          AND decided_at < ($2::date AT TIME ZONE 'Asia/Shanghai')
        GROUP BY person_id
    ), in_person AS (
        SELECT DISTINCT person_id FROM in_person_certifications WHERE certified_on >= $1 AND certified_on < $2
    )
    SELECT x.region,
           count(*) AS pensioners,
           count(d.person_id) AS by_data,
           count(*) FILTER (WHERE f.own) AS by_face,
           count(*) FILTER (WHERE f.assisted) AS assisted,
           count(i.person_id) AS in_person,
           count(*) FILTER (WHERE d.person_id IS NOT NULL OR f.person_id IS NOT NULL OR i.person_id IS NOT NULL)
               AS certified,
           count(*) FILTER (WHERE x.certified_until IS NULL OR x.certified_until < $3) AS lapsed
    FROM pensioner x
    LEFT JOIN by_data d ON d.person_id = x.id
    LEFT JOIN passed f ON f.person_id = x.id
    LEFT JOIN in_person i ON i.person_id = x.id
    GROUP BY x.region
    ORDER BY x.region
"""

COUNTS = ("pensioners", "by_data", "by_face", "assisted", "in_person", "certified", "lapsed")


@dataclass(frozen=True)
class RegionCounts:
    region: str
    pensioners: int
    by_data: int
    by_face: int
    assisted: int
    in_person: int
    certified: int
    lapsed: int

    @property
    def still_due(self) -> int:
        """Not certified any way yet this cycle."""
        return self.pensioners - self.certified


@dataclass(frozen=True)
class LadderReport:
    year: int
    regions: list[RegionCounts]

    @property
    def total(self) -> RegionCounts:
        return RegionCounts("", *(sum(getattr(r, name) for r in self.regions) for name in COUNTS))


def of_rows(year: int, rows: list[asyncpg.Record]) -> LadderReport:
    return LadderReport(year, [RegionCounts(r["region"], *(r[name] for name in COUNTS)) for r in rows])


class LadderReports:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def report(self, year: int, region: str | None) -> LadderReport:
        today = day_in_china(datetime.now(UTC))
        return of_rows(year, await self._pool.fetch(REPORT_SQL, date(year, 1, 1), date(year + 1, 1, 1), today, region))
