-- A person import draws the id a new person gets in the import process and stages it with the row
-- (issue 20): uuidv7() reads /dev/urandom afresh for each id where PostgreSQL is built without
-- OpenSSL, as the embedded server is, which was a fifth of a batch's merge. Held-back rows staged
-- before this migration get theirs here; every row staged after it brings its own.
ALTER TABLE person_import_rows ADD COLUMN new_person_id uuid NOT NULL DEFAULT uuidv7();
ALTER TABLE person_import_rows ALTER COLUMN new_person_id DROP DEFAULT;
