/*
 * The dataplanes' rows of the store: a config call seen, a delivery, a status report (its ACK or
 * NACK event), admission under max_dataplanes, reading and listing, forgetting; and a dataplane's
 * state. Live rows are written at synchronous=NORMAL (cp_store.h says why).
 */
#include "cp_store_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sqlite3.h>

/* Heartbeats are not history: NORMAL is durable enough and avoids an fsync per heartbeat. */
static int begin_live_write(cp_store_t *store)
{
    /* from here until FULL is restored, history must not be written (begin_durable checks) */
    store->sync_full = 0;
    if (sq_exec(store, "PRAGMA synchronous=NORMAL") != CP_STORE_OK)
        return CP_STORE_ERROR;
    if (sq_exec(store, "BEGIN IMMEDIATE") != CP_STORE_OK) {
        if (sq_exec(store, "PRAGMA synchronous=FULL") == CP_STORE_OK)
            store->sync_full = 1;
        return CP_STORE_ERROR;
    }
    return CP_STORE_OK;
}

static int end_live_write(cp_store_t *store, int ok)
{
    int ret = ok ? sq_exec(store, "COMMIT") : CP_STORE_ERROR;
    if (ret != CP_STORE_OK)
        sq_abandon(store);
    /* back to FULL before any history-writing transaction can run; when that fails, sync_full stays
     * 0 and begin_durable refuses history until it succeeds */
    if (sq_exec(store, "PRAGMA synchronous=FULL") != CP_STORE_OK)
        ret = CP_STORE_ERROR;
    else
        store->sync_full = 1;
    return ret;
}

static int upsert_seen(cp_store_t *store, const char *id, int64_t now_ms)
{
    sqlite3_stmt *st = sq_prepare(store, "INSERT INTO dataplanes (id, first_seen_ms, last_seen_ms) VALUES (?, ?, ?) "
                                         "ON CONFLICT (id) DO UPDATE SET last_seen_ms = excluded.last_seen_ms");
    if (st == NULL)
        return CP_STORE_ERROR;
    sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 2, now_ms);
    sqlite3_bind_int64(st, 3, now_ms);
    int rc = sqlite3_step(st);
    sqlite3_finalize(st);
    return rc == SQLITE_DONE ? CP_STORE_OK : sq_fail(store, "recording a dataplane");
}

int sq_dataplane_seen(cp_store_t *store, const char *id, int64_t now_ms, int64_t delivered)
{
    if (begin_live_write(store) != CP_STORE_OK)
        return CP_STORE_ERROR;
    int ok = now_ms <= 0 || upsert_seen(store, id, now_ms) == CP_STORE_OK;
    if (ok && delivered > 0) {
        sqlite3_stmt *st =
            sq_prepare(store, "UPDATE dataplanes SET delivered_version = ?, delivered_since_report = 1 WHERE id = ?");
        ok = st != NULL;
        if (ok) {
            sqlite3_bind_int64(st, 1, delivered);
            sqlite3_bind_text(st, 2, id, -1, SQLITE_STATIC);
            ok = sqlite3_step(st) == SQLITE_DONE;
            if (!ok)
                sq_fail(store, "recording a delivery");
            sqlite3_finalize(st);
        }
    }
    return end_live_write(store, ok);
}

int sq_dataplanes_delivered(cp_store_t *store, const char *const *ids, size_t n, int64_t delivered)
{
    if (begin_live_write(store) != CP_STORE_OK)
        return CP_STORE_ERROR;
    sqlite3_stmt *st = sq_prepare(store, "UPDATE dataplanes SET delivered_version = ?, delivered_since_report = 1 WHERE id = ?");
    int ok = st != NULL;
    for (size_t i = 0; ok && i < n; i++) {
        sqlite3_bind_int64(st, 1, delivered);
        sqlite3_bind_text(st, 2, ids[i], -1, SQLITE_STATIC);
        ok = sqlite3_step(st) == SQLITE_DONE;
        if (!ok)
            sq_fail(store, "recording deliveries");
        sqlite3_reset(st);
    }
    sqlite3_finalize(st);
    return end_live_write(store, ok);
}

int sq_get_dataplane(cp_store_t *store, const char *id, cp_dataplane_t *out)
{
    sqlite3_stmt *st = sq_prepare(store, "SELECT " CP_DP_COLUMNS " FROM dataplanes WHERE id = ?");
    if (st == NULL)
        return CP_STORE_ERROR;
    sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
    int rc = sqlite3_step(st), ret;
    if (rc == SQLITE_ROW)
        ret = cp_dp_from_row(sq_col, st, out) == 0 ? CP_STORE_OK : CP_STORE_ERROR;
    else
        ret = rc == SQLITE_DONE ? CP_STORE_NOT_FOUND : sq_fail(store, "reading a dataplane");
    sqlite3_finalize(st);
    return ret;
}

int sq_get_dataplanes(cp_store_t *store, const char *const *ids, size_t n, int narrow, cp_dataplane_t *out, int *found)
{
    /* in-process: one statement stepped per id costs no round trip */
    sqlite3_stmt *st = sq_prepare(store, narrow ? "SELECT " CP_DP_STATE_COLUMNS " FROM dataplanes WHERE id = ?"
                                                : "SELECT " CP_DP_COLUMNS " FROM dataplanes WHERE id = ?");
    if (st == NULL)
        return CP_STORE_ERROR;
    int ret = CP_STORE_OK;
    for (size_t i = 0; i < n && ret == CP_STORE_OK; i++) {
        sqlite3_bind_text(st, 1, ids[i], -1, SQLITE_STATIC);
        int rc = sqlite3_step(st);
        if (rc == SQLITE_ROW) {
            if (cp_dp_from_row(sq_col, st, &out[i]) == 0)
                found[i] = 1;
            else
                ret = CP_STORE_ERROR;
        } else if (rc != SQLITE_DONE)
            ret = sq_fail(store, "reading dataplanes");
        sqlite3_reset(st);
    }
    sqlite3_finalize(st);
    if (ret != CP_STORE_OK)
        for (size_t i = 0; i < n; i++)
            if (found[i]) {
                cp_dataplane_dispose(&out[i]);
                found[i] = 0;
            }
    return ret;
}

int sq_dataplanes_polled(cp_store_t *store, const cp_dp_poll_t *polls, size_t n, int64_t now_ms)
{
    if (begin_live_write(store) != CP_STORE_OK)
        return CP_STORE_ERROR;
    sqlite3_stmt *seen = sq_prepare(store, "UPDATE dataplanes SET last_seen_ms = ? WHERE id = ?");
    sqlite3_stmt *lab = seen != NULL ? sq_prepare(store, "UPDATE dataplanes SET labels = ?1 WHERE id = ?2 AND labels <> ?1") : NULL;
    int ok = lab != NULL;
    for (size_t i = 0; ok && i < n; i++) {
        sqlite3_bind_int64(seen, 1, now_ms);
        sqlite3_bind_text(seen, 2, polls[i].id, -1, SQLITE_STATIC);
        if (!(ok = sqlite3_step(seen) == SQLITE_DONE))
            sq_fail(store, "recording dataplanes");
        sqlite3_reset(seen);
        if (ok && polls[i].labels != NULL) {
            char *text = json_dumps(polls[i].labels, JSON_COMPACT | JSON_SORT_KEYS);
            if (text == NULL) {
                snprintf(store->errmsg, sizeof(store->errmsg), "out of memory");
                ok = 0;
                break;
            }
            sqlite3_bind_text(lab, 1, text, -1, SQLITE_STATIC);
            sqlite3_bind_text(lab, 2, polls[i].id, -1, SQLITE_STATIC);
            if (!(ok = sqlite3_step(lab) == SQLITE_DONE))
                sq_fail(store, "storing labels");
            sqlite3_reset(lab);
            free(text);
        }
    }
    sqlite3_finalize(lab);
    sqlite3_finalize(seen);
    return end_live_write(store, ok);
}

int sq_list_dataplanes(cp_store_t *store, const char *after, int limit, int narrow, cp_dataplane_t **out, size_t *count)
{
    *out = NULL;
    *count = 0;
    sqlite3_stmt *st = sq_prepare(store, narrow ? "SELECT " CP_DP_STATE_COLUMNS " FROM dataplanes WHERE id > ? ORDER BY id LIMIT ?"
                                                : "SELECT " CP_DP_COLUMNS " FROM dataplanes WHERE id > ? ORDER BY id LIMIT ?");
    if (st == NULL)
        return CP_STORE_ERROR;
    sqlite3_bind_text(st, 1, after != NULL ? after : "", -1, SQLITE_STATIC);
    sqlite3_bind_int(st, 2, limit > 0 ? limit : -1);
    size_t cap = 0;
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        if (*count == cap) {
            cap = cap ? cap * 2 : 16;
            cp_dataplane_t *n = realloc(*out, cap * sizeof(**out));
            if (n == NULL)
                goto Error;
            *out = n;
        }
        if (cp_dp_from_row(sq_col, st, &(*out)[*count]) != 0)
            goto Error;
        ++*count;
    }
    if (rc != SQLITE_DONE) {
        sq_fail(store, "listing dataplanes");
        goto Error;
    }
    sqlite3_finalize(st);
    return CP_STORE_OK;
Error:
    sqlite3_finalize(st);
    cp_dataplanes_free(*out, *count);
    *out = NULL;
    *count = 0;
    return CP_STORE_ERROR;
}

int sq_dataplane_admit(cp_store_t *store, const char *id, uint64_t max)
{
    /* a known dataplane is found by its key; the table is counted only for a new one */
    sqlite3_stmt *st = sq_prepare(store, "SELECT EXISTS (SELECT 1 FROM dataplanes WHERE id = ?1), "
                                         "CASE WHEN EXISTS (SELECT 1 FROM dataplanes WHERE id = ?1) THEN 0 "
                                         "ELSE (SELECT count(*) FROM dataplanes) END");
    if (st == NULL)
        return CP_STORE_ERROR;
    sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
    int ret;
    if (sqlite3_step(st) != SQLITE_ROW)
        ret = sq_fail(store, "counting dataplanes");
    else if (sqlite3_column_int(st, 0) != 0 || (uint64_t)sqlite3_column_int64(st, 1) < max)
        ret = CP_STORE_OK;
    else
        ret = CP_STORE_LIMIT;
    sqlite3_finalize(st);
    return ret;
}

/* One report's row, inside the open live transaction; *event set when the outcome changed. */
static int report_row(cp_store_t *store, sqlite3_stmt *prev_st, sqlite3_stmt *st, const cp_dp_report_t *r, int *event)
{
    *event = 0;
    if (upsert_seen(store, r->id, r->now_ms) != CP_STORE_OK)
        return CP_STORE_ERROR;
    /* what the report is compared with: only the columns needed */
    sqlite3_bind_text(prev_st, 1, r->id, -1, SQLITE_STATIC);
    if (sqlite3_step(prev_st) != SQLITE_ROW) {
        sqlite3_reset(prev_st);
        return sq_fail(store, "reading a dataplane");
    }
    int64_t prev_applied = sqlite3_column_int64(prev_st, 0), prev_rejected = sqlite3_column_int64(prev_st, 1);
    const char *perr = (const char *)sqlite3_column_text(prev_st, 2);
    /* an event only when the outcome changes: heartbeats repeat the same report */
    *event = !(r->applied ? prev_applied >= r->version
                          : prev_rejected == r->version && strcmp(perr != NULL ? perr : "", r->error != NULL ? r->error : "") == 0);
    sqlite3_reset(prev_st);
    char *labels_text = NULL, *stats_text = NULL;
    int ok = 1;
    if (r->labels != NULL)
        ok = (labels_text = json_dumps(r->labels, JSON_COMPACT | JSON_SORT_KEYS)) != NULL;
    if (ok && r->stats != NULL)
        ok = (stats_text = json_dumps(r->stats, JSON_COMPACT | JSON_SORT_KEYS)) != NULL;
    if (ok) {
        sqlite3_bind_int64(st, 1, r->version);
        sqlite3_bind_int(st, 2, r->applied ? 1 : 0);
        sqlite3_bind_text(st, 3, r->applied || r->error == NULL ? "" : r->error, -1, SQLITE_STATIC);
        if (labels_text != NULL)
            sqlite3_bind_text(st, 4, labels_text, -1, SQLITE_STATIC);
        else
            sqlite3_bind_null(st, 4);
        if (stats_text != NULL)
            sqlite3_bind_text(st, 5, stats_text, -1, SQLITE_STATIC);
        else
            sqlite3_bind_null(st, 5);
        sqlite3_bind_text(st, 6, r->id, -1, SQLITE_STATIC);
        if (r->hash != NULL)
            sqlite3_bind_text(st, 7, r->hash, -1, SQLITE_STATIC);
        else
            sqlite3_bind_null(st, 7);
        if (r->traffic != NULL)
            sqlite3_bind_text(st, 8, r->traffic, -1, SQLITE_STATIC);
        else
            sqlite3_bind_null(st, 8);
        sqlite3_bind_int64(st, 9, r->now_ms);
        ok = sqlite3_step(st) == SQLITE_DONE;
        if (!ok)
            sq_fail(store, "recording a status report");
        sqlite3_reset(st);
        sqlite3_clear_bindings(st);
    }
    free(labels_text);
    free(stats_text);
    return ok ? CP_STORE_OK : CP_STORE_ERROR;
}

int sq_dataplane_reports(cp_store_t *store, const cp_dp_report_t *reports, size_t n)
{
    if (n == 0)
        return CP_STORE_OK;
    unsigned char *event = calloc(n, 1);
    if (event == NULL) {
        snprintf(store->errmsg, sizeof(store->errmsg), "out of memory");
        return CP_STORE_ERROR;
    }
    if (begin_live_write(store) != CP_STORE_OK) {
        free(event);
        return CP_STORE_ERROR;
    }
    sqlite3_stmt *prev_st = sq_prepare(store, "SELECT applied_version, rejected_version, error FROM dataplanes WHERE id = ?");
    /* an ACK clears a rejection only when it is for that version or a newer one: a heartbeat that
     * re-ACKs the version still running after a NACK does not hide the NACK. applied_version never
     * goes back: versions only grow, so an older ACK is a late heartbeat (built before the newer
     * version was applied, landing after its ACK), whose version and hash are not the dataplane's
     * state any more: they are kept as they are */
    sqlite3_stmt *st = sq_prepare(store, "UPDATE dataplanes SET "
                                         "reported_version = CASE WHEN ?2 AND ?1 < applied_version THEN reported_version "
                                         "ELSE ?1 END, delivered_since_report = 0, "
                                         "applied_version = CASE WHEN ?2 AND ?1 > applied_version THEN ?1 "
                                         "ELSE applied_version END, "
                                         "rejected_version = CASE WHEN NOT ?2 THEN ?1 WHEN rejected_version <= ?1 THEN 0 "
                                         "ELSE rejected_version END, "
                                         "error = CASE WHEN NOT ?2 THEN ?3 WHEN rejected_version <= ?1 THEN '' ELSE error END, "
                                         "labels = coalesce(?4, labels), stats = coalesce(?5, stats), "
                                         "reported_hash = CASE WHEN ?2 AND ?1 < applied_version THEN reported_hash "
                                         "ELSE coalesce(?7, reported_hash) END, "
                                         "traffic = coalesce(?8, traffic), "
                                         "traffic_ms = CASE WHEN ?8 IS NULL THEN traffic_ms ELSE ?9 END, "
                                         "traffic_seq = traffic_seq + (?8 IS NOT NULL) WHERE id = ?6");
    int ok = prev_st != NULL && st != NULL, events = 0;
    for (size_t i = 0; ok && i < n; i++) {
        int e;
        ok = report_row(store, prev_st, st, &reports[i], &e) == CP_STORE_OK;
        event[i] = (unsigned char)e;
        events += e;
    }
    sqlite3_finalize(prev_st);
    sqlite3_finalize(st);
    int ret = end_live_write(store, ok);
    if (ret == CP_STORE_OK && events > 0) {
        /* the events are history: one transaction at synchronous=FULL for all of them (one flush
         * for a whole group of ACKs), after the live rows; nobody is answered before it commits */
        if (sq_begin(store) != CP_STORE_OK)
            ret = CP_STORE_ERROR;
        for (size_t i = 0; ret == CP_STORE_OK && i < n; i++) {
            const cp_dp_report_t *r = &reports[i];
            if (event[i] && sq_event(store, r->now_ms, r->id, r->applied ? "ack" : "nack",
                                     r->version <= store->active ? r->version : 0, r->applied ? "" : r->error) != CP_STORE_OK)
                ret = CP_STORE_ERROR;
        }
        if (ret == CP_STORE_OK && sq_exec(store, "COMMIT") != CP_STORE_OK)
            ret = CP_STORE_ERROR;
        if (ret != CP_STORE_OK)
            sq_abandon(store);
    }
    free(event);
    return ret;
}

int sq_traffic_since(cp_store_t *store, int64_t after_ms, int (*row)(void *arg, cp_row_col_fn col, void *r), void *arg)
{
    sqlite3_stmt *st = sq_prepare(store, "SELECT id, traffic, traffic_ms, traffic_seq FROM dataplanes "
                                         "WHERE traffic_ms > ? AND traffic IS NOT NULL ORDER BY traffic_ms, id");
    if (st == NULL)
        return CP_STORE_ERROR;
    sqlite3_bind_int64(st, 1, after_ms);
    int rc, ret = CP_STORE_OK;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW)
        if (row(arg, sq_col, st) != 0) {
            snprintf(store->errmsg, sizeof(store->errmsg), "out of memory");
            ret = CP_STORE_ERROR;
            break;
        }
    if (ret == CP_STORE_OK && rc != SQLITE_DONE)
        ret = sq_fail(store, "reading traffic reports");
    sqlite3_finalize(st);
    return ret;
}

int sq_forget_dataplane(cp_store_t *store, const char *id, const char *actor)
{
    if (sq_begin(store) != CP_STORE_OK)
        return CP_STORE_ERROR;
    sqlite3_stmt *st = sq_prepare(store, "DELETE FROM dataplanes WHERE id = ?");
    int rc = CP_STORE_ERROR;
    if (st != NULL) {
        sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
        rc = sqlite3_step(st) == SQLITE_DONE ? CP_STORE_OK : sq_fail(store, "forgetting a dataplane");
        sqlite3_finalize(st);
    }
    if (rc == CP_STORE_OK && sqlite3_changes(store->db) == 0)
        rc = CP_STORE_NOT_FOUND;
    if (rc == CP_STORE_OK)
        rc = sq_event(store, cp_now_ms(), actor, "forget", 0, id);
    if (rc == CP_STORE_OK && sq_exec(store, "COMMIT") != CP_STORE_OK)
        rc = CP_STORE_ERROR;
    if (rc != CP_STORE_OK)
        sq_abandon(store);
    return rc;
}
