-- Issue 23, certification: challenges, checks and face templates keyed by their person, so that a
-- person's rows sit on one shard and every key holds the distribution column (infra/placement.py).
-- Every table here already has a person_id that is never null: only keys change, no backfill of it.

-- The foreign keys that run into the keys about to change go first.
ALTER TABLE face_templates DROP CONSTRAINT face_templates_check_id_fkey;
ALTER TABLE certification_checks DROP CONSTRAINT certification_checks_challenge_id_fkey;
ALTER TABLE certification_checks DROP CONSTRAINT certification_checks_replay_of_fkey;

-- The assisting relative is another person, on another shard: no foreign key. Who helped is the
-- signed-in relative whose active link to the elder is locked in the transaction that writes the
-- challenge and the check (certification.assisted.service, `admit`).
ALTER TABLE certification_challenges DROP CONSTRAINT certification_challenges_assisted_by_fkey;
ALTER TABLE certification_checks DROP CONSTRAINT certification_checks_assisted_by_fkey;

ALTER TABLE certification_challenges DROP CONSTRAINT certification_challenges_pkey;
ALTER TABLE certification_challenges ADD PRIMARY KEY (person_id, id);

-- A challenge is used once, by a check of its own person.
ALTER TABLE certification_checks DROP CONSTRAINT certification_checks_challenge_id_key;
ALTER TABLE certification_checks ADD CONSTRAINT certification_checks_challenge_key UNIQUE (person_id, challenge_id);
ALTER TABLE certification_checks DROP CONSTRAINT certification_checks_pkey;
ALTER TABLE certification_checks ADD PRIMARY KEY (person_id, id);
ALTER TABLE certification_checks ADD CONSTRAINT certification_checks_challenge_fkey
    FOREIGN KEY (person_id, challenge_id) REFERENCES certification_challenges (person_id, id);
-- What knows a check only by its id (an operator's link to it, a job queued before this migration)
-- finds its person through this index; on a cluster, one read of every shard, never a lock.
CREATE INDEX certification_checks_id_idx ON certification_checks (id);

-- A replay may copy another person's recording (liveness.decision.reconsider searches the whole
-- population): the reference is data, with the copied check's person beside it, so that check is
-- read on its own shard.
ALTER TABLE certification_checks ADD COLUMN replay_of_person uuid;
UPDATE certification_checks k SET replay_of_person = o.person_id
FROM certification_checks o WHERE o.id = k.replay_of;
ALTER TABLE certification_checks
    ADD CONSTRAINT certification_checks_replay CHECK ((replay_of IS NULL) = (replay_of_person IS NULL));

-- A check's template is the check's person's.
ALTER TABLE face_templates DROP CONSTRAINT face_templates_check_id_key;
ALTER TABLE face_templates ADD CONSTRAINT face_templates_check_key UNIQUE (person_id, check_id);
ALTER TABLE face_templates ADD CONSTRAINT face_templates_check_fkey
    FOREIGN KEY (person_id, check_id) REFERENCES certification_checks (person_id, id);
ALTER TABLE face_templates DROP CONSTRAINT face_templates_pkey;
ALTER TABLE face_templates ADD PRIMARY KEY (person_id, id);
