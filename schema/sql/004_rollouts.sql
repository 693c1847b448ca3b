-- Pathway control plane store, migration 4: safe rollouts.
-- A rollout serves a new version to a growing set of dataplanes, judges it on their traffic
-- against the others', and ends promoted (every dataplane gets it) or rolled back (a new version of
-- kind rollback carries the previous document). Its row is live state (step, sets, the marks of
-- the current window), updated as it moves; its verdicts are history, append-only.
CREATE TABLE rollouts (
    id                INTEGER PRIMARY KEY,
    version           INTEGER NOT NULL REFERENCES versions (version), -- the version rolled out
    from_version      INTEGER NOT NULL REFERENCES versions (version), -- what the others keep getting
    spec              TEXT    NOT NULL,                               -- the rollout object, canonical JSON
    state             TEXT    NOT NULL CHECK (state IN ('progressing', 'paused', 'promoted', 'aborted', 'rolled_back')),
    step              INTEGER NOT NULL DEFAULT 0,                     -- index in spec.steps
    sets              TEXT    NOT NULL DEFAULT '[]',                  -- JSON: the dataplane ids served, per step reached
    marks             TEXT    NOT NULL DEFAULT '{}',                  -- JSON: each dataplane's counters at the window's start
    last_baseline     TEXT    NOT NULL DEFAULT 'null',                -- JSON: the last window's baseline figures with enough requests
    failures          INTEGER NOT NULL DEFAULT 0,                     -- failed intervals so far
    step_passes       INTEGER NOT NULL DEFAULT 0,                     -- passing intervals in the current step
    last_result       TEXT    NOT NULL DEFAULT '',                    -- pass, fail, inconclusive ('' = none yet)
    created_ms        INTEGER NOT NULL,
    updated_ms        INTEGER NOT NULL,
    step_started_ms   INTEGER NOT NULL,                               -- the hold counts from here (shifted by pauses)
    window_started_ms INTEGER NOT NULL,                               -- the gate's current window
    paused_ms         INTEGER NOT NULL DEFAULT 0,                     -- when paused (0 = not paused)
    rollback_version  INTEGER REFERENCES versions (version),          -- the version that undid it
    author            TEXT    NOT NULL,
    reason            TEXT    NOT NULL DEFAULT ''                     -- why it ended
);
CREATE INDEX rollouts_live ON rollouts (state) WHERE state IN ('progressing', 'paused');

CREATE TABLE rollout_verdicts (
    id         INTEGER PRIMARY KEY,
    rollout    INTEGER NOT NULL REFERENCES rollouts (id),
    created_ms INTEGER NOT NULL,
    step       INTEGER NOT NULL,
    result     TEXT    NOT NULL CHECK (result IN ('pass', 'fail', 'inconclusive')),
    figures    TEXT    NOT NULL                                       -- JSON: canary, baseline, window, reason
);
CREATE INDEX rollout_verdicts_by_rollout ON rollout_verdicts (rollout, id);
CREATE TRIGGER rollout_verdicts_append_only_u BEFORE UPDATE ON rollout_verdicts BEGIN SELECT RAISE(ABORT, 'verdicts are append-only'); END;
CREATE TRIGGER rollout_verdicts_append_only_d BEFORE DELETE ON rollout_verdicts BEGIN SELECT RAISE(ABORT, 'verdicts are append-only'); END;
