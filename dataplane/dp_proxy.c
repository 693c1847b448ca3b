/*
 * The relay: routing, limiter, endpoint choice, upstream connection pools and an HTTP/1.1 client
 * on h2o sockets, streaming the response back (DESIGN §3).
 *
 * Why our own client rather than h2o_http1client + h2o_socketpool: the socketpool neither enforces
 * its capacity nor reports idle counts, and http1client gives no back-pressure hook. Owning the
 * socket lets Pathway count every connection (process-wide atomics), bound idle ones, and stop
 * reading the upstream while the client is slow, so a 50 MiB response holds one buffer, not 50 MiB.
 *
 * Lifetimes: a relay lives in req->pool and is disposed by h2o when the request ends, including
 * when the client goes away; relay_dispose undoes whatever the relay still holds. A connection
 * (dp_conn_t) is heap memory owned by its worker, carried from request to request.
 *
 * Invariant: an h2o_send may free the relay before it returns. For HTTP/1 a send with no buffers
 * (the ERROR send, a FINAL send of 0 bytes under content-length) completes synchronously and ends
 * the request, disposing req->pool. So every h2o_send here is the last thing its function does,
 * and its callers return at once (relay_pump, on_generator_proceed, on_relay_timer); relay_fail,
 * which runs deep in call chains that look at the relay afterwards, never sends after the response
 * began (it defers the ERROR send to the next proceed or a zero-delay timer). A gateway error
 * before the response began (send_error) always writes bytes, which h2o completes later.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "dp_errors.h"
#include "dp_internal.h"
#include "dp_phr.h"
#include "dp_rpc.h"
#include "pw_log.h"

#define MAX_RESPONSE_HEAD 65536
#define MAX_RESPONSE_HEADERS 100
#define DP_UPSTREAM_RCVBUF (128 * 1024)
#define DP_SMALL_BODY 2048 /* bodies up to this size are held in the request's own pool */

enum {
    RS_ADMIT = 0,  /* passing the limiters */
    RS_CONN_WAIT,  /* waiting for a connection slot of the endpoint */
    RS_CONNECTING, /* a new connection is being opened for this relay */
    RS_UPSTREAM,   /* request sent, response being read */
    RS_DONE,       /* upstream side finished; the response may still be flowing to the client */
};

enum { CS_CONNECTING = 0, CS_IDLE, CS_BUSY };

struct st_dp_conn_t {
    h2o_socket_t *sock;
    dp_endpoint_t *ep;
    dp_worker_t *w;
    dp_relay_t *relay;         /* the relay it carries (BUSY, or CONNECTING on behalf of one) */
    h2o_linklist_t idle_link;  /* in wp->idle while IDLE */
    h2o_timeout_entry_t timer; /* connect timeout, then idle timeout */
    int state;
    int writing; /* a request write is in progress: not reusable before it ends */
};

typedef enum { BODY_LENGTH, BODY_CHUNKED, BODY_EOF } body_mode_t;

struct st_dp_relay_t {
    h2o_generator_t generator; /* proceed / stop from h2o */
    h2o_req_t *req;
    dp_worker_t *w;
    dp_wgen_t *wg;
    dp_service_t *svc;
    dp_endpoint_t *ep;
    int state;
    int lim_stage; /* 0, or 1/2 while waiting on the service / process-wide limiter */
    int have_svc_permit;
    int have_glob_permit;
    dp_limiter_waiter_t lw;
    h2o_linklist_t granted_link; /* in w->granted once another thread granted our wait */
    h2o_linklist_t wait_link;    /* in wp->waiters while RS_CONN_WAIT */
    h2o_linklist_t queued_link;  /* HTTP/1 only: in w->queued while in a limiter queue, in w->watched
                                  * from admission until the response starts */
    int client_fd;               /* HTTP/1: the client's socket, watched until the response starts; -1 otherwise */
    h2o_timeout_entry_t timer;   /* queue timeout in RS_ADMIT, request timeout after */
    dp_conn_t *conn;
    h2o_iovec_t reqid;
    h2o_iovec_t head; /* upstream request head */
    uint64_t started_at;
    int outstanding; /* counted in ep->outstanding */
    int reused;      /* the connection came from the idle pool */
    int retried;     /* already retried once on a fresh connection */
    /* response */
    int head_done;
    int status;
    const char *reason; /* the upstream's reason phrase (NUL-terminated, static or in req->pool) */
    body_mode_t mode;
    int keepalive;
    struct phr_chunked_decoder dec;
    size_t decoded; /* chunked: decoded bytes at the front of sock->input */
    int chunked_done;
    uint64_t content_length;
    uint64_t received;
    uint64_t max_body;
    int upstream_done;
    int eof;       /* the upstream closed (or failed) after the head */
    int got_bytes; /* any response byte arrived */
    dp_buf_t *buf;
    int buf_in_req_pool; /* buf came from req->pool (small body), not the buffer pool */
    size_t sending;      /* bytes of buf handed to h2o_send, until proceed */
    int client_sending;
    int started;       /* h2o_start_response called */
    int finished;      /* the final (or error) send is done: nothing more to send */
    int abort_pending; /* end the stream with an error at the next proceed */
    int paused;        /* upstream reading stopped: buffer full */
};

static void relay_admit(dp_relay_t *r);
static void relay_unwatch(dp_relay_t *r);
static void relay_dispatch_conn(dp_relay_t *r);
static void relay_send_request(dp_relay_t *r);
static void relay_fail(dp_relay_t *r, dp_error_t e);
static void relay_finish_upstream(dp_relay_t *r);
static void relay_pump(dp_relay_t *r);
static void relay_drain_input(dp_relay_t *r);
static void conn_close(dp_conn_t *c);
static void conn_release(dp_conn_t *c, int reusable);
static void wpool_serve_waiters(dp_worker_t *w, dp_endpoint_t *ep);
static void wpool_maybe_deactivate(dp_worker_t *w, dp_endpoint_t *ep);
static void on_upstream_read(h2o_socket_t *sock, const char *err);

/* The standard reason phrase of a status (RFC 9110 section 15), for the gateway's own answers. */
static const char *reason_of(int status)
{
    switch (status) {
    case 200:
        return "OK";
    case 201:
        return "Created";
    case 202:
        return "Accepted";
    case 204:
        return "No Content";
    case 206:
        return "Partial Content";
    case 301:
        return "Moved Permanently";
    case 302:
        return "Found";
    case 304:
        return "Not Modified";
    case 307:
        return "Temporary Redirect";
    case 308:
        return "Permanent Redirect";
    case 400:
        return "Bad Request";
    case 401:
        return "Unauthorized";
    case 403:
        return "Forbidden";
    case 404:
        return "Not Found";
    case 405:
        return "Method Not Allowed";
    case 408:
        return "Request Timeout";
    case 409:
        return "Conflict";
    case 413:
        return "Content Too Large";
    case 415:
        return "Unsupported Media Type";
    case 429:
        return "Too Many Requests";
    case 499:
        return "Client Closed Request"; /* nginx's, for the log: the client never sees it */
    case 500:
        return "Internal Server Error";
    case 501:
        return "Not Implemented";
    case 502:
        return "Bad Gateway";
    case 503:
        return "Service Unavailable";
    case 504:
        return "Gateway Timeout";
    default:
        return "";
    }
}

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

/* --- CORS ----------------------------------------------------------------------------------- */

/* A service answers browsers when its cors.allow_origins is not empty. This test is the only cost
 * CORS adds to a relay while it is off. */
static int cors_on(const dp_service_t *svc)
{
    return svc->cfg->cors.allow_origins.size != 0;
}

static h2o_iovec_t request_header(h2o_req_t *req, const char *name, size_t len)
{
    ssize_t i = h2o_find_header_by_str(&req->headers, name, len, -1);
    return i != -1 ? req->headers.entries[i].value : h2o_iovec_init(NULL, 0);
}

static int cors_allows(const dp_service_t *svc, h2o_iovec_t origin)
{
    const cfg_cors_t *c = &svc->cfg->cors;
    return origin.base != NULL && dp_cors_origin_allowed(c->allow_origins.entries, c->allow_origins.size, origin.base, origin.len);
}

/* A response of a service with CORS on: an allowed Origin is echoed (so one answer never serves
 * another origin from a cache: Vary), and the browser may read X-Request-Id. Others get nothing. */
static void add_cors_headers(h2o_req_t *req, const dp_service_t *svc)
{
    h2o_iovec_t origin = request_header(req, H2O_STRLIT("origin"));
    h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_VARY, NULL, H2O_STRLIT("Origin"));
    if (!cors_allows(svc, origin))
        return;
    h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_ACCESS_CONTROL_ALLOW_ORIGIN, NULL, origin.base, origin.len);
    h2o_add_header_by_str(&req->pool, &req->res.headers, H2O_STRLIT("access-control-expose-headers"), 0, NULL,
                          H2O_STRLIT("X-Request-Id"));
}

/* Answers an OPTIONS request that is a CORS preflight (Origin and Access-Control-Request-Method)
 * for a service with CORS on: 204, with the CORS headers when the origin is allowed, without them
 * when not (as Envoy answers preflights it does not forward; the browser then refuses the call).
 * `POST /v1` names its service in a header a preflight does not carry, so a preflight of `/v1` is
 * answered for the services that have CORS on: allowed when one of them allows the origin (the
 * response to the call itself is then judged by its own service), with the shortest max_age among
 * them. Returns 0 when it is not such a preflight: the caller answers as without CORS (405). */
static int cors_preflight(dp_worker_t *w, h2o_req_t *req, dp_gen_t *g, dp_route_result_t rt, const char *id, size_t idlen,
                          h2o_iovec_t reqid, uint64_t now)
{
    h2o_iovec_t origin = request_header(req, H2O_STRLIT("origin"));
    if (origin.base == NULL || request_header(req, H2O_STRLIT("access-control-request-method")).base == NULL)
        return 0;
    dp_service_t *svc = NULL;
    int allowed = 0;
    uint64_t max_age_ms = UINT64_MAX;
    if (rt == DP_ROUTE_OK) {
        if ((svc = dp_gen_find_service(g, id, idlen)) == NULL || !cors_on(svc))
            return 0;
        if ((allowed = cors_allows(svc, origin)) != 0)
            max_age_ms = svc->cfg->cors.max_age_ms;
    } else if (rt == DP_ROUTE_MISSING) {
        int any_on = 0;
        for (size_t i = 0; i != g->nservices; ++i) {
            const dp_service_t *s = g->services + i;
            if (!cors_on(s))
                continue;
            any_on = 1;
            if (cors_allows(s, origin)) {
                allowed = 1;
                if (s->cfg->cors.max_age_ms < max_age_ms)
                    max_age_ms = s->cfg->cors.max_age_ms;
            }
        }
        if (!any_on)
            return 0;
    } else {
        return 0;
    }
    req->res.status = 204;
    req->res.reason = reason_of(204);
    h2o_add_header_by_str(&req->pool, &req->res.headers, H2O_STRLIT("x-request-id"), 0, NULL, reqid.base, reqid.len);
    h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_VARY, NULL, H2O_STRLIT("Origin"));
    if (allowed) {
        h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_ACCESS_CONTROL_ALLOW_ORIGIN, NULL, origin.base, origin.len);
        h2o_add_header_by_str(&req->pool, &req->res.headers, H2O_STRLIT("access-control-allow-methods"), 0, NULL,
                              H2O_STRLIT("POST, OPTIONS"));
        h2o_iovec_t asked = request_header(req, H2O_STRLIT("access-control-request-headers"));
        if (asked.base != NULL) {
            char *names = h2o_mem_alloc_pool(&req->pool, sizeof(DP_CORS_SAFE_HEADERS));
            size_t n = dp_cors_allow_headers(asked.base, asked.len, names);
            if (n != 0)
                h2o_add_header_by_str(&req->pool, &req->res.headers, H2O_STRLIT("access-control-allow-headers"), 0, NULL, names, n);
        }
        char *ma = h2o_mem_alloc_pool(&req->pool, 24);
        int n = snprintf(ma, 24, "%" PRIu64, max_age_ms / 1000);
        h2o_add_header_by_str(&req->pool, &req->res.headers, H2O_STRLIT("access-control-max-age"), 0, NULL, ma, (size_t)n);
    }
    count_response(w, svc, 204, now);
    access_log(w, req, svc, 204, 0, now, reqid);
    h2o_send_inline(req, "", 0);
    return 1;
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
    req->res.reason = reason_of(status);
    req->res.content_length = b.len;
    h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_CONTENT_TYPE, NULL, H2O_STRLIT("application/json"));
    h2o_add_header_by_str(&req->pool, &req->res.headers, H2O_STRLIT("x-request-id"), 0, NULL, reqid.base, reqid.len);
    if (retry_after_s != 0) {
        char *ra = h2o_mem_alloc_pool(&req->pool, 24);
        int n = snprintf(ra, 24, "%" PRIu64, retry_after_s);
        h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_RETRY_AFTER, NULL, ra, (size_t)n);
    }
    if (svc != NULL && cors_on(svc))
        add_cors_headers(req, svc);
    count_response(w, svc, status, started_at);
    access_log(w, req, svc, status, b.len, started_at, reqid);
    h2o_send_inline(req, b.base, b.len);
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
        relay_fail(r, DP_ERR_CLIENT_CLOSED);
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
        if (stage == 1 && (r->have_svc_permit || r->svc->cfg->limiter.max_concurrent == 0))
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
            relay_fail(r, DP_ERR_QUEUE_FULL);
            return;
        }
    }
    if (h2o_timeout_is_linked(&r->timer))
        h2o_timeout_unlink(&r->timer);
    relay_dispatch_conn(r);
}

/* --- endpoint choice ------------------------------------------------------------------------ */

static dp_endpoint_t *pick_endpoint(dp_service_t *svc)
{
    size_t n = svc->nendpoints;
    if (n == 1)
        return svc->endpoints[0];
    unsigned start = atomic_fetch_add_explicit(&svc->rr, 1, memory_order_relaxed);
    dp_endpoint_t *best = NULL, *best_failed = NULL;
    int32_t best_out = INT32_MAX, best_failed_out = INT32_MAX;
    int skipped = 0;
    for (size_t i = 0; i != n; ++i) {
        dp_endpoint_t *ep = svc->endpoints[(start + i) % n];
        int32_t out = atomic_load_explicit(&ep->outstanding, memory_order_relaxed);
        if (atomic_load_explicit(&ep->just_failed, memory_order_relaxed)) {
            skipped = 1;
            if (out < best_failed_out)
                best_failed = ep, best_failed_out = out;
            continue;
        }
        if (out < best_out)
            best = ep, best_out = out;
    }
    if (best == NULL)
        return best_failed;
    /* an endpoint that just failed is passed over once; the next pick considers it again */
    if (skipped)
        for (size_t i = 0; i != n; ++i)
            atomic_store_explicit(&svc->endpoints[i]->just_failed, 0, memory_order_relaxed);
    return best;
}

/* --- worker pools --------------------------------------------------------------------------- */

static void wpool_activate(dp_worker_t *w, dp_endpoint_t *ep)
{
    dp_wpool_t *wp = &ep->wp[w->index];
    if (wp->active)
        return;
    wp->active = 1;
    atomic_fetch_add(&ep->refcnt, 1);
    h2o_linklist_insert(&w->active_pools, &wp->active_link);
}

static void wpool_maybe_deactivate(dp_worker_t *w, dp_endpoint_t *ep)
{
    dp_wpool_t *wp = &ep->wp[w->index];
    if (!wp->active || wp->nconns != 0 || wp->nwaiters != 0)
        return;
    wp->active = 0;
    h2o_linklist_unlink(&wp->active_link);
    dp_endpoint_release(ep); /* may free ep (and wp) */
}

/* Takes a connection slot of the endpoint's upstream (bounded per upstream, over every endpoint
 * object and generation that points at it, by the current generation's max_conns_per_host). */
static int reserve_slot(dp_endpoint_t *ep)
{
    dp_host_t *h = ep->upstream;
    uint32_t max = atomic_load(&h->max_conns), cur = atomic_load(&h->open);
    while (cur < max)
        if (atomic_compare_exchange_weak(&h->open, &cur, cur + 1)) {
            atomic_fetch_add(&ep->open, 1);
            return 1;
        }
    return 0;
}

static void unreserve_slot(dp_endpoint_t *ep)
{
    atomic_fetch_sub(&ep->open, 1);
    atomic_fetch_sub(&ep->upstream->open, 1);
}

/* Counts `n` (+1 or -1) requests waiting for a slot of ep's upstream. */
static void count_waiters(dp_endpoint_t *ep, int n)
{
    if (n > 0) {
        atomic_fetch_add(&ep->waiters, 1);
        atomic_fetch_add(&ep->upstream->waiters, 1);
    } else {
        atomic_fetch_sub(&ep->waiters, 1);
        atomic_fetch_sub(&ep->upstream->waiters, 1);
    }
}

static void uncount_idle(dp_endpoint_t *ep)
{
    atomic_fetch_sub(&ep->idle, 1);
    atomic_fetch_sub(&ep->upstream->idle, 1);
}

static int ep_retired(dp_endpoint_t *ep)
{
    return atomic_load(&ep->gen_refs) == 0;
}

static void conn_unidle(dp_conn_t *c)
{
    dp_worker_t *w = c->w;
    h2o_linklist_unlink(&c->idle_link);
    if (h2o_timeout_is_linked(&c->timer))
        h2o_timeout_unlink(&c->timer);
    uncount_idle(c->ep);
    atomic_fetch_sub(&w->server->idle_total, 1);
    c->state = CS_BUSY;
    DP_OWNER_ADD(w->conns_busy, 1);
}

static void conn_close(dp_conn_t *c)
{
    dp_worker_t *w = c->w;
    dp_endpoint_t *ep = c->ep;
    dp_wpool_t *wp = &ep->wp[w->index];
    if (c->state == CS_IDLE) {
        h2o_linklist_unlink(&c->idle_link);
        uncount_idle(ep);
        atomic_fetch_sub(&w->server->idle_total, 1);
    } else if (c->state == CS_BUSY) {
        DP_OWNER_ADD(w->conns_busy, -1);
    }
    if (h2o_timeout_is_linked(&c->timer))
        h2o_timeout_unlink(&c->timer);
    if (c->sock != NULL)
        h2o_socket_close(c->sock);
    unreserve_slot(ep);
    DP_SHARED_ADD(ep->closes, 1);
    PW_DEBUG("upstream %s: connection closed (worker %zu, %s)", ep->label, w->index,
             c->state == CS_IDLE   ? "idle"
             : c->state == CS_BUSY ? "busy"
                                   : "connecting");
    wp->nconns--;
    free(c);
    /* a slot is free: our own waiters first, then anyone else's (other workers, and endpoints of
     * other generations that share the upstream: housekeeping serves those) */
    wpool_serve_waiters(w, ep);
    if (atomic_load(&ep->upstream->waiters) != 0)
        dp_server_kick_all(w->server);
    wpool_maybe_deactivate(w, ep);
}

static void on_idle_timeout(h2o_timeout_entry_t *entry)
{
    dp_conn_t *c = H2O_STRUCT_FROM_MEMBER(dp_conn_t, timer, entry);
    conn_close(c);
}

static void on_idle_read(h2o_socket_t *sock, const char *err)
{
    /* an idle connection has nothing to say: EOF, or bytes we did not ask for */
    conn_close(sock->data);
}

static void relay_attach(dp_relay_t *r, dp_conn_t *c, int reused)
{
    c->relay = r;
    r->conn = c;
    r->reused = reused;
    relay_send_request(r);
}

/* Puts a connection back after a complete exchange, hands it to a waiter, or closes it. */
static void conn_release(dp_conn_t *c, int reusable)
{
    dp_worker_t *w = c->w;
    dp_endpoint_t *ep = c->ep;
    dp_wpool_t *wp = &ep->wp[w->index];
    c->relay = NULL;
    if (!reusable || ep_retired(ep) || atomic_load(&w->server->exiting)) {
        conn_close(c);
        return;
    }
    if (!h2o_linklist_is_empty(&wp->waiters)) {
        dp_relay_t *r = H2O_STRUCT_FROM_MEMBER(dp_relay_t, wait_link, wp->waiters.next);
        h2o_linklist_unlink(&r->wait_link);
        wp->nwaiters--;
        count_waiters(ep, -1);
        DP_SHARED_ADD(ep->reuses, 1);
        relay_attach(r, c, 1);
        return;
    }
    /* another worker (or endpoint of the upstream) waits for a slot: free ours rather than idle */
    dp_host_t *h = ep->upstream;
    if (atomic_load(&h->waiters) != 0) {
        conn_close(c);
        return;
    }
    if (atomic_fetch_add(&h->idle, 1) >= atomic_load(&h->max_idle)) {
        atomic_fetch_sub(&h->idle, 1);
        conn_close(c);
        return;
    }
    atomic_fetch_add(&ep->idle, 1);
    if (atomic_fetch_add(&w->server->idle_total, 1) >= atomic_load(&w->server->max_idle_total)) {
        atomic_fetch_sub(&w->server->idle_total, 1);
        uncount_idle(ep);
        conn_close(c);
        return;
    }
    DP_OWNER_ADD(w->conns_busy, -1);
    c->state = CS_IDLE;
    h2o_linklist_insert(wp->idle.next, &c->idle_link); /* most recent first */
    c->timer.cb = on_idle_timeout;
    h2o_timeout_link(w->loop, dp_worker_timeout(w, atomic_load(&ep->idle_timeout_ms)), &c->timer);
    h2o_socket_read_start(c->sock, on_idle_read);
}

static void conn_fail(dp_conn_t *c, const char *err)
{
    dp_endpoint_t *ep = c->ep;
    dp_relay_t *r = c->relay;
    DP_SHARED_ADD(ep->connect_errors, 1);
    atomic_store(&ep->just_failed, 1);
    PW_WARN("upstream %s/%s: connect failed: %s", ep->service, ep->label, err);
    if (r != NULL) {
        r->conn = NULL;
        c->relay = NULL;
    }
    conn_close(c);
    if (r != NULL)
        relay_fail(r, DP_ERR_CONNECT_FAILED);
}

static void on_connect_timeout(h2o_timeout_entry_t *entry)
{
    conn_fail(H2O_STRUCT_FROM_MEMBER(dp_conn_t, timer, entry), "connect timeout");
}

static void conn_ready(dp_conn_t *c)
{
    if (h2o_timeout_is_linked(&c->timer))
        h2o_timeout_unlink(&c->timer);
    c->state = CS_BUSY;
    DP_OWNER_ADD(c->w->conns_busy, 1);
    if (c->relay != NULL)
        relay_send_request(c->relay);
    else
        conn_release(c, 1); /* its relay went away while connecting: keep it for the next */
}

static int is_ip_literal(const char *name)
{
    unsigned char buf[16];
    return inet_pton(AF_INET, name, buf) == 1 || inet_pton(AF_INET6, name, buf) == 1;
}

/* The handshake's verdict. OpenSSL verifies the chain and the name (or IP address) during the
 * handshake: the endpoint's SSL_CTX carries them in its X509_VERIFY_PARAM, and a failure ends the
 * handshake with OpenSSL's reason ("IP address mismatch"). libh2o 2.2.5 then runs its own name
 * check, which knows only DNS names: for an IP literal it reports a mismatch against the very
 * certificate OpenSSL has just accepted by its IP SAN, so that report is not believed. */
static int handshake_ok(dp_endpoint_t *ep, const char *err)
{
    if (err == NULL)
        return 1;
    int name_check = err == h2o_socket_error_ssl_cert_name_mismatch || err == h2o_socket_error_ssl_cert_invalid;
    if (ep->verify == 0)
        return name_check || err == h2o_socket_error_ssl_no_cert;
    return name_check && is_ip_literal(ep->server_name);
}

static void on_handshake(h2o_socket_t *sock, const char *err)
{
    dp_conn_t *c = sock->data;
    if (!handshake_ok(c->ep, err)) {
        conn_fail(c, err);
        return;
    }
    conn_ready(c);
}

static void on_connect(h2o_socket_t *sock, const char *err)
{
    dp_conn_t *c = sock->data;
    if (err != NULL) {
        conn_fail(c, err);
        return;
    }
    if (c->ep->is_https) {
        h2o_socket_ssl_handshake(sock, c->ep->ssl_ctx, c->ep->server_name, on_handshake);
        return;
    }
    conn_ready(c);
}

/* Opens a connection for `r` in a slot already reserved. */
static void conn_open(dp_worker_t *w, dp_endpoint_t *ep, dp_relay_t *r)
{
    dp_wpool_t *wp = &ep->wp[w->index];
    dp_conn_t *c = calloc(1, sizeof(*c));
    if (c == NULL) {
        unreserve_slot(ep);
        relay_fail(r, DP_ERR_OUT_OF_MEMORY);
        return;
    }
    c->ep = ep;
    c->w = w;
    c->state = CS_CONNECTING;
    c->relay = r;
    r->conn = c;
    r->state = RS_CONNECTING;
    r->reused = 0;
    wp->nconns++;
    wpool_activate(w, ep);
    DP_SHARED_ADD(ep->connects, 1);
    PW_DEBUG("upstream %s: connecting (worker %zu, %u open)", ep->label, w->index, (unsigned)atomic_load(&ep->open));
    c->sock = h2o_socket_connect(w->loop, (struct sockaddr *)&ep->addr, ep->addrlen, on_connect);
    if (c->sock == NULL) {
        conn_fail(c, "socket error");
        return;
    }
    c->sock->data = c;
    /* h2o reads a socket until the kernel has nothing left; a small receive buffer keeps a fast
     * upstream from parking megabytes in sock->input while the client is slow */
    int rcvbuf = DP_UPSTREAM_RCVBUF, on = 1;
    setsockopt(h2o_socket_get_fd(c->sock), SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof(rcvbuf));
    /* requests go out whole in one write; never hold one back for an ACK */
    setsockopt(h2o_socket_get_fd(c->sock), IPPROTO_TCP, TCP_NODELAY, &on, sizeof(on));
    c->timer.cb = on_connect_timeout;
    h2o_timeout_link(w->loop, dp_worker_timeout(w, atomic_load(&ep->connect_timeout_ms)), &c->timer);
}

static void wpool_serve_waiters(dp_worker_t *w, dp_endpoint_t *ep)
{
    dp_wpool_t *wp = &ep->wp[w->index];
    while (!h2o_linklist_is_empty(&wp->waiters)) {
        dp_relay_t *r = H2O_STRUCT_FROM_MEMBER(dp_relay_t, wait_link, wp->waiters.next);
        if (!h2o_linklist_is_empty(&wp->idle)) {
            dp_conn_t *c = H2O_STRUCT_FROM_MEMBER(dp_conn_t, idle_link, wp->idle.next);
            h2o_linklist_unlink(&r->wait_link);
            wp->nwaiters--;
            count_waiters(ep, -1);
            conn_unidle(c);
            DP_SHARED_ADD(ep->reuses, 1);
            relay_attach(r, c, 1);
        } else if (reserve_slot(ep)) {
            h2o_linklist_unlink(&r->wait_link);
            wp->nwaiters--;
            count_waiters(ep, -1);
            conn_open(w, ep, r);
        } else {
            break;
        }
    }
}

static char *append(char *p, const char *s, size_t len)
{
    memcpy(p, s, len);
    return p + len;
}

/* The upstream request head. No printf here: this runs once per relay, and formatting was the
 * largest cost in the profile. The endpoint's fixed prefix is built once per endpoint. */
static void relay_build_head(dp_relay_t *r)
{
    h2o_req_t *req = r->req;
    dp_endpoint_t *ep = r->ep;
    h2o_iovec_t ct = h2o_iovec_init(H2O_STRLIT("application/json"));
    ssize_t i = h2o_find_header(&req->headers, H2O_TOKEN_CONTENT_TYPE, -1);
    if (i != -1)
        ct = req->headers.entries[i].value;
    size_t cap = ep->head_prefix.len + 20 + sizeof("\r\ncontent-type: ") + ct.len + sizeof("\r\nx-request-id: ") + r->reqid.len + 4;
    char *head = h2o_mem_alloc_pool(&req->pool, cap), *p = head;
    p = append(p, ep->head_prefix.base, ep->head_prefix.len);
    char digits[20];
    size_t n = 0, len = req->entity.len;
    do {
        digits[n++] = (char)('0' + len % 10);
        len /= 10;
    } while (len != 0);
    while (n != 0)
        *p++ = digits[--n];
    if (!ep->own_content_type) {
        p = append(p, H2O_STRLIT("\r\ncontent-type: "));
        p = append(p, ct.base, ct.len);
    }
    p = append(p, H2O_STRLIT("\r\nx-request-id: "));
    p = append(p, r->reqid.base, r->reqid.len);
    p = append(p, H2O_STRLIT("\r\n\r\n"));
    r->head = h2o_iovec_init(head, (size_t)(p - head));
}

static void on_relay_timer(h2o_timeout_entry_t *entry);

static void relay_dispatch_conn(dp_relay_t *r)
{
    dp_worker_t *w = r->w;
    dp_endpoint_t *ep = pick_endpoint(r->svc);
    r->ep = ep;
    r->outstanding = 1;
    atomic_fetch_add(&ep->outstanding, 1);
    r->state = RS_CONN_WAIT;
    relay_watch(r);
    r->max_body = r->wg->gen->cfg->limits.max_response_body;
    h2o_timeout_link(w->loop, dp_worker_timeout(w, r->svc->cfg->timeouts.request_ms), &r->timer);
    relay_build_head(r);
    if (ep->addrlen == 0) {
        relay_fail(r, DP_ERR_UNRESOLVED);
        return;
    }
    dp_wpool_t *wp = &ep->wp[w->index];
    if (!h2o_linklist_is_empty(&wp->idle) && !ep_retired(ep)) {
        dp_conn_t *c = H2O_STRUCT_FROM_MEMBER(dp_conn_t, idle_link, wp->idle.next);
        conn_unidle(c);
        DP_SHARED_ADD(ep->reuses, 1);
        relay_attach(r, c, 1);
        return;
    }
    if (reserve_slot(ep)) {
        conn_open(w, ep, r);
        return;
    }
    /* every slot is taken: wait (the limiter bounds how many of us there can be) */
    h2o_linklist_insert(&wp->waiters, &r->wait_link);
    wp->nwaiters++;
    count_waiters(ep, 1);
    wpool_activate(w, ep);
    dp_server_kick_all(w->server); /* workers holding idle connections let them go */
}

/* --- upstream exchange ---------------------------------------------------------------------- */

static void on_upstream_write(h2o_socket_t *sock, const char *err)
{
    dp_conn_t *c = sock->data;
    c->writing = 0;
    if (err != NULL && c->relay != NULL)
        on_upstream_read(sock, err);
}

static void relay_send_request(dp_relay_t *r)
{
    dp_conn_t *c = r->conn;
    r->state = RS_UPSTREAM;
    r->head_done = 0;
    r->got_bytes = 0;
    h2o_iovec_t bufs[2] = {r->head, r->req->entity};
    size_t n = r->req->entity.len != 0 ? 2 : 1;
    r->eof = 0;
    c->writing = 1;
    h2o_socket_write(c->sock, bufs, n, on_upstream_write);
    h2o_socket_read_start(c->sock, on_upstream_read);
}

/* A reused keep-alive connection that the upstream had closed fails before any byte of the
 * response; the request never reached the upstream, so it is sent once more on a fresh one. */
static int relay_retry(dp_relay_t *r)
{
    if (!r->reused || r->retried || r->got_bytes)
        return 0;
    r->retried = 1;
    dp_conn_t *c = r->conn;
    r->conn = NULL;
    c->relay = NULL;
    conn_close(c);
    if (r->finished) /* conn_close served a waiter that... cannot be us; defensive */
        return 1;
    dp_endpoint_t *ep = r->ep;
    dp_wpool_t *wp = &ep->wp[r->w->index];
    r->state = RS_CONN_WAIT;
    if (reserve_slot(ep)) {
        conn_open(r->w, ep, r);
    } else {
        h2o_linklist_insert(&wp->waiters, &r->wait_link);
        wp->nwaiters++;
        count_waiters(ep, 1);
        wpool_activate(r->w, ep);
        dp_server_kick_all(r->w->server);
    }
    return 1;
}

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

static void copy_response_headers(dp_relay_t *r, struct phr_header *hdrs, const h2o_token_t **toks, size_t n)
{
    h2o_req_t *req = r->req;
    int cors = cors_on(r->svc); /* the service's CORS answer is Pathway's: the upstream's is dropped */
    if (cors)
        add_cors_headers(req, r->svc);
    for (size_t i = 0; i != n; ++i) {
        const h2o_token_t *tok = toks[i];
        if (tok != NULL) {
            /* hop-by-hop and framing headers are ours to write */
            if (tok == H2O_TOKEN_CONNECTION || tok == H2O_TOKEN_CONTENT_LENGTH || tok == H2O_TOKEN_TRANSFER_ENCODING ||
                tok == H2O_TOKEN_KEEP_ALIVE || tok == H2O_TOKEN_TE || tok == H2O_TOKEN_UPGRADE || tok == H2O_TOKEN_DATE ||
                tok == H2O_TOKEN_SERVER || (cors && tok == H2O_TOKEN_ACCESS_CONTROL_ALLOW_ORIGIN))
                continue;
            h2o_iovec_t v = h2o_strdup(&req->pool, hdrs[i].value, hdrs[i].value_len);
            h2o_add_header(&req->pool, &req->res.headers, tok, NULL, v.base, v.len);
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
            h2o_add_header_by_str(&req->pool, &req->res.headers, name.base, name.len, 0, NULL, v.base, v.len);
        }
    }
}

/* The reason phrase of an upstream's status line, for HTTP/1 clients (HTTP/2 has none). "OK"
 * costs nothing; others are copied into the request's pool, since the head's bytes are consumed. */
static const char *reason_phrase(dp_relay_t *r, const char *msg, size_t len)
{
    if (len == 2 && msg[0] == 'O' && msg[1] == 'K')
        return "OK";
    for (size_t i = 0; i != len; ++i) {
        unsigned char c = (unsigned char)msg[i];
        if ((c < 0x20 && c != '\t') || c == 0x7f)
            return reason_of(r->status); /* nothing we would write on a status line */
    }
    return h2o_strdup(&r->req->pool, msg, len).base;
}

/* Parses the response head in sock->input. Returns 1 when done, 0 when more bytes are needed,
 * -1 after failing the relay. */
static int relay_parse_head(dp_relay_t *r)
{
    h2o_buffer_t *in = r->conn->sock->input;
    for (;;) {
        struct phr_header hdrs[MAX_RESPONSE_HEADERS];
        const h2o_token_t *toks[MAX_RESPONSE_HEADERS];
        size_t nhdrs = MAX_RESPONSE_HEADERS, msglen;
        int minor, status;
        const char *msg;
        int rv = phr_parse_response(in->bytes, in->size, &minor, &status, &msg, &msglen, hdrs, &nhdrs, 0);
        if (rv == -2) {
            if (in->size > MAX_RESPONSE_HEAD) {
                relay_fail(r, DP_ERR_HEAD_TOO_LARGE);
                return -1;
            }
            return 0;
        }
        if (rv < 0) {
            relay_fail(r, DP_ERR_BAD_RESPONSE);
            return -1;
        }
        if (status < 100 || status > 599) {
            /* h2o's HTTP/2 encoder asserts 100 <= status <= 999; a status outside HTTP's range is
             * a broken upstream, not something to pass on */
            relay_fail(r, DP_ERR_BAD_RESPONSE);
            return -1;
        }
        if (status >= 100 && status < 200) { /* 100 Continue and friends: skip */
            h2o_buffer_consume(&r->conn->sock->input, (size_t)rv);
            in = r->conn->sock->input;
            continue;
        }
        r->status = status;
        r->reason = reason_phrase(r, msg, msglen);
        r->keepalive = minor >= 1;
        r->mode = BODY_EOF;
        r->content_length = UINT64_MAX;
        int have_te = 0;
        for (size_t i = 0; i != nhdrs; ++i) {
            const h2o_token_t *tok = toks[i] = lookup_token_ci(hdrs[i].name, hdrs[i].name_len);
            if (tok == H2O_TOKEN_CONTENT_LENGTH) {
                size_t v = h2o_strtosize(hdrs[i].value, hdrs[i].value_len);
                if (v == SIZE_MAX) {
                    relay_fail(r, DP_ERR_BAD_CONTENT_LENGTH);
                    return -1;
                }
                /* RFC 9112 6.3: differing lengths leave the message unframed; a copy of the same
                 * value is harmless. relay_fail closes the connection: what follows on it cannot
                 * be trusted to start where we would think. */
                if (r->content_length != UINT64_MAX && r->content_length != v) {
                    relay_fail(r, DP_ERR_CONFLICTING_LENGTH);
                    return -1;
                }
                r->content_length = v;
            } else if (tok == H2O_TOKEN_TRANSFER_ENCODING) {
                have_te = 1;
                if (h2o_lcstris(hdrs[i].value, hdrs[i].value_len, H2O_STRLIT("chunked")) ||
                    h2o_contains_token(hdrs[i].value, hdrs[i].value_len, H2O_STRLIT("chunked"), ','))
                    r->mode = BODY_CHUNKED;
            } else if (tok == H2O_TOKEN_CONNECTION) {
                /* the single-token values are the common case; the token scan is for lists */
                const char *v = hdrs[i].value;
                size_t vl = hdrs[i].value_len;
                if (h2o_lcstris(v, vl, H2O_STRLIT("keep-alive")))
                    r->keepalive = 1;
                else if (h2o_lcstris(v, vl, H2O_STRLIT("close")) || h2o_contains_token(v, vl, H2O_STRLIT("close"), ','))
                    r->keepalive = 0;
                else if (h2o_contains_token(v, vl, H2O_STRLIT("keep-alive"), ','))
                    r->keepalive = 1;
            }
        }
        if (have_te && r->content_length != UINT64_MAX) {
            /* RFC 9112 6.1: a sender must not send both; which one frames the body is the
             * request-smuggling question, so neither is believed */
            relay_fail(r, DP_ERR_LENGTH_AND_TE);
            return -1;
        }
        if (r->mode != BODY_CHUNKED && r->content_length != UINT64_MAX)
            r->mode = BODY_LENGTH;
        if (status == 204 || status == 304) {
            r->mode = BODY_LENGTH;
            r->content_length = 0;
        }
        if (r->mode == BODY_EOF)
            r->keepalive = 0;
        if (r->mode == BODY_LENGTH && r->content_length > r->max_body) {
            relay_fail(r, DP_ERR_RESPONSE_TOO_LARGE);
            return -1;
        }
        copy_response_headers(r, hdrs, toks, nhdrs);
        memset(&r->dec, 0, sizeof(r->dec));
        r->dec.consume_trailer = 1;
        r->decoded = 0;
        r->chunked_done = 0;
        r->received = 0;
        h2o_buffer_consume(&r->conn->sock->input, (size_t)rv);
        r->head_done = 1;
        return 1;
    }
}

/* Moves body bytes from the upstream socket into the relay buffer, as far as it has room. */
static void relay_drain_input(dp_relay_t *r)
{
    dp_conn_t *c = r->conn;
    if (c == NULL || r->upstream_done)
        return;
    h2o_socket_t *sock = c->sock;
    int extra = 0; /* bytes past the end of the response: the connection cannot be reused */
    if (r->mode == BODY_CHUNKED && !r->chunked_done && sock->input->size > r->decoded) {
        size_t sz = sock->input->size - r->decoded;
        ssize_t rv = phr_decode_chunked(&r->dec, sock->input->bytes + r->decoded, &sz);
        if (rv == -1) {
            relay_fail(r, DP_ERR_BAD_CHUNKED);
            return;
        }
        sock->input->size = r->decoded + sz + (rv > 0 ? (size_t)rv : 0);
        r->decoded += sz;
        if (rv >= 0) {
            r->chunked_done = 1;
            extra = rv > 0;
        }
    }
    for (;;) {
        size_t avail;
        switch (r->mode) {
        case BODY_LENGTH:
            avail = sock->input->size;
            if (avail > r->content_length - r->received) {
                avail = r->content_length - r->received;
                extra = 1;
            }
            break;
        case BODY_CHUNKED:
            avail = r->decoded;
            break;
        default:
            avail = sock->input->size;
            break;
        }
        if (avail == 0)
            break;
        if (r->received + avail > r->max_body) {
            relay_fail(r, DP_ERR_RESPONSE_TOO_LARGE);
            return;
        }
        if (r->buf == NULL) {
            dp_gen_t *g = r->wg->gen;
            if (r->mode == BODY_LENGTH && r->content_length <= DP_SMALL_BODY) {
                /* the common small answer: exactly its size from the request's pool, whose chunks
                 * h2o recycles; the pooled buffers are for bodies that stream */
                r->buf = h2o_mem_alloc_pool(&r->req->pool, offsetof(dp_buf_t, data) + (size_t)r->content_length);
                r->buf->capacity = (size_t)r->content_length;
                r->buf->len = 0;
                r->buf_in_req_pool = 1;
            } else if ((r->buf = dp_bufpool_get(&r->w->bufpool, g->cfg->buffers.size)) == NULL) {
                relay_fail(r, DP_ERR_OUT_OF_MEMORY);
                return;
            }
        }
        size_t room = r->buf->capacity - r->buf->len;
        if (room == 0) {
            /* the client is slower than the upstream: stop reading until it catches up */
            if (!r->paused) {
                h2o_socket_read_stop(sock);
                r->paused = 1;
            }
            return;
        }
        size_t n = avail < room ? avail : room;
        memcpy(r->buf->data + r->buf->len, sock->input->bytes, n);
        r->buf->len += n;
        h2o_buffer_consume(&sock->input, n);
        r->received += n;
        if (r->mode == BODY_CHUNKED)
            r->decoded -= n;
    }
    /* everything available was taken: reading may go on */
    if (r->paused) {
        r->paused = 0;
        if (!r->eof)
            h2o_socket_read_start(sock, on_upstream_read);
    }
    int complete = (r->mode == BODY_LENGTH && r->received == r->content_length) ||
                   (r->mode == BODY_CHUNKED && r->chunked_done && r->decoded == 0);
    if (!complete && r->eof) {
        if (r->mode != BODY_EOF) {
            relay_fail(r, DP_ERR_CLOSED_MID_RESPONSE);
            return;
        }
        complete = 1;
        extra = 1; /* delimited by close: never reused */
    }
    if (complete) {
        r->upstream_done = 1;
        int reusable = r->keepalive && !extra && !c->writing && sock->input->size == 0;
        r->conn = NULL;
        h2o_socket_read_stop(sock);
        conn_release(c, reusable);
        relay_finish_upstream(r);
    }
}

static void on_upstream_read(h2o_socket_t *sock, const char *err)
{
    dp_conn_t *c = sock->data;
    dp_relay_t *r = c->relay;
    if (r == NULL) {
        conn_close(c);
        return;
    }
    if (sock->input->size != 0)
        r->got_bytes = 1;
    if (err != NULL) {
        if (!r->head_done) {
            if (relay_retry(r))
                return;
            relay_fail(r, DP_ERR_UPSTREAM_CLOSED);
            return;
        }
        r->eof = 1;
        h2o_socket_read_stop(sock);
        relay_drain_input(r);
        if (r->finished)
            return;
        goto Pump;
    }
    if (!r->head_done) {
        int rv = relay_parse_head(r);
        if (rv <= 0)
            return;
    }
    relay_drain_input(r);
    if (r->finished)
        return;
Pump:
    relay_pump(r);
}

/* --- client side ---------------------------------------------------------------------------- */

static void relay_start_response(dp_relay_t *r)
{
    h2o_req_t *req = r->req;
    req->res.status = r->status;
    req->res.reason = r->reason;
    if (r->mode == BODY_LENGTH)
        req->res.content_length = r->content_length;
    h2o_add_header_by_str(&req->pool, &req->res.headers, H2O_STRLIT("x-request-id"), 0, NULL, r->reqid.base, r->reqid.len);
    relay_unwatch(r); /* from here on h2o's writes notice a client that left */
    h2o_start_response(req, &r->generator);
    r->started = 1;
}

/* Hands buffered bytes to h2o when it is not busy with the previous ones. */
static void relay_pump(dp_relay_t *r)
{
    if (r->client_sending || r->finished)
        return;
    size_t n = r->buf != NULL ? r->buf->len : 0;
    if (n == 0 && !r->upstream_done)
        return;
    if (!r->started)
        relay_start_response(r);
    h2o_iovec_t v = h2o_iovec_init(r->buf != NULL ? r->buf->data : NULL, n);
    r->sending = n;
    h2o_send_state_t state = H2O_SEND_STATE_IN_PROGRESS;
    if (r->upstream_done) {
        state = H2O_SEND_STATE_FINAL;
        r->finished = 1;
        count_response(r->w, r->svc, r->status, r->started_at);
        access_log(r->w, r->req, r->svc, r->status, r->received, r->started_at, r->reqid);
    } else {
        r->client_sending = 1;
    }
    h2o_send(r->req, &v, n != 0 ? 1 : 0, state);
}

static void on_generator_proceed(h2o_generator_t *gen, h2o_req_t *req)
{
    dp_relay_t *r = H2O_STRUCT_FROM_MEMBER(dp_relay_t, generator, gen);
    r->client_sending = 0;
    if (r->buf != NULL) {
        memmove(r->buf->data, r->buf->data + r->sending, r->buf->len - r->sending);
        r->buf->len -= r->sending;
    }
    r->sending = 0;
    if (r->abort_pending) {
        /* may free r (see relay_fail): nothing after it */
        h2o_send(req, NULL, 0, H2O_SEND_STATE_ERROR);
        return;
    }
    if (r->paused)
        relay_drain_input(r);
    if (r->finished)
        return;
    relay_pump(r);
}

static void on_generator_stop(h2o_generator_t *gen, h2o_req_t *req)
{
    /* everything is undone in relay_dispose, which h2o runs right after */
}

/* Gives back what the upstream side holds: timer, connection, permits, endpoint count. */
static void relay_finish_upstream(dp_relay_t *r)
{
    if (h2o_timeout_is_linked(&r->timer) && !r->abort_pending) /* that timer ends the stream */
        h2o_timeout_unlink(&r->timer);
    if (h2o_linklist_is_linked(&r->wait_link)) {
        dp_wpool_t *wp = &r->ep->wp[r->w->index];
        h2o_linklist_unlink(&r->wait_link);
        wp->nwaiters--;
        count_waiters(r->ep, -1);
        wpool_maybe_deactivate(r->w, r->ep);
    }
    if (r->conn != NULL) {
        dp_conn_t *c = r->conn;
        r->conn = NULL;
        c->relay = NULL;
        if (c->state == CS_CONNECTING)
            ; /* let it finish; conn_ready parks it idle for the next request */
        else
            conn_close(c);
    }
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
    if (r->outstanding) {
        r->outstanding = 0;
        atomic_fetch_sub(&r->ep->outstanding, 1);
    }
    r->state = RS_DONE;
}

static void relay_fail(dp_relay_t *r, dp_error_t e)
{
    int status = dp_error(e)->status;
    relay_finish_upstream(r);
    if (r->finished)
        return;
    if (!r->started) {
        r->finished = 1;
        /* the upstream's head may have been copied already: the error is the gateway's alone */
        r->req->res.headers = (h2o_headers_t){NULL, 0, 0};
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
    if (r->state == RS_ADMIT) {
        int stage = r->lim_stage;
        if (relay_leave_queue(r)) {
            relay_admit(r); /* granted in the same instant: go on */
            return;
        }
        DP_SHARED_ADD(stage_limiter(r, stage)->timeouts, 1);
        relay_fail(r, DP_ERR_QUEUE_TIMEOUT);
        return;
    }
    relay_fail(r, DP_ERR_UPSTREAM_TIMEOUT);
}

static void relay_dispose(void *p)
{
    dp_relay_t *r = p;
    dp_worker_t *w = r->w;
    relay_finish_upstream(r);
    if (h2o_timeout_is_linked(&r->timer))
        h2o_timeout_unlink(&r->timer);
    if (r->buf != NULL && !r->buf_in_req_pool)
        dp_bufpool_put(&w->bufpool, r->buf, r->wg->gen->cfg->buffers.max_retained);
    r->buf = NULL;
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
    if (!h2o_memis(req->method.base, req->method.len, H2O_STRLIT("POST"))) {
        if (h2o_memis(req->method.base, req->method.len, H2O_STRLIT("OPTIONS")) &&
            cors_preflight(w, req, g, rt, id, idlen, reqid, now))
            return 0;
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
    r->state = RS_ADMIT;
    r->client_fd = http1_client_fd(req);
    if (w->peek_timer.cb == NULL) {
        w->peek_timer.cb = on_peek_timer;
        w->watch_timer.cb = on_watch_timer;
    }
    DP_OWNER_ADD(w->active, 1);
    relay_admit(r);
    return 0;
}

/* --- housekeeping --------------------------------------------------------------------------- */

static void close_idle_of(dp_worker_t *w, dp_endpoint_t *ep, size_t keep)
{
    dp_wpool_t *wp = &ep->wp[w->index];
    size_t n = 0;
    for (h2o_linklist_t *l = wp->idle.next; l != &wp->idle; l = l->next)
        n++;
    while (n > keep && !h2o_linklist_is_empty(&wp->idle)) {
        /* the oldest idle connections are at the tail */
        dp_conn_t *c = H2O_STRUCT_FROM_MEMBER(dp_conn_t, idle_link, wp->idle.prev);
        n--;
        conn_close(c);
    }
}

/* max_idle_per_host was lowered at runtime: close this worker's oldest idle connections while the
 * upstream keeps more idle than it now may. Workers trim concurrently, so by bad timing one may
 * close a connection another already made up for (never more than one per worker). */
static void trim_idle_excess(dp_worker_t *w, dp_endpoint_t *ep)
{
    dp_wpool_t *wp = &ep->wp[w->index];
    dp_host_t *h = ep->upstream;
    while (!h2o_linklist_is_empty(&wp->idle) && atomic_load(&h->idle) > atomic_load(&h->max_idle))
        conn_close(H2O_STRUCT_FROM_MEMBER(dp_conn_t, idle_link, wp->idle.prev));
}

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

    /* pools: retired endpoints drop their idle connections; endpoints that others wait for give
     * theirs up; the process-wide idle bound is re-applied. Pools may deactivate (and be freed)
     * as connections close, so collect the endpoints first. */
    size_t neps = 0;
    for (h2o_linklist_t *l = w->active_pools.next; l != &w->active_pools; l = l->next)
        neps++;
    if (neps > w->hk_eps_capacity) {
        dp_endpoint_t **grown = realloc(w->hk_eps, neps * sizeof(grown[0]));
        if (grown != NULL) {
            w->hk_eps = grown;
            w->hk_eps_capacity = neps;
        }
    }
    dp_endpoint_t **eps = w->hk_eps;
    neps = 0;
    for (h2o_linklist_t *l = w->active_pools.next; l != &w->active_pools && neps < w->hk_eps_capacity; l = l->next) {
        dp_wpool_t *wp = H2O_STRUCT_FROM_MEMBER(dp_wpool_t, active_link, l);
        eps[neps++] = wp->ep;
    }
    for (size_t i = 0; i != neps; ++i)
        atomic_fetch_add(&eps[i]->refcnt, 1);
    for (size_t i = 0; i != neps; ++i) {
        dp_endpoint_t *ep = eps[i];
        dp_wpool_t *wp = &ep->wp[w->index];
        if (ep_retired(ep) || atomic_load(&w->server->exiting))
            close_idle_of(w, ep, 0);
        else if (atomic_load(&ep->upstream->waiters) > wp->nwaiters)
            close_idle_of(w, ep, 0);
        else
            trim_idle_excess(w, ep);
        if (!ep_retired(ep))
            wpool_serve_waiters(w, ep);
        else
            while (!h2o_linklist_is_empty(&wp->waiters)) {
                /* its generation is gone; requests still waiting finish on a fresh connection */
                if (!reserve_slot(ep))
                    break;
                dp_relay_t *r = H2O_STRUCT_FROM_MEMBER(dp_relay_t, wait_link, wp->waiters.next);
                h2o_linklist_unlink(&r->wait_link);
                wp->nwaiters--;
                count_waiters(ep, -1);
                conn_open(w, ep, r);
            }
    }
    uint32_t max_idle_total = atomic_load(&w->server->max_idle_total);
    for (size_t i = 0; i != neps && atomic_load(&w->server->idle_total) > max_idle_total; ++i)
        close_idle_of(w, eps[i], 0);
    for (size_t i = 0; i != neps; ++i) {
        wpool_maybe_deactivate(w, eps[i]);
        dp_endpoint_release(eps[i]);
    }
    dp_bufpool_trim(&w->bufpool, w->wgen->gen->cfg->buffers.max_retained);
}

void dp_proxy_close_idle(dp_worker_t *w)
{
    atomic_store(&w->server->exiting, 1);
    dp_proxy_housekeeping(w);
}
