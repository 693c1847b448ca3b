/*
 * cfg: the one definition of Pathway's config document (DESIGN §2).
 *
 * A document is parsed (YAML or JSON) into one jansson tree, then ONE table-driven decoder
 * (cfg_table.c) fills the C structs below, applies defaults, checks bounds and cross-field rules
 * and reports every error with its path. Emission walks the same table, so the canonical form
 * (compact JSON, sorted keys, defaults filled in) round-trips: parse(emit(doc)) == doc.
 *
 * Services inherit the policy sections of `defaults` (pool, timeouts, limiter, cors, retry, hedge,
 * health_check, outlier, cache) key by key, nested sections (retry.backoff, limiter.adaptive,
 * cache.ttl) key by key too, and a list (rpc_errors) or a map (cache.methods) whole; the decoder
 * fills each service's effective values, and remembers which keys the service set itself (`_set`),
 * so the canonical form keeps only the overrides and a later change of `defaults` still reaches
 * every service that did not override it.
 *
 * schema/ never includes h2o or sqlite.
 */
#ifndef PATHWAY_CFG_H
#define PATHWAY_CFG_H

#include <stddef.h>
#include <stdint.h>
#include <jansson.h>

#ifdef __cplusplus
extern "C" {
#endif

/* A vector of T as {entries, size}; every CFG_VEC has the same layout, so the table code can
 * treat any of them as cfg_vec_t. */
#define CFG_VEC(T)                                                                                                                 \
    struct {                                                                                                                       \
        T *entries;                                                                                                                \
        size_t size;                                                                                                               \
    }
typedef CFG_VEC(void) cfg_vec_t;

typedef enum en_cfg_log_level_t {
    CFG_LOG_DEBUG = 0,
    CFG_LOG_INFO,
    CFG_LOG_WARN,
    CFG_LOG_ERROR,
} cfg_log_level_t;

/* Server-side TLS of a listener. */
typedef struct st_cfg_listen_tls_t {
    uint64_t _set;     /* bit i: field i was given in the document */
    char *certificate; /* PEM certificate chain file */
    char *key;         /* PEM private key file */
} cfg_listen_tls_t;

typedef struct st_cfg_listen_t {
    uint64_t _set;
    char *address;        /* "host:port"; host may be an IPv4/IPv6 literal, "[::1]" or a name */
    int has_tls;          /* the `tls` key was present */
    cfg_listen_tls_t tls; /* valid when has_tls */
    int http2;            /* 0 = HTTP/1.1 only: no h2c, ALPN offers http/1.1 alone */
} cfg_listen_t;

typedef struct st_cfg_admin_t {
    uint64_t _set;
    char *address;    /* admin listener "host:port" */
    char *token_file; /* NULL = open; else every call but /healthz and /ready needs its bearer token */
} cfg_admin_t;

typedef struct st_cfg_log_t {
    uint64_t _set;
    int level;      /* cfg_log_level_t */
    int access_log; /* one line per request when true */
} cfg_log_t;

typedef struct st_cfg_limits_t {
    uint64_t _set;
    uint64_t max_request_body;  /* bytes; 413 beyond */
    uint64_t max_response_body; /* bytes; 502 beyond */
} cfg_limits_t;

typedef struct st_cfg_global_pool_t {
    uint64_t _set;
    uint32_t max_idle_total; /* idle upstream connections kept, process-wide */
} cfg_global_pool_t;

typedef struct st_cfg_limiter_t {
    uint64_t _set;
    uint32_t max_concurrent;   /* concurrent upstream requests, process-wide */
    uint32_t max_queue;        /* requests allowed to wait; beyond: 503 */
    uint64_t queue_timeout_ms; /* waited longer: 503 */
} cfg_limiter_t;

typedef struct st_cfg_buffers_t {
    uint64_t _set;
    uint64_t size;         /* bytes of one pooled response buffer */
    uint64_t max_retained; /* a buffer that grew beyond this is freed, not kept */
} cfg_buffers_t;

/* pool.protocol: the HTTP version toward an upstream. */
typedef enum en_cfg_protocol_t {
    CFG_PROTO_HTTP1 = 0, /* HTTP/1.1 */
    CFG_PROTO_H2,        /* HTTP/2: prior knowledge on http://, ALPN h2 required on https:// */
    CFG_PROTO_AUTO,      /* https://: ALPN h2 or http/1.1; http://: HTTP/1.1 */
} cfg_protocol_t;

/* Per-service policy; `defaults` holds one, each service inherits and may override any field. */
typedef struct st_cfg_pool_t {
    uint64_t _set;
    uint32_t max_idle_per_host;  /* idle connections kept per endpoint */
    uint32_t max_conns_per_host; /* open connections per endpoint, idle + busy */
    uint64_t idle_timeout_ms;    /* idle connections are closed after this */
    uint64_t connect_timeout_ms; /* upstream TCP (+TLS) connect */

    /* HTTP/2 toward upstreams */
    int protocol;                    /* cfg_protocol_t: HTTP version of new upstream connections */
    uint32_t max_concurrent_streams; /* streams one HTTP/2 connection carries at once */
} cfg_pool_t;

typedef struct st_cfg_timeouts_t {
    uint64_t _set;
    uint64_t request_ms; /* whole upstream exchange; 504 beyond */
} cfg_timeouts_t;

/* Browser access to a service (off while allow_origins is empty). */
typedef struct st_cfg_cors_t {
    uint64_t _set;
    CFG_VEC(char *) allow_origins; /* "scheme://host[:port]" or "*" (any origin) */
    uint64_t max_age_ms;           /* how long a browser may cache a preflight answer */
} cfg_cors_t;

/* Adaptive concurrency: a per-service limit that follows the upstream's latency (gradient). */
typedef struct st_cfg_adaptive_t {
    uint64_t _set;
    int enabled;            /* off: only max_concurrent bounds the service */
    uint32_t min_limit;     /* the limit never goes below this */
    uint32_t max_limit;     /* ... nor above this (nor above max_concurrent when that is set) */
    uint32_t initial_limit; /* where it starts (and restarts when switched on) */
    uint32_t tolerance;     /* thousandths (1500 = 1.5): latency may grow to this x the baseline before the limit shrinks */
    uint64_t window_ms;     /* how often the limit is recomputed */
    uint32_t smoothing;     /* thousandths (200 = 0.2): growth per window, as a fraction of the limit, while within tolerance */
} cfg_adaptive_t;

typedef struct st_cfg_service_limiter_t {
    uint64_t _set;
    uint32_t max_concurrent; /* 0 = only the process-wide limit applies (and, when adaptive, the adaptive limit) */
    cfg_adaptive_t adaptive; /* key by key from defaults.limiter.adaptive */
} cfg_service_limiter_t;

/* What may make a failed attempt worth another try: bit (1u << value) of cfg_retry_t.retry_on. The
 * order is the order of the names in the document's list (canonical form). */
typedef enum en_cfg_retry_on_t {
    CFG_RETRY_ON_CONNECT_FAILURE = 0, /* connect refused or timed out: the request surely never arrived */
    CFG_RETRY_ON_RESET,               /* the connection closed or reset before a complete response */
    CFG_RETRY_ON_TIMEOUT,             /* per_try_timeout passed without a complete response */
    CFG_RETRY_ON_HTTP_5XX,            /* HTTP 5xx from the endpoint */
    CFG_RETRY_ON_HTTP_429,            /* HTTP 429 from the endpoint */
    CFG_RETRY_ON_RPC_RATE_LIMITED,    /* a JSON-RPC error classed rate_limited */
    CFG_RETRY_ON_RPC_MISSING_DATA,    /* a JSON-RPC error classed missing_data (a lagging node) */
    CFG_RETRY_ON_RPC_SERVER_ERROR,    /* a JSON-RPC error classed server_error */
    CFG_RETRY_ON_COUNT
} cfg_retry_on_t;

/* Wait before a retry: a random time in [0, min(max, base * 2^(retry - 1))] (full jitter). */
typedef struct st_cfg_backoff_t {
    uint64_t _set;
    uint64_t base_ms; /* bound of the first retry's wait; 0 = retry at once */
    uint64_t max_ms;  /* the bound never grows beyond this; >= base_ms */
} cfg_backoff_t;

/* The per-service budget shared by retries and hedges. */
typedef struct st_cfg_retry_budget_t {
    uint64_t _set;
    uint32_t percent;        /* extra attempts (retries + hedges) in flight, as % of the service's active requests */
    uint32_t min_concurrent; /* extra attempts always allowed, whatever the percentage gives */
} cfg_retry_budget_t;

typedef struct st_cfg_retry_t {
    uint64_t _set;
    uint32_t max_attempts;          /* tries in all, the first included; 1 = no retries */
    uint64_t per_try_timeout_ms;    /* one attempt's bound; 0 = only timeouts.request bounds the relay */
    uint32_t retry_on;              /* bit (1u << cfg_retry_on_t) for each failure that may be retried */
    cfg_backoff_t backoff;          /* wait between attempts */
    cfg_retry_budget_t budget;      /* bound on retries + hedges */
    CFG_VEC(char *) unsafe_methods; /* JSON-RPC methods never repeated once they may have arrived (nor hedged) */
} cfg_retry_t;

/* A second attempt on another endpoint when the first is slow; the first complete answer wins. */
typedef struct st_cfg_hedge_t {
    uint64_t _set;
    char *delay;           /* canonical text: "0s" (off), a duration ("20ms"), or a percentile "p50".."p99" */
    uint64_t min_delay_ms; /* floor of a percentile delay (a fixed delay is used as given) */
    uint32_t max_extra;    /* hedges one relay may start; 0 = off */
    /* derived from `delay` by the decoder, not part of the document: */
    uint64_t delay_ms;         /* the fixed delay; 0 with delay_percentile 0 = hedging off */
    uint32_t delay_percentile; /* 50..99: the delay is this percentile of the service's latency; 0 = fixed */
} cfg_hedge_t;

/* Classes of upstream JSON-RPC errors (the built-in table and an operator's rpc_errors rows). */
typedef enum en_cfg_rpc_class_t {
    CFG_RPC_RATE_LIMITED = 0, /* the endpoint refuses for now: try another */
    CFG_RPC_MISSING_DATA,     /* a lagging node lacks the block or state: try another */
    CFG_RPC_SERVER_ERROR,     /* the endpoint failed */
    CFG_RPC_CLIENT_ERROR,     /* the request is at fault (a revert, bad params): returned as is, never retried */
} cfg_rpc_class_t;

/* An operator's addition to the error classes; checked before the built-in table. */
typedef struct st_cfg_rpc_error_t {
    uint64_t _set;
    int32_t code;  /* error.code to match; only when has_code */
    char *message; /* substring of error.message to match, ASCII case-insensitive; NULL = any message */
    int rpc_class; /* cfg_rpc_class_t */
    /* derived: */
    int has_code; /* `code` was given: match it (and the message too when given) */
} cfg_rpc_error_t;

/* Active health checks: a JSON-RPC probe per endpoint, off the worker threads. */
typedef struct st_cfg_health_check_t {
    uint64_t _set;
    uint64_t interval_ms;         /* between probes of one endpoint; 0 = no active checks */
    uint64_t timeout_ms;          /* one probe's bound; a probe that takes longer failed */
    char *request;                /* the JSON-RPC request body sent */
    uint32_t unhealthy_threshold; /* consecutive failed probes that make an endpoint unhealthy */
    uint32_t healthy_threshold;   /* consecutive passed probes that make it healthy again */
    uint32_t max_block_lag;       /* blocks behind the service's head before an endpoint is lagging; 0 = heads not compared */
} cfg_health_check_t;

/* Passive outlier ejection: failures of real traffic take an endpoint out of rotation. */
typedef struct st_cfg_failure_rate_t {
    uint64_t _set;
    uint32_t threshold;    /* % of failed attempts in the window that ejects; 0 = off */
    uint32_t min_requests; /* attempts in the window before the rate is judged */
    uint64_t window_ms;    /* the sliding window */
} cfg_failure_rate_t;

typedef struct st_cfg_outlier_t {
    uint64_t _set;
    uint32_t consecutive_failures;   /* failed attempts in a row that eject; 0 = off */
    cfg_failure_rate_t failure_rate; /* failure rate over a window that ejects */
    uint64_t base_ejection_time_ms;  /* an ejection lasts this x times ejected ... */
    uint64_t max_ejection_time_ms;   /* ... never more than this */
    uint32_t max_ejection_percent;   /* at most this % of a service's endpoints are ejected at once (always one left) */
} cfg_outlier_t;

/* What the response cache does with a JSON-RPC method (the built-in table, schema/cfg_rpcmethods.h, and
 * an operator's override). */
typedef enum en_cfg_cache_class_t {
    CFG_CACHE_NEVER = 0, /* never cached nor coalesced: writes, filters, subscriptions, anything unknown */
    CFG_CACHE_STATIC,    /* the same answer for ever (eth_chainId): ttl.final */
    CFG_CACHE_REALTIME,  /* follows the head (eth_blockNumber): ttl.realtime */
    CFG_CACHE_BY_BLOCK,  /* names a block: final, unfinal or (a tag, no block) realtime */
    CFG_CACHE_BY_HASH,   /* names a hash: final when the answer's own block is */
} cfg_cache_class_t;

/* An operator's override of one method (the key of `cache.methods`). `off` in the document is
 * {enabled: false}, `on` is {enabled: true}. */
typedef struct st_cfg_cache_method_t {
    uint64_t _set;
    char *method;    /* the JSON-RPC method name (the map's key) */
    int enabled;     /* false: never cached nor coalesced */
    uint64_t ttl_ms; /* when set (_set bit of ttl): the ttl of every answer of this method, whatever its finality */
    int cls;         /* when set: cfg_cache_class_t CFG_CACHE_STATIC, _REALTIME or _NEVER, for a method the table
                      * does not know or to treat one otherwise */
} cfg_cache_method_t;
/* cfg_cache_method_t._set bits of its optional keys: `_set & CFG_CACHE_METHOD_HAS_TTL` = the override gives
 * a ttl. ("off" in the document gives neither.) */
#define CFG_CACHE_METHOD_HAS_TTL (1ull << 1)
#define CFG_CACHE_METHOD_HAS_CLASS (1ull << 2)

/* Time to live per finality; 0 = until evicted. */
typedef struct st_cfg_cache_ttl_t {
    uint64_t _set;
    uint64_t final_ms;    /* static answers and blocks at or below head - finality_depth */
    uint64_t unfinal_ms;  /* numbered blocks above that line (or any when the head is unknown) */
    uint64_t realtime_ms; /* block tags, no block, realtime methods */
} cfg_cache_ttl_t;

typedef struct st_cfg_cache_t {
    uint64_t _set;
    int enabled;                         /* answers of this service are cached */
    uint32_t finality_depth;             /* blocks behind the service's head that count as final */
    cfg_cache_ttl_t ttl;                 /* key by key from defaults */
    CFG_VEC(cfg_cache_method_t) methods; /* the service's own map when it gives one, else defaults' (whole) */
    int coalesce;                        /* optional: identical requests in flight share one upstream request */
    uint32_t max_followers;              /* requests one in-flight request may answer; more go upstream alone */
    /* derived, not part of the document: */
    int coalesce_on; /* `coalesce` when set, else `enabled` */
} cfg_cache_t;

/* The response cache's process-wide bounds. */
typedef struct st_cfg_cache_global_t {
    uint64_t _set;
    uint64_t max_bytes; /* one budget for every service and worker (LRU beyond); 0 = nothing is stored */
    uint64_t max_entry; /* larger answers are relayed, never stored */
} cfg_cache_global_t;

/* WebSocket relay of a service (GET /v1/<id> with Upgrade: websocket to endpoints with ws_url). */
typedef struct st_cfg_websocket_t {
    uint64_t _set;
    uint32_t max_connections;  /* open relayed WebSockets of the service, whole process; beyond: 503 */
    uint64_t idle_timeout_ms;  /* no frame either way this long: 1001 close both ways */
    uint64_t max_message;      /* largest message relayed either way; larger: 1009 close */
    uint64_t drain_timeout_ms; /* an endpoint removed from the config keeps its sockets this long, then 1001 */
} cfg_websocket_t;

typedef struct st_cfg_policy_t {
    uint64_t _set;
    cfg_pool_t pool;
    cfg_timeouts_t timeouts;
    cfg_service_limiter_t limiter;
    cfg_cors_t cors;
    cfg_retry_t retry;
    cfg_hedge_t hedge;
    CFG_VEC(cfg_rpc_error_t) rpc_errors;
    cfg_health_check_t health_check;
    cfg_outlier_t outlier;
    cfg_cache_t cache;
    cfg_websocket_t websocket;
} cfg_policy_t;

/* Client-side TLS toward an https endpoint. */
typedef struct st_cfg_upstream_tls_t {
    uint64_t _set;
    char *ca_file;     /* PEM CA bundle; NULL = the system's default store */
    char *server_name; /* SNI and the name verified; NULL = the URL's host */
    int verify;        /* verify the peer certificate (default true) */
} cfg_upstream_tls_t;

/* One extra request header sent to an endpoint (a secret, like the URL). */
typedef struct st_cfg_header_t {
    char *name;  /* an HTTP token; never a framing or hop-by-hop header */
    char *value; /* no CR, LF or NUL */
} cfg_header_t;

typedef struct st_cfg_endpoint_t {
    uint64_t _set;
    char *url;                     /* as written: http://[user:pass@]host:port/path or https://... */
    char *ws_url;                  /* as written: ws://[user:pass@]host:port/path or wss://...; NULL = no WebSocket relay */
    char *name;                    /* as written; NULL = derived (see label) */
    CFG_VEC(cfg_header_t) headers; /* sent with every request to this endpoint, in document order */
    int has_tls;                   /* the `tls` key was present */
    cfg_upstream_tls_t tls;        /* valid when has_tls (defaults apply otherwise) */

    /* HTTP/2 overrides of the service's pool (has_protocol is derived by the decoder) */
    int protocol;                    /* cfg_protocol_t, when has_protocol */
    int has_protocol;                /* the endpoint sets its own protocol (else the service's pool.protocol) */
    uint32_t max_concurrent_streams; /* 0 = the service's pool.max_concurrent_streams */

    /* derived by the decoder, not part of the document: */
    int is_https;   /* scheme is https */
    char *host;     /* host without brackets */
    uint16_t port;  /* explicit port, or 80 / 443 */
    char *path;     /* path + query, "/" when empty */
    char *userinfo; /* "user:pass" from the URL, percent-decoded; NULL when none */
    /* what metrics, stats, logs and errors call this endpoint, never the URL (which may hold a key):
     * `name`, or "host:port" made unique within the service with "#2", "#3"... */
    char *label;
    /* derived from ws_url when set (like the members above from url): */
    int ws_is_tls;     /* wss:// */
    char *ws_host;     /* host without brackets */
    uint16_t ws_port;  /* explicit port, or 80 / 443 */
    char *ws_path;     /* path + query, "/" when empty */
    char *ws_userinfo; /* "user:pass", percent-decoded; NULL when none */
} cfg_endpoint_t;

typedef struct st_cfg_service_t {
    uint64_t _set;
    char *id;                            /* [A-Za-z0-9_.-]{1,64}, unique */
    CFG_VEC(cfg_endpoint_t) endpoints;   /* at least one */
    cfg_pool_t pool;                     /* effective: defaults.pool + overrides */
    cfg_timeouts_t timeouts;             /* effective: defaults.timeouts + overrides */
    cfg_service_limiter_t limiter;       /* effective: defaults.limiter + overrides */
    cfg_cors_t cors;                     /* effective: defaults.cors + overrides */
    cfg_retry_t retry;                   /* effective: defaults.retry + overrides (backoff, budget: key by key too) */
    cfg_hedge_t hedge;                   /* effective: defaults.hedge + overrides */
    CFG_VEC(cfg_rpc_error_t) rpc_errors; /* the service's own list when it gives one, else defaults.rpc_errors */
    cfg_health_check_t health_check;     /* effective: defaults.health_check + overrides */
    cfg_outlier_t outlier;               /* effective: defaults.outlier + overrides (failure_rate key by key too) */
    cfg_cache_t cache;                   /* effective: defaults.cache + overrides (ttl key by key, methods whole) */
    cfg_websocket_t websocket;           /* effective: defaults.websocket + overrides */
} cfg_service_t;

typedef struct st_cfg_control_plane_t {
    uint64_t _set;
    char *url;                      /* control plane base URL */
    char *token_file;               /* bearer token file; NULL = no token */
    char *id;                       /* this dataplane's id */
    char *state_dir;                /* last accepted config is kept here */
    uint64_t poll_wait_ms;          /* long-poll wait asked of the control plane */
    uint64_t heartbeat_interval_ms; /* status report period */
    CFG_VEC(cfg_header_t) labels;   /* name -> value, reported to the control plane (rollout canary selection) */
} cfg_control_plane_t;

typedef struct st_cfg_t {
    uint64_t _set;
    /* node-local: from the dataplane's own file only */
    CFG_VEC(cfg_listen_t) listen;
    cfg_admin_t admin;
    uint32_t threads; /* 0 = one worker per CPU */
    int has_control_plane;
    cfg_control_plane_t control_plane; /* valid when has_control_plane */
    /* fleet: what a control plane stores and pushes */
    cfg_log_t log;
    cfg_limits_t limits;
    cfg_global_pool_t pool;
    cfg_limiter_t limiter;
    cfg_buffers_t buffers;
    cfg_cache_global_t cache;
    cfg_policy_t defaults;
    CFG_VEC(cfg_service_t) services;
} cfg_t;

/* Which part of the document is allowed / emitted. */
typedef enum en_cfg_scope_t {
    CFG_SCOPE_FULL = 0, /* a dataplane's own file: node-local and fleet settings */
    CFG_SCOPE_FLEET,    /* a control plane's document: node-local keys are errors */
} cfg_scope_t;

typedef enum en_cfg_format_t {
    CFG_FORMAT_AUTO = 0, /* JSON when the first non-blank byte is '{', else YAML */
    CFG_FORMAT_JSON,
    CFG_FORMAT_YAML,
} cfg_format_t;

/* Bounds on outside input (billion laughs, deep nesting, huge files). */
#define CFG_MAX_DOCUMENT_SIZE (4u * 1024 * 1024)
#define CFG_MAX_DEPTH 32
#define CFG_MAX_NODES 200000 /* nodes after alias expansion */

/* Every error of a document, each "path: rule broken" (or "line L, column C: ..." for syntax). */
typedef struct st_cfg_errors_t {
    char **entries;
    size_t size;
    size_t _capacity;
} cfg_errors_t;

void cfg_errors_init(cfg_errors_t *errs);
void cfg_errors_dispose(cfg_errors_t *errs);
/* Appends one error; printf-style. Never fails (a message that cannot be stored is dropped). */
void cfg_errors_add(cfg_errors_t *errs, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* All errors joined by "\n"; caller frees. "" when there are none. */
char *cfg_errors_join(const cfg_errors_t *errs);
/* The errors as a JSON array of strings (new reference). */
json_t *cfg_errors_to_json(const cfg_errors_t *errs);

/* --- parsing ------------------------------------------------------------------------------ */

/* Parses YAML or JSON text into a jansson tree, bounded by the limits above. YAML plain scalars
 * become integers, reals, booleans (true/false) or null (null, ~, empty) as YAML 1.2's core schema
 * says; quoted ones stay strings; duplicate keys are errors. Returns a new reference, or NULL with
 * at least one error added. */
json_t *cfg_tree_parse(const char *text, size_t len, cfg_format_t format, cfg_errors_t *errs);

/* Decodes a tree into a new cfg_t: defaults, bounds, cross-field rules. Returns NULL with every
 * error added when the document is invalid. Borrows `tree`. */
cfg_t *cfg_decode(json_t *tree, cfg_scope_t scope, cfg_errors_t *errs);

/* cfg_tree_parse + cfg_decode. */
cfg_t *cfg_parse(const char *text, size_t len, cfg_format_t format, cfg_scope_t scope, cfg_errors_t *errs);

/* Reads a whole file of at most `max` bytes into a NUL-terminated buffer (caller frees); *len gets
 * its length when len is not NULL. NULL with errno set when it cannot (EFBIG: larger than max). */
char *cfg_read_file(const char *path, size_t max, size_t *len);

/* Reads and parses a file (format from the content). Errors name the file when it cannot be read.
 * In CFG_SCOPE_FULL (a dataplane's own file), relative file paths (tls files, token_file, state_dir)
 * become absolute, relative to the file's directory. */
cfg_t *cfg_load_file(const char *path, cfg_scope_t scope, cfg_errors_t *errs);

/* A document with every default and no services (valid only as a starting point). */
cfg_t *cfg_create_default(void);

void cfg_destroy(cfg_t *cfg);

/* A deep copy; NULL only when out of memory. */
cfg_t *cfg_dup(const cfg_t *cfg);

/* --- emission ----------------------------------------------------------------------------- */

/* The document as a jansson tree with defaults filled in (services: only their overrides).
 * FLEET scope leaves the node-local keys out. New reference. */
json_t *cfg_to_json(const cfg_t *cfg, cfg_scope_t scope);

/* Canonical form: compact JSON with sorted keys (NUL-terminated; caller frees). */
char *cfg_canonical(const cfg_t *cfg, cfg_scope_t scope);

/* SHA-256 of the canonical form, as 64 lowercase hex digits + NUL. */
void cfg_hash(const cfg_t *cfg, cfg_scope_t scope, char out[65]);

/* Any jansson tree as block YAML (caller frees). Strings that YAML would read as something else
 * are quoted, so cfg_tree_parse(cfg_json_to_yaml(t)) == t. */
char *cfg_json_to_yaml(const json_t *tree);

/* Any jansson tree in canonical form (compact, sorted keys). Caller frees. */
char *cfg_json_canonical(const json_t *tree);

/* Formats for durations and sizes as the canonical form writes them ("90s", "250ms", "64KiB"). */
void cfg_format_duration(uint64_t ms, char *buf, size_t len);
void cfg_format_size(uint64_t bytes, char *buf, size_t len);
/* Parses "250ms" / "5s" / "2m" / "1h" (and "1m30s"). Returns 0, or -1 with *err set. */
int cfg_parse_duration(const char *s, uint64_t *ms, const char **err);
/* Parses "512", "512B", "64KiB", "1MiB", "1GiB". Returns 0, or -1 with *err set. */
int cfg_parse_size(const char *s, uint64_t *bytes, const char **err);

/* --- documents as a whole ----------------------------------------------------------------- */

/* Node-local settings from `local`, fleet settings from `fleet`: what a managed dataplane runs.
 * Returns a new cfg_t, or NULL with errors (e.g. the result fails a cross-field rule). */
cfg_t *cfg_merge_local(const cfg_t *local, const cfg_t *fleet, cfg_errors_t *errs);

/* Paths of restart-only settings that differ between two documents (each added to `paths`).
 * Returns how many. */
size_t cfg_restart_changes(const cfg_t *before, const cfg_t *after, cfg_errors_t *paths);

/* Whether the setting at a JSON Pointer (e.g. "/services/0/pool/max_conns_per_host") is node-local
 * or restart-only. Unknown paths: 0. */
int cfg_path_is_restart_only(const char *pointer);

/* --- secrets ----------------------------------------------------------------------------- */

/* The text that stands for a secret in every output a viewer (or a metric, a log) may see. */
#define CFG_REDACTED "<redacted>"

/* A copy of an endpoint URL with its userinfo, path and query each replaced by CFG_REDACTED
 * ("https://<redacted>@host:8545/<redacted>?<redacted>"; an empty or bare "/" path stays). Text that
 * is not an http(s) or ws(s) URL is redacted whole. Caller frees; NULL only when out of memory. */
char *cfg_redact_url(const char *url);

/* A copy of a document tree (fleet or full) with
 * every services[].endpoints[].url and ws_url redacted as above and every endpoint header value replaced by
 * CFG_REDACTED. What it does not recognise is copied as it is. New reference; borrows `doc`. */
json_t *cfg_redact(const json_t *doc);

/* --- JSON merge patch (RFC 7386), JSON Patch (RFC 6902) ------------------------------------ */

/* Returns a new tree: `target` with `patch` merged in. Borrows both. */
json_t *cfg_merge_patch(const json_t *target, const json_t *patch);

/* The JSON Patch (array of operations) that turns `from` into `to`. Borrows both. Arrays are
 * compared element-wise by index; a length change adds or removes trailing elements. */
json_t *cfg_json_diff(const json_t *from, const json_t *to);

/* Applies a JSON Patch to a copy of `doc`. Returns the new tree, or NULL with *err set (a static
 * message) when an operation fails; the whole patch then has no effect. */
json_t *cfg_json_patch_apply(const json_t *doc, const json_t *patch, const char **err);

/* --- the table, for docs and tools -------------------------------------------------------- */

/* Writes the config reference (docs/config.md) as Markdown, generated from the table. */
char *cfg_reference_markdown(void);

/* --- readable diff (pathwayctl diff, the API's diff) ---------------------------------------- */

typedef enum en_cfg_change_kind_t {
    CFG_CHANGE_ADD = '+',
    CFG_CHANGE_REMOVE = '-',
    CFG_CHANGE_REPLACE = '~',
} cfg_change_kind_t;

typedef struct st_cfg_change_t {
    cfg_change_kind_t kind;
    char *path;     /* in `set` syntax: "services.eth.pool.max_conns_per_host" */
    json_t *before; /* NULL for ADD */
    json_t *after;  /* NULL for REMOVE */
    char *note;     /* NULL, or what the change means beyond its values: "was inherited from defaults" */
} cfg_change_t;

typedef struct st_cfg_changes_t {
    cfg_change_t *entries;
    size_t size;
} cfg_changes_t;

/* The changes from `a` to `b` (borrowed), keyed the way `set` addresses them: list items that are
 * objects with a string `id` are matched by id (so removing a service is one change, not a shift
 * of every later one), other lists by index. Sorted by path within each object. Returns 0, or -1
 * when out of memory. cfg_changes_dispose frees.
 *
 * Inheritance is spelled out: a service's own `pool.max_idle_per_host` added or removed is a change
 * from or to the value it inherited from `defaults` (built-in defaults where the document has
 * none): "~ services.eth.pool.max_idle_per_host: 25 -> 5" with a note; a change of a `defaults` key
 * a service section inherits notes the services it reaches. */
int cfg_changes(const json_t *a, const json_t *b, cfg_changes_t *out);
void cfg_changes_dispose(cfg_changes_t *changes);
/* The changes as JSON: [{op: add|remove|replace, path, from?, to?, note?}]. New reference, NULL
 * when out of memory. */
json_t *cfg_changes_json(const cfg_changes_t *changes);

/* A path segment in `set` syntax: "eth", or "[eth.main]" when the name holds '.', '[' or ']'.
 * Appends to path (a malloc'd string, replaced); returns -1 when out of memory. */
int cfg_path_append(char **path, const char *segment);

#ifdef __cplusplus
}
#endif

#endif
