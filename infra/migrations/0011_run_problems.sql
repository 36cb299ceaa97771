-- A disbursement run that meets a failure says so (issue 17): what went wrong and when, and whether
-- the worker is still trying (a passing failure: a statement timeout, a database restart) or gave up
-- (tries spent, or a fault of the work itself) and waits for an administrator. A batch that goes
-- through clears it.
ALTER TABLE disbursement_runs
    ADD COLUMN problem    text,
    ADD COLUMN problem_at timestamptz,
    ADD COLUMN gave_up    boolean NOT NULL DEFAULT false,
    ADD CHECK ((problem IS NULL) = (problem_at IS NULL)),
    ADD CHECK (problem IS NOT NULL OR NOT gave_up);
