/* dp_adaptive: the limit on synthetic sample streams from a modelled upstream (K parallel workers,
 * service time T, FIFO queue beyond K), the method key, switching on and off, the window's one
 * closer under threads. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "dp_adaptive.h"

#define MS 1000000ull

static cfg_adaptive_t settings(void)
{
    cfg_adaptive_t c;
    memset(&c, 0, sizeof(c));
    c.enabled = 1;
    c.min_limit = 4;
    c.max_limit = 1000;
    c.initial_limit = 20;
    c.tolerance = 1500;
    c.window_ms = 1000;
    c.smoothing = 200;
    return c;
}

/* One method of the modelled traffic: its share and its service time. */
typedef struct {
    const char *body;
    double share;
    double service_ms;
} method_t;

typedef struct {
    dp_adaptive_t a;
    uint64_t now;   /* the fake clock (ns) */
    uint32_t limit; /* what the limiter enforces */
    double offered; /* clients: the load never holds more than this many permits */
} sim_t;

static void sim_init(sim_t *s, const cfg_adaptive_t *c, uint32_t cap, double offered)
{
    dp_adaptive_init(&s->a);
    s->now = 1000 * MS;
    s->limit = dp_adaptive_configure(&s->a, c, cap, s->now);
    s->offered = offered;
}

/* One window of load at the current limit against an upstream of k workers: the concurrency is
 * min(limit, offered); beyond k the upstream's queue adds (conc - k) / k mean service times to
 * every request. Samples are spread over the window; the last one closes it. */
static void sim_window(sim_t *s, double k, const method_t *m, size_t nm)
{
    double conc = s->limit < s->offered ? s->limit : s->offered;
    double mean_service = 0;
    for (size_t i = 0; i != nm; ++i)
        mean_service += m[i].share * m[i].service_ms;
    double queue_ms = conc > k ? (conc - k) / k * mean_service : 0;
    double served = (conc < k ? conc : k) / mean_service * 1000.0; /* per window of 1 s */
    uint64_t total = (uint64_t)served;
    if (total < nm)
        total = nm;
    uint64_t start = s->now;
    int closed = 0;
    for (uint64_t j = 0; j != total; ++j) {
        /* methods interleaved by their shares */
        size_t pick = 0;
        double acc = 0, pos = (double)(j % 100) / 100.0;
        for (size_t i = 0; i != nm; ++i) {
            acc += m[i].share;
            if (pos < acc) {
                pick = i;
                break;
            }
        }
        double lat = m[pick].service_ms + queue_ms;
        uint64_t key = dp_adaptive_method_key(m[pick].body, strlen(m[pick].body));
        uint64_t t = start + (uint64_t)((double)(j + 1) / (double)total * 1000.0 * MS);
        if (dp_adaptive_sample(&s->a, key, (uint64_t)(lat * MS), t)) {
            int saturated = conc >= s->limit;
            s->limit = dp_adaptive_close(&s->a, (uint32_t)conc, saturated, t);
            dp_adaptive_close_end(&s->a);
            closed = 1;
        }
    }
    assert_true(closed);
    if (getenv("ADAPTIVE_TRACE") != NULL)
        fprintf(stderr, "k=%g conc=%g queue=%.1fms -> limit %u\n", k, conc, queue_ms, s->limit);
    s->now = start + 1000 * MS;
}

static const method_t one_method[] = {{"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"eth_call\"}", 1.0, 20}};
#define ONE one_method, 1

static void test_settles_within_range(void **state)
{
    cfg_adaptive_t c = settings();
    sim_t s;
    sim_init(&s, &c, 0, 200);
    assert_int_equal(s.limit, 20);
    for (int i = 0; i != 10; ++i)
        sim_window(&s, 16, ONE);
    uint32_t lo = UINT32_MAX, hi = 0;
    for (int i = 0; i != 60; ++i) {
        sim_window(&s, 16, ONE);
        lo = s.limit < lo ? s.limit : lo;
        hi = s.limit > hi ? s.limit : hi;
    }
    /* [0.7K, 2K]: the upstream never idles below its capacity for long, its latency stays < 2T */
    assert_true(lo >= 0.7 * 16);
    assert_true(hi <= 2 * 16);
    dp_adaptive_stats_t st;
    dp_adaptive_stats(&s.a, &st);
    assert_true(st.baseline_ns >= 19 * MS && st.baseline_ns <= 21 * MS); /* the unloaded T, never drifted up */
    assert_int_equal(st.windows, 70);
    dp_adaptive_dispose(&s.a);
}

static int windows_to_enter(sim_t *s, double k, int max_windows)
{
    for (int i = 1; i <= max_windows; ++i) {
        sim_window(s, k, ONE);
        if (s->limit >= 0.7 * k && s->limit <= 2 * k)
            return i;
    }
    return -1;
}

static void test_follows_capacity_changes(void **state)
{
    cfg_adaptive_t c = settings();
    sim_t s;
    sim_init(&s, &c, 0, 200);
    for (int i = 0; i != 20; ++i)
        sim_window(&s, 16, ONE);
    int up = windows_to_enter(&s, 64, 20);
    assert_true(up > 0 && up <= 10); /* K 16 -> 64: within 10 s */
    for (int i = 0; i != 10; ++i)
        sim_window(&s, 64, ONE);
    assert_true(s.limit >= 0.7 * 64 && s.limit <= 2 * 64);
    int down = windows_to_enter(&s, 8, 20);
    assert_true(down > 0 && down <= 5); /* K 64 -> 8: within 5 s */
    for (int i = 0; i != 20; ++i) {
        sim_window(&s, 8, ONE);
        assert_true(s.limit >= 0.7 * 8 && s.limit <= 2 * 8);
    }
    dp_adaptive_dispose(&s.a);
}

/* 5% of a 200 ms method among 95% of a 5 ms one, an upstream with room for all: one baseline for
 * both would see a mean 3x its minimum and cut to min_limit; per-method baselines see no queue. */
static void test_slow_method_mix_does_not_shrink(void **state)
{
    static const method_t mix[] = {{"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"eth_chainId\"}", 0.95, 5},
                                   {"{\"jsonrpc\":\"2.0\",\"id\":2,\"method\":\"eth_getLogs\",\"params\":[]}", 0.05, 200}};
    cfg_adaptive_t c = settings();
    sim_t s;
    sim_init(&s, &c, 0, 100);
    for (int i = 0; i != 30; ++i) {
        sim_window(&s, 1000, mix, 2);
        assert_true(s.limit >= 16); /* never cut but by a re-measuring probe (x0.8): nothing queues */
    }
    assert_true(s.limit >= 80); /* grew until the 100 clients no longer fill it (less a re-measuring x0.8) */
    /* the same mix queueing at K = 16 settles in range, not at min_limit */
    s.offered = 200;
    for (int i = 0; i != 20; ++i)
        sim_window(&s, 16, mix, 2);
    for (int i = 0; i != 30; ++i) {
        sim_window(&s, 16, mix, 2);
        assert_true(s.limit >= 0.7 * 16 && s.limit <= 2 * 16);
    }
    dp_adaptive_dispose(&s.a);
}

/* The upstream itself gets slower (T 20 -> 60 ms, same K): cutting does not help, so after one
 * cut the slower latency becomes the baseline instead of the limit staying at min_limit. */
static void test_slower_upstream_rebases(void **state)
{
    static const method_t slow[] = {{"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"eth_call\"}", 1.0, 60}};
    cfg_adaptive_t c = settings();
    sim_t s;
    sim_init(&s, &c, 0, 12); /* 12 clients, K = 32: never queues */
    for (int i = 0; i != 10; ++i)
        sim_window(&s, 32, ONE);
    int at_min = 0;
    for (int i = 0; i != 10; ++i) {
        sim_window(&s, 32, slow, 1);
        at_min += s.limit <= c.min_limit;
    }
    assert_true(at_min <= 2);   /* one cut may reach it (and the window that waits to judge it); then it is undone */
    assert_true(s.limit >= 12); /* and it grew back to what the 12 clients use */
    dp_adaptive_dispose(&s.a);
}

/* A load that does not use the limit gives no reason to raise it. */
static void test_no_growth_when_unused(void **state)
{
    cfg_adaptive_t c = settings();
    sim_t s;
    sim_init(&s, &c, 0, 5);
    for (int i = 0; i != 20; ++i)
        sim_window(&s, 64, ONE);
    assert_int_equal(s.limit, 20);
    dp_adaptive_dispose(&s.a);
}

static void test_bounds_and_switching(void **state)
{
    cfg_adaptive_t c = settings();
    sim_t s;
    sim_init(&s, &c, 30, 200); /* max_concurrent 30 caps it */
    for (int i = 0; i != 20; ++i) {
        sim_window(&s, 1000, ONE);
        assert_true(s.limit <= 30);
    }
    assert_int_equal(s.limit, 30);
    /* max_limit lowered at runtime: clamped at once */
    c.max_limit = 10;
    assert_int_equal(dp_adaptive_configure(&s.a, &c, 30, s.now), 10);
    /* off: 0, stats say off; on again: initial_limit, fresh window count */
    c.enabled = 0;
    assert_int_equal(dp_adaptive_configure(&s.a, &c, 30, s.now), 0);
    dp_adaptive_stats_t st;
    dp_adaptive_stats(&s.a, &st);
    assert_int_equal(st.enabled, 0);
    assert_int_equal(st.limit, 0);
    assert_int_equal(dp_adaptive_sample(&s.a, 1, MS, s.now + 10000 * MS), 0); /* off: ignored */
    c.enabled = 1;
    c.max_limit = 1000;
    c.initial_limit = 25;
    assert_int_equal(dp_adaptive_configure(&s.a, &c, 0, s.now), 25);
    dp_adaptive_stats(&s.a, &st);
    assert_int_equal(st.windows, 0);
    assert_int_equal(st.samples, 0);
    /* min_limit holds against the deepest cut */
    c.min_limit = 12;
    assert_int_equal(dp_adaptive_configure(&s.a, &c, 0, s.now), 25);
    s.limit = 25;
    for (int i = 0; i != 10; ++i)
        sim_window(&s, 1, ONE);
    assert_true(s.limit >= 12);
    dp_adaptive_dispose(&s.a);
}

static void test_method_key(void **state)
{
    const char *a1 = "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"eth_call\",\"params\":[]}";
    const char *a2 = "{ \"method\" : \"eth_call\", \"id\": 99 }";
    const char *b = "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"eth_getLogs\"}";
    const char *batch = "[{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"eth_call\"}]";
    assert_int_equal(dp_adaptive_method_key(a1, strlen(a1)), dp_adaptive_method_key(a2, strlen(a2)));
    assert_int_not_equal(dp_adaptive_method_key(a1, strlen(a1)), dp_adaptive_method_key(b, strlen(b)));
    assert_int_not_equal(dp_adaptive_method_key(a1, strlen(a1)), dp_adaptive_method_key(batch, strlen(batch)));
    /* bad input still gets a key, never 0, never a read past the end */
    assert_int_not_equal(dp_adaptive_method_key("", 0), 0);
    assert_int_not_equal(dp_adaptive_method_key("{\"method\":\"eth_c", 15), 0);
    assert_int_not_equal(dp_adaptive_method_key("\"method\"", 8), 0);
}

/* More distinct methods than slots: the rest share slot 0, nothing breaks. */
static void test_many_methods(void **state)
{
    cfg_adaptive_t c = settings();
    dp_adaptive_t a;
    dp_adaptive_init(&a);
    uint64_t now = 1000 * MS;
    dp_adaptive_configure(&a, &c, 0, now);
    char body[64];
    for (int i = 0; i != 3 * DP_ADAPTIVE_METHODS; ++i) {
        int n = snprintf(body, sizeof(body), "{\"method\":\"m%d\"}", i);
        assert_int_equal(dp_adaptive_sample(&a, dp_adaptive_method_key(body, (size_t)n), 5 * MS, now + (uint64_t)i), 0);
    }
    assert_int_equal(dp_adaptive_sample(&a, 7, 5 * MS, now + 2000 * MS), 1);
    /* within tolerance and in use: grows by sqrt(20) = 4.47 */
    assert_int_equal(dp_adaptive_close(&a, 20, 1, now + 2000 * MS), 24);
    dp_adaptive_close_end(&a);
    /* then by sqrt(24.47) = 4.95 (a limit in use grows into a cut; no re-measuring within tolerance) */
    assert_int_equal(dp_adaptive_sample(&a, 7, 5 * MS, now + 3000 * MS), 1);
    assert_int_equal(dp_adaptive_close(&a, 24, 1, now + 3000 * MS), 29);
    dp_adaptive_close_end(&a);
    dp_adaptive_stats_t st;
    dp_adaptive_stats(&a, &st);
    assert_int_equal(st.samples, 3 * DP_ADAPTIVE_METHODS + 2);
    assert_int_equal(st.baseline_ns, 5 * MS);
    assert_int_equal(st.ratio_milli, 1000);
    dp_adaptive_dispose(&a);
}

/* Threads sample at once across window ends: each window has exactly one closer. */
#define THREADS 4
#define PER_THREAD 20000
static dp_adaptive_t shared;
static _Atomic int closes;

static void *sampler(void *arg)
{
    uintptr_t id = (uintptr_t)arg;
    for (uint64_t i = 0; i != PER_THREAD; ++i) {
        uint64_t now = 1000 * MS + i * MS / 10; /* 2 s of samples: the window (1 s) ends once */
        if (dp_adaptive_sample(&shared, 100 + id, 5 * MS, now)) {
            atomic_fetch_add(&closes, 1);
            dp_adaptive_close(&shared, 20, 1, now);
            dp_adaptive_close_end(&shared);
        }
    }
    return NULL;
}

static void test_one_closer(void **state)
{
    cfg_adaptive_t c = settings();
    dp_adaptive_init(&shared);
    dp_adaptive_configure(&shared, &c, 0, 1000 * MS);
    atomic_store(&closes, 0);
    pthread_t t[THREADS];
    for (uintptr_t i = 0; i != THREADS; ++i)
        pthread_create(&t[i], NULL, sampler, (void *)i);
    for (int i = 0; i != THREADS; ++i)
        pthread_join(t[i], NULL);
    int n = atomic_load(&closes);
    assert_int_equal(n, 1); /* the window ends once in these 2 s */
    dp_adaptive_stats_t st;
    dp_adaptive_stats(&shared, &st);
    assert_int_equal(st.samples, THREADS * PER_THREAD);
    assert_int_equal(st.windows, (uint64_t)n);
    dp_adaptive_dispose(&shared);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_settles_within_range),
        cmocka_unit_test(test_follows_capacity_changes),
        cmocka_unit_test(test_slow_method_mix_does_not_shrink),
        cmocka_unit_test(test_slower_upstream_rebases),
        cmocka_unit_test(test_no_growth_when_unused),
        cmocka_unit_test(test_bounds_and_switching),
        cmocka_unit_test(test_method_key),
        cmocka_unit_test(test_many_methods),
        cmocka_unit_test(test_one_closer),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
