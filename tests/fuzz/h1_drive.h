/*
 * h1_drive: runs dp_h1parse over a response cut into pieces, the way the relay meets it (the head
 * re-parsed over every byte so far, the body fed as it arrives), and records everything the parser
 * decided. Shared by test_dp_h1parse and fuzz_dp_h1parse, whose oracle is that the cuts never
 * change the outcome.
 */
#ifndef PATHWAY_H1_DRIVE_H
#define PATHWAY_H1_DRIVE_H

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "dp_h1parse.h"

typedef struct {
    int result;    /* the last verdict: DP_H1_DONE, DP_H1_MORE (stopped short) or an error */
    int head_done; /* the head was parsed */
    int status, minor_version, keepalive, mode;
    uint64_t content_length;
    size_t nheaders;
    char *heads; /* "name: value\n" per header, then the reason phrase (malloc'd) */
    size_t heads_len;
    char *body; /* the decoded body (malloc'd) */
    size_t body_len;
    size_t extra; /* bytes after the end of the message */
} h1_outcome_t;

static void h1_outcome_free(h1_outcome_t *o)
{
    free(o->heads);
    free(o->body);
}

static void h1_append(char *dst, size_t *len, const char *s, size_t n)
{
    if (n != 0)
        memcpy(dst + *len, s, n);
    *len += n;
}

/* Feeds data[0..size) cut at cuts[0..ncuts) (ascending, within size), then reports the close of
 * the connection when `eof`. Returns 0, or -1 when out of memory. */
static int h1_drive(const uint8_t *data, size_t size, const size_t *cuts, size_t ncuts, int eof, h1_outcome_t *o)
{
    memset(o, 0, sizeof(*o));
    o->result = DP_H1_MORE;
    char *buf = malloc(size + 1);
    o->body = malloc(size + 1);
    o->heads = malloc(size * 2 + 16); /* each header adds ": " and "\n" to at most 2 bytes of its own */
    if (buf == NULL || o->body == NULL || o->heads == NULL) {
        free(buf);
        h1_outcome_free(o);
        return -1;
    }
    struct phr_header hdrs[DP_H1_MAX_HEADERS];
    dp_h1_head_t head;
    dp_h1_body_t body;
    size_t blen = 0, from = 0;
    for (size_t i = 0; i <= ncuts && o->result == DP_H1_MORE; ++i) {
        size_t to = i < ncuts ? cuts[i] : size;
        h1_append(buf, &blen, (const char *)data + from, to - from);
        from = to;
        if (!o->head_done) {
            size_t consumed = 0;
            o->result = dp_h1_parse_head(buf, blen, hdrs, DP_H1_MAX_HEADERS, &head, &consumed);
            if (o->result != DP_H1_DONE)
                continue;
            o->head_done = 1;
            o->status = head.status;
            o->minor_version = head.minor_version;
            o->keepalive = head.keepalive;
            o->mode = head.mode;
            o->content_length = head.content_length;
            o->nheaders = head.nheaders;
            for (size_t h = 0; h != head.nheaders; ++h) {
                h1_append(o->heads, &o->heads_len, head.headers[h].name, head.headers[h].name_len);
                h1_append(o->heads, &o->heads_len, ": ", 2);
                h1_append(o->heads, &o->heads_len, head.headers[h].value, head.headers[h].value_len);
                h1_append(o->heads, &o->heads_len, "\n", 1);
            }
            h1_append(o->heads, &o->heads_len, head.reason, head.reason_len);
            memmove(buf, buf + consumed, blen - consumed);
            blen -= consumed;
            dp_h1_body_init(&body, &head);
            o->result = body.done ? DP_H1_DONE : DP_H1_MORE;
            if (body.done) {
                o->extra = blen;
                break;
            }
        }
        size_t n = blen, x = 0;
        o->result = dp_h1_body_feed(&body, buf, &n, &x);
        if (o->result < 0)
            break;
        h1_append(o->body, &o->body_len, buf, n);
        o->extra += x;
        blen = 0;
    }
    if (o->result == DP_H1_DONE)
        o->extra += size - from; /* what was not fed belongs to no response either */
    else if (o->result == DP_H1_MORE && o->head_done && eof)
        o->result = dp_h1_body_eof(&body);
    free(buf);
    return 0;
}

/* The body bytes delivered before an error differ with the cuts (the relay fails the response
 * either way), so they are compared only when the response did not fail. */
static int h1_body_equal(const h1_outcome_t *a, const h1_outcome_t *b)
{
    return a->body_len == b->body_len && (a->body_len == 0 || memcmp(a->body, b->body, a->body_len) == 0) && a->extra == b->extra;
}

/* Whether two outcomes say the same. */
static int h1_outcome_equal(const h1_outcome_t *a, const h1_outcome_t *b)
{
    return a->result == b->result && a->head_done == b->head_done && a->status == b->status &&
           a->minor_version == b->minor_version && a->keepalive == b->keepalive && a->mode == b->mode &&
           a->content_length == b->content_length && a->nheaders == b->nheaders && a->heads_len == b->heads_len &&
           (a->heads_len == 0 || memcmp(a->heads, b->heads, a->heads_len) == 0) && (a->result < 0 || h1_body_equal(a, b));
}

#endif
