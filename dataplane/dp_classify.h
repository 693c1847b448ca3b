/*
 * dp_classify: what an upstream's answer means for failover (issue 10). A pure function of the
 * HTTP status, the response body (when small), whether the request was a batch and the service's
 * operator rows (`rpc_errors`): no event loop, no state, no allocation unless the body holds an
 * "error" key. Outside input reaches it, so it has a fuzz target (tests/fuzz/fuzz_dp_classify.c).
 *
 * The built-in classes are one table in dp_classify.c, documented in docs/dataplane.md
 * ("Classifying upstream errors"); the unit test checks the two agree.
 */
#ifndef PATHWAY_DP_CLASSIFY_H
#define PATHWAY_DP_CLASSIFY_H

#include <stddef.h>
#include <stdint.h>
#include "cfg.h"

/* Bodies longer than this are not inspected (a caller passes NULL for them, or this function
 * ignores them): an error answer is small, and a large answer is a result already streaming. */
#define DP_CLASSIFY_MAX_BODY (64 * 1024)

typedef enum en_dp_class_t {
    DP_CLASS_OK = 0,       /* a 2xx answer without a top-level JSON-RPC error (a batch's array always) */
    DP_CLASS_CLIENT_ERROR, /* the request is at fault (a revert, bad params): returned as is, never retried and
                            * never counted against the endpoint */
    DP_CLASS_RATE_LIMITED, /* HTTP 429, or a JSON-RPC error classed rate_limited */
    DP_CLASS_MISSING_DATA, /* a lagging node lacks the block or state */
    DP_CLASS_SERVER_ERROR, /* HTTP 5xx, or a JSON-RPC error classed server_error */
    DP_CLASS_OTHER_ERROR,  /* an error of no known class (a JSON-RPC error no row matches, an HTTP status other than
                            * 2xx, 429 and 5xx): returned as is, never retried */
    DP_CLASS_COUNT
} dp_class_t;

/* A classified answer. */
typedef struct st_dp_verdict_t {
    dp_class_t cls; /* what the answer is */
    /* the retry.retry_on entry that names this failure (a cfg_retry_on_t: http_429, http_5xx,
     * rpc_rate_limited, rpc_missing_data, rpc_server_error), or -1 when no setting retries it */
    int reason;
    int has_code; /* the answer held a JSON-RPC error with an integer code */
    int32_t code; /* that code (for logs), when has_code; 0 otherwise */
} dp_verdict_t;

/* Classifies one upstream answer.
 * - status: the HTTP status.
 * - body, len: the whole response body when at most DP_CLASSIFY_MAX_BODY bytes, else NULL (a
 *   longer len is treated as NULL too). Borrowed.
 * - rows, nrows: the service's rpc_errors, checked first, in order; then the built-in table.
 * The rules, in order: 429 is rate_limited (reason http_429); a top-level "error" member that a
 * row matches takes the row's class (reason rpc_*); an unmatched one in a 2xx is other_error; a 5xx
 * is server_error (http_5xx); another status outside 2xx is other_error; else ok.
 * An array body (a batch's answer) is never inspected: an item's error never makes a batch a
 * failure, only its HTTP status or a single error object in place of the array does. So whether
 * the request was a batch needs no argument: the judgement is on what came back.
 * Never fails; reads no more than len bytes; parses JSON (with jansson) only when the body is an
 * object holding the bytes "error" in quotes or a \u escape, so an ok result costs one scan. */
dp_verdict_t dp_classify(int status, const char *body, size_t len, const cfg_rpc_error_t *rows, size_t nrows);

/* The same rules with every non-array body parsed (no cheap scan): the fuzz target's oracle, which
 * dp_classify must always agree with. */
dp_verdict_t dp_classify_parsed(int status, const char *body, size_t len, const cfg_rpc_error_t *rows, size_t nrows);

/* Whether a verdict may be retried under a retry.retry_on bit set (cfg_retry_t.retry_on). */
static inline int dp_verdict_retriable(dp_verdict_t v, uint32_t retry_on)
{
    return v.reason >= 0 && ((retry_on >> v.reason) & 1) != 0;
}

/* The class's name for metrics and logs ("ok", "client_error", "rate_limited", "missing_data",
 * "server_error", "other_error"); static. */
const char *dp_class_name(dp_class_t cls);

/* One row of the built-in table (for the docs check and tests). */
typedef struct st_dp_classify_rule_t {
    int has_code;        /* match error.code == code */
    int32_t code;        /* the code, when has_code */
    const char *message; /* match when error.message contains it (ASCII case-insensitive); NULL = any */
    dp_class_t cls;      /* the class of a match */
} dp_classify_rule_t;

/* The built-in rows in the order they are tried; *n gets their count. Static. */
const dp_classify_rule_t *dp_classify_builtin(size_t *n);

#endif
