-- Person imports at the size of a city (issue 20): a file streams through the checks in batches;
-- each batch is copied into a temporary table and merged into persons, pension entitlements and
-- cards with set-based SQL, and commits with the import's progress, so an import killed at any point
-- and run again on the same file (the same content hash) goes on after its last committed batch.
--
-- Keys for Citus (issue 23): person_imports and person_import_errors are a handful of rows per import
-- with no person in them, kept on the coordinator like silent_passes; person_import_rows is local
-- staging (rows held back until the end of their import, then deleted). Ids are UUIDv7; no sequence,
-- no trigger.

CREATE TABLE person_imports (
    id           uuid PRIMARY KEY DEFAULT uuidv7(),
    file_sha256  bytea NOT NULL CHECK (length(file_sha256) = 32),
    file_name    text NOT NULL,
    lines        int NOT NULL,                  -- lines in the file, for the progress display
    state        text NOT NULL DEFAULT 'running' CHECK (state IN ('running', 'completed')),
    through      int NOT NULL DEFAULT 0,        -- the last line of the last committed batch
    created      int NOT NULL DEFAULT 0,
    updated      int NOT NULL DEFAULT 0,
    unchanged    int NOT NULL DEFAULT 0,
    requested_by text NOT NULL,
    started_at   timestamptz NOT NULL DEFAULT now(),
    completed_at timestamptz,
    CHECK ((state = 'completed') = (completed_at IS NOT NULL))
);
-- One unfinished import per file content: running the same file again resumes it.
CREATE UNIQUE INDEX person_imports_unfinished_idx ON person_imports (file_sha256) WHERE state = 'running';

-- The per-line report, kept with the import so that a resumed run reports the lines of the first one.
CREATE TABLE person_import_errors (
    import_id uuid NOT NULL REFERENCES person_imports (id),
    line      int NOT NULL,
    n         int NOT NULL,                     -- a line's errors in the order they were found
    field     text NOT NULL,
    reason    text NOT NULL,
    PRIMARY KEY (import_id, line, n)
);

-- The checked rows of national IDs that the file holds more than once, sealed as persons stores them
-- (national ID and bank account encrypted, keyed lookup hashes, masked copies; never in clear). They
-- are held back to the end of the import, where the last of each lands ("one person, one record", as
-- across files); every other row merges with its batch and is never written here.
CREATE TABLE person_import_rows (
    import_id           uuid NOT NULL REFERENCES person_imports (id),
    line                int NOT NULL,
    national_id_hash    bytea NOT NULL,
    national_id_enc     bytea NOT NULL,
    national_id_masked  text NOT NULL,
    name                text NOT NULL,
    birth_date          date NOT NULL,
    phone               text NOT NULL,
    region              text NOT NULL,
    locale              text NOT NULL,
    reference_photo_key text,
    -- The pension, all or nothing; the account's keyed hash tells a changed account without decrypting.
    monthly_amount_fen  bigint,
    bank_account_enc    bytea,
    bank_account_masked text,
    bank_account_hash   bytea,
    start_month         date,
    PRIMARY KEY (import_id, line)
);
