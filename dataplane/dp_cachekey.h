/*
 * dp_cachekey: what the response cache needs to know of a JSON-RPC request and of its answer,
 * read without an event loop: the parts of a request object (id, jsonrpc, method, params, as spans
 * of the body), its cache class after its params (a block tag makes a by-block request realtime),
 * the canonical form of its params (the cache key), the items of a batch, and the parts of an
 * answer (id and jsonrpc to replace, result / null / error, the block number of a by-hash answer).
 *
 * Outside input goes through here, so it has a fuzz target (tests/fuzz/fuzz_dp_cachekey.c) whose
 * oracle is jansson: the scanner here must agree with a full parse wherever it answers.
 *
 * The common request is read with one pass of a small scanner and no allocation; params objects
 * (eth_call, eth_getLogs) are sorted by the scanner too (small ones, on the stack). Only params with
 * string escapes, non-ASCII bytes, reals, integers past 18 digits, a member named twice, or objects
 * too large or deep to sort on the stack are canonicalised through jansson.
 */
#ifndef PATHWAY_DP_CACHEKEY_H
#define PATHWAY_DP_CACHEKEY_H

#include <stddef.h>
#include <stdint.h>
#include "cfg.h"

/* A span of the body (no copy). len 0 with base NULL: absent. */
typedef struct st_dp_span_t {
    const char *base;
    size_t len;
} dp_span_t;

/* One JSON-RPC request object, as the cache sees it. */
typedef struct st_dp_ck_req_t {
    dp_span_t item;    /* the whole object, from '{' to '}' */
    dp_span_t id;      /* the raw bytes of the id value: a string with its quotes, a number, or null; absent: a notification */
    dp_span_t jsonrpc; /* the raw bytes of the jsonrpc value (with its quotes); absent when the request has none */
    dp_span_t method;  /* the method name, without quotes (a name with escapes is not read: DP_CK_BAD) */
    dp_span_t params;  /* the raw params value (an array or object); absent when the request has none */
    cfg_cache_class_t cls; /* after the table, the override (see dp_ck_classify) and the params */
    int has_block;         /* CFG_CACHE_BY_BLOCK with numbered blocks: `block` is the highest one named */
    uint64_t block;
    unsigned _params_flags; /* private: what dp_ck_parse saw in params, so that dp_ck_key needs no second scan (0 in a
                             * request made by hand: dp_ck_key scans) */
} dp_ck_req_t;

typedef enum en_dp_ck_result_t {
    DP_CK_OK = 0,  /* *out filled */
    DP_CK_BAD,     /* not one JSON-RPC request object the cache can key (invalid JSON, a method with escapes, an id
                    * that is an object or array, duplicate keys among id/jsonrpc/method/params, trailing bytes) */
} dp_ck_result_t;

/* Reads one request object at body[0..len) (blanks around it allowed). The class is left
 * CFG_CACHE_NEVER: dp_ck_classify sets it. No allocation. */
dp_ck_result_t dp_ck_parse(const char *body, size_t len, dp_ck_req_t *out);

/* Sets req->cls (and has_block, block) from the method and params: the built-in table
 * (cfg_rpc_method_find), overridden by `ov` when not NULL and its class is set (an override with
 * enabled false makes it CFG_CACHE_NEVER). A by-block request naming a tag (latest, pending, safe,
 * finalized, earliest), an EIP-1898 {blockHash}, or no block is CFG_CACHE_REALTIME; eth_getLogs is by
 * block only with numeric fromBlock and toBlock (else realtime; a filter with blockHash is
 * CFG_CACHE_BY_HASH). params that are not what the method takes (not an array, a block that is
 * neither a tag nor a hex quantity) make it CFG_CACHE_NEVER. */
void dp_ck_classify(dp_ck_req_t *req, const cfg_cache_method_t *ov);

/* The cache key of a request of service `svc`: svc, '\0', method, '\0', canonical params (compact JSON,
 * object keys sorted, as jansson's json_dumps(JSON_COMPACT | JSON_SORT_KEYS | JSON_ENCODE_ANY) writes
 * them; "" when absent). Never the id. Written to out[0..cap); returns its length, which may be more
 * than cap (nothing useful written: call again with that much room), or 0 when params are not
 * valid JSON. */
size_t dp_ck_key(const char *svc, size_t svclen, const dp_ck_req_t *req, char *out, size_t cap);

/* The same key computed only through jansson (the fuzz target's oracle). Caller frees; NULL when
 * params are not valid JSON. */
char *dp_ck_key_parsed(const char *svc, size_t svclen, const dp_ck_req_t *req, size_t *len);

/* Whether body[0..len) is a JSON array (blanks around it allowed); when it is, calls fn for each
 * element's span in order (an element that is not an object still gets a call). Stops and returns -1
 * when fn returns non-zero or the array is not valid JSON (checked whole before fn is first called:
 * fn never hears of items of an invalid body); else the number of elements. No allocation. Returns
 * -2 when the body is not an array at all. */
long dp_ck_array(const char *body, size_t len, int (*fn)(void *ctx, size_t index, dp_span_t elem), void *ctx);

/* An upstream's answer to one request. */
typedef enum en_dp_ck_kind_t {
    DP_CK_ANSWER_INVALID = 0, /* not one JSON-RPC response object with an id */
    DP_CK_ANSWER_RESULT,      /* a result that is not null */
    DP_CK_ANSWER_NULL,        /* "result": null (a receipt not yet mined): never cached */
    DP_CK_ANSWER_ERROR,       /* an "error" member: never cached */
} dp_ck_kind_t;

typedef struct st_dp_ck_answer_t {
    dp_ck_kind_t kind;
    dp_span_t id;      /* the id value's raw bytes in the answer */
    dp_span_t jsonrpc; /* the jsonrpc value's raw bytes (with quotes); absent when the answer has none */
    int has_block;     /* the result is an object with "blockNumber" (a receipt, a transaction) or else "number"
                        * (a block) as a hex quantity: `block` is it */
    uint64_t block;
} dp_ck_answer_t;

/* Reads one answer object at body[0..len) (blanks around it allowed). No allocation. */
void dp_ck_answer(const char *body, size_t len, dp_ck_answer_t *out);

/* A hex quantity "0x..." (with its quotes, at most 16 digits) as a number. Returns 0, or -1 when
 * the span is not one. */
int dp_ck_quantity(dp_span_t v, uint64_t *out);

#endif
