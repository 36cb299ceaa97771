-- Issue 23, the ledger's keys for Citus. Every journal entry stays within one person (so within one
-- shard): a person's allocations come from the person's fund clearing account, and charges go to the
-- person's merchant clearing account for that terminal. A batch settlement carries what the clearing
-- accounts hold into the system's fund and merchant accounts (ledger_system_accounts, on the
-- coordinator), and records each carry (ledger_settlements). Balances move in the application's SQL,
-- in the transfer's own statement; the guards are CHECKs, and transfers are append-only by privilege
-- (infra.migrate._grant), since Citus allows no triggers on distributed tables.

DROP TRIGGER ledger_transfers_apply ON ledger_transfers;
DROP TRIGGER ledger_transfers_no_update ON ledger_transfers;
DROP TRIGGER ledger_transfers_no_truncate ON ledger_transfers;
DROP TRIGGER ledger_accounts_balance_guard ON ledger_accounts;
DROP FUNCTION ledger_apply_transfer();
DROP FUNCTION ledger_refuse_change();
DROP FUNCTION ledger_balance_only_by_transfer();

ALTER TABLE ledger_transfers DROP CONSTRAINT ledger_transfers_debit_account_fkey;
ALTER TABLE ledger_transfers DROP CONSTRAINT ledger_transfers_credit_account_fkey;

-- The system's side: the medical fund and each terminal's merchant account. Written only by the
-- settlement (one job at a time) and read by the reconciliation, so it is the coordinator's: a
-- reference table would copy every settlement's write to every node for no reader there.
CREATE TABLE ledger_system_accounts (
    id          uuid PRIMARY KEY DEFAULT uuidv7(),
    kind        text NOT NULL CHECK (kind IN ('fund', 'merchant')),
    terminal_id uuid UNIQUE REFERENCES terminals (id),
    balance_fen bigint NOT NULL DEFAULT 0,
    created_at  timestamptz NOT NULL DEFAULT now(),
    CHECK ((kind = 'merchant') = (terminal_id IS NOT NULL)),
    CHECK (kind = 'fund' OR balance_fen >= 0)
);
CREATE UNIQUE INDEX ledger_system_accounts_one_fund_idx ON ledger_system_accounts (kind) WHERE kind = 'fund';
INSERT INTO ledger_system_accounts (id, kind, terminal_id, balance_fen, created_at)
SELECT id, kind, terminal_id, balance_fen, created_at FROM ledger_accounts WHERE kind IN ('fund', 'merchant');

-- The person's clearing accounts, from the transfers that reach the fund or a merchant today.
ALTER TABLE ledger_accounts DROP CONSTRAINT ledger_accounts_person_id_key;
ALTER TABLE ledger_accounts DROP CONSTRAINT ledger_accounts_terminal_id_key;
DROP INDEX ledger_accounts_one_fund_idx;
DO $$
DECLARE c text;
BEGIN
    FOR c IN SELECT conname FROM pg_constraint WHERE conrelid = 'ledger_accounts'::regclass AND contype = 'c' LOOP
        EXECUTE format('ALTER TABLE ledger_accounts DROP CONSTRAINT %I', c);
    END LOOP;
END $$;
ALTER TABLE ledger_accounts ADD COLUMN settled_fen bigint NOT NULL DEFAULT 0;

ALTER TABLE ledger_transfers ADD COLUMN person_id uuid REFERENCES persons (id);
UPDATE ledger_transfers t SET person_id = a.person_id
FROM ledger_accounts a
WHERE a.kind = 'medical' AND a.id = CASE WHEN t.kind = 'charge' THEN t.debit_account ELSE t.credit_account END;

INSERT INTO ledger_accounts (kind, person_id, terminal_id)
SELECT DISTINCT 'fund_clearing', t.person_id, NULL::uuid FROM ledger_transfers t WHERE t.kind = 'allocation'
UNION
SELECT DISTINCT 'merchant_clearing', t.person_id, m.terminal_id
FROM ledger_transfers t
JOIN ledger_accounts m ON m.kind = 'merchant'
 AND m.id = CASE WHEN t.kind = 'charge' THEN t.credit_account ELSE t.debit_account END
WHERE t.kind IN ('charge', 'refund');

UPDATE ledger_transfers t SET debit_account = c.id
FROM ledger_accounts c
WHERE t.kind = 'allocation' AND c.kind = 'fund_clearing' AND c.person_id = t.person_id;
UPDATE ledger_transfers t SET credit_account = c.id
FROM ledger_accounts m, ledger_accounts c
WHERE t.kind = 'charge' AND m.id = t.credit_account AND m.kind = 'merchant'
  AND c.kind = 'merchant_clearing' AND c.person_id = t.person_id AND c.terminal_id = m.terminal_id;
UPDATE ledger_transfers t SET debit_account = c.id
FROM ledger_accounts m, ledger_accounts c
WHERE t.kind = 'refund' AND m.id = t.debit_account AND m.kind = 'merchant'
  AND c.kind = 'merchant_clearing' AND c.person_id = t.person_id AND c.terminal_id = m.terminal_id;
DELETE FROM ledger_accounts WHERE kind IN ('fund', 'merchant');

-- The clearing balances are the replay of their transfers, and were already in the fund's and the
-- merchants' balances: recorded as settled, each with its carry.
UPDATE ledger_accounts a SET balance_fen = r.replayed, settled_fen = r.replayed
FROM (
    SELECT a.id,
           coalesce((SELECT sum(amount_fen) FROM ledger_transfers WHERE credit_account = a.id), 0)
         - coalesce((SELECT sum(amount_fen) FROM ledger_transfers WHERE debit_account = a.id), 0) AS replayed
    FROM ledger_accounts a WHERE a.kind <> 'medical'
) r
WHERE a.id = r.id;

CREATE TABLE ledger_settlements (
    id               uuid PRIMARY KEY DEFAULT uuidv7(),
    person_id        uuid NOT NULL,            -- the clearing account's person (a person table: no FK)
    clearing_account uuid NOT NULL,
    system_account   uuid NOT NULL REFERENCES ledger_system_accounts (id),
    through_fen      bigint NOT NULL,          -- the clearing account's settled total after this carry
    amount_fen       bigint NOT NULL CHECK (amount_fen <> 0),
    created_at       timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX ledger_settlements_clearing_idx ON ledger_settlements (clearing_account, id);
INSERT INTO ledger_settlements (person_id, clearing_account, system_account, through_fen, amount_fen)
SELECT a.person_id, a.id, s.id, a.settled_fen, a.settled_fen
FROM ledger_accounts a
JOIN ledger_system_accounts s
  ON (a.kind = 'fund_clearing' AND s.kind = 'fund') OR (a.kind = 'merchant_clearing' AND s.terminal_id = a.terminal_id)
WHERE a.settled_fen <> 0;

ALTER TABLE ledger_accounts ALTER COLUMN person_id SET NOT NULL;
ALTER TABLE ledger_accounts
    ADD CONSTRAINT ledger_accounts_kind_check CHECK (kind IN ('medical', 'fund_clearing', 'merchant_clearing')),
    ADD CONSTRAINT ledger_accounts_terminal_check CHECK ((kind = 'merchant_clearing') = (terminal_id IS NOT NULL)),
    -- The fund's side only hands out; the cardholder's and the merchants' never go below zero.
    ADD CONSTRAINT ledger_accounts_balance_check CHECK (
        CASE WHEN kind = 'fund_clearing' THEN balance_fen <= 0 ELSE balance_fen >= 0 END),
    ADD CONSTRAINT ledger_accounts_one_per_kind UNIQUE NULLS NOT DISTINCT (person_id, kind, terminal_id);
ALTER TABLE ledger_accounts DROP CONSTRAINT ledger_accounts_pkey;
ALTER TABLE ledger_accounts ADD PRIMARY KEY (person_id, id);

-- Transfer ids: UUIDv7 instead of an identity (a cross-node sequence on Citus). The existing ones
-- keep their order, all older than any new one (the millisecond before this migration's, then the
-- old number), so the statement's running balance, summed in id order, reads as before. The column
-- changes type in place: Citus cannot convert a table with a dropped column.
DROP INDEX ledger_transfers_debit_idx;
DROP INDEX ledger_transfers_credit_idx;
ALTER TABLE ledger_transfers DROP CONSTRAINT ledger_transfers_pkey;
ALTER TABLE ledger_transfers ALTER COLUMN id DROP IDENTITY;
ALTER TABLE ledger_transfers ALTER COLUMN id TYPE uuid USING (
    lpad(to_hex(floor(extract(epoch FROM now()) * 1000)::bigint - 1), 12, '0') || '70008' || lpad(to_hex(id), 15, '0')
)::uuid;
ALTER TABLE ledger_transfers ALTER COLUMN id SET DEFAULT uuidv7();
ALTER TABLE ledger_transfers ALTER COLUMN person_id SET NOT NULL;
ALTER TABLE ledger_transfers
    ADD PRIMARY KEY (person_id, id),
    -- Both sides of an entry are the person's own accounts: the entry never leaves the person's shard.
    ADD CONSTRAINT ledger_transfers_debit_fkey FOREIGN KEY (person_id, debit_account)
        REFERENCES ledger_accounts (person_id, id),
    ADD CONSTRAINT ledger_transfers_credit_fkey FOREIGN KEY (person_id, credit_account)
        REFERENCES ledger_accounts (person_id, id),
    -- An allocation, charge or refund moves its money once.
    ADD CONSTRAINT ledger_transfers_once UNIQUE (person_id, kind, reference);
CREATE INDEX ledger_transfers_debit_idx ON ledger_transfers (person_id, debit_account, id);
CREATE INDEX ledger_transfers_credit_idx ON ledger_transfers (person_id, credit_account, id);

-- Medical allocations, charges and refunds: keyed by person.
ALTER TABLE medical_allocations DROP CONSTRAINT medical_allocations_pkey;
ALTER TABLE medical_allocations ADD PRIMARY KEY (person_id, id);

-- The card belongs to another area whose key changes; the composite key to it is added after both.
ALTER TABLE medical_charges DROP CONSTRAINT medical_charges_card_id_fkey;
ALTER TABLE medical_refunds DROP CONSTRAINT medical_refunds_charge_id_fkey;
ALTER TABLE medical_charges DROP CONSTRAINT medical_charges_qr_token_id_key;
ALTER TABLE medical_charges DROP CONSTRAINT medical_charges_pkey;
ALTER TABLE medical_charges ADD PRIMARY KEY (person_id, id);
-- One charge per QR code: a code is one person's, so unique within the person is unique.
ALTER TABLE medical_charges ADD CONSTRAINT medical_charges_qr_token_key UNIQUE (person_id, qr_token_id);

ALTER TABLE medical_refunds ADD COLUMN person_id uuid REFERENCES persons (id);
UPDATE medical_refunds r SET person_id = c.person_id FROM medical_charges c WHERE c.id = r.charge_id;
ALTER TABLE medical_refunds ALTER COLUMN person_id SET NOT NULL;
ALTER TABLE medical_refunds DROP CONSTRAINT medical_refunds_pkey;
ALTER TABLE medical_refunds ADD PRIMARY KEY (person_id, id);
ALTER TABLE medical_refunds ADD CONSTRAINT medical_refunds_charge_fkey
    FOREIGN KEY (person_id, charge_id) REFERENCES medical_charges (person_id, id);
DROP INDEX medical_refunds_charge_idx;
CREATE INDEX medical_refunds_charge_idx ON medical_refunds (person_id, charge_id);

-- A refund names its charge alone (the terminal's URL): this finds the charge's person, so that the
-- refund's key and work go to that person's shard. Written with the charge; distributed by the
-- charge's id, a group of its own.
CREATE TABLE medical_charge_persons (
    charge_id uuid PRIMARY KEY,
    person_id uuid NOT NULL
);
INSERT INTO medical_charge_persons (charge_id, person_id) SELECT id, person_id FROM medical_charges;

-- A terminal's Idempotency-Key is kept on the shard of the person its request is for (the QR code's
-- card holder, a refunded charge's person). Keys answered before this migration are mapped through
-- the charge their answer names; the others hold refusals (nothing moved) and are let go, so a retry
-- of one is judged again. The API is stopped while the migration runs, so no claim is in flight.
ALTER TABLE idempotency_keys ADD COLUMN person_id uuid;
UPDATE idempotency_keys k SET person_id = c.person_id
FROM medical_charges c WHERE k.response ? 'charge_id' AND c.id = (k.response ->> 'charge_id')::uuid;
DELETE FROM idempotency_keys WHERE person_id IS NULL;
ALTER TABLE idempotency_keys ALTER COLUMN person_id SET NOT NULL;
ALTER TABLE idempotency_keys ADD CONSTRAINT idempotency_keys_person_fkey FOREIGN KEY (person_id) REFERENCES persons (id);
ALTER TABLE idempotency_keys DROP CONSTRAINT idempotency_keys_pkey;
ALTER TABLE idempotency_keys ADD PRIMARY KEY (person_id, terminal_id, key);
