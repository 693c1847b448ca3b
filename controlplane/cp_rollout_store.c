/* The rollouts' SQL (tables of schema/sql/004_rollouts.sql), on the store's one connection. */
#include "cp_rollout.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sqlite3.h>

static sqlite3_stmt *prep(cp_store_t *store, const char *sql)
{
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(cp_store_db(store), sql, -1, &st, NULL) != SQLITE_OK) {
        cp_store_fail(store, "prepare");
        return NULL;
    }
    return st;
}

/* A JSON value as compact text (caller frees), "null" for NULL. */
static char *dump(const json_t *v)
{
    return v != NULL ? json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY) : strdup("null");
}

static json_t *load(sqlite3_stmt *st, int col)
{
    const unsigned char *s = sqlite3_column_text(st, col);
    return s != NULL ? json_loads((const char *)s, JSON_DECODE_ANY, NULL) : NULL;
}

int cp_ro_store_insert(cp_store_t *store, cp_rollout_t *ro)
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
        return cp_store_fail(store, "inserting a rollout");
    ro->id = sqlite3_last_insert_rowid(cp_store_db(store));
    return CP_STORE_OK;
}

int cp_ro_store_update(cp_store_t *store, const cp_rollout_t *ro)
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
    return rc == SQLITE_DONE ? CP_STORE_OK : cp_store_fail(store, "updating a rollout");
}

int cp_ro_store_save(cp_store_t *store, const cp_rollout_t *ro, const char *actor, const char *action, const char *detail)
{
    if (cp_store_begin(store) != CP_STORE_OK)
        return CP_STORE_ERROR;
    if (cp_ro_store_update(store, ro) != CP_STORE_OK ||
        (action != NULL && cp_store_event(store, ro->updated_ms, actor, action, ro->version, detail) != CP_STORE_OK)) {
        cp_store_abandon(store);
        return CP_STORE_ERROR;
    }
    return cp_store_commit(store);
}

int cp_ro_store_verdict(cp_store_t *store, int64_t rollout, int64_t now_ms, size_t step, cp_verdict_t result, const char *figures)
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
    return rc == SQLITE_DONE ? CP_STORE_OK : cp_store_fail(store, "appending a verdict");
}

#define RO_COLUMNS                                                                                                                 \
    "id, version, from_version, spec, state, step, sets, marks, last_baseline, failures, step_passes, last_result, created_ms, "   \
    "updated_ms, step_started_ms, window_started_ms, paused_ms, coalesce(rollback_version, 0), author, reason"

static int read_row(sqlite3_stmt *st, cp_rollout_t *ro)
{
    memset(ro, 0, sizeof(*ro));
    ro->id = sqlite3_column_int64(st, 0);
    ro->version = sqlite3_column_int64(st, 1);
    ro->from_version = sqlite3_column_int64(st, 2);
    json_t *spec = load(st, 3);
    char err[256];
    int rc = spec != NULL ? 0 : -1;
    if (rc == 0) {
        /* stored canonical: durations in ms under their own keys; put them back as the parser reads them */
        json_t *steps = json_object_get(spec, "steps"), *gate = json_object_get(spec, "gate"), *s;
        size_t i;
        json_array_foreach(steps, i, s)
        {
            json_object_set_new(s, "hold", json_sprintf("%lldms", (long long)json_integer_value(json_object_get(s, "hold_ms"))));
            json_object_del(s, "hold_ms");
        }
        json_object_set_new(gate, "interval",
                            json_sprintf("%lldms", (long long)json_integer_value(json_object_get(gate, "interval_ms"))));
        json_object_del(gate, "interval_ms");
        rc = cp_rollout_spec_parse(spec, "rollout", &ro->spec, err, sizeof(err));
    }
    json_decref(spec);
    if (cp_ro_state_from_name((const char *)sqlite3_column_text(st, 4), &ro->state) != 0)
        rc = -1;
    ro->step = (size_t)sqlite3_column_int64(st, 5);
    ro->sets = load(st, 6);
    ro->marks = load(st, 7);
    ro->last_baseline = load(st, 8);
    ro->failures = sqlite3_column_int64(st, 9);
    ro->step_passes = sqlite3_column_int64(st, 10);
    const char *lr = (const char *)sqlite3_column_text(st, 11);
    ro->last_result = -1;
    for (int v = 0; lr != NULL && v < CP_VERDICT_NUM; v++)
        if (strcmp(lr, cp_verdict_name((cp_verdict_t)v)) == 0)
            ro->last_result = v;
    ro->created_ms = sqlite3_column_int64(st, 12);
    ro->updated_ms = sqlite3_column_int64(st, 13);
    ro->step_started_ms = sqlite3_column_int64(st, 14);
    ro->window_started_ms = sqlite3_column_int64(st, 15);
    ro->paused_ms = sqlite3_column_int64(st, 16);
    ro->rollback_version = sqlite3_column_int64(st, 17);
    ro->author = strdup((const char *)sqlite3_column_text(st, 18));
    ro->reason = strdup((const char *)sqlite3_column_text(st, 19));
    if (!json_is_array(ro->sets) || !json_is_object(ro->marks) || ro->last_baseline == NULL || ro->author == NULL ||
        ro->reason == NULL || ro->step >= ro->spec.num_steps)
        rc = -1;
    if (rc != 0)
        cp_rollout_dispose(ro);
    return rc;
}

int cp_ro_store_get(cp_store_t *store, int64_t id, cp_rollout_t *out)
{
    sqlite3_stmt *st = prep(store, id > 0 ? "SELECT " RO_COLUMNS " FROM rollouts WHERE id = ?"
                                          : "SELECT " RO_COLUMNS " FROM rollouts WHERE state IN ('progressing', 'paused') "
                                            "ORDER BY id DESC LIMIT 1");
    if (st == NULL)
        return CP_STORE_ERROR;
    if (id > 0)
        sqlite3_bind_int64(st, 1, id);
    int rc = sqlite3_step(st), ret;
    if (rc == SQLITE_ROW)
        ret = read_row(st, out) == 0 ? CP_STORE_OK : cp_store_fail(store, "reading a rollout (unreadable row)");
    else if (rc == SQLITE_DONE)
        ret = CP_STORE_NOT_FOUND;
    else
        ret = cp_store_fail(store, "reading a rollout");
    sqlite3_finalize(st);
    return ret;
}

int cp_ro_store_newest(cp_store_t *store, int64_t *id, cp_ro_state_t *state, int64_t *step)
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
        ret = cp_store_fail(store, "reading rollouts");
    }
    sqlite3_finalize(st);
    return ret;
}

json_t *cp_ro_store_list(cp_store_t *store, int64_t before, int limit)
{
    sqlite3_stmt *st = prep(store, "SELECT " RO_COLUMNS " FROM rollouts WHERE id < ? ORDER BY id DESC LIMIT ?");
    if (st == NULL)
        return NULL;
    sqlite3_bind_int64(st, 1, before > 0 ? before : INT64_MAX);
    sqlite3_bind_int(st, 2, limit);
    json_t *arr = json_array();
    int rc;
    while (arr != NULL && (rc = sqlite3_step(st)) == SQLITE_ROW) {
        cp_rollout_t ro;
        if (read_row(st, &ro) != 0) {
            cp_store_fail(store, "reading a rollout (unreadable row)");
            json_decref(arr);
            arr = NULL;
            break;
        }
        json_array_append_new(arr, cp_rollout_json(&ro, NULL));
        cp_rollout_dispose(&ro);
    }
    if (arr != NULL && rc != SQLITE_DONE) {
        cp_store_fail(store, "listing rollouts");
        json_decref(arr);
        arr = NULL;
    }
    sqlite3_finalize(st);
    return arr;
}

json_t *cp_ro_store_verdicts(cp_store_t *store, int64_t rollout)
{
    sqlite3_stmt *st = prep(store, "SELECT created_ms, step, result, figures FROM rollout_verdicts WHERE rollout = ? ORDER BY id");
    if (st == NULL)
        return NULL;
    sqlite3_bind_int64(st, 1, rollout);
    json_t *arr = json_array();
    int rc;
    while (arr != NULL && (rc = sqlite3_step(st)) == SQLITE_ROW) {
        json_t *v = load(st, 3);
        if (!json_is_object(v)) {
            json_decref(v);
            v = json_object();
        }
        char at[32];
        cp_format_time(sqlite3_column_int64(st, 0), at);
        json_object_set_new(v, "at", json_string(at));
        json_object_set_new(v, "step", json_integer(sqlite3_column_int64(st, 1)));
        json_object_set_new(v, "result", json_string((const char *)sqlite3_column_text(st, 2)));
        json_array_append_new(arr, v);
    }
    if (arr != NULL && rc != SQLITE_DONE) {
        cp_store_fail(store, "listing verdicts");
        json_decref(arr);
        arr = NULL;
    }
    sqlite3_finalize(st);
    return arr;
}

int cp_ro_store_verdict_counts(cp_store_t *store, uint64_t counts[CP_VERDICT_NUM])
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
    return rc == SQLITE_DONE ? CP_STORE_OK : cp_store_fail(store, "counting verdicts");
}

int cp_store_dataplane_labels(cp_store_t *store, const char *id, json_t *labels)
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
    return rc == SQLITE_DONE ? CP_STORE_OK : cp_store_fail(store, "storing labels");
}
