-- Face certification: consent, challenges, checks (the worker's analysis and the reviewer's
-- decision), enrolled reference photos, and the domain events notifications deliver.

CREATE TABLE biometric_consents (
    id           uuid PRIMARY KEY DEFAULT uuidv7(),
    person_id    uuid NOT NULL REFERENCES persons (id),
    account_id   uuid NOT NULL REFERENCES accounts (id),
    text_version text NOT NULL,
    granted_at   timestamptz NOT NULL DEFAULT now(),
    withdrawn_at timestamptz
);
-- At most one standing consent per person; a withdrawal ends it, a new grant starts another.
CREATE UNIQUE INDEX biometric_consents_standing_idx ON biometric_consents (person_id) WHERE withdrawn_at IS NULL;

-- The enrolled reference photo: one row per person and photo; the worker fills it.
CREATE TABLE reference_enrollments (
    person_id     uuid NOT NULL REFERENCES persons (id),
    photo_key     text NOT NULL,
    status        text NOT NULL CHECK (status IN ('enrolled', 'unusable')),
    embedding_enc bytea,                                -- AES-GCM of 128 float64
    reasons       text[] NOT NULL DEFAULT '{}',
    scores        jsonb NOT NULL DEFAULT '{}',
    enrolled_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (person_id, photo_key),
    CHECK ((status = 'enrolled') = (embedding_enc IS NOT NULL))
);

CREATE TABLE certification_challenges (
    id            uuid PRIMARY KEY,
    person_id     uuid NOT NULL REFERENCES persons (id),
    actions       text[] NOT NULL CHECK (cardinality(actions) BETWEEN 1 AND 4),
    upload_prefix text NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now(),
    expires_at    timestamptz NOT NULL
);
CREATE INDEX certification_challenges_person_idx ON certification_challenges (person_id, created_at DESC);

CREATE TABLE certification_checks (
    id                uuid PRIMARY KEY DEFAULT uuidv7(),
    person_id         uuid NOT NULL REFERENCES persons (id),
    challenge_id      uuid NOT NULL UNIQUE REFERENCES certification_challenges (id),  -- single use
    actions           text[] NOT NULL,
    media_kind        text NOT NULL CHECK (media_kind IN ('video', 'frames')),
    media_keys        text[] NOT NULL,
    media_bytes       bigint NOT NULL CHECK (media_bytes > 0),
    status            text NOT NULL DEFAULT 'queued'
                      CHECK (status IN ('queued', 'processing', 'passed', 'failed', 'needs_review', 'retry', 'home_visit')),
    analysis_attempts int NOT NULL DEFAULT 0,
    worker_outcome    text CHECK (worker_outcome IN ('passed', 'failed', 'needs_review', 'retry')),
    reasons           text[] NOT NULL DEFAULT '{}',
    scores            jsonb NOT NULL DEFAULT '{}',
    actions_detected  jsonb NOT NULL DEFAULT '[]',
    sha256            text,
    frame_hashes      bigint[] NOT NULL DEFAULT '{}',
    embedding_enc     bytea,                            -- AES-GCM of 128 float64
    replay_of         uuid REFERENCES certification_checks (id),
    review_frame_keys text[] NOT NULL DEFAULT '{}',
    request_id        text,
    submitted_at      timestamptz NOT NULL DEFAULT now(),
    analysed_at       timestamptz,
    decided_at        timestamptz,                      -- the final decision, by the worker or a reviewer
    decided_by        text,
    review_decision   text CHECK (review_decision IN ('approve', 'reject', 'home_visit')),
    review_reason     text,
    claimed_by        uuid REFERENCES operators (id),
    claimed_until     timestamptz,
    media_purged_at   timestamptz
);
CREATE INDEX certification_checks_person_idx ON certification_checks (person_id, submitted_at DESC);
CREATE INDEX certification_checks_queue_idx ON certification_checks (status, submitted_at);
CREATE INDEX certification_checks_sha_idx ON certification_checks (sha256);
CREATE INDEX certification_checks_purge_idx ON certification_checks (decided_at) WHERE media_purged_at IS NULL;

-- What happened, for the notifications dispatcher: written in the transaction of the change
-- itself; the dedupe key makes a retried job write it once.
CREATE TABLE domain_events (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    kind       text NOT NULL,
    person_id  uuid REFERENCES persons (id),
    payload    jsonb NOT NULL,
    dedupe_key text NOT NULL UNIQUE,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX domain_events_person_idx ON domain_events (person_id, id);
