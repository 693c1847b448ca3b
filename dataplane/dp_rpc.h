/*
 * dp_rpc: request inspection that needs no event loop: routing of the request line and header,
 * and the JSON-RPC error bodies the gateway writes itself. Outside input goes through here, so
 * it has a fuzz target (tests/fuzz/fuzz_dp_rpc.c).
 */
#ifndef PATHWAY_DP_RPC_H
#define PATHWAY_DP_RPC_H

#include <stddef.h>
#include <jansson.h>
#include "cfg.h"

typedef enum en_dp_route_result_t {
    DP_ROUTE_OK = 0,  /* *svc names the service */
    DP_ROUTE_MISSING, /* POST /v1 without Target-Service-Id: 400 */
    DP_ROUTE_BAD_ID,  /* a service id that no config can hold: 404 */
    DP_ROUTE_NO_PATH, /* not under /v1: 404 */
} dp_route_result_t;

/* Longest service id the schema allows. */
#define DP_SERVICE_ID_MAX 64

/* Routes a request: `path` is the request path (query allowed), `hdr` the Target-Service-Id value
 * (NULL when absent). the id in the path wins over the header. On DP_ROUTE_OK, *svc and *svclen point
 * into path or hdr (borrowed). */
dp_route_result_t dp_route(const char *path, size_t pathlen, const char *hdr, size_t hdrlen, const char **svc, size_t *svclen);

/* The JSON-RPC `id` of a request body when it is one object with an id that is a string, a
 * number or null; NULL for anything else (batches, invalid JSON). New reference. */
json_t *dp_rpc_request_id(const char *body, size_t len);

/* Whether a request body calls any of the JSON-RPC methods in names[0..n) (exact, case-sensitive):
 * its "method" when it is one object, any item's when it is a batch. Parses only as far as needed:
 * a body without a backslash is scanned for the bytes "method" followed by ':' and a string (in
 * JSON without escapes those bytes can only be a key), a body with one is parsed whole (jansson).
 * Errs toward 1: a "method" key nested in params counts too. 0 when n is 0. No allocation on the
 * scan. */
int dp_rpc_calls_any(const char *body, size_t len, char *const *names, size_t n);

/* The scan dp_rpc_calls_any makes: from p, the next "method" key followed by ':' and a string; *name
 * and *namelen get the string's bytes (no escapes read). Returns where the scan goes on, or NULL
 * when there is none (or the string is not terminated). */
const char *dp_rpc_next_method(const char *p, const char *end, const char **name, size_t *namelen);

/* The same question answered by a full parse (the fuzz target's oracle: where it says 1, so must
 * dp_rpc_calls_any). */
int dp_rpc_calls_any_parsed(const char *body, size_t len, char *const *names, size_t n);

/* A JSON-RPC error object as the gateway answers: {"jsonrpc":"2.0","id":<id of body or null>,
 * "error":{"code":code,"message":message}}. Returns a malloc'd NUL-terminated string (caller
 * frees) with its length in *outlen; NULL only when out of memory. */
char *dp_rpc_error_body(const char *body, size_t len, int code, const char *message, size_t *outlen);

/* What the strict framing check found in an HTTP/1.x request head. libh2o 2.2.5 accepts these
 * (Transfer-Encoding wins over Content-Length, the first Content-Length wins, a missing Host
 * becomes the default host); nginx and HAProxy refuse them, since a front proxy that frames the
 * request differently is how requests get smuggled. */
typedef enum en_dp_framing_t {
    DP_FRAMING_OK = 0,
    DP_FRAMING_CL_AND_TE,      /* both Content-Length and Transfer-Encoding */
    DP_FRAMING_DUPLICATE_CL,   /* more than one Content-Length, equal values or not */
    DP_FRAMING_NO_HOST,        /* HTTP/1.1 without Host */
    DP_FRAMING_DUPLICATE_HOST, /* more than one Host */
    DP_FRAMING_UNREADABLE,     /* not a complete request head: nothing to judge */
} dp_framing_t;

/* Checks the framing headers of the HTTP/1.x request head at the start of buf (body bytes may
 * follow). Header names in any case. No allocation. */
dp_framing_t dp_rpc_check_http1_head(const char *buf, size_t len);

/* The same check on the exact head libh2o parsed (request line and header lines, no body), whose
 * header names libh2o has lowercased in place; `http11` for HTTP/1.1 (Host required). A line scan
 * instead of a parse: a fraction of the cost, for the relay path. Names here are the tokens
 * picohttpparser accepted, each followed directly by ':', so "\n<name>:" at a line start is the
 * header (a folded continuation line starts with a blank). */
dp_framing_t dp_rpc_scan_http1_head(const char *head, size_t len, int http11);

/* The client-facing message for a refused framing (a static string). */
const char *dp_rpc_framing_message(dp_framing_t f);

/* The fixed start of an endpoint's upstream request heads, built once per endpoint: the request
 * line, `host`, the endpoint's `headers` in order, `authorization: Basic base64(userinfo)` when
 * userinfo is set (NULL = none) and no header is named authorization, then "content-length: "
 * (the relay appends the length, content-type and x-request-id). Returns a malloc'd string
 * (caller frees) with its length in *len; NULL when out of memory, or with *err set (a static
 * string) when a header value holds CR or LF, which would split the head. */
char *dp_rpc_head_prefix(const char *path, const char *host_header, const cfg_header_t *headers, size_t nheaders,
                         const char *userinfo, size_t *len, const char **err);

/* CORS. True when `origin` is in the list (ASCII case-insensitive; an entry "*" allows any). */
int dp_cors_origin_allowed(char *const *origins, size_t n, const char *origin, size_t len);

/* The request headers a preflight may be allowed: the fixed safe list (content-type,
 * target-service-id, x-request-id, authorization). */
#define DP_CORS_SAFE_HEADERS "content-type, target-service-id, x-request-id, authorization"

/* Filters a preflight's Access-Control-Request-Headers (a comma-separated list, any case) to the
 * names of the safe list, written lowercase to out as "a, b" (at most each once). Returns the
 * length written; out needs sizeof(DP_CORS_SAFE_HEADERS) bytes. */
size_t dp_cors_allow_headers(const char *requested, size_t len, char *out);

/* JSON-RPC error codes the gateway uses (server-defined range -32000..-32099 where the spec has
 * none). */
#define DP_RPC_INVALID_REQUEST (-32600)
#define DP_RPC_METHOD_NOT_FOUND (-32601)
#define DP_RPC_UPSTREAM_ERROR (-32002)
#define DP_RPC_UPSTREAM_TIMEOUT (-32003)
#define DP_RPC_LIMIT_EXCEEDED (-32005)

#endif
