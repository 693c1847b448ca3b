/*
 * The dataplanes' traffic as the store holds it. Each heartbeat's traffic is stored with its
 * dataplane (cp_store_dataplane_report), whichever replica received it; every replica reads the
 * reports stored since its last read (cp_store_traffic_since) and keeps each dataplane's latest
 * counters (the rollout gate's evidence, cp_rollout_engine.c) and feeds the per-service series
 * (cp_series.c, GET /v1/metrics/services) at each report's stored time. So the gate's verdict and
 * the charts are the same whatever replica the heartbeats reached.
 *
 * Reads happen on a timer (CP_FEED_INTERVAL_MS), before a gate decision, when a rollout starts, and
 * before the series is answered. Each read asks for what was stored after the newest time read,
 * less CP_FEED_LOOKBACK_MS: a report stored (its time taken) just before the previous read but
 * committed just after it is still seen. A report read twice (same sequence number and time) counts
 * once. A dataplane that reported several times between two reads is read once, at its latest
 * report: its counters are cumulative, so the series loses no request, only where in time they fell.
 */
#include "cp_server_internal.h"

#include <stdlib.h>
#include <string.h>
#include "cp_series.h"
#include "pw_log.h"

typedef struct st_cp_feed_t {
    cp_obs_t *obs;      /* every dataplane's latest traffic, sorted by id */
    size_t num_obs;     /* entries of obs */
    size_t cap_obs;     /* allocated */
    int64_t newest_ms;  /* the newest report time read (0: nothing read yet) */
    int64_t next_ms;    /* the timer's next read (wall ms) */
    int failing;        /* the last read failed (logged once until one works) */
    int warned_refused; /* the series' bound was said */
} cp_feed_t;

int cp_feed_init(cp_server_t *srv)
{
    return (srv->feed = calloc(1, sizeof(cp_feed_t))) != NULL ? 0 : -1;
}

void cp_feed_dispose(cp_server_t *srv)
{
    cp_feed_t *f = srv->feed;
    if (f == NULL)
        return;
    for (size_t i = 0; i < f->num_obs; i++)
        free(f->obs[i].id);
    free(f->obs);
    free(f);
    srv->feed = NULL;
}

/* The entry of `id`: its index and 1, or where it would go and 0. */
static int find(const cp_feed_t *f, const char *id, size_t *at)
{
    size_t lo = 0, hi = f->num_obs;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        int c = strcmp(f->obs[mid].id, id);
        if (c == 0) {
            *at = mid;
            return 1;
        }
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    *at = lo;
    return 0;
}

static cp_obs_t *insert(cp_feed_t *f, size_t at, const char *id)
{
    if (f->num_obs == f->cap_obs) {
        size_t cap = f->cap_obs ? f->cap_obs * 2 : 64;
        cp_obs_t *n = realloc(f->obs, cap * sizeof(*n));
        if (n == NULL)
            return NULL;
        f->obs = n;
        f->cap_obs = cap;
    }
    char *copy = strdup(id);
    if (copy == NULL)
        return NULL;
    memmove(&f->obs[at + 1], &f->obs[at], (f->num_obs - at) * sizeof(f->obs[0]));
    f->obs[at] = (cp_obs_t){.id = copy};
    f->num_obs++;
    return &f->obs[at];
}

const cp_obs_t *cp_feed_obs(cp_server_t *srv, size_t *count)
{
    cp_feed_t *f = srv->feed;
    *count = f != NULL ? f->num_obs : 0;
    return f != NULL ? f->obs : NULL;
}

int64_t cp_feed_newest(cp_server_t *srv)
{
    return srv->feed != NULL ? srv->feed->newest_ms : 0;
}

void cp_feed_forget(cp_server_t *srv, const char *id)
{
    cp_feed_t *f = srv->feed;
    size_t at;
    if (f == NULL || !find(f, id, &at))
        return;
    free(f->obs[at].id);
    memmove(&f->obs[at], &f->obs[at + 1], (f->num_obs - at - 1) * sizeof(f->obs[0]));
    f->num_obs--;
    cp_series_forget(srv->series, id);
}

/* One report read: the dataplane's latest counters, and what they grew by into the series. */
static void feed_one(cp_server_t *srv, const cp_traffic_report_t *r)
{
    cp_feed_t *f = srv->feed;
    size_t at;
    cp_obs_t *o = find(f, r->id, &at) ? &f->obs[at] : NULL;
    if (o != NULL && o->seq == r->seq && o->at_ms == r->at_ms)
        return; /* read already (the look-back) */
    uint64_t skipped = 0;
    if (o != NULL && r->seq < o->seq)
        /* its row was deleted (forgotten, on another replica) and made anew: a new baseline */
        cp_series_forget(srv->series, r->id);
    else if (o != NULL && r->seq > o->seq + 1)
        skipped = (uint64_t)(r->seq - o->seq - 1);
    if (o == NULL && (o = insert(f, at, r->id)) == NULL)
        return;
    cp_traffic_t sum = {0};
    for (size_t i = 0; i < r->num_svcs; i++)
        cp_traffic_add(&sum, &r->svcs[i].t);
    o->version = r->version;
    o->t = sum;
    o->at_ms = r->at_ms;
    o->seq = r->seq;
    if (cp_now_ms() - r->at_ms > CP_SERIES_KEEP_MS)
        return; /* older than the series keep (read when this replica started): the gate's only */
    int refused = cp_series_observe(srv->series, r->id, r->version, r->svcs, r->num_svcs, r->at_ms);
    /* the reports stored between two reads, whose counters this one includes */
    cp_series_count_reports(srv->series, skipped);
    if (refused > 0 && !f->warned_refused) {
        /* said once: the count goes on in pathway_control_series_refused_total */
        f->warned_refused = 1;
        PW_WARN("traffic series: %d service(s) of dataplane %s left out (%d services are tracked already, or the name is "
                "longer than %d bytes); from now on they are only counted in pathway_control_series_refused_total",
                refused, r->id, CP_SERIES_MAX_SERVICES, CP_SERIES_MAX_NAME);
    }
}

int cp_traffic_sync(cp_server_t *srv)
{
    cp_feed_t *f = srv->feed;
    if (f == NULL)
        return -1;
    int64_t after = f->newest_ms > CP_FEED_LOOKBACK_MS ? f->newest_ms - CP_FEED_LOOKBACK_MS : 0;
    cp_traffic_report_t *r;
    size_t n;
    if (cp_store_traffic_since(srv->store, after, &r, &n) != CP_STORE_OK) {
        if (!f->failing)
            PW_WARN("traffic: cannot read the dataplanes' reports (retrying): %s", cp_store_errmsg(srv->store));
        f->failing = 1;
        return -1;
    }
    f->failing = 0;
    for (size_t i = 0; i < n; i++) {
        feed_one(srv, &r[i]);
        if (r[i].at_ms > f->newest_ms)
            f->newest_ms = r[i].at_ms;
    }
    cp_traffic_reports_free(r, n);
    /* dataplanes silent for longer than the series keeps (forgotten on another replica, or gone):
     * their counters go, so the entries stay bounded by the dataplanes that report */
    size_t kept = 0;
    int64_t oldest = f->newest_ms - CP_SERIES_KEEP_MS; /* the store's clock, as at_ms */
    for (size_t i = 0; i < f->num_obs; i++) {
        if (f->obs[i].at_ms < oldest) {
            cp_series_forget(srv->series, f->obs[i].id);
            free(f->obs[i].id);
            continue;
        }
        f->obs[kept++] = f->obs[i];
    }
    f->num_obs = kept;
    return 0;
}

int64_t cp_feed_turn(cp_server_t *srv)
{
    cp_feed_t *f = srv->feed;
    if (f == NULL)
        return -1;
    int64_t now = cp_now_ms();
    if (now >= f->next_ms || f->next_ms - now > CP_FEED_INTERVAL_MS) {
        cp_traffic_sync(srv);
        f->next_ms = now + CP_FEED_INTERVAL_MS;
    }
    return f->next_ms - now;
}
