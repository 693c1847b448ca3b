/*
 * dp_relay: one client request, from the handler to its end: routing, strict framing, CORS,
 * admission (the limiters, with a watch on HTTP/1 clients that leave while waiting), and the
 * response to the client. The tries behind it (the attempts, retries, hedges and the choice of the
 * answer) are dp_failover.c's; the relay starts them (dp_failover_start), and failover tells it
 * what was decided (dp_relay_commit, dp_relay_fail, dp_relay_pump; see dp_relay_internal.h).
 * The relay alone decides what the client sees: the first byte to the client
 * (relay_start_response) is the point after which no other attempt may answer.
 *
 * Lifetimes: a relay lives in req->pool and is disposed by h2o when the request ends, including
 * when the client goes away; relay_dispose undoes whatever the relay still holds.
 *
 * Invariant: an h2o_send may free the relay before it returns. For HTTP/1 a send with no buffers
 * (the ERROR send, a FINAL send of 0 bytes under content-length) completes synchronously and ends
 * the request, disposing req->pool. So every h2o_send here is the last thing its function does,
 * and its callers return at once (dp_relay_pump, on_generator_proceed, on_relay_timer);
 * dp_relay_fail, which runs deep in call chains that look at the relay afterwards, never sends after
 * the response began (it defers the ERROR send to the next proceed or a zero-delay timer). A gateway
 * error before the response began (send_error) always writes bytes, which h2o completes later. An
 * answer chosen deep in an attempt's call chain with no on_data to follow is sent from pump_timer.
 */
#include <errno.h>
#include <inttypes.h>
#include <sys/socket.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "pw_http.h"
#include "dp_classify.h"
#include "dp_cors.h"
#include "dp_relay_internal.h"
#include "dp_rpc.h"
#include "pw_log.h"

static void relay_admit(dp_relay_t *r);
static void relay_unwatch(dp_relay_t *r);
static void relay_dispatch(dp_relay_t *r);
static void relay_finish_upstream(dp_relay_t *r);
static void on_pump_timer(h2o_timeout_entry_t *entry);

static void count_response(dp_worker_t *w, dp_service_t *svc, int status, uint64_t started_at)
{
    int cls = status / 100;
    if (cls < 1 || cls > 5)
        cls = 5;
    DP_OWNER_ADD(w->by_class[cls], 1);
    if (svc == NULL)
        return;
    dp_svcstats_t *st = &svc->shared->stats[w->index];
    DP_OWNER_ADD(st->by_class[cls], 1);
    uint64_t now = h2o_now(w->loop), ms = now - started_at;
    size_t b = 0;
    while (b < DP_HIST_BUCKETS - 1 && ms > dp_hist_bounds_ms[b])
        b++;
    DP_OWNER_ADD(st->hist[b], 1);
    DP_OWNER_ADD(st->duration_us_sum, ms * 1000);
}

static void access_log(dp_worker_t *w, h2o_req_t *req, dp_service_t *svc, int status, uint64_t bytes, uint64_t started_at,
                       h2o_iovec_t reqid)
{
    dp_gen_t *g = w->wgen->gen;
    if (!g->cfg->log.access_log || !pw_log_enabled(PW_LOG_INFO))
        return;
    PW_INFO("access service=%.*s status=%d bytes=%" PRIu64 " ms=%" PRIu64 " request_id=%.*s", svc ? (int)svc->idlen : 1,
            svc ? svc->id : "-", status, bytes, h2o_now(w->loop) - started_at, (int)reqid.len, reqid.base);
}

void dp_relay_count_upgrade(dp_worker_t *w, dp_service_t *svc)
{
    /* the class only: a session's length is no answer time, so the duration histogram is left alone */
    DP_OWNER_ADD(w->by_class[1], 1);
    DP_OWNER_ADD(svc->shared->stats[w->index].by_class[1], 1);
}

void dp_relay_log_upgrade(dp_worker_t *w, dp_service_t *svc, const char *endpoint, const uint64_t messages[2],
                          const uint64_t bytes[2], uint64_t started_at, h2o_iovec_t reqid)
{
    dp_gen_t *g = w->wgen->gen;
    if (!g->cfg->log.access_log || !pw_log_enabled(PW_LOG_INFO))
        return;
    PW_INFO("access service=%.*s status=101 bytes=%" PRIu64 " ms=%" PRIu64
            " request_id=%.*s endpoint=%s websocket_messages=%" PRIu64 "/%" PRIu64 " websocket_bytes=%" PRIu64 "/%" PRIu64,
            (int)svc->idlen, svc->id, bytes[1], h2o_now(w->loop) - started_at, (int)reqid.len, reqid.base, endpoint, messages[0],
            messages[1], bytes[0], bytes[1]);
}

/* An answer under 500 that failover classified, or that the client gets whole in this send (so its
 * class is readable here), and that a server's failure made (a JSON-RPC server error, a rate limit, missing data) is counted as
 * an error in the rollout evidence (dp_traffic), beside the 5xx answers. */
static void count_rpc_error(dp_relay_t *r, const dp_attempt_t *a, size_t n)
{
    if (a->status >= 500)
        return;
    dp_class_t cls;
    if (a->judged_class != 0) {
        cls = (dp_class_t)(a->judged_class - 1); /* failover classified it already (retries or hedging on) */
    } else {
        if (n != a->received)
            return;
        const cfg_service_t *cs = r->svc->cfg;
        cls = dp_classify(a->status, n != 0 ? a->buf->data : NULL, n, cs->rpc_errors.entries, cs->rpc_errors.size).cls;
    }
    if (cls == DP_CLASS_SERVER_ERROR || cls == DP_CLASS_RATE_LIMITED || cls == DP_CLASS_MISSING_DATA)
        DP_OWNER_ADD(r->svc->shared->stats[r->w->index].rpc_errors, 1);
}

/* Sends a gateway-made JSON-RPC error. The request must not have started its response. */
static void send_error(dp_worker_t *w, h2o_req_t *req, dp_service_t *svc, h2o_iovec_t reqid, uint64_t started_at, dp_error_t e,
                       uint64_t retry_after_s)
{
    const dp_error_info_t *ei = dp_error(e);
    int status = ei->status;
    size_t len = 0;
    char *body = dp_rpc_error_body(req->entity.base, req->entity.len, ei->rpc_code, ei->message, &len);
    h2o_iovec_t b = body != NULL ? h2o_strdup(&req->pool, body, len) : h2o_iovec_init(H2O_STRLIT("{}"));
    free(body);
    req->res.status = status;
    req->res.reason = pw_http_reason(status);
    req->res.content_length = b.len;
    h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_CONTENT_TYPE, NULL, H2O_STRLIT("application/json"));
    h2o_add_header_by_str(&req->pool, &req->res.headers, H2O_STRLIT("x-request-id"), 0, NULL, reqid.base, reqid.len);
    if (retry_after_s != 0) {
        char *ra = h2o_mem_alloc_pool(&req->pool, 24);
        int n = snprintf(ra, 24, "%" PRIu64, retry_after_s);
        h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_RETRY_AFTER, NULL, ra, (size_t)n);
    }
    if (svc != NULL && dp_cors_on(svc))
        dp_cors_add_headers(req, svc);
    count_response(w, svc, status, started_at);
    access_log(w, req, svc, status, b.len, started_at, reqid);
    h2o_send_inline(req, b.base, b.len);
}

void dp_relay_send_error(dp_worker_t *w, h2o_req_t *req, dp_service_t *svc, h2o_iovec_t reqid, uint64_t started_at, dp_error_t e)
{
    send_error(w, req, svc, reqid, started_at, e, 0);
}

/* Sends an answer from the cache (v[0..nv), `total` bytes, which must live until req->pool goes), with
 * X-Pathway-Cache: `res`. The request must not have started its response. */
static void send_cached(dp_worker_t *w, h2o_req_t *req, dp_service_t *svc, h2o_iovec_t reqid, uint64_t started_at, h2o_iovec_t *v,
                        size_t nv, size_t total, dp_cres_t res)
{
    static h2o_generator_t generator = {NULL, NULL};
    req->res.status = 200;
    req->res.reason = "OK";
    req->res.content_length = total;
    h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_CONTENT_TYPE, NULL, H2O_STRLIT("application/json"));
    h2o_add_header_by_str(&req->pool, &req->res.headers, H2O_STRLIT("x-request-id"), 0, NULL, reqid.base, reqid.len);
    const char *rs = dp_cres_names[res];
    h2o_add_header_by_str(&req->pool, &req->res.headers, H2O_STRLIT("x-pathway-cache"), 0, NULL, rs, strlen(rs));
    if (dp_cors_on(svc))
        dp_cors_add_headers(req, svc);
    count_response(w, svc, 200, started_at);
    access_log(w, req, svc, 200, total, started_at, reqid);
    h2o_start_response(req, &generator);
    h2o_send(req, v, nv, H2O_SEND_STATE_FINAL);
}

/* One cached answer with the client's id and jsonrpc (the iovecs in req->pool). */
static void send_entry(dp_worker_t *w, h2o_req_t *req, dp_service_t *svc, h2o_iovec_t reqid, uint64_t started_at,
                       const dp_cache_entry_t *e, const dp_ck_req_t *ck, dp_cres_t res)
{
    h2o_iovec_t *v = h2o_mem_alloc_pool(&req->pool, sizeof(*v) * 5);
    size_t nv = dp_relay_cache_splice(e, ck, v), total = 0;
    for (size_t i = 0; i != nv; ++i)
        total += v[i].len;
    send_cached(w, req, svc, reqid, started_at, v, nv, total, res);
}

static void release_hit(void *p)
{
    dp_cache_entry_release(*(dp_cache_entry_t **)p);
}

/* --- limiter stage -------------------------------------------------------------------------- */

/* Runs under the limiter's lock on the releasing thread: hand the relay to its own worker. */
static void on_limiter_grant(dp_limiter_waiter_t *lw)
{
    dp_relay_t *r = H2O_STRUCT_FROM_MEMBER(dp_relay_t, lw, lw);
    dp_worker_t *w = r->w;
    pthread_mutex_lock(&w->granted_mutex);
    h2o_linklist_insert(&w->granted, &r->granted_link);
    pthread_mutex_unlock(&w->granted_mutex);
    dp_worker_kick(w);
}

static dp_limiter_t *stage_limiter(dp_relay_t *r, int stage)
{
    return stage == 1 ? &r->svc->shared->limiter : &r->w->server->limiter;
}

/* The wait was granted (seen on our own thread): we hold the permit of the stage. */
static void relay_on_granted(dp_relay_t *r)
{
    if (r->lim_stage == 1)
        r->have_svc_permit = 1;
    else
        r->have_glob_permit = 1;
    r->lw._state = DP_WAITER_IDLE; /* out of the queue: only this thread looks at it now */
    relay_unwatch(r);
    r->lim_stage = 0;
    relay_admit(r);
}

/* Leaves a limiter queue. Returns 1 when the permit had been granted meanwhile (now held). */
static void relay_unwatch(dp_relay_t *r)
{
    if (h2o_linklist_is_linked(&r->queued_link))
        h2o_linklist_unlink(&r->queued_link);
}

static int relay_leave_queue(dp_relay_t *r)
{
    relay_unwatch(r);
    if (r->lim_stage == 0)
        return 0;
    int stage = r->lim_stage;
    r->lim_stage = 0;
    if (dp_limiter_cancel(stage_limiter(r, stage), &r->lw) != 1)
        return 0;
    pthread_mutex_lock(&r->w->granted_mutex);
    if (h2o_linklist_is_linked(&r->granted_link))
        h2o_linklist_unlink(&r->granted_link);
    pthread_mutex_unlock(&r->w->granted_mutex);
    if (stage == 1)
        r->have_svc_permit = 1;
    else
        r->have_glob_permit = 1;
    return 1;
}

/* h2o 2.2's HTTP/1 stops reading the client while a request is handled, so a client that closes
 * goes unnoticed until the answer is written: it would keep its limiter permits and an upstream
 * connection until the upstream answers or the request times out. HTTP/1 requests are therefore
 * checked with a peek at their socket until their response starts: every DP_PEEK_INTERVAL_MS
 * while in a limiter queue (w->queued), every DP_WATCH_INTERVAL_MS once admitted (w->watched,
 * where there can be many more of them). EOF or an error means the client is gone: the request
 * leaves the queue, or its upstream connection is closed (never reused: the upstream may still
 * answer on it) and its permits go back, as nginx does. Like nginx (proxy_ignore_client_abort
 * off), a half-close (EOF after a complete request) counts as gone: a client that shuts down its
 * sending side and still reads gets the 499 answer, not the upstream's. Bytes waiting to be read
 * (a pipelined request) are not EOF. HTTP/2 streams need no help: h2o disposes a reset stream at
 * once. */
#define DP_PEEK_INTERVAL_MS 20
#define DP_WATCH_INTERVAL_MS 100

static void peek_clients(dp_worker_t *w, h2o_linklist_t *list, h2o_timeout_entry_t *timer, uint64_t interval_ms)
{
    h2o_linklist_t gone;
    h2o_linklist_init_anchor(&gone);
    for (h2o_linklist_t *l = list->next, *next; l != list; l = next) {
        next = l->next;
        dp_relay_t *r = H2O_STRUCT_FROM_MEMBER(dp_relay_t, queued_link, l);
        char c;
        ssize_t n = recv(r->client_fd, &c, 1, MSG_PEEK | MSG_DONTWAIT);
        if (n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)) {
            h2o_linklist_unlink(&r->queued_link);
            h2o_linklist_insert(&gone, &r->queued_link);
        }
    }
    while (!h2o_linklist_is_empty(&gone)) {
        dp_relay_t *r = H2O_STRUCT_FROM_MEMBER(dp_relay_t, queued_link, gone.next);
        h2o_linklist_unlink(&r->queued_link);
        relay_leave_queue(r);
        /* the answer goes nowhere; writing it lets h2o notice the close and end the request */
        dp_relay_fail(r, DP_ERR_CLIENT_CLOSED);
    }
    if (!h2o_linklist_is_empty(list) && !h2o_timeout_is_linked(timer))
        h2o_timeout_link(w->loop, dp_worker_timeout(w, interval_ms), timer);
}

static void on_peek_timer(h2o_timeout_entry_t *entry)
{
    dp_worker_t *w = H2O_STRUCT_FROM_MEMBER(dp_worker_t, peek_timer, entry);
    peek_clients(w, &w->queued, &w->peek_timer, DP_PEEK_INTERVAL_MS);
}

static void on_watch_timer(h2o_timeout_entry_t *entry)
{
    dp_worker_t *w = H2O_STRUCT_FROM_MEMBER(dp_worker_t, watch_timer, entry);
    peek_clients(w, &w->watched, &w->watch_timer, DP_WATCH_INTERVAL_MS);
}

/* Watches an admitted HTTP/1 relay's client until its response starts. */
static void relay_watch(dp_relay_t *r)
{
    dp_worker_t *w = r->w;
    if (r->client_fd == -1 || h2o_linklist_is_linked(&r->queued_link))
        return;
    h2o_linklist_insert(&w->watched, &r->queued_link);
    if (!h2o_timeout_is_linked(&w->watch_timer))
        h2o_timeout_link(w->loop, dp_worker_timeout(w, DP_WATCH_INTERVAL_MS), &w->watch_timer);
}

/* The client socket of an HTTP/1 request (NULL for HTTP/2). h2o 2.2 exposes none; its
 * st_h2o_http1_conn_t begins with {h2o_conn_t super; h2o_socket_t *sock;}, which is what this
 * reads. */
static h2o_socket_t *http1_client_sock(h2o_req_t *req)
{
    if (req->version >= 0x200)
        return NULL;
    return *(h2o_socket_t **)((char *)req->conn + sizeof(h2o_conn_t));
}

static int http1_client_fd(h2o_req_t *req)
{
    h2o_socket_t *sock = http1_client_sock(req);
    return sock != NULL ? h2o_socket_get_fd(sock) : -1;
}

/* Strict framing of an HTTP/1 request (see dp_rpc_check_http1_head). libh2o keeps neither
 * Content-Length, Transfer-Encoding nor Host in req->headers, so the head is read again where
 * libh2o parsed it: at the front of the client socket's input buffer, which holds the request
 * until its response is done (plain, or decrypted TLS, bytes; names lowercased by libh2o in place).
 * With a body, the body follows the head in that buffer (as read, or chunks decoded in place), so
 * the head's end is known and a line scan does. Without one there is no length to doubt, and a
 * missing Host shows as libh2o's default authority (the pointer, not the text: "Host: default"
 * is another string). */
static dp_framing_t http1_check_framing(h2o_req_t *req)
{
    h2o_socket_t *sock = http1_client_sock(req);
    if (sock == NULL || sock->input == NULL)
        return DP_FRAMING_OK;
    const char *buf = sock->input->bytes;
    if (req->entity.base == NULL) {
        int no_host = req->input.authority.base == req->conn->hosts[0]->authority.hostport.base;
        return req->version >= 0x101 && no_host ? DP_FRAMING_NO_HOST : DP_FRAMING_OK;
    }
    if (req->entity.base >= buf && req->entity.base <= buf + sock->input->size)
        return dp_rpc_scan_http1_head(buf, (size_t)(req->entity.base - buf), req->version >= 0x101);
    return dp_rpc_check_http1_head(buf, sock->input->size); /* not where expected: parse it */
}

static uint64_t retry_after_s(dp_relay_t *r)
{
    uint64_t ms = r->wg->gen->cfg->limiter.queue_timeout_ms;
    uint64_t s = (ms + 999) / 1000;
    return s ? s : 1;
}

static void relay_admit(dp_relay_t *r)
{
    for (int stage = 1; stage <= 2; ++stage) {
        if (stage == 1 &&
            (r->have_svc_permit || (r->svc->cfg->limiter.max_concurrent == 0 && !dp_adaptive_on(&r->svc->shared->adaptive))))
            continue;
        if (stage == 2 && r->have_glob_permit)
            continue;
        r->lw.on_grant = on_limiter_grant;
        switch (dp_limiter_acquire(stage_limiter(r, stage), &r->lw)) {
        case DP_LIMITER_ACQUIRED:
            if (stage == 1)
                r->have_svc_permit = 1;
            else
                r->have_glob_permit = 1;
            break;
        case DP_LIMITER_QUEUED:
            r->lim_stage = stage;
            if (r->client_fd != -1 && !h2o_linklist_is_linked(&r->queued_link)) {
                h2o_linklist_insert(&r->w->queued, &r->queued_link);
                if (!h2o_timeout_is_linked(&r->w->peek_timer))
                    h2o_timeout_link(r->w->loop, dp_worker_timeout(r->w, DP_PEEK_INTERVAL_MS), &r->w->peek_timer);
            }
            if (!h2o_timeout_is_linked(&r->timer))
                h2o_timeout_link(r->w->loop, dp_worker_timeout(r->w, r->wg->gen->cfg->limiter.queue_timeout_ms), &r->timer);
            return;
        case DP_LIMITER_FULL:
            dp_relay_fail(r, DP_ERR_QUEUE_FULL);
            return;
        }
    }
    if (h2o_timeout_is_linked(&r->timer))
        h2o_timeout_unlink(&r->timer);
    relay_dispatch(r);
}

/* --- the upstream side ------------------------------------------------------------------------ */

/* An attempt that was chosen complete (held, or the last answer kept) goes to the client from a
 * zero-delay timer: the callers run deep in an attempt's call chain, where nothing may be sent. */
static void relay_pump_later(dp_relay_t *r)
{
    if (!h2o_timeout_is_linked(&r->pump_timer))
        h2o_timeout_link(r->w->loop, dp_worker_timeout(r->w, 0), &r->pump_timer);
}

void dp_relay_commit(dp_relay_t *r, int complete)
{
    relay_finish_upstream(r);
    if (complete)
        relay_pump_later(r);
}

static void on_pump_timer(h2o_timeout_entry_t *entry)
{
    dp_relay_t *r = H2O_STRUCT_FROM_MEMBER(dp_relay_t, pump_timer, entry);
    dp_relay_pump(r); /* may free r: nothing after it */
}

static void on_relay_timer(h2o_timeout_entry_t *entry);

/* A follower waits for the flight it joined, watched like an admitted relay, bounded by
 * timeouts.request. */
static void relay_follow(dp_relay_t *r)
{
    dp_worker_t *w = r->w;
    r->state = RS_FOLLOW;
    relay_watch(r);
    h2o_timeout_link(w->loop, dp_worker_timeout(w, r->svc->cfg->timeouts.request_ms), &r->timer);
}

void dp_relay_on_flight(dp_relay_t *r)
{
    dp_rcache_t *rc = r->cache;
    relay_unwatch(r);
    if (h2o_timeout_is_linked(&r->timer))
        h2o_timeout_unlink(&r->timer);
    switch (rc->fw.outcome) {
    case DP_FLIGHT_ANSWERED:
        r->state = RS_DONE;
        r->started = 1;
        r->finished = 1;
        /* may free r: nothing after it */
        send_entry(r->w, r->req, r->svc, r->reqid, r->started_at, rc->entry, &rc->req, DP_CRES_COALESCED);
        return;
    case DP_FLIGHT_FAILED:
        r->state = RS_ADMIT;
        dp_relay_fail(r, (dp_error_t)rc->fw.err);
        return;
    default: /* it leads the flight now, or goes alone */
        r->state = RS_ADMIT;
        relay_admit(r);
        return;
    }
}

static void relay_dispatch(dp_relay_t *r)
{
    dp_worker_t *w = r->w;
    r->state = RS_UPSTREAM;
    relay_watch(r);
    h2o_timeout_link(w->loop, dp_worker_timeout(w, r->svc->cfg->timeouts.request_ms), &r->timer);
    dp_failover_start(r);
}

/* --- client side ---------------------------------------------------------------------------- */

/* The commit: r->attempt's response goes to the client from here on. Before it, a failed attempt
 * leaves the client untouched (an attempt's headers are its own until now); after it, the client
 * has seen this attempt's status and nothing but this attempt may finish the answer. */
static void relay_start_response(dp_relay_t *r)
{
    h2o_req_t *req = r->req;
    dp_attempt_t *a = r->attempt;
    req->res.status = a->status;
    req->res.reason = a->reason;
    if (r->cache != NULL && r->cache->partial)
        req->res.content_length = r->collected.len; /* a batch reassembled from the cache and the upstream */
    else if (a->mode == DP_H1_BODY_LENGTH)
        req->res.content_length = a->content_length;
    if (dp_cors_on(r->svc))
        dp_cors_add_headers(req, r->svc);
    if (req->res.headers.size == 0) {
        req->res.headers = a->headers;
    } else if (a->headers.size != 0) {
        h2o_vector_reserve(&req->pool, &req->res.headers, req->res.headers.size + a->headers.size);
        memcpy(req->res.headers.entries + req->res.headers.size, a->headers.entries,
               a->headers.size * sizeof(a->headers.entries[0]));
        req->res.headers.size += a->headers.size;
    }
    h2o_add_header_by_str(&req->pool, &req->res.headers, H2O_STRLIT("x-request-id"), 0, NULL, r->reqid.base, r->reqid.len);
    dp_failover_add_headers(r);
    if (r->cache != NULL || r->svc->cfg->cache.enabled || r->svc->cfg->cache.coalesce_on)
        dp_relay_cache_add_header(r);
    relay_unwatch(r); /* from here on h2o's writes notice a client that left */
    h2o_start_response(req, &r->generator);
    r->started = 1;
}

/* Hands buffered bytes to h2o when it is not busy with the previous ones. */
/* A partial batch: the upstream's answer is collected whole, then the client's answer (cached items
 * and the upstream's, in the client's order) goes in one send. */
static void relay_pump_collected(dp_relay_t *r)
{
    int got = dp_relay_cache_collect(r, &r->collected);
    if (got == 0)
        return;
    if (got < 0) {
        dp_relay_fail(r, DP_ERR_OUT_OF_MEMORY);
        return;
    }
    dp_attempt_t *a = r->attempt;
    relay_start_response(r);
    r->finished = 1;
    count_response(r->w, r->svc, a->status, r->started_at);
    access_log(r->w, r->req, r->svc, a->status, r->collected.len, r->started_at, r->reqid);
    h2o_send(r->req, &r->collected, 1, H2O_SEND_STATE_FINAL); /* may free r: nothing after it */
}

void dp_relay_pump(dp_relay_t *r)
{
    if (r->client_sending || r->finished)
        return;
    dp_attempt_t *a = r->attempt;
    if (a == NULL)
        return;
    if (r->cache != NULL && r->cache->partial) {
        relay_pump_collected(r);
        return;
    }
    size_t n = a->buf != NULL ? a->buf->len : 0;
    if (n == 0 && !a->complete)
        return;
    if (!r->started)
        relay_start_response(r);
    h2o_iovec_t v = h2o_iovec_init(a->buf != NULL ? a->buf->data : NULL, n);
    r->sending = n;
    h2o_send_state_t state = H2O_SEND_STATE_IN_PROGRESS;
    if (a->complete) {
        state = H2O_SEND_STATE_FINAL;
        r->finished = 1;
        count_response(r->w, r->svc, a->status, r->started_at);
        count_rpc_error(r, a, n);
        access_log(r->w, r->req, r->svc, a->status, a->received, r->started_at, r->reqid);
    } else {
        r->client_sending = 1;
    }
    if (r->cache != NULL)
        dp_relay_cache_data(r, a, v.base, n, a->complete);
    h2o_send(r->req, &v, n != 0 ? 1 : 0, state);
}

static void on_generator_proceed(h2o_generator_t *gen, h2o_req_t *req)
{
    dp_relay_t *r = H2O_STRUCT_FROM_MEMBER(dp_relay_t, generator, gen);
    if (r->attempt == NULL)
        return;
    r->client_sending = 0;
    dp_attempt_consume(r->attempt, r->sending);
    r->sending = 0;
    if (r->abort_pending) {
        /* may free r (see dp_relay_fail): nothing after it */
        h2o_send(req, NULL, 0, H2O_SEND_STATE_ERROR);
        return;
    }
    dp_attempt_resume(r->attempt);
    if (r->finished)
        return;
    dp_relay_pump(r);
}

static void on_generator_stop(h2o_generator_t *gen, h2o_req_t *req)
{
    /* everything is undone in relay_dispose, which h2o runs right after */
}

/* Gives back what the upstream side holds: the request timer (unless it is to end the stream), the
 * tries and their budget (dp_failover_stop), the limiter permits. Idempotent. */
static void relay_finish_upstream(dp_relay_t *r)
{
    if (h2o_timeout_is_linked(&r->timer) && !r->abort_pending) /* that timer ends the stream */
        h2o_timeout_unlink(&r->timer);
    dp_failover_stop(r);
    if (relay_leave_queue(r)) {
        /* granted while leaving: the permit is ours and is returned below */
    }
    if (r->have_svc_permit) {
        r->have_svc_permit = 0;
        dp_limiter_release(&r->svc->shared->limiter);
    }
    if (r->have_glob_permit) {
        r->have_glob_permit = 0;
        dp_limiter_release(&r->w->server->limiter);
    }
    r->state = RS_DONE;
}

void dp_relay_fail(dp_relay_t *r, dp_error_t e)
{
    int status = dp_error(e)->status;
    if (r->cache != NULL)
        dp_relay_cache_stop(r, e);
    relay_finish_upstream(r);
    if (r->finished)
        return;
    if (!r->started) {
        r->finished = 1;
        /* the error is the gateway's alone */
        r->req->res.headers = (h2o_headers_t){NULL, 0, 0};
        dp_failover_add_headers(r);
        send_error(r->w, r->req, r->svc, r->reqid, r->started_at, e, status == 503 ? retry_after_s(r) : 0);
        return;
    }
    /* The status line is gone: all we can do is cut the stream short. The ERROR send is never
     * made here: for HTTP/1 with nothing to write, h2o completes it synchronously and frees
     * req->pool (and r) before h2o_send returns, while our callers still look at r. It is made at
     * the next proceed (a send is in progress) or from a zero-delay timer, each of which returns
     * right after it. */
    count_response(r->w, r->svc, status, r->started_at);
    PW_WARN("relay %.*s: %s after the response began", (int)r->reqid.len, r->reqid.base, dp_error(e)->message);
    r->finished = 1;
    r->abort_pending = 1;
    if (!r->client_sending)
        h2o_timeout_link(r->w->loop, dp_worker_timeout(r->w, 0), &r->timer);
}

static void on_relay_timer(h2o_timeout_entry_t *entry)
{
    dp_relay_t *r = H2O_STRUCT_FROM_MEMBER(dp_relay_t, timer, entry);
    if (r->abort_pending) {
        /* the deferred end of a stream that failed after it began; may free r */
        h2o_send(r->req, NULL, 0, H2O_SEND_STATE_ERROR);
        return;
    }
    if (r->state == RS_FOLLOW) {
        dp_relay_fail(r, DP_ERR_UPSTREAM_TIMEOUT); /* leaves the flight */
        return;
    }
    if (r->state == RS_ADMIT) {
        int stage = r->lim_stage;
        if (relay_leave_queue(r)) {
            relay_admit(r); /* granted in the same instant: go on */
            return;
        }
        dp_limiter_timed_out(stage_limiter(r, stage));
        dp_relay_fail(r, DP_ERR_QUEUE_TIMEOUT);
        return;
    }
    dp_failover_timed_out(r);
    dp_relay_fail(r, DP_ERR_UPSTREAM_TIMEOUT);
}

static void relay_dispose(void *p)
{
    dp_relay_t *r = p;
    dp_worker_t *w = r->w;
    dp_relay_cache_dispose(r);
    relay_finish_upstream(r);
    if (h2o_timeout_is_linked(&r->timer))
        h2o_timeout_unlink(&r->timer);
    if (h2o_timeout_is_linked(&r->pump_timer))
        h2o_timeout_unlink(&r->pump_timer);
    dp_failover_dispose(r);
    DP_OWNER_ADD(w->active, -1);
    dp_wgen_t *wg = r->wg;
    if (--wg->nrequests == 0 && !wg->current)
        dp_wgen_release(w, wg);
}

/* --- handler -------------------------------------------------------------------------------- */

int dp_proxy_on_req(h2o_handler_t *self, h2o_req_t *req)
{
    dp_worker_t *w = ((dp_relay_handler_t *)self)->h1_only ? H2O_STRUCT_FROM_MEMBER(dp_worker_t, ctx_h1, req->conn->ctx)
                                                           : H2O_STRUCT_FROM_MEMBER(dp_worker_t, ctx, req->conn->ctx);
    dp_worker_refresh_gen(w);
    dp_gen_t *g = w->wgen->gen;
    uint64_t now = h2o_now(w->loop);
    h2o_iovec_t reqid = dp_request_id(w, req);
    DP_OWNER_ADD(w->requests, 1);

    if (req->version < 0x200) {
        dp_framing_t f = http1_check_framing(req);
        if (f != DP_FRAMING_OK && f != DP_FRAMING_UNREADABLE) {
            /* what follows on this connection cannot be trusted to start where libh2o thinks */
            req->http1_is_persistent = 0;
            send_error(w, req, NULL, reqid, now, dp_framing_error(f), 0);
            return 0;
        }
    }

    const char *hdr = NULL;
    size_t hdrlen = 0;
    ssize_t hi = h2o_find_header_by_str(&req->headers, H2O_STRLIT("target-service-id"), -1);
    if (hi != -1) {
        hdr = req->headers.entries[hi].value.base;
        hdrlen = req->headers.entries[hi].value.len;
    }
    const char *id = NULL;
    size_t idlen = 0;
    dp_route_result_t rt = dp_route(req->path_normalized.base, req->path_normalized.len, hdr, hdrlen, &id, &idlen);
    if (rt == DP_ROUTE_NO_PATH) {
        send_error(w, req, NULL, reqid, now, DP_ERR_NOT_FOUND, 0);
        return 0;
    }
    if (dp_ws_is_upgrade(req)) {
        dp_ws_on_req(w, req, rt, id, idlen, reqid, now);
        return 0;
    }
    if (!h2o_memis(req->method.base, req->method.len, H2O_STRLIT("POST"))) {
        dp_service_t *psvc = NULL;
        if (h2o_memis(req->method.base, req->method.len, H2O_STRLIT("OPTIONS")) &&
            dp_cors_preflight(req, g, rt, id, idlen, reqid, &psvc)) {
            count_response(w, psvc, 204, now);
            access_log(w, req, psvc, 204, 0, now, reqid);
            h2o_send_inline(req, "", 0);
            return 0;
        }
        h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_ALLOW, NULL, H2O_STRLIT("POST"));
        send_error(w, req, NULL, reqid, now, DP_ERR_METHOD_NOT_ALLOWED, 0);
        return 0;
    }
    if (rt == DP_ROUTE_MISSING) {
        send_error(w, req, NULL, reqid, now, DP_ERR_MISSING_SERVICE, 0);
        return 0;
    }
    dp_service_t *svc = rt == DP_ROUTE_OK ? dp_gen_find_service(g, id, idlen) : NULL;
    if (svc == NULL) {
        send_error(w, req, NULL, reqid, now, DP_ERR_UNKNOWN_SERVICE, 0);
        return 0;
    }
    if (req->entity.len > g->cfg->limits.max_request_body) {
        send_error(w, req, svc, reqid, now, DP_ERR_REQUEST_TOO_LARGE, 0);
        return 0;
    }
    if (atomic_load_explicit(&w->server->exiting, memory_order_relaxed)) {
        send_error(w, req, svc, reqid, now, DP_ERR_SHUTTING_DOWN, 1);
        return 0;
    }

    dp_rcache_t *rc = NULL;
    dp_cache_lookup_t cres = DP_CACHE_MISS;
    if (svc->cfg->cache.enabled || svc->cfg->cache.coalesce_on) {
        dp_cache_entry_t *hit = NULL;
        rc = dp_relay_cache_begin(w, req, svc, now, &cres, &hit);
        if (cres == DP_CACHE_HIT && rc->batch) {
            size_t nv, total;
            h2o_iovec_t *v = dp_relay_cache_batch_answer(req, rc, &nv, &total);
            send_cached(w, req, svc, reqid, now, v, nv, total, DP_CRES_HIT);
            return 0;
        }
        if (cres == DP_CACHE_HIT) {
            dp_cache_entry_t **held = h2o_mem_alloc_shared(&req->pool, sizeof(*held), release_hit);
            *held = hit;
            send_entry(w, req, svc, reqid, now, hit, &rc->req, DP_CRES_HIT);
            return 0;
        }
    }

    dp_relay_t *r = h2o_mem_alloc_shared(&req->pool, sizeof(*r), relay_dispose);
    memset(r, 0, sizeof(*r));
    r->generator.proceed = on_generator_proceed;
    r->generator.stop = on_generator_stop;
    r->req = req;
    r->w = w;
    r->wg = w->wgen;
    r->wg->nrequests++;
    r->svc = svc;
    r->reqid = reqid;
    r->started_at = now;
    r->timer.cb = on_relay_timer;
    dp_failover_init(r);
    r->pump_timer.cb = on_pump_timer;
    r->state = RS_ADMIT;
    r->client_fd = http1_client_fd(req);
    if (w->peek_timer.cb == NULL) {
        w->peek_timer.cb = on_peek_timer;
        w->watch_timer.cb = on_watch_timer;
    }
    DP_OWNER_ADD(w->active, 1);
    if (rc != NULL) {
        r->cache = rc;
        rc->r = r;
        if (cres == DP_CACHE_FOLLOWER) {
            relay_follow(r);
            return 0;
        }
    }
    relay_admit(r);
    return 0;
}

/* --- housekeeping --------------------------------------------------------------------------- */

void dp_proxy_housekeeping(dp_worker_t *w)
{
    dp_worker_refresh_gen(w);

    /* waits granted by other threads */
    for (;;) {
        pthread_mutex_lock(&w->granted_mutex);
        dp_relay_t *r = NULL;
        if (!h2o_linklist_is_empty(&w->granted)) {
            r = H2O_STRUCT_FROM_MEMBER(dp_relay_t, granted_link, w->granted.next);
            h2o_linklist_unlink(&r->granted_link);
        }
        pthread_mutex_unlock(&w->granted_mutex);
        if (r == NULL)
            break;
        relay_on_granted(r);
    }
    dp_relay_cache_housekeeping(w);
    dp_pool_housekeeping(w);
    dp_bufpool_trim(&w->bufpool, w->wgen->gen->cfg->buffers.max_retained);
}

void dp_proxy_close_idle(dp_worker_t *w)
{
    atomic_store(&w->server->exiting, 1);
    dp_proxy_housekeeping(w);
}
