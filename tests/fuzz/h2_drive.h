/*
 * h2_drive: an upstream's HTTP/2 bytes, as Pathway's response path reads them. A libnghttp2 client
 * session set up as dp_h2 sets its own up (no automatic WINDOW_UPDATE, push off, the stream's
 * window given back as bytes are taken) sends one POST; the server's bytes are then fed to it, in
 * pieces cut where the caller says (what it answers is sent after the last), and its response head goes through dp_h2_resp_header /
 * dp_h2_resp_done, the code dp_h2's callbacks run. Shared by the fuzz target and the unit test.
 */
#ifndef PW_H2_DRIVE_H
#define PW_H2_DRIVE_H

#include <nghttp2/nghttp2.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "dp_h2.h"

typedef struct {
    int head;   /* 1: the final head arrived; <0: dp_h2_resp_done's error */
    int status; /* its status */
    int mode;   /* dp_h1_body_mode_t */
    uint64_t content_length;
    size_t nheaders;
    uint64_t body_len; /* DATA bytes of the stream */
    int ended;         /* END_STREAM after the head */
    int closed;        /* the stream closed */
    uint32_t close_code;
    int session_error; /* nghttp2 refused the bytes (a connection error) */
    int goaway;
} h2_outcome_t;

typedef struct {
    h2_outcome_t *out;
    dp_h2_resp_t resp;
    struct phr_header hdrs[DP_H1_MAX_HEADERS];
    char *arena; /* copies of header names and values (as dp_h2 copies them into the request's pool) */
    size_t arena_len, arena_cap;
} h2_drive_ctx_t;

static int h2d_on_header(nghttp2_session *s, const nghttp2_frame *f, const uint8_t *name, size_t namelen, const uint8_t *value,
                         size_t valuelen, uint8_t flags, void *user)
{
    h2_drive_ctx_t *c = user;
    if (f->hd.type != NGHTTP2_HEADERS || c->out->head != 0)
        return 0;
    if (c->arena_len + namelen + valuelen + 2 > c->arena_cap)
        return 0; /* dp_h2_resp_header's own bound (DP_H1_MAX_HEAD) ends it before this one */
    char *n = c->arena + c->arena_len;
    memcpy(n, name, namelen);
    n[namelen] = '\0';
    memcpy(n + namelen + 1, value, valuelen);
    n[namelen + 1 + valuelen] = '\0';
    c->arena_len += namelen + valuelen + 2;
    dp_h2_resp_header(&c->resp, n, namelen, n + namelen + 1, valuelen);
    return 0;
}

static int h2d_on_frame_recv(nghttp2_session *s, const nghttp2_frame *f, void *user)
{
    h2_drive_ctx_t *c = user;
    if (f->hd.type == NGHTTP2_GOAWAY)
        c->out->goaway = 1;
    if (f->hd.stream_id != 1 || (f->hd.type != NGHTTP2_HEADERS && f->hd.type != NGHTTP2_DATA))
        return 0;
    if (f->hd.type == NGHTTP2_HEADERS && c->out->head == 0) {
        dp_h1_head_t head;
        dp_h1_result_t rv = dp_h2_resp_done(&c->resp, &head);
        if (rv == DP_H1_DONE) {
            c->out->head = 1;
            c->out->status = head.status;
            c->out->mode = head.mode;
            c->out->content_length = head.content_length;
            c->out->nheaders = head.nheaders;
        } else if (rv != DP_H1_MORE) {
            c->out->head = (int)rv;
            nghttp2_submit_rst_stream(s, NGHTTP2_FLAG_NONE, 1, NGHTTP2_CANCEL);
        }
    }
    if ((f->hd.flags & NGHTTP2_FLAG_END_STREAM) && c->out->head == 1)
        c->out->ended = 1;
    return 0;
}

static int h2d_on_data(nghttp2_session *s, uint8_t flags, int32_t id, const uint8_t *data, size_t len, void *user)
{
    h2_drive_ctx_t *c = user;
    if (id == 1)
        c->out->body_len += len;
    nghttp2_session_consume(s, id, len); /* taken at once: the client is fast */
    return 0;
}

static int h2d_on_close(nghttp2_session *s, int32_t id, uint32_t code, void *user)
{
    h2_drive_ctx_t *c = user;
    if (id == 1) {
        c->out->closed = 1;
        c->out->close_code = code;
    }
    return 0;
}

static ssize_t h2d_read_body(nghttp2_session *s, int32_t id, uint8_t *buf, size_t length, uint32_t *flags, nghttp2_data_source *src,
                             void *user)
{
    memcpy(buf, "{}", 2);
    *flags |= NGHTTP2_DATA_FLAG_EOF;
    return 2;
}

static void h2d_drain(nghttp2_session *s)
{
    const uint8_t *p;
    while (nghttp2_session_mem_send(s, &p) > 0)
        ;
}

/* Feeds data[0..len) cut at cuts[0..ncuts) (ascending, each <= len). 0, or -1 when the session
 * cannot be made. */
static int h2_drive(const uint8_t *data, size_t len, const size_t *cuts, size_t ncuts, h2_outcome_t *out)
{
    memset(out, 0, sizeof(*out));
    h2_drive_ctx_t *c = calloc(1, sizeof(*c));
    if (c == NULL)
        return -1;
    c->out = out;
    c->arena_cap = 2 * DP_H1_MAX_HEAD;
    if ((c->arena = malloc(c->arena_cap)) == NULL) {
        free(c);
        return -1;
    }
    dp_h2_resp_init(&c->resp, c->hdrs, DP_H1_MAX_HEADERS);
    nghttp2_session_callbacks *cbs;
    nghttp2_option *opt;
    nghttp2_session *s;
    nghttp2_session_callbacks_new(&cbs);
    nghttp2_session_callbacks_set_on_header_callback(cbs, h2d_on_header);
    nghttp2_session_callbacks_set_on_frame_recv_callback(cbs, h2d_on_frame_recv);
    nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cbs, h2d_on_data);
    nghttp2_session_callbacks_set_on_stream_close_callback(cbs, h2d_on_close);
    nghttp2_option_new(&opt);
    nghttp2_option_set_no_auto_window_update(opt, 1);
    int rv = nghttp2_session_client_new2(&s, cbs, c, opt);
    nghttp2_session_callbacks_del(cbs);
    nghttp2_option_del(opt);
    if (rv != 0) {
        free(c->arena);
        free(c);
        return -1;
    }
    nghttp2_settings_entry iv[] = {{NGHTTP2_SETTINGS_ENABLE_PUSH, 0}, {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, 65536}};
    nghttp2_submit_settings(s, NGHTTP2_FLAG_NONE, iv, 2);
    nghttp2_nv nv[] = {
        {(uint8_t *)":method", (uint8_t *)"POST", 7, 4, 0},         {(uint8_t *)":scheme", (uint8_t *)"http", 7, 4, 0},
        {(uint8_t *)":authority", (uint8_t *)"upstream", 10, 8, 0}, {(uint8_t *)":path", (uint8_t *)"/", 5, 1, 0},
        {(uint8_t *)"content-length", (uint8_t *)"2", 14, 1, 0},
    };
    nghttp2_data_provider dp = {.read_callback = h2d_read_body};
    nghttp2_submit_request(s, NULL, nv, sizeof(nv) / sizeof(nv[0]), &dp, NULL);
    h2d_drain(s);
    size_t at = 0;
    for (size_t i = 0; i <= ncuts && !out->session_error; ++i) {
        size_t end = i < ncuts ? cuts[i] : len;
        if (end < at || end > len)
            continue;
        if (nghttp2_session_mem_recv(s, data + at, end - at) < 0)
            out->session_error = 1;
        at = end;
    }
    /* what the session sends back (RST_STREAM, WINDOW_UPDATE...) goes out once, after everything was
     * read: when it went out between pieces would change when nghttp2 closes a reset stream */
    h2d_drain(s);
    nghttp2_session_del(s);
    free(c->arena);
    free(c);
    return 0;
}

/* The same response as Pathway would relay it: the same head, and for a stream that ended, the
 * same body length. (How much of a frame nghttp2 hands out before it finds the frame bad, and when
 * it closes a stream it reset, depend on where the bytes were cut: not compared.) */
static int h2_outcome_equal(const h2_outcome_t *a, const h2_outcome_t *b)
{
    return a->head == b->head && a->status == b->status && a->mode == b->mode && a->content_length == b->content_length &&
           a->nheaders == b->nheaders && a->ended == b->ended && (!a->ended || a->body_len == b->body_len);
}

#endif
