/* dp_balancer: least outstanding, ties in turn, a just-failed endpoint passed over once, and the
 * endpoints a relay already tried passed over while another exists. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdlib.h>
#include <string.h>
#include "dp_balancer.h"

typedef struct {
    dp_service_t svc;
    dp_endpoint_t eps[70];
    dp_endpoint_t *ptrs[70];
} fixture_t;

#define NOW 1000000000000ull

static size_t pick(fixture_t *f, dp_tried_t tried)
{
    int trial;
    size_t i = dp_balancer_pick(&f->svc, tried, NOW, &trial);
    assert_int_equal(trial, 0);
    return i;
}

static fixture_t *make(size_t n)
{
    fixture_t *f = calloc(1, sizeof(*f));
    assert_non_null(f);
    for (size_t i = 0; i != n; ++i)
        f->ptrs[i] = &f->eps[i];
    f->svc.nendpoints = n;
    f->svc.endpoints = f->ptrs;
    f->svc.shared = calloc(1, sizeof(dp_svcshared_t) + sizeof(dp_svcstats_t));
    assert_non_null(f->svc.shared);
    return f;
}

static void test_least_outstanding(void **state)
{
    fixture_t *f = make(3);
    atomic_store(&f->eps[0].outstanding, 5);
    atomic_store(&f->eps[1].outstanding, 1);
    atomic_store(&f->eps[2].outstanding, 3);
    for (int i = 0; i != 5; ++i)
        assert_int_equal(pick(f, 0), 1);
    free(f->svc.shared);
    free(f);
}

static void test_ties_take_turns(void **state)
{
    fixture_t *f = make(3);
    int seen[3] = {0};
    for (int i = 0; i != 9; ++i)
        seen[pick(f, 0)]++;
    assert_int_equal(seen[0], 3);
    assert_int_equal(seen[1], 3);
    assert_int_equal(seen[2], 3);
    free(f->svc.shared);
    free(f);
}

/* every request hedged (or retried) once: the first tries still take turns */
static void test_second_picks_leave_the_turns_alone(void **state)
{
    fixture_t *f = make(2);
    int first[2] = {0};
    for (int i = 0; i != 10; ++i) {
        size_t a = pick(f, 0);
        first[a]++;
        size_t b = pick(f, DP_TRIED_BIT(a));
        assert_int_not_equal(a, b);
    }
    assert_int_equal(first[0], 5);
    assert_int_equal(first[1], 5);
    free(f->svc.shared);
    free(f);
}

static void test_just_failed_once(void **state)
{
    fixture_t *f = make(2);
    atomic_store(&f->eps[1].outstanding, 4);
    atomic_store(&f->eps[0].just_failed, 1);
    assert_int_equal(pick(f, 0), 1); /* passed over ... */
    assert_int_equal(atomic_load(&f->eps[0].just_failed), 0);
    assert_int_equal(pick(f, 0), 0); /* ... once */
    /* every endpoint just failed: the least loaded of them */
    atomic_store(&f->eps[0].just_failed, 1);
    atomic_store(&f->eps[1].just_failed, 1);
    assert_int_equal(pick(f, 0), 0);
    free(f->svc.shared);
    free(f);
}

static void test_tried_skipped(void **state)
{
    fixture_t *f = make(3);
    atomic_store(&f->eps[1].outstanding, 9);
    /* the least loaded was tried: the next best that was not */
    assert_int_equal(pick(f, DP_TRIED_BIT(0) | DP_TRIED_BIT(2)), 1);
    for (int i = 0; i != 6; ++i)
        assert_int_not_equal(pick(f, DP_TRIED_BIT(0)), 0);
    /* even one that just failed is better than one tried */
    atomic_store(&f->eps[1].just_failed, 1);
    assert_int_equal(pick(f, DP_TRIED_BIT(0) | DP_TRIED_BIT(2)), 1);
    /* everything tried: as on a first try */
    atomic_store(&f->eps[1].just_failed, 0);
    assert_int_not_equal(pick(f, DP_TRIED_BIT(0) | DP_TRIED_BIT(1) | DP_TRIED_BIT(2)), 1);
    free(f->svc.shared);
    free(f);
}

static void test_one_and_many(void **state)
{
    fixture_t *f = make(1);
    assert_int_equal(pick(f, DP_TRIED_BIT(0)), 0);
    free(f->svc.shared);
    free(f);
    /* past 64 endpoints the extra ones are not tracked, but still chosen */
    f = make(70);
    for (size_t i = 0; i != 70; ++i)
        atomic_store(&f->eps[i].outstanding, i == 68 ? 0 : 1);
    assert_int_equal(pick(f, ~(dp_tried_t)0), 68);
    free(f->svc.shared);
    free(f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_least_outstanding), cmocka_unit_test(test_ties_take_turns),
        cmocka_unit_test(test_just_failed_once),  cmocka_unit_test(test_tried_skipped),
        cmocka_unit_test(test_one_and_many),      cmocka_unit_test(test_second_picks_leave_the_turns_alone),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
