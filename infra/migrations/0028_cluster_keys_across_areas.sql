-- The keys between areas that the key rework (0021-0027) dropped while each area changed its own
-- tables: made again as composite keys, on the person, as Citus requires between co-located tables.

-- A charge's card is its person's card (0026 dropped the key 0022 had made composite).
ALTER TABLE medical_charges
    ADD CONSTRAINT medical_charges_card_id_fkey FOREIGN KEY (person_id, card_id) REFERENCES cards (person_id, id);
