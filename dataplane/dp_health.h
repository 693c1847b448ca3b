/*
 * dp_health: whether an endpoint may take traffic, and why not.
 *
 * Four sources take an endpoint out of rotation, each one bit of `avail`:
 *   - the operator drains it (admin API; main thread);
 *   - passive outlier ejection: failures of real attempts (any worker) eject it for
 *     base_ejection_time x (times ejected), capped; then it is half-open: one trial request (or, for
 *     connect failures, resets and timeouts, one passing probe) closes the breaker, a failure ejects
 *     it again;
 *   - active checks (the prober thread): unhealthy after unhealthy_threshold failed probes in a row,
 *     healthy again after healthy_threshold passes;
 *   - lag: its probed head is more than max_block_lag behind the service's highest head.
 * The balancer chooses among endpoints in rotation, then lagging ones, then (panic) all but drained
 * ones. State lives on the endpoint, so it is carried across generations with the endpoint.
 *
 * Threads: every field is an atomic; bits of `avail` are set and cleared with atomic or/and by
 * their one owner (drain: main thread; unhealthy, lagging: prober), except EJECTED, whose
 * transitions happen under the service's health mutex (dp_svcshared_t.health_mutex).
 */
#ifndef PATHWAY_DP_HEALTH_H
#define PATHWAY_DP_HEALTH_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include "cfg.h"

struct st_dp_service_t;
struct st_dp_endpoint_t;
struct st_dp_svcshared_t;

/* Why an endpoint is out of rotation: bits of dp_ephealth_t.avail (0 = in rotation). */
enum {
    DP_AVAIL_DRAINED = 1u << 0,   /* the operator drained it */
    DP_AVAIL_EJECTED = 1u << 1,   /* passive ejection (half-open once ejected_until passed) */
    DP_AVAIL_UNHEALTHY = 1u << 2, /* active checks failed */
    DP_AVAIL_LAGGING = 1u << 3,   /* behind the service's head */
};

/* What the failure of an attempt was, for ejection: a cfg_retry_on_t value (connect_failure .. rpc_server_error), or one of: */
enum {
    DP_HEALTH_SUCCESS = -1, /* a good answer: resets the consecutive count, closes a half-open breaker (trial) */
    DP_HEALTH_NEUTRAL = -2, /* says nothing of the endpoint: the client's error, cancelled, the gateway's own trouble */
};

/* How one probe ended (pathway_health_checks_total{result}). */
#define DP_PROBE_RESULTS(X)                                                                                                        \
    X(PASS, "pass")                                                                                                                \
    X(CONNECT_FAILURE, "connect_failure")                                                                                          \
    X(TIMEOUT, "timeout")                                                                                                          \
    X(RESET, "reset")                                                                                                              \
    X(HTTP_ERROR, "http_error")                                                                                                    \
    X(RPC_ERROR, "rpc_error")                                                                                                      \
    X(BAD_RESPONSE, "bad_response")
typedef enum en_dp_probe_result_t {
#define DP_PROBE_ENUM(n, s) DP_PROBE_##n,
    DP_PROBE_RESULTS(DP_PROBE_ENUM)
#undef DP_PROBE_ENUM
        DP_PROBE__COUNT
} dp_probe_result_t;
extern const char *const dp_probe_result_names[DP_PROBE__COUNT];

/* The state /stats shows, in precedence order (dp_health_state). */
typedef enum en_dp_health_state_t {
    DP_STATE_HEALTHY = 0,
    DP_STATE_DRAINING,
    DP_STATE_EJECTED,
    DP_STATE_HALF_OPEN,
    DP_STATE_UNHEALTHY,
    DP_STATE_LAGGING,
} dp_health_state_t;
extern const char *const dp_health_state_names[];

#define DP_HEALTH_WINDOW_STEPS 10 /* failure_rate.window is ten steps of a tenth each */

typedef struct st_dp_health_step_t {
    _Atomic uint64_t epoch; /* now / step length of the step counted here */
    _Atomic uint32_t total, failed;
} dp_health_step_t;

/* One endpoint's health (embedded in dp_endpoint_t). */
typedef struct st_dp_ephealth_t {
    _Atomic uint32_t avail; /* DP_AVAIL_* bits; 0 = in rotation */
    /* passive (workers) */
    _Atomic uint32_t consecutive;                    /* failed attempts in a row */
    dp_health_step_t window[DP_HEALTH_WINDOW_STEPS]; /* failure_rate's sliding window */
    _Atomic uint32_t times_ejected;                  /* the ejection time multiplier (decays while in rotation) */
    _Atomic uint64_t ejected_at_ms;                  /* when the current (or last) ejection began */
    _Atomic uint64_t ejected_until_ms;               /* when it becomes half-open */
    _Atomic uint64_t released_at_ms;                 /* when the last ejection ended */
    _Atomic int eject_reason;                        /* cfg_retry_on_t of the current (or last) ejection */
    _Atomic int trial;                               /* half-open: the one trial is out */
    _Atomic uint64_t trial_at_ms;                    /* when it went out (a lost trial is given up after a while) */
    _Atomic uint64_t ejections[CFG_RETRY_ON_COUNT];  /* pathway_ejections_total by reason */
    _Atomic uint64_t failures[CFG_RETRY_ON_COUNT];   /* failed attempts by class */
    _Atomic uint64_t ewma_us;                        /* attempt latency, exponentially weighted (alpha 1/8) */
    /* active (prober thread) */
    _Atomic uint32_t probe_passes, probe_fails; /* in a row */
    _Atomic uint64_t head;                      /* last head block a probe saw; 0 = none */
    _Atomic uint64_t lag;                       /* blocks behind the service's head (0 when head unknown) */
    _Atomic uint64_t last_probe_ms;             /* when the last probe ended (unix ms); 0 = never */
    _Atomic int last_probe;                     /* its dp_probe_result_t */
    _Atomic uint64_t probe_latency_us;          /* its duration */
    _Atomic uint64_t checks[DP_PROBE__COUNT];   /* pathway_health_checks_total by result */
    /* the prober thread's own (plain) */
    uint64_t probe_next_ms; /* when the next probe is due */
    int probing;            /* a probe runs */
} dp_ephealth_t;

/* A service's health across generations (embedded in dp_svcshared_t). */
typedef struct st_dp_svchealth_t {
    pthread_mutex_t mutex;        /* orders ejections (max_ejection_percent) */
    _Atomic uint64_t head;        /* the highest head of its endpoints; 0 = unknown. For other parts (cache finality). */
    _Atomic uint64_t panic_picks; /* tries that went out in panic (nothing in rotation) */
    _Atomic int panic;            /* the latest choice was made in panic */
} dp_svchealth_t;

void dp_svchealth_init(dp_svchealth_t *sh);
void dp_svchealth_dispose(dp_svchealth_t *sh);

/* An attempt on ep (an endpoint of svc) ended: `what` is DP_HEALTH_SUCCESS, DP_HEALTH_NEUTRAL or the
 * cfg_retry_on_t class of its failure; `trial` says it was the half-open trial the balancer handed
 * out; `latency_us` its duration (0: not measured). May eject ep. Any worker; now_ms is unix ms. */
void dp_health_record(struct st_dp_service_t *svc, struct st_dp_endpoint_t *ep, int what, int trial, uint64_t latency_us,
                      uint64_t now_ms);

/* A probe of ep ended (prober thread). `head` is the hex result it returned (have_head), and
 * updates the service's head and every endpoint's lag. */
void dp_health_probe_result(struct st_dp_service_t *svc, struct st_dp_endpoint_t *ep, dp_probe_result_t res, int have_head,
                            uint64_t head, uint64_t latency_us, uint64_t now_ms);
/* Recomputes the lag of every endpoint of svc against its highest head (after a probe, or when
 * max_block_lag changed). Prober thread. */
void dp_health_update_lag(struct st_dp_service_t *svc);
/* Active checks are off for svc (interval 0): clears what they set (unhealthy, lagging, heads).
 * Prober thread. */
void dp_health_checks_off(struct st_dp_service_t *svc);

/* Drains (on) or undrains ep. Refuses (returns -1) to drain the last endpoint of svc not drained:
 * *why says so. Main thread. */
int dp_health_drain(struct st_dp_service_t *svc, struct st_dp_endpoint_t *ep, int on, const char **why);

/* What /stats shows for ep at now_ms. */
dp_health_state_t dp_health_state(const struct st_dp_endpoint_t *ep, uint64_t now_ms);
/* 1 when the balancer may choose ep now without panic: in rotation or half-open with its trial free
 * (pathway_endpoint_up). */
int dp_health_up(const struct st_dp_endpoint_t *ep, uint64_t now_ms);
/* 1 when no endpoint of svc is up or lagging-only: choices are made in panic (pathway_service_panic). */
int dp_health_service_panic(const struct st_dp_service_t *svc, uint64_t now_ms);
/* Endpoints of svc that are up (for heartbeats: "how many each dataplane considers up"). */
size_t dp_health_count_up(const struct st_dp_service_t *svc, uint64_t now_ms);

/* For the balancer: may ep take a new try? 2 = in rotation, 1 = lagging only, 0 = out (panic
 * only), -1 = never (drained). A half-open endpoint whose trial is free answers 2 and sets
 * *half_open; the caller then calls dp_health_take_trial. */
int dp_health_rank(struct st_dp_endpoint_t *ep, uint64_t now_ms, int *half_open);
/* Takes ep's one half-open trial; 0 when another thread took it first. */
int dp_health_take_trial(struct st_dp_endpoint_t *ep, uint64_t now_ms);

#endif
