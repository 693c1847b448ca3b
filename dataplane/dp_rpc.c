#include "dp_rpc.h"
#include "dp_errors.h"
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include "h2o/string_.h"
#include "dp_phr.h"

#define DP_MAX_REQUEST_HEADERS 100 /* libh2o's H2O_MAX_HEADERS: a head it accepted fits */

static int is_id_char(char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '.' || c == '-';
}

static int valid_id(const char *s, size_t len)
{
    if (len == 0 || len > DP_SERVICE_ID_MAX)
        return 0;
    for (size_t i = 0; i != len; ++i)
        if (!is_id_char(s[i]))
            return 0;
    return 1;
}

dp_route_result_t dp_route(const char *path, size_t pathlen, const char *hdr, size_t hdrlen, const char **svc, size_t *svclen)
{
    const char *q = memchr(path, '?', pathlen);
    if (q != NULL)
        pathlen = (size_t)(q - path);
    if (pathlen < 3 || memcmp(path, "/v1", 3) != 0)
        return DP_ROUTE_NO_PATH;
    const char *rest = path + 3;
    size_t restlen = pathlen - 3;
    if (restlen != 0 && rest[0] != '/')
        return DP_ROUTE_NO_PATH; /* "/v10" is not "/v1" */
    if (restlen > 1) {
        rest++;
        restlen--;
        if (rest[restlen - 1] == '/') /* "/v1/eth/" is "/v1/eth" */
            restlen--;
        if (!valid_id(rest, restlen))
            return DP_ROUTE_BAD_ID;
        *svc = rest;
        *svclen = restlen;
        return DP_ROUTE_OK;
    }
    if (hdr == NULL || hdrlen == 0)
        return DP_ROUTE_MISSING;
    /* header values may carry surrounding blanks */
    while (hdrlen != 0 && (hdr[0] == ' ' || hdr[0] == '\t'))
        hdr++, hdrlen--;
    while (hdrlen != 0 && (hdr[hdrlen - 1] == ' ' || hdr[hdrlen - 1] == '\t'))
        hdrlen--;
    if (hdrlen == 0)
        return DP_ROUTE_MISSING;
    if (!valid_id(hdr, hdrlen))
        return DP_ROUTE_BAD_ID;
    *svc = hdr;
    *svclen = hdrlen;
    return DP_ROUTE_OK;
}

static int name_in(const char *s, size_t len, char *const *names, size_t n)
{
    for (size_t i = 0; i != n; ++i)
        if (strlen(names[i]) == len && memcmp(names[i], s, len) == 0)
            return 1;
    return 0;
}

static int item_calls(json_t *item, char *const *names, size_t n)
{
    json_t *m = json_object_get(item, "method");
    return json_is_string(m) && name_in(json_string_value(m), json_string_length(m), names, n);
}

int dp_rpc_calls_any_parsed(const char *body, size_t len, char *const *names, size_t n)
{
    if (n == 0)
        return 0;
    json_t *doc = json_loadb(body, len, JSON_ALLOW_NUL, NULL);
    if (doc == NULL)
        return 0;
    int found = 0;
    if (json_is_array(doc)) {
        size_t i;
        json_t *v;
        json_array_foreach(doc, i, v)
        {
            if (item_calls(v, names, n)) {
                found = 1;
                break;
            }
        }
    } else {
        found = item_calls(doc, names, n);
    }
    json_decref(doc);
    return found;
}

static int json_ws(char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

const char *dp_rpc_next_method(const char *p, const char *end, const char **name, size_t *namelen)
{
    while (p != end && (p = memmem(p, (size_t)(end - p), "\"method\"", 8)) != NULL) {
        const char *q = p + 8;
        p += 8;
        while (q != end && json_ws(*q))
            ++q;
        if (q == end || *q != ':')
            continue;
        ++q;
        while (q != end && json_ws(*q))
            ++q;
        if (q == end || *q != '"')
            continue;
        ++q;
        const char *close = memchr(q, '"', (size_t)(end - q));
        if (close == NULL)
            return NULL; /* an unterminated string: not JSON, no upstream will run it */
        *name = q;
        *namelen = (size_t)(close - q);
        return close + 1;
    }
    return NULL;
}

int dp_rpc_calls_any(const char *body, size_t len, char *const *names, size_t n)
{
    if (n == 0 || len == 0)
        return 0;
    if (memchr(body, '\\', len) != NULL)
        return dp_rpc_calls_any_parsed(body, len, names, n); /* escapes: "method" may be spelled otherwise */
    const char *p = body, *end = body + len, *name;
    size_t namelen;
    while ((p = dp_rpc_next_method(p, end, &name, &namelen)) != NULL)
        if (name_in(name, namelen, names, n))
            return 1;
    return 0;
}

json_t *dp_rpc_request_id(const char *body, size_t len)
{
    if (body == NULL || len == 0)
        return NULL;
    json_t *doc = json_loadb(body, len, JSON_DECODE_ANY, NULL);
    if (doc == NULL)
        return NULL;
    json_t *id = NULL;
    if (json_is_object(doc)) {
        json_t *v = json_object_get(doc, "id");
        if (v != NULL && (json_is_string(v) || json_is_number(v) || json_is_null(v)))
            id = json_incref(v);
    }
    json_decref(doc);
    return id;
}

char *dp_rpc_error_body(const char *body, size_t len, int code, const char *message, size_t *outlen)
{
    json_t *id = dp_rpc_request_id(body, len);
    json_t *doc = json_pack("{s:s, s:o, s:{s:i, s:s}}", "jsonrpc", "2.0", "id", id != NULL ? id : json_null(), "error", "code",
                            code, "message", message);
    if (doc == NULL)
        return NULL;
    char *out = json_dumps(doc, JSON_COMPACT);
    json_decref(doc);
    if (out != NULL)
        *outlen = strlen(out);
    return out;
}

static int name_is(const struct phr_header *h, const char *name, size_t len)
{
    return h->name_len == len && strncasecmp(h->name, name, len) == 0;
}

/* The verdict on a request head from how often it names each framing header: the one rule both
 * readers below share. */
static dp_framing_t framing_verdict(unsigned cl, unsigned te, unsigned host, int http11)
{
    if (cl != 0 && te != 0)
        return DP_FRAMING_CL_AND_TE;
    if (cl > 1)
        return DP_FRAMING_DUPLICATE_CL;
    if (host > 1)
        return DP_FRAMING_DUPLICATE_HOST;
    if (host == 0 && http11)
        return DP_FRAMING_NO_HOST;
    return DP_FRAMING_OK;
}

dp_framing_t dp_rpc_check_http1_head(const char *buf, size_t len)
{
    const char *method, *path;
    size_t method_len, path_len, nhdrs = DP_MAX_REQUEST_HEADERS;
    int minor;
    struct phr_header hdrs[DP_MAX_REQUEST_HEADERS];
    if (phr_parse_request(buf, len, &method, &method_len, &path, &path_len, &minor, hdrs, &nhdrs, 0) <= 0)
        return DP_FRAMING_UNREADABLE;
    unsigned cl = 0, te = 0, host = 0;
    for (size_t i = 0; i != nhdrs; ++i) {
        /* the lengths tell the three names apart before any compare */
        switch (hdrs[i].name_len) {
        case sizeof("content-length") - 1:
            cl += name_is(hdrs + i, "content-length", sizeof("content-length") - 1);
            break;
        case sizeof("transfer-encoding") - 1:
            te += name_is(hdrs + i, "transfer-encoding", sizeof("transfer-encoding") - 1);
            break;
        case sizeof("host") - 1:
            host += name_is(hdrs + i, "host", sizeof("host") - 1);
            break;
        }
    }
    return framing_verdict(cl, te, host, minor >= 1);
}

dp_framing_t dp_rpc_scan_http1_head(const char *head, size_t len, int http11)
{
    unsigned cl = 0, te = 0, host = 0;
    const char *p = head, *end = head + len;
    while ((p = memchr(p, '\n', (size_t)(end - p))) != NULL) {
        size_t left = (size_t)(end - ++p);
        switch (left != 0 ? *p : '\0') {
        case 'c':
            cl += left > 15 && memcmp(p, "content-length:", 15) == 0;
            break;
        case 't':
            te += left > 18 && memcmp(p, "transfer-encoding:", 18) == 0;
            break;
        case 'h':
            host += left > 5 && memcmp(p, "host:", 5) == 0;
            break;
        }
    }
    return framing_verdict(cl, te, host, http11);
}

const char *dp_rpc_framing_message(dp_framing_t f)
{
    return f == DP_FRAMING_OK ? "ok" : dp_error(dp_framing_error(f))->message;
}

int dp_cors_origin_allowed(char *const *origins, size_t n, const char *origin, size_t len)
{
    for (size_t i = 0; i != n; ++i) {
        const char *o = origins[i];
        if (o[0] == '*' && o[1] == '\0')
            return 1;
        if (strlen(o) == len && strncasecmp(o, origin, len) == 0)
            return 1;
    }
    return 0;
}

size_t dp_cors_allow_headers(const char *requested, size_t len, char *out)
{
    static const char *const safe[] = {"content-type", "target-service-id", "x-request-id", "authorization"};
    int seen[sizeof(safe) / sizeof(safe[0])] = {0};
    const char *p = requested, *end = requested + len;
    while (p < end) {
        const char *comma = memchr(p, ',', (size_t)(end - p));
        const char *e = comma != NULL ? comma : end, *b = p;
        p = comma != NULL ? comma + 1 : end;
        while (b < e && (*b == ' ' || *b == '\t'))
            b++;
        while (e > b && (e[-1] == ' ' || e[-1] == '\t'))
            e--;
        for (size_t i = 0; i != sizeof(safe) / sizeof(safe[0]); ++i)
            if (strlen(safe[i]) == (size_t)(e - b) && strncasecmp(safe[i], b, (size_t)(e - b)) == 0)
                seen[i] = 1;
    }
    /* in the safe list's order, so the answer is the same whatever order the browser used */
    size_t n = 0;
    for (size_t i = 0; i != sizeof(safe) / sizeof(safe[0]); ++i) {
        if (!seen[i])
            continue;
        if (n != 0) {
            memcpy(out + n, ", ", 2);
            n += 2;
        }
        size_t l = strlen(safe[i]);
        memcpy(out + n, safe[i], l);
        n += l;
    }
    out[n] = '\0';
    return n;
}

static char *put(char *p, const char *s, size_t len)
{
    memcpy(p, s, len);
    return p + len;
}

char *dp_rpc_head_prefix(const char *path, const char *host_header, const cfg_header_t *headers, size_t nheaders,
                         const char *userinfo, size_t *len, const char **err)
{
    *err = NULL;
    int has_auth = 0;
    size_t cap = sizeof("POST  HTTP/1.1\r\nhost: \r\n") + strlen(path) + strlen(host_header) + sizeof("content-length: ");
    for (size_t i = 0; i != nheaders; ++i) {
        const char *v = headers[i].value;
        if (strpbrk(v, "\r\n") != NULL) {
            *err = "a header value must not contain CR or LF";
            return NULL;
        }
        if (strcasecmp(headers[i].name, "authorization") == 0)
            has_auth = 1;
        cap += strlen(headers[i].name) + strlen(v) + sizeof(": \r\n");
    }
    int basic = userinfo != NULL && userinfo[0] != '\0' && !has_auth; /* "https://@host" has none */
    size_t ulen = basic ? strlen(userinfo) : 0;
    if (basic)
        cap += sizeof("authorization: Basic \r\n") + h2o_base64_encode_capacity(ulen);
    char *out = malloc(cap), *p = out;
    if (out == NULL)
        return NULL;
    p = put(p, "POST ", 5);
    p = put(p, path, strlen(path));
    p = put(p, " HTTP/1.1\r\nhost: ", sizeof(" HTTP/1.1\r\nhost: ") - 1);
    p = put(p, host_header, strlen(host_header));
    p = put(p, "\r\n", 2);
    for (size_t i = 0; i != nheaders; ++i) {
        p = put(p, headers[i].name, strlen(headers[i].name));
        p = put(p, ": ", 2);
        p = put(p, headers[i].value, strlen(headers[i].value));
        p = put(p, "\r\n", 2);
    }
    if (basic) {
        p = put(p, "authorization: Basic ", sizeof("authorization: Basic ") - 1);
        p += h2o_base64_encode(p, userinfo, ulen, 0);
        p = put(p, "\r\n", 2);
    }
    p = put(p, "content-length: ", sizeof("content-length: ") - 1);
    *p = '\0';
    *len = (size_t)(p - out);
    return out;
}
