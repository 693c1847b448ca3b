/* dp_limiter: permits, FIFO order, bounded queue, cancel, raised bounds. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <pthread.h>
#include "dp_limiter.h"

typedef struct {
    dp_limiter_waiter_t w;
    int granted_order;
} waiter_t;

static int grant_seq;

static void on_grant(dp_limiter_waiter_t *w)
{
    ((waiter_t *)w)->granted_order = ++grant_seq;
}

static void init_waiters(waiter_t *ws, size_t n)
{
    for (size_t i = 0; i != n; ++i) {
        ws[i].w.on_grant = on_grant;
        ws[i].w._state = DP_WAITER_IDLE;
        ws[i].granted_order = 0;
    }
}

static void test_fifo_and_bound(void **state)
{
    dp_limiter_t lim;
    waiter_t ws[6];
    init_waiters(ws, 6);
    grant_seq = 0;
    dp_limiter_init(&lim, 2, 3);
    assert_int_equal(dp_limiter_acquire(&lim, &ws[0].w), DP_LIMITER_ACQUIRED);
    assert_int_equal(dp_limiter_acquire(&lim, &ws[1].w), DP_LIMITER_ACQUIRED);
    assert_int_equal(dp_limiter_acquire(&lim, &ws[2].w), DP_LIMITER_QUEUED);
    assert_int_equal(dp_limiter_acquire(&lim, &ws[3].w), DP_LIMITER_QUEUED);
    assert_int_equal(dp_limiter_acquire(&lim, &ws[4].w), DP_LIMITER_QUEUED);
    assert_int_equal(dp_limiter_acquire(&lim, &ws[5].w), DP_LIMITER_FULL);
    assert_int_equal(lim.rejected, 1);
    uint32_t max, in, q;
    dp_limiter_stats(&lim, &max, &in, &q);
    assert_int_equal(in, 2);
    assert_int_equal(q, 3);
    dp_limiter_release(&lim);
    assert_int_equal(ws[2].granted_order, 1); /* the oldest waiter first */
    assert_int_equal(ws[3].granted_order, 0);
    dp_limiter_release(&lim);
    assert_int_equal(ws[3].granted_order, 2);
    dp_limiter_stats(&lim, &max, &in, &q);
    assert_int_equal(in, 2);
    assert_int_equal(q, 1);
    dp_limiter_dispose(&lim);
}

static void test_cancel(void **state)
{
    dp_limiter_t lim;
    waiter_t ws[4];
    init_waiters(ws, 4);
    grant_seq = 0;
    dp_limiter_init(&lim, 1, 10);
    assert_int_equal(dp_limiter_acquire(&lim, &ws[0].w), DP_LIMITER_ACQUIRED);
    assert_int_equal(dp_limiter_acquire(&lim, &ws[1].w), DP_LIMITER_QUEUED);
    assert_int_equal(dp_limiter_acquire(&lim, &ws[2].w), DP_LIMITER_QUEUED);
    assert_int_equal(dp_limiter_cancel(&lim, &ws[1].w), 0); /* left the queue, held nothing */
    assert_int_equal(dp_limiter_cancel(&lim, &ws[1].w), -1);
    dp_limiter_release(&lim);
    assert_int_equal(ws[1].granted_order, 0);
    assert_int_equal(ws[2].granted_order, 1);
    /* granted but not yet seen by its owner: cancel hands the permit back to the caller */
    assert_int_equal(dp_limiter_cancel(&lim, &ws[2].w), 1);
    dp_limiter_release(&lim);
    uint32_t max, in, q;
    dp_limiter_stats(&lim, &max, &in, &q);
    assert_int_equal(in, 0);
    assert_int_equal(q, 0);
    /* a newcomer does not overtake a waiter */
    assert_int_equal(dp_limiter_acquire(&lim, &ws[3].w), DP_LIMITER_ACQUIRED);
    dp_limiter_dispose(&lim);
}

static void test_set_raises_and_unlimited(void **state)
{
    dp_limiter_t lim;
    waiter_t ws[4];
    init_waiters(ws, 4);
    grant_seq = 0;
    dp_limiter_init(&lim, 1, 10);
    assert_int_equal(dp_limiter_acquire(&lim, &ws[0].w), DP_LIMITER_ACQUIRED);
    assert_int_equal(dp_limiter_acquire(&lim, &ws[1].w), DP_LIMITER_QUEUED);
    assert_int_equal(dp_limiter_acquire(&lim, &ws[2].w), DP_LIMITER_QUEUED);
    dp_limiter_set(&lim, 0, 10); /* 0 = unlimited: everyone waiting goes */
    assert_int_equal(ws[1].granted_order, 1);
    assert_int_equal(ws[2].granted_order, 2);
    assert_int_equal(dp_limiter_acquire(&lim, &ws[3].w), DP_LIMITER_ACQUIRED);
    dp_limiter_set(&lim, 1, 0); /* lowered: new arrivals are refused while over the bound */
    waiter_t extra[1];
    init_waiters(extra, 1);
    assert_int_equal(dp_limiter_acquire(&lim, &extra[0].w), DP_LIMITER_FULL);
    dp_limiter_dispose(&lim);
}

static dp_limiter_t shared;
static void noop_grant(dp_limiter_waiter_t *w)
{
}

static void *hammer(void *arg)
{
    for (int i = 0; i < 20000; ++i) {
        dp_limiter_waiter_t w = {.on_grant = noop_grant};
        dp_limiter_result_t r = dp_limiter_acquire(&shared, &w);
        if (r == DP_LIMITER_ACQUIRED)
            dp_limiter_release(&shared);
        else if (r == DP_LIMITER_QUEUED && dp_limiter_cancel(&shared, &w) == 1)
            dp_limiter_release(&shared); /* granted before we left: the permit was ours */
    }
    return NULL;
}

static void test_threads_leave_nothing_behind(void **state)
{
    dp_limiter_init(&shared, 3, 2);
    pthread_t t[4];
    for (int i = 0; i < 4; ++i)
        pthread_create(&t[i], NULL, hammer, NULL);
    for (int i = 0; i < 4; ++i)
        pthread_join(t[i], NULL);
    uint32_t max, in, q;
    dp_limiter_stats(&shared, &max, &in, &q);
    assert_int_equal(in, 0);
    assert_int_equal(q, 0);
    dp_limiter_dispose(&shared);
}

/* The adaptive limit: permits are min(static bound, adaptive limit); raising it admits waiters;
 * refusals while it binds count as adaptive; the window's peak and wait flag. */
static void test_adaptive_limit(void **state)
{
    dp_limiter_t lim;
    waiter_t ws[6];
    init_waiters(ws, 6);
    grant_seq = 0;
    dp_limiter_init(&lim, 0, 2); /* no static bound */
    dp_limiter_set_adaptive(&lim, 2);
    assert_int_equal(dp_limiter_acquire(&lim, &ws[0].w), DP_LIMITER_ACQUIRED);
    assert_int_equal(dp_limiter_acquire(&lim, &ws[1].w), DP_LIMITER_ACQUIRED);
    assert_int_equal(dp_limiter_acquire(&lim, &ws[2].w), DP_LIMITER_QUEUED);
    assert_int_equal(dp_limiter_acquire(&lim, &ws[3].w), DP_LIMITER_QUEUED);
    assert_int_equal(dp_limiter_acquire(&lim, &ws[4].w), DP_LIMITER_FULL);
    assert_int_equal(lim.rejected_adaptive, 1); /* the adaptive limit was the binding one */
    assert_int_equal(lim.rejected, 0);
    dp_limiter_timed_out(&lim);
    assert_int_equal(lim.rejected_adaptive, 2);
    assert_int_equal(lim.timeouts, 0);
    uint32_t peak;
    int waited;
    dp_limiter_take_window(&lim, &peak, &waited);
    assert_int_equal(peak, 2);
    assert_true(waited);
    /* raised: the waiters get their permits at once */
    dp_limiter_set_adaptive(&lim, 4);
    assert_int_equal(ws[2].granted_order, 1);
    assert_int_equal(ws[3].granted_order, 2);
    dp_limiter_take_window(&lim, &peak, &waited);
    assert_int_equal(peak, 4);
    assert_false(waited);
    uint32_t max, in, q;
    dp_limiter_stats(&lim, &max, &in, &q);
    assert_int_equal(max, 0); /* the configured bound, not the adaptive one */
    assert_int_equal(in, 4);
    /* a static bound below the adaptive limit binds: its refusals are the usual ones */
    dp_limiter_set(&lim, 3, 0);
    assert_int_equal(dp_limiter_acquire(&lim, &ws[5].w), DP_LIMITER_FULL);
    assert_int_equal(lim.rejected, 1);
    dp_limiter_timed_out(&lim);
    assert_int_equal(lim.timeouts, 1);
    assert_int_equal(lim.rejected_adaptive, 2);
    /* lowered below what is held: nothing is taken back, nothing new handed out */
    dp_limiter_set(&lim, 0, 2);
    dp_limiter_set_adaptive(&lim, 1);
    assert_int_equal(dp_limiter_acquire(&lim, &ws[5].w), DP_LIMITER_QUEUED);
    for (int i = 0; i != 3; ++i)
        dp_limiter_release(&lim);
    assert_int_equal(ws[5].granted_order, 0);
    dp_limiter_release(&lim);
    assert_int_equal(ws[5].granted_order, 3); /* one held (the last waiter's) of 1 */
    /* off: unbounded again */
    dp_limiter_set_adaptive(&lim, 0);
    assert_int_equal(dp_limiter_acquire(&lim, &ws[0].w), DP_LIMITER_ACQUIRED);
    assert_int_equal(dp_limiter_acquire(&lim, &ws[1].w), DP_LIMITER_ACQUIRED);
    dp_limiter_dispose(&lim);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fifo_and_bound),           cmocka_unit_test(test_cancel),
        cmocka_unit_test(test_set_raises_and_unlimited), cmocka_unit_test(test_threads_leave_nothing_behind),
        cmocka_unit_test(test_adaptive_limit),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
