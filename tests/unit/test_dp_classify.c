/* dp_classify: upstream answers classified for failover; the built-in table against the docs; an ok
 * result never parsed. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "dp_classify.h"

#define R(name) CFG_RETRY_ON_##name
#define NONE -1

typedef struct st_case_t {
    int status;
    const char *body; /* NULL: no body given */
    dp_class_t cls;
    int reason;
} case_t;

static const case_t cases_[] = {
    /* ok results */
    {200, "{\"jsonrpc\":\"2.0\",\"id\":1,\"result\":\"0x10\"}", DP_CLASS_OK, NONE},
    {200, "{\"jsonrpc\":\"2.0\",\"id\":1,\"result\":\"0x1\",\"error\":null}", DP_CLASS_OK, NONE},
    {200, "{\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{\"calls\":[{\"error\":\"execution reverted\"}]}}", DP_CLASS_OK, NONE},
    {200, NULL, DP_CLASS_OK, NONE},
    {204, "", DP_CLASS_OK, NONE},
    {200, "not json but \"error\" in it", DP_CLASS_OK, NONE},
    /* client errors: returned as is, never retried; they win over a message that says "exceeded" */
    {200, "{\"jsonrpc\":\"2.0\",\"id\":1,\"error\":{\"code\":3,\"message\":\"execution reverted: limit exceeded\"}}",
     DP_CLASS_CLIENT_ERROR, NONE},
    {200, "{\"jsonrpc\":\"2.0\",\"id\":null,\"error\":{\"code\":-32600,\"message\":\"invalid request\"}}", DP_CLASS_CLIENT_ERROR,
     NONE},
    {200, "{\"error\":{\"code\":-32602,\"message\":\"invalid argument 0: hex string without 0x prefix\"},\"id\":1}",
     DP_CLASS_CLIENT_ERROR, NONE},
    {500, "{\"jsonrpc\":\"2.0\",\"id\":1,\"error\":{\"code\":3,\"message\":\"execution reverted\"}}", DP_CLASS_CLIENT_ERROR, NONE},
    /* rate limits */
    {429, "Too Many Requests", DP_CLASS_RATE_LIMITED, R(HTTP_429)},
    {429, NULL, DP_CLASS_RATE_LIMITED, R(HTTP_429)},
    {200, "{\"jsonrpc\":\"2.0\",\"id\":1,\"error\":{\"code\":-32005,\"message\":\"limit exceeded\"}}", DP_CLASS_RATE_LIMITED,
     R(RPC_RATE_LIMITED)},
    {200, "{\"jsonrpc\":\"2.0\",\"id\":1,\"error\":{\"code\":-32001,\"message\":\"Daily request count EXCEEDED\"}}",
     DP_CLASS_RATE_LIMITED, R(RPC_RATE_LIMITED)},
    {200, "{\"jsonrpc\":\"2.0\",\"id\":1,\"error\":{\"code\":-32000,\"message\":\"Too Many Requests, slow down\"}}",
     DP_CLASS_RATE_LIMITED, R(RPC_RATE_LIMITED)},
    {200, "{\"jsonrpc\":\"2.0\",\"id\":1,\"error\":{\"code\":429,\"message\":\"x\"}}", DP_CLASS_RATE_LIMITED, R(RPC_RATE_LIMITED)},
    {200, "{\"id\":1,\"error\":\"rate limit reached\"}", DP_CLASS_RATE_LIMITED, R(RPC_RATE_LIMITED)}, /* JSON-RPC 1.0 */
    {503, "{\"jsonrpc\":\"2.0\",\"id\":1,\"error\":{\"code\":-32005,\"message\":\"slow down\"}}", DP_CLASS_RATE_LIMITED,
     R(RPC_RATE_LIMITED)},
    /* the key written with escapes is still the key */
    {200, "{\"jsonrpc\":\"2.0\",\"id\":1,\"\\u0065rror\":{\"code\":-32005,\"message\":\"x\"}}", DP_CLASS_RATE_LIMITED,
     R(RPC_RATE_LIMITED)},
    /* missing data from a lagging node */
    {200, "{\"jsonrpc\":\"2.0\",\"id\":1,\"error\":{\"code\":-32000,\"message\":\"Header not found\"}}", DP_CLASS_MISSING_DATA,
     R(RPC_MISSING_DATA)},
    {200, "{\"jsonrpc\":\"2.0\",\"id\":1,\"error\":{\"code\":-32000,\"message\":\"missing trie node 0xab (path )\"}}",
     DP_CLASS_MISSING_DATA, R(RPC_MISSING_DATA)},
    {200, "{\"jsonrpc\":\"2.0\",\"id\":1,\"error\":{\"code\":-32001,\"message\":\"Unknown block\"}}", DP_CLASS_MISSING_DATA,
     R(RPC_MISSING_DATA)},
    /* server errors */
    {200, "{\"jsonrpc\":\"2.0\",\"id\":1,\"error\":{\"code\":-32603,\"message\":\"internal error\"}}", DP_CLASS_SERVER_ERROR,
     R(RPC_SERVER_ERROR)},
    {503, "<html>service unavailable</html>", DP_CLASS_SERVER_ERROR, R(HTTP_5XX)},
    {502, NULL, DP_CLASS_SERVER_ERROR, R(HTTP_5XX)},
    {500, "{\"jsonrpc\":\"2.0\",\"id\":1,\"error\":{\"code\":-32601,\"message\":\"method not found\"}}", DP_CLASS_SERVER_ERROR,
     R(HTTP_5XX)},
    /* errors of no known class: returned as is */
    {200, "{\"jsonrpc\":\"2.0\",\"id\":1,\"error\":{\"code\":-32601,\"message\":\"the method eth_foo does not exist\"}}",
     DP_CLASS_OTHER_ERROR, NONE},
    {200, "{\"jsonrpc\":\"2.0\",\"id\":1,\"error\":{\"code\":-32000,\"message\":\"nonce too low\"}}", DP_CLASS_OTHER_ERROR, NONE},
    {200, "{\"jsonrpc\":\"2.0\",\"id\":1,\"error\":{}}", DP_CLASS_OTHER_ERROR, NONE},
    {200, "{\"jsonrpc\":\"2.0\",\"id\":1,\"error\":{\"code\":-99999999999,\"message\":\"huge\"}}", DP_CLASS_OTHER_ERROR, NONE},
    {404, "not found", DP_CLASS_OTHER_ERROR, NONE},
    {401, "{\"error\":{\"code\":-32000,\"message\":\"bad key\"}}", DP_CLASS_OTHER_ERROR, NONE},
    /* batches: judged whole; an item's error never makes the batch a failure */
    {200, "[{\"jsonrpc\":\"2.0\",\"id\":1,\"error\":{\"code\":-32005,\"message\":\"limit exceeded\"}},{\"id\":2,\"result\":1}]",
     DP_CLASS_OK, NONE},
    {200, " \n[{\"id\":1,\"error\":{\"code\":-32603,\"message\":\"header not found\"}}]", DP_CLASS_OK, NONE},
    {200, "{\"jsonrpc\":\"2.0\",\"id\":null,\"error\":{\"code\":-32005,\"message\":\"batch too large, limit exceeded\"}}",
     DP_CLASS_RATE_LIMITED, R(RPC_RATE_LIMITED)},
    {503, "[{\"id\":1,\"result\":1}]", DP_CLASS_SERVER_ERROR, R(HTTP_5XX)},
};

static void check_case(const case_t *c, const cfg_rpc_error_t *rows, size_t nrows, size_t i)
{
    size_t len = c->body != NULL ? strlen(c->body) : 0;
    dp_verdict_t v = dp_classify(c->status, c->body, len, rows, nrows);
    if (v.cls != c->cls || v.reason != c->reason)
        fail_msg("case %zu (%d %s): got %s/%d, want %s/%d", i, c->status, c->body ? c->body : "(none)", dp_class_name(v.cls),
                 v.reason, dp_class_name(c->cls), c->reason);
    /* the cheap scan never changes the verdict */
    dp_verdict_t p = dp_classify_parsed(c->status, c->body, len, rows, nrows);
    assert_int_equal(p.cls, v.cls);
    assert_int_equal(p.reason, v.reason);
    assert_int_equal(p.has_code, v.has_code);
    assert_int_equal(p.code, v.code);
}

static void test_builtin_classes(void **state)
{
    for (size_t i = 0; i < sizeof(cases_) / sizeof(cases_[0]); i++)
        check_case(&cases_[i], NULL, 0, i);
    /* the code is reported for logs */
    const char *b = "{\"jsonrpc\":\"2.0\",\"id\":1,\"error\":{\"code\":-32005,\"message\":\"limit exceeded\"}}";
    dp_verdict_t v = dp_classify(200, b, strlen(b), NULL, 0);
    assert_int_equal(v.has_code, 1);
    assert_int_equal(v.code, -32005);
    /* a body beyond the bound is not inspected, whatever it holds */
    size_t big = DP_CLASSIFY_MAX_BODY + 1;
    char *long_err = malloc(big + 1);
    memset(long_err, ' ', big);
    memcpy(long_err, b, strlen(b));
    long_err[big] = '\0';
    assert_int_equal(dp_classify(200, long_err, big, NULL, 0).cls, DP_CLASS_OK);
    assert_int_equal(dp_classify(200, long_err, big - 1, NULL, 0).cls, DP_CLASS_RATE_LIMITED);
    free(long_err);
    /* the body is read for len bytes only: an error after len is not seen */
    assert_int_equal(dp_classify(200, b, 10, NULL, 0).cls, DP_CLASS_OK);
}

static void test_operator_rows(void **state)
{
    cfg_rpc_error_t rows[4];
    memset(rows, 0, sizeof(rows));
    rows[0] = (cfg_rpc_error_t){.has_code = 1, .code = -32011, .rpc_class = CFG_RPC_RATE_LIMITED};
    rows[1] = (cfg_rpc_error_t){.message = "daily request count", .rpc_class = CFG_RPC_SERVER_ERROR};
    /* an operator may overrule the built-in table: this provider's revert-with-"out of gas" is its own fault */
    rows[2] = (cfg_rpc_error_t){.has_code = 1, .code = 3, .message = "OUT OF GAS", .rpc_class = CFG_RPC_SERVER_ERROR};
    rows[3] = (cfg_rpc_error_t){.has_code = 1, .code = -32000, .message = "nonce too low", .rpc_class = CFG_RPC_CLIENT_ERROR};
    static const case_t cases[] = {
        {200, "{\"id\":1,\"error\":{\"code\":-32011,\"message\":\"anything\"}}", DP_CLASS_RATE_LIMITED, R(RPC_RATE_LIMITED)},
        /* rows are checked first: this would be rate_limited ("exceeded") by the built-in table */
        {200, "{\"id\":1,\"error\":{\"code\":-32001,\"message\":\"Daily Request Count exceeded\"}}", DP_CLASS_SERVER_ERROR,
         R(RPC_SERVER_ERROR)},
        {200, "{\"id\":1,\"error\":{\"code\":3,\"message\":\"reverted: out of gas\"}}", DP_CLASS_SERVER_ERROR, R(RPC_SERVER_ERROR)},
        /* code and message must both match: a revert without the words stays a client error */
        {200, "{\"id\":1,\"error\":{\"code\":3,\"message\":\"execution reverted\"}}", DP_CLASS_CLIENT_ERROR, NONE},
        {200, "{\"id\":1,\"error\":{\"code\":-32000,\"message\":\"nonce too low: next nonce 5\"}}", DP_CLASS_CLIENT_ERROR, NONE},
        {200, "{\"id\":1,\"error\":{\"code\":-32001,\"message\":\"nonce too low\"}}", DP_CLASS_OTHER_ERROR, NONE},
        /* a row decides a 5xx's class too */
        {502, "{\"id\":1,\"error\":{\"code\":-32011,\"message\":\"x\"}}", DP_CLASS_RATE_LIMITED, R(RPC_RATE_LIMITED)},
        /* and never an array */
        {200, "[{\"id\":1,\"error\":{\"code\":-32011,\"message\":\"x\"}}]", DP_CLASS_OK, NONE},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
        check_case(&cases[i], rows, 4, i);
    /* rows from a decoded document work as they are */
    const char *doc = "services: [{id: e, endpoints: [{url: 'http://x'}], rpc_errors: [{message: 'quota', class: rate_limited}]}]";
    cfg_errors_t errs;
    cfg_errors_init(&errs);
    cfg_t *cfg = cfg_parse(doc, strlen(doc), CFG_FORMAT_YAML, CFG_SCOPE_FLEET, &errs);
    assert_non_null(cfg);
    const char *b = "{\"id\":7,\"error\":{\"code\":-32099,\"message\":\"Quota used up\"}}";
    dp_verdict_t v =
        dp_classify(200, b, strlen(b), cfg->services.entries[0].rpc_errors.entries, cfg->services.entries[0].rpc_errors.size);
    assert_int_equal(v.cls, DP_CLASS_RATE_LIMITED);
    cfg_destroy(cfg);
    cfg_errors_dispose(&errs);
}

static void test_retriable(void **state)
{
    uint32_t all = (1u << CFG_RETRY_ON_COUNT) - 1;
    uint32_t no_rpc = all & ~(1u << CFG_RETRY_ON_RPC_RATE_LIMITED);
    dp_verdict_t rl = {DP_CLASS_RATE_LIMITED, CFG_RETRY_ON_RPC_RATE_LIMITED, 0, 0};
    dp_verdict_t ce = {DP_CLASS_CLIENT_ERROR, -1, 0, 0};
    assert_true(dp_verdict_retriable(rl, all));
    assert_false(dp_verdict_retriable(rl, no_rpc));
    assert_false(dp_verdict_retriable(ce, all));
    assert_string_equal(dp_class_name(DP_CLASS_MISSING_DATA), "missing_data");
    assert_string_equal(dp_class_name(DP_CLASS_COUNT), "?");
}

/* jansson's allocations, counted: parsing a body allocates, so none means no parse */
static size_t allocs_;
static void *counting_malloc(size_t n)
{
    allocs_++;
    return malloc(n);
}

static void test_ok_result_is_not_parsed(void **state)
{
    /* a 1 KiB result, as eth_call or eth_getBlockByNumber answer */
    char body[1100];
    int n = snprintf(body, sizeof(body), "{\"jsonrpc\":\"2.0\",\"id\":42,\"result\":\"0x");
    for (; n < 1024 - 2; n++)
        body[n] = "0123456789abcdef"[n % 16];
    body[n++] = '"';
    body[n++] = '}';
    body[n] = '\0';
    json_set_alloc_funcs(counting_malloc, free);
    allocs_ = 0;
    for (int i = 0; i < 1000; i++)
        assert_int_equal(dp_classify(200, body, (size_t)n, NULL, 0).cls, DP_CLASS_OK);
    assert_int_equal(allocs_, 0);
    /* the counter does see a parse: an error body is parsed */
    const char *e = "{\"jsonrpc\":\"2.0\",\"id\":1,\"error\":{\"code\":-32005,\"message\":\"limit exceeded\"}}";
    assert_int_equal(dp_classify(200, e, strlen(e), NULL, 0).cls, DP_CLASS_RATE_LIMITED);
    assert_true(allocs_ > 0);
    json_set_alloc_funcs(malloc, free);
}

/* every built-in row is documented in docs/dataplane.md as "| code | message | class |" */
static void test_table_documented(void **state)
{
    const char *src = getenv("PW_SOURCE_DIR");
    if (src == NULL)
        skip();
    char path[4096];
    snprintf(path, sizeof(path), "%s/docs/dataplane.md", src);
    FILE *fp = fopen(path, "rb");
    assert_non_null(fp);
    static char doc[1 << 20];
    size_t len = fread(doc, 1, sizeof(doc) - 1, fp);
    doc[len] = '\0';
    fclose(fp);
    const char *section = strstr(doc, "### Classifying upstream errors");
    assert_non_null(section);
    size_t n;
    const dp_classify_rule_t *rules = dp_classify_builtin(&n);
    const char *at = section;
    for (size_t i = 0; i < n; i++) {
        char code[32], row[256];
        if (rules[i].has_code)
            snprintf(code, sizeof(code), "`%d`", (int)rules[i].code);
        else
            snprintf(code, sizeof(code), "any");
        snprintf(row, sizeof(row), "| %s | %s%s%s | %s |", code, rules[i].message ? "`" : "",
                 rules[i].message ? rules[i].message : "any", rules[i].message ? "`" : "", dp_class_name(rules[i].cls));
        const char *found = strstr(at, row);
        if (found == NULL)
            fail_msg("docs/dataplane.md does not list built-in row %zu in order: %s", i, row);
        at = found + strlen(row);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_builtin_classes),         cmocka_unit_test(test_operator_rows),    cmocka_unit_test(test_retriable),
        cmocka_unit_test(test_ok_result_is_not_parsed), cmocka_unit_test(test_table_documented),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
