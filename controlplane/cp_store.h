/*
 * cp_store: the control plane's store (DESIGN §4), one interface over two databases, chosen by
 * the `database` setting: a file path is sqlite (the embedded default, cp_store_sqlite*.c), a
 * postgres:// or postgresql:// URL is PostgreSQL through libpq (cp_store_pg*.c), which several
 * pathway-control replicas may share.
 *
 * The same guarantees on both. History (versions, tags, events, verdicts) is append-only. When
 * cp_store_append returns CP_STORE_CREATED the version is durable (sqlite: synchronous=FULL;
 * PostgreSQL: synchronous_commit on), so the API may acknowledge it (201) and a kill -9 cannot lose
 * it. Version numbers are contiguous under concurrent writers, also on different replicas: appends
 * are serialized, and If-Match and the identical-document rule are checked inside the appending
 * transaction. Dataplane heartbeats are live state, written without waiting for the disk (sqlite:
 * synchronous=NORMAL; PostgreSQL: synchronous_commit off for that transaction): a crash may lose
 * the last few, which the next heartbeat restores; the ACK/NACK event a report may add is history,
 * appended after it in a durable transaction of its own. The migrations (schema/sql/ for sqlite,
 * schema/sql/pg/ for PostgreSQL) are compiled into the binary and applied in order at open, once
 * even when several replicas start together.
 *
 * One cp_store_t is one connection; it is not thread-safe (the control plane runs one event loop).
 * Every call can fail with CP_STORE_ERROR; the reason is in cp_store_errmsg() (PostgreSQL
 * unreachable: "database unavailable: ...", and the store reconnects by itself on a later call).
 */
#ifndef PATHWAY_CP_STORE_H
#define PATHWAY_CP_STORE_H

#include <stddef.h>
#include <stdint.h>
#include <jansson.h>

typedef struct st_cp_store_t cp_store_t;

typedef enum en_cp_store_rc_t {
    CP_STORE_ERROR = -1,    /* sqlite failed; see cp_store_errmsg */
    CP_STORE_OK = 0,        /* done / found */
    CP_STORE_CREATED = 1,   /* a new version was committed */
    CP_STORE_UNCHANGED = 2, /* the document equals the active one; no new version */
    CP_STORE_NOT_FOUND = 3, /* no such version / tag / dataplane, or no version yet */
    CP_STORE_CONFLICT = 4,  /* the precondition (If-Match) names a version that is not the active one */
    CP_STORE_LIMIT = 5,     /* a new dataplane beyond max_dataplanes */
} cp_store_rc_t;

typedef enum en_cp_kind_t {
    CP_KIND_APPLY = 0, /* a whole document (PUT, seed) */
    CP_KIND_PATCH,     /* a merge patch on the active document */
    CP_KIND_ROLLBACK,  /* the document of an earlier version */
} cp_kind_t;

const char *cp_kind_name(cp_kind_t kind);

/* One version row. Strings are owned by the struct; cp_version_dispose frees them. */
typedef struct st_cp_version_t {
    int64_t version;        /* >= 1 */
    int64_t created_ms;     /* Unix time, ms */
    char *author;           /* token name */
    char *message;          /* "" when none */
    cp_kind_t kind;         /* how it was made */
    int64_t source_version; /* 0 = none */
    char *document;         /* canonical JSON; NULL when listed without documents */
    char hash[65];          /* SHA-256 of document, hex */
} cp_version_t;

void cp_version_dispose(cp_version_t *v);

/* Runs inside a new version's transaction, after its row is inserted, for what must commit with it
 * (a rollout's rows: cp_rollout_store.c). Returns CP_STORE_OK, or anything else to abandon it all. */
typedef int (*cp_append_hook_fn)(cp_store_t *store, int64_t version, void *arg);

/* What a new version is made of. All strings borrowed. */
typedef struct st_cp_append_t {
    const char *author;     /* token name (or "seed") */
    const char *message;    /* NULL = "" */
    cp_kind_t kind;         /* how the document was made */
    int64_t source_version; /* 0 = none */
    const char *document;   /* canonical JSON */
    const char *hash;       /* its SHA-256, hex */
    int64_t if_match;       /* -1 = no precondition; 0 = the store must be empty; n = n must be active */
    cp_append_hook_fn hook; /* NULL = none */
    void *hook_arg;         /* passed to hook */
} cp_append_t;

/* Opens (creating) the file, sets the pragmas and applies pending migrations. Returns NULL with a
 * message in err on failure. */
cp_store_t *cp_store_open(const char *database, char *err, size_t errlen);
/* Whether `database` names PostgreSQL (postgres:// or postgresql://) rather than a sqlite file. */
int cp_store_is_url(const char *database);
/* Checks that a postgres:// URL parses (libpq's rules): 0, or -1 with the reason in err. */
int cp_store_check_url(const char *url, char *err, size_t errlen);
/* `database` as logs may show it: a URL's password replaced by ***. */
void cp_store_describe(const char *database, char *out, size_t len);
/* "sqlite" or "postgresql". */
const char *cp_store_kind(cp_store_t *store);
void cp_store_close(cp_store_t *store);
const char *cp_store_errmsg(cp_store_t *store);

/* Copies the database at `path` into `dest` with sqlite's online backup: consistent as of one
 * moment, while a pathway-control may be writing to it (WAL lets the copy read while it writes).
 * The copy is written beside `dest`, synced, checked (PRAGMA quick_check) and renamed over it, so
 * `dest` is either the old file or a whole copy. Opens its own connection; never creates or
 * migrates `path`. Returns 0, or -1 with a message in err. */
int cp_store_backup(const char *path, const char *dest, char *err, size_t errlen);

/* Reads the active version from the database into the cache (another replica may have written
 * one); returns OK or ERROR. A no-op for sqlite, whose connection is the only writer. */
int cp_store_refresh(cp_store_t *store);
/* Whether version n (>= 1) exists: at most the cached active version, or, when it is above it, at
 * most the active version read again from the database (cp_store_refresh: another replica may have
 * stored it a moment ago). 0 also when the database cannot be read. */
int cp_store_has_version(cp_store_t *store, int64_t n);
/* `fn(arg)` runs whenever the store learns of a version it did not write itself (PostgreSQL: a
 * notification from another replica, or a conflict), after the cache is updated. */
void cp_store_set_change_hook(cp_store_t *store, void (*fn)(void *arg), void *arg);
/* PostgreSQL: the socket of the connection that LISTENs for other replicas' versions (-1 when none:
 * sqlite, or not connected); cp_store_notified() consumes what arrived on it, refreshes the cache
 * and runs the change hook when the active version moved. */
int cp_store_listen_fd(cp_store_t *store);
void cp_store_notified(cp_store_t *store);
/* PostgreSQL: keeps trying to reconnect a lost listening connection; call now and then (a timer).
 * Returns 1 when the listen fd changed (watch the new one). */
int cp_store_tick(cp_store_t *store);

/* Whether this process may drive rollouts now: always for sqlite; for PostgreSQL, whether this
 * replica holds the lease (a session advisory lock on a connection of its own, taken when free and
 * released by PostgreSQL when the holder's session ends). Cheap: checks the connection at most once
 * a second. */
int cp_store_lease(cp_store_t *store);

/* Number of migrations applied to the file (for tests and /metrics). */
int cp_store_schema_version(cp_store_t *store);

/* The active (newest) version's number and hash, 0 and "" when there is none. Served from memory:
 * updated on every commit of this store, and (PostgreSQL) on other replicas' notifications and on
 * every append, which reads the database's head inside its transaction. */
int64_t cp_store_active_version(cp_store_t *store);
const char *cp_store_active_hash(cp_store_t *store);
/* How many versions exist (== the active number, as numbers are dense). */
int64_t cp_store_count_versions(cp_store_t *store);

/* Reads version n (n <= 0: the active one) into *out, with its document. OK / NOT_FOUND / ERROR. */
int cp_store_get_version(cp_store_t *store, int64_t n, cp_version_t *out);

/* Appends a version and its event (action = kind) in one FULL-synchronous transaction. Checks
 * if_match and the identical-document rule inside the transaction. Returns CREATED with *version set
 * to the new number, UNCHANGED with *version = the active one, CONFLICT, or ERROR. */
int cp_store_append(cp_store_t *store, const cp_append_t *a, int64_t *version);

/* What a listing keeps: rows whose `who` (a version's author, an event's actor) and `what` (a
 * version's kind, an event's action) equal these; NULL members (or a NULL filter) keep every row. */
typedef struct st_cp_list_filter_t {
    const char *who;
    const char *what;
} cp_list_filter_t;

/* Versions newest first, with number < before (before <= 0: from the newest), at most limit, that
 * `f` keeps. Returns a JSON array of objects without documents (new reference), NULL on error. */
json_t *cp_store_list_versions(cp_store_t *store, int64_t before, int limit, const cp_list_filter_t *f);

/* Points tag `name` at `version` (a new tags row + an event). OK / NOT_FOUND (no such version). */
int cp_store_set_tag(cp_store_t *store, const char *name, int64_t version, const char *author, const char *message);
/* The version a tag points at. OK / NOT_FOUND (also for a deleted tag). */
int cp_store_get_tag(cp_store_t *store, const char *name, int64_t *version);
/* {name, version, updated_at, author, message, history: [...]}: NULL with *rc = NOT_FOUND / ERROR. */
json_t *cp_store_tag_json(cp_store_t *store, const char *name, int *rc);
/* Every tag's current target, by name (deleted tags left out). */
json_t *cp_store_list_tags(cp_store_t *store);
/* Deletes tag `name`: appends a deletion row (the tags table stays append-only, the tag's history
 * keeps it) and a "tag_delete" event, in one FULL-synchronous transaction. The version the tag
 * pointed at is set in *version (may be NULL). OK / NOT_FOUND (no such tag, or deleted already). */
int cp_store_delete_tag(cp_store_t *store, const char *name, const char *author, const char *message, int64_t *version);

/* Audit log newest first, ids < before (<= 0: from the newest), at most limit, that `f` keeps. */
json_t *cp_store_list_events(cp_store_t *store, int64_t before, int limit, const cp_list_filter_t *f);

/* --- for the rollout engine: a history transaction of its own ---------------------------------- */

/* A transaction that writes history (durable when it commits), its commit, and its abandonment. */
int cp_store_begin(cp_store_t *store);
int cp_store_commit(cp_store_t *store);
void cp_store_abandon(cp_store_t *store);
/* Appends an audit event (inside a transaction begun with cp_store_begin). version 0 = none. */
int cp_store_event(cp_store_t *store, int64_t now_ms, const char *actor, const char *action, int64_t version, const char *detail);

/* --- dataplanes -------------------------------------------------------------------------- */

typedef struct st_cp_dataplane_t {
    char *id;                   /* [A-Za-z0-9_.-]{1,64} */
    json_t *labels;             /* object of strings (owned reference) */
    json_t *stats;              /* last heartbeat stats (owned reference) */
    int64_t first_seen_ms;      /* first call, Unix ms */
    int64_t last_seen_ms;       /* latest call (poll or report), Unix ms */
    int64_t delivered_version;  /* last version handed out to it */
    int64_t reported_version;   /* version of its last ACK or NACK */
    int64_t applied_version;    /* last ACKed: what it runs */
    int64_t rejected_version;   /* last NACKed, 0 once it ACKs that version or a newer one */
    char *error;                /* NACK error, "" otherwise */
    int delivered_since_report; /* a version was handed to it after its latest ACK or NACK */
    char reported_hash[65];     /* hash of the fleet document it said it serves; "" = not said */
    json_t *traffic;            /* its latest heartbeat's traffic ({"version", "services"}), NULL = none yet */
    int64_t traffic_ms;         /* when that was stored, Unix ms (0 = never) */
} cp_dataplane_t;

void cp_dataplane_dispose(cp_dataplane_t *dp);

/* Records a config call of dataplane `id` (created on first sight): last seen = now (unless
 * now_ms <= 0: a parked poll answered later proves nothing about the dataplane now), and when
 * delivered > 0, that version was handed to it. */
int cp_store_dataplane_seen(cp_store_t *store, const char *id, int64_t now_ms, int64_t delivered);

/* Records that the active version `delivered` was handed to each of ids[0..n-1] (parked polls
 * answered together), in one transaction; last seen is left alone (see above). */
int cp_store_dataplanes_delivered(cp_store_t *store, const char *const *ids, size_t n, int64_t delivered);

/* Records a status report (ACK when applied, else NACK with error). labels / stats / hash / traffic
 * may be NULL (keep the stored ones); hash is the document hash it reports serving; traffic is the
 * heartbeat's traffic object as compact JSON (checked by the caller), stored in the same write with
 * the time it was stored (sqlite: now_ms; PostgreSQL: the database's clock, one time line for every
 * replica) for cp_store_traffic_since. A NACK sets rejected_version; an ACK raises
 * applied_version (never lowers it: an older ACK arriving late is a stale heartbeat, whose version and hash are
 * ignored: they do not replace reported_version and reported_hash) and clears the rejection when it is for that
 * version or a newer one. A report that changes the applied or the rejected version (or the error) also appends an event; repeated
 * ones are heartbeats. */
int cp_store_dataplane_report(cp_store_t *store, const char *id, int64_t now_ms, int64_t version, int applied, const char *error,
                              json_t *labels, json_t *stats, const char *hash, const char *traffic);

/* One status report, as cp_store_dataplane_report takes it (the strings and objects are borrowed). */
typedef struct st_cp_dp_report_t {
    const char *id;
    int64_t now_ms;
    int64_t version;
    int applied;
    const char *error;
    json_t *labels;
    json_t *stats;
    const char *hash;
    const char *traffic;
} cp_dp_report_t;

/* Records reports[0..n-1] in order, each by cp_store_dataplane_report's rules, with one durable
 * commit for all their events (reports that arrive together share one flush): OK when all are
 * stored, else ERROR for all (none of their events is). */
int cp_store_dataplane_reports(cp_store_t *store, const cp_dp_report_t *reports, size_t n);

/* Forgets dataplane `id`: deletes its live row and appends a "forget" event by `actor`, in one
 * FULL-synchronous transaction. It is known again (a new row) when it next calls. OK / NOT_FOUND. */
int cp_store_forget_dataplane(cp_store_t *store, const char *id, const char *actor);

/* Whether dataplane `id` may be stored: OK when it exists or fewer than `max` do, else LIMIT.
 * PostgreSQL: exact across replicas (the count and the new row's insert run under one advisory
 * transaction lock, so two replicas cannot both admit the last free place). */
int cp_store_dataplane_admit(cp_store_t *store, const char *id, uint64_t max);

/* One dataplane: OK / NOT_FOUND / ERROR. */
int cp_store_get_dataplane(cp_store_t *store, const char *id, cp_dataplane_t *out);

/* Dataplanes ids[0..n-1] read together (one query on PostgreSQL): found[i] says whether out[i] holds
 * ids[i]'s row (dispose each found one). `narrow`: without labels, stats and traffic, as
 * cp_store_list_dataplane_states. OK, or ERROR (nothing to dispose). */
int cp_store_get_dataplanes(cp_store_t *store, const char *const *ids, size_t n, int narrow, cp_dataplane_t *out, int *found);

/* One config call of a known dataplane, as cp_store_dataplanes_polled takes it (borrowed). */
typedef struct st_cp_dp_poll_t {
    const char *id;
    json_t *labels; /* the labels it sent, NULL = none sent (the stored ones stay) */
} cp_dp_poll_t;

/* Records config calls of known dataplanes made at now_ms (long polls that arrived together): last
 * seen = now_ms, and the labels each sent, in one live transaction. OK, or ERROR for all. */
int cp_store_dataplanes_polled(cp_store_t *store, const cp_dp_poll_t *polls, size_t n, int64_t now_ms);

/* Dataplanes ordered by id, with id > after (NULL: from the first), at most limit (<= 0: all).
 * *out is an array of *count entries; free with cp_dataplanes_free. */
int cp_store_list_dataplanes(cp_store_t *store, const char *after, int limit, cp_dataplane_t **out, size_t *count);

/* Every dataplane as cp_store_list_dataplanes gives it, without what its state does not need:
 * labels and stats are empty objects, traffic NULL (GET /v1/versions counts the fleet per version). */
int cp_store_list_dataplane_states(cp_store_t *store, cp_dataplane_t **out, size_t *count);
void cp_dataplanes_free(cp_dataplane_t *dps, size_t count);

/* --- dataplane state ---------------------------------------------------------------------- */

typedef enum en_cp_dp_state_t {
    CP_DP_SYNCED = 0,   /* ACKed the active version */
    CP_DP_APPLYING,     /* was handed the active version and has not reported on it yet */
    CP_DP_REJECTED,     /* NACKed the active version (it keeps running its last good one) */
    CP_DP_STALE,        /* behind the active version and not handed it yet */
    CP_DP_DISCONNECTED, /* not seen within the heartbeat timeout */
    CP_DP_DRIFTED,      /* serves a document whose hash is not the one of the version it ACKed */
    CP_DP_NUM_STATES
} cp_dp_state_t;

const char *cp_dp_state_name(cp_dp_state_t state);

/* The state of a dataplane at `now_ms`; `polling` is true while it has a long poll open that
 * parked within the heartbeat timeout (an HTTP/1 poll whose client vanished stays parked, so an
 * older one proves nothing); `drifted` is true when the hash it reports is not the one of the
 * version it ACKed (the caller compares: see cp_dataplanes.c). A connected dataplane that drifted
 * is "drifted" whatever else holds. Pure: unit-tested on its own. */
cp_dp_state_t cp_dp_state(const cp_dataplane_t *dp, int64_t active, int64_t now_ms, int64_t heartbeat_ms, int polling, int drifted);

/* RFC 3339 UTC with milliseconds ("2026-11-26T21:05:03.123Z"). */
void cp_format_time(int64_t ms, char out[32]);
int64_t cp_now_ms(void);

#endif
