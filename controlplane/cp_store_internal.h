/*
 * The store's interface (cp_store.h's functions dispatch through it) and what its implementations
 * share. Two implementations: sqlite (cp_store_sqlite*.c, a file path) and PostgreSQL through libpq
 * (cp_store_pg*.c, a postgres:// or postgresql:// URL). Not for use outside the store.
 */
#ifndef PATHWAY_CP_STORE_INTERNAL_H
#define PATHWAY_CP_STORE_INTERNAL_H

#include <sqlite3.h>
#include "cp_store.h"
#include "cp_rollout.h"

/* A row read as text columns (NULL = SQL NULL), whichever database it came from. */
typedef const char *(*cp_row_col_fn)(void *row, int col);

/* One implementation: every cp_store_* / cp_ro_store_* call that reaches the database. Each has
 * the contract of the public function of the same name (cp_store.h, cp_rollout.h). */
typedef struct st_cp_store_ops_t {
    const char *name; /* "sqlite", "postgresql" */
    void (*close)(cp_store_t *store);
    int (*get_version)(cp_store_t *store, int64_t n, cp_version_t *out);
    int (*append)(cp_store_t *store, const cp_append_t *a, int64_t *version);
    json_t *(*list_versions)(cp_store_t *store, int64_t before, int limit, const cp_list_filter_t *f);
    int (*set_tag)(cp_store_t *store, const char *name, int64_t version, const char *author, const char *message);
    int (*get_tag)(cp_store_t *store, const char *name, int64_t *version);
    json_t *(*tag_json)(cp_store_t *store, const char *name, int *rc);
    json_t *(*list_tags)(cp_store_t *store);
    int (*delete_tag)(cp_store_t *store, const char *name, const char *author, const char *message, int64_t *version);
    json_t *(*list_events)(cp_store_t *store, int64_t before, int limit, const cp_list_filter_t *f);
    int (*begin)(cp_store_t *store);
    int (*commit)(cp_store_t *store);
    void (*abandon)(cp_store_t *store);
    int (*event)(cp_store_t *store, int64_t now_ms, const char *actor, const char *action, int64_t version, const char *detail);
    int (*dataplane_seen)(cp_store_t *store, const char *id, int64_t now_ms, int64_t delivered);
    int (*dataplanes_delivered)(cp_store_t *store, const char *const *ids, size_t n, int64_t delivered);
    int (*dataplane_reports)(cp_store_t *store, const cp_dp_report_t *reports, size_t n);
    /* cp_store_traffic_since: calls row(arg, col, r) for each row of (id, traffic, traffic_ms,
     * traffic_seq), oldest first; stops with ERROR when row returns non-zero */
    int (*traffic_since)(cp_store_t *store, int64_t after_ms, int (*row)(void *arg, cp_row_col_fn col, void *r), void *arg);
    int (*forget_dataplane)(cp_store_t *store, const char *id, const char *actor);
    int (*dataplane_admit)(cp_store_t *store, const char *id, uint64_t max);
    int (*get_dataplane)(cp_store_t *store, const char *id, cp_dataplane_t *out);
    int (*get_dataplanes)(cp_store_t *store, const char *const *ids, size_t n, int narrow, cp_dataplane_t *out, int *found);
    int (*dataplanes_polled)(cp_store_t *store, const cp_dp_poll_t *polls, size_t n, int64_t now_ms);
    int (*list_dataplanes)(cp_store_t *store, const char *after, int limit, int narrow, cp_dataplane_t **out, size_t *count);
    int (*dataplane_labels)(cp_store_t *store, const char *id, json_t *labels);
    int (*ro_insert)(cp_store_t *store, cp_rollout_t *ro);
    int (*ro_update)(cp_store_t *store, const cp_rollout_t *ro);
    int (*ro_verdict)(cp_store_t *store, int64_t rollout, int64_t now_ms, size_t step, cp_verdict_t result, const char *figures);
    int (*ro_get)(cp_store_t *store, int64_t id, cp_rollout_t *out);
    int (*ro_newest)(cp_store_t *store, int64_t *id, cp_ro_state_t *state, int64_t *step);
    json_t *(*ro_list)(cp_store_t *store, int64_t before, int limit);
    json_t *(*ro_verdicts)(cp_store_t *store, int64_t rollout);
    int (*ro_verdict_counts)(cp_store_t *store, uint64_t counts[CP_VERDICT_NUM]);
    /* optional (NULL = not needed): brings the active-version cache up to date with the database
     * (other replicas write too); OK or ERROR */
    int (*refresh)(cp_store_t *store);
    /* optional: cp_store_listen_fd, cp_store_notified, cp_store_tick */
    int (*listen_fd)(cp_store_t *store);
    void (*notified)(cp_store_t *store);
    int (*tick)(cp_store_t *store);
    /* optional (NULL: always held, one process owns the database): cp_store_lease */
    int (*lease)(cp_store_t *store);
} cp_store_ops_t;

struct st_cp_pg_t;

struct st_cp_store_t {
    const cp_store_ops_t *ops;
    int64_t active;       /* newest version number, 0 = none (cache, see cp_store_active_version) */
    char active_hash[65]; /* its hash */
    int schema_version;   /* migrations applied */
    char errmsg[256];     /* last failure */
    /* sqlite */
    sqlite3 *db;                       /* the one connection */
    int sync_full;                     /* synchronous=FULL is known to be in force; history writes require it */
    struct st_sq_checkpointer_t *ckpt; /* checkpoints the WAL off the event loop; NULL: sqlite's own, in commits */
    /* postgresql */
    struct st_cp_pg_t *pg;
    /* called when another writer's version is seen (cp_store_set_change_hook) */
    void (*on_change)(void *arg);
    void *on_change_arg;
};

/* The implementations' constructors: NULL with a message in err on failure. */
cp_store_t *cp_store_sqlite_open(const char *path, char *err, size_t errlen);
int cp_store_sqlite_backup(const char *path, const char *dest, char *err, size_t errlen);
cp_store_t *cp_store_pg_open(const char *url, char *err, size_t errlen);

/* --- shared by the implementations ------------------------------------------------------------ */

/* "apply" / "patch" / "rollback" to a kind; -1 when none of them. */
int cp_kind_from_name(const char *s, cp_kind_t *out);
/* A time as an RFC 3339 JSON string. */
json_t *cp_time_json(int64_t ms);
/* A version's summary object (no document), as listed. */
json_t *cp_version_summary_json(const cp_version_t *v);

/* A rollout from a row of CP_RO_COLUMNS; 0, or -1 when it does not read back. */
int cp_ro_from_row(cp_row_col_fn col, void *row, cp_rollout_t *ro);
/* A dataplane from a row of CP_DP_COLUMNS; 0 or -1 (out of memory). */
int cp_dp_from_row(cp_row_col_fn col, void *row, cp_dataplane_t *dp);
/* A verdict object from (created_ms, step, result, figures). */
json_t *cp_verdict_from_row(cp_row_col_fn col, void *row);

#define CP_RO_COLUMNS                                                                                                              \
    "id, version, from_version, spec, state, step, sets, marks, last_baseline, failures, step_passes, last_result, created_ms, "   \
    "updated_ms, step_started_ms, window_started_ms, paused_ms, coalesce(rollback_version, 0), author, reason"
#define CP_DP_COLUMNS                                                                                                              \
    "id, labels, first_seen_ms, last_seen_ms, delivered_version, reported_version, applied_version, rejected_version, error, "     \
    "stats, delivered_since_report, reported_hash, traffic, traffic_ms"
/* the same row without labels, stats and traffic (cp_store_list_dataplane_states) */
#define CP_DP_STATE_COLUMNS                                                                                                        \
    "id, NULL, first_seen_ms, last_seen_ms, delivered_version, reported_version, applied_version, rejected_version, error, "       \
    "NULL, delivered_since_report, reported_hash, NULL, traffic_ms"

/* --- the sqlite implementation's own helpers ------------------------------------------------------ */

/* Runs `sql` (no results); CP_STORE_OK, or CP_STORE_ERROR with the reason recorded and logged. */
int sq_exec(cp_store_t *store, const char *sql);
/* A prepared statement the caller finalizes, or NULL with the reason recorded (sq_fail). */
sqlite3_stmt *sq_prepare(cp_store_t *store, const char *sql);
/* Column `col` of the current row as a heap string ("" for NULL) the caller frees; NULL when out of memory. */
char *sq_column_strdup(sqlite3_stmt *st, int col);
/* Records sqlite's error as the store's, logs it, returns CP_STORE_ERROR. */
int sq_fail(cp_store_t *store, const char *what);
/* cp_row_col_fn over a sqlite3_stmt */
const char *sq_col(void *row, int col);
int sq_begin(cp_store_t *store);
int sq_commit(cp_store_t *store);
void sq_abandon(cp_store_t *store);
int sq_event(cp_store_t *store, int64_t now_ms, const char *actor, const char *action, int64_t version, const char *detail);
int sq_get_tag(cp_store_t *store, const char *name, int64_t *version);
int sq_get_dataplane(cp_store_t *store, const char *id, cp_dataplane_t *out);
int sq_dataplane_seen(cp_store_t *store, const char *id, int64_t now_ms, int64_t delivered);
int sq_dataplanes_delivered(cp_store_t *store, const char *const *ids, size_t n, int64_t delivered);
int sq_dataplane_reports(cp_store_t *store, const cp_dp_report_t *reports, size_t n);
int sq_traffic_since(cp_store_t *store, int64_t after_ms, int (*row)(void *arg, cp_row_col_fn col, void *r), void *arg);
int sq_forget_dataplane(cp_store_t *store, const char *id, const char *actor);
int sq_dataplane_admit(cp_store_t *store, const char *id, uint64_t max);
int sq_list_dataplanes(cp_store_t *store, const char *after, int limit, int narrow, cp_dataplane_t **out, size_t *count);
int sq_dataplane_labels(cp_store_t *store, const char *id, json_t *labels);
int sq_get_dataplanes(cp_store_t *store, const char *const *ids, size_t n, int narrow, cp_dataplane_t *out, int *found);
int sq_dataplanes_polled(cp_store_t *store, const cp_dp_poll_t *polls, size_t n, int64_t now_ms);
int sq_ro_insert(cp_store_t *store, cp_rollout_t *ro);
int sq_ro_update(cp_store_t *store, const cp_rollout_t *ro);
int sq_ro_verdict(cp_store_t *store, int64_t rollout, int64_t now_ms, size_t step, cp_verdict_t result, const char *figures);
int sq_ro_get(cp_store_t *store, int64_t id, cp_rollout_t *out);
int sq_ro_newest(cp_store_t *store, int64_t *id, cp_ro_state_t *state, int64_t *step);
json_t *sq_ro_list(cp_store_t *store, int64_t before, int limit);
json_t *sq_ro_verdicts(cp_store_t *store, int64_t rollout);
int sq_ro_verdict_counts(cp_store_t *store, uint64_t counts[CP_VERDICT_NUM]);

#endif
