-- Evidence of life from data (issue 19, the first rung of the certification ladder): what the feeds
-- of hospitals, pharmacies, medical insurance, civil affairs, police and banks say a person did on a
-- day; the confirmations the silent pass made from it; and the passes themselves.
--
-- Keys for Citus (issue 23): the person's tables carry person_id first in every primary key and
-- unique constraint, so they distribute by person_id co-located with persons; ids are UUIDv7 (no
-- sequence); nothing here has a trigger. silent_passes is the one table without a person: a handful
-- of rows a year, kept on the coordinator (or as a reference table) like disbursement_runs.

CREATE TABLE life_evidence (
    person_id   uuid NOT NULL REFERENCES persons (id),
    id          uuid NOT NULL DEFAULT uuidv7(),
    source      text NOT NULL CHECK (source IN ('hospital_visit', 'pharmacy_purchase', 'insurance_settlement',
                                                'civil_affairs', 'police', 'bank_activity')),
    occurred_on date NOT NULL,
    reference   text NOT NULL CHECK (length(reference) BETWEEN 1 AND 200),  -- the feed's own id of the event
    feed        text NOT NULL,                  -- the file and line it came from
    imported_by text NOT NULL,
    imported_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (person_id, id),
    -- A feed imported twice lands once. Per person (a distributed unique key must hold the distribution
    -- column): a reference a source reuses for someone else is that other person's event.
    UNIQUE (person_id, source, reference)
);
-- The rule reads a person's recent events: an index-only scan per person.
CREATE INDEX life_evidence_recent_idx ON life_evidence (person_id, occurred_on) INCLUDE (source, id);

-- Every event the rule may count: the imported ones and the product's own QR charges at hospital and
-- pharmacy terminals (a charge is the cardholder's device at a counter that day). A view rather than a
-- row written with each charge: the charge path stays as it is, and a charge and its evidence cannot
-- disagree. Charge days are China's calendar days, as the feeds' dates are.
CREATE VIEW life_evidence_all AS
    SELECT person_id, id, source, occurred_on, reference FROM life_evidence
    UNION ALL
    SELECT person_id, id, 'qr_charge', (created_at AT TIME ZONE 'Asia/Shanghai')::date, id::text
    FROM medical_charges;

-- One silent pass over the persons due: batch after batch in person order, each batch committed with
-- the pass's progress (resume_after), so a pass killed at any point and started again confirms every
-- due person once. The rule it applies is kept with it.
CREATE TABLE silent_passes (
    id           uuid PRIMARY KEY DEFAULT uuidv7(),
    run_on       date NOT NULL,                 -- the day the rule is judged on
    due_by       date NOT NULL,                 -- persons certified until this day or never
    rule         jsonb NOT NULL,
    state        text NOT NULL DEFAULT 'running' CHECK (state IN ('running', 'completed')),
    resume_after uuid,                          -- the last person done
    scanned      int NOT NULL DEFAULT 0,
    confirmed    int NOT NULL DEFAULT 0,
    requested_by text NOT NULL,
    started_at   timestamptz NOT NULL DEFAULT now(),
    completed_at timestamptz,
    CHECK ((state = 'completed') = (completed_at IS NOT NULL))
);
-- At most one pass runs: a second starter resumes it rather than racing it.
CREATE UNIQUE INDEX silent_passes_running_idx ON silent_passes ((true)) WHERE state = 'running';

-- A person confirmed alive by data: which evidence rows did it, and how far eligibility went.
CREATE TABLE life_confirmations (
    person_id      uuid NOT NULL REFERENCES persons (id),
    pass_id        uuid NOT NULL,               -- silent_passes (no foreign key: not co-located)
    confirmed_on   date NOT NULL,
    previous_until date,
    eligible_until date NOT NULL,
    evidence_ids   uuid[] NOT NULL CHECK (cardinality(evidence_ids) > 0),  -- rows of life_evidence_all
    created_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (person_id, pass_id)            -- a pass confirms a person once
);
