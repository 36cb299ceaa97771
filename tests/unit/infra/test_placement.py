"""Every table the migrations create has one place on a cluster, and what keeps a table from its
place is read off the schema against Citus's rules (infra.placement)."""

from __future__ import annotations

import re

from infra.migrate import migration_files
from infra.placement import PLACEMENTS, Placement, Rule, ready, violations


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


def test_a_person_table_is_distributed_by_its_person() -> None:
    assert next(p for p in PLACEMENTS if p.table == "persons").column == "id"
    person_group = [p for p in PLACEMENTS if p.place == "distributed" and p.group == "persons"]
    assert {p.column for p in person_group if p.table != "persons"} == {"person_id"}


LAYOUT = (
    Placement("terminals", "reference"),
    Placement("persons", "distributed", column="id"),
    Placement("cards", "distributed"),
    Placement("card_numbers", "distributed", column="card_number", group="card_numbers"),
    Placement("runs", "coordinator"),
)


def _columns(table: str, *names: str) -> list[Rule]:
    return [Rule(table, "column", "not null", (name,)) for name in names]


SOUND = [
    *_columns("persons", "id"),
    Rule("persons", "primary key", "persons_pkey", ("id",)),
    *_columns("cards", "person_id", "id"),
    Rule("cards", "primary key", "cards_pkey", ("person_id", "id")),
    Rule("cards", "foreign key", "cards_person_fk", ("person_id",), "persons", ("id",)),
    Rule("cards", "foreign key", "cards_terminal_fk", ("terminal_id",), "terminals", ("id",)),
    *_columns("card_numbers", "card_number", "person_id"),
    Rule("card_numbers", "primary key", "card_numbers_pkey", ("card_number",)),
    Rule("runs", "foreign key", "runs_terminal_fk", ("terminal_id",), "terminals", ("id",)),
]


def test_a_sound_layout_breaks_no_rule_and_places_each_group_after_the_reference_tables() -> None:
    assert violations(SOUND, LAYOUT) == {}
    order = [p.table for p in ready(LAYOUT, {})]
    assert order == ["terminals", "card_numbers", "persons", "cards"]  # a group's own table first


def test_each_rule_citus_sets_is_named_on_the_table_that_breaks_it() -> None:
    broken = violations(
        [
            *SOUND,
            Rule("cards", "unique", "cards_card_number_key", ("card_number",)),
            Rule("cards", "trigger", "cards_touch"),
            Rule("cards", "foreign key", "cards_run_fk", ("run_id",), "runs", ("id",)),
            Rule("cards", "foreign key", "cards_other_fk", ("other_id",), "persons", ("id",)),
            Rule("cards", "foreign key", "cards_number_fk", ("person_id",), "card_numbers", ("person_id",)),
            Rule("runs", "foreign key", "runs_person_fk", ("person_id",), "persons", ("id",)),
            Rule("terminals", "foreign key", "terminals_run_fk", ("run_id",), "runs", ("id",)),
            Rule("persons", "column", "null", ("id",)),
        ],
        LAYOUT,
    )
    assert broken == {
        "cards": [
            "unique cards_card_number_key (card_number) lacks person_id",
            "trigger cards_touch",
            "foreign key cards_run_fk to coordinator table runs not on person_id",
            "foreign key cards_other_fk to distributed table persons not on person_id",
            "foreign key cards_number_fk to distributed table card_numbers not on person_id",
        ],
        "runs": ["foreign key runs_person_fk from a coordinator table to distributed persons"],
        "terminals": ["foreign key terminals_run_fk from a reference table to runs"],
    }
    # A table whose distribution column may be null, or is missing, cannot be placed either.
    nullable = [r for r in SOUND if r != Rule("persons", "column", "not null", ("id",))]
    assert violations([*nullable, Rule("persons", "column", "null", ("id",))], LAYOUT) == {
        "persons": ["no id column that is never null"]
    }


def test_the_person_tables_wait_for_each_other_while_sound_reference_tables_go_first() -> None:
    order = [p.table for p in ready(LAYOUT, {"cards": ["trigger cards_touch"]})]
    assert order == ["terminals"]
