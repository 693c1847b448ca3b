/*
 * What an upstream answer means: the built-in table of JSON-RPC error classes and the rules
 * around it (see dp_classify.h). The table is documented, row for row, in docs/dataplane.md.
 */
#include "dp_classify.h"
#include <ctype.h>
#include <jansson.h>
#include <string.h>

/* Tried in this order; the first match wins. Client errors come first, so a revert whose message
 * happens to say "exceeded" is still the client's; missing data before rate limits, since a
 * lagging node's "header not found" is the more precise reading. */
static const dp_classify_rule_t builtin_[] = {
    {1, 3, NULL, DP_CLASS_CLIENT_ERROR},                /* execution reverted */
    {1, -32600, NULL, DP_CLASS_CLIENT_ERROR},           /* invalid request */
    {1, -32602, NULL, DP_CLASS_CLIENT_ERROR},           /* invalid params */
    {0, 0, "header not found", DP_CLASS_MISSING_DATA},  /* geth, a block the node has not seen */
    {0, 0, "missing trie node", DP_CLASS_MISSING_DATA}, /* state the node pruned or lacks */
    {0, 0, "unknown block", DP_CLASS_MISSING_DATA},     /* erigon, nethermind */
    {1, -32005, NULL, DP_CLASS_RATE_LIMITED},           /* EIP-1474 "limit exceeded" */
    {1, 429, NULL, DP_CLASS_RATE_LIMITED},              /* providers that put the HTTP status in the code */
    {0, 0, "rate limit", DP_CLASS_RATE_LIMITED},        /* "rate limited", "rate limit reached" */
    {0, 0, "too many requests", DP_CLASS_RATE_LIMITED}, /* the 429 reason phrase in a 200 */
    {0, 0, "exceeded", DP_CLASS_RATE_LIMITED},          /* "daily request count exceeded", "capacity exceeded" */
    {1, -32603, NULL, DP_CLASS_SERVER_ERROR},           /* internal error */
};

/* An error message longer than this is matched on its first bytes only: the words that classify
 * an error come first, and a hostile upstream cannot make matching cost more than this per row. */
#define MESSAGE_SCAN_MAX 512

const dp_classify_rule_t *dp_classify_builtin(size_t *n)
{
    *n = sizeof(builtin_) / sizeof(builtin_[0]);
    return builtin_;
}

const char *dp_class_name(dp_class_t cls)
{
    static const char *const names[DP_CLASS_COUNT] = {"ok",           "client_error", "rate_limited",
                                                      "missing_data", "server_error", "other_error"};
    return (unsigned)cls < DP_CLASS_COUNT ? names[cls] : "?";
}

/* The error member of a top-level object, as much as classifying needs. */
typedef struct st_rpc_error_t {
    int has_code;
    int32_t code;
    char message[MESSAGE_SCAN_MAX]; /* lowercased, NUL-free prefix of error.message */
    size_t message_len;
    int has_message;
} rpc_error_t;

/* Finds a top-level "error" in body. Returns 1 and fills *e when there is one (an object, or a
 * bare string as JSON-RPC 1.0 servers send), else 0. */
static int read_error(const char *body, size_t len, rpc_error_t *e)
{
    json_t *doc = json_loadb(body, len, 0, NULL);
    if (doc == NULL)
        return 0;
    json_t *err = json_is_object(doc) ? json_object_get(doc, "error") : NULL;
    const char *msg = NULL;
    size_t msglen = 0;
    int found = 0;
    memset(e, 0, sizeof(*e));
    if (json_is_object(err)) {
        json_t *code = json_object_get(err, "code");
        json_t *m = json_object_get(err, "message");
        if (json_is_integer(code) && json_integer_value(code) >= INT32_MIN && json_integer_value(code) <= INT32_MAX) {
            e->has_code = 1;
            e->code = (int32_t)json_integer_value(code);
        }
        if (json_is_string(m)) {
            msg = json_string_value(m);
            msglen = json_string_length(m);
        }
        found = 1;
    } else if (json_is_string(err)) {
        msg = json_string_value(err);
        msglen = json_string_length(err);
        found = 1;
    }
    if (msg != NULL) {
        e->has_message = 1;
        for (size_t i = 0; i < msglen && e->message_len < sizeof(e->message); i++)
            if (msg[i] != '\0') /* a NUL inside a JSON string would end the needle search early */
                e->message[e->message_len++] = (char)tolower((unsigned char)msg[i]);
    }
    json_decref(doc);
    return found;
}

/* Whether the lowercased message contains needle, ignoring ASCII case. */
static int message_contains(const rpc_error_t *e, const char *needle)
{
    size_t n = strlen(needle);
    if (n == 0)
        return 1;
    if (n > e->message_len)
        return 0;
    int first = tolower((unsigned char)needle[0]);
    for (size_t i = 0; i + n <= e->message_len; i++) {
        if (e->message[i] != first)
            continue;
        size_t k = 1;
        while (k < n && e->message[i + k] == tolower((unsigned char)needle[k]))
            k++;
        if (k == n)
            return 1;
    }
    return 0;
}

static int rule_matches(int has_code, int32_t code, const char *message, const rpc_error_t *e)
{
    if (has_code && (!e->has_code || e->code != code))
        return 0;
    if (message != NULL && (!e->has_message || !message_contains(e, message)))
        return 0;
    return 1;
}

static dp_class_t from_cfg_class(int c)
{
    switch (c) {
    case CFG_RPC_RATE_LIMITED:
        return DP_CLASS_RATE_LIMITED;
    case CFG_RPC_MISSING_DATA:
        return DP_CLASS_MISSING_DATA;
    case CFG_RPC_SERVER_ERROR:
        return DP_CLASS_SERVER_ERROR;
    default:
        return DP_CLASS_CLIENT_ERROR;
    }
}

/* The class of a JSON-RPC error by the operator's rows, then the built-in table; OTHER_ERROR when
 * nothing matches. */
static dp_class_t class_of(const rpc_error_t *e, const cfg_rpc_error_t *rows, size_t nrows)
{
    for (size_t i = 0; i < nrows; i++)
        if (rule_matches(rows[i].has_code, rows[i].code, rows[i].message, e))
            return from_cfg_class(rows[i].rpc_class);
    for (size_t i = 0; i < sizeof(builtin_) / sizeof(builtin_[0]); i++)
        if (rule_matches(builtin_[i].has_code, builtin_[i].code, builtin_[i].message, e))
            return builtin_[i].cls;
    return DP_CLASS_OTHER_ERROR;
}

static int rpc_reason(dp_class_t cls)
{
    switch (cls) {
    case DP_CLASS_RATE_LIMITED:
        return CFG_RETRY_ON_RPC_RATE_LIMITED;
    case DP_CLASS_MISSING_DATA:
        return CFG_RETRY_ON_RPC_MISSING_DATA;
    case DP_CLASS_SERVER_ERROR:
        return CFG_RETRY_ON_RPC_SERVER_ERROR;
    default:
        return -1;
    }
}

/* Whether the body may hold a top-level "error" member: only then is it parsed. An array (a
 * batch's answer) is never inspected. A key can be written `"error"` or with \u escapes, so a body
 * with neither cannot have one; this is what keeps an ok result to one scan. */
static int may_hold_error(const char *body, size_t len)
{
    size_t i = 0;
    while (i < len && (body[i] == ' ' || body[i] == '\t' || body[i] == '\r' || body[i] == '\n'))
        i++;
    if (i == len || body[i] != '{')
        return 0;
    /* memchr, not memmem: glibc's memmem sets up a shift table per call, which cost more than the
     * rest of the classification on a typical 50-byte answer. The anchor is the 'o' of "error": the
     * one letter of it that hex digits, "jsonrpc", "id" and "result" leave rare, where a quote
     * anchor would stop at every string. */
    const char *start = body + i, *end = body + len, *p = start;
    if (memchr(p, '\\', (size_t)(end - p)) != NULL)
        return 1; /* an escape: a key may be spelled with \u (a stray backslash only costs a parse) */
    while ((p = memchr(p, 'o', (size_t)(end - p))) != NULL) {
        if (p - start >= 4 && end - p >= 3 && memcmp(p - 4, "\"error\"", 7) == 0)
            return 1;
        p++;
    }
    return 0;
}

static dp_verdict_t classify(int status, const char *body, size_t len, const cfg_rpc_error_t *rows, size_t nrows, int scan)
{
    dp_verdict_t v = {DP_CLASS_OK, -1, 0, 0};
    if (status == 429) {
        v.cls = DP_CLASS_RATE_LIMITED;
        v.reason = CFG_RETRY_ON_HTTP_429;
        return v;
    }
    if (body != NULL && len <= DP_CLASSIFY_MAX_BODY && (!scan || may_hold_error(body, len))) {
        rpc_error_t e;
        if (read_error(body, len, &e)) {
            v.has_code = e.has_code;
            v.code = e.code;
            dp_class_t cls = class_of(&e, rows, nrows);
            if (cls != DP_CLASS_OTHER_ERROR) {
                v.cls = cls;
                v.reason = rpc_reason(cls);
                return v;
            }
            if (status >= 200 && status <= 299) {
                v.cls = DP_CLASS_OTHER_ERROR;
                return v;
            }
            /* an error no row knows, in a 5xx (or another status): the status decides */
        }
    }
    if (status >= 500 && status <= 599) {
        v.cls = DP_CLASS_SERVER_ERROR;
        v.reason = CFG_RETRY_ON_HTTP_5XX;
    } else if (status < 200 || status > 299) {
        v.cls = DP_CLASS_OTHER_ERROR;
    }
    return v;
}

dp_verdict_t dp_classify(int status, const char *body, size_t len, const cfg_rpc_error_t *rows, size_t nrows)
{
    return classify(status, body, len, rows, nrows, 1);
}

dp_verdict_t dp_classify_parsed(int status, const char *body, size_t len, const cfg_rpc_error_t *rows, size_t nrows)
{
    /* the same rules without the cheap scan: every body that is not an array is parsed */
    size_t i = 0;
    while (body != NULL && i < len && (body[i] == ' ' || body[i] == '\t' || body[i] == '\r' || body[i] == '\n'))
        i++;
    if (body != NULL && i < len && body[i] == '[')
        body = NULL;
    return classify(status, body, len, rows, nrows, 0);
}
