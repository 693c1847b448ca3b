/*
 * dp_budget: the retry budget of one service, shared by retries and hedges and by every worker
 * thread (issue 10). An extra attempt (a retry or a hedge) is allowed only while BOTH hold:
 *   (a) concurrency: extra attempts in flight < max(min_concurrent, active * percent / 100), where
 *       `active` counts the service's requests in flight (Envoy's retry budget);
 *   (b) totals: a token balance covers it. The balance starts at min_concurrent tokens, gains
 *       percent/100 of a token for every client request (dp_budget_deposit, at the request's start),
 *       loses one token per granted extra, and never holds more than min_concurrent + percent tokens
 *       (what 100 requests deposit), so a quiet service cannot save up a burst.
 * (b) is what bounds a pool where every endpoint fails: over any run of N client requests the
 * upstreams see at most N + N * percent / 100 + min_concurrent attempts, whether the requests
 * overlap or not. (a) alone lets requests that never overlap each take min_concurrent's allowance.
 *
 * Lock-free (atomics and compare-exchange only), no allocation; the settings are arguments, so a
 * reload that changes them takes effect at the next call with nothing to apply. The struct outlives
 * generations (it is keyed by service), so the counts stay true across a swap.
 */
#ifndef PATHWAY_DP_BUDGET_H
#define PATHWAY_DP_BUDGET_H

#include <stdatomic.h>
#include <stdint.h>

#define DP_BUDGET_MILLI 1000 /* token balance unit: a thousandth of an attempt */

typedef struct st_dp_budget_t {
    _Atomic uint32_t active;    /* requests of the service in flight (between enter and leave) */
    _Atomic uint32_t extra;     /* retries + hedges in flight (between a granted try_acquire and release) */
    _Atomic int64_t tokens;     /* the balance in milli-tokens (b) */
    _Atomic uint64_t exhausted; /* try_acquire refusals: pathway_retry_budget_exhausted_total */
} dp_budget_t;

/* The balance starts at min_concurrent tokens. */
void dp_budget_init(dp_budget_t *b, uint32_t min_concurrent);

/* A request of the service starts / ends (once each per request, whatever its attempts). */
static inline void dp_budget_enter(dp_budget_t *b)
{
    atomic_fetch_add_explicit(&b->active, 1, memory_order_relaxed);
}
static inline void dp_budget_leave(dp_budget_t *b)
{
    atomic_fetch_sub_explicit(&b->active, 1, memory_order_relaxed);
}

/* One client request's deposit: percent/100 of a token, the balance capped at min_concurrent +
 * percent tokens. One load when the balance is full. */
void dp_budget_deposit(dp_budget_t *b, uint32_t percent, uint32_t min_concurrent);

/* The number of extra attempts allowed in flight for `active` requests (a). */
uint32_t dp_budget_allowed(uint32_t active, uint32_t percent, uint32_t min_concurrent);

/* Takes one extra attempt from the budget: 1 when granted under (a) and (b) (one token spent; the
 * caller calls dp_budget_release when that attempt ends, however it ends), 0 when the budget is
 * spent (`exhausted` counts it; the caller returns the failure it has). percent is 0..100. Never
 * blocks. */
int dp_budget_try_acquire(dp_budget_t *b, uint32_t percent, uint32_t min_concurrent);

/* Ends an extra attempt that try_acquire granted (its token stays spent). */
static inline void dp_budget_release(dp_budget_t *b)
{
    atomic_fetch_sub_explicit(&b->extra, 1, memory_order_relaxed);
}

#endif
