-- Issue 17: the nightly sweep deletes biometric objects that no check names (an upload cut short by
-- an S3 failure, frames of an analysis that broke, a presigned upload never submitted). It asks, for
-- each object listed under uploads/ and reviews/, whether a check whose media is not yet purged names
-- it: this index answers that per object, and holds only those checks (the last retention period's).
CREATE INDEX certification_checks_named_media_idx ON certification_checks
    USING gin ((media_keys || review_frame_keys)) WHERE media_purged_at IS NULL;
