/*
 * dp_balancer: which endpoint of a service takes the next try. Endpoints in rotation first, then
 * lagging ones, then (panic: nothing else is left) unhealthy and ejected ones; drained endpoints
 * only when nothing but drained ones is listed (dp_health). Within that order: endpoints this
 * relay has not tried, then one whose connect did not just fail (passed over once), then the
 * fewest outstanding requests, ties in round-robin order. A half-open endpoint whose trial is free
 * is preferred among equals, so its one trial request goes out promptly.
 */
#ifndef PATHWAY_DP_BALANCER_H
#define PATHWAY_DP_BALANCER_H

#include <stdint.h>
#include "dp_internal.h"

/* The endpoints a relay tried, by index in svc->endpoints (indexes past 63 are not tracked). */
typedef uint64_t dp_tried_t;
#define DP_TRIED_BIT(i) ((i) < 64 ? (dp_tried_t)1 << (i) : 0)

/* Returns the index in svc->endpoints of the endpoint to try (svc has at least one). *trial is set
 * when the try is the endpoint's half-open trial (its outcome must reach dp_health_record with
 * trial set). now_ms: unix ms. Thread-safe: reads and updates only atomics. */
size_t dp_balancer_pick(dp_service_t *svc, dp_tried_t tried, uint64_t now_ms, int *trial);

#endif
