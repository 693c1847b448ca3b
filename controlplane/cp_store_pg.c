/*
 * The PostgreSQL store (libpq): the same interface and guarantees as the sqlite one, for several
 * pathway-control replicas sharing one database.
 *
 * - Versions and tags are appended under a transaction-level advisory lock (APPEND_LOCK), so
 *   numbers stay contiguous across replicas; the head is read, If-Match and the identical-document
 *   rule checked, and the rows inserted inside that one transaction. History transactions run
 *   with synchronous_commit on: COMMIT returns once the WAL is flushed, so 201 means durable.
 *   Live dataplane rows run with synchronous_commit off (cp_store.h says why).
 * - Every committed version NOTIFYs channel "pathway_versions"; a second connection LISTENs, its
 *   socket watched by the server's event loop (cp_store_listen_fd, cp_store_notified): on a
 *   notification the active-version cache is re-read and the change hook wakes the long polls.
 * - Migrations (schema/sql/pg/) are applied under a session advisory lock: once, even when replicas
 *   start together.
 * - When PostgreSQL cannot be reached, calls fail with "database unavailable: ..." (the API answers
 *   503) and the store reconnects on a later call, at most every RECONNECT_MS; a call outside a
 *   transaction that finds its connection broken reconnects and runs again once.
 * The dataplanes' rows are cp_store_pg_dataplanes.c's, the rollouts' cp_store_pg_rollouts.c's.
 */
#include "cp_store_pg.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "cp_migrations.h"
#include "pw_log.h"

#define RECONNECT_MS 500
#define CHANNEL "pathway_versions"

static const cp_store_ops_t pg_ops;

const char *pg_col(void *row, int col)
{
    pg_row_t *r = row;
    return PQgetisnull(r->res, r->i, col) ? NULL : PQgetvalue(r->res, r->i, col);
}

/* libpq's message on one line (its newlines and tabs as single spaces, none at the end). */
static void one_line(const char *msg, char *out, size_t len)
{
    size_t n = 0;
    int space = 0;
    for (const char *p = msg != NULL && msg[0] ? msg : "unknown error"; *p && n + 1 < len; p++) {
        if (*p == '\n' || *p == '\t' || *p == '\r' || *p == ' ') {
            space = n > 0;
            continue;
        }
        if (space && n + 2 < len)
            out[n++] = ' ';
        space = 0;
        out[n++] = *p;
    }
    out[n] = '\0';
}

static void set_err(cp_store_t *store, const char *prefix, const char *what, const char *msg)
{
    char buf[200];
    one_line(msg, buf, sizeof(buf));
    snprintf(store->errmsg, sizeof(store->errmsg), "%s%s%s%s", prefix, what != NULL ? what : "", what != NULL ? ": " : "", buf);
}

int pg_fail(cp_store_t *store, const char *what, PGresult *res)
{
    cp_pg_t *pg = store->pg;
    if (pg->conn == NULL || PQstatus(pg->conn) != CONNECTION_OK) {
        set_err(store, "database unavailable: ", NULL, pg->conn != NULL ? PQerrorMessage(pg->conn) : pg->last_connect_error);
        pg->broken = 1;
    } else {
        set_err(store, "", what, res != NULL ? PQresultErrorMessage(res) : PQerrorMessage(pg->conn));
    }
    PW_ERROR("store: %s", store->errmsg);
    return CP_STORE_ERROR;
}

/* PostgreSQL's notices (a CREATE ... IF NOT EXISTS that skipped) go to the debug log, not stderr */
static void on_notice(void *arg, const char *msg)
{
    (void)arg;
    PW_DEBUG("store: postgresql: %.*s", (int)strcspn(msg, "\n"), msg);
}

PGconn *pg_connect(const char *url, const char *name, char *err, size_t errlen)
{
    /* the URL comes last: what it says overrides these defaults */
    const char *keys[] = {"connect_timeout", "application_name", "dbname", NULL};
    const char *vals[] = {"3", name, url, NULL};
    PGconn *c = PQconnectdbParams(keys, vals, 1);
    if (c == NULL) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    if (PQstatus(c) != CONNECTION_OK) {
        one_line(PQerrorMessage(c), err, errlen);
        PQfinish(c);
        return NULL;
    }
    PQsetNoticeProcessor(c, on_notice, NULL);
    return c;
}

static int load_active(cp_store_t *store);

/* A statement prepared on the query connection: the calls repeated per dataplane (a poll, a report,
 * an admission) are parsed and planned once per connection instead of on every call. */
typedef struct st_cp_pg_prepared_t {
    uint64_t hash; /* FNV-1a of sql */
    char *sql;
    char name[16];
} cp_pg_prepared_t;

static void prepared_clear(cp_pg_t *pg)
{
    for (size_t i = 0; i < pg->num_prepared; i++)
        free(pg->prepared[i].sql);
    pg->num_prepared = 0;
}

/* The name of sql prepared on the connection (preparing it the first time), or NULL to run it
 * unprepared: the cache is full or the preparation failed (its error comes again from the run). */
static const char *prepared_name(cp_pg_t *pg, const char *sql, int n)
{
    uint64_t h = 1469598103934665603ULL;
    for (const unsigned char *s = (const unsigned char *)sql; *s; s++)
        h = (h ^ *s) * 1099511628211ULL;
    for (size_t i = 0; i < pg->num_prepared; i++)
        if (pg->prepared[i].hash == h && strcmp(pg->prepared[i].sql, sql) == 0)
            return pg->prepared[i].name;
    if (pg->prepared == NULL && (pg->prepared = calloc(CP_PG_PREPARED, sizeof(*pg->prepared))) == NULL)
        return NULL;
    if (pg->num_prepared == CP_PG_PREPARED)
        return NULL;
    cp_pg_prepared_t *p = &pg->prepared[pg->num_prepared];
    snprintf(p->name, sizeof(p->name), "pw_%zu", pg->num_prepared);
    PGresult *res = PQprepare(pg->conn, p->name, sql, n, NULL);
    int ok = res != NULL && PQresultStatus(res) == PGRES_COMMAND_OK;
    PQclear(res);
    if (!ok || (p->sql = strdup(sql)) == NULL) {
        if (ok) {
            /* prepared but not remembered: forget it on the server too, the name is reused */
            char dealloc[40];
            snprintf(dealloc, sizeof(dealloc), "DEALLOCATE %s", p->name);
            PQclear(PQexec(pg->conn, dealloc));
        }
        return NULL;
    }
    p->hash = h;
    pg->num_prepared++;
    return p->name;
}

/* A usable query connection, reconnecting when it broke (at most every RECONNECT_MS). */
static int ensure(cp_store_t *store)
{
    cp_pg_t *pg = store->pg;
    if (pg->conn != NULL && !pg->broken && PQstatus(pg->conn) == CONNECTION_OK)
        return CP_STORE_OK;
    if (pg->in_tx) {
        /* a transaction cannot survive its connection: fail it, reconnect on the next call */
        set_err(store, "database unavailable: ", NULL, "connection lost during a transaction");
        return CP_STORE_ERROR;
    }
    int64_t now = cp_now_ms();
    if (now < pg->next_connect_ms) {
        set_err(store, "database unavailable: ", NULL, pg->last_connect_error);
        return CP_STORE_ERROR;
    }
    if (pg->conn != NULL) {
        PQfinish(pg->conn);
        pg->conn = NULL;
    }
    /* prepared statements live with their connection */
    prepared_clear(pg);
    pg->conn = pg_connect(pg->url, "pathway-control", pg->last_connect_error, sizeof(pg->last_connect_error));
    if (pg->conn == NULL) {
        pg->next_connect_ms = now + RECONNECT_MS;
        set_err(store, "database unavailable: ", NULL, pg->last_connect_error);
        return CP_STORE_ERROR;
    }
    pg->broken = 0;
    PW_INFO("store: connected to PostgreSQL");
    /* versions may have been written meanwhile */
    int64_t before = store->active;
    if (load_active(store) == CP_STORE_OK && store->active != before && store->on_change != NULL)
        store->on_change(store->on_change_arg);
    return CP_STORE_OK;
}

PGresult *pg_query(cp_store_t *store, const char *what, const char *sql, int n, const char *const *params)
{
    for (int attempt = 0;; attempt++) {
        if (ensure(store) != CP_STORE_OK) {
            PW_ERROR("store: %s", store->errmsg);
            return NULL;
        }
        /* a statement with parameters is prepared once per connection (a text without them may
         * hold several statements, which only PQexec runs) */
        const char *name = n > 0 ? prepared_name(store->pg, sql, n) : NULL;
        PGresult *res = name != NULL ? PQexecPrepared(store->pg->conn, name, n, params, NULL, NULL, 0)
                        : n > 0      ? PQexecParams(store->pg->conn, sql, n, NULL, params, NULL, NULL, 0)
                                     : PQexec(store->pg->conn, sql);
        ExecStatusType st = res != NULL ? PQresultStatus(res) : PGRES_FATAL_ERROR;
        if (st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK)
            return res;
        int lost = PQstatus(store->pg->conn) != CONNECTION_OK;
        const char *state = res != NULL ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
        if (!lost && name != NULL && state != NULL && strcmp(state, "0A000") == 0) {
            /* "cached plan must not change result type": another replica changed the schema under
             * the prepared statements; they go with this connection, a new one prepares them again */
            store->pg->broken = 1;
            store->pg->next_connect_ms = 0;
            lost = 1;
        }
        if (lost && !store->pg->in_tx && attempt == 0) {
            /* PostgreSQL restarted since the last call: one more try on a new connection */
            PQclear(res);
            store->pg->broken = 1;
            store->pg->next_connect_ms = 0;
            continue;
        }
        pg_fail(store, what, res);
        PQclear(res);
        return NULL;
    }
}

int pg_pipeline(cp_store_t *store, const char *what, const pg_stmt_t *stmts, size_t n, PGresult **results)
{
    cp_pg_t *pg = store->pg;
    memset(results, 0, n * sizeof(*results));
    if (n == 0)
        return CP_STORE_OK;
    if (ensure(store) != CP_STORE_OK) {
        PW_ERROR("store: %s", store->errmsg);
        return CP_STORE_ERROR;
    }
    /* prepared before the pipeline starts (PQprepare waits for its answer) */
    const char **names = calloc(n, sizeof(*names));
    if (names == NULL) {
        snprintf(store->errmsg, sizeof(store->errmsg), "out of memory");
        return CP_STORE_ERROR;
    }
    for (size_t i = 0; i < n; i++)
        names[i] = prepared_name(pg, stmts[i].sql, stmts[i].n);
    int ok = PQenterPipelineMode(pg->conn) == 1;
    for (size_t i = 0; ok && i < n; i++)
        ok = (names[i] != NULL ? PQsendQueryPrepared(pg->conn, names[i], stmts[i].n, stmts[i].params, NULL, NULL, 0)
                               : PQsendQueryParams(pg->conn, stmts[i].sql, stmts[i].n, NULL, stmts[i].params, NULL, NULL, 0)) == 1;
    free(names);
    if (ok)
        ok = PQpipelineSync(pg->conn) == 1;
    if (!ok) {
        /* nothing was sent, or the connection failed: it cannot be trusted for the transaction */
        pg_fail(store, what, NULL);
        pg->broken = 1;
        PQexitPipelineMode(pg->conn);
        return CP_STORE_ERROR;
    }
    /* each statement's result, then NULL; then the sync point. A failed statement aborts the ones
     * after it (PGRES_PIPELINE_ABORTED) */
    size_t at = 0;
    int failed = 0, synced = 0;
    while (!synced) {
        PGresult *res = PQgetResult(pg->conn);
        if (res == NULL) {
            if (PQstatus(pg->conn) != CONNECTION_OK) {
                if (!failed)
                    pg_fail(store, what, NULL);
                failed = 1;
                break;
            }
            if (++at > n) { /* the end of one statement's results; never more than were sent */
                if (!failed)
                    snprintf(store->errmsg, sizeof(store->errmsg), "%s: more results than statements", what);
                failed = 1;
                pg->broken = 1;
                break;
            }
            continue;
        }
        ExecStatusType st = PQresultStatus(res);
        if (st == PGRES_PIPELINE_SYNC) {
            PQclear(res);
            synced = 1;
        } else if ((st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK) && at < n && results[at] == NULL) {
            results[at] = res;
        } else {
            if (!failed && st != PGRES_PIPELINE_ABORTED)
                pg_fail(store, what, res);
            failed = 1;
            PQclear(res);
        }
    }
    if (PQexitPipelineMode(pg->conn) != 1)
        pg->broken = 1;
    if (failed || at != n) {
        if (!failed)
            snprintf(store->errmsg, sizeof(store->errmsg), "%s: %zu results for %zu statements", what, at, n);
        for (size_t i = 0; i < n; i++) {
            PQclear(results[i]);
            results[i] = NULL;
        }
        return CP_STORE_ERROR;
    }
    return CP_STORE_OK;
}

int pg_exec(cp_store_t *store, const char *what, const char *sql, int n, const char *const *params)
{
    PGresult *res = pg_query(store, what, sql, n, params);
    if (res == NULL)
        return CP_STORE_ERROR;
    PQclear(res);
    return CP_STORE_OK;
}

void pg_abandon(cp_store_t *store)
{
    cp_pg_t *pg = store->pg;
    if (!pg->in_tx)
        return;
    pg->in_tx = 0;
    if (pg->conn != NULL && PQstatus(pg->conn) == CONNECTION_OK) {
        PGresult *res = PQexec(pg->conn, "ROLLBACK");
        PQclear(res);
    }
}

int pg_begin_mode(cp_store_t *store, int durable)
{
    if (store->pg->in_tx) {
        snprintf(store->errmsg, sizeof(store->errmsg), "a transaction is open already");
        return CP_STORE_ERROR;
    }
    if (pg_exec(store, "begin",
                durable ? "BEGIN; SET LOCAL synchronous_commit TO on" : "BEGIN; SET LOCAL synchronous_commit TO off", 0,
                NULL) != CP_STORE_OK)
        return CP_STORE_ERROR;
    store->pg->in_tx = 1;
    return CP_STORE_OK;
}

static int pg_begin(cp_store_t *store)
{
    return pg_begin_mode(store, 1);
}

int pg_commit(cp_store_t *store)
{
    if (pg_exec(store, "commit", "COMMIT", 0, NULL) == CP_STORE_OK) {
        store->pg->in_tx = 0;
        return CP_STORE_OK;
    }
    pg_abandon(store);
    return CP_STORE_ERROR;
}

char *pg_i64(char buf[24], int64_t v)
{
    snprintf(buf, 24, "%" PRId64, v);
    return buf;
}

static int load_active(cp_store_t *store)
{
    PGresult *res =
        pg_query(store, "reading the active version", "SELECT version, hash FROM versions ORDER BY version DESC LIMIT 1", 0, NULL);
    if (res == NULL)
        return CP_STORE_ERROR;
    if (PQntuples(res) > 0) {
        store->active = strtoll(PQgetvalue(res, 0, 0), NULL, 10);
        snprintf(store->active_hash, sizeof(store->active_hash), "%s", PQgetvalue(res, 0, 1));
    } else {
        store->active = 0;
        store->active_hash[0] = '\0';
    }
    PQclear(res);
    return CP_STORE_OK;
}

static int pg_refresh(cp_store_t *store)
{
    int64_t before = store->active;
    if (store->pg->in_tx)
        return CP_STORE_OK;
    if (load_active(store) != CP_STORE_OK)
        return CP_STORE_ERROR;
    if (store->active != before && store->on_change != NULL)
        store->on_change(store->on_change_arg);
    return CP_STORE_OK;
}

static int migrate(cp_store_t *store)
{
    /* one replica at a time: the others wait here, then find the migrations applied */
    char key[24];
    const char *p[] = {pg_i64(key, CP_PG_MIGRATE_LOCK)};
    if (pg_exec(store, "waiting for the migration lock", "SELECT pg_advisory_lock($1::bigint)", 1, p) != CP_STORE_OK)
        return CP_STORE_ERROR;
    int ret = CP_STORE_ERROR;
    PGresult *res = NULL;
    if (pg_exec(store, "creating schema_migrations",
                "CREATE TABLE IF NOT EXISTS schema_migrations (number INTEGER PRIMARY KEY, name TEXT NOT NULL, "
                "applied_ms BIGINT NOT NULL)",
                0, NULL) != CP_STORE_OK)
        goto Exit;
    res = pg_query(store, "reading schema_migrations", "SELECT coalesce(max(number), 0) FROM schema_migrations", 0, NULL);
    if (res == NULL)
        goto Exit;
    int applied = (int)strtol(PQgetvalue(res, 0, 0), NULL, 10);
    PQclear(res);
    res = NULL;
    int newest = cp_pg_migrations_count > 0 ? cp_pg_migrations[cp_pg_migrations_count - 1].number : 0;
    if (applied > newest) {
        snprintf(store->errmsg, sizeof(store->errmsg),
                 "the database has migration %d, this pathway-control knows up to %d: use a newer binary", applied, newest);
        goto Exit;
    }
    for (size_t i = 0; i < cp_pg_migrations_count; i++) {
        const cp_migration_t *m = &cp_pg_migrations[i];
        if (m->number <= applied)
            continue;
        if (pg_begin_mode(store, 1) != CP_STORE_OK)
            goto Exit;
        char num[24], ms[24];
        const char *ip[] = {pg_i64(num, m->number), m->name, pg_i64(ms, cp_now_ms())};
        if (pg_exec(store, m->name, m->sql, 0, NULL) != CP_STORE_OK ||
            pg_exec(store, "recording a migration", "INSERT INTO schema_migrations (number, name, applied_ms) VALUES ($1, $2, $3)",
                    3, ip) != CP_STORE_OK ||
            pg_commit(store) != CP_STORE_OK) {
            char why[200];
            snprintf(why, sizeof(why), "%.190s", store->errmsg);
            pg_abandon(store);
            snprintf(store->errmsg, sizeof(store->errmsg), "migration %s: %s", m->name, why);
            goto Exit;
        }
        PW_INFO("store: applied migration %s", m->name);
        applied = m->number;
    }
    store->schema_version = applied;
    ret = CP_STORE_OK;
Exit:
    if (store->pg->conn != NULL && PQstatus(store->pg->conn) == CONNECTION_OK) {
        PGresult *u = PQexecParams(store->pg->conn, "SELECT pg_advisory_unlock($1::bigint)", 1, NULL, p, NULL, NULL, 0);
        PQclear(u);
    }
    return ret;
}

/* --- LISTEN ------------------------------------------------------------------------------------ */

static void listen_close(cp_pg_t *pg)
{
    if (pg->listen != NULL) {
        PQfinish(pg->listen);
        pg->listen = NULL;
    }
}

/* Opens the listening connection; 0 or -1 (retried by pg_tick). */
static int listen_open(cp_store_t *store)
{
    cp_pg_t *pg = store->pg;
    char err[256];
    pg->listen = pg_connect(pg->url, "pathway-control listen", err, sizeof(err));
    if (pg->listen == NULL) {
        if (!pg->listen_warned)
            PW_WARN("store: cannot LISTEN for other replicas' versions (retrying every %d ms): %s", RECONNECT_MS, err);
        pg->listen_warned = 1;
        return -1;
    }
    pg->listen_warned = 0;
    PGresult *res = PQexec(pg->listen, "LISTEN " CHANNEL);
    int ok = res != NULL && PQresultStatus(res) == PGRES_COMMAND_OK;
    PQclear(res);
    if (!ok || PQsetnonblocking(pg->listen, 1) != 0) {
        char why[200];
        one_line(PQerrorMessage(pg->listen), why, sizeof(why));
        PW_WARN("store: LISTEN failed (retrying): %s", why);
        listen_close(pg);
        return -1;
    }
    return 0;
}

static int pg_listen_fd(cp_store_t *store)
{
    return store->pg->listen != NULL ? PQsocket(store->pg->listen) : -1;
}

static void pg_notified(cp_store_t *store)
{
    cp_pg_t *pg = store->pg;
    if (pg->listen == NULL)
        return;
    int alive = PQconsumeInput(pg->listen) == 1 && PQstatus(pg->listen) == CONNECTION_OK;
    PGnotify *n;
    int got = 0;
    while ((n = PQnotifies(pg->listen)) != NULL) {
        got = 1;
        PQfreemem(n);
    }
    if (!alive) {
        char why[200];
        one_line(PQerrorMessage(pg->listen), why, sizeof(why));
        PW_WARN("store: the listening connection to PostgreSQL was lost: %s", why);
        listen_close(pg);
        /* the query connection most likely went with it: reconnect it on the next call */
        pg->broken = 1;
        pg->next_connect_ms = 0;
        return;
    }
    if (got)
        pg_refresh(store);
}

static int pg_tick(cp_store_t *store)
{
    cp_pg_t *pg = store->pg;
    if (pg->listen != NULL)
        return 0;
    int64_t now = cp_now_ms();
    if (now < pg->next_listen_ms)
        return 0;
    pg->next_listen_ms = now + RECONNECT_MS;
    if (listen_open(store) != 0)
        return 0;
    PW_INFO("store: listening for other replicas' versions again");
    /* what was committed while it was down was not notified here */
    pg_refresh(store);
    return 1;
}

/* --- open, close -------------------------------------------------------------------------------- */

static void pg_close(cp_store_t *store)
{
    cp_pg_t *pg = store->pg;
    if (pg != NULL) {
        listen_close(pg);
        if (pg->lease != NULL)
            PQfinish(pg->lease);
        if (pg->conn != NULL)
            PQfinish(pg->conn);
        prepared_clear(pg);
        free(pg->prepared);
        free(pg->url);
        free(pg);
    }
    free(store);
}

cp_store_t *cp_store_pg_open(const char *url, char *err, size_t errlen)
{
    cp_store_t *store = calloc(1, sizeof(*store));
    cp_pg_t *pg = calloc(1, sizeof(*pg));
    if (store == NULL || pg == NULL || (pg->url = strdup(url)) == NULL) {
        free(store);
        free(pg);
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    store->ops = &pg_ops;
    store->pg = pg;
    pg->conn = pg_connect(url, "pathway-control", pg->last_connect_error, sizeof(pg->last_connect_error));
    if (pg->conn == NULL) {
        snprintf(err, errlen, "database unavailable: %s", pg->last_connect_error);
        pg_close(store);
        return NULL;
    }
    if (migrate(store) != CP_STORE_OK || load_active(store) != CP_STORE_OK) {
        snprintf(err, errlen, "%s", store->errmsg);
        pg_close(store);
        return NULL;
    }
    listen_open(store);
    return store;
}

/* --- versions ----------------------------------------------------------------------------------- */

#define VERSION_COLUMNS "version, created_ms, author, message, kind, coalesce(source_version, 0), hash"

static int read_version(PGresult *res, int i, cp_version_t *out, int with_document)
{
    pg_row_t r = {res, i};
    memset(out, 0, sizeof(*out));
    out->version = strtoll(pg_col(&r, 0), NULL, 10);
    out->created_ms = strtoll(pg_col(&r, 1), NULL, 10);
    out->author = strdup(pg_col(&r, 2));
    out->message = strdup(pg_col(&r, 3));
    if (cp_kind_from_name(pg_col(&r, 4), &out->kind) != 0)
        out->kind = CP_KIND_APPLY;
    out->source_version = strtoll(pg_col(&r, 5), NULL, 10);
    snprintf(out->hash, sizeof(out->hash), "%s", pg_col(&r, 6));
    if (with_document)
        out->document = strdup(pg_col(&r, 7));
    if (out->author == NULL || out->message == NULL || (with_document && out->document == NULL)) {
        cp_version_dispose(out);
        return -1;
    }
    return 0;
}

static int pg_get_version(cp_store_t *store, int64_t n, cp_version_t *out)
{
    char nb[24];
    const char *p[] = {pg_i64(nb, n)};
    /* n <= 0: the active one, read from the database (another replica may have written a newer one) */
    PGresult *res = pg_query(store, "reading a version",
                             n > 0 ? "SELECT " VERSION_COLUMNS ", document FROM versions WHERE version = $1::bigint"
                                   : "SELECT " VERSION_COLUMNS ", document FROM versions ORDER BY version DESC LIMIT 1",
                             n > 0 ? 1 : 0, p);
    if (res == NULL)
        return CP_STORE_ERROR;
    int ret = CP_STORE_NOT_FOUND;
    if (PQntuples(res) > 0)
        ret = read_version(res, 0, out, 1) == 0 ? CP_STORE_OK : CP_STORE_ERROR;
    PQclear(res);
    return ret;
}

int pg_event(cp_store_t *store, int64_t now, const char *actor, const char *action, int64_t version, const char *detail)
{
    char nb[24], vb[24];
    const char *p[] = {pg_i64(nb, now), actor, action, pg_i64(vb, version), detail != NULL ? detail : ""};
    /* a version this database does not have (an ACK of a number from elsewhere) is recorded as none */
    return pg_exec(store, "appending an event",
                   "INSERT INTO events (created_ms, actor, action, version, detail) "
                   "VALUES ($1, $2, $3, (SELECT version FROM versions WHERE version = $4::bigint), $5)",
                   5, p);
}

/* Serializes appends (versions, tags) across replicas until the transaction ends. */
static int lock_appends(cp_store_t *store)
{
    char key[24];
    const char *p[] = {pg_i64(key, CP_PG_APPEND_LOCK)};
    return pg_exec(store, "waiting for the append lock", "SELECT pg_advisory_xact_lock($1::bigint)", 1, p);
}

static int pg_append(cp_store_t *store, const cp_append_t *a, int64_t *version)
{
    int64_t before = store->active;
    if (pg_begin_mode(store, 1) != CP_STORE_OK)
        return CP_STORE_ERROR;
    /* under the lock, the head read here is the newest committed: the check and the insert see the
     * same active version, on every replica */
    if (lock_appends(store) != CP_STORE_OK || load_active(store) != CP_STORE_OK)
        goto Error;
    int changed = store->active != before;
    if (a->if_match >= 0 && a->if_match != store->active) {
        pg_abandon(store);
        if (changed && store->on_change != NULL)
            store->on_change(store->on_change_arg);
        return CP_STORE_CONFLICT;
    }
    if (store->active > 0 && strcmp(store->active_hash, a->hash) == 0) {
        pg_abandon(store);
        if (changed && store->on_change != NULL)
            store->on_change(store->on_change_arg);
        *version = store->active;
        return CP_STORE_UNCHANGED;
    }
    int64_t next = store->active + 1, now = cp_now_ms();
    char nb[24], tb[24], sb[24];
    const char *p[] = {pg_i64(nb, next),
                       pg_i64(tb, now),
                       a->author,
                       a->message != NULL ? a->message : "",
                       cp_kind_name(a->kind),
                       a->source_version > 0 ? pg_i64(sb, a->source_version) : NULL,
                       a->document,
                       a->hash};
    if (pg_exec(store, "inserting a version",
                "INSERT INTO versions (version, created_ms, author, message, kind, source_version, document, hash) "
                "VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
                8, p) != CP_STORE_OK)
        goto Error;
    if (pg_event(store, now, a->author, cp_kind_name(a->kind), next, a->message) != CP_STORE_OK)
        goto Error;
    if (a->hook != NULL && a->hook(store, next, a->hook_arg) != CP_STORE_OK)
        goto Error;
    /* delivered to the listeners (every replica, this one too) when the transaction commits */
    const char *np[] = {nb};
    if (pg_exec(store, "notifying", "SELECT pg_notify('" CHANNEL "', $1)", 1, np) != CP_STORE_OK)
        goto Error;
    /* synchronous_commit on: COMMIT returns once the WAL is flushed, so the caller may acknowledge */
    if (pg_commit(store) != CP_STORE_OK)
        goto Error;
    store->active = next;
    snprintf(store->active_hash, sizeof(store->active_hash), "%s", a->hash);
    *version = next;
    /* the caller wakes the long polls for this one (the versions between were notified) */
    return CP_STORE_CREATED;

Error:
    pg_abandon(store);
    store->active = before;
    pg_refresh(store);
    return CP_STORE_ERROR;
}

/* A listing's filter as parameters 3 (who) and 4 (what); NULL keeps all. */
static json_t *pg_list_versions(cp_store_t *store, int64_t before, int limit, const cp_list_filter_t *f)
{
    char bb[24], lb[24];
    const char *p[] = {pg_i64(bb, before > 0 ? before : INT64_MAX), pg_i64(lb, limit), f != NULL ? f->who : NULL,
                       f != NULL ? f->what : NULL};
    PGresult *res = pg_query(store, "listing versions",
                             "SELECT " VERSION_COLUMNS " FROM versions WHERE version < $1::bigint "
                             "AND ($3::text IS NULL OR author = $3::text) AND ($4::text IS NULL OR kind = $4::text) "
                             "ORDER BY version DESC LIMIT $2::bigint",
                             4, p);
    if (res == NULL)
        return NULL;
    json_t *arr = json_array();
    for (int i = 0; arr != NULL && i < PQntuples(res); i++) {
        cp_version_t v;
        if (read_version(res, i, &v, 0) != 0) {
            json_decref(arr);
            arr = NULL;
            break;
        }
        json_array_append_new(arr, cp_version_summary_json(&v));
        cp_version_dispose(&v);
    }
    PQclear(res);
    return arr;
}

/* --- tags --------------------------------------------------------------------------------------- */

static int append_tag_row(cp_store_t *store, const char *name, int64_t version, int deleted, const char *author,
                          const char *message)
{
    int64_t now = cp_now_ms();
    char vb[24], tb[24];
    const char *p[] = {name, pg_i64(vb, version), pg_i64(tb, now), author, message != NULL ? message : "", deleted ? "1" : "0"};
    if (pg_exec(store, "inserting a tag",
                "INSERT INTO tags (name, version, created_ms, author, message, deleted) VALUES ($1, $2, $3, $4, $5, $6)", 6,
                p) != CP_STORE_OK)
        return CP_STORE_ERROR;
    size_t dlen = strlen(name) + (message != NULL ? strlen(message) : 0) + 8;
    char *detail = malloc(dlen);
    if (detail == NULL)
        return CP_STORE_ERROR;
    snprintf(detail, dlen, "%s%s%s", name, message != NULL && message[0] ? ": " : "", message != NULL ? message : "");
    int rc = pg_event(store, now, author, deleted ? "tag_delete" : "tag", version, detail);
    free(detail);
    return rc;
}

static int pg_get_tag(cp_store_t *store, const char *name, int64_t *version)
{
    const char *p[] = {name};
    PGresult *res =
        pg_query(store, "reading a tag", "SELECT version, deleted FROM tags WHERE name = $1 ORDER BY id DESC LIMIT 1", 1, p);
    if (res == NULL)
        return CP_STORE_ERROR;
    int ret = CP_STORE_NOT_FOUND;
    if (PQntuples(res) > 0) {
        *version = strtoll(PQgetvalue(res, 0, 0), NULL, 10);
        ret = strtol(PQgetvalue(res, 0, 1), NULL, 10) ? CP_STORE_NOT_FOUND : CP_STORE_OK;
    }
    PQclear(res);
    return ret;
}

static int pg_set_tag(cp_store_t *store, const char *name, int64_t version, const char *author, const char *message)
{
    if (version < 1)
        return CP_STORE_NOT_FOUND;
    if (pg_begin_mode(store, 1) != CP_STORE_OK)
        return CP_STORE_ERROR;
    char vb[24];
    const char *p[] = {pg_i64(vb, version)};
    PGresult *res = NULL;
    int rc = lock_appends(store);
    if (rc == CP_STORE_OK) {
        res = pg_query(store, "reading a version", "SELECT 1 FROM versions WHERE version = $1::bigint", 1, p);
        rc = res == NULL ? CP_STORE_ERROR : PQntuples(res) == 0 ? CP_STORE_NOT_FOUND : CP_STORE_OK;
        PQclear(res);
    }
    if (rc == CP_STORE_OK)
        rc = append_tag_row(store, name, version, 0, author, message);
    if (rc == CP_STORE_OK && pg_commit(store) != CP_STORE_OK)
        rc = CP_STORE_ERROR;
    if (rc != CP_STORE_OK)
        pg_abandon(store);
    return rc;
}

static int pg_delete_tag(cp_store_t *store, const char *name, const char *author, const char *message, int64_t *version)
{
    if (pg_begin_mode(store, 1) != CP_STORE_OK)
        return CP_STORE_ERROR;
    /* under the lock: a deletion names the version the tag pointed at just then, and two replicas
     * cannot both delete it */
    int64_t v = 0;
    int rc = lock_appends(store);
    if (rc == CP_STORE_OK)
        rc = pg_get_tag(store, name, &v);
    if (rc == CP_STORE_OK)
        rc = append_tag_row(store, name, v, 1, author, message);
    if (rc == CP_STORE_OK && pg_commit(store) != CP_STORE_OK)
        rc = CP_STORE_ERROR;
    if (rc != CP_STORE_OK)
        pg_abandon(store);
    else if (version != NULL)
        *version = v;
    return rc;
}

/* A row of SELECT name, version, created_ms, author, message, deleted FROM tags. */
static json_t *tag_row_json(PGresult *res, int i, int with_name)
{
    json_t *o = json_pack("{sI so ss ss}", "version", (json_int_t)strtoll(PQgetvalue(res, i, 1), NULL, 10), "updated_at",
                          cp_time_json(strtoll(PQgetvalue(res, i, 2), NULL, 10)), "author", PQgetvalue(res, i, 3), "message",
                          PQgetvalue(res, i, 4));
    if (o != NULL && with_name)
        json_object_set_new(o, "name", json_string(PQgetvalue(res, i, 0)));
    if (o != NULL && strtol(PQgetvalue(res, i, 5), NULL, 10))
        json_object_set_new(o, "deleted", json_true());
    return o;
}

static json_t *pg_tag_json(cp_store_t *store, const char *name, int *rc_out)
{
    const char *p[] = {name};
    PGresult *res =
        pg_query(store, "reading a tag",
                 "SELECT name, version, created_ms, author, message, deleted FROM tags WHERE name = $1 ORDER BY id DESC", 1, p);
    if (res == NULL) {
        *rc_out = CP_STORE_ERROR;
        return NULL;
    }
    int n = PQntuples(res);
    if (n == 0 || strtol(PQgetvalue(res, 0, 5), NULL, 10)) {
        PQclear(res);
        *rc_out = CP_STORE_NOT_FOUND;
        return NULL;
    }
    json_t *tag = tag_row_json(res, 0, 1), *history = json_array();
    for (int i = 0; history != NULL && i < n; i++)
        json_array_append_new(history, tag_row_json(res, i, 0));
    PQclear(res);
    if (tag == NULL || history == NULL) {
        json_decref(tag);
        json_decref(history);
        *rc_out = CP_STORE_ERROR;
        return NULL;
    }
    json_object_set_new(tag, "history", history);
    *rc_out = CP_STORE_OK;
    return tag;
}

static json_t *pg_list_tags(cp_store_t *store)
{
    PGresult *res = pg_query(store, "listing tags",
                             "SELECT t.name, t.version, t.created_ms, t.author, t.message, t.deleted FROM tags t "
                             "WHERE t.id = (SELECT max(id) FROM tags u WHERE u.name = t.name) AND t.deleted = 0 "
                             "ORDER BY t.name COLLATE \"C\"",
                             0, NULL);
    if (res == NULL)
        return NULL;
    json_t *arr = json_array();
    for (int i = 0; arr != NULL && i < PQntuples(res); i++)
        json_array_append_new(arr, tag_row_json(res, i, 1));
    PQclear(res);
    return arr;
}

/* --- events ------------------------------------------------------------------------------------- */

static json_t *pg_list_events(cp_store_t *store, int64_t before, int limit, const cp_list_filter_t *f)
{
    char bb[24], lb[24];
    const char *p[] = {pg_i64(bb, before > 0 ? before : INT64_MAX), pg_i64(lb, limit), f != NULL ? f->who : NULL,
                       f != NULL ? f->what : NULL};
    PGresult *res = pg_query(store, "listing events",
                             "SELECT id, created_ms, actor, action, coalesce(version, 0), detail FROM events "
                             "WHERE id < $1::bigint AND ($3::text IS NULL OR actor = $3::text) "
                             "AND ($4::text IS NULL OR action = $4::text) ORDER BY id DESC LIMIT $2::bigint",
                             4, p);
    if (res == NULL)
        return NULL;
    json_t *arr = json_array();
    for (int i = 0; arr != NULL && i < PQntuples(res); i++) {
        int64_t v = strtoll(PQgetvalue(res, i, 4), NULL, 10);
        json_array_append_new(arr, json_pack("{sI so ss ss so ss}", "id", (json_int_t)strtoll(PQgetvalue(res, i, 0), NULL, 10),
                                             "time", cp_time_json(strtoll(PQgetvalue(res, i, 1), NULL, 10)), "actor",
                                             PQgetvalue(res, i, 2), "action", PQgetvalue(res, i, 3), "version",
                                             v > 0 ? json_integer(v) : json_null(), "message", PQgetvalue(res, i, 5)));
    }
    PQclear(res);
    return arr;
}

static const cp_store_ops_t pg_ops = {
    .name = "postgresql",
    .close = pg_close,
    .get_version = pg_get_version,
    .append = pg_append,
    .list_versions = pg_list_versions,
    .set_tag = pg_set_tag,
    .get_tag = pg_get_tag,
    .tag_json = pg_tag_json,
    .list_tags = pg_list_tags,
    .delete_tag = pg_delete_tag,
    .list_events = pg_list_events,
    .begin = pg_begin,
    .commit = pg_commit,
    .abandon = pg_abandon,
    .event = pg_event,
    .dataplane_seen = pg_dataplane_seen,
    .dataplanes_delivered = pg_dataplanes_delivered,
    .dataplane_reports = pg_dataplane_reports,
    .traffic_since = pg_traffic_since,
    .forget_dataplane = pg_forget_dataplane,
    .dataplane_admit = pg_dataplane_admit,
    .get_dataplane = pg_get_dataplane,
    .list_dataplanes = pg_list_dataplanes,
    .dataplane_labels = pg_dataplane_labels,
    .get_dataplanes = pg_get_dataplanes,
    .dataplanes_polled = pg_dataplanes_polled,
    .ro_insert = pg_ro_insert,
    .ro_update = pg_ro_update,
    .ro_verdict = pg_ro_verdict,
    .ro_get = pg_ro_get,
    .ro_newest = pg_ro_newest,
    .ro_list = pg_ro_list,
    .ro_verdicts = pg_ro_verdicts,
    .ro_verdict_counts = pg_ro_verdict_counts,
    .refresh = pg_refresh,
    .listen_fd = pg_listen_fd,
    .notified = pg_notified,
    .tick = pg_tick,
    .lease = pg_lease,
};
