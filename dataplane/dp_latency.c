/* The streaming latency estimate (see dp_latency.h). */
#include "dp_latency.h"

#define SUB (1u << DP_LATENCY_SUB_BITS)
#define MAX_USEC ((UINT64_C(1) << (DP_LATENCY_MAX_EXP + 1)) - 1)

void dp_latency_init(dp_latency_t *l, uint32_t window)
{
    for (unsigned i = 0; i < DP_LATENCY_BUCKETS; i++)
        atomic_init(&l->_buckets[i], 0);
    atomic_init(&l->_since_halving, 0);
    atomic_flag_clear(&l->_halving);
    l->_window = window != 0 ? window : DP_LATENCY_WINDOW;
}

/* Below SUB, one bucket per microsecond; above, the power of two picks a group of SUB buckets and
 * the next DP_LATENCY_SUB_BITS bits below the top one pick the bucket in it. */
unsigned dp_latency_bucket_of(uint64_t usec)
{
    if (usec > MAX_USEC)
        usec = MAX_USEC;
    if (usec < SUB)
        return (unsigned)usec;
    unsigned e = 63u - (unsigned)__builtin_clzll(usec); /* floor(log2 usec) >= SUB_BITS */
    unsigned group = e - DP_LATENCY_SUB_BITS + 1;
    return group * SUB + (unsigned)((usec >> (e - DP_LATENCY_SUB_BITS)) & (SUB - 1));
}

uint64_t dp_latency_bucket_lower(unsigned idx)
{
    if (idx < SUB)
        return idx;
    unsigned group = idx / SUB, m = idx % SUB;
    return (uint64_t)(SUB + m) << (group - 1);
}

uint64_t dp_latency_bucket_upper(unsigned idx)
{
    return idx + 1 < DP_LATENCY_BUCKETS ? dp_latency_bucket_lower(idx + 1) : MAX_USEC + 1;
}

static void halve(dp_latency_t *l)
{
    for (unsigned i = 0; i < DP_LATENCY_BUCKETS; i++) {
        uint32_t v = atomic_load_explicit(&l->_buckets[i], memory_order_relaxed);
        /* subtract rather than store: recordings racing with this one are kept */
        if (v != 0)
            atomic_fetch_sub_explicit(&l->_buckets[i], v - v / 2, memory_order_relaxed);
    }
}

void dp_latency_record(dp_latency_t *l, uint64_t usec)
{
    atomic_fetch_add_explicit(&l->_buckets[dp_latency_bucket_of(usec)], 1, memory_order_relaxed);
    uint32_t n = atomic_fetch_add_explicit(&l->_since_halving, 1, memory_order_relaxed) + 1;
    /* one thread halves; the others go on recording (and, should it be slow, find the flag set) */
    if (n >= l->_window && !atomic_flag_test_and_set_explicit(&l->_halving, memory_order_acquire)) {
        atomic_fetch_sub_explicit(&l->_since_halving, n, memory_order_relaxed);
        halve(l);
        atomic_flag_clear_explicit(&l->_halving, memory_order_release);
    }
}

uint64_t dp_latency_percentile(dp_latency_t *l, unsigned pct, uint32_t min_samples)
{
    uint32_t counts[DP_LATENCY_BUCKETS];
    uint64_t total = 0;
    if (pct == 0 || pct > 100)
        return 0;
    /* one snapshot, so the walk below sees the same counts the total was taken from */
    for (unsigned i = 0; i < DP_LATENCY_BUCKETS; i++) {
        counts[i] = atomic_load_explicit(&l->_buckets[i], memory_order_relaxed);
        total += counts[i];
    }
    if (total == 0 || total < min_samples)
        return 0;
    uint64_t rank = (total * pct + 99) / 100; /* the rank-th smallest duration, 1-based */
    uint64_t seen = 0;
    for (unsigned i = 0; i < DP_LATENCY_BUCKETS; i++) {
        seen += counts[i];
        if (seen >= rank)
            return dp_latency_bucket_upper(i);
    }
    return dp_latency_bucket_upper(DP_LATENCY_BUCKETS - 1);
}

uint64_t dp_latency_hedge_delay_ms(dp_latency_t *l, const cfg_hedge_t *h)
{
    if (h->max_extra == 0)
        return 0;
    if (h->delay_percentile == 0)
        return h->delay_ms;
    uint64_t usec = dp_latency_percentile(l, h->delay_percentile, DP_LATENCY_MIN_SAMPLES);
    if (usec == 0)
        return 0;
    uint64_t ms = (usec + 999) / 1000;
    return ms > h->min_delay_ms ? ms : h->min_delay_ms;
}
