/*
 * dp_ws_admin: the WebSocket relay on the admin listener: each service's "websocket" in /stats and
 * the pathway_websocket_* series of /metrics. Endpoint labels are names the config checks
 * (letters, digits, '_', '-', '.', ':', brackets): no escaping needed.
 */
#include <inttypes.h>
#include <stdio.h>
#include "dp_internal.h"
#include "pw_buf.h"

static const char *const directions_[2] = {"client_to_upstream", "upstream_to_client"};
static const char *const refusals_[3] = {"max_connections", "upstream_failed", "other"};

static void sum_stats(const dp_svcshared_t *sh, uint64_t msgs[2], uint64_t bytes[2], uint64_t refused[3])
{
    for (int k = 0; k != 2; ++k)
        msgs[k] = bytes[k] = 0;
    for (int k = 0; k != 3; ++k)
        refused[k] = 0;
    for (size_t w = 0; w != sh->nworkers; ++w) {
        for (int k = 0; k != 2; ++k) {
            msgs[k] += DP_LOAD(sh->stats[w].ws_messages[k]);
            bytes[k] += DP_LOAD(sh->stats[w].ws_bytes[k]);
        }
        for (int k = 0; k != 3; ++k)
            refused[k] += DP_LOAD(sh->stats[w].ws_refused[k]);
    }
}

json_t *dp_ws_admin_service_json(dp_service_t *svc)
{
    const cfg_websocket_t *c = &svc->cfg->websocket;
    uint64_t msgs[2], bytes[2], refused[3];
    sum_stats(svc->shared, msgs, bytes, refused);
    char idle[32], drain[32], maxmsg[32];
    cfg_format_duration(c->idle_timeout_ms, idle, sizeof(idle));
    cfg_format_duration(c->drain_timeout_ms, drain, sizeof(drain));
    cfg_format_size(c->max_message, maxmsg, sizeof(maxmsg));
    json_t *o =
        json_pack("{s:i, s:{s:i, s:s, s:s, s:s}}", "open", (int)atomic_load(&svc->shared->ws_open), "settings", "max_connections",
                  (int)c->max_connections, "idle_timeout", idle, "max_message", maxmsg, "drain_timeout", drain);
    json_t *m = json_object(), *b = json_object(), *r = json_object(), *eps = json_object();
    for (int k = 0; k != 2; ++k) {
        json_object_set_new(m, directions_[k], json_integer((json_int_t)msgs[k]));
        json_object_set_new(b, directions_[k], json_integer((json_int_t)bytes[k]));
    }
    for (int k = 0; k != 3; ++k)
        json_object_set_new(r, refusals_[k], json_integer((json_int_t)refused[k]));
    for (size_t i = 0; i != svc->nendpoints; ++i) {
        dp_endpoint_t *ep = svc->endpoints[i];
        if (ep->ws == NULL)
            continue;
        json_t *f = json_object();
        for (int k = 0; k != DP_WS_FAIL__COUNT; ++k)
            json_object_set_new(f, dp_ws_failure_names[k], json_integer((json_int_t)atomic_load(&ep->ws_handshake_failures[k])));
        json_object_set_new(eps, ep->label,
                            json_pack("{s:I, s:o}", "open", (json_int_t)atomic_load(&ep->ws_open), "handshake_failures", f));
    }
    json_object_set_new(o, "messages", m);
    json_object_set_new(o, "bytes", b);
    json_object_set_new(o, "refused", r);
    json_object_set_new(o, "endpoints", eps);
    return o;
}

void dp_ws_admin_metrics(dp_gen_t *g, pw_buf_t *o)
{
    pw_buf_printf(o, "# HELP pathway_websocket_connections Relayed WebSockets open, by endpoint (endpoints with a ws_url).\n"
                     "# TYPE pathway_websocket_connections gauge\n");
    for (size_t i = 0; i != g->nendpoints; ++i)
        if (g->endpoints[i]->ws != NULL)
            pw_buf_printf(o, "pathway_websocket_connections{service=\"%s\",endpoint=\"%s\"} %" PRId64 "\n",
                          g->endpoints[i]->service, g->endpoints[i]->label, (int64_t)atomic_load(&g->endpoints[i]->ws_open));
    /* each service's effective websocket settings */
    static const struct {
        const char *name, *help;
    } knobs[] = {
        {"pathway_websocket_max_connections", "Configured websocket.max_connections (WebSockets open per service)."},
        {"pathway_websocket_idle_timeout_seconds", "Configured websocket.idle_timeout."},
        {"pathway_websocket_max_message_bytes", "Configured websocket.max_message."},
        {"pathway_websocket_drain_timeout_seconds", "Configured websocket.drain_timeout."},
    };
    for (size_t k = 0; k != sizeof(knobs) / sizeof(knobs[0]); ++k) {
        pw_buf_printf(o, "# HELP %s %s\n# TYPE %s gauge\n", knobs[k].name, knobs[k].help, knobs[k].name);
        for (size_t i = 0; i != g->nservices; ++i) {
            const cfg_websocket_t *c = &g->services[i].cfg->websocket;
            double v = k == 0   ? c->max_connections
                       : k == 1 ? c->idle_timeout_ms / 1000.0
                       : k == 2 ? (double)c->max_message
                                : c->drain_timeout_ms / 1000.0;
            pw_buf_printf(o, "%s{service=\"%s\"} %.17g\n", knobs[k].name, g->services[i].id, v);
        }
    }
    uint64_t msgs[g->nservices ? g->nservices : 1][2], bytes[g->nservices ? g->nservices : 1][2],
        refused[g->nservices ? g->nservices : 1][3];
    for (size_t i = 0; i != g->nservices; ++i)
        sum_stats(g->services[i].shared, msgs[i], bytes[i], refused[i]);
    pw_buf_printf(o, "# HELP pathway_websocket_messages_total WebSocket messages relayed (text and binary), by direction.\n"
                     "# TYPE pathway_websocket_messages_total counter\n");
    for (size_t i = 0; i != g->nservices; ++i)
        for (int k = 0; k != 2; ++k)
            pw_buf_printf(o, "pathway_websocket_messages_total{service=\"%s\",direction=\"%s\"} %" PRIu64 "\n", g->services[i].id,
                          directions_[k], msgs[i][k]);
    pw_buf_printf(o, "# HELP pathway_websocket_bytes_total Payload bytes of the WebSocket messages relayed, by direction.\n"
                     "# TYPE pathway_websocket_bytes_total counter\n");
    for (size_t i = 0; i != g->nservices; ++i)
        for (int k = 0; k != 2; ++k)
            pw_buf_printf(o, "pathway_websocket_bytes_total{service=\"%s\",direction=\"%s\"} %" PRIu64 "\n", g->services[i].id,
                          directions_[k], bytes[i][k]);
    pw_buf_printf(o, "# HELP pathway_websocket_refused_total WebSocket upgrades answered with an error, by reason.\n"
                     "# TYPE pathway_websocket_refused_total counter\n");
    for (size_t i = 0; i != g->nservices; ++i)
        for (int k = 0; k != 3; ++k)
            pw_buf_printf(o, "pathway_websocket_refused_total{service=\"%s\",reason=\"%s\"} %" PRIu64 "\n", g->services[i].id,
                          refusals_[k], refused[i][k]);
    pw_buf_printf(o, "# HELP pathway_websocket_handshake_failures_total Upstream WebSocket handshakes that failed, by endpoint "
                     "and reason (each one fails over to the next endpoint).\n"
                     "# TYPE pathway_websocket_handshake_failures_total counter\n");
    for (size_t i = 0; i != g->nendpoints; ++i) {
        dp_endpoint_t *ep = g->endpoints[i];
        if (ep->ws == NULL)
            continue;
        for (int k = 0; k != DP_WS_FAIL__COUNT; ++k)
            pw_buf_printf(o,
                          "pathway_websocket_handshake_failures_total{service=\"%s\",endpoint=\"%s\",reason=\"%s\"} %" PRIu64 "\n",
                          ep->service, ep->label, dp_ws_failure_names[k], (uint64_t)atomic_load(&ep->ws_handshake_failures[k]));
    }
}
