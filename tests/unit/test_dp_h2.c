/* dp_h2: request headers for HTTP/2, the response head as HEADERS bring it, a response read by a
 * client session (h2_drive.h), and the config's protocol and stream bounds. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "../fuzz/h2_drive.h"
#include "cfg.h"
#include "dp_rpc.h"

static int nv_is(const nghttp2_nv *nv, const char *name, const char *value)
{
    return nv->namelen == strlen(name) && memcmp(nv->name, name, nv->namelen) == 0 && nv->valuelen == strlen(value) &&
           memcmp(nv->value, value, nv->valuelen) == 0;
}

static void test_prefix_headers(void **state)
{
    cfg_header_t hs[] = {{"X-Api-Key", "secret"}, {"Content-Type", "application/json-rpc"}};
    const char *err = NULL;
    size_t len = 0, n = 0;
    char *prefix = dp_rpc_head_prefix("/v3/key", "example.com:8443", hs, 2, "user:pass", &len, &err);
    assert_non_null(prefix);
    nghttp2_nv *nv = dp_h2_prefix_headers(prefix, len, &n);
    assert_non_null(nv);
    /* host becomes :authority (not sent as a header); content-length is added per request */
    assert_int_equal(n, 3);
    assert_true(nv_is(&nv[0], "x-api-key", "secret")); /* names lowercased, as HTTP/2 requires */
    assert_true(nv_is(&nv[1], "content-type", "application/json-rpc"));
    assert_true(nv_is(&nv[2], "authorization", "Basic dXNlcjpwYXNz"));
    free(nv);
    free(prefix);
    /* no headers at all */
    prefix = dp_rpc_head_prefix("/", "h", NULL, 0, NULL, &len, &err);
    nv = dp_h2_prefix_headers(prefix, len, &n);
    assert_non_null(nv);
    assert_int_equal(n, 0);
    free(nv);
    free(prefix);
    /* a prefix of another shape is refused, not misread */
    assert_null(dp_h2_prefix_headers("POST / HTTP/1.1\r\nhost: h\r\n", 26, &n));
    assert_null(dp_h2_prefix_headers("garbage", 7, &n));
    const char *broken = "POST / HTTP/1.1\r\nhost h\r\ncontent-length: ";
    assert_null(dp_h2_prefix_headers(broken, strlen(broken), &n));
}

static dp_h1_result_t head_of(const char *const *kv, size_t n, dp_h1_head_t *head, struct phr_header *hdrs, size_t max)
{
    dp_h2_resp_t r;
    dp_h2_resp_init(&r, hdrs, max);
    for (size_t i = 0; i + 1 < n; i += 2)
        dp_h2_resp_header(&r, kv[i], strlen(kv[i]), kv[i + 1], strlen(kv[i + 1]));
    return dp_h2_resp_done(&r, head);
}

static void test_response_head(void **state)
{
    struct phr_header hdrs[8];
    dp_h1_head_t h;
    const char *ok[] = {":status", "200", "content-type", "application/json", "content-length", "42"};
    assert_int_equal(head_of(ok, 6, &h, hdrs, 8), DP_H1_DONE);
    assert_int_equal(h.status, 200);
    assert_int_equal(h.mode, DP_H1_BODY_LENGTH);
    assert_int_equal(h.content_length, 42);
    assert_int_equal(h.nheaders, 2); /* pseudo headers are not headers */
    assert_int_equal(h.keepalive, 1);
    const char *nolen[] = {":status", "503"};
    assert_int_equal(head_of(nolen, 2, &h, hdrs, 8), DP_H1_DONE);
    assert_int_equal(h.mode, DP_H1_BODY_EOF); /* delimited by END_STREAM */
    const char *nocontent[] = {":status", "204"};
    assert_int_equal(head_of(nocontent, 2, &h, hdrs, 8), DP_H1_DONE);
    assert_int_equal(h.mode, DP_H1_BODY_LENGTH);
    assert_int_equal(h.content_length, 0);
    const char *same[] = {":status", "200", "content-length", "5", "content-length", "5"};
    assert_int_equal(head_of(same, 6, &h, hdrs, 8), DP_H1_DONE);
    const char *interim[] = {":status", "103", "link", "</x>"};
    assert_int_equal(head_of(interim, 4, &h, hdrs, 8), DP_H1_MORE);
    /* refused heads */
    const char *nostatus[] = {"content-length", "1"};
    assert_int_equal(head_of(nostatus, 2, &h, hdrs, 8), DP_H1_ERR_STATUS);
    const char *badstatus[] = {":status", "2x0"};
    assert_int_equal(head_of(badstatus, 2, &h, hdrs, 8), DP_H1_ERR_STATUS);
    const char *bigstatus[] = {":status", "600"};
    assert_int_equal(head_of(bigstatus, 2, &h, hdrs, 8), DP_H1_ERR_STATUS);
    const char *twostatus[] = {":status", "200", ":status", "200"};
    assert_int_equal(head_of(twostatus, 4, &h, hdrs, 8), DP_H1_ERR_STATUS);
    const char *badlen[] = {":status", "200", "content-length", "-1"};
    assert_int_equal(head_of(badlen, 4, &h, hdrs, 8), DP_H1_ERR_CONTENT_LENGTH);
    const char *conflict[] = {":status", "200", "content-length", "5", "content-length", "6"};
    assert_int_equal(head_of(conflict, 6, &h, hdrs, 8), DP_H1_ERR_CONFLICTING_LENGTH);
    const char *many[] = {":status", "200", "a", "1", "b", "2", "c", "3"};
    assert_int_equal(head_of(many, 8, &h, hdrs, 2), DP_H1_ERR_HEAD_TOO_LARGE);
    /* the byte bound */
    static char big[DP_H1_MAX_HEAD];
    memset(big, 'v', sizeof(big) - 1);
    const char *huge[] = {":status", "200", "x-big", big};
    assert_int_equal(head_of(huge, 4, &h, hdrs, 8), DP_H1_ERR_HEAD_TOO_LARGE);
}

/* Server frames, by hand (HPACK literals without indexing). */
static size_t frame(uint8_t *p, int type, int flags, int sid, const void *payload, size_t len)
{
    p[0] = (uint8_t)(len >> 16), p[1] = (uint8_t)(len >> 8), p[2] = (uint8_t)len;
    p[3] = (uint8_t)type, p[4] = (uint8_t)flags;
    p[5] = (uint8_t)(sid >> 24), p[6] = (uint8_t)(sid >> 16), p[7] = (uint8_t)(sid >> 8), p[8] = (uint8_t)sid;
    memcpy(p + 9, payload, len);
    return 9 + len;
}

static size_t lit(uint8_t *p, const char *name, const char *value)
{
    size_t n = strlen(name), v = strlen(value);
    p[0] = 0, p[1] = (uint8_t)n;
    memcpy(p + 2, name, n);
    p[2 + n] = (uint8_t)v;
    memcpy(p + 3 + n, value, v);
    return 3 + n + v;
}

static void test_session_reads_response(void **state)
{
    static uint8_t buf[4096];
    uint8_t hb[256];
    size_t len = 0, hl = 0;
    len += frame(buf + len, NGHTTP2_SETTINGS, 0, 0, "", 0);
    hb[hl++] = 0x88; /* :status 200 */
    hl += lit(hb + hl, "content-length", "11");
    len += frame(buf + len, NGHTTP2_HEADERS, NGHTTP2_FLAG_END_HEADERS, 1, hb, hl);
    len += frame(buf + len, NGHTTP2_DATA, 0, 1, "hello ", 6);
    len += frame(buf + len, NGHTTP2_DATA, NGHTTP2_FLAG_END_STREAM, 1, "world", 5);
    h2_outcome_t whole, cut;
    assert_int_equal(h2_drive(buf, len, NULL, 0, &whole), 0);
    assert_int_equal(whole.head, 1);
    assert_int_equal(whole.status, 200);
    assert_int_equal(whole.body_len, 11);
    assert_int_equal(whole.ended, 1);
    assert_int_equal(whole.session_error, 0);
    /* cut anywhere, the same outcome */
    for (size_t i = 0; i <= len; ++i) {
        size_t cuts[1] = {i};
        assert_int_equal(h2_drive(buf, len, cuts, 1, &cut), 0);
        assert_true(h2_outcome_equal(&whole, &cut));
    }
    /* a body longer than its content-length: the stream is reset (nghttp2 checks), never relayed whole */
    len = 0;
    len += frame(buf + len, NGHTTP2_SETTINGS, 0, 0, "", 0);
    len += frame(buf + len, NGHTTP2_HEADERS, NGHTTP2_FLAG_END_HEADERS, 1, hb, hl);
    len += frame(buf + len, NGHTTP2_DATA, NGHTTP2_FLAG_END_STREAM, 1, "hello world!", 12);
    assert_int_equal(h2_drive(buf, len, NULL, 0, &whole), 0);
    assert_int_equal(whole.ended, 0);
    assert_int_not_equal(whole.close_code, 0);
    /* REFUSED_STREAM: closed with that code, before any head */
    len = 0;
    len += frame(buf + len, NGHTTP2_SETTINGS, 0, 0, "", 0);
    len += frame(buf + len, NGHTTP2_RST_STREAM, 0, 1, "\0\0\0\7", 4);
    assert_int_equal(h2_drive(buf, len, NULL, 0, &whole), 0);
    assert_int_equal(whole.head, 0);
    assert_int_equal(whole.closed, 1);
    assert_int_equal(whole.close_code, NGHTTP2_REFUSED_STREAM);
}

static cfg_t *parse(const char *yaml, char **err)
{
    cfg_errors_t errs;
    cfg_errors_init(&errs);
    cfg_t *cfg = cfg_parse(yaml, strlen(yaml), CFG_FORMAT_YAML, CFG_SCOPE_FULL, &errs);
    *err = cfg == NULL ? cfg_errors_join(&errs) : NULL;
    cfg_errors_dispose(&errs);
    return cfg;
}

static void test_config_bounds(void **state)
{
    char *err = NULL;
    cfg_t *cfg = parse("defaults:\n  pool:\n    protocol: auto\n    max_concurrent_streams: 1000\n"
                       "services:\n  - id: a\n    endpoints:\n      - url: http://127.0.0.1:1/\n"
                       "      - url: http://127.0.0.1:2/\n        protocol: h2\n        max_concurrent_streams: 7\n"
                       "  - id: b\n    endpoints:\n      - url: http://127.0.0.1:3/\n",
                       &err);
    assert_non_null(cfg);
    const cfg_service_t *a = &cfg->services.entries[0];
    assert_int_equal(a->pool.protocol, CFG_PROTO_AUTO);
    assert_int_equal(a->pool.max_concurrent_streams, 1000);
    assert_int_equal(a->endpoints.entries[0].has_protocol, 0);
    assert_int_equal(a->endpoints.entries[0].max_concurrent_streams, 0); /* the service's */
    assert_int_equal(a->endpoints.entries[1].has_protocol, 1);
    assert_int_equal(a->endpoints.entries[1].protocol, CFG_PROTO_H2);
    assert_int_equal(a->endpoints.entries[1].max_concurrent_streams, 7);
    cfg_destroy(cfg);
    /* the default stays http1, 100 streams */
    cfg = parse("services:\n  - id: a\n    endpoints:\n      - url: http://127.0.0.1:1/\n", &err);
    assert_non_null(cfg);
    assert_int_equal(cfg->services.entries[0].pool.protocol, CFG_PROTO_HTTP1);
    assert_int_equal(cfg->services.entries[0].pool.max_concurrent_streams, 100);
    cfg_destroy(cfg);
    /* bad values are named */
    static const struct {
        const char *yaml, *expect;
    } bad[] = {
        {"defaults:\n  pool:\n    max_concurrent_streams: 0\n", "defaults.pool.max_concurrent_streams"},
        {"defaults:\n  pool:\n    max_concurrent_streams: 1001\n", "defaults.pool.max_concurrent_streams"},
        {"defaults:\n  pool:\n    protocol: h3\n", "defaults.pool.protocol"},
        {"services:\n  - id: a\n    endpoints:\n      - url: http://127.0.0.1:1/\n        protocol: http2\n",
         "services[0].endpoints[0].protocol"},
        {"services:\n  - id: a\n    endpoints:\n      - url: http://127.0.0.1:1/\n        max_concurrent_streams: 0\n",
         "services[0].endpoints[0].max_concurrent_streams"},
    };
    for (size_t i = 0; i != sizeof(bad) / sizeof(bad[0]); ++i) {
        char doc[512];
        snprintf(doc, sizeof(doc), "%s%s", bad[i].yaml,
                 strncmp(bad[i].yaml, "services", 8) == 0 ? "" : "services:\n  - id: a\n    endpoints:\n      - url: http://h/\n");
        cfg = parse(doc, &err);
        assert_null(cfg);
        if (strstr(err, bad[i].expect) == NULL)
            fail_msg("%s: error does not name %s: %s", bad[i].yaml, bad[i].expect, err);
        free(err);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_prefix_headers),
        cmocka_unit_test(test_response_head),
        cmocka_unit_test(test_session_reads_response),
        cmocka_unit_test(test_config_bounds),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
