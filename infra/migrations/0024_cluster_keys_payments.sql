-- Keys for Citus (issue 23), pension payments: pension_payments, death_records and overpayments are
-- keyed by (person_id, id) and refer to each other on person_id, so they can be distributed by person
-- and co-located with persons. Every row already carries person_id (NOT NULL since 0003): no backfill.
--
-- disbursement_runs stays on the coordinator: its row is written by every batch of a run (progress,
-- problems) in the batch's own transaction, next to the batch's writes on every shard. The foreign key
-- from pension_payments.run_id to it is dropped (a distributed table cannot refer to a coordinator
-- table); the disbursement code keeps it: a payment's run_id is always the id of a run read in the
-- same transaction, and runs are never deleted.

-- A back-payment, a re-payment and an overpayment are the same person's as the payment they point
-- to (the statements that write them join on person_id). Checked before the keys are made composite,
-- so a row that broke it stops the migration with its id instead of a bare key violation.
DO $$
DECLARE
    stray uuid;
BEGIN
    SELECT w.id INTO stray FROM pension_payments w JOIN pension_payments b ON b.id = w.back_paid_by
    WHERE b.person_id <> w.person_id LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'pension payment % is back-paid by another person''s payment', stray;
    END IF;
    SELECT w.id INTO stray FROM pension_payments w JOIN pension_payments r ON r.id = w.repaid_by
    WHERE r.person_id <> w.person_id LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'pension payment % is paid again by another person''s payment', stray;
    END IF;
    SELECT o.id INTO stray FROM overpayments o JOIN pension_payments p ON p.id = o.payment_id
    WHERE p.person_id <> o.person_id LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'overpayment % names another person''s payment', stray;
    END IF;
    SELECT o.id INTO stray FROM overpayments o JOIN death_records d ON d.id = o.death_record_id
    WHERE d.person_id <> o.person_id LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'overpayment % names another person''s death record', stray;
    END IF;
    SELECT c.id INTO stray FROM recovery_cases c LEFT JOIN death_records d ON d.id = c.death_record_id
    WHERE d.person_id IS DISTINCT FROM c.person_id LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'recovery case % names no death record of its person', stray;
    END IF;
END
$$;

-- The keys, in one block. On a cluster whose reference tables are placed, these tables are Citus local
-- tables, and Citus sends an ALTER TABLE to their shard as the text it was given: a migration file run
-- as one multi-statement query would reach the shard whole and be refused. In a block each statement
-- is its own text. One constraint is added per statement: Citus refuses an ADD CONSTRAINT beside other
-- subcommands.
DO $$
BEGIN
    -- The single-column keys go first: the primary keys they depend on are replaced.
    ALTER TABLE overpayments
        DROP CONSTRAINT overpayments_payment_id_fkey,
        DROP CONSTRAINT overpayments_death_record_id_fkey,
        DROP CONSTRAINT overpayments_payment_id_key;
    ALTER TABLE pension_payments
        DROP CONSTRAINT pension_payments_run_id_fkey,
        DROP CONSTRAINT pension_payments_back_paid_by_fkey,
        DROP CONSTRAINT pension_payments_repaid_by_fkey;

    ALTER TABLE pension_payments DROP CONSTRAINT pension_payments_pkey;
    ALTER TABLE pension_payments ADD PRIMARY KEY (person_id, id);
    -- The bank's answers name a payment by its id alone (the reference in the payment order it was sent
    -- in): found on every shard by this index, the primary key leading with person_id.
    CREATE INDEX pension_payments_id_idx ON pension_payments (id);
    ALTER TABLE death_records DROP CONSTRAINT death_records_pkey;
    ALTER TABLE death_records ADD PRIMARY KEY (person_id, id);
    ALTER TABLE overpayments DROP CONSTRAINT overpayments_pkey;
    ALTER TABLE overpayments ADD PRIMARY KEY (person_id, id);

    ALTER TABLE pension_payments ADD CONSTRAINT pension_payments_back_paid_by_fkey
        FOREIGN KEY (person_id, back_paid_by) REFERENCES pension_payments (person_id, id);
    -- The repay mark stays checked at commit (0020): Citus runs the parts of the statement that writes a
    -- re-payment and marks what it pays one after another.
    ALTER TABLE pension_payments ADD CONSTRAINT pension_payments_repaid_by_fkey
        FOREIGN KEY (person_id, repaid_by) REFERENCES pension_payments (person_id, id) DEFERRABLE INITIALLY DEFERRED;

    -- One overpayment per payment, as before: a payment is one person's.
    ALTER TABLE overpayments ADD CONSTRAINT overpayments_payment_key UNIQUE (person_id, payment_id);
    ALTER TABLE overpayments ADD CONSTRAINT overpayments_payment_id_fkey
        FOREIGN KEY (person_id, payment_id) REFERENCES pension_payments (person_id, id);
    ALTER TABLE overpayments ADD CONSTRAINT overpayments_death_record_id_fkey
        FOREIGN KEY (person_id, death_record_id) REFERENCES death_records (person_id, id);
    -- A death record's claims: recomputed, cancelled and settled by (person, record).
    DROP INDEX overpayments_person_idx;
    CREATE INDEX overpayments_death_idx ON overpayments (person_id, death_record_id);

    -- A recovery case's death record, now that both are keyed by person (0017 left it without a key).
    ALTER TABLE recovery_cases ADD CONSTRAINT recovery_cases_death_record_id_fkey
        FOREIGN KEY (person_id, death_record_id) REFERENCES death_records (person_id, id);
END
$$;
