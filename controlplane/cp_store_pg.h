/*
 * What the PostgreSQL store's files (cp_store_pg*.c) share. Not for use outside the store.
 */
#ifndef PATHWAY_CP_STORE_PG_H
#define PATHWAY_CP_STORE_PG_H

#include <libpq-fe.h>
#include "cp_store_internal.h"

/* Advisory lock keys (one namespace per database): appends of versions and tags (transaction
 * level), migrations (session level, around them), the rollout lease (session level, held by the
 * replica that drives rollouts). */
#define CP_PG_APPEND_LOCK 0x7061746877617901LL
#define CP_PG_MIGRATE_LOCK 0x7061746877617902LL
#define CP_PG_LEASE_LOCK 0x7061746877617903LL
#define CP_PG_ADMIT_LOCK 0x7061746877617904LL /* max_dataplanes: count and insert (transaction level) */

typedef struct st_cp_pg_t {
    char *url;
    PGconn *conn;                         /* queries; NULL or broken: reconnected by the next call */
    PGconn *listen;                       /* LISTEN pathway_versions; NULL: reopened by cp_store_tick */
    PGconn *lease;                        /* the rollout lease's own connection (NULL: not connected) */
    int lease_held;                       /* it holds the lease (a session advisory lock) */
    int broken;                           /* conn failed: reconnect before the next query */
    int in_tx;                            /* a transaction is open on conn */
    int listen_warned;                    /* the LISTEN connection's failure was logged (once until it works again) */
    int64_t next_connect_ms;              /* no reconnection attempt before (wall ms) */
    int64_t next_listen_ms;               /* no LISTEN reconnection before */
    int64_t next_lease_ms;                /* no lease attempt before */
    char last_connect_error[200];         /* why the last connection attempt failed */
    struct st_cp_pg_prepared_t *prepared; /* statements prepared on conn (pg_query), CP_PG_PREPARED at most */
    size_t num_prepared;                  /* of them; 0 again with each new connection */
} cp_pg_t;

#define CP_PG_PREPARED 128

/* One row of a result, read through cp_row_col_fn pg_col. */
typedef struct st_pg_row_t {
    PGresult *res;
    int i;
} pg_row_t;
const char *pg_col(void *row, int col);

/* A new connection to url named `name` (application_name), or NULL with libpq's reason in err. */
PGconn *pg_connect(const char *url, const char *name, char *err, size_t errlen);
/* Runs sql with text parameters (NULL = SQL NULL). The result (the caller PQclears it), or NULL with
 * the reason recorded ("database unavailable: ..." when the connection is down) and logged. */
PGresult *pg_query(cp_store_t *store, const char *what, const char *sql, int n, const char *const *params);
int pg_exec(cp_store_t *store, const char *what, const char *sql, int n, const char *const *params);
/* One statement of a pipeline: sql with n text parameters. */
typedef struct st_pg_stmt_t {
    const char *sql;
    int n;
    const char *const *params;
} pg_stmt_t;
/* Runs stmts[0..n-1] in order in one round trip (libpq's pipeline mode), inside the open transaction:
 * results[i] gets each one's result (the caller PQclears them). OK, or ERROR with the reason recorded
 * (every results[i] NULL; the transaction must be abandoned). The connection blocks: keep the
 * statements' answers small (a few rows), so PostgreSQL never waits on a client that is still
 * sending. */
int pg_pipeline(cp_store_t *store, const char *what, const pg_stmt_t *stmts, size_t n, PGresult **results);
/* Records the failure of `what` (res may be NULL) and returns CP_STORE_ERROR. */
int pg_fail(cp_store_t *store, const char *what, PGresult *res);
/* A transaction: durable (synchronous_commit on: history) or not (live rows). */
int pg_begin_mode(cp_store_t *store, int durable);
int pg_commit(cp_store_t *store);
void pg_abandon(cp_store_t *store);
int pg_event(cp_store_t *store, int64_t now_ms, const char *actor, const char *action, int64_t version, const char *detail);
/* v[0..n-1] as a PostgreSQL array literal (each element quoted and escaped; NULL entries as NULL),
 * malloc'd; NULL with the reason recorded when out of memory. Cast it: $1::text[], $1::bigint[]. */
char *pg_text_array(cp_store_t *store, const char *const *v, size_t n);
/* v as decimal text in buf; returns buf */
char *pg_i64(char buf[24], int64_t v);

int pg_dataplane_seen(cp_store_t *store, const char *id, int64_t now_ms, int64_t delivered);
int pg_dataplanes_delivered(cp_store_t *store, const char *const *ids, size_t n, int64_t delivered);
int pg_dataplane_reports(cp_store_t *store, const cp_dp_report_t *reports, size_t n);
int pg_traffic_since(cp_store_t *store, int64_t after_ms, int (*row)(void *arg, cp_row_col_fn col, void *r), void *arg);
int pg_forget_dataplane(cp_store_t *store, const char *id, const char *actor);
int pg_dataplane_admit(cp_store_t *store, const char *id, uint64_t max);
int pg_get_dataplane(cp_store_t *store, const char *id, cp_dataplane_t *out);
int pg_list_dataplanes(cp_store_t *store, const char *after, int limit, int narrow, cp_dataplane_t **out, size_t *count);
int pg_dataplane_labels(cp_store_t *store, const char *id, json_t *labels);
int pg_get_dataplanes(cp_store_t *store, const char *const *ids, size_t n, int narrow, cp_dataplane_t *out, int *found);
int pg_dataplanes_polled(cp_store_t *store, const cp_dp_poll_t *polls, size_t n, int64_t now_ms);
int pg_ro_insert(cp_store_t *store, cp_rollout_t *ro);
int pg_ro_update(cp_store_t *store, const cp_rollout_t *ro);
int pg_ro_verdict(cp_store_t *store, int64_t rollout, int64_t now_ms, size_t step, cp_verdict_t result, const char *figures);
int pg_ro_get(cp_store_t *store, int64_t id, cp_rollout_t *out);
int pg_ro_newest(cp_store_t *store, int64_t *id, cp_ro_state_t *state, int64_t *step);
json_t *pg_ro_list(cp_store_t *store, int64_t before, int limit);
json_t *pg_ro_verdicts(cp_store_t *store, int64_t rollout);
int pg_ro_verdict_counts(cp_store_t *store, uint64_t counts[CP_VERDICT_NUM]);
int pg_lease(cp_store_t *store);

#endif
