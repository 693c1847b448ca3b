/* The retry budget (see dp_budget.h). */
#include "dp_budget.h"

void dp_budget_init(dp_budget_t *b, uint32_t min_concurrent)
{
    atomic_init(&b->active, 0);
    atomic_init(&b->extra, 0);
    atomic_init(&b->tokens, (int64_t)min_concurrent * DP_BUDGET_MILLI);
    atomic_init(&b->exhausted, 0);
}

void dp_budget_deposit(dp_budget_t *b, uint32_t percent, uint32_t min_concurrent)
{
    int64_t cap = ((int64_t)min_concurrent + percent) * DP_BUDGET_MILLI;
    int64_t add = (int64_t)percent * (DP_BUDGET_MILLI / 100);
    int64_t cur = atomic_load_explicit(&b->tokens, memory_order_relaxed);
    while (cur < cap) {
        int64_t next = cur + add > cap ? cap : cur + add;
        if (atomic_compare_exchange_weak_explicit(&b->tokens, &cur, next, memory_order_relaxed, memory_order_relaxed))
            return;
    }
}

uint32_t dp_budget_allowed(uint32_t active, uint32_t percent, uint32_t min_concurrent)
{
    uint64_t by_share = (uint64_t)active * percent / 100; /* 64 bits: active * 100 cannot wrap */
    return by_share > min_concurrent ? (uint32_t)by_share : min_concurrent;
}

/* Takes one token; 0 when the balance holds less than one. */
static int take_token(dp_budget_t *b)
{
    int64_t cur = atomic_load_explicit(&b->tokens, memory_order_relaxed);
    while (cur >= DP_BUDGET_MILLI) {
        if (atomic_compare_exchange_weak_explicit(&b->tokens, &cur, cur - DP_BUDGET_MILLI, memory_order_relaxed,
                                                  memory_order_relaxed))
            return 1;
    }
    return 0;
}

int dp_budget_try_acquire(dp_budget_t *b, uint32_t percent, uint32_t min_concurrent)
{
    uint32_t cur = atomic_load_explicit(&b->extra, memory_order_relaxed);
    for (;;) {
        /* active is read afresh on every try: a compare-exchange that lost to another thread may
         * have lost to one whose request just entered */
        uint32_t allowed = dp_budget_allowed(atomic_load_explicit(&b->active, memory_order_relaxed), percent, min_concurrent);
        if (cur >= allowed)
            goto refused;
        /* the increment happens only if no other thread moved `extra` since it was read, so two
         * threads can never both take the last unit */
        if (atomic_compare_exchange_weak_explicit(&b->extra, &cur, cur + 1, memory_order_relaxed, memory_order_relaxed))
            break;
    }
    if (take_token(b))
        return 1;
    atomic_fetch_sub_explicit(&b->extra, 1, memory_order_relaxed); /* the slot (a) goes back */
refused:
    atomic_fetch_add_explicit(&b->exhausted, 1, memory_order_relaxed);
    return 0;
}
