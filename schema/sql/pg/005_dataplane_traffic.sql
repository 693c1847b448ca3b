-- Pathway control plane store on PostgreSQL, migration 5: each dataplane's latest traffic in its row
-- (schema/sql/005_dataplane_traffic.sql). traffic_ms is the database's clock when the report was
-- stored, so that replicas whose clocks differ read one time line.
ALTER TABLE dataplanes ADD COLUMN traffic TEXT;                          -- JSON: {"version": n, "services": {...}}; NULL = none yet
ALTER TABLE dataplanes ADD COLUMN traffic_ms BIGINT NOT NULL DEFAULT 0;  -- when it was stored, Unix ms (0 = never)
ALTER TABLE dataplanes ADD COLUMN traffic_seq BIGINT NOT NULL DEFAULT 0; -- reports with traffic so far
CREATE INDEX dataplanes_by_traffic_ms ON dataplanes (traffic_ms);
