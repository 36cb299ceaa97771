-- The rungs below the face check (issue 19): a pensioner who cannot film a selfie asks for a home
-- visit or a service-point appointment; an operator certifies them in person, with a reason; and a
-- pensioner whose payment was withheld, or whose check failed, appeals, with an answer due by a date.
--
-- Keys for Citus (issue 23): person_id first in every primary key and unique index (distributed by
-- person_id, co-located with persons); ids UUIDv7; no triggers. Operators find a row by its id alone
-- (a plain index: a fan-out query on a cluster, fine at an operator's pace).

CREATE TABLE in_person_requests (
    person_id     uuid NOT NULL REFERENCES persons (id),
    id            uuid NOT NULL DEFAULT uuidv7(),
    kind          text NOT NULL CHECK (kind IN ('home_visit', 'service_point')),
    note          text NOT NULL DEFAULT '' CHECK (length(note) <= 500),  -- the pensioner's words: access, times
    state         text NOT NULL DEFAULT 'requested' CHECK (state IN ('requested', 'scheduled', 'certified', 'cancelled')),
    requested_at  timestamptz NOT NULL DEFAULT now(),
    scheduled_for timestamptz,
    place         text CHECK (length(place) <= 200),
    scheduled_by  text,
    closed_at     timestamptz,
    closed_by     text,
    PRIMARY KEY (person_id, id),
    CHECK ((state = 'scheduled') <= (scheduled_for IS NOT NULL)),
    CHECK ((state IN ('certified', 'cancelled')) = (closed_at IS NOT NULL))
);
-- One open request a person: asking twice is the same request.
CREATE UNIQUE INDEX in_person_requests_open_one ON in_person_requests (person_id) WHERE state IN ('requested', 'scheduled');
CREATE INDEX in_person_requests_open_idx ON in_person_requests (requested_at) WHERE state IN ('requested', 'scheduled');
CREATE INDEX in_person_requests_id_idx ON in_person_requests (id);

-- Each certification an operator made in person (at home, at a service point, or by upholding an
-- appeal): it extends eligibility as a face pass does. The reason is the operator's own words.
CREATE TABLE in_person_certifications (
    person_id      uuid NOT NULL REFERENCES persons (id),
    id             uuid NOT NULL DEFAULT uuidv7(),
    method         text NOT NULL CHECK (method IN ('home_visit', 'service_point', 'appeal')),
    request_id     uuid,
    operator       text NOT NULL,
    reason         text NOT NULL CHECK (length(reason) BETWEEN 1 AND 1000),
    certified_on   date NOT NULL,
    eligible_until date NOT NULL,
    recorded_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (person_id, id)
);

CREATE TABLE appeals (
    person_id      uuid NOT NULL REFERENCES persons (id),
    id             uuid NOT NULL DEFAULT uuidv7(),
    subject        text NOT NULL CHECK (subject IN ('payment', 'check')),
    subject_id     uuid NOT NULL,                     -- the withheld payment or the failed check
    statement      text NOT NULL CHECK (length(statement) BETWEEN 1 AND 2000),
    state          text NOT NULL DEFAULT 'submitted' CHECK (state IN ('submitted', 'upheld', 'rejected')),
    submitted_at   timestamptz NOT NULL DEFAULT now(),
    due_at         timestamptz NOT NULL,              -- the answer the person was promised by
    decided_by     text,
    decided_at     timestamptz,
    outcome_reason text CHECK (length(outcome_reason) <= 1000),
    PRIMARY KEY (person_id, id),
    CHECK ((state = 'submitted') = (decided_at IS NULL))
);
-- One open appeal a subject: appealing the same payment twice is the same appeal.
CREATE UNIQUE INDEX appeals_open_one ON appeals (person_id, subject, subject_id) WHERE state = 'submitted';
CREATE INDEX appeals_open_due_idx ON appeals (due_at) WHERE state = 'submitted';
CREATE INDEX appeals_id_idx ON appeals (id);
