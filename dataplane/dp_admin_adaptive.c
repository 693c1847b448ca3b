/*
 * dp_admin_adaptive: adaptive concurrency on the admin listener: each service's "adaptive" in
 * /stats, and the pathway_adaptive_* gauges of /metrics.
 */
#include <inttypes.h>
#include <stdio.h>
#include "dp_adaptive.h"
#include "dp_internal.h"
#include "pw_buf.h"

/* A service's adaptive limit: {"enabled": false} when off; else the limit, the last window's
 * baseline and sample (seconds), their ratio, and the refusals counted against it. */
json_t *dp_admin_adaptive_json(dp_service_t *svc)
{
    dp_adaptive_stats_t st;
    dp_adaptive_stats(&svc->shared->adaptive, &st);
    json_t *o =
        json_pack("{s:b, s:I}", "enabled", st.enabled, "rejected", (json_int_t)DP_LOAD(svc->shared->limiter.rejected_adaptive));
    const cfg_adaptive_t *c = &svc->cfg->limiter.adaptive;
    char win[32];
    cfg_format_duration(c->window_ms, win, sizeof(win));
    json_object_set_new(o, "settings",
                        json_pack("{s:i, s:i, s:i, s:f, s:s, s:f}", "min_limit", (int)c->min_limit, "max_limit", (int)c->max_limit,
                                  "initial_limit", (int)c->initial_limit, "tolerance", c->tolerance / 1000.0, "window", win,
                                  "smoothing", c->smoothing / 1000.0));
    if (st.enabled) {
        json_object_set_new(o, "limit", json_integer(st.limit));
        json_object_set_new(o, "baseline_seconds", json_real((double)st.baseline_ns / 1e9));
        json_object_set_new(o, "sample_seconds", json_real((double)st.sample_ns / 1e9));
        json_object_set_new(o, "ratio", json_real(st.ratio_milli / 1000.0));
        json_object_set_new(o, "windows", json_integer((json_int_t)st.windows));
        json_object_set_new(o, "samples", json_integer((json_int_t)st.samples));
    }
    return o;
}

/* The gauges of services whose adaptive limit is on (no series for the others). */
void dp_admin_adaptive_metrics(dp_gen_t *g, pw_buf_t *o)
{
    /* the settings of every service, on or off */
    static const struct {
        const char *name, *help;
    } knobs[] = {
        {"pathway_adaptive_enabled", "Configured limiter.adaptive.enabled by service (1: on)."},
        {"pathway_adaptive_min_limit", "Configured limiter.adaptive.min_limit by service."},
        {"pathway_adaptive_max_limit", "Configured limiter.adaptive.max_limit by service."},
        {"pathway_adaptive_initial_limit", "Configured limiter.adaptive.initial_limit by service."},
        {"pathway_adaptive_tolerance_ratio", "Configured limiter.adaptive.tolerance by service."},
        {"pathway_adaptive_window_seconds", "Configured limiter.adaptive.window by service."},
        {"pathway_adaptive_smoothing_ratio", "Configured limiter.adaptive.smoothing by service."},
    };
    for (size_t k = 0; k != sizeof(knobs) / sizeof(knobs[0]); ++k) {
        pw_buf_printf(o, "# HELP %s %s\n# TYPE %s gauge\n", knobs[k].name, knobs[k].help, knobs[k].name);
        for (size_t i = 0; i != g->nservices; ++i) {
            const cfg_adaptive_t *c = &g->services[i].cfg->limiter.adaptive;
            double v = k == 0   ? c->enabled
                       : k == 1 ? c->min_limit
                       : k == 2 ? c->max_limit
                       : k == 3 ? c->initial_limit
                       : k == 4 ? c->tolerance / 1000.0
                       : k == 5 ? c->window_ms / 1000.0
                                : c->smoothing / 1000.0;
            pw_buf_printf(o, "%s{service=\"%s\"} %g\n", knobs[k].name, g->services[i].id, v);
        }
    }
    static const struct {
        const char *name, *help;
    } gauges[] = {
        {"pathway_adaptive_limit", "The adaptive concurrency limit in force."},
        {"pathway_adaptive_baseline_seconds", "Last window: what its calls take unqueued (each by its method's baseline)."},
        {"pathway_adaptive_sample_seconds", "Last window: what its successful upstream attempts took (mean)."},
    };
    size_t on = 0;
    for (size_t i = 0; i != g->nservices; ++i)
        on += dp_adaptive_on(&g->services[i].shared->adaptive);
    for (size_t k = 0; on != 0 && k != sizeof(gauges) / sizeof(gauges[0]); ++k) {
        pw_buf_printf(o, "# HELP %s %s\n# TYPE %s gauge\n", gauges[k].name, gauges[k].help, gauges[k].name);
        for (size_t i = 0; i != g->nservices; ++i) {
            dp_adaptive_stats_t st;
            dp_adaptive_stats(&g->services[i].shared->adaptive, &st);
            if (!st.enabled)
                continue;
            if (k == 0)
                pw_buf_printf(o, "%s{service=\"%s\"} %u\n", gauges[k].name, g->services[i].id, st.limit);
            else
                pw_buf_printf(o, "%s{service=\"%s\"} %.6f\n", gauges[k].name, g->services[i].id,
                              (double)(k == 1 ? st.baseline_ns : st.sample_ns) / 1e9);
        }
    }
}
