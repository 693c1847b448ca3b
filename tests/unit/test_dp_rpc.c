/* dp_rpc: routing and the gateway's JSON-RPC error bodies. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdlib.h>
#include <string.h>
#include "dp_rpc.h"

static dp_route_result_t route(const char *path, const char *hdr, char *out)
{
    const char *svc = NULL;
    size_t len = 0;
    dp_route_result_t r = dp_route(path, strlen(path), hdr, hdr ? strlen(hdr) : 0, &svc, &len);
    out[0] = '\0';
    if (r == DP_ROUTE_OK) {
        memcpy(out, svc, len);
        out[len] = '\0';
    }
    return r;
}

static void test_route_path(void **state)
{
    char id[128];
    assert_int_equal(route("/v1/eth", NULL, id), DP_ROUTE_OK);
    assert_string_equal(id, "eth");
    assert_int_equal(route("/v1/eth/", NULL, id), DP_ROUTE_OK);
    assert_string_equal(id, "eth");
    assert_int_equal(route("/v1/poly?x=1", "eth", id), DP_ROUTE_OK); /* the path wins */
    assert_string_equal(id, "poly");
    assert_int_equal(route("/v1/a.b-c_d", NULL, id), DP_ROUTE_OK);
    assert_string_equal(id, "a.b-c_d");
}

static void test_route_header(void **state)
{
    char id[128];
    assert_int_equal(route("/v1", "eth", id), DP_ROUTE_OK);
    assert_string_equal(id, "eth");
    assert_int_equal(route("/v1/", " poly\t", id), DP_ROUTE_OK);
    assert_string_equal(id, "poly");
    assert_int_equal(route("/v1", NULL, id), DP_ROUTE_MISSING);
    assert_int_equal(route("/v1", "", id), DP_ROUTE_MISSING);
    assert_int_equal(route("/v1", "  ", id), DP_ROUTE_MISSING);
    assert_int_equal(route("/v1", "e th", id), DP_ROUTE_BAD_ID);
}

static void test_route_rejects(void **state)
{
    char id[128];
    assert_int_equal(route("/", NULL, id), DP_ROUTE_NO_PATH);
    assert_int_equal(route("/v10/eth", NULL, id), DP_ROUTE_NO_PATH);
    assert_int_equal(route("/v2/eth", NULL, id), DP_ROUTE_NO_PATH);
    assert_int_equal(route("/v1/eth/x", NULL, id), DP_ROUTE_BAD_ID);
    assert_int_equal(route("/v1/%41", NULL, id), DP_ROUTE_BAD_ID);
    char longp[100] = "/v1/";
    memset(longp + 4, 'a', 65);
    longp[69] = '\0';
    assert_int_equal(route(longp, NULL, id), DP_ROUTE_BAD_ID);
    longp[68] = '\0'; /* 64 characters: the longest id */
    assert_int_equal(route(longp, NULL, id), DP_ROUTE_OK);
}

static void test_request_id(void **state)
{
    const char *s = "{\"jsonrpc\":\"2.0\",\"id\":7,\"method\":\"x\"}";
    json_t *id = dp_rpc_request_id(s, strlen(s));
    assert_non_null(id);
    assert_int_equal(json_integer_value(id), 7);
    json_decref(id);
    s = "{\"id\":\"abc\"}";
    id = dp_rpc_request_id(s, strlen(s));
    assert_string_equal(json_string_value(id), "abc");
    json_decref(id);
    s = "[{\"id\":1}]"; /* a batch has no single id */
    assert_null(dp_rpc_request_id(s, strlen(s)));
    s = "{\"id\":{\"nested\":1}}"; /* not a valid id */
    assert_null(dp_rpc_request_id(s, strlen(s)));
    s = "{\"id\":1";
    assert_null(dp_rpc_request_id(s, strlen(s)));
    assert_null(dp_rpc_request_id(NULL, 0));
}

static void test_error_body(void **state)
{
    size_t len = 0;
    const char *req = "{\"jsonrpc\":\"2.0\",\"id\":\"q-1\",\"method\":\"eth_chainId\"}";
    char *b = dp_rpc_error_body(req, strlen(req), DP_RPC_LIMIT_EXCEEDED, "too many", &len);
    assert_non_null(b);
    assert_int_equal(len, strlen(b));
    json_t *doc = json_loads(b, 0, NULL);
    assert_non_null(doc);
    assert_string_equal(json_string_value(json_object_get(doc, "jsonrpc")), "2.0");
    assert_string_equal(json_string_value(json_object_get(doc, "id")), "q-1");
    json_t *err = json_object_get(doc, "error");
    assert_int_equal(json_integer_value(json_object_get(err, "code")), -32005);
    assert_string_equal(json_string_value(json_object_get(err, "message")), "too many");
    json_decref(doc);
    free(b);
    b = dp_rpc_error_body("garbage", 7, DP_RPC_UPSTREAM_ERROR, "bad", &len);
    doc = json_loads(b, 0, NULL);
    assert_true(json_is_null(json_object_get(doc, "id")));
    json_decref(doc);
    free(b);
}

static dp_framing_t head(const char *s)
{
    return dp_rpc_check_http1_head(s, strlen(s));
}

static void test_framing(void **state)
{
    assert_int_equal(head("POST /v1 HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}"), DP_FRAMING_OK);
    assert_int_equal(head("POST /v1 HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\n\r\n"), DP_FRAMING_OK);
    assert_int_equal(head("POST /v1 HTTP/1.0\r\nContent-Length: 2\r\n\r\n{}"), DP_FRAMING_OK); /* 1.0 needs no Host */
    assert_int_equal(head("POST /v1 HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n"),
                     DP_FRAMING_CL_AND_TE);
    assert_int_equal(head("POST /v1 HTTP/1.1\r\nTRANSFER-ENCODING: chunked\r\nHost: x\r\ncontent-LENGTH: 2\r\n\r\n"),
                     DP_FRAMING_CL_AND_TE);
    assert_int_equal(head("POST /v1 HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\n"),
                     DP_FRAMING_DUPLICATE_CL);
    assert_int_equal(head("POST /v1 HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\n"),
                     DP_FRAMING_DUPLICATE_CL);
    assert_int_equal(head("POST /v1 HTTP/1.1\r\nContent-Length: 2\r\n\r\n"), DP_FRAMING_NO_HOST);
    assert_int_equal(head("POST /v1 HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n"), DP_FRAMING_DUPLICATE_HOST);
    /* names that only look alike */
    assert_int_equal(head("POST /v1 HTTP/1.1\r\nHost: x\r\nContent-Lengthy: 2\r\nX-Content-Length: 3\r\nHosts: y\r\n\r\n"),
                     DP_FRAMING_OK);
    assert_int_equal(head("POST /v1 HTTP/1.1\r\nHost: x\r\n"), DP_FRAMING_UNREADABLE); /* incomplete */
    assert_int_equal(head("garbage"), DP_FRAMING_UNREADABLE);
    assert_string_equal(dp_rpc_framing_message(DP_FRAMING_NO_HOST), "bad request: HTTP/1.1 request without Host");
}

static dp_framing_t scan(const char *s, int http11)
{
    return dp_rpc_scan_http1_head(s, strlen(s), http11);
}

/* The scan sees heads as libh2o leaves them: names lowercased, body not included. */
static void test_framing_scan(void **state)
{
    assert_int_equal(scan("POST /v1 HTTP/1.1\r\nhost: x\r\ncontent-length: 2\r\n\r\n", 1), DP_FRAMING_OK);
    assert_int_equal(scan("POST /v1 HTTP/1.1\nhost: x\ntransfer-encoding: chunked\n\n", 1), DP_FRAMING_OK);
    assert_int_equal(scan("POST /v1 HTTP/1.0\r\ncontent-length: 2\r\n\r\n", 0), DP_FRAMING_OK);
    assert_int_equal(scan("POST /v1 HTTP/1.1\r\nhost: x\r\ncontent-length: 2\r\ntransfer-encoding: chunked\r\n\r\n", 1),
                     DP_FRAMING_CL_AND_TE);
    assert_int_equal(scan("POST /v1 HTTP/1.1\r\ntransfer-encoding: chunked\r\nhost: x\r\ncontent-length: 2\r\n\r\n", 1),
                     DP_FRAMING_CL_AND_TE);
    assert_int_equal(scan("POST /v1 HTTP/1.1\r\nhost: x\r\ncontent-length: 2\r\ncontent-length: 2\r\n\r\n", 1),
                     DP_FRAMING_DUPLICATE_CL);
    assert_int_equal(scan("POST /v1 HTTP/1.1\r\ncontent-length: 2\r\n\r\n", 1), DP_FRAMING_NO_HOST);
    assert_int_equal(scan("POST /v1 HTTP/1.1\r\nhost: a\r\nhost: b\r\n\r\n", 1), DP_FRAMING_DUPLICATE_HOST);
    /* look-alikes: other names, a value that mentions a name, a folded continuation line */
    assert_int_equal(scan("POST /v1 HTTP/1.1\r\nhost: x\r\ncontent-lengthy: 2\r\nx-content-length: 3\r\nhosts: y\r\n"
                          "x-a: content-length: 4\r\nx-b: a\r\n content-length: 5\r\ncontent-length: 1\r\n\r\n",
                          1),
                     DP_FRAMING_OK);
    /* a name cut at the end of the buffer is no header */
    assert_int_equal(scan("POST /v1 HTTP/1.1\r\nhost: x\r\ncontent-length", 1), DP_FRAMING_OK);
    assert_int_equal(scan("", 1), DP_FRAMING_NO_HOST);
}

static void test_cors(void **state)
{
    char *origins[] = {"https://app.example", "http://localhost:3000"};
    assert_true(dp_cors_origin_allowed(origins, 2, "https://app.example", 19));
    assert_true(dp_cors_origin_allowed(origins, 2, "HTTPS://APP.EXAMPLE", 19));
    assert_false(dp_cors_origin_allowed(origins, 2, "https://app.example.evil", 24));
    assert_false(dp_cors_origin_allowed(origins, 2, "https://app.exampl", 18));
    assert_false(dp_cors_origin_allowed(origins, 2, "null", 4));
    assert_false(dp_cors_origin_allowed(origins, 0, "https://app.example", 19));
    char *any[] = {"*"};
    assert_true(dp_cors_origin_allowed(any, 1, "https://x.example", 17));

    char out[sizeof(DP_CORS_SAFE_HEADERS)];
    const char *req = "X-Request-Id, content-type ,Cookie,\tAUTHORIZATION, content-type, x-evil";
    assert_int_equal(dp_cors_allow_headers(req, strlen(req), out), strlen("content-type, x-request-id, authorization"));
    assert_string_equal(out, "content-type, x-request-id, authorization");
    assert_int_equal(dp_cors_allow_headers("", 0, out), 0);
    assert_string_equal(out, "");
    req = "target-service-id,authorization,x-request-id,content-type";
    dp_cors_allow_headers(req, strlen(req), out);
    assert_string_equal(out, DP_CORS_SAFE_HEADERS);
    assert_int_equal(dp_cors_allow_headers(",,, ,", 5, out), 0);
}

static void test_head_prefix(void **state)
{
    size_t len = 0;
    const char *err = NULL;
    char *p = dp_rpc_head_prefix("/v2/KEY?x=1", "eth.example", NULL, 0, NULL, &len, &err);
    assert_string_equal(p, "POST /v2/KEY?x=1 HTTP/1.1\r\nhost: eth.example\r\ncontent-length: ");
    assert_int_equal(len, strlen(p));
    free(p);
    cfg_header_t hdrs[] = {{"X-Api-Key", "secret"}, {"x-b", ""}};
    p = dp_rpc_head_prefix("/", "h:8545", hdrs, 2, "user:p@ss", &len, &err);
    /* base64("user:p@ss") = dXNlcjpwQHNz */
    assert_string_equal(p, "POST / HTTP/1.1\r\nhost: h:8545\r\nX-Api-Key: secret\r\nx-b: \r\n"
                           "authorization: Basic dXNlcjpwQHNz\r\ncontent-length: ");
    assert_int_equal(len, strlen(p));
    free(p);
    /* the endpoint's own authorization wins over userinfo */
    cfg_header_t auth[] = {{"Authorization", "Bearer t"}};
    p = dp_rpc_head_prefix("/", "h", auth, 1, "u:p", &len, &err);
    assert_string_equal(p, "POST / HTTP/1.1\r\nhost: h\r\nAuthorization: Bearer t\r\ncontent-length: ");
    free(p);
    p = dp_rpc_head_prefix("/", "h", NULL, 0, "", &len, &err); /* "https://@host": empty userinfo */
    assert_string_equal(p, "POST / HTTP/1.1\r\nhost: h\r\ncontent-length: ");
    free(p);
    cfg_header_t bad[] = {{"X-A", "a\r\nX-Injected: 1"}};
    assert_null(dp_rpc_head_prefix("/", "h", bad, 1, NULL, &len, &err));
    assert_non_null(err);
}

static int calls(const char *body, char *const *names, size_t n)
{
    int scan = dp_rpc_calls_any(body, strlen(body), names, n);
    int parsed = dp_rpc_calls_any_parsed(body, strlen(body), names, n);
    if (parsed)
        assert_int_equal(scan, 1); /* the scan never misses what a parse finds */
    return scan;
}

static void test_calls_any(void **state)
{
    char *unsafe[] = {"eth_sendRawTransaction", "eth_newFilter"};
    assert_int_equal(calls("{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"eth_sendRawTransaction\",\"params\":[\"0x00\"]}", unsafe, 2),
                     1);
    assert_int_equal(calls("{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"eth_blockNumber\",\"params\":[]}", unsafe, 2), 0);
    assert_int_equal(calls("{ \"method\" :\t\"eth_newFilter\" }", unsafe, 2), 1);
    /* a prefix or a longer name is another method */
    assert_int_equal(calls("{\"method\":\"eth_sendRawTransactionX\"}", unsafe, 2), 0);
    assert_int_equal(calls("{\"method\":\"eth_send\"}", unsafe, 2), 0);
    assert_int_equal(calls("{\"method\":\"ETH_NEWFILTER\"}", unsafe, 2), 0);
    /* a batch is unsafe when any item is */
    assert_int_equal(calls("[{\"method\":\"eth_blockNumber\",\"id\":1},{\"method\":\"eth_newFilter\",\"id\":2}]", unsafe, 2), 1);
    assert_int_equal(calls("[{\"method\":\"eth_blockNumber\",\"id\":1},{\"method\":\"eth_chainId\",\"id\":2}]", unsafe, 2), 0);
    /* the name as a value elsewhere is not a call */
    assert_int_equal(calls("{\"method\":\"eth_call\",\"params\":[\"eth_sendRawTransaction\",\"method\"]}", unsafe, 2), 0);
    /* escapes: a parse decides (an escaped key or name is still the method) */
    assert_int_equal(calls("{\"m\\u0065thod\":\"eth_newFilter\"}", unsafe, 2), 1);
    assert_int_equal(calls("{\"method\":\"eth_new\\u0046ilter\"}", unsafe, 2), 1);
    assert_int_equal(calls("{\"method\":\"eth_call\",\"params\":[\"a\\\"b\"]}", unsafe, 2), 0);
    /* no list, nothing to find; not JSON: nothing runs upstream */
    assert_int_equal(calls("{\"method\":\"eth_newFilter\"}", unsafe, 0), 0);
    assert_int_equal(calls("", unsafe, 2), 0);
    assert_int_equal(calls("{\"method\":\"eth_newFilter", unsafe, 2), 0);
    /* a nested "method" key errs toward unsafe */
    assert_int_equal(calls("{\"method\":\"eth_call\",\"params\":[{\"method\":\"eth_newFilter\"}]}", unsafe, 2), 1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_route_path),  cmocka_unit_test(test_route_header), cmocka_unit_test(test_route_rejects),
        cmocka_unit_test(test_request_id),  cmocka_unit_test(test_calls_any),    cmocka_unit_test(test_error_body),
        cmocka_unit_test(test_framing),     cmocka_unit_test(test_framing_scan), cmocka_unit_test(test_cors),
        cmocka_unit_test(test_head_prefix),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
