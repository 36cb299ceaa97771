-- The audit log as CHAINS (32) independent chains instead of one (issue 23): a row is (chain, seq), seq
-- counted within its chain by the writer that holds the chain's head, so no sequence is shared across
-- the cluster and no lock is held over the whole system. An entry goes to the chain of its subject (a
-- stable hash of it, infra.audit.chain_of): one person's history is one chain. On Citus, audit_log and
-- audit_heads are distributed by chain and co-located (infra/placement.py): a writer's lock on its
-- chain's head and the rows it appends are on one shard.
--
-- Existing rows stay as they are and become chain 0, with their id as seq: their hashes (legacy and
-- keyed, audit_chain.keyed_from) are unchanged and verify as before; chain 0's new rows follow on from
-- the last of them. Anchors written before this (one head) are chain 0's.
--
-- The append-only triggers go: Citus runs no triggers on a distributed table. The application's role
-- still cannot update, delete or truncate (infra.migrate revokes it); what the owner does is what the
-- keyed chains, the signed anchors and checkpoints find, as they did past the triggers before.
-- Stop the old writers before this runs (`socialcard up` migrates first).
LOCK TABLE audit_log IN ACCESS EXCLUSIVE MODE;

DROP TRIGGER audit_log_no_update ON audit_log;
DROP TRIGGER audit_log_no_truncate ON audit_log;
DROP FUNCTION audit_log_refuse_change();

ALTER TABLE audit_log ADD COLUMN chain smallint NOT NULL DEFAULT 0, ADD COLUMN seq bigint;
UPDATE audit_log SET seq = id;
ALTER TABLE audit_log ALTER COLUMN chain DROP DEFAULT, ALTER COLUMN seq SET NOT NULL;
-- The id goes with its primary key and the console's indexes on (…, at, id); hash's unique constraint
-- goes too (it could not hold the chain on Citus, and a repeated hash breaks its chain anyway).
ALTER TABLE audit_log DROP CONSTRAINT audit_log_hash_key;
ALTER TABLE audit_log DROP COLUMN id;
ALTER TABLE audit_log ADD PRIMARY KEY (chain, seq);

-- The console's log, newest first by (at, chain, seq) across the chains, a page at a time from the last
-- row shown, whole or by actor, action or subject, each within a date range.
CREATE INDEX audit_log_at_idx ON audit_log (at, chain, seq);
CREATE INDEX audit_log_actor_idx ON audit_log (actor, at, chain, seq);
CREATE INDEX audit_log_action_idx ON audit_log (action, at, chain, seq);
CREATE INDEX audit_log_subject_idx ON audit_log (subject, at, chain, seq);

-- Where each chain ends: the writer locks its chain's row (FOR UPDATE: a row lock holds on whichever
-- node it is taken from, an advisory lock only on its own), appends after it and moves it on, in one
-- transaction. The anchor job signs all of them together into the object store: the global head.
-- Nothing here is trusted by verification: the log is compared with the signed anchors.
CREATE TABLE audit_heads (
    chain     smallint PRIMARY KEY,
    seq       bigint NOT NULL,   -- the chain's last row (0: none yet)
    hash      bytea NOT NULL,    -- its stored hash (32 zero bytes: none yet)
    row_count bigint NOT NULL    -- rows in the chain
);
INSERT INTO audit_heads (chain, seq, hash, row_count)
SELECT c, 0, decode(repeat('00', 32), 'hex'), 0 FROM generate_series(0, 31) AS c;
UPDATE audit_heads h SET seq = l.seq, hash = l.hash, row_count = (SELECT count(*) FROM audit_log)
FROM (SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1) AS l
WHERE h.chain = 0;

-- The number of chains, fixed here (writers and verify check it against the release's).
ALTER TABLE audit_chain ADD COLUMN chains smallint NOT NULL DEFAULT 32 CHECK (chains > 0);

-- Checkpoints are per chain from here on, named by the chain's number; chain 0 takes the old ones
-- ('log', the one chain there was) as its own.
