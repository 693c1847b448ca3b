/* cp_rollout: the pure parts of safe rollouts: the rollout object, traffic, the gate, the order. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <math.h>
#include <string.h>
#include <cmocka.h>
#include "cp_rollout.h"

static int parse(const char *text, cp_rollout_spec_t *s, char *err, size_t errlen)
{
    json_t *v = json_loads(text, JSON_DECODE_ANY, NULL);
    assert_non_null(v);
    int rc = cp_rollout_spec_parse(v, "rollout", s, err, errlen);
    json_decref(v);
    return rc;
}

static void test_spec(void **state)
{
    cp_rollout_spec_t s;
    char err[256];
    assert_int_equal(
        parse("{\"canary\": {\"percent\": 10}, \"steps\": [{\"percent\": 10, \"hold\": \"2m\"}, {\"percent\": 50, \"hold\": "
              "30}], \"gate\": {\"max_error_rate_increase\": 0.02, \"interval\": \"250ms\", \"failures_allowed\": 0}}",
              &s, err, sizeof(err)),
        0);
    assert_int_equal(s.canary_percent, 10);
    assert_int_equal(s.num_steps, 2);
    assert_int_equal(s.steps[0].hold_ms, 120000);
    assert_int_equal(s.steps[1].hold_ms, 30000);
    assert_int_equal(s.interval_ms, 250);
    assert_int_equal(s.failures_allowed, 0);
    assert_int_equal(s.min_requests, CP_ROLLOUT_DEFAULT_MIN_REQUESTS);
    assert_true(s.max_p99_ratio == CP_ROLLOUT_DEFAULT_MAX_P99_RATIO);
    /* canonical form: durations in ms, defaults filled in */
    json_t *j = cp_rollout_spec_json(&s);
    assert_int_equal(json_integer_value(json_object_get(json_object_get(j, "gate"), "interval_ms")), 250);
    assert_int_equal(json_integer_value(json_object_get(json_object_get(j, "gate"), "min_requests")), 100);
    json_decref(j);
    cp_rollout_spec_dispose(&s);

    /* a label canary may make step 0 the labelled dataplanes alone */
    assert_int_equal(parse("{\"canary\": {\"labels\": {\"canary\": \"true\"}}, \"steps\": [{\"percent\": 0, \"hold\": \"1m\"}]}",
                           &s, err, sizeof(err)),
                     0);
    assert_non_null(s.canary_labels);
    cp_rollout_spec_dispose(&s);

    static const struct {
        const char *text, *want;
    } bad[] = {
        {"[]", "rollout: must be an object"},
        {"{}", "rollout.steps: required"},
        {"{\"steps\": [{\"percent\": 0, \"hold\": 1}]}", "rollout.steps[0].percent"},
        {"{\"steps\": [{\"percent\": 20, \"hold\": 1}, {\"percent\": 20, \"hold\": 1}]}",
         "rollout.steps[1].percent: steps must grow"},
        {"{\"steps\": [{\"percent\": 20}]}", "rollout.steps[0].hold: required"},
        {"{\"steps\": [{\"percent\": 20, \"hold\": \"x\"}]}", "rollout.steps[0].hold"},
        {"{\"steps\": [{\"percent\": 20, \"hold\": 1, \"x\": 1}]}", "rollout.steps[0].x: unknown key"},
        {"{\"canary\": {}, \"steps\": [{\"percent\": 20, \"hold\": 1}]}", "rollout.canary: give exactly one"},
        {"{\"canary\": {\"percent\": 101}, \"steps\": [{\"percent\": 20, \"hold\": 1}]}", "rollout.canary.percent"},
        {"{\"canary\": {\"labels\": {\"a b\": \"c\"}}, \"steps\": [{\"percent\": 20, \"hold\": 1}]}", "rollout.canary.labels.a b"},
        {"{\"steps\": [{\"percent\": 20, \"hold\": 1}], \"gate\": {\"max_p99_ratio\": -1}}", "rollout.gate.max_p99_ratio"},
        {"{\"steps\": [{\"percent\": 20, \"hold\": 1}], \"gate\": {\"interval\": \"10ms\"}}", "rollout.gate.interval"},
        {"{\"steps\": [{\"percent\": 20, \"hold\": 1}], \"gate\": {\"min_requests\": 1.5}}", "rollout.gate.min_requests"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        assert_int_equal(parse(bad[i].text, &s, err, sizeof(err)), -1);
        if (strncmp(err, bad[i].want, strlen(bad[i].want)) != 0)
            fail_msg("%s: got \"%s\", want \"%s...\"", bad[i].text, err, bad[i].want);
    }
}

static void test_traffic_and_p99(void **state)
{
    json_t *v = json_loads("{\"version\": 3, \"services\": {\"a\": {\"requests\": 100, \"errors\": 5, \"latency_ms_buckets\": "
                           "[0,0,0,90,0,0,0,0,0,10,0,0,0,0]}, \"b\": {\"requests\": 100, \"errors\": 0}}}",
                           0, NULL);
    int64_t version;
    cp_traffic_t t;
    char err[256];
    assert_int_equal(cp_traffic_parse(v, &version, &t, err, sizeof(err)), 0);
    json_decref(v);
    assert_int_equal(version, 3);
    assert_int_equal(t.requests, 200);
    assert_int_equal(t.errors, 5);
    cp_figures_t f;
    cp_figures_of(&t, &f);
    assert_true(f.error_rate == 0.025);
    /* 100 samples: the 99th is in the 1000 ms bucket (10 of them there) */
    assert_true(f.has_p99 && f.p99_ms == 1000);
    t.buckets[9] = 1;
    t.buckets[3] = 99;
    cp_figures_of(&t, &f);
    assert_true(f.p99_ms == 10); /* rank 99 of 100 is the last of the 10 ms bucket */
    t.buckets[3] = 0;
    t.buckets[13] = 5;
    t.buckets[9] = 0;
    cp_figures_of(&t, &f);
    assert_true(isinf(f.p99_ms));
    /* counters that went back (the dataplane restarted them): all of the current ones */
    cp_traffic_t cur = {.requests = 10, .errors = 1}, mark = {.requests = 50}, d;
    cp_traffic_since(&cur, &mark, &d);
    assert_int_equal(d.requests, 10);
    mark.requests = 4;
    cp_traffic_since(&cur, &mark, &d);
    assert_int_equal(d.requests, 6);
    assert_int_equal(d.errors, 1);

    v = json_loads("{\"version\": 1, \"services\": {\"a\": {\"requests\": 1, \"errors\": 2}}}", 0, NULL);
    assert_int_equal(cp_traffic_parse(v, &version, &t, err, sizeof(err)), -1);
    assert_string_equal(err, "traffic.services.a.errors: more errors than requests");
    json_decref(v);
}

static cp_figures_t fig(uint64_t requests, uint64_t errors, double p99)
{
    cp_figures_t f = {.requests = requests, .errors = errors, .p99_ms = p99, .has_p99 = requests > 0};
    f.error_rate = requests ? (double)errors / (double)requests : 0;
    return f;
}

static void test_judge(void **state)
{
    cp_rollout_spec_t s = {.max_error_rate_increase = 0.01, .max_p99_ratio = 1.5, .min_requests = 100};
    char reason[256];
    cp_figures_t base = fig(1000, 10, 100); /* 1% */
    cp_figures_t c = fig(99, 0, 100);
    assert_int_equal(cp_rollout_judge(&s, &c, &base, reason, sizeof(reason)), CP_VERDICT_INCONCLUSIVE);
    c = fig(100, 2, 100); /* 2% = 1% + 0.01: not more */
    assert_int_equal(cp_rollout_judge(&s, &c, &base, reason, sizeof(reason)), CP_VERDICT_PASS);
    c = fig(100, 3, 100);
    assert_int_equal(cp_rollout_judge(&s, &c, &base, reason, sizeof(reason)), CP_VERDICT_FAIL);
    assert_non_null(strstr(reason, "error rate"));
    c = fig(100, 0, 250); /* 250 > 1.5 × 100 */
    assert_int_equal(cp_rollout_judge(&s, &c, &base, reason, sizeof(reason)), CP_VERDICT_FAIL);
    assert_non_null(strstr(reason, "p99"));
    c = fig(100, 0, INFINITY);
    assert_int_equal(cp_rollout_judge(&s, &c, &base, reason, sizeof(reason)), CP_VERDICT_FAIL);
    /* no baseline: the error rate against 0, no p99 rule */
    c = fig(100, 1, 5000);
    assert_int_equal(cp_rollout_judge(&s, &c, NULL, reason, sizeof(reason)), CP_VERDICT_PASS);
    c = fig(100, 2, 5000);
    assert_int_equal(cp_rollout_judge(&s, &c, NULL, reason, sizeof(reason)), CP_VERDICT_FAIL);
}

static void test_order_and_share(void **state)
{
    assert_int_equal(cp_rollout_share(25, 4), 1);
    assert_int_equal(cp_rollout_share(10, 4), 1);
    assert_int_equal(cp_rollout_share(26, 4), 2);
    assert_int_equal(cp_rollout_share(100, 4), 4);
    assert_int_equal(cp_rollout_share(1, 1000), 10);
    assert_int_equal(cp_rollout_share(10, 0), 0);
    const char *a[] = {"dp0", "dp1", "dp2", "dp3", "dp4"}, *b[] = {"dp4", "dp3", "dp2", "dp1", "dp0"};
    cp_rollout_order(7, a, 5);
    cp_rollout_order(7, b, 5);
    for (size_t i = 0; i < 5; i++)
        assert_string_equal(a[i], b[i]); /* the same whatever the input order */
    /* another rollout, another order (for these ids and ids, not in general) */
    const char *c[] = {"dp0", "dp1", "dp2", "dp3", "dp4"};
    int differs = 0;
    for (int64_t id = 8; id < 20 && !differs; id++) {
        cp_rollout_order(id, c, 5);
        differs = strcmp(c[0], a[0]) != 0;
    }
    assert_true(differs);
    json_t *labels = json_pack("{ss ss}", "region", "eu", "canary", "true");
    json_t *want = json_pack("{ss}", "canary", "true"), *other = json_pack("{ss}", "region", "us");
    assert_true(cp_labels_match(labels, want));
    assert_false(cp_labels_match(labels, other));
    json_decref(labels);
    json_decref(want);
    json_decref(other);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_spec),
        cmocka_unit_test(test_traffic_and_p99),
        cmocka_unit_test(test_judge),
        cmocka_unit_test(test_order_and_share),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
