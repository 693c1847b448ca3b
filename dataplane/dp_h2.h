/*
 * dp_h2: HTTP/2 toward upstreams (pool.protocol h2 / auto), a libnghttp2 client session on a pool
 * connection's h2o socket, on the worker's event loop (no threads).
 *
 * To the relay an HTTP/2 stream IS an attempt: dp_attempt_start asks the pool for a connection as
 * always; when the connection it gets speaks HTTP/2 (c->h2), the attempt opens a stream on it
 * (dp_h2_stream_start) instead of writing an HTTP/1.1 request, and from then on the stream reports
 * through the attempt's own callbacks and results: on_head with the status and headers as an
 * HTTP/1.1 head would carry them, body bytes into a->buf, consume/resume for back-pressure.
 *
 * One connection carries up to min(max_concurrent_streams, the peer's
 * SETTINGS_MAX_CONCURRENT_STREAMS) streams. A connection with no stream is idle (the pool's idle
 * bounds and timeout apply). A GOAWAY drains it: no new stream, streams the peer never processed
 * (above its last stream id, or reset with REFUSED_STREAM) are sent again on another connection.
 *
 * Back-pressure: automatic WINDOW_UPDATEs are off. A stream's window is buffers.size; bytes the
 * stream received wait in its own buffer until a->buf has room, and give window back (consume)
 * only as they move into a->buf, i.e. as the client takes the bytes before them.
 */
#ifndef PATHWAY_DP_H2_H
#define PATHWAY_DP_H2_H

#include <nghttp2/nghttp2.h>
#include <stddef.h>
#include <stdint.h>
#include "h2o/linklist.h"
#include "dp_h1parse.h"

struct st_dp_attempt_t;
struct st_dp_conn_t;
struct st_dp_endpoint_t;
typedef struct st_dp_h2conn_t dp_h2conn_t;

/* --- pure parts (unit-tested, fuzzed) --------------------------------------------------------- */

/* The request headers of an endpoint for HTTP/2, from its HTTP/1.1 head prefix ("POST <path>
 * HTTP/1.1\r\nhost: h\r\n<name: value\r\n>...content-length: "): every header line but host (HTTP/2
 * says :authority) and the trailing content-length, names lowercased. Returns a malloc'd block
 * (the array, then the bytes it points at; one free), *n entries; NULL on a prefix of another shape
 * or out of memory. */
nghttp2_nv *dp_h2_prefix_headers(const char *prefix, size_t len, size_t *n);

/* A response head as it arrives in HEADERS frames. */
typedef struct st_dp_h2_resp_t {
    int status;                 /* :status (0 = not seen) */
    uint64_t content_length;    /* UINT64_MAX = none */
    struct phr_header *headers; /* the caller's array of maxheaders entries */
    size_t nheaders, maxheaders;
    size_t bytes; /* header bytes so far (bounded by DP_H1_MAX_HEAD) */
    int error;    /* the first problem (DP_H1_ERR_*), 0 = none */
} dp_h2_resp_t;

void dp_h2_resp_init(dp_h2_resp_t *r, struct phr_header *headers, size_t maxheaders);
/* One header field of a response head. name/value must stay valid as long as the head is used
 * (the caller copies them). Pseudo headers other than :status are ignored; a bad :status, a bad or
 * conflicting content-length, too many or too large headers set r->error. */
void dp_h2_resp_header(dp_h2_resp_t *r, const char *name, size_t namelen, const char *value, size_t valuelen);
/* The head's HEADERS (+CONTINUATION) ended. DP_H1_MORE: an interim 1xx head, skipped (r is reset
 * for the next); DP_H1_DONE with *head filled (framing: content-length, else up to END_STREAM); or
 * the error. */
dp_h1_result_t dp_h2_resp_done(dp_h2_resp_t *r, dp_h1_head_t *head);

/* --- the connection (dp_pool, dp_attempt) -------------------------------------------------------- */

/* What a stream keeps in its attempt (dp_attempt_t._h2). */
typedef struct st_dp_h2stream_t {
    dp_h2conn_t *conn; /* the connection it is on; NULL = none */
    int32_t id;        /* its stream id */
    int sent;          /* its HEADERS went out */
    int ended;         /* END_STREAM arrived */
    int retries;       /* sent again after a refusal (GOAWAY, REFUSED_STREAM) */
    size_t body_off;   /* request body bytes given to nghttp2 */
    char *pending;     /* received body bytes not yet in a->buf (malloc'd, up to the window) */
    size_t pending_len, pending_cap;
    h2o_linklist_t link;     /* in the connection's streams */
    h2o_linklist_t notify;   /* in the connection's list of attempts to tell (on_data) */
    dp_h2_resp_t resp;       /* the head being read */
    struct phr_header *hdrs; /* its header array (req->pool) */
} dp_h2stream_t;

/* Sets the connection c (just connected; plain with prior knowledge, or TLS with ALPN h2) up as an
 * HTTP/2 client session: the preface and SETTINGS go out, reading starts. -1: out of memory. */
int dp_h2_conn_init(struct st_dp_conn_t *c, uint32_t window);
/* Frees the session (the pool closes the connection). Streams still on it have been failed. */
void dp_h2_conn_free(struct st_dp_conn_t *c);
/* After the connection became HTTP/2 with nobody's stream on it: takes waiters, else goes idle. */
void dp_h2_conn_settle(struct st_dp_conn_t *c);
/* May another stream start on c now (not draining, under the stream bound)? */
int dp_h2_conn_has_room(struct st_dp_conn_t *c);

/* The attempt's request goes out as a stream on c (an HTTP/2 connection the pool handed it). */
void dp_h2_stream_start(struct st_dp_attempt_t *a, struct st_dp_conn_t *c);
/* The attempt leaves its stream (RST_STREAM CANCEL unless it is over); no callback. */
void dp_h2_stream_cancel(struct st_dp_attempt_t *a);
/* After a consume: moves pending bytes into a->buf, gives their window back. May end the attempt. */
void dp_h2_stream_resume(struct st_dp_attempt_t *a);
/* Gives back the stream's buffer (dispose). */
void dp_h2_stream_dispose(struct st_dp_attempt_t *a);

#endif
