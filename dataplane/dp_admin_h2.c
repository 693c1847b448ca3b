/*
 * dp_admin_h2: upstream HTTP/2 on the admin listener: each endpoint's HTTP/2 side in /stats, and the
 * pathway_upstream_streams, _h2_connections and _goaways_total series of /metrics.
 */
#include <inttypes.h>
#include <stdatomic.h>
#include <stdio.h>
#include "dp_internal.h"
#include "pw_buf.h"

#define HELP(o, name, type, text) pw_buf_printf(o, "# HELP " name " " text "\n# TYPE " name " " type "\n")

/* /stats: an endpoint's HTTP/2 side: the protocol configured, the one its connections speak, streams. */
json_t *dp_admin_h2_endpoint_json(dp_endpoint_t *ep)
{
    static const char *const names[] = {"http1", "h2", "auto"};
    int proto = atomic_load(&ep->protocol);
    uint32_t open = atomic_load(&ep->open), h2 = atomic_load(&ep->h2_open);
    const char *in_use = open == 0 ? NULL : h2 == 0 ? "http1" : h2 >= open ? "h2" : "h2+http1";
    return json_pack("{s:s, s:o, s:i, s:i, s:i, s:I, s:I}", "protocol", names[proto >= 0 && proto <= 2 ? proto : 0],
                     "protocol_in_use", in_use != NULL ? json_string(in_use) : json_null(), "max_concurrent_streams",
                     (int)atomic_load(&ep->max_streams), "h2_connections", (int)h2, "streams", (int)atomic_load(&ep->streams),
                     "h2_connects", (json_int_t)atomic_load(&ep->h2_connects), "goaways", (json_int_t)atomic_load(&ep->goaways));
}

void dp_admin_h2_metrics(dp_gen_t *g, struct st_pw_buf_t *o)
{
    char lb[520]; /* as dp_admin.c */
    HELP(o, "pathway_upstream_streams", "gauge", "HTTP/2 streams open to the upstream, by service and endpoint.");
    for (size_t i = 0; i != g->nendpoints; ++i)
        pw_buf_printf(o, "pathway_upstream_streams{service=\"%s\",endpoint=\"%s\"} %u\n", g->endpoints[i]->service,
                      dp_admin_label_escape(g->endpoints[i]->label, lb, sizeof(lb)),
                      (unsigned)atomic_load(&g->endpoints[i]->streams));
    HELP(o, "pathway_upstream_h2_connections", "gauge", "Upstream connections speaking HTTP/2, by service and endpoint.");
    for (size_t i = 0; i != g->nendpoints; ++i)
        pw_buf_printf(o, "pathway_upstream_h2_connections{service=\"%s\",endpoint=\"%s\"} %u\n", g->endpoints[i]->service,
                      dp_admin_label_escape(g->endpoints[i]->label, lb, sizeof(lb)),
                      (unsigned)atomic_load(&g->endpoints[i]->h2_open));
    HELP(o, "pathway_upstream_goaways_total", "counter", "HTTP/2 GOAWAY frames received from the upstream.");
    for (size_t i = 0; i != g->nendpoints; ++i)
        pw_buf_printf(o, "pathway_upstream_goaways_total{service=\"%s\",endpoint=\"%s\"} %" PRIu64 "\n", g->endpoints[i]->service,
                      dp_admin_label_escape(g->endpoints[i]->label, lb, sizeof(lb)),
                      (uint64_t)atomic_load(&g->endpoints[i]->goaways));
}
