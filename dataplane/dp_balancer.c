/* dp_balancer: the choice of an endpoint (see dp_balancer.h). */
#include "dp_balancer.h"

size_t dp_balancer_pick(dp_service_t *svc, dp_tried_t tried, uint64_t now_ms, int *trial)
{
    size_t n = svc->nendpoints;
    *trial = 0;
    /* only a request's first pick moves the tie-breaking cursor: were retries and hedges to move it
     * too, a service whose every request hedges once would start them all on the same endpoint */
    unsigned start = tried == 0 ? atomic_fetch_add_explicit(&svc->rr, 1, memory_order_relaxed)
                                : atomic_load_explicit(&svc->rr, memory_order_relaxed);
    dp_tried_t lost = 0; /* half-open endpoints whose trial another thread took meanwhile */
    for (;;) {
        size_t best = SIZE_MAX;
        int best_key = -1, best_half = 0, any_failed = 0;
        int32_t best_out = INT32_MAX;
        for (size_t k = 0; k != n; ++k) {
            size_t i = n == 1 ? 0 : (start + k) % n;
            dp_endpoint_t *ep = svc->endpoints[i];
            int half = 0;
            int rank = dp_health_rank(ep, now_ms, &half);
            if (half && (lost & DP_TRIED_BIT(i)))
                rank = 0, half = 0;
            int failed = atomic_load_explicit(&ep->just_failed, memory_order_relaxed);
            any_failed |= failed;
            /* rank -1..2, then untried, then not just failed, then half-open: larger is better */
            int key = ((rank + 1) << 3) | ((tried & DP_TRIED_BIT(i)) == 0) << 2 | !failed << 1 | half;
            int32_t out = atomic_load_explicit(&ep->outstanding, memory_order_relaxed);
            if (key > best_key || (key == best_key && out < best_out))
                best = i, best_key = key, best_out = out, best_half = half;
        }
        dp_endpoint_t *ep = svc->endpoints[best];
        if (best_half && !dp_health_take_trial(ep, now_ms)) {
            lost |= DP_TRIED_BIT(best);
            if (DP_TRIED_BIT(best) != 0)
                continue;
        } else if (best_half) {
            *trial = 1;
        }
        /* an endpoint that just failed is passed over once; the next pick considers it again */
        if (any_failed && (best_key & 2))
            for (size_t i = 0; i != n; ++i)
                atomic_store_explicit(&svc->endpoints[i]->just_failed, 0, memory_order_relaxed);
        dp_svchealth_t *h = &svc->shared->health;
        int panic = (best_key >> 3) <= 1; /* rank 0 or -1: nothing in rotation or lagging is left */
        if (panic)
            atomic_fetch_add_explicit(&h->panic_picks, 1, memory_order_relaxed);
        if (atomic_load_explicit(&h->panic, memory_order_relaxed) != panic)
            atomic_store_explicit(&h->panic, panic, memory_order_relaxed);
        return best;
    }
}
