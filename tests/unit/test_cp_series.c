/* cp_series: per-service traffic series fed by heartbeats' cumulative counters. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>
#include "cp_series.h"

#define RES CP_SERIES_RESOLUTION_MS
#define T0 ((int64_t)1764633600000) /* a bucket start */

/* Counters of one service: `requests` answered, `errors` of them, each in latency bucket `lat`. */
static cp_service_traffic_t svc(const char *name, uint64_t requests, uint64_t errors, int lat)
{
    cp_service_traffic_t s;
    memset(&s, 0, sizeof(s));
    s.name = name;
    s.t.requests = requests;
    s.t.errors = errors;
    if (lat >= 0)
        s.t.buckets[lat] = requests;
    return s;
}

static int report1(cp_series_t *s, const char *dp, int64_t version, cp_service_traffic_t one, int64_t now)
{
    return cp_series_observe(s, dp, version, &one, 1, now);
}

/* The series of `name` over the whole keep time at `now`; NULL when it has none. Borrowed from *all. */
static json_t *series_of(cp_series_t *s, const char *name, int64_t now, json_t **all)
{
    *all = cp_series_json(s, CP_SERIES_KEEP_MS, NULL, now);
    assert_non_null(*all);
    return json_object_get(*all, name);
}

static json_int_t at(json_t *series, const char *key, size_t i)
{
    json_t *a = json_object_get(series, key);
    assert_true(i < json_array_size(a));
    return json_integer_value(json_array_get(a, i));
}

static double real_at(json_t *series, const char *key, size_t i)
{
    json_t *a = json_object_get(series, key);
    assert_true(i < json_array_size(a));
    return json_number_value(json_array_get(a, i));
}

static size_t points(json_t *series)
{
    return json_array_size(json_object_get(series, "t"));
}

static void test_deltas_summed_over_the_fleet(void **state)
{
    cp_series_t *s = cp_series_create(CP_SERIES_MAX_SERVICES);
    assert_non_null(s);
    /* first reports set the baselines: what was counted before is not shown as a spike */
    assert_int_equal(report1(s, "dp-a", 3, svc("eth", 1000, 10, 3), T0 + 1000), 0);
    assert_int_equal(report1(s, "dp-b", 3, svc("eth", 500, 0, 3), T0 + 2000), 0);
    json_t *all, *eth = series_of(s, "eth", T0 + 2000, &all);
    assert_non_null(eth);
    assert_int_equal(points(eth), 0);
    json_decref(all);
    /* then what they grew by, summed over the fleet in the bucket the reports arrived in */
    report1(s, "dp-a", 3, svc("eth", 1100, 15, 3), T0 + 5000);
    report1(s, "dp-b", 3, svc("eth", 530, 0, 3), T0 + 6000);
    report1(s, "dp-a", 3, svc("eth", 1300, 15, 3), T0 + RES + 1000);
    eth = series_of(s, "eth", T0 + RES + 1000, &all);
    assert_int_equal(points(eth), 2);
    assert_int_equal(at(eth, "t", 0), T0);
    assert_int_equal(at(eth, "t", 1), T0 + RES);
    assert_int_equal(at(eth, "requests", 0), 130);
    assert_int_equal(at(eth, "errors", 0), 5);
    assert_int_equal(at(eth, "requests", 1), 200);
    assert_int_equal(at(eth, "errors", 1), 0);
    assert_true(real_at(eth, "rps", 0) == 13.0);
    assert_true(real_at(eth, "error_rate", 0) == 5.0 / 130);
    assert_true(real_at(eth, "p99_ms", 0) == 10.0); /* latency bucket 3: <= 10 ms */
    json_decref(all);
    cp_series_stats_t st;
    cp_series_stats(s, &st);
    assert_int_equal(st.services, 1);
    assert_int_equal(st.dataplanes, 2);
    assert_int_equal(st.reports, 5);
    assert_int_equal(st.refused, 0);
    cp_series_destroy(s);
}

static void test_counter_reset_and_version_change(void **state)
{
    cp_series_t *s = cp_series_create(8);
    report1(s, "dp-a", 3, svc("eth", 1000, 0, 3), T0);
    /* the dataplane restarted on the same version: its counters went back, all of them are new */
    report1(s, "dp-a", 3, svc("eth", 40, 4, 3), T0 + 1000);
    /* it runs version 4 now: its counters restarted with it, even though they are higher again */
    report1(s, "dp-a", 4, svc("eth", 70, 5, 3), T0 + RES);
    /* and grow from there */
    report1(s, "dp-a", 4, svc("eth", 100, 6, 3), T0 + 2 * RES);
    json_t *all, *eth = series_of(s, "eth", T0 + 2 * RES, &all);
    assert_int_equal(points(eth), 3);
    assert_int_equal(at(eth, "requests", 0), 40);
    assert_int_equal(at(eth, "errors", 0), 4);
    assert_int_equal(at(eth, "requests", 1), 70);
    assert_int_equal(at(eth, "errors", 1), 5);
    assert_int_equal(at(eth, "requests", 2), 30);
    assert_int_equal(at(eth, "errors", 2), 1);
    json_decref(all);
    /* a service new in a known dataplane's reports counts from 0 */
    cp_service_traffic_t two[] = {svc("eth", 100, 6, 3), svc("poly", 25, 0, 2)};
    assert_int_equal(cp_series_observe(s, "dp-a", 4, two, 2, T0 + 3 * RES), 0);
    json_t *poly = series_of(s, "poly", T0 + 3 * RES, &all);
    assert_int_equal(points(poly), 1);
    assert_int_equal(at(poly, "requests", 0), 25);
    eth = json_object_get(all, "eth");
    assert_int_equal(points(eth), 4);
    assert_int_equal(at(eth, "requests", 3), 0); /* reported, nothing new: a point of 0, not a gap */
    assert_true(json_is_null(json_array_get(json_object_get(eth, "p99_ms"), 3)));
    assert_true(real_at(eth, "error_rate", 3) == 0.0);
    json_decref(all);
    cp_series_destroy(s);
}

static void test_p99(void **state)
{
    cp_series_t *s = cp_series_create(8);
    report1(s, "dp-a", 1, svc("eth", 0, 0, -1), T0);
    /* 99 fast answers and one slow: the 99th percentile is still fast */
    cp_service_traffic_t t = svc("eth", 100, 0, -1);
    t.t.buckets[2] = 99; /* <= 5 ms */
    t.t.buckets[10] = 1; /* <= 2500 ms */
    report1(s, "dp-a", 1, t, T0 + 1000);
    /* two slow in 100: it is slow */
    t.t.requests = 200;
    t.t.buckets[2] = 197;
    t.t.buckets[10] = 3;
    report1(s, "dp-a", 1, t, T0 + RES);
    /* beyond the last bound (10 s): shown as 10000, "10 s or more" */
    t.t.requests = 300;
    t.t.buckets[13] = 100;
    report1(s, "dp-a", 1, t, T0 + 2 * RES);
    /* requests without latency buckets: no p99 */
    t.t.requests = 310;
    report1(s, "dp-a", 1, t, T0 + 3 * RES);
    json_t *all, *eth = series_of(s, "eth", T0 + 3 * RES, &all);
    assert_int_equal(points(eth), 4);
    assert_true(real_at(eth, "p99_ms", 0) == 5.0);
    assert_true(real_at(eth, "p99_ms", 1) == 2500.0);
    assert_true(real_at(eth, "p99_ms", 2) == 10000.0);
    assert_true(json_is_null(json_array_get(json_object_get(eth, "p99_ms"), 3)));
    assert_int_equal(at(eth, "requests", 3), 10);
    json_decref(all);
    cp_series_destroy(s);
}

static void test_gaps_window_and_filter(void **state)
{
    cp_series_t *s = cp_series_create(8);
    cp_service_traffic_t two[] = {svc("eth", 0, 0, 3), svc("poly", 0, 0, 3)};
    cp_series_observe(s, "dp-a", 1, two, 2, T0);
    for (int b = 1; b <= 6; b++) {
        if (b == 3 || b == 4)
            continue; /* no report in these buckets: gaps */
        two[0].t.requests = two[0].t.buckets[3] = (uint64_t)b * 10;
        cp_series_observe(s, "dp-a", 1, two, 2, T0 + b * RES + 500);
    }
    int64_t now = T0 + 6 * RES + 600;
    json_t *all, *eth = series_of(s, "eth", now, &all);
    assert_int_equal(points(eth), 4);
    assert_int_equal(at(eth, "t", 1), T0 + 2 * RES);
    assert_int_equal(at(eth, "t", 2), T0 + 5 * RES);
    assert_int_equal(at(eth, "requests", 2), 30); /* 50 - 20: what grew during the gap lands in the next report */
    json_decref(all);
    /* since: the buckets that start within the last 25 s (at now = T0+60.6s: 40s, a gap, 50s and 60s) */
    all = cp_series_json(s, 25000, NULL, now);
    eth = json_object_get(all, "eth");
    assert_int_equal(points(eth), 2);
    assert_int_equal(at(eth, "t", 0), T0 + 5 * RES);
    json_decref(all);
    /* a window shorter than a bucket still shows the current one */
    all = cp_series_json(s, 1, NULL, now);
    assert_int_equal(points(json_object_get(all, "eth")), 1);
    json_decref(all);
    /* one service; an unknown one gives none */
    all = cp_series_json(s, CP_SERIES_KEEP_MS, "poly", now);
    assert_int_equal(json_object_size(all), 1);
    assert_non_null(json_object_get(all, "poly"));
    json_decref(all);
    all = cp_series_json(s, CP_SERIES_KEEP_MS, "nope", now);
    assert_int_equal(json_object_size(all), 0);
    json_decref(all);
    cp_series_destroy(s);
}

static void test_ring_wraps_after_the_keep_time(void **state)
{
    cp_series_t *s = cp_series_create(8);
    uint64_t n = 0;
    report1(s, "dp-a", 1, svc("eth", n, 0, 3), T0);
    /* a report in every bucket for an hour and a half: 540 buckets through a ring of 360 */
    for (int b = 1; b <= 540; b++) {
        n += (uint64_t)b;
        report1(s, "dp-a", 1, svc("eth", n, 0, 3), T0 + b * RES);
    }
    int64_t now = T0 + 540 * RES;
    json_t *all, *eth = series_of(s, "eth", now, &all);
    assert_int_equal(points(eth), CP_SERIES_BUCKETS);
    assert_int_equal(at(eth, "t", 0), T0 + 181 * RES); /* the oldest kept */
    assert_int_equal(at(eth, "requests", 0), 181);
    assert_int_equal(at(eth, "t", CP_SERIES_BUCKETS - 1), now);
    assert_int_equal(at(eth, "requests", CP_SERIES_BUCKETS - 1), 540);
    for (size_t i = 1; i < CP_SERIES_BUCKETS; i++)
        assert_true(at(eth, "t", i) > at(eth, "t", i - 1)); /* ascending */
    json_decref(all);
    /* the wall clock stepped back by more than the ring: nothing newer is overwritten */
    report1(s, "dp-a", 1, svc("eth", n + 7, 0, 3), T0 + 100 * RES);
    eth = series_of(s, "eth", now, &all);
    assert_int_equal(at(eth, "requests", CP_SERIES_BUCKETS - 1), 540);
    assert_int_equal(points(eth), CP_SERIES_BUCKETS);
    json_decref(all);
    cp_series_destroy(s);
}

static void test_bounds_and_forgetting(void **state)
{
    cp_series_t *s = cp_series_create(2);
    cp_service_traffic_t three[] = {svc("a", 0, 0, 3), svc("b", 0, 0, 3), svc("c", 0, 0, 3)};
    /* a third service finds no room: counted in no series, and said so */
    assert_int_equal(cp_series_observe(s, "dp-1", 1, three, 3, T0), 1);
    assert_int_equal(cp_series_observe(s, "dp-1", 1, three, 3, T0 + 1000), 1);
    char longname[CP_SERIES_MAX_NAME + 2];
    memset(longname, 'x', sizeof(longname) - 1);
    longname[sizeof(longname) - 1] = '\0';
    assert_int_equal(report1(s, "dp-1", 1, svc(longname, 1, 0, 3), T0 + 1000), 1);
    cp_series_stats_t st;
    cp_series_stats(s, &st);
    assert_int_equal(st.services, 2);
    assert_int_equal(st.refused, 3);
    json_t *all = cp_series_json(s, CP_SERIES_KEEP_MS, NULL, T0 + 1000);
    assert_int_equal(json_object_size(all), 2);
    assert_null(json_object_get(all, "c"));
    json_decref(all);

    /* a forgotten dataplane's next report is a new baseline */
    report1(s, "dp-2", 1, svc("a", 100, 0, 3), T0 + 2000);
    cp_series_forget(s, "dp-2");
    cp_series_forget(s, "dp-never");
    cp_series_stats(s, &st);
    assert_int_equal(st.dataplanes, 1);
    report1(s, "dp-2", 1, svc("a", 150, 0, 3), T0 + 3000);
    json_t *a = series_of(s, "a", T0 + 3000, &all);
    assert_int_equal(points(a), 1); /* dp-1's second report, which added 0 */
    assert_int_equal(at(a, "requests", 0), 0);
    json_decref(all);

    /* dataplanes silent for the keep time are dropped, and so are services no report names */
    int64_t later = T0 + 3000 + CP_SERIES_KEEP_MS + 1;
    report1(s, "dp-3", 1, svc("c", 5, 0, 3), later);
    cp_series_stats(s, &st);
    assert_int_equal(st.dataplanes, 1);
    assert_int_equal(st.services, 1); /* c got the room a and b left */
    assert_int_equal(st.refused, 3);
    all = cp_series_json(s, CP_SERIES_KEEP_MS, NULL, later);
    assert_int_equal(json_object_size(all), 1);
    assert_non_null(json_object_get(all, "c"));
    json_decref(all);
    /* many dataplanes: the table grows and finds each */
    char id[32];
    for (int i = 0; i < 1000; i++) {
        snprintf(id, sizeof(id), "dp-%d", i);
        report1(s, id, 1, svc("c", 10, 0, 3), later + 1);
    }
    for (int i = 0; i < 1000; i++) {
        snprintf(id, sizeof(id), "dp-%d", i);
        report1(s, id, 1, svc("c", 12, 0, 3), later + 2);
    }
    json_t *c = series_of(s, "c", later + 2, &all);
    assert_int_equal(points(c), 1);
    /* dp-3 grew 5 -> 10 -> 12 (7); the 999 others set their baselines at 10 and grew by 2 */
    assert_int_equal(at(c, "requests", 0), 7 + 999 * 2);
    json_decref(all);
    cp_series_stats(s, &st);
    assert_int_equal(st.dataplanes, 1000);
    cp_series_destroy(s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_deltas_summed_over_the_fleet),
        cmocka_unit_test(test_counter_reset_and_version_change),
        cmocka_unit_test(test_p99),
        cmocka_unit_test(test_gaps_window_and_filter),
        cmocka_unit_test(test_ring_wraps_after_the_keep_time),
        cmocka_unit_test(test_bounds_and_forgetting),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
