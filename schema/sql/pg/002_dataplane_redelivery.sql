-- Pathway control plane store on PostgreSQL, migration 2 (schema/sql/002_dataplane_redelivery.sql).
-- delivered_since_report: 1 when the config call handed the dataplane a version after its latest
-- ACK or NACK. A version it NACKed and is handed again for one retry (after it restarted) shows
-- as applying, not rejected, until it reports on it.
ALTER TABLE dataplanes ADD COLUMN delivered_since_report INTEGER NOT NULL DEFAULT 0;
