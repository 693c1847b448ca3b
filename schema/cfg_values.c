/*
 * The value checks and parsers the table's rows name: addresses, ids, URLs (with user:pass), header
 * names and values, origins, method names, hedge delays. Each returns the rule broken, or NULL.
 */
#include "cfg_internal.h"
#include <arpa/inet.h>
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* --- value checks ------------------------------------------------------------------------- */

/* "host:port", "[v6]:port"; host is an IP literal or a DNS name. */
const char *cfg_check_address(const char *s)
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

const char *cfg_check_service_id(const char *s)
{
    size_t n = strlen(s);
    if (n > 64)
        return "must be at most 64 characters";
    for (const char *p = s; *p; p++)
        if (!isalnum((unsigned char)*p) && *p != '_' && *p != '-' && *p != '.')
            return "may contain only letters, digits, '_', '-' and '.'";
    return NULL;
}

const char *cfg_check_base_url(const char *s)
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
const char *cfg_check_endpoint_name(const char *s)
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

const char *cfg_check_header_name(const char *s)
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

const char *cfg_check_header_value(const char *s)
{
    for (const char *p = s; *p; p++)
        if (((unsigned char)*p < 0x20 && *p != '\t') || *p == 0x7f)
            return "a header value must not contain control characters (CR, LF, ...)";
    return NULL;
}

/* "*", or an origin as browsers send it: scheme://host[:port], nothing after. */
const char *cfg_check_origin(const char *s)
{
    if (strcmp(s, "*") == 0)
        return NULL;
    const char *rule = cfg_check_base_url(s);
    if (rule != NULL)
        return "must be * or an origin such as https://app.example.com (scheme, host, optional port)";
    const char *host = strstr(s, "://") + 3;
    if (strpbrk(host, "/?#@ ") != NULL)
        return "an origin has no path, query or user (https://app.example.com, without a trailing /)";
    return NULL;
}

/* A JSON-RPC method name as clients send it (eth_sendRawTransaction, debug_traceCall). */
const char *cfg_check_method(const char *s)
{
    if (strlen(s) > 128)
        return "a method name must be at most 128 characters";
    for (const char *p = s; *p; p++)
        if (!isalnum((unsigned char)*p) && strchr("_.:-/", *p) == NULL)
            return "a method name may contain only letters, digits and _ . : - /";
    return NULL;
}

/* The text an operator's rpc_errors row looks for inside error.message. */
const char *cfg_check_rpc_message(const char *s)
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
int cfg_parse_hedge_delay(const char *s, uint64_t *ms, uint32_t *pct)
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

const char *cfg_check_hedge_delay(const char *s)
{
    uint64_t ms;
    uint32_t pct;
    if (cfg_parse_hedge_delay(s, &ms, &pct) != 0)
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
const char *cfg_parse_endpoint_url(cfg_endpoint_t *ep)
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

/* ws:// and wss:// follow the rules of http:// and https:// (the same parser, on the URL with its
 * scheme swapped), so both URLs of an endpoint read alike. */
const char *cfg_parse_endpoint_ws_url(cfg_endpoint_t *ep)
{
    const char *s = ep->ws_url;
    int tls;
    if (strncmp(s, "ws://", 5) == 0)
        tls = 0;
    else if (strncmp(s, "wss://", 6) == 0)
        tls = 1;
    else
        return "scheme must be ws or wss";
    char *http = NULL;
    if (asprintf(&http, "%s%s", tls ? "https" : "http", s + (tls ? 3 : 2)) < 0)
        return "out of memory";
    cfg_endpoint_t tmp = {.url = http};
    const char *err = cfg_parse_endpoint_url(&tmp);
    free(http);
    if (err != NULL) {
        free(tmp.userinfo);
        return strcmp(err, "scheme must be http or https") == 0 ? "scheme must be ws or wss" : err;
    }
    ep->ws_is_tls = tls;
    ep->ws_host = tmp.host;
    ep->ws_path = tmp.path;
    ep->ws_userinfo = tmp.userinfo;
    ep->ws_port = tmp.port;
    return NULL;
}

/* health_check.request: one JSON-RPC request object, small enough to send on every probe. */
const char *cfg_check_probe_request(const char *s)
{
    if (strlen(s) > 4096)
        return "must be at most 4096 bytes";
    json_error_t jerr;
    json_t *j = json_loads(s, JSON_REJECT_DUPLICATES, &jerr);
    if (j == NULL)
        return "must be a JSON-RPC request object ({\"jsonrpc\":\"2.0\",\"id\":1,\"method\":...}): it is not valid JSON";
    const char *rule = NULL;
    json_t *m = json_object_get(j, "method");
    if (!json_is_object(j))
        rule = "must be one JSON-RPC request object, not a batch or a scalar";
    else if (!json_is_string(json_object_get(j, "jsonrpc")) || strcmp(json_string_value(json_object_get(j, "jsonrpc")), "2.0") != 0)
        rule = "must have \"jsonrpc\": \"2.0\"";
    else if (!json_is_string(m) || json_string_length(m) == 0)
        rule = "must name a \"method\"";
    else if (json_object_get(j, "id") == NULL || json_is_null(json_object_get(j, "id")))
        rule = "must have an \"id\" (a notification gets no answer to judge)";
    json_decref(j);
    return rule;
}

/* control_plane.labels: names like Kubernetes label keys without a prefix. */
const char *cfg_check_label_name(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > 63)
        return "a label name must be 1 to 63 characters";
    for (const char *p = s; *p; p++)
        if (!isalnum((unsigned char)*p) && *p != '_' && *p != '-' && *p != '.')
            return "a label name may hold only letters, digits, '_', '-' and '.'";
    return NULL;
}

const char *cfg_check_label_value(const char *s)
{
    if (strlen(s) > 63)
        return "a label value must be at most 63 characters";
    for (const char *p = s; *p; p++)
        if (!isalnum((unsigned char)*p) && *p != '_' && *p != '-' && *p != '.')
            return "a label value may hold only letters, digits, '_', '-' and '.'";
    return NULL;
}
