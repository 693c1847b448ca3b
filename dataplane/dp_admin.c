/*
 * The admin listener (DESIGN §3): health, readiness, metrics, stats, the running document,
 * reload and the log level. It runs on the main thread's loop; it only reads what workers write
 * (atomics) and changes state through dp_server_apply / dp_server_reload.
 */
#include <inttypes.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include "dp_internal.h"
#include "dp_rpc.h"
#include "pw_buf.h"
#include "pw_http.h"
#include "pw_log.h"
#include "pw_process.h"
#include "pw_token.h"
#include "pw_version.h"

typedef struct st_admin_handler_t {
    h2o_handler_t super;
    dp_server_t *server;
} admin_handler_t;

uint64_t dp_process_rss(void)
{
    FILE *fp = fopen("/proc/self/statm", "r");
    unsigned long size = 0, rss = 0;
    if (fp == NULL)
        return 0;
    if (fscanf(fp, "%lu %lu", &size, &rss) != 2)
        rss = 0;
    fclose(fp);
    return (uint64_t)rss * (uint64_t)sysconf(_SC_PAGESIZE);
}

h2o_iovec_t dp_request_id(dp_worker_t *w, h2o_req_t *req)
{
    ssize_t i = h2o_find_header_by_str(&req->headers, H2O_STRLIT("x-request-id"), -1);
    if (i != -1) {
        h2o_iovec_t v = req->headers.entries[i].value;
        if (v.len != 0 && v.len <= 128)
            return v;
    }
    /* 8 hex digits of the worker's random prefix + 16 of its sequence, without printf (hot path) */
    static const char hex[] = "0123456789abcdef";
    char *p = h2o_mem_alloc_pool(&req->pool, 24);
    uint32_t pre = w->reqid_prefix;
    uint64_t seq = ++w->reqid_seq;
    for (int k = 7; k >= 0; --k, pre >>= 4)
        p[k] = hex[pre & 15];
    for (int k = 23; k >= 8; --k, seq >>= 4)
        p[k] = hex[seq & 15];
    return h2o_iovec_init(p, 24);
}

static void respond(h2o_req_t *req, int status, const char *ctype, const char *body, size_t len)
{
    req->res.status = status;
    req->res.reason = pw_http_reason(status);
    req->res.content_length = len;
    h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_CONTENT_TYPE, NULL, ctype, strlen(ctype));
    h2o_send_inline(req, body, len);
}

static void respond_json(h2o_req_t *req, int status, json_t *doc)
{
    char *s = json_dumps(doc, JSON_COMPACT | JSON_SORT_KEYS | JSON_REAL_PRECISION(15));
    json_decref(doc);
    if (s == NULL) {
        respond(req, 500, "text/plain", H2O_STRLIT("out of memory\n"));
        return;
    }
    size_t len = strlen(s);
    s = realloc(s, len + 2);
    s[len++] = '\n';
    respond(req, status, "application/json", s, len);
    free(s);
}

/* --- aggregation ------------------------------------------------------------------------------ */

typedef struct st_totals_t {
    uint64_t active, requests, by_class[6], conns_busy;
    uint64_t buf_hits, buf_misses, buf_retained, buf_outstanding;
} totals_t;

static void sum_workers(dp_server_t *s, totals_t *t)
{
    memset(t, 0, sizeof(*t));
    for (size_t i = 0; i != s->nworkers; ++i) {
        dp_worker_t *w = s->workers + i;
        t->active += DP_LOAD(w->active);
        t->requests += DP_LOAD(w->requests);
        for (int c = 1; c <= 5; ++c)
            t->by_class[c] += DP_LOAD(w->by_class[c]);
        t->conns_busy += DP_LOAD(w->conns_busy);
        t->buf_hits += DP_LOAD(w->bufpool.hits);
        t->buf_misses += DP_LOAD(w->bufpool.misses);
        t->buf_retained += DP_LOAD(w->bufpool.retained);
        t->buf_outstanding += DP_LOAD(w->bufpool.outstanding);
    }
}

/* p50 and p99 of request durations since start, as the upper bound (ms) of the histogram bucket
 * each falls in (a duration beyond the last bound reports that bound). Returns 0 with no requests. */
static int latency_quantiles(dp_server_t *s, dp_gen_t *g, uint64_t *p50, uint64_t *p99)
{
    uint64_t buckets[DP_HIST_BUCKETS] = {0}, total = 0;
    for (size_t i = 0; i != g->nservices; ++i)
        for (size_t w = 0; w != s->nworkers; ++w)
            for (size_t b = 0; b != DP_HIST_BUCKETS; ++b)
                buckets[b] += DP_LOAD(g->services[i].shared->stats[w].hist[b]);
    for (size_t b = 0; b != DP_HIST_BUCKETS; ++b)
        total += buckets[b];
    if (total == 0)
        return 0;
    uint64_t cum = 0;
    *p50 = *p99 = dp_hist_bounds_ms[DP_HIST_BUCKETS - 2];
    int have50 = 0;
    for (size_t b = 0; b + 1 != DP_HIST_BUCKETS; ++b) {
        cum += buckets[b];
        if (!have50 && cum * 2 >= total) {
            *p50 = dp_hist_bounds_ms[b];
            have50 = 1;
        }
        if (cum * 100 >= total * 99) {
            *p99 = dp_hist_bounds_ms[b];
            break;
        }
    }
    return 1;
}

/* --- endpoint health ------------------------------------------------------------------------------ */

/* The clock dp_health keeps its times in (unix ms). */
static uint64_t unix_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* The health_check and outlier knobs of a service, one row each: /stats shows them under their
 * config names and in their config form, /metrics as one gauge per service (durations in seconds). */
typedef enum en_knob_type_t { KNOB_DURATION, KNOB_UINT32 } knob_type_t;
static const struct {
    const char *section, *sub, *key; /* where the knob lives in the document: section[.sub].key */
    const char *metric, *help;
    knob_type_t type;
    size_t offset; /* in cfg_service_t */
} health_knobs[] = {
#define KNOB(sec, sub, key, metric, help, type, field)                                                                             \
    {                                                                                                                              \
        sec, sub, key, metric, help, type, offsetof(cfg_service_t, field)                                                          \
    }
    KNOB("health_check", NULL, "interval", "pathway_health_check_interval_seconds",
         "Configured health_check.interval by service (0: no active checks).", KNOB_DURATION, health_check.interval_ms),
    KNOB("health_check", NULL, "timeout", "pathway_health_check_timeout_seconds", "Configured health_check.timeout by service.",
         KNOB_DURATION, health_check.timeout_ms),
    KNOB("health_check", NULL, "unhealthy_threshold", "pathway_health_check_unhealthy_threshold",
         "Configured health_check.unhealthy_threshold by service (failed probes in a row).", KNOB_UINT32,
         health_check.unhealthy_threshold),
    KNOB("health_check", NULL, "healthy_threshold", "pathway_health_check_healthy_threshold",
         "Configured health_check.healthy_threshold by service (passed probes in a row).", KNOB_UINT32,
         health_check.healthy_threshold),
    KNOB("health_check", NULL, "max_block_lag", "pathway_health_check_max_lag_blocks",
         "Configured health_check.max_block_lag by service (0: heads not compared).", KNOB_UINT32, health_check.max_block_lag),
    KNOB("outlier", NULL, "consecutive_failures", "pathway_outlier_consecutive_failures",
         "Configured outlier.consecutive_failures by service (0: off).", KNOB_UINT32, outlier.consecutive_failures),
    KNOB("outlier", "failure_rate", "threshold", "pathway_outlier_failure_rate_threshold_percent",
         "Configured outlier.failure_rate.threshold by service (0: off).", KNOB_UINT32, outlier.failure_rate.threshold),
    KNOB("outlier", "failure_rate", "min_requests", "pathway_outlier_failure_rate_min_requests",
         "Configured outlier.failure_rate.min_requests by service.", KNOB_UINT32, outlier.failure_rate.min_requests),
    KNOB("outlier", "failure_rate", "window", "pathway_outlier_failure_rate_window_seconds",
         "Configured outlier.failure_rate.window by service.", KNOB_DURATION, outlier.failure_rate.window_ms),
    KNOB("outlier", NULL, "base_ejection_time", "pathway_outlier_base_ejection_time_seconds",
         "Configured outlier.base_ejection_time by service.", KNOB_DURATION, outlier.base_ejection_time_ms),
    KNOB("outlier", NULL, "max_ejection_time", "pathway_outlier_max_ejection_time_seconds",
         "Configured outlier.max_ejection_time by service.", KNOB_DURATION, outlier.max_ejection_time_ms),
    KNOB("outlier", NULL, "max_ejection_percent", "pathway_outlier_max_ejection_percent",
         "Configured outlier.max_ejection_percent by service.", KNOB_UINT32, outlier.max_ejection_percent),
#undef KNOB
};

static uint64_t knob_value(const cfg_service_t *c, size_t k)
{
    const char *p = (const char *)c + health_knobs[k].offset;
    return health_knobs[k].type == KNOB_DURATION ? *(const uint64_t *)p : *(const uint32_t *)p;
}

/* A service's effective health_check and outlier sections, as the document writes them. */
static void health_settings_json(const cfg_service_t *c, json_t *svc)
{
    json_t *hc = json_object(), *ol = json_object(), *fr = json_object();
    json_object_set_new(hc, "request", json_string(c->health_check.request != NULL ? c->health_check.request : ""));
    for (size_t k = 0; k != sizeof(health_knobs) / sizeof(health_knobs[0]); ++k) {
        json_t *into = health_knobs[k].sub != NULL ? fr : strcmp(health_knobs[k].section, "outlier") == 0 ? ol : hc;
        uint64_t v = knob_value(c, k);
        if (health_knobs[k].type == KNOB_DURATION) {
            char d[32];
            cfg_format_duration(v, d, sizeof(d));
            json_object_set_new(into, health_knobs[k].key, json_string(d));
        } else {
            json_object_set_new(into, health_knobs[k].key, json_integer((json_int_t)v));
        }
    }
    json_object_set_new(ol, "failure_rate", fr);
    json_object_set_new(svc, "health_check", hc);
    json_object_set_new(svc, "outlier", ol);
}

/* /stats' "health" of one endpoint at now (unix ms). Times are unix ms; null where nothing is known. */
static json_t *endpoint_health_json(const dp_endpoint_t *ep, uint64_t now)
{
    const dp_ephealth_t *h = &ep->health;
    uint32_t avail = atomic_load(&h->avail);
    uint64_t head = atomic_load(&h->head), probed = atomic_load(&h->last_probe_ms), until = atomic_load(&h->ejected_until_ms);
    json_t *o = json_object();
    json_object_set_new(o, "state", json_string(dp_health_state_names[dp_health_state(ep, now)]));
    json_object_set_new(o, "up", json_boolean(dp_health_up(ep, now)));
    json_object_set_new(o, "head", head != 0 ? json_integer((json_int_t)head) : json_null());
    json_object_set_new(o, "lag", head != 0 ? json_integer((json_int_t)atomic_load(&h->lag)) : json_null());
    int res = atomic_load(&h->last_probe);
    json_object_set_new(o, "last_probe",
                        probed != 0 && res >= 0 && res < DP_PROBE__COUNT
                            ? json_pack("{s:s, s:I, s:f}", "result", dp_probe_result_names[res], "at", (json_int_t)probed,
                                        "latency_ms", atomic_load(&h->probe_latency_us) / 1000.0)
                            : json_null());
    json_object_set_new(o, "ejections", json_integer((json_int_t)atomic_load(&h->times_ejected)));
    int ejected = (avail & DP_AVAIL_EJECTED) != 0, reason = atomic_load(&h->eject_reason);
    json_object_set_new(o, "ejected_until", ejected && until > now ? json_integer((json_int_t)until) : json_null());
    json_object_set_new(o, "eject_reason",
                        ejected && reason >= 0 && reason < CFG_RETRY_ON_COUNT ? json_string(dp_retry_reason_names[reason])
                                                                              : json_null());
    json_t *fail = json_object(), *checks = json_object();
    uint64_t ejections = 0;
    for (int k = 0; k != CFG_RETRY_ON_COUNT; ++k) {
        json_object_set_new(fail, dp_retry_reason_names[k], json_integer((json_int_t)atomic_load(&h->failures[k])));
        ejections += atomic_load(&h->ejections[k]);
    }
    for (int k = 0; k != DP_PROBE__COUNT; ++k)
        json_object_set_new(checks, dp_probe_result_names[k], json_integer((json_int_t)atomic_load(&h->checks[k])));
    json_object_set_new(o, "ejections_total", json_integer((json_int_t)ejections));
    json_object_set_new(o, "failures", fail);
    json_object_set_new(o, "checks", checks);
    json_object_set_new(o, "latency_ewma_ms", json_real(atomic_load(&h->ewma_us) / 1000.0));
    return o;
}

/* /stats' "health" of one service at now (unix ms). */
static json_t *service_health_json(const dp_service_t *svc, uint64_t now)
{
    const dp_svchealth_t *sh = &svc->shared->health;
    uint64_t head = atomic_load(&sh->head);
    return json_pack("{s:o, s:b, s:I, s:I}", "head", head != 0 ? json_integer((json_int_t)head) : json_null(), "panic",
                     dp_health_service_panic(svc, now), "endpoints_up", (json_int_t)dp_health_count_up(svc, now), "panic_requests",
                     (json_int_t)atomic_load(&sh->panic_picks));
}

static json_t *process_json(dp_server_t *s);

static json_t *stats_json(dp_server_t *s, dp_gen_t *g)
{
    totals_t t;
    sum_workers(s, &t);
    uint32_t lmax, linflight, lqueued;
    dp_limiter_stats(&s->limiter, &lmax, &linflight, &lqueued);
    json_t *doc = json_object();
    json_object_set_new(doc, "version", json_integer((json_int_t)g->fleet_version));
    json_object_set_new(doc, "generation", json_integer((json_int_t)g->generation));
    json_object_set_new(doc, "hash", json_string(g->hash));
    json_object_set_new(doc, "build_version", json_string(PW_VERSION));
    json_object_set_new(doc, "workers", json_integer((json_int_t)s->nworkers));
    json_object_set_new(doc, "stopping", json_boolean(atomic_load(&s->stopping)));
    json_object_set_new(doc, "rss_bytes", json_integer((json_int_t)dp_process_rss()));
    json_object_set_new(doc, "process", process_json(s));
    json_object_set_new(doc, "log_level", json_string(pw_log_level_name(pw_log_get_level())));
    json_t *req = json_object();
    json_object_set_new(req, "active", json_integer((json_int_t)t.active));
    json_object_set_new(req, "total", json_integer((json_int_t)t.requests));
    for (int c = 1; c <= 5; ++c) {
        char k[4] = {(char)('0' + c), 'x', 'x', 0};
        json_object_set_new(req, k, json_integer((json_int_t)t.by_class[c]));
    }
    json_object_set_new(doc, "requests", req);
    uint64_t p50, p99;
    if (latency_quantiles(s, g, &p50, &p99))
        json_object_set_new(doc, "latency_ms", json_pack("{s:I, s:I}", "p50_le", (json_int_t)p50, "p99_le", (json_int_t)p99));
    json_object_set_new(doc, "limiter",
                        json_pack("{s:i, s:i, s:i, s:i, s:I, s:I, s:I}", "max_concurrent", (int)lmax, "max_queue",
                                  (int)g->cfg->limiter.max_queue, "inflight", (int)linflight, "queued", (int)lqueued, "rejected",
                                  (json_int_t)DP_LOAD(s->limiter.rejected), "timeouts", (json_int_t)DP_LOAD(s->limiter.timeouts),
                                  "admitted", (json_int_t)DP_LOAD(s->limiter.admitted)));
    json_object_set_new(doc, "buffers",
                        json_pack("{s:I, s:I, s:I, s:I}", "hits", (json_int_t)t.buf_hits, "misses", (json_int_t)t.buf_misses,
                                  "retained_bytes", (json_int_t)t.buf_retained, "in_use", (json_int_t)t.buf_outstanding));
    json_object_set_new(doc, "upstream",
                        json_pack("{s:I, s:I, s:I}", "idle_total", (json_int_t)atomic_load(&s->idle_total), "max_idle_total",
                                  (json_int_t)atomic_load(&s->max_idle_total), "busy", (json_int_t)t.conns_busy));
    if (s->opts.control_plane_stats != NULL) {
        json_t *cp = s->opts.control_plane_stats(s->opts.ctx);
        if (cp != NULL)
            json_object_set_new(doc, "control_plane", cp);
    }
    json_object_set_new(doc, "applies",
                        json_pack("{s:I, s:I, s:s?}", "ok", (json_int_t)atomic_load(&s->applies_ok), "failed",
                                  (json_int_t)atomic_load(&s->applies_failed), "last_error", s->last_apply_error));
    json_object_set_new(doc, "cache", dp_admin_cache_json(s));
    json_t *svcs = json_array();
    uint64_t now = unix_now_ms();
    for (size_t i = 0; i != g->nservices; ++i) {
        dp_service_t *svc = g->services + i;
        uint32_t smax = 0, sin = 0, sq = 0;
        dp_limiter_stats(&svc->shared->limiter, &smax, &sin, &sq);
        uint64_t cls[6] = {0};
        for (size_t w = 0; w != s->nworkers; ++w)
            for (int c = 1; c <= 5; ++c)
                cls[c] += DP_LOAD(svc->shared->stats[w].by_class[c]);
        json_t *eps = json_array();
        for (size_t j = 0; j != svc->nendpoints; ++j) {
            dp_endpoint_t *ep = svc->endpoints[j];
            json_array_append_new(
                eps, json_pack("{s:s, s:i, s:i, s:i, s:i, s:I, s:I, s:I, s:I, s:i, s:i}", "name", ep->label, "open",
                               (int)atomic_load(&ep->open), "idle", (int)atomic_load(&ep->idle), "waiting",
                               (int)atomic_load(&ep->waiters), "outstanding", (int)atomic_load(&ep->outstanding), "connects",
                               (json_int_t)atomic_load(&ep->connects), "reuses", (json_int_t)atomic_load(&ep->reuses),
                               "connect_errors", (json_int_t)atomic_load(&ep->connect_errors), "closes",
                               (json_int_t)atomic_load(&ep->closes), "max_conns_per_host", (int)atomic_load(&ep->max_conns),
                               "max_idle_per_host", (int)atomic_load(&ep->max_idle)));
            json_t *att = json_object();
            for (int k = 0; k != DP_ARES__COUNT; ++k)
                json_object_set_new(att, dp_ares_names[k], json_integer((json_int_t)atomic_load(&ep->attempts[k])));
            json_object_set_new(json_array_get(eps, j), "attempts", att);
            json_object_set_new(json_array_get(eps, j), "health", endpoint_health_json(ep, now));
            json_t *h2 = dp_admin_h2_endpoint_json(ep);
            json_object_update(json_array_get(eps, j), h2);
            json_decref(h2);
        }
        json_t *retries = json_object();
        for (int k = 0; k != CFG_RETRY_ON_COUNT; ++k) {
            uint64_t n = 0;
            for (size_t w = 0; w != s->nworkers; ++w)
                n += DP_LOAD(svc->shared->stats[w].retries[k]);
            json_object_set_new(retries, dp_retry_reason_names[k], json_integer((json_int_t)n));
        }
        uint64_t hedges[2] = {0, 0};
        for (size_t w = 0; w != s->nworkers; ++w)
            for (int k = 0; k != 2; ++k)
                hedges[k] += DP_LOAD(svc->shared->stats[w].hedges[k]);
        json_array_append_new(svcs, json_pack("{s:s, s:{s:i, s:i, s:i, s:I, s:I}, s:{s:I, s:I, s:I, s:I, s:I}, s:o}", "id", svc->id,
                                              "limiter", "max_concurrent", (int)smax, "inflight", (int)sin, "queued", (int)sq,
                                              "rejected", (json_int_t)DP_LOAD(svc->shared->limiter.rejected), "timeouts",
                                              (json_int_t)DP_LOAD(svc->shared->limiter.timeouts), "responses", "1xx",
                                              (json_int_t)cls[1], "2xx", (json_int_t)cls[2], "3xx", (json_int_t)cls[3], "4xx",
                                              (json_int_t)cls[4], "5xx", (json_int_t)cls[5], "endpoints", eps));
        json_t *so = json_array_get(svcs, json_array_size(svcs) - 1);
        json_object_set_new(so, "retries", retries);
        json_object_set_new(so, "hedges", json_pack("{s:I, s:I}", "won", (json_int_t)hedges[0], "lost", (json_int_t)hedges[1]));
        json_object_set_new(so, "retry_budget_exhausted", json_integer((json_int_t)atomic_load(&svc->shared->budget.exhausted)));
        json_object_set_new(so, "health", service_health_json(svc, now));
        json_object_set_new(so, "adaptive", dp_admin_adaptive_json(svc));
        json_object_set_new(so, "cache", dp_admin_cache_service_json(s, svc));
        json_object_set_new(so, "websocket", dp_ws_admin_service_json(svc));
        health_settings_json(svc->cfg, so);
    }
    json_object_set_new(doc, "services", svcs);
    return doc;
}

/* A Prometheus label value: backslash, double quote and newline escaped; cut to fit `len`. */
const char *dp_admin_label_escape(const char *v, char *buf, size_t len)
{
    size_t o = 0;
    for (; *v != '\0' && o + 3 < len; ++v) {
        if (*v == '\\' || *v == '"') {
            buf[o++] = '\\';
            buf[o++] = *v;
        } else if (*v == '\n') {
            buf[o++] = '\\';
            buf[o++] = 'n';
        } else {
            buf[o++] = *v;
        }
    }
    buf[o] = '\0';
    return buf;
}

/* The process_* figures of /metrics, for /stats. */
static json_t *process_json(dp_server_t *s)
{
    pw_process_t p;
    pw_process_read(&p);
    json_t *j = json_pack("{s:I, s:I, s:f, s:f}", "resident_memory_bytes", (json_int_t)p.resident_bytes, "virtual_memory_bytes",
                          (json_int_t)p.virtual_bytes, "cpu_seconds", p.cpu_seconds, "start_time_seconds",
                          p.start_time_seconds != 0 ? p.start_time_seconds : s->started_at_unix);
    if (p.have_open_fds)
        json_object_set_new(j, "open_fds", json_integer((json_int_t)p.open_fds));
    if (p.have_max_fds)
        json_object_set_new(j, "max_fds", json_integer((json_int_t)p.max_fds));
    return j;
}

#define HELP(o, name, type, text) pw_buf_printf(o, "# HELP " name " " text "\n# TYPE " name " " type "\n")

/* The endpoint health series of /metrics, and the health knobs as gauges. */
static void health_metrics_text(dp_gen_t *g, pw_buf_t *o)
{
    uint64_t now = unix_now_ms();
    char lb[520];
    HELP(o, "pathway_endpoint_up", "gauge",
         "1 when the balancer may choose the endpoint (not drained, ejected, unhealthy or lagging).");
    for (size_t i = 0; i != g->nendpoints; ++i)
        pw_buf_printf(o, "pathway_endpoint_up{service=\"%s\",endpoint=\"%s\"} %d\n", g->endpoints[i]->service,
                      dp_admin_label_escape(g->endpoints[i]->label, lb, sizeof(lb)), dp_health_up(g->endpoints[i], now) ? 1 : 0);
    HELP(o, "pathway_endpoint_head_block", "gauge",
         "Head block the endpoint's last passing probe returned (endpoints with a known head).");
    for (size_t i = 0; i != g->nendpoints; ++i) {
        uint64_t head = atomic_load(&g->endpoints[i]->health.head);
        if (head != 0)
            pw_buf_printf(o, "pathway_endpoint_head_block{service=\"%s\",endpoint=\"%s\"} %" PRIu64 "\n", g->endpoints[i]->service,
                          dp_admin_label_escape(g->endpoints[i]->label, lb, sizeof(lb)), head);
    }
    HELP(o, "pathway_endpoint_lag_blocks", "gauge",
         "Blocks the endpoint is behind its service's head (endpoints with a known head).");
    for (size_t i = 0; i != g->nendpoints; ++i)
        if (atomic_load(&g->endpoints[i]->health.head) != 0)
            pw_buf_printf(o, "pathway_endpoint_lag_blocks{service=\"%s\",endpoint=\"%s\"} %" PRIu64 "\n", g->endpoints[i]->service,
                          dp_admin_label_escape(g->endpoints[i]->label, lb, sizeof(lb)),
                          (uint64_t)atomic_load(&g->endpoints[i]->health.lag));
    HELP(o, "pathway_ejections_total", "counter", "Outlier ejections of the endpoint, by the failure class that ejected it.");
    for (size_t i = 0; i != g->nendpoints; ++i) {
        dp_endpoint_t *ep = g->endpoints[i];
        const char *l = dp_admin_label_escape(ep->label, lb, sizeof(lb));
        for (int k = 0; k != CFG_RETRY_ON_COUNT; ++k)
            pw_buf_printf(o, "pathway_ejections_total{service=\"%s\",endpoint=\"%s\",reason=\"%s\"} %" PRIu64 "\n", ep->service, l,
                          dp_retry_reason_names[k], (uint64_t)atomic_load(&ep->health.ejections[k]));
    }
    HELP(o, "pathway_health_checks_total", "counter", "Active health probes of the endpoint, by result.");
    for (size_t i = 0; i != g->nendpoints; ++i) {
        dp_endpoint_t *ep = g->endpoints[i];
        const char *l = dp_admin_label_escape(ep->label, lb, sizeof(lb));
        for (int k = 0; k != DP_PROBE__COUNT; ++k)
            pw_buf_printf(o, "pathway_health_checks_total{service=\"%s\",endpoint=\"%s\",result=\"%s\"} %" PRIu64 "\n", ep->service,
                          l, dp_probe_result_names[k], (uint64_t)atomic_load(&ep->health.checks[k]));
    }
    HELP(o, "pathway_service_panic", "gauge",
         "1 when no endpoint of the service is in rotation: requests go to all of them (panic).");
    for (size_t i = 0; i != g->nservices; ++i)
        pw_buf_printf(o, "pathway_service_panic{service=\"%s\"} %d\n", g->services[i].id,
                      dp_health_service_panic(g->services + i, now) ? 1 : 0);
    HELP(o, "pathway_panic_requests_total", "counter", "Tries sent while the service was in panic (no endpoint in rotation).");
    for (size_t i = 0; i != g->nservices; ++i)
        pw_buf_printf(o, "pathway_panic_requests_total{service=\"%s\"} %" PRIu64 "\n", g->services[i].id,
                      (uint64_t)atomic_load(&g->services[i].shared->health.panic_picks));
    HELP(o, "pathway_service_head_block", "gauge", "Highest head block of the service's endpoints (services with a known head).");
    for (size_t i = 0; i != g->nservices; ++i) {
        uint64_t head = atomic_load(&g->services[i].shared->health.head);
        if (head != 0)
            pw_buf_printf(o, "pathway_service_head_block{service=\"%s\"} %" PRIu64 "\n", g->services[i].id, head);
    }
    for (size_t k = 0; k != sizeof(health_knobs) / sizeof(health_knobs[0]); ++k) {
        pw_buf_printf(o, "# HELP %s %s\n# TYPE %s gauge\n", health_knobs[k].metric, health_knobs[k].help, health_knobs[k].metric);
        for (size_t i = 0; i != g->nservices; ++i) {
            uint64_t v = knob_value(g->services[i].cfg, k);
            if (health_knobs[k].type == KNOB_DURATION)
                pw_buf_printf(o, "%s{service=\"%s\"} %.15g\n", health_knobs[k].metric, g->services[i].id, v / 1000.0);
            else
                pw_buf_printf(o, "%s{service=\"%s\"} %" PRIu64 "\n", health_knobs[k].metric, g->services[i].id, v);
        }
    }
}

static void metrics_text(dp_server_t *s, pw_buf_t *o)
{
    dp_gen_t *g = atomic_load(&s->current);
    totals_t t;
    sum_workers(s, &t);
    uint32_t lmax, linflight, lqueued;
    dp_limiter_stats(&s->limiter, &lmax, &linflight, &lqueued);

    HELP(o, "pathway_build_info", "gauge", "The running build (always 1).");
    pw_buf_printf(o, "pathway_build_info{version=\"%s\"} 1\n", PW_VERSION);

    HELP(o, "pathway_requests_total", "counter", "Requests by service and status class.");
    for (size_t i = 0; i != g->nservices; ++i) {
        dp_service_t *svc = g->services + i;
        for (int c = 1; c <= 5; ++c) {
            uint64_t n = 0;
            for (size_t w = 0; w != s->nworkers; ++w)
                n += DP_LOAD(svc->shared->stats[w].by_class[c]);
            pw_buf_printf(o, "pathway_requests_total{service=\"%s\",class=\"%dxx\"} %" PRIu64 "\n", svc->id, c, n);
        }
    }
    HELP(o, "pathway_requests_unrouted_total", "counter",
         "Requests no service could be named for (400, 404, 405), by status class.");
    for (int c = 1; c <= 5; ++c) {
        uint64_t n = t.by_class[c];
        for (size_t i = 0; i != g->nservices; ++i)
            for (size_t w = 0; w != s->nworkers; ++w)
                n -= DP_LOAD(g->services[i].shared->stats[w].by_class[c]);
        pw_buf_printf(o, "pathway_requests_unrouted_total{class=\"%dxx\"} %" PRIu64 "\n", c, n);
    }
    HELP(o, "pathway_request_duration_seconds", "histogram", "Request duration by service.");
    for (size_t i = 0; i != g->nservices; ++i) {
        dp_service_t *svc = g->services + i;
        uint64_t cum = 0, sum_us = 0;
        for (size_t b = 0; b != DP_HIST_BUCKETS; ++b) {
            for (size_t w = 0; w != s->nworkers; ++w)
                cum += DP_LOAD(svc->shared->stats[w].hist[b]);
            if (b < DP_HIST_BUCKETS - 1)
                pw_buf_printf(o, "pathway_request_duration_seconds_bucket{service=\"%s\",le=\"%g\"} %" PRIu64 "\n", svc->id,
                              dp_hist_bounds_ms[b] / 1000.0, cum);
            else
                pw_buf_printf(o, "pathway_request_duration_seconds_bucket{service=\"%s\",le=\"+Inf\"} %" PRIu64 "\n", svc->id, cum);
        }
        for (size_t w = 0; w != s->nworkers; ++w)
            sum_us += DP_LOAD(svc->shared->stats[w].duration_us_sum);
        pw_buf_printf(o, "pathway_request_duration_seconds_sum{service=\"%s\"} %g\n", svc->id, sum_us / 1e6);
        pw_buf_printf(o, "pathway_request_duration_seconds_count{service=\"%s\"} %" PRIu64 "\n", svc->id, cum);
    }
    HELP(o, "pathway_requests_active", "gauge", "Requests in flight.");
    pw_buf_printf(o, "pathway_requests_active %" PRIu64 "\n", t.active);

    /* upstream series: one per endpoint, named by service and endpoint name (never the URL) */
    char lb[520];
    HELP(o, "pathway_upstream_connections", "gauge", "Upstream connections by service, endpoint and state.");
    for (size_t i = 0; i != g->nendpoints; ++i) {
        dp_endpoint_t *ep = g->endpoints[i];
        const char *l = dp_admin_label_escape(ep->label, lb, sizeof(lb));
        pw_buf_printf(o, "pathway_upstream_connections{service=\"%s\",endpoint=\"%s\",state=\"open\"} %u\n", ep->service, l,
                      (unsigned)atomic_load(&ep->open));
        pw_buf_printf(o, "pathway_upstream_connections{service=\"%s\",endpoint=\"%s\",state=\"idle\"} %u\n", ep->service, l,
                      (unsigned)atomic_load(&ep->idle));
    }
    HELP(o, "pathway_upstream_max_connections", "gauge", "Configured max_conns_per_host by service and endpoint.");
    for (size_t i = 0; i != g->nendpoints; ++i)
        pw_buf_printf(o, "pathway_upstream_max_connections{service=\"%s\",endpoint=\"%s\"} %u\n", g->endpoints[i]->service,
                      dp_admin_label_escape(g->endpoints[i]->label, lb, sizeof(lb)),
                      (unsigned)atomic_load(&g->endpoints[i]->max_conns));
    HELP(o, "pathway_upstream_max_idle_connections", "gauge", "Configured max_idle_per_host by service and endpoint.");
    for (size_t i = 0; i != g->nendpoints; ++i)
        pw_buf_printf(o, "pathway_upstream_max_idle_connections{service=\"%s\",endpoint=\"%s\"} %u\n", g->endpoints[i]->service,
                      dp_admin_label_escape(g->endpoints[i]->label, lb, sizeof(lb)),
                      (unsigned)atomic_load(&g->endpoints[i]->max_idle));
    static const struct {
        const char *name, *help;
        size_t offset;
    } counters[] = {
        {"pathway_upstream_connects_total", "New upstream connections.", offsetof(dp_endpoint_t, connects)},
        {"pathway_upstream_reuses_total", "Requests sent on a kept-alive connection.", offsetof(dp_endpoint_t, reuses)},
        {"pathway_upstream_connect_errors_total", "Failed upstream connects.", offsetof(dp_endpoint_t, connect_errors)},
        {"pathway_upstream_closes_total", "Upstream connections closed.", offsetof(dp_endpoint_t, closes)},
    };
    for (size_t k = 0; k != sizeof(counters) / sizeof(counters[0]); ++k) {
        pw_buf_printf(o, "# HELP %s %s\n# TYPE %s counter\n", counters[k].name, counters[k].help, counters[k].name);
        for (size_t i = 0; i != g->nendpoints; ++i) {
            dp_endpoint_t *ep = g->endpoints[i];
            _Atomic uint64_t *c = (_Atomic uint64_t *)((char *)ep + counters[k].offset);
            pw_buf_printf(o, "%s{service=\"%s\",endpoint=\"%s\"} %" PRIu64 "\n", counters[k].name, ep->service,
                          dp_admin_label_escape(ep->label, lb, sizeof(lb)), (uint64_t)atomic_load(c));
        }
    }
    dp_admin_h2_metrics(g, o);
    HELP(o, "pathway_attempts_total", "counter", "Upstream attempts (first tries, retries, hedges) by how they ended.");
    for (size_t i = 0; i != g->nendpoints; ++i) {
        dp_endpoint_t *ep = g->endpoints[i];
        const char *l = dp_admin_label_escape(ep->label, lb, sizeof(lb));
        for (int k = 0; k != DP_ARES__COUNT; ++k)
            pw_buf_printf(o, "pathway_attempts_total{service=\"%s\",endpoint=\"%s\",result=\"%s\"} %" PRIu64 "\n", ep->service, l,
                          dp_ares_names[k], (uint64_t)atomic_load(&ep->attempts[k]));
    }
    HELP(o, "pathway_retries_total", "counter", "Retries started, by service and the retry_on reason that allowed them.");
    for (size_t i = 0; i != g->nservices; ++i) {
        dp_service_t *svc = g->services + i;
        for (int k = 0; k != CFG_RETRY_ON_COUNT; ++k) {
            uint64_t n = 0;
            for (size_t w = 0; w != s->nworkers; ++w)
                n += DP_LOAD(svc->shared->stats[w].retries[k]);
            pw_buf_printf(o, "pathway_retries_total{service=\"%s\",reason=\"%s\"} %" PRIu64 "\n", svc->id, dp_retry_reason_names[k],
                          n);
        }
    }
    HELP(o, "pathway_hedges_total", "counter", "Requests that started a hedge, by whether the hedge's answer was used.");
    for (size_t i = 0; i != g->nservices; ++i) {
        dp_service_t *svc = g->services + i;
        uint64_t n[2] = {0, 0};
        for (size_t w = 0; w != s->nworkers; ++w)
            for (int k = 0; k != 2; ++k)
                n[k] += DP_LOAD(svc->shared->stats[w].hedges[k]);
        pw_buf_printf(o, "pathway_hedges_total{service=\"%s\",outcome=\"won\"} %" PRIu64 "\n", svc->id, n[0]);
        pw_buf_printf(o, "pathway_hedges_total{service=\"%s\",outcome=\"lost\"} %" PRIu64 "\n", svc->id, n[1]);
    }
    HELP(o, "pathway_retry_budget_exhausted_total", "counter", "Retries and hedges refused by the service's retry budget.");
    for (size_t i = 0; i != g->nservices; ++i)
        pw_buf_printf(o, "pathway_retry_budget_exhausted_total{service=\"%s\"} %" PRIu64 "\n", g->services[i].id,
                      (uint64_t)atomic_load(&g->services[i].shared->budget.exhausted));
    health_metrics_text(g, o);
    dp_admin_cache_metrics(s, g, o);
    HELP(o, "pathway_pool_idle_connections", "gauge", "Idle upstream connections, whole process.");
    pw_buf_printf(o, "pathway_pool_idle_connections %u\n", (unsigned)atomic_load(&s->idle_total));
    HELP(o, "pathway_pool_max_idle_connections", "gauge", "Configured pool.max_idle_total.");
    pw_buf_printf(o, "pathway_pool_max_idle_connections %u\n", (unsigned)atomic_load(&s->max_idle_total));

    /* limiters: scope="process", or scope="service" with the service's id */
    uint32_t smax[g->nservices ? g->nservices : 1], sin[g->nservices ? g->nservices : 1], sq[g->nservices ? g->nservices : 1];
    for (size_t i = 0; i != g->nservices; ++i)
        dp_limiter_stats(&g->services[i].shared->limiter, &smax[i], &sin[i], &sq[i]);
    HELP(o, "pathway_limiter_inflight", "gauge", "Upstream requests holding a permit.");
    pw_buf_printf(o, "pathway_limiter_inflight{scope=\"process\"} %u\n", linflight);
    for (size_t i = 0; i != g->nservices; ++i)
        pw_buf_printf(o, "pathway_limiter_inflight{scope=\"service\",service=\"%s\"} %u\n", g->services[i].id, sin[i]);
    HELP(o, "pathway_limiter_queued", "gauge", "Requests waiting for a permit.");
    pw_buf_printf(o, "pathway_limiter_queued{scope=\"process\"} %u\n", lqueued);
    for (size_t i = 0; i != g->nservices; ++i)
        pw_buf_printf(o, "pathway_limiter_queued{scope=\"service\",service=\"%s\"} %u\n", g->services[i].id, sq[i]);
    HELP(o, "pathway_limiter_max_concurrent", "gauge", "Configured permits (0 for a service: only the process limit applies).");
    pw_buf_printf(o, "pathway_limiter_max_concurrent{scope=\"process\"} %u\n", lmax);
    for (size_t i = 0; i != g->nservices; ++i)
        pw_buf_printf(o, "pathway_limiter_max_concurrent{scope=\"service\",service=\"%s\"} %u\n", g->services[i].id, smax[i]);
    HELP(o, "pathway_limiter_max_queue", "gauge", "Configured limiter.max_queue (waiting requests beyond get 503).");
    pw_buf_printf(o, "pathway_limiter_max_queue{scope=\"process\"} %u\n", (unsigned)g->cfg->limiter.max_queue);
    HELP(o, "pathway_limiter_rejected_total", "counter", "Requests refused with 503 (queue full or queue timeout).");
    pw_buf_printf(o, "pathway_limiter_rejected_total{scope=\"process\",reason=\"queue_full\"} %" PRIu64 "\n",
                  (uint64_t)DP_LOAD(s->limiter.rejected));
    pw_buf_printf(o, "pathway_limiter_rejected_total{scope=\"process\",reason=\"queue_timeout\"} %" PRIu64 "\n",
                  (uint64_t)DP_LOAD(s->limiter.timeouts));
    for (size_t i = 0; i != g->nservices; ++i) {
        pw_buf_printf(o, "pathway_limiter_rejected_total{scope=\"service\",service=\"%s\",reason=\"queue_full\"} %" PRIu64 "\n",
                      g->services[i].id, (uint64_t)DP_LOAD(g->services[i].shared->limiter.rejected));
        pw_buf_printf(o, "pathway_limiter_rejected_total{scope=\"service\",service=\"%s\",reason=\"queue_timeout\"} %" PRIu64 "\n",
                      g->services[i].id, (uint64_t)DP_LOAD(g->services[i].shared->limiter.timeouts));
        pw_buf_printf(o, "pathway_limiter_rejected_total{scope=\"service\",service=\"%s\",reason=\"adaptive\"} %" PRIu64 "\n",
                      g->services[i].id, (uint64_t)DP_LOAD(g->services[i].shared->limiter.rejected_adaptive));
    }
    dp_admin_adaptive_metrics(g, o);
    dp_ws_admin_metrics(g, o);

    HELP(o, "pathway_buffer_pool_hits_total", "counter", "Response buffers reused.");
    pw_buf_printf(o, "pathway_buffer_pool_hits_total %" PRIu64 "\n", t.buf_hits);
    HELP(o, "pathway_buffer_pool_misses_total", "counter", "Response buffers allocated.");
    pw_buf_printf(o, "pathway_buffer_pool_misses_total %" PRIu64 "\n", t.buf_misses);
    HELP(o, "pathway_buffer_pool_retained_bytes", "gauge", "Bytes kept for reuse.");
    pw_buf_printf(o, "pathway_buffer_pool_retained_bytes %" PRIu64 "\n", t.buf_retained);

    HELP(o, "pathway_config_version", "gauge", "Control plane version of the running fleet config (0: the dataplane's own file).");
    pw_buf_printf(o, "pathway_config_version %" PRId64 "\n", g->fleet_version);
    HELP(o, "pathway_config_generation", "gauge", "Local generation counter: 1 at start, +1 per applied change.");
    pw_buf_printf(o, "pathway_config_generation %" PRIu64 "\n", g->generation);
    HELP(o, "pathway_config_info", "gauge", "The running fleet document's hash (always 1).");
    pw_buf_printf(o, "pathway_config_info{hash=\"%s\"} 1\n", g->hash);
    HELP(o, "pathway_config_applies_total", "counter", "Config applies by result.");
    pw_buf_printf(
        o, "pathway_config_applies_total{result=\"ok\"} %" PRIu64 "\npathway_config_applies_total{result=\"error\"} %" PRIu64 "\n",
        (uint64_t)atomic_load(&s->applies_ok), (uint64_t)atomic_load(&s->applies_failed));
    if (s->opts.control_plane_stats != NULL) {
        json_t *cp = s->opts.control_plane_stats(s->opts.ctx);
        HELP(o, "pathway_control_plane_connected", "gauge", "1 when the last call reached the control plane, else 0.");
        pw_buf_printf(o, "pathway_control_plane_connected %d\n", json_is_true(json_object_get(cp, "connected")) ? 1 : 0);
        json_decref(cp);
    }

    pw_process_t ps;
    pw_process_read(&ps);
    if (ps.have_stat && ps.start_time_seconds == 0)
        ps.start_time_seconds = s->started_at_unix; /* no btime in /proc/stat: our own clock's */
    pw_process_metrics(o, &ps);
}

/* --- handler -------------------------------------------------------------------------------- */

static int is_method(h2o_req_t *req, const char *m)
{
    return h2o_memis(req->method.base, req->method.len, m, strlen(m));
}

static int path_is(h2o_req_t *req, const char *p)
{
    size_t len = req->path_normalized.len;
    const char *q = memchr(req->path_normalized.base, '?', len);
    if (q != NULL)
        len = (size_t)(q - req->path_normalized.base);
    return h2o_memis(req->path_normalized.base, len, p, strlen(p));
}

static int query_param(h2o_req_t *req, const char *name, char *out, size_t outlen)
{
    if (req->query_at == SIZE_MAX)
        return -1;
    const char *q = req->path.base + req->query_at + 1, *end = req->path.base + req->path.len;
    size_t nl = strlen(name);
    while (q < end) {
        const char *amp = memchr(q, '&', (size_t)(end - q));
        const char *e = amp ? amp : end;
        if ((size_t)(e - q) > nl && memcmp(q, name, nl) == 0 && q[nl] == '=') {
            size_t vl = (size_t)(e - q) - nl - 1;
            if (vl >= outlen)
                return -1;
            memcpy(out, q + nl + 1, vl);
            out[vl] = '\0';
            return 0;
        }
        q = e + 1;
    }
    return -1;
}

static json_t *lines_json(const char *s)
{
    json_t *a = json_array();
    while (s != NULL && *s != '\0') {
        const char *nl = strchr(s, '\n');
        size_t len = nl ? (size_t)(nl - s) : strlen(s);
        json_array_append_new(a, json_stringn(s, len));
        s = nl ? nl + 1 : s + len;
    }
    return a;
}

/* Why a state-changing request is refused, or NULL. The admin API has no browser use: a request
 * with an Origin header came from a web page, and one without Content-Type: application/json is a
 * request a page can send without a CORS preflight (a "simple" request). Both are refused, so a
 * page the operator visits cannot reload or change the log level of a dataplane on localhost. */
static const char *refuse_mutation(h2o_req_t *req)
{
    if (h2o_find_header_by_str(&req->headers, H2O_STRLIT("origin"), -1) != -1)
        return "requests with an Origin header are refused: the admin API is not for browsers";
    ssize_t i = h2o_find_header(&req->headers, H2O_TOKEN_CONTENT_TYPE, -1);
    if (i != -1) {
        h2o_iovec_t v = req->headers.entries[i].value;
        size_t n = 0;
        while (n != v.len && v.base[n] != ';' && v.base[n] != ' ' && v.base[n] != '\t')
            n++;
        if (h2o_lcstris(v.base, n, H2O_STRLIT("application/json")))
            return NULL;
    }
    return "state-changing requests need Content-Type: application/json";
}

/* Whether the request carries "Authorization: Bearer <admin token>". */
static int has_admin_token(dp_server_t *s, h2o_req_t *req)
{
    ssize_t i = h2o_find_header(&req->headers, H2O_TOKEN_AUTHORIZATION, -1);
    if (i == -1)
        return 0;
    h2o_iovec_t v = req->headers.entries[i].value;
    if (v.len < 7 || !h2o_lcstris(v.base, 7, H2O_STRLIT("bearer ")))
        return 0;
    return pw_token_equal(s->admin_token, v.base + 7, v.len - 7);
}

static int hex_digit(char c)
{
    return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
}

/* One segment of a request path, percent-decoded into out (NUL-terminated). -1 on a bad escape, a
 * byte that is not printable ASCII (no service id or endpoint name holds one, and an error that
 * echoes the segment must be valid JSON), or a segment longer than outlen - 1. ('+' is itself in a
 * path, not a space.) */
static int path_segment_decode(const char *p, size_t len, char *out, size_t outlen)
{
    size_t o = 0;
    for (size_t i = 0; i != len; ++i) {
        char c = p[i];
        if (c == '%') {
            int hi, lo;
            if (len - i < 3 || (hi = hex_digit(p[i + 1])) < 0 || (lo = hex_digit(p[i + 2])) < 0)
                return -1;
            c = (char)(hi << 4 | lo);
            i += 2;
        }
        if (c < 0x20 || c > 0x7e || o + 1 >= outlen)
            return -1;
        out[o++] = c;
    }
    out[o] = '\0';
    return 0;
}

/* POST /endpoints/<service>/<endpoint>/drain or /undrain (HAProxy's "set server state drain"): a
 * drained endpoint gets no new requests and keeps those in flight. The endpoint is named by its
 * label, percent-encoded (names hold ':', derived ones '#'). The drain is the endpoint's, so it
 * holds across reloads that keep the endpoint. Main thread (dp_health_drain's rule). */
static void endpoint_drain(dp_server_t *s, h2o_req_t *req)
{
    static const char prefix[] = "/endpoints/";
    size_t len = req->query_at != SIZE_MAX ? req->query_at : req->path.len;
    const char *seg[3], *p = req->path.base + sizeof(prefix) - 1, *end = req->path.base + len;
    size_t seglen[3], n = 0;
    while (n != 3 && p <= end) {
        const char *slash = memchr(p, '/', (size_t)(end - p));
        seg[n] = p;
        seglen[n++] = (size_t)((slash != NULL ? slash : end) - p);
        p = slash != NULL ? slash + 1 : end + 1;
    }
    int on = n == 3 && h2o_memis(seg[2], seglen[2], H2O_STRLIT("drain")),
        off = n == 3 && h2o_memis(seg[2], seglen[2], H2O_STRLIT("undrain"));
    if (p <= end || (!on && !off)) {
        respond_json(
            req, 404,
            json_pack("{s:b, s:s}", "ok", 0, "error", "not found: use POST /endpoints/<service>/<endpoint>/drain or /undrain"));
        return;
    }
    if (!is_method(req, "POST")) {
        h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_ALLOW, NULL, H2O_STRLIT("POST"));
        respond_json(req, 405, json_pack("{s:b, s:s}", "ok", 0, "error", "method not allowed: drain and undrain are POST"));
        return;
    }
    char sid[256], name[256];
    if (seglen[0] == 0 || path_segment_decode(seg[0], seglen[0], sid, sizeof(sid)) != 0) {
        respond_json(req, 400,
                     json_pack("{s:b, s:s}", "ok", 0, "error",
                               "service: must be a service id, percent-encoded (printable ASCII, 1 to 255 bytes)"));
        return;
    }
    if (seglen[1] == 0 || path_segment_decode(seg[1], seglen[1], name, sizeof(name)) != 0) {
        respond_json(req, 400,
                     json_pack("{s:b, s:s}", "ok", 0, "error",
                               "endpoint: must be an endpoint name, percent-encoded (printable ASCII, 1 to 255 bytes)"));
        return;
    }
    dp_gen_t *g = atomic_load(&s->current);
    dp_service_t *svc = dp_gen_find_service(g, sid, strlen(sid));
    if (svc == NULL) {
        respond_json(req, 404, json_pack("{s:b, s:s+, s:s}", "ok", 0, "error", "unknown service: ", sid, "service", sid));
        return;
    }
    dp_endpoint_t *ep = NULL;
    for (size_t i = 0; i != svc->nendpoints && ep == NULL; ++i)
        if (strcmp(svc->endpoints[i]->label, name) == 0)
            ep = svc->endpoints[i];
    if (ep == NULL) {
        respond_json(req, 404,
                     json_pack("{s:b, s:s+++, s:s, s:s}", "ok", 0, "error", "unknown endpoint: service ", svc->id,
                               " has no endpoint ", name, "service", svc->id, "endpoint", name));
        return;
    }
    const char *why = NULL;
    if (dp_health_drain(svc, ep, on, &why) != 0) {
        respond_json(req, 409,
                     json_pack("{s:b, s:s+++, s:s, s:s, s:s}", "ok", 0, "error", "cannot drain ", ep->label, ": ",
                               why != NULL ? why : "refused", "service", svc->id, "endpoint", ep->label, "state",
                               dp_health_state_names[dp_health_state(ep, unix_now_ms())]));
        return;
    }
    if (on)
        PW_INFO("endpoint %s of service %s drained by the admin API: no new requests; %d in flight finish", ep->label, svc->id,
                (int)atomic_load(&ep->outstanding));
    else
        PW_INFO("endpoint %s of service %s undrained by the admin API (now %s)", ep->label, svc->id,
                dp_health_state_names[dp_health_state(ep, unix_now_ms())]);
    respond_json(req, 200,
                 json_pack("{s:b, s:s, s:s, s:s}", "ok", 1, "service", svc->id, "endpoint", ep->label, "state",
                           dp_health_state_names[dp_health_state(ep, unix_now_ms())]));
}

static int on_admin_req(h2o_handler_t *self, h2o_req_t *req)
{
    dp_server_t *s = ((admin_handler_t *)self)->server;
    int get = is_method(req, "GET") || is_method(req, "HEAD"), post = is_method(req, "POST");
    const char *refused;

    /* probes carry no token: /healthz and /ready say only "alive" and "serving" */
    if (s->admin_token != NULL && !path_is(req, "/healthz") && !path_is(req, "/ready") && !has_admin_token(s, req)) {
        h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_WWW_AUTHENTICATE, NULL, H2O_STRLIT("Bearer realm=\"pathway\""));
        respond_json(req, 401, json_pack("{s:b, s:s}", "ok", 0, "error", "this call needs Authorization: Bearer <admin token>"));
        return 0;
    }

    if (!get && (refused = refuse_mutation(req)) != NULL) {
        respond_json(req, 403, json_pack("{s:b, s:s}", "ok", 0, "error", refused));
        return 0;
    }

    if (path_is(req, "/healthz")) {
        if (!get)
            goto MethodNotAllowed;
        respond(req, 200, "text/plain", H2O_STRLIT("ok\n"));
    } else if (path_is(req, "/ready")) {
        if (!get)
            goto MethodNotAllowed;
        if (dp_server_ready(s))
            respond(req, 200, "text/plain", H2O_STRLIT("ready\n"));
        else
            respond(req, 503, "text/plain", H2O_STRLIT("not ready\n"));
    } else if (path_is(req, "/metrics")) {
        if (!get)
            goto MethodNotAllowed;
        pw_buf_t t = PW_BUF_INIT;
        metrics_text(s, &t);
        if (t.failed)
            respond(req, 503, "text/plain", H2O_STRLIT("out of memory\n"));
        else
            respond(req, 200, "text/plain; version=0.0.4", t.p != NULL ? t.p : "", t.len);
        pw_buf_dispose(&t);
    } else if (path_is(req, "/stats")) {
        if (!get)
            goto MethodNotAllowed;
        respond_json(req, 200, stats_json(s, atomic_load(&s->current)));
    } else if (path_is(req, "/config")) {
        if (!get)
            goto MethodNotAllowed;
        dp_gen_t *g = atomic_load(&s->current);
        json_t *doc = cfg_to_json(g->cfg, CFG_SCOPE_FULL);
        respond_json(req, 200,
                     json_pack("{s:I, s:I, s:s, s:o}", "version", (json_int_t)g->fleet_version, "generation",
                               (json_int_t)g->generation, "hash", g->hash, "document", cfg_redact(doc)));
        json_decref(doc);
    } else if (path_is(req, "/reload")) {
        if (!post)
            goto MethodNotAllowed;
        char *err = NULL;
        json_t *restart = NULL;
        int changed = 0;
        if (dp_server_reload(s, &changed, &err, &restart) != 0) {
            PW_ERROR("reload failed; the running generation is unchanged:\n%s", err ? err : "");
            respond_json(req, 400, json_pack("{s:b, s:o}", "ok", 0, "errors", lines_json(err)));
            free(err);
            json_decref(restart);
        } else {
            dp_gen_t *g = atomic_load(&s->current);
            respond_json(req, 200,
                         json_pack("{s:b, s:b, s:I, s:I, s:s, s:o}", "ok", 1, "changed", changed, "version",
                                   (json_int_t)g->fleet_version, "generation", (json_int_t)g->generation, "hash", g->hash,
                                   "restart_required", restart ? restart : json_array()));
        }
    } else if (path_is(req, "/cache/purge")) {
        if (!post)
            goto MethodNotAllowed;
        char svc[DP_SERVICE_ID_MAX + 2];
        int status = 200;
        int has = query_param(req, "service", svc, sizeof(svc)) == 0;
        if (!has && req->query_at != SIZE_MAX &&
            h2o_strstr(req->path.base + req->query_at, req->path.len - req->query_at, H2O_STRLIT("service=")) != SIZE_MAX) {
            respond_json(
                req, 400,
                json_pack("{s:b, s:s}", "ok", 0, "error", "service: not a service id ([A-Za-z0-9_.-], 1 to 64 characters)"));
            return 0;
        }
        json_t *ans = dp_admin_cache_purge(s, atomic_load(&s->current), has ? svc : NULL, &status);
        respond_json(req, status, ans);
    } else if (req->path.len >= 11 && memcmp(req->path.base, "/endpoints/", 11) == 0) {
        endpoint_drain(s, req);
    } else if (path_is(req, "/logging")) {
        if (!post)
            goto MethodNotAllowed;
        char level[16];
        int lv;
        if (query_param(req, "level", level, sizeof(level)) != 0 || (lv = pw_log_level_from_name(level)) < 0) {
            respond_json(req, 400,
                         json_pack("{s:b, s:s}", "ok", 0, "error", "level: must be one of debug, info, warn, error, off"));
        } else {
            pw_log_set_level((pw_log_level_t)lv);
            pw_log_write(PW_LOG_INFO, "log level set to %s (until the next apply)", level);
            respond_json(req, 200, json_pack("{s:b, s:s}", "ok", 1, "level", pw_log_level_name((pw_log_level_t)lv)));
        }
    } else {
        respond(req, 404, "text/plain", H2O_STRLIT("not found\n"));
    }
    return 0;

MethodNotAllowed:
    h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_ALLOW, NULL, post ? "GET" : "POST", post ? 3 : 4);
    respond(req, 405, "text/plain", H2O_STRLIT("method not allowed\n"));
    return 0;
}

json_t *dp_server_stats(dp_server_t *s)
{
    /* another thread: the lock keeps an apply from freeing the generation (or the last error)
     * while they are read */
    pthread_mutex_lock(&s->gen_mutex);
    json_t *doc = stats_json(s, atomic_load(&s->current));
    pthread_mutex_unlock(&s->gen_mutex);
    return doc;
}

int dp_admin_init(dp_server_t *s, h2o_globalconf_t *conf)
{
    h2o_config_init(conf);
    conf->server_name = h2o_iovec_init(H2O_STRLIT("pathway"));
    conf->max_request_entity_size = 65536;
    h2o_hostconf_t *host = h2o_config_register_host(conf, h2o_iovec_init(H2O_STRLIT("default")), 65535);
    h2o_pathconf_t *path = h2o_config_register_path(host, "/", 0);
    admin_handler_t *h = (admin_handler_t *)h2o_create_handler(path, sizeof(*h));
    if (h == NULL)
        return -1;
    h->super.on_req = on_admin_req;
    h->server = s;
    return 0;
}
