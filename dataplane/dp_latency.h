/*
 * dp_latency: a cheap streaming estimate of one service's attempt latency, for the hedge delay
 * (`hedge.delay: p95`). A log-scale histogram of recent durations: 8 buckets per power of two
 * (each at most 1/8 of its lower bound wide, so a percentile is read within 12.5%), from 1 us to
 * 2^26 us (about 67 s; longer durations count in the last bucket). Recording is one atomic
 * increment; every `window` recordings all buckets are halved, so the estimate follows a change
 * of latency and old samples fade (their weight halves every window). A query walks the buckets.
 *
 * Shared by every worker thread; no lock, no allocation. Concurrent recordings and halvings may
 * lose or keep a sample at the edge of a halving, which an estimate can afford.
 */
#ifndef PATHWAY_DP_LATENCY_H
#define PATHWAY_DP_LATENCY_H

#include <stdatomic.h>
#include <stdint.h>
#include "cfg.h"

#define DP_LATENCY_SUB_BITS 3 /* 2^3 buckets per power of two */
#define DP_LATENCY_MAX_EXP 26 /* durations up to 2^27 - 1 us */
#define DP_LATENCY_BUCKETS ((DP_LATENCY_MAX_EXP - DP_LATENCY_SUB_BITS + 2) << DP_LATENCY_SUB_BITS)
#define DP_LATENCY_WINDOW 1024    /* default: halve every 1024 recordings */
#define DP_LATENCY_MIN_SAMPLES 64 /* fewer recorded: no estimate yet */

typedef struct st_dp_latency_t {
    _Atomic uint32_t _buckets[DP_LATENCY_BUCKETS]; /* recent durations per bucket, halved every window */
    _Atomic uint32_t _since_halving;               /* recordings since the last halving */
    atomic_flag _halving;                          /* set while one thread halves */
    uint32_t _window;                              /* recordings between halvings */
} dp_latency_t;

/* window: recordings between halvings (0 = DP_LATENCY_WINDOW); about 2 x window recent samples
 * carry the estimate. */
void dp_latency_init(dp_latency_t *l, uint32_t window);

/* Records one duration in microseconds. O(1), amortized: the recording that completes a window
 * halves the buckets. */
void dp_latency_record(dp_latency_t *l, uint64_t usec);

/* The pct-th percentile (1..100) of the recent durations in microseconds: the upper end of the
 * bucket that holds it, so the true value is at most one bucket's width below. 0 when fewer than
 * min_samples durations weigh in. O(buckets). */
uint64_t dp_latency_percentile(dp_latency_t *l, unsigned pct, uint32_t min_samples);

/* The hedge delay for now in milliseconds, 0 = do not hedge: off (delay 0s or max_extra 0); a
 * fixed delay as given; a percentile delay from the estimate, never below min_delay, and 0 while
 * the estimate has fewer than DP_LATENCY_MIN_SAMPLES (no hedging on a guess). */
uint64_t dp_latency_hedge_delay_ms(dp_latency_t *l, const cfg_hedge_t *h);

/* Bucket arithmetic, for tests: the bucket of a duration, and its bounds [lower, upper). */
unsigned dp_latency_bucket_of(uint64_t usec);
uint64_t dp_latency_bucket_lower(unsigned idx);
uint64_t dp_latency_bucket_upper(unsigned idx);

#endif
