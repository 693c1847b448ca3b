/* dp_latency: bucket arithmetic, percentiles of known distributions within a bucket's width, how
 * fast the estimate follows a shift, the hedge delay it gives, and recording from threads. */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "dp_latency.h"

#define NO_HALVING 0x7fffffffu

static void test_buckets(void **state)
{
    unsigned prev = 0;
    for (uint64_t v = 0; v < (UINT64_C(1) << 27); v = v < 4096 ? v + 1 : v + v / 97) {
        unsigned b = dp_latency_bucket_of(v);
        assert_true(b < DP_LATENCY_BUCKETS);
        assert_true(b >= prev); /* monotonic */
        prev = b;
        uint64_t lo = dp_latency_bucket_lower(b), hi = dp_latency_bucket_upper(b);
        if (v < lo || v >= hi)
            fail_msg("%llu is in bucket %u = [%llu, %llu)", (unsigned long long)v, b, (unsigned long long)lo,
                     (unsigned long long)hi);
        if (b >= 8)
            assert_true((hi - lo) * 8 <= lo); /* at most 12.5% wide */
    }
    for (unsigned i = 0; i + 1 < DP_LATENCY_BUCKETS; i++)
        assert_int_equal(dp_latency_bucket_upper(i), dp_latency_bucket_lower(i + 1)); /* contiguous */
    /* beyond the range: the last bucket */
    assert_int_equal(dp_latency_bucket_of(UINT64_MAX), DP_LATENCY_BUCKETS - 1);
    assert_int_equal(dp_latency_bucket_of(UINT64_C(1) << 27), DP_LATENCY_BUCKETS - 1);
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* the estimate is the upper end of the bucket holding the exact value */
static void assert_within_bucket(uint64_t est, uint64_t exact, const char *what)
{
    unsigned b = dp_latency_bucket_of(exact);
    if (est != dp_latency_bucket_upper(b) || est - exact > dp_latency_bucket_upper(b) - dp_latency_bucket_lower(b))
        fail_msg("%s: estimate %llu, exact %llu (bucket [%llu, %llu))", what, (unsigned long long)est, (unsigned long long)exact,
                 (unsigned long long)dp_latency_bucket_lower(b), (unsigned long long)dp_latency_bucket_upper(b));
}

static uint64_t rng_ = 88172645463325252ull;
static double uniform01(void)
{
    rng_ ^= rng_ << 13;
    rng_ ^= rng_ >> 7;
    rng_ ^= rng_ << 17;
    return (double)(rng_ >> 11) / 9007199254740992.0;
}

static void test_known_distributions(void **state)
{
    static dp_latency_t l;
    /* uniform 1000..1999 us, each once */
    dp_latency_init(&l, NO_HALVING);
    for (uint64_t v = 1000; v < 2000; v++)
        dp_latency_record(&l, v);
    assert_within_bucket(dp_latency_percentile(&l, 50, 1), 1499, "uniform p50");
    assert_within_bucket(dp_latency_percentile(&l, 95, 1), 1949, "uniform p95");
    assert_within_bucket(dp_latency_percentile(&l, 99, 1), 1989, "uniform p99");
    assert_within_bucket(dp_latency_percentile(&l, 100, 1), 1999, "uniform max");

    /* a long-tailed one: log-normal around 20 ms, 100k samples, against the exact sorted values */
    enum { N = 100000 };
    uint64_t *v = malloc(N * sizeof(*v));
    dp_latency_init(&l, NO_HALVING);
    for (int i = 0; i < N; i++) {
        double z = sqrt(-2.0 * log(1.0 - uniform01())) * cos(2 * M_PI * uniform01());
        v[i] = (uint64_t)exp(log(20000.0) + 0.8 * z);
        dp_latency_record(&l, v[i]);
    }
    qsort(v, N, sizeof(*v), cmp_u64);
    static const unsigned pcts[] = {50, 75, 90, 95, 99};
    for (size_t k = 0; k < sizeof(pcts) / sizeof(pcts[0]); k++) {
        char what[32];
        snprintf(what, sizeof(what), "log-normal p%u", pcts[k]);
        assert_within_bucket(dp_latency_percentile(&l, pcts[k], 1), v[(N * pcts[k] + 99) / 100 - 1], what);
    }
    free(v);
    /* not enough samples: no estimate */
    dp_latency_init(&l, 0);
    for (int i = 0; i < 63; i++)
        dp_latency_record(&l, 5000);
    assert_int_equal(dp_latency_percentile(&l, 95, DP_LATENCY_MIN_SAMPLES), 0);
    dp_latency_record(&l, 5000);
    assert_int_equal(dp_latency_percentile(&l, 95, DP_LATENCY_MIN_SAMPLES), dp_latency_bucket_upper(dp_latency_bucket_of(5000)));
    assert_int_equal(dp_latency_percentile(&l, 0, 1), 0);
    assert_int_equal(dp_latency_percentile(&l, 101, 1), 0);
}

/* samples recorded at `usec` until p95 lands in that value's bucket; returns how many it took */
static unsigned samples_to_follow(dp_latency_t *l, uint64_t usec, unsigned limit)
{
    uint64_t want = dp_latency_bucket_upper(dp_latency_bucket_of(usec));
    for (unsigned n = 1; n <= limit; n++) {
        dp_latency_record(l, usec);
        if (dp_latency_percentile(l, 95, 1) == want)
            return n;
    }
    return limit + 1;
}

static void test_follows_a_shift(void **state)
{
    static dp_latency_t l;
    const unsigned window = DP_LATENCY_WINDOW;
    dp_latency_init(&l, window);
    for (int i = 0; i < 20000; i++)
        dp_latency_record(&l, 5000 + (unsigned)i % 7);
    assert_within_bucket(dp_latency_percentile(&l, 95, 1), 5006, "steady 5ms");
    /* the service slows down to 300 ms: p95 follows once 5% of the recent weight is slow */
    unsigned up = samples_to_follow(&l, 300000, 4 * window);
    for (int i = 0; i < 20000; i++)
        dp_latency_record(&l, 300000);
    /* ...and, once slow for long, speeds up again: the slow samples must fade to under 5% of the
     * weight, which takes a few halvings (the weight of a window halves with each) */
    unsigned down = samples_to_follow(&l, 5000, 16 * window);
    printf("p95 followed 5ms -> 300ms in %u samples, 300ms -> 5ms in %u (window %u)\n", up, down, window);
    assert_true(up <= window / 4);
    assert_true(down <= 8 * window);
    /* without halving it would never come down: the old weight would stay */
    dp_latency_init(&l, NO_HALVING);
    for (int i = 0; i < 20000; i++)
        dp_latency_record(&l, 300000);
    assert_true(samples_to_follow(&l, 5000, 8 * window) > 8 * window);
}

static void test_hedge_delay(void **state)
{
    static dp_latency_t l;
    dp_latency_init(&l, 0);
    cfg_hedge_t h;
    memset(&h, 0, sizeof(h));
    h.max_extra = 1;
    h.min_delay_ms = 50;
    /* off */
    assert_int_equal(dp_latency_hedge_delay_ms(&l, &h), 0);
    /* fixed: as given, min_delay does not apply */
    h.delay_ms = 20;
    assert_int_equal(dp_latency_hedge_delay_ms(&l, &h), 20);
    h.max_extra = 0;
    assert_int_equal(dp_latency_hedge_delay_ms(&l, &h), 0);
    h.max_extra = 1;
    /* percentile: no hedging before the estimate exists */
    h.delay_ms = 0;
    h.delay_percentile = 95;
    assert_int_equal(dp_latency_hedge_delay_ms(&l, &h), 0);
    for (int i = 0; i < 1000; i++)
        dp_latency_record(&l, 10000 + (unsigned)(i % 100) * 1000); /* 10..109 ms */
    uint64_t d = dp_latency_hedge_delay_ms(&l, &h);
    assert_true(d >= 104 && d <= 104 + 104 / 8 + 1); /* p95 = 104 ms, within a bucket */
    /* a fast service: the floor */
    dp_latency_init(&l, 0);
    for (int i = 0; i < 1000; i++)
        dp_latency_record(&l, 3000);
    assert_int_equal(dp_latency_hedge_delay_ms(&l, &h), 50);
    /* a delay decoded from a document */
    const char *doc = "services: [{id: e, endpoints: [{url: 'http://x'}], hedge: {delay: p99, min_delay: 1ms}}]";
    cfg_errors_t errs;
    cfg_errors_init(&errs);
    cfg_t *cfg = cfg_parse(doc, strlen(doc), CFG_FORMAT_YAML, CFG_SCOPE_FLEET, &errs);
    assert_non_null(cfg);
    assert_int_equal(dp_latency_hedge_delay_ms(&l, &cfg->services.entries[0].hedge), 4); /* 3 ms, rounded up in its bucket */
    cfg_destroy(cfg);
    cfg_errors_dispose(&errs);
}

#define THREADS 4
#define PER_THREAD 200000

static void *recorder(void *arg)
{
    dp_latency_t *l = arg;
    for (unsigned i = 0; i < PER_THREAD; i++)
        dp_latency_record(l, 1000 + i % 1000);
    return NULL;
}

static void test_threads(void **state)
{
    static dp_latency_t l;
    dp_latency_init(&l, 0);
    pthread_t t[THREADS];
    for (int i = 0; i < THREADS; i++)
        assert_int_equal(pthread_create(&t[i], NULL, recorder, &l), 0);
    for (int i = 0; i < THREADS; i++)
        pthread_join(t[i], NULL);
    /* the weight stays bounded (halvings kept up) and the estimate is the distribution's */
    uint64_t total = 0;
    for (unsigned i = 0; i < DP_LATENCY_BUCKETS; i++)
        total += atomic_load(&l._buckets[i]);
    assert_true(total <= 3 * DP_LATENCY_WINDOW);
    uint64_t p50 = dp_latency_percentile(&l, 50, 1);
    assert_true(p50 >= 1300 && p50 <= 1700);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_buckets),         cmocka_unit_test(test_known_distributions),
        cmocka_unit_test(test_follows_a_shift), cmocka_unit_test(test_hedge_delay),
        cmocka_unit_test(test_threads),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
