/*
 * The rollout engine: the live rollout (at most one), the gate's windows (on the dataplanes' latest
 * traffic counters as the store has them, cp_traffic_feed.c), the steps, and the ends (promoted,
 * aborted, rolled back). It runs on the server's loop (cp_engine_tick from cp_server_run, on the
 * replica that holds the lease); every transition is written to the store with an event
 * before it is acted on, and its timers are stored timestamps, so a restart resumes it.
 */
#include "cp_server_internal.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "pw_log.h"

typedef struct st_cp_engine_t {
    cp_rollout_t *live; /* progressing or paused; NULL when none */
    const char **set;   /* the live rollout's current set, sorted by id (borrowed from live->sets) */
    size_t set_size;    /* entries of set */
} cp_engine_t;

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* Rebuilds the sorted current set after live->sets changed. */
static void index_set(cp_engine_t *e)
{
    free(e->set);
    e->set = NULL;
    e->set_size = 0;
    if (e->live == NULL)
        return;
    json_t *cur = json_array_get(e->live->sets, json_array_size(e->live->sets) - 1);
    size_t n = json_array_size(cur);
    if ((e->set = malloc((n + 1) * sizeof(e->set[0]))) == NULL)
        return;
    for (size_t i = 0; i < n; i++)
        if (json_is_string(json_array_get(cur, i)))
            e->set[e->set_size++] = json_string_value(json_array_get(cur, i));
    qsort(e->set, e->set_size, sizeof(e->set[0]), cmp_str);
}

static int in_set(const cp_engine_t *e, const char *id)
{
    return e->set != NULL && bsearch(&id, e->set, e->set_size, sizeof(e->set[0]), cmp_str) != NULL;
}

static void set_live(cp_engine_t *e, cp_rollout_t *ro)
{
    if (e->live != NULL && e->live != ro) {
        cp_rollout_dispose(e->live);
        free(e->live);
    }
    e->live = ro;
    index_set(e);
}

int cp_engine_init(cp_server_t *srv)
{
    cp_engine_t *e = calloc(1, sizeof(*e));
    if (e == NULL)
        return -1;
    srv->engine = e;
    cp_rollout_t *ro = calloc(1, sizeof(*ro));
    if (ro == NULL)
        return -1;
    int rc = cp_ro_store_get(srv->store, 0, ro);
    if (rc != CP_STORE_OK) {
        free(ro);
        if (rc == CP_STORE_NOT_FOUND)
            return 0;
        PW_ERROR("rollouts: cannot read the live rollout: %s", cp_store_errmsg(srv->store));
        return -1;
    }
    set_live(e, ro);
    PW_INFO("rollout %lld of version %lld resumes at step %zu (%s)", (long long)ro->id, (long long)ro->version, ro->step,
            cp_ro_state_name(ro->state));
    return 0;
}

void cp_engine_dispose(cp_server_t *srv)
{
    cp_engine_t *e = srv->engine;
    if (e == NULL)
        return;
    set_live(e, NULL);
    free(e);
    srv->engine = NULL;
}

const cp_rollout_t *cp_engine_live(cp_server_t *srv)
{
    return srv->engine != NULL ? srv->engine->live : NULL;
}

int64_t cp_engine_target(cp_server_t *srv, const char *id)
{
    cp_engine_t *e = srv->engine;
    if (e == NULL || e->live == NULL)
        return cp_store_active_version(srv->store);
    return in_set(e, id) ? e->live->version : e->live->from_version;
}

/* --- choosing the sets ---------------------------------------------------------------------------- */

/* The dataplanes a rollout may choose from: connected ones (seen within heartbeat_timeout, or with a
 * poll parked). ids are new strings in *out (free each and the array). */
static int known_dataplanes(cp_server_t *srv, char ***out, size_t *count, json_t *labels_of)
{
    cp_dataplane_t *dps;
    size_t n;
    *out = NULL;
    *count = 0;
    cp_polling_set_t polling;
    if (cp_polling_set_init(srv, &polling) != 0)
        return -1;
    if (cp_store_list_dataplanes(srv->store, NULL, 0, &dps, &n) != CP_STORE_OK) {
        free(polling.ids);
        return -1;
    }
    int64_t now = cp_now_ms();
    char **ids = calloc(n + 1, sizeof(*ids));
    for (size_t i = 0; ids != NULL && i < n; i++) {
        if (now - dps[i].last_seen_ms > (int64_t)srv->conf->heartbeat_ms && !cp_polling_set_has(&polling, dps[i].id))
            continue;
        if ((ids[*count] = strdup(dps[i].id)) == NULL)
            break;
        if (labels_of != NULL)
            json_object_set(labels_of, dps[i].id, dps[i].labels);
        (*count)++;
    }
    cp_dataplanes_free(dps, n);
    free(polling.ids);
    *out = ids;
    return ids != NULL ? 0 : -1;
}

static void free_ids(char **ids, size_t n)
{
    for (size_t i = 0; ids != NULL && i < n; i++)
        free(ids[i]);
    free(ids);
}

/* The set of step `step`: the previous one, the canaries, and the first share of the stable order. */
static json_t *choose_set(cp_server_t *srv, const cp_rollout_t *ro, size_t step)
{
    char **ids;
    size_t n;
    json_t *labels = json_object();
    if (labels == NULL || known_dataplanes(srv, &ids, &n, labels) != 0) {
        json_decref(labels);
        return NULL;
    }
    cp_rollout_order(ro->id, (const char **)ids, n);
    json_t *prev = step > 0 ? json_array_get(ro->sets, step - 1) : NULL;
    json_t *set = prev != NULL ? json_deep_copy(prev) : json_array();
    json_t *has = json_object();
    size_t i;
    json_t *v;
    json_array_foreach(set, i, v) json_object_set(has, json_string_value(v), json_true());
    const cp_rollout_spec_t *s = &ro->spec;
    /* step 0: a label canary is the labelled dataplanes alone; a percent canary takes its share, or
     * steps[0]'s when that is larger. Later steps add their share of the order. */
    size_t share = cp_rollout_share(s->steps[step].percent, n);
    if (step == 0 && s->canary_labels != NULL)
        share = 0;
    else if (step == 0 && s->canary_percent > 0 && cp_rollout_share(s->canary_percent, n) > share)
        share = cp_rollout_share(s->canary_percent, n);
    for (i = 0; set != NULL && has != NULL && i < n; i++) {
        int take = i < share || (s->canary_labels != NULL && cp_labels_match(json_object_get(labels, ids[i]), s->canary_labels));
        if (take && json_object_get(has, ids[i]) == NULL) {
            json_array_append_new(set, json_string(ids[i]));
            json_object_set(has, ids[i], json_true());
        }
    }
    free_ids(ids, n);
    json_decref(labels);
    json_decref(has);
    return set;
}

/* How many connected dataplanes the canary would take now (0: the rollout cannot start). */
static int canary_candidates(cp_server_t *srv, const cp_rollout_spec_t *s, size_t *count, size_t *connected)
{
    char **ids;
    size_t n;
    json_t *labels = json_object();
    if (labels == NULL || known_dataplanes(srv, &ids, &n, labels) != 0) {
        json_decref(labels);
        return -1;
    }
    *count = 0;
    *connected = n;
    for (size_t i = 0; i < n; i++)
        if (s->canary_labels == NULL || cp_labels_match(json_object_get(labels, ids[i]), s->canary_labels))
            (*count)++;
    free_ids(ids, n);
    json_decref(labels);
    return 0;
}

static json_t *marks_now(cp_server_t *srv, json_t *old);

/* --- the write path ------------------------------------------------------------------------------- */

int cp_ro_take(cp_call_t *call, json_t *tree, cp_ro_write_t *w)
{
    memset(w, 0, sizeof(*w));
    w->srv = call->srv;
    w->author = call->token->name;
    if (!json_is_object(tree))
        return 0;
    json_t *force = json_object_get(tree, "force");
    if (force != NULL) {
        if (!json_is_boolean(force)) {
            cp_respond_error(call, 400, "force: must be true or false (true: supersede a rollout in progress)", NULL);
            return -1;
        }
        w->force = json_is_true(force);
        json_object_del(tree, "force");
    }
    json_t *ro = json_object_get(tree, "rollout");
    const json_t *spec = ro != NULL ? ro : call->srv->conf->default_rollout;
    char err[256];
    if (spec != NULL && !json_is_null(spec)) {
        if (cp_rollout_spec_parse(spec, ro != NULL ? "rollout" : "rollout (the configured default)", &w->spec, err, sizeof(err)) !=
            0) {
            cp_respond_error(call, 400, err, NULL);
            return -1;
        }
        w->has = 1;
        w->from_default = ro == NULL;
    }
    if (ro != NULL)
        json_object_del(tree, "rollout");
    /* the default applies only where it can: with a version to roll out from */
    if (w->has && ro == NULL && cp_store_active_version(call->srv->store) == 0) {
        cp_rollout_spec_dispose(&w->spec);
        w->has = 0;
    }
    return 0;
}

static int write_hook(cp_store_t *store, int64_t version, void *arg)
{
    cp_ro_write_t *w = arg;
    cp_engine_t *e = w->srv->engine;
    int64_t now = cp_now_ms(), from = version - 1;
    if (e->live != NULL) {
        /* force: the live rollout ends here, superseded; the fleet outside its set still runs its
         * from_version, which stays the baseline of the new one */
        cp_rollout_t *old = e->live;
        cp_ro_state_t state = old->state;
        char *reason = old->reason;
        int64_t updated = old->updated_ms;
        char why[96];
        snprintf(why, sizeof(why), "superseded by version %lld (force)", (long long)version);
        old->state = CP_RO_ABORTED;
        old->reason = why;
        old->updated_ms = now;
        int rc = cp_ro_store_update(store, old);
        old->state = state;
        old->reason = reason;
        old->updated_ms = updated;
        if (rc != CP_STORE_OK || cp_store_event(store, now, w->author, "rollout_abort", old->version, why) != CP_STORE_OK)
            return CP_STORE_ERROR;
        w->superseded = 1;
        from = old->from_version;
    }
    if (!w->has)
        return CP_STORE_OK;
    cp_rollout_t *ro = calloc(1, sizeof(*ro));
    if (ro == NULL)
        return CP_STORE_ERROR;
    ro->version = version;
    ro->from_version = from;
    ro->state = CP_RO_PROGRESSING;
    ro->spec = w->spec;
    ro->spec.canary_labels = json_incref(w->spec.canary_labels);
    ro->created_ms = ro->updated_ms = ro->step_started_ms = ro->window_started_ms = now;
    ro->last_result = -1;
    ro->author = strdup(w->author);
    ro->reason = strdup("");
    ro->sets = json_array();
    /* the first window starts now: what every dataplane counted so far is before it */
    ro->marks = marks_now(w->srv, NULL);
    ro->last_baseline = json_null();
    json_t *set = NULL;
    int rc = CP_STORE_ERROR;
    if (ro->author != NULL && ro->reason != NULL && ro->sets != NULL && ro->marks != NULL &&
        cp_ro_store_insert(store, ro) == CP_STORE_OK && (set = choose_set(w->srv, ro, 0)) != NULL) {
        json_array_append_new(ro->sets, set);
        char *ids = json_dumps(set, JSON_COMPACT);
        char detail[512];
        snprintf(detail, sizeof(detail), "rollout %lld of version %lld from %lld: step 0 serves %.400s", (long long)ro->id,
                 (long long)version, (long long)from, ids != NULL ? ids : "?");
        free(ids);
        if (cp_ro_store_update(store, ro) == CP_STORE_OK &&
            cp_store_event(store, now, w->author, "rollout_start", version, detail) == CP_STORE_OK)
            rc = CP_STORE_OK;
    }
    if (rc != CP_STORE_OK) {
        cp_rollout_dispose(ro);
        free(ro);
        return rc;
    }
    w->created = ro;
    return CP_STORE_OK;
}

int cp_ro_admit(cp_call_t *call, cp_ro_write_t *w, cp_append_t *a)
{
    cp_server_t *srv = call->srv;
    const cp_rollout_t *live = cp_engine_live(srv);
    if (live != NULL && !w->force) {
        char msg[256];
        snprintf(msg, sizeof(msg),
                 "rollout %lld of version %lld is %s (step %zu): wait for it to end, promote or abort it, or write with "
                 "\"force\": true",
                 (long long)live->id, (long long)live->version, cp_ro_state_name(live->state), live->step);
        cp_respond_json(call, 409,
                        json_pack("{ss s{sI ss}}", "error", msg, "rollout", "id", (json_int_t)live->id, "state",
                                  cp_ro_state_name(live->state)));
        return -1;
    }
    if (w->has) {
        /* the first window's marks: the counters as the store has them now */
        cp_traffic_sync(srv);
        if (cp_store_active_version(srv->store) == 0) {
            cp_respond_error(call, 409, "rollout: no version is active yet to roll out from; store the first one without a rollout",
                             NULL);
            return -1;
        }
        size_t n, connected;
        if (canary_candidates(srv, &w->spec, &n, &connected) != 0) {
            cp_respond_store_error(call);
            return -1;
        }
        if (n == 0 && connected == 0 && w->from_default) {
            /* the configured default, and no dataplane to protect: the version goes as without one */
            cp_rollout_spec_dispose(&w->spec);
            w->has = 0;
        } else if (n == 0) {
            char *want = w->spec.canary_labels != NULL ? json_dumps(w->spec.canary_labels, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
            if (want != NULL)
                cp_respond_errorf(call, 409, "rollout.canary.labels: no connected dataplane has the labels %s", want);
            else
                cp_respond_error(call, 409, "rollout: no dataplane is connected to serve the canary", NULL);
            free(want);
            return -1;
        }
    }
    if (w->has || live != NULL) {
        a->hook = write_hook;
        a->hook_arg = w;
    }
    return 0;
}

static void dispose_write(cp_ro_write_t *w)
{
    if (w->created != NULL) {
        cp_rollout_dispose(w->created);
        free(w->created);
        w->created = NULL;
    }
    cp_rollout_spec_dispose(&w->spec);
}

void cp_ro_finish(cp_server_t *srv, cp_ro_write_t *w, int rc, json_t *body)
{
    cp_engine_t *e = srv->engine;
    if (rc == CP_STORE_CREATED) {
        if (w->superseded)
            PW_INFO("rollout %lld superseded (force)", (long long)e->live->id);
        if (w->created != NULL || w->superseded) {
            set_live(e, w->created);
            if (w->created != NULL)
                PW_INFO("rollout %lld of version %lld started", (long long)w->created->id, (long long)w->created->version);
            w->created = NULL;
        }
        if (body != NULL && e->live != NULL)
            json_object_set_new(body, "rollout",
                                json_pack("{sI ss}", "id", (json_int_t)e->live->id, "state", cp_ro_state_name(e->live->state)));
    }
    dispose_write(w);
}

/* --- transitions ------------------------------------------------------------------------------------ */

/* Ends the live rollout: promoted (every dataplane gets its version), or aborted / rolled back (a new
 * version of kind rollback carries the from_version's document). `detail` goes to the event. */
typedef struct st_cp_end_t {
    cp_rollout_t *ro;    /* the live rollout, its end state set */
    cp_ro_state_t state; /* aborted or rolled_back */
    const char *actor;   /* the event's */
    const char *action;  /* the event's: rollout_abort, rollout_rollback */
    const char *detail;  /* the event's message */
    const char *verdict; /* a fail verdict's figures to append with it (a NACK), NULL = none */
} cp_end_t;

static int end_hook(cp_store_t *store, int64_t version, void *arg)
{
    cp_end_t *end = arg;
    end->ro->rollback_version = version;
    if (end->verdict != NULL &&
        cp_ro_store_verdict(store, end->ro->id, end->ro->updated_ms, end->ro->step, CP_VERDICT_FAIL, end->verdict) != CP_STORE_OK)
        return CP_STORE_ERROR;
    return cp_ro_store_update(store, end->ro) == CP_STORE_OK &&
                   cp_store_event(store, end->ro->updated_ms, end->actor, end->action, end->ro->version, end->detail) == CP_STORE_OK
               ? CP_STORE_OK
               : CP_STORE_ERROR;
}

static int end_rollout(cp_server_t *srv, cp_ro_state_t state, const char *actor, const char *reason, const char *detail,
                       const char *verdict)
{
    cp_engine_t *e = srv->engine;
    cp_rollout_t *ro = e->live;
    cp_ro_state_t was = ro->state;
    char *old_reason = ro->reason;
    ro->reason = strdup(reason);
    if (ro->reason == NULL) {
        ro->reason = old_reason;
        return -1;
    }
    ro->state = state;
    ro->updated_ms = cp_now_ms();
    int ok;
    const char *action = state == CP_RO_PROMOTED  ? "rollout_promote"
                         : state == CP_RO_ABORTED ? "rollout_abort"
                                                  : "rollout_rollback";
    if (state == CP_RO_PROMOTED) {
        ok = cp_ro_store_save(srv->store, ro, actor, action, detail) == CP_STORE_OK;
    } else {
        cp_version_t v;
        ok = cp_store_get_version(srv->store, ro->from_version, &v) == CP_STORE_OK;
        if (ok) {
            char msg[CP_MAX_MESSAGE];
            snprintf(msg, sizeof(msg), "rollout %lld %s: %.900s", (long long)ro->id,
                     state == CP_RO_ABORTED ? "aborted" : "rolled back", reason);
            cp_end_t end = {ro, state, actor, action, detail, verdict};
            cp_append_t a = {.author = actor,
                             .message = msg,
                             .kind = CP_KIND_ROLLBACK,
                             .source_version = ro->from_version,
                             .document = v.document,
                             .hash = v.hash,
                             .if_match = ro->version,
                             .hook = end_hook,
                             .hook_arg = &end};
            int64_t created = 0;
            int rc = cp_store_append(srv->store, &a, &created);
            cp_version_dispose(&v);
            /* the rolled-out document is the previous one already (a forced write back to it):
             * nothing to undo, every dataplane gets it as it is */
            if (rc == CP_STORE_UNCHANGED)
                rc = cp_ro_store_save(srv->store, ro, actor, action, detail) == CP_STORE_OK ? CP_STORE_CREATED : CP_STORE_ERROR;
            ok = rc == CP_STORE_CREATED;
        }
    }
    if (!ok) {
        PW_ERROR("rollout %lld: cannot record its end (%s): %s", (long long)ro->id, cp_ro_state_name(state),
                 cp_store_errmsg(srv->store));
        free(ro->reason);
        ro->reason = old_reason;
        ro->state = was;
        ro->rollback_version = 0;
        return -1;
    }
    free(old_reason);
    if (state == CP_RO_PROMOTED)
        PW_INFO("rollout %lld: version %lld promoted", (long long)ro->id, (long long)ro->version);
    else
        PW_WARN("rollout %lld %s: version %lld replaced by version %lld: %s", (long long)ro->id, cp_ro_state_name(state),
                (long long)ro->version, (long long)ro->rollback_version, reason);
    set_live(e, NULL);
    cp_wake_waiters(srv);
    return 0;
}

/* Counters of every dataplane that reported (as the store has them), as marks: {"v": V, "r": n,
 * "e": n, "b": [...]}. */
static json_t *marks_now(cp_server_t *srv, json_t *old)
{
    size_t num_obs;
    const cp_obs_t *obs = cp_feed_obs(srv, &num_obs);
    json_t *m = old != NULL ? json_deep_copy(old) : json_object();
    for (size_t i = 0; m != NULL && i < num_obs; i++) {
        json_t *b = json_array();
        for (size_t k = 0; b != NULL && k < CP_ROLLOUT_BUCKETS; k++)
            json_array_append_new(b, json_integer((json_int_t)obs[i].t.buckets[k]));
        json_object_set_new(m, obs[i].id,
                            json_pack("{sI sI sI so}", "v", (json_int_t)obs[i].version, "r", (json_int_t)obs[i].t.requests, "e",
                                      (json_int_t)obs[i].t.errors, "b", b != NULL ? b : json_array()));
    }
    return m;
}

static int mark_of(const json_t *marks, const char *id, int64_t version, cp_traffic_t *out)
{
    const json_t *m = json_object_get(marks, id);
    memset(out, 0, sizeof(*out));
    if (!json_is_object(m) || json_integer_value(json_object_get(m, "v")) != version)
        return -1;
    out->requests = (uint64_t)json_integer_value(json_object_get(m, "r"));
    out->errors = (uint64_t)json_integer_value(json_object_get(m, "e"));
    const json_t *b = json_object_get(m, "b");
    for (size_t k = 0; k < CP_ROLLOUT_BUCKETS; k++)
        out->buckets[k] = (uint64_t)json_integer_value(json_array_get(b, k));
    return 0;
}

/* Starts a new window now: the marks are the counters as they are. */
static void restart_window(cp_server_t *srv, int64_t now)
{
    cp_engine_t *e = srv->engine;
    json_t *m = marks_now(srv, e->live->marks);
    if (m != NULL) {
        json_decref(e->live->marks);
        e->live->marks = m;
    }
    e->live->window_started_ms = now;
}

/* One window of the gate: the figures, the verdict, its record, and what it leads to. */
static void evaluate(cp_server_t *srv, int64_t now)
{
    cp_engine_t *e = srv->engine;
    cp_rollout_t *ro = e->live;
    cp_traffic_t canary = {0}, base = {0};
    size_t n_canary = 0, n_base = 0, num_obs;
    /* every dataplane's latest counters as stored, whichever replica received them */
    const cp_obs_t *obs = cp_feed_obs(srv, &num_obs);
    /* reports' times are the store's clock: compared with the newest report, not with ours */
    int64_t newest = cp_feed_newest(srv);
    for (size_t i = 0; i < num_obs; i++) {
        const cp_obs_t *o = &obs[i];
        if (newest - o->at_ms > (int64_t)srv->conf->heartbeat_ms)
            continue; /* stopped reporting (gone, or forgotten on another replica): no evidence, and not one of the sides */
        int member = in_set(e, o->id);
        if (member ? o->version != ro->version : o->version != ro->from_version)
            continue;
        cp_traffic_t mark, d;
        if (mark_of(ro->marks, o->id, o->version, &mark) == 0)
            cp_traffic_since(&o->t, &mark, &d);
        else
            d = o->t; /* counted from 0 since it applied the version, within this window */
        cp_traffic_add(member ? &canary : &base, &d);
        if (member)
            n_canary++;
        else
            n_base++;
    }
    cp_figures_t cf, bf, last;
    cp_figures_of(&canary, &cf);
    cp_figures_of(&base, &bf);
    const cp_figures_t *baseline = NULL;
    const char *source = "none";
    if (n_base > 0 && bf.requests > 0 && bf.requests >= ro->spec.min_requests) {
        baseline = &bf;
        source = "window";
        json_decref(ro->last_baseline);
        ro->last_baseline = cp_figures_json(&bf);
    } else if (cp_figures_from_json(ro->last_baseline, &last) == 0) {
        baseline = &last;
        source = "earlier window";
    }
    char reason[256];
    cp_verdict_t v = cp_rollout_judge(&ro->spec, &cf, baseline, reason, sizeof(reason));
    char from[32], to[32];
    cp_format_time(ro->window_started_ms, from);
    cp_format_time(now, to);
    json_t *fig =
        json_pack("{so so s{ss ss sI} ss sI sI ss}", "canary", cp_figures_json(&cf), "baseline", cp_figures_json(&bf), "window",
                  "from", from, "to", to, "ms", (json_int_t)(now - ro->window_started_ms), "reason", reason, "canary_dataplanes",
                  (json_int_t)n_canary, "baseline_dataplanes", (json_int_t)n_base, "baseline_source", source);
    if (fig != NULL && baseline == &last)
        json_object_set(fig, "baseline_compared", ro->last_baseline);
    char *text = fig != NULL ? json_dumps(fig, JSON_COMPACT) : NULL;
    json_decref(fig);
    ro->last_result = (int)v;
    if (v == CP_VERDICT_FAIL)
        ro->failures++;
    else if (v == CP_VERDICT_PASS)
        ro->step_passes++;
    restart_window(srv, now);
    ro->updated_ms = now;
    int failed_out = v == CP_VERDICT_FAIL && (uint64_t)ro->failures > ro->spec.failures_allowed;
    int ok = cp_store_begin(srv->store) == CP_STORE_OK;
    if (ok) {
        ok = cp_ro_store_verdict(srv->store, ro->id, now, ro->step, v, text != NULL ? text : "{}") == CP_STORE_OK &&
             cp_ro_store_update(srv->store, ro) == CP_STORE_OK &&
             (v != CP_VERDICT_FAIL || cp_store_event(srv->store, now, "rollout", "rollout_gate_fail", ro->version,
                                                     text != NULL ? text : reason) == CP_STORE_OK);
        if (ok)
            ok = cp_store_commit(srv->store) == CP_STORE_OK;
        else
            cp_store_abandon(srv->store);
    }
    if (!ok)
        PW_ERROR("rollout %lld: cannot record a verdict: %s", (long long)ro->id, cp_store_errmsg(srv->store));
    PW_INFO("rollout %lld step %zu: %s: %s", (long long)ro->id, ro->step, cp_verdict_name(v), reason);
    if (failed_out) {
        char why[384];
        snprintf(why, sizeof(why), "the gate failed %lld intervals (failures_allowed %llu); last: %s", (long long)ro->failures,
                 (unsigned long long)ro->spec.failures_allowed, reason);
        end_rollout(srv, CP_RO_ROLLED_BACK, "rollout", why, text != NULL ? text : why, NULL);
    }
    free(text);
}

/* The next step, or the promotion after the last. */
static void advance(cp_server_t *srv, int64_t now)
{
    cp_engine_t *e = srv->engine;
    cp_rollout_t *ro = e->live;
    if (ro->step + 1 >= ro->spec.num_steps) {
        char why[160];
        snprintf(why, sizeof(why), "the last step (%zu) held with its gate passing", ro->step);
        end_rollout(srv, CP_RO_PROMOTED, "rollout", why, why, NULL);
        return;
    }
    ro->step++;
    json_t *set = choose_set(srv, ro, ro->step);
    if (set == NULL) {
        ro->step--;
        return;
    }
    json_array_append_new(ro->sets, set);
    size_t passes = (size_t)ro->step_passes;
    ro->step_started_ms = now;
    ro->step_passes = 0;
    ro->updated_ms = now;
    char *ids = json_dumps(set, JSON_COMPACT);
    char detail[512];
    snprintf(detail, sizeof(detail), "step %zu (%d%%) serves %.400s", ro->step, ro->spec.steps[ro->step].percent,
             ids != NULL ? ids : "?");
    free(ids);
    if (cp_ro_store_save(srv->store, ro, "rollout", "rollout_step", detail) != CP_STORE_OK) {
        PW_ERROR("rollout %lld: cannot record step %zu: %s", (long long)ro->id, ro->step, cp_store_errmsg(srv->store));
        json_array_remove(ro->sets, json_array_size(ro->sets) - 1);
        ro->step--;
        ro->step_passes = (int64_t)passes;
        return;
    }
    index_set(e);
    PW_INFO("rollout %lld: %s", (long long)ro->id, detail);
    cp_wake_waiters(srv);
}

int64_t cp_engine_tick(cp_server_t *srv)
{
    cp_engine_t *e = srv->engine;
    if (e == NULL || e->live == NULL || e->live->state != CP_RO_PROGRESSING)
        return -1;
    int64_t now = cp_now_ms();
    if ((uint64_t)e->live->failures > e->live->spec.failures_allowed) {
        /* failed out, and the process stopped before the rollback was stored: store it now */
        char why[160];
        snprintf(why, sizeof(why), "the gate failed %lld intervals (failures_allowed %llu)", (long long)e->live->failures,
                 (unsigned long long)e->live->spec.failures_allowed);
        end_rollout(srv, CP_RO_ROLLED_BACK, "rollout", why, why, NULL);
        return e->live == NULL ? -1 : 1000;
    }
    if (now >= e->live->window_started_ms + (int64_t)e->live->spec.interval_ms) {
        /* the reports stored since the last read, whatever replica received them (once per window;
         * when the store cannot be read, the counters read last stand) */
        cp_traffic_sync(srv);
        evaluate(srv, now);
        if (e->live == NULL)
            return -1;
    }
    cp_rollout_t *ro = e->live;
    int64_t hold_end = ro->step_started_ms + (int64_t)ro->spec.steps[ro->step].hold_ms;
    if (now >= hold_end && ro->step_passes > 0 && ro->last_result == CP_VERDICT_PASS) {
        advance(srv, now);
        if (e->live == NULL)
            return -1;
    }
    int64_t next = e->live->window_started_ms + (int64_t)e->live->spec.interval_ms - now;
    if (now < hold_end && hold_end - now < next)
        next = hold_end - now;
    return next < 0 ? 0 : next;
}

void cp_engine_nack(cp_server_t *srv, const char *id, int64_t version, const char *error)
{
    cp_engine_t *e = srv->engine;
    if (e == NULL || e->live == NULL || version != e->live->version || !in_set(e, id))
        return;
    cp_rollout_t *ro = e->live;
    char why[512];
    snprintf(why, sizeof(why), "canary %s rejected version %lld: %.400s", id, (long long)version, error != NULL ? error : "");
    json_t *fig = json_pack("{ss ss}", "reason", why, "dataplane", id);
    char *text = fig != NULL ? json_dumps(fig, JSON_COMPACT) : NULL;
    json_decref(fig);
    ro->failures++;
    ro->last_result = CP_VERDICT_FAIL;
    /* the verdict, the end and the rollback version commit together */
    if (end_rollout(srv, CP_RO_ABORTED, id, why, why, text != NULL ? text : "{}") != 0) {
        ro->failures--;
        ro->last_result = -1;
    }
    free(text);
}

/* --- operator control ------------------------------------------------------------------------------- */

void cp_engine_control(cp_call_t *call, int64_t id, const char *action)
{
    cp_server_t *srv = call->srv;
    cp_engine_t *e = srv->engine;
    cp_rollout_t *ro = e != NULL ? e->live : NULL;
    if (ro == NULL || ro->id != id) {
        cp_rollout_t other;
        int rc = cp_ro_store_get(srv->store, id, &other);
        if (rc == CP_STORE_NOT_FOUND) {
            cp_respond_errorf(call, 404, "rollout %lld does not exist", (long long)id);
        } else if (rc != CP_STORE_OK) {
            cp_respond_store_error(call);
        } else {
            cp_respond_errorf(call, 409, "rollout %lld is %s: only a progressing or paused rollout can be told to %s",
                              (long long)id, cp_ro_state_name(other.state), action);
            cp_rollout_dispose(&other);
        }
        return;
    }
    int64_t now = cp_now_ms();
    const char *who = call->token->name;
    char detail[160];
    int rc = 0;
    if (strcmp(action, "pause") == 0 || strcmp(action, "resume") == 0) {
        int pause = action[0] == 'p';
        if ((ro->state == CP_RO_PAUSED) == pause) {
            cp_respond_errorf(call, 409, "rollout %lld is %s already", (long long)id, cp_ro_state_name(ro->state));
            return;
        }
        cp_rollout_t saved = *ro;
        json_t *old_marks = json_incref(ro->marks);
        if (pause) {
            ro->state = CP_RO_PAUSED;
            ro->paused_ms = now;
        } else {
            /* the hold does not count the pause; the gate starts a fresh window */
            ro->state = CP_RO_PROGRESSING;
            ro->step_started_ms += now - ro->paused_ms;
            ro->paused_ms = 0;
            cp_traffic_sync(srv);
            restart_window(srv, now);
        }
        ro->updated_ms = now;
        snprintf(detail, sizeof(detail), "rollout %lld %s at step %zu", (long long)id, pause ? "paused" : "resumed", ro->step);
        if (cp_ro_store_save(srv->store, ro, who, pause ? "rollout_pause" : "rollout_resume", detail) != CP_STORE_OK) {
            json_decref(ro->marks != old_marks ? ro->marks : old_marks);
            *ro = saved;
            ro->marks = old_marks;
            cp_respond_store_error(call);
            return;
        }
        json_decref(old_marks);
    } else if (strcmp(action, "promote") == 0) {
        snprintf(detail, sizeof(detail), "promoted by %s at step %zu", who, ro->step);
        rc = end_rollout(srv, CP_RO_PROMOTED, who, detail, detail, NULL);
    } else {
        snprintf(detail, sizeof(detail), "aborted by %s at step %zu", who, ro->step);
        rc = end_rollout(srv, CP_RO_ABORTED, who, detail, detail, NULL);
    }
    if (rc != 0) {
        cp_respond_store_error(call);
        return;
    }
    cp_rollout_t now_ro;
    if (cp_ro_store_get(srv->store, id, &now_ro) != CP_STORE_OK) {
        cp_respond_store_error(call);
        return;
    }
    cp_respond_json(call, 200, cp_rollout_json(&now_ro, cp_ro_store_verdicts(srv->store, id)));
    cp_rollout_dispose(&now_ro);
}
