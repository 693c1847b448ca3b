/*
 * dp_balancer: which endpoint of a service takes the next try. Least outstanding requests, ties in
 * round-robin order; an endpoint whose connect just failed is passed over once; endpoints this
 * relay already tried are passed over while another exists.
 */
#ifndef PATHWAY_DP_BALANCER_H
#define PATHWAY_DP_BALANCER_H

#include <stdint.h>
#include "dp_internal.h"

/* The endpoints a relay tried, by index in svc->endpoints (indexes past 63 are not tracked). */
typedef uint64_t dp_tried_t;
#define DP_TRIED_BIT(i) ((i) < 64 ? (dp_tried_t)1 << (i) : 0)

/* Returns the index in svc->endpoints of the endpoint to try (svc has at least one). Skips those in
 * `tried` unless every endpoint is in it. Thread-safe: reads and updates only the service's and
 * endpoints' atomics. */
size_t dp_balancer_pick(dp_service_t *svc, dp_tried_t tried);

#endif
