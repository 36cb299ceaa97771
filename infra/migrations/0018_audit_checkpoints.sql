-- Checkpoints of the audit chain (infra.audit_checkpoints): a walk with the chain key found every row up
-- to `last_id` whole, that row's stored hash being `hash`, so the console checks only the rows after the
-- newest one. Each is signed (`mac`) with a key derived from AUDIT_CHAIN_KEY, which the database never
-- holds: whoever can write here can delete checkpoints (the console then walks from an older one, or
-- from the first row: slower, not wrong) but cannot forge or alter one, so no trigger guards the table.
-- `chain` names the chain: one today ('log'); per-shard or per-person chains (issue 23) get their own,
-- and it leads the primary key as a distribution column must.
CREATE TABLE audit_checkpoints (
    chain       text NOT NULL,
    id          bigint GENERATED ALWAYS AS IDENTITY,
    last_id     bigint NOT NULL,
    hash        bytea NOT NULL,
    row_count   bigint NOT NULL,               -- rows up to last_id
    keyed_from  bigint NOT NULL,               -- audit_chain.keyed_from the walk used
    full_walk   boolean NOT NULL,              -- from the first row; else onward from an earlier checkpoint
    problems    text[] NOT NULL,               -- what the walk found wrong; none: the chain held
    verified_at timestamptz NOT NULL,
    mac         bytea NOT NULL,
    PRIMARY KEY (chain, id)
);
CREATE INDEX audit_checkpoints_held_idx ON audit_checkpoints (chain, last_id DESC) WHERE problems = '{}';
CREATE INDEX audit_checkpoints_full_idx ON audit_checkpoints (chain, verified_at DESC) WHERE full_walk;

-- The console's log, newest first by (at, id), a page at a time from the last row shown, whole or by
-- actor, action or subject, each within a date range.
CREATE INDEX audit_log_at_idx ON audit_log (at, id);
CREATE INDEX audit_log_actor_idx ON audit_log (actor, at, id);
CREATE INDEX audit_log_action_idx ON audit_log (action, at, id);
CREATE INDEX audit_log_subject_idx ON audit_log (subject, at, id);
