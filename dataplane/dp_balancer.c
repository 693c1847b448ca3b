/* dp_balancer: the choice of an endpoint (see dp_balancer.h). */
#include "dp_balancer.h"

size_t dp_balancer_pick(dp_service_t *svc, dp_tried_t tried)
{
    size_t n = svc->nendpoints;
    if (n == 1)
        return 0;
    /* only a request's first pick moves the tie-breaking cursor: were retries and hedges to move it
     * too, a service whose every request hedges once would start them all on the same endpoint */
    int first = tried == 0;
    if (tried != 0) {
        /* everything tried: choose among all, as on a first try */
        size_t untried = 0;
        for (size_t i = 0; i != n; ++i)
            untried += (tried & DP_TRIED_BIT(i)) == 0;
        if (untried == 0)
            tried = 0;
    }
    unsigned start =
        first ? atomic_fetch_add_explicit(&svc->rr, 1, memory_order_relaxed) : atomic_load_explicit(&svc->rr, memory_order_relaxed);
    size_t best = SIZE_MAX, best_failed = SIZE_MAX;
    int32_t best_out = INT32_MAX, best_failed_out = INT32_MAX;
    int skipped = 0;
    for (size_t k = 0; k != n; ++k) {
        size_t i = (start + k) % n;
        if (tried & DP_TRIED_BIT(i))
            continue;
        dp_endpoint_t *ep = svc->endpoints[i];
        int32_t out = atomic_load_explicit(&ep->outstanding, memory_order_relaxed);
        if (atomic_load_explicit(&ep->just_failed, memory_order_relaxed)) {
            skipped = 1;
            if (out < best_failed_out)
                best_failed = i, best_failed_out = out;
            continue;
        }
        if (out < best_out)
            best = i, best_out = out;
    }
    if (best == SIZE_MAX)
        return best_failed;
    /* an endpoint that just failed is passed over once; the next pick considers it again */
    if (skipped)
        for (size_t i = 0; i != n; ++i)
            atomic_store_explicit(&svc->endpoints[i]->just_failed, 0, memory_order_relaxed);
    return best;
}
