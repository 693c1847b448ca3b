/*
 * dp_ws: the WebSocket relay (see dp_ws.h).
 *
 * Life of one connection, all on the worker that accepted it:
 *   1. dp_ws_on_req checks the upgrade, counts it against websocket.max_connections and holds the
 *      worker's current generation (wg->nrequests, as a relay does): a reload never cuts it.
 *   2. Handshake with an endpoint that has a ws_url, picked by the balancer: connect, TLS for wss,
 *      our own upgrade request, its answer checked (dp_ws_parse_answer). A failure tries the next
 *      endpoint, at most retry.max_attempts in all; only then does the client get its 101
 *      (h2o_http1_upgrade), or a 502 naming the last failure.
 *   3. The tunnel: a wslay server context toward the client and a client context (masking) toward
 *      the endpoint. Each whole message one side receives is queued on the other; pings are
 *      answered on each hop; a close is passed on with its code and reason. wslay enforces
 *      max_message on receipt (1009 to the sender; the other side gets 1001), and a side that goes
 *      without a close gives the other side a 1001.
 *   4. A 1 s tick per connection: idle_timeout (1001 both ways), an endpoint gone from the
 *      worker's current generation (1001 both ways after the drain_timeout of the generation that
 *      removed it), SIGTERM (1001 both ways; the drain waits, as the connection counts in
 *      w->active), a close that was never answered (sockets closed after DP_WS_CLOSE_WAIT_MS).
 *
 * Back-pressure: a side's output (messages wslay holds, plus bytes handed to the socket) above
 * 2 x max_message stops reads from the other side (its recv callback says "would block" and its
 * socket stops reading); reads resume when the output is under half of that. So a slow reader
 * costs at most about that much memory per direction, plus one socket read.
 */
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <openssl/rand.h>
#include <wslay/wslay.h>
#include "dp_balancer.h"
#include "dp_internal.h"
#include "h2o/http1.h"
#include "h2o/websocket.h"
#include "pw_http.h"
#include "pw_log.h"

#define DP_WS_TICK_MS 1000
#define DP_WS_CLOSE_WAIT_MS 5000 /* a close sent and not answered: the sockets are closed after this */
#define DP_WS_OUT_CHUNK 65536    /* frame bytes gathered per socket write */

typedef struct st_dp_ws_t dp_ws_t;

/* One direction's socket with its wslay context. */
typedef struct st_dp_ws_side_t {
    dp_ws_t *ws;
    int index;                   /* 0 = the client (server context), 1 = the endpoint (client context: masks) */
    h2o_socket_t *sock;          /* NULL once closed */
    wslay_event_context_ptr ctx; /* NULL until the tunnel starts */
    h2o_buffer_t *out;           /* frames wslay wrote, not yet handed to the socket */
    h2o_buffer_t *flying;        /* bytes handed to h2o_socket_write, until its callback */
    int paused;                  /* reads stopped: the other side's output is over the bound */
    int close_seen;              /* the close this side's context sent is known to the relay */
    int close_by_relay;          /* that close was queued by the relay (not wslay's own 1009/1002 or echo) */
    int lingering;               /* our close is out, the peer's is not in: its bytes are read and dropped until it closes */
} dp_ws_side_t;

struct st_dp_ws_t {
    dp_worker_t *w;
    dp_wgen_t *wg; /* the generation it started with (counted in wg->nrequests) */
    dp_service_t *svc;
    dp_endpoint_t *ep; /* the endpoint of the tunnel, or of the handshake in progress */
    /* the handshake */
    h2o_req_t *req;   /* the client's request until the upgrade; NULL once it is gone */
    dp_ws_t **holder; /* in req->pool: tells us when the request goes */
    char reqid[128];  /* X-Request-Id (at most 128 bytes, dp_request_id), copied: logs may need it after the request went */
    size_t reqid_len;
    uint64_t started_at; /* loop ms */
    dp_tried_t tried;    /* endpoints tried, and those without ws_url */
    uint32_t attempts;
    uint16_t tried_at[10];       /* the index of each try's endpoint (retry.max_attempts is at most 10) */
    int trial;                   /* the try is the endpoint's half-open trial */
    char key[DP_WS_KEY_LEN + 1]; /* our Sec-WebSocket-Key to the endpoint */
    char *head;                  /* the upgrade request being written */
    char *protocol;              /* the subprotocol the endpoint chose (NUL-terminated), or NULL */
    dp_error_t error;            /* why the last try failed */
    int upgrading;               /* h2o_http1_upgrade called: the request goes, on_upgraded comes */
    h2o_socket_t *up;            /* the endpoint's socket during the handshake */
    /* the tunnel */
    dp_ws_side_t side[2];
    h2o_timeout_entry_t timer;      /* handshake deadline, then the tick */
    uint64_t last_frame_at;         /* loop ms of the last frame either way */
    uint64_t drain_at;              /* the endpoint left the config: 1001 at this time; 0 = not */
    uint64_t closing_since;         /* a close went out: sockets closed after DP_WS_CLOSE_WAIT_MS */
    uint64_t max_message;           /* websocket.* of the generation it started with */
    uint64_t bound;                 /* output bytes per side above which the other side stops reading */
    int tunnelling;                 /* the client has its 101: counted in ep->ws_open */
    uint64_t messages[2], bytes[2]; /* relayed by this tunnel from side [i] (0 = client), for its access line */
};

static void ws_try_next(dp_ws_t *ws);
static void ws_run(dp_ws_t *ws);

/* --- ending ----------------------------------------------------------------------------------- */

static void ws_free(dp_ws_t *ws)
{
    if (h2o_timeout_is_linked(&ws->timer))
        h2o_timeout_unlink(&ws->timer);
    if (ws->holder != NULL)
        *ws->holder = NULL;
    if (ws->up != NULL)
        h2o_socket_close(ws->up);
    for (int i = 0; i != 2; ++i) {
        dp_ws_side_t *s = ws->side + i;
        if (s->sock != NULL)
            h2o_socket_close(s->sock);
        if (s->ctx != NULL)
            wslay_event_context_free(s->ctx);
        if (s->out != NULL)
            h2o_buffer_dispose(&s->out);
        if (s->flying != NULL)
            h2o_buffer_dispose(&s->flying);
    }
    if (ws->tunnelling) {
        atomic_fetch_sub(&ws->ep->ws_open, 1);
        dp_relay_log_upgrade(ws->w, ws->svc, ws->ep->label, ws->messages, ws->bytes, ws->started_at,
                             h2o_iovec_init(ws->reqid, ws->reqid_len));
    }
    atomic_fetch_sub(&ws->svc->shared->ws_open, 1);
    DP_OWNER_ADD(ws->w->active, -1);
    free(ws->head);
    free(ws->protocol);
    dp_worker_t *w = ws->w;
    dp_wgen_t *wg = ws->wg;
    free(ws);
    if (--wg->nrequests == 0 && !wg->current)
        dp_wgen_release(w, wg);
}

/* The request went (its pool is being freed): after the upgrade that is expected. */
static void on_req_dispose(void *p)
{
    dp_ws_t *ws = *(dp_ws_t **)p;
    if (ws == NULL)
        return;
    ws->req = NULL;
    ws->holder = NULL;
}

/* Answers an upgrade of svc with the error e, counted in pathway_websocket_refused_total. */
static void refuse_early(dp_worker_t *w, h2o_req_t *req, dp_service_t *svc, h2o_iovec_t reqid, uint64_t started_at, dp_error_t e)
{
    int why = e == DP_ERR_WS_TOO_MANY ? 0 : dp_error(e)->endpoint_fault || e == DP_ERR_UPSTREAM_TIMEOUT ? 1 : 2;
    DP_OWNER_ADD(svc->shared->stats[w->index].ws_refused[why], 1);
    dp_relay_send_error(w, req, svc, reqid, started_at, e);
}

/* The handshake ended without a tunnel: answer the client (when it is still there) and free. */
static void ws_refuse(dp_ws_t *ws, dp_error_t e)
{
    if (ws->req != NULL)
        refuse_early(ws->w, ws->req, ws->svc, h2o_iovec_init(ws->reqid, ws->reqid_len), ws->started_at, e);
    ws_free(ws);
}

/* --- the handshake with an endpoint -------------------------------------------------------------- */

static void on_handshake_timeout(h2o_timeout_entry_t *entry);

static void attempt_failed(dp_ws_t *ws, dp_ws_failure_t why, dp_error_t e)
{
    if (ws->up != NULL) {
        h2o_socket_close(ws->up);
        ws->up = NULL;
    }
    if (h2o_timeout_is_linked(&ws->timer))
        h2o_timeout_unlink(&ws->timer);
    atomic_fetch_add(&ws->ep->ws_handshake_failures[why], 1);
    /* only an unreachable endpoint says something of its health: a refused upgrade does not make
     * its HTTP side worse */
    dp_health_record(ws->svc, ws->ep, why == DP_WS_FAIL_CONNECT ? CFG_RETRY_ON_CONNECT_FAILURE : DP_HEALTH_NEUTRAL, ws->trial, 0,
                     h2o_now(ws->w->loop));
    PW_DEBUG("websocket %.*s: handshake with %s failed: %s", (int)ws->reqid_len, ws->reqid, ws->ep->label,
             dp_ws_failure_names[why]);
    ws->error = e;
    ws_try_next(ws);
}

static void upgrade_client(dp_ws_t *ws);

static void on_answer(h2o_socket_t *sock, const char *err)
{
    dp_ws_t *ws = sock->data;
    if (err != NULL) {
        attempt_failed(ws, DP_WS_FAIL_CLOSED, DP_ERR_UPSTREAM_CLOSED);
        return;
    }
    size_t headlen;
    int status;
    const char *proto;
    size_t proto_len;
    switch (dp_ws_parse_answer(sock->input->bytes, sock->input->size, ws->key, &headlen, &status, &proto, &proto_len)) {
    case DP_WS_ANSWER_INCOMPLETE:
        return;
    case DP_WS_ANSWER_STATUS:
        attempt_failed(ws, DP_WS_FAIL_STATUS, DP_ERR_WS_UPSTREAM_REFUSED);
        return;
    case DP_WS_ANSWER_BAD:
        attempt_failed(ws, DP_WS_FAIL_BAD_ANSWER, DP_ERR_WS_UPSTREAM_BAD_ANSWER);
        return;
    case DP_WS_ANSWER_BAD_ACCEPT:
        attempt_failed(ws, DP_WS_FAIL_BAD_ACCEPT, DP_ERR_WS_UPSTREAM_BAD_ACCEPT);
        return;
    case DP_WS_ANSWER_OK:
        break;
    }
    if (proto != NULL && (ws->protocol = malloc(proto_len + 1)) != NULL) {
        memcpy(ws->protocol, proto, proto_len);
        ws->protocol[proto_len] = '\0';
    }
    h2o_buffer_consume(&sock->input, headlen); /* frames the endpoint sent at once stay for the tunnel */
    h2o_socket_read_stop(sock);
    h2o_timeout_unlink(&ws->timer);
    dp_health_record(ws->svc, ws->ep, DP_HEALTH_NEUTRAL, ws->trial, 0, h2o_now(ws->w->loop));
    upgrade_client(ws);
}

static void on_head_written(h2o_socket_t *sock, const char *err)
{
    dp_ws_t *ws = sock->data;
    free(ws->head);
    ws->head = NULL;
    if (err != NULL) {
        attempt_failed(ws, DP_WS_FAIL_CLOSED, DP_ERR_UPSTREAM_CLOSED);
        return;
    }
    h2o_socket_read_start(sock, on_answer);
}

static void send_head(dp_ws_t *ws)
{
    h2o_iovec_t protos = {NULL, 0};
    if (ws->req != NULL) {
        ssize_t i = h2o_find_header_by_str(&ws->req->headers, H2O_STRLIT("sec-websocket-protocol"), -1);
        if (i != -1)
            protos = ws->req->headers.entries[i].value;
    }
    dp_ws_make_key(ws->key);
    size_t len;
    const dp_wstarget_t *t = ws->ep->ws;
    if ((ws->head = dp_ws_request_head(t->head_prefix.base, t->head_prefix.len, ws->key, protos.base, protos.len, &len)) == NULL) {
        h2o_timeout_unlink(&ws->timer);
        h2o_socket_close(ws->up);
        ws->up = NULL;
        ws_refuse(ws, DP_ERR_OUT_OF_MEMORY);
        return;
    }
    h2o_iovec_t v = h2o_iovec_init(ws->head, len);
    h2o_socket_write(ws->up, &v, 1, on_head_written);
}

static void on_tls(h2o_socket_t *sock, const char *err)
{
    dp_ws_t *ws = sock->data;
    if (err != NULL) {
        attempt_failed(ws, DP_WS_FAIL_CONNECT, DP_ERR_CONNECT_FAILED);
        return;
    }
    send_head(ws);
}

static void on_connect(h2o_socket_t *sock, const char *err)
{
    dp_ws_t *ws = sock->data;
    if (err != NULL) {
        attempt_failed(ws, DP_WS_FAIL_CONNECT, DP_ERR_CONNECT_FAILED);
        return;
    }
    const dp_wstarget_t *t = ws->ep->ws;
    if (t->is_tls)
        h2o_socket_ssl_handshake(sock, t->ssl_ctx, t->server_name, on_tls);
    else
        send_head(ws);
}

static void on_handshake_timeout(h2o_timeout_entry_t *entry)
{
    dp_ws_t *ws = H2O_STRUCT_FROM_MEMBER(dp_ws_t, timer, entry);
    attempt_failed(ws, DP_WS_FAIL_TIMEOUT, DP_ERR_UPSTREAM_TIMEOUT);
}

static int was_tried(const dp_ws_t *ws, size_t i)
{
    if (i < 64)
        return (ws->tried & DP_TRIED_BIT(i)) != 0;
    for (uint32_t k = 0; k != ws->attempts && k != sizeof(ws->tried_at) / sizeof(ws->tried_at[0]); ++k)
        if (ws->tried_at[k] == i)
            return 1;
    return 0;
}

/* The next endpoint with a ws_url, within retry.max_attempts; else the client's answer. */
static void ws_try_next(dp_ws_t *ws)
{
    dp_service_t *svc = ws->svc;
    if (ws->req == NULL) { /* the client left */
        ws_free(ws);
        return;
    }
    if (ws->attempts >= svc->cfg->retry.max_attempts) {
        ws_refuse(ws, ws->error);
        return;
    }
    uint64_t now = h2o_now(ws->w->loop);
    size_t i = dp_balancer_pick(svc, ws->tried, now, &ws->trial);
    if (svc->endpoints[i]->ws == NULL || was_tried(ws, i)) {
        if (ws->trial)
            dp_health_record(svc, svc->endpoints[i], DP_HEALTH_NEUTRAL, 1, 0, now);
        ws->trial = 0;
        /* the balancer tracks the first 64 endpoints only: past them, the first untried with a ws_url */
        for (i = 64; i < svc->nendpoints && (svc->endpoints[i]->ws == NULL || was_tried(ws, i)); ++i)
            ;
        if (i >= svc->nendpoints) {
            ws_refuse(ws, ws->error); /* every endpoint with a ws_url was tried */
            return;
        }
    }
    if (ws->attempts < sizeof(ws->tried_at) / sizeof(ws->tried_at[0]))
        ws->tried_at[ws->attempts] = (uint16_t)i;
    ws->tried |= DP_TRIED_BIT(i);
    ws->attempts++;
    ws->ep = svc->endpoints[i];
    const dp_wstarget_t *t = ws->ep->ws;
    if (t->addrlen == 0) {
        attempt_failed(ws, DP_WS_FAIL_CONNECT, DP_ERR_UNRESOLVED);
        return;
    }
    ws->timer.cb = on_handshake_timeout;
    h2o_timeout_link(ws->w->loop, dp_worker_timeout(ws->w, svc->cfg->timeouts.request_ms), &ws->timer);
    if ((ws->up = h2o_socket_connect(ws->w->loop, (struct sockaddr *)&t->addr, t->addrlen, on_connect)) == NULL) {
        attempt_failed(ws, DP_WS_FAIL_CONNECT, DP_ERR_CONNECT_FAILED);
        return;
    }
    ws->up->data = ws;
}

/* --- the tunnel ----------------------------------------------------------------------------------- */

static void on_tick(h2o_timeout_entry_t *entry);
static void on_side_read(h2o_socket_t *sock, const char *err);
static void on_linger_read(h2o_socket_t *sock, const char *err);

static dp_ws_side_t *other_side(dp_ws_side_t *s)
{
    return s->ws->side + (1 - s->index);
}

static size_t side_output(dp_ws_side_t *s)
{
    return (s->ctx != NULL ? wslay_event_get_queued_msg_length(s->ctx) : 0) + s->out->size + s->flying->size;
}

static ssize_t recv_cb(wslay_event_context_ptr ctx, uint8_t *buf, size_t len, int flags, void *user)
{
    (void)flags;
    dp_ws_side_t *s = user;
    if (s->sock == NULL || s->paused || s->sock->input->size == 0) {
        wslay_event_set_error(ctx, WSLAY_ERR_WOULDBLOCK);
        return -1;
    }
    if (len > s->sock->input->size)
        len = s->sock->input->size;
    memcpy(buf, s->sock->input->bytes, len);
    h2o_buffer_consume(&s->sock->input, len);
    return (ssize_t)len;
}

static ssize_t send_cb(wslay_event_context_ptr ctx, const uint8_t *data, size_t len, int flags, void *user)
{
    (void)flags;
    dp_ws_side_t *s = user;
    if (s->sock == NULL) {
        wslay_event_set_error(ctx, WSLAY_ERR_CALLBACK_FAILURE);
        return -1;
    }
    if (s->out->size >= DP_WS_OUT_CHUNK) {
        wslay_event_set_error(ctx, WSLAY_ERR_WOULDBLOCK);
        return -1;
    }
    h2o_iovec_t dst = h2o_buffer_reserve(&s->out, len);
    if (dst.base == NULL) {
        wslay_event_set_error(ctx, WSLAY_ERR_CALLBACK_FAILURE);
        return -1;
    }
    memcpy(dst.base, data, len);
    s->out->size += len;
    return (ssize_t)len;
}

static int genmask_cb(wslay_event_context_ptr ctx, uint8_t *buf, size_t len, void *user)
{
    (void)ctx;
    (void)user;
    return RAND_bytes(buf, (int)len) == 1 ? 0 : -1;
}

/* A close code the relay may send on (1005, 1006 and 1015 never go on the wire; 0 = none). */
static uint16_t sendable_code(uint16_t code)
{
    return code == 1005 || code == 1006 || code == 1015 || code < 1000 || code >= 5000 ? 0 : code;
}

static void queue_close(dp_ws_side_t *s, uint16_t code, const uint8_t *reason, size_t reason_len)
{
    if (s->sock == NULL || s->ctx == NULL || wslay_event_get_close_sent(s->ctx))
        return;
    code = sendable_code(code);
    if (reason_len > 123)
        reason_len = 123;
    s->close_by_relay = 1;
    wslay_event_queue_close(s->ctx, code, code != 0 ? reason : NULL, code != 0 ? reason_len : 0);
    if (s->ws->closing_since == 0)
        s->ws->closing_since = h2o_now(s->ws->w->loop);
}

static void on_msg(wslay_event_context_ptr ctx, const struct wslay_event_on_msg_recv_arg *arg, void *user)
{
    (void)ctx;
    dp_ws_side_t *s = user, *o = other_side(s);
    dp_ws_t *ws = s->ws;
    ws->last_frame_at = h2o_now(ws->w->loop);
    switch (arg->opcode) {
    case WSLAY_TEXT_FRAME:
    case WSLAY_BINARY_FRAME: {
        if (o->sock == NULL || o->ctx == NULL || wslay_event_get_close_sent(o->ctx))
            return;
        struct wslay_event_msg m = {arg->opcode, arg->msg, arg->msg_length};
        if (wslay_event_queue_msg(o->ctx, &m) != 0) {
            queue_close(s, WSLAY_CODE_INTERNAL_SERVER_ERROR, NULL, 0);
            queue_close(o, WSLAY_CODE_INTERNAL_SERVER_ERROR, NULL, 0);
            return;
        }
        dp_svcstats_t *st = &ws->svc->shared->stats[ws->w->index];
        DP_OWNER_ADD(st->ws_messages[s->index], 1);
        DP_OWNER_ADD(st->ws_bytes[s->index], arg->msg_length);
        ws->messages[s->index]++;
        ws->bytes[s->index] += arg->msg_length;
        if (side_output(o) > ws->bound)
            s->paused = 1;
        break;
    }
    case WSLAY_CONNECTION_CLOSE: {
        const uint8_t *reason = arg->msg_length > 2 ? arg->msg + 2 : NULL;
        queue_close(o, arg->status_code, reason, arg->msg_length > 2 ? arg->msg_length - 2 : 0);
        if (ws->closing_since == 0)
            ws->closing_since = h2o_now(ws->w->loop);
        break;
    }
    default: /* ping and pong: each hop answers its own (wslay queues the pong) */
        break;
    }
}

static const struct wslay_event_callbacks ws_callbacks = {recv_cb, send_cb, genmask_cb, NULL, NULL, NULL, on_msg};

static void side_close_socket(dp_ws_side_t *s)
{
    if (s->sock == NULL)
        return;
    h2o_socket_close(s->sock);
    s->sock = NULL;
}

static void on_side_written(h2o_socket_t *sock, const char *err)
{
    dp_ws_side_t *s = sock->data;
    dp_ws_t *ws = s->ws;
    h2o_buffer_consume(&s->flying, s->flying->size);
    if (err != NULL)
        side_close_socket(s);
    ws_run(ws);
}

/* Moves what can move on one side; returns 1 when something did. */
static int side_step(dp_ws_side_t *s)
{
    int progress = 0;
    if (s->sock == NULL)
        return 0;
    if (wslay_event_want_write(s->ctx) && s->out->size < DP_WS_OUT_CHUNK) {
        size_t before = s->out->size, queued = wslay_event_get_queued_msg_count(s->ctx);
        if (wslay_event_send(s->ctx) != 0) {
            side_close_socket(s);
            return 1;
        }
        progress |= s->out->size != before || wslay_event_get_queued_msg_count(s->ctx) != queued;
    }
    if (!h2o_socket_is_writing(s->sock) && s->out->size != 0) {
        h2o_buffer_t *t = s->flying;
        s->flying = s->out;
        s->out = t;
        h2o_iovec_t v = h2o_iovec_init(s->flying->bytes, s->flying->size);
        h2o_socket_write(s->sock, &v, 1, on_side_written);
        progress = 1;
    }
    if (!s->paused && s->sock->input->size != 0 && wslay_event_want_read(s->ctx)) {
        size_t before = s->sock->input->size;
        if (wslay_event_recv(s->ctx) != 0) {
            side_close_socket(s);
            return 1;
        }
        progress |= s->sock->input->size != before;
    }
    return progress;
}

/* Everything that follows an event: move data both ways, pass on closes wslay made itself, resume
 * paused readers, close finished sockets, free the tunnel when both are closed. Called only from
 * the top of an event callback. */
static void ws_run(dp_ws_t *ws)
{
    for (int rounds = 0; rounds != 64; ++rounds) {
        int progress = 0;
        for (int i = 0; i != 2; ++i) {
            dp_ws_side_t *s = ws->side + i, *o = other_side(s);
            progress |= side_step(s);
            /* a close wslay sent on its own (1009 too big, 1002 protocol error, or its echo of the
             * peer's close): the other side learns the code too */
            if (s->sock != NULL && !s->close_seen && wslay_event_get_close_sent(s->ctx)) {
                s->close_seen = 1;
                if (!s->close_by_relay) {
                    uint16_t code = wslay_event_get_status_code_sent(s->ctx);
                    queue_close(o, code == WSLAY_CODE_MESSAGE_TOO_BIG ? WSLAY_CODE_GOING_AWAY : code, NULL, 0);
                    progress = 1;
                }
            }
            /* the socket went without a close (reset, EOF): the other side gets 1001 */
            if (s->sock == NULL && o->sock != NULL && !wslay_event_get_close_sent(o->ctx)) {
                static const char why[] = "the other side went away";
                queue_close(o, WSLAY_CODE_GOING_AWAY, (const uint8_t *)why, sizeof(why) - 1);
                progress = 1;
            }
            if (s->paused && o->sock != NULL && side_output(o) <= ws->bound / 2) {
                s->paused = 0;
                progress = 1;
            }
            if (s->paused && o->sock == NULL)
                s->paused = 0;
        }
        if (!progress)
            break;
    }
    for (int i = 0; i != 2; ++i) {
        dp_ws_side_t *s = ws->side + i;
        if (s->sock == NULL)
            continue;
        int writing = h2o_socket_is_writing(s->sock) || s->out->size != 0;
        if (!wslay_event_want_read(s->ctx) && !wslay_event_want_write(s->ctx) && !writing) {
            if (wslay_event_get_close_received(s->ctx) || !wslay_event_get_close_sent(s->ctx)) {
                side_close_socket(s); /* closes exchanged (or the context gave up): done */
            } else if (!s->lingering) {
                /* wslay stopped reading after a close of its own (1009, 1002): closing now, with the
                 * rest of the peer's frame or its close unread, would send a reset that can overtake
                 * our close frame; so half-close and drain until the peer closes (bounded by the tick) */
                s->lingering = 1;
                shutdown(h2o_socket_get_fd(s->sock), SHUT_WR);
                h2o_socket_read_start(s->sock, on_linger_read);
            }
            continue;
        }
        if (wslay_event_want_read(s->ctx) && !s->paused)
            h2o_socket_read_start(s->sock, on_side_read);
        else
            h2o_socket_read_stop(s->sock);
    }
    if (ws->side[0].sock == NULL && ws->side[1].sock == NULL)
        ws_free(ws);
}

static void on_linger_read(h2o_socket_t *sock, const char *err)
{
    dp_ws_side_t *s = sock->data;
    dp_ws_t *ws = s->ws;
    h2o_buffer_consume(&sock->input, sock->input->size);
    if (err != NULL) {
        side_close_socket(s);
        ws_run(ws);
    }
}

static void on_side_read(h2o_socket_t *sock, const char *err)
{
    dp_ws_side_t *s = sock->data;
    dp_ws_t *ws = s->ws;
    if (err != NULL) {
        /* what arrived before the end is still relayed */
        if (s->sock->input->size != 0 && wslay_event_want_read(s->ctx))
            wslay_event_recv(s->ctx);
        side_close_socket(s);
    }
    ws_run(ws);
}

/* Both sides close with `code` and `reason` (idle, drain, shutdown). */
static void close_both(dp_ws_t *ws, uint16_t code, const char *reason)
{
    for (int i = 0; i != 2; ++i)
        queue_close(ws->side + i, code, (const uint8_t *)reason, strlen(reason));
    ws_run(ws);
}

/* The service as the worker's current generation has it (NULL when it is gone), and in *listed
 * whether the tunnel's endpoint is still one of its endpoints with a ws_url. */
static const dp_service_t *current_service(dp_ws_t *ws, int *listed)
{
    dp_worker_refresh_gen(ws->w);
    dp_gen_t *g = ws->w->wgen->gen;
    *listed = 1;
    if (g == ws->wg->gen)
        return ws->svc;
    dp_service_t *svc = dp_gen_find_service(g, ws->svc->id, ws->svc->idlen);
    *listed = 0;
    for (size_t i = 0; svc != NULL && i != svc->nendpoints; ++i)
        if (svc->endpoints[i] == ws->ep)
            *listed = svc->endpoints[i]->ws != NULL;
    return svc;
}

static void on_tick(h2o_timeout_entry_t *entry)
{
    dp_ws_t *ws = H2O_STRUCT_FROM_MEMBER(dp_ws_t, timer, entry);
    dp_worker_t *w = ws->w;
    uint64_t now = h2o_now(w->loop);
    const cfg_websocket_t *c = &ws->svc->cfg->websocket;
    h2o_timeout_link(w->loop, dp_worker_timeout(w, DP_WS_TICK_MS), &ws->timer);
    if (ws->closing_since != 0) {
        if (now - ws->closing_since >= DP_WS_CLOSE_WAIT_MS) {
            side_close_socket(ws->side);
            side_close_socket(ws->side + 1);
            ws_run(ws);
        }
        return;
    }
    if (atomic_load_explicit(&w->server->stopping, memory_order_relaxed)) {
        close_both(ws, WSLAY_CODE_GOING_AWAY, "pathway is shutting down");
        return;
    }
    if (now - ws->last_frame_at >= c->idle_timeout_ms) {
        close_both(ws, WSLAY_CODE_GOING_AWAY, "idle timeout");
        return;
    }
    int listed;
    const dp_service_t *cur = current_service(ws, &listed);
    if (ws->drain_at == 0 && !listed) /* the generation that removed it says how long it drains */
        ws->drain_at = now + (cur != NULL ? cur->cfg : ws->svc->cfg)->websocket.drain_timeout_ms;
    if (ws->drain_at != 0 && now >= ws->drain_at)
        close_both(ws, WSLAY_CODE_GOING_AWAY, "endpoint removed from the config");
}

static int side_start(dp_ws_side_t *s, dp_ws_t *ws, int index, h2o_socket_t *sock)
{
    s->ws = ws;
    s->index = index;
    s->sock = sock;
    sock->data = s;
    h2o_buffer_init(&s->out, &h2o_socket_buffer_prototype);
    h2o_buffer_init(&s->flying, &h2o_socket_buffer_prototype);
    int r = index == 0 ? wslay_event_context_server_init(&s->ctx, &ws_callbacks, s)
                       : wslay_event_context_client_init(&s->ctx, &ws_callbacks, s);
    if (r != 0) {
        s->ctx = NULL;
        return -1;
    }
    wslay_event_config_set_max_recv_msg_length(s->ctx, ws->max_message);
    return 0;
}

static void on_upgraded(void *user, h2o_socket_t *sock, size_t reqsize)
{
    dp_ws_t *ws = user;
    ws->upgrading = 0;
    if (sock == NULL) { /* the 101 could not be written: the client is gone */
        ws_free(ws);
        return;
    }
    h2o_buffer_consume(&sock->input, reqsize); /* frames the client sent at once stay */
    h2o_socket_t *up = ws->up;
    ws->up = NULL;
    ws->tunnelling = 1;
    atomic_fetch_add(&ws->ep->ws_open, 1);
    dp_relay_count_upgrade(ws->w, ws->svc);
    if (side_start(ws->side, ws, 0, sock) != 0 || side_start(ws->side + 1, ws, 1, up) != 0) {
        if (ws->side[0].sock == NULL)
            h2o_socket_close(sock);
        if (ws->side[1].sock == NULL)
            h2o_socket_close(up);
        side_close_socket(ws->side);
        side_close_socket(ws->side + 1);
        ws_free(ws);
        return;
    }
    ws->last_frame_at = h2o_now(ws->w->loop);
    ws->timer.cb = on_tick;
    h2o_timeout_link(ws->w->loop, dp_worker_timeout(ws->w, DP_WS_TICK_MS), &ws->timer);
    ws_run(ws);
}

static void upgrade_client(dp_ws_t *ws)
{
    h2o_req_t *req = ws->req;
    if (req == NULL) {
        ws_free(ws);
        return;
    }
    ssize_t ki = h2o_find_header_by_str(&req->headers, H2O_STRLIT("sec-websocket-key"), -1);
    char *accept = h2o_mem_alloc_pool(&req->pool, DP_WS_ACCEPT_LEN + 1);
    dp_ws_accept_key(req->headers.entries[ki].value.base, req->headers.entries[ki].value.len, accept);
    req->res.status = 101;
    req->res.reason = "Switching Protocols";
    h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_UPGRADE, NULL, H2O_STRLIT("websocket"));
    h2o_add_header_by_str(&req->pool, &req->res.headers, H2O_STRLIT("sec-websocket-accept"), 0, NULL, accept, DP_WS_ACCEPT_LEN);
    if (ws->protocol != NULL)
        h2o_add_header_by_str(&req->pool, &req->res.headers, H2O_STRLIT("sec-websocket-protocol"), 0, NULL, ws->protocol,
                              strlen(ws->protocol));
    h2o_add_header_by_str(&req->pool, &req->res.headers, H2O_STRLIT("x-request-id"), 0, NULL, ws->reqid, ws->reqid_len);
    ws->upgrading = 1;
    h2o_http1_upgrade(req, NULL, 0, on_upgraded, ws);
}

/* --- entry ------------------------------------------------------------------------------------ */

int dp_ws_is_upgrade(h2o_req_t *req)
{
    if (req->upgrade.base != NULL && h2o_lcstris(req->upgrade.base, req->upgrade.len, H2O_STRLIT("websocket")))
        return 1;
    /* HTTP/2 has no Upgrade: a client that tries anyway sends the handshake's other headers */
    return req->version >= 0x200 && h2o_find_header_by_str(&req->headers, H2O_STRLIT("sec-websocket-key"), -1) != -1;
}

void dp_ws_on_req(dp_worker_t *w, h2o_req_t *req, int rt, const char *id, size_t idlen, h2o_iovec_t reqid, uint64_t now)
{
    dp_gen_t *g = w->wgen->gen;
    if (rt == DP_ROUTE_MISSING) {
        dp_relay_send_error(w, req, NULL, reqid, now, DP_ERR_MISSING_SERVICE);
        return;
    }
    dp_service_t *svc = rt == DP_ROUTE_OK ? dp_gen_find_service(g, id, idlen) : NULL;
    if (svc == NULL) {
        dp_relay_send_error(w, req, NULL, reqid, now, DP_ERR_UNKNOWN_SERVICE);
        return;
    }
    if (req->version >= 0x200) {
        refuse_early(w, req, svc, reqid, now, DP_ERR_WS_NEEDS_HTTP1);
        return;
    }
    const char *key = NULL;
    ssize_t vi = h2o_find_header_by_str(&req->headers, H2O_STRLIT("sec-websocket-version"), -1);
    if (h2o_is_websocket_handshake(req, &key) != 0 || key == NULL || vi == -1 ||
        !h2o_memis(req->headers.entries[vi].value.base, req->headers.entries[vi].value.len, H2O_STRLIT("13"))) {
        refuse_early(w, req, svc, reqid, now, DP_ERR_WS_BAD_HANDSHAKE);
        return;
    }
    dp_tried_t no_ws = 0;
    int any = 0;
    for (size_t i = 0; i != svc->nendpoints; ++i) {
        if (svc->endpoints[i]->ws != NULL)
            any = 1;
        else
            no_ws |= DP_TRIED_BIT(i);
    }
    if (!any) {
        refuse_early(w, req, svc, reqid, now, DP_ERR_WS_NOT_CONFIGURED);
        return;
    }
    if (atomic_load_explicit(&w->server->exiting, memory_order_relaxed)) {
        refuse_early(w, req, svc, reqid, now, DP_ERR_SHUTTING_DOWN);
        return;
    }
    if (atomic_fetch_add(&svc->shared->ws_open, 1) >= svc->cfg->websocket.max_connections) {
        atomic_fetch_sub(&svc->shared->ws_open, 1);
        refuse_early(w, req, svc, reqid, now, DP_ERR_WS_TOO_MANY);
        return;
    }
    dp_ws_t *ws = calloc(1, sizeof(*ws));
    if (ws == NULL) {
        atomic_fetch_sub(&svc->shared->ws_open, 1);
        refuse_early(w, req, svc, reqid, now, DP_ERR_OUT_OF_MEMORY);
        return;
    }
    ws->w = w;
    DP_OWNER_ADD(w->active, 1); /* a SIGTERM drain waits for it: the tick closes it with 1001 */
    ws->wg = w->wgen;
    ws->wg->nrequests++;
    ws->svc = svc;
    ws->req = req;
    ws->reqid_len = reqid.len < sizeof(ws->reqid) ? reqid.len : sizeof(ws->reqid);
    memcpy(ws->reqid, reqid.base, ws->reqid_len);
    ws->started_at = now;
    ws->tried = no_ws;
    ws->error = DP_ERR_CONNECT_FAILED;
    ws->max_message = svc->cfg->websocket.max_message;
    ws->bound = 2 * ws->max_message;
    ws->holder = h2o_mem_alloc_shared(&req->pool, sizeof(*ws->holder), on_req_dispose);
    *ws->holder = ws;
    ws_try_next(ws);
}
