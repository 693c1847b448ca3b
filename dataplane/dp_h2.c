/*
 * dp_h2: HTTP/2 toward upstreams (see dp_h2.h).
 *
 * Re-entrancy: nghttp2 calls us back from inside nghttp2_session_mem_recv/mem_send, and our
 * callbacks end attempts, whose owners may start or cancel other streams on the same connection.
 * So nothing frees the session inside a callback: every entry point counts `depth`, and only the
 * outermost one, when it returns, tells attempts their news (on_data), flushes, and lets the
 * connection go idle or close (settle).
 */
#include <ctype.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "pw_http.h"
#include "pw_log.h"
#include "dp_attempt.h"
#include "dp_h2.h"
#include "dp_pool.h"

#define DP_H2_CONN_WINDOW (16 * 1024 * 1024) /* the connection's receive window; streams are bounded by theirs */
#define DP_H2_MAX_RETRIES 3                  /* refusals (GOAWAY, REFUSED_STREAM) one attempt takes before it fails */

/* --- pure parts ------------------------------------------------------------------------------- */

nghttp2_nv *dp_h2_prefix_headers(const char *prefix, size_t len, size_t *n)
{
    static const char cl[] = "content-length: ";
    const char *end = prefix + len;
    const char *p = memchr(prefix, '\n', len); /* past the request line */
    if (p == NULL || len < sizeof(cl) - 1 || memcmp(end - (sizeof(cl) - 1), cl, sizeof(cl) - 1) != 0)
        return NULL;
    end -= sizeof(cl) - 1;
    ++p;
    size_t count = 0;
    for (const char *q = p; q < end; ++q)
        count += *q == '\n';
    nghttp2_nv *nv = malloc(count * sizeof(*nv) + (size_t)(end - p) + 1);
    if (nv == NULL)
        return NULL;
    char *bytes = (char *)(nv + count);
    memcpy(bytes, p, (size_t)(end - p));
    bytes[end - p] = '\0';
    size_t i = 0;
    char *line = bytes;
    while (*line != '\0') {
        char *eol = strstr(line, "\r\n"), *colon = strchr(line, ':');
        if (eol == NULL || colon == NULL || colon > eol || colon[1] != ' ') {
            free(nv);
            return NULL;
        }
        for (char *c = line; c != colon; ++c)
            *c = (char)tolower((unsigned char)*c);
        size_t namelen = (size_t)(colon - line);
        if (!(namelen == 4 && memcmp(line, "host", 4) == 0)) {
            nv[i].name = (uint8_t *)line;
            nv[i].namelen = namelen;
            nv[i].value = (uint8_t *)colon + 2;
            nv[i].valuelen = (size_t)(eol - (colon + 2));
            nv[i].flags = NGHTTP2_NV_FLAG_NONE;
            ++i;
        }
        line = eol + 2;
    }
    *n = i;
    return nv;
}

void dp_h2_resp_init(dp_h2_resp_t *r, struct phr_header *headers, size_t maxheaders)
{
    memset(r, 0, sizeof(*r));
    r->headers = headers;
    r->maxheaders = maxheaders;
    r->content_length = UINT64_MAX;
}

static int parse_uint(const char *s, size_t len, uint64_t *out)
{
    if (len == 0 || len > 19)
        return -1;
    uint64_t v = 0;
    for (size_t i = 0; i != len; ++i) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        v = v * 10 + (uint64_t)(s[i] - '0');
    }
    *out = v;
    return 0;
}

void dp_h2_resp_header(dp_h2_resp_t *r, const char *name, size_t namelen, const char *value, size_t valuelen)
{
    if (r->error != 0)
        return;
    r->bytes += namelen + valuelen + 4;
    if (r->bytes > DP_H1_MAX_HEAD) {
        r->error = DP_H1_ERR_HEAD_TOO_LARGE;
        return;
    }
    if (namelen != 0 && name[0] == ':') {
        if (namelen == 7 && memcmp(name, ":status", 7) == 0) {
            uint64_t st;
            if (r->status != 0 || valuelen != 3 || parse_uint(value, valuelen, &st) != 0 || st < 100 || st > 599)
                r->error = DP_H1_ERR_STATUS;
            else
                r->status = (int)st;
        }
        return;
    }
    if (namelen == 14 && memcmp(name, "content-length", 14) == 0) {
        uint64_t v;
        if (parse_uint(value, valuelen, &v) != 0) {
            r->error = DP_H1_ERR_CONTENT_LENGTH;
            return;
        }
        if (r->content_length != UINT64_MAX && r->content_length != v) {
            r->error = DP_H1_ERR_CONFLICTING_LENGTH;
            return;
        }
        r->content_length = v;
    }
    if (r->nheaders == r->maxheaders) {
        r->error = DP_H1_ERR_HEAD_TOO_LARGE;
        return;
    }
    struct phr_header *h = &r->headers[r->nheaders++];
    h->name = name;
    h->name_len = namelen;
    h->value = value;
    h->value_len = valuelen;
}

dp_h1_result_t dp_h2_resp_done(dp_h2_resp_t *r, dp_h1_head_t *head)
{
    if (r->error != 0)
        return (dp_h1_result_t)r->error;
    if (r->status == 0)
        return DP_H1_ERR_STATUS;
    if (r->status < 200) {
        /* interim: the final head follows */
        dp_h2_resp_init(r, r->headers, r->maxheaders);
        return DP_H1_MORE;
    }
    memset(head, 0, sizeof(*head));
    head->status = r->status;
    head->minor_version = 1;
    head->reason = "";
    head->headers = r->headers;
    head->nheaders = r->nheaders;
    head->keepalive = 1;
    if (r->status == 204 || r->status == 304) {
        head->mode = DP_H1_BODY_LENGTH;
        head->content_length = 0;
    } else if (r->content_length != UINT64_MAX) {
        head->mode = DP_H1_BODY_LENGTH;
        head->content_length = r->content_length;
    } else {
        head->mode = DP_H1_BODY_EOF; /* up to END_STREAM */
        head->content_length = UINT64_MAX;
    }
    return DP_H1_DONE;
}

/* --- the connection --------------------------------------------------------------------------- */

typedef struct st_dp_wbuf_t {
    char *bytes;
    size_t len, cap;
} dp_wbuf_t;

struct st_dp_h2conn_t {
    dp_conn_t *c;
    nghttp2_session *sess;
    h2o_linklist_t streams; /* dp_h2stream_t of attempts on it */
    h2o_linklist_t notify;  /* dp_h2stream_t whose attempt has news */
    uint32_t nstreams;      /* streams submitted and not closed (attempt or not) */
    int depth;              /* entry points running */
    int dead;               /* failed: takes nothing more, closes when the outermost entry returns */
    int draining;           /* GOAWAY: no new stream */
    int settings_seen;      /* the peer's SETTINGS arrived: its stream bound is known */
    int listed;             /* in wp->h2conns */
    const char *fail_reason;
    dp_wbuf_t out, next; /* being written; being filled */
};

static dp_attempt_t *attempt_of(dp_h2stream_t *s)
{
    return H2O_STRUCT_FROM_MEMBER(dp_attempt_t, _h2, s);
}

static void unlist(dp_h2conn_t *h)
{
    if (h->listed) {
        h2o_linklist_unlink(&h->c->_h2_link);
        h->listed = 0;
    }
}

int dp_h2_conn_has_room(dp_conn_t *c)
{
    dp_h2conn_t *h = c->h2;
    if (h == NULL || h->dead || h->draining)
        return 0;
    uint32_t max = atomic_load(&c->ep->max_streams);
    uint32_t peer = nghttp2_session_get_remote_settings(h->sess, NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS);
    if (!h->settings_seen && peer > 100)
        peer = 100; /* before the peer's SETTINGS: RFC 9113's suggested minimum */
    if (peer < max)
        max = peer;
    return h->nstreams < max;
}

static void on_write_done(h2o_socket_t *sock, const char *err);

/* Serializes what nghttp2 has to send and writes it (one write in flight at a time). */
static void flush(dp_h2conn_t *h)
{
    if (h->dead || h->c->sock == NULL)
        return;
    for (;;) {
        const uint8_t *data;
        ssize_t n = nghttp2_session_mem_send(h->sess, &data);
        if (n < 0) {
            h->dead = 1;
            h->fail_reason = nghttp2_strerror((int)n);
            return;
        }
        if (n == 0)
            break;
        if (h->next.len + (size_t)n > h->next.cap) {
            size_t cap = h->next.cap * 2 > h->next.len + (size_t)n ? h->next.cap * 2 : h->next.len + (size_t)n + 16384;
            char *b = realloc(h->next.bytes, cap);
            if (b == NULL) {
                h->dead = 1;
                h->fail_reason = "out of memory";
                return;
            }
            h->next.bytes = b;
            h->next.cap = cap;
        }
        memcpy(h->next.bytes + h->next.len, data, (size_t)n);
        h->next.len += (size_t)n;
    }
    if (h->out.len != 0 || h->next.len == 0)
        return;
    dp_wbuf_t t = h->out;
    h->out = h->next;
    h->next = t;
    h2o_iovec_t buf = h2o_iovec_init(h->out.bytes, h->out.len);
    h2o_socket_write(h->c->sock, &buf, 1, on_write_done);
}

/* How an attempt's stream that will never complete is reported. `never_sent`: the upstream surely
 * never processed it (not sent, above the GOAWAY's last stream id, REFUSED_STREAM): it is sent
 * again on another connection (bounded), else it fails as a connect failure would. */
static void stream_detach(dp_h2conn_t *h, dp_h2stream_t *s)
{
    h2o_linklist_unlink(&s->link);
    if (h2o_linklist_is_linked(&s->notify))
        h2o_linklist_unlink(&s->notify);
    if (s->id > 0 && h->sess != NULL)
        nghttp2_session_set_stream_user_data(h->sess, s->id, NULL);
    s->conn = NULL;
    atomic_fetch_sub(&h->c->ep->streams, 1);
    /* what it received but nobody will take gives its window back to the connection */
    if (s->pending_len != 0 && h->sess != NULL)
        nghttp2_session_consume_connection(h->sess, s->pending_len);
    s->pending_len = 0;
}

static void stream_fail(dp_h2conn_t *h, dp_h2stream_t *s, int never_sent, const char *why)
{
    dp_attempt_t *a = attempt_of(s);
    stream_detach(h, s);
    if (never_sent && s->retries < DP_H2_MAX_RETRIES && !a->head_done) {
        s->retries++;
        PW_DEBUG("upstream %s: stream %d not processed (%s): sent again", a->ep->label, (int)s->id, why);
        dp_pool_acquire(a->_w, a->ep, &a->_wt, 0);
        return;
    }
    if (never_sent)
        dp_attempt__fail(a, DP_ATTEMPT_CONNECT_FAILURE, DP_ERR_CONNECT_FAILED);
    else if (!a->head_done)
        dp_attempt__fail(a, s->resp.bytes != 0 ? DP_ATTEMPT_BAD_RESPONSE : DP_ATTEMPT_RESET_BEFORE_RESPONSE,
                         DP_ERR_UPSTREAM_CLOSED);
    else
        dp_attempt__fail(a, DP_ATTEMPT_BAD_RESPONSE, DP_ERR_CLOSED_MID_RESPONSE);
}

/* Moves pending bytes into a->buf as room allows and gives their window back; ends the attempt
 * when its whole response is in. */
static void stream_drain(dp_h2conn_t *h, dp_h2stream_t *s)
{
    dp_attempt_t *a = attempt_of(s);
    if (s->pending_len != 0) {
        size_t n = dp_attempt__take(a, s->pending, s->pending_len);
        if (n == SIZE_MAX)
            return; /* failed (the attempt left the stream) */
        if (n != 0) {
            memmove(s->pending, s->pending + n, s->pending_len - n);
            s->pending_len -= n;
            nghttp2_session_consume(h->sess, s->id, n);
        }
    }
    if (s->ended && s->pending_len == 0) {
        if (a->mode == DP_H1_BODY_LENGTH && a->received != a->content_length) {
            stream_fail(h, s, 0, "length");
            return;
        }
        stream_detach(h, s);
        a->complete = 1;
        dp_attempt__over(a);
        a->_cb->on_end(a, DP_ATTEMPT_OK, 0);
    }
}

static void tell(dp_h2conn_t *h, dp_h2stream_t *s)
{
    if (!h2o_linklist_is_linked(&s->notify))
        h2o_linklist_insert(&h->notify, &s->notify);
}

static void conn_fail(dp_h2conn_t *h, const char *why)
{
    h->dead = 1;
    if (h->fail_reason == NULL)
        h->fail_reason = why;
}

/* No stream of ours on it (nghttp2's, or an attempt's that still holds received bytes). */
static int conn_unused(dp_h2conn_t *h)
{
    return h->nstreams == 0 && h2o_linklist_is_empty(&h->streams);
}

/* The outermost entry point returns: news to attempts, more streams from waiters, writes, and the
 * connection's fate. May free the connection: callers touch nothing after it. */
static void settle(dp_h2conn_t *h)
{
    dp_conn_t *c = h->c;
    ++h->depth;
    while (!h->dead && !h2o_linklist_is_empty(&h->notify)) {
        dp_h2stream_t *s = H2O_STRUCT_FROM_MEMBER(dp_h2stream_t, notify, h->notify.next);
        h2o_linklist_unlink(&s->notify);
        dp_attempt_t *a = attempt_of(s);
        stream_drain(h, s);
        if (a->_over && !a->complete)
            continue;
        a->_cb->on_data(a);
    }
    /* room for more: waiters of the pool get streams on it */
    while (!h->dead && c->state == DP_CONN_BUSY && dp_h2_conn_has_room(c)) {
        dp_pool_waiter_t *wt = dp_pool_h2_take_waiter(c);
        if (wt == NULL)
            break;
        c->owner = wt;
        wt->conn = c;
        wt->on_conn(wt, c, 1); /* a stream starts (its own leave does not settle: depth) */
    }
    if (!h->dead && c->state == DP_CONN_BUSY && !dp_h2_conn_has_room(c))
        dp_pool_h2_grow(c); /* full, and requests wait: one more connection, within max_conns_per_host */
    flush(h);
    if (!h->dead && conn_unused(h) && !nghttp2_session_want_read(h->sess) && !nghttp2_session_want_write(h->sess) &&
        h->out.len == 0)
        conn_fail(h, "session over");
    if (h->dead) {
        unlist(h);
        PW_DEBUG("upstream %s: HTTP/2 connection failed: %s", c->ep->label, h->fail_reason);
        while (!h2o_linklist_is_empty(&h->streams)) {
            dp_h2stream_t *s = H2O_STRUCT_FROM_MEMBER(dp_h2stream_t, link, h->streams.next);
            stream_fail(h, s, !s->sent, h->fail_reason);
        }
        --h->depth;
        dp_pool_close(c); /* frees h */
        return;
    }
    --h->depth;
    if (!conn_unused(h))
        return;
    if (h->draining)
        dp_pool_close(c); /* GOAWAY and its streams are over */
    else if (c->state == DP_CONN_BUSY)
        dp_pool_release(c, 1); /* idle (or to a waiter, or closed over a bound) */
}

void dp_h2_conn_settle(dp_conn_t *c)
{
    if (c->h2->depth == 0)
        settle(c->h2);
}

static void leave(dp_h2conn_t *h)
{
    if (--h->depth == 0)
        settle(h);
}

static void on_write_done(h2o_socket_t *sock, const char *err)
{
    dp_conn_t *c = sock->data;
    dp_h2conn_t *h = c->h2;
    if (h == NULL)
        return;
    ++h->depth;
    h->out.len = 0;
    if (err != NULL)
        conn_fail(h, err);
    leave(h);
}

static void on_read(h2o_socket_t *sock, const char *err)
{
    dp_conn_t *c = sock->data;
    dp_h2conn_t *h = c->h2;
    ++h->depth;
    if (err != NULL) {
        conn_fail(h, err);
    } else {
        ssize_t n = nghttp2_session_mem_recv(h->sess, (const uint8_t *)sock->input->bytes, sock->input->size);
        if (n < 0)
            conn_fail(h, nghttp2_strerror((int)n));
        else
            h2o_buffer_consume(&sock->input, sock->input->size);
    }
    leave(h);
}

/* nghttp2 callbacks ------------------------------------------------------------------------------ */

static dp_h2stream_t *stream_of(nghttp2_session *sess, int32_t id)
{
    return nghttp2_session_get_stream_user_data(sess, id);
}

static int on_header(nghttp2_session *sess, const nghttp2_frame *frame, const uint8_t *name, size_t namelen, const uint8_t *value,
                     size_t valuelen, uint8_t flags, void *user)
{
    dp_h2stream_t *s = stream_of(sess, frame->hd.stream_id);
    if (s == NULL || frame->hd.type != NGHTTP2_HEADERS || attempt_of(s)->head_done)
        return 0; /* trailers are not relayed */
    dp_attempt_t *a = attempt_of(s);
    h2o_mem_pool_t *pool = &a->_req->pool;
    char *n = h2o_mem_alloc_pool(pool, namelen + valuelen + 2);
    memcpy(n, name, namelen);
    n[namelen] = '\0';
    memcpy(n + namelen + 1, value, valuelen);
    n[namelen + 1 + valuelen] = '\0';
    dp_h2_resp_header(&s->resp, n, namelen, n + namelen + 1, valuelen);
    return 0;
}

/* An attempt's stream ends badly from inside a callback: it leaves the stream, which is reset. */
static void stream_reject(dp_h2conn_t *h, dp_h2stream_t *s, dp_attempt_result_t res, dp_error_t err)
{
    int32_t id = s->id;
    dp_attempt_t *a = attempt_of(s);
    stream_detach(h, s);
    nghttp2_submit_rst_stream(h->sess, NGHTTP2_FLAG_NONE, id, NGHTTP2_CANCEL);
    dp_attempt__fail(a, res, err);
}

static int on_frame_recv(nghttp2_session *sess, const nghttp2_frame *frame, void *user)
{
    dp_h2conn_t *h = user;
    switch (frame->hd.type) {
    case NGHTTP2_SETTINGS:
        if (!(frame->hd.flags & NGHTTP2_FLAG_ACK))
            h->settings_seen = 1;
        return 0;
    case NGHTTP2_GOAWAY:
        if (!h->draining) {
            h->draining = 1;
            unlist(h);
            DP_SHARED_ADD(h->c->ep->goaways, 1);
            PW_DEBUG("upstream %s: GOAWAY (last stream %d, error %u): draining", h->c->ep->label, (int)frame->goaway.last_stream_id,
                     (unsigned)frame->goaway.error_code);
        }
        return 0;
    case NGHTTP2_HEADERS:
    case NGHTTP2_DATA:
        break;
    default:
        return 0;
    }
    dp_h2stream_t *s = stream_of(sess, frame->hd.stream_id);
    if (s == NULL)
        return 0;
    dp_attempt_t *a = attempt_of(s);
    if (frame->hd.type == NGHTTP2_HEADERS && !a->head_done) {
        dp_h1_head_t head;
        dp_h1_result_t rv = dp_h2_resp_done(&s->resp, &head);
        if (rv == DP_H1_MORE)
            return 0;
        if (rv != DP_H1_DONE) {
            stream_reject(h, s, DP_ATTEMPT_BAD_RESPONSE, dp_attempt_head_error(rv));
            return 0;
        }
        a->status = head.status;
        a->reason = pw_http_reason(head.status);
        a->mode = head.mode;
        a->content_length = head.content_length;
        a->received = 0;
        if (head.mode == DP_H1_BODY_LENGTH && head.content_length > a->_max_body) {
            stream_reject(h, s, DP_ATTEMPT_TOO_LARGE, DP_ERR_RESPONSE_TOO_LARGE);
            return 0;
        }
        a->_got_bytes = 1;
        a->_cb->on_head(a, &head);
        a->head_done = 1;
        tell(h, s);
    }
    if (frame->hd.flags & NGHTTP2_FLAG_END_STREAM) {
        if (!a->head_done) {
            stream_reject(h, s, DP_ATTEMPT_BAD_RESPONSE, DP_ERR_BAD_RESPONSE);
            return 0;
        }
        s->ended = 1;
        tell(h, s);
    }
    return 0;
}

static int on_data_chunk(nghttp2_session *sess, uint8_t flags, int32_t id, const uint8_t *data, size_t len, void *user)
{
    dp_h2conn_t *h = user;
    dp_h2stream_t *s = stream_of(sess, id);
    if (s == NULL) {
        nghttp2_session_consume(sess, id, len); /* nobody takes it */
        return 0;
    }
    dp_attempt_t *a = attempt_of(s);
    if (a->received + s->pending_len + len > a->_max_body) {
        nghttp2_session_consume(sess, id, len);
        stream_reject(h, s, DP_ATTEMPT_TOO_LARGE, DP_ERR_RESPONSE_TOO_LARGE);
        return 0;
    }
    if (s->pending_len + len > s->pending_cap) {
        size_t cap = s->pending_cap * 2 > s->pending_len + len ? s->pending_cap * 2 : s->pending_len + len;
        char *p = realloc(s->pending, cap);
        if (p == NULL) {
            nghttp2_session_consume(sess, id, len);
            stream_reject(h, s, DP_ATTEMPT_LOCAL, DP_ERR_OUT_OF_MEMORY);
            return 0;
        }
        s->pending = p;
        s->pending_cap = cap;
    }
    memcpy(s->pending + s->pending_len, data, len);
    s->pending_len += len;
    tell(h, s);
    return 0;
}

static int on_frame_send(nghttp2_session *sess, const nghttp2_frame *frame, void *user)
{
    if (frame->hd.type == NGHTTP2_HEADERS) {
        dp_h2stream_t *s = stream_of(sess, frame->hd.stream_id);
        if (s != NULL)
            s->sent = 1;
    }
    return 0;
}

static int on_stream_close(nghttp2_session *sess, int32_t id, uint32_t error_code, void *user)
{
    dp_h2conn_t *h = user;
    h->nstreams--;
    dp_h2stream_t *s = stream_of(sess, id);
    if (s == NULL || s->ended)
        return 0;
    /* closed before END_STREAM from the upstream */
    int refused = error_code == NGHTTP2_REFUSED_STREAM || !s->sent;
    stream_fail(h, s, refused, nghttp2_http2_strerror(error_code));
    return 0;
}

static ssize_t read_body(nghttp2_session *sess, int32_t id, uint8_t *buf, size_t length, uint32_t *flags,
                         nghttp2_data_source *source, void *user)
{
    dp_h2stream_t *s = stream_of(sess, id);
    if (s == NULL)
        return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE; /* its attempt left: the stream is reset */
    h2o_iovec_t body = attempt_of(s)->_req->entity;
    size_t n = body.len - s->body_off;
    if (n > length)
        n = length;
    memcpy(buf, body.base + s->body_off, n);
    s->body_off += n;
    if (s->body_off == body.len)
        *flags |= NGHTTP2_DATA_FLAG_EOF;
    return (ssize_t)n;
}

static nghttp2_session_callbacks *g_callbacks;
static nghttp2_option *g_option;
static pthread_once_t g_once = PTHREAD_ONCE_INIT;

static void init_callbacks(void)
{
    if (nghttp2_session_callbacks_new(&g_callbacks) != 0 || nghttp2_option_new(&g_option) != 0)
        abort();
    nghttp2_session_callbacks_set_on_header_callback(g_callbacks, on_header);
    nghttp2_session_callbacks_set_on_frame_recv_callback(g_callbacks, on_frame_recv);
    nghttp2_session_callbacks_set_on_data_chunk_recv_callback(g_callbacks, on_data_chunk);
    nghttp2_session_callbacks_set_on_frame_send_callback(g_callbacks, on_frame_send);
    nghttp2_session_callbacks_set_on_stream_close_callback(g_callbacks, on_stream_close);
    nghttp2_option_set_no_auto_window_update(g_option, 1);
}

int dp_h2_conn_init(dp_conn_t *c, uint32_t window)
{
    pthread_once(&g_once, init_callbacks);
    dp_h2conn_t *h = calloc(1, sizeof(*h));
    if (h == NULL)
        return -1;
    h->c = c;
    h2o_linklist_init_anchor(&h->streams);
    h2o_linklist_init_anchor(&h->notify);
    if (nghttp2_session_client_new2(&h->sess, g_callbacks, h, g_option) != 0) {
        free(h);
        return -1;
    }
    if (window < 16384)
        window = 16384;
    nghttp2_settings_entry iv[] = {
        {NGHTTP2_SETTINGS_ENABLE_PUSH, 0},
        {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, window},
    };
    nghttp2_submit_settings(h->sess, NGHTTP2_FLAG_NONE, iv, sizeof(iv) / sizeof(iv[0]));
    nghttp2_session_set_local_window_size(h->sess, NGHTTP2_FLAG_NONE, 0, DP_H2_CONN_WINDOW);
    c->h2 = h;
    dp_wpool_t *wp = &c->ep->wp[c->w->index];
    h2o_linklist_insert(&wp->h2conns, &c->_h2_link);
    h->listed = 1;
    atomic_fetch_add(&c->ep->h2_open, 1);
    DP_SHARED_ADD(c->ep->h2_connects, 1);
    h2o_socket_read_start(c->sock, on_read);
    ++h->depth;
    flush(h);
    --h->depth; /* no settle: the pool hands the connection on */
    return 0;
}

void dp_h2_conn_free(dp_conn_t *c)
{
    dp_h2conn_t *h = c->h2;
    if (h == NULL)
        return;
    unlist(h);
    h->dead = 1;
    ++h->depth; /* owners told of their failure may cancel other streams of it: no settle from there */
    while (!h2o_linklist_is_empty(&h->streams)) {
        dp_h2stream_t *s = H2O_STRUCT_FROM_MEMBER(dp_h2stream_t, link, h->streams.next);
        stream_fail(h, s, !s->sent, "connection closed");
    }
    atomic_fetch_sub(&c->ep->h2_open, 1);
    nghttp2_session_del(h->sess);
    h->sess = NULL;
    free(h->out.bytes);
    free(h->next.bytes);
    free(h);
    c->h2 = NULL;
}

void dp_h2_stream_start(dp_attempt_t *a, dp_conn_t *c)
{
    dp_h2conn_t *h = c->h2;
    dp_h2stream_t *s = &a->_h2;
    dp_endpoint_t *ep = a->ep;
    /* the pool handed c to the attempt as its own: streams leave ownership with nobody */
    a->_wt.conn = NULL;
    c->owner = NULL;
    ++h->depth;
    s->sent = 0;
    s->ended = 0;
    s->body_off = 0;
    s->pending_len = 0;
    if (s->hdrs == NULL)
        s->hdrs = h2o_mem_alloc_pool(&a->_req->pool, sizeof(s->hdrs[0]) * DP_H1_MAX_HEADERS);
    dp_h2_resp_init(&s->resp, s->hdrs, DP_H1_MAX_HEADERS);
    s->notify = (h2o_linklist_t){NULL, NULL}; /* unlinked */
    h2o_req_t *req = a->_req;
    h2o_iovec_t ct = h2o_iovec_init(H2O_STRLIT("application/json"));
    ssize_t ci = h2o_find_header(&req->headers, H2O_TOKEN_CONTENT_TYPE, -1);
    if (ci != -1)
        ct = req->headers.entries[ci].value;
    char clen[24];
    int cll = snprintf(clen, sizeof(clen), "%zu", req->entity.len);
    nghttp2_nv nv[6 + 36];
    size_t n = 0;
    /* names are static and the endpoint's values live as long as its connections: nghttp2 need not
     * copy them; the request id changes every time, so it stays out of HPACK's dynamic table */
#define NV(nm, nl, v, vl, f)                                                                                                       \
    nv[n++] = (nghttp2_nv)                                                                                                         \
    {                                                                                                                              \
        (uint8_t *)(nm), (uint8_t *)(v), (nl), (vl), (f)                                                                           \
    }
    const uint8_t fixed = NGHTTP2_NV_FLAG_NO_COPY_NAME | NGHTTP2_NV_FLAG_NO_COPY_VALUE;
    NV(":method", 7, "POST", 4, fixed);
    NV(":scheme", 7, ep->is_https ? "https" : "http", ep->is_https ? 5 : 4, fixed);
    NV(":authority", 10, ep->host_header.base, ep->host_header.len, fixed);
    NV(":path", 5, ep->path, strlen(ep->path), fixed);
    for (size_t i = 0; i != ep->h2_nheaders && n < sizeof(nv) / sizeof(nv[0]) - 3; ++i) {
        nv[n] = ep->h2_headers[i];
        nv[n++].flags = fixed;
    }
    NV("content-length", 14, clen, (size_t)cll, NGHTTP2_NV_FLAG_NO_COPY_NAME);
    if (!ep->own_content_type)
        NV("content-type", 12, ct.base, ct.len, NGHTTP2_NV_FLAG_NO_COPY_NAME);
    NV("x-request-id", 12, a->_reqid.base, a->_reqid.len, NGHTTP2_NV_FLAG_NO_COPY_NAME | NGHTTP2_NV_FLAG_NO_INDEX);
#undef NV
    nghttp2_data_provider dp = {.read_callback = read_body};
    int32_t id = nghttp2_submit_request(h->sess, NULL, nv, n, req->entity.len != 0 ? &dp : NULL, s);
    if (id < 0) {
        --h->depth;
        dp_attempt__fail(a, DP_ATTEMPT_LOCAL, DP_ERR_OUT_OF_MEMORY);
        if (h->depth == 0)
            settle(h);
        return;
    }
    s->id = id;
    s->conn = h;
    h->nstreams++;
    atomic_fetch_add(&ep->streams, 1);
    h2o_linklist_insert(&h->streams, &s->link);
    if (a->timed)
        a->sent_ns = dp_adaptive_now_ns();
    leave(h);
}

void dp_h2_stream_cancel(dp_attempt_t *a)
{
    dp_h2stream_t *s = &a->_h2;
    dp_h2conn_t *h = s->conn;
    if (h == NULL)
        return;
    ++h->depth;
    int32_t id = s->id;
    stream_detach(h, s);
    if (!h->dead && nghttp2_session_find_stream(h->sess, id) != NULL)
        nghttp2_submit_rst_stream(h->sess, NGHTTP2_FLAG_NONE, id, NGHTTP2_CANCEL);
    leave(h);
}

void dp_h2_stream_resume(dp_attempt_t *a)
{
    dp_h2stream_t *s = &a->_h2;
    dp_h2conn_t *h = s->conn;
    if (h == NULL)
        return;
    ++h->depth;
    stream_drain(h, s);
    leave(h);
}

void dp_h2_stream_dispose(dp_attempt_t *a)
{
    free(a->_h2.pending);
    a->_h2.pending = NULL;
    a->_h2.pending_cap = 0;
}
