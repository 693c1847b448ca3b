/*
 * The dataplane handlers and their long polls: a poll that has nothing new parks on srv->waiters
 * (ordered by deadline) until a version is stored (cp_wake_waiters) or its wait ends (cp_expire_waiters).
 */

#include "cp_server_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "pw_log.h"
#include "cp_series.h"

/* --- long polls ------------------------------------------------------------------------------ */

/* A parked poll proves its dataplane alive only for heartbeat_timeout after it parked: h2o 2.2
 * does not read an HTTP/1 socket while a request is in progress, so a poll whose client vanished
 * stays parked until its wait ends. */
static int waiter_is_proof(cp_server_t *srv, const cp_waiter_t *w, int64_t now_mono)
{
    return now_mono - w->parked <= (int64_t)srv->conf->heartbeat_ms;
}

/* The parked polls of a dataplane are found through srv->poll_index, not by a scan of all of them
 * (a report asks once per call). */
static h2o_linklist_t *poll_bucket(cp_server_t *srv, const char *id)
{
    uint32_t h = 2166136261u;
    for (const unsigned char *s = (const unsigned char *)id; *s; s++)
        h = (h ^ *s) * 16777619u;
    return &srv->poll_index[h & (CP_POLL_BUCKETS - 1)];
}

static int is_polling(cp_server_t *srv, const char *id)
{
    int64_t now = mono_ms();
    h2o_linklist_t *b = poll_bucket(srv, id);
    for (h2o_linklist_t *n = b->next; n != b; n = n->next) {
        cp_waiter_t *w = H2O_STRUCT_FROM_MEMBER(cp_waiter_t, by_id, n);
        if (waiter_is_proof(srv, w, now) && strcmp(w->call->params[0].base, id) == 0)
            return 1;
    }
    return 0;
}

static int cmp_id(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

int cp_polling_set_init(cp_server_t *srv, cp_polling_set_t *set)
{
    int64_t now = mono_ms();
    set->size = 0;
    set->ids = malloc((srv->num_waiters + 1) * sizeof(set->ids[0]));
    if (set->ids == NULL)
        return -1;
    for (h2o_linklist_t *n = srv->waiters.next; n != &srv->waiters; n = n->next) {
        cp_waiter_t *w = H2O_STRUCT_FROM_MEMBER(cp_waiter_t, link, n);
        if (waiter_is_proof(srv, w, now))
            set->ids[set->size++] = w->call->params[0].base;
    }
    qsort(set->ids, set->size, sizeof(set->ids[0]), cmp_id);
    return 0;
}

int cp_polling_set_has(const cp_polling_set_t *set, const char *id)
{
    return bsearch(&id, set->ids, set->size, sizeof(set->ids[0]), cmp_id) != NULL;
}

/* --- drift -------------------------------------------------------------------------------------- */

/* The memo entry of `version`, filled from the store on a miss; NULL on a store failure. */
static const cp_hash_memo_t *version_hashes(cp_server_t *srv, int64_t version)
{
    cp_hash_memo_t *m = &srv->hash_memo[(uint64_t)version % CP_HASH_MEMO_SLOTS];
    if (m->version == version)
        return m;
    cp_version_t v;
    if (cp_store_get_version(srv->store, version, &v) != CP_STORE_OK)
        return NULL;
    memcpy(m->stored, v.hash, sizeof(m->stored));
    memcpy(m->current, v.hash, sizeof(m->current));
    /* a dataplane hashes the document in its build's canonical form, defaults filled in: a version
     * stored before a default was added hashes differently today, and is no drift */
    json_t *tree = cp_document_json(v.document);
    cp_version_dispose(&v);
    char *canonical = NULL;
    cfg_errors_t errs;
    cfg_errors_init(&errs);
    if (tree != NULL && cp_document_prepare(tree, &canonical, m->current, &errs) != 0)
        memcpy(m->current, m->stored, sizeof(m->current));
    cfg_errors_dispose(&errs);
    free(canonical);
    json_decref(tree);
    m->version = version;
    return m;
}

static int hash_is_version(cp_server_t *srv, const char *hash, int64_t version)
{
    const cp_hash_memo_t *m = version > 0 ? version_hashes(srv, version) : NULL;
    return m != NULL && (strcmp(hash, m->stored) == 0 || strcmp(hash, m->current) == 0);
}

int cp_dp_drifted(cp_server_t *srv, const cp_dataplane_t *dp, char expected[65])
{
    expected[0] = '\0';
    if (dp->applied_version <= 0)
        return 0;
    const cp_hash_memo_t *m = version_hashes(srv, dp->applied_version);
    if (m == NULL)
        return 0;
    memcpy(expected, m->current, 65);
    if (dp->reported_hash[0] == '\0' || hash_is_version(srv, dp->reported_hash, dp->applied_version))
        return 0;
    /* handed a newer version and applying it: the report raced the ACK */
    if (dp->delivered_version > dp->applied_version && hash_is_version(srv, dp->reported_hash, dp->delivered_version))
        return 0;
    return 1;
}

/* --- fleet state per version --------------------------------------------------------------------- */

/* A version asked of cp_fleet_counts and where its count goes. */
typedef struct st_cp_fleet_slot_t {
    int64_t version;
    size_t index; /* in the caller's arrays */
} cp_fleet_slot_t;

static int cmp_slot(const void *a, const void *b)
{
    int64_t x = ((const cp_fleet_slot_t *)a)->version, y = ((const cp_fleet_slot_t *)b)->version;
    return (x > y) - (x < y);
}

typedef enum en_cp_fleet_field_t { FLEET_SYNCED, FLEET_REJECTED, FLEET_APPLYING } cp_fleet_field_t;

/* Counts one dataplane in `field` of `version` when it is among the asked ones (they may repeat:
 * each gets the count). */
static void fleet_add(const cp_fleet_slot_t *slots, size_t n, int64_t version, cp_fleet_count_t *out, cp_fleet_field_t field)
{
    if (version <= 0)
        return;
    cp_fleet_slot_t key = {version, 0};
    const cp_fleet_slot_t *hit = bsearch(&key, slots, n, sizeof(*slots), cmp_slot);
    if (hit == NULL)
        return;
    while (hit > slots && hit[-1].version == version)
        hit--;
    for (; hit < slots + n && hit->version == version; hit++) {
        cp_fleet_count_t *c = &out[hit->index];
        if (field == FLEET_SYNCED)
            c->synced++;
        else if (field == FLEET_REJECTED)
            c->rejected++;
        else
            c->applying++;
    }
}

int cp_fleet_counts(cp_server_t *srv, const int64_t *versions, size_t n, cp_fleet_count_t *out)
{
    memset(out, 0, n * sizeof(*out));
    if (n == 0)
        return 0;
    cp_fleet_slot_t *slots = malloc(n * sizeof(*slots));
    cp_polling_set_t polling = {NULL, 0};
    cp_dataplane_t *dps = NULL;
    size_t ndp = 0;
    if (slots == NULL || cp_polling_set_init(srv, &polling) != 0) {
        free(slots);
        return -1;
    }
    if (cp_store_list_dataplane_states(srv->store, &dps, &ndp) != CP_STORE_OK) {
        free(slots);
        free(polling.ids);
        return -1;
    }
    for (size_t i = 0; i < n; i++)
        slots[i] = (cp_fleet_slot_t){versions[i], i};
    qsort(slots, n, sizeof(*slots), cmp_slot);
    int64_t now = cp_now_ms();
    for (size_t i = 0; i < ndp; i++) {
        const cp_dataplane_t *dp = &dps[i];
        char expected[65];
        int drifted = cp_dp_drifted(srv, dp, expected);
        /* the state GET /v1/dataplanes shows, judged against the version meant for it */
        cp_dp_state_t state = cp_dp_state(dp, cp_engine_target(srv, dp->id), now, (int64_t)srv->conf->heartbeat_ms,
                                          cp_polling_set_has(&polling, dp->id), drifted);
        if (state == CP_DP_DISCONNECTED)
            continue;
        if (state != CP_DP_DRIFTED)
            fleet_add(slots, n, dp->applied_version, out, FLEET_SYNCED);
        /* applying: handed the version meant for it (cp_dp_state says so only then) */
        if (state == CP_DP_APPLYING)
            fleet_add(slots, n, dp->delivered_version, out, FLEET_APPLYING);
        /* a NACKed version handed again for one retry (the dataplane restarted) is applying, not rejected */
        if (dp->rejected_version != 0 && !(state == CP_DP_APPLYING && dp->delivered_version == dp->rejected_version))
            fleet_add(slots, n, dp->rejected_version, out, FLEET_REJECTED);
    }
    cp_dataplanes_free(dps, ndp);
    free(polling.ids);
    free(slots);
    return 0;
}

/* --- endpoint health ------------------------------------------------------------------------------ */

json_t *cp_dp_endpoints(const cp_dataplane_t *dp)
{
    json_t *reported = json_object_get(dp->stats, "endpoints");
    if (!json_is_object(reported))
        return NULL;
    json_t *out = json_object(), *e;
    const char *svc;
    json_object_foreach(reported, svc, e)
    {
        json_t *up = json_object_get(e, "up"), *total = json_object_get(e, "total"), *panic = json_object_get(e, "panic");
        if (!cp_valid_id(svc, strlen(svc)) || !json_is_integer(up) || !json_is_integer(total) || !json_is_boolean(panic) ||
            json_integer_value(up) < 0 || json_integer_value(total) < json_integer_value(up))
            continue;
        json_object_set_new(out, svc, json_pack("{sO sO sO}", "up", up, "total", total, "panic", panic));
    }
    return out;
}

/* --- handlers: dataplanes ------------------------------------------------------------------------ */

/* `polling`: whether a parked poll proves it alive (is_polling). */
static json_t *dataplane_json(cp_call_t *call, const cp_dataplane_t *dp, int64_t active, int64_t now, int polling)
{
    cp_server_t *srv = call->srv;
    char first[32], last[32], expected[65];
    cp_format_time(dp->first_seen_ms, first);
    cp_format_time(dp->last_seen_ms, last);
    int drifted = cp_dp_drifted(srv, dp, expected);
    /* labels and stats are free-form text from the dataplane: a URL in them is redacted too */
    json_t *labels = cp_redact_strings(call, cp_call_redacts(call) ? json_deep_copy(dp->labels) : json_incref(dp->labels));
    json_t *stats = cp_redact_strings(call, cp_call_redacts(call) ? json_deep_copy(dp->stats) : json_incref(dp->stats));
    /* under a rollout, a dataplane outside its set is synced on the rollout's from_version */
    (void)active;
    cp_dp_state_t state = cp_dp_state(dp, cp_engine_target(srv, dp->id), now, (int64_t)srv->conf->heartbeat_ms, polling, drifted);
    json_t *o =
        json_pack("{ss so* ss ss sI sI sI ss so so so*}", "id", dp->id, "labels", labels, "first_seen", first, "last_seen", last,
                  "applied_version", (json_int_t)dp->applied_version, "delivered_version", (json_int_t)dp->delivered_version,
                  "reported_version", (json_int_t)dp->reported_version, "state", cp_dp_state_name(state), "reported_hash",
                  dp->reported_hash[0] ? json_string(dp->reported_hash) : json_null(), "expected_hash",
                  expected[0] ? json_string(expected) : json_null(), "stats", stats);
    json_t *endpoints = cp_dp_endpoints(dp);
    if (o != NULL)
        json_object_set_new(o, "endpoints", endpoints != NULL ? endpoints : json_null());
    else
        json_decref(endpoints);
    int64_t tv;
    cp_service_traffic_t *svcs;
    size_t nsvcs;
    char terr[256];
    if (o != NULL && dp->traffic != NULL && cp_traffic_parse_services(dp->traffic, &tv, &svcs, &nsvcs, terr, sizeof(terr)) == 0) {
        /* the evidence a rollout reads: the latest heartbeat's counters as stored, summed over its
         * services */
        cp_traffic_t t = {0};
        for (size_t i = 0; i < nsvcs; i++)
            cp_traffic_add(&t, &svcs[i].t);
        free(svcs);
        cp_figures_t f;
        cp_figures_of(&t, &f);
        json_t *tj = cp_figures_json(&f);
        if (tj != NULL)
            json_object_set_new(tj, "version", json_integer(tv));
        json_object_set_new(o, "traffic", tj != NULL ? tj : json_null());
    }
    if (o != NULL && dp->rejected_version != 0) {
        json_object_set_new(o, "rejected_version", json_integer(dp->rejected_version));
        json_object_set_new(o, "error", json_string(cp_call_redacts(call) ? cp_redact_text(call, dp->error) : dp->error));
    }
    return o;
}

static int path_dataplane_id(cp_call_t *call)
{
    if (!cp_valid_id(call->params[0].base, call->params[0].len)) {
        cp_respond_error(call, 400, "id: a dataplane id is 1-64 characters of A-Z a-z 0-9 _ . -", NULL);
        return -1;
    }
    return 0;
}

void cp_h_list_dataplanes(cp_call_t *call)
{
    size_t len;
    int limit = 1000;
    int64_t v;
    const char *s = cp_query_get(&call->query, "limit", &len), *after = NULL;
    if (s != NULL) {
        if (cp_parse_version(s, len, 0, &v) != 0 || v > 1000) {
            cp_respond_error(call, 400, "limit: must be an integer from 1 to 1000", NULL);
            return;
        }
        limit = (int)v;
    }
    if ((after = cp_query_get(&call->query, "after", &len)) != NULL && !cp_valid_id(after, len)) {
        cp_respond_error(call, 400, "after: must be a dataplane id (the next_after of the previous page)", NULL);
        return;
    }
    cp_dataplane_t *dps;
    size_t n;
    cp_polling_set_t polling;
    if (cp_polling_set_init(call->srv, &polling) != 0) {
        cp_respond_error(call, 503, "out of memory", NULL);
        return;
    }
    if (cp_store_list_dataplanes(call->srv->store, after, limit, &dps, &n) != CP_STORE_OK) {
        free(polling.ids);
        cp_respond_store_error(call);
        return;
    }
    int64_t active = cp_store_active_version(call->srv->store), now = cp_now_ms();
    json_t *arr = json_array();
    for (size_t i = 0; arr != NULL && i < n; i++)
        json_array_append_new(arr, dataplane_json(call, &dps[i], active, now, cp_polling_set_has(&polling, dps[i].id)));
    json_t *next = n == (size_t)limit ? json_string(dps[n - 1].id) : json_null();
    cp_dataplanes_free(dps, n);
    free(polling.ids);
    cp_respond_json(call, 200,
                    json_pack("{sI so so}", "active_version", (json_int_t)active, "dataplanes", arr, "next_after", next));
}

void cp_h_get_dataplane(cp_call_t *call)
{
    if (path_dataplane_id(call) != 0)
        return;
    cp_dataplane_t dp;
    int rc = cp_store_get_dataplane(call->srv->store, call->params[0].base, &dp);
    if (rc == CP_STORE_NOT_FOUND) {
        cp_respond_errorf(call, 404, "dataplane \"%s\" has never called", call->params[0].base);
        return;
    }
    if (rc != CP_STORE_OK) {
        cp_respond_store_error(call);
        return;
    }
    json_t *body = dataplane_json(call, &dp, cp_store_active_version(call->srv->store), cp_now_ms(), is_polling(call->srv, dp.id));
    cp_dataplane_dispose(&dp);
    cp_respond_json(call, 200, body);
}

void cp_h_delete_dataplane(cp_call_t *call)
{
    cp_server_t *srv = call->srv;
    if (path_dataplane_id(call) != 0)
        return;
    const char *id = call->params[0].base;
    cp_dataplane_t dp;
    int rc = cp_store_get_dataplane(srv->store, id, &dp);
    if (rc == CP_STORE_NOT_FOUND) {
        cp_respond_errorf(call, 404, "dataplane \"%s\" is not known", id);
        return;
    }
    if (rc != CP_STORE_OK) {
        cp_respond_store_error(call);
        return;
    }
    /* a connected dataplane would be recorded again by its next call at once: forgetting it would
     * only lose its state; stop it first (or wait until it shows as disconnected) */
    int polling = is_polling(srv, id);
    cp_dp_state_t state = cp_dp_state(&dp, cp_engine_target(srv, id), cp_now_ms(), (int64_t)srv->conf->heartbeat_ms, polling, 0);
    char last[32];
    cp_format_time(dp.last_seen_ms, last);
    cp_dataplane_dispose(&dp);
    if (state != CP_DP_DISCONNECTED) {
        cp_respond_errorf(call, 409,
                          "dataplane \"%s\" is connected (%s, last seen %s): stop it first, or wait until it shows as "
                          "disconnected (heartbeat_timeout)",
                          id, polling ? "a long poll is open" : "seen within heartbeat_timeout", last);
        return;
    }
    rc = cp_store_forget_dataplane(srv->store, id, call->token->name);
    if (rc == CP_STORE_NOT_FOUND) {
        cp_respond_errorf(call, 404, "dataplane \"%s\" is not known", id);
        return;
    }
    if (rc != CP_STORE_OK) {
        cp_respond_store_error(call);
        return;
    }
    cp_feed_forget(srv, id);
    PW_INFO("dataplane %s forgotten by %s", id, call->token->name);
    cp_respond_json(call, 200, json_pack("{ss sb}", "id", id, "forgotten", 1));
}

/* The version a dataplane that has `known` should be handed now, or 0: the version meant for it
 * (under a rollout, not the same for all) when it differs, unless the dataplane's latest report is a
 * NACK of it. That breaks an apply-NACK loop whatever version the dataplane names, while a dataplane
 * that reports again what it runs (as it does after a restart) gets one more try (its cause may be
 * fixed). `dp`: its stored state (narrow), NULL when it has none. */
static int64_t due_version(cp_server_t *srv, const char *id, int64_t known, const cp_dataplane_t *dp)
{
    int64_t target = cp_engine_target(srv, id);
    if (target == 0 || target == known)
        return 0;
    if (dp != NULL && dp->rejected_version == target && dp->reported_version == target)
        return 0;
    return target;
}

/* Answers the calls calls[0..n-1], all meant to get `version`: the version is read and rendered
 * once, and the deliveries recorded in one transaction (last seen is left alone). */
static void deliver_batch(cp_server_t *srv, cp_call_t **calls, const char **ids, size_t n, int64_t version)
{
    cp_version_t v;
    char *text = NULL;
    int have_v = n > 0 && cp_store_get_version(srv->store, version, &v) == CP_STORE_OK, ok = have_v;
    if (ok) {
        json_t *body = cp_version_json(&v, 1);
        text = body != NULL ? json_dumps(body, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
        json_decref(body);
        ok = text != NULL && cp_store_dataplanes_delivered(srv->store, ids, n, v.version) == CP_STORE_OK;
    }
    for (size_t i = 0; i < n; i++) {
        cp_call_t *call = calls[i];
        if (!ok) {
            cp_respond_store_error(call);
            continue;
        }
        size_t len = strlen(text);
        char *withnl = h2o_mem_alloc_pool(&call->req->pool, len + 1);
        memcpy(withnl, text, len);
        withnl[len] = '\n';
        cp_add_version_headers(call, v.version, v.hash);
        cp_respond_raw(call, 200, "application/json", withnl, len + 1);
    }
    if (have_v)
        cp_version_dispose(&v);
    free(text);
}

/* Answers calls[0..n-1], each with its targets[i], one deliver_batch per version (under a rollout two
 * versions are handed out: its own to its set, its from_version to the others). Reorders the arrays. */
static void deliver_by_version(cp_server_t *srv, cp_call_t **calls, const char **ids, int64_t *targets, size_t n)
{
    size_t done = 0;
    while (done < n) {
        int64_t version = targets[done];
        size_t k = done;
        /* move this version's calls to the front of the rest, answer them, go on with the others */
        for (size_t i = done; i < n; i++) {
            if (targets[i] != version)
                continue;
            cp_call_t *tc = calls[k];
            const char *tid = ids[k];
            int64_t tt = targets[k];
            calls[k] = calls[i];
            ids[k] = ids[i];
            targets[k] = targets[i];
            calls[i] = tc;
            ids[i] = tid;
            targets[i] = tt;
            k++;
        }
        deliver_batch(srv, calls + done, ids + done, k - done, version);
        done = k;
    }
}

static void answer_not_modified(cp_call_t *call)
{
    char etag[40];
    snprintf(etag, sizeof(etag), "\"%lld\"", (long long)cp_engine_target(call->srv, call->params[0].base));
    cp_add_header(call, H2O_TOKEN_ETAG, etag);
    cp_respond_raw(call, 304, NULL, "", 0);
}

void cp_unpark(cp_server_t *srv, cp_waiter_t *w)
{
    if (h2o_linklist_is_linked(&w->link)) {
        h2o_linklist_unlink(&w->link);
        srv->num_waiters--;
    }
    if (h2o_linklist_is_linked(&w->by_id))
        h2o_linklist_unlink(&w->by_id);
}

static void on_waiter_dispose(void *p)
{
    cp_waiter_t *w = p;
    /* the request ended without an answer from us (client gone, HTTP/2 stream reset) */
    cp_unpark(w->srv, w);
}

void cp_wake_waiters(cp_server_t *srv)
{
    /* A fleet's polls all wake at once: their states are read CP_POLL_BATCH at a time (one query
     * each on PostgreSQL), the deliveries recorded in one transaction per version, and the answer
     * rendered once per version, rather than once per dataplane. About CP_WAKE_BATCH are answered
     * per call: the loop comes back for the rest after the events that arrived meanwhile (an
     * operator's call waits for one batch, not for the whole fleet). */
    cp_waiter_t *chunk[CP_POLL_BATCH];
    const char *chunk_ids[CP_POLL_BATCH];
    cp_dataplane_t dps[CP_POLL_BATCH];
    int found[CP_POLL_BATCH];
    cp_call_t *calls[CP_WAKE_BATCH + CP_POLL_BATCH];
    const char *ids[CP_WAKE_BATCH + CP_POLL_BATCH];
    int64_t targets[CP_WAKE_BATCH + CP_POLL_BATCH];
    size_t m = 0;
    srv->wake_more = 0;
    h2o_linklist_t *node = srv->waiters.next;
    while (node != &srv->waiters) {
        if (m >= CP_WAKE_BATCH) {
            srv->wake_more = 1;
            break;
        }
        /* the next polls whose dataplane may get a version (no store read for the others) */
        size_t k = 0;
        for (; node != &srv->waiters && k < CP_POLL_BATCH; node = node->next) {
            cp_waiter_t *w = H2O_STRUCT_FROM_MEMBER(cp_waiter_t, link, node);
            if (due_version(srv, w->call->params[0].base, w->known_version, NULL) == 0)
                continue;
            chunk[k] = w;
            chunk_ids[k++] = w->call->params[0].base;
        }
        /* `node` is past the chunk: answering the chunk's polls leaves it in the list */
        int rc = cp_store_get_dataplanes(srv->store, chunk_ids, k, 1, dps, found);
        for (size_t i = 0; i < k; i++) {
            cp_waiter_t *w = chunk[i];
            int64_t target = rc == CP_STORE_OK ? due_version(srv, chunk_ids[i], w->known_version, found[i] ? &dps[i] : NULL) : -1;
            if (rc == CP_STORE_OK && found[i])
                cp_dataplane_dispose(&dps[i]);
            if (target == 0)
                continue; /* it NACKed that version: it stays parked */
            cp_unpark(srv, w);
            if (target < 0) {
                cp_respond_store_error(w->call);
                continue;
            }
            calls[m] = w->call;
            ids[m] = chunk_ids[i];
            targets[m++] = target;
        }
    }
    deliver_by_version(srv, calls, ids, targets, m);
}

int64_t cp_expire_waiters(cp_server_t *srv)
{
    int64_t now = mono_ms();
    while (!h2o_linklist_is_empty(&srv->waiters)) {
        cp_waiter_t *w = H2O_STRUCT_FROM_MEMBER(cp_waiter_t, link, srv->waiters.next);
        if (w->deadline > now)
            return w->deadline - now;
        cp_unpark(srv, w);
        answer_not_modified(w->call);
    }
    return -1;
}

/* Admits the dataplanes of a group that the store does not know yet (!found[i]), one by one (rare:
 * a dataplane's first call), each stored at once so that the next new one is counted with it:
 * refused[i] set beyond max_dataplanes. OK, or the store's error. */
static int admit_new(cp_server_t *srv, const char *const *ids, size_t n, const int *found, int *refused)
{
    for (size_t i = 0; i < n; i++) {
        if (found[i])
            continue;
        int rc = cp_store_dataplane_admit(srv->store, ids[i], srv->conf->max_dataplanes);
        if (rc == CP_STORE_OK)
            rc = cp_store_dataplane_seen(srv->store, ids[i], cp_now_ms(), 0);
        if (rc == CP_STORE_LIMIT)
            refused[i] = 1;
        else if (rc != CP_STORE_OK)
            return rc;
    }
    return CP_STORE_OK;
}

static void respond_not_admitted(cp_call_t *call, const char *id)
{
    cp_respond_errorf(call, 403, "id: %llu dataplanes are known already (max_dataplanes); \"%s\" is not one of them",
                      (unsigned long long)call->srv->conf->max_dataplanes, id);
}

/* A config call between its parsing and its group's store work (cp_flush_polls); lives in the
 * request's pool. */
typedef struct st_cp_pending_poll_t {
    h2o_linklist_t link; /* in srv->polls, oldest first; unlinked when handled or disposed */
    cp_server_t *srv;
    cp_call_t *call;
    int64_t known;  /* version=n */
    uint64_t wait;  /* wait=, bounded by max_wait */
    json_t *labels; /* labels=, NULL when not sent */
} cp_pending_poll_t;

static void pending_poll_release(cp_pending_poll_t *p)
{
    if (h2o_linklist_is_linked(&p->link)) {
        h2o_linklist_unlink(&p->link);
        p->srv->num_polls--;
    }
    json_decref(p->labels);
    p->labels = NULL;
}

static void on_pending_poll_dispose(void *arg)
{
    /* the request ended before its group was handled (the server stopped under it) */
    pending_poll_release(arg);
}

/* Parks a poll that has nothing new, or answers it at once when it may not park. */
static void park(cp_server_t *srv, cp_call_t *call, int64_t known, uint64_t wait)
{
    if (wait == 0) {
        answer_not_modified(call);
        return;
    }
    if (srv->stopping) {
        /* a poll on a connection that stays open while the server drains (HTTP/2) */
        cp_add_header(call, H2O_TOKEN_RETRY_AFTER, "1");
        cp_respond_error(call, 503, "control plane stopping", NULL);
        return;
    }
    if (srv->num_waiters >= srv->max_polls) {
        /* the poll budget is spent: parking more would take the connections kept for operators.
         * Not modified, at once: the dataplane asks again shortly (a short poll), and its
         * connection is closed so that it holds none meanwhile */
        srv->polls_refused++;
        int64_t now = mono_ms();
        if (srv->polls_refused_warned == 0 || now - srv->polls_refused_warned >= 60000) {
            srv->polls_refused_warned = now;
            PW_WARN("%zu long polls parked (max_long_polls): further polls are answered at once (%llu so far); raise "
                    "max_connections and max_long_polls for a fleet this large",
                    srv->num_waiters, (unsigned long long)srv->polls_refused);
        }
        call->req->http1_is_persistent = 0;
        cp_add_header(call, H2O_TOKEN_RETRY_AFTER, "1");
        answer_not_modified(call);
        return;
    }
    cp_waiter_t *w = h2o_mem_alloc_shared(&call->req->pool, sizeof(*w), on_waiter_dispose);
    memset(w, 0, sizeof(*w));
    w->srv = srv;
    w->call = call;
    w->known_version = known;
    w->parked = mono_ms();
    w->deadline = w->parked + (int64_t)wait;
    /* keep the list ordered by deadline; new polls usually end last, so search from the tail */
    h2o_linklist_t *pos = srv->waiters.prev;
    while (pos != &srv->waiters && H2O_STRUCT_FROM_MEMBER(cp_waiter_t, link, pos)->deadline > w->deadline)
        pos = pos->prev;
    h2o_linklist_insert(pos->next, &w->link);
    h2o_linklist_insert(poll_bucket(srv, call->params[0].base), &w->by_id);
    srv->num_waiters++;
}

int cp_flush_polls(cp_server_t *srv)
{
    if (srv->num_polls == 0)
        return 0;
    cp_pending_poll_t *batch[CP_POLL_BATCH];
    const char *ids[CP_POLL_BATCH] = {0};
    cp_dataplane_t dps[CP_POLL_BATCH];
    int found[CP_POLL_BATCH], refused[CP_POLL_BATCH] = {0};
    cp_dp_poll_t polled[CP_POLL_BATCH];
    size_t n = 0, m = 0;
    for (h2o_linklist_t *l = srv->polls.next; l != &srv->polls && n < CP_POLL_BATCH; l = l->next, n++) {
        batch[n] = H2O_STRUCT_FROM_MEMBER(cp_pending_poll_t, link, l);
        ids[n] = batch[n]->call->params[0].base;
    }
    /* one read of their states, admission of the new ones (one by one: rare), one write of their
     * last seen and labels; then each is answered or parked */
    int rc = cp_store_get_dataplanes(srv->store, ids, n, 1, dps, found);
    if (rc == CP_STORE_OK)
        rc = admit_new(srv, ids, n, found, refused);
    for (size_t i = 0; rc == CP_STORE_OK && i < n; i++)
        if (!refused[i])
            polled[m++] = (cp_dp_poll_t){ids[i], batch[i]->labels};
    if (rc == CP_STORE_OK)
        rc = cp_store_dataplanes_polled(srv->store, polled, m, cp_now_ms());
    cp_call_t *calls[CP_POLL_BATCH];
    const char *dids[CP_POLL_BATCH];
    int64_t targets[CP_POLL_BATCH];
    size_t nd = 0;
    for (size_t i = 0; i < n; i++) {
        cp_pending_poll_t *p = batch[i];
        cp_call_t *call = p->call;
        int64_t known = p->known;
        uint64_t wait = p->wait;
        pending_poll_release(p);
        if (rc != CP_STORE_OK) {
            cp_respond_store_error(call);
        } else if (refused[i]) {
            respond_not_admitted(call, ids[i]);
        } else {
            int64_t target = due_version(srv, ids[i], known, found[i] ? &dps[i] : NULL);
            if (target != 0) {
                calls[nd] = call;
                dids[nd] = ids[i];
                targets[nd++] = target;
            } else {
                park(srv, call, known, wait);
            }
        }
        if (found[i])
            cp_dataplane_dispose(&dps[i]);
    }
    deliver_by_version(srv, calls, dids, targets, nd);
    return srv->num_polls > 0;
}

void cp_h_dp_config(cp_call_t *call)
{
    cp_server_t *srv = call->srv;
    if (path_dataplane_id(call) != 0)
        return;
    size_t len;
    int64_t known = 0;
    uint64_t wait = 0;
    json_t *labels = NULL;
    const char *s = cp_query_get(&call->query, "version", &len);
    if (s != NULL && cp_parse_version(s, len, 1, &known) != 0) {
        cp_respond_error(call, 400, "version: must be the version the dataplane has (an integer, 0 = none)", NULL);
        return;
    }
    const char *err = NULL;
    if ((s = cp_query_get(&call->query, "wait", &len)) != NULL && cp_parse_wait(s, len, &wait, &err) != 0) {
        cp_respond_error(call, 400, err, NULL);
        return;
    }
    if (wait > srv->conf->max_wait_ms)
        wait = srv->conf->max_wait_ms;
    if ((s = cp_query_get(&call->query, "labels", &len)) != NULL) {
        /* labels=<JSON object>: the dataplane's labels, known at poll time (a rollout's canary may be
         * chosen by them before its first heartbeat) */
        char lerr[256];
        json_error_t jerr;
        if ((labels = json_loadb(s, len, JSON_REJECT_DUPLICATES, &jerr)) == NULL) {
            cp_respond_errorf(call, 400, "labels: must be a JSON object of label names and values (%s)", jerr.text);
            return;
        }
        if (cp_check_labels(labels, "labels", lerr, sizeof(lerr)) != 0) {
            json_decref(labels);
            cp_respond_error(call, 400, lerr, NULL);
            return;
        }
    }
    /* admitted, recorded, and answered or parked with the others that arrive in this turn of the loop
     * (cp_flush_polls) */
    cp_pending_poll_t *p = h2o_mem_alloc_shared(&call->req->pool, sizeof(*p), on_pending_poll_dispose);
    memset(p, 0, sizeof(*p));
    p->srv = srv;
    p->call = call;
    p->known = known;
    p->wait = wait;
    p->labels = labels;
    h2o_linklist_insert(&srv->polls, &p->link);
    srv->num_polls++;
}

/* A status report between its parsing and its group commit; lives in the request's pool. */
typedef struct st_cp_pending_report_t {
    h2o_linklist_t link; /* in srv->reports, oldest first; unlinked when stored or disposed */
    cp_server_t *srv;
    cp_call_t *call;
    cp_status_req_t r;
    char *traffic; /* r.traffic as compact JSON, NULL when absent */
} cp_pending_report_t;

static void pending_report_release(cp_pending_report_t *p)
{
    if (h2o_linklist_is_linked(&p->link)) {
        h2o_linklist_unlink(&p->link);
        p->srv->num_reports--;
    }
    cp_status_req_dispose(&p->r);
    memset(&p->r, 0, sizeof(p->r));
    free(p->traffic);
    p->traffic = NULL;
}

static void on_pending_report_dispose(void *arg)
{
    /* the request ended before its report was stored (the server stopped under it) */
    pending_report_release(arg);
}

/* Answers one stored (or failed) report; dp: its dataplane as stored now (NULL: unreadable). */
static void answer_report(cp_call_t *call, int rc, const cp_dataplane_t *dp)
{
    cp_server_t *srv = call->srv;
    if (rc != CP_STORE_OK || dp == NULL) {
        cp_respond_store_error(call);
        return;
    }
    json_t *body = dataplane_json(call, dp, cp_store_active_version(srv->store), cp_now_ms(), is_polling(srv, dp->id));
    if (body != NULL)
        json_object_set_new(body, "active_version", json_integer(cp_store_active_version(srv->store)));
    cp_respond_json(call, 200, body);
}

int cp_flush_reports(cp_server_t *srv)
{
    if (srv->num_reports == 0)
        return 0;
    cp_pending_report_t *batch[CP_REPORT_BATCH];
    cp_dp_report_t reports[CP_REPORT_BATCH] = {{0}};
    const char *ids[CP_REPORT_BATCH] = {0};
    cp_dataplane_t dps[CP_REPORT_BATCH];
    int found[CP_REPORT_BATCH], refused[CP_REPORT_BATCH] = {0};
    /* A group's commit costs one flush (sqlite) or a few round trips (PostgreSQL: the group's
     * statements go in one pipeline); a smaller group lets calls that arrived meanwhile (an
     * operator's) in sooner. Measured with 1,000 dataplanes (docs/benchmarks.md): on sqlite 32
     * keeps every ACK as fast as 128 does and halves an admin call's wait during a push; on
     * PostgreSQL 64 keeps an admin call under 100 ms during a push and every ACK under 1 s. */
    size_t bound = strcmp(cp_store_kind(srv->store), "sqlite") == 0 ? CP_REPORT_BATCH_SQLITE : CP_REPORT_BATCH, n = 0, m = 0;
    for (h2o_linklist_t *l = srv->reports.next; l != &srv->reports && n < bound; l = l->next, n++) {
        batch[n] = H2O_STRUCT_FROM_MEMBER(cp_pending_report_t, link, l);
        ids[n] = batch[n]->call->params[0].base;
    }
    /* admission: one read for the group, the new ones admitted one by one (rare) */
    int rc = cp_store_get_dataplanes(srv->store, ids, n, 1, dps, found);
    if (rc == CP_STORE_OK)
        rc = admit_new(srv, ids, n, found, refused);
    for (size_t i = 0; i < n; i++)
        if (found[i])
            cp_dataplane_dispose(&dps[i]);
    for (size_t i = 0; rc == CP_STORE_OK && i < n; i++) {
        cp_pending_report_t *p = batch[i];
        if (!refused[i])
            reports[m++] = (cp_dp_report_t){ids[i],     cp_now_ms(), p->r.version, p->r.applied,
                                            p->r.error, p->r.labels, p->r.stats,   p->r.hash[0] ? p->r.hash : NULL,
                                            p->traffic};
    }
    /* one store call, one durable commit for the events of all of them: a report is answered only
     * after the commit that holds it; then one read of the rows the answers show */
    if (rc == CP_STORE_OK)
        rc = cp_store_dataplane_reports(srv->store, reports, m);
    int read = rc == CP_STORE_OK && cp_store_get_dataplanes(srv->store, ids, n, 0, dps, found) == CP_STORE_OK;
    if (!read)
        memset(found, 0, sizeof(found));
    for (size_t i = 0; i < n; i++) {
        cp_pending_report_t *p = batch[i];
        cp_call_t *call = p->call;
        if (rc == CP_STORE_OK && !refused[i] && !p->r.applied)
            cp_engine_nack(srv, ids[i], p->r.version, p->r.error);
        pending_report_release(p);
        if (refused[i])
            respond_not_admitted(call, ids[i]);
        else
            answer_report(call, rc, found[i] ? &dps[i] : NULL);
        if (found[i])
            cp_dataplane_dispose(&dps[i]);
    }
    return srv->num_reports > 0;
}

void cp_h_dp_status(cp_call_t *call)
{
    cp_server_t *srv = call->srv;
    if (path_dataplane_id(call) != 0 || cp_check_body_size(call) != 0 || cp_body_ctype(call, 0, 0) == CP_CTYPE_OTHER)
        return;
    cp_status_req_t r;
    char err[256];
    if (cp_parse_status(call->req->entity.base, call->req->entity.len, &r, err, sizeof(err)) != 0) {
        cp_respond_error(call, 400, err, NULL);
        return;
    }
    /* a version stored by another replica a moment ago may not be in this one's cache yet */
    if (r.version > 0 && !cp_store_has_version(srv->store, r.version)) {
        cp_respond_errorf(call, 404, "version: version %lld does not exist", (long long)r.version);
        cp_status_req_dispose(&r);
        return;
    }
    /* the traffic is stored with the report; every replica's gate and series read it from there
     * (cp_traffic_feed.c) */
    char *traffic = r.traffic != NULL ? json_dumps(r.traffic, JSON_COMPACT) : NULL;
    if (r.traffic != NULL && traffic == NULL) {
        cp_status_req_dispose(&r);
        cp_respond_error(call, 500, "out of memory", NULL);
        return;
    }
    if (!r.applied)
        PW_WARN("dataplane %s rejected version %lld: %s", call->params[0].base, (long long)r.version, r.error);
    /* stored with the others that arrive in this turn of the loop (cp_flush_reports) */
    cp_pending_report_t *p = h2o_mem_alloc_shared(&call->req->pool, sizeof(*p), on_pending_report_dispose);
    memset(p, 0, sizeof(*p));
    p->srv = srv;
    p->call = call;
    p->r = r;
    p->traffic = traffic;
    h2o_linklist_insert(&srv->reports, &p->link);
    srv->num_reports++;
}
