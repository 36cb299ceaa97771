"""The pension calendar that payments and notifications share: pure, no I/O (the SQL is text)."""

from __future__ import annotations

from datetime import date


def pay_date(period: date, pay_day: int) -> date:
    return period.replace(day=pay_day)


# The people a run pays or withholds for: an active entitlement that has started, a living person.
# Deceased persons and stopped entitlements get no record at all. Over `pension_entitlements e`
# joined to `persons p`; the reminder scan warns the same people ahead of the pay date.
DUE = "e.status = 'active' AND e.start_month <= {period} AND p.vital_status = 'alive'"
# rules.withheld_reason in SQL, judged on the pay date.
WITHHELD_REASON = """CASE WHEN p.certified_until IS NULL THEN 'not_certified'
                          WHEN p.certified_until < {pay_date} THEN 'certification_expired' END"""
