-- The audit chain is keyed from here on: hash = HMAC-SHA256(AUDIT_CHAIN_KEY, prev_hash || canonical
-- row), with a key the database never holds. Rows already written keep the plain SHA-256 form (nothing
-- in SQL can key them: the key is not here), and `keyed_from` says where the keyed form begins.
--
-- Honest limits: the owner can change this row like any other (past its trigger). Lowering it only
-- makes old rows fail; raising it above the head and rewriting the log in the plain form is what the
-- signed anchors in the object store catch (they carry keyed_from). Stop the old writers before this
-- runs (`socialcard up` migrates first): a row an old process writes afterwards is unkeyed above the
-- boundary and shows as a break.
LOCK TABLE audit_log IN SHARE ROW EXCLUSIVE MODE;  -- no row lands between reading max(id) and the boundary

CREATE TABLE audit_chain (
    singleton  boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    keyed_from bigint NOT NULL,
    keyed_at   timestamptz NOT NULL DEFAULT now()
);
INSERT INTO audit_chain (keyed_from) SELECT COALESCE(max(id), 0) + 1 FROM audit_log;

CREATE FUNCTION audit_chain_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit_chain is fixed at migration' USING ERRCODE = 'insufficient_privilege';
END $$;
CREATE TRIGGER audit_chain_no_update BEFORE UPDATE OR DELETE ON audit_chain
    FOR EACH ROW EXECUTE FUNCTION audit_chain_refuse_change();
CREATE TRIGGER audit_chain_no_truncate BEFORE TRUNCATE ON audit_chain
    FOR EACH STATEMENT EXECUTE FUNCTION audit_chain_refuse_change();
