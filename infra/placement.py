"""Where every table lives on a Citus cluster, by design, and what still keeps a table from its place.

Three places (docs/cluster.md explains the choice table by table):
- distributed by `person_id` and co-located with `persons` (whose own column is `id`): a person's rows
  sit on one shard, so a person's request touches one node and its writes stay single-shard;
- reference: small tables every node holds a copy of (operators, terminals), joined from any shard;
- coordinator: tables of the system as a whole, each read or written by one process at a time (the job
  queue, whose LISTEN/NOTIFY stays on the node it was sent on; runs; scans; the audit chain's head).

`apply` runs after the migrations whenever the database has the citus extension: it places every
table marked ready and leaves the others on the coordinator, where they work as on one PostgreSQL.
A table's `blocker` says, in a line, what keeps it there; the placement is finished when none is left.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import asyncpg

Place = Literal["distributed", "reference", "coordinator"]


@dataclass(frozen=True)
class Placement:
    table: str
    place: Place
    blocker: str = ""  # empty: ready to be placed

    @property
    def column(self) -> str:
        return "id" if self.table == "persons" else "person_id"


_KEY = "a key without person_id"
PLACEMENTS: tuple[Placement, ...] = (
    # -- reference -------------------------------------------------------------------------------
    Placement("operators", "reference"),
    Placement("terminals", "reference"),
    # -- distributed by person -------------------------------------------------------------------
    Placement("persons", "distributed", "national_id_hash UNIQUE: the lookup moves to a table distributed by the hash"),
    Placement("pension_entitlements", "distributed", "co-located with persons (waits for persons)"),
    Placement("cards", "distributed", f"{_KEY} (card_number UNIQUE; qr_tokens reference cards(id))"),
    Placement("accounts", "distributed", "an account exists before it is linked to a person: keyed by phone hash"),
    Placement("sessions", "distributed", "a session is an account's or an operator's: split by principal kind"),
    Placement("refresh_tokens", "distributed", f"{_KEY} (token_hash UNIQUE, references sessions(id))"),
    Placement("qr_tokens", "distributed", f"{_KEY} (references cards(id) and sessions(id))"),
    Placement("biometric_consents", "distributed", f"{_KEY} (id; references accounts(id))"),
    Placement("reference_enrollments", "distributed", "co-located with persons (waits for persons)"),
    Placement("certification_challenges", "distributed", f"{_KEY} (id)"),
    Placement("certification_checks", "distributed", f"{_KEY} (id, challenge_id UNIQUE, replay_of)"),
    Placement("domain_events", "distributed", "person_id may be empty; identity id; dedupe_key UNIQUE"),
    Placement("pension_payments", "distributed", f"{_KEY} (id; run_id references a coordinator table)"),
    Placement("death_records", "distributed", f"{_KEY} (id)"),
    Placement("overpayments", "distributed", f"{_KEY} (id, payment_id UNIQUE)"),
    Placement("ledger_accounts", "distributed", "fund and terminal accounts have no person: per-shard clearing"),
    Placement("ledger_transfers", "distributed", "triggers apply balances; an entry between two shards"),
    Placement("medical_allocations", "distributed", f"{_KEY} (id)"),
    Placement("medical_charges", "distributed", f"{_KEY} (id, qr_token_id UNIQUE)"),
    Placement("medical_refunds", "distributed", "no person_id column"),
    Placement("idempotency_keys", "distributed", "keyed by terminal: the key moves beside the charge's person"),
    Placement("devices", "distributed", f"{_KEY} (id, push_token UNIQUE)"),
    Placement("notifications", "distributed", f"{_KEY} (id, dedupe_key UNIQUE)"),
    Placement("deliveries", "distributed", "no person_id column"),
    Placement("face_templates", "distributed", f"{_KEY} (id, check_id UNIQUE)"),
    Placement("card_recovery_approvals", "distributed", "no person_id column"),
    Placement("life_evidence", "distributed", "co-located with persons (waits for persons)"),
    Placement("life_confirmations", "distributed", "co-located with persons (waits for persons)"),
    Placement("in_person_requests", "distributed", "co-located with persons (waits for persons)"),
    Placement("in_person_certifications", "distributed", "co-located with persons (waits for persons)"),
    Placement("appeals", "distributed", "co-located with persons (waits for persons)"),
    Placement("relative_links", "distributed", "co-located with persons (waits for persons)"),
    Placement("recovery_cases", "distributed", "co-located with persons (waits for persons)"),
    Placement("recovery_recalls", "distributed", "co-located with persons (waits for persons)"),
    Placement("supervision_account_hashes", "distributed", "co-located with persons (waits for persons)"),
    Placement("person_import_rows", "distributed", "a staging row has no person yet: kept per import"),
    # -- coordinator -----------------------------------------------------------------------------
    *(
        Placement(table, "coordinator")
        for table in (
            "schema_migrations",
            "otp_codes",
            "otp_hourly_total",
            "operator_sign_in_names",
            "operator_sign_in_failures",
            "dev_sms_messages",
            "audit_log",
            "audit_chain",
            "audit_checkpoints",
            "disbursement_runs",
            "silent_passes",
            "person_imports",
            "person_import_errors",
            "supervision_alerts",
            "supervision_scans",
        )
    ),
)


def ready(placements: tuple[Placement, ...] = PLACEMENTS) -> list[Placement]:
    """What `apply` places now: reference tables first (distributed ones may reference them), then
    `persons` before the tables co-located with it."""
    order = {"reference": 0, "distributed": 1}
    chosen = [p for p in placements if p.place != "coordinator" and not p.blocker]
    return sorted(chosen, key=lambda p: (order[p.place], p.table != "persons"))


async def has_citus(conn: asyncpg.Connection) -> bool:
    return bool(await conn.fetchval("SELECT true FROM pg_extension WHERE extname = 'citus'"))


async def apply(conn: asyncpg.Connection) -> list[str]:
    """Place every ready table not placed yet; return the tables placed. Run as the owner."""
    placed = {row["table_name"] for row in await conn.fetch("SELECT table_name::text AS table_name FROM citus_tables")}
    done: list[str] = []
    for placement in ready():
        if placement.table in placed:
            continue
        if placement.place == "reference":
            await conn.execute("SELECT create_reference_table($1)", placement.table)
        else:
            colocated = "none" if placement.table == "persons" else "persons"
            await conn.execute(
                "SELECT create_distributed_table($1, $2, colocate_with => $3)",
                placement.table,
                placement.column,
                colocated,
            )
        done.append(placement.table)
    return done
