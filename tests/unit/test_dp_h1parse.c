/* dp_h1parse: the HTTP/1.1 response parser, fed whole and cut at every byte. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "../fuzz/h1_drive.h"

/* Feeds `s` whole, then cut once at every byte (long inputs: every byte near either end, a few
 * hundred between) and twice at every pair of bytes (short inputs),
 * asserts that every cut gives the whole feed's outcome, and returns that outcome. */
static h1_outcome_t drive_all(const char *s, size_t len, int eof)
{
    h1_outcome_t whole;
    assert_int_equal(h1_drive((const uint8_t *)s, len, NULL, 0, eof, &whole), 0);
    size_t stride = len / 256 + 1;
    for (size_t i = 0; i <= len; i += (i < 1024 || len - i < 1024) ? 1 : stride) {
        h1_outcome_t cut;
        size_t cuts[1] = {i};
        assert_int_equal(h1_drive((const uint8_t *)s, len, cuts, 1, eof, &cut), 0);
        if (!h1_outcome_equal(&whole, &cut))
            fail_msg("a cut at byte %zu of %zu changes the outcome (%d vs %d)", i, len, cut.result, whole.result);
        h1_outcome_free(&cut);
        for (size_t j = i; len <= 200 && j <= len; ++j) {
            size_t cuts2[2] = {i, j};
            assert_int_equal(h1_drive((const uint8_t *)s, len, cuts2, 2, eof, &cut), 0);
            if (!h1_outcome_equal(&whole, &cut))
                fail_msg("cuts at bytes %zu and %zu of %zu change the outcome", i, j, len);
            h1_outcome_free(&cut);
        }
    }
    if (len > 4096) /* one byte at a time re-parses the head once per byte: quadratic */
        return whole;
    /* and one byte at a time */
    size_t *every = malloc((len + 1) * sizeof(*every));
    assert_non_null(every);
    for (size_t i = 0; i != len; ++i)
        every[i] = i + 1;
    h1_outcome_t bytes;
    assert_int_equal(h1_drive((const uint8_t *)s, len, every, len, eof, &bytes), 0);
    free(every);
    assert_true(h1_outcome_equal(&whole, &bytes));
    h1_outcome_free(&bytes);
    return whole;
}

#define DRIVE(lit, eof) drive_all(lit, sizeof(lit) - 1, eof)

static void assert_body(const h1_outcome_t *o, const char *expected)
{
    assert_int_equal(o->body_len, strlen(expected));
    assert_memory_equal(o->body, expected, o->body_len);
}

static void test_content_length(void **state)
{
    h1_outcome_t o = DRIVE("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 5\r\n\r\nhello", 0);
    assert_int_equal(o.result, DP_H1_DONE);
    assert_int_equal(o.status, 200);
    assert_int_equal(o.mode, DP_H1_BODY_LENGTH);
    assert_int_equal(o.content_length, 5);
    assert_true(o.keepalive);
    assert_int_equal(o.nheaders, 2);
    assert_body(&o, "hello");
    assert_int_equal(o.extra, 0);
    assert_memory_equal(o.heads + o.heads_len - 2, "OK", 2);
    h1_outcome_free(&o);
}

static void test_bytes_after_the_end(void **state)
{
    /* a second response (or garbage) after the first: counted, never part of the body */
    h1_outcome_t o = DRIVE("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokHTTP/1.1 200 OK\r\n", 0);
    assert_int_equal(o.result, DP_H1_DONE);
    assert_body(&o, "ok");
    assert_int_equal(o.extra, 17);
    h1_outcome_free(&o);
}

static void test_chunked(void **state)
{
    h1_outcome_t o = DRIVE("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                           "5\r\nhello\r\n1;ext=1\r\n \r\nA\r\n0123456789\r\n0\r\nX-Trailer: t\r\n\r\n",
                           0);
    assert_int_equal(o.result, DP_H1_DONE);
    assert_int_equal(o.mode, DP_H1_BODY_CHUNKED);
    assert_int_equal(o.content_length, UINT64_MAX);
    assert_body(&o, "hello 0123456789");
    assert_int_equal(o.extra, 0);
    h1_outcome_free(&o);

    /* upper-case hex, a list of codings ending in chunked, no trailer */
    o = DRIVE("HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n1F\r\n0123456789012345678901234567890\r\n0\r\n\r\nNEXT",
              0);
    assert_int_equal(o.result, DP_H1_DONE);
    assert_int_equal(o.body_len, 31);
    assert_int_equal(o.extra, 4);
    h1_outcome_free(&o);

    /* an empty chunked body */
    o = DRIVE("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 0);
    assert_int_equal(o.result, DP_H1_DONE);
    assert_int_equal(o.body_len, 0);
    h1_outcome_free(&o);
}

static void test_chunked_broken(void **state)
{
    h1_outcome_t o = DRIVE("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n", 0);
    assert_int_equal(o.result, DP_H1_ERR_CHUNKED);
    h1_outcome_free(&o);
    /* a chunk size that overflows */
    o = DRIVE("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nFFFFFFFFFFFFFFFFFF\r\nx", 0);
    assert_int_equal(o.result, DP_H1_ERR_CHUNKED);
    h1_outcome_free(&o);
    /* closed before the last chunk */
    o = DRIVE("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n", 1);
    assert_int_equal(o.result, DP_H1_ERR_TRUNCATED);
    assert_body(&o, "hello");
    h1_outcome_free(&o);
}

static void test_close_delimited(void **state)
{
    h1_outcome_t o = DRIVE("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nuntil the end", 1);
    assert_int_equal(o.result, DP_H1_DONE);
    assert_int_equal(o.mode, DP_H1_BODY_EOF);
    assert_false(o.keepalive); /* its end is the close */
    assert_body(&o, "until the end");
    h1_outcome_free(&o);
    /* without the close it is not over */
    o = DRIVE("HTTP/1.1 200 OK\r\n\r\nmore to come", 0);
    assert_int_equal(o.result, DP_H1_MORE);
    h1_outcome_free(&o);
    /* a body framed by length, cut short */
    o = DRIVE("HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort", 1);
    assert_int_equal(o.result, DP_H1_ERR_TRUNCATED);
    h1_outcome_free(&o);
}

static void test_conflicting_framing(void **state)
{
    h1_outcome_t o = DRIVE("HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!", 0);
    assert_int_equal(o.result, DP_H1_ERR_CONFLICTING_LENGTH);
    h1_outcome_free(&o);
    /* the same value twice is harmless */
    o = DRIVE("HTTP/1.1 200 OK\r\nContent-Length: 5\r\ncontent-length: 5\r\n\r\nhello", 0);
    assert_int_equal(o.result, DP_H1_DONE);
    assert_body(&o, "hello");
    h1_outcome_free(&o);
    o = DRIVE("HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n", 0);
    assert_int_equal(o.result, DP_H1_ERR_LENGTH_AND_TE);
    h1_outcome_free(&o);
    o = DRIVE("HTTP/1.1 200 OK\r\nTRANSFER-ENCODING: chunked\r\nCONTENT-LENGTH: 5\r\n\r\n", 0);
    assert_int_equal(o.result, DP_H1_ERR_LENGTH_AND_TE);
    h1_outcome_free(&o);
    /* near misses are other headers: the body runs to the close */
    o = DRIVE(
        "HTTP/1.1 200 OK\r\nContent_Length: 5\r\nContent-Lengtx: 5\r\nXontent-Length: 5\r\nTransfer-Encodin: chunked\r\n\r\nhello",
        1);
    assert_int_equal(o.result, DP_H1_DONE);
    assert_int_equal(o.mode, DP_H1_BODY_EOF);
    assert_body(&o, "hello");
    h1_outcome_free(&o);
    o = DRIVE("HTTP/1.1 200 OK\r\nContent-Length: 5x\r\n\r\nhello", 0);
    assert_int_equal(o.result, DP_H1_ERR_CONTENT_LENGTH);
    h1_outcome_free(&o);
    o = DRIVE("HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n", 0);
    assert_int_equal(o.result, DP_H1_ERR_CONTENT_LENGTH);
    h1_outcome_free(&o);
}

static void test_bad_status(void **state)
{
    const char *bad[] = {"HTTP/1.1 099 Low\r\nContent-Length: 0\r\n\r\n",
                         "HTTP/1.1 600 High\r\nContent-Length: 0\r\n\r\n",
                         "HTTP/1.1 2000 OK\r\n\r\n",
                         "HTTP/1.1 abc OK\r\n\r\n",
                         "HTTP/2.0 200 OK\r\n\r\n",
                         "ICY 200 OK\r\n\r\n",
                         "HTTP/1.1 200 OK\r\nNo Colon\r\n\r\n"};
    for (size_t i = 0; i != sizeof(bad) / sizeof(bad[0]); ++i) {
        h1_outcome_t o = drive_all(bad[i], strlen(bad[i]), 1);
        if (o.result != DP_H1_ERR_STATUS && o.result != DP_H1_ERR_SYNTAX)
            fail_msg("accepted: %s", bad[i]);
        h1_outcome_free(&o);
    }
    h1_outcome_t o = DRIVE("HTTP/1.1 600 High\r\n\r\n", 0);
    assert_int_equal(o.result, DP_H1_ERR_STATUS);
    h1_outcome_free(&o);
}

static void test_interim_and_empty(void **state)
{
    h1_outcome_t o = DRIVE("HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n"
                           "HTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\nok",
                           0);
    assert_int_equal(o.result, DP_H1_DONE);
    assert_int_equal(o.status, 201);
    assert_int_equal(o.nheaders, 1);
    assert_body(&o, "ok");
    h1_outcome_free(&o);
    /* 204 and 304 have no body whatever they say */
    o = DRIVE("HTTP/1.1 204 No Content\r\nTransfer-Encoding: chunked\r\n\r\n", 0);
    assert_int_equal(o.result, DP_H1_DONE);
    assert_int_equal(o.mode, DP_H1_BODY_LENGTH);
    assert_int_equal(o.content_length, 0);
    h1_outcome_free(&o);
    o = DRIVE("HTTP/1.1 304 Not Modified\r\n\r\n", 0);
    assert_int_equal(o.result, DP_H1_DONE);
    assert_true(o.keepalive);
    h1_outcome_free(&o);
}

static void test_keepalive(void **state)
{
    h1_outcome_t o = DRIVE("HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n", 0);
    assert_false(o.keepalive);
    h1_outcome_free(&o);
    o = DRIVE("HTTP/1.0 200 OK\r\nConnection: Keep-Alive\r\nContent-Length: 0\r\n\r\n", 0);
    assert_true(o.keepalive);
    h1_outcome_free(&o);
    o = DRIVE("HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 0\r\n\r\n", 0);
    assert_false(o.keepalive);
    h1_outcome_free(&o);
    o = DRIVE("HTTP/1.1 200 OK\r\nConnection: foo, close\r\nContent-Length: 0\r\n\r\n", 0);
    assert_false(o.keepalive);
    h1_outcome_free(&o);
    o = DRIVE("HTTP/1.0 200 OK\r\nConnection: foo, keep-alive\r\nContent-Length: 0\r\n\r\n", 0);
    assert_true(o.keepalive);
    h1_outcome_free(&o);
}

static void test_reason_phrase(void **state)
{
    h1_outcome_t o = DRIVE("HTTP/1.1 503 Slow Down Please\r\nContent-Length: 0\r\n\r\n", 0);
    assert_int_equal(o.status, 503);
    assert_memory_equal(o.heads + o.heads_len - 16, "Slow Down Please", 16);
    h1_outcome_free(&o);
    o = DRIVE("HTTP/1.1 200 \r\nContent-Length: 0\r\n\r\n", 0); /* an empty reason */
    assert_int_equal(o.result, DP_H1_DONE);
    assert_int_equal(o.heads_len, sizeof("Content-Length: 0\n") - 1);
    h1_outcome_free(&o);
    o = DRIVE("HTTP/1.1 200\r\nContent-Length: 0\r\n\r\n", 0); /* none at all: picohttpparser wants the space */
    assert_int_equal(o.result, DP_H1_ERR_SYNTAX);
    h1_outcome_free(&o);
}

static char *big_head(size_t value_len, size_t *len)
{
    char *s = malloc(value_len + 100);
    assert_non_null(s);
    int n = snprintf(s, 100, "HTTP/1.1 200 OK\r\nX-Big: ");
    memset(s + n, 'a', value_len);
    memcpy(s + n + value_len, "\r\nContent-Length: 0\r\n\r\n", 24);
    *len = (size_t)n + value_len + 24;
    return s;
}

static void test_oversize(void **state)
{
    size_t len;
    /* just within the bound */
    char *s = big_head(DP_H1_MAX_HEAD - 64, &len);
    assert_true(len <= DP_H1_MAX_HEAD);
    h1_outcome_t o = drive_all(s, len, 0);
    assert_int_equal(o.result, DP_H1_DONE);
    h1_outcome_free(&o);
    free(s);
    /* over it: refused complete or not, however it is cut */
    s = big_head(DP_H1_MAX_HEAD, &len);
    o = drive_all(s, len, 0);
    assert_int_equal(o.result, DP_H1_ERR_HEAD_TOO_LARGE);
    h1_outcome_free(&o);
    o = drive_all(s, len - 4, 1);
    assert_int_equal(o.result, DP_H1_ERR_HEAD_TOO_LARGE);
    h1_outcome_free(&o);
    free(s);
    /* too many headers */
    char many[DP_H1_MAX_HEADERS * 8 + 64];
    size_t n = (size_t)snprintf(many, sizeof(many), "HTTP/1.1 200 OK\r\n");
    for (int i = 0; i <= DP_H1_MAX_HEADERS; ++i)
        n += (size_t)snprintf(many + n, sizeof(many) - n, "a: b\r\n");
    n += (size_t)snprintf(many + n, sizeof(many) - n, "\r\n");
    o = drive_all(many, n, 0);
    assert_int_equal(o.result, DP_H1_ERR_SYNTAX);
    h1_outcome_free(&o);
}

static void test_body_after_done(void **state)
{
    /* the relay may feed again once done: everything is extra */
    dp_h1_head_t head = {.status = 200, .mode = DP_H1_BODY_LENGTH, .content_length = 1};
    dp_h1_body_t b;
    dp_h1_body_init(&b, &head);
    char buf[] = "xyz";
    size_t n = 3, x = 0;
    assert_int_equal(dp_h1_body_feed(&b, buf, &n, &x), DP_H1_DONE);
    assert_int_equal(n, 1);
    assert_int_equal(x, 2);
    n = 2;
    assert_int_equal(dp_h1_body_feed(&b, buf, &n, &x), DP_H1_DONE);
    assert_int_equal(n, 0);
    assert_int_equal(x, 2);
    assert_int_equal(dp_h1_body_eof(&b), DP_H1_DONE);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_content_length),  cmocka_unit_test(test_bytes_after_the_end),
        cmocka_unit_test(test_chunked),         cmocka_unit_test(test_chunked_broken),
        cmocka_unit_test(test_close_delimited), cmocka_unit_test(test_conflicting_framing),
        cmocka_unit_test(test_bad_status),      cmocka_unit_test(test_interim_and_empty),
        cmocka_unit_test(test_keepalive),       cmocka_unit_test(test_reason_phrase),
        cmocka_unit_test(test_oversize),        cmocka_unit_test(test_body_after_done),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
