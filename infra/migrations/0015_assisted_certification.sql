-- Assisted certification by a relative (issue 19, the family rung): a cardholder links an elder as
-- their relative; the elder consents separately (a code sent to the elder's registered phone and
-- handed to the relative, an approval from the elder's own app, or an operator who saw the elder);
-- either side (or an operator) ends it. While a link is active, the relative's phone runs the elder's
-- challenge and uploads the video of the elder: the check is the elder's, matched against the
-- elder's reference, and records who helped, from which device and session.
--
-- Keys for Citus (issue 23): relative_links is distributed by the elder's person_id (co-located with
-- persons and the elder's checks), person_id first in its primary key and unique index; ids UUIDv7; no
-- triggers. A relative's own list (by helper_id) is a plain index: a fan-out read at a person's pace.

CREATE TABLE relative_links (
    person_id      uuid NOT NULL REFERENCES persons (id),      -- the elder, whom the relative helps
    id             uuid NOT NULL DEFAULT uuidv7(),
    helper_id      uuid NOT NULL REFERENCES persons (id),      -- the relative, a cardholder with a linked identity
    relationship   text NOT NULL CHECK (relationship IN ('child', 'spouse', 'grandchild', 'sibling', 'other')),
    state          text NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'active', 'superseded', 'ended')),
    requested_at   timestamptz NOT NULL DEFAULT now(),
    requested_by   text NOT NULL,                              -- the relative's account (audit actor)
    code_sent_at   timestamptz,                                -- the last consent code sent to the elder's phone
    consented_at   timestamptz,
    consent_method text CHECK (consent_method IN ('sms_code', 'elder_app', 'operator')),
    consented_by   text,                                       -- who recorded the consent (audit actor)
    consent_reason text CHECK (length(consent_reason) <= 1000), -- an operator's words
    ended_at       timestamptz,
    ended_by       text,
    end_reason     text CHECK (end_reason IN ('revoked_by_elder', 'ended_by_relative', 'revoked_by_operator')),
    PRIMARY KEY (person_id, id),
    CHECK (helper_id <> person_id),
    CHECK ((state = 'active') <= (consented_at IS NOT NULL)),
    CHECK ((state IN ('superseded', 'ended')) = (ended_at IS NOT NULL))
);
-- One open link per elder and relative: asking again is the same request.
CREATE UNIQUE INDEX relative_links_open_one ON relative_links (person_id, helper_id) WHERE state IN ('pending', 'active');
CREATE INDEX relative_links_helper_idx ON relative_links (helper_id, requested_at DESC);
CREATE INDEX relative_links_id_idx ON relative_links (id);

-- A code for the elder's consent is a purpose of its own: a sign-in code never links a relative.
ALTER TABLE otp_codes DROP CONSTRAINT otp_codes_purpose_check;
ALTER TABLE otp_codes
    ADD CONSTRAINT otp_codes_purpose_check CHECK (purpose IN ('sign_in', 'card_recovery', 'relative_consent'));

-- An elder may consent to face processing without an account of their own: through the code they
-- gave their relative, or before an operator. `recorded_by` names who recorded it then.
ALTER TABLE biometric_consents ALTER COLUMN account_id DROP NOT NULL;
ALTER TABLE biometric_consents ADD COLUMN recorded_by text;
ALTER TABLE biometric_consents
    ADD CONSTRAINT biometric_consents_given_by CHECK (account_id IS NOT NULL OR recorded_by IS NOT NULL);

-- A challenge a relative started is theirs to submit (the elder's own app cannot, nor the other way).
ALTER TABLE certification_challenges ADD COLUMN assisted_by uuid REFERENCES persons (id);

-- A check a relative's phone submitted: who helped (their person), through which link, from which
-- device and session; `hold_reasons` are reasons known at submission (too many elders assisted by
-- one relative or device) for which a person must decide whatever the worker finds.
ALTER TABLE certification_checks
    ADD COLUMN assisted_by      uuid REFERENCES persons (id),
    ADD COLUMN assisted_link    uuid,
    ADD COLUMN assisted_device  text,
    ADD COLUMN assisted_session uuid,
    ADD COLUMN hold_reasons     text[] NOT NULL DEFAULT '{}',
    ADD CONSTRAINT certification_checks_assisted CHECK ((assisted_by IS NULL) = (assisted_link IS NULL));
-- The limits count the distinct elders one relative, or one device, helped within a window.
CREATE INDEX certification_checks_assisted_by_idx ON certification_checks (assisted_by, submitted_at)
    INCLUDE (person_id) WHERE assisted_by IS NOT NULL;
CREATE INDEX certification_checks_assisted_device_idx ON certification_checks (assisted_device, submitted_at)
    INCLUDE (person_id) WHERE assisted_device IS NOT NULL;
