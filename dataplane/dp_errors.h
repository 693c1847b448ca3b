/*
 * dp_errors: the gateway's own errors, one table. Each row is what a client sees (HTTP status,
 * JSON-RPC error code and message, in a JSON-RPC error body) and what a failover may make of it:
 *   retry  RETRY = another try (on another endpoint) may succeed; FINAL = it would fail the same way
 *          or the request itself is at fault.
 *   blame  EP = counts against the endpoint that caused it; NONE = the endpoint is not at fault.
 * Rows are only ever appended or reworded with care: integration tests and clients match on the
 * statuses, codes and messages.
 */
#ifndef PATHWAY_DP_ERRORS_H
#define PATHWAY_DP_ERRORS_H

#include "dp_rpc.h"

/* X(name, HTTP status, JSON-RPC code, retry, blame, message) */
#define DP_ERRORS(X)                                                                                                               \
    /* the request */                                                                                                              \
    X(NOT_FOUND, 404, DP_RPC_METHOD_NOT_FOUND, FINAL, NONE, "not found: use POST /v1/<service>")                                   \
    X(METHOD_NOT_ALLOWED, 405, DP_RPC_INVALID_REQUEST, FINAL, NONE, "method not allowed: use POST")                                \
    X(MISSING_SERVICE, 400, DP_RPC_INVALID_REQUEST, FINAL, NONE,                                                                   \
      "missing service: use POST /v1/<service> or the Target-Service-Id header")                                                   \
    X(UNKNOWN_SERVICE, 404, DP_RPC_METHOD_NOT_FOUND, FINAL, NONE, "unknown service")                                               \
    X(REQUEST_TOO_LARGE, 413, DP_RPC_INVALID_REQUEST, FINAL, NONE, "request body exceeds limits.max_request_body")                 \
    X(FRAMING_CL_AND_TE, 400, DP_RPC_INVALID_REQUEST, FINAL, NONE, "bad request: both Content-Length and Transfer-Encoding")       \
    X(FRAMING_DUPLICATE_CL, 400, DP_RPC_INVALID_REQUEST, FINAL, NONE, "bad request: more than one Content-Length header")          \
    X(FRAMING_NO_HOST, 400, DP_RPC_INVALID_REQUEST, FINAL, NONE, "bad request: HTTP/1.1 request without Host")                     \
    X(FRAMING_DUPLICATE_HOST, 400, DP_RPC_INVALID_REQUEST, FINAL, NONE, "bad request: more than one Host header")                  \
    X(FRAMING_UNREADABLE, 400, DP_RPC_INVALID_REQUEST, FINAL, NONE, "bad request: unreadable request head")                        \
    /* the gateway's own bounds (a retry would only add load) */                                                                   \
    X(SHUTTING_DOWN, 503, DP_RPC_LIMIT_EXCEEDED, FINAL, NONE, "shutting down")                                                     \
    X(QUEUE_FULL, 503, DP_RPC_LIMIT_EXCEEDED, FINAL, NONE, "too many requests: the gateway's queue is full")                       \
    X(QUEUE_TIMEOUT, 503, DP_RPC_LIMIT_EXCEEDED, FINAL, NONE, "too many requests: queue timeout")                                  \
    X(CLIENT_CLOSED, 499, DP_RPC_LIMIT_EXCEEDED, FINAL, NONE, "client closed the request")                                         \
    X(OUT_OF_MEMORY, 502, DP_RPC_UPSTREAM_ERROR, FINAL, NONE, "out of memory")                                                     \
    X(RESPONSE_TOO_LARGE, 502, DP_RPC_UPSTREAM_ERROR, FINAL, NONE, "upstream response exceeds limits.max_response_body")           \
    /* an endpoint failed: another may not */                                                                                      \
    X(UNRESOLVED, 502, DP_RPC_UPSTREAM_ERROR, RETRY, EP, "upstream host does not resolve")                                         \
    X(CONNECT_FAILED, 502, DP_RPC_UPSTREAM_ERROR, RETRY, EP, "upstream connect failed")                                            \
    X(UPSTREAM_CLOSED, 502, DP_RPC_UPSTREAM_ERROR, RETRY, EP, "upstream closed the connection")                                    \
    X(BAD_RESPONSE, 502, DP_RPC_UPSTREAM_ERROR, RETRY, EP, "bad response from upstream")                                           \
    X(HEAD_TOO_LARGE, 502, DP_RPC_UPSTREAM_ERROR, RETRY, EP, "upstream response head too large")                                   \
    X(BAD_CONTENT_LENGTH, 502, DP_RPC_UPSTREAM_ERROR, RETRY, EP, "bad content-length from upstream")                               \
    X(CONFLICTING_LENGTH, 502, DP_RPC_UPSTREAM_ERROR, RETRY, EP, "upstream sent conflicting Content-Length headers")               \
    X(LENGTH_AND_TE, 502, DP_RPC_UPSTREAM_ERROR, RETRY, EP, "upstream sent both Content-Length and Transfer-Encoding")             \
    X(BAD_CHUNKED, 502, DP_RPC_UPSTREAM_ERROR, RETRY, EP, "bad chunked encoding from upstream")                                    \
    X(CLOSED_MID_RESPONSE, 502, DP_RPC_UPSTREAM_ERROR, RETRY, EP, "upstream closed the connection mid-response")                   \
    X(UPSTREAM_TIMEOUT, 504, DP_RPC_UPSTREAM_TIMEOUT, RETRY, EP, "upstream timeout")                                               \
    X(COALESCED_FAILED, 502, DP_RPC_UPSTREAM_ERROR, FINAL, NONE,                                                                   \
      "upstream failed twice for identical requests in flight (coalesced)")                                                        \
    /* a write that may have arrived is never repeated (retry.unsafe_methods) */                                                   \
    X(UNSAFE_NOT_RETRIED, 502, DP_RPC_UPSTREAM_ERROR, FINAL, EP,                                                                   \
      "upstream closed the connection after the request was sent; not retried: the method is in retry.unsafe_methods")             \
    /* WebSocket upgrades (GET with Upgrade: websocket) */                                                                         \
    X(WS_NEEDS_HTTP1, 400, DP_RPC_INVALID_REQUEST, FINAL, NONE,                                                                    \
      "WebSocket needs HTTP/1.1: an HTTP/2 connection cannot upgrade; connect with HTTP/1.1")                                      \
    X(WS_BAD_HANDSHAKE, 400, DP_RPC_INVALID_REQUEST, FINAL, NONE,                                                                  \
      "bad WebSocket handshake: needs Connection: Upgrade, Sec-WebSocket-Version: 13 and a 24-character Sec-WebSocket-Key")        \
    X(WS_NOT_CONFIGURED, 501, DP_RPC_METHOD_NOT_FOUND, FINAL, NONE, "the service relays no WebSockets: no endpoint has a ws_url")  \
    X(WS_TOO_MANY, 503, DP_RPC_LIMIT_EXCEEDED, FINAL, NONE,                                                                        \
      "too many WebSockets: the service's websocket.max_connections are open")                                                     \
    X(WS_UPSTREAM_REFUSED, 502, DP_RPC_UPSTREAM_ERROR, RETRY, EP, "upstream refused the WebSocket handshake (no 101 answer)")      \
    X(WS_UPSTREAM_BAD_ACCEPT, 502, DP_RPC_UPSTREAM_ERROR, RETRY, EP,                                                               \
      "upstream WebSocket handshake failed: wrong Sec-WebSocket-Accept")                                                           \
    X(WS_UPSTREAM_BAD_ANSWER, 502, DP_RPC_UPSTREAM_ERROR, RETRY, EP,                                                               \
      "upstream WebSocket handshake failed: not an HTTP/1.1 upgrade to websocket")

typedef enum en_dp_error_t {
#define DP_ERROR_ENUM(name, status, code, retry, blame, msg) DP_ERR_##name,
    DP_ERRORS(DP_ERROR_ENUM)
#undef DP_ERROR_ENUM
        DP_ERR__COUNT
} dp_error_t;

typedef struct st_dp_error_info_t {
    const char *name;    /* the row's name, lowercase (logs, metrics) */
    int status;          /* HTTP status of the answer */
    int rpc_code;        /* JSON-RPC error.code */
    int retriable;       /* another try may succeed */
    int endpoint_fault;  /* counts against the endpoint that caused it */
    const char *message; /* JSON-RPC error.message */
} dp_error_info_t;

extern const dp_error_info_t dp_errors[DP_ERR__COUNT];

static inline const dp_error_info_t *dp_error(dp_error_t e)
{
    return &dp_errors[e];
}

/* The row that refuses a request with this framing (f != DP_FRAMING_OK). */
dp_error_t dp_framing_error(dp_framing_t f);

#endif
