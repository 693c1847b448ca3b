/*
 * dp_budget: the retry budget of one service, shared by retries and hedges and by every worker
 * thread (issue 10). It counts the service's requests in flight (`active`) and the extra attempts
 * (retries and hedges) in flight (`extra`), and allows another extra only while
 *     extra < max(min_concurrent, active * percent / 100).
 * So a failing pool never sees more than active + that many attempts at once: (1 + percent/100) x
 * the requests in flight, plus min_concurrent. The bound is on concurrency, as Envoy's retry
 * budget is: requests that never overlap each get min_concurrent's allowance.
 *
 * Lock-free (atomics only), no allocation; the settings are arguments, so a reload that changes
 * them takes effect at the next call with nothing to apply. The struct outlives generations (it
 * is keyed by service), so the counts stay true across a swap.
 */
#ifndef PATHWAY_DP_BUDGET_H
#define PATHWAY_DP_BUDGET_H

#include <stdatomic.h>
#include <stdint.h>

typedef struct st_dp_budget_t {
    _Atomic uint32_t active;    /* requests of the service in flight (between enter and leave) */
    _Atomic uint32_t extra;     /* retries + hedges in flight (between a granted try_acquire and release) */
    _Atomic uint64_t exhausted; /* try_acquire refusals: pathway_retry_budget_exhausted_total */
} dp_budget_t;

void dp_budget_init(dp_budget_t *b);

/* A request of the service starts / ends (once each per request, whatever its attempts). */
static inline void dp_budget_enter(dp_budget_t *b)
{
    atomic_fetch_add_explicit(&b->active, 1, memory_order_relaxed);
}
static inline void dp_budget_leave(dp_budget_t *b)
{
    atomic_fetch_sub_explicit(&b->active, 1, memory_order_relaxed);
}

/* The number of extra attempts allowed in flight for `active` requests. */
uint32_t dp_budget_allowed(uint32_t active, uint32_t percent, uint32_t min_concurrent);

/* Takes one extra attempt from the budget: 1 when granted (the caller calls dp_budget_release when
 * that attempt ends, however it ends), 0 when the budget is spent (`exhausted` counts it; the
 * caller returns the failure it has). percent is 0..100. Never blocks. */
int dp_budget_try_acquire(dp_budget_t *b, uint32_t percent, uint32_t min_concurrent);

/* Ends an extra attempt that try_acquire granted. */
static inline void dp_budget_release(dp_budget_t *b)
{
    atomic_fetch_sub_explicit(&b->extra, 1, memory_order_relaxed);
}

#endif
