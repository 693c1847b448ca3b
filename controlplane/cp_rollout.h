/*
 * cp_rollout: safe rollouts. A version written with a `rollout` object is served first to a
 * canary set of dataplanes, then to growing sets (steps), while a gate compares the canaries'
 * traffic (error rate, p99) with the other dataplanes' on the previous version every interval; it
 * ends promoted (every dataplane gets it) or rolled back (a new version of kind rollback carries
 * the previous document).
 *
 * This header has the pure parts (the rollout object, the traffic counters, the gate's arithmetic,
 * the stable order of dataplanes), unit-testable alone, in cp_rollout.c; the rollout record and
 * its SQL (cp_rollout_store.c); and the engine that runs in the server's loop
 * (cp_rollout_engine.c, declared in cp_server_internal.h).
 */
#ifndef PATHWAY_CP_ROLLOUT_H
#define PATHWAY_CP_ROLLOUT_H

#include <stddef.h>
#include <stdint.h>
#include <jansson.h>
#include "cp_store.h"

#define CP_ROLLOUT_BUCKETS 14   /* latency buckets of a heartbeat: 1,2,5,...,10000 ms and +Inf */
#define CP_ROLLOUT_MAX_STEPS 16 /* steps of one rollout at most */
#define CP_ROLLOUT_MAX_SERVICES 1024

extern const double cp_rollout_bucket_bounds_ms[CP_ROLLOUT_BUCKETS]; /* the last is +Inf */

/* --- the rollout object ------------------------------------------------------------------------ */

typedef struct st_cp_rollout_step_t {
    int percent;      /* share of the known dataplanes served at this step (0 only at step 0 after a label canary) */
    uint64_t hold_ms; /* how long the step lasts at least */
} cp_rollout_step_t;

typedef struct st_cp_rollout_spec_t {
    json_t *canary_labels;                         /* labels the canaries match (owned), NULL when chosen by percent */
    int canary_percent;                            /* 1..100 when chosen by percent; 0 otherwise */
    size_t num_steps;                              /* 1..CP_ROLLOUT_MAX_STEPS */
    cp_rollout_step_t steps[CP_ROLLOUT_MAX_STEPS]; /* num_steps of them, percents growing */
    double max_error_rate_increase;                /* canary error rate may exceed the baseline's by this much */
    double max_p99_ratio;                          /* canary p99 may be this many times the baseline's */
    uint64_t min_requests;                         /* canary requests in a window below this: inconclusive */
    uint64_t interval_ms;                          /* the gate's window */
    uint64_t failures_allowed;                     /* failed windows tolerated; one more rolls back */
} cp_rollout_spec_t;

#define CP_ROLLOUT_DEFAULT_MAX_ERROR_RATE_INCREASE 0.01
#define CP_ROLLOUT_DEFAULT_MAX_P99_RATIO 1.5
#define CP_ROLLOUT_DEFAULT_MIN_REQUESTS 100
#define CP_ROLLOUT_DEFAULT_INTERVAL_MS 30000
#define CP_ROLLOUT_DEFAULT_FAILURES_ALLOWED 1

/* Validates a rollout object ({canary, steps, gate}); `where` prefixes the messages ("rollout").
 * Returns 0, or -1 with a message naming the key in err. */
int cp_rollout_spec_parse(const json_t *v, const char *where, cp_rollout_spec_t *out, char *err, size_t errlen);
void cp_rollout_spec_dispose(cp_rollout_spec_t *s);
/* The canonical form stored and shown (durations in ms). New reference. */
json_t *cp_rollout_spec_json(const cp_rollout_spec_t *s);

/* --- traffic and the gate ------------------------------------------------------------------------ */

typedef struct st_cp_traffic_t {
    uint64_t requests;                    /* answered */
    uint64_t errors;                      /* 5xx, and JSON-RPC server_error, rate_limited, missing_data answers */
    uint64_t buckets[CP_ROLLOUT_BUCKETS]; /* non-cumulative */
} cp_traffic_t;

/* A heartbeat's "traffic": {"version": V, "services": {name: {requests, errors, latency_ms_buckets}}}.
 * Sums the services into *out. Returns 0, or -1 with a message naming the key. */
int cp_traffic_parse(const json_t *v, int64_t *version, cp_traffic_t *out, char *err, size_t errlen);

/* One service's counters in a heartbeat's traffic. */
typedef struct st_cp_service_traffic_t {
    const char *name; /* the service's key, borrowed from the parsed traffic object */
    cp_traffic_t t;   /* its counters (cumulative since the dataplane runs the traffic's version) */
} cp_service_traffic_t;

/* The same, service by service: *services (malloc'd, caller frees; NULL when none) gets *n entries
 * whose names live as long as `v`. Returns 0, or -1 with a message naming the key (or "out of
 * memory"). */
int cp_traffic_parse_services(const json_t *v, int64_t *version, cp_service_traffic_t **services, size_t *n, char *err,
                              size_t errlen);

/* One dataplane's latest traffic report as stored (cp_store_traffic_since). */
typedef struct st_cp_traffic_report_t {
    char *id;                   /* the dataplane */
    json_t *traffic;            /* the report's traffic object (the names of svcs live in it) */
    int64_t version;            /* traffic.version: the counters are cumulative since it runs it */
    cp_service_traffic_t *svcs; /* its services' counters (NULL when none) */
    size_t num_svcs;            /* entries of svcs */
    int64_t at_ms;              /* when it was stored (see cp_store_dataplane_report) */
    int64_t seq;                /* how many reports with traffic the dataplane's row has had (this one included) */
} cp_traffic_report_t;

/* Every dataplane's latest traffic report stored after after_ms (at_ms > after_ms), oldest first
 * (an index on the time: cheap to call often with the newest at_ms read). *out is an array of
 * *count entries, free with cp_traffic_reports_free. A stored report that does not parse is left
 * out. OK or ERROR. */
int cp_store_traffic_since(cp_store_t *store, int64_t after_ms, cp_traffic_report_t **out, size_t *count);
void cp_traffic_reports_free(cp_traffic_report_t *r, size_t count);

/* a += b */
void cp_traffic_add(cp_traffic_t *a, const cp_traffic_t *b);
/* What was counted since `mark` (cur - mark); when the counters went back (the dataplane restarted
 * them), all of cur. */
void cp_traffic_since(const cp_traffic_t *cur, const cp_traffic_t *mark, cp_traffic_t *out);

/* The figures of one group over one window. */
typedef struct st_cp_figures_t {
    uint64_t requests; /* in the window */
    uint64_t errors;   /* of them */
    double error_rate; /* errors / requests, 0 without requests */
    double p99_ms;     /* upper bound of the bucket holding the 99th percentile; INFINITY in the last bucket */
    int has_p99;       /* requests > 0 */
} cp_figures_t;

void cp_figures_of(const cp_traffic_t *t, cp_figures_t *out);
/* {requests, errors, error_rate, p99_ms} (p99_ms null without requests or beyond the last bound). */
json_t *cp_figures_json(const cp_figures_t *f);
int cp_figures_from_json(const json_t *v, cp_figures_t *out);

typedef enum en_cp_verdict_t { CP_VERDICT_PASS = 0, CP_VERDICT_FAIL, CP_VERDICT_INCONCLUSIVE, CP_VERDICT_NUM } cp_verdict_t;

const char *cp_verdict_name(cp_verdict_t v);

/* The gate on one window: inconclusive below min_requests canary requests; else fail when the
 * canary's error rate > baseline's + max_error_rate_increase, or (baseline with a p99) canary p99 >
 * max_p99_ratio × baseline p99; else pass. `baseline` NULL: no baseline figures at all (rate 0,
 * no p99 rule). Writes the reason. */
cp_verdict_t cp_rollout_judge(const cp_rollout_spec_t *s, const cp_figures_t *canary, const cp_figures_t *baseline, char *reason,
                              size_t len);

/* The stable order of dataplanes for a rollout: by FNV-1a of "<rollout id>/<dataplane id>", ties by
 * id. Sorts ids in place. */
void cp_rollout_order(int64_t rollout_id, const char **ids, size_t n);

/* ceil(percent% × n), at least 1 when n > 0 and percent > 0. */
size_t cp_rollout_share(int percent, size_t n);

/* Whether labels (an object of strings) hold every pair of want. */
int cp_labels_match(const json_t *labels, const json_t *want);

/* --- the rollout record --------------------------------------------------------------------------- */

typedef enum en_cp_ro_state_t {
    CP_RO_PROGRESSING = 0,
    CP_RO_PAUSED,
    CP_RO_PROMOTED,
    CP_RO_ABORTED,
    CP_RO_ROLLED_BACK,
    CP_RO_NUM_STATES
} cp_ro_state_t;

const char *cp_ro_state_name(cp_ro_state_t s);
int cp_ro_state_from_name(const char *s, cp_ro_state_t *out);

typedef struct st_cp_rollout_t {
    int64_t id;                /* >= 1 */
    int64_t version;           /* rolled out */
    int64_t from_version;      /* served to the others meanwhile */
    cp_ro_state_t state;       /* progressing and paused are live */
    cp_rollout_spec_t spec;    /* as asked */
    size_t step;               /* index in spec.steps */
    json_t *sets;              /* [[ids of step 0], [ids of step 1], ...] (owned) */
    json_t *marks;             /* {id: {"v": V, "r": n, "e": n, "b": [...]}} at the window's start (owned) */
    json_t *last_baseline;     /* figures of the last baseline window with enough requests, or null (owned) */
    int64_t failures;          /* failed windows */
    int64_t step_passes;       /* passing windows in this step */
    int last_result;           /* cp_verdict_t of the latest window, -1 none */
    int64_t created_ms;        /* Unix ms */
    int64_t updated_ms;        /* the latest transition or window */
    int64_t step_started_ms;   /* the hold counts from here (moved on by a pause's length at resume) */
    int64_t window_started_ms; /* the gate's current window began */
    int64_t paused_ms;         /* when paused, 0 otherwise */
    int64_t rollback_version;  /* the version that undid it, 0 = none */
    char *author;              /* the token that wrote the version */
    char *reason;              /* why it ended ("" while live) */
} cp_rollout_t;

void cp_rollout_dispose(cp_rollout_t *ro);

/* Inserts a new rollout (ro->id is set); inside the caller's transaction. */
int cp_ro_store_insert(cp_store_t *store, cp_rollout_t *ro);
/* Writes the live fields of ro (state, step, sets, marks, counters, times, reason, rollback_version);
 * inside the caller's transaction. */
int cp_ro_store_update(cp_store_t *store, const cp_rollout_t *ro);
/* The same in a transaction of its own, with an event (action, detail) when action is not NULL. */
int cp_ro_store_save(cp_store_t *store, const cp_rollout_t *ro, const char *actor, const char *action, const char *detail);
/* Appends a verdict; inside the caller's transaction. */
int cp_ro_store_verdict(cp_store_t *store, int64_t rollout, int64_t now_ms, size_t step, cp_verdict_t result, const char *figures);
/* One rollout (id <= 0: the live one, progressing or paused). OK / NOT_FOUND / ERROR. */
int cp_ro_store_get(cp_store_t *store, int64_t id, cp_rollout_t *out);
/* The newest rollout's id and state (for /metrics); NOT_FOUND when none. */
int cp_ro_store_newest(cp_store_t *store, int64_t *id, cp_ro_state_t *state, int64_t *step);
/* Rollouts newest first, id < before (<= 0: from the newest), at most limit, as summaries. */
json_t *cp_ro_store_list(cp_store_t *store, int64_t before, int limit);
/* A rollout's verdicts, oldest first. */
json_t *cp_ro_store_verdicts(cp_store_t *store, int64_t rollout);
/* Verdicts ever, by result. */
int cp_ro_store_verdict_counts(cp_store_t *store, uint64_t counts[CP_VERDICT_NUM]);
/* Stores the labels a dataplane reports on its poll (a live write; the row must exist). */
int cp_store_dataplane_labels(cp_store_t *store, const char *id, json_t *labels);

/* The JSON shown by the API: the record, its current set as "dataplanes", and `verdicts` (stolen,
 * may be NULL: left out). */
json_t *cp_rollout_json(const cp_rollout_t *ro, json_t *verdicts);

#endif
