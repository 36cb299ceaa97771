-- A phone gets the person's pushes while the sign-in that registered it lasts (issue 16): a logout,
-- a loss report or a stolen refresh token ends the session and retires its devices with it.
-- Devices registered before this have no session and stay as they are until re-registered.
ALTER TABLE devices ADD COLUMN session_id uuid REFERENCES sessions (id);
CREATE INDEX devices_session_idx ON devices (session_id) WHERE deactivated_at IS NULL;
