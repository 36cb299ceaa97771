-- A returned payment is marked as paid again in the statement that writes its re-payment
-- (payments/disbursement/repository.py, REPAY_SQL): PostgreSQL checks the mark's foreign key at the
-- statement's end, but Citus runs the statement's parts one after another and checked the mark before
-- the record it names was written. Checked at commit instead, it holds the same on both.
ALTER TABLE pension_payments ALTER CONSTRAINT pension_payments_repaid_by_fkey DEFERRABLE INITIALLY DEFERRED;
