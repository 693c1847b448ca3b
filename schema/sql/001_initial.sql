-- Pathway control plane store, migration 1.
-- Migrations are numbered, applied in order at start, each once, each in one transaction; a
-- migration is never edited after release: a change is a new file with the next number.
-- History is append-only: triggers refuse UPDATE and DELETE on versions, tags and events.

CREATE TABLE versions (
    version        INTEGER PRIMARY KEY CHECK (version >= 1),  -- 1, 2, 3, ...; the newest is active
    created_ms     INTEGER NOT NULL,                          -- Unix time in milliseconds
    author         TEXT    NOT NULL,                          -- name of the token that made it
    message        TEXT    NOT NULL DEFAULT '',
    kind           TEXT    NOT NULL CHECK (kind IN ('apply', 'patch', 'rollback')),
    source_version INTEGER REFERENCES versions (version),     -- rollback: the target; patch: the base
    document       TEXT    NOT NULL,                          -- canonical JSON, fleet scope
    hash           TEXT    NOT NULL CHECK (length(hash) = 64) -- SHA-256 of document
);

-- Named profiles. Moving a tag appends a row; the tag points at its newest row's version.
CREATE TABLE tags (
    id         INTEGER PRIMARY KEY,
    name       TEXT    NOT NULL,
    version    INTEGER NOT NULL REFERENCES versions (version),
    created_ms INTEGER NOT NULL,
    author     TEXT    NOT NULL,
    message    TEXT    NOT NULL DEFAULT ''
);
CREATE INDEX tags_by_name ON tags (name, id);

-- Audit log: who did what to which version, when, why.
CREATE TABLE events (
    id         INTEGER PRIMARY KEY,
    created_ms INTEGER NOT NULL,
    actor      TEXT    NOT NULL,                          -- token name, "seed", or dataplane id
    action     TEXT    NOT NULL,                          -- apply, patch, rollback, tag, ack, nack
    version    INTEGER REFERENCES versions (version),
    detail     TEXT    NOT NULL DEFAULT ''                -- the message, tag name or NACK error
);

-- Live state of each dataplane (not history: updated by its polls and status reports).
CREATE TABLE dataplanes (
    id                TEXT    PRIMARY KEY,
    labels            TEXT    NOT NULL DEFAULT '{}',      -- JSON object of strings
    first_seen_ms     INTEGER NOT NULL,
    last_seen_ms      INTEGER NOT NULL,
    delivered_version INTEGER NOT NULL DEFAULT 0,         -- last version the config call handed it
    reported_version  INTEGER NOT NULL DEFAULT 0,         -- version of its last ACK or NACK
    applied_version   INTEGER NOT NULL DEFAULT 0,         -- last version it ACKed
    rejected_version  INTEGER NOT NULL DEFAULT 0,         -- version of its last NACK, 0 after an ACK
    error             TEXT    NOT NULL DEFAULT '',        -- the NACK's error text
    stats             TEXT    NOT NULL DEFAULT '{}'       -- heartbeat stats as sent (JSON object)
);

CREATE TRIGGER versions_append_only_u BEFORE UPDATE ON versions BEGIN SELECT RAISE(ABORT, 'versions are append-only'); END;
CREATE TRIGGER versions_append_only_d BEFORE DELETE ON versions BEGIN SELECT RAISE(ABORT, 'versions are append-only'); END;
CREATE TRIGGER tags_append_only_u BEFORE UPDATE ON tags BEGIN SELECT RAISE(ABORT, 'tags are append-only'); END;
CREATE TRIGGER tags_append_only_d BEFORE DELETE ON tags BEGIN SELECT RAISE(ABORT, 'tags are append-only'); END;
CREATE TRIGGER events_append_only_u BEFORE UPDATE ON events BEGIN SELECT RAISE(ABORT, 'events are append-only'); END;
CREATE TRIGGER events_append_only_d BEFORE DELETE ON events BEGIN SELECT RAISE(ABORT, 'events are append-only'); END;
