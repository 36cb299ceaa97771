-- Foundation: persons and pension entitlements, accounts and sessions, operators, terminals,
-- the e-card and its QR tokens, sign-in codes, the hash-chained audit log, dev SMS.

CREATE TABLE persons (
    id                 uuid PRIMARY KEY DEFAULT uuidv7(),
    national_id_hash   bytea NOT NULL UNIQUE,          -- HMAC for lookup, never the number itself
    national_id_enc    bytea NOT NULL,                 -- AES-GCM
    national_id_masked text NOT NULL,
    name               text NOT NULL,
    birth_date         date NOT NULL,
    phone              text NOT NULL,
    region             text NOT NULL,
    locale             text NOT NULL DEFAULT 'zh-CN' CHECK (locale IN ('zh-CN', 'en')),
    reference_photo_key text,
    vital_status       text NOT NULL DEFAULT 'alive' CHECK (vital_status IN ('alive', 'deceased')),
    date_of_death      date,
    certified_until    date,
    created_at         timestamptz NOT NULL DEFAULT now(),
    updated_at         timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX persons_phone_idx ON persons (phone);

CREATE TABLE pension_entitlements (
    person_id           uuid PRIMARY KEY REFERENCES persons (id),
    monthly_amount_fen  bigint NOT NULL CHECK (monthly_amount_fen > 0),
    bank_account_enc    bytea NOT NULL,
    bank_account_masked text NOT NULL,
    start_month         date NOT NULL CHECK (extract(day FROM start_month) = 1),
    status              text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'stopped')),
    updated_at          timestamptz NOT NULL DEFAULT now()
);

CREATE SEQUENCE card_number_seq START 10000001;

CREATE TABLE cards (
    id                uuid PRIMARY KEY DEFAULT uuidv7(),
    person_id         uuid NOT NULL UNIQUE REFERENCES persons (id),
    card_number       text NOT NULL UNIQUE,
    status            text NOT NULL DEFAULT 'pending_activation'
                      CHECK (status IN ('pending_activation', 'active', 'suspended', 'reported_lost', 'cancelled')),
    issued_on         date NOT NULL DEFAULT current_date,
    activated_at      timestamptz,
    status_changed_at timestamptz NOT NULL DEFAULT now()
);

-- A phone number that signed in; linked to its person when the card is activated.
CREATE TABLE accounts (
    id         uuid PRIMARY KEY DEFAULT uuidv7(),
    phone      text NOT NULL UNIQUE,
    person_id  uuid UNIQUE REFERENCES persons (id),
    created_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE operators (
    id              uuid PRIMARY KEY DEFAULT uuidv7(),
    username        text NOT NULL UNIQUE,
    display_name    text NOT NULL,
    role            text NOT NULL CHECK (role IN ('operator', 'auditor', 'admin')),
    password_hash   text NOT NULL,                     -- argon2id
    totp_secret_enc bytea NOT NULL,
    failed_attempts int NOT NULL DEFAULT 0,
    locked_until    timestamptz,
    created_at      timestamptz NOT NULL DEFAULT now(),
    disabled_at     timestamptz
);

CREATE TABLE terminals (
    id         uuid PRIMARY KEY DEFAULT uuidv7(),
    merchant   text NOT NULL,
    key_hash   bytea NOT NULL,                         -- SHA-256 of a 256-bit random secret
    created_at timestamptz NOT NULL DEFAULT now(),
    revoked_at timestamptz
);

-- One session per sign-in: it is the refresh-token family and what access tokens point at.
CREATE TABLE sessions (
    id             uuid PRIMARY KEY DEFAULT uuidv7(),
    principal_kind text NOT NULL CHECK (principal_kind IN ('account', 'operator')),
    principal_id   uuid NOT NULL,
    device_id      text,
    platform       text,
    created_at     timestamptz NOT NULL DEFAULT now(),
    expires_at     timestamptz NOT NULL,
    revoked_at     timestamptz,
    revoke_reason  text
);
CREATE INDEX sessions_principal_idx ON sessions (principal_kind, principal_id);

CREATE TABLE refresh_tokens (
    id          uuid PRIMARY KEY DEFAULT uuidv7(),
    session_id  uuid NOT NULL REFERENCES sessions (id),
    token_hash  bytea NOT NULL UNIQUE,
    created_at  timestamptz NOT NULL DEFAULT now(),
    expires_at  timestamptz NOT NULL,
    used_at     timestamptz
);
CREATE INDEX refresh_tokens_session_idx ON refresh_tokens (session_id);

CREATE TABLE otp_codes (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    phone       text NOT NULL,
    code_hash   bytea NOT NULL,
    expires_at  timestamptz NOT NULL,
    attempts    int NOT NULL DEFAULT 0,
    consumed_at timestamptz,
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX otp_codes_phone_idx ON otp_codes (phone, created_at DESC);

CREATE TABLE qr_tokens (
    id          uuid PRIMARY KEY,
    card_id     uuid NOT NULL REFERENCES cards (id),
    session_id  uuid NOT NULL REFERENCES sessions (id),
    expires_at  timestamptz NOT NULL,
    consumed_at timestamptz,
    consumed_by uuid REFERENCES terminals (id),
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX qr_tokens_expires_idx ON qr_tokens (expires_at);

-- Append-only and hash-chained: hash = SHA-256(prev_hash || canonical row), computed by the writer
-- under an advisory lock; `socialcard audit verify` recomputes the chain.
CREATE TABLE audit_log (
    id        bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at        timestamptz NOT NULL,
    actor     text NOT NULL,
    action    text NOT NULL,
    subject   text NOT NULL,
    details   jsonb NOT NULL,
    prev_hash bytea NOT NULL,
    hash      bytea NOT NULL UNIQUE
);

CREATE FUNCTION audit_log_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit_log is append-only' USING ERRCODE = 'insufficient_privilege';
END $$;
CREATE TRIGGER audit_log_no_update BEFORE UPDATE OR DELETE ON audit_log
    FOR EACH ROW EXECUTE FUNCTION audit_log_refuse_change();
CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON audit_log
    FOR EACH STATEMENT EXECUTE FUNCTION audit_log_refuse_change();

-- What the development SMS provider "sent" (`socialcard dev sms`); production providers do not use it.
CREATE TABLE dev_sms_messages (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    phone      text NOT NULL,
    body       text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
