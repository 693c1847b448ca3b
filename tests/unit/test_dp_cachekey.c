/* dp_cachekey and the method table: what the response cache reads of requests and answers. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "cfg_rpcmethods.h"
#include "dp_cachekey.h"

/* the _set bit of `class` in a cache.methods entry */
#define OV_CLASS_SET CFG_CACHE_METHOD_HAS_CLASS

static dp_ck_result_t parse(const char *s, dp_ck_req_t *req)
{
    return dp_ck_parse(s, strlen(s), req);
}

static int span_is(dp_span_t v, const char *s)
{
    if (s == NULL)
        return v.base == NULL && v.len == 0;
    return v.base != NULL && v.len == strlen(s) && memcmp(v.base, s, v.len) == 0;
}

/* The class of a request body (CFG_CACHE_NEVER also when it does not parse); *block gets the block
 * (or UINT64_MAX when has_block is 0). */
static int cls_ov(const char *s, const cfg_cache_method_t *ov, uint64_t *block)
{
    dp_ck_req_t req;
    if (parse(s, &req) != DP_CK_OK)
        return -1;
    dp_ck_classify(&req, ov);
    if (block != NULL)
        *block = req.has_block ? req.block : UINT64_MAX;
    if (req.has_block && req.cls != CFG_CACHE_BY_BLOCK)
        fail_msg("has_block on a request of class %d", req.cls);
    return req.cls;
}

static int cls(const char *s, uint64_t *block)
{
    return cls_ov(s, NULL, block);
}

/* A request with this method and params (a JSON text, or NULL for none). */
static const char *req_of(const char *method, const char *params)
{
    static char buf[4096];
    if (params != NULL)
        snprintf(buf, sizeof(buf), "{\"jsonrpc\":\"2.0\",\"id\":7,\"method\":\"%s\",\"params\":%s}", method, params);
    else
        snprintf(buf, sizeof(buf), "{\"jsonrpc\":\"2.0\",\"id\":7,\"method\":\"%s\"}", method);
    return buf;
}

/* The key of a request body as a printable string ('\0' shown as '|'); NULL when it does not parse or
 * its params are not JSON. Checks that dp_ck_key and dp_ck_key_parsed agree, and that a short buffer
 * gets the length needed. Caller frees. */
static char *key_of(const char *svc, const char *s)
{
    dp_ck_req_t req;
    if (parse(s, &req) != DP_CK_OK)
        return NULL;
    char small[4];
    size_t need = dp_ck_key(svc, strlen(svc), &req, small, sizeof(small));
    size_t plen = 0;
    char *parsed = dp_ck_key_parsed(svc, strlen(svc), &req, &plen);
    if (need == 0) {
        assert_null(parsed);
        return NULL;
    }
    assert_non_null(parsed);
    char *out = malloc(need + 1);
    assert_int_equal(dp_ck_key(svc, strlen(svc), &req, out, need), need);
    assert_int_equal(need, plen);
    assert_memory_equal(out, parsed, need);
    free(parsed);
    for (size_t i = 0; i != need; ++i)
        if (out[i] == '\0')
            out[i] = '|';
    out[need] = '\0';
    return out;
}

static void assert_key(const char *svc, const char *body, const char *want)
{
    char *k = key_of(svc, body);
    if (want == NULL) {
        assert_null(k);
        return;
    }
    assert_non_null(k);
    assert_string_equal(k, want);
    free(k);
}

static void test_table(void **state)
{
    size_t n = 0;
    const cfg_rpc_method_t *rows = cfg_rpc_methods(&n);
    assert_true(n >= 28);
    for (size_t i = 0; i != n; ++i) {
        if (i != 0 && strcmp(rows[i - 1].name, rows[i].name) >= 0)
            fail_msg("table not sorted at %s", rows[i].name);
        assert_ptr_equal(cfg_rpc_method_find(rows[i].name, strlen(rows[i].name)), &rows[i]);
        if (rows[i].cls == CFG_CACHE_BY_BLOCK)
            assert_true(rows[i].block_param >= 0 || rows[i].block_param == CFG_BLOCK_PARAM_FILTER);
        assert_true(rows[i].cls != CFG_CACHE_NEVER);
    }
    static const struct {
        const char *name;
        cfg_cache_class_t cls;
        int block_param;
    } want[] = {
        {"eth_chainId", CFG_CACHE_STATIC, 0},
        {"net_version", CFG_CACHE_STATIC, 0},
        {"eth_blockNumber", CFG_CACHE_REALTIME, 0},
        {"eth_gasPrice", CFG_CACHE_REALTIME, 0},
        {"eth_maxPriorityFeePerGas", CFG_CACHE_REALTIME, 0},
        {"eth_blobBaseFee", CFG_CACHE_REALTIME, 0},
        {"eth_syncing", CFG_CACHE_REALTIME, 0},
        {"net_peerCount", CFG_CACHE_REALTIME, 0},
        {"eth_feeHistory", CFG_CACHE_REALTIME, 0},
        {"web3_clientVersion", CFG_CACHE_REALTIME, 0},
        {"eth_getBlockByNumber", CFG_CACHE_BY_BLOCK, 0},
        {"eth_getBalance", CFG_CACHE_BY_BLOCK, 1},
        {"eth_getCode", CFG_CACHE_BY_BLOCK, 1},
        {"eth_getStorageAt", CFG_CACHE_BY_BLOCK, 2},
        {"eth_getTransactionCount", CFG_CACHE_BY_BLOCK, 1},
        {"eth_call", CFG_CACHE_BY_BLOCK, 1},
        {"eth_getLogs", CFG_CACHE_BY_BLOCK, CFG_BLOCK_PARAM_FILTER},
        {"eth_getBlockTransactionCountByNumber", CFG_CACHE_BY_BLOCK, 0},
        {"eth_getBlockReceipts", CFG_CACHE_BY_BLOCK, 0},
        {"eth_getTransactionByBlockNumberAndIndex", CFG_CACHE_BY_BLOCK, 0},
        {"eth_getUncleCountByBlockNumber", CFG_CACHE_BY_BLOCK, 0},
        {"eth_getProof", CFG_CACHE_BY_BLOCK, 2},
        {"eth_estimateGas", CFG_CACHE_BY_BLOCK, 1},
        {"eth_getBlockByHash", CFG_CACHE_BY_HASH, 0},
        {"eth_getTransactionByHash", CFG_CACHE_BY_HASH, 0},
        {"eth_getTransactionReceipt", CFG_CACHE_BY_HASH, 0},
        {"eth_getBlockTransactionCountByHash", CFG_CACHE_BY_HASH, 0},
        {"eth_getTransactionByBlockHashAndIndex", CFG_CACHE_BY_HASH, 0},
    };
    for (size_t i = 0; i != sizeof(want) / sizeof(want[0]); ++i) {
        const cfg_rpc_method_t *r = cfg_rpc_method_find(want[i].name, strlen(want[i].name));
        if (r == NULL)
            fail_msg("%s not in the table", want[i].name);
        assert_string_equal(r->name, want[i].name);
        assert_int_equal(r->cls, want[i].cls);
        if (r->cls == CFG_CACHE_BY_BLOCK)
            assert_int_equal(r->block_param, want[i].block_param);
    }
    /* writes, filters, subscriptions and anything else: not in the table */
    const char *never[] = {"eth_sendRawTransaction",
                           "eth_sendTransaction",
                           "eth_newFilter",
                           "eth_getFilterChanges",
                           "eth_subscribe",
                           "eth_unsubscribe",
                           "eth_newBlockFilter",
                           "eth_uninstallFilter",
                           "ETH_CHAINID",
                           "eth_chainid",
                           "eth_chainId ",
                           "eth_chainI",
                           "",
                           "zzz",
                           "eth_"};
    for (size_t i = 0; i != sizeof(never) / sizeof(never[0]); ++i)
        assert_null(cfg_rpc_method_find(never[i], strlen(never[i])));
    assert_null(cfg_rpc_method_find("eth_chainId\0x", 13)); /* the length counts, not a NUL */
    assert_non_null(cfg_rpc_method_find("eth_chainIdXX", 11));
}

static void test_parse_spans(void **state)
{
    dp_ck_req_t req;
    const char *s = " \r\n\t{ \"jsonrpc\" : \"2.0\" , \"id\" : \"a\\\"b\", \"method\":\"eth_getBalance\",\"params\":[\"0xab\", "
                    "\"latest\"] ,\"extra\":{\"method\":1}} \n";
    assert_int_equal(parse(s, &req), DP_CK_OK);
    assert_true(span_is(req.jsonrpc, "\"2.0\""));
    assert_true(span_is(req.id, "\"a\\\"b\""));
    assert_true(span_is(req.method, "eth_getBalance"));
    assert_true(span_is(req.params, "[\"0xab\", \"latest\"]"));
    assert_ptr_equal(req.item.base, strchr(s, '{'));
    assert_int_equal(req.item.base[req.item.len - 1], '}');
    assert_int_equal(req.cls, CFG_CACHE_NEVER); /* classify sets it */

    /* a notification, no params, no jsonrpc */
    assert_int_equal(parse("{\"method\":\"eth_chainId\"}", &req), DP_CK_OK);
    assert_true(span_is(req.id, NULL));
    assert_true(span_is(req.jsonrpc, NULL));
    assert_true(span_is(req.params, NULL));
    assert_true(span_is(req.method, "eth_chainId"));
    /* ids: numbers and null */
    assert_int_equal(parse("{\"id\":-1.5e3,\"method\":\"m\"}", &req), DP_CK_OK);
    assert_true(span_is(req.id, "-1.5e3"));
    assert_int_equal(parse("{\"id\":null,\"method\":\"m\"}", &req), DP_CK_OK);
    assert_true(span_is(req.id, "null"));
    assert_int_equal(parse("{\"id\":0,\"method\":\"\"}", &req), DP_CK_OK);
    assert_true(span_is(req.method, ""));
    /* non-ASCII in values, escapes in unknown values, a surrogate pair */
    assert_int_equal(parse("{\"method\":\"m\",\"x\":\"h\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80\\ud83d\\ude00\\u0000\"}", &req),
                     DP_CK_OK);
    /* 64 levels nest; 65 do not */
    char deep[512];
    int d = 0;
    d += snprintf(deep + d, sizeof(deep) - d, "{\"method\":\"m\",\"params\":");
    for (int i = 0; i < 63; ++i)
        deep[d++] = '[';
    for (int i = 0; i < 63; ++i)
        deep[d++] = ']';
    deep[d++] = '}';
    deep[d] = '\0';
    assert_int_equal(parse(deep, &req), DP_CK_OK);
    memmove(deep + 24, deep + 23, strlen(deep + 23) + 1);
    deep[23] = '[';
    char *close = strrchr(deep, '}');
    memmove(close + 1, close, strlen(close) + 1);
    *close = ']';
    assert_int_equal(parse(deep, &req), DP_CK_BAD);
}

static void test_parse_bad(void **state)
{
    static const char *bad[] = {
        "", "   ", "[{\"method\":\"m\"}]",      /* a batch: dp_ck_array */
        "\"method\"",                           /* not an object */
        "{}",                                   /* no method */
        "{\"id\":1}",                           /* no method */
        "{\"method\":\"m\"} x",                 /* trailing bytes */
        "{\"method\":\"m\"}{}",                 /* two objects */
        "{\"method\":\"m\"",                    /* cut */
        "{\"method\":\"m\",}",                  /* trailing comma */
        "{\"method\" \"m\"}",                   /* no colon */
        "{\"method\":\"m\" \"id\":1}",          /* no comma */
        "{'method':'m'}",                       /* single quotes */
        "{method:\"m\"}",                       /* bare name */
        "{\"method\":1}",                       /* not a string */
        "{\"method\":null}",                    /* not a string */
        "{\"method\":\"eth_c\\u0068ainId\"}",   /* a method with escapes is not read */
        "{\"m\\u0065thod\":\"eth_chainId\"}",   /* an escaped member name might be one of ours */
        "{\"method\":\"a\",\"method\":\"b\"}",  /* duplicates */
        "{\"id\":1,\"id\":2,\"method\":\"m\"}", /* duplicates */
        "{\"jsonrpc\":\"2.0\",\"jsonrpc\":\"2.0\",\"method\":\"m\"}", "{\"params\":[],\"method\":\"m\",\"params\":[]}",
        "{\"id\":{},\"method\":\"m\"}", /* an id that is an object, an array or a bool */
        "{\"id\":[1],\"method\":\"m\"}", "{\"id\":true,\"method\":\"m\"}", "{\"id\":false,\"method\":\"m\"}",
        /* strings */
        "{\"method\":\"m\",\"x\":\"a\nb\"}",             /* a control character */
        "{\"method\":\"m\",\"x\":\"a\tb\"}",             /* a control character */
        "{\"method\":\"m\",\"x\":\"\\x\"}",              /* an unknown escape */
        "{\"method\":\"m\",\"x\":\"\\u12\"}",            /* a short \u */
        "{\"method\":\"m\",\"x\":\"\\u12g4\"}",          /* not hex */
        "{\"method\":\"m\",\"x\":\"\\ud800\"}",          /* a lone high surrogate */
        "{\"method\":\"m\",\"x\":\"\\ud800\\u0041\"}",   /* a high surrogate without its low half */
        "{\"method\":\"m\",\"x\":\"\\udc00\"}",          /* a lone low surrogate */
        "{\"method\":\"m\",\"x\":\"\xff\"}",             /* not UTF-8 */
        "{\"method\":\"m\",\"x\":\"\xc3\"}",             /* cut sequence */
        "{\"method\":\"m\",\"x\":\"\xc0\xaf\"}",         /* overlong */
        "{\"method\":\"m\",\"x\":\"\xe0\x80\xaf\"}",     /* overlong */
        "{\"method\":\"m\",\"x\":\"\xed\xa0\x80\"}",     /* a surrogate in UTF-8 */
        "{\"method\":\"m\",\"x\":\"\xf4\x90\x80\x80\"}", /* past U+10FFFF */
        "{\"method\":\"m\",\"x\":\"\x80\"}",             /* a continuation byte first */
        "{\"method\":\"h\xc3\"}",
        /* numbers */
        "{\"method\":\"m\",\"x\":01}", "{\"method\":\"m\",\"x\":1.}", "{\"method\":\"m\",\"x\":.5}", "{\"method\":\"m\",\"x\":-}",
        "{\"method\":\"m\",\"x\":1e}", "{\"method\":\"m\",\"x\":1e+}", "{\"method\":\"m\",\"x\":+1}",
        "{\"method\":\"m\",\"x\":0x10}", "{\"method\":\"m\",\"x\":NaN}", "{\"method\":\"m\",\"x\":-Infinity}",
        /* literals */
        "{\"method\":\"m\",\"x\":tru}", "{\"method\":\"m\",\"x\":nul}", "{\"method\":\"m\",\"x\":True}",
        "{\"method\":\"m\",\"x\":[1,]}", "{\"method\":\"m\",\"x\":[,1]}", "{\"method\":\"m\",\"x\":[1 2]}",
        "{\"method\":\"m\",\"x\":{\"a\"}}", "{\"method\":\"m\",\"x\":{1:2}}", "{\"method\":\"m\",\"params\":[}",
        "{\"method\":\"m\",\"params\":[\"0x1\"]]}", "\xef\xbb\xbf{\"method\":\"m\"}", /* a BOM */
    };
    dp_ck_req_t req;
    for (size_t i = 0; i != sizeof(bad) / sizeof(bad[0]); ++i)
        if (parse(bad[i], &req) != DP_CK_BAD)
            fail_msg("accepted: %s", bad[i]);
    assert_int_equal(dp_ck_parse("{\"method\":\"m\"}\0", 15, &req), DP_CK_BAD); /* a NUL after it */
    assert_int_equal(dp_ck_parse("{\"method\":\"m\"}", 13, &req), DP_CK_BAD);   /* cut */
    /* cut right after a ',' (or blanks after it): nothing is read past the body (a body of its exact
     * size on the heap, for the sanitizer build to see) */
    static const char *cuts[] = {"{\"id\":18,\"method\":8,", "{\"method\":\"m\", ", "[1,", "[1, \n"};
    for (size_t i = 0; i != sizeof(cuts) / sizeof(cuts[0]); ++i) {
        size_t n = strlen(cuts[i]);
        char *b = malloc(n);
        memcpy(b, cuts[i], n);
        assert_int_equal(dp_ck_parse(b, n, &req), DP_CK_BAD);
        dp_ck_answer_t a;
        dp_ck_answer(b, n, &a);
        assert_int_equal(a.kind, DP_CK_ANSWER_INVALID);
        assert_true(dp_ck_array(b, n, NULL, NULL) < 0);
        free(b);
    }
    /* what is fine: unknown members of any kind, duplicates among them, blanks, big numbers */
    static const char *good[] = {
        "{\"method\":\"m\",\"x\":1,\"x\":2}",
        "{\"method\":\"m\",\"x\":[true,false,null,-0,0.5e-3,1E+9,123456789012345678901234567890]}",
        "{\"method\":\"m\",\"\\u0078\":1}" /* an escaped name... */,
    };
    assert_int_equal(parse(good[0], &req), DP_CK_OK);
    assert_int_equal(parse(good[1], &req), DP_CK_OK);
    assert_int_equal(parse(good[2], &req), DP_CK_BAD); /* ...is declined: it could have spelled "id" */
}

static void test_classify_simple(void **state)
{
    assert_int_equal(cls(req_of("eth_chainId", NULL), NULL), CFG_CACHE_STATIC);
    assert_int_equal(cls(req_of("eth_chainId", "[]"), NULL), CFG_CACHE_STATIC);
    assert_int_equal(cls(req_of("net_version", "[]"), NULL), CFG_CACHE_STATIC);
    assert_int_equal(cls(req_of("eth_blockNumber", "[]"), NULL), CFG_CACHE_REALTIME);
    assert_int_equal(cls(req_of("eth_gasPrice", NULL), NULL), CFG_CACHE_REALTIME);
    assert_int_equal(cls(req_of("eth_feeHistory", "[\"0x4\",\"0x10\",[25,75]]"), NULL), CFG_CACHE_REALTIME);
    assert_int_equal(cls(req_of("eth_getTransactionReceipt", "[\"0xabc\"]"), NULL), CFG_CACHE_BY_HASH);
    assert_int_equal(cls(req_of("eth_getBlockByHash", "[\"0xabc\",true]"), NULL), CFG_CACHE_BY_HASH);
    assert_int_equal(cls(req_of("eth_getTransactionByHash", "[\"0xabc\"]"), NULL), CFG_CACHE_BY_HASH);
    /* never: writes, filters, subscriptions, unknown */
    assert_int_equal(cls(req_of("eth_sendRawTransaction", "[\"0xf86c\"]"), NULL), CFG_CACHE_NEVER);
    assert_int_equal(cls(req_of("eth_newFilter", "[{}]"), NULL), CFG_CACHE_NEVER);
    assert_int_equal(cls(req_of("eth_getFilterChanges", "[\"0x1\"]"), NULL), CFG_CACHE_NEVER);
    assert_int_equal(cls(req_of("eth_subscribe", "[\"newHeads\"]"), NULL), CFG_CACHE_NEVER);
    assert_int_equal(cls(req_of("whatever", "[]"), NULL), CFG_CACHE_NEVER);
    /* params that no method takes */
    assert_int_equal(cls(req_of("eth_chainId", "1"), NULL), CFG_CACHE_NEVER);
    assert_int_equal(cls(req_of("eth_chainId", "null"), NULL), CFG_CACHE_NEVER);
    assert_int_equal(cls(req_of("eth_chainId", "\"x\""), NULL), CFG_CACHE_NEVER);
    assert_int_equal(cls(req_of("eth_getTransactionReceipt", "{\"hash\":\"0xabc\"}"), NULL), CFG_CACHE_NEVER);
    assert_int_equal(cls(req_of("eth_getBalance", "{\"a\":1}"), NULL), CFG_CACHE_NEVER);
}

static void test_classify_block(void **state)
{
    uint64_t b;
    /* a numbered block: by block, with its number */
    assert_int_equal(cls(req_of("eth_getBlockByNumber", "[\"0x10\",false]"), &b), CFG_CACHE_BY_BLOCK);
    assert_int_equal(b, 16);
    assert_int_equal(cls(req_of("eth_getBalance", "[\"0xab\",\"0xffffffffffffffff\"]"), &b), CFG_CACHE_BY_BLOCK);
    assert_int_equal(b, UINT64_MAX);
    assert_int_equal(cls(req_of("eth_getBalance", "[\"0xab\",\"0x0\"]"), &b), CFG_CACHE_BY_BLOCK);
    assert_int_equal(b, 0);
    assert_int_equal(cls(req_of("eth_getStorageAt", "[\"0xab\",\"0x0\",\"0x1F\"]"), &b), CFG_CACHE_BY_BLOCK);
    assert_int_equal(b, 31);
    assert_int_equal(cls(req_of("eth_getProof", "[\"0xab\",[\"0x0\"],\"0x20\"]"), &b), CFG_CACHE_BY_BLOCK);
    assert_int_equal(b, 32);
    assert_int_equal(cls(req_of("eth_call", "[{\"to\":\"0xab\",\"data\":\"0x\"},\"0x5\"]"), &b), CFG_CACHE_BY_BLOCK);
    assert_int_equal(b, 5);
    assert_int_equal(cls(req_of("eth_getBlockReceipts", "[\"0x5\"]"), &b), CFG_CACHE_BY_BLOCK);
    assert_int_equal(cls(req_of("eth_getTransactionByBlockNumberAndIndex", "[\"0x5\",\"0x0\"]"), &b), CFG_CACHE_BY_BLOCK);
    assert_int_equal(b, 5);
    /* leading zeros are a number too (a different key from "0x10") */
    assert_int_equal(cls(req_of("eth_getBlockByNumber", "[\"0x0010\",false]"), &b), CFG_CACHE_BY_BLOCK);
    assert_int_equal(b, 16);

    /* a tag, or no block: realtime */
    const char *tags[] = {"latest", "pending", "safe", "finalized", "earliest"};
    for (size_t i = 0; i != 5; ++i) {
        char params[64];
        snprintf(params, sizeof(params), "[\"%s\",false]", tags[i]);
        assert_int_equal(cls(req_of("eth_getBlockByNumber", params), &b), CFG_CACHE_REALTIME);
        assert_int_equal(b, UINT64_MAX);
        snprintf(params, sizeof(params), "[\"0xab\",\"%s\"]", tags[i]);
        assert_int_equal(cls(req_of("eth_getBalance", params), &b), CFG_CACHE_REALTIME);
    }
    assert_int_equal(cls(req_of("eth_getBalance", "[\"0xab\"]"), &b), CFG_CACHE_REALTIME);
    assert_int_equal(cls(req_of("eth_getBalance", NULL), &b), CFG_CACHE_REALTIME);
    assert_int_equal(cls(req_of("eth_call", "[{\"to\":\"0xab\"}]"), &b), CFG_CACHE_REALTIME);
    assert_int_equal(cls(req_of("eth_call", "[{\"to\":\"0xab\"},null]"), &b), CFG_CACHE_REALTIME);
    assert_int_equal(cls(req_of("eth_estimateGas", "[{\"to\":\"0xab\"}]"), &b), CFG_CACHE_REALTIME);

    /* decimal-looking, negative, JSON numbers, bad hex, other shapes: never */
    const char *bad[] = {"\"16\"",   "16",        "-1",        "\"-0x1\"",       "\"0x\"",
                         "\"0X10\"", "\"0xg\"",   "\"0x10 \"", "\"Latest\"",     "\"0x10000000000000000\"",
                         "true",     "[\"0x1\"]", "\"\"",      "\"0x1\\u0030\"", "{}",
                         "1.0"};
    for (size_t i = 0; i != sizeof(bad) / sizeof(bad[0]); ++i) {
        char params[128];
        snprintf(params, sizeof(params), "[%s,false]", bad[i]);
        if (cls(req_of("eth_getBlockByNumber", params), &b) != CFG_CACHE_NEVER)
            fail_msg("block %s is not never", bad[i]);
        assert_int_equal(b, UINT64_MAX);
    }
}

static void test_classify_eip1898(void **state)
{
    uint64_t b;
    assert_int_equal(cls(req_of("eth_getBalance", "[\"0xab\",{\"blockNumber\":\"0x2a\"}]"), &b), CFG_CACHE_BY_BLOCK);
    assert_int_equal(b, 42);
    assert_int_equal(cls(req_of("eth_call", "[{\"to\":\"0xab\"},{\"requireCanonical\":true,\"blockNumber\":\"0x2a\"}]"), &b),
                     CFG_CACHE_BY_BLOCK);
    assert_int_equal(b, 42);
    assert_int_equal(cls(req_of("eth_getBalance", "[\"0xab\",{\"blockNumber\":\"latest\"}]"), &b), CFG_CACHE_REALTIME);
    /* a block hash: realtime (whether that block is final is not known from the request) */
    assert_int_equal(cls(req_of("eth_getBalance", "[\"0xab\",{\"blockHash\":\"0xdead\"}]"), &b), CFG_CACHE_REALTIME);
    assert_int_equal(b, UINT64_MAX);
    assert_int_equal(cls(req_of("eth_getBalance", "[\"0xab\",{\"blockHash\":\"0xdead\",\"requireCanonical\":false}]"), &b),
                     CFG_CACHE_REALTIME);
    /* both, neither, twice, a number that is not one, an escaped name: never */
    assert_int_equal(cls(req_of("eth_getBalance", "[\"0xab\",{\"blockHash\":\"0xdead\",\"blockNumber\":\"0x1\"}]"), &b),
                     CFG_CACHE_NEVER);
    assert_int_equal(cls(req_of("eth_getBalance", "[\"0xab\",{\"requireCanonical\":true}]"), &b), CFG_CACHE_NEVER);
    assert_int_equal(cls(req_of("eth_getBalance", "[\"0xab\",{\"blockNumber\":\"0x1\",\"blockNumber\":\"0x2\"}]"), &b),
                     CFG_CACHE_NEVER);
    assert_int_equal(cls(req_of("eth_getBalance", "[\"0xab\",{\"blockNumber\":1}]"), &b), CFG_CACHE_NEVER);
    assert_int_equal(cls(req_of("eth_getBalance", "[\"0xab\",{\"blockNumber\":\"12\"}]"), &b), CFG_CACHE_NEVER);
    assert_int_equal(cls(req_of("eth_getBalance", "[\"0xab\",{\"blockHash\":7}]"), &b), CFG_CACHE_NEVER);
    assert_int_equal(cls(req_of("eth_getBalance", "[\"0xab\",{\"block\\u004eumber\":\"0x1\"}]"), &b), CFG_CACHE_NEVER);
}

static void test_classify_logs(void **state)
{
    uint64_t b;
    assert_int_equal(cls(req_of("eth_getLogs", "[{\"fromBlock\":\"0x10\",\"toBlock\":\"0x20\",\"address\":\"0xab\"}]"), &b),
                     CFG_CACHE_BY_BLOCK);
    assert_int_equal(b, 0x20);
    assert_int_equal(cls(req_of("eth_getLogs", "[{\"toBlock\":\"0x10\",\"fromBlock\":\"0x20\",\"topics\":[[\"0x1\"],null]}]"), &b),
                     CFG_CACHE_BY_BLOCK);
    assert_int_equal(b, 0x20); /* the highest named */
    /* a tag or a missing end: realtime */
    assert_int_equal(cls(req_of("eth_getLogs", "[{\"fromBlock\":\"0x10\",\"toBlock\":\"latest\"}]"), &b), CFG_CACHE_REALTIME);
    assert_int_equal(b, UINT64_MAX);
    assert_int_equal(cls(req_of("eth_getLogs", "[{\"fromBlock\":\"earliest\",\"toBlock\":\"0x10\"}]"), &b), CFG_CACHE_REALTIME);
    assert_int_equal(cls(req_of("eth_getLogs", "[{\"fromBlock\":\"0x10\"}]"), &b), CFG_CACHE_REALTIME);
    assert_int_equal(cls(req_of("eth_getLogs", "[{\"toBlock\":\"0x10\"}]"), &b), CFG_CACHE_REALTIME);
    assert_int_equal(cls(req_of("eth_getLogs", "[{}]"), &b), CFG_CACHE_REALTIME);
    assert_int_equal(cls(req_of("eth_getLogs", "[{\"fromBlock\":null,\"toBlock\":\"0x1\"}]"), &b), CFG_CACHE_REALTIME);
    /* a block hash: by hash */
    assert_int_equal(cls(req_of("eth_getLogs", "[{\"blockHash\":\"0xdead\",\"address\":[\"0xab\"]}]"), &b), CFG_CACHE_BY_HASH);
    assert_int_equal(b, UINT64_MAX);
    /* never: a hash and a range, a bad block, no filter, not an object, duplicates, escaped names */
    assert_int_equal(cls(req_of("eth_getLogs", "[{\"blockHash\":\"0xdead\",\"fromBlock\":\"0x1\"}]"), &b), CFG_CACHE_NEVER);
    assert_int_equal(cls(req_of("eth_getLogs", "[{\"fromBlock\":\"10\",\"toBlock\":\"0x20\"}]"), &b), CFG_CACHE_NEVER);
    assert_int_equal(cls(req_of("eth_getLogs", "[{\"fromBlock\":16,\"toBlock\":\"0x20\"}]"), &b), CFG_CACHE_NEVER);
    assert_int_equal(cls(req_of("eth_getLogs", "[]"), &b), CFG_CACHE_NEVER);
    assert_int_equal(cls(req_of("eth_getLogs", NULL), &b), CFG_CACHE_NEVER);
    assert_int_equal(cls(req_of("eth_getLogs", "[\"0x1\"]"), &b), CFG_CACHE_NEVER);
    assert_int_equal(cls(req_of("eth_getLogs", "{\"fromBlock\":\"0x1\",\"toBlock\":\"0x2\"}"), &b), CFG_CACHE_NEVER);
    assert_int_equal(cls(req_of("eth_getLogs", "[{\"fromBlock\":\"0x1\",\"toBlock\":\"0x2\",\"toBlock\":\"0x9\"}]"), &b),
                     CFG_CACHE_NEVER);
    assert_int_equal(cls(req_of("eth_getLogs", "[{\"fromBlock\":\"0x1\",\"to\\u0042lock\":\"latest\"}]"), &b), CFG_CACHE_NEVER);
}

static void test_classify_override(void **state)
{
    uint64_t b;
    cfg_cache_method_t off = {.enabled = 0};
    cfg_cache_method_t ttl_only = {._set = CFG_CACHE_METHOD_HAS_TTL, .enabled = 1, .ttl_ms = 10000};
    cfg_cache_method_t as_static = {._set = OV_CLASS_SET, .enabled = 1, .cls = CFG_CACHE_STATIC};
    cfg_cache_method_t as_realtime = {._set = OV_CLASS_SET, .enabled = 1, .cls = CFG_CACHE_REALTIME};
    cfg_cache_method_t as_never = {._set = OV_CLASS_SET, .enabled = 1, .cls = CFG_CACHE_NEVER};
    cfg_cache_method_t as_by_block = {._set = OV_CLASS_SET, .enabled = 1, .cls = CFG_CACHE_BY_BLOCK};
    cfg_cache_method_t cls_unset = {.enabled = 1, .cls = CFG_CACHE_STATIC}; /* class not given: the table's */
    /* off: never */
    assert_int_equal(cls_ov(req_of("eth_chainId", "[]"), &off, &b), CFG_CACHE_NEVER);
    assert_int_equal(cls_ov(req_of("eth_getBlockByNumber", "[\"0x10\",false]"), &off, &b), CFG_CACHE_NEVER);
    assert_int_equal(b, UINT64_MAX);
    /* a ttl alone keeps the table's class */
    assert_int_equal(cls_ov(req_of("eth_getBlockByNumber", "[\"0x10\",false]"), &ttl_only, &b), CFG_CACHE_BY_BLOCK);
    assert_int_equal(b, 16);
    assert_int_equal(cls_ov(req_of("eth_getBlockByNumber", "[\"0x10\",false]"), &cls_unset, &b), CFG_CACHE_BY_BLOCK);
    assert_int_equal(cls_ov(req_of("my_method", "[]"), &ttl_only, &b), CFG_CACHE_NEVER);
    /* a class for a method the table does not know, or to treat one otherwise */
    assert_int_equal(cls_ov(req_of("my_method", "[1,2]"), &as_static, &b), CFG_CACHE_STATIC);
    assert_int_equal(cls_ov(req_of("my_method", "{\"a\":1}"), &as_realtime, &b), CFG_CACHE_REALTIME);
    assert_int_equal(cls_ov(req_of("my_method", NULL), &as_realtime, &b), CFG_CACHE_REALTIME);
    assert_int_equal(cls_ov(req_of("my_method", "7"), &as_realtime, &b), CFG_CACHE_NEVER);
    assert_int_equal(cls_ov(req_of("eth_getBlockByNumber", "[\"0x10\",false]"), &as_realtime, &b), CFG_CACHE_REALTIME);
    assert_int_equal(b, UINT64_MAX);
    assert_int_equal(cls_ov(req_of("eth_chainId", "[]"), &as_never, &b), CFG_CACHE_NEVER);
    /* by block needs the table to say where the block is */
    assert_int_equal(cls_ov(req_of("my_method", "[\"0x10\"]"), &as_by_block, &b), CFG_CACHE_NEVER);
    assert_int_equal(cls_ov(req_of("eth_getCode", "[\"0xab\",\"0x10\"]"), &as_by_block, &b), CFG_CACHE_BY_BLOCK);
    assert_int_equal(b, 16);
}

static void test_key(void **state)
{
    /* the service, the method, params compact; never the id */
    assert_key("eth", "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"eth_getBlockByNumber\",\"params\":[\"0x10\",false]}",
               "eth|eth_getBlockByNumber|[\"0x10\",false]");
    assert_key("eth", "{\"id\":\"other\",\"params\" : [ \"0x10\" ,\n\tfalse ] ,\"method\":\"eth_getBlockByNumber\"}",
               "eth|eth_getBlockByNumber|[\"0x10\",false]");
    assert_key("poly", "{\"method\":\"eth_getBlockByNumber\",\"params\":[\"0x10\",false]}",
               "poly|eth_getBlockByNumber|[\"0x10\",false]");
    assert_key("eth", "{\"id\":1,\"method\":\"eth_chainId\"}", "eth|eth_chainId|");
    assert_key("eth", "{\"id\":1,\"method\":\"eth_chainId\",\"params\":[]}", "eth|eth_chainId|[]");
    assert_key("eth", "{\"method\":\"m\",\"params\":[ \"a b\" , [ 1 , -2 , [] ] , null , true ]}",
               "eth|m|[\"a b\",[1,-2,[]],null,true]");
    /* objects: keys sorted at every level, blanks gone */
    const char *a = "{\"id\":1,\"method\":\"eth_call\",\"params\":[{\"to\":\"0xab\",\"data\":\"0x12\",\"x\":{\"b\":1,\"a\":2}},"
                    "\"0x5\"]}";
    const char *b = "{\"method\":\"eth_call\",\"id\":99,\"params\":[ { \"x\" : {\"a\":2, \"b\":1}, \"data\":\"0x12\" ,"
                    " \"to\":\"0xab\"} , \"0x5\" ]}";
    assert_key("eth", a, "eth|eth_call|[{\"data\":\"0x12\",\"to\":\"0xab\",\"x\":{\"a\":2,\"b\":1}},\"0x5\"]");
    assert_key("eth", b, "eth|eth_call|[{\"data\":\"0x12\",\"to\":\"0xab\",\"x\":{\"a\":2,\"b\":1}},\"0x5\"]");
    /* names sorted as strcmp orders them; a name given twice keeps its last value (as jansson does) */
    assert_key("eth", "{\"method\":\"m\",\"params\":[{\"b\":1,\"aa\":2,\"a\":3,\"B\":4,\"\":5,\"a_\":[{\"y\":1,\"x\":{}}]}]}",
               "eth|m|[{\"\":5,\"B\":4,\"a\":3,\"a_\":[{\"x\":{},\"y\":1}],\"aa\":2,\"b\":1}]");
    assert_key("eth", "{\"method\":\"m\",\"params\":[{\"a\":1,\"b\":0,\"a\":2}]}", "eth|m|[{\"a\":2,\"b\":0}]");
    assert_key("eth", "{\"method\":\"m\",\"params\":{\"z\":[1,{\"b\":null,\"a\":true}],\"y\":\"s\"}}",
               "eth|m|{\"y\":\"s\",\"z\":[1,{\"a\":true,\"b\":null}]}");
    /* objects too large or too deep to sort on the stack: the same key (through jansson) */
    char big[1024], want[1024];
    int bn = snprintf(big, sizeof(big), "{\"method\":\"m\",\"params\":[{"), wn = snprintf(want, sizeof(want), "eth|m|[{");
    for (int i = 40; i > 0; --i)
        bn += snprintf(big + bn, sizeof(big) - bn, "%s\"k%02d\":%d", i == 40 ? "" : ",", i, i);
    for (int i = 1; i <= 40; ++i)
        wn += snprintf(want + wn, sizeof(want) - wn, "%s\"k%02d\":%d", i == 1 ? "" : ",", i, i);
    snprintf(big + bn, sizeof(big) - bn, "}]}");
    snprintf(want + wn, sizeof(want) - wn, "}]");
    assert_key("eth", big, want);
    bn = snprintf(big, sizeof(big), "{\"method\":\"m\",\"params\":");
    wn = snprintf(want, sizeof(want), "eth|m|");
    for (int i = 0; i < 30; ++i) {
        bn += snprintf(big + bn, sizeof(big) - bn, "{\"b\":1, \"a\":");
        wn += snprintf(want + wn, sizeof(want) - wn, "{\"a\":");
    }
    bn += snprintf(big + bn, sizeof(big) - bn, "0");
    wn += snprintf(want + wn, sizeof(want) - wn, "0");
    for (int i = 0; i < 30; ++i) {
        bn += snprintf(big + bn, sizeof(big) - bn, "}");
        wn += snprintf(want + wn, sizeof(want) - wn, ",\"b\":1}");
    }
    snprintf(big + bn, sizeof(big) - bn, "}");
    assert_key("eth", big, want);
    /* what jansson writes otherwise: escapes, non-ASCII, reals, -0 */
    assert_key("eth", "{\"method\":\"m\",\"params\":[\"\\u0041\\/\\n\",\"\xc3\xa9\",1.5,1e2,-0]}",
               "eth|m|[\"A/\\n\",\"\xc3\xa9\",1.5,100.0,0]");
    assert_key("eth", "{\"method\":\"m\",\"params\":[123456789012345678]}", "eth|m|[123456789012345678]");
    assert_key("eth", "{\"method\":\"m\",\"params\":[-123456789012345678]}", "eth|m|[-123456789012345678]");
    assert_key("eth", "{\"method\":\"m\",\"params\":[1234567890123456789]}", "eth|m|[1234567890123456789]");
    /* params jansson cannot hold (an integer past 64 bits): no key */
    assert_key("eth", "{\"method\":\"m\",\"params\":[123456789012345678901234567890]}", NULL);
    /* different params, different keys */
    char *k1 = key_of("eth", req_of("eth_getBlockByNumber", "[\"0x10\",false]"));
    char *k2 = key_of("eth", req_of("eth_getBlockByNumber", "[\"0x10\",true]"));
    char *k3 = key_of("eth", req_of("eth_getBlockByNumber", "[\"0x010\",false]"));
    assert_string_not_equal(k1, k2);
    assert_string_not_equal(k1, k3);
    free(k1);
    free(k2);
    free(k3);
    /* a request made by hand with params that are not JSON: 0 and NULL */
    dp_ck_req_t req = {.method = {"m", 1}, .params = {"[1,", 3}};
    char out[64];
    size_t len;
    assert_int_equal(dp_ck_key("eth", 3, &req, out, sizeof(out)), 0);
    assert_null(dp_ck_key_parsed("eth", 3, &req, &len));
    /* a buffer just large enough, one byte short */
    assert_int_equal(parse("{\"method\":\"m\",\"params\":[ 1 ]}", &req), DP_CK_OK);
    assert_int_equal(dp_ck_key("e", 1, &req, out, 7), 7);
    assert_memory_equal(out, "e\0m\0[1]", 7);
    memset(out, 'z', sizeof(out));
    assert_int_equal(dp_ck_key("e", 1, &req, out, 6), 7);
}

struct collect {
    size_t n;
    dp_span_t elems[8];
    size_t stop_at;
};

static int collect_fn(void *ctx, size_t index, dp_span_t elem)
{
    struct collect *c = ctx;
    assert_int_equal(index, c->n);
    if (c->n < 8)
        c->elems[c->n] = elem;
    ++c->n;
    return c->n == c->stop_at;
}

static long array(const char *s, struct collect *c)
{
    memset(c, 0, sizeof(*c));
    return dp_ck_array(s, strlen(s), collect_fn, c);
}

static void test_array(void **state)
{
    struct collect c;
    const char *s = " [ {\"id\":1,\"method\":\"eth_chainId\"} ,{\"id\":2,\"method\":\"eth_blockNumber\"},7,\"x\" ] ";
    assert_int_equal(array(s, &c), 4);
    assert_int_equal(c.n, 4);
    assert_true(span_is(c.elems[0], "{\"id\":1,\"method\":\"eth_chainId\"}"));
    assert_true(span_is(c.elems[1], "{\"id\":2,\"method\":\"eth_blockNumber\"}"));
    assert_true(span_is(c.elems[2], "7"));
    assert_true(span_is(c.elems[3], "\"x\""));
    dp_ck_req_t req;
    assert_int_equal(dp_ck_parse(c.elems[1].base, c.elems[1].len, &req), DP_CK_OK);
    assert_true(span_is(req.id, "2"));
    assert_int_equal(array("[]", &c), 0);
    assert_int_equal(array("{\"method\":\"m\"}", &c), -2);
    assert_int_equal(array("", &c), -2);
    assert_int_equal(array("  ", &c), -2);
    assert_int_equal(array("1", &c), -2);
    /* not JSON: -1, and fn heard of nothing */
    assert_int_equal(array("[{\"id\":1},", &c), -1);
    assert_int_equal(c.n, 0);
    assert_int_equal(array("[{\"id\":1},{]", &c), -1);
    assert_int_equal(c.n, 0);
    assert_int_equal(array("[1] [2]", &c), -1);
    assert_int_equal(array("[1,]", &c), -1);
    assert_int_equal(array("[\"\xff\"]", &c), -1);
    /* fn stops it */
    memset(&c, 0, sizeof(c));
    c.stop_at = 2;
    assert_int_equal(dp_ck_array("[1,2,3]", 7, collect_fn, &c), -1);
    assert_int_equal(c.n, 2);
}

static void answer(const char *s, dp_ck_answer_t *a)
{
    dp_ck_answer(s, strlen(s), a);
}

static void test_answer(void **state)
{
    dp_ck_answer_t a;
    answer(" {\"jsonrpc\":\"2.0\",\"id\":1,\"result\":\"0x1\"} ", &a);
    assert_int_equal(a.kind, DP_CK_ANSWER_RESULT);
    assert_true(span_is(a.id, "1"));
    assert_true(span_is(a.jsonrpc, "\"2.0\""));
    assert_int_equal(a.has_block, 0);
    answer("{\"result\":{\"hash\":\"0xab\",\"number\":\"0x1b4\",\"transactions\":[{\"blockNumber\":\"0x1\"}]},\"id\":\"x\"}", &a);
    assert_int_equal(a.kind, DP_CK_ANSWER_RESULT);
    assert_true(span_is(a.id, "\"x\""));
    assert_true(span_is(a.jsonrpc, NULL));
    assert_int_equal(a.has_block, 1);
    assert_int_equal(a.block, 0x1b4);
    /* a receipt: blockNumber wins over number */
    answer("{\"jsonrpc\":\"2.0\",\"id\":3,\"result\":{\"number\":\"0x1\",\"blockNumber\":\"0x2\",\"status\":\"0x1\"}}", &a);
    assert_int_equal(a.has_block, 1);
    assert_int_equal(a.block, 2);
    /* a pending transaction: blockNumber null, no block */
    answer("{\"jsonrpc\":\"2.0\",\"id\":3,\"result\":{\"hash\":\"0xab\",\"blockNumber\":null}}", &a);
    assert_int_equal(a.kind, DP_CK_ANSWER_RESULT);
    assert_int_equal(a.has_block, 0);
    /* an array result, a twice-named block, an escaped name: no block */
    answer("{\"jsonrpc\":\"2.0\",\"id\":3,\"result\":[{\"blockNumber\":\"0x2\"}]}", &a);
    assert_int_equal(a.has_block, 0);
    answer("{\"jsonrpc\":\"2.0\",\"id\":3,\"result\":{\"blockNumber\":\"0x2\",\"blockNumber\":\"0x3\"}}", &a);
    assert_int_equal(a.kind, DP_CK_ANSWER_RESULT);
    assert_int_equal(a.has_block, 0);
    answer("{\"jsonrpc\":\"2.0\",\"id\":3,\"result\":{\"block\\u004eumber\":\"0x2\"}}", &a);
    assert_int_equal(a.has_block, 0);
    answer("{\"jsonrpc\":\"2.0\",\"id\":3,\"result\":{\"number\":\"12\"}}", &a);
    assert_int_equal(a.has_block, 0);
    /* null: a receipt not yet mined */
    answer("{\"jsonrpc\":\"2.0\",\"id\":3,\"result\":null}", &a);
    assert_int_equal(a.kind, DP_CK_ANSWER_NULL);
    assert_true(span_is(a.id, "3"));
    /* errors */
    answer("{\"jsonrpc\":\"2.0\",\"id\":3,\"error\":{\"code\":-32000,\"message\":\"header not found\"}}", &a);
    assert_int_equal(a.kind, DP_CK_ANSWER_ERROR);
    assert_true(span_is(a.id, "3"));
    answer("{\"jsonrpc\":\"2.0\",\"id\":null,\"error\":{\"code\":-32700,\"message\":\"parse error\"}}", &a);
    assert_int_equal(a.kind, DP_CK_ANSWER_ERROR);
    /* "error": null beside a result is no error */
    answer("{\"jsonrpc\":\"2.0\",\"id\":3,\"result\":\"0x1\",\"error\":null}", &a);
    assert_int_equal(a.kind, DP_CK_ANSWER_RESULT);
    /* invalid: not one answer with an id */
    static const char *bad[] = {
        "",
        "[{\"id\":1,\"result\":1}]",
        "{\"result\":1}",
        "{\"id\":1}",
        "{\"id\":{},\"result\":1}",
        "{\"id\":true,\"result\":1}",
        "{\"id\":1,\"id\":2,\"result\":1}",
        "{\"id\":1,\"result\":1,\"result\":2}",
        "{\"id\":1,\"result\":1,\"error\":{\"code\":1}}",
        "{\"id\":1,\"result\":1} x",
        "{\"id\":1,\"result\":\"\xff\"}",
        "{\"id\":1,\"result\":{\"number\":\"0x1\"}",
        "{\"i\\u0064\":1,\"result\":1}",
    };
    for (size_t i = 0; i != sizeof(bad) / sizeof(bad[0]); ++i) {
        answer(bad[i], &a);
        if (a.kind != DP_CK_ANSWER_INVALID)
            fail_msg("not invalid: %s", bad[i]);
        assert_int_equal(a.has_block, 0);
    }
}

static void test_quantity(void **state)
{
    uint64_t n = 7;
    static const struct {
        const char *s;
        uint64_t v;
    } good[] = {{"\"0x0\"", 0},    {"\"0x1\"", 1},  {"\"0xff\"", 255},
                {"\"0xFF\"", 255}, {"\"0x01\"", 1}, {"\"0xffffffffffffffff\"", UINT64_MAX}};
    for (size_t i = 0; i != sizeof(good) / sizeof(good[0]); ++i) {
        dp_span_t v = {good[i].s, strlen(good[i].s)};
        assert_int_equal(dp_ck_quantity(v, &n), 0);
        assert_int_equal(n, good[i].v);
    }
    static const char *bad[] = {"\"0x\"",   "0x1",  "\"0x1", "\"1\"", "\"0X1\"",  "\"0x1g\"", "\"0x10000000000000000\"",
                                "\"-0x1\"", "\"\"", "\"",    "",      "\" 0x1\"", "16"};
    for (size_t i = 0; i != sizeof(bad) / sizeof(bad[0]); ++i) {
        dp_span_t v = {bad[i], strlen(bad[i])};
        n = 7;
        assert_int_equal(dp_ck_quantity(v, &n), -1);
        assert_int_equal(n, 7);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_table),
        cmocka_unit_test(test_parse_spans),
        cmocka_unit_test(test_parse_bad),
        cmocka_unit_test(test_classify_simple),
        cmocka_unit_test(test_classify_block),
        cmocka_unit_test(test_classify_eip1898),
        cmocka_unit_test(test_classify_logs),
        cmocka_unit_test(test_classify_override),
        cmocka_unit_test(test_key),
        cmocka_unit_test(test_array),
        cmocka_unit_test(test_answer),
        cmocka_unit_test(test_quantity),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
