/*
 * The rollouts' rows on PostgreSQL (cp_store_sqlite_rollouts.c's SQL, translated), and the lease
 * that lets one replica at a time drive them: a session-level advisory lock held on a connection
 * of its own. When the replica holding it dies its session ends, PostgreSQL releases the lock, and
 * the next replica that asks (cp_store_lease, from the engine's tick) takes it.
 */
#include "cp_store_pg.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "pw_log.h"

/* A JSON value as compact text (caller frees), "null" for NULL. */
static char *dump(const json_t *v)
{
    return v != NULL ? json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY) : strdup("null");
}

int pg_ro_insert(cp_store_t *store, cp_rollout_t *ro)
{
    json_t *spec = cp_rollout_spec_json(&ro->spec);
    char *spec_text = dump(spec);
    json_decref(spec);
    if (spec_text == NULL)
        return CP_STORE_ERROR;
    char b[6][24];
    const char *p[] = {
        pg_i64(b[0], ro->version),         pg_i64(b[1], ro->from_version),      spec_text,
        cp_ro_state_name(ro->state),       pg_i64(b[2], ro->created_ms),        pg_i64(b[3], ro->updated_ms),
        pg_i64(b[4], ro->step_started_ms), pg_i64(b[5], ro->window_started_ms), ro->author != NULL ? ro->author : ""};
    PGresult *res = pg_query(store, "inserting a rollout",
                             "INSERT INTO rollouts (version, from_version, spec, state, created_ms, updated_ms, step_started_ms, "
                             "window_started_ms, author) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) RETURNING id",
                             9, p);
    free(spec_text);
    if (res == NULL)
        return CP_STORE_ERROR;
    ro->id = strtoll(PQgetvalue(res, 0, 0), NULL, 10);
    PQclear(res);
    return CP_STORE_OK;
}

int pg_ro_update(cp_store_t *store, const cp_rollout_t *ro)
{
    char *sets = dump(ro->sets), *marks = dump(ro->marks), *base = dump(ro->last_baseline);
    int rc = CP_STORE_ERROR;
    if (sets != NULL && marks != NULL && base != NULL) {
        char b[10][24];
        const char *p[] = {cp_ro_state_name(ro->state),
                           pg_i64(b[0], (int64_t)ro->step),
                           sets,
                           marks,
                           base,
                           pg_i64(b[1], ro->failures),
                           pg_i64(b[2], ro->step_passes),
                           ro->last_result >= 0 ? cp_verdict_name((cp_verdict_t)ro->last_result) : "",
                           pg_i64(b[3], ro->updated_ms),
                           pg_i64(b[4], ro->step_started_ms),
                           pg_i64(b[5], ro->window_started_ms),
                           pg_i64(b[6], ro->paused_ms),
                           ro->rollback_version > 0 ? pg_i64(b[7], ro->rollback_version) : NULL,
                           ro->reason != NULL ? ro->reason : "",
                           pg_i64(b[8], ro->id)};
        rc = pg_exec(store, "updating a rollout",
                     "UPDATE rollouts SET state = $1, step = $2, sets = $3, marks = $4, last_baseline = $5, failures = $6, "
                     "step_passes = $7, last_result = $8, updated_ms = $9, step_started_ms = $10, window_started_ms = $11, "
                     "paused_ms = $12, rollback_version = $13, reason = $14 WHERE id = $15",
                     15, p);
    }
    free(sets);
    free(marks);
    free(base);
    return rc;
}

int pg_ro_verdict(cp_store_t *store, int64_t rollout, int64_t now_ms, size_t step, cp_verdict_t result, const char *figures)
{
    char b[3][24];
    const char *p[] = {pg_i64(b[0], rollout), pg_i64(b[1], now_ms), pg_i64(b[2], (int64_t)step), cp_verdict_name(result), figures};
    return pg_exec(store, "appending a verdict",
                   "INSERT INTO rollout_verdicts (rollout, created_ms, step, result, figures) VALUES ($1, $2, $3, $4, $5)", 5, p);
}

int pg_ro_get(cp_store_t *store, int64_t id, cp_rollout_t *out)
{
    char b[24];
    const char *p[] = {pg_i64(b, id)};
    PGresult *res = pg_query(store, "reading a rollout",
                             id > 0 ? "SELECT " CP_RO_COLUMNS " FROM rollouts WHERE id = $1::bigint"
                                    : "SELECT " CP_RO_COLUMNS " FROM rollouts WHERE state IN ('progressing', 'paused') "
                                      "ORDER BY id DESC LIMIT 1",
                             id > 0 ? 1 : 0, p);
    if (res == NULL)
        return CP_STORE_ERROR;
    int ret = CP_STORE_NOT_FOUND;
    if (PQntuples(res) > 0) {
        pg_row_t r = {res, 0};
        ret = cp_ro_from_row(pg_col, &r, out) == 0 ? CP_STORE_OK : pg_fail(store, "reading a rollout (unreadable row)", NULL);
    }
    PQclear(res);
    return ret;
}

int pg_ro_newest(cp_store_t *store, int64_t *id, cp_ro_state_t *state, int64_t *step)
{
    PGresult *res = pg_query(store, "reading rollouts", "SELECT id, state, step FROM rollouts ORDER BY id DESC LIMIT 1", 0, NULL);
    if (res == NULL)
        return CP_STORE_ERROR;
    int ret = CP_STORE_NOT_FOUND;
    if (PQntuples(res) > 0) {
        *id = strtoll(PQgetvalue(res, 0, 0), NULL, 10);
        ret = cp_ro_state_from_name(PQgetvalue(res, 0, 1), state) == 0 ? CP_STORE_OK : CP_STORE_ERROR;
        *step = strtoll(PQgetvalue(res, 0, 2), NULL, 10);
    }
    PQclear(res);
    return ret;
}

json_t *pg_ro_list(cp_store_t *store, int64_t before, int limit)
{
    char bb[24], lb[24];
    const char *p[] = {pg_i64(bb, before > 0 ? before : INT64_MAX), pg_i64(lb, limit)};
    PGresult *res =
        pg_query(store, "listing rollouts",
                 "SELECT " CP_RO_COLUMNS " FROM rollouts WHERE id < $1::bigint ORDER BY id DESC LIMIT $2::bigint", 2, p);
    if (res == NULL)
        return NULL;
    json_t *arr = json_array();
    for (int i = 0; arr != NULL && i < PQntuples(res); i++) {
        pg_row_t r = {res, i};
        cp_rollout_t ro;
        if (cp_ro_from_row(pg_col, &r, &ro) != 0) {
            pg_fail(store, "reading a rollout (unreadable row)", NULL);
            json_decref(arr);
            arr = NULL;
            break;
        }
        json_array_append_new(arr, cp_rollout_json(&ro, NULL));
        cp_rollout_dispose(&ro);
    }
    PQclear(res);
    return arr;
}

json_t *pg_ro_verdicts(cp_store_t *store, int64_t rollout)
{
    char b[24];
    const char *p[] = {pg_i64(b, rollout)};
    PGresult *res =
        pg_query(store, "listing verdicts",
                 "SELECT created_ms, step, result, figures FROM rollout_verdicts WHERE rollout = $1::bigint ORDER BY id", 1, p);
    if (res == NULL)
        return NULL;
    json_t *arr = json_array();
    for (int i = 0; arr != NULL && i < PQntuples(res); i++) {
        pg_row_t r = {res, i};
        json_array_append_new(arr, cp_verdict_from_row(pg_col, &r));
    }
    PQclear(res);
    return arr;
}

int pg_ro_verdict_counts(cp_store_t *store, uint64_t counts[CP_VERDICT_NUM])
{
    memset(counts, 0, CP_VERDICT_NUM * sizeof(counts[0]));
    PGresult *res = pg_query(store, "counting verdicts", "SELECT result, count(*) FROM rollout_verdicts GROUP BY result", 0, NULL);
    if (res == NULL)
        return CP_STORE_ERROR;
    for (int i = 0; i < PQntuples(res); i++)
        for (int v = 0; v < CP_VERDICT_NUM; v++)
            if (strcmp(PQgetvalue(res, i, 0), cp_verdict_name((cp_verdict_t)v)) == 0)
                counts[v] = strtoull(PQgetvalue(res, i, 1), NULL, 10);
    PQclear(res);
    return CP_STORE_OK;
}

/* --- the lease --------------------------------------------------------------------------------- */

#define LEASE_CHECK_MS 1000 /* how often a holder checks its lease, and a waiter asks for it */

int pg_lease(cp_store_t *store)
{
    cp_pg_t *pg = store->pg;
    int64_t now = cp_now_ms();
    if (pg->lease_held) {
        if (now < pg->next_lease_ms)
            return 1;
        /* still ours while its session lives: check now and then that the connection did not drop */
        pg->next_lease_ms = now + LEASE_CHECK_MS;
        PGresult *res = PQstatus(pg->lease) == CONNECTION_OK ? PQexec(pg->lease, "SELECT 1") : NULL;
        int ok = res != NULL && PQresultStatus(res) == PGRES_TUPLES_OK;
        PQclear(res);
        if (ok)
            return 1;
        PW_WARN("rollouts: lost the lease (its connection to PostgreSQL dropped); another replica may take it");
        PQfinish(pg->lease);
        pg->lease = NULL;
        pg->lease_held = 0;
        return 0;
    }
    if (now < pg->next_lease_ms)
        return 0;
    pg->next_lease_ms = now + LEASE_CHECK_MS;
    if (pg->lease == NULL || PQstatus(pg->lease) != CONNECTION_OK) {
        PQfinish(pg->lease);
        char err[256];
        if ((pg->lease = pg_connect(pg->url, "pathway-control lease", err, sizeof(err))) == NULL)
            return 0;
    }
    char key[24];
    const char *p[] = {pg_i64(key, CP_PG_LEASE_LOCK)};
    PGresult *res = PQexecParams(pg->lease, "SELECT pg_try_advisory_lock($1::bigint)", 1, NULL, p, NULL, NULL, 0);
    int ok = res != NULL && PQresultStatus(res) == PGRES_TUPLES_OK;
    pg->lease_held = ok && strcmp(PQgetvalue(res, 0, 0), "t") == 0;
    PQclear(res);
    if (pg->lease_held)
        PW_INFO("rollouts: this replica holds the lease and drives rollouts");
    return pg->lease_held;
}
