/*
 * THE table: every field of the config document, one row each. Change a default, a bound or a
 * doc line here and parsing, validation, emission, the docs and the tests all follow.
 */
#include "cfg_internal.h"
#include <arpa/inet.h>
#include <assert.h>
#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define KiB (1ull << 10)
#define MiB (1ull << 20)
#define GiB (1ull << 30)
#define SEC 1000ull
#define MIN (60 * SEC)
#define HOUR (60 * MIN)

static size_t endpoint_protocol_row(void);

static void endpoint_finish(void *obj, const char *path, cfg_scope_t scope, cfg_errors_t *errs)
{
    cfg_endpoint_t *ep = obj;
    ep->has_protocol = cfg_has(ep, endpoint_protocol_row());
    if (ep->url == NULL)
        return; /* required: already reported */
    const char *err = cfg_parse_endpoint_url(ep);
    if (err != NULL) {
        cfg_errors_add(errs, "%s.url: %s", path, err);
        return;
    }
    if (ep->ws_url != NULL && (err = cfg_parse_endpoint_ws_url(ep)) != NULL)
        cfg_errors_add(errs, "%s.ws_url: %s", path, err);
    if (ep->has_tls && !ep->is_https && !ep->ws_is_tls)
        cfg_errors_add(errs, "%s.tls: only https endpoints (or a wss ws_url) take tls settings", path);
}

static int endpoint_dup(void *dst, const void *src)
{
    cfg_endpoint_t *d = dst;
    const cfg_endpoint_t *s = src;
    d->host = s->host != NULL ? strdup(s->host) : NULL;
    d->path = s->path != NULL ? strdup(s->path) : NULL;
    d->userinfo = s->userinfo != NULL ? strdup(s->userinfo) : NULL;
    d->label = s->label != NULL ? strdup(s->label) : NULL;
    d->ws_host = s->ws_host != NULL ? strdup(s->ws_host) : NULL;
    d->ws_path = s->ws_path != NULL ? strdup(s->ws_path) : NULL;
    d->ws_userinfo = s->ws_userinfo != NULL ? strdup(s->ws_userinfo) : NULL;
    return (s->host != NULL && d->host == NULL) || (s->path != NULL && d->path == NULL) ||
                   (s->userinfo != NULL && d->userinfo == NULL) || (s->label != NULL && d->label == NULL) ||
                   (s->ws_host != NULL && d->ws_host == NULL) || (s->ws_path != NULL && d->ws_path == NULL) ||
                   (s->ws_userinfo != NULL && d->ws_userinfo == NULL)
               ? -1
               : 0;
}

static void endpoint_dispose(void *obj)
{
    cfg_endpoint_t *ep = obj;
    free(ep->host);
    free(ep->path);
    free(ep->userinfo);
    free(ep->label);
    free(ep->ws_host);
    free(ep->ws_path);
    free(ep->ws_userinfo);
}

static int label_taken(const cfg_service_t *svc, const char *label)
{
    for (size_t i = 0; i < svc->endpoints.size; i++)
        if (svc->endpoints.entries[i].label != NULL && strcmp(svc->endpoints.entries[i].label, label) == 0)
            return 1;
    return 0;
}

/* Every endpoint's label: its name, else "host:port", then "host:port#2"... in document order. */
static void name_endpoints(cfg_service_t *svc, const char *path, cfg_errors_t *errs)
{
    for (size_t i = 0; i < svc->endpoints.size; i++) {
        cfg_endpoint_t *ep = &svc->endpoints.entries[i];
        if (ep->name == NULL)
            continue;
        if (label_taken(svc, ep->name)) {
            cfg_errors_add(errs, "%s.endpoints[%zu].name: '%s' names another endpoint of this service too", path, i, ep->name);
            continue;
        }
        if ((ep->label = strdup(ep->name)) == NULL)
            cfg_errors_add(errs, "out of memory");
    }
    for (size_t i = 0; i < svc->endpoints.size; i++) {
        cfg_endpoint_t *ep = &svc->endpoints.entries[i];
        if (ep->label != NULL || ep->host == NULL)
            continue;
        char base[300], label[320];
        snprintf(base, sizeof(base), strchr(ep->host, ':') != NULL ? "[%s]:%u" : "%s:%u", ep->host, (unsigned)ep->port);
        snprintf(label, sizeof(label), "%s", base);
        for (unsigned k = 2; label_taken(svc, label); k++)
            snprintf(label, sizeof(label), "%s#%u", base, k);
        if ((ep->label = strdup(label)) == NULL)
            cfg_errors_add(errs, "out of memory");
    }
}

static void service_finish(void *obj, const char *path, cfg_scope_t scope, cfg_errors_t *errs)
{
    cfg_service_t *svc = obj;
    /* the same upstream twice would double its share of traffic by accident */
    for (size_t i = 0; i < svc->endpoints.size; i++) {
        cfg_endpoint_t *a = &svc->endpoints.entries[i];
        for (size_t j = 0; a->host != NULL && j < i; j++) {
            cfg_endpoint_t *b = &svc->endpoints.entries[j];
            if (b->host != NULL && a->is_https == b->is_https && a->port == b->port && strcmp(a->host, b->host) == 0 &&
                strcmp(a->path, b->path) == 0) {
                /* the URL itself may hold a key: name the entries, not the URL */
                cfg_errors_add(errs, "%s.endpoints[%zu].url: the same upstream as endpoints[%zu]", path, i, j);
                break;
            }
        }
    }
    name_endpoints(svc, path, errs);
}

static void root_finish(void *obj, const char *path, cfg_scope_t scope, cfg_errors_t *errs);

/* --- the rows ----------------------------------------------------------------------------- */

#define ROW(st, member, ...)                                                                                                       \
    {                                                                                                                              \
        .offset = offsetof(st, member), __VA_ARGS__                                                                                \
    }
#define N(rows) (sizeof(rows) / sizeof(rows[0]))

static const char *const log_levels_[] = {"debug", "info", "warn", "error", NULL};

static const cfg_field_t listen_tls_fields_[] = {
    ROW(cfg_listen_tls_t, certificate, .name = "certificate", .type = CFG_T_STRING, .flags = CFG_F_REQUIRED | CFG_F_PATH,
        .doc = "PEM certificate chain file"),
    ROW(cfg_listen_tls_t, key, .name = "key", .type = CFG_T_STRING, .flags = CFG_F_REQUIRED | CFG_F_PATH,
        .doc = "PEM private key file"),
};
static const cfg_struct_t listen_tls_struct_ = {sizeof(cfg_listen_tls_t), listen_tls_fields_, N(listen_tls_fields_)};

static const cfg_field_t listen_fields_[] = {
    ROW(cfg_listen_t, address, .name = "address", .type = CFG_T_STRING, .flags = CFG_F_REQUIRED, .check = cfg_check_address,
        .doc = "host:port to accept HTTP/1.1 and h2c (or https and h2 with tls) on"),
    ROW(cfg_listen_t, tls, .name = "tls", .type = CFG_T_STRUCT, .flags = CFG_F_OPTIONAL, .sub = &listen_tls_struct_,
        .has_offset = offsetof(cfg_listen_t, has_tls), .doc = "serve https (HTTP/2 through ALPN) with this certificate"),
    ROW(cfg_listen_t, http2, .name = "http2", .type = CFG_T_BOOL, .def = "true",
        .doc = "speak HTTP/2 (h2c, or h2 through ALPN); false = HTTP/1.1 only, for untrusted clients"),
};
static const cfg_struct_t listen_struct_ = {sizeof(cfg_listen_t), listen_fields_, N(listen_fields_)};

static const cfg_field_t admin_fields_[] = {
    ROW(cfg_admin_t, address, .name = "address", .type = CFG_T_STRING, .def = "\"127.0.0.1:9901\"", .check = cfg_check_address,
        .doc = "admin listener: /healthz /ready /metrics /stats /config /reload /logging"),
    ROW(cfg_admin_t, token_file, .name = "token_file", .type = CFG_T_STRING, .flags = CFG_F_PATH,
        .doc = "file holding a bearer token every admin call but /healthz and /ready must carry; absent = none"),
};
static const cfg_struct_t admin_struct_ = {sizeof(cfg_admin_t), admin_fields_, N(admin_fields_)};

static const cfg_field_t log_fields_[] = {
    ROW(cfg_log_t, level, .name = "level", .type = CFG_T_ENUM, .def = "\"info\"", .names = log_levels_,
        .doc = "messages below this level are dropped before any formatting"),
    ROW(cfg_log_t, access_log, .name = "access_log", .type = CFG_T_BOOL, .def = "false", .doc = "one log line per request"),
};
static const cfg_struct_t log_struct_ = {sizeof(cfg_log_t), log_fields_, N(log_fields_)};

static const cfg_field_t limits_fields_[] = {
    ROW(cfg_limits_t, max_request_body, .name = "max_request_body", .type = CFG_T_SIZE, .def = "\"1MiB\"", .min = 1, .max = 1 * GiB,
        .doc = "larger request bodies are answered 413"),
    ROW(cfg_limits_t, max_response_body, .name = "max_response_body", .type = CFG_T_SIZE, .def = "\"100MiB\"", .min = 1,
        .max = 64 * GiB, .doc = "a larger upstream response is cut off and answered 502"),
};
static const cfg_struct_t limits_struct_ = {sizeof(cfg_limits_t), limits_fields_, N(limits_fields_)};

static const cfg_field_t global_pool_fields_[] = {
    ROW(cfg_global_pool_t, max_idle_total, .name = "max_idle_total", .type = CFG_T_UINT32, .def = "500", .min = 0, .max = 1000000,
        .doc = "idle upstream connections kept in the whole process"),
};
static const cfg_struct_t global_pool_struct_ = {sizeof(cfg_global_pool_t), global_pool_fields_, N(global_pool_fields_)};

static const cfg_field_t limiter_fields_[] = {
    ROW(cfg_limiter_t, max_concurrent, .name = "max_concurrent", .type = CFG_T_UINT32, .def = "100", .min = 1, .max = 1000000,
        .doc = "upstream requests in flight in the whole process"),
    ROW(cfg_limiter_t, max_queue, .name = "max_queue", .type = CFG_T_UINT32, .def = "1000", .min = 0, .max = 1000000,
        .doc = "requests that may wait for a slot; beyond: 503 with Retry-After"),
    ROW(cfg_limiter_t, queue_timeout_ms, .name = "queue_timeout", .type = CFG_T_DURATION, .def = "\"1s\"", .min = 1, .max = 5 * MIN,
        .doc = "a request that waited this long is answered 503"),
};
static const cfg_struct_t limiter_struct_ = {sizeof(cfg_limiter_t), limiter_fields_, N(limiter_fields_)};

static const cfg_field_t buffers_fields_[] = {
    ROW(cfg_buffers_t, size, .name = "size", .type = CFG_T_SIZE, .def = "\"64KiB\"", .min = 1 * KiB, .max = 16 * MiB,
        .doc = "size of one pooled response buffer"),
    ROW(cfg_buffers_t, max_retained, .name = "max_retained", .type = CFG_T_SIZE, .def = "\"1MiB\"", .min = 1 * KiB, .max = 1 * GiB,
        .doc = "a buffer that grew beyond this is freed instead of kept"),
};
static const cfg_struct_t buffers_struct_ = {sizeof(cfg_buffers_t), buffers_fields_, N(buffers_fields_)};

static const char *const upstream_protocols_[] = {"http1", "h2", "auto", NULL};

static const cfg_field_t pool_fields_[] = {
    ROW(cfg_pool_t, max_idle_per_host, .name = "max_idle_per_host", .type = CFG_T_UINT32, .def = "25", .min = 0, .max = 65535,
        .doc = "idle connections kept per endpoint"),
    ROW(cfg_pool_t, max_conns_per_host, .name = "max_conns_per_host", .type = CFG_T_UINT32, .def = "50", .min = 1, .max = 65535,
        .doc = "open connections per endpoint, busy and idle; requests beyond wait for one"),
    ROW(cfg_pool_t, idle_timeout_ms, .name = "idle_timeout", .type = CFG_T_DURATION, .def = "\"90s\"", .min = 100, .max = 24 * HOUR,
        .doc = "idle connections are closed after this"),
    ROW(cfg_pool_t, connect_timeout_ms, .name = "connect_timeout", .type = CFG_T_DURATION, .def = "\"5s\"", .min = 1,
        .max = 5 * MIN, .doc = "upstream connect (TCP and TLS); beyond: 502"),
    ROW(cfg_pool_t, protocol, .name = "protocol", .type = CFG_T_ENUM, .def = "\"http1\"", .names = upstream_protocols_,
        .doc = "HTTP version toward the upstream, for new connections: http1; h2 (http:// with prior knowledge, https:// "
               "requires ALPN h2); auto (https:// offers h2 and http/1.1 by ALPN, http:// means http1)"),
    ROW(cfg_pool_t, max_concurrent_streams, .name = "max_concurrent_streams", .type = CFG_T_UINT32, .def = "100", .min = 1,
        .max = 1000, .doc = "requests one HTTP/2 connection carries at once (also bounded by the upstream's own setting)"),
};
static const cfg_struct_t pool_struct_ = {sizeof(cfg_pool_t), pool_fields_, N(pool_fields_)};

static const cfg_field_t timeouts_fields_[] = {
    ROW(cfg_timeouts_t, request_ms, .name = "request", .type = CFG_T_DURATION, .def = "\"30s\"", .min = 1, .max = 1 * HOUR,
        .doc = "whole upstream exchange, from sending to the last response byte; beyond: 504"),
};
static const cfg_struct_t timeouts_struct_ = {sizeof(cfg_timeouts_t), timeouts_fields_, N(timeouts_fields_)};

static const cfg_field_t adaptive_fields_[] = {
    ROW(cfg_adaptive_t, enabled, .name = "enabled", .type = CFG_T_BOOL, .def = "false",
        .doc = "a limit on the service's upstream requests in flight that follows the upstream's latency (gradient); "
               "switching it applies without a restart"),
    ROW(cfg_adaptive_t, min_limit, .name = "min_limit", .type = CFG_T_UINT32, .def = "4", .min = 1, .max = 100000,
        .doc = "the adaptive limit never goes below this; at most initial_limit"),
    ROW(cfg_adaptive_t, max_limit, .name = "max_limit", .type = CFG_T_UINT32, .def = "1000", .min = 1, .max = 1000000,
        .doc = "the adaptive limit never goes above this (nor above max_concurrent when that is set); at least initial_limit"),
    ROW(cfg_adaptive_t, initial_limit, .name = "initial_limit", .type = CFG_T_UINT32, .def = "20", .min = 1, .max = 1000000,
        .doc = "where the limit starts, and starts again when switched on"),
    ROW(cfg_adaptive_t, tolerance, .name = "tolerance", .type = CFG_T_MILLI, .def = "1.5", .min = 1000, .max = 10000,
        .doc = "latency may grow to this many times the baseline before the limit shrinks"),
    ROW(cfg_adaptive_t, window_ms, .name = "window", .type = CFG_T_DURATION, .def = "\"1s\"", .min = 100, .max = 1 * MIN,
        .doc = "how often the limit is recomputed from the latencies seen since"),
    ROW(cfg_adaptive_t, smoothing, .name = "smoothing", .type = CFG_T_MILLI, .def = "0.2", .min = 1, .max = 1000,
        .doc = "how fast the limit grows while latency is within tolerance: by this fraction of itself per window (or by its "
               "square root when larger); cuts apply at once"),
};
static const cfg_struct_t adaptive_struct_ = {sizeof(cfg_adaptive_t), adaptive_fields_, N(adaptive_fields_)};

static const cfg_field_t service_limiter_fields_[] = {
    ROW(cfg_service_limiter_t, max_concurrent, .name = "max_concurrent", .type = CFG_T_UINT32, .def = "0", .min = 0, .max = 1000000,
        .doc = "upstream requests in flight for one service; 0 = only the process-wide limit (and the adaptive one when on)"),
    ROW(cfg_service_limiter_t, adaptive, .name = "adaptive", .type = CFG_T_STRUCT, .sub = &adaptive_struct_,
        .doc = "adaptive concurrency: the service's limit follows its upstream latency (key by key from defaults)"),
};
static const cfg_struct_t service_limiter_struct_ = {sizeof(cfg_service_limiter_t), service_limiter_fields_,
                                                     N(service_limiter_fields_)};

static const cfg_field_t cors_fields_[] = {
    ROW(cfg_cors_t, allow_origins, .name = "allow_origins", .type = CFG_T_STRLIST, .def = "[]", .min = 0, .max = 256,
        .check = cfg_check_origin,
        .doc = "browser origins allowed to call the service (https://app.example.com, or *); empty = CORS off"),
    ROW(cfg_cors_t, max_age_ms, .name = "max_age", .type = CFG_T_DURATION, .def = "\"10m\"", .min = 0, .max = 24 * HOUR,
        .doc = "how long a browser may cache a preflight answer (Access-Control-Max-Age)"),
};
static const cfg_struct_t cors_struct_ = {sizeof(cfg_cors_t), cors_fields_, N(cors_fields_)};

/* in the order of cfg_retry_on_t */
static const char *const retry_on_names_[] = {
    "connect_failure",  "reset", "timeout", "http_5xx", "http_429", "rpc_rate_limited", "rpc_missing_data",
    "rpc_server_error", NULL};

static const cfg_field_t backoff_fields_[] = {
    ROW(cfg_backoff_t, base_ms, .name = "base", .type = CFG_T_DURATION, .def = "\"25ms\"", .min = 0, .max = 1 * MIN,
        .doc = "the wait before the first retry is random in [0, base]; it doubles with each retry (full jitter); 0 = no wait"),
    ROW(cfg_backoff_t, max_ms, .name = "max", .type = CFG_T_DURATION, .def = "\"250ms\"", .min = 0, .max = 1 * MIN,
        .doc = "the doubling wait bound stops growing here; at least base"),
};
static const cfg_struct_t backoff_struct_ = {sizeof(cfg_backoff_t), backoff_fields_, N(backoff_fields_)};

static const cfg_field_t retry_budget_fields_[] = {
    ROW(cfg_retry_budget_t, percent, .name = "percent", .type = CFG_T_UINT32, .def = "20", .min = 0, .max = 100,
        .doc = "retries and hedges in flight may be at most this % of the service's active requests; beyond, the first "
               "failure is returned"),
    ROW(cfg_retry_budget_t, min_concurrent, .name = "min_concurrent", .type = CFG_T_UINT32, .def = "3", .min = 0, .max = 100000,
        .doc = "retries and hedges in flight always allowed, however few requests are active"),
};
static const cfg_struct_t retry_budget_struct_ = {sizeof(cfg_retry_budget_t), retry_budget_fields_, N(retry_budget_fields_)};

static const cfg_field_t retry_fields_[] = {
    ROW(cfg_retry_t, max_attempts, .name = "max_attempts", .type = CFG_T_UINT32, .def = "2", .min = 1, .max = 10,
        .doc = "tries of one request in all, each on an endpoint not tried yet when there is one; 1 = no retries"),
    ROW(cfg_retry_t, per_try_timeout_ms, .name = "per_try_timeout", .type = CFG_T_DURATION, .def = "\"0s\"", .min = 0,
        .max = 1 * HOUR,
        .doc = "bound on one attempt, after which it may be retried (retry_on: timeout); 0 = only timeouts.request"),
    ROW(cfg_retry_t, retry_on, .name = "retry_on", .type = CFG_T_ENUMSET, .names = retry_on_names_,
        .def = "[\"connect_failure\",\"reset\",\"timeout\",\"http_5xx\",\"http_429\",\"rpc_rate_limited\",\"rpc_missing_data\"]",
        .doc = "failures that are retried; never once a response byte went to the client"),
    ROW(cfg_retry_t, backoff, .name = "backoff", .type = CFG_T_STRUCT, .sub = &backoff_struct_,
        .doc = "wait between attempts (random, doubling: full jitter)"),
    ROW(cfg_retry_t, budget, .name = "budget", .type = CFG_T_STRUCT, .sub = &retry_budget_struct_,
        .doc = "one bound per service on retries and hedges together"),
    ROW(cfg_retry_t, unsafe_methods, .name = "unsafe_methods", .type = CFG_T_STRLIST, .min = 0, .max = 256,
        .check = cfg_check_method,
        .def = "[\"eth_sendRawTransaction\",\"eth_sendTransaction\",\"eth_submitWork\",\"eth_submitHashrate\",\"eth_newFilter\","
               "\"eth_newBlockFilter\",\"eth_newPendingTransactionFilter\"]",
        .doc = "methods retried only when the request surely never arrived (connect failed), and never hedged; a batch "
               "holding one counts as one"),
};
static const cfg_struct_t retry_struct_ = {sizeof(cfg_retry_t), retry_fields_, N(retry_fields_)};

static void hedge_derive(void *obj)
{
    cfg_hedge_t *h = obj;
    h->delay_ms = 0;
    h->delay_percentile = 0;
    if (h->delay == NULL || cfg_parse_hedge_delay(h->delay, &h->delay_ms, &h->delay_percentile) != 0)
        return;
    /* one canonical text per value ("1000ms" and "1s" hash alike) */
    char buf[32];
    if (h->delay_percentile != 0)
        snprintf(buf, sizeof(buf), "p%u", (unsigned)h->delay_percentile);
    else
        cfg_format_duration(h->delay_ms, buf, sizeof(buf));
    char *canon;
    if (strcmp(buf, h->delay) != 0 && (canon = strdup(buf)) != NULL) {
        free(h->delay);
        h->delay = canon;
    }
}

static const cfg_field_t hedge_fields_[] = {
    ROW(cfg_hedge_t, delay, .name = "delay", .type = CFG_T_STRING, .def = "\"0s\"", .check = cfg_check_hedge_delay,
        .doc = "start a second attempt on another endpoint when the first has not answered after this: 0s = off, a duration "
               "(20ms), or p50..p99 of the service's observed latency"),
    ROW(cfg_hedge_t, min_delay_ms, .name = "min_delay", .type = CFG_T_DURATION, .def = "\"50ms\"", .min = 0, .max = 1 * MIN,
        .doc = "a percentile delay is never shorter than this (a fixed delay is used as given)"),
    ROW(cfg_hedge_t, max_extra, .name = "max_extra", .type = CFG_T_UINT32, .def = "1", .min = 0, .max = 3,
        .doc = "hedged attempts one request may start; 0 = off"),
};
static const cfg_struct_t hedge_struct_ = {sizeof(cfg_hedge_t), hedge_fields_, N(hedge_fields_), NULL, NULL, NULL, hedge_derive};

static const char *const rpc_classes_[] = {"rate_limited", "missing_data", "server_error", "client_error", NULL};

static void rpc_error_finish(void *obj, const char *path, cfg_scope_t scope, cfg_errors_t *errs)
{
    enum { CODE_GIVEN = 1 << 0, MESSAGE_GIVEN = 1 << 1 }; /* `_set` bits: the first two rows below */
    cfg_rpc_error_t *e = obj;
    e->has_code = (e->_set & CODE_GIVEN) != 0;
    /* a message that was given but failed its check has its own error already */
    if (!(e->_set & (CODE_GIVEN | MESSAGE_GIVEN)))
        cfg_errors_add(errs, "%s: needs a code, a message or both to match", path);
}

static const cfg_field_t rpc_error_fields_[] = {
    ROW(cfg_rpc_error_t, code, .name = "code", .type = CFG_T_INT32,
        .doc = "JSON-RPC error.code to match (e.g. -32011); absent = any code"),
    ROW(cfg_rpc_error_t, message, .name = "message", .type = CFG_T_STRING, .check = cfg_check_rpc_message,
        .doc = "text to find in error.message, ignoring case; absent = any message"),
    ROW(cfg_rpc_error_t, rpc_class, .name = "class", .type = CFG_T_ENUM, .flags = CFG_F_REQUIRED, .names = rpc_classes_,
        .doc = "what a match means: rate_limited, missing_data and server_error may be retried (retry_on), client_error "
               "is returned as is"),
};
static const cfg_struct_t rpc_error_struct_ = {sizeof(cfg_rpc_error_t), rpc_error_fields_, N(rpc_error_fields_), rpc_error_finish};

static const cfg_field_t health_check_fields_[] = {
    ROW(cfg_health_check_t, interval_ms, .name = "interval", .type = CFG_T_DURATION, .def = "\"0s\"", .min = 0, .max = 1 * HOUR,
        .doc = "time between two probes of one endpoint (5s is a good start); 0 = no active checks (probes are requests: metered "
               "providers bill them)"),
    ROW(cfg_health_check_t, timeout_ms, .name = "timeout", .type = CFG_T_DURATION, .def = "\"2s\"", .min = 1, .max = 1 * MIN,
        .doc = "a probe that has not answered after this failed"),
    ROW(cfg_health_check_t, request, .name = "request", .type = CFG_T_STRING, .check = cfg_check_probe_request,
        .def = "\"{\\\"jsonrpc\\\":\\\"2.0\\\",\\\"id\\\":1,\\\"method\\\":\\\"eth_blockNumber\\\",\\\"params\\\":[]}\"",
        .doc = "the JSON-RPC request a probe sends; a probe passes on HTTP 200 with a JSON-RPC result, and a hex result is "
               "the endpoint's head block"),
    ROW(cfg_health_check_t, unhealthy_threshold, .name = "unhealthy_threshold", .type = CFG_T_UINT32, .def = "3", .min = 1,
        .max = 100, .doc = "failed probes in a row that take an endpoint out of rotation"),
    ROW(cfg_health_check_t, healthy_threshold, .name = "healthy_threshold", .type = CFG_T_UINT32, .def = "2", .min = 1, .max = 100,
        .doc = "passed probes in a row that bring an unhealthy endpoint back"),
    ROW(cfg_health_check_t, max_block_lag, .name = "max_block_lag", .type = CFG_T_UINT32, .def = "8", .min = 0, .max = 1000000,
        .doc = "an endpoint this many blocks behind the service's highest head is lagging: not chosen while another is not; "
               "0 = heads not compared"),
};
static const cfg_struct_t health_check_struct_ = {sizeof(cfg_health_check_t), health_check_fields_, N(health_check_fields_)};

static const cfg_field_t failure_rate_fields_[] = {
    ROW(cfg_failure_rate_t, threshold, .name = "threshold", .type = CFG_T_UINT32, .def = "50", .min = 0, .max = 100,
        .doc = "% of an endpoint's attempts in the window that failed, at or above which it is ejected; 0 = off"),
    ROW(cfg_failure_rate_t, min_requests, .name = "min_requests", .type = CFG_T_UINT32, .def = "20", .min = 1, .max = 1000000,
        .doc = "attempts the window must hold before its rate is judged"),
    ROW(cfg_failure_rate_t, window_ms, .name = "window", .type = CFG_T_DURATION, .def = "\"30s\"", .min = 1 * SEC, .max = 1 * HOUR,
        .doc = "how far back the rate looks (ten steps of a tenth each)"),
};
static const cfg_struct_t failure_rate_struct_ = {sizeof(cfg_failure_rate_t), failure_rate_fields_, N(failure_rate_fields_)};

static const cfg_field_t outlier_fields_[] = {
    ROW(cfg_outlier_t, consecutive_failures, .name = "consecutive_failures", .type = CFG_T_UINT32, .def = "5", .min = 0,
        .max = 1000, .doc = "failed attempts in a row that eject an endpoint; 0 = off"),
    ROW(cfg_outlier_t, failure_rate, .name = "failure_rate", .type = CFG_T_STRUCT, .sub = &failure_rate_struct_,
        .doc = "ejection by the share of failed attempts over a window"),
    ROW(cfg_outlier_t, base_ejection_time_ms, .name = "base_ejection_time", .type = CFG_T_DURATION, .def = "\"30s\"",
        .min = 1 * SEC, .max = 1 * HOUR, .doc = "an ejection lasts this times the endpoint's ejections so far"),
    ROW(cfg_outlier_t, max_ejection_time_ms, .name = "max_ejection_time", .type = CFG_T_DURATION, .def = "\"5m\"", .min = 1 * SEC,
        .max = 24 * HOUR, .doc = "an ejection never lasts longer than this; at least base_ejection_time"),
    ROW(cfg_outlier_t, max_ejection_percent, .name = "max_ejection_percent", .type = CFG_T_UINT32, .def = "50", .min = 0,
        .max = 100,
        .doc = "at most this % of a service's endpoints are ejected at once (at least one may be, one always stays); 0 = "
               "none is ever ejected"),
};
static const cfg_struct_t outlier_struct_ = {sizeof(cfg_outlier_t), outlier_fields_, N(outlier_fields_)};

#define CACHE_TTL_MAX (30 * 24 * HOUR)

static const cfg_field_t cache_ttl_fields_[] = {
    ROW(cfg_cache_ttl_t, final_ms, .name = "final", .type = CFG_T_DURATION, .def = "\"0s\"", .min = 0, .max = CACHE_TTL_MAX,
        .doc = "answers that cannot change: static methods, blocks at or below head - finality_depth; 0 = until evicted"),
    ROW(cfg_cache_ttl_t, unfinal_ms, .name = "unfinal", .type = CFG_T_DURATION, .def = "\"5s\"", .min = 0, .max = CACHE_TTL_MAX,
        .doc = "numbered blocks above the finality line (all of them while the head is unknown); 0 = until evicted"),
    ROW(cfg_cache_ttl_t, realtime_ms, .name = "realtime", .type = CFG_T_DURATION, .def = "\"1s\"", .min = 0, .max = CACHE_TTL_MAX,
        .doc = "answers that follow the head: block tags (latest, safe...), no block, realtime methods; 0 = until evicted"),
};
static const cfg_struct_t cache_ttl_struct_ = {sizeof(cfg_cache_ttl_t), cache_ttl_fields_, N(cache_ttl_fields_)};

/* in the order of cfg_cache_class_t; by_block and by_hash need the built-in table's knowledge of a
 * method's params, so an override cannot name them (the list ends before them) */
static const char *const cache_classes_[] = {"never", "static", "realtime", NULL};

/* "off" / "on": the whole override is {enabled: false} / {enabled: true} */
static json_t *cache_method_shorthand(const json_t *v)
{
    const char *s = json_string_value(v);
    if (s != NULL && strcmp(s, "off") == 0)
        return json_pack("{s:b}", "enabled", 0);
    if (s != NULL && strcmp(s, "on") == 0)
        return json_pack("{s:b}", "enabled", 1);
    return NULL;
}

/* the _set bits cfg.h names are these rows' indexes; the key row last, out of their way */
static const cfg_field_t cache_method_fields_[] = {
    ROW(cfg_cache_method_t, enabled, .name = "enabled", .type = CFG_T_BOOL, .def = "true",
        .doc = "false: the method's answers are never cached nor coalesced"),
    ROW(cfg_cache_method_t, ttl_ms, .name = "ttl", .type = CFG_T_DURATION, .min = 0, .max = CACHE_TTL_MAX,
        .doc = "the time to live of every answer of the method, whatever its finality; absent = by finality (ttl); 0 = "
               "until evicted"),
    ROW(cfg_cache_method_t, cls, .name = "class", .type = CFG_T_ENUM, .names = cache_classes_,
        .doc = "what the method's answers depend on, for a method the built-in table does not know or to treat one "
               "otherwise: never, static (ttl.final) or realtime (ttl.realtime); absent = the built-in table's"),
    ROW(cfg_cache_method_t, method, .name = "method", .type = CFG_T_STRING, .flags = CFG_F_KEY,
        .doc = "one method's override, named by the method as clients send it (eth_call)"),
};
static const cfg_struct_t cache_method_struct_ = {
    sizeof(cfg_cache_method_t), cache_method_fields_,          N(cache_method_fields_), NULL, NULL, NULL, NULL,
    cache_method_shorthand,     "\"off\", \"on\" or a mapping"};

static void cache_derive(void *obj);

static const cfg_field_t cache_fields_[] = {
    ROW(cfg_cache_t, enabled, .name = "enabled", .type = CFG_T_BOOL, .def = "false",
        .doc = "answers of the service's cacheable methods are kept (in the process-wide cache) and served again"),
    ROW(cfg_cache_t, finality_depth, .name = "finality_depth", .type = CFG_T_UINT32, .def = "64", .min = 0, .max = 1000000,
        .doc = "blocks behind the service's head (from active health checks) that count as final"),
    ROW(cfg_cache_t, ttl, .name = "ttl", .type = CFG_T_STRUCT, .sub = &cache_ttl_struct_,
        .doc = "how long an answer is served, by finality (key by key from defaults)"),
    ROW(cfg_cache_t, methods, .name = "methods", .type = CFG_T_STRUCTMAP, .def = "{}", .min = 0, .max = 1024,
        .check = cfg_check_method, .sub = &cache_method_struct_,
        .doc = "overrides of the built-in method table, by method name: \"off\" = {enabled: false}, \"on\" = "
               "{enabled: true}, or {enabled, ttl, class}; a service's map replaces defaults' whole"),
    ROW(cfg_cache_t, coalesce, .name = "coalesce", .type = CFG_T_BOOL,
        .doc = "identical cacheable requests in flight share one upstream request; absent = on when enabled is"),
    ROW(cfg_cache_t, max_followers, .name = "max_followers", .type = CFG_T_UINT32, .def = "1000", .min = 1, .max = 100000,
        .doc = "requests that may wait for one in-flight request; more go upstream on their own"),
};
static const cfg_struct_t cache_struct_ = {sizeof(cfg_cache_t), cache_fields_, N(cache_fields_), NULL, NULL, NULL, cache_derive};

static void cache_derive(void *obj)
{
    cfg_cache_t *c = obj;
    size_t coalesce = (size_t)(cfg_struct_find(&cache_struct_, "coalesce", strlen("coalesce")) - cache_fields_);
    c->coalesce_on = cfg_has(c, coalesce) ? c->coalesce : c->enabled;
}

static const cfg_field_t cache_global_fields_[] = {
    ROW(cfg_cache_global_t, max_bytes, .name = "max_bytes", .type = CFG_T_SIZE, .def = "\"64MiB\"", .min = 0, .max = 64 * GiB,
        .doc = "bytes of cached answers in the whole process, all services and workers (least recently used evicted "
               "beyond); 0 = nothing is stored"),
    ROW(cfg_cache_global_t, max_entry, .name = "max_entry", .type = CFG_T_SIZE, .def = "\"1MiB\"", .min = 64, .max = 1 * GiB,
        .doc = "a larger answer is relayed but never stored"),
};
static const cfg_struct_t cache_global_struct_ = {sizeof(cfg_cache_global_t), cache_global_fields_, N(cache_global_fields_)};

static const cfg_field_t websocket_fields_[] = {
    ROW(cfg_websocket_t, max_connections, .name = "max_connections", .type = CFG_T_UINT32, .def = "10000", .min = 0, .max = 1000000,
        .doc = "open relayed WebSockets of the service in the whole process; beyond: 503 before the handshake (0: every upgrade "
               "gets 503)"),
    ROW(cfg_websocket_t, idle_timeout_ms, .name = "idle_timeout", .type = CFG_T_DURATION, .def = "\"10m\"", .min = 1 * SEC,
        .max = 24 * HOUR, .doc = "no frame either way for this long: both sides get a 1001 close"),
    ROW(cfg_websocket_t, max_message, .name = "max_message", .type = CFG_T_SIZE, .def = "\"1MiB\"", .min = 125, .max = 64 * MiB,
        .doc = "largest message relayed either way; a larger one closes its sender with 1009 (and the other side with 1001)"),
    ROW(cfg_websocket_t, drain_timeout_ms, .name = "drain_timeout", .type = CFG_T_DURATION, .def = "\"30s\"", .min = 0,
        .max = 1 * HOUR,
        .doc = "an endpoint removed from the config keeps its open WebSockets this long, then closes them with 1001"),
};
static const cfg_struct_t websocket_struct_ = {sizeof(cfg_websocket_t), websocket_fields_, N(websocket_fields_)};

/* The policy sections: `defaults` holds them plainly, each service holds them as overrides. */
static const cfg_field_t policy_fields_[] = {
    ROW(cfg_policy_t, pool, .name = "pool", .type = CFG_T_STRUCT, .sub = &pool_struct_, .doc = "upstream connection pool"),
    ROW(cfg_policy_t, timeouts, .name = "timeouts", .type = CFG_T_STRUCT, .sub = &timeouts_struct_, .doc = "timeouts"),
    ROW(cfg_policy_t, limiter, .name = "limiter", .type = CFG_T_STRUCT, .sub = &service_limiter_struct_,
        .doc = "per-service concurrency limit"),
    ROW(cfg_policy_t, cors, .name = "cors", .type = CFG_T_STRUCT, .sub = &cors_struct_, .doc = "browser access (CORS)"),
    ROW(cfg_policy_t, retry, .name = "retry", .type = CFG_T_STRUCT, .sub = &retry_struct_,
        .doc = "retries of failed attempts on another endpoint"),
    ROW(cfg_policy_t, hedge, .name = "hedge", .type = CFG_T_STRUCT, .sub = &hedge_struct_,
        .doc = "a second attempt when the first is slow"),
    ROW(cfg_policy_t, rpc_errors, .name = "rpc_errors", .type = CFG_T_LIST, .def = "[]", .min = 0, .max = 64,
        .sub = &rpc_error_struct_,
        .doc = "additions to the built-in classes of upstream JSON-RPC errors (dataplane guide: Classifying upstream errors), "
               "checked first, in order"),
    ROW(cfg_policy_t, health_check, .name = "health_check", .type = CFG_T_STRUCT, .sub = &health_check_struct_,
        .doc = "active checks: a JSON-RPC probe of each endpoint, which also learns its head block"),
    ROW(cfg_policy_t, outlier, .name = "outlier", .type = CFG_T_STRUCT, .sub = &outlier_struct_,
        .doc = "passive ejection of endpoints that fail real traffic, and the breaker that lets them back"),
    ROW(cfg_policy_t, cache, .name = "cache", .type = CFG_T_STRUCT, .sub = &cache_struct_,
        .doc = "the response cache and request coalescing, by the finality of each answer"),
    ROW(cfg_policy_t, websocket, .name = "websocket", .type = CFG_T_STRUCT, .sub = &websocket_struct_,
        .doc = "the WebSocket relay: bounds of the connections a service relays to endpoints with ws_url"),
};
const cfg_struct_t cfg_policy_struct = {sizeof(cfg_policy_t), policy_fields_, N(policy_fields_)};

static const cfg_field_t upstream_tls_fields_[] = {
    ROW(cfg_upstream_tls_t, ca_file, .name = "ca_file", .type = CFG_T_STRING, .flags = CFG_F_PATH,
        .doc = "PEM CA bundle to verify the endpoint with; absent = the system's store"),
    ROW(cfg_upstream_tls_t, server_name, .name = "server_name", .type = CFG_T_STRING,
        .doc = "name sent as SNI and verified; absent = the URL's host"),
    ROW(cfg_upstream_tls_t, verify, .name = "verify", .type = CFG_T_BOOL, .def = "true",
        .doc = "verify the endpoint's certificate (turn off only for tests)"),
};
static const cfg_struct_t upstream_tls_struct_ = {sizeof(cfg_upstream_tls_t), upstream_tls_fields_, N(upstream_tls_fields_)};

static const cfg_field_t endpoint_fields_[] = {
    ROW(cfg_endpoint_t, url, .name = "url", .type = CFG_T_STRING, .flags = CFG_F_REQUIRED,
        .doc = "http://[user:pass@]host[:port][/path] or https://...; the path is where requests are sent; user:pass is sent "
               "as Basic authorization; shown redacted"),
    ROW(cfg_endpoint_t, ws_url, .name = "ws_url", .type = CFG_T_STRING,
        .doc = "ws://[user:pass@]host[:port][/path] or wss://...: where WebSocket upgrades to the service are relayed; absent = "
               "none to this endpoint; user:pass is sent as Basic authorization, tls and headers apply too; shown redacted"),
    ROW(cfg_endpoint_t, name, .name = "name", .type = CFG_T_STRING, .check = cfg_check_endpoint_name,
        .doc = "what metrics, stats and logs call the endpoint; absent = host:port (made unique with #2, #3)"),
    ROW(cfg_endpoint_t, headers, .name = "headers", .type = CFG_T_STRMAP, .min = 0, .max = 32, .check = cfg_check_header_name,
        .check_value = cfg_check_header_value, .doc = "request headers sent to this endpoint (e.g. an API key); shown redacted"),
    ROW(cfg_endpoint_t, tls, .name = "tls", .type = CFG_T_STRUCT, .flags = CFG_F_OPTIONAL, .sub = &upstream_tls_struct_,
        .has_offset = offsetof(cfg_endpoint_t, has_tls), .doc = "TLS settings of an https endpoint"),
    ROW(cfg_endpoint_t, protocol, .name = "protocol", .type = CFG_T_ENUM, .names = upstream_protocols_,
        .doc = "this endpoint's pool.protocol (http1, h2, auto); absent = the service's"),
    ROW(cfg_endpoint_t, max_concurrent_streams, .name = "max_concurrent_streams", .type = CFG_T_UINT32, .min = 1, .max = 1000,
        .doc = "this endpoint's pool.max_concurrent_streams; absent = the service's"),
};
/* The row of an endpoint's `protocol` (its `_set` bit says whether the endpoint overrides). */
static size_t endpoint_protocol_row(void)
{
    size_t i = 0;
    while (i + 1 < N(endpoint_fields_) && strcmp(endpoint_fields_[i].name, "protocol") != 0)
        ++i;
    return i;
}

static const cfg_struct_t endpoint_struct_ = {sizeof(cfg_endpoint_t), endpoint_fields_, N(endpoint_fields_),
                                              endpoint_finish,        endpoint_dup,     endpoint_dispose};

static const cfg_field_t service_fields_[] = {
    ROW(cfg_service_t, id, .name = "id", .type = CFG_T_STRING, .flags = CFG_F_REQUIRED, .check = cfg_check_service_id,
        .doc = "service id: POST /v1/<id>, or POST /v1 with Target-Service-Id: <id>"),
    ROW(cfg_service_t, endpoints, .name = "endpoints", .type = CFG_T_LIST, .flags = CFG_F_REQUIRED, .min = 1, .max = 1024,
        .sub = &endpoint_struct_, .doc = "upstream URLs; each request goes to the one with the fewest outstanding requests"),
    ROW(cfg_service_t, pool, .name = "pool", .type = CFG_T_STRUCT, .flags = CFG_F_INHERIT, .sub = &pool_struct_,
        .doc = "overrides of defaults.pool"),
    ROW(cfg_service_t, timeouts, .name = "timeouts", .type = CFG_T_STRUCT, .flags = CFG_F_INHERIT, .sub = &timeouts_struct_,
        .doc = "overrides of defaults.timeouts"),
    ROW(cfg_service_t, limiter, .name = "limiter", .type = CFG_T_STRUCT, .flags = CFG_F_INHERIT, .sub = &service_limiter_struct_,
        .doc = "overrides of defaults.limiter"),
    ROW(cfg_service_t, cors, .name = "cors", .type = CFG_T_STRUCT, .flags = CFG_F_INHERIT, .sub = &cors_struct_,
        .doc = "overrides of defaults.cors"),
    ROW(cfg_service_t, retry, .name = "retry", .type = CFG_T_STRUCT, .flags = CFG_F_INHERIT, .sub = &retry_struct_,
        .doc = "overrides of defaults.retry (backoff and budget key by key too)"),
    ROW(cfg_service_t, hedge, .name = "hedge", .type = CFG_T_STRUCT, .flags = CFG_F_INHERIT, .sub = &hedge_struct_,
        .doc = "overrides of defaults.hedge"),
    ROW(cfg_service_t, rpc_errors, .name = "rpc_errors", .type = CFG_T_LIST, .flags = CFG_F_INHERIT, .def = "[]", .min = 0,
        .max = 64, .sub = &rpc_error_struct_, .doc = "replaces defaults.rpc_errors for this service (an empty list too)"),
    ROW(cfg_service_t, health_check, .name = "health_check", .type = CFG_T_STRUCT, .flags = CFG_F_INHERIT,
        .sub = &health_check_struct_, .doc = "overrides of defaults.health_check"),
    ROW(cfg_service_t, outlier, .name = "outlier", .type = CFG_T_STRUCT, .flags = CFG_F_INHERIT, .sub = &outlier_struct_,
        .doc = "overrides of defaults.outlier (failure_rate key by key too)"),
    ROW(cfg_service_t, cache, .name = "cache", .type = CFG_T_STRUCT, .flags = CFG_F_INHERIT, .sub = &cache_struct_,
        .doc = "overrides of defaults.cache (ttl key by key too; methods, when given, replaces defaults' map whole)"),
    ROW(cfg_service_t, websocket, .name = "websocket", .type = CFG_T_STRUCT, .flags = CFG_F_INHERIT, .sub = &websocket_struct_,
        .doc = "overrides of defaults.websocket"),
};
static const cfg_struct_t service_struct_ = {sizeof(cfg_service_t), service_fields_, N(service_fields_), service_finish};

static const cfg_field_t control_plane_fields_[] = {
    ROW(cfg_control_plane_t, url, .name = "url", .type = CFG_T_STRING, .flags = CFG_F_REQUIRED, .check = cfg_check_base_url,
        .doc = "control plane base URL (http://127.0.0.1:7070)"),
    ROW(cfg_control_plane_t, token_file, .name = "token_file", .type = CFG_T_STRING, .flags = CFG_F_PATH,
        .doc = "file holding this dataplane's bearer token"),
    ROW(cfg_control_plane_t, id, .name = "id", .type = CFG_T_STRING, .flags = CFG_F_REQUIRED, .check = cfg_check_service_id,
        .doc = "this dataplane's id, as the control plane lists it"),
    ROW(cfg_control_plane_t, state_dir, .name = "state_dir", .type = CFG_T_STRING, .flags = CFG_F_PATH,
        .def = "\"/var/lib/pathway\"",
        .doc = "the last accepted config is kept here, to start from when the control plane is down"),
    ROW(cfg_control_plane_t, poll_wait_ms, .name = "poll_wait", .type = CFG_T_DURATION, .def = "\"30s\"", .min = 1 * SEC,
        .max = 5 * MIN, .doc = "how long one long poll for a new version waits"),
    ROW(cfg_control_plane_t, heartbeat_interval_ms, .name = "heartbeat_interval", .type = CFG_T_DURATION, .def = "\"5s\"",
        .min = 100, .max = 5 * MIN, .doc = "how often status is reported"),
    ROW(cfg_control_plane_t, labels, .name = "labels", .type = CFG_T_STRMAP, .min = 0, .max = 32, .check = cfg_check_label_name,
        .check_value = cfg_check_label_value,
        .doc = "this dataplane's labels (region: eu, canary: \"true\"), reported to the control plane, which may choose "
               "canaries by them"),
};
static const cfg_struct_t control_plane_struct_ = {sizeof(cfg_control_plane_t), control_plane_fields_, N(control_plane_fields_)};

static const cfg_field_t root_fields_[] = {
    ROW(cfg_t, listen, .name = "listen", .type = CFG_T_LIST, .flags = CFG_F_LOCAL | CFG_F_RESTART,
        .def = "[{\"address\":\"0.0.0.0:3069\"}]", .min = 1, .max = 64, .sub = &listen_struct_,
        .doc = "addresses relays are served on"),
    ROW(cfg_t, admin, .name = "admin", .type = CFG_T_STRUCT, .flags = CFG_F_LOCAL | CFG_F_RESTART, .sub = &admin_struct_,
        .doc = "admin listener"),
    ROW(cfg_t, threads, .name = "threads", .type = CFG_T_UINT32, .flags = CFG_F_LOCAL | CFG_F_RESTART, .def = "0", .min = 0,
        .max = 256, .doc = "worker threads; 0 = one per CPU"),
    ROW(cfg_t, control_plane, .name = "control_plane", .type = CFG_T_STRUCT, .flags = CFG_F_LOCAL | CFG_F_RESTART | CFG_F_OPTIONAL,
        .sub = &control_plane_struct_, .has_offset = offsetof(cfg_t, has_control_plane),
        .doc = "absent = standalone; present = managed by a control plane"),
    ROW(cfg_t, log, .name = "log", .type = CFG_T_STRUCT, .sub = &log_struct_, .doc = "logging"),
    ROW(cfg_t, limits, .name = "limits", .type = CFG_T_STRUCT, .sub = &limits_struct_, .doc = "request and response size limits"),
    ROW(cfg_t, pool, .name = "pool", .type = CFG_T_STRUCT, .sub = &global_pool_struct_, .doc = "process-wide upstream pool limits"),
    ROW(cfg_t, limiter, .name = "limiter", .type = CFG_T_STRUCT, .sub = &limiter_struct_,
        .doc = "process-wide bound on concurrent upstream requests"),
    ROW(cfg_t, buffers, .name = "buffers", .type = CFG_T_STRUCT, .sub = &buffers_struct_, .doc = "response buffer pool"),
    ROW(cfg_t, cache, .name = "cache", .type = CFG_T_STRUCT, .sub = &cache_global_struct_,
        .doc = "process-wide bounds of the response cache (each service switches it on in its own cache section)"),
    ROW(cfg_t, defaults, .name = "defaults", .type = CFG_T_STRUCT, .sub = &cfg_policy_struct, .doc = "what every service inherits"),
    ROW(cfg_t, services, .name = "services", .type = CFG_T_LIST, .def = "[]", .min = 0, .max = 4096, .sub = &service_struct_,
        .doc = "the services relayed, each a pool of upstream endpoints"),
};
const cfg_struct_t cfg_root_struct = {sizeof(cfg_t), root_fields_, N(root_fields_), root_finish};

/* --- cross-field rules of the whole document ---------------------------------------------- */

/* dst (disposed first) becomes a deep copy of src, a list of `sub` structs. */
static void copy_list(const cfg_struct_t *sub, cfg_vec_t *dst, const cfg_vec_t *src, cfg_errors_t *errs)
{
    for (size_t j = 0; j < dst->size; j++)
        cfg_struct_dispose(sub, (char *)dst->entries + j * sub->size);
    free(dst->entries);
    dst->entries = NULL;
    dst->size = 0;
    if (src->size == 0)
        return;
    if ((dst->entries = calloc(src->size, sub->size)) == NULL) {
        cfg_errors_add(errs, "out of memory");
        return;
    }
    for (size_t j = 0; j < src->size; j++) {
        dst->size = j + 1;
        if (cfg_struct_dup(sub, (char *)dst->entries + j * sub->size, (const char *)src->entries + j * sub->size) != 0) {
            cfg_errors_add(errs, "out of memory");
            return;
        }
    }
}

/* Every key of obj that the document did not give takes from's value (both are `st`). Nested
 * sections inherit key by key in turn, whether given or not: a service that sets
 * retry.budget.percent keeps defaults' retry.budget.min_concurrent. Lists, maps and strings are
 * copied whole. Derived members are recomputed from the merged keys. */
static void inherit(const cfg_struct_t *st, void *obj, const void *from, cfg_errors_t *errs)
{
    uint64_t set = *(uint64_t *)obj;
    for (size_t i = 0; i < st->num_fields; i++) {
        const cfg_field_t *f = &st->fields[i];
        if (f->type == CFG_T_STRUCT) {
            inherit(f->sub, CFG_MEMBER(obj, f, void), CFG_CMEMBER(from, f, void), errs);
            continue;
        }
        if ((set >> i) & 1)
            continue;
        switch (f->type) {
        case CFG_T_STRLIST:
        case CFG_T_STRMAP:
            cfg_strvec_dispose(f, obj);
            if (cfg_strvec_dup(f, obj, from) != 0)
                cfg_errors_add(errs, "out of memory");
            break;
        case CFG_T_LIST:
        case CFG_T_STRUCTMAP:
            copy_list(f->sub, CFG_MEMBER(obj, f, cfg_vec_t), CFG_CMEMBER(from, f, cfg_vec_t), errs);
            break;
        case CFG_T_STRING: {
            char **dst = CFG_MEMBER(obj, f, char *);
            const char *src = *CFG_CMEMBER(from, f, char *);
            free(*dst);
            *dst = NULL;
            if (src != NULL && (*dst = strdup(src)) == NULL)
                cfg_errors_add(errs, "out of memory");
            break;
        }
        default:
            memcpy((char *)obj + f->offset, (const char *)from + f->offset, cfg_scalar_size(f));
            /* an optional scalar takes its presence too, without becoming the service's override */
            if (f->def == NULL && cfg_has(from, i))
                *(uint64_t *)obj |= 1ull << (CFG_SET_INHERITED + i);
            break;
        }
    }
    if (st->derive != NULL)
        st->derive(obj);
}

/* Cross-field rules of the policy sections, on effective values (after inheritance: a rule between
 * two keys holds only once both are known). `path` names the section's owner: "defaults" or
 * "services[1]". */
static void retry_rules(const cfg_retry_t *r, const char *path, cfg_errors_t *errs)
{
    if (r->backoff.base_ms > r->backoff.max_ms) {
        char a[32], b[32];
        cfg_format_duration(r->backoff.base_ms, a, sizeof(a));
        cfg_format_duration(r->backoff.max_ms, b, sizeof(b));
        cfg_errors_add(errs, "%s.retry.backoff.base: must be at most retry.backoff.max (base %s, max %s)", path, a, b);
    }
}

static void outlier_rules(const cfg_outlier_t *o, const char *path, cfg_errors_t *errs)
{
    if (o->base_ejection_time_ms > o->max_ejection_time_ms) {
        char a[32], b[32];
        cfg_format_duration(o->base_ejection_time_ms, a, sizeof(a));
        cfg_format_duration(o->max_ejection_time_ms, b, sizeof(b));
        cfg_errors_add(errs, "%s.outlier.base_ejection_time: must be at most outlier.max_ejection_time (base %s, max %s)", path, a,
                       b);
    }
}

static void adaptive_rules(const cfg_adaptive_t *a, const char *path, cfg_errors_t *errs)
{
    if (a->min_limit > a->max_limit)
        cfg_errors_add(errs,
                       "%s.limiter.adaptive.min_limit: must be at most limiter.adaptive.max_limit (min_limit %u, max_limit %u)",
                       path, (unsigned)a->min_limit, (unsigned)a->max_limit);
    else if (a->initial_limit < a->min_limit || a->initial_limit > a->max_limit)
        cfg_errors_add(errs,
                       "%s.limiter.adaptive.initial_limit: must be between limiter.adaptive.min_limit and max_limit (min_limit %u, "
                       "initial_limit %u, max_limit %u)",
                       path, (unsigned)a->min_limit, (unsigned)a->initial_limit, (unsigned)a->max_limit);
}

static void root_finish(void *obj, const char *path, cfg_scope_t scope, cfg_errors_t *errs)
{
    cfg_t *cfg = obj;

    retry_rules(&cfg->defaults.retry, "defaults", errs);
    outlier_rules(&cfg->defaults.outlier, "defaults", errs);
    adaptive_rules(&cfg->defaults.limiter.adaptive, "defaults", errs);
    /* services take every policy key they did not set from `defaults`: each CFG_F_INHERIT row of a
     * service has a row of the same name in the policy table */
    for (size_t i = 0; i < cfg->services.size; i++) {
        cfg_service_t *svc = &cfg->services.entries[i];
        for (size_t k = 0; k < service_struct_.num_fields; k++) {
            const cfg_field_t *f = &service_struct_.fields[k];
            if (!(f->flags & CFG_F_INHERIT))
                continue;
            const cfg_field_t *pf = cfg_struct_find(&cfg_policy_struct, f->name, strlen(f->name));
            assert(pf != NULL && pf->type == f->type && pf->sub == f->sub); /* the two tables agree */
            if (f->type == CFG_T_STRUCT)
                inherit(f->sub, CFG_MEMBER(svc, f, void), CFG_CMEMBER(&cfg->defaults, pf, void), errs);
            else if (!((svc->_set >> k) & 1))
                copy_list(f->sub, CFG_MEMBER(svc, f, cfg_vec_t), CFG_CMEMBER(&cfg->defaults, pf, cfg_vec_t), errs);
        }
        /* a service that sets neither bound inherits both, already checked under defaults */
        if (svc->retry.backoff._set != 0) {
            char where[32];
            snprintf(where, sizeof(where), "services[%zu]", i);
            retry_rules(&svc->retry, where, errs);
        }
        if (svc->outlier._set != 0) {
            char where[32];
            snprintf(where, sizeof(where), "services[%zu]", i);
            outlier_rules(&svc->outlier, where, errs);
        }
        if (svc->limiter.adaptive._set != 0) {
            char where[32];
            snprintf(where, sizeof(where), "services[%zu]", i);
            adaptive_rules(&svc->limiter.adaptive, where, errs);
        }
        for (size_t j = 0; svc->id != NULL && j < i; j++) {
            if (cfg->services.entries[j].id != NULL && strcmp(svc->id, cfg->services.entries[j].id) == 0) {
                cfg_errors_add(errs, "services[%zu].id: duplicate service id '%s' (also services[%zu])", i, svc->id, j);
                break;
            }
        }
    }
    if (cfg->services.size == 0 && (scope == CFG_SCOPE_FLEET || !cfg->has_control_plane))
        cfg_errors_add(errs, "services: at least one service is required%s",
                       scope == CFG_SCOPE_FLEET ? "" : " (or a control_plane section to receive them from)");
    if (cfg->buffers.max_retained < cfg->buffers.size)
        cfg_errors_add(errs, "buffers.max_retained: must be at least buffers.size");

    if (scope == CFG_SCOPE_FULL) {
        for (size_t i = 0; i < cfg->listen.size; i++) {
            const char *a = cfg->listen.entries[i].address;
            if (a == NULL)
                continue;
            for (size_t j = 0; j < i; j++) {
                if (cfg->listen.entries[j].address != NULL && strcmp(a, cfg->listen.entries[j].address) == 0) {
                    cfg_errors_add(errs, "listen[%zu].address: duplicate listen address %s (also listen[%zu])", i, a, j);
                    break;
                }
            }
            if (cfg->admin.address != NULL && strcmp(a, cfg->admin.address) == 0)
                cfg_errors_add(errs, "admin.address: %s is also listen[%zu].address", a, i);
        }
    }
}

/* --- generic walks ------------------------------------------------------------------------ */

int cfg_is_scalar(const cfg_field_t *f)
{
    switch (f->type) {
    case CFG_T_BOOL:
    case CFG_T_UINT32:
    case CFG_T_DURATION:
    case CFG_T_SIZE:
    case CFG_T_ENUM:
    case CFG_T_INT32:
    case CFG_T_ENUMSET:
    case CFG_T_MILLI:
        return 1;
    default:
        return 0;
    }
}

size_t cfg_scalar_size(const cfg_field_t *f)
{
    switch (f->type) {
    case CFG_T_UINT32:
    case CFG_T_ENUMSET:
    case CFG_T_MILLI:
        return sizeof(uint32_t);
    case CFG_T_INT32:
        return sizeof(int32_t);
    case CFG_T_BOOL:
    case CFG_T_ENUM:
        return sizeof(int);
    default:
        return sizeof(uint64_t);
    }
}

const cfg_field_t *cfg_struct_key(const cfg_struct_t *st)
{
    for (size_t i = 0; i < st->num_fields; i++)
        if (st->fields[i].flags & CFG_F_KEY)
            return &st->fields[i];
    assert(!"a STRUCTMAP's sub struct has a CFG_F_KEY row");
    return NULL;
}

const cfg_field_t *cfg_struct_find(const cfg_struct_t *st, const char *name, size_t len)
{
    for (size_t i = 0; i < st->num_fields; i++)
        if (strlen(st->fields[i].name) == len && memcmp(st->fields[i].name, name, len) == 0)
            return &st->fields[i];
    return NULL;
}

void cfg_struct_dispose(const cfg_struct_t *st, void *obj)
{
    if (st->dispose_derived != NULL)
        st->dispose_derived(obj);
    for (size_t i = 0; i < st->num_fields; i++) {
        const cfg_field_t *f = &st->fields[i];
        switch (f->type) {
        case CFG_T_STRING:
            free(*CFG_MEMBER(obj, f, char *));
            break;
        case CFG_T_STRUCT:
            cfg_struct_dispose(f->sub, CFG_MEMBER(obj, f, void));
            break;
        case CFG_T_LIST:
        case CFG_T_STRUCTMAP: {
            cfg_vec_t *v = CFG_MEMBER(obj, f, cfg_vec_t);
            for (size_t j = 0; j < v->size; j++)
                cfg_struct_dispose(f->sub, (char *)v->entries + j * f->sub->size);
            free(v->entries);
            break;
        }
        case CFG_T_STRLIST:
        case CFG_T_STRMAP:
            cfg_strvec_dispose(f, obj);
            break;
        default:
            break;
        }
    }
    memset(obj, 0, st->size);
}

void cfg_strvec_dispose(const cfg_field_t *f, void *obj)
{
    cfg_vec_t *v = CFG_MEMBER(obj, f, cfg_vec_t);
    for (size_t j = 0; j < v->size; j++) {
        if (f->type == CFG_T_STRMAP) {
            cfg_header_t *h = &((cfg_header_t *)v->entries)[j];
            free(h->name);
            free(h->value);
        } else {
            free(((char **)v->entries)[j]);
        }
    }
    free(v->entries);
    v->entries = NULL;
    v->size = 0;
}

int cfg_strvec_dup(const cfg_field_t *f, void *dst, const void *src)
{
    const cfg_vec_t *sv = CFG_CMEMBER(src, f, cfg_vec_t);
    cfg_vec_t *dv = CFG_MEMBER(dst, f, cfg_vec_t);
    memset(dv, 0, sizeof(*dv));
    if (sv->size == 0)
        return 0;
    int is_map = f->type == CFG_T_STRMAP;
    if ((dv->entries = calloc(sv->size, is_map ? sizeof(cfg_header_t) : sizeof(char *))) == NULL)
        return -1;
    for (size_t j = 0; j < sv->size; j++) {
        dv->size = j + 1;
        if (is_map) {
            const cfg_header_t *a = &((const cfg_header_t *)sv->entries)[j];
            cfg_header_t *b = &((cfg_header_t *)dv->entries)[j];
            b->name = a->name != NULL ? strdup(a->name) : NULL;
            b->value = a->value != NULL ? strdup(a->value) : NULL;
            if ((a->name != NULL && b->name == NULL) || (a->value != NULL && b->value == NULL))
                return -1;
        } else {
            const char *a = ((char *const *)sv->entries)[j];
            if (a != NULL && (((char **)dv->entries)[j] = strdup(a)) == NULL)
                return -1;
        }
    }
    return 0;
}

/* dst is uninitialized; on failure dst is left disposable (partially copied, rest zero) */
int cfg_struct_dup(const cfg_struct_t *st, void *dst, const void *src)
{
    memcpy(dst, src, st->size);
    /* first detach every owned pointer, so a failure half-way leaves nothing shared */
    for (size_t i = 0; i < st->num_fields; i++) {
        const cfg_field_t *f = &st->fields[i];
        if (f->type == CFG_T_STRING)
            *CFG_MEMBER(dst, f, char *) = NULL;
        else if (f->type == CFG_T_LIST || f->type == CFG_T_STRUCTMAP || f->type == CFG_T_STRLIST || f->type == CFG_T_STRMAP)
            memset(CFG_MEMBER(dst, f, cfg_vec_t), 0, sizeof(cfg_vec_t));
        else if (f->type == CFG_T_STRUCT)
            memset(CFG_MEMBER(dst, f, void), 0, f->sub->size);
    }
    int ret = 0;
    for (size_t i = 0; i < st->num_fields; i++) {
        const cfg_field_t *f = &st->fields[i];
        switch (f->type) {
        case CFG_T_STRING: {
            const char *s = *CFG_CMEMBER(src, f, char *);
            if (s != NULL && (*CFG_MEMBER(dst, f, char *) = strdup(s)) == NULL)
                ret = -1;
            break;
        }
        case CFG_T_STRUCT:
            if (cfg_struct_dup(f->sub, CFG_MEMBER(dst, f, void), CFG_CMEMBER(src, f, void)) != 0)
                ret = -1;
            break;
        case CFG_T_LIST:
        case CFG_T_STRUCTMAP: {
            const cfg_vec_t *sv = CFG_CMEMBER(src, f, cfg_vec_t);
            cfg_vec_t *dv = CFG_MEMBER(dst, f, cfg_vec_t);
            if (sv->size == 0)
                break;
            if ((dv->entries = calloc(sv->size, f->sub->size)) == NULL) {
                ret = -1;
                break;
            }
            for (size_t j = 0; j < sv->size; j++) {
                dv->size = j + 1;
                if (cfg_struct_dup(f->sub, (char *)dv->entries + j * f->sub->size, (const char *)sv->entries + j * f->sub->size) !=
                    0) {
                    ret = -1;
                    break;
                }
            }
            break;
        }
        case CFG_T_STRLIST:
        case CFG_T_STRMAP:
            if (cfg_strvec_dup(f, dst, src) != 0)
                ret = -1;
            break;
        default:
            break;
        }
    }
    if (st->dup_derived != NULL) {
        if (st->dup_derived(dst, src) != 0)
            ret = -1;
    }
    return ret;
}

void cfg_struct_fill_defaults(const cfg_struct_t *st, void *obj)
{
    cfg_errors_t errs;
    cfg_errors_init(&errs);
    for (size_t i = 0; i < st->num_fields; i++) {
        const cfg_field_t *f = &st->fields[i];
        if (f->def != NULL) {
            json_t *v = json_loads(f->def, JSON_DECODE_ANY, NULL);
            /* a default that does not decode is a bug in this table; test_cfg walks every one */
            cfg_decode_field(f, obj, v, f->name, CFG_SCOPE_FULL, &errs);
            json_decref(v);
        } else if (f->type == CFG_T_STRUCT && !(f->flags & CFG_F_OPTIONAL)) {
            cfg_struct_fill_defaults(f->sub, CFG_MEMBER(obj, f, void));
        }
    }
    if (st->derive != NULL)
        st->derive(obj);
    cfg_errors_dispose(&errs);
}

void cfg_struct_resolve_paths(const cfg_struct_t *st, void *obj, const char *dir)
{
    for (size_t i = 0; i < st->num_fields; i++) {
        const cfg_field_t *f = &st->fields[i];
        if (f->type == CFG_T_STRING && (f->flags & CFG_F_PATH)) {
            char **p = CFG_MEMBER(obj, f, char *);
            char *joined;
            if (*p != NULL && (*p)[0] != '/' && asprintf(&joined, "%s/%s", dir, *p) >= 0) {
                free(*p);
                *p = joined;
            }
        } else if (f->type == CFG_T_STRUCT) {
            cfg_struct_resolve_paths(f->sub, CFG_MEMBER(obj, f, void), dir);
        } else if (f->type == CFG_T_LIST || f->type == CFG_T_STRUCTMAP) {
            cfg_vec_t *v = CFG_MEMBER(obj, f, cfg_vec_t);
            for (size_t j = 0; j < v->size; j++)
                cfg_struct_resolve_paths(f->sub, (char *)v->entries + j * f->sub->size, dir);
        }
    }
}
