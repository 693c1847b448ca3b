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

/* --- value checks ------------------------------------------------------------------------- */

/* "host:port", "[v6]:port"; host is an IP literal or a DNS name. */
static const char *check_address(const char *s)
{
    const char *colon;
    char host[256];
    if (s[0] == '[') {
        const char *close = strchr(s, ']');
        if (close == NULL || close[1] != ':')
            return "must be host:port, with an IPv6 host in brackets ([::1]:3069)";
        size_t n = (size_t)(close - s - 1);
        if (n == 0 || n >= sizeof(host))
            return "must be host:port, with an IPv6 host in brackets ([::1]:3069)";
        memcpy(host, s + 1, n);
        host[n] = '\0';
        struct in6_addr a6;
        if (inet_pton(AF_INET6, host, &a6) != 1)
            return "host in brackets must be an IPv6 address";
        colon = close + 1;
    } else {
        colon = strrchr(s, ':');
        if (colon == NULL || colon == s)
            return "must be host:port (for example 127.0.0.1:3069)";
        size_t n = (size_t)(colon - s);
        if (n >= sizeof(host))
            return "host is too long";
        memcpy(host, s, n);
        host[n] = '\0';
        if (strchr(host, ':') != NULL)
            return "an IPv6 host must be in brackets ([::1]:3069)";
        for (const char *p = host; *p; p++)
            if (!isalnum((unsigned char)*p) && *p != '.' && *p != '-')
                return "host must be an IP address or a DNS name";
    }
    const char *port = colon + 1;
    if (*port == '\0' || strlen(port) > 5)
        return "port must be a number from 1 to 65535";
    for (const char *p = port; *p; p++)
        if (!isdigit((unsigned char)*p))
            return "port must be a number from 1 to 65535";
    long v = strtol(port, NULL, 10);
    if (v < 1 || v > 65535)
        return "port must be a number from 1 to 65535";
    return NULL;
}

static const char *check_service_id(const char *s)
{
    size_t n = strlen(s);
    if (n > 64)
        return "must be at most 64 characters";
    for (const char *p = s; *p; p++)
        if (!isalnum((unsigned char)*p) && *p != '_' && *p != '-' && *p != '.')
            return "may contain only letters, digits, '_', '-' and '.'";
    return NULL;
}

static const char *check_base_url(const char *s)
{
    if (strncmp(s, "http://", 7) != 0 && strncmp(s, "https://", 8) != 0)
        return "scheme must be http or https";
    const char *host = strstr(s, "://") + 3;
    if (*host == '\0' || *host == '/' || *host == ':')
        return "must name a host";
    return NULL;
}

/* --- endpoint URLs ------------------------------------------------------------------------ */

/* An endpoint's own name: what metrics, logs and stats show. No '#': derived names use it, so a
 * derived name never equals a given one. */
static const char *check_endpoint_name(const char *s)
{
    if (strlen(s) > 64)
        return "must be at most 64 characters";
    for (const char *p = s; *p; p++)
        if (!isalnum((unsigned char)*p) && *p != '_' && *p != '-' && *p != '.' && *p != ':')
            return "may contain only letters, digits, '_', '-', '.' and ':'";
    return NULL;
}

/* Headers Pathway writes itself, or that change the framing of the exchange: never from config. */
static const char *const reserved_headers_[] = {"host",       "content-length", "transfer-encoding", "connection",
                                                "keep-alive", "upgrade",        "proxy-connection",  "te",
                                                "trailer",    "expect",         "x-request-id",      NULL};

static const char *check_header_name(const char *s)
{
    size_t n = strlen(s);
    if (n == 0)
        return "a header name must not be empty";
    if (n > 128)
        return "a header name must be at most 128 characters";
    for (const char *p = s; *p; p++)
        if (!isalnum((unsigned char)*p) && strchr("!#$%&'*+-.^_`|~", *p) == NULL)
            return "is not a valid header name (letters, digits and !#$%&'*+-.^_`|~ only)";
    for (const char *const *r = reserved_headers_; *r != NULL; r++)
        if (strcasecmp(s, *r) == 0)
            return "is a header Pathway sets itself or one that changes the message framing; it cannot be configured";
    return NULL;
}

static const char *check_header_value(const char *s)
{
    for (const char *p = s; *p; p++)
        if (((unsigned char)*p < 0x20 && *p != '\t') || *p == 0x7f)
            return "a header value must not contain control characters (CR, LF, ...)";
    return NULL;
}

/* "*", or an origin as browsers send it: scheme://host[:port], nothing after. */
static const char *check_origin(const char *s)
{
    if (strcmp(s, "*") == 0)
        return NULL;
    const char *rule = check_base_url(s);
    if (rule != NULL)
        return "must be * or an origin such as https://app.example.com (scheme, host, optional port)";
    const char *host = strstr(s, "://") + 3;
    if (strpbrk(host, "/?#@ ") != NULL)
        return "an origin has no path, query or user (https://app.example.com, without a trailing /)";
    return NULL;
}

/* A JSON-RPC method name as clients send it (eth_sendRawTransaction, debug_traceCall). */
static const char *check_method(const char *s)
{
    if (strlen(s) > 128)
        return "a method name must be at most 128 characters";
    for (const char *p = s; *p; p++)
        if (!isalnum((unsigned char)*p) && strchr("_.:-/", *p) == NULL)
            return "a method name may contain only letters, digits and _ . : - /";
    return NULL;
}

/* The text an operator's rpc_errors row looks for inside error.message. */
static const char *check_rpc_message(const char *s)
{
    if (strlen(s) > 256)
        return "must be at most 256 characters";
    for (const char *p = s; *p; p++)
        if ((unsigned char)*p < 0x20 || *p == 0x7f)
            return "must not contain control characters";
    return NULL;
}

#define HEDGE_DELAY_MAX (10 * 60 * 1000ull) /* 10m: a fixed hedge delay beyond any sane request time */

/* hedge.delay: "0s" (off), a duration, or "p50".."p99". Returns 0 with *ms / *pct set (one of them
 * is 0), or -1. */
static int parse_hedge_delay(const char *s, uint64_t *ms, uint32_t *pct)
{
    if (s[0] == 'p') {
        if (!isdigit((unsigned char)s[1]) || !isdigit((unsigned char)s[2]) || s[3] != '\0')
            return -1;
        uint32_t v = (uint32_t)((s[1] - '0') * 10 + (s[2] - '0'));
        if (v < 50 || v > 99)
            return -1;
        *ms = 0;
        *pct = v;
        return 0;
    }
    const char *err;
    uint64_t v;
    if (cfg_parse_duration(s, &v, &err) != 0 || v > HEDGE_DELAY_MAX)
        return -1;
    *ms = v;
    *pct = 0;
    return 0;
}

static const char *check_hedge_delay(const char *s)
{
    uint64_t ms;
    uint32_t pct;
    if (parse_hedge_delay(s, &ms, &pct) != 0)
        return "must be 0s (off), a duration up to 10m such as 20ms, or a percentile p50 to p99 of the service's observed "
               "latency";
    return NULL;
}

static int hexval(int c)
{
    return isdigit(c) ? c - '0' : isxdigit(c) ? tolower(c) - 'a' + 10 : -1;
}

/* "user:pass" percent-decoded from n bytes at p: a heap string, or NULL with *err set. */
static char *decode_userinfo(const char *p, size_t n, const char **err)
{
    char *out = malloc(n + 1), *o = out;
    if (out == NULL) {
        *err = "out of memory";
        return NULL;
    }
    for (size_t i = 0; i < n; i++) {
        int c = (unsigned char)p[i];
        if (c == '%') {
            int hi = i + 2 < n ? hexval((unsigned char)p[i + 1]) : -1;
            int lo = i + 2 < n ? hexval((unsigned char)p[i + 2]) : -1;
            if (hi < 0 || lo < 0) {
                free(out);
                *err = "bad %-escape in the URL's user:password";
                return NULL;
            }
            c = hi * 16 + lo;
            i += 2;
            if (c < 0x20 || c == 0x7f) {
                free(out);
                *err = "the URL's user:password must not hold control characters";
                return NULL;
            }
        }
        *o++ = (char)c;
    }
    *o = '\0';
    return out;
}

/* Splits an endpoint URL into the derived members; returns the rule broken, or NULL. */
static const char *parse_endpoint_url(cfg_endpoint_t *ep)
{
    const char *s = ep->url, *p;
    if (strncmp(s, "http://", 7) == 0) {
        ep->is_https = 0;
        p = s + 7;
    } else if (strncmp(s, "https://", 8) == 0) {
        ep->is_https = 1;
        p = s + 8;
    } else {
        return "scheme must be http or https";
    }
    size_t auth_len = strcspn(p, "/?#");
    const char *rest = p + auth_len;
    const char *at = NULL;
    for (const char *c = p; c < rest; c++)
        if (*c == '@')
            at = c;
    if (at != NULL) {
        /* user:pass@host: sent as HTTP Basic authorization, redacted wherever the URL is shown */
        const char *err = NULL;
        if (at == p)
            return "an empty user:password before '@'";
        for (const char *c = s; *c; c++)
            if ((unsigned char)*c <= 0x20 || *c == 0x7f)
                return "must not contain spaces or control characters";
        if ((ep->userinfo = decode_userinfo(p, (size_t)(at - p), &err)) == NULL)
            return err;
        auth_len -= (size_t)(at + 1 - p);
        p = at + 1;
    }
    if (strchr(rest, '#') != NULL)
        return "a URL fragment (#...) is not allowed";
    for (const char *c = s; *c; c++)
        if ((unsigned char)*c <= 0x20 || *c == 0x7f)
            return "must not contain spaces or control characters";
    const char *host = p, *host_end, *port = NULL;
    if (*p == '[') {
        host_end = memchr(p, ']', auth_len);
        if (host_end == NULL)
            return "IPv6 host is missing its closing ']'";
        host = p + 1;
        if (host_end + 1 < rest) {
            if (host_end[1] != ':')
                return "unexpected characters after the IPv6 host";
            port = host_end + 2;
        }
    } else {
        host_end = memchr(p, ':', auth_len);
        if (host_end != NULL)
            port = host_end + 1;
        else
            host_end = rest;
    }
    if (host_end == host)
        return "must name a host";
    uint16_t portnum = ep->is_https ? 443 : 80;
    if (port != NULL) {
        if (port == rest || rest - port > 5)
            return "port must be a number from 1 to 65535";
        long v = 0;
        for (const char *c = port; c < rest; c++) {
            if (!isdigit((unsigned char)*c))
                return "port must be a number from 1 to 65535";
            v = v * 10 + (*c - '0');
        }
        if (v < 1 || v > 65535)
            return "port must be a number from 1 to 65535";
        portnum = (uint16_t)v;
    }
    char *h = strndup(host, (size_t)(host_end - host));
    char *path = strdup(*rest == '\0' ? "/" : rest);
    if (h == NULL || path == NULL) {
        free(h);
        free(path);
        return "out of memory";
    }
    if (*p != '[') {
        for (char *c = h; *c; c++) {
            if (!isalnum((unsigned char)*c) && *c != '.' && *c != '-' && *c != '_') {
                free(h);
                free(path);
                return "host must be an IP address or a DNS name";
            }
            *c = (char)tolower((unsigned char)*c);
        }
    } else {
        struct in6_addr a6;
        if (inet_pton(AF_INET6, h, &a6) != 1) {
            free(h);
            free(path);
            return "host in brackets must be an IPv6 address";
        }
    }
    ep->host = h;
    ep->path = path;
    ep->port = portnum;
    return NULL;
}

static void endpoint_finish(void *obj, const char *path, cfg_scope_t scope, cfg_errors_t *errs)
{
    cfg_endpoint_t *ep = obj;
    if (ep->url == NULL)
        return; /* required: already reported */
    const char *err = parse_endpoint_url(ep);
    if (err != NULL) {
        cfg_errors_add(errs, "%s.url: %s", path, err);
        return;
    }
    if (ep->has_tls && !ep->is_https)
        cfg_errors_add(errs, "%s.tls: only https endpoints take tls settings", path);
}

static int endpoint_dup(void *dst, const void *src)
{
    cfg_endpoint_t *d = dst;
    const cfg_endpoint_t *s = src;
    d->host = s->host != NULL ? strdup(s->host) : NULL;
    d->path = s->path != NULL ? strdup(s->path) : NULL;
    d->userinfo = s->userinfo != NULL ? strdup(s->userinfo) : NULL;
    d->label = s->label != NULL ? strdup(s->label) : NULL;
    return (s->host != NULL && d->host == NULL) || (s->path != NULL && d->path == NULL) ||
                   (s->userinfo != NULL && d->userinfo == NULL) || (s->label != NULL && d->label == NULL)
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
    ROW(cfg_listen_t, address, .name = "address", .type = CFG_T_STRING, .flags = CFG_F_REQUIRED, .check = check_address,
        .doc = "host:port to accept HTTP/1.1 and h2c (or https and h2 with tls) on"),
    ROW(cfg_listen_t, tls, .name = "tls", .type = CFG_T_STRUCT, .flags = CFG_F_OPTIONAL, .sub = &listen_tls_struct_,
        .has_offset = offsetof(cfg_listen_t, has_tls), .doc = "serve https (HTTP/2 through ALPN) with this certificate"),
    ROW(cfg_listen_t, http2, .name = "http2", .type = CFG_T_BOOL, .def = "true",
        .doc = "speak HTTP/2 (h2c, or h2 through ALPN); false = HTTP/1.1 only, for untrusted clients"),
};
static const cfg_struct_t listen_struct_ = {sizeof(cfg_listen_t), listen_fields_, N(listen_fields_)};

static const cfg_field_t admin_fields_[] = {
    ROW(cfg_admin_t, address, .name = "address", .type = CFG_T_STRING, .def = "\"127.0.0.1:9901\"", .check = check_address,
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

static const cfg_field_t pool_fields_[] = {
    ROW(cfg_pool_t, max_idle_per_host, .name = "max_idle_per_host", .type = CFG_T_UINT32, .def = "25", .min = 0, .max = 65535,
        .doc = "idle connections kept per endpoint"),
    ROW(cfg_pool_t, max_conns_per_host, .name = "max_conns_per_host", .type = CFG_T_UINT32, .def = "50", .min = 1, .max = 65535,
        .doc = "open connections per endpoint, busy and idle; requests beyond wait for one"),
    ROW(cfg_pool_t, idle_timeout_ms, .name = "idle_timeout", .type = CFG_T_DURATION, .def = "\"90s\"", .min = 100, .max = 24 * HOUR,
        .doc = "idle connections are closed after this"),
    ROW(cfg_pool_t, connect_timeout_ms, .name = "connect_timeout", .type = CFG_T_DURATION, .def = "\"5s\"", .min = 1,
        .max = 5 * MIN, .doc = "upstream connect (TCP and TLS); beyond: 502"),
};
static const cfg_struct_t pool_struct_ = {sizeof(cfg_pool_t), pool_fields_, N(pool_fields_)};

static const cfg_field_t timeouts_fields_[] = {
    ROW(cfg_timeouts_t, request_ms, .name = "request", .type = CFG_T_DURATION, .def = "\"30s\"", .min = 1, .max = 1 * HOUR,
        .doc = "whole upstream exchange, from sending to the last response byte; beyond: 504"),
};
static const cfg_struct_t timeouts_struct_ = {sizeof(cfg_timeouts_t), timeouts_fields_, N(timeouts_fields_)};

static const cfg_field_t service_limiter_fields_[] = {
    ROW(cfg_service_limiter_t, max_concurrent, .name = "max_concurrent", .type = CFG_T_UINT32, .def = "0", .min = 0, .max = 1000000,
        .doc = "upstream requests in flight for one service; 0 = only the process-wide limit"),
};
static const cfg_struct_t service_limiter_struct_ = {sizeof(cfg_service_limiter_t), service_limiter_fields_,
                                                     N(service_limiter_fields_)};

static const cfg_field_t cors_fields_[] = {
    ROW(cfg_cors_t, allow_origins, .name = "allow_origins", .type = CFG_T_STRLIST, .def = "[]", .min = 0, .max = 256,
        .check = check_origin,
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
    ROW(cfg_retry_t, unsafe_methods, .name = "unsafe_methods", .type = CFG_T_STRLIST, .min = 0, .max = 256, .check = check_method,
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
    if (h->delay == NULL || parse_hedge_delay(h->delay, &h->delay_ms, &h->delay_percentile) != 0)
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
    ROW(cfg_hedge_t, delay, .name = "delay", .type = CFG_T_STRING, .def = "\"0s\"", .check = check_hedge_delay,
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
    ROW(cfg_rpc_error_t, message, .name = "message", .type = CFG_T_STRING, .check = check_rpc_message,
        .doc = "text to find in error.message, ignoring case; absent = any message"),
    ROW(cfg_rpc_error_t, rpc_class, .name = "class", .type = CFG_T_ENUM, .flags = CFG_F_REQUIRED, .names = rpc_classes_,
        .doc = "what a match means: rate_limited, missing_data and server_error may be retried (retry_on), client_error "
               "is returned as is"),
};
static const cfg_struct_t rpc_error_struct_ = {sizeof(cfg_rpc_error_t), rpc_error_fields_, N(rpc_error_fields_), rpc_error_finish};

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
    ROW(cfg_endpoint_t, name, .name = "name", .type = CFG_T_STRING, .check = check_endpoint_name,
        .doc = "what metrics, stats and logs call the endpoint; absent = host:port (made unique with #2, #3)"),
    ROW(cfg_endpoint_t, headers, .name = "headers", .type = CFG_T_STRMAP, .min = 0, .max = 32, .check = check_header_name,
        .check_value = check_header_value, .doc = "request headers sent to this endpoint (e.g. an API key); shown redacted"),
    ROW(cfg_endpoint_t, tls, .name = "tls", .type = CFG_T_STRUCT, .flags = CFG_F_OPTIONAL, .sub = &upstream_tls_struct_,
        .has_offset = offsetof(cfg_endpoint_t, has_tls), .doc = "TLS settings of an https endpoint"),
};
static const cfg_struct_t endpoint_struct_ = {sizeof(cfg_endpoint_t), endpoint_fields_, N(endpoint_fields_),
                                              endpoint_finish,        endpoint_dup,     endpoint_dispose};

static const cfg_field_t service_fields_[] = {
    ROW(cfg_service_t, id, .name = "id", .type = CFG_T_STRING, .flags = CFG_F_REQUIRED, .check = check_service_id,
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
};
static const cfg_struct_t service_struct_ = {sizeof(cfg_service_t), service_fields_, N(service_fields_), service_finish};

static const cfg_field_t control_plane_fields_[] = {
    ROW(cfg_control_plane_t, url, .name = "url", .type = CFG_T_STRING, .flags = CFG_F_REQUIRED, .check = check_base_url,
        .doc = "control plane base URL (http://127.0.0.1:7070)"),
    ROW(cfg_control_plane_t, token_file, .name = "token_file", .type = CFG_T_STRING, .flags = CFG_F_PATH,
        .doc = "file holding this dataplane's bearer token"),
    ROW(cfg_control_plane_t, id, .name = "id", .type = CFG_T_STRING, .flags = CFG_F_REQUIRED, .check = check_service_id,
        .doc = "this dataplane's id, as the control plane lists it"),
    ROW(cfg_control_plane_t, state_dir, .name = "state_dir", .type = CFG_T_STRING, .flags = CFG_F_PATH,
        .def = "\"/var/lib/pathway\"",
        .doc = "the last accepted config is kept here, to start from when the control plane is down"),
    ROW(cfg_control_plane_t, poll_wait_ms, .name = "poll_wait", .type = CFG_T_DURATION, .def = "\"30s\"", .min = 1 * SEC,
        .max = 5 * MIN, .doc = "how long one long poll for a new version waits"),
    ROW(cfg_control_plane_t, heartbeat_interval_ms, .name = "heartbeat_interval", .type = CFG_T_DURATION, .def = "\"5s\"",
        .min = 100, .max = 5 * MIN, .doc = "how often status is reported"),
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
 * retry.budget.percent keeps defaults' retry.budget.min_concurrent. Lists and strings are copied
 * whole. Derived members are recomputed from the merged keys. */
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

static void root_finish(void *obj, const char *path, cfg_scope_t scope, cfg_errors_t *errs)
{
    cfg_t *cfg = obj;

    retry_rules(&cfg->defaults.retry, "defaults", errs);
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
        case CFG_T_LIST: {
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
        else if (f->type == CFG_T_LIST || f->type == CFG_T_STRLIST || f->type == CFG_T_STRMAP)
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
        case CFG_T_LIST: {
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
        } else if (f->type == CFG_T_LIST) {
            cfg_vec_t *v = CFG_MEMBER(obj, f, cfg_vec_t);
            for (size_t j = 0; j < v->size; j++)
                cfg_struct_resolve_paths(f->sub, (char *)v->entries + j * f->sub->size, dir);
        }
    }
}

/* --- docs --------------------------------------------------------------------------------- */

typedef struct st_md_t {
    char *buf;
    size_t len, cap;
} md_t;

static void md_add(md_t *m, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void md_add(md_t *m, const char *fmt, ...)
{
    va_list ap;
    for (;;) {
        va_start(ap, fmt);
        int n = vsnprintf(m->buf + m->len, m->cap - m->len, fmt, ap);
        va_end(ap);
        if (n < 0)
            return;
        if ((size_t)n < m->cap - m->len) {
            m->len += (size_t)n;
            return;
        }
        size_t cap = m->cap * 2 + (size_t)n + 1024;
        char *b = realloc(m->buf, cap);
        if (b == NULL)
            return;
        m->buf = b;
        m->cap = cap;
    }
}

static const char *type_name(const cfg_field_t *f)
{
    switch (f->type) {
    case CFG_T_BOOL:
        return "boolean";
    case CFG_T_UINT32:
        return "integer";
    case CFG_T_DURATION:
        return "duration";
    case CFG_T_SIZE:
        return "size";
    case CFG_T_STRING:
        return "string";
    case CFG_T_ENUM:
        return "enum";
    case CFG_T_STRUCT:
        return "section";
    case CFG_T_LIST:
        return "list";
    case CFG_T_STRLIST:
        return "list of strings";
    case CFG_T_STRMAP:
        return "mapping";
    case CFG_T_INT32:
        return "integer";
    case CFG_T_ENUMSET:
        return "list of names";
    }
    return "?";
}

static void md_bounds(md_t *m, const cfg_field_t *f)
{
    char a[32], b[32];
    switch (f->type) {
    case CFG_T_UINT32:
        md_add(m, "%llu – %llu", (unsigned long long)f->min, (unsigned long long)f->max);
        break;
    case CFG_T_DURATION:
        cfg_format_duration(f->min, a, sizeof(a));
        cfg_format_duration(f->max, b, sizeof(b));
        md_add(m, "%s – %s", a, b);
        break;
    case CFG_T_SIZE:
        cfg_format_size(f->min, a, sizeof(a));
        cfg_format_size(f->max, b, sizeof(b));
        md_add(m, "%s – %s", a, b);
        break;
    case CFG_T_LIST:
    case CFG_T_STRLIST:
    case CFG_T_STRMAP:
        md_add(m, "%llu – %llu entries", (unsigned long long)f->min, (unsigned long long)f->max);
        break;
    case CFG_T_ENUM:
    case CFG_T_ENUMSET:
        for (const char *const *n = f->names; *n != NULL; n++)
            md_add(m, "%s%s", n == f->names ? "" : f->type == CFG_T_ENUM ? " \\| " : ", ", *n);
        break;
    case CFG_T_INT32:
        md_add(m, "%d – %d", INT32_MIN, INT32_MAX);
        break;
    default:
        md_add(m, "—");
        break;
    }
}

/* parent_flags: CFG_F_RESTART / CFG_F_LOCAL of the enclosing sections, which their keys share */
static void md_struct(md_t *m, const cfg_struct_t *st, const char *prefix, int inherited, unsigned parent_flags)
{
    for (size_t i = 0; i < st->num_fields; i++) {
        const cfg_field_t *f = &st->fields[i];
        char path[256];
        snprintf(path, sizeof(path), "%s%s%s", prefix, *prefix ? "." : "", f->name);
        if (f->type == CFG_T_LIST)
            strncat(path, "[]", sizeof(path) - strlen(path) - 1);
        unsigned flags_here = f->flags | parent_flags;
        const char *flags = flags_here & CFG_F_RESTART ? "restart" : "runtime";
        const char *part = flags_here & CFG_F_LOCAL ? (f->flags & CFG_F_PATH ? "node-local, path" : "node-local")
                           : f->flags & CFG_F_PATH  ? "path"
                                                    : "";
        md_add(m, "| `%s` | %s | ", path, type_name(f));
        if ((inherited || (f->flags & CFG_F_INHERIT)) && f->type != CFG_T_STRUCT)
            md_add(m, "from `defaults`");
        else if (f->def != NULL && f->def[0] == '"') /* strings and units: without JSON quotes */
            md_add(m, "`%.*s`", (int)strlen(f->def) - 2, f->def + 1);
        else if (f->def != NULL)
            md_add(m, "`%s`", f->def);
        else if (f->flags & CFG_F_REQUIRED)
            md_add(m, "required");
        else if (f->flags & CFG_F_OPTIONAL)
            md_add(m, "absent");
        else
            md_add(m, "—");
        md_add(m, " | ");
        md_bounds(m, f);
        md_add(m, " | %s%s%s | %s |\n", flags, *part ? ", " : "", part, f->doc);
        /* a list's entries are whole values, never inherited key by key */
        if (f->type == CFG_T_STRUCT || f->type == CFG_T_LIST)
            md_struct(m, f->sub, path, f->type == CFG_T_STRUCT && (inherited || (f->flags & CFG_F_INHERIT)),
                      flags_here & (CFG_F_RESTART | CFG_F_LOCAL));
    }
}

char *cfg_reference_markdown(void)
{
    md_t m = {NULL, 0, 0};
    md_add(&m, "# Config reference\n\n"
               "Generated from the schema table (`schema/cfg_table.c`) by `make docs`; do not edit by hand.\n\n"
               "Durations are written `250ms`, `5s`, `2m`, `1h` (or combined, `1m30s`); sizes `512B`, `64KiB`, `1MiB`, "
               "`1GiB` (a plain integer is bytes). Unknown keys are errors. *runtime* settings apply without a restart; "
               "*restart* ones need one, and the dataplane says so when a reload changes them. *node-local* settings "
               "describe one dataplane process and come only from its own file; a control plane's (fleet) document "
               "that carries them is rejected.\n\n"
               "Relative file paths (*path* below) in a dataplane's own file are taken relative to that file's "
               "directory; in a document pushed by a control plane, relative to the dataplane's working directory.\n\n"
               "Services inherit `defaults.pool`, `defaults.timeouts`, `defaults.limiter`, `defaults.cors`, `defaults.retry` "
               "and `defaults.hedge` key by key (the sections inside `retry` too: a service that sets `retry.budget.percent` "
               "keeps the default `retry.budget.min_concurrent`), and `defaults.rpc_errors` as a whole list unless the "
               "service gives its own; a service sets only what differs.\n\n"
               "| key | type | default | bounds | applies | meaning |\n|---|---|---|---|---|---|\n");
    md_struct(&m, &cfg_root_struct, "", 0, 0);
    return m.buf;
}
