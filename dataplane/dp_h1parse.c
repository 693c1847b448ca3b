/*
 * dp_h1parse: the HTTP/1.1 response parser (see dp_h1parse.h). RFC 9112 sections 6.1-6.3 decide
 * the framing; anything ambiguous is an error rather than a guess, since a gateway that frames a
 * response differently from the upstream lets one response smuggle another.
 */
#include <string.h>
#include "h2o/string_.h"
#include "dp_h1parse.h"

/* h2o's HTTP/2 encoder asserts 100 <= status <= 999; outside HTTP's range is a broken upstream */
static int status_ok(int status)
{
    return status >= 100 && status <= 599;
}

/* A header name (a token: letters, digits and "!#$%&'*+-.^_`|~") equals `lc`, a lowercase name
 * of letters and '-', in any case. OR-ing 0x20 lowercases letters and leaves '-' alone, and maps
 * no other token character onto a letter or '-'; 8 bytes at a time, since this runs on every
 * header of every response (h2o_lcstris costs several times as much). */
static int name_is(const struct phr_header *h, const char *lc, size_t n)
{
    if (h->name_len != n)
        return 0;
    size_t i = 0;
    uint64_t a, b;
    if (n < 8) {
        for (; i != n; ++i)
            if ((h->name[i] | 0x20) != lc[i])
                return 0;
        return 1;
    }
    for (; i + 8 <= n; i += 8) {
        memcpy(&a, h->name + i, 8);
        memcpy(&b, lc + i, 8);
        if ((a | 0x2020202020202020ull) != b)
            return 0;
    }
    if (i != n) { /* the last 8 bytes, overlapping what was compared */
        memcpy(&a, h->name + n - 8, 8);
        memcpy(&b, lc + n - 8, 8);
        if ((a | 0x2020202020202020ull) != b)
            return 0;
    }
    return 1;
}

static dp_h1_result_t read_framing(dp_h1_head_t *head)
{
    int have_te = 0;
    head->mode = DP_H1_BODY_EOF;
    head->content_length = UINT64_MAX;
    head->keepalive = head->minor_version >= 1;
    for (size_t i = 0; i != head->nheaders; ++i) {
        const struct phr_header *h = head->headers + i;
        if (name_is(h, H2O_STRLIT("content-length"))) {
            size_t v = h2o_strtosize(h->value, h->value_len);
            if (v == SIZE_MAX)
                return DP_H1_ERR_CONTENT_LENGTH;
            /* RFC 9112 6.3: differing lengths leave the message unframed; a copy of the same value is
             * harmless */
            if (head->content_length != UINT64_MAX && head->content_length != v)
                return DP_H1_ERR_CONFLICTING_LENGTH;
            head->content_length = v;
        } else if (name_is(h, H2O_STRLIT("transfer-encoding"))) {
            have_te = 1;
            if (h2o_lcstris(h->value, h->value_len, H2O_STRLIT("chunked")) ||
                h2o_contains_token(h->value, h->value_len, H2O_STRLIT("chunked"), ','))
                head->mode = DP_H1_BODY_CHUNKED;
        } else if (name_is(h, H2O_STRLIT("connection"))) {
            /* the single-token values are the common case; the token scan is for lists */
            const char *v = h->value;
            size_t vl = h->value_len;
            if (h2o_lcstris(v, vl, H2O_STRLIT("keep-alive")))
                head->keepalive = 1;
            else if (h2o_lcstris(v, vl, H2O_STRLIT("close")) || h2o_contains_token(v, vl, H2O_STRLIT("close"), ','))
                head->keepalive = 0;
            else if (h2o_contains_token(v, vl, H2O_STRLIT("keep-alive"), ','))
                head->keepalive = 1;
        }
    }
    /* RFC 9112 6.1: a sender must not send both; which one frames the body is the request-smuggling
     * question, so neither is believed */
    if (have_te && head->content_length != UINT64_MAX)
        return DP_H1_ERR_LENGTH_AND_TE;
    if (head->mode != DP_H1_BODY_CHUNKED && head->content_length != UINT64_MAX)
        head->mode = DP_H1_BODY_LENGTH;
    if (head->status == 204 || head->status == 304) {
        head->mode = DP_H1_BODY_LENGTH;
        head->content_length = 0;
    }
    if (head->mode != DP_H1_BODY_LENGTH)
        head->content_length = UINT64_MAX;
    if (head->mode == DP_H1_BODY_EOF)
        head->keepalive = 0;
    return DP_H1_DONE;
}

dp_h1_result_t dp_h1_parse_head(const char *buf, size_t len, struct phr_header *headers, size_t maxheaders, dp_h1_head_t *head,
                                size_t *consumed)
{
    size_t off = 0;
    for (;;) {
        size_t nhdrs = maxheaders;
        int rv = phr_parse_response(buf + off, len - off, &head->minor_version, &head->status, &head->reason, &head->reason_len,
                                    headers, &nhdrs, 0);
        if (rv == -2)
            return len - off > DP_H1_MAX_HEAD ? DP_H1_ERR_HEAD_TOO_LARGE : DP_H1_MORE;
        if (rv < 0)
            return DP_H1_ERR_SYNTAX;
        if ((size_t)rv > DP_H1_MAX_HEAD) /* the same verdict however the bytes were cut */
            return DP_H1_ERR_HEAD_TOO_LARGE;
        if (!status_ok(head->status))
            return DP_H1_ERR_STATUS;
        off += (size_t)rv;
        if (head->status < 200) /* 100 Continue and friends: skip */
            continue;
        head->headers = headers;
        head->nheaders = nhdrs;
        dp_h1_result_t fr = read_framing(head);
        if (fr != DP_H1_DONE)
            return fr;
        *consumed = off;
        return DP_H1_DONE;
    }
}

void dp_h1_body_init(dp_h1_body_t *b, const dp_h1_head_t *head)
{
    memset(b, 0, sizeof(*b));
    b->mode = head->mode;
    b->dec.consume_trailer = 1;
    b->remaining = head->mode == DP_H1_BODY_LENGTH ? head->content_length : 0;
    b->done = head->mode == DP_H1_BODY_LENGTH && b->remaining == 0;
}

dp_h1_result_t dp_h1_body_feed(dp_h1_body_t *b, char *buf, size_t *len, size_t *extra)
{
    *extra = 0;
    if (b->done) {
        *extra = *len;
        *len = 0;
        return DP_H1_DONE;
    }
    switch (b->mode) {
    case DP_H1_BODY_LENGTH:
        if (*len >= b->remaining) {
            *extra = *len - (size_t)b->remaining;
            *len = (size_t)b->remaining;
            b->remaining = 0;
            b->done = 1;
            return DP_H1_DONE;
        }
        b->remaining -= *len;
        return DP_H1_MORE;
    case DP_H1_BODY_CHUNKED: {
        size_t sz = *len;
        ssize_t rv = phr_decode_chunked(&b->dec, buf, &sz);
        if (rv == -1)
            return DP_H1_ERR_CHUNKED;
        *len = sz;
        if (rv == -2)
            return DP_H1_MORE;
        *extra = (size_t)rv; /* picohttpparser leaves them right after the decoded bytes */
        b->done = 1;
        return DP_H1_DONE;
    }
    default:
        return DP_H1_MORE;
    }
}

dp_h1_result_t dp_h1_body_eof(const dp_h1_body_t *b)
{
    return b->done || b->mode == DP_H1_BODY_EOF ? DP_H1_DONE : DP_H1_ERR_TRUNCATED;
}
