/*
 * dp_admin_cache: the response cache on the admin listener: its part of /stats and /metrics, and
 * POST /cache/purge.
 */
#include <inttypes.h>
#include <string.h>
#include "dp_cache.h"
#include "dp_internal.h"
#include "dp_rpc.h"
#include "pw_buf.h"

static void cres_totals(dp_server_t *s, const dp_service_t *svc, uint64_t out[4])
{
    for (int k = 0; k != 4; ++k) {
        out[k] = 0;
        for (size_t w = 0; w != s->nworkers; ++w)
            out[k] += DP_LOAD(svc->shared->stats[w].cache[k]);
    }
}

json_t *dp_admin_cache_json(dp_server_t *s)
{
    dp_cache_stats_t st;
    dp_cache_stats(s->cache, &st);
    return json_pack("{s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I}", "max_bytes", (json_int_t)st.max_bytes, "max_entry",
                     (json_int_t)st.max_entry, "bytes", (json_int_t)st.bytes, "entries", (json_int_t)st.entries, "evictions",
                     (json_int_t)st.evictions, "expired", (json_int_t)st.expired, "purged", (json_int_t)st.purged, "flights",
                     (json_int_t)st.flights);
}

json_t *dp_admin_cache_service_json(dp_server_t *s, const dp_service_t *svc)
{
    const cfg_cache_t *cc = &svc->cfg->cache;
    uint64_t n[4];
    cres_totals(s, svc, n);
    char fin[32], unf[32], rt[32];
    cfg_format_duration(cc->ttl.final_ms, fin, sizeof(fin));
    cfg_format_duration(cc->ttl.unfinal_ms, unf, sizeof(unf));
    cfg_format_duration(cc->ttl.realtime_ms, rt, sizeof(rt));
    json_t *requests = json_object();
    for (int k = 0; k != 4; ++k)
        json_object_set_new(requests, dp_cres_names[k], json_integer((json_int_t)n[k]));
    json_t *methods = json_object();
    for (size_t i = 0; i != cc->methods.size; ++i) {
        const cfg_cache_method_t *m = cc->methods.entries + i;
        json_t *o = json_pack("{s:b}", "enabled", m->enabled);
        if (m->_set & CFG_CACHE_METHOD_HAS_TTL) {
            char d[32];
            cfg_format_duration(m->ttl_ms, d, sizeof(d));
            json_object_set_new(o, "ttl", json_string(d));
        }
        if (m->_set & CFG_CACHE_METHOD_HAS_CLASS) {
            static const char *const names[] = {"never", "static", "realtime", "by_block", "by_hash"};
            json_object_set_new(o, "class", json_string(m->cls >= 0 && m->cls < 5 ? names[m->cls] : "never"));
        }
        json_object_set_new(methods, m->method, o);
    }
    return json_pack("{s:b, s:b, s:i, s:i, s:{s:s, s:s, s:s}, s:o, s:o}", "enabled", cc->enabled, "coalesce", cc->coalesce_on,
                     "max_followers", (int)cc->max_followers, "finality_depth", (int)cc->finality_depth, "ttl", "final", fin,
                     "unfinal", unf, "realtime", rt, "methods", methods, "requests", requests);
}

void dp_admin_cache_metrics(dp_server_t *s, dp_gen_t *g, pw_buf_t *o)
{
    dp_cache_stats_t st;
    dp_cache_stats(s->cache, &st);
    pw_buf_printf(o, "# HELP pathway_cache_requests_total Requests (batch items) by what the response cache did.\n"
                     "# TYPE pathway_cache_requests_total counter\n");
    for (size_t i = 0; i != g->nservices; ++i) {
        uint64_t n[4];
        cres_totals(s, g->services + i, n);
        for (int k = 0; k != 4; ++k)
            pw_buf_printf(o, "pathway_cache_requests_total{service=\"%s\",result=\"%s\"} %" PRIu64 "\n", g->services[i].id,
                          dp_cres_names[k], n[k]);
    }
    pw_buf_printf(o,
                  "# HELP pathway_cache_bytes Memory held by cached answers (counted against cache.max_bytes).\n"
                  "# TYPE pathway_cache_bytes gauge\npathway_cache_bytes %" PRIu64 "\n"
                  "# HELP pathway_cache_entries Cached answers.\n# TYPE pathway_cache_entries gauge\npathway_cache_entries %" PRIu64
                  "\n"
                  "# HELP pathway_cache_evictions_total Cached answers dropped for room (least recently used first).\n"
                  "# TYPE pathway_cache_evictions_total counter\npathway_cache_evictions_total %" PRIu64 "\n"
                  "# HELP pathway_cache_expired_total Cached answers dropped because their ttl passed.\n"
                  "# TYPE pathway_cache_expired_total counter\npathway_cache_expired_total %" PRIu64 "\n"
                  "# HELP pathway_cache_purged_total Cached answers dropped by POST /cache/purge.\n"
                  "# TYPE pathway_cache_purged_total counter\npathway_cache_purged_total %" PRIu64 "\n"
                  "# HELP pathway_cache_flights Requests in flight that identical ones may wait for (coalescing).\n"
                  "# TYPE pathway_cache_flights gauge\npathway_cache_flights %" PRIu64 "\n"
                  "# HELP pathway_cache_max_bytes Configured cache.max_bytes.\n"
                  "# TYPE pathway_cache_max_bytes gauge\npathway_cache_max_bytes %" PRIu64 "\n"
                  "# HELP pathway_cache_max_entry_bytes Configured cache.max_entry.\n"
                  "# TYPE pathway_cache_max_entry_bytes gauge\npathway_cache_max_entry_bytes %" PRIu64 "\n",
                  st.bytes, st.entries, st.evictions, st.expired, st.purged, st.flights, st.max_bytes, st.max_entry);
    static const struct {
        const char *name, *help;
    } knobs[] = {
        {"pathway_cache_enabled", "Configured cache.enabled by service (1: answers are cached)."},
        {"pathway_cache_coalesce", "Effective cache.coalesce by service (1: identical requests in flight share one)."},
        {"pathway_cache_max_followers", "Configured cache.max_followers by service."},
        {"pathway_cache_finality_depth_blocks", "Configured cache.finality_depth by service."},
    };
    for (size_t k = 0; k != sizeof(knobs) / sizeof(knobs[0]); ++k) {
        pw_buf_printf(o, "# HELP %s %s\n# TYPE %s gauge\n", knobs[k].name, knobs[k].help, knobs[k].name);
        for (size_t i = 0; i != g->nservices; ++i) {
            const cfg_cache_t *cc = &g->services[i].cfg->cache;
            uint64_t v = k == 0   ? (uint64_t)cc->enabled
                         : k == 1 ? (uint64_t)cc->coalesce_on
                         : k == 2 ? cc->max_followers
                                  : cc->finality_depth;
            pw_buf_printf(o, "%s{service=\"%s\"} %" PRIu64 "\n", knobs[k].name, g->services[i].id, v);
        }
    }
    pw_buf_printf(o, "# HELP pathway_cache_ttl_seconds Configured cache.ttl by service and finality (0: until evicted).\n"
                     "# TYPE pathway_cache_ttl_seconds gauge\n");
    for (size_t i = 0; i != g->nservices; ++i) {
        const cfg_cache_ttl_t *t = &g->services[i].cfg->cache.ttl;
        const char *id = g->services[i].id;
        pw_buf_printf(o,
                      "pathway_cache_ttl_seconds{service=\"%s\",finality=\"final\"} %.3f\n"
                      "pathway_cache_ttl_seconds{service=\"%s\",finality=\"unfinal\"} %.3f\n"
                      "pathway_cache_ttl_seconds{service=\"%s\",finality=\"realtime\"} %.3f\n",
                      id, t->final_ms / 1000.0, id, t->unfinal_ms / 1000.0, id, t->realtime_ms / 1000.0);
    }
}

json_t *dp_admin_cache_purge(dp_server_t *s, dp_gen_t *g, const char *service, int *status)
{
    if (service == NULL) {
        size_t n = dp_cache_purge(s->cache, NULL, 0);
        *status = 200;
        return json_pack("{s:b, s:I}", "ok", 1, "purged", (json_int_t)n);
    }
    size_t len = strlen(service);
    if (dp_gen_find_service(g, service, len) == NULL) {
        /* entries of a service no longer configured may remain: purge by id all the same when it is a valid id */
        if (len == 0 || len > DP_SERVICE_ID_MAX ||
            strspn(service, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.-") != len) {
            *status = 400;
            return json_pack("{s:b, s:s}", "ok", 0, "error", "service: not a service id ([A-Za-z0-9_.-], 1 to 64 characters)");
        }
    }
    size_t n = dp_cache_purge(s->cache, service, len);
    *status = 200;
    return json_pack("{s:b, s:s, s:I}", "ok", 1, "service", service, "purged", (json_int_t)n);
}
