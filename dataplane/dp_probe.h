/*
 * dp_probe: the prober thread that runs active health checks (see dp_probe.c). To the pools it is
 * one more worker, index nworkers: endpoints keep nworkers + 1 pool halves.
 */
#ifndef PATHWAY_DP_PROBE_H
#define PATHWAY_DP_PROBE_H

#include "dp_internal.h"

/* Starts the prober thread (after the workers are ready). Returns 0, or an errno value. */
int dp_prober_start(dp_server_t *s);

#endif
