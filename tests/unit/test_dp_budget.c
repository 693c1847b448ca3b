/* dp_budget: the bound on retries + hedges (concurrency and totals), alone and under threads that race
 * for its last unit. */
#include <pthread.h>
#include <sched.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include "dp_budget.h"

static void test_allowed(void **state)
{
    assert_int_equal(dp_budget_allowed(0, 20, 3), 3);    /* min_concurrent always */
    assert_int_equal(dp_budget_allowed(14, 20, 3), 3);   /* 2.8 rounds down, min wins */
    assert_int_equal(dp_budget_allowed(100, 20, 3), 20); /* the share wins */
    assert_int_equal(dp_budget_allowed(101, 20, 3), 20);
    assert_int_equal(dp_budget_allowed(100, 0, 0), 0); /* nothing extra at all */
    assert_int_equal(dp_budget_allowed(100, 100, 0), 100);
    assert_int_equal(dp_budget_allowed(UINT32_MAX, 100, 0), UINT32_MAX); /* no overflow */
}

/* A balance no test of the concurrency bound (a) can spend: (b) out of the way. */
static void fund(dp_budget_t *b)
{
    atomic_store(&b->tokens, (int64_t)1 << 50);
}

static void test_single_thread(void **state)
{
    dp_budget_t b;
    dp_budget_init(&b, 3);
    fund(&b);
    /* no request active: min_concurrent extras, then refusals, counted */
    for (int i = 0; i < 3; i++)
        assert_int_equal(dp_budget_try_acquire(&b, 20, 3), 1);
    assert_int_equal(dp_budget_try_acquire(&b, 20, 3), 0);
    assert_int_equal(atomic_load(&b.exhausted), 1);
    dp_budget_release(&b);
    assert_int_equal(dp_budget_try_acquire(&b, 20, 3), 1);
    for (int i = 0; i < 3; i++)
        dp_budget_release(&b);
    assert_int_equal(atomic_load(&b.extra), 0);
    /* 100 active at 20%: 20 extras */
    for (int i = 0; i < 100; i++)
        dp_budget_enter(&b);
    int granted = 0;
    while (dp_budget_try_acquire(&b, 20, 3))
        granted++;
    assert_int_equal(granted, 20);
    /* a reload to 50% applies at the next call */
    while (dp_budget_try_acquire(&b, 50, 3))
        granted++;
    assert_int_equal(granted, 50);
    /* a lowered share refuses until enough extras end */
    assert_int_equal(dp_budget_try_acquire(&b, 10, 3), 0);
    for (int i = 0; i < 40; i++)
        dp_budget_release(&b);
    assert_int_equal(dp_budget_try_acquire(&b, 10, 3), 0); /* 10 in flight, 10 allowed */
    dp_budget_release(&b);
    assert_int_equal(dp_budget_try_acquire(&b, 10, 3), 1);
    /* percent 0, min 0: never */
    dp_budget_t none;
    dp_budget_init(&none, 0);
    fund(&none);
    dp_budget_enter(&none);
    assert_int_equal(dp_budget_try_acquire(&none, 0, 0), 0);
    dp_budget_leave(&none);
    assert_int_equal(atomic_load(&none.active), 0);
}

/* --- threads ---------------------------------------------------------------------------- */

#define THREADS 8
#define ROUNDS 100000

typedef struct st_race_t {
    dp_budget_t budget;
    uint32_t percent, min_concurrent;
    _Atomic int go;
    _Atomic int stop;
    _Atomic uint32_t max_seen; /* the largest `extra` any thread saw right after being granted */
    _Atomic uint64_t granted;
    _Atomic int violations;
} race_t;

static void note_max(_Atomic uint32_t *max, uint32_t v)
{
    uint32_t cur = atomic_load(max);
    while (v > cur && !atomic_compare_exchange_weak(max, &cur, v))
        ;
}

/* fixed `active`: every thread races for the last units; none may ever hold more than the bound */
static void *racer(void *arg)
{
    race_t *r = arg;
    uint32_t bound = dp_budget_allowed(atomic_load(&r->budget.active), r->percent, r->min_concurrent);
    while (!atomic_load(&r->go))
        ;
    for (int i = 0; i < ROUNDS; i++) {
        if (!dp_budget_try_acquire(&r->budget, r->percent, r->min_concurrent))
            continue;
        atomic_fetch_add(&r->granted, 1);
        uint32_t now = atomic_load(&r->budget.extra);
        note_max(&r->max_seen, now);
        if (now > bound)
            atomic_fetch_add(&r->violations, 1);
        if (i % 16 == 0)
            sched_yield(); /* give up the core while holding: other threads then race for the rest */
        dp_budget_release(&r->budget);
    }
    return NULL;
}

static void test_threads_fixed_active(void **state)
{
    static const uint32_t actives[] = {0, 10, 40, 200};
    for (size_t k = 0; k < sizeof(actives) / sizeof(actives[0]); k++) {
        race_t r;
        memset(&r, 0, sizeof(r));
        dp_budget_init(&r.budget, 3);
        fund(&r.budget);
        r.percent = 20;
        r.min_concurrent = 3;
        for (uint32_t i = 0; i < actives[k]; i++)
            dp_budget_enter(&r.budget);
        uint32_t bound = dp_budget_allowed(actives[k], 20, 3);
        pthread_t t[THREADS];
        for (int i = 0; i < THREADS; i++)
            assert_int_equal(pthread_create(&t[i], NULL, racer, &r), 0);
        atomic_store(&r.go, 1);
        for (int i = 0; i < THREADS; i++)
            pthread_join(t[i], NULL);
        assert_int_equal(atomic_load(&r.violations), 0);
        assert_true(atomic_load(&r.max_seen) <= bound);
        /* the race was real: more threads than units, so some were refused */
        if (bound < THREADS)
            assert_true(atomic_load(&r.budget.exhausted) > 0);
        assert_true(atomic_load(&r.granted) > 0);
        assert_int_equal(atomic_load(&r.budget.extra), 0); /* every grant was released */
        printf("active %u: bound %u, max in flight seen %u, granted %llu, refused %llu\n", actives[k], bound,
               atomic_load(&r.max_seen), (unsigned long long)atomic_load(&r.granted),
               (unsigned long long)atomic_load(&r.budget.exhausted));
    }
}

/* requests keep arriving (active only grows) while extras race: at every moment
 * extra <= allowed(active), checked by a watcher that reads extra first, then active */
static void *arriver(void *arg)
{
    race_t *r = arg;
    while (!atomic_load(&r->go))
        ;
    for (int i = 0; i < 2000; i++) {
        dp_budget_enter(&r->budget);
        if (i % 20 == 0)
            usleep(1000); /* let the holders run (2 cores, 6 threads): ~100 ms in all */
    }
    atomic_store(&r->stop, 1);
    return NULL;
}

static void *holder(void *arg)
{
    race_t *r = arg;
    while (!atomic_load(&r->go))
        ;
    while (!atomic_load(&r->stop)) {
        if (dp_budget_try_acquire(&r->budget, r->percent, r->min_concurrent)) {
            atomic_fetch_add(&r->granted, 1);
            for (volatile int spin = 0; spin < 50; spin++)
                ;
            dp_budget_release(&r->budget);
        }
    }
    return NULL;
}

static void *watcher(void *arg)
{
    race_t *r = arg;
    while (!atomic_load(&r->go))
        ;
    while (!atomic_load(&r->stop)) {
        uint32_t extra = atomic_load(&r->budget.extra);
        uint32_t active = atomic_load(&r->budget.active); /* read after: never smaller than at `extra`'s time */
        note_max(&r->max_seen, extra);
        if (extra > dp_budget_allowed(active, r->percent, r->min_concurrent))
            atomic_fetch_add(&r->violations, 1);
    }
    return NULL;
}

static void test_threads_growing_active(void **state)
{
    race_t r;
    memset(&r, 0, sizeof(r));
    dp_budget_init(&r.budget, 1);
    fund(&r.budget);
    r.percent = 5;
    r.min_concurrent = 1;
    pthread_t t[THREADS];
    int n = 0;
    assert_int_equal(pthread_create(&t[n++], NULL, arriver, &r), 0);
    assert_int_equal(pthread_create(&t[n++], NULL, watcher, &r), 0);
    while (n < 6)
        assert_int_equal(pthread_create(&t[n++], NULL, holder, &r), 0);
    atomic_store(&r.go, 1);
    for (int i = 0; i < n; i++)
        pthread_join(t[i], NULL);
    assert_int_equal(atomic_load(&r.violations), 0);
    assert_true(atomic_load(&r.granted) > 0);
    assert_int_equal(atomic_load(&r.budget.extra), 0);
    assert_int_equal(atomic_load(&r.budget.active), 2000);
    printf("growing active: granted %llu, refused %llu, max in flight seen %u\n", (unsigned long long)atomic_load(&r.granted),
           (unsigned long long)atomic_load(&r.budget.exhausted), atomic_load(&r.max_seen));
}

/* (b): the balance starts at min_concurrent, each request deposits percent/100, each extra spends
 * one, the cap is min_concurrent + percent. Requests that never overlap get no more than that. */
static void test_tokens(void **state)
{
    dp_budget_t b;
    dp_budget_init(&b, 3);
    assert_int_equal(atomic_load(&b.tokens), 3000);
    /* nothing in flight, one request at a time: 3 at first, then one per 5 requests (20%) */
    int granted = 0;
    for (int i = 0; i < 1000; i++) {
        dp_budget_deposit(&b, 20, 3);
        dp_budget_enter(&b);
        if (dp_budget_try_acquire(&b, 20, 3)) {
            granted++;
            dp_budget_release(&b);
        }
        dp_budget_leave(&b);
    }
    assert_int_equal(granted, 3 + 1000 * 20 / 100);
    assert_int_equal(atomic_load(&b.exhausted), 1000 - granted);
    /* the cap: 10,000 quiet requests save up min_concurrent + percent tokens, no more */
    for (int i = 0; i < 10000; i++)
        dp_budget_deposit(&b, 20, 3);
    assert_int_equal(atomic_load(&b.tokens), 23000);
    /* a refusal by (b) leaves (a)'s count as it was */
    atomic_store(&b.tokens, 999);
    assert_int_equal(dp_budget_try_acquire(&b, 20, 3), 0);
    assert_int_equal(atomic_load(&b.extra), 0);
    assert_int_equal(atomic_load(&b.tokens), 999);
    /* percent 0: only the starting min_concurrent, ever */
    dp_budget_t z;
    dp_budget_init(&z, 2);
    granted = 0;
    for (int i = 0; i < 100; i++) {
        dp_budget_deposit(&z, 0, 2);
        if (dp_budget_try_acquire(&z, 0, 2)) {
            granted++;
            dp_budget_release(&z);
        }
    }
    assert_int_equal(granted, 2);
}

/* threads that each run requests (deposit, then one extra wanted): the grants in all never pass
 * min_concurrent + requests * percent / 100 */
static void *requester(void *arg)
{
    race_t *r = arg;
    while (!atomic_load(&r->go))
        ;
    for (int i = 0; i < ROUNDS / 10; i++) {
        dp_budget_deposit(&r->budget, r->percent, r->min_concurrent);
        dp_budget_enter(&r->budget);
        if (dp_budget_try_acquire(&r->budget, r->percent, r->min_concurrent)) {
            atomic_fetch_add(&r->granted, 1);
            dp_budget_release(&r->budget);
        }
        dp_budget_leave(&r->budget);
    }
    return NULL;
}

static void test_threads_tokens(void **state)
{
    race_t r;
    memset(&r, 0, sizeof(r));
    r.percent = 20;
    r.min_concurrent = 3;
    dp_budget_init(&r.budget, 3);
    pthread_t t[THREADS];
    for (int i = 0; i < THREADS; i++)
        assert_int_equal(pthread_create(&t[i], NULL, requester, &r), 0);
    atomic_store(&r.go, 1);
    for (int i = 0; i < THREADS; i++)
        pthread_join(t[i], NULL);
    uint64_t requests = (uint64_t)THREADS * (ROUNDS / 10);
    uint64_t bound = 3 + requests * 20 / 100;
    printf("tokens: %llu requests, %llu extras granted, bound %llu\n", (unsigned long long)requests,
           (unsigned long long)atomic_load(&r.granted), (unsigned long long)bound);
    assert_true(atomic_load(&r.granted) <= bound);
    assert_true(atomic_load(&r.granted) > 0);
    assert_int_equal(atomic_load(&r.budget.extra), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_allowed),
        cmocka_unit_test(test_single_thread),
        cmocka_unit_test(test_threads_fixed_active),
        cmocka_unit_test(test_threads_growing_active),
        cmocka_unit_test(test_tokens),
        cmocka_unit_test(test_threads_tokens),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
