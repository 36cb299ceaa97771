-- Keys for Citus (issue 23), the persons area: persons, accounts, biometric_consents, relative_links.
--
-- A national ID is unique across all persons, and persons is distributed by its id: Citus cannot keep
-- a unique index without the distribution column. The lookup by national ID moves to a table
-- distributed by the hash itself (a group of its own), whose primary key keeps one person per
-- national ID. It is written in the same transaction as each new person (persons/repository.py,
-- write_merge); on a cluster that transaction commits on both shards at once (two-phase commit).
-- It has no foreign key to persons: the two are distributed by different columns.
CREATE TABLE person_national_ids (
    national_id_hash bytea PRIMARY KEY,               -- the keyed HMAC of persons.national_id_hash
    person_id        uuid NOT NULL
);
INSERT INTO person_national_ids (national_id_hash, person_id) SELECT national_id_hash, id FROM persons;
-- The person's row keeps its hash as a plain column: it describes the person beside the number's
-- encrypted and masked copies, and the lookup table can be checked or rebuilt from it. Nothing reads
-- a person by it any more, so it has no index.
ALTER TABLE persons DROP CONSTRAINT persons_national_id_hash_key;

-- accounts are the coordinator's (sign-in, before a person is linked): a coordinator table cannot
-- refer to a distributed one. An account is linked only to the person the activation has just read
-- in the same transaction (cards/service.py, activate), and persons are never deleted.
ALTER TABLE accounts DROP CONSTRAINT accounts_person_id_fkey;

-- A consent is the person's row: its key holds person_id. The account that gave it is the signed-in
-- account of the request (its session was just resolved; accounts are never deleted), so its foreign
-- key to the coordinator's accounts goes.
ALTER TABLE biometric_consents DROP CONSTRAINT biometric_consents_account_id_fkey;
ALTER TABLE biometric_consents DROP CONSTRAINT biometric_consents_pkey;
ALTER TABLE biometric_consents ADD PRIMARY KEY (person_id, id);

-- The relative of a link is another person, on another shard: the link is written only after the
-- relative's row is read in the same transaction (certification/assisted/service.py, ask).
ALTER TABLE relative_links DROP CONSTRAINT relative_links_helper_id_fkey;
