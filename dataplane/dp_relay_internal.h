/*
 * dp_relay_internal: the relay of one client request as its two files see it. dp_relay.c has the
 * request's life (routing, framing, CORS, admission, the response to the client, its end);
 * dp_failover.c has its tries (retries, hedges, the choice of the answer). Not for other files.
 *
 * Direction: the relay calls down into failover (dp_failover_*). Failover decides and tells the
 * relay only through dp_relay_commit, dp_relay_fail and dp_relay_pump; it never sends to the client.
 */
#ifndef PATHWAY_DP_RELAY_INTERNAL_H
#define PATHWAY_DP_RELAY_INTERNAL_H

#include "dp_attempt.h"
#include "dp_balancer.h"
#include "dp_cache.h"
#include "dp_errors.h"
#include "dp_internal.h"

enum {
    RS_ADMIT = 0, /* passing the limiters */
    RS_UPSTREAM,  /* admitted: its attempt runs */
    RS_DONE,      /* upstream side finished; the response may still be flowing to the client */
    RS_FOLLOW,    /* waiting on an identical request in flight (coalesced): no permit, no attempt */
};

/* A relay's part in the cache (dp_relay_cache.c), in req->pool; only when its service caches or
 * coalesces and the request is one JSON-RPC request the cache can key. */
typedef struct st_dp_rcache_t {
    dp_relay_t *r; /* set once the relay exists (a flight may tell us before: see flown_link) */
    dp_worker_t *w;
    dp_service_t *svc;
    dp_ck_req_t req;              /* the request's parts (spans of req->entity) */
    const cfg_cache_method_t *ov; /* the service's override of its method, or NULL */
    char *key;                    /* dp_ck_key's bytes, in req->pool */
    size_t keylen;
    dp_cres_t result;          /* what X-Pathway-Cache says */
    int store;                 /* a complete answer may be stored (the service caches, the store has room) */
    dp_flight_t *flight;       /* this relay leads it: ended when the answer is known or the relay fails */
    dp_flight_waiter_t fw;     /* this relay follows a flight */
    int following;             /* fw joined a flight whose outcome this relay has not taken yet */
    h2o_linklist_t flown_link; /* in w->flown once the flight told fw (granted_mutex) */
    dp_cache_entry_t *entry;   /* the answer sent from the cache (a reference, released at dispose) */
    char *tee;                 /* the answer as it streams to the client, for the store and the followers */
    size_t tee_len, tee_cap;
    int tee_over; /* larger than can be kept: nothing is stored, followers go alone */
    /* a batch: each item looked up; the missing ones go upstream as a smaller batch */
    struct st_dp_rcitem_t *items; /* the client's items, in its order */
    size_t nitems, nhits;
    int batch;                         /* the request is a batch the cache reads item by item */
    int partial;                       /* some items were hits: req->entity holds the smaller batch, the answer is collected
                                        * whole and reassembled in the client's order */
    h2o_timeout_entry_t collect_timer; /* collecting: the bytes taken, read on */
} dp_rcache_t;

/* One item of a batch. */
typedef struct st_dp_rcitem_t {
    dp_ck_req_t req;
    const cfg_cache_method_t *ov;
    char *key; /* NULL: not cacheable (no id, a method never cached, not readable) */
    size_t keylen;
    dp_cache_entry_t *hit; /* its answer from the cache (a reference) */
    int answered;          /* reassembly: an upstream answer was matched to it */
} dp_rcitem_t;

#define DP_RELAY_MAX_LIVE 4      /* attempts running at once: the first + hedge.max_extra (at most 3) */
#define DP_RELAY_MAX_ATTEMPTS 16 /* attempts of one relay in all: retry.max_attempts (10) + hedges (3) */

/* One running attempt of a relay (a slot; the attempt's owner pointer). */
typedef struct st_dp_try_t {
    dp_relay_t *r;
    dp_attempt_t *a;           /* NULL: a free slot */
    h2o_timeout_entry_t timer; /* retry.per_try_timeout */
    int extra;                 /* holds a unit of the service's budget (a retry or a hedge) */
    int hedge;                 /* started by the hedge timer */
} dp_try_t;

struct st_dp_relay_t {
    h2o_generator_t generator; /* proceed / stop from h2o */
    h2o_req_t *req;
    dp_worker_t *w;
    dp_wgen_t *wg;
    dp_service_t *svc;
    dp_attempt_t *attempt;                    /* the try whose response goes to the client; NULL until one is chosen */
    dp_try_t tries[DP_RELAY_MAX_LIVE];        /* the attempts running and not chosen */
    size_t nlive;                             /* slots in use */
    dp_attempt_t *all[DP_RELAY_MAX_ATTEMPTS]; /* every attempt made, for dispose */
    size_t nall;
    dp_attempt_t *kept;              /* the newest complete answer classed a retriable failure: given if nothing better comes */
    dp_error_t last_err;             /* the newest failure's row, when no answer is kept */
    uint32_t nretries;               /* retries started (or waiting out their backoff) */
    uint32_t nhedges;                /* hedges started */
    uint64_t hedge_delay_ms;         /* this relay's hedge delay; 0 = no hedging */
    int judge;                       /* small answers are held whole and classified before one is chosen */
    int unsafe;                      /* calls a method in retry.unsafe_methods; -1: not looked at yet */
    int hedge_won;                   /* the chosen attempt was a hedge */
    int attempt_extra;               /* the chosen attempt holds a unit of the budget */
    int pending_extra;               /* a unit of the budget is held for a retry waiting out its backoff */
    int budget_entered;              /* counted in the budget's active requests */
    h2o_timeout_entry_t retry_timer; /* backoff before a retry */
    h2o_timeout_entry_t hedge_timer; /* hedge.delay */
    h2o_timeout_entry_t pump_timer;  /* sends a complete answer chosen deep in an attempt's call chain */
    dp_tried_t tried;                /* endpoints tried so far */
    int state;                       /* RS_* */
    int lim_stage;                   /* 0, or 1/2 while waiting on the service / process-wide limiter */
    int have_svc_permit;
    int have_glob_permit;
    dp_limiter_waiter_t lw;
    h2o_linklist_t granted_link; /* in w->granted once another thread granted our wait */
    h2o_linklist_t queued_link;  /* HTTP/1 only: in w->queued while in a limiter queue, in w->watched
                                  * from admission until the response starts */
    int client_fd;               /* HTTP/1: the client's socket, watched until the response starts; -1 otherwise */
    h2o_timeout_entry_t timer;   /* queue timeout in RS_ADMIT, request timeout after */
    h2o_iovec_t reqid;
    uint64_t started_at;
    size_t sending; /* bytes of the attempt's buf handed to h2o_send, until proceed */
    int client_sending;
    int started;           /* h2o_start_response called: the client saw the attempt's answer begin */
    int finished;          /* the final (or error) send is done: nothing more to send */
    int abort_pending;     /* end the stream with an error at the next proceed */
    dp_rcache_t *cache;    /* the cache's part; NULL when the cache plays none */
    h2o_iovec_t collected; /* a partial batch's answer for the client (dp_relay_cache_collect) */
};

/* --- failover (dp_failover.c), called by the relay --------------------------------------------- */

/* Sets the failover timers' callbacks of a new relay (zeroed). Cannot fail. */
void dp_failover_init(dp_relay_t *r);
/* The relay is admitted: enters the service's budget, picks the hedge delay and starts the first
 * try (which may fail, and reach dp_relay_fail, before this returns). */
void dp_failover_start(dp_relay_t *r);
/* Gives back what the tries hold: the hedge and retry timers, the live tries (cancelled and
 * counted), the chosen attempt's connection, budget units and the budget's active count; counts
 * the hedge outcome and records the duration of a complete answer. Idempotent. */
void dp_failover_stop(dp_relay_t *r);
/* timeouts.request passed while tries ran: each live try (and a chosen answer not yet whole) counts
 * as a timeout against its endpoint's health. Before dp_relay_fail. */
void dp_failover_timed_out(dp_relay_t *r);
/* X-Pathway-Attempts when more than one try was made, X-Pathway-Hedged when a hedge started, into
 * req->res.headers (from req->pool). */
void dp_failover_add_headers(dp_relay_t *r);
/* Disposes every attempt the relay made; runs before req->pool goes. */
void dp_failover_dispose(dp_relay_t *r);

/* --- the cache (dp_relay_cache.c), called by the relay ---------------------------------------- */

/* Before a relay exists: a request of a service that caches or coalesces. Returns NULL when the cache
 * plays no part (counted as bypass when the service caches), else the request's part with *res saying
 * what to do: DP_CACHE_HIT (*hit: the answer, a reference; the relay must send it), DP_CACHE_MISS or
 * DP_CACHE_LEADER (go upstream), DP_CACHE_FOLLOWER (wait: dp_relay_cache_follow). */
dp_rcache_t *dp_relay_cache_begin(dp_worker_t *w, h2o_req_t *req, dp_service_t *svc, uint64_t now, dp_cache_lookup_t *res,
                                  dp_cache_entry_t **hit);
/* Bytes of the chosen answer go to the client (`final`: its last ones, the answer is complete): kept
 * for the store while they fit; on the final call the answer is stored, and told to the followers. */
void dp_relay_cache_data(dp_relay_t *r, const dp_attempt_t *a, const char *p, size_t n, int final);
/* The relay failed (error `e`) or ends without an answer: a flight it leads passes to a follower;
 * a flight it follows is left. Idempotent. */
void dp_relay_cache_stop(dp_relay_t *r, dp_error_t e);
/* Frees what the cache part holds (entry, tee); before req->pool goes. */
void dp_relay_cache_dispose(dp_relay_t *r);
/* Flights that told this worker's followers their outcome: each goes on (dp_relay_on_flight). */
void dp_relay_cache_housekeeping(dp_worker_t *w);
/* The X-Pathway-Cache header of an answer from upstream. */
void dp_relay_cache_add_header(dp_relay_t *r);
/* A batch whose items were all hits: its answer as iovecs (in req->pool), in the client's order with
 * the client's ids; *total gets the length. The entries stay referenced until req->pool goes. */
h2o_iovec_t *dp_relay_cache_batch_answer(h2o_req_t *req, dp_rcache_t *rc, size_t *nv, size_t *total);
/* Collecting a partial batch's answer: the chosen attempt's bytes are taken and read on; at the end,
 * the client's answer (the upstream's items and the cached ones, in the client's order) is in *out.
 * Returns 1 when *out is ready (the answer is complete), 0 while collecting, -1 when it cannot be
 * kept (out of memory). */
int dp_relay_cache_collect(dp_relay_t *r, h2o_iovec_t *out);
/* The iovecs of one cached answer with the client's id and jsonrpc: at most 5 in v. */
size_t dp_relay_cache_splice(const dp_cache_entry_t *e, const dp_ck_req_t *ck, h2o_iovec_t *v);

/* --- the relay (dp_relay.c), told by the cache --------------------------------------------------- */

/* A follower's flight ended (on its own thread): fw.outcome says how (answered, lead, alone, failed). */
void dp_relay_on_flight(dp_relay_t *r);

/* --- the relay (dp_relay.c), told by failover ------------------------------------------------- */

/* r->attempt is the answer and no other try will run: the upstream side is finished (timers,
 * tries, budget, permits given back). `complete`: the answer is whole and no on_data of its
 * attempt follows, so the relay sends it from a zero-delay timer. Sends nothing itself. */
void dp_relay_commit(dp_relay_t *r, int complete);
/* No try is left, or the chosen one failed: the client gets error `e` (or, after the response
 * began, a cut stream). Never sends synchronously once the response began. */
void dp_relay_fail(dp_relay_t *r, dp_error_t e);
/* The chosen attempt has bytes (or its end) for the client: hands them to h2o when it is not busy.
 * May free r: the caller returns at once. */
void dp_relay_pump(dp_relay_t *r);

#endif
