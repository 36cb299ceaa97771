"""A migration is sent statement by statement (Citus refuses a DDL text of several commands)."""

from __future__ import annotations

from infra.migrate import migration_files, statements


def test_semicolons_inside_quotes_comments_and_bodies_do_not_split() -> None:
    sql = """
    -- a comment; with a semicolon
    CREATE TABLE t (a text DEFAULT 'x;y', "odd;name" int);  /* block; comment */
    CREATE FUNCTION f() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN RAISE EXCEPTION 'no; never'; END $$;
    DO $body$ BEGIN PERFORM 1; END $body$;
    INSERT INTO t (a) VALUES ('it''s; fine')
    """
    assert statements(sql) == [
        """-- a comment; with a semicolon
    CREATE TABLE t (a text DEFAULT 'x;y', "odd;name" int);""",
        """/* block; comment */
    CREATE FUNCTION f() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN RAISE EXCEPTION 'no; never'; END $$;""",
        "DO $body$ BEGIN PERFORM 1; END $body$;",
        "INSERT INTO t (a) VALUES ('it''s; fine')",
    ]


def test_a_trailing_comment_is_no_statement_and_every_migration_splits_into_whole_statements() -> None:
    assert statements("SELECT 1; -- done\n") == ["SELECT 1;"]
    for path in migration_files():
        parts = statements(path.read_text())
        assert parts, path.name
        assert all(part.endswith(";") for part in parts), path.name  # none cut short
