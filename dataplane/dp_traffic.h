/*
 * dp_traffic: the evidence a managed dataplane's heartbeats carry for a rollout (docs/managed.md):
 * per service, the requests answered, the errors among them and the duration histogram, counted
 * since the dataplane began running the fleet version in force.
 *
 * Nothing is counted twice: the figures are the services' own counters (dp_svcstats_t, kept across
 * generations) less a snapshot taken when another fleet version came into force, so the relay path
 * does no extra work for them.
 */
#ifndef PATHWAY_DP_TRAFFIC_H
#define PATHWAY_DP_TRAFFIC_H

#include <jansson.h>
#include "dp.h"

typedef struct st_dp_traffic_t dp_traffic_t;

/* A counter of `server`'s traffic (borrowed; it must outlive the counter). Its figures start with
 * the running generation's fleet version; counters since the process started count for it (a
 * process starts running its first version). NULL when out of memory. */
dp_traffic_t *dp_traffic_create(dp_server_t *server);
void dp_traffic_destroy(dp_traffic_t *t);

/* Notes the fleet version in force: when it is another than the one counted for, the figures start
 * again from 0. A client that applied a version calls it at once, so the requests of the new
 * version are not counted for the old one. Thread-safe. */
void dp_traffic_observe(dp_traffic_t *t);

/* {"version": V, "services": {"<id>": {"requests": N, "errors": N, "latency_ms_buckets": [14
 * non-cumulative counts, upper bounds dp_hist_bounds_ms then +Inf]}}} since V came into force
 * (observing first). `errors`: answers with a 5xx status plus answers classed server_error,
 * rate_limited or missing_data. New reference, NULL when out of memory. Thread-safe. */
json_t *dp_traffic_json(dp_traffic_t *t);

#endif
