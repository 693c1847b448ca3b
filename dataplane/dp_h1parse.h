/*
 * dp_h1parse: the HTTP/1.1 RESPONSE parser, a pure module (bytes in, verdicts out: no sockets, no
 * event loop, no allocation). picohttpparser (built into libh2o, see dp_phr.h) reads the status
 * line and headers and undoes chunked encoding; this module adds what a gateway must decide on
 * top of it: interim (1xx) heads, the status range, the body's framing (Content-Length, chunked or
 * close-delimited), framing that contradicts itself, keep-alive, and the head size bound.
 *
 * It is incremental: dp_h1_parse_head is called again with every byte received so far until it
 * stops asking for more; the body is then fed piece by piece, as it arrives, to dp_h1_body_feed.
 */
#ifndef PATHWAY_DP_H1PARSE_H
#define PATHWAY_DP_H1PARSE_H

#include <stddef.h>
#include <stdint.h>
#include "dp_phr.h"

#define DP_H1_MAX_HEAD 65536 /* bytes of a response head (interim heads before it included) */
#define DP_H1_MAX_HEADERS 100

typedef enum {
    DP_H1_DONE = 0, /* the head (or the whole body) is complete */
    DP_H1_MORE = 1, /* needs more bytes */
    /* errors: the response cannot be relayed and its connection cannot be trusted */
    DP_H1_ERR_SYNTAX = -1,             /* not an HTTP/1.x response head */
    DP_H1_ERR_STATUS = -2,             /* a status outside 100..599 */
    DP_H1_ERR_HEAD_TOO_LARGE = -3,     /* no complete head within DP_H1_MAX_HEAD bytes */
    DP_H1_ERR_CONTENT_LENGTH = -4,     /* a Content-Length that is not a number */
    DP_H1_ERR_CONFLICTING_LENGTH = -5, /* two Content-Length headers that differ */
    DP_H1_ERR_LENGTH_AND_TE = -6,      /* both Content-Length and Transfer-Encoding */
    DP_H1_ERR_CHUNKED = -7,            /* broken chunked encoding */
    DP_H1_ERR_TRUNCATED = -8,          /* closed before the end of a body framed by length or chunks */
} dp_h1_result_t;

typedef enum {
    DP_H1_BODY_LENGTH = 0, /* Content-Length bytes (0 for 204, 304) */
    DP_H1_BODY_CHUNKED,    /* Transfer-Encoding: chunked */
    DP_H1_BODY_EOF,        /* delimited by the upstream closing the connection */
} dp_h1_body_mode_t;

/* A parsed response head. Pointers borrow the buffer given to dp_h1_parse_head. */
typedef struct st_dp_h1_head_t {
    int status;                 /* 200..599 (interim 1xx heads are skipped) */
    int minor_version;          /* HTTP/1.<minor> */
    const char *reason;         /* the reason phrase as sent (any bytes; the caller judges them) */
    size_t reason_len;          /* its length */
    struct phr_header *headers; /* the caller's array, as filled */
    size_t nheaders;            /* entries used in headers */
    dp_h1_body_mode_t mode;     /* how the body ends */
    uint64_t content_length;    /* DP_H1_BODY_LENGTH: its length; UINT64_MAX otherwise */
    int keepalive;              /* the connection may carry another request after this response */
} dp_h1_head_t;

/* Parses the response head at the front of buf[0..len) (every byte received so far), skipping
 * interim 1xx heads. `headers` (maxheaders entries, DP_H1_MAX_HEADERS is what the relay uses) is
 * filled and borrowed by *head. Returns DP_H1_DONE with *consumed = the bytes of the head(s),
 * DP_H1_MORE, or an error (DP_H1_ERR_*). Never reads outside buf. */
dp_h1_result_t dp_h1_parse_head(const char *buf, size_t len, struct phr_header *headers, size_t maxheaders, dp_h1_head_t *head,
                                size_t *consumed);

/* The body's decoding state, started from a parsed head. */
typedef struct st_dp_h1_body_t {
    dp_h1_body_mode_t mode;         /* from the head */
    uint64_t remaining;             /* DP_H1_BODY_LENGTH: bytes still to come */
    struct phr_chunked_decoder dec; /* DP_H1_BODY_CHUNKED */
    int done;                       /* the body is complete */
} dp_h1_body_t;

void dp_h1_body_init(dp_h1_body_t *b, const dp_h1_head_t *head);

/* Takes *len newly received bytes at buf; chunked encoding is undone in place. On return, *len is
 * the number of body bytes now at the front of buf and *extra the number of bytes that follow the
 * end of the message (only when it returns DP_H1_DONE; they belong to no response). Returns
 * DP_H1_DONE once the body is complete, DP_H1_MORE, or DP_H1_ERR_CHUNKED. */
dp_h1_result_t dp_h1_body_feed(dp_h1_body_t *b, char *buf, size_t *len, size_t *extra);

/* The upstream closed the connection: DP_H1_DONE when that ends the body (close-delimited, or
 * already complete), DP_H1_ERR_TRUNCATED when the body was cut short. */
dp_h1_result_t dp_h1_body_eof(const dp_h1_body_t *b);

#endif
