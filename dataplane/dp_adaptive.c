/* Adaptive concurrency (see dp_adaptive.h; the equations are in docs/dataplane.md). */
#include "dp_adaptive.h"
#include "dp_rpc.h"
#include "dp_internal.h"
#include <math.h>
#include <string.h>
#include <time.h>

uint64_t dp_adaptive_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void forget_locked(dp_adaptive_t *a)
{
    for (size_t i = 0; i != DP_ADAPTIVE_METHODS; ++i) {
        dp_adaptive_slot_t *s = a->_slots + i;
        atomic_store_explicit(&s->key, 0, memory_order_relaxed);
        atomic_store_explicit(&s->count, 0, memory_order_relaxed);
        atomic_store_explicit(&s->sum_ns, 0, memory_order_relaxed);
        s->base_cur = s->base_prev = s->last_mean = s->probe_base = 0;
    }
    a->_epoch_left = DP_ADAPTIVE_EPOCH;
    a->_last_cut = 0;
    a->_last_ratio = 0;
    a->_since_deep =
        DP_ADAPTIVE_EPOCH - 2; /* the first re-measuring cut after two windows (the first one starts from an empty queue) */
    a->_deep_pending = 0;
    a->_deep_again = 0;
    a->_deep_sample = 0;
    a->_deep_share = 1;
    atomic_store(&a->baseline_ns, 0);
    atomic_store(&a->sample_ns, 0);
    atomic_store(&a->ratio_milli, 0);
    atomic_store(&a->windows, 0);
    atomic_store(&a->samples, 0);
}

void dp_adaptive_init(dp_adaptive_t *a)
{
    memset(a, 0, sizeof(*a));
    pthread_mutex_init(&a->_mutex, NULL);
    atomic_init(&a->enabled, 0);
    atomic_init(&a->limit, 0);
    atomic_init(&a->window_end_ns, 0);
    forget_locked(a);
}

void dp_adaptive_dispose(dp_adaptive_t *a)
{
    pthread_mutex_destroy(&a->_mutex);
}

/* The settings' bounds, made safe for settings the schema has not checked (zeros). */
static uint32_t min_of(const dp_adaptive_t *a)
{
    return a->_cfg.min_limit != 0 ? a->_cfg.min_limit : 1;
}

static uint32_t max_of(const dp_adaptive_t *a)
{
    uint32_t mx = a->_cfg.max_limit != 0 ? a->_cfg.max_limit : UINT32_MAX;
    if (a->_cap != 0 && a->_cap < mx)
        mx = a->_cap;
    return mx < min_of(a) ? min_of(a) : mx;
}

static uint64_t window_ns(const dp_adaptive_t *a)
{
    return (a->_cfg.window_ms != 0 ? a->_cfg.window_ms : 1000) * 1000000u;
}

static double tolerance_of(const dp_adaptive_t *a)
{
    return a->_cfg.tolerance > 1000 ? a->_cfg.tolerance / 1000.0 : 1.5;
}

static double clamp_limit(const dp_adaptive_t *a, double l)
{
    if (l < min_of(a))
        l = min_of(a);
    if (l > max_of(a))
        l = max_of(a);
    return l;
}

static uint32_t publish_locked(dp_adaptive_t *a)
{
    uint32_t l = (uint32_t)a->_limit;
    atomic_store(&a->limit, l);
    return l;
}

uint32_t dp_adaptive_configure(dp_adaptive_t *a, const cfg_adaptive_t *c, uint32_t max_concurrent, uint64_t now_ns)
{
    uint32_t ret = 0;
    pthread_mutex_lock(&a->_mutex);
    int was_on = atomic_load(&a->enabled);
    a->_cfg = *c;
    a->_cap = max_concurrent;
    if (!c->enabled) {
        atomic_store(&a->enabled, 0);
        atomic_store(&a->limit, 0);
        forget_locked(a);
    } else {
        if (!was_on) {
            forget_locked(a);
            a->_limit = clamp_limit(a, c->initial_limit != 0 ? c->initial_limit : 20);
            atomic_store(&a->window_end_ns, now_ns + window_ns(a));
        } else {
            a->_limit = clamp_limit(a, a->_limit);
        }
        ret = publish_locked(a);
        atomic_store(&a->enabled, 1);
    }
    pthread_mutex_unlock(&a->_mutex);
    return ret;
}

/* FNV-1a, 64 bits. */
static uint64_t fnv1a(uint64_t h, const char *p, size_t n)
{
    for (size_t i = 0; i != n; ++i) {
        h ^= (unsigned char)p[i];
        h *= 0x100000001b3ull;
    }
    return h;
}

uint64_t dp_adaptive_method_key(const char *body, size_t len)
{
    const char *p = body, *end = body + len, *name = "";
    size_t namelen = 0;
    while (p != end && (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r'))
        ++p;
    int batch = p != end && *p == '[';
    if (dp_rpc_next_method(p, end, &name, &namelen) == NULL)
        name = "", namelen = 0; /* the first method's name, or none */
    uint64_t h = fnv1a(0xcbf29ce484222325ull, batch ? "[" : "{", 1);
    h = fnv1a(h, name, namelen);
    return h != 0 ? h : 1;
}

/* The slot of `key`: found, or claimed when free; slot 0 when every slot is taken. Lock-free:
 * two threads claiming the same free slot for different keys settle it by the compare-exchange,
 * the loser probes on. */
static dp_adaptive_slot_t *slot_of(dp_adaptive_t *a, uint64_t key)
{
    size_t start = (size_t)(key % DP_ADAPTIVE_METHODS);
    for (size_t i = 0; i != DP_ADAPTIVE_METHODS; ++i) {
        dp_adaptive_slot_t *s = a->_slots + (start + i) % DP_ADAPTIVE_METHODS;
        uint64_t k = atomic_load_explicit(&s->key, memory_order_acquire);
        if (k == key)
            return s;
        if (k == 0) {
            uint64_t expected = 0;
            if (atomic_compare_exchange_strong(&s->key, &expected, key) || expected == key)
                return s;
        }
    }
    return a->_slots;
}

int dp_adaptive_sample(dp_adaptive_t *a, uint64_t key, uint64_t latency_ns, uint64_t now_ns)
{
    if (!dp_adaptive_on(a))
        return 0;
    dp_adaptive_slot_t *s = slot_of(a, key);
    atomic_fetch_add_explicit(&s->sum_ns, latency_ns, memory_order_relaxed);
    atomic_fetch_add_explicit(&s->count, 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&a->samples, 1, memory_order_relaxed);
    if (now_ns < atomic_load_explicit(&a->window_end_ns, memory_order_relaxed))
        return 0;
    if (pthread_mutex_trylock(&a->_mutex) != 0)
        return 0;
    /* re-checked under the lock: another thread may have just closed it */
    if (now_ns < atomic_load_explicit(&a->window_end_ns, memory_order_relaxed) || !dp_adaptive_on(a)) {
        pthread_mutex_unlock(&a->_mutex);
        return 0;
    }
    return 1;
}

uint32_t dp_adaptive_close(dp_adaptive_t *a, uint32_t peak, int saturated, uint64_t now_ns)
{
    atomic_store(&a->window_end_ns, now_ns + window_ns(a));
    if (--a->_epoch_left == 0) {
        /* a new epoch: the baseline is now the lowest mean of the last epoch and of this one */
        a->_epoch_left = DP_ADAPTIVE_EPOCH;
        for (size_t i = 0; i != DP_ADAPTIVE_METHODS; ++i) {
            a->_slots[i].base_prev = a->_slots[i].base_cur;
            a->_slots[i].base_cur = 0;
        }
    }
    /* each method's window mean against its baseline */
    double n_all = 0, base_sum = 0, lat_sum = 0, frozen_sum = 0;
    for (size_t i = 0; i != DP_ADAPTIVE_METHODS; ++i) {
        dp_adaptive_slot_t *s = a->_slots + i;
        uint64_t n = atomic_exchange_explicit(&s->count, 0, memory_order_relaxed);
        uint64_t sum = atomic_exchange_explicit(&s->sum_ns, 0, memory_order_relaxed);
        if (n == 0)
            continue;
        uint64_t mean = sum / n;
        if (mean == 0)
            mean = 1;
        s->last_mean = mean;
        int have_base = s->base_cur != 0 || s->base_prev != 0;
        if ((n >= DP_ADAPTIVE_MIN_SAMPLES || !have_base) && (s->base_cur == 0 || mean < s->base_cur))
            s->base_cur = mean;
        uint64_t base = s->base_cur;
        if (base == 0 || (s->base_prev != 0 && s->base_prev < base))
            base = s->base_prev;
        n_all += (double)n;
        base_sum += (double)n * (double)base;
        frozen_sum += (double)n * (double)(s->probe_base != 0 ? s->probe_base : base);
        lat_sum += (double)sum;
    }
    uint32_t ret;
    if (n_all == 0) {
        ret = publish_locked(a);
        atomic_fetch_add(&a->windows, 1);
        return ret;
    }
    /* the window's latency against what the same calls take unqueued: sum(latency) / sum(baseline
     * of each sample's method). A queue of q adds q to every call, so this is 1 + q / (mean
     * unqueued latency) = concurrency / capacity when queued (Little's law), for any method mix;
     * a per-sample mean of ratios would weigh q against the cheapest calls and overstate it. */
    double ratio = lat_sum / base_sum, tol = tolerance_of(a), l = a->_limit;
    int hold = 0;
    if (a->_deep_pending == 2) {
        /* the window after a deep cut still holds answers to requests sent before it: judge the
         * cut on the next one, and change nothing meanwhile */
        a->_deep_pending = 1;
        hold = 1;
    } else if (a->_deep_pending == 1) {
        /* Latency that fell about in proportion to the concurrency (within 20%: a constant
         * overhead falls less) and by 5% at least is a queue's (a queue's wait grows with what is
         * in it): there may be more of it, cut deep again. Latency that stayed, or fell to a
         * floor, says the queue is gone. */
        double lat = lat_sum / frozen_sum; /* against the baselines of then: the method mix may differ */
        a->_deep_pending = 0;
        a->_deep_again = lat < a->_deep_sample * 0.95 && lat <= a->_deep_sample * a->_deep_share * 1.2;
    }
    a->_since_deep++;
    if (hold) {
        /* nothing: the cut is judged on the next window (also whether it helped, below) */
    } else if (ratio > tol && a->_last_cut && ratio * 100 >= a->_last_ratio * DP_ADAPTIVE_REBASE_GAIN &&
               ratio * 100 <= a->_last_ratio * DP_ADAPTIVE_REBASE_RISE) {
        /* the last cut left latency where it was: it is not our queue (the upstream got slower, or
         * others load it). Take today's latency as the baseline and undo the cut instead of
         * cutting on. A ratio that rose well past the last one is new trouble (the capacity
         * fell): that is cut again. */
        for (size_t i = 0; i != DP_ADAPTIVE_METHODS; ++i) {
            dp_adaptive_slot_t *s = a->_slots + i;
            if (s->last_mean != 0)
                s->base_cur = s->base_prev = s->last_mean;
        }
        base_sum = lat_sum;
        ratio = 1;
        a->_last_cut = 0;
        l = a->_before_cut; /* and the cut is undone */
    } else if (ratio > tol || a->_deep_again || (!saturated && peak * 2 >= l && a->_since_deep >= DP_ADAPTIVE_EPOCH)) {
        /* Over tolerance, the upstream queues: it serves `used / ratio` at once without a queue
         * (Little's law); go there at once, but never below a quarter of the limit in one window.
         * A baseline is a minimum, so it can only be too high (when every window so far had a
         * queue, as when the limit starts above the capacity), and then `used / ratio` errs high
         * and the queue never empties to show the truth. So a cut goes a fifth deeper (a deep
         * cut) once per epoch, and again at once while the last deep cut lowered latency as a
         * queue's would fall; and a limit that is in use (half of it at least) but not binding,
         * so that it would never grow into a cut, gets a deep cut within tolerance once per
         * epoch. The upstream's queue, if there is one, shrinks, and the baseline is measured
         * again. A deep cut that finds no queue costs a window at 80%; no probe pins the limit to
         * its minimum. */
        double used = peak != 0 && peak < l ? peak : l;
        double next = used / (ratio > 1 ? ratio : 1);
        if (ratio <= tol || a->_since_deep >= DP_ADAPTIVE_EPOCH || a->_deep_again) {
            next = next * DP_ADAPTIVE_DEEP_CUT / 100;
            a->_since_deep = 0;
            a->_deep_pending = 2;
            a->_deep_again = 0;
            a->_deep_sample = ratio;
            for (size_t i = 0; i != DP_ADAPTIVE_METHODS; ++i) {
                dp_adaptive_slot_t *s = a->_slots + i;
                s->probe_base = s->base_prev != 0 && (s->base_cur == 0 || s->base_prev < s->base_cur) ? s->base_prev : s->base_cur;
            }
        }
        if (next < l / DP_ADAPTIVE_MAX_CUT)
            next = l / DP_ADAPTIVE_MAX_CUT;
        if (a->_deep_pending)
            a->_deep_share = next / used;
        l = next;
        a->_last_cut = ratio > tol;
        a->_last_ratio = ratio;
        a->_before_cut = a->_limit;
    } else {
        a->_last_cut = 0;
        if (saturated) {
            /* within tolerance and the limit in use: probe upward, by the smoothing fraction or
             * the queue allowance sqrt(limit), whichever is larger */
            double step = l * (a->_cfg.smoothing / 1000.0);
            if (step < sqrt(l))
                step = sqrt(l);
            l += step;
        }
    }
    a->_limit = clamp_limit(a, l);
    atomic_store(&a->baseline_ns, (uint64_t)(base_sum / n_all));
    atomic_store(&a->sample_ns, (uint64_t)(lat_sum / n_all));
    atomic_store(&a->ratio_milli, (uint32_t)(ratio * 1000 + 0.5));
    atomic_fetch_add(&a->windows, 1);
    ret = publish_locked(a);
    return ret;
}

void dp_adaptive_close_end(dp_adaptive_t *a)
{
    pthread_mutex_unlock(&a->_mutex);
}

void dp_adaptive_stats(dp_adaptive_t *a, dp_adaptive_stats_t *out)
{
    out->enabled = atomic_load(&a->enabled);
    out->limit = atomic_load(&a->limit);
    out->baseline_ns = atomic_load(&a->baseline_ns);
    out->sample_ns = atomic_load(&a->sample_ns);
    out->ratio_milli = atomic_load(&a->ratio_milli);
    out->windows = atomic_load(&a->windows);
    out->samples = atomic_load(&a->samples);
}

void dp_adaptive_record_attempt(struct st_dp_svcshared_t *sh, const char *body, size_t len, uint64_t sent_ns)
{
    dp_adaptive_t *a = &sh->adaptive;
    uint64_t now = dp_adaptive_now_ns();
    uint64_t key = dp_adaptive_method_key(body != NULL ? body : "", body != NULL ? len : 0);
    if (!dp_adaptive_sample(a, key, now > sent_ns ? now - sent_ns : 1, now))
        return;
    uint32_t peak;
    int waited;
    dp_limiter_take_window(&sh->limiter, &peak, &waited);
    /* set while the close right is held: an apply that switches it off waits, and its 0 comes last */
    dp_limiter_set_adaptive(&sh->limiter, dp_adaptive_close(a, peak, waited || peak >= atomic_load(&a->limit), now));
    dp_adaptive_close_end(a);
}
