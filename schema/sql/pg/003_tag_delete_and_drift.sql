-- Pathway control plane store on PostgreSQL, migration 3 (schema/sql/003_tag_delete_and_drift.sql).
-- Tags can be deleted without giving up the append-only history: a deletion is one more row of the
-- tag (deleted = 1, version = the version it pointed at), so the tag's newest row still says what
-- it is, and its history keeps every move and the deletion. The triggers of migration 1 stay.
ALTER TABLE tags ADD COLUMN deleted INTEGER NOT NULL DEFAULT 0 CHECK (deleted IN (0, 1));

-- Drift: the SHA-256 of the fleet document a dataplane's latest report says it serves ('' = it did
-- not say). Compared with the hash of the version it ACKed.
ALTER TABLE dataplanes ADD COLUMN reported_hash TEXT NOT NULL DEFAULT '';
