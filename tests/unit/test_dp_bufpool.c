/* dp_bufpool: hits and misses, retention bound, size changes. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include "dp_bufpool.h"

static void test_reuse(void **state)
{
    dp_bufpool_t p;
    dp_bufpool_init(&p);
    dp_buf_t *a = dp_bufpool_get(&p, 4096);
    assert_non_null(a);
    assert_int_equal(a->capacity, 4096);
    assert_int_equal(p.misses, 1);
    a->len = 10;
    dp_bufpool_put(&p, a, 1 << 20);
    assert_int_equal(p.retained, 4096);
    dp_buf_t *b = dp_bufpool_get(&p, 4096);
    assert_ptr_equal(a, b);
    assert_int_equal(b->len, 0);
    assert_int_equal(p.hits, 1);
    assert_int_equal(p.outstanding, 1);
    dp_bufpool_put(&p, b, 1 << 20);
    assert_int_equal(p.outstanding, 0);
    dp_bufpool_dispose(&p);
    assert_int_equal(p.retained, 0);
}

static void test_retention_bound(void **state)
{
    dp_bufpool_t p;
    dp_bufpool_init(&p);
    /* a buffer larger than max_retained is never kept */
    dp_buf_t *big = dp_bufpool_get(&p, 5000);
    dp_bufpool_put(&p, big, 3000);
    assert_int_equal(p.retained, 0);
    dp_buf_t *bufs[5];
    for (int i = 0; i < 5; ++i)
        bufs[i] = dp_bufpool_get(&p, 1000);
    for (int i = 0; i < 5; ++i)
        dp_bufpool_put(&p, bufs[i], 3000); /* room for three */
    assert_int_equal(p.retained, 3000);
    dp_bufpool_trim(&p, 1000);
    assert_int_equal(p.retained, 1000);
    dp_bufpool_dispose(&p);
}

static void test_size_change_frees_old(void **state)
{
    dp_bufpool_t p;
    dp_bufpool_init(&p);
    dp_buf_t *a = dp_bufpool_get(&p, 1000);
    dp_bufpool_put(&p, a, 1 << 20);
    dp_buf_t *b = dp_bufpool_get(&p, 2000); /* the setting changed: the old size is dropped */
    assert_int_equal(b->capacity, 2000);
    assert_int_equal(p.retained, 0);
    assert_int_equal(p.misses, 2);
    dp_bufpool_put(&p, b, 1 << 20);
    dp_bufpool_dispose(&p);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_reuse),
        cmocka_unit_test(test_retention_bound),
        cmocka_unit_test(test_size_change_frees_old),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
