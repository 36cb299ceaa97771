-- Notifications: the devices push goes to, the notices themselves (the outbox, and the in-app
-- inbox), and one delivery per channel and device that the dispatchers work through.

CREATE TABLE devices (
    id                 uuid PRIMARY KEY DEFAULT uuidv7(),
    person_id          uuid NOT NULL REFERENCES persons (id),
    push_token         text NOT NULL UNIQUE,           -- a token names one app install: it moves with a re-registration
    platform           text NOT NULL CHECK (platform IN ('android', 'ios')),
    locale             text NOT NULL CHECK (locale IN ('zh-CN', 'en')),
    app_version        text NOT NULL,
    registered_at      timestamptz NOT NULL DEFAULT now(),
    deactivated_at     timestamptz,
    deactivated_reason text,                           -- removed, or FCM's error code for a dead token
    CHECK ((deactivated_at IS NULL) = (deactivated_reason IS NULL))
);
CREATE INDEX devices_person_active_idx ON devices (person_id) WHERE deactivated_at IS NULL;

-- One notice to one person, written in the transaction of the change it tells about (the dedupe key
-- makes a retried change, a rerun scan or fan-out write it once). It is also the inbox entry:
-- shown from `shown_from` (a payment notice from its pay date), rendered in the reader's locale.
CREATE TABLE notifications (
    id         uuid PRIMARY KEY DEFAULT uuidv7(),
    person_id  uuid NOT NULL REFERENCES persons (id),
    kind       text NOT NULL,
    params     jsonb NOT NULL,
    urgent     boolean NOT NULL,                       -- does not wait out quiet hours
    dedupe_key text NOT NULL UNIQUE,
    shown_from timestamptz NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    read_at    timestamptz
);
CREATE INDEX notifications_inbox_idx ON notifications (person_id, shown_from, id);
CREATE INDEX notifications_unread_idx ON notifications (person_id) WHERE read_at IS NULL;

-- A push to one device, or an SMS (to the person's phone) when they have no active device.
-- A claim counts an attempt and moves `next_attempt_at` to the end of the lease: a dispatcher killed
-- between sending and recording leaves the delivery due again when the lease ends.
CREATE TABLE deliveries (
    id              uuid PRIMARY KEY DEFAULT uuidv7(),
    notification_id uuid NOT NULL REFERENCES notifications (id),
    channel         text NOT NULL CHECK (channel IN ('push', 'sms')),
    device_id       uuid REFERENCES devices (id),
    state           text NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'sent', 'dead', 'cancelled')),
    attempts        int NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NOT NULL,
    last_error      text,
    sent_at         timestamptz,
    created_at      timestamptz NOT NULL DEFAULT now(),
    UNIQUE NULLS NOT DISTINCT (notification_id, channel, device_id),
    CHECK ((channel = 'push') = (device_id IS NOT NULL)),
    CHECK ((state = 'sent') = (sent_at IS NOT NULL))
);
CREATE INDEX deliveries_due_idx ON deliveries (channel, next_attempt_at) WHERE state = 'pending';
CREATE INDEX deliveries_dead_idx ON deliveries (id) WHERE state = 'dead';

-- The reminder scan looks for certifications running out.
CREATE INDEX persons_certified_until_idx ON persons (certified_until) WHERE vital_status = 'alive';

-- A run's payments in person order: the fan-out of payment notices walks them in batches.
DROP INDEX pension_payments_run_idx;
CREATE INDEX pension_payments_run_idx ON pension_payments (run_id, person_id, kind);
