/*
 * dp_failover: the tries of one relay, until one of them is the answer (docs/dataplane.md,
 * "Failover"). A relay runs up to 1 + hedge.max_extra attempts at once (dp_try_t slots). Before one
 * is chosen, an answer small enough to judge (a Content-Length up to DP_CLASSIFY_MAX_BODY) is held
 * whole and classified (dp_classify); a failure named in retry_on leads to a retry on an untried
 * endpoint after a full-jitter backoff, when max_attempts, the service's budget (dp_budget) and the
 * request's safety (retry.unsafe_methods, looked at lazily) allow. A bigger or streaming answer is
 * chosen at its head. relay_choose makes an attempt the answer and cancels the others; its headers
 * become the client's only when the relay starts the response. The hedge timer starts another
 * attempt when none has answered after the delay (dp_latency for a percentile).
 *
 * This file owns the attempts' callbacks (an attempt's response headers are kept in its own list
 * here, keep_response_headers), the per-try, retry and hedge timers, the budget units and the
 * attempt counts. It never sends to the client: it tells the relay what was decided through
 * dp_relay_commit (an answer is chosen and the upstream side is over), dp_relay_fail (no try is
 * left, or the chosen one failed: fail with this error) and dp_relay_pump (the chosen answer has
 * bytes to send), declared in dp_relay_internal.h. dp_relay_pump may free the relay: it is the last
 * thing its caller does.
 */
#include <stdint.h>
#include <time.h>
#include "dp_classify.h"
#include "dp_cors.h"
#include "dp_relay_internal.h"
#include "dp_rpc.h"

static void on_retry_timer(h2o_timeout_entry_t *entry);
static void on_hedge_timer(h2o_timeout_entry_t *entry);

/* --- the tries --------------------------------------------------------------------------------- */

/* Header names arrive in any case; h2o's tokens are lowercase. */
static const h2o_token_t *lookup_token_ci(const char *name, size_t len)
{
    char lower[64];
    if (len > sizeof(lower))
        return NULL;
    for (size_t i = 0; i != len; ++i)
        lower[i] = h2o_tolower(name[i]);
    return h2o_lookup_token(lower, len);
}

/* The upstream's response headers, but for those that are ours to write, into the attempt's own
 * list: they become the client's only if this attempt is the one that answers (relay_choose). */
static void keep_response_headers(dp_relay_t *r, dp_attempt_t *a, const struct phr_header *hdrs, size_t n)
{
    h2o_req_t *req = r->req;
    int cors = dp_cors_on(r->svc); /* the service's CORS answer is Pathway's: the upstream's is dropped */
    for (size_t i = 0; i != n; ++i) {
        const h2o_token_t *tok = lookup_token_ci(hdrs[i].name, hdrs[i].name_len);
        if (tok != NULL) {
            /* hop-by-hop and framing headers are ours to write */
            if (tok == H2O_TOKEN_CONNECTION || tok == H2O_TOKEN_CONTENT_LENGTH || tok == H2O_TOKEN_TRANSFER_ENCODING ||
                tok == H2O_TOKEN_KEEP_ALIVE || tok == H2O_TOKEN_TE || tok == H2O_TOKEN_UPGRADE || tok == H2O_TOKEN_DATE ||
                tok == H2O_TOKEN_SERVER || (cors && tok == H2O_TOKEN_ACCESS_CONTROL_ALLOW_ORIGIN))
                continue;
            h2o_iovec_t v = h2o_strdup(&req->pool, hdrs[i].value, hdrs[i].value_len);
            h2o_add_header(&req->pool, &a->headers, tok, NULL, v.base, v.len);
        } else {
            if (hdrs[i].name_len == 0)
                continue;
            h2o_iovec_t name = h2o_strdup(&req->pool, hdrs[i].name, hdrs[i].name_len);
            h2o_strtolower(name.base, name.len);
            if (h2o_memis(name.base, name.len, H2O_STRLIT("x-request-id")))
                continue;
            if (cors && name.len > sizeof("access-control-") - 1 && memcmp(name.base, H2O_STRLIT("access-control-")) == 0)
                continue;
            h2o_iovec_t v = h2o_strdup(&req->pool, hdrs[i].value, hdrs[i].value_len);
            h2o_add_header_by_str(&req->pool, &a->headers, name.base, name.len, 0, NULL, v.base, v.len);
        }
    }
}

/* A small random number generator per thread, for the backoff's jitter. */
static uint64_t jitter_rand(void)
{
    static __thread uint64_t s;
    if (s == 0)
        s = (uint64_t)(uintptr_t)&s ^ ((uint64_t)time(NULL) << 20) ^ 0x9e3779b97f4a7c15ull;
    s ^= s << 13;
    s ^= s >> 7;
    s ^= s << 17;
    return s;
}

/* Full jitter: a random wait in [0, min(max, base * 2^(retry - 1))]. */
static uint64_t backoff_ms(const cfg_backoff_t *b, uint32_t retry)
{
    if (b->base_ms == 0)
        return 0;
    uint64_t bound = b->base_ms;
    for (uint32_t i = 1; i < retry && bound < b->max_ms; ++i)
        bound *= 2;
    if (bound > b->max_ms)
        bound = b->max_ms;
    return jitter_rand() % (bound + 1);
}

static void count_attempt(dp_attempt_t *a, dp_ares_t res)
{
    atomic_fetch_add_explicit(&a->ep->attempts[res], 1, memory_order_relaxed);
}

/* Tells endpoint health how an attempt went, once: `what` is DP_HEALTH_SUCCESS, DP_HEALTH_NEUTRAL
 * or the cfg_retry_on_t class of its failure. */
static void tell_health(dp_relay_t *r, dp_attempt_t *a, int what)
{
    if (a->health_told)
        return;
    a->health_told = 1;
    if (what == DP_HEALTH_SUCCESS && a->sent_ns != 0)
        dp_adaptive_record_attempt(r->svc->shared, r->req->entity.base, r->req->entity.len, a->sent_ns);
    uint64_t now = h2o_now(r->w->loop);
    dp_health_record(r->svc, a->ep, what, a->health_trial, what == DP_HEALTH_NEUTRAL ? 0 : (now - a->created_at) * 1000 + 1,
                     now);
}

/* What an answer says of its endpoint: success, neutral (the client's error, an error of no known
 * class) or the class of its failure. */
static int health_of_verdict(dp_verdict_t v)
{
    if (v.cls == DP_CLASS_OK)
        return DP_HEALTH_SUCCESS;
    if (v.cls == DP_CLASS_CLIENT_ERROR || v.cls == DP_CLASS_OTHER_ERROR || v.reason < 0)
        return DP_HEALTH_NEUTRAL;
    return v.reason;
}

static dp_ares_t ares_of_class(dp_class_t c)
{
    switch (c) {
    case DP_CLASS_OK:
        return DP_ARES_OK;
    case DP_CLASS_CLIENT_ERROR:
        return DP_ARES_CLIENT_ERROR;
    case DP_CLASS_RATE_LIMITED:
        return DP_ARES_RATE_LIMITED;
    case DP_CLASS_MISSING_DATA:
        return DP_ARES_MISSING_DATA;
    case DP_CLASS_SERVER_ERROR:
        return DP_ARES_SERVER_ERROR;
    default:
        return DP_ARES_OTHER_ERROR;
    }
}

/* A failed attempt: its pathway_attempts_total result and its retry_on reason (-1: none). */
static dp_ares_t ares_of_failure(dp_attempt_result_t res, int *reason)
{
    switch (res) {
    case DP_ATTEMPT_CONNECT_FAILURE:
        *reason = CFG_RETRY_ON_CONNECT_FAILURE;
        return DP_ARES_CONNECT_FAILURE;
    case DP_ATTEMPT_RESET_BEFORE_RESPONSE:
        *reason = CFG_RETRY_ON_RESET;
        return DP_ARES_RESET;
    case DP_ATTEMPT_BAD_RESPONSE:
        *reason = CFG_RETRY_ON_RESET; /* a broken or cut answer: as a reset */
        return DP_ARES_BAD_RESPONSE;
    case DP_ATTEMPT_TIMEOUT:
        *reason = CFG_RETRY_ON_TIMEOUT;
        return DP_ARES_TIMEOUT;
    case DP_ATTEMPT_CANCELLED:
        *reason = -1;
        return DP_ARES_CANCELLED;
    default:
        *reason = -1;
        return DP_ARES_LOCAL;
    }
}

static dp_try_t *try_of(dp_attempt_t *a)
{
    return a->owner;
}

/* The slot gives its attempt up (the attempt is over or cancelled): timer, budget unit. */
static void try_free(dp_try_t *t)
{
    dp_relay_t *r = t->r;
    if (h2o_timeout_is_linked(&t->timer))
        h2o_timeout_unlink(&t->timer);
    if (t->extra) {
        t->extra = 0;
        dp_budget_release(&r->svc->shared->budget);
    }
    t->a = NULL;
    r->nlive--;
}

/* Stops a live attempt that lost or is no longer wanted: its connection is closed. */
static void try_cancel(dp_try_t *t)
{
    dp_attempt_cancel(t->a);
    count_attempt(t->a, DP_ARES_CANCELLED);
    tell_health(t->r, t->a, DP_HEALTH_NEUTRAL);
    try_free(t);
}

static void on_attempt_head(dp_attempt_t *a, const dp_h1_head_t *head);
static void on_attempt_end(dp_attempt_t *a, dp_attempt_result_t res, dp_error_t err);
static void on_attempt_data(dp_attempt_t *a);
static int on_attempt_may_resend(dp_attempt_t *a);
static const dp_attempt_callbacks_t attempt_callbacks = {on_attempt_head, on_attempt_end, on_attempt_data, on_attempt_may_resend};

/* Whether the request calls a method in retry.unsafe_methods. Looked at only when a failure or a
 * hedge asks (a request that succeeds at once never pays for it), then remembered. */
static int relay_unsafe(dp_relay_t *r)
{
    if (r->unsafe < 0) {
        const cfg_retry_t *rc = &r->svc->cfg->retry;
        r->unsafe = rc->unsafe_methods.size != 0 &&
                    dp_rpc_calls_any(r->req->entity.base, r->req->entity.len, rc->unsafe_methods.entries, rc->unsafe_methods.size);
    }
    return r->unsafe;
}

static int on_attempt_may_resend(dp_attempt_t *a)
{
    return !relay_unsafe(try_of(a)->r);
}
static void on_try_timer(h2o_timeout_entry_t *entry);

/* Starts one more attempt on an endpoint this relay has not tried (when there is one). `extra`: it
 * holds a unit of the budget (a retry or a hedge). The attempt may fail before this returns. */
static void relay_start_try(dp_relay_t *r, int extra, int hedge)
{
    dp_try_t *t = NULL;
    for (size_t i = 0; i != DP_RELAY_MAX_LIVE; ++i)
        if (r->tries[i].a == NULL) {
            t = &r->tries[i];
            break;
        }
    if (t == NULL || r->nall == DP_RELAY_MAX_ATTEMPTS) { /* never: the callers bound both */
        if (extra)
            dp_budget_release(&r->svc->shared->budget);
        return;
    }
    int trial;
    size_t i = dp_balancer_pick(r->svc, r->tried, h2o_now(r->w->loop), &trial);
    r->tried |= DP_TRIED_BIT(i);
    dp_attempt_t *a = dp_attempt_create(r->w, r->req, r->svc->endpoints[i], r->reqid, r->wg->gen, &attempt_callbacks, t);
    a->health_trial = trial;
    a->timed = dp_adaptive_on(&r->svc->shared->adaptive);
    t->r = r;
    t->a = a;
    t->extra = extra;
    t->hedge = hedge;
    t->timer.cb = on_try_timer;
    r->all[r->nall++] = a;
    r->nlive++;
    uint64_t per_try = r->svc->cfg->retry.per_try_timeout_ms;
    if (per_try != 0)
        h2o_timeout_link(r->w->loop, dp_worker_timeout(r->w, per_try), &t->timer);
    dp_attempt_start(a);
}

/* This attempt answers the client: every other one is cancelled, its headers become the client's
 * when the response starts. Sends nothing. */
static void relay_choose(dp_relay_t *r, dp_try_t *t)
{
    r->attempt = t->a;
    r->attempt_extra = t->extra;
    r->hedge_won = t->hedge;
    t->extra = 0; /* the unit goes back when the upstream side finishes */
    if (h2o_timeout_is_linked(&t->timer))
        h2o_timeout_unlink(&t->timer);
    t->a = NULL;
    r->nlive--;
    for (size_t i = 0; i != DP_RELAY_MAX_LIVE; ++i)
        if (r->tries[i].a != NULL)
            try_cancel(&r->tries[i]);
    if (h2o_timeout_is_linked(&r->hedge_timer))
        h2o_timeout_unlink(&r->hedge_timer);
}

/* A try failed (an error, or an answer classed retriable by retry_on: `answer` is that attempt).
 * Starts another after a backoff when the settings, the request and the budget allow; else answers
 * with what there is. */
static void relay_after_failure(dp_relay_t *r, int reason, int retriable, dp_attempt_result_t res, dp_error_t err,
                                dp_attempt_t *answer)
{
    const cfg_retry_t *rc = &r->svc->cfg->retry;
    if (answer != NULL)
        r->kept = answer; /* the newest failed answer: what the client gets if no try does better */
    else
        r->last_err = err;
    if (r->nlive != 0)
        return; /* a hedge is still running: it may answer */
    if (retriable && reason >= 0 && ((rc->retry_on >> reason) & 1) != 0 && r->nretries + 1 < rc->max_attempts &&
        (res == DP_ATTEMPT_CONNECT_FAILURE || !relay_unsafe(r))) {
        if (dp_budget_try_acquire(&r->svc->shared->budget, rc->budget.percent, rc->budget.min_concurrent)) {
            r->nretries++;
            r->pending_extra = 1;
            DP_OWNER_ADD(r->svc->shared->stats[r->w->index].retries[reason], 1);
            h2o_timeout_link(r->w->loop, dp_worker_timeout(r->w, backoff_ms(&rc->backoff, r->nretries)), &r->retry_timer);
            return;
        }
    }
    if (r->kept != NULL) {
        /* the endpoint's own answer (a 503, a rate limit in a 200) tells the client more than ours */
        r->attempt = r->kept;
        dp_relay_commit(r, 1);
        return;
    }
    if (res == DP_ATTEMPT_RESET_BEFORE_RESPONSE && relay_unsafe(r))
        err = DP_ERR_UNSAFE_NOT_RETRIED;
    dp_relay_fail(r, err);
}

static void on_retry_timer(h2o_timeout_entry_t *entry)
{
    dp_relay_t *r = H2O_STRUCT_FROM_MEMBER(dp_relay_t, retry_timer, entry);
    r->pending_extra = 0;
    relay_start_try(r, 1, 0);
}

/* Whether a hedge may start now: not chosen yet, not unsafe, hedges left, an endpoint not tried. */
static int relay_may_hedge(dp_relay_t *r)
{
    const cfg_hedge_t *h = &r->svc->cfg->hedge;
    if (r->attempt != NULL || r->state != RS_UPSTREAM || r->nhedges >= h->max_extra || r->nlive == 0 ||
        r->nlive >= DP_RELAY_MAX_LIVE || r->nall >= DP_RELAY_MAX_ATTEMPTS)
        return 0;
    size_t untried = 0;
    for (size_t i = 0; i != r->svc->nendpoints; ++i)
        untried += (r->tried & DP_TRIED_BIT(i)) == 0;
    return untried != 0 && !relay_unsafe(r);
}

static void on_hedge_timer(h2o_timeout_entry_t *entry)
{
    dp_relay_t *r = H2O_STRUCT_FROM_MEMBER(dp_relay_t, hedge_timer, entry);
    if (!relay_may_hedge(r))
        return;
    const cfg_retry_t *rc = &r->svc->cfg->retry;
    if (!dp_budget_try_acquire(&r->svc->shared->budget, rc->budget.percent, rc->budget.min_concurrent))
        return;
    r->nhedges++;
    if (r->nhedges < r->svc->cfg->hedge.max_extra && r->hedge_delay_ms != 0)
        h2o_timeout_link(r->w->loop, dp_worker_timeout(r->w, r->hedge_delay_ms), &r->hedge_timer);
    relay_start_try(r, 1, 1);
}

static void on_attempt_head(dp_attempt_t *a, const dp_h1_head_t *head)
{
    dp_try_t *t = try_of(a);
    dp_relay_t *r = t->r;
    keep_response_headers(r, a, head->headers, head->nheaders);
    if (r->judge && a->mode == DP_H1_BODY_LENGTH && a->content_length <= DP_CLASSIFY_MAX_BODY) {
        a->hold = 1; /* judged when complete */
        return;
    }
    /* a big or streaming answer is relayed from its head on: it is the answer */
    relay_choose(r, t);
}

static void on_attempt_end(dp_attempt_t *a, dp_attempt_result_t res, dp_error_t err)
{
    dp_relay_t *r = try_of(a)->r;
    if (a == r->attempt) {
        /* the chosen attempt: its answer is the client's */
        if (res == DP_ATTEMPT_OK) {
            dp_verdict_t v = dp_classify(a->status, NULL, 0, NULL, 0);
            count_attempt(a, ares_of_class(v.cls));
            tell_health(r, a, health_of_verdict(v));
            dp_relay_commit(r, 0);
        } else {
            int reason;
            count_attempt(a, ares_of_failure(res, &reason));
            tell_health(r, a, reason >= 0 ? reason : DP_HEALTH_NEUTRAL);
            dp_relay_fail(r, err);
        }
        return;
    }
    dp_try_t *t = try_of(a);
    try_free(t);
    if (res == DP_ATTEMPT_OK) {
        const cfg_service_t *cs = r->svc->cfg;
        dp_verdict_t v = dp_classify(a->status, a->buf != NULL ? a->buf->data : "", a->buf != NULL ? a->buf->len : 0,
                                     cs->rpc_errors.entries, cs->rpc_errors.size);
        count_attempt(a, ares_of_class(v.cls));
        tell_health(r, a, health_of_verdict(v));
        a->judged_class = 1 + (int)v.cls;
        if (!dp_verdict_retriable(v, cs->retry.retry_on)) {
            /* an answer to give as it is (a result, a client's error, an error of no known class) */
            r->attempt = a;
            r->hedge_won = t->hedge;
            for (size_t i = 0; i != DP_RELAY_MAX_LIVE; ++i)
                if (r->tries[i].a != NULL)
                    try_cancel(&r->tries[i]);
            dp_relay_commit(r, 0);
            return; /* the attempt's on_data follows: it pumps */
        }
        relay_after_failure(r, v.reason, 1, res, 0, a);
        return;
    }
    int reason;
    count_attempt(a, ares_of_failure(res, &reason));
    tell_health(r, a, reason >= 0 ? reason : DP_HEALTH_NEUTRAL);
    relay_after_failure(r, reason, dp_error(err)->retriable, res, err, NULL);
}

static void on_attempt_data(dp_attempt_t *a)
{
    dp_relay_t *r = try_of(a)->r;
    if (r->finished || a != r->attempt)
        return;
    dp_relay_pump(r);
}

/* per_try_timeout: the attempt is given up as timed out. A chosen attempt is bounded by
 * timeouts.request only. */
static void on_try_timer(h2o_timeout_entry_t *entry)
{
    dp_try_t *t = H2O_STRUCT_FROM_MEMBER(dp_try_t, timer, entry);
    dp_attempt_t *a = t->a;
    dp_attempt_cancel(a);
    on_attempt_end(a, DP_ATTEMPT_TIMEOUT, DP_ERR_UPSTREAM_TIMEOUT);
}

/* --- what the relay asks of the failover part ----------------------------------------------- */

void dp_failover_init(dp_relay_t *r)
{
    r->retry_timer.cb = on_retry_timer;
    r->hedge_timer.cb = on_hedge_timer;
}

void dp_failover_start(dp_relay_t *r)
{
    dp_worker_t *w = r->w;
    const cfg_service_t *cs = r->svc->cfg;
    dp_budget_t *b = &r->svc->shared->budget;
    dp_budget_deposit(b, cs->retry.budget.percent, cs->retry.budget.min_concurrent);
    dp_budget_enter(b);
    r->budget_entered = 1;
    r->hedge_delay_ms =
        cs->hedge.max_extra != 0 && r->svc->nendpoints > 1 ? dp_latency_hedge_delay_ms(&r->svc->shared->latency, &cs->hedge) : 0;
    /* answers are held and judged only when another try could follow */
    r->judge = cs->retry.max_attempts > 1 || r->hedge_delay_ms != 0;
    r->unsafe = -1;
    if (r->hedge_delay_ms != 0)
        h2o_timeout_link(w->loop, dp_worker_timeout(w, r->hedge_delay_ms), &r->hedge_timer);
    relay_start_try(r, 0, 0);
}

void dp_failover_stop(dp_relay_t *r)
{
    if (h2o_timeout_is_linked(&r->hedge_timer))
        h2o_timeout_unlink(&r->hedge_timer);
    if (h2o_timeout_is_linked(&r->retry_timer))
        h2o_timeout_unlink(&r->retry_timer);
    for (size_t i = 0; r->nlive != 0 && i != DP_RELAY_MAX_LIVE; ++i)
        if (r->tries[i].a != NULL)
            try_cancel(&r->tries[i]);
    if (r->attempt != NULL) {
        dp_attempt_cancel(r->attempt);
        tell_health(r, r->attempt, DP_HEALTH_NEUTRAL); /* when its end was not told: the client left */
    }
    dp_budget_t *b = &r->svc->shared->budget;
    if (r->pending_extra) {
        r->pending_extra = 0;
        dp_budget_release(b);
    }
    if (r->attempt_extra) {
        r->attempt_extra = 0;
        dp_budget_release(b);
    }
    if (r->budget_entered) {
        r->budget_entered = 0;
        dp_budget_leave(b);
        if (r->nhedges != 0)
            DP_OWNER_ADD(r->svc->shared->stats[r->w->index].hedges[r->hedge_won ? 0 : 1], 1);
        if (r->attempt != NULL && r->attempt->complete)
            dp_latency_record(&r->svc->shared->latency, (h2o_now(r->w->loop) - r->started_at) * 1000);
    }
}

void dp_failover_timed_out(dp_relay_t *r)
{
    for (size_t i = 0; r->nlive != 0 && i != DP_RELAY_MAX_LIVE; ++i)
        if (r->tries[i].a != NULL)
            tell_health(r, r->tries[i].a, CFG_RETRY_ON_TIMEOUT);
    if (r->attempt != NULL && !r->attempt->complete)
        tell_health(r, r->attempt, CFG_RETRY_ON_TIMEOUT);
}

/* X-Pathway-Attempts when more than one try was made, X-Pathway-Hedged when a hedge started. */
void dp_failover_add_headers(dp_relay_t *r)
{
    h2o_req_t *req = r->req;
    if (r->nall > 1) {
        char *v = h2o_mem_alloc_pool(&req->pool, 8);
        int n = snprintf(v, 8, "%zu", r->nall);
        h2o_add_header_by_str(&req->pool, &req->res.headers, H2O_STRLIT("x-pathway-attempts"), 0, NULL, v, (size_t)n);
    }
    if (r->nhedges != 0) {
        if (r->hedge_won)
            h2o_add_header_by_str(&req->pool, &req->res.headers, H2O_STRLIT("x-pathway-hedged"), 0, NULL, H2O_STRLIT("won"));
        else
            h2o_add_header_by_str(&req->pool, &req->res.headers, H2O_STRLIT("x-pathway-hedged"), 0, NULL, H2O_STRLIT("lost"));
    }
}

void dp_failover_dispose(dp_relay_t *r)
{
    for (size_t i = 0; i != r->nall; ++i)
        dp_attempt_dispose(r->all[i]);
}
