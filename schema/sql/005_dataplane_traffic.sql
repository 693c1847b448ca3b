-- Pathway control plane store, migration 5: each dataplane's latest traffic in its row.
-- A heartbeat's traffic (its version and per-service counters, compact JSON) is stored with the
-- dataplane, in the same write as its stats, with the time it was stored and how many reports with
-- traffic the row has had. Every replica reads the reports stored since its last read (the index on
-- traffic_ms) for the rollout gate and the per-service series, whichever replica received them.
ALTER TABLE dataplanes ADD COLUMN traffic TEXT;                          -- JSON: {"version": n, "services": {...}}; NULL = none yet
ALTER TABLE dataplanes ADD COLUMN traffic_ms INTEGER NOT NULL DEFAULT 0; -- when it was stored, Unix ms (0 = never)
ALTER TABLE dataplanes ADD COLUMN traffic_seq INTEGER NOT NULL DEFAULT 0; -- reports with traffic so far
CREATE INDEX dataplanes_by_traffic_ms ON dataplanes (traffic_ms);
