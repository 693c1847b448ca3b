/* dp_health: endpoint health (see dp_health.h). */
#include <inttypes.h>
#include "dp_health.h"
#include "dp_internal.h"
#include "pw_log.h"

const char *const dp_probe_result_names[DP_PROBE__COUNT] = {
#define DP_PROBE_NAME(n, s) s,
    DP_PROBE_RESULTS(DP_PROBE_NAME)
#undef DP_PROBE_NAME
};
const char *const dp_health_state_names[] = {"healthy", "draining", "ejected", "half_open", "unhealthy", "lagging"};

/* A half-open trial that has not reported after this is taken as lost: another may go. */
#define DP_TRIAL_STALE_MS (60 * 1000)

#define LD(x) atomic_load_explicit(&(x), memory_order_relaxed)
#define ST(x, v) atomic_store_explicit(&(x), (v), memory_order_relaxed)

void dp_svchealth_init(dp_svchealth_t *sh)
{
    pthread_mutex_init(&sh->mutex, NULL);
    atomic_init(&sh->head, 0);
    atomic_init(&sh->panic_picks, 0);
    atomic_init(&sh->panic, 0);
}

void dp_svchealth_dispose(dp_svchealth_t *sh)
{
    pthread_mutex_destroy(&sh->mutex);
}

/* --- passive ------------------------------------------------------------------------------- */

static void ewma_add(dp_ephealth_t *h, uint64_t latency_us)
{
    uint64_t old = LD(h->ewma_us);
    /* racing workers may lose a sample: it is an estimate */
    ST(h->ewma_us, old == 0 ? latency_us : old - old / 8 + latency_us / 8);
}

/* Counts one attempt in failure_rate's window; returns 1 when the window now says eject. */
static int window_count(dp_ephealth_t *h, const cfg_failure_rate_t *fr, int failed, uint64_t now_ms)
{
    uint64_t step = fr->window_ms / DP_HEALTH_WINDOW_STEPS;
    if (step == 0)
        step = 1;
    uint64_t epoch = now_ms / step;
    dp_health_step_t *s = &h->window[epoch % DP_HEALTH_WINDOW_STEPS];
    uint64_t seen = LD(s->epoch);
    if (seen != epoch && atomic_compare_exchange_strong(&s->epoch, &seen, epoch)) {
        /* this step's slot held an old step: start it over (a racing add may be lost) */
        ST(s->total, 0);
        ST(s->failed, 0);
    }
    atomic_fetch_add_explicit(&s->total, 1, memory_order_relaxed);
    if (!failed)
        return 0;
    atomic_fetch_add_explicit(&s->failed, 1, memory_order_relaxed);
    uint64_t total = 0, bad = 0;
    for (size_t i = 0; i != DP_HEALTH_WINDOW_STEPS; ++i) {
        uint64_t e = LD(h->window[i].epoch);
        if (e + DP_HEALTH_WINDOW_STEPS > epoch && e <= epoch) {
            total += LD(h->window[i].total);
            bad += LD(h->window[i].failed);
        }
    }
    return total >= fr->min_requests && bad * 100 >= (uint64_t)fr->threshold * total;
}

static void window_clear(dp_ephealth_t *h)
{
    for (size_t i = 0; i != DP_HEALTH_WINDOW_STEPS; ++i) {
        ST(h->window[i].epoch, 0);
        ST(h->window[i].total, 0);
        ST(h->window[i].failed, 0);
    }
}

/* How many of n endpoints may be ejected at once: max_ejection_percent of them, at least one when
 * the percentage is not 0, never all. */
static size_t ejectable(size_t n, uint32_t percent)
{
    if (n < 2 || percent == 0)
        return 0;
    size_t k = n * percent / 100;
    if (k == 0)
        k = 1;
    if (k > n - 1)
        k = n - 1;
    return k;
}

/* The ejection multiplier after time in rotation: one step back per base_ejection_time. */
static uint32_t decayed(const dp_ephealth_t *h, const cfg_outlier_t *o, uint64_t now_ms)
{
    uint32_t times = LD(h->times_ejected);
    uint64_t released = LD(h->released_at_ms);
    if (times == 0 || released == 0 || now_ms <= released)
        return times;
    uint64_t steps = (now_ms - released) / o->base_ejection_time_ms;
    return steps >= times ? 0 : times - (uint32_t)steps;
}

/* Ejects (or, for a failed trial, ejects again) ep for `reason`. Under the service's mutex. */
static void eject_locked(dp_service_t *svc, dp_endpoint_t *ep, int reason, int again, uint64_t now_ms, const char *why)
{
    dp_ephealth_t *h = &ep->health;
    const cfg_outlier_t *o = &svc->cfg->outlier;
    uint32_t times = again ? LD(h->times_ejected) : decayed(h, o, now_ms);
    if (times < 1000)
        times++;
    uint64_t ms = o->base_ejection_time_ms * times;
    if (ms > o->max_ejection_time_ms || ms / times != o->base_ejection_time_ms)
        ms = o->max_ejection_time_ms;
    ST(h->times_ejected, times);
    ST(h->ejected_at_ms, now_ms);
    ST(h->ejected_until_ms, now_ms + ms);
    ST(h->eject_reason, reason);
    ST(h->consecutive, 0);
    ST(h->trial, 0);
    window_clear(h);
    atomic_fetch_add_explicit(&h->ejections[reason], 1, memory_order_relaxed);
    atomic_fetch_or(&h->avail, DP_AVAIL_EJECTED);
    PW_WARN("endpoint %s/%s ejected for %" PRIu64 " ms (%s, %s; ejection %" PRIu32 ")", svc->id, ep->label, ms, why,
            dp_retry_reason_names[reason], times);
}

static void eject(dp_service_t *svc, dp_endpoint_t *ep, int reason, uint64_t now_ms, const char *why)
{
    dp_svchealth_t *sh = &svc->shared->health;
    pthread_mutex_lock(&sh->mutex);
    if ((LD(ep->health.avail) & DP_AVAIL_EJECTED) == 0) {
        size_t out = 0;
        for (size_t i = 0; i != svc->nendpoints; ++i)
            out += (LD(svc->endpoints[i]->health.avail) & DP_AVAIL_EJECTED) != 0;
        if (out < ejectable(svc->nendpoints, svc->cfg->outlier.max_ejection_percent))
            eject_locked(svc, ep, reason, 0, now_ms, why);
    }
    pthread_mutex_unlock(&sh->mutex);
}

/* The breaker closes: ep is back in rotation. */
static void release(dp_service_t *svc, dp_endpoint_t *ep, uint64_t now_ms, const char *why)
{
    dp_svchealth_t *sh = &svc->shared->health;
    dp_ephealth_t *h = &ep->health;
    pthread_mutex_lock(&sh->mutex);
    if (LD(h->avail) & DP_AVAIL_EJECTED) {
        ST(h->released_at_ms, now_ms);
        ST(h->consecutive, 0);
        ST(h->trial, 0);
        atomic_fetch_and(&h->avail, ~(uint32_t)DP_AVAIL_EJECTED);
        PW_INFO("endpoint %s/%s back in rotation (%s)", svc->id, ep->label, why);
    }
    pthread_mutex_unlock(&sh->mutex);
}

void dp_health_record(dp_service_t *svc, dp_endpoint_t *ep, int what, int trial, uint64_t latency_us, uint64_t now_ms)
{
    dp_ephealth_t *h = &ep->health;
    if (latency_us != 0 && what != DP_HEALTH_NEUTRAL)
        ewma_add(h, latency_us);
    if (what == DP_HEALTH_NEUTRAL) {
        if (trial)
            ST(h->trial, 0); /* it said nothing: the next request or probe is the trial */
        return;
    }
    const cfg_outlier_t *o = &svc->cfg->outlier;
    int rate_says = o->failure_rate.threshold != 0 && window_count(h, &o->failure_rate, what != DP_HEALTH_SUCCESS, now_ms);
    if (what == DP_HEALTH_SUCCESS) {
        if (LD(h->consecutive) != 0)
            ST(h->consecutive, 0);
        if (trial)
            release(svc, ep, now_ms, "a half-open trial request succeeded");
        return;
    }
    atomic_fetch_add_explicit(&h->failures[what], 1, memory_order_relaxed);
    uint32_t n = atomic_fetch_add_explicit(&h->consecutive, 1, memory_order_relaxed) + 1;
    if (trial) {
        dp_svchealth_t *sh = &svc->shared->health;
        pthread_mutex_lock(&sh->mutex);
        if (LD(h->avail) & DP_AVAIL_EJECTED)
            eject_locked(svc, ep, what, 1, now_ms, "its half-open trial request failed");
        pthread_mutex_unlock(&sh->mutex);
        return;
    }
    if (LD(h->avail) & DP_AVAIL_EJECTED)
        return; /* an attempt that began before the ejection */
    if (o->consecutive_failures != 0 && n >= o->consecutive_failures)
        eject(svc, ep, what, now_ms, "consecutive failures");
    else if (rate_says)
        eject(svc, ep, what, now_ms, "failure rate");
}

/* --- active -------------------------------------------------------------------------------- */

/* Whether an ejection for this reason may be ended by a passing probe: the probe proves the endpoint
 * reachable again, which is all a connect failure, reset or timeout said was wrong. */
static int probe_may_release(int reason)
{
    return reason == CFG_RETRY_ON_CONNECT_FAILURE || reason == CFG_RETRY_ON_RESET || reason == CFG_RETRY_ON_TIMEOUT;
}

void dp_health_probe_result(dp_service_t *svc, dp_endpoint_t *ep, dp_probe_result_t res, int have_head, uint64_t head,
                            uint64_t latency_us, uint64_t now_ms)
{
    dp_ephealth_t *h = &ep->health;
    const cfg_health_check_t *hc = &svc->cfg->health_check;
    atomic_fetch_add_explicit(&h->checks[res], 1, memory_order_relaxed);
    ST(h->last_probe, (int)res);
    ST(h->last_probe_ms, now_ms);
    ST(h->probe_latency_us, latency_us);
    uint32_t avail = LD(h->avail);
    if (res == DP_PROBE_PASS) {
        ST(h->probe_fails, 0);
        uint32_t passes = LD(h->probe_passes) + 1;
        ST(h->probe_passes, passes);
        if ((avail & DP_AVAIL_UNHEALTHY) && passes >= hc->healthy_threshold) {
            atomic_fetch_and(&h->avail, ~(uint32_t)DP_AVAIL_UNHEALTHY);
            PW_INFO("endpoint %s/%s healthy again (%" PRIu32 " probes passed)", svc->id, ep->label, passes);
        }
        /* an ejection for unreachability ends once a probe reaches it, but never before
         * base_ejection_time, so an endpoint that flaps is let back at most once per that time */
        if ((avail & DP_AVAIL_EJECTED) && probe_may_release(LD(h->eject_reason)) &&
            now_ms >= LD(h->ejected_at_ms) + svc->cfg->outlier.base_ejection_time_ms)
            release(svc, ep, now_ms, "a probe passed");
        if (have_head) {
            ST(h->head, head);
            uint64_t top = LD(svc->shared->health.head);
            while (head > top && !atomic_compare_exchange_weak(&svc->shared->health.head, &top, head))
                ;
        }
    } else {
        ST(h->probe_passes, 0);
        uint32_t fails = LD(h->probe_fails) + 1;
        ST(h->probe_fails, fails);
        if (!(avail & DP_AVAIL_UNHEALTHY) && fails >= hc->unhealthy_threshold) {
            atomic_fetch_or(&h->avail, DP_AVAIL_UNHEALTHY);
            PW_WARN("endpoint %s/%s unhealthy: %" PRIu32 " probes failed in a row (last: %s)", svc->id, ep->label, fails,
                    dp_probe_result_names[res]);
        }
        /* a half-open endpoint whose probe fails is ejected again */
        if ((avail & DP_AVAIL_EJECTED) && now_ms >= LD(h->ejected_until_ms)) {
            dp_svchealth_t *sh = &svc->shared->health;
            pthread_mutex_lock(&sh->mutex);
            if (LD(h->avail) & DP_AVAIL_EJECTED)
                eject_locked(svc, ep, LD(h->eject_reason), 1, now_ms, "a probe failed while half-open");
            pthread_mutex_unlock(&sh->mutex);
        }
    }
    dp_health_update_lag(svc);
}

void dp_health_update_lag(dp_service_t *svc)
{
    uint32_t max_lag = svc->cfg->health_check.max_block_lag;
    /* the service's head: the highest head of the endpoints it lists now */
    uint64_t top = 0;
    for (size_t i = 0; i != svc->nendpoints; ++i) {
        uint64_t head = LD(svc->endpoints[i]->health.head);
        if (head > top)
            top = head;
    }
    if (top != 0)
        ST(svc->shared->health.head, top);
    for (size_t i = 0; i != svc->nendpoints; ++i) {
        dp_endpoint_t *ep = svc->endpoints[i];
        dp_ephealth_t *h = &ep->health;
        uint64_t head = LD(h->head);
        uint64_t lag = head != 0 ? top - head : 0;
        ST(h->lag, lag);
        int lagging = max_lag != 0 && head != 0 && lag > max_lag;
        int was = (LD(h->avail) & DP_AVAIL_LAGGING) != 0;
        if (lagging && !was) {
            atomic_fetch_or(&h->avail, DP_AVAIL_LAGGING);
            PW_WARN("endpoint %s/%s lagging: head %" PRIu64 ", %" PRIu64 " blocks behind the service's %" PRIu64, svc->id,
                    ep->label, head, lag, top);
        } else if (!lagging && was) {
            atomic_fetch_and(&h->avail, ~(uint32_t)DP_AVAIL_LAGGING);
            PW_INFO("endpoint %s/%s caught up: %" PRIu64 " blocks behind", svc->id, ep->label, lag);
        }
    }
}

void dp_health_checks_off(dp_service_t *svc)
{
    for (size_t i = 0; i != svc->nendpoints; ++i) {
        dp_ephealth_t *h = &svc->endpoints[i]->health;
        if (LD(h->avail) & (DP_AVAIL_UNHEALTHY | DP_AVAIL_LAGGING))
            atomic_fetch_and(&h->avail, ~(uint32_t)(DP_AVAIL_UNHEALTHY | DP_AVAIL_LAGGING));
        ST(h->probe_passes, 0);
        ST(h->probe_fails, 0);
        ST(h->head, 0);
        ST(h->lag, 0);
    }
    ST(svc->shared->health.head, 0);
}

/* --- the operator --------------------------------------------------------------------------- */

int dp_health_drain(dp_service_t *svc, dp_endpoint_t *ep, int on, const char **why)
{
    dp_svchealth_t *sh = &svc->shared->health;
    pthread_mutex_lock(&sh->mutex);
    int ret = 0;
    if (on && !(LD(ep->health.avail) & DP_AVAIL_DRAINED)) {
        size_t left = 0;
        for (size_t i = 0; i != svc->nendpoints; ++i)
            left += svc->endpoints[i] != ep && !(LD(svc->endpoints[i]->health.avail) & DP_AVAIL_DRAINED);
        if (left == 0) {
            *why = "it is the service's last endpoint not drained: draining it would leave the service nothing to use";
            ret = -1;
        } else {
            atomic_fetch_or(&ep->health.avail, DP_AVAIL_DRAINED);
        }
    } else if (!on) {
        atomic_fetch_and(&ep->health.avail, ~(uint32_t)DP_AVAIL_DRAINED);
    }
    pthread_mutex_unlock(&sh->mutex);
    return ret;
}

/* --- reading ------------------------------------------------------------------------------- */

dp_health_state_t dp_health_state(const dp_endpoint_t *ep, uint64_t now_ms)
{
    const dp_ephealth_t *h = &ep->health;
    uint32_t a = LD(h->avail);
    if (a & DP_AVAIL_DRAINED)
        return DP_STATE_DRAINING;
    if (a & DP_AVAIL_EJECTED)
        return now_ms >= LD(h->ejected_until_ms) ? DP_STATE_HALF_OPEN : DP_STATE_EJECTED;
    if (a & DP_AVAIL_UNHEALTHY)
        return DP_STATE_UNHEALTHY;
    if (a & DP_AVAIL_LAGGING)
        return DP_STATE_LAGGING;
    return DP_STATE_HEALTHY;
}

int dp_health_rank(dp_endpoint_t *ep, uint64_t now_ms, int *half_open)
{
    dp_ephealth_t *h = &ep->health;
    uint32_t a = LD(h->avail);
    *half_open = 0;
    if (a == 0)
        return 2;
    if (a & DP_AVAIL_DRAINED)
        return -1;
    if (a & DP_AVAIL_UNHEALTHY)
        return 0;
    if (a & DP_AVAIL_EJECTED) {
        if (now_ms < LD(h->ejected_until_ms))
            return 0;
        if (LD(h->trial) && now_ms - LD(h->trial_at_ms) < DP_TRIAL_STALE_MS)
            return 0;
        *half_open = 1;
    }
    return (a & DP_AVAIL_LAGGING) ? 1 : 2;
}

int dp_health_take_trial(dp_endpoint_t *ep, uint64_t now_ms)
{
    dp_ephealth_t *h = &ep->health;
    int cur = LD(h->trial);
    if (cur && now_ms - LD(h->trial_at_ms) < DP_TRIAL_STALE_MS)
        return 0;
    if (!atomic_compare_exchange_strong(&h->trial, &cur, 1))
        return 0;
    ST(h->trial_at_ms, now_ms);
    return 1;
}

int dp_health_up(const dp_endpoint_t *ep, uint64_t now_ms)
{
    int half_open;
    return dp_health_rank((dp_endpoint_t *)ep, now_ms, &half_open) == 2;
}

size_t dp_health_count_up(const dp_service_t *svc, uint64_t now_ms)
{
    size_t n = 0;
    for (size_t i = 0; i != svc->nendpoints; ++i)
        n += dp_health_up(svc->endpoints[i], now_ms);
    return n;
}

int dp_health_service_panic(const dp_service_t *svc, uint64_t now_ms)
{
    for (size_t i = 0; i != svc->nendpoints; ++i) {
        int half_open;
        if (dp_health_rank(svc->endpoints[i], now_ms, &half_open) >= 1)
            return 0;
    }
    return 1;
}
