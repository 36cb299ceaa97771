-- Pension payments: one record per entitlement and month, made by disbursement runs; the bank's
-- answers; death records and the overpayments they reveal.
-- The medical personal account: a double-entry ledger of immutable transfers, QR charges and
-- refunds, and the idempotency keys that make a terminal's retry harmless.

CREATE TABLE disbursement_runs (
    id            uuid PRIMARY KEY DEFAULT uuidv7(),
    period        date NOT NULL UNIQUE CHECK (extract(day FROM period) = 1),
    pay_date      date NOT NULL,
    state         text NOT NULL DEFAULT 'running' CHECK (state IN ('running', 'completed')),
    entitlements  int NOT NULL,                   -- active entitlements when the run started
    processed     int NOT NULL DEFAULT 0,
    resume_after  uuid,                           -- the last person done: a restarted run goes on from here
    requested_by  text NOT NULL,
    started_at    timestamptz NOT NULL DEFAULT now(),
    completed_at  timestamptz,
    CHECK ((state = 'completed') = (completed_at IS NOT NULL))
);

-- `monthly`: exactly one per person and month, paid or withheld. `back_pay`: at most one per person
-- and run, paying the withheld months it names in `covers`; each of those months points back to it.
CREATE TABLE pension_payments (
    id                 uuid PRIMARY KEY DEFAULT uuidv7(),
    run_id             uuid NOT NULL REFERENCES disbursement_runs (id),
    person_id          uuid NOT NULL REFERENCES persons (id),
    period             date NOT NULL,
    kind               text NOT NULL CHECK (kind IN ('monthly', 'back_pay')),
    status             text NOT NULL CHECK (status IN ('paid', 'withheld')),
    withheld_reason    text,
    amount_fen         bigint NOT NULL CHECK (amount_fen > 0),
    covers             date[],
    back_paid_by       uuid REFERENCES pension_payments (id),
    bank_account_enc   bytea,                      -- the account paid, as it was at the run
    bank_account_masked text,
    bank_status        text CHECK (bank_status IN ('pending', 'confirmed', 'returned')),
    bank_return_reason text,
    bank_updated_at    timestamptz,
    created_at         timestamptz NOT NULL DEFAULT now(),
    UNIQUE (person_id, period, kind),
    CHECK ((status = 'withheld') = (withheld_reason IS NOT NULL)),
    CHECK ((status = 'paid') = (bank_status IS NOT NULL AND bank_account_enc IS NOT NULL)),
    CHECK ((kind = 'back_pay') = (covers IS NOT NULL)),
    CHECK (kind = 'monthly' OR status = 'paid'),
    CHECK (back_paid_by IS NULL OR status = 'withheld'),
    CHECK ((bank_status = 'returned') = (bank_return_reason IS NOT NULL))
);
CREATE INDEX pension_payments_run_idx ON pension_payments (run_id);
-- Withheld months not yet back-paid: what a later run owes.
CREATE INDEX pension_payments_owed_idx ON pension_payments (person_id) WHERE status = 'withheld' AND back_paid_by IS NULL;

CREATE TABLE death_records (
    id                 uuid PRIMARY KEY DEFAULT uuidv7(),
    person_id          uuid NOT NULL REFERENCES persons (id),
    date_of_death      date NOT NULL,
    source             text NOT NULL,              -- the feed file and line it came from
    card_status_before text,                       -- what a reversal gives the card back
    recorded_at        timestamptz NOT NULL DEFAULT now(),
    reversed_at        timestamptz,
    reversed_by        text,
    reversal_reason    text,
    CHECK ((reversed_at IS NULL) = (reversal_reason IS NULL))
);
CREATE UNIQUE INDEX death_records_standing_idx ON death_records (person_id) WHERE reversed_at IS NULL;

-- A payment for a month after the date of death: money to recover (cancelled when the report is reversed).
CREATE TABLE overpayments (
    id              uuid PRIMARY KEY DEFAULT uuidv7(),
    payment_id      uuid NOT NULL UNIQUE REFERENCES pension_payments (id),
    person_id       uuid NOT NULL REFERENCES persons (id),
    death_record_id uuid NOT NULL REFERENCES death_records (id),
    amount_fen      bigint NOT NULL CHECK (amount_fen > 0),
    status          text NOT NULL DEFAULT 'to_recover' CHECK (status IN ('to_recover', 'recovered', 'cancelled')),
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX overpayments_person_idx ON overpayments (person_id);

-- Balance = credits - debits. Medical and merchant accounts never go below zero (the CHECK); the
-- fund is where allocations come from, so its balance is minus what it has handed out.
CREATE TABLE ledger_accounts (
    id          uuid PRIMARY KEY DEFAULT uuidv7(),
    kind        text NOT NULL CHECK (kind IN ('medical', 'merchant', 'fund')),
    person_id   uuid UNIQUE REFERENCES persons (id),
    terminal_id uuid UNIQUE REFERENCES terminals (id),
    balance_fen bigint NOT NULL DEFAULT 0,
    created_at  timestamptz NOT NULL DEFAULT now(),
    CHECK ((kind = 'medical') = (person_id IS NOT NULL)),
    CHECK ((kind = 'merchant') = (terminal_id IS NOT NULL)),
    CHECK (kind = 'fund' OR balance_fen >= 0)
);
CREATE UNIQUE INDEX ledger_accounts_one_fund_idx ON ledger_accounts (kind) WHERE kind = 'fund';
INSERT INTO ledger_accounts (kind) VALUES ('fund');

CREATE TABLE ledger_transfers (
    id             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    debit_account  uuid NOT NULL REFERENCES ledger_accounts (id),
    credit_account uuid NOT NULL REFERENCES ledger_accounts (id),
    amount_fen     bigint NOT NULL CHECK (amount_fen > 0),
    kind           text NOT NULL CHECK (kind IN ('allocation', 'charge', 'refund')),
    reference      uuid NOT NULL,                  -- the allocation, charge or refund it carries out
    created_at     timestamptz NOT NULL DEFAULT now(),
    CHECK (debit_account <> credit_account)
);
CREATE INDEX ledger_transfers_debit_idx ON ledger_transfers (debit_account, id);
CREATE INDEX ledger_transfers_credit_idx ON ledger_transfers (credit_account, id);

-- Balances move only with a transfer, in the same statement: the database keeps them equal to
-- the replay of their transfers, whatever the application does.
CREATE FUNCTION ledger_apply_transfer() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE ledger_accounts SET balance_fen = balance_fen - NEW.amount_fen WHERE id = NEW.debit_account;
    UPDATE ledger_accounts SET balance_fen = balance_fen + NEW.amount_fen WHERE id = NEW.credit_account;
    RETURN NEW;
END $$;
CREATE TRIGGER ledger_transfers_apply AFTER INSERT ON ledger_transfers
    FOR EACH ROW EXECUTE FUNCTION ledger_apply_transfer();

CREATE FUNCTION ledger_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'ledger transfers are immutable: a correction is a new transfer'
        USING ERRCODE = 'insufficient_privilege';
END $$;
CREATE TRIGGER ledger_transfers_no_update BEFORE UPDATE OR DELETE ON ledger_transfers
    FOR EACH ROW EXECUTE FUNCTION ledger_refuse_change();
CREATE TRIGGER ledger_transfers_no_truncate BEFORE TRUNCATE ON ledger_transfers
    FOR EACH STATEMENT EXECUTE FUNCTION ledger_refuse_change();

CREATE FUNCTION ledger_balance_only_by_transfer() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.balance_fen IS DISTINCT FROM OLD.balance_fen AND pg_trigger_depth() < 2 THEN
        RAISE EXCEPTION 'a balance changes only through a ledger transfer' USING ERRCODE = 'insufficient_privilege';
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER ledger_accounts_balance_guard BEFORE UPDATE ON ledger_accounts
    FOR EACH ROW EXECUTE FUNCTION ledger_balance_only_by_transfer();

-- The yearly amount the fund gives each medical account, imported by administrators: once per person and year.
CREATE TABLE medical_allocations (
    id          uuid PRIMARY KEY DEFAULT uuidv7(),
    person_id   uuid NOT NULL REFERENCES persons (id),
    year        int NOT NULL CHECK (year BETWEEN 2000 AND 2100),
    amount_fen  bigint NOT NULL CHECK (amount_fen > 0),
    imported_by text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    UNIQUE (person_id, year)
);

CREATE TABLE medical_charges (
    id           uuid PRIMARY KEY DEFAULT uuidv7(),
    terminal_id  uuid NOT NULL REFERENCES terminals (id),
    person_id    uuid NOT NULL REFERENCES persons (id),
    card_id      uuid NOT NULL REFERENCES cards (id),
    qr_token_id  uuid NOT NULL UNIQUE,             -- one charge per QR code (expired tokens are purged: no FK)
    amount_fen   bigint NOT NULL CHECK (amount_fen > 0),
    refunded_fen bigint NOT NULL DEFAULT 0 CHECK (refunded_fen >= 0 AND refunded_fen <= amount_fen),
    description  text NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX medical_charges_person_idx ON medical_charges (person_id, created_at DESC);

CREATE TABLE medical_refunds (
    id          uuid PRIMARY KEY DEFAULT uuidv7(),
    charge_id   uuid NOT NULL REFERENCES medical_charges (id),
    terminal_id uuid NOT NULL REFERENCES terminals (id),
    amount_fen  bigint NOT NULL CHECK (amount_fen > 0),
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX medical_refunds_charge_idx ON medical_refunds (charge_id);

-- A terminal's Idempotency-Key: claimed (locked_at set) before the work, answered (response
-- stored, locked_at cleared) in the work's own transaction. Kept a day past expires_at.
CREATE TABLE idempotency_keys (
    terminal_id  uuid NOT NULL REFERENCES terminals (id),
    key          text NOT NULL,
    request_hash bytea NOT NULL,
    locked_at    timestamptz,
    status_code  int,
    response     jsonb,
    created_at   timestamptz NOT NULL DEFAULT now(),
    expires_at   timestamptz NOT NULL,
    PRIMARY KEY (terminal_id, key),
    CHECK ((locked_at IS NULL) = (status_code IS NOT NULL))
);
CREATE INDEX idempotency_keys_expires_idx ON idempotency_keys (expires_at);
