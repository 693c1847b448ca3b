/*
 * dp_probe: active health checks. One thread for the process runs an event loop of its own and
 * is, to the pools, one more worker (index nworkers): its probes are attempts (dp_attempt) through
 * the same connection pools, bounds and TLS settings as relays. They never take a limiter permit
 * and never count as client requests or relay attempts.
 *
 * Every DP_PROBE_TICK_MS the thread looks at the current generation: each endpoint of a service
 * with health_check.interval > 0 whose last probe ended an interval ago is probed. A probe passes
 * on HTTP 200 with a JSON-RPC result (no error); a result that is a hex quantity is the endpoint's
 * head block. Its outcome goes to dp_health_probe_result.
 */
#include <ctype.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <jansson.h>
#include "dp_attempt.h"
#include "dp_classify.h"
#include "dp_probe.h"
#include "pw_log.h"

#define DP_PROBE_TICK_MS 100
#define DP_PROBE_MAX_BODY (64 * 1024) /* a probe's answer is small; a larger one is a bad answer */

typedef struct st_dp_probe_t {
    h2o_req_t req; /* only pool, entity and headers are set: what an attempt reads of a request */
    dp_worker_t *w;
    dp_wgen_t *wg;     /* the generation the probe began on (counted in its nrequests) */
    dp_service_t *svc; /* of that generation */
    dp_endpoint_t *ep;
    dp_attempt_t *a;
    h2o_timeout_entry_t timer; /* health_check.timeout */
    uint64_t started_at;
    char *body; /* the answer's bytes so far (malloc) */
    size_t len;
    int too_large;
    int ended; /* the attempt ended: the result below waits for the timer */
    dp_probe_result_t result;
    int counted;   /* the result says something of the endpoint */
    int have_head; /* a passing answer's result was a hex quantity: */
    uint64_t head; /* that head block */
} dp_probe_t;

static void probe_finish(dp_probe_t *p, dp_probe_result_t res, int counted)
{
    dp_worker_t *w = p->w;
    uint64_t now = h2o_now(w->loop);
    if (h2o_timeout_is_linked(&p->timer))
        h2o_timeout_unlink(&p->timer);
    if (counted)
        dp_health_probe_result(p->svc, p->ep, res, p->have_head, p->head, (now - p->started_at) * 1000, now);
    p->ep->health.probing = 0;
    if (res != DP_PROBE_PASS)
        PW_DEBUG("probe of %s/%s: %s", p->svc->id, p->ep->label, dp_probe_result_names[res]);
    dp_attempt_dispose(p->a);
    dp_wgen_t *wg = p->wg;
    free(p->body);
    h2o_mem_clear_pool(&p->req.pool);
    free(p);
    if (--wg->nrequests == 0 && !wg->current)
        dp_wgen_release(w, wg);
}

static void on_probe_head(dp_attempt_t *a, const dp_h1_head_t *head)
{
    (void)head;
    if (a->mode == DP_H1_BODY_LENGTH && a->content_length <= DP_PROBE_MAX_BODY)
        a->hold = 1; /* the whole body in one buffer */
}

/* Takes the bytes waiting in the attempt's buffer (up to the bound). */
static void take_bytes(dp_probe_t *p, dp_attempt_t *a)
{
    size_t n = a->buf != NULL ? a->buf->len : 0;
    if (n == 0)
        return;
    if (p->len + n > DP_PROBE_MAX_BODY) {
        p->too_large = 1;
    } else {
        char *grown = realloc(p->body, p->len + n);
        if (grown != NULL) {
            memcpy(grown + p->len, a->buf->data, n);
            p->body = grown;
            p->len += n;
        } else {
            p->too_large = 1;
        }
    }
    dp_attempt_consume(a, n);
}

/* Body bytes of a streamed answer. */
static void on_probe_data(dp_attempt_t *a)
{
    dp_probe_t *p = a->owner;
    if (p->ended || a->hold)
        return;
    take_bytes(p, a);
    dp_attempt_resume(a);
}

static dp_probe_result_t result_of_failure(dp_attempt_result_t res)
{
    switch (res) {
    case DP_ATTEMPT_CONNECT_FAILURE:
        return DP_PROBE_CONNECT_FAILURE;
    case DP_ATTEMPT_RESET_BEFORE_RESPONSE:
        return DP_PROBE_RESET;
    case DP_ATTEMPT_TIMEOUT:
        return DP_PROBE_TIMEOUT;
    default:
        return DP_PROBE_BAD_RESPONSE;
    }
}

static void on_finish_timer(h2o_timeout_entry_t *entry)
{
    dp_probe_t *p = H2O_STRUCT_FROM_MEMBER(dp_probe_t, timer, entry);
    probe_finish(p, p->result, p->counted);
}

/* The attempt ended. This runs deep in its call chain (it may still touch itself, and call
 * on_data, after this returns): the probe is judged here and finished from a zero-delay timer. */
static void ended(dp_probe_t *p, dp_probe_result_t res, int counted)
{
    p->ended = 1;
    p->result = res;
    p->counted = counted;
    if (h2o_timeout_is_linked(&p->timer))
        h2o_timeout_unlink(&p->timer);
    p->timer.cb = on_finish_timer;
    h2o_timeout_link(p->w->loop, dp_worker_timeout(p->w, 0), &p->timer);
}

static void on_probe_end(dp_attempt_t *a, dp_attempt_result_t res, dp_error_t err)
{
    (void)err;
    dp_probe_t *p = a->owner;
    if (res == DP_ATTEMPT_LOCAL || res == DP_ATTEMPT_CANCELLED) {
        ended(p, DP_PROBE_BAD_RESPONSE, 0); /* the gateway's own trouble says nothing of the endpoint */
        return;
    }
    if (res != DP_ATTEMPT_OK) {
        ended(p, result_of_failure(res), 1);
        return;
    }
    if (a->hold) {
        /* a held body is whole in a->buf */
        p->len = 0;
        p->too_large = 0;
    }
    take_bytes(p, a);
    if (p->too_large) {
        ended(p, DP_PROBE_BAD_RESPONSE, 1);
        return;
    }
    const cfg_service_t *cs = p->svc->cfg;
    dp_verdict_t v = dp_classify(a->status, p->body, p->len, cs->rpc_errors.entries, cs->rpc_errors.size);
    dp_probe_result_t r;
    if (a->status != 200) {
        r = DP_PROBE_HTTP_ERROR;
    } else if (v.cls != DP_CLASS_OK) {
        r = DP_PROBE_RPC_ERROR;
    } else {
        /* an answer must be a JSON-RPC result to pass; a hex quantity is the endpoint's head */
        json_t *j = json_loadb(p->body != NULL ? p->body : "", p->len, 0, NULL);
        json_t *result = json_object_get(j, "result");
        r = json_is_object(j) && result != NULL ? DP_PROBE_PASS : DP_PROBE_BAD_RESPONSE;
        const char *hex = json_string_value(result);
        if (hex != NULL && hex[0] == '0' && (hex[1] == 'x' || hex[1] == 'X') && isxdigit((unsigned char)hex[2]) &&
            strlen(hex) <= 18) {
            char *end;
            p->head = strtoull(hex + 2, &end, 16);
            p->have_head = *end == '\0' && p->head != 0;
        }
        json_decref(j);
    }
    ended(p, r, 1);
}

static int on_probe_may_resend(dp_attempt_t *a)
{
    (void)a;
    return 1; /* a probe asks for the head: sending it twice is harmless */
}

static const dp_attempt_callbacks_t probe_callbacks = {on_probe_head, on_probe_end, on_probe_data, on_probe_may_resend};

static void on_probe_timeout(h2o_timeout_entry_t *entry)
{
    dp_probe_t *p = H2O_STRUCT_FROM_MEMBER(dp_probe_t, timer, entry);
    dp_attempt_cancel(p->a); /* on_end is not called */
    probe_finish(p, DP_PROBE_TIMEOUT, 1);
}

static void probe_start(dp_worker_t *w, dp_service_t *svc, dp_endpoint_t *ep, uint64_t now)
{
    const cfg_health_check_t *hc = &svc->cfg->health_check;
    dp_probe_t *p = calloc(1, sizeof(*p));
    if (p == NULL)
        return;
    h2o_mem_init_pool(&p->req.pool);
    p->req.entity = h2o_iovec_init(hc->request, strlen(hc->request));
    p->w = w;
    p->wg = w->wgen;
    p->wg->nrequests++;
    p->svc = svc;
    p->ep = ep;
    p->started_at = now;
    ep->health.probing = 1;
    ep->health.probe_next_ms = now + hc->interval_ms;
    char id[32];
    int n = snprintf(id, sizeof(id), "probe-%" PRIx64, ++w->reqid_seq);
    p->a = dp_attempt_create(w, &p->req, ep, h2o_iovec_init(id, (size_t)n), w->wgen->gen, &probe_callbacks, p);
    p->timer.cb = on_probe_timeout;
    h2o_timeout_link(w->loop, dp_worker_timeout(w, hc->timeout_ms), &p->timer);
    dp_attempt_start(p->a);
}

/* Starts the probes that are due. */
static void probe_tick(dp_worker_t *w)
{
    dp_gen_t *g = w->wgen->gen;
    uint64_t now = h2o_now(w->loop);
    for (size_t i = 0; i != g->nservices; ++i) {
        dp_service_t *svc = g->services + i;
        const cfg_health_check_t *hc = &svc->cfg->health_check;
        if (hc->interval_ms == 0) {
            /* turned off: what the checks set goes, once */
            int left = atomic_load(&svc->shared->health.head) != 0;
            for (size_t k = 0; !left && k != svc->nendpoints; ++k)
                left = (atomic_load(&svc->endpoints[k]->health.avail) & (DP_AVAIL_UNHEALTHY | DP_AVAIL_LAGGING)) != 0 ||
                       atomic_load(&svc->endpoints[k]->health.probe_fails) != 0;
            if (left)
                dp_health_checks_off(svc);
            continue;
        }
        for (size_t k = 0; k != svc->nendpoints; ++k) {
            dp_endpoint_t *ep = svc->endpoints[k];
            /* an interval shortened at runtime applies at once */
            if (ep->health.probe_next_ms > now + hc->interval_ms)
                ep->health.probe_next_ms = now + hc->interval_ms;
            if (!ep->health.probing && now >= ep->health.probe_next_ms)
                probe_start(w, svc, ep, now);
        }
    }
}

static void on_tick(h2o_timeout_entry_t *entry)
{
    dp_worker_t *w = H2O_STRUCT_FROM_MEMBER(dp_worker_t, sweep_timer, entry);
    dp_proxy_housekeeping(w);
    if (atomic_load(&w->server->exiting)) {
        w->exiting = 1;
        return;
    }
    probe_tick(w);
    h2o_timeout_link(w->loop, dp_worker_timeout(w, DP_PROBE_TICK_MS), &w->sweep_timer);
}

static void on_kick(h2o_multithread_receiver_t *receiver, h2o_linklist_t *messages)
{
    dp_worker_t *w = H2O_STRUCT_FROM_MEMBER(dp_worker_t, kick_receiver, receiver);
    while (!h2o_linklist_is_empty(messages))
        h2o_linklist_unlink(messages->next);
    atomic_store(&w->kick_pending, 0);
    dp_proxy_housekeeping(w);
    if (atomic_load(&w->server->exiting))
        w->exiting = 1;
}

static void *prober_main(void *arg)
{
    dp_worker_t *w = arg;
    dp_server_t *s = w->server;
    w->loop = h2o_evloop_create();
    h2o_context_init(&w->ctx, w->loop, &s->globalconf);
    h2o_multithread_register_receiver(w->ctx.queue, &w->kick_receiver, on_kick);
    dp_worker_refresh_gen(w);
    w->sweep_timer.cb = on_tick;
    h2o_timeout_link(w->loop, dp_worker_timeout(w, DP_PROBE_TICK_MS), &w->sweep_timer);
    atomic_store(&s->prober_ready, 1);
    while (!w->exiting) {
        h2o_evloop_run(w->loop, INT32_MAX);
        dp_worker_prune_timeouts(w);
    }
    if (h2o_timeout_is_linked(&w->sweep_timer))
        h2o_timeout_unlink(&w->sweep_timer);
    dp_proxy_close_idle(w);
    /* parks like the workers: h2o's per-thread state ends with the process */
    for (;;)
        h2o_evloop_run(w->loop, INT32_MAX);
    return NULL;
}

int dp_prober_start(dp_server_t *s)
{
    dp_worker_t *w = dp_server_prober(s);
    return pthread_create(&w->thread, NULL, prober_main, w);
}
