/* dp_errors: the gateway's own errors, as clients see them and as a failover classes them. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <string.h>
#include "dp_errors.h"

static void assert_row(dp_error_t e, int status, int code, const char *message)
{
    assert_int_equal(dp_error(e)->status, status);
    assert_int_equal(dp_error(e)->rpc_code, code);
    assert_string_equal(dp_error(e)->message, message);
}

/* What clients match on today (the integration tests assert the same on the wire). */
static void test_client_facing(void **state)
{
    assert_row(DP_ERR_NOT_FOUND, 404, -32601, "not found: use POST /v1/<service>");
    assert_row(DP_ERR_UNKNOWN_SERVICE, 404, -32601, "unknown service");
    assert_row(DP_ERR_METHOD_NOT_ALLOWED, 405, -32600, "method not allowed: use POST");
    assert_row(DP_ERR_REQUEST_TOO_LARGE, 413, -32600, "request body exceeds limits.max_request_body");
    assert_row(DP_ERR_QUEUE_FULL, 503, -32005, "too many requests: the gateway's queue is full");
    assert_row(DP_ERR_QUEUE_TIMEOUT, 503, -32005, "too many requests: queue timeout");
    assert_row(DP_ERR_CONNECT_FAILED, 502, -32002, "upstream connect failed");
    assert_row(DP_ERR_UPSTREAM_TIMEOUT, 504, -32003, "upstream timeout");
    assert_row(DP_ERR_RESPONSE_TOO_LARGE, 502, -32002, "upstream response exceeds limits.max_response_body");
    assert_row(DP_ERR_CONFLICTING_LENGTH, 502, -32002, "upstream sent conflicting Content-Length headers");
}

static void test_classes(void **state)
{
    /* an endpoint that failed: another may answer, and the failure is its own */
    const dp_error_t endpoint[] = {DP_ERR_CONNECT_FAILED, DP_ERR_UPSTREAM_CLOSED, DP_ERR_BAD_RESPONSE, DP_ERR_UPSTREAM_TIMEOUT,
                                   DP_ERR_BAD_CHUNKED};
    for (size_t i = 0; i != sizeof(endpoint) / sizeof(endpoint[0]); ++i) {
        assert_true(dp_error(endpoint[i])->retriable);
        assert_true(dp_error(endpoint[i])->endpoint_fault);
    }
    /* the request or the gateway's own bounds: a retry only adds load, and no endpoint is to blame */
    const dp_error_t final[] = {DP_ERR_NOT_FOUND,     DP_ERR_MISSING_SERVICE, DP_ERR_REQUEST_TOO_LARGE,  DP_ERR_QUEUE_FULL,
                                DP_ERR_SHUTTING_DOWN, DP_ERR_CLIENT_CLOSED,   DP_ERR_RESPONSE_TOO_LARGE, DP_ERR_FRAMING_NO_HOST};
    for (size_t i = 0; i != sizeof(final) / sizeof(final[0]); ++i) {
        assert_false(dp_error(final[i])->retriable);
        assert_false(dp_error(final[i])->endpoint_fault);
    }
}

static void test_every_row(void **state)
{
    for (int e = 0; e != DP_ERR__COUNT; ++e) {
        const dp_error_info_t *ei = dp_error((dp_error_t)e);
        assert_non_null(ei->name);
        assert_non_null(ei->message);
        assert_true(ei->status >= 400 && ei->status <= 599);
        assert_true(ei->rpc_code <= -32000 && ei->rpc_code >= -32768);
        /* a request's own fault never counts against an endpoint */
        if (ei->status < 500 && ei->status != 499)
            assert_false(ei->endpoint_fault);
        for (int o = 0; o != e; ++o)
            assert_string_not_equal(dp_error((dp_error_t)o)->message, ei->message);
    }
}

static void test_framing(void **state)
{
    assert_int_equal(dp_framing_error(DP_FRAMING_CL_AND_TE), DP_ERR_FRAMING_CL_AND_TE);
    assert_int_equal(dp_framing_error(DP_FRAMING_DUPLICATE_CL), DP_ERR_FRAMING_DUPLICATE_CL);
    assert_int_equal(dp_framing_error(DP_FRAMING_NO_HOST), DP_ERR_FRAMING_NO_HOST);
    assert_int_equal(dp_framing_error(DP_FRAMING_DUPLICATE_HOST), DP_ERR_FRAMING_DUPLICATE_HOST);
    assert_string_equal(dp_rpc_framing_message(DP_FRAMING_DUPLICATE_CL), "bad request: more than one Content-Length header");
    assert_string_equal(dp_rpc_framing_message(DP_FRAMING_OK), "ok");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_client_facing),
        cmocka_unit_test(test_classes),
        cmocka_unit_test(test_every_row),
        cmocka_unit_test(test_framing),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
