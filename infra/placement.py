"""Where every table lives on a Citus cluster, by design, and what in the schema still keeps a table
from its place.

Three places (docs/cluster.md explains the choice table by table):
- distributed by `person_id` and co-located with `persons` (whose own column is `id`): a person's rows
  sit on one shard, so a person's request touches one node and its writes stay single-shard;
- reference: small tables every node holds a copy of (operators, terminals), joined from any shard;
- coordinator: tables of the system as a whole (the job queue, whose LISTEN/NOTIFY stays on the node it
  was sent on; runs; scans; the audit log's boundary and checkpoints);
- the audit log's own group, distributed by `chain`: each chain's rows and its head on one shard.

What keeps a table from its place is read off the schema itself (`violations`), against the rules
Citus sets: every primary key and unique index of a distributed table holds its distribution column;
its foreign keys run to reference tables or, on that column, to tables co-located with it; it has no
triggers; no coordinator table refers to it. The person tables are tied together by their foreign keys
to `persons`, so they are placed together, once none of them breaks a rule; until then they stay on
the coordinator, where they work as on one PostgreSQL.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Literal

import asyncpg

Place = Literal["distributed", "reference", "coordinator"]


@dataclass(frozen=True)
class Placement:
    table: str
    place: Place
    column: str = "person_id"  # the distribution column of a distributed table
    # Distributed tables of one group are co-located: their shards of a value sit on one node, so
    # they join and refer to each other on that column. A lookup by a value other than the person
    # (a national ID's hash) is a group of its own, distributed by the value. A group is named after
    # its first table, which the others are co-located with.
    group: str = "persons"


_DISTRIBUTED = (
    "pension_entitlements",
    "cards",
    "qr_tokens",
    "biometric_consents",
    "reference_enrollments",
    "certification_challenges",
    "certification_checks",
    "domain_events",
    "pension_payments",
    "death_records",
    "overpayments",
    "ledger_accounts",
    "ledger_transfers",
    "medical_allocations",
    "medical_charges",
    "medical_refunds",
    "idempotency_keys",
    "devices",
    "notifications",
    "deliveries",
    "face_templates",
    "card_recovery_approvals",
    "life_evidence",
    "life_confirmations",
    "in_person_requests",
    "in_person_certifications",
    "appeals",
    "relative_links",
    "recovery_cases",
    "recovery_recalls",
    "supervision_account_hashes",
)
_REFERENCE = ("operators", "terminals")
_COORDINATOR = (
    "schema_migrations",
    # Sign-in: a phone's account exists before it is linked to a person, and a session may be an
    # operator's; each is read by its own key once per request or sign-in.
    "accounts",
    "sessions",
    "refresh_tokens",
    "otp_codes",
    "otp_hourly_total",
    "operator_sign_in_names",
    "operator_sign_in_failures",
    "dev_sms_messages",
    "audit_chain",  # the keyed boundary and the number of chains: one row, fixed at migration
    "audit_checkpoints",
    # The ledger's system side: the fund and merchant accounts, and the settlements carried into them
    # from the persons' clearing accounts; written by the one settlement job, read by reconciliation.
    "ledger_system_accounts",
    "ledger_settlements",
    # A run's row is written by every batch (progress, problems) in the batch's transaction: kept here,
    # not copied to every node; pension_payments.run_id has no foreign key to it (the run code keeps
    # it), and the payments' statements take a run's facts as parameters instead of joining it.
    "disbursement_runs",
    "silent_passes",
    "person_imports",
    "person_import_rows",  # an import's staging rows, before they have a person
    "person_import_errors",
    "supervision_alerts",
    "supervision_scans",
    "system_events",  # the outbox's events of no person (a disbursement run's completion)
)
PLACEMENTS: tuple[Placement, ...] = (
    *(Placement(t, "reference") for t in _REFERENCE),
    Placement("persons", "distributed", column="id"),
    *(Placement(t, "distributed") for t in _DISTRIBUTED),
    # A refund names its charge alone: this finds the charge's person.
    Placement("medical_charge_persons", "distributed", column="charge_id", group="medical_charge_persons"),
    # A person by national ID: the lookup, distributed by the hash (persons' own key is its id).
    Placement("person_national_ids", "distributed", column="national_id_hash", group="person_national_ids"),
    # A card by its number: the lookup, distributed by the number (a card's own key holds its person).
    Placement("card_numbers", "distributed", column="card_number", group="card_numbers"),
    # The audit log in chains (0027), in a group of its own. The heads are co-located with the rows, not
    # on the coordinator: a writer locks its chain's head FOR UPDATE (Citus allows that only in a
    # single-shard query) and appends to the chain in the same shard, and no head is a coordinator
    # row every audited transaction of the cluster would write.
    Placement("audit_log", "distributed", column="chain", group="audit_log"),
    Placement("audit_heads", "distributed", column="chain", group="audit_log"),
    # A push token names one app install across all persons: its owner, looked up by the token.
    Placement("push_tokens", "distributed", column="push_token", group="push_tokens"),
    *(Placement(t, "coordinator") for t in _COORDINATOR),
)


@dataclass(frozen=True)
class Rule:
    """One constraint, index or trigger of the schema, as `violations` needs to judge it."""

    table: str
    kind: Literal["primary key", "unique", "foreign key", "trigger", "column"]
    name: str  # a column's rule is named "not null" or "null"
    columns: tuple[str, ...] = ()
    references: str = ""
    referenced_columns: tuple[str, ...] = ()


def violations(schema: Iterable[Rule], placements: tuple[Placement, ...] = PLACEMENTS) -> dict[str, list[str]]:
    """Per table, each way the schema breaks what Citus requires of the table's place (empty: none).
    Tables the placements do not name (pgqueuer's) are the coordinator's."""
    place: Mapping[str, Placement] = {p.table: p for p in placements}

    def where(table: str) -> Place:
        return place[table].place if table in place else "coordinator"

    found: dict[str, list[str]] = {}
    rules = list(schema)
    keyed = {(r.table, r.columns[0]) for r in rules if r.kind == "column" and r.name == "not null"}
    for table in {r.table for r in rules}:
        if where(table) == "distributed" and (table, place[table].column) not in keyed:
            found.setdefault(table, []).append(f"no {place[table].column} column that is never null")
    for rule in rules:
        here = where(rule.table)
        wrong = ""
        if here == "distributed":
            column = place[rule.table].column
            if rule.kind in ("primary key", "unique") and column not in rule.columns:
                wrong = f"{rule.kind} {rule.name} ({', '.join(rule.columns)}) lacks {column}"
            elif rule.kind == "trigger":
                wrong = f"trigger {rule.name}"
            elif rule.kind == "foreign key":
                there = where(rule.references)
                pairs = set(zip(rule.columns, rule.referenced_columns, strict=True))
                if there == "coordinator" or (
                    there == "distributed"
                    and (
                        (column, place[rule.references].column) not in pairs
                        or place[rule.references].group != place[rule.table].group
                    )
                ):
                    wrong = f"foreign key {rule.name} to {there} table {rule.references} not on {column}"
        elif rule.kind == "foreign key" and where(rule.references) != "reference" and here == "reference":
            wrong = f"foreign key {rule.name} from a reference table to {rule.references}"
        elif rule.kind == "foreign key" and where(rule.references) == "distributed":
            wrong = f"foreign key {rule.name} from a {here} table to distributed {rule.references}"
        if wrong:
            found.setdefault(rule.table, []).append(wrong)
    return found


def ready(placements: tuple[Placement, ...], broken: Mapping[str, list[str]]) -> list[Placement]:
    """What `apply` places, in order: the reference tables that break no rule, then, once no
    distributed table breaks one, each group's first table and the tables co-located with it."""
    reference = [p for p in placements if p.place == "reference" and p.table not in broken]
    distributed = [p for p in placements if p.place == "distributed"]
    if any(p.table in broken for p in distributed):
        distributed = []
    return reference + sorted(distributed, key=lambda p: (p.group, p.table != p.group))


_SCHEMA_SQL = """
SELECT c.conrelid::regclass::text AS table_name,
       CASE c.contype WHEN 'p' THEN 'primary key' WHEN 'u' THEN 'unique' ELSE 'foreign key' END AS kind,
       c.conname::text AS name,
       ARRAY(SELECT a.attname::text FROM unnest(c.conkey) WITH ORDINALITY AS k(n, i)
             JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = k.n ORDER BY k.i) AS columns,
       CASE WHEN c.contype = 'f' THEN c.confrelid::regclass::text ELSE '' END AS references,
       ARRAY(SELECT a.attname::text FROM unnest(c.confkey) WITH ORDINALITY AS k(n, i)
             JOIN pg_attribute a ON a.attrelid = c.confrelid AND a.attnum = k.n ORDER BY k.i) AS referenced
FROM pg_constraint c
WHERE c.connamespace = 'public'::regnamespace AND c.contype IN ('p', 'u', 'f')
UNION ALL
SELECT i.indrelid::regclass::text, 'unique', i.indexrelid::regclass::text,
       ARRAY(SELECT a.attname::text FROM unnest(i.indkey) WITH ORDINALITY AS k(n, o)
             JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.n ORDER BY k.o),
       '', '{}'
FROM pg_index i JOIN pg_class r ON r.oid = i.indrelid
WHERE r.relnamespace = 'public'::regnamespace AND i.indisunique
  AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conindid = i.indexrelid)
UNION ALL
SELECT t.tgrelid::regclass::text, 'trigger', t.tgname::text, '{}', '', '{}'
FROM pg_trigger t JOIN pg_class r ON r.oid = t.tgrelid
WHERE r.relnamespace = 'public'::regnamespace AND NOT t.tgisinternal
UNION ALL
SELECT a.attrelid::regclass::text, 'column', CASE WHEN a.attnotnull THEN 'not null' ELSE 'null' END,
       ARRAY[a.attname::text], '', '{}'
FROM pg_attribute a JOIN pg_class r ON r.oid = a.attrelid
WHERE r.relnamespace = 'public'::regnamespace AND r.relkind IN ('r', 'p') AND a.attnum > 0 AND NOT a.attisdropped
"""


async def read_schema(conn: asyncpg.Connection) -> list[Rule]:
    """The public schema's keys, unique indexes, foreign keys, triggers and columns."""
    return [
        Rule(
            table=row["table_name"],
            kind=row["kind"],
            name=row["name"],
            columns=tuple(row["columns"]),
            references=row["references"],
            referenced_columns=tuple(row["referenced"]),
        )
        for row in await conn.fetch(_SCHEMA_SQL)
    ]


async def has_citus(conn: asyncpg.Connection) -> bool:
    return bool(await conn.fetchval("SELECT true FROM pg_extension WHERE extname = 'citus'"))


async def apply(conn: asyncpg.Connection, placements: tuple[Placement, ...] = PLACEMENTS) -> list[str]:
    """Place every table that is ready and not placed yet, in one transaction; return the tables
    placed. Run as the owner.

    Citus distributes no table that a table it has not distributed yet refers to (the person tables
    are Citus local tables until then, through their keys to the reference tables), so the foreign
    keys among the tables distributed together are dropped first and made again once all are placed,
    when Citus makes them on every shard."""
    # A table Citus already manages as a local one (through a key to a reference table) is not placed.
    placed = {(r[0], r[1]) for r in await conn.fetch("SELECT table_name::text, citus_table_type FROM citus_tables")}
    broken = violations(await read_schema(conn), placements)
    todo = [p for p in ready(placements, broken) if (p.table, p.place) not in placed]
    distributed = [p.table for p in todo if p.place == "distributed"]
    async with conn.transaction():
        keys = await conn.fetch(_KEYS_AMONG_SQL, distributed)
        for key in keys:
            await conn.execute(f"ALTER TABLE {key['table_name']} DROP CONSTRAINT {key['name']}")
        for placement in todo:
            if placement.place == "reference":
                await conn.execute("SELECT create_reference_table($1)", placement.table)
            else:
                colocated = "none" if placement.table == placement.group else placement.group
                await conn.execute(
                    "SELECT create_distributed_table($1, $2, colocate_with => $3)",
                    placement.table,
                    placement.column,
                    colocated,
                )
        for key in keys:
            await conn.execute(f"ALTER TABLE {key['table_name']} ADD CONSTRAINT {key['name']} {key['definition']}")
    return [p.table for p in todo]


_KEYS_AMONG_SQL = """
SELECT conrelid::regclass::text AS table_name, quote_ident(conname) AS name,
       pg_get_constraintdef(oid) AS definition
FROM pg_constraint
WHERE contype = 'f' AND connamespace = 'public'::regnamespace
  AND (conrelid::regclass::text = ANY($1::text[]) OR confrelid::regclass::text = ANY($1::text[]))
ORDER BY conrelid::regclass::text, conname
"""
