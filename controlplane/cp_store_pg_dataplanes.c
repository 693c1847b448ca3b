/*
 * The dataplanes' rows on PostgreSQL (cp_store_sqlite_dataplanes.c's SQL, translated): live state
 * written with synchronous_commit off, the ACK/NACK and forget events as history. Every replica
 * writes and reads the same rows, so any of them answers GET /v1/dataplanes.
 */
#include "cp_store_pg.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int upsert_seen(cp_store_t *store, const char *id, int64_t now_ms)
{
    char nb[24];
    const char *p[] = {id, pg_i64(nb, now_ms)};
    return pg_exec(store, "recording a dataplane",
                   "INSERT INTO dataplanes (id, first_seen_ms, last_seen_ms) VALUES ($1, $2, $2) "
                   "ON CONFLICT (id) DO UPDATE SET last_seen_ms = excluded.last_seen_ms",
                   2, p);
}

static int end_live_write(cp_store_t *store, int ok)
{
    if (ok && pg_commit(store) == CP_STORE_OK)
        return CP_STORE_OK;
    pg_abandon(store);
    return CP_STORE_ERROR;
}

int pg_dataplane_seen(cp_store_t *store, const char *id, int64_t now_ms, int64_t delivered)
{
    if (pg_begin_mode(store, 0) != CP_STORE_OK)
        return CP_STORE_ERROR;
    int ok = now_ms <= 0 || upsert_seen(store, id, now_ms) == CP_STORE_OK;
    if (ok && delivered > 0) {
        char db[24];
        const char *p[] = {pg_i64(db, delivered), id};
        ok = pg_exec(store, "recording a delivery",
                     "UPDATE dataplanes SET delivered_version = $1, delivered_since_report = 1 WHERE id = $2", 2, p) == CP_STORE_OK;
    }
    return end_live_write(store, ok);
}

char *pg_text_array(cp_store_t *store, const char *const *v, size_t n)
{
    size_t len = 3;
    for (size_t i = 0; i < n; i++)
        len += (v[i] != NULL ? 2 * strlen(v[i]) : 4) + 3;
    char *arr = malloc(len), *w = arr;
    if (arr == NULL) {
        snprintf(store->errmsg, sizeof(store->errmsg), "out of memory");
        return NULL;
    }
    *w++ = '{';
    for (size_t i = 0; i < n; i++) {
        if (i > 0)
            *w++ = ',';
        if (v[i] == NULL) {
            memcpy(w, "NULL", 4);
            w += 4;
            continue;
        }
        *w++ = '"';
        for (const char *s = v[i]; *s; s++) {
            if (*s == '"' || *s == '\\')
                *w++ = '\\';
            *w++ = *s;
        }
        *w++ = '"';
    }
    *w++ = '}';
    *w = '\0';
    return arr;
}

int pg_dataplanes_delivered(cp_store_t *store, const char *const *ids, size_t n, int64_t delivered)
{
    if (n == 0)
        return CP_STORE_OK;
    /* one statement for the batch: ids as a text[] */
    char *arr = pg_text_array(store, ids, n);
    if (arr == NULL)
        return CP_STORE_ERROR;
    char db[24];
    const char *p[] = {pg_i64(db, delivered), arr};
    int rc = CP_STORE_ERROR;
    if (pg_begin_mode(store, 0) == CP_STORE_OK)
        rc = end_live_write(store, pg_exec(store, "recording deliveries",
                                           "UPDATE dataplanes SET delivered_version = $1, delivered_since_report = 1 "
                                           "WHERE id = ANY ($2::text[])",
                                           2, p) == CP_STORE_OK);
    free(arr);
    return rc;
}

int pg_get_dataplanes(cp_store_t *store, const char *const *ids, size_t n, int narrow, cp_dataplane_t *out, int *found)
{
    /* one round trip for them all; rows are matched back to ids (an id may be asked twice) */
    char *arr = pg_text_array(store, ids, n);
    if (arr == NULL)
        return CP_STORE_ERROR;
    const char *p[] = {arr};
    PGresult *res = pg_query(store, "reading dataplanes",
                             narrow ? "SELECT " CP_DP_STATE_COLUMNS " FROM dataplanes WHERE id = ANY ($1::text[])"
                                    : "SELECT " CP_DP_COLUMNS " FROM dataplanes WHERE id = ANY ($1::text[])",
                             1, p);
    free(arr);
    if (res == NULL)
        return CP_STORE_ERROR;
    int ret = CP_STORE_OK;
    for (int row = 0; row < PQntuples(res) && ret == CP_STORE_OK; row++) {
        const char *id = PQgetvalue(res, row, 0);
        for (size_t i = 0; i < n && ret == CP_STORE_OK; i++) {
            if (found[i] || strcmp(ids[i], id) != 0)
                continue;
            pg_row_t r = {res, row};
            if (cp_dp_from_row(pg_col, &r, &out[i]) == 0)
                found[i] = 1;
            else
                ret = CP_STORE_ERROR;
        }
    }
    PQclear(res);
    if (ret != CP_STORE_OK) {
        snprintf(store->errmsg, sizeof(store->errmsg), "out of memory");
        for (size_t i = 0; i < n; i++)
            if (found[i]) {
                cp_dataplane_dispose(&out[i]);
                found[i] = 0;
            }
    }
    return ret;
}

int pg_dataplanes_polled(cp_store_t *store, const cp_dp_poll_t *polls, size_t n, int64_t now_ms)
{
    /* two statements for the batch: last seen for all, then the labels sent (text[] of JSON, NULL
     * where none was sent) */
    const char **ids = calloc(n, sizeof(*ids)), **labels = calloc(n, sizeof(*labels));
    char *id_arr = NULL, *label_arr = NULL;
    int ok = ids != NULL && labels != NULL, any_labels = 0;
    for (size_t i = 0; ok && i < n; i++) {
        ids[i] = polls[i].id;
        if (polls[i].labels != NULL) {
            any_labels = 1;
            ok = (labels[i] = json_dumps(polls[i].labels, JSON_COMPACT | JSON_SORT_KEYS)) != NULL;
        }
    }
    if (!ok)
        snprintf(store->errmsg, sizeof(store->errmsg), "out of memory");
    ok = ok && (id_arr = pg_text_array(store, ids, n)) != NULL &&
         (!any_labels || (label_arr = pg_text_array(store, labels, n)) != NULL);
    int rc = CP_STORE_ERROR;
    if (ok && pg_begin_mode(store, 0) == CP_STORE_OK) {
        char nb[24];
        const char *sp[] = {id_arr, pg_i64(nb, now_ms)};
        ok = pg_exec(store, "recording dataplanes", "UPDATE dataplanes SET last_seen_ms = $2 WHERE id = ANY ($1::text[])", 2, sp) ==
             CP_STORE_OK;
        if (ok && any_labels) {
            const char *lp[] = {id_arr, label_arr};
            ok = pg_exec(store, "storing labels",
                         "UPDATE dataplanes d SET labels = v.l FROM unnest($1::text[], $2::text[]) AS v (id, l) "
                         "WHERE d.id = v.id AND v.l IS NOT NULL AND d.labels <> v.l",
                         2, lp) == CP_STORE_OK;
        }
        rc = end_live_write(store, ok);
    }
    if (labels != NULL)
        for (size_t i = 0; i < n; i++)
            free((char *)labels[i]);
    free(labels);
    free(ids);
    free(id_arr);
    free(label_arr);
    return rc;
}

int pg_get_dataplane(cp_store_t *store, const char *id, cp_dataplane_t *out)
{
    const char *p[] = {id};
    PGresult *res = pg_query(store, "reading a dataplane", "SELECT " CP_DP_COLUMNS " FROM dataplanes WHERE id = $1", 1, p);
    if (res == NULL)
        return CP_STORE_ERROR;
    int ret = CP_STORE_NOT_FOUND;
    if (PQntuples(res) > 0) {
        pg_row_t r = {res, 0};
        ret = cp_dp_from_row(pg_col, &r, out) == 0 ? CP_STORE_OK : CP_STORE_ERROR;
    }
    PQclear(res);
    return ret;
}

int pg_list_dataplanes(cp_store_t *store, const char *after, int limit, int narrow, cp_dataplane_t **out, size_t *count)
{
    *out = NULL;
    *count = 0;
    char lb[24];
    const char *p[] = {after != NULL ? after : "", limit > 0 ? pg_i64(lb, limit) : NULL};
    /* ordered by bytes, as sqlite does, whatever the database's collation */
    PGresult *res =
        pg_query(store, "listing dataplanes",
                 narrow ? "SELECT " CP_DP_STATE_COLUMNS " FROM dataplanes WHERE id COLLATE \"C\" > $1::text COLLATE \"C\" "
                          "ORDER BY id COLLATE \"C\" LIMIT $2::bigint"
                        : "SELECT " CP_DP_COLUMNS " FROM dataplanes WHERE id COLLATE \"C\" > $1::text COLLATE \"C\" "
                          "ORDER BY id COLLATE \"C\" LIMIT $2::bigint",
                 2, p);
    if (res == NULL)
        return CP_STORE_ERROR;
    int n = PQntuples(res);
    if (n > 0 && (*out = calloc((size_t)n, sizeof(**out))) == NULL) {
        PQclear(res);
        return CP_STORE_ERROR;
    }
    for (int i = 0; i < n; i++) {
        pg_row_t r = {res, i};
        if (cp_dp_from_row(pg_col, &r, &(*out)[i]) != 0) {
            PQclear(res);
            cp_dataplanes_free(*out, *count);
            *out = NULL;
            *count = 0;
            return CP_STORE_ERROR;
        }
        ++*count;
    }
    PQclear(res);
    return CP_STORE_OK;
}

int pg_dataplane_admit(cp_store_t *store, const char *id, uint64_t max)
{
    const char *p[] = {id};
    PGresult *res = pg_query(store, "counting dataplanes", "SELECT 1 FROM dataplanes WHERE id = $1", 1, p);
    if (res == NULL)
        return CP_STORE_ERROR;
    int known = PQntuples(res) > 0;
    PQclear(res);
    if (known)
        return CP_STORE_OK;
    /* a new one: count and insert its row under one lock, so that replicas admitting at once cannot
     * both take the last free place */
    if (pg_begin_mode(store, 0) != CP_STORE_OK)
        return CP_STORE_ERROR;
    char lk[24], nb[24], mb[24];
    const char *lp[] = {pg_i64(lk, CP_PG_ADMIT_LOCK)};
    int ret = pg_exec(store, "counting dataplanes", "SELECT pg_advisory_xact_lock($1::bigint)", 1, lp);
    if (ret == CP_STORE_OK) {
        const char *ip[] = {id, pg_i64(nb, cp_now_ms()), pg_i64(mb, max > INT64_MAX ? INT64_MAX : (int64_t)max)};
        res = pg_query(store, "admitting a dataplane",
                       "INSERT INTO dataplanes (id, first_seen_ms, last_seen_ms) SELECT $1, $2, $2 "
                       "WHERE (SELECT count(*) FROM dataplanes) < $3::bigint ON CONFLICT (id) DO NOTHING RETURNING 1",
                       3, ip);
        if (res == NULL)
            ret = CP_STORE_ERROR;
        else {
            /* no row: the limit is reached, or another replica inserted it meanwhile (then it is known) */
            ret = PQntuples(res) > 0 ? CP_STORE_OK : CP_STORE_LIMIT;
            PQclear(res);
        }
    }
    if (ret == CP_STORE_ERROR) {
        pg_abandon(store);
        return ret;
    }
    if (pg_commit(store) != CP_STORE_OK)
        return CP_STORE_ERROR;
    if (ret == CP_STORE_LIMIT) {
        /* inserted by another replica between the two queries: known, so admitted */
        res = pg_query(store, "counting dataplanes", "SELECT 1 FROM dataplanes WHERE id = $1", 1, p);
        if (res == NULL)
            return CP_STORE_ERROR;
        if (PQntuples(res) > 0)
            ret = CP_STORE_OK;
        PQclear(res);
    }
    return ret;
}

/* A report's two statements (its row's last seen, returning what the report is compared with; then
 * the report itself), for a pipeline inside the open live transaction. The texts are malloc'd into
 * bufs (free them); 0, or -1 when out of memory. */
typedef struct st_report_bufs_t {
    char nb[24], vb[24];
    char *labels, *stats;
    const char *seen[2];
    const char *update[8];
} report_bufs_t;

static const char REPORT_SEEN_SQL[] = "INSERT INTO dataplanes (id, first_seen_ms, last_seen_ms) VALUES ($1, $2, $2) "
                                      "ON CONFLICT (id) DO UPDATE SET last_seen_ms = excluded.last_seen_ms "
                                      "RETURNING applied_version, rejected_version, error";
/* the same rules as the sqlite store: an ACK clears a rejection only for that version or a newer one;
 * applied_version never goes back; a late heartbeat (an ACK older than the applied version) leaves
 * reported_version and reported_hash alone */
static const char REPORT_SQL[] =
    "UPDATE dataplanes SET reported_version = CASE WHEN $2::boolean AND $1::bigint < applied_version "
    "THEN reported_version ELSE $1::bigint END, delivered_since_report = 0, "
    "applied_version = CASE WHEN $2::boolean AND $1::bigint > applied_version THEN $1::bigint "
    "ELSE applied_version END, "
    "rejected_version = CASE WHEN NOT $2::boolean THEN $1::bigint WHEN rejected_version <= $1::bigint THEN 0 "
    "ELSE rejected_version END, "
    "error = CASE WHEN NOT $2::boolean THEN $3::text WHEN rejected_version <= $1::bigint THEN '' ELSE error END, "
    "labels = coalesce($4::text, labels), stats = coalesce($5::text, stats), "
    "reported_hash = CASE WHEN $2::boolean AND $1::bigint < applied_version THEN reported_hash "
    "ELSE coalesce($7::text, reported_hash) END, traffic = coalesce($8::text, traffic), "
    /* the database's clock: one time line whatever the replicas' clocks say */
    "traffic_ms = CASE WHEN $8::text IS NULL THEN traffic_ms "
    "ELSE (extract(epoch FROM clock_timestamp()) * 1000)::bigint END, "
    "traffic_seq = traffic_seq + CASE WHEN $8::text IS NULL THEN 0 ELSE 1 END WHERE id = $6::text";

static int report_stmts(const cp_dp_report_t *r, report_bufs_t *b, pg_stmt_t st[2])
{
    b->labels = r->labels != NULL ? json_dumps(r->labels, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
    b->stats = r->stats != NULL ? json_dumps(r->stats, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
    if ((r->labels != NULL && b->labels == NULL) || (r->stats != NULL && b->stats == NULL))
        return -1;
    b->seen[0] = r->id;
    b->seen[1] = pg_i64(b->nb, r->now_ms);
    b->update[0] = pg_i64(b->vb, r->version);
    b->update[1] = r->applied ? "t" : "f";
    b->update[2] = r->applied || r->error == NULL ? "" : r->error;
    b->update[3] = b->labels;
    b->update[4] = b->stats;
    b->update[5] = r->id;
    b->update[6] = r->hash;
    b->update[7] = r->traffic;
    st[0] = (pg_stmt_t){REPORT_SEEN_SQL, 2, b->seen};
    st[1] = (pg_stmt_t){REPORT_SQL, 8, b->update};
    return 0;
}

/* Whether a report changes its dataplane's outcome (an event), from the row as it was (the first
 * statement's RETURNING): heartbeats repeat the same report. -1 when the row did not come back. */
static int report_event(const cp_dp_report_t *r, PGresult *prev)
{
    if (prev == NULL || PQntuples(prev) != 1)
        return -1;
    int64_t applied = strtoll(PQgetvalue(prev, 0, 0), NULL, 10), rejected = strtoll(PQgetvalue(prev, 0, 1), NULL, 10);
    return !(r->applied ? applied >= r->version
                        : rejected == r->version && strcmp(PQgetvalue(prev, 0, 2), r->error != NULL ? r->error : "") == 0);
}

/* The events of reports[i] where event[i]: one statement (rows in the reports' order, so their ids
 * follow it), in the open durable transaction. A version this database does not have (an ACK of a
 * number from elsewhere) is recorded as none. */
static int report_events(cp_store_t *store, const cp_dp_report_t *reports, const unsigned char *event, size_t n)
{
    const char **when = calloc(n, sizeof(*when)), **actor = calloc(n, sizeof(*actor)), **action = calloc(n, sizeof(*action)),
               **version = calloc(n, sizeof(*version)), **detail = calloc(n, sizeof(*detail));
    char(*nums)[2][24] = calloc(n, sizeof(*nums));
    char *arr[5] = {NULL};
    int ret = CP_STORE_ERROR;
    size_t k = 0;
    if (when != NULL && actor != NULL && action != NULL && version != NULL && detail != NULL && nums != NULL) {
        for (size_t i = 0; i < n; i++) {
            if (!event[i])
                continue;
            const cp_dp_report_t *r = &reports[i];
            when[k] = pg_i64(nums[k][0], r->now_ms);
            actor[k] = r->id;
            action[k] = r->applied ? "ack" : "nack";
            version[k] = pg_i64(nums[k][1], r->version);
            detail[k] = r->applied || r->error == NULL ? "" : r->error;
            k++;
        }
        const char **cols[5] = {when, actor, action, version, detail};
        int ok = 1;
        for (size_t c = 0; ok && c < 5; c++)
            ok = (arr[c] = pg_text_array(store, cols[c], k)) != NULL;
        if (ok)
            ret = pg_exec(store, "appending events",
                          "INSERT INTO events (created_ms, actor, action, version, detail) "
                          "SELECT e.created_ms, e.actor, e.action, v.version, e.detail "
                          "FROM unnest($1::bigint[], $2::text[], $3::text[], $4::bigint[], $5::text[]) "
                          "WITH ORDINALITY AS e (created_ms, actor, action, version, detail, ord) "
                          "LEFT JOIN versions v ON v.version = e.version ORDER BY e.ord",
                          5, (const char *const *)arr);
    } else {
        snprintf(store->errmsg, sizeof(store->errmsg), "out of memory");
    }
    for (size_t c = 0; c < 5; c++)
        free(arr[c]);
    free(when);
    free(actor);
    free(action);
    free(version);
    free(detail);
    free(nums);
    return ret;
}

int pg_dataplane_reports(cp_store_t *store, const cp_dp_report_t *reports, size_t n)
{
    if (n == 0)
        return CP_STORE_OK;
    unsigned char *event = calloc(n, 1);
    report_bufs_t *bufs = calloc(n, sizeof(*bufs));
    pg_stmt_t *stmts = calloc(2 * n, sizeof(*stmts));
    PGresult **results = calloc(2 * n, sizeof(*results));
    int ok = event != NULL && bufs != NULL && stmts != NULL && results != NULL, events = 0, ret = CP_STORE_ERROR;
    for (size_t i = 0; ok && i < n; i++)
        ok = report_stmts(&reports[i], &bufs[i], &stmts[2 * i]) == 0;
    if (!ok) {
        snprintf(store->errmsg, sizeof(store->errmsg), "out of memory");
        goto out;
    }
    /* the live rows: every report's two statements in one round trip */
    if (pg_begin_mode(store, 0) != CP_STORE_OK)
        goto out;
    ok = pg_pipeline(store, "recording status reports", stmts, 2 * n, results) == CP_STORE_OK;
    for (size_t i = 0; ok && i < n; i++) {
        int e = report_event(&reports[i], results[2 * i]);
        if (e < 0) {
            snprintf(store->errmsg, sizeof(store->errmsg), "reading a dataplane: its row is missing");
            ok = 0;
        }
        event[i] = (unsigned char)(e > 0);
        events += e > 0;
    }
    ret = end_live_write(store, ok);
    if (ret == CP_STORE_OK && events > 0) {
        /* the events are history: one durable transaction for all of them (one flush for a group
         * of ACKs), after the live rows; nobody is answered before it commits */
        if (pg_begin_mode(store, 1) != CP_STORE_OK || report_events(store, reports, event, n) != CP_STORE_OK ||
            pg_commit(store) != CP_STORE_OK) {
            ret = CP_STORE_ERROR;
            pg_abandon(store);
        }
    }
out:
    if (results != NULL)
        for (size_t i = 0; i < 2 * n; i++)
            PQclear(results[i]);
    if (bufs != NULL)
        for (size_t i = 0; i < n; i++) {
            free(bufs[i].labels);
            free(bufs[i].stats);
        }
    free(results);
    free(stmts);
    free(bufs);
    free(event);
    return ret;
}

int pg_traffic_since(cp_store_t *store, int64_t after_ms, int (*row)(void *arg, cp_row_col_fn col, void *r), void *arg)
{
    char ab[24];
    const char *p[] = {pg_i64(ab, after_ms)};
    PGresult *res = pg_query(store, "reading traffic reports",
                             "SELECT id, traffic, traffic_ms, traffic_seq FROM dataplanes "
                             "WHERE traffic_ms > $1::bigint AND traffic IS NOT NULL ORDER BY traffic_ms, id COLLATE \"C\"",
                             1, p);
    if (res == NULL)
        return CP_STORE_ERROR;
    int n = PQntuples(res), ret = CP_STORE_OK;
    for (int i = 0; i < n && ret == CP_STORE_OK; i++) {
        pg_row_t r = {res, i};
        if (row(arg, pg_col, &r) != 0) {
            snprintf(store->errmsg, sizeof(store->errmsg), "out of memory");
            ret = CP_STORE_ERROR;
        }
    }
    PQclear(res);
    return ret;
}

int pg_forget_dataplane(cp_store_t *store, const char *id, const char *actor)
{
    if (pg_begin_mode(store, 1) != CP_STORE_OK)
        return CP_STORE_ERROR;
    const char *p[] = {id};
    PGresult *res = pg_query(store, "forgetting a dataplane", "DELETE FROM dataplanes WHERE id = $1", 1, p);
    int rc = res == NULL ? CP_STORE_ERROR : strcmp(PQcmdTuples(res), "0") == 0 ? CP_STORE_NOT_FOUND : CP_STORE_OK;
    PQclear(res);
    if (rc == CP_STORE_OK)
        rc = pg_event(store, cp_now_ms(), actor, "forget", 0, id);
    if (rc == CP_STORE_OK && pg_commit(store) != CP_STORE_OK)
        rc = CP_STORE_ERROR;
    if (rc != CP_STORE_OK)
        pg_abandon(store);
    return rc;
}

int pg_dataplane_labels(cp_store_t *store, const char *id, json_t *labels)
{
    char *text = json_dumps(labels, JSON_COMPACT | JSON_SORT_KEYS);
    if (text == NULL)
        return CP_STORE_ERROR;
    const char *p[] = {text, id};
    int rc = pg_exec(store, "storing labels", "UPDATE dataplanes SET labels = $1 WHERE id = $2 AND labels <> $1", 2, p);
    free(text);
    return rc;
}
