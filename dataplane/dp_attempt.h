/*
 * dp_attempt: one try of a relay against one endpoint: a connection from the pool (reused or
 * new), the request written, the response head parsed (dp_h1parse), the body moved into a buffer
 * as the client takes it. An attempt never answers the client: it reports to its owner (the relay)
 * through callbacks and ends with a result the owner judges (dp_attempt_result_t and the error row
 * explaining it). A relay may own several attempts at once; they share nothing but the request.
 *
 * Memory: an attempt lives in the request's pool (dp_attempt_create); dp_attempt_dispose gives back
 * what it holds and must run before the pool goes.
 */
#ifndef PATHWAY_DP_ATTEMPT_H
#define PATHWAY_DP_ATTEMPT_H

#include "dp_errors.h"
#include "dp_h1parse.h"
#include "dp_h2.h"
#include "dp_internal.h"
#include "dp_pool.h"

typedef struct st_dp_attempt_t dp_attempt_t;

/* How an attempt ended. Everything but OK is a failure of this try; whether another try may help
 * is the owner's call (the error row's class, the request's method, what the client already saw). */
typedef enum en_dp_attempt_result_t {
    DP_ATTEMPT_OK = 0,                /* the whole response arrived */
    DP_ATTEMPT_CONNECT_FAILURE,       /* the request surely never reached the upstream (no connection) */
    DP_ATTEMPT_RESET_BEFORE_RESPONSE, /* the connection failed after the request went out, before any response */
    DP_ATTEMPT_TIMEOUT,               /* the owner's deadline passed (dp_attempt_cancel) */
    DP_ATTEMPT_BAD_RESPONSE,          /* a response that cannot be relayed (syntax, framing, truncated) */
    DP_ATTEMPT_TOO_LARGE,             /* over limits.max_response_body */
    DP_ATTEMPT_LOCAL,                 /* the gateway's own trouble (out of memory) */
    DP_ATTEMPT_CANCELLED,             /* the owner stopped it */
} dp_attempt_result_t;

typedef struct st_dp_attempt_callbacks_t {
    /* The response head arrived; nothing of it went to the client. `head` borrows the connection's
     * buffer (copy what is kept). Must not send to the client. */
    void (*on_head)(dp_attempt_t *a, const dp_h1_head_t *head);
    /* The attempt is over: the response is complete (DP_ATTEMPT_OK: its body is in a->buf, the
     * connection is back in the pool), or it failed (`err` says why; it holds no connection any
     * more). Runs deep in the attempt's call chain: must not send to the client. */
    void (*on_end)(dp_attempt_t *a, dp_attempt_result_t res, dp_error_t err);
    /* Body bytes are waiting in a->buf, or the response is complete: the last call of an upstream
     * read (the attempt touches nothing after it), so it may send. */
    void (*on_data)(dp_attempt_t *a);
    /* A reused keep-alive connection failed before any byte of the response: may the request be
     * sent again on a fresh connection? 0 when it must not be (an unsafe method: the upstream may
     * have read it and then reset). Asked only then, so the request is inspected only then. */
    int (*may_resend)(dp_attempt_t *a);
} dp_attempt_callbacks_t;

struct st_dp_attempt_t {
    /* read by the owner */
    dp_endpoint_t *ep;       /* the endpoint tried */
    void *owner;             /* the owner's own pointer (the relay) */
    int status;              /* the response status (once the head arrived) */
    const char *reason;      /* its reason phrase (NUL-terminated, static or in req->pool) */
    dp_h1_body_mode_t mode;  /* how its body is framed */
    uint64_t content_length; /* DP_H1_BODY_LENGTH: its length */
    int head_done;           /* the head arrived (on_head ran) */
    int complete;            /* the whole response arrived */
    uint64_t received;       /* body bytes moved into buf so far */
    dp_buf_t *buf;           /* body bytes for the client, from the front; NULL before the first */
    uint64_t created_at;     /* the loop's time (ms) when it was created */
    uint64_t sent_ns;        /* `timed` only: CLOCK_MONOTONIC (ns) when the request went out (last send when resent) */
    /* set by the owner */
    int hold;              /* in on_head, for a body with a content-length up to DP_CLASSIFY_MAX_BODY: the whole body
                            * is kept in one buffer of its size (the owner judges it complete before relaying) */
    h2o_headers_t headers; /* the owner's copy of the response headers (in req->pool) */
    int health_trial;      /* the endpoint's half-open trial (dp_balancer_pick said so) */
    int timed;             /* take sent_ns (adaptive concurrency times send -> answer); before start */
    int health_told;       /* its outcome reached dp_health_record */
    int judged_class;      /* 1 + the dp_class_t of its whole answer when the owner classified it with its body; 0 = not */
    /* private */
    const dp_attempt_callbacks_t *_cb;
    h2o_req_t *_req;
    dp_worker_t *_w;
    dp_pool_waiter_t _wt; /* its connection (_wt.conn), or its place in the pool's queue */
    h2o_iovec_t _head;    /* the upstream request head */
    uint64_t _max_body;   /* limits.max_response_body */
    size_t _buf_size;     /* buffers.size for a streaming body */
    size_t _buf_keep;     /* buffers.max_retained, for giving the buffer back */
    dp_h1_body_t _body;   /* body framing state */
    size_t _decoded;      /* body bytes at the front of the socket's input, not yet in buf */
    int _keepalive;       /* the connection may carry another request */
    int _extra;           /* bytes past the end of the response: the connection cannot be reused */
    int _outstanding;     /* counted in ep->outstanding */
    int _reused;          /* the connection came from the idle pool */
    int _refreshed;       /* already sent again on a fresh connection after a stale reused one */
    int _got_bytes;       /* any response byte arrived */
    int _eof;             /* the upstream closed (or failed) after the head */
    int _paused;          /* upstream reading stopped: buf full */
    int _buf_in_req_pool; /* buf came from req->pool (small body), not the buffer pool */
    int _over;            /* on_end ran */
    h2o_iovec_t _reqid;   /* x-request-id (HTTP/2 sends it as a header of its own) */
    dp_h2stream_t _h2;    /* its stream when its connection speaks HTTP/2 (dp_h2.c) */
};

/* An attempt of `req` against ep, in req->pool; counts in ep->outstanding until it is over.
 * `reqid` is sent as x-request-id. Does not start it. */
dp_attempt_t *dp_attempt_create(dp_worker_t *w, h2o_req_t *req, dp_endpoint_t *ep, h2o_iovec_t reqid, const dp_gen_t *g,
                                const dp_attempt_callbacks_t *cb, void *owner);
/* Starts it: a connection, then the request. Failures come through on_end, possibly before this
 * returns. */
void dp_attempt_start(dp_attempt_t *a);
/* The owner sent the first n bytes of a->buf to the client: they leave the buffer. */
void dp_attempt_consume(dp_attempt_t *a, size_t n);
/* After a consume: if reading had stopped for room, moves what the upstream sent meanwhile into
 * a->buf and reads on. May end the attempt (on_end); never calls on_data (the owner pumps after). */
void dp_attempt_resume(dp_attempt_t *a);
/* Stops an attempt that is not over (the owner's deadline, the client left, another attempt won):
 * its connection is closed (its state is unknown), a wait is left; on_end is not called. Idempotent;
 * also what dispose does first. */
void dp_attempt_cancel(dp_attempt_t *a);
/* Gives back what it holds (the buffer). After cancel or end; before req->pool goes. */
void dp_attempt_dispose(dp_attempt_t *a);
/* The error row of a response head the parser refused (HTTP/1.1, or an HTTP/2 stream's HEADERS). */
dp_error_t dp_attempt_head_error(dp_h1_result_t rv);

/* For a transport (dp_h2.c) only. The attempt is over: it holds nothing of the endpoint. */
void dp_attempt__over(dp_attempt_t *a);
/* It failed: leaves its connection or wait, then on_end. */
void dp_attempt__fail(dp_attempt_t *a, dp_attempt_result_t res, dp_error_t err);
/* Moves up to n body bytes from src into a->buf (allocated on first use: the request's pool for a
 * small or held body, the buffer pool else). Returns the bytes taken (0 = buf full), or SIZE_MAX
 * after failing the attempt (over limits.max_response_body, out of memory). */
size_t dp_attempt__take(dp_attempt_t *a, const char *src, size_t n);

#endif
