/*
 * cp_series: per-service traffic over time, as the dataplanes' heartbeats report it, summed over
 * the fleet, for GET /v1/metrics/services (the console's traffic charts).
 *
 * A heartbeat's counters are cumulative since the dataplane runs fleet version `traffic.version`,
 * and restart at 0 when it runs another version or restarts. The series keeps each dataplane's
 * last counters per service and adds what they grew by to the bucket of the time the report came
 * (the whole value when they went back or the version changed). A dataplane it has not seen before
 * (new, or the control plane restarted) sets its baseline with its first report: that report adds
 * nothing, so a restart of the control plane does not show everything since the dataplane started
 * as one spike.
 *
 * Everything is bounded: a ring of CP_SERIES_BUCKETS buckets of CP_SERIES_RESOLUTION_MS per
 * service (the last hour at 10 s), at most max_services services (more are counted in no series;
 * cp_series_observe says how many it left out), and each dataplane's last counters only for the
 * tracked services, dropped when the dataplane is forgotten or has not reported for
 * CP_SERIES_KEEP_MS. A service with no bucket left within the keep time is dropped too.
 *
 * Pure (no server, no store, no clock of its own: callers pass the time), not thread-safe; unit
 * tested in tests/unit/test_cp_series.c.
 */
#ifndef PATHWAY_CP_SERIES_H
#define PATHWAY_CP_SERIES_H

#include <stddef.h>
#include <stdint.h>
#include <jansson.h>
#include "cp_rollout.h"

#define CP_SERIES_RESOLUTION_MS 10000 /* one bucket */
#define CP_SERIES_BUCKETS 360         /* buckets kept per service */
#define CP_SERIES_KEEP_MS ((int64_t)CP_SERIES_RESOLUTION_MS * CP_SERIES_BUCKETS)
#define CP_SERIES_MAX_SERVICES 256 /* the server's bound on services tracked */
#define CP_SERIES_MAX_NAME 64      /* longer service names are not tracked (service ids are at most 64 bytes) */

typedef struct st_cp_series_t cp_series_t;

/* What the series holds now (for /metrics). */
typedef struct st_cp_series_stats_t {
    size_t services;   /* tracked */
    size_t dataplanes; /* whose last counters are kept */
    uint64_t reports;  /* heartbeats with traffic fed */
    uint64_t refused;  /* service samples left out: max_services were tracked, or the name was too long */
} cp_series_stats_t;

/* A new, empty series tracking at most max_services (>= 1). NULL when out of memory. */
cp_series_t *cp_series_create(size_t max_services);
void cp_series_destroy(cp_series_t *s);

/* Feeds one heartbeat of dataplane `dp` (copied) received at now_ms (Unix ms): its traffic's
 * version and its services' counters (borrowed). Returns how many of its services were left out
 * (not tracked: max_services are, or a name longer than CP_SERIES_MAX_NAME), 0 usually, or -1 when
 * out of memory (the report is then partly counted). */
int cp_series_observe(cp_series_t *s, const char *dp, int64_t version, const cp_service_traffic_t *svcs, size_t n, int64_t now_ms);

/* Counts n more reports in the stats without feeding them: reports stored between two reads of the
 * store, whose counters the one read includes (cumulative). */
void cp_series_count_reports(cp_series_t *s, uint64_t n);

/* Drops what is kept of dataplane `dp` (it was forgotten): its next report sets a new baseline. */
void cp_series_forget(cp_series_t *s, const char *dp);

/* Drops the dataplanes that have not reported for CP_SERIES_KEEP_MS, and the services with no
 * bucket within it. cp_series_observe runs it once per bucket by itself. */
void cp_series_expire(cp_series_t *s, int64_t now_ms);

/* The buckets that start within (now_ms - since_ms, now_ms] (since_ms is clamped to 1..keep), of
 * every service or of `service` alone (NULL = all; an unknown one gives no entry):
 * {"<service>": {"t": [bucket start, Unix ms, ascending], "requests": [...], "errors": [...],
 * "rps": [...], "error_rate": [...], "p99_ms": [... or null]}}. Buckets that no report reached are
 * left out (gaps). New reference; NULL when out of memory. */
json_t *cp_series_json(const cp_series_t *s, int64_t since_ms, const char *service, int64_t now_ms);

void cp_series_stats(const cp_series_t *s, cp_series_stats_t *out);

#endif
