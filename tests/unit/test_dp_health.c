/* dp_health: passive ejection and its breaker, active check thresholds, lag, drain, and the
 * balancer's order (in rotation, lagging, panic). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdlib.h>
#include <string.h>
#include "dp_balancer.h"
#include "dp_health.h"
#include "pw_log.h"

#define T0 1800000000000ull /* unix ms */
#define SEC 1000ull

typedef struct {
    dp_service_t svc;
    cfg_service_t cfg;
    dp_endpoint_t eps[4];
    dp_endpoint_t *ptrs[4];
} fixture_t;

static fixture_t *make(size_t n)
{
    fixture_t *f = calloc(1, sizeof(*f));
    assert_non_null(f);
    static char *labels[] = {"a", "b", "c", "d"};
    for (size_t i = 0; i != n; ++i) {
        f->ptrs[i] = &f->eps[i];
        f->eps[i].label = labels[i];
    }
    f->svc.id = "eth";
    f->svc.nendpoints = n;
    f->svc.endpoints = f->ptrs;
    f->svc.cfg = &f->cfg;
    f->svc.shared = calloc(1, sizeof(dp_svcshared_t) + sizeof(dp_svcstats_t));
    assert_non_null(f->svc.shared);
    dp_svchealth_init(&f->svc.shared->health);
    f->cfg.outlier = (cfg_outlier_t){.consecutive_failures = 5,
                                     .failure_rate = {.threshold = 0, .min_requests = 20, .window_ms = 30 * SEC},
                                     .base_ejection_time_ms = 30 * SEC,
                                     .max_ejection_time_ms = 300 * SEC,
                                     .max_ejection_percent = 50};
    f->cfg.health_check = (cfg_health_check_t){
        .interval_ms = 5 * SEC, .timeout_ms = 2 * SEC, .unhealthy_threshold = 3, .healthy_threshold = 2, .max_block_lag = 8};
    return f;
}

static void destroy(fixture_t *f)
{
    dp_svchealth_dispose(&f->svc.shared->health);
    free(f->svc.shared);
    free(f);
}

static void fails(fixture_t *f, size_t i, int what, int n, uint64_t now)
{
    for (int k = 0; k != n; ++k)
        dp_health_record(&f->svc, &f->eps[i], what, 0, 1000, now);
}

static void test_consecutive_failures_eject(void **state)
{
    fixture_t *f = make(3);
    fails(f, 0, CFG_RETRY_ON_CONNECT_FAILURE, 4, T0);
    assert_int_equal(dp_health_state(&f->eps[0], T0), DP_STATE_HEALTHY);
    /* a success in between starts the count over */
    dp_health_record(&f->svc, &f->eps[0], DP_HEALTH_SUCCESS, 0, 1000, T0);
    fails(f, 0, CFG_RETRY_ON_CONNECT_FAILURE, 4, T0);
    assert_int_equal(dp_health_state(&f->eps[0], T0), DP_STATE_HEALTHY);
    /* the client's errors say nothing */
    dp_health_record(&f->svc, &f->eps[0], DP_HEALTH_NEUTRAL, 0, 0, T0);
    fails(f, 0, CFG_RETRY_ON_CONNECT_FAILURE, 1, T0);
    assert_int_equal(dp_health_state(&f->eps[0], T0), DP_STATE_EJECTED);
    assert_int_equal(atomic_load(&f->eps[0].health.ejections[CFG_RETRY_ON_CONNECT_FAILURE]), 1);
    assert_int_equal(atomic_load(&f->eps[0].health.ejected_until_ms), T0 + 30 * SEC);
    assert_false(dp_health_up(&f->eps[0], T0));
    assert_int_equal(dp_health_count_up(&f->svc, T0), 2);
    /* consecutive_failures 0: off */
    f->cfg.outlier.consecutive_failures = 0;
    fails(f, 1, CFG_RETRY_ON_HTTP_5XX, 100, T0);
    assert_int_equal(dp_health_state(&f->eps[1], T0), DP_STATE_HEALTHY);
    destroy(f);
}

static void test_max_ejection_percent(void **state)
{
    fixture_t *f = make(3); /* 50% of 3: one */
    fails(f, 0, CFG_RETRY_ON_RESET, 5, T0);
    fails(f, 1, CFG_RETRY_ON_RESET, 5, T0);
    fails(f, 2, CFG_RETRY_ON_RESET, 5, T0);
    assert_int_equal(dp_health_state(&f->eps[0], T0), DP_STATE_EJECTED);
    assert_int_equal(dp_health_state(&f->eps[1], T0), DP_STATE_HEALTHY);
    assert_int_equal(dp_health_state(&f->eps[2], T0), DP_STATE_HEALTHY);
    destroy(f);
    /* one endpoint: never ejected; two at 100%: one stays */
    f = make(1);
    fails(f, 0, CFG_RETRY_ON_RESET, 50, T0);
    assert_int_equal(dp_health_state(&f->eps[0], T0), DP_STATE_HEALTHY);
    destroy(f);
    f = make(2);
    f->cfg.outlier.max_ejection_percent = 100;
    fails(f, 0, CFG_RETRY_ON_RESET, 5, T0);
    fails(f, 1, CFG_RETRY_ON_RESET, 5, T0);
    assert_int_equal(dp_health_state(&f->eps[0], T0), DP_STATE_EJECTED);
    assert_int_equal(dp_health_state(&f->eps[1], T0), DP_STATE_HEALTHY);
    /* 0%: none */
    destroy(f);
    f = make(2);
    f->cfg.outlier.max_ejection_percent = 0;
    fails(f, 0, CFG_RETRY_ON_RESET, 5, T0);
    assert_int_equal(dp_health_state(&f->eps[0], T0), DP_STATE_HEALTHY);
    destroy(f);
}

static void test_half_open_trial(void **state)
{
    fixture_t *f = make(2);
    fails(f, 0, CFG_RETRY_ON_HTTP_5XX, 5, T0);
    uint64_t t1 = T0 + 30 * SEC;
    assert_int_equal(dp_health_state(&f->eps[0], t1 - 1), DP_STATE_EJECTED);
    assert_int_equal(dp_health_state(&f->eps[0], t1), DP_STATE_HALF_OPEN);
    /* the balancer hands out the one trial, preferring it among equals */
    int trial;
    assert_int_equal(dp_balancer_pick(&f->svc, 0, t1, &trial), 0);
    assert_int_equal(trial, 1);
    for (int k = 0; k != 3; ++k) {
        assert_int_equal(dp_balancer_pick(&f->svc, 0, t1, &trial), 1);
        assert_int_equal(trial, 0);
    }
    /* the trial fails: ejected again, for twice as long */
    dp_health_record(&f->svc, &f->eps[0], CFG_RETRY_ON_HTTP_5XX, 1, 1000, t1 + 5);
    assert_int_equal(dp_health_state(&f->eps[0], t1 + 5), DP_STATE_EJECTED);
    assert_int_equal(atomic_load(&f->eps[0].health.ejected_until_ms), t1 + 5 + 60 * SEC);
    /* a trial that said nothing (cancelled) frees the slot */
    uint64_t t2 = t1 + 5 + 60 * SEC;
    assert_true(dp_health_take_trial(&f->eps[0], t2));
    assert_false(dp_health_take_trial(&f->eps[0], t2));
    dp_health_record(&f->svc, &f->eps[0], DP_HEALTH_NEUTRAL, 1, 0, t2);
    assert_true(dp_health_take_trial(&f->eps[0], t2));
    /* a successful trial closes the breaker */
    dp_health_record(&f->svc, &f->eps[0], DP_HEALTH_SUCCESS, 1, 1000, t2 + 1);
    assert_int_equal(dp_health_state(&f->eps[0], t2 + 1), DP_STATE_HEALTHY);
    assert_true(dp_health_up(&f->eps[0], t2 + 1));
    /* the multiplier decays one step per base_ejection_time in rotation, and is capped */
    fails(f, 0, CFG_RETRY_ON_HTTP_5XX, 5, t2 + 1 + 10 * SEC);
    assert_int_equal(atomic_load(&f->eps[0].health.times_ejected), 3);
    assert_int_equal(atomic_load(&f->eps[0].health.ejected_until_ms), t2 + 1 + 10 * SEC + 90 * SEC);
    f->cfg.outlier.max_ejection_time_ms = 40 * SEC;
    uint64_t t3 = t2 + 1 + 100 * SEC;
    assert_true(dp_health_take_trial(&f->eps[0], t3));
    dp_health_record(&f->svc, &f->eps[0], CFG_RETRY_ON_HTTP_5XX, 1, 1000, t3);
    assert_int_equal(atomic_load(&f->eps[0].health.ejected_until_ms), t3 + 40 * SEC);
    uint64_t t4 = t3 + 40 * SEC;
    assert_true(dp_health_take_trial(&f->eps[0], t4));
    dp_health_record(&f->svc, &f->eps[0], DP_HEALTH_SUCCESS, 1, 1000, t4);
    fails(f, 0, CFG_RETRY_ON_HTTP_5XX, 5, t4 + 35 * 30 * SEC); /* long in rotation: back to one step */
    assert_int_equal(atomic_load(&f->eps[0].health.times_ejected), 1);
    destroy(f);
}

static void test_probe_ends_unreachability_ejections_only(void **state)
{
    fixture_t *f = make(2);
    fails(f, 0, CFG_RETRY_ON_CONNECT_FAILURE, 5, T0);
    fails(f, 0, CFG_RETRY_ON_CONNECT_FAILURE, 5, T0); /* ignored while ejected */
    assert_int_equal(atomic_load(&f->eps[0].health.ejections[CFG_RETRY_ON_CONNECT_FAILURE]), 1);
    /* not before base_ejection_time (flap resistance) */
    dp_health_probe_result(&f->svc, &f->eps[0], DP_PROBE_PASS, 0, 0, 100, T0 + 10 * SEC);
    assert_int_equal(dp_health_state(&f->eps[0], T0 + 10 * SEC), DP_STATE_EJECTED);
    /* a second ejection lasts 60 s; a probe ends it after 30 */
    f->eps[0].health.ejected_until_ms = T0 + 60 * SEC;
    dp_health_probe_result(&f->svc, &f->eps[0], DP_PROBE_PASS, 0, 0, 100, T0 + 31 * SEC);
    assert_int_equal(dp_health_state(&f->eps[0], T0 + 31 * SEC), DP_STATE_HEALTHY);
    /* a 429 ejection lasts its time whatever the probes say */
    fails(f, 1, CFG_RETRY_ON_HTTP_429, 5, T0 + 40 * SEC);
    dp_health_probe_result(&f->svc, &f->eps[1], DP_PROBE_PASS, 0, 0, 100, T0 + 75 * SEC);
    assert_int_equal(dp_health_state(&f->eps[1], T0 + 75 * SEC), DP_STATE_HALF_OPEN);
    /* a failing probe while half-open ejects it again */
    dp_health_probe_result(&f->svc, &f->eps[1], DP_PROBE_HTTP_ERROR, 0, 0, 100, T0 + 76 * SEC);
    assert_int_equal(dp_health_state(&f->eps[1], T0 + 76 * SEC), DP_STATE_EJECTED);
    assert_int_equal(atomic_load(&f->eps[1].health.times_ejected), 2);
    destroy(f);
}

static void test_failure_rate(void **state)
{
    fixture_t *f = make(3);
    f->cfg.outlier.consecutive_failures = 0;
    f->cfg.outlier.failure_rate.threshold = 50;
    /* alternating: never 5 in a row, but half fail; judged from 20 attempts on */
    for (int k = 0; k != 9; ++k) {
        dp_health_record(&f->svc, &f->eps[0], DP_HEALTH_SUCCESS, 0, 1000, T0 + k);
        dp_health_record(&f->svc, &f->eps[0], CFG_RETRY_ON_HTTP_429, 0, 1000, T0 + k);
    }
    assert_int_equal(dp_health_state(&f->eps[0], T0 + 10), DP_STATE_HEALTHY);
    dp_health_record(&f->svc, &f->eps[0], DP_HEALTH_SUCCESS, 0, 1000, T0 + 10);
    dp_health_record(&f->svc, &f->eps[0], CFG_RETRY_ON_HTTP_429, 0, 1000, T0 + 10);
    assert_int_equal(dp_health_state(&f->eps[0], T0 + 10), DP_STATE_EJECTED);
    assert_int_equal(atomic_load(&f->eps[0].health.ejections[CFG_RETRY_ON_HTTP_429]), 1);
    /* failures older than the window are forgotten: a third failing is not enough */
    for (int k = 0; k != 30; ++k)
        dp_health_record(&f->svc, &f->eps[1], k % 3 == 0 ? CFG_RETRY_ON_HTTP_5XX : DP_HEALTH_SUCCESS, 0, 1000, T0);
    for (int k = 0; k != 10; ++k)
        dp_health_record(&f->svc, &f->eps[1], CFG_RETRY_ON_HTTP_5XX, 0, 1000, T0 + 31 * SEC);
    /* old window gone: 10 failures of 10 is under min_requests */
    assert_int_equal(dp_health_state(&f->eps[1], T0 + 31 * SEC), DP_STATE_HEALTHY);
    destroy(f);
}

static void test_probes_and_lag(void **state)
{
    fixture_t *f = make(3);
    uint64_t t = T0;
    dp_health_probe_result(&f->svc, &f->eps[0], DP_PROBE_PASS, 1, 1000, 100, t);
    dp_health_probe_result(&f->svc, &f->eps[1], DP_PROBE_PASS, 1, 995, 100, t);
    dp_health_probe_result(&f->svc, &f->eps[2], DP_PROBE_PASS, 1, 980, 100, t);
    assert_int_equal(atomic_load(&f->svc.shared->health.head), 1000);
    assert_int_equal(atomic_load(&f->eps[1].health.lag), 5);
    assert_int_equal(atomic_load(&f->eps[2].health.lag), 20);
    assert_int_equal(dp_health_state(&f->eps[1], t), DP_STATE_HEALTHY);
    assert_int_equal(dp_health_state(&f->eps[2], t), DP_STATE_LAGGING);
    /* the balancer passes over the lagging one while the others are in rotation */
    int trial;
    for (int k = 0; k != 6; ++k)
        assert_int_not_equal(dp_balancer_pick(&f->svc, 0, t, &trial), 2);
    /* a raised max_block_lag un-lags it */
    f->cfg.health_check.max_block_lag = 30;
    dp_health_update_lag(&f->svc);
    assert_int_equal(dp_health_state(&f->eps[2], t), DP_STATE_HEALTHY);
    f->cfg.health_check.max_block_lag = 8;
    dp_health_update_lag(&f->svc);
    /* unhealthy after 3 failed probes, healthy after 2 passes */
    dp_health_probe_result(&f->svc, &f->eps[0], DP_PROBE_TIMEOUT, 0, 0, 100, t);
    dp_health_probe_result(&f->svc, &f->eps[0], DP_PROBE_RPC_ERROR, 0, 0, 100, t);
    assert_int_equal(dp_health_state(&f->eps[0], t), DP_STATE_HEALTHY);
    dp_health_probe_result(&f->svc, &f->eps[0], DP_PROBE_CONNECT_FAILURE, 0, 0, 100, t);
    assert_int_equal(dp_health_state(&f->eps[0], t), DP_STATE_UNHEALTHY);
    assert_int_equal(atomic_load(&f->eps[0].health.checks[DP_PROBE_CONNECT_FAILURE]), 1);
    /* only the lagging one and an unhealthy one are left: the lagging one, no panic */
    dp_health_probe_result(&f->svc, &f->eps[1], DP_PROBE_TIMEOUT, 0, 0, 100, t);
    dp_health_probe_result(&f->svc, &f->eps[1], DP_PROBE_TIMEOUT, 0, 0, 100, t);
    dp_health_probe_result(&f->svc, &f->eps[1], DP_PROBE_TIMEOUT, 0, 0, 100, t);
    assert_int_equal(dp_balancer_pick(&f->svc, 0, t, &trial), 2);
    assert_false(dp_health_service_panic(&f->svc, t));
    assert_int_equal(atomic_load(&f->svc.shared->health.panic_picks), 0);
    /* all out: panic, and a choice is still made */
    dp_health_probe_result(&f->svc, &f->eps[2], DP_PROBE_TIMEOUT, 0, 0, 100, t);
    dp_health_probe_result(&f->svc, &f->eps[2], DP_PROBE_TIMEOUT, 0, 0, 100, t);
    dp_health_probe_result(&f->svc, &f->eps[2], DP_PROBE_TIMEOUT, 0, 0, 100, t);
    assert_true(dp_health_service_panic(&f->svc, t));
    size_t i = dp_balancer_pick(&f->svc, 0, t, &trial);
    assert_true(i < 3);
    assert_int_equal(atomic_load(&f->svc.shared->health.panic_picks), 1);
    assert_int_equal(atomic_load(&f->svc.shared->health.panic), 1);
    dp_health_probe_result(&f->svc, &f->eps[0], DP_PROBE_PASS, 1, 1001, 100, t);
    assert_int_equal(dp_health_state(&f->eps[0], t), DP_STATE_UNHEALTHY);
    dp_health_probe_result(&f->svc, &f->eps[0], DP_PROBE_PASS, 1, 1002, 100, t);
    assert_int_equal(dp_health_state(&f->eps[0], t), DP_STATE_HEALTHY);
    assert_int_equal(dp_balancer_pick(&f->svc, 0, t, &trial), 0);
    assert_int_equal(atomic_load(&f->svc.shared->health.panic), 0);
    /* checks turned off: what they set is cleared */
    dp_health_checks_off(&f->svc);
    for (size_t k = 0; k != 3; ++k)
        assert_int_equal(dp_health_state(&f->eps[k], t), DP_STATE_HEALTHY);
    assert_int_equal(atomic_load(&f->svc.shared->health.head), 0);
    destroy(f);
}

static void test_drain(void **state)
{
    fixture_t *f = make(2);
    const char *why = NULL;
    assert_int_equal(dp_health_drain(&f->svc, &f->eps[0], 1, &why), 0);
    assert_int_equal(dp_health_state(&f->eps[0], T0), DP_STATE_DRAINING);
    int trial;
    for (int k = 0; k != 4; ++k)
        assert_int_equal(dp_balancer_pick(&f->svc, 0, T0, &trial), 1);
    /* even in panic, a drained endpoint is not used while another exists */
    for (int k = 0; k != 3; ++k)
        dp_health_probe_result(&f->svc, &f->eps[1], DP_PROBE_TIMEOUT, 0, 0, 100, T0);
    assert_int_equal(dp_balancer_pick(&f->svc, 0, T0, &trial), 1);
    /* the last one not drained stays */
    assert_int_equal(dp_health_drain(&f->svc, &f->eps[1], 1, &why), -1);
    assert_non_null(why);
    assert_int_equal(dp_health_drain(&f->svc, &f->eps[0], 0, &why), 0);
    assert_int_equal(dp_health_state(&f->eps[0], T0), DP_STATE_HEALTHY);
    destroy(f);
}

int main(void)
{
    pw_log_set_level(PW_LOG_ERROR);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_consecutive_failures_eject),
        cmocka_unit_test(test_max_ejection_percent),
        cmocka_unit_test(test_half_open_trial),
        cmocka_unit_test(test_probe_ends_unreachability_ejections_only),
        cmocka_unit_test(test_failure_rate),
        cmocka_unit_test(test_probes_and_lag),
        cmocka_unit_test(test_drain),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
