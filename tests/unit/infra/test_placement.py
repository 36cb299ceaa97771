"""Every table the migrations create has one place on a cluster, written down (infra.placement)."""

from __future__ import annotations

import re

from infra.migrate import migration_files
from infra.placement import PLACEMENTS, by_table, ready


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


def test_a_person_table_is_distributed_by_its_person() -> None:
    assert by_table()["persons"].column == "id"
    assert {p.column for p in PLACEMENTS if p.place == "distributed" and p.table != "persons"} == {"person_id"}
