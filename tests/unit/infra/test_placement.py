"""Every table the migrations create has one place on a cluster, written down (infra.placement)."""

from __future__ import annotations

import re

from infra.migrate import migration_files
from infra.placement import PLACEMENTS, Placement, ready


def _created_tables() -> set[str]:
    return {
        name
        for path in migration_files()
        for name in re.findall(r"CREATE TABLE (?:IF NOT EXISTS )?(\w+)", path.read_text())
    }


def test_every_table_has_exactly_one_place() -> None:
    named = [p.table for p in PLACEMENTS]
    assert len(named) == len(set(named))
    assert set(named) - {"schema_migrations"} == _created_tables()


def test_reference_tables_are_placed_before_the_tables_that_refer_to_them() -> None:
    order = [p.place for p in ready()]
    assert order == sorted(order, key=lambda place: place != "reference")
    placed = [p.table for p in ready() if p.place == "distributed"]
    assert not placed or placed[0] == "persons"  # the table every other is co-located with comes first
    # The same on a placement where every kind is ready, as it will be once the key rework is done.
    future = (
        Placement("cards", "distributed"),
        Placement("audit_log", "coordinator"),
        Placement("persons", "distributed"),
        Placement("devices", "distributed", "a blocker"),
        Placement("terminals", "reference"),
    )
    assert [p.table for p in ready(future)] == ["terminals", "persons", "cards"]


def test_a_person_table_is_distributed_by_its_person() -> None:
    assert next(p for p in PLACEMENTS if p.table == "persons").column == "id"
    assert {p.column for p in PLACEMENTS if p.place == "distributed" and p.table != "persons"} == {"person_id"}
