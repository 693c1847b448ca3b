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

int pg_dataplanes_delivered(cp_store_t *store, const char *const *ids, size_t n, int64_t delivered)
{
    if (n == 0)
        return CP_STORE_OK;
    /* one statement for the batch: ids as a text[] literal, each element quoted (ids are
     * [A-Za-z0-9_.-], but quote and escape anyway) */
    size_t len = 3;
    for (size_t i = 0; i < n; i++)
        len += 2 * strlen(ids[i]) + 3;
    char *arr = malloc(len), *w = arr;
    if (arr == NULL) {
        snprintf(store->errmsg, sizeof(store->errmsg), "out of memory");
        return CP_STORE_ERROR;
    }
    *w++ = '{';
    for (size_t i = 0; i < n; i++) {
        if (i > 0)
            *w++ = ',';
        *w++ = '"';
        for (const char *s = ids[i]; *s; s++) {
            if (*s == '"' || *s == '\\')
                *w++ = '\\';
            *w++ = *s;
        }
        *w++ = '"';
    }
    *w++ = '}';
    *w = '\0';
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

/* One report's row, inside the open live transaction; *event set when the outcome changed. */
static int report_row(cp_store_t *store, const cp_dp_report_t *r, int *event)
{
    *event = 0;
    /* last seen, and what the report is compared with, in one round trip: the upsert changes only
     * last_seen_ms, so RETURNING gives the row's other columns as they were (and locks it) */
    char nb[24];
    const char *ip[] = {r->id, pg_i64(nb, r->now_ms)};
    PGresult *res = pg_query(store, "recording a dataplane",
                             "INSERT INTO dataplanes (id, first_seen_ms, last_seen_ms) VALUES ($1, $2, $2) "
                             "ON CONFLICT (id) DO UPDATE SET last_seen_ms = excluded.last_seen_ms "
                             "RETURNING applied_version, rejected_version, error",
                             2, ip);
    if (res == NULL)
        return CP_STORE_ERROR;
    if (PQntuples(res) != 1) {
        PQclear(res);
        snprintf(store->errmsg, sizeof(store->errmsg), "reading a dataplane: its row is missing");
        return CP_STORE_ERROR;
    }
    int64_t prev_applied = strtoll(PQgetvalue(res, 0, 0), NULL, 10), prev_rejected = strtoll(PQgetvalue(res, 0, 1), NULL, 10);
    /* an event only when the outcome changes: heartbeats repeat the same report */
    *event = !(r->applied ? prev_applied >= r->version
                          : prev_rejected == r->version && strcmp(PQgetvalue(res, 0, 2), r->error != NULL ? r->error : "") == 0);
    PQclear(res);
    char *labels_text = NULL, *stats_text = NULL;
    int ok = 1;
    if (r->labels != NULL)
        ok = (labels_text = json_dumps(r->labels, JSON_COMPACT | JSON_SORT_KEYS)) != NULL;
    if (ok && r->stats != NULL)
        ok = (stats_text = json_dumps(r->stats, JSON_COMPACT | JSON_SORT_KEYS)) != NULL;
    if (ok) {
        /* the same rules as the sqlite store: an ACK clears a rejection only for that version or a
         * newer one; applied_version never goes back; a late heartbeat (an ACK older than the
         * applied version) leaves reported_version and reported_hash alone */
        char vb[24];
        const char *p[] = {pg_i64(vb, r->version),
                           r->applied ? "t" : "f",
                           r->applied || r->error == NULL ? "" : r->error,
                           labels_text,
                           stats_text,
                           r->id,
                           r->hash,
                           r->traffic};
        ok = pg_exec(store, "recording a status report",
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
                     "traffic_seq = traffic_seq + CASE WHEN $8::text IS NULL THEN 0 ELSE 1 END WHERE id = $6::text",
                     8, p) == CP_STORE_OK;
    }
    free(labels_text);
    free(stats_text);
    return ok ? CP_STORE_OK : CP_STORE_ERROR;
}

int pg_dataplane_reports(cp_store_t *store, const cp_dp_report_t *reports, size_t n)
{
    if (n == 0)
        return CP_STORE_OK;
    unsigned char *event = calloc(n, 1);
    if (event == NULL) {
        snprintf(store->errmsg, sizeof(store->errmsg), "out of memory");
        return CP_STORE_ERROR;
    }
    if (pg_begin_mode(store, 0) != CP_STORE_OK) {
        free(event);
        return CP_STORE_ERROR;
    }
    int ok = 1, events = 0;
    for (size_t i = 0; ok && i < n; i++) {
        int e;
        ok = report_row(store, &reports[i], &e) == CP_STORE_OK;
        event[i] = (unsigned char)e;
        events += e;
    }
    int ret = end_live_write(store, ok);
    if (ret == CP_STORE_OK && events > 0) {
        /* the events are history: one durable transaction for all of them (one flush for a group
         * of ACKs), after the live rows; nobody is answered before it commits */
        if (pg_begin_mode(store, 1) != CP_STORE_OK)
            ret = CP_STORE_ERROR;
        for (size_t i = 0; ret == CP_STORE_OK && i < n; i++) {
            const cp_dp_report_t *r = &reports[i];
            if (event[i] && pg_event(store, r->now_ms, r->id, r->applied ? "ack" : "nack", r->version,
                                     r->applied ? "" : r->error) != CP_STORE_OK)
                ret = CP_STORE_ERROR;
        }
        if (ret == CP_STORE_OK && pg_commit(store) != CP_STORE_OK)
            ret = CP_STORE_ERROR;
        if (ret != CP_STORE_OK)
            pg_abandon(store);
    }
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
