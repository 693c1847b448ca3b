#include "dp_limiter.h"
#include <stddef.h>

#define WAITER_OF(l) ((dp_limiter_waiter_t *)((char *)(l)-offsetof(dp_limiter_waiter_t, _link)))

void dp_limiter_init(dp_limiter_t *lim, uint32_t max, uint32_t max_queue)
{
    pthread_mutex_init(&lim->_mutex, NULL);
    lim->_max = max;
    lim->_cap = max;
    lim->_adaptive = 0;
    lim->_max_queue = max_queue;
    lim->_inflight = 0;
    lim->_queued = 0;
    lim->_peak = 0;
    lim->_waited = 0;
    h2o_linklist_init_anchor(&lim->_queue);
    atomic_init(&lim->rejected, 0);
    atomic_init(&lim->timeouts, 0);
    atomic_init(&lim->rejected_adaptive, 0);
    atomic_init(&lim->admitted, 0);
}

void dp_limiter_dispose(dp_limiter_t *lim)
{
    pthread_mutex_destroy(&lim->_mutex);
}

/* Hands permits to waiters while there is room. Caller holds the lock. */
static void grant_locked(dp_limiter_t *lim)
{
    while (!h2o_linklist_is_empty(&lim->_queue) && (lim->_max == 0 || lim->_inflight < lim->_max)) {
        dp_limiter_waiter_t *w = WAITER_OF(lim->_queue.next);
        h2o_linklist_unlink(&w->_link);
        lim->_queued--;
        if (++lim->_inflight > lim->_peak)
            lim->_peak = lim->_inflight;
        w->_state = DP_WAITER_GRANTED;
        atomic_fetch_add_explicit(&lim->admitted, 1, memory_order_relaxed);
        w->on_grant(w);
    }
}

/* The adaptive limit binds: it is on and below the static bound. Caller holds the lock. */
static int adaptive_binds_locked(const dp_limiter_t *lim)
{
    return lim->_adaptive != 0 && (lim->_cap == 0 || lim->_adaptive < lim->_cap);
}

static void update_max_locked(dp_limiter_t *lim)
{
    lim->_max = adaptive_binds_locked(lim) ? lim->_adaptive : lim->_cap;
    grant_locked(lim);
}

void dp_limiter_set(dp_limiter_t *lim, uint32_t max, uint32_t max_queue)
{
    pthread_mutex_lock(&lim->_mutex);
    lim->_cap = max;
    lim->_max_queue = max_queue;
    update_max_locked(lim);
    pthread_mutex_unlock(&lim->_mutex);
}

void dp_limiter_set_adaptive(dp_limiter_t *lim, uint32_t limit)
{
    pthread_mutex_lock(&lim->_mutex);
    lim->_adaptive = limit;
    update_max_locked(lim);
    pthread_mutex_unlock(&lim->_mutex);
}

void dp_limiter_take_window(dp_limiter_t *lim, uint32_t *peak, int *waited)
{
    pthread_mutex_lock(&lim->_mutex);
    *peak = lim->_peak;
    *waited = lim->_waited || lim->_queued != 0;
    lim->_peak = lim->_inflight;
    lim->_waited = 0;
    pthread_mutex_unlock(&lim->_mutex);
}

void dp_limiter_timed_out(dp_limiter_t *lim)
{
    pthread_mutex_lock(&lim->_mutex);
    int adaptive = adaptive_binds_locked(lim);
    pthread_mutex_unlock(&lim->_mutex);
    atomic_fetch_add_explicit(adaptive ? &lim->rejected_adaptive : &lim->timeouts, 1, memory_order_relaxed);
}

dp_limiter_result_t dp_limiter_acquire(dp_limiter_t *lim, dp_limiter_waiter_t *w)
{
    dp_limiter_result_t ret;
    pthread_mutex_lock(&lim->_mutex);
    /* FIFO: a newcomer never overtakes a waiter, even when a permit is free this instant */
    if ((lim->_max == 0 || lim->_inflight < lim->_max) && h2o_linklist_is_empty(&lim->_queue)) {
        if (++lim->_inflight > lim->_peak)
            lim->_peak = lim->_inflight;
        w->_state = DP_WAITER_IDLE;
        atomic_fetch_add_explicit(&lim->admitted, 1, memory_order_relaxed);
        ret = DP_LIMITER_ACQUIRED;
    } else if (lim->_queued < lim->_max_queue) {
        h2o_linklist_insert(&lim->_queue, &w->_link);
        lim->_queued++;
        lim->_waited = 1;
        w->_state = DP_WAITER_QUEUED;
        ret = DP_LIMITER_QUEUED;
    } else {
        lim->_waited = 1;
        atomic_fetch_add_explicit(adaptive_binds_locked(lim) ? &lim->rejected_adaptive : &lim->rejected, 1, memory_order_relaxed);
        ret = DP_LIMITER_FULL;
    }
    pthread_mutex_unlock(&lim->_mutex);
    return ret;
}

void dp_limiter_release(dp_limiter_t *lim)
{
    pthread_mutex_lock(&lim->_mutex);
    if (lim->_inflight != 0)
        lim->_inflight--;
    grant_locked(lim);
    pthread_mutex_unlock(&lim->_mutex);
}

int dp_limiter_cancel(dp_limiter_t *lim, dp_limiter_waiter_t *w)
{
    int ret;
    pthread_mutex_lock(&lim->_mutex);
    switch (w->_state) {
    case DP_WAITER_QUEUED:
        h2o_linklist_unlink(&w->_link);
        lim->_queued--;
        ret = 0;
        break;
    case DP_WAITER_GRANTED:
        ret = 1;
        break;
    default:
        ret = -1;
        break;
    }
    w->_state = DP_WAITER_IDLE;
    pthread_mutex_unlock(&lim->_mutex);
    return ret;
}

void dp_limiter_stats(dp_limiter_t *lim, uint32_t *max, uint32_t *inflight, uint32_t *queued)
{
    pthread_mutex_lock(&lim->_mutex);
    *max = lim->_cap;
    *inflight = lim->_inflight;
    *queued = lim->_queued;
    pthread_mutex_unlock(&lim->_mutex);
}
