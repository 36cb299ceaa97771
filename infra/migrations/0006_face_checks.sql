-- Face checks against the whole population: copies of anyone's earlier recording, and faces
-- that match another pensioner's.

CREATE EXTENSION IF NOT EXISTS vector;

-- When each scene hash was taken, and both 32-bit halves of every scene hash (and of its mirror
-- image) as index keys: an upload that copies another, however cut, shares many of them. The
-- index only finds candidates; liveness.replay decides.
ALTER TABLE certification_checks
    ADD COLUMN frame_times real[] NOT NULL DEFAULT '{}',
    ADD COLUMN scene_keys  integer[] NOT NULL DEFAULT '{}';
CREATE INDEX certification_checks_scene_idx ON certification_checks USING gin (scene_keys);

-- Face templates for 1:N search: every usable reference photo (check_id NULL, one per person)
-- and every analysed check. Stored rotated by a secret orthogonal matrix (infra.crypto.
-- TemplateRotation): distances between stored templates are those between the faces, so the
-- nearest ones are found, but a stored vector compared with a template made from a photo means
-- nothing without the key.
CREATE TABLE face_templates (
    id         uuid PRIMARY KEY DEFAULT uuidv7(),
    person_id  uuid NOT NULL REFERENCES persons (id),
    check_id   uuid UNIQUE REFERENCES certification_checks (id),
    template   vector(128) NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX face_templates_reference_idx ON face_templates (person_id) WHERE check_id IS NULL;
CREATE INDEX face_templates_nearest_idx ON face_templates USING hnsw (template vector_l2_ops);
