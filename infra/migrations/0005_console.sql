-- The operator console: browser sessions behind a cookie, and each operator's language.

-- A console session is a `sessions` row whose cookie secret is stored hashed; it ends after
-- CONSOLE_IDLE_S without a request (last_seen_at) or at expires_at, whichever comes first.
ALTER TABLE sessions
    ADD COLUMN secret_hash  bytea UNIQUE,
    ADD COLUMN last_seen_at timestamptz;

ALTER TABLE operators
    ADD COLUMN locale text NOT NULL DEFAULT 'zh-CN' CHECK (locale IN ('zh-CN', 'en'));

