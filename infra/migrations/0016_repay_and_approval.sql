-- Money follow-through (issue 20): returned payments paid again once the account is corrected, and
-- payroll approval (maker-checker) on disbursement runs.
--
-- Keys for Citus (issue 23): pension_payments and pension_entitlements stay keyed by person_id (a
-- re-payment and the payments it re-pays belong to one person); disbursement_runs is a handful of rows
-- a year, kept on the coordinator. No trigger: the service moves the states, CHECKs hold the rules.

-- A run is approved by a second administrator, released to the bank by one of the two (or, when the
-- run was started by the system, by anyone but the approver), and reconciled once the bank has
-- answered for every payment in it. Runs completed before this migration had their file available to
-- any administrator under the old rule: they count as approved and released.
ALTER TABLE disbursement_runs
    DROP CONSTRAINT disbursement_runs_state_check,
    DROP CONSTRAINT disbursement_runs_check,
    ADD COLUMN approved_by   text,
    ADD COLUMN approved_at   timestamptz,
    ADD COLUMN released_by   text,
    ADD COLUMN released_at   timestamptz,
    ADD COLUMN reconciled_at timestamptz;

UPDATE disbursement_runs
SET state = 'released', approved_by = 'migration:0016', approved_at = completed_at,
    released_by = 'migration:0016', released_at = completed_at
WHERE state = 'completed';

ALTER TABLE disbursement_runs
    ADD CONSTRAINT disbursement_runs_state_check
        CHECK (state IN ('running', 'completed', 'approved', 'released', 'reconciled')),
    ADD CONSTRAINT disbursement_runs_completed_check CHECK ((state = 'running') = (completed_at IS NULL)),
    ADD CONSTRAINT disbursement_runs_approved_check
        CHECK ((state IN ('approved', 'released', 'reconciled')) = (approved_at IS NOT NULL)
               AND (approved_by IS NULL) = (approved_at IS NULL)),
    -- Maker-checker, also in the database: whoever started a run never approves it.
    ADD CONSTRAINT disbursement_runs_checker_check CHECK (approved_by <> requested_by),
    ADD CONSTRAINT disbursement_runs_released_check
        CHECK ((state IN ('released', 'reconciled')) = (released_at IS NOT NULL)
               AND (released_by IS NULL) = (released_at IS NULL)),
    ADD CONSTRAINT disbursement_runs_reconciled_check CHECK ((state = 'reconciled') = (reconciled_at IS NOT NULL));

-- `repay`: at most one per person and run, paying again the returned payments that point at it by
-- `repaid_by` (each at most once: a payment is marked in the statement that writes its re-payment);
-- `covers` names the months those payments were for, as a back-payment's does.
ALTER TABLE pension_payments
    DROP CONSTRAINT pension_payments_kind_check,
    ADD CONSTRAINT pension_payments_kind_check CHECK (kind IN ('monthly', 'back_pay', 'repay')),
    ADD COLUMN repaid_by uuid REFERENCES pension_payments (id),
    ADD CONSTRAINT pension_payments_repaid_check CHECK (repaid_by IS NULL OR bank_status = 'returned');

-- The covers rule named back-pay alone; it is found by its text, as it was created without a name.
DO $$
DECLARE
    found text;
BEGIN
    SELECT conname INTO STRICT found FROM pg_constraint
    WHERE conrelid = 'pension_payments'::regclass AND contype = 'c'
      AND pg_get_constraintdef(oid) LIKE '%back_pay%' AND pg_get_constraintdef(oid) LIKE '%covers IS NOT NULL%';
    EXECUTE format('ALTER TABLE pension_payments DROP CONSTRAINT %I', found);
END
$$;
ALTER TABLE pension_payments
    ADD CONSTRAINT pension_payments_covers_check CHECK ((kind IN ('back_pay', 'repay')) = (covers IS NOT NULL));

-- Returned payments not paid again: what the next run looks at (a few, against millions of payments).
CREATE INDEX pension_payments_returned_idx ON pension_payments (person_id) WHERE bank_status = 'returned' AND repaid_by IS NULL;
-- Payments still waiting for the bank's answer: reconciliation asks whether a run has any left.
CREATE INDEX pension_payments_pending_idx ON pension_payments (run_id) WHERE bank_status = 'pending';

-- An administrator who confirms an account (the one a payment was returned from, now reopened, or a
-- new one) leaves the account confirmed and when: a returned payment is paid again when the account
-- differs from the one it was sent to, or when this confirmation came after the return and is still
-- the account on file. The person import never writes these columns.
ALTER TABLE pension_entitlements
    ADD COLUMN bank_account_confirmed_enc bytea,
    ADD COLUMN bank_account_confirmed_at  timestamptz,
    ADD COLUMN bank_account_confirmed_by  text,
    ADD CONSTRAINT pension_entitlements_confirmed_check
        CHECK ((bank_account_confirmed_enc IS NULL) = (bank_account_confirmed_at IS NULL)
               AND (bank_account_confirmed_at IS NULL) = (bank_account_confirmed_by IS NULL));
