-- Notifications keyed for Citus (issue 23): every row of the outbox, the inbox, the deliveries and the
-- devices holds its person in its keys, so that a person's notices sit on the person's shard.

-- Events without a person (a disbursement run's completion) are the system's: a coordinator table of
-- their own, keyed by a dedupe key unique across the system. The person's events keep theirs per person.
CREATE TABLE system_events (
    id         uuid PRIMARY KEY DEFAULT uuidv7(),
    kind       text NOT NULL,
    payload    jsonb NOT NULL,
    dedupe_key text NOT NULL UNIQUE,
    created_at timestamptz NOT NULL DEFAULT now()
);
INSERT INTO system_events (id, kind, payload, dedupe_key, created_at)
SELECT uuidv7(created_at - now()), kind, payload, dedupe_key, created_at
FROM (SELECT * FROM domain_events WHERE person_id IS NULL ORDER BY created_at, id) e;
DELETE FROM domain_events WHERE person_id IS NULL;

-- A uuidv7 id instead of a sequence's number, which one node would hand out for all: drawn at the
-- event's time and in the old order (uuidv7 is ascending within a session, and the shift keeps the
-- event's own time), so ordering by id still orders by when events were written.
ALTER TABLE domain_events ADD COLUMN uuid_id uuid;
UPDATE domain_events e SET uuid_id = o.uuid_id
FROM (SELECT id, uuidv7(created_at - now()) AS uuid_id FROM domain_events ORDER BY created_at, id) o
WHERE e.id = o.id;
ALTER TABLE domain_events DROP CONSTRAINT domain_events_pkey;
DROP INDEX domain_events_person_idx;
ALTER TABLE domain_events DROP COLUMN id;
ALTER TABLE domain_events RENAME COLUMN uuid_id TO id;
ALTER TABLE domain_events ALTER COLUMN id SET DEFAULT uuidv7();
ALTER TABLE domain_events ALTER COLUMN person_id SET NOT NULL;
ALTER TABLE domain_events ADD PRIMARY KEY (person_id, id);
ALTER TABLE domain_events DROP CONSTRAINT domain_events_dedupe_key_key;
ALTER TABLE domain_events ADD CONSTRAINT domain_events_dedupe_key_key UNIQUE (person_id, dedupe_key);

-- Notices: keyed by person; a dedupe key is unique within its person (every key names the person's
-- own row: a payment, a check, a card, the person themselves).
ALTER TABLE deliveries DROP CONSTRAINT deliveries_notification_id_fkey;
ALTER TABLE deliveries DROP CONSTRAINT deliveries_device_id_fkey;
ALTER TABLE notifications DROP CONSTRAINT notifications_pkey;
ALTER TABLE notifications ADD PRIMARY KEY (person_id, id);
ALTER TABLE notifications DROP CONSTRAINT notifications_dedupe_key_key;
ALTER TABLE notifications ADD CONSTRAINT notifications_dedupe_key_key UNIQUE (person_id, dedupe_key);

-- Devices: keyed by person. A device's id names the app install (its token) for good: when the token
-- moves to another person, that person gets a row of the same id and the one before keeps theirs,
-- retired, for the deliveries that refer to it.
ALTER TABLE devices DROP CONSTRAINT devices_pkey;
ALTER TABLE devices ADD PRIMARY KEY (person_id, id);
-- The session is the coordinator's (sign-in): registering a device checks it (notifications.service).
ALTER TABLE devices DROP CONSTRAINT devices_session_id_fkey;

-- A token is one app install across all persons: its owner, looked up by the token, on the token's
-- shard, written in the transaction that registers the device.
CREATE TABLE push_tokens (
    push_token text PRIMARY KEY,
    person_id  uuid NOT NULL,                          -- whose device it is now: devices (person_id, device_id)
    device_id  uuid NOT NULL
);
INSERT INTO push_tokens (push_token, person_id, device_id) SELECT push_token, person_id, id FROM devices;
ALTER TABLE devices DROP CONSTRAINT devices_push_token_key;

-- Deliveries: their notice's person, and keys that hold it.
ALTER TABLE deliveries ADD COLUMN person_id uuid;
UPDATE deliveries d SET person_id = n.person_id FROM notifications n WHERE n.id = d.notification_id;
ALTER TABLE deliveries ALTER COLUMN person_id SET NOT NULL;
-- A delivery to a device whose token has since moved to someone else: the device as its notice's person
-- had it, retired (a push still pending is cancelled, and the person gets the SMS instead).
INSERT INTO devices (id, person_id, push_token, platform, locale, app_version, registered_at, deactivated_at,
                     deactivated_reason, session_id)
SELECT DISTINCT ON (d.person_id, v.id) v.id, d.person_id, v.push_token, v.platform, v.locale, v.app_version,
       v.registered_at, now(), 'moved', NULL::uuid
FROM deliveries d JOIN devices v ON v.id = d.device_id
WHERE v.person_id <> d.person_id
  AND NOT EXISTS (SELECT 1 FROM devices w WHERE w.person_id = d.person_id AND w.id = d.device_id);
ALTER TABLE deliveries DROP CONSTRAINT deliveries_pkey;
ALTER TABLE deliveries ADD PRIMARY KEY (person_id, id);
ALTER TABLE deliveries DROP CONSTRAINT deliveries_notification_id_channel_device_id_key;
ALTER TABLE deliveries ADD CONSTRAINT deliveries_notification_id_channel_device_id_key
    UNIQUE NULLS NOT DISTINCT (person_id, notification_id, channel, device_id);
ALTER TABLE deliveries ADD CONSTRAINT deliveries_notification_id_fkey
    FOREIGN KEY (person_id, notification_id) REFERENCES notifications (person_id, id);
ALTER TABLE deliveries ADD CONSTRAINT deliveries_device_id_fkey
    FOREIGN KEY (person_id, device_id) REFERENCES devices (person_id, id);
