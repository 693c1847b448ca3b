/*
 * dp_limiter: a counting semaphore on concurrent upstream requests with a bounded FIFO queue,
 * shared by every worker thread (DESIGN §3 "Limiter"). Waiters live in the waiting request's own
 * memory; the limiter never allocates, so overload cannot grow memory beyond max_queue waiters.
 */
#ifndef PATHWAY_DP_LIMITER_H
#define PATHWAY_DP_LIMITER_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include "h2o/linklist.h"

typedef struct st_dp_limiter_waiter_t dp_limiter_waiter_t;

/* Called by the thread that releases a permit, with the limiter's lock held, when `w` reaches the
 * head of the queue and is handed the permit. It must only hand `w` to its owning thread (queue
 * it and wake that thread); it must not call back into the limiter. */
typedef void (*dp_limiter_grant_cb)(dp_limiter_waiter_t *w);

enum { DP_WAITER_IDLE = 0, DP_WAITER_QUEUED, DP_WAITER_GRANTED };

struct st_dp_limiter_waiter_t {
    h2o_linklist_t _link;         /* in the limiter's queue while queued */
    int _state;                   /* DP_WAITER_*; changed under the limiter's lock */
    dp_limiter_grant_cb on_grant; /* set by the owner before dp_limiter_acquire */
};

typedef struct st_dp_limiter_t {
    pthread_mutex_t _mutex;
    uint32_t _max;       /* permits in force: the smaller of _cap and _adaptive (0 = unlimited) */
    uint32_t _cap;       /* the configured static bound; 0 = none */
    uint32_t _adaptive;  /* the adaptive limit (dp_adaptive); 0 = off */
    uint32_t _max_queue; /* waiters allowed; beyond: rejected */
    uint32_t _inflight;  /* permits held */
    uint32_t _queued;    /* waiters in _queue */
    uint32_t _peak;      /* most permits held at once since the last dp_limiter_take_window */
    int _waited;         /* an acquisition queued or was refused since the last dp_limiter_take_window */
    h2o_linklist_t _queue;
    _Atomic uint64_t rejected;          /* acquisitions refused because the queue was full */
    _Atomic uint64_t timeouts;          /* waiters that gave up after queue_timeout (dp_limiter_timed_out) */
    _Atomic uint64_t rejected_adaptive; /* either of those while the adaptive limit was the binding one */
    _Atomic uint64_t admitted;          /* permits handed out, at once or from the queue */
} dp_limiter_t;

typedef enum en_dp_limiter_result_t {
    DP_LIMITER_ACQUIRED = 0, /* the caller holds a permit */
    DP_LIMITER_QUEUED,       /* w waits; on_grant will be called once */
    DP_LIMITER_FULL,         /* the queue is full; nothing held */
} dp_limiter_result_t;

void dp_limiter_init(dp_limiter_t *lim, uint32_t max, uint32_t max_queue);
void dp_limiter_dispose(dp_limiter_t *lim);
/* Changes the bounds (`max`: the static bound, 0 = none); a raised max admits waiters at once
 * (their on_grant runs here). Waiters beyond a lowered max_queue stay queued (they will time out
 * or be served). */
void dp_limiter_set(dp_limiter_t *lim, uint32_t max, uint32_t max_queue);
/* Sets the adaptive limit (0 = off): permits in force are min(static bound, adaptive limit).
 * Raised, it admits waiters at once, as dp_limiter_set does; lowered, permits held are kept and
 * no new one is handed out until fewer are held. */
void dp_limiter_set_adaptive(dp_limiter_t *lim, uint32_t limit);
/* The adaptive window's view: the most permits held at once and whether anything waited since the
 * last call; both start again from now. */
void dp_limiter_take_window(dp_limiter_t *lim, uint32_t *peak, int *waited);
/* A waiter gave up after queue_timeout (the owner saw it): counted as a timeout, or as an adaptive
 * refusal when the adaptive limit is the binding one. */
void dp_limiter_timed_out(dp_limiter_t *lim);
dp_limiter_result_t dp_limiter_acquire(dp_limiter_t *lim, dp_limiter_waiter_t *w);
/* Returns a permit: the head waiter gets it (on_grant), else the count drops. */
void dp_limiter_release(dp_limiter_t *lim);
/* Takes `w` out of the queue at once. Returns 0 when it was queued (nothing held), 1 when it had
 * been granted already (the caller now holds a permit and must release it), -1 when idle. */
int dp_limiter_cancel(dp_limiter_t *lim, dp_limiter_waiter_t *w);
/* A consistent snapshot of the counts; `max` is the configured static bound (0 = none). */
void dp_limiter_stats(dp_limiter_t *lim, uint32_t *max, uint32_t *inflight, uint32_t *queued);

#endif
