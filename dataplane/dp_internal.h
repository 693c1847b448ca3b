/*
 * dp_internal: the dataplane's types, shared by its .c files (not by other folders).
 *
 * Threads and ownership:
 *   - the main thread runs the admin listener, signals and dp_server_apply; it builds generations.
 *   - each worker owns one h2o evloop + context, its listeners, its client connections, its half
 *     of every endpoint's pool (dp_wpool_t) and its buffer pool. Nothing a worker owns is touched by
 *     another thread; workers talk to each other only through kick() (a coalesced wake-up) and the
 *     atomics documented on each field.
 *   - generations, services and endpoints are refcounted and immutable after publication, except
 *     for the atomics they carry.
 */
#ifndef PATHWAY_DP_INTERNAL_H
#define PATHWAY_DP_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <sys/socket.h>
#include <nghttp2/nghttp2.h>
#include <openssl/ssl.h>
#include "h2o.h"
#include "cfg.h"
#include "dp.h"
#include "dp_adaptive.h"
#include "dp_budget.h"
#include "dp_bufpool.h"
#include "dp_health.h"
#include "dp_latency.h"
#include "dp_limiter.h"
#include "dp_errors.h"
#include "dp_ws.h"

#define DP_MAX_WORKERS 256
#define DP_HIST_BUCKETS 14 /* request duration buckets, see dp_hist_bounds_ms */

typedef struct st_dp_worker_t dp_worker_t;
typedef struct st_dp_gen_t dp_gen_t;
typedef struct st_dp_service_t dp_service_t;
typedef struct st_dp_svcshared_t dp_svcshared_t;
typedef struct st_dp_endpoint_t dp_endpoint_t;
typedef struct st_dp_host_t dp_host_t;
typedef struct st_dp_wpool_t dp_wpool_t;
typedef struct st_dp_conn_t dp_conn_t;
typedef struct st_dp_relay_t dp_relay_t;
typedef struct st_dp_wgen_t dp_wgen_t;

/* A counter with one writer: the owner adds with a plain load+store, readers load. */
typedef _Atomic uint64_t dp_counter_t;
#define DP_OWNER_ADD(c, n) atomic_store_explicit(&(c), atomic_load_explicit(&(c), memory_order_relaxed) + (n), memory_order_relaxed)
#define DP_SHARED_ADD(c, n) atomic_fetch_add_explicit(&(c), (n), memory_order_relaxed)
#define DP_LOAD(c) atomic_load_explicit(&(c), memory_order_relaxed)

extern const uint64_t dp_hist_bounds_ms[DP_HIST_BUCKETS - 1]; /* the last bucket is +Inf */

/* Per-service counters of one worker (written by that worker only). */
typedef struct st_dp_svcstats_t {
    dp_counter_t by_class[6];           /* [1..5] = 1xx..5xx responses */
    dp_counter_t hist[DP_HIST_BUCKETS]; /* request durations, non-cumulative */
    dp_counter_t duration_us_sum;
    dp_counter_t retries[CFG_RETRY_ON_COUNT]; /* retries started, by the retry_on reason that allowed them */
    dp_counter_t hedges[2];                   /* relays that started a hedge: [0] the hedge won, [1] it lost */
    dp_counter_t rpc_errors; /* answers under 500 classed server_error, rate_limited or missing_data (rollout evidence) */
    dp_counter_t cache[4];   /* requests (the items of a batch the cache reads) by cache result: dp_cres_t */
    /* WebSocket relay: [0] client_to_upstream, [1] upstream_to_client */
    dp_counter_t ws_messages[2]; /* messages relayed (text and binary) */
    dp_counter_t ws_bytes[2];    /* their payload bytes */
    dp_counter_t ws_refused[3];  /* upgrades answered with an error: [0] 503 max_connections, [1] every handshake failed, [2] the
                                    request (or 501, 400) */
} dp_svcstats_t;

/* What the cache did with a request (pathway_cache_requests_total{result}, X-Pathway-Cache). */
typedef enum en_dp_cres_t {
    DP_CRES_HIT = 0,   /* answered from the cache */
    DP_CRES_MISS,      /* cacheable, went upstream */
    DP_CRES_COALESCED, /* answered by an identical request in flight */
    DP_CRES_BYPASS,    /* the service caches or coalesces, but not this request (method, params, notification) */
} dp_cres_t;
extern const char *const dp_cres_names[4];

/* How one attempt ended, for pathway_attempts_total{result}: a complete answer by its class
 * (dp_classify's names), else how it failed. */
#define DP_ATTEMPT_RESULTS(X)                                                                                                      \
    X(OK, "ok")                                                                                                                    \
    X(CLIENT_ERROR, "client_error")                                                                                                \
    X(RATE_LIMITED, "rate_limited")                                                                                                \
    X(MISSING_DATA, "missing_data")                                                                                                \
    X(SERVER_ERROR, "server_error")                                                                                                \
    X(OTHER_ERROR, "other_error")                                                                                                  \
    X(CONNECT_FAILURE, "connect_failure")                                                                                          \
    X(RESET, "reset")                                                                                                              \
    X(TIMEOUT, "timeout")                                                                                                          \
    X(BAD_RESPONSE, "bad_response")                                                                                                \
    X(CANCELLED, "cancelled")                                                                                                      \
    X(LOCAL, "local")
typedef enum en_dp_ares_t {
#define DP_ARES_ENUM(n, s) DP_ARES_##n,
    DP_ATTEMPT_RESULTS(DP_ARES_ENUM)
#undef DP_ARES_ENUM
        DP_ARES__COUNT
} dp_ares_t;
extern const char *const dp_ares_names[DP_ARES__COUNT];
/* The retry_on names in the order of cfg_retry_on_t (pathway_retries_total{reason}). */
extern const char *const dp_retry_reason_names[CFG_RETRY_ON_COUNT];

/* What a service keeps across generations, keyed by its id: its limiter and its counters. One per
 * id in the server's registry while any live generation lists the service, so every generation
 * (not only the previous one) shares the same limiter state. */
struct st_dp_svcshared_t {
    _Atomic long refcnt; /* generations listing it; dropped to 0 only under server->registry_mutex */
    dp_server_t *server;
    h2o_linklist_t link; /* in server->svcshared (registry_mutex) */
    char *id;
    int has_limiter;          /* limiter.max_concurrent > 0 or limiter.adaptive.enabled in the newest generation */
    dp_limiter_t limiter;     /* per-service bound (bounds updated in place on apply) */
    dp_adaptive_t adaptive;   /* the adaptive limit the limiter enforces (settings applied in place) */
    dp_budget_t budget;       /* retries + hedges (settings read from the current generation at each call) */
    dp_latency_t latency;     /* recent relay durations, for a percentile hedge delay */
    dp_svchealth_t health;    /* ejection order, the service's head, panic */
    _Atomic uint32_t ws_open; /* relayed WebSockets open or in their handshake, all workers (websocket.max_connections) */
    size_t nworkers;
    dp_svcstats_t stats[]; /* one per worker */
};

/* One upstream: scheme, host, port and TLS identity (not path, not pool settings). The per-host
 * bounds are counted here, in one object shared by every endpoint of every live generation that
 * points at the upstream: settings that flip A -> B -> A while old generations drain still give
 * one count. The bounds enforced are the current generation's (set on apply; when endpoints of
 * one generation disagree, the largest). In the server's registry while referenced. */
struct st_dp_host_t {
    long refcnt; /* endpoints using it; under server->registry_mutex */
    dp_server_t *server;
    h2o_linklist_t link; /* in server->hosts (registry_mutex) */
    char *key;
    _Atomic uint32_t max_conns; /* max_conns_per_host of the current generation */
    _Atomic uint32_t max_idle;  /* max_idle_per_host of the current generation */
    _Atomic uint32_t open;      /* connections open or opening, all endpoints and workers */
    _Atomic uint32_t idle;      /* idle connections, all endpoints and workers */
    _Atomic uint32_t waiters;   /* requests waiting for a connection slot, all endpoints and workers */
};

/* One endpoint of a service. Shared by every generation whose endpoint key (service, url, tls) is
 * the same, so a reload keeps warm connections and counters. Its pool settings are not part of
 * the key: each apply stores the newest generation's into the atomics below, and the live pool
 * follows them. The limits hold per process and per upstream: they are enforced on `upstream`; the
 * counts below are this endpoint's share (for stats). */
struct st_dp_endpoint_t {
    _Atomic long refcnt;   /* generations + workers that hold connections to it */
    _Atomic long gen_refs; /* generations that list it; 0 = retired: close idle, stop reusing */
    char *key;             /* identity for carry-over */
    char *service;         /* id of the service it belongs to (metrics label) */
    char *url;             /* what it was configured with (never shown: it may hold a key) */
    char *label;           /* its name in metrics, /stats and logs */
    char *host;            /* for Host:, SNI */
    uint16_t port;
    char *path;              /* request target */
    h2o_iovec_t host_header; /* "host[:port]" */
    h2o_iovec_t head_prefix; /* "POST <path> HTTP/1.1\r\nhost: <host>\r\n<headers, authorization>content-length: " */
    int own_content_type;    /* the endpoint's headers set content-type: the client's is not sent */
    int is_https;
    SSL_CTX *ssl_ctx;  /* https only; verifies per tls.verify */
    char *server_name; /* SNI and verified name */
    int verify;
    struct sockaddr_storage addr;
    socklen_t addrlen;                   /* 0 = the name did not resolve: connects fail with 502 */
    _Atomic uint32_t max_conns;          /* max_conns_per_host of the newest generation listing it */
    _Atomic uint32_t max_idle;           /* max_idle_per_host of the newest generation listing it */
    _Atomic uint64_t idle_timeout_ms;    /* pool.idle_timeout of the newest generation (new idle periods) */
    _Atomic uint64_t connect_timeout_ms; /* pool.connect_timeout of the newest generation (new connects) */
    dp_host_t *upstream;                 /* the upstream's shared counts and bounds (a reference) */
    _Atomic uint32_t open;               /* connections open or opening, all workers (upstream->open bounds it) */
    _Atomic uint32_t idle;               /* idle connections, all workers (upstream->idle bounds it) */
    _Atomic uint32_t waiters;            /* requests waiting for a connection slot, all workers */
    _Atomic int32_t outstanding;         /* requests assigned to this endpoint and not finished */
    _Atomic int just_failed;             /* a connect failed: pass it over once */
    _Atomic uint64_t connects, reuses, connect_errors, closes;
    _Atomic uint64_t attempts[DP_ARES__COUNT]; /* attempts by how they ended (dp_ares_t) */
    dp_ephealth_t health;                      /* in rotation or why not (dp_health.h) */
    size_t nworkers;
    dp_wpool_t *wp; /* [nworkers]: each worker's half of the pool */

    /* HTTP/2 (dp_h2.h) */
    SSL_CTX *ssl_ctx_alpn;  /* https only: the same as ssl_ctx, offering h2 and http/1.1 by ALPN */
    nghttp2_nv *h2_headers; /* the endpoint's request headers for HTTP/2 (dp_h2_prefix_headers) */
    size_t h2_nheaders;
    _Atomic int protocol;                  /* cfg_protocol_t of the newest generation (new connections) */
    _Atomic uint32_t max_streams;          /* max_concurrent_streams of the newest generation */
    _Atomic uint32_t h2_window;            /* buffers.size of the newest generation: a stream's window */
    _Atomic uint32_t h2_open;              /* connections speaking HTTP/2, all workers */
    _Atomic uint32_t streams;              /* HTTP/2 streams open, all workers */
    _Atomic uint64_t h2_connects, goaways; /* connections that became HTTP/2; GOAWAYs received */

    /* WebSocket relay (dp_ws.h) */
    struct st_dp_wstarget_t *ws;                               /* its ws_url built for connecting; NULL = takes no WebSockets */
    _Atomic int64_t ws_open;                                   /* relayed WebSockets open to it, all workers */
    _Atomic uint64_t ws_handshake_failures[DP_WS_FAIL__COUNT]; /* upstream handshakes that failed, by dp_ws_failure_t */
};

/* An endpoint's ws_url, built once per endpoint on the main thread (dp_ws_target.c). */
typedef struct st_dp_wstarget_t {
    int is_tls;
    SSL_CTX *ssl_ctx;  /* wss only: the endpoint's tls settings, no ALPN (the upgrade is HTTP/1.1) */
    char *server_name; /* wss: SNI and the name verified */
    struct sockaddr_storage addr;
    socklen_t addrlen;       /* 0 = the name did not resolve: handshakes fail over */
    h2o_iovec_t head_prefix; /* "GET <path> HTTP/1.1\r\nhost: ...\r\n<headers><authorization>" */
} dp_wstarget_t;

/* A worker's part of one endpoint's pool. */
struct st_dp_wpool_t {
    dp_endpoint_t *ep;          /* back pointer */
    h2o_linklist_t idle;        /* dp_conn_t, most recently used first */
    h2o_linklist_t waiters;     /* dp_pool_waiter_t waiting for a connection, FIFO */
    h2o_linklist_t active_link; /* in dp_worker_t.active_pools while nconns or waiters */
    uint32_t nconns;            /* open or opening connections owned by this worker */
    uint32_t nwaiters;
    int active; /* linked in active_pools, holding a ref on the endpoint */

    h2o_linklist_t h2conns; /* dp_conn_t speaking HTTP/2 that take new streams (idle or busy) */
    uint32_t h2_connecting; /* connections opening for h2 (waiters wait for them rather than open more) */
};

/* A service as one generation sees it. */
struct st_dp_service_t {
    const char *id; /* borrowed from cfg */
    size_t idlen;
    const cfg_service_t *cfg;
    dp_svcshared_t *shared;
    size_t nendpoints;
    dp_endpoint_t **endpoints;
    _Atomic unsigned rr; /* round-robin cursor for ties */
};

/* An immutable config snapshot with everything built from it. */
struct st_dp_gen_t {
    _Atomic long refcnt; /* the server's "current" slot + each worker that uses it */
    dp_server_t *server;
    cfg_t *cfg;
    uint64_t generation;   /* local counter: 1 for the first, +1 per generation built */
    int64_t fleet_version; /* control plane version of the fleet part; 0 = the dataplane's own file */
    char hash[65];         /* cfg_hash of the fleet part */
    char full_hash[65];    /* cfg_hash of the whole document (node-local + fleet): "did anything change" */
    size_t nservices;
    dp_service_t *services; /* sorted by id */
    size_t nendpoints;
    dp_endpoint_t **endpoints; /* unique */
};

/* A worker's hold on one generation; requests count here without atomics. */
struct st_dp_wgen_t {
    dp_gen_t *gen;
    uint64_t nrequests; /* requests in flight that began on gen */
    int current;        /* still the worker's current generation */
};

typedef struct st_dp_listener_t {
    int *fds;         /* [nworkers]: each worker's SO_REUSEPORT twin of the address */
    SSL_CTX *ssl_ctx; /* NULL = plain (HTTP/1.1 + h2c) */
    char *address;
    int http2; /* listen[].http2: 0 = HTTP/1.1 only (the worker's ctx_h1, ALPN http/1.1 only) */
} dp_listener_t;

/* The relay's handler. Each worker has two h2o contexts (h2o's HTTP/1 upgrade to h2c is a
 * globalconf setting, so HTTP/1.1-only listeners need a globalconf, hence a context, of their
 * own); the handler says which one a request's context is, to find its worker. */
typedef struct st_dp_relay_handler_t {
    h2o_handler_t super;
    int h1_only; /* registered in server->globalconf_h1: requests arrive on worker->ctx_h1 */
} dp_relay_handler_t;

/* Timeouts by duration: h2o_timeout_t lists have a fixed duration, so each worker keeps one per
 * distinct value in use (a handful). Lists left empty are freed between loop iterations once there
 * are more than DP_TIMEOUTS_KEPT, so reloads through many durations do not grow the set. */
#define DP_TIMEOUTS_KEPT 16
typedef struct st_dp_timeouts_t {
    h2o_timeout_t **entries;
    size_t size;
} dp_timeouts_t;

struct st_dp_worker_t {
    dp_server_t *server;
    size_t index;
    pthread_t thread;
    h2o_evloop_t *loop;
    h2o_context_t ctx;
    h2o_context_t ctx_h1;          /* for HTTP/1.1-only listeners (initialised when there are any) */
    h2o_accept_ctx_t *accept_ctxs; /* one per listener */
    h2o_socket_t **listen_socks;   /* one per listener, NULL once closed */
    dp_wgen_t *wgen;               /* current */
    dp_bufpool_t bufpool;
    dp_timeouts_t timeouts;
    h2o_linklist_t active_pools; /* dp_wpool_t with connections or waiters */
    dp_endpoint_t **hk_eps;      /* housekeeping's scratch list of active endpoints */
    size_t hk_eps_capacity;      /* entries allocated in hk_eps (grown, never shrunk) */
    h2o_multithread_receiver_t kick_receiver;
    h2o_multithread_message_t kick_msg;
    _Atomic int kick_pending;
    pthread_mutex_t granted_mutex;
    h2o_linklist_t granted;          /* dp_relay_t whose limiter wait was granted by another thread */
    h2o_linklist_t flown;            /* dp_rcache_t whose flight told them its outcome (granted_mutex) */
    h2o_timeout_entry_t sweep_timer; /* periodic housekeeping */
    h2o_linklist_t queued;           /* HTTP/1 relays waiting in a limiter queue (see peek_timer) */
    h2o_timeout_entry_t peek_timer;  /* looks for HTTP/1 clients that left while queued */
    h2o_linklist_t watched;          /* admitted HTTP/1 relays whose response has not started */
    h2o_timeout_entry_t watch_timer; /* looks for HTTP/1 clients that left while their request runs */
    int exiting;
    uint64_t reqid_seq;
    uint32_t reqid_prefix;
    /* counters (this worker writes) */
    dp_counter_t active;      /* relays in flight */
    dp_counter_t requests;    /* requests handled */
    dp_counter_t by_class[6]; /* responses by status class, every request */
    dp_counter_t conns_busy;  /* upstream connections carrying a request */
};

struct st_dp_server_t {
    dp_server_options_t opts;
    char *config_path;
    size_t nworkers;
    dp_worker_t *workers; /* [nworkers + 1]: the last is the prober thread (dp_probe.c), a worker without listeners */
    size_t nlisteners;
    dp_listener_t *listeners;
    int admin_fd;
    h2o_globalconf_t globalconf;    /* workers' (read-only once they run, but for the body cap: raise_entity_cap) */
    h2o_globalconf_t globalconf_h1; /* the same for HTTP/1.1-only listeners: no h2c upgrade or prior knowledge */
    int has_h1_only;                /* some listener has http2: false (workers init ctx_h1) */
    h2o_globalconf_t admin_globalconf;
    pthread_mutex_t gen_mutex; /* guards the pointer swap vs. a worker taking its ref */
    _Atomic(dp_gen_t *) current;
    uint64_t generation_seq;     /* generations built so far */
    cfg_t *running_cfg;          /* the document the process started with: restart-only settings (main thread) */
    dp_limiter_t limiter;        /* process-wide */
    struct st_dp_cache_t *cache; /* the response cache, process-wide (dp_cache.h) */
    _Atomic uint32_t idle_total; /* idle upstream connections, all endpoints */
    _Atomic uint32_t max_idle_total;
    _Atomic uint64_t max_request_body;
    pthread_mutex_t registry_mutex; /* guards hosts, svcshared and their refcounts reaching 0 */
    h2o_linklist_t hosts;           /* dp_host_t by key */
    h2o_linklist_t svcshared;       /* dp_svcshared_t by service id */
    _Atomic int stopping;           /* SIGTERM seen: close listeners, drain */
    _Atomic int exiting;            /* drain over: workers leave their loops */
    _Atomic int workers_ready;
    _Atomic int workers_parked; /* workers done with the drain (they idle until exit) */
    _Atomic int prober_ready;   /* the prober thread (workers[nworkers]) runs its loop */
    h2o_evloop_t *admin_loop;   /* main thread's loop, kept reachable until exit */
    h2o_context_t *admin_ctx;
    h2o_accept_ctx_t admin_accept;
    h2o_multithread_receiver_t apply_receiver; /* dp_server_apply_from_thread → main thread */
    pthread_mutex_t apply_mutex;               /* orders apply_from_thread's sends before the last loop run */
    int accepting_applies;                     /* under apply_mutex */
    _Atomic uint64_t applies_ok, applies_failed;
    char *last_apply_error; /* main thread */
    char *admin_token;      /* admin.token_file's token, read at start (restart-only); NULL = none */
    int signal_pipe[2];
    uint64_t started_at_ms;
    double started_at_unix; /* process_start_time_seconds */
};

/* --- server.c ----------------------------------------------------------------------------- */
/* Pool halves each endpoint keeps: one per worker and one for the prober. */
#define DP_NPOOLS(s) ((s)->nworkers + 1)
static inline dp_worker_t *dp_server_prober(dp_server_t *s)
{
    return s->workers + s->nworkers;
}
void dp_worker_kick(dp_worker_t *w);
void dp_server_kick_all(dp_server_t *s);
/* The timeout list of `ms` on this worker (created on first use). */
h2o_timeout_t *dp_worker_timeout(dp_worker_t *w, uint64_t ms);
/* Frees unused timeout lists beyond DP_TIMEOUTS_KEPT; between loop iterations only. */
void dp_worker_prune_timeouts(dp_worker_t *w);
/* Takes the server's current generation if it changed; between events only. */
void dp_worker_refresh_gen(dp_worker_t *w);
void dp_wgen_release(dp_worker_t *w, dp_wgen_t *wg);
/* GET /ready: a generation, every worker serving, not stopping, and (managed) a fleet config from
 * the control plane or state_dir applied. */
int dp_server_ready(dp_server_t *s);

/* --- gen.c -------------------------------------------------------------------------------- */
/* Builds a generation from cfg (owned on success). Reuses endpoints and services of `prev`
 * (may be NULL) whose keys match. Returns NULL with errors added. Main thread. */
dp_gen_t *dp_gen_create(dp_server_t *s, cfg_t *cfg, const dp_gen_t *prev, cfg_errors_t *errs);
void dp_gen_retain(dp_gen_t *g);
void dp_gen_release(dp_gen_t *g);
dp_service_t *dp_gen_find_service(dp_gen_t *g, const char *id, size_t len);
void dp_endpoint_release(dp_endpoint_t *ep);
void dp_svcshared_release(dp_svcshared_t *sh);
/* Sets up the server's registry of upstreams and service states (before the first generation). */
void dp_registry_init(dp_server_t *s);
/* Sets every endpoint's pool settings and every upstream's bounds from g (the generation about to
 * become current): live pools follow them without being rebuilt. Main thread. */
void dp_gen_apply_pool_settings(dp_gen_t *g);

/* --- relay.c ------------------------------------------------------------------------------ */
int dp_proxy_on_req(h2o_handler_t *self, h2o_req_t *req);
/* Worker housekeeping after a kick: granted waiters, pools under pressure, retired endpoints. */
void dp_proxy_housekeeping(dp_worker_t *w);
/* Closes every idle connection of this worker (shutdown). */
void dp_proxy_close_idle(dp_worker_t *w);

/* --- ws_target.c, ws.c, ws_admin.c (the WebSocket relay, dp_ws.h) ------------------------- */
/* Builds ep->ws from e->ws_url (nothing when it has none); 0, or -1 with errors added under `field`. Main thread. */
int dp_ws_target_create(dp_endpoint_t *ep, const cfg_endpoint_t *e, const char *field, cfg_errors_t *errs);
void dp_ws_target_destroy(dp_wstarget_t *t);
/* 1 when req asks for a WebSocket (Upgrade: websocket, or an HTTP/2 request with WebSocket headers). */
int dp_ws_is_upgrade(h2o_req_t *req);
/* Takes a request dp_ws_is_upgrade said yes to, routed as `rt` / id (dp_route), on worker w. */
void dp_ws_on_req(dp_worker_t *w, h2o_req_t *req, int rt, const char *id, size_t idlen, h2o_iovec_t reqid, uint64_t now);
/* /stats: a service's "websocket" object; /metrics: pathway_websocket_*. */
json_t *dp_ws_admin_service_json(dp_service_t *svc);
struct st_pw_buf_t;
void dp_ws_admin_metrics(dp_gen_t *g, struct st_pw_buf_t *o);
/* The relay's error answer (dp_relay.c): a JSON-RPC error body from the error table. */
void dp_relay_send_error(dp_worker_t *w, h2o_req_t *req, dp_service_t *svc, h2o_iovec_t reqid, uint64_t started_at, dp_error_t e);
/* A WebSocket's 101 counts as a 1xx answer of its service (dp_relay.c), without a duration. */
void dp_relay_count_upgrade(dp_worker_t *w, dp_service_t *svc);
/* Its access line when the tunnel ends (log.access_log): status 101, bytes to the client, the session's
 * length in ms, its endpoint, messages and payload bytes each way ([0] client to upstream, [1] back). */
void dp_relay_log_upgrade(dp_worker_t *w, dp_service_t *svc, const char *endpoint, const uint64_t messages[2],
                          const uint64_t bytes[2], uint64_t started_at, h2o_iovec_t reqid);

/* --- admin.c ------------------------------------------------------------------------------ */
int dp_admin_init(dp_server_t *s, h2o_globalconf_t *conf);
/* Adds the X-Request-Id of a request (kept, or made) to its response. */
h2o_iovec_t dp_request_id(dp_worker_t *w, h2o_req_t *req);
uint64_t dp_process_rss(void);

/* --- admin_cache.c ------------------------------------------------------------------------ */
struct st_pw_buf_t;
/* /stats: the store's "cache" object, and a service's "cache" (settings and requests by result). */
json_t *dp_admin_cache_json(dp_server_t *s);
json_t *dp_admin_cache_service_json(dp_server_t *s, const dp_service_t *svc);
/* /metrics: pathway_cache_* */
void dp_admin_cache_metrics(dp_server_t *s, dp_gen_t *g, struct st_pw_buf_t *o);
/* POST /cache/purge: everything (service NULL) or one service's answers; the answer and its status. */
json_t *dp_admin_cache_purge(dp_server_t *s, dp_gen_t *g, const char *service, int *status);

/* --- admin_h2.c ------------------------------------------------------------------------------ */
/* /stats: an endpoint's HTTP/2 side (protocol configured and in use, connections, streams, GOAWAYs). */
json_t *dp_admin_h2_endpoint_json(dp_endpoint_t *ep);
/* /metrics: pathway_upstream_streams, pathway_upstream_h2_connections, pathway_upstream_goaways_total */
void dp_admin_h2_metrics(dp_gen_t *g, struct st_pw_buf_t *o);
/* A Prometheus label value (dp_admin.c): backslash, double quote and newline escaped; cut to fit `len`. */
const char *dp_admin_label_escape(const char *v, char *buf, size_t len);

/* --- admin_adaptive.c ------------------------------------------------------------------------ */
/* /stats: a service's "adaptive" (its settings, and the limit with its last window when on). */
json_t *dp_admin_adaptive_json(dp_service_t *svc);
/* /metrics: pathway_adaptive_* */
void dp_admin_adaptive_metrics(dp_gen_t *g, struct st_pw_buf_t *o);

#endif
