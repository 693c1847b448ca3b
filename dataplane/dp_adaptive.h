/*
 * dp_adaptive: adaptive concurrency (issue 13). A per-service limit on concurrent upstream requests
 * that follows the service's capacity: it grows while the upstream answers as fast as it does
 * unloaded, and shrinks at once to the concurrency the upstream serves without queueing when its
 * latency grows past `tolerance` times its baseline. The service's limiter (dp_limiter) enforces
 * the limit; requests beyond it wait in the limiter's queue.
 *
 * Samples are successful upstream attempts (send to complete answer), each judged against the
 * baseline of its own JSON-RPC method, so a few slow methods do not shrink the limit for cheap
 * ones. A method's baseline is the lowest window mean of its latency over the last
 * DP_ADAPTIVE_EPOCH..2*DP_ADAPTIVE_EPOCH windows (a long-window minimum that can rise again). It
 * is re-measured by deep cuts (20% below the estimated capacity, once per epoch, repeated while
 * they find a queue), never by pinning the limit to its minimum. The algorithm and its equations
 * are in docs/dataplane.md ("Adaptive concurrency").
 *
 * Threads: dp_adaptive_sample runs on any worker (lock-free adds into the method's slot); the
 * window is closed by the one thread that first sees it elapsed and wins a try-lock
 * (dp_adaptive_sample returns 1, the caller calls dp_adaptive_close). dp_adaptive_configure runs on
 * the main thread when a generation is applied. No allocation: the slots are fixed.
 */
#ifndef PATHWAY_DP_ADAPTIVE_H
#define PATHWAY_DP_ADAPTIVE_H

#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include "cfg.h"

#define DP_ADAPTIVE_METHODS 64      /* method classes kept per service; once full, new methods share slot 0 */
#define DP_ADAPTIVE_EPOCH 10        /* windows per baseline epoch: the baseline spans the last 10 to 20 windows */
#define DP_ADAPTIVE_MIN_SAMPLES 4   /* a window mean from fewer samples does not lower an existing baseline */
#define DP_ADAPTIVE_MAX_CUT 4       /* one window cuts the limit to a quarter at most */
#define DP_ADAPTIVE_REBASE_GAIN 90  /* percent: a cut followed by a ratio still >= 90% of the last one did not help */
#define DP_ADAPTIVE_REBASE_RISE 125 /* percent: ... and at most 125% of it (higher: the capacity fell meanwhile) */
#define DP_ADAPTIVE_DEEP_CUT 80     /* percent: a re-measuring cut goes this far below the estimated capacity */

/* One method class of a service. `key`, `count` and `sum_ns` are written by any worker; the rest
 * only under the window's lock. */
typedef struct st_dp_adaptive_slot_t {
    _Atomic uint64_t key;    /* dp_adaptive_method_key of the method; 0 = free */
    _Atomic uint64_t count;  /* samples in the current window */
    _Atomic uint64_t sum_ns; /* their latencies' sum */
    uint64_t base_cur;       /* lowest window mean of this epoch (ns); 0 = none yet */
    uint64_t base_prev;      /* lowest window mean of the previous epoch (ns); 0 = none */
    uint64_t last_mean;      /* mean of the last window with samples (ns) */
    uint64_t probe_base;     /* its baseline when the last deep cut was made (ns) */
} dp_adaptive_slot_t;

/* What /stats and /metrics show; a snapshot. */
typedef struct st_dp_adaptive_stats_t {
    int enabled;
    uint32_t limit;       /* the adaptive limit (0 when off) */
    uint64_t baseline_ns; /* last window: the sample-weighted baseline of the methods it saw */
    uint64_t sample_ns;   /* last window: the mean latency of its samples */
    uint32_t ratio_milli; /* last window: sample / baseline (the gradient's inverse), in thousandths */
    uint64_t windows;     /* windows closed since switched on */
    uint64_t samples;     /* samples since switched on */
} dp_adaptive_stats_t;

typedef struct st_dp_adaptive_t {
    pthread_mutex_t _mutex;         /* closing a window (try-lock), configure */
    _Atomic int enabled;            /* limiter.adaptive.enabled of the newest generation */
    _Atomic uint32_t limit;         /* the current limit; 0 while off */
    _Atomic uint64_t window_end_ns; /* when the current window ends (CLOCK_MONOTONIC ns) */
    _Atomic uint64_t baseline_ns;   /* published at each close, see dp_adaptive_stats_t */
    _Atomic uint64_t sample_ns;
    _Atomic uint32_t ratio_milli;
    _Atomic uint64_t windows;
    _Atomic uint64_t samples;
    /* under _mutex */
    cfg_adaptive_t _cfg;  /* the settings in force */
    uint32_t _cap;        /* limiter.max_concurrent (0 = none): the limit never exceeds it */
    double _limit;        /* the limit with its fraction (growth steps are fractional) */
    uint32_t _epoch_left; /* windows until the baselines' epoch turns */
    int _last_cut;        /* the last window cut the limit */
    double _last_ratio;   /* the ratio that made that cut */
    double _before_cut;   /* the limit before that cut (restored when it did not help) */
    uint32_t _since_deep; /* windows since the last deep (re-measuring) cut */
    int _deep_pending;    /* 2: a deep cut was made, the next window is held; 1: judge it now */
    int _deep_again;      /* the last deep cut lowered latency or the baseline: cut deep again */
    double _deep_sample;  /* sample / baseline when that deep cut was made */
    double _deep_share;   /* the limit it set / the concurrency it cut from */
    dp_adaptive_slot_t _slots[DP_ADAPTIVE_METHODS];
} dp_adaptive_t;

void dp_adaptive_init(dp_adaptive_t *a);
void dp_adaptive_dispose(dp_adaptive_t *a);

/* Applies settings (main thread, on each generation): switched on, the limit starts at
 * initial_limit with no baselines; switched off, everything is forgotten; kept on, the limit is
 * clamped to the new bounds and the window length applies from the next window. `max_concurrent`
 * is the service's static cap (0 = none). Returns the limit the service's limiter must enforce,
 * 0 when off. */
uint32_t dp_adaptive_configure(dp_adaptive_t *a, const cfg_adaptive_t *c, uint32_t max_concurrent, uint64_t now_ns);

static inline int dp_adaptive_on(dp_adaptive_t *a)
{
    return atomic_load_explicit(&a->enabled, memory_order_relaxed);
}

/* The method class of a JSON-RPC request body: a hash of the first "method" string value (the
 * raw bytes between its quotes), marked as a batch when the body is an array. Never 0. A body
 * without one gets the key of the empty method. No allocation; reads only up to that string. */
uint64_t dp_adaptive_method_key(const char *body, size_t len);

/* Records one successful attempt of method class `key` that took `latency_ns`. Returns 1 when the
 * window has ended and this caller won the right to close it: it must then call dp_adaptive_close
 * (soon, without blocking). Any thread. */
int dp_adaptive_sample(dp_adaptive_t *a, uint64_t key, uint64_t latency_ns, uint64_t now_ns);

/* Closes the window that dp_adaptive_sample said is over: computes the new limit from the window's
 * samples, `peak` (the most permits the service's limiter held at once during the window) and
 * `saturated` (a request had to wait, or peak reached the limit). Returns the limit the service's
 * limiter must enforce; the caller sets it and then calls dp_adaptive_close_end, so that settings
 * applied meanwhile (dp_adaptive_configure waits) are never overwritten by an older limit. */
uint32_t dp_adaptive_close(dp_adaptive_t *a, uint32_t peak, int saturated, uint64_t now_ns);
/* Gives the close right back. */
void dp_adaptive_close_end(dp_adaptive_t *a);

void dp_adaptive_stats(dp_adaptive_t *a, dp_adaptive_stats_t *out);

/* The dataplane's use: a successful attempt of service `sh` for request `body`, sent at `sent_ns`
 * (CLOCK_MONOTONIC), answered now. Samples it, and when the window is over closes it and hands the
 * new limit to the service's limiter. Any worker. */
struct st_dp_svcshared_t;
void dp_adaptive_record_attempt(struct st_dp_svcshared_t *sh, const char *body, size_t len, uint64_t sent_ns);

/* CLOCK_MONOTONIC in ns (what samples and windows are timed with). */
uint64_t dp_adaptive_now_ns(void);

#endif
