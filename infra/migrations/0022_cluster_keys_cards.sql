-- Issue 23, the cards' keys for Citus: cards, qr_tokens and card_recovery_approvals keyed (person_id, id)
-- and tied together on person_id, so that a card, its QR codes and its recovery approvals sit on the
-- person's shard.

-- A card number is unique across all persons: the lookup by number moves to a table distributed by the
-- number (infra/placement.py), written in the same transaction as the card (persons/repository.py,
-- write_merge). A number is never reused, so the lookup row is never changed.
CREATE TABLE card_numbers (
    card_number text PRIMARY KEY,
    person_id   uuid NOT NULL
);
INSERT INTO card_numbers (card_number, person_id) SELECT card_number, person_id FROM cards;
ALTER TABLE cards DROP CONSTRAINT cards_card_number_key;

-- The rows that belong to a card carry its person.
ALTER TABLE qr_tokens ADD COLUMN person_id uuid;
UPDATE qr_tokens q SET person_id = c.person_id FROM cards c WHERE c.id = q.card_id;
ALTER TABLE qr_tokens ALTER COLUMN person_id SET NOT NULL;

ALTER TABLE card_recovery_approvals ADD COLUMN person_id uuid;
UPDATE card_recovery_approvals a SET person_id = c.person_id FROM cards c WHERE c.id = a.card_id;
ALTER TABLE card_recovery_approvals ALTER COLUMN person_id SET NOT NULL;

-- The foreign keys on cards (id) go before its key changes. A QR token's session is the coordinator's
-- (sessions): the token is minted only under the caller's session, just resolved as live
-- (cards/service.py, mint_qr), and used only while that session is (consume_qr).
ALTER TABLE qr_tokens DROP CONSTRAINT qr_tokens_card_id_fkey, DROP CONSTRAINT qr_tokens_session_id_fkey;
ALTER TABLE card_recovery_approvals DROP CONSTRAINT card_recovery_approvals_card_id_fkey;
ALTER TABLE medical_charges DROP CONSTRAINT medical_charges_card_id_fkey;

-- One subcommand a statement: on a placed cluster Citus takes no ADD beside another.
ALTER TABLE cards DROP CONSTRAINT cards_pkey;
ALTER TABLE cards ADD PRIMARY KEY (person_id, id);
ALTER TABLE qr_tokens DROP CONSTRAINT qr_tokens_pkey;
ALTER TABLE qr_tokens ADD PRIMARY KEY (person_id, id);
ALTER TABLE card_recovery_approvals DROP CONSTRAINT card_recovery_approvals_pkey;
ALTER TABLE card_recovery_approvals ADD PRIMARY KEY (person_id, id);

ALTER TABLE qr_tokens
    ADD CONSTRAINT qr_tokens_card_id_fkey FOREIGN KEY (person_id, card_id) REFERENCES cards (person_id, id);
ALTER TABLE card_recovery_approvals
    ADD CONSTRAINT card_recovery_approvals_card_id_fkey FOREIGN KEY (person_id, card_id) REFERENCES cards (person_id, id);
-- A charge's card is the charged person's. The charges are the ledger's, whose own migration drops this
-- key by its name to rework the table, and the composite key is made again once both are in: under the
-- same name, it keeps the guarantee until then, and that drop still finds it.
ALTER TABLE medical_charges
    ADD CONSTRAINT medical_charges_card_id_fkey FOREIGN KEY (person_id, card_id) REFERENCES cards (person_id, id);

-- Approvals are read by the person's card and time (cards/repository.py, recovery_proof).
DROP INDEX card_recovery_approvals_card_idx;
CREATE INDEX card_recovery_approvals_card_idx ON card_recovery_approvals (person_id, card_id, approved_at);
