/*
 * dp_pool: upstream connections per endpoint per worker: connection slots (bounded per upstream),
 * opening (TCP, TLS), idle connections and their bounds, requests waiting for a slot, and the
 * housekeeping that trims idle excess. A connection is heap memory owned by its worker, carried
 * from request to request; while it carries one it belongs to a waiter (an attempt), which the
 * pool tells through the waiter's callbacks and never otherwise calls.
 */
#ifndef PATHWAY_DP_POOL_H
#define PATHWAY_DP_POOL_H

#include "dp_errors.h"
#include "dp_internal.h"

typedef struct st_dp_pool_waiter_t dp_pool_waiter_t;

/* Who wants a connection (embedded in an attempt). */
struct st_dp_pool_waiter_t {
    /* A connection is the waiter's: one just opened, or an idle one (`reused`). The waiter gives it
     * back with dp_pool_release or dp_pool_close. */
    void (*on_conn)(dp_pool_waiter_t *wt, dp_conn_t *c, int reused);
    /* Opening a connection failed (err: DP_ERR_CONNECT_FAILED, DP_ERR_OUT_OF_MEMORY); the waiter
     * holds none. May run inside dp_pool_acquire. */
    void (*on_fail)(dp_pool_waiter_t *wt, dp_error_t err);
    dp_conn_t *conn;      /* the connection being opened for it or handed to it; NULL = none */
    h2o_linklist_t _link; /* in the worker pool's waiters while waiting for a slot */
};

enum { DP_CONN_CONNECTING = 0, DP_CONN_IDLE, DP_CONN_BUSY };

struct st_dp_conn_t {
    h2o_socket_t *sock;         /* sock->data is the connection */
    dp_endpoint_t *ep;          /* its endpoint (a reference is held by the worker pool) */
    dp_worker_t *w;             /* its worker */
    dp_pool_waiter_t *owner;    /* BUSY, or CONNECTING on behalf of one; NULL = nobody's */
    int state;                  /* DP_CONN_* */
    int writing;                /* a request write is in progress: not reusable before it ends (the owner's flag) */
    h2o_linklist_t _idle_link;  /* in wp->idle while IDLE */
    h2o_timeout_entry_t _timer; /* connect timeout, then idle timeout */
    /* HTTP/2 (dp_h2.h): a connection opened for h2 or auto; once it speaks h2, h2 is its session and
     * it carries many attempts' streams (owner stays NULL; BUSY while it has streams) */
    int proto;                 /* cfg_protocol_t it was opened with */
    struct st_dp_h2conn_t *h2; /* the session; NULL = HTTP/1.1 */
    h2o_linklist_t _h2_link;   /* in wp->h2conns while it takes new streams */
    int _h2_counted;           /* counted in wp->h2_connecting */
};

/* Gets `wt` a connection to ep: an idle one at once (unless `fresh`, or the endpoint is retired), a
 * new one when the upstream has a free slot, else a place in the queue of the worker's pool. The
 * answer comes through wt's callbacks, possibly before this returns. */
void dp_pool_acquire(dp_worker_t *w, dp_endpoint_t *ep, dp_pool_waiter_t *wt, int fresh);
/* The waiter no longer wants a connection: leaves the queue; a connection being opened for it
 * finishes and is kept idle for the next; one it holds is closed (its state is unknown). */
void dp_pool_cancel(dp_worker_t *w, dp_endpoint_t *ep, dp_pool_waiter_t *wt);
/* Puts a connection back after a complete exchange (idle, or to a waiter), or closes it when not
 * `reusable` or over a bound. */
void dp_pool_release(dp_conn_t *c, int reusable);
void dp_pool_close(dp_conn_t *c);
/* Between events: retired endpoints drop their idle connections, endpoints that others wait for
 * give theirs up, lowered idle bounds are applied, waiters of retired endpoints get fresh
 * connections. */
void dp_pool_housekeeping(dp_worker_t *w);
/* HTTP/2 (dp_h2.c): the next waiter of c's pool for another stream on c, NULL = none. */
dp_pool_waiter_t *dp_pool_h2_take_waiter(dp_conn_t *c);
/* HTTP/2: c is full and requests still wait: another connection is opened for them when the
 * upstream has a free slot and none is being opened already. */
void dp_pool_h2_grow(dp_conn_t *c);

#endif
