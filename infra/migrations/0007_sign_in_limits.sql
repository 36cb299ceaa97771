-- Sign-in limits (issue 16): SMS codes per purpose and per client, an hourly total of codes, operator
-- sign-in failures per typed username and per client, TOTP codes used once, and operators vouching
-- for a person who cancels a loss report.

-- A code is for one purpose: a sign-in code does not cancel a loss report, nor the other way round.
-- `client` is the address it was requested from (app.auth.rules.client_key): the per-client budget
-- counts these rows, which the purge job keeps until a day after they expire.
ALTER TABLE otp_codes
    ADD COLUMN purpose text NOT NULL DEFAULT 'sign_in' CHECK (purpose IN ('sign_in', 'card_recovery')),
    ADD COLUMN client  text NOT NULL DEFAULT 'unknown';
CREATE INDEX otp_codes_client_idx ON otp_codes (client, created_at);

-- Codes sent in the current clock hour by every client together: one row, counted by a conditional
-- UPDATE in a statement of its own, so the ceiling holds across API processes and each code holds
-- the row's lock for that one statement.
CREATE TABLE otp_hourly_total (
    only_row boolean PRIMARY KEY DEFAULT true CHECK (only_row),
    hour     timestamptz NOT NULL,
    sent     int NOT NULL
);
INSERT INTO otp_hourly_total (hour, sent) VALUES ('-infinity', 0);

-- Failed operator sign-ins by the username typed, whether or not an operator has it, so that a lock
-- tells nothing about which accounts exist. The name is kept as an HMAC (a password typed into the
-- name field is not stored). A success deletes the row; a row is forgotten a day after its last failure.
CREATE TABLE operator_sign_in_names (
    name_hash       bytea PRIMARY KEY,
    failed_attempts int NOT NULL,
    locked_until    timestamptz,
    last_failed_at  timestamptz NOT NULL
);
CREATE INDEX operator_sign_in_names_last_idx ON operator_sign_in_names (last_failed_at);

-- Each failed operator sign-in by the client it came from: guessing across usernames is limited per
-- client. Kept a day.
CREATE TABLE operator_sign_in_failures (
    id        bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    client    text NOT NULL,
    failed_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX operator_sign_in_failures_client_idx ON operator_sign_in_failures (client, failed_at);
CREATE INDEX operator_sign_in_failures_at_idx ON operator_sign_in_failures (failed_at);

-- The lock moved to operator_sign_in_names, which holds unknown names too.
ALTER TABLE operators DROP COLUMN failed_attempts, DROP COLUMN locked_until;
-- The time step of the last TOTP code accepted: a code, or an earlier one, is not accepted again.
ALTER TABLE operators ADD COLUMN totp_last_step bigint;

-- An operator who checked the person (at a service office, with their ID card) vouches for them: in
-- place of a face check, it lets the holder cancel a loss report made before it, with a new code.
CREATE TABLE card_recovery_approvals (
    id          uuid PRIMARY KEY DEFAULT uuidv7(),
    card_id     uuid NOT NULL REFERENCES cards (id),
    approved_by text NOT NULL,                     -- the operator, as the audit log names them
    reason      text NOT NULL,
    approved_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX card_recovery_approvals_card_idx ON card_recovery_approvals (card_id, approved_at);
