/* The rollouts' SQL (tables of schema/sql/004_rollouts.sql), on the store's one connection. */
#include "cp_store_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sqlite3.h>

static sqlite3_stmt *prep(cp_store_t *store, const char *sql)
{
    return sq_prepare(store, sql);
}

/* A JSON value as compact text (caller frees), "null" for NULL. */
static char *dump(const json_t *v)
{
    return v != NULL ? json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY) : strdup("null");
}

int sq_ro_insert(cp_store_t *store, cp_rollout_t *ro)
{
    json_t *spec = cp_rollout_spec_json(&ro->spec);
    char *spec_text = dump(spec);
    json_decref(spec);
    sqlite3_stmt *st = prep(store, "INSERT INTO rollouts (version, from_version, spec, state, created_ms, updated_ms, "
                                   "step_started_ms, window_started_ms, author) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)");
    if (st == NULL || spec_text == NULL) {
        sqlite3_finalize(st);
        free(spec_text);
        return CP_STORE_ERROR;
    }
    sqlite3_bind_int64(st, 1, ro->version);
    sqlite3_bind_int64(st, 2, ro->from_version);
    sqlite3_bind_text(st, 3, spec_text, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 4, cp_ro_state_name(ro->state), -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 5, ro->created_ms);
    sqlite3_bind_int64(st, 6, ro->updated_ms);
    sqlite3_bind_int64(st, 7, ro->step_started_ms);
    sqlite3_bind_int64(st, 8, ro->window_started_ms);
    sqlite3_bind_text(st, 9, ro->author != NULL ? ro->author : "", -1, SQLITE_STATIC);
    int rc = sqlite3_step(st);
    sqlite3_finalize(st);
    free(spec_text);
    if (rc != SQLITE_DONE)
        return sq_fail(store, "inserting a rollout");
    ro->id = sqlite3_last_insert_rowid(store->db);
    return CP_STORE_OK;
}

int sq_ro_update(cp_store_t *store, const cp_rollout_t *ro)
{
    char *sets = dump(ro->sets), *marks = dump(ro->marks), *base = dump(ro->last_baseline);
    sqlite3_stmt *st =
        prep(store, "UPDATE rollouts SET state = ?, step = ?, sets = ?, marks = ?, last_baseline = ?, failures = ?, "
                    "step_passes = ?, last_result = ?, updated_ms = ?, step_started_ms = ?, window_started_ms = ?, paused_ms = ?, "
                    "rollback_version = ?, reason = ? WHERE id = ?");
    int rc = SQLITE_ERROR;
    if (st != NULL && sets != NULL && marks != NULL && base != NULL) {
        sqlite3_bind_text(st, 1, cp_ro_state_name(ro->state), -1, SQLITE_STATIC);
        sqlite3_bind_int64(st, 2, (int64_t)ro->step);
        sqlite3_bind_text(st, 3, sets, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 4, marks, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 5, base, -1, SQLITE_STATIC);
        sqlite3_bind_int64(st, 6, ro->failures);
        sqlite3_bind_int64(st, 7, ro->step_passes);
        sqlite3_bind_text(st, 8, ro->last_result >= 0 ? cp_verdict_name((cp_verdict_t)ro->last_result) : "", -1, SQLITE_STATIC);
        sqlite3_bind_int64(st, 9, ro->updated_ms);
        sqlite3_bind_int64(st, 10, ro->step_started_ms);
        sqlite3_bind_int64(st, 11, ro->window_started_ms);
        sqlite3_bind_int64(st, 12, ro->paused_ms);
        if (ro->rollback_version > 0)
            sqlite3_bind_int64(st, 13, ro->rollback_version);
        else
            sqlite3_bind_null(st, 13);
        sqlite3_bind_text(st, 14, ro->reason != NULL ? ro->reason : "", -1, SQLITE_STATIC);
        sqlite3_bind_int64(st, 15, ro->id);
        rc = sqlite3_step(st);
    }
    sqlite3_finalize(st);
    free(sets);
    free(marks);
    free(base);
    return rc == SQLITE_DONE ? CP_STORE_OK : sq_fail(store, "updating a rollout");
}

int sq_ro_verdict(cp_store_t *store, int64_t rollout, int64_t now_ms, size_t step, cp_verdict_t result, const char *figures)
{
    sqlite3_stmt *st =
        prep(store, "INSERT INTO rollout_verdicts (rollout, created_ms, step, result, figures) VALUES (?, ?, ?, ?, ?)");
    if (st == NULL)
        return CP_STORE_ERROR;
    sqlite3_bind_int64(st, 1, rollout);
    sqlite3_bind_int64(st, 2, now_ms);
    sqlite3_bind_int64(st, 3, (int64_t)step);
    sqlite3_bind_text(st, 4, cp_verdict_name(result), -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 5, figures, -1, SQLITE_STATIC);
    int rc = sqlite3_step(st);
    sqlite3_finalize(st);
    return rc == SQLITE_DONE ? CP_STORE_OK : sq_fail(store, "appending a verdict");
}

int sq_ro_get(cp_store_t *store, int64_t id, cp_rollout_t *out)
{
    sqlite3_stmt *st = prep(store, id > 0 ? "SELECT " CP_RO_COLUMNS " FROM rollouts WHERE id = ?"
                                          : "SELECT " CP_RO_COLUMNS " FROM rollouts WHERE state IN ('progressing', 'paused') "
                                            "ORDER BY id DESC LIMIT 1");
    if (st == NULL)
        return CP_STORE_ERROR;
    if (id > 0)
        sqlite3_bind_int64(st, 1, id);
    int rc = sqlite3_step(st), ret;
    if (rc == SQLITE_ROW)
        ret = cp_ro_from_row(sq_col, st, out) == 0 ? CP_STORE_OK : sq_fail(store, "reading a rollout (unreadable row)");
    else if (rc == SQLITE_DONE)
        ret = CP_STORE_NOT_FOUND;
    else
        ret = sq_fail(store, "reading a rollout");
    sqlite3_finalize(st);
    return ret;
}

int sq_ro_newest(cp_store_t *store, int64_t *id, cp_ro_state_t *state, int64_t *step)
{
    sqlite3_stmt *st = prep(store, "SELECT id, state, step FROM rollouts ORDER BY id DESC LIMIT 1");
    if (st == NULL)
        return CP_STORE_ERROR;
    int rc = sqlite3_step(st), ret = CP_STORE_NOT_FOUND;
    if (rc == SQLITE_ROW) {
        *id = sqlite3_column_int64(st, 0);
        ret = cp_ro_state_from_name((const char *)sqlite3_column_text(st, 1), state) == 0 ? CP_STORE_OK : CP_STORE_ERROR;
        *step = sqlite3_column_int64(st, 2);
    } else if (rc != SQLITE_DONE) {
        ret = sq_fail(store, "reading rollouts");
    }
    sqlite3_finalize(st);
    return ret;
}

json_t *sq_ro_list(cp_store_t *store, int64_t before, int limit)
{
    sqlite3_stmt *st = prep(store, "SELECT " CP_RO_COLUMNS " FROM rollouts WHERE id < ? ORDER BY id DESC LIMIT ?");
    if (st == NULL)
        return NULL;
    sqlite3_bind_int64(st, 1, before > 0 ? before : INT64_MAX);
    sqlite3_bind_int(st, 2, limit);
    json_t *arr = json_array();
    int rc;
    while (arr != NULL && (rc = sqlite3_step(st)) == SQLITE_ROW) {
        cp_rollout_t ro;
        if (cp_ro_from_row(sq_col, st, &ro) != 0) {
            sq_fail(store, "reading a rollout (unreadable row)");
            json_decref(arr);
            arr = NULL;
            break;
        }
        json_array_append_new(arr, cp_rollout_json(&ro, NULL));
        cp_rollout_dispose(&ro);
    }
    if (arr != NULL && rc != SQLITE_DONE) {
        sq_fail(store, "listing rollouts");
        json_decref(arr);
        arr = NULL;
    }
    sqlite3_finalize(st);
    return arr;
}

json_t *sq_ro_verdicts(cp_store_t *store, int64_t rollout)
{
    sqlite3_stmt *st = prep(store, "SELECT created_ms, step, result, figures FROM rollout_verdicts WHERE rollout = ? ORDER BY id");
    if (st == NULL)
        return NULL;
    sqlite3_bind_int64(st, 1, rollout);
    json_t *arr = json_array();
    int rc;
    while (arr != NULL && (rc = sqlite3_step(st)) == SQLITE_ROW) {
        json_t *v = cp_verdict_from_row(sq_col, st);
        json_array_append_new(arr, v);
    }
    if (arr != NULL && rc != SQLITE_DONE) {
        sq_fail(store, "listing verdicts");
        json_decref(arr);
        arr = NULL;
    }
    sqlite3_finalize(st);
    return arr;
}

int sq_ro_verdict_counts(cp_store_t *store, uint64_t counts[CP_VERDICT_NUM])
{
    memset(counts, 0, CP_VERDICT_NUM * sizeof(counts[0]));
    sqlite3_stmt *st = prep(store, "SELECT result, count(*) FROM rollout_verdicts GROUP BY result");
    if (st == NULL)
        return CP_STORE_ERROR;
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        const char *r = (const char *)sqlite3_column_text(st, 0);
        for (int v = 0; r != NULL && v < CP_VERDICT_NUM; v++)
            if (strcmp(r, cp_verdict_name((cp_verdict_t)v)) == 0)
                counts[v] = (uint64_t)sqlite3_column_int64(st, 1);
    }
    sqlite3_finalize(st);
    return rc == SQLITE_DONE ? CP_STORE_OK : sq_fail(store, "counting verdicts");
}

int sq_dataplane_labels(cp_store_t *store, const char *id, json_t *labels)
{
    char *text = json_dumps(labels, JSON_COMPACT | JSON_SORT_KEYS);
    sqlite3_stmt *st = prep(store, "UPDATE dataplanes SET labels = ? WHERE id = ? AND labels <> ?");
    int rc = SQLITE_ERROR;
    if (st != NULL && text != NULL) {
        sqlite3_bind_text(st, 1, text, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 2, id, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 3, text, -1, SQLITE_STATIC);
        rc = sqlite3_step(st);
    }
    sqlite3_finalize(st);
    free(text);
    return rc == SQLITE_DONE ? CP_STORE_OK : sq_fail(store, "storing labels");
}
