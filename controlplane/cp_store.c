/*
 * The store's public functions: each dispatches to the implementation chosen at open (a
 * postgres:// or postgresql:// URL: PostgreSQL, cp_store_pg*.c; anything else is a file path:
 * sqlite, cp_store_sqlite*.c), plus what does not depend on the database (names, times, the
 * dataplane state, reading rows the two implementations share).
 */
#include "cp_store_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <libpq-fe.h>

/* --- choosing and dispatching ------------------------------------------------------------------ */

int cp_store_is_url(const char *database)
{
    return database != NULL && (strncmp(database, "postgres://", 11) == 0 || strncmp(database, "postgresql://", 13) == 0);
}

int cp_store_check_url(const char *url, char *err, size_t errlen)
{
    char *msg = NULL;
    PQconninfoOption *opts = PQconninfoParse(url, &msg);
    if (opts == NULL) {
        snprintf(err, errlen, "not a valid PostgreSQL URL: %s", msg != NULL ? msg : "out of memory");
        size_t n = strlen(err);
        while (n > 0 && err[n - 1] == '\n')
            err[--n] = '\0';
        PQfreemem(msg);
        return -1;
    }
    PQconninfoFree(opts);
    return 0;
}

void cp_store_describe(const char *database, char *out, size_t len)
{
    /* postgres://user:secret@host/db -> postgres://user:***@host/db: logs never carry a password */
    const char *scheme = cp_store_is_url(database) ? strstr(database, "://") : NULL;
    const char *at = scheme != NULL ? strchr(scheme + 3, '@') : NULL, *colon = NULL;
    if (at != NULL)
        for (const char *p = scheme + 3; p < at; p++)
            if (*p == ':') {
                colon = p;
                break;
            }
    if (colon != NULL)
        snprintf(out, len, "%.*s:***%s", (int)(colon - database), database, at);
    else
        snprintf(out, len, "%s", database);
    /* a password may also come as ?password=...: cut the query off */
    char *q = cp_store_is_url(out) ? strstr(out, "password=") : NULL;
    if (q != NULL)
        snprintf(q, len - (size_t)(q - out), "password=***");
}

cp_store_t *cp_store_open(const char *database, char *err, size_t errlen)
{
    if (cp_store_is_url(database))
        return cp_store_pg_open(database, err, errlen);
    return cp_store_sqlite_open(database, err, errlen);
}

int cp_store_backup(const char *database, const char *dest, char *err, size_t errlen)
{
    if (cp_store_is_url(database)) {
        snprintf(err, errlen, "backup copies a sqlite database; back up PostgreSQL with its own tools (pg_dump, pg_basebackup)");
        return -1;
    }
    return cp_store_sqlite_backup(database, dest, err, errlen);
}

void cp_store_close(cp_store_t *store)
{
    if (store != NULL)
        store->ops->close(store);
}

const char *cp_store_kind(cp_store_t *store)
{
    return store->ops->name;
}

const char *cp_store_errmsg(cp_store_t *store)
{
    return store->errmsg;
}

int cp_store_schema_version(cp_store_t *store)
{
    return store->schema_version;
}

int64_t cp_store_active_version(cp_store_t *store)
{
    return store->active;
}

const char *cp_store_active_hash(cp_store_t *store)
{
    return store->active_hash;
}

int64_t cp_store_count_versions(cp_store_t *store)
{
    return store->active;
}

int cp_store_refresh(cp_store_t *store)
{
    return store->ops->refresh != NULL ? store->ops->refresh(store) : CP_STORE_OK;
}

int cp_store_has_version(cp_store_t *store, int64_t n)
{
    if (n <= store->active)
        return 1;
    /* another replica may have stored it a moment ago, before this one's cache heard of it */
    return cp_store_refresh(store) == CP_STORE_OK && n <= store->active;
}

int cp_store_listen_fd(cp_store_t *store)
{
    return store->ops->listen_fd != NULL ? store->ops->listen_fd(store) : -1;
}

void cp_store_notified(cp_store_t *store)
{
    if (store->ops->notified != NULL)
        store->ops->notified(store);
}

int cp_store_tick(cp_store_t *store)
{
    return store->ops->tick != NULL ? store->ops->tick(store) : 0;
}

int cp_store_lease(cp_store_t *store)
{
    return store->ops->lease != NULL ? store->ops->lease(store) : 1;
}

void cp_store_set_change_hook(cp_store_t *store, void (*fn)(void *arg), void *arg)
{
    store->on_change = fn;
    store->on_change_arg = arg;
}

int cp_store_get_version(cp_store_t *store, int64_t n, cp_version_t *out)
{
    return store->ops->get_version(store, n, out);
}

int cp_store_append(cp_store_t *store, const cp_append_t *a, int64_t *version)
{
    return store->ops->append(store, a, version);
}

json_t *cp_store_list_versions(cp_store_t *store, int64_t before, int limit, const cp_list_filter_t *f)
{
    return store->ops->list_versions(store, before, limit, f);
}

int cp_store_set_tag(cp_store_t *store, const char *name, int64_t version, const char *author, const char *message)
{
    return store->ops->set_tag(store, name, version, author, message);
}

int cp_store_get_tag(cp_store_t *store, const char *name, int64_t *version)
{
    return store->ops->get_tag(store, name, version);
}

json_t *cp_store_tag_json(cp_store_t *store, const char *name, int *rc)
{
    return store->ops->tag_json(store, name, rc);
}

json_t *cp_store_list_tags(cp_store_t *store)
{
    return store->ops->list_tags(store);
}

int cp_store_delete_tag(cp_store_t *store, const char *name, const char *author, const char *message, int64_t *version)
{
    return store->ops->delete_tag(store, name, author, message, version);
}

json_t *cp_store_list_events(cp_store_t *store, int64_t before, int limit, const cp_list_filter_t *f)
{
    return store->ops->list_events(store, before, limit, f);
}

int cp_store_begin(cp_store_t *store)
{
    return store->ops->begin(store);
}

int cp_store_commit(cp_store_t *store)
{
    return store->ops->commit(store);
}

void cp_store_abandon(cp_store_t *store)
{
    store->ops->abandon(store);
}

int cp_store_event(cp_store_t *store, int64_t now_ms, const char *actor, const char *action, int64_t version, const char *detail)
{
    return store->ops->event(store, now_ms, actor, action, version, detail);
}

int cp_store_dataplane_seen(cp_store_t *store, const char *id, int64_t now_ms, int64_t delivered)
{
    return store->ops->dataplane_seen(store, id, now_ms, delivered);
}

int cp_store_dataplanes_delivered(cp_store_t *store, const char *const *ids, size_t n, int64_t delivered)
{
    return store->ops->dataplanes_delivered(store, ids, n, delivered);
}

int cp_store_dataplane_report(cp_store_t *store, const char *id, int64_t now_ms, int64_t version, int applied, const char *error,
                              json_t *labels, json_t *stats, const char *hash, const char *traffic)
{
    cp_dp_report_t r = {id, now_ms, version, applied, error, labels, stats, hash, traffic};
    return store->ops->dataplane_reports(store, &r, 1);
}

int cp_store_dataplane_reports(cp_store_t *store, const cp_dp_report_t *reports, size_t n)
{
    return store->ops->dataplane_reports(store, reports, n);
}

typedef struct st_traffic_rows_t {
    cp_traffic_report_t *r;
    size_t n, cap;
} traffic_rows_t;

static int64_t col_int(cp_row_col_fn col, void *row, int i);

static int traffic_row(void *arg, cp_row_col_fn col, void *row)
{
    traffic_rows_t *t = arg;
    const char *id = col(row, 0), *text = col(row, 1);
    if (id == NULL || text == NULL)
        return 0;
    json_t *v = json_loads(text, 0, NULL);
    cp_traffic_report_t r = {.traffic = v, .at_ms = col_int(col, row, 2), .seq = col_int(col, row, 3)};
    char err[256];
    if (v == NULL || cp_traffic_parse_services(v, &r.version, &r.svcs, &r.num_svcs, err, sizeof(err)) != 0) {
        /* stored by a heartbeat that passed the same check: only a hand-edited row gets here */
        json_decref(v);
        return 0;
    }
    if (t->n == t->cap) {
        size_t cap = t->cap ? t->cap * 2 : 64;
        cp_traffic_report_t *n = realloc(t->r, cap * sizeof(*n));
        if (n == NULL)
            goto Oom;
        t->r = n;
        t->cap = cap;
    }
    if ((r.id = strdup(id)) == NULL)
        goto Oom;
    t->r[t->n++] = r;
    return 0;
Oom:
    json_decref(v);
    free(r.svcs);
    return -1;
}

int cp_store_traffic_since(cp_store_t *store, int64_t after_ms, cp_traffic_report_t **out, size_t *count)
{
    traffic_rows_t t = {NULL, 0, 0};
    int rc = store->ops->traffic_since(store, after_ms, traffic_row, &t);
    if (rc != CP_STORE_OK) {
        cp_traffic_reports_free(t.r, t.n);
        *out = NULL;
        *count = 0;
        return CP_STORE_ERROR;
    }
    *out = t.r;
    *count = t.n;
    return CP_STORE_OK;
}

void cp_traffic_reports_free(cp_traffic_report_t *r, size_t count)
{
    for (size_t i = 0; i < count; i++) {
        free(r[i].id);
        free(r[i].svcs);
        json_decref(r[i].traffic);
    }
    free(r);
}

int cp_store_forget_dataplane(cp_store_t *store, const char *id, const char *actor)
{
    return store->ops->forget_dataplane(store, id, actor);
}

int cp_store_dataplane_admit(cp_store_t *store, const char *id, uint64_t max)
{
    return store->ops->dataplane_admit(store, id, max);
}

int cp_store_get_dataplane(cp_store_t *store, const char *id, cp_dataplane_t *out)
{
    return store->ops->get_dataplane(store, id, out);
}

int cp_store_get_dataplanes(cp_store_t *store, const char *const *ids, size_t n, int narrow, cp_dataplane_t *out, int *found)
{
    memset(found, 0, n * sizeof(*found));
    return n == 0 ? CP_STORE_OK : store->ops->get_dataplanes(store, ids, n, narrow, out, found);
}

int cp_store_dataplanes_polled(cp_store_t *store, const cp_dp_poll_t *polls, size_t n, int64_t now_ms)
{
    return n == 0 ? CP_STORE_OK : store->ops->dataplanes_polled(store, polls, n, now_ms);
}

int cp_store_list_dataplanes(cp_store_t *store, const char *after, int limit, cp_dataplane_t **out, size_t *count)
{
    return store->ops->list_dataplanes(store, after, limit, 0, out, count);
}

int cp_store_list_dataplane_states(cp_store_t *store, cp_dataplane_t **out, size_t *count)
{
    return store->ops->list_dataplanes(store, NULL, 0, 1, out, count);
}

int cp_store_dataplane_labels(cp_store_t *store, const char *id, json_t *labels)
{
    return store->ops->dataplane_labels(store, id, labels);
}

int cp_ro_store_insert(cp_store_t *store, cp_rollout_t *ro)
{
    return store->ops->ro_insert(store, ro);
}

int cp_ro_store_update(cp_store_t *store, const cp_rollout_t *ro)
{
    return store->ops->ro_update(store, ro);
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
    return store->ops->ro_verdict(store, rollout, now_ms, step, result, figures);
}

int cp_ro_store_get(cp_store_t *store, int64_t id, cp_rollout_t *out)
{
    return store->ops->ro_get(store, id, out);
}

int cp_ro_store_newest(cp_store_t *store, int64_t *id, cp_ro_state_t *state, int64_t *step)
{
    return store->ops->ro_newest(store, id, state, step);
}

json_t *cp_ro_store_list(cp_store_t *store, int64_t before, int limit)
{
    return store->ops->ro_list(store, before, limit);
}

json_t *cp_ro_store_verdicts(cp_store_t *store, int64_t rollout)
{
    return store->ops->ro_verdicts(store, rollout);
}

int cp_ro_store_verdict_counts(cp_store_t *store, uint64_t counts[CP_VERDICT_NUM])
{
    return store->ops->ro_verdict_counts(store, counts);
}

/* --- independent of the database ---------------------------------------------------------------- */

static const char *const kind_names[] = {"apply", "patch", "rollback"};

const char *cp_kind_name(cp_kind_t kind)
{
    return (size_t)kind < 3 ? kind_names[kind] : "?";
}

int cp_kind_from_name(const char *s, cp_kind_t *out)
{
    for (size_t i = 0; i < 3; i++)
        if (s != NULL && strcmp(s, kind_names[i]) == 0) {
            *out = (cp_kind_t)i;
            return 0;
        }
    return -1;
}

int64_t cp_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void cp_format_time(int64_t ms, char out[32])
{
    time_t secs = (time_t)(ms / 1000);
    struct tm tm;
    gmtime_r(&secs, &tm);
    /* the moduli only tell the compiler the fields fit */
    snprintf(out, 32, "%04u-%02u-%02uT%02u:%02u:%02u.%03uZ", (unsigned)(tm.tm_year + 1900) % 10000u,
             (unsigned)(tm.tm_mon + 1) % 100u, (unsigned)tm.tm_mday % 100u, (unsigned)tm.tm_hour % 100u, (unsigned)tm.tm_min % 100u,
             (unsigned)tm.tm_sec % 100u, (unsigned)(ms % 1000) % 1000u);
}

json_t *cp_time_json(int64_t ms)
{
    char buf[32];
    cp_format_time(ms, buf);
    return json_string(buf);
}

void cp_version_dispose(cp_version_t *v)
{
    free(v->author);
    free(v->message);
    free(v->document);
    memset(v, 0, sizeof(*v));
}

json_t *cp_version_summary_json(const cp_version_t *v)
{
    return json_pack("{sI so ss ss ss so ss}", "version", (json_int_t)v->version, "created_at", cp_time_json(v->created_ms),
                     "author", v->author, "message", v->message, "kind", cp_kind_name(v->kind), "source_version",
                     v->source_version > 0 ? json_integer(v->source_version) : json_null(), "hash", v->hash);
}

static const char *const state_names[] = {"synced", "applying", "rejected", "stale", "disconnected", "drifted"};

const char *cp_dp_state_name(cp_dp_state_t state)
{
    return (size_t)state < CP_DP_NUM_STATES ? state_names[state] : "?";
}

void cp_dataplane_dispose(cp_dataplane_t *dp)
{
    free(dp->id);
    free(dp->error);
    json_decref(dp->labels);
    json_decref(dp->stats);
    json_decref(dp->traffic);
    memset(dp, 0, sizeof(*dp));
}

void cp_dataplanes_free(cp_dataplane_t *dps, size_t count)
{
    for (size_t i = 0; i < count; i++)
        cp_dataplane_dispose(&dps[i]);
    free(dps);
}

cp_dp_state_t cp_dp_state(const cp_dataplane_t *dp, int64_t active, int64_t now_ms, int64_t heartbeat_ms, int polling, int drifted)
{
    if (!polling && now_ms - dp->last_seen_ms > heartbeat_ms)
        return CP_DP_DISCONNECTED;
    if (drifted)
        return CP_DP_DRIFTED;
    if (dp->applied_version == active)
        return CP_DP_SYNCED;
    if (dp->rejected_version != 0 && dp->rejected_version == active)
        /* handed out again for one retry after its latest report (it restarted): applying */
        return dp->delivered_since_report && dp->delivered_version == active ? CP_DP_APPLYING : CP_DP_REJECTED;
    if (dp->delivered_version == active)
        return CP_DP_APPLYING;
    return CP_DP_STALE;
}

/* --- rows as text, whichever database --------------------------------------------------------- */

static int64_t col_int(cp_row_col_fn col, void *row, int i)
{
    const char *s = col(row, i);
    return s != NULL ? strtoll(s, NULL, 10) : 0;
}

static char *col_strdup(cp_row_col_fn col, void *row, int i)
{
    const char *s = col(row, i);
    return strdup(s != NULL ? s : "");
}

static json_t *col_json(cp_row_col_fn col, void *row, int i)
{
    const char *s = col(row, i);
    return s != NULL ? json_loads(s, JSON_DECODE_ANY, NULL) : NULL;
}

int cp_dp_from_row(cp_row_col_fn col, void *row, cp_dataplane_t *dp)
{
    memset(dp, 0, sizeof(*dp));
    dp->id = col_strdup(col, row, 0);
    const char *labels = col(row, 1), *stats = col(row, 9);
    dp->labels = json_loads(labels != NULL ? labels : "{}", 0, NULL);
    dp->first_seen_ms = col_int(col, row, 2);
    dp->last_seen_ms = col_int(col, row, 3);
    dp->delivered_version = col_int(col, row, 4);
    dp->reported_version = col_int(col, row, 5);
    dp->applied_version = col_int(col, row, 6);
    dp->rejected_version = col_int(col, row, 7);
    dp->error = col_strdup(col, row, 8);
    dp->stats = json_loads(stats != NULL ? stats : "{}", 0, NULL);
    dp->delivered_since_report = col_int(col, row, 10) != 0;
    const char *rh = col(row, 11);
    snprintf(dp->reported_hash, sizeof(dp->reported_hash), "%s", rh != NULL ? rh : "");
    const char *traffic = col(row, 12);
    dp->traffic = traffic != NULL ? json_loads(traffic, 0, NULL) : NULL;
    dp->traffic_ms = col_int(col, row, 13);
    if (dp->labels == NULL)
        dp->labels = json_object();
    if (dp->stats == NULL)
        dp->stats = json_object();
    if (dp->id == NULL || dp->error == NULL || dp->labels == NULL || dp->stats == NULL) {
        cp_dataplane_dispose(dp);
        return -1;
    }
    return 0;
}

int cp_ro_from_row(cp_row_col_fn col, void *row, cp_rollout_t *ro)
{
    memset(ro, 0, sizeof(*ro));
    ro->id = col_int(col, row, 0);
    ro->version = col_int(col, row, 1);
    ro->from_version = col_int(col, row, 2);
    json_t *spec = col_json(col, row, 3);
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
    if (cp_ro_state_from_name(col(row, 4), &ro->state) != 0)
        rc = -1;
    ro->step = (size_t)col_int(col, row, 5);
    ro->sets = col_json(col, row, 6);
    ro->marks = col_json(col, row, 7);
    ro->last_baseline = col_json(col, row, 8);
    ro->failures = col_int(col, row, 9);
    ro->step_passes = col_int(col, row, 10);
    const char *lr = col(row, 11);
    ro->last_result = -1;
    for (int v = 0; lr != NULL && v < CP_VERDICT_NUM; v++)
        if (strcmp(lr, cp_verdict_name((cp_verdict_t)v)) == 0)
            ro->last_result = v;
    ro->created_ms = col_int(col, row, 12);
    ro->updated_ms = col_int(col, row, 13);
    ro->step_started_ms = col_int(col, row, 14);
    ro->window_started_ms = col_int(col, row, 15);
    ro->paused_ms = col_int(col, row, 16);
    ro->rollback_version = col_int(col, row, 17);
    ro->author = col_strdup(col, row, 18);
    ro->reason = col_strdup(col, row, 19);
    if (!json_is_array(ro->sets) || !json_is_object(ro->marks) || ro->last_baseline == NULL || ro->author == NULL ||
        ro->reason == NULL || ro->step >= ro->spec.num_steps)
        rc = -1;
    if (rc != 0)
        cp_rollout_dispose(ro);
    return rc;
}

json_t *cp_verdict_from_row(cp_row_col_fn col, void *row)
{
    json_t *v = col_json(col, row, 3);
    if (!json_is_object(v)) {
        json_decref(v);
        v = json_object();
    }
    char at[32];
    cp_format_time(col_int(col, row, 0), at);
    json_object_set_new(v, "at", json_string(at));
    json_object_set_new(v, "step", json_integer(col_int(col, row, 1)));
    const char *r = col(row, 2);
    json_object_set_new(v, "result", json_string(r != NULL ? r : ""));
    return v;
}
