/* Fuzz target: the check of an upstream's answer to Pathway's WebSocket upgrade request
 * (dp_ws_parse_answer), with the key of RFC 6455's example. Input: the bytes the endpoint sent.
 * Checks: the verdict is one of the five; OK only for a 101 whose head lies within the input and
 * DP_WS_MAX_ANSWER, whose subprotocol points into it, and which every shorter prefix of the head
 * calls incomplete; a refusal carries an HTTP status other than 101. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "dp_ws.h"

/* CHECK() is compiled out in release builds; these checks must not be */
#define CHECK(c)                                                                                                                   \
    do {                                                                                                                           \
        if (!(c))                                                                                                                  \
            abort();                                                                                                               \
    } while (0)

static const char key_[] = "dGhlIHNhbXBsZSBub25jZQ==";

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *buf = (const char *)data;
    size_t headlen, plen;
    int status;
    const char *proto;
    dp_ws_answer_t a = dp_ws_parse_answer(buf, size, key_, &headlen, &status, &proto, &plen);
    switch (a) {
    case DP_WS_ANSWER_OK:
        CHECK(status == 101);
        CHECK(headlen > 0 && headlen <= size && headlen <= DP_WS_MAX_ANSWER);
        CHECK(proto == NULL || (proto >= buf && proto + plen <= buf + headlen));
        for (size_t cut = headlen > 64 ? headlen - 64 : 0; cut < headlen; ++cut) {
            size_t h2, p2;
            int s2;
            const char *pr2;
            CHECK(dp_ws_parse_answer(buf, cut, key_, &h2, &s2, &pr2, &p2) == DP_WS_ANSWER_INCOMPLETE);
        }
        break;
    case DP_WS_ANSWER_STATUS:
        CHECK(status >= 100 && status <= 599 && status != 101);
        break;
    case DP_WS_ANSWER_INCOMPLETE:
        CHECK(size < DP_WS_MAX_ANSWER);
        break;
    case DP_WS_ANSWER_BAD:
    case DP_WS_ANSWER_BAD_ACCEPT:
        break;
    default:
        CHECK(0);
    }
    return 0;
}
