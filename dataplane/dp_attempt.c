/*
 * dp_attempt: one try against one endpoint (see dp_attempt.h), an HTTP/1.1 client on h2o sockets.
 *
 * Why our own client rather than h2o_http1client: it gives no back-pressure hook. Owning the socket
 * lets Pathway stop reading the upstream while the client is slow, so a 50 MiB response holds one
 * buffer, not 50 MiB.
 */
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include "pw_http.h"
#include "dp_attempt.h"
#include "dp_adaptive.h"

#define DP_SMALL_BODY 2048 /* bodies up to this size are held in the request's own pool */

static void on_upstream_read(h2o_socket_t *sock, const char *err);
static void on_conn(dp_pool_waiter_t *wt, dp_conn_t *c, int reused);
static void on_conn_fail(dp_pool_waiter_t *wt, dp_error_t err);

static char *append(char *p, const char *s, size_t len)
{
    memcpy(p, s, len);
    return p + len;
}

/* The upstream request head. No printf here: this runs once per try, and formatting was the
 * largest cost in the profile. The endpoint's fixed prefix is built once per endpoint. */
static h2o_iovec_t build_head(h2o_req_t *req, const dp_endpoint_t *ep, h2o_iovec_t reqid)
{
    h2o_iovec_t ct = h2o_iovec_init(H2O_STRLIT("application/json"));
    ssize_t i = h2o_find_header(&req->headers, H2O_TOKEN_CONTENT_TYPE, -1);
    if (i != -1)
        ct = req->headers.entries[i].value;
    size_t cap = ep->head_prefix.len + 20 + sizeof("\r\ncontent-type: ") + ct.len + sizeof("\r\nx-request-id: ") + reqid.len + 4;
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
    p = append(p, reqid.base, reqid.len);
    p = append(p, H2O_STRLIT("\r\n\r\n"));
    return h2o_iovec_init(head, (size_t)(p - head));
}

dp_attempt_t *dp_attempt_create(dp_worker_t *w, h2o_req_t *req, dp_endpoint_t *ep, h2o_iovec_t reqid, const dp_gen_t *g,
                                const dp_attempt_callbacks_t *cb, void *owner)
{
    dp_attempt_t *a = h2o_mem_alloc_pool(&req->pool, sizeof(*a));
    memset(a, 0, sizeof(*a));
    a->ep = ep;
    a->owner = owner;
    a->_cb = cb;
    a->_req = req;
    a->_w = w;
    a->_wt.on_conn = on_conn;
    a->_wt.on_fail = on_conn_fail;
    a->_max_body = g->cfg->limits.max_response_body;
    a->_buf_size = g->cfg->buffers.size;
    a->_buf_keep = g->cfg->buffers.max_retained;
    a->_outstanding = 1;
    a->created_at = h2o_now(w->loop);
    atomic_fetch_add(&ep->outstanding, 1);
    a->_head = build_head(req, ep, reqid);
    a->_reqid = reqid;
    return a;
}

/* The attempt holds nothing of the endpoint any more. */
void dp_attempt__over(dp_attempt_t *a)
{
    a->_over = 1;
    if (a->_outstanding) {
        a->_outstanding = 0;
        atomic_fetch_sub(&a->ep->outstanding, 1);
    }
}

void dp_attempt_cancel(dp_attempt_t *a)
{
    dp_pool_cancel(a->_w, a->ep, &a->_wt);
    dp_h2_stream_cancel(a);
    dp_attempt__over(a);
}

static void attempt_fail(dp_attempt_t *a, dp_attempt_result_t res, dp_error_t err)
{
    dp_attempt_cancel(a);
    a->_cb->on_end(a, res, err);
}

void dp_attempt__fail(dp_attempt_t *a, dp_attempt_result_t res, dp_error_t err)
{
    attempt_fail(a, res, err);
}

void dp_attempt_dispose(dp_attempt_t *a)
{
    dp_attempt_cancel(a);
    if (a->buf != NULL && !a->_buf_in_req_pool)
        dp_bufpool_put(&a->_w->bufpool, a->buf, a->_buf_keep);
    a->buf = NULL;
    dp_h2_stream_dispose(a);
}

void dp_attempt_start(dp_attempt_t *a)
{
    if (a->ep->addrlen == 0) {
        attempt_fail(a, DP_ATTEMPT_CONNECT_FAILURE, DP_ERR_UNRESOLVED);
        return;
    }
    dp_pool_acquire(a->_w, a->ep, &a->_wt, 0);
}

static void on_conn_fail(dp_pool_waiter_t *wt, dp_error_t err)
{
    dp_attempt_t *a = H2O_STRUCT_FROM_MEMBER(dp_attempt_t, _wt, wt);
    attempt_fail(a, err == DP_ERR_OUT_OF_MEMORY ? DP_ATTEMPT_LOCAL : DP_ATTEMPT_CONNECT_FAILURE, err);
}

static void on_upstream_write(h2o_socket_t *sock, const char *err)
{
    dp_conn_t *c = sock->data;
    c->writing = 0;
    if (err != NULL && c->owner != NULL)
        on_upstream_read(sock, err);
}

/* A connection is ours: the request goes out whole in one write. */
static void on_conn(dp_pool_waiter_t *wt, dp_conn_t *c, int reused)
{
    dp_attempt_t *a = H2O_STRUCT_FROM_MEMBER(dp_attempt_t, _wt, wt);
    a->_reused = reused;
    if (c->h2 != NULL) {
        dp_h2_stream_start(a, c);
        return;
    }
    a->head_done = 0;
    a->_got_bytes = 0;
    h2o_iovec_t bufs[2] = {a->_head, a->_req->entity};
    size_t n = a->_req->entity.len != 0 ? 2 : 1;
    a->_eof = 0;
    if (a->timed)
        a->sent_ns = dp_adaptive_now_ns();
    c->writing = 1;
    h2o_socket_write(c->sock, bufs, n, on_upstream_write);
    h2o_socket_read_start(c->sock, on_upstream_read);
}

/* A reused keep-alive connection that the upstream had closed fails before any byte of the
 * response; the request most likely never reached the upstream, so it is sent once more on a fresh
 * one, unless the owner says no (may_resend: the upstream may as well have read it and reset). */
static int attempt_refresh(dp_attempt_t *a)
{
    if (!a->_reused || a->_refreshed || a->_got_bytes || !a->_cb->may_resend(a))
        return 0;
    a->_refreshed = 1;
    dp_conn_t *c = a->_wt.conn;
    a->_wt.conn = NULL;
    c->owner = NULL;
    dp_pool_close(c);
    dp_pool_acquire(a->_w, a->ep, &a->_wt, 1);
    return 1;
}

/* The reason phrase of an upstream's status line, for HTTP/1 clients (HTTP/2 has none). "OK"
 * costs nothing; others are copied into the request's pool, since the head's bytes are consumed. */
static const char *reason_phrase(dp_attempt_t *a, const char *msg, size_t len)
{
    if (len == 2 && msg[0] == 'O' && msg[1] == 'K')
        return "OK";
    for (size_t i = 0; i != len; ++i) {
        unsigned char c = (unsigned char)msg[i];
        if ((c < 0x20 && c != '\t') || c == 0x7f)
            return pw_http_reason(a->status); /* nothing we would write on a status line */
    }
    return h2o_strdup(&a->_req->pool, msg, len).base;
}

dp_error_t dp_attempt_head_error(dp_h1_result_t rv)
{
    switch (rv) {
    case DP_H1_ERR_HEAD_TOO_LARGE:
        return DP_ERR_HEAD_TOO_LARGE;
    case DP_H1_ERR_CONTENT_LENGTH:
        return DP_ERR_BAD_CONTENT_LENGTH;
    case DP_H1_ERR_CONFLICTING_LENGTH:
        return DP_ERR_CONFLICTING_LENGTH;
    case DP_H1_ERR_LENGTH_AND_TE:
        return DP_ERR_LENGTH_AND_TE;
    case DP_H1_ERR_CHUNKED:
        return DP_ERR_BAD_CHUNKED;
    case DP_H1_ERR_TRUNCATED:
        return DP_ERR_CLOSED_MID_RESPONSE;
    default:
        return DP_ERR_BAD_RESPONSE;
    }
}

/* Parses the response head in the socket's input. Returns 1 when done, 0 when more bytes are
 * needed, -1 after failing the attempt. */
static int parse_head(dp_attempt_t *a)
{
    h2o_socket_t *sock = a->_wt.conn->sock;
    struct phr_header hdrs[DP_H1_MAX_HEADERS];
    dp_h1_head_t head;
    size_t consumed = 0;
    dp_h1_result_t rv = dp_h1_parse_head(sock->input->bytes, sock->input->size, hdrs, DP_H1_MAX_HEADERS, &head, &consumed);
    if (rv == DP_H1_MORE)
        return 0;
    if (rv != DP_H1_DONE) {
        attempt_fail(a, DP_ATTEMPT_BAD_RESPONSE, dp_attempt_head_error(rv));
        return -1;
    }
    a->status = head.status;
    a->reason = reason_phrase(a, head.reason, head.reason_len);
    a->mode = head.mode;
    a->content_length = head.content_length;
    a->_keepalive = head.keepalive;
    if (head.mode == DP_H1_BODY_LENGTH && head.content_length > a->_max_body) {
        attempt_fail(a, DP_ATTEMPT_TOO_LARGE, DP_ERR_RESPONSE_TOO_LARGE);
        return -1;
    }
    a->_cb->on_head(a, &head);
    dp_h1_body_init(&a->_body, &head);
    a->_decoded = 0;
    a->received = 0;
    h2o_buffer_consume(&sock->input, consumed);
    a->head_done = 1;
    return 1;
}

size_t dp_attempt__take(dp_attempt_t *a, const char *src, size_t avail)
{
    if (a->received + avail > a->_max_body) {
        attempt_fail(a, DP_ATTEMPT_TOO_LARGE, DP_ERR_RESPONSE_TOO_LARGE);
        return SIZE_MAX;
    }
    if (a->buf == NULL) {
        if (a->mode == DP_H1_BODY_LENGTH && (a->content_length <= DP_SMALL_BODY || a->hold)) {
            /* the common small answer: exactly its size from the request's pool, whose chunks
             * h2o recycles (and a held body, whole); the pooled buffers are for bodies that stream */
            a->buf = h2o_mem_alloc_pool(&a->_req->pool, offsetof(dp_buf_t, data) + (size_t)a->content_length);
            a->buf->capacity = (size_t)a->content_length;
            a->buf->len = 0;
            a->_buf_in_req_pool = 1;
        } else if ((a->buf = dp_bufpool_get(&a->_w->bufpool, a->_buf_size)) == NULL) {
            attempt_fail(a, DP_ATTEMPT_LOCAL, DP_ERR_OUT_OF_MEMORY);
            return SIZE_MAX;
        }
    }
    size_t room = a->buf->capacity - a->buf->len;
    size_t n = avail < room ? avail : room;
    memcpy(a->buf->data + a->buf->len, src, n);
    a->buf->len += n;
    a->received += n;
    return n;
}

/* Moves body bytes from the upstream socket into a->buf, as far as it has room. */
static void drain_input(dp_attempt_t *a)
{
    dp_conn_t *c = a->_wt.conn;
    if (c == NULL || a->complete)
        return;
    h2o_socket_t *sock = c->sock;
    if (!a->_body.done && sock->input->size > a->_decoded) {
        size_t n = sock->input->size - a->_decoded, extra = 0;
        dp_h1_result_t rv = dp_h1_body_feed(&a->_body, sock->input->bytes + a->_decoded, &n, &extra);
        if (rv < 0) {
            attempt_fail(a, DP_ATTEMPT_BAD_RESPONSE, dp_attempt_head_error(rv));
            return;
        }
        sock->input->size = a->_decoded + n + extra; /* chunked: decoded in place, shorter */
        a->_decoded += n;
        if (rv == DP_H1_DONE && extra != 0)
            a->_extra = 1; /* bytes past the end of the response: the connection cannot be reused */
    }
    while (a->_decoded != 0) {
        size_t n = dp_attempt__take(a, sock->input->bytes, a->_decoded);
        if (n == SIZE_MAX)
            return;
        if (n == 0) {
            /* the client is slower than the upstream: stop reading until it catches up */
            if (!a->_paused) {
                h2o_socket_read_stop(sock);
                a->_paused = 1;
            }
            return;
        }
        h2o_buffer_consume(&sock->input, n);
        a->_decoded -= n;
    }
    /* everything available was taken: reading may go on */
    if (a->_paused) {
        a->_paused = 0;
        if (!a->_eof)
            h2o_socket_read_start(sock, on_upstream_read);
    }
    int complete = a->_body.done;
    if (!complete && a->_eof) {
        if (dp_h1_body_eof(&a->_body) != DP_H1_DONE) {
            attempt_fail(a, DP_ATTEMPT_BAD_RESPONSE, DP_ERR_CLOSED_MID_RESPONSE);
            return;
        }
        complete = 1;
        a->_extra = 1; /* delimited by close: never reused */
    }
    if (complete) {
        a->complete = 1;
        int reusable = a->_keepalive && !a->_extra && !c->writing && sock->input->size == 0;
        h2o_socket_read_stop(sock);
        dp_pool_release(c, reusable); /* also clears a->_wt.conn */
        dp_attempt__over(a);
        a->_cb->on_end(a, DP_ATTEMPT_OK, 0);
    }
}

void dp_attempt_consume(dp_attempt_t *a, size_t n)
{
    if (a->buf == NULL)
        return;
    memmove(a->buf->data, a->buf->data + n, a->buf->len - n);
    a->buf->len -= n;
}

void dp_attempt_resume(dp_attempt_t *a)
{
    if (a->_h2.conn != NULL) {
        dp_h2_stream_resume(a);
        return;
    }
    if (a->_paused)
        drain_input(a);
}

static void on_upstream_read(h2o_socket_t *sock, const char *err)
{
    dp_conn_t *c = sock->data;
    if (c->owner == NULL) {
        dp_pool_close(c);
        return;
    }
    dp_attempt_t *a = H2O_STRUCT_FROM_MEMBER(dp_attempt_t, _wt, c->owner);
    if (sock->input->size != 0)
        a->_got_bytes = 1;
    if (err != NULL) {
        if (!a->head_done) {
            if (attempt_refresh(a))
                return;
            attempt_fail(a, a->_got_bytes ? DP_ATTEMPT_BAD_RESPONSE : DP_ATTEMPT_RESET_BEFORE_RESPONSE, DP_ERR_UPSTREAM_CLOSED);
            return;
        }
        a->_eof = 1;
        h2o_socket_read_stop(sock);
    } else if (!a->head_done && parse_head(a) <= 0) {
        return;
    }
    drain_input(a);
    if (a->_over && !a->complete)
        return;         /* failed: the owner has been told */
    a->_cb->on_data(a); /* last: it may send */
}
