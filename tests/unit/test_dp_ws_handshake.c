/* dp_ws_handshake: the upstream WebSocket handshake's request head and the check of its answer. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdlib.h>
#include <string.h>
#include "dp_ws.h"

/* RFC 6455 section 1.3's example */
static const char key_[] = "dGhlIHNhbXBsZSBub25jZQ==";
#define ACCEPT "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="

static dp_ws_answer_t parse(const char *s, size_t *headlen, int *status, const char **proto, size_t *plen)
{
    return dp_ws_parse_answer(s, strlen(s), key_, headlen, status, proto, plen);
}

static void test_accept_key(void **state)
{
    char out[DP_WS_ACCEPT_LEN + 1];
    dp_ws_accept_key(key_, strlen(key_), out);
    assert_string_equal(out, ACCEPT);
    char k1[DP_WS_KEY_LEN + 1], k2[DP_WS_KEY_LEN + 1];
    dp_ws_make_key(k1);
    dp_ws_make_key(k2);
    assert_int_equal(strlen(k1), DP_WS_KEY_LEN);
    assert_string_not_equal(k1, k2);
}

static void test_good_answer(void **state)
{
    const char *ans = "HTTP/1.1 101 Switching Protocols\r\nUpgrade: WebSocket\r\nConnection: keep-alive, Upgrade\r\n"
                      "Sec-WebSocket-Accept: " ACCEPT "\r\nSec-WebSocket-Protocol: graphql-ws\r\n\r\n\x81\x02hi";
    size_t headlen, plen;
    int status;
    const char *proto;
    assert_int_equal(parse(ans, &headlen, &status, &proto, &plen), DP_WS_ANSWER_OK);
    assert_int_equal(status, 101);
    assert_int_equal(headlen, strlen(ans) - 4); /* the frame after the head is not part of it */
    assert_int_equal(plen, strlen("graphql-ws"));
    assert_memory_equal(proto, "graphql-ws", plen);
    /* cut anywhere in the head: incomplete */
    for (size_t cut = 0; cut < headlen; ++cut)
        assert_int_equal(dp_ws_parse_answer(ans, cut, key_, &headlen, &status, &proto, &plen), DP_WS_ANSWER_INCOMPLETE);
}

static void test_refusals(void **state)
{
    size_t headlen, plen;
    int status;
    const char *proto;
    assert_int_equal(parse("HTTP/1.1 403 Forbidden\r\ncontent-length: 0\r\n\r\n", &headlen, &status, &proto, &plen),
                     DP_WS_ANSWER_STATUS);
    assert_int_equal(status, 403);
    assert_int_equal(parse("HTTP/1.1 200 OK\r\n\r\n", &headlen, &status, &proto, &plen), DP_WS_ANSWER_STATUS);
    /* a wrong or missing accept key, or two of them */
    assert_int_equal(parse("HTTP/1.1 101 x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: "
                           "AAAAAAAAAAAAAAAAAAAAAAAAAAA=\r\n\r\n",
                           &headlen, &status, &proto, &plen),
                     DP_WS_ANSWER_BAD_ACCEPT);
    assert_int_equal(parse("HTTP/1.1 101 x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n", &headlen, &status, &proto, &plen),
                     DP_WS_ANSWER_BAD_ACCEPT);
    assert_int_equal(parse("HTTP/1.1 101 x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: " ACCEPT
                           "\r\nSec-WebSocket-Accept: " ACCEPT "\r\n\r\n",
                           &headlen, &status, &proto, &plen),
                     DP_WS_ANSWER_BAD_ACCEPT);
    /* not an upgrade to websocket; an extension we never offered; HTTP/1.0; garbage */
    assert_int_equal(parse("HTTP/1.1 101 x\r\nUpgrade: h2c\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: " ACCEPT "\r\n\r\n",
                           &headlen, &status, &proto, &plen),
                     DP_WS_ANSWER_BAD);
    assert_int_equal(
        parse("HTTP/1.1 101 x\r\nUpgrade: websocket\r\nSec-WebSocket-Accept: " ACCEPT "\r\n\r\n", &headlen, &status, &proto, &plen),
        DP_WS_ANSWER_BAD);
    assert_int_equal(parse("HTTP/1.1 101 x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: " ACCEPT
                           "\r\nSec-WebSocket-Extensions: permessage-deflate\r\n\r\n",
                           &headlen, &status, &proto, &plen),
                     DP_WS_ANSWER_BAD);
    assert_int_equal(parse("HTTP/1.0 101 x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: " ACCEPT
                           "\r\n\r\n",
                           &headlen, &status, &proto, &plen),
                     DP_WS_ANSWER_BAD);
    assert_int_equal(parse("\x16\x03\x01 not http\r\n\r\n", &headlen, &status, &proto, &plen), DP_WS_ANSWER_BAD);
    assert_int_equal(parse("HTTP/1.1 999 x\r\n\r\n", &headlen, &status, &proto, &plen), DP_WS_ANSWER_BAD);
}

static void test_answer_too_large(void **state)
{
    size_t n = DP_WS_MAX_ANSWER + 100, headlen, plen;
    char *big = malloc(n);
    int status;
    const char *proto;
    static const char start[] = "HTTP/1.1 101 x\r\nX-Pad: ";
    memcpy(big, start, sizeof(start) - 1);
    memset(big + sizeof(start) - 1, 'a', n - (sizeof(start) - 1));
    /* a head that has not ended within DP_WS_MAX_ANSWER bytes is refused, not waited for */
    assert_int_equal(dp_ws_parse_answer(big, n, key_, &headlen, &status, &proto, &plen), DP_WS_ANSWER_BAD);
    assert_int_equal(dp_ws_parse_answer(big, 1000, key_, &headlen, &status, &proto, &plen), DP_WS_ANSWER_INCOMPLETE);
    free(big);
}

static void test_request_head(void **state)
{
    static const char prefix[] = "GET /ws HTTP/1.1\r\nhost: node:8546\r\nx-api-key: K\r\n";
    size_t len;
    char *h = dp_ws_request_head(prefix, strlen(prefix), key_, "graphql-ws, chat", 16, &len);
    assert_non_null(h);
    assert_int_equal(len, strlen(h));
    assert_string_equal(h, "GET /ws HTTP/1.1\r\nhost: node:8546\r\nx-api-key: K\r\nupgrade: websocket\r\nconnection: Upgrade\r\n"
                           "sec-websocket-version: 13\r\nsec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                           "sec-websocket-protocol: graphql-ws, chat\r\n\r\n");
    free(h);
    h = dp_ws_request_head(prefix, strlen(prefix), key_, NULL, 0, &len);
    assert_null(strstr(h, "sec-websocket-protocol"));
    assert_null(strstr(h, "extensions")); /* never offered: frames stay plain */
    free(h);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_accept_key),       cmocka_unit_test(test_good_answer),  cmocka_unit_test(test_refusals),
        cmocka_unit_test(test_answer_too_large), cmocka_unit_test(test_request_head),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
