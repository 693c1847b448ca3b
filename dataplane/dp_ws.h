/*
 * dp_ws: the WebSocket relay. A GET /v1/<service> (or /v1 + Target-Service-Id) carrying
 * `Upgrade: websocket` from an HTTP/1.1 client goes to an endpoint of the service that has a
 * ws_url: Pathway makes its own handshake with the endpoint (failing over to the next one when it
 * is refused), only then answers the client 101, and relays whole messages both ways (wslay) until
 * either side closes. Each connection lives on the worker that accepted it and holds the
 * generation it started with.
 *
 *   dp_ws_handshake.c  the upstream handshake's request and the check of its 101 answer (pure)
 *   dp_ws_target.c     an endpoint's ws_url built for connecting (address, TLS, request head)
 *   dp_ws.c            the relay: handshake with failover, then the tunnel
 *   dp_ws_admin.c      /stats and /metrics
 */
#ifndef PATHWAY_DP_WS_H
#define PATHWAY_DP_WS_H

#include <stddef.h>
#include <stdint.h>

/* --- dp_ws_handshake.c (no h2o state: unit tested and fuzzed) ------------------------------- */

/* Why an upstream's handshake answer was refused (pathway_websocket_handshake_failures_total{reason}). */
#define DP_WS_FAILURES(X)                                                                                                          \
    X(CONNECT, "connect_failed")                                                                                                   \
    X(CLOSED, "upstream_closed")                                                                                                   \
    X(TIMEOUT, "timeout")                                                                                                          \
    X(STATUS, "not_101")                                                                                                           \
    X(BAD_ANSWER, "bad_answer")                                                                                                    \
    X(BAD_ACCEPT, "bad_accept")
typedef enum en_dp_ws_failure_t {
#define DP_WS_FAILURE_ENUM(n, s) DP_WS_FAIL_##n,
    DP_WS_FAILURES(DP_WS_FAILURE_ENUM)
#undef DP_WS_FAILURE_ENUM
        DP_WS_FAIL__COUNT
} dp_ws_failure_t;
extern const char *const dp_ws_failure_names[DP_WS_FAIL__COUNT];

/* What dp_ws_parse_answer made of the bytes read so far. */
typedef enum en_dp_ws_answer_t {
    DP_WS_ANSWER_OK = 0,     /* a 101 upgrading to websocket with the expected accept key */
    DP_WS_ANSWER_INCOMPLETE, /* the head has not ended yet (read more, bounded by DP_WS_MAX_ANSWER) */
    DP_WS_ANSWER_STATUS,     /* a complete head with another status (the endpoint refused) */
    DP_WS_ANSWER_BAD, /* not HTTP/1.1, no Upgrade: websocket / Connection: upgrade, an extension we did not offer, or too large */
    DP_WS_ANSWER_BAD_ACCEPT, /* a 101 whose Sec-WebSocket-Accept is not the one our key asks for */
} dp_ws_answer_t;

#define DP_WS_MAX_ANSWER 16384 /* bytes of an upstream's answer head */
#define DP_WS_KEY_LEN 24       /* base64 of 16 random bytes */
#define DP_WS_ACCEPT_LEN 28    /* base64 of a SHA-1 */

/* The answer to a handshake whose Sec-WebSocket-Key was `key` (DP_WS_KEY_LEN chars), in the first
 * `len` bytes of buf (frames may follow the head). On OK, *headlen is the head's length and
 * *protocol / *protocol_len the Sec-WebSocket-Protocol the endpoint chose (NULL / 0 when none;
 * points into buf); *status is the answer's status when there is a complete head (else 0). Borrows
 * everything; no allocation. */
dp_ws_answer_t dp_ws_parse_answer(const char *buf, size_t len, const char *key, size_t *headlen, int *status, const char **protocol,
                                  size_t *protocol_len);

/* Sec-WebSocket-Accept for `key` (RFC 6455 4.2.2) into out (DP_WS_ACCEPT_LEN + 1 bytes, NUL-terminated). */
void dp_ws_accept_key(const char *key, size_t key_len, char *out);

/* A fresh Sec-WebSocket-Key (16 random bytes, base64) into out (DP_WS_KEY_LEN + 1 bytes). */
void dp_ws_make_key(char *out);

/* The head of the upgrade request to an endpoint: `prefix` (the endpoint's fixed part, request line
 * to its last header) then upgrade, connection, key, version, the client's subprotocols when it
 * gave some (protocols may be NULL) and the blank line. Returns a malloc'd, NUL-terminated string with its length
 * in *len, NULL when out of memory. Caller frees. */
char *dp_ws_request_head(const char *prefix, size_t prefix_len, const char *key, const char *protocols, size_t protocols_len,
                         size_t *len);

#endif
