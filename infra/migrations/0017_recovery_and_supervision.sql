-- Money follow-through and fund supervision (issue 20): recovery cases for the payments made after a
-- death, the bank recalls that claim the money back and the bank's answers; and the supervision
-- alerts a daily scan raises for operators (shared bank accounts, one face or device certifying
-- several people, activity after a recorded death, pensions paid on stale evidence of life).
--
-- Keys for Citus (issue 23): recovery_cases and recovery_recalls carry person_id first in every
-- primary key and unique index (distributed by person_id, co-located with persons; a case per person
-- and death record); supervision_account_hashes likewise. Operators and the bank's answers find a case
-- or a recall by its id alone: a plain index (a fan-out query on a cluster, fine at a back office's
-- pace). supervision_alerts and supervision_scans are a few thousand rows with no single person (an
-- alert names several in person_ids): local tables on the coordinator, like silent_passes, which the
-- scan fills by INSERT ... SELECT from the distributed tables. Ids are UUIDv7; no sequence, no trigger.

-- A case per death record with overpayments. What is owed is not stored: it is the sum of the death
-- record's overpayments not cancelled, so a corrected date of death or a payment the bank returned
-- changes it without a second writer. Recovered and written-off amounts are the case's own.
CREATE TABLE recovery_cases (
    person_id          uuid NOT NULL REFERENCES persons (id),
    id                 uuid NOT NULL DEFAULT uuidv7(),
    death_record_id    uuid NOT NULL,            -- death_records (no foreign key: keyed by id alone)
    state              text NOT NULL DEFAULT 'opened'
                       CHECK (state IN ('opened', 'recall_requested', 'recovered_partly', 'recovered',
                                        'written_off', 'cancelled')),
    recovered_fen      bigint NOT NULL DEFAULT 0 CHECK (recovered_fen >= 0),
    written_off_fen    bigint NOT NULL DEFAULT 0 CHECK (written_off_fen >= 0),
    -- A write-off is asked by one administrator and approved by another (maker-checker).
    write_off_asked_by text,
    write_off_reason   text CHECK (length(write_off_reason) <= 1000),
    write_off_asked_at timestamptz,
    approved_by        text,
    opened_at          timestamptz NOT NULL DEFAULT now(),
    updated_at         timestamptz NOT NULL DEFAULT now(),
    closed_at          timestamptz,
    PRIMARY KEY (person_id, id),
    CHECK ((write_off_asked_by IS NULL) = (write_off_reason IS NULL)),
    CHECK (approved_by IS NULL OR (approved_by <> write_off_asked_by AND state = 'written_off')),
    CHECK ((state IN ('recovered', 'written_off', 'cancelled')) = (closed_at IS NOT NULL))
);
-- One case per death record: a re-import of the same death finds it.
CREATE UNIQUE INDEX recovery_cases_death_idx ON recovery_cases (person_id, death_record_id);
CREATE INDEX recovery_cases_id_idx ON recovery_cases (id);
CREATE INDEX recovery_cases_open_idx ON recovery_cases (opened_at) WHERE closed_at IS NULL;

-- One line of a recall file: the bank is asked to take `amount_fen` back from the account paid, and
-- answers once with what it recovered (0 when the account was empty or closed).
CREATE TABLE recovery_recalls (
    person_id         uuid NOT NULL REFERENCES persons (id),
    id                uuid NOT NULL DEFAULT uuidv7(),
    case_id           uuid NOT NULL,
    amount_fen        bigint NOT NULL CHECK (amount_fen > 0),
    bank_account_enc  bytea NOT NULL,            -- the account of the latest overpaid payment
    requested_by      text NOT NULL,
    requested_at      timestamptz NOT NULL DEFAULT now(),
    recovered_fen     bigint CHECK (recovered_fen >= 0 AND recovered_fen <= amount_fen),
    bank_reason       text CHECK (length(bank_reason) <= 200),
    answered_at       timestamptz,
    cancelled_at      timestamptz,               -- the case closed before the bank answered
    PRIMARY KEY (person_id, id),
    CHECK ((answered_at IS NULL) = (recovered_fen IS NULL))
);
-- At most one recall a case waits for.
CREATE UNIQUE INDEX recovery_recalls_outstanding_idx ON recovery_recalls (person_id, case_id)
    WHERE answered_at IS NULL AND cancelled_at IS NULL;
CREATE INDEX recovery_recalls_id_idx ON recovery_recalls (id);
CREATE INDEX recovery_recalls_waiting_idx ON recovery_recalls (requested_at)
    WHERE answered_at IS NULL AND cancelled_at IS NULL;

-- An overpayment whose case was written off is no longer to recover.
ALTER TABLE overpayments DROP CONSTRAINT overpayments_status_check;
ALTER TABLE overpayments ADD CONSTRAINT overpayments_status_check
    CHECK (status IN ('to_recover', 'recovered', 'written_off', 'cancelled'));

-- The keyed hash of each entitlement's bank account (the account is stored encrypted with a random
-- nonce, so equal accounts do not look equal). Kept by the scan: enc_sha256 is the SHA-256 of the
-- ciphertext it was computed from, so any change to the account, by any writer, is seen as a
-- mismatch and hashed again; nothing else has to remember to write it.
CREATE TABLE supervision_account_hashes (
    person_id    uuid PRIMARY KEY REFERENCES persons (id),
    enc_sha256   bytea NOT NULL,
    account_hash bytea NOT NULL
);
CREATE INDEX supervision_account_hashes_account_idx ON supervision_account_hashes (account_hash);

-- One alert per finding (finding_key: the kind and what it is about: an account hash, a device, a
-- pair of persons, a death record, a person). A scan that finds it again updates its evidence; a
-- closed alert opens again only when the finding names something its closing did not see.
CREATE TABLE supervision_alerts (
    id           uuid PRIMARY KEY DEFAULT uuidv7(),
    kind         text NOT NULL CHECK (kind IN ('shared_account', 'shared_face', 'shared_device',
                                               'after_death', 'no_life_evidence')),
    finding_key  text NOT NULL UNIQUE,
    person_ids   uuid[] NOT NULL CHECK (cardinality(person_ids) > 0),
    fingerprint  text[] NOT NULL,            -- the persons and items seen so far (checks, charges ...)
    evidence     jsonb NOT NULL,
    state        text NOT NULL DEFAULT 'open' CHECK (state IN ('open', 'closed')),
    first_seen_at timestamptz NOT NULL DEFAULT now(),
    last_seen_at  timestamptz NOT NULL DEFAULT now(),
    reopened     int NOT NULL DEFAULT 0,
    closed_at    timestamptz,
    closed_by    text,
    close_reason text CHECK (length(close_reason) <= 1000),
    CHECK ((state = 'closed') = (closed_at IS NOT NULL AND close_reason IS NOT NULL))
);
CREATE INDEX supervision_alerts_list_idx ON supervision_alerts (state, kind, last_seen_at DESC);
CREATE INDEX supervision_alerts_persons_idx ON supervision_alerts USING gin (person_ids);

-- Each scan: when, what it found, and how far the face probe got (the next scan probes the checks
-- decided after it).
CREATE TABLE supervision_scans (
    id            uuid PRIMARY KEY DEFAULT uuidv7(),
    requested_by  text NOT NULL,
    started_at    timestamptz NOT NULL DEFAULT now(),
    faces_through timestamptz NOT NULL,
    counts        jsonb NOT NULL
);

-- The scan's joins: passed checks by decision time (the face probe's window) and by device session.
CREATE INDEX certification_checks_passed_idx ON certification_checks (decided_at) WHERE status = 'passed';
CREATE INDEX sessions_device_idx ON sessions (device_id) WHERE device_id IS NOT NULL;
