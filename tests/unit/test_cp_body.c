/* cp_body: the parsers of API inputs other than the config document. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>
#include "cp_body.h"

#define S(lit) lit, sizeof(lit) - 1

static void test_versions(void **state)
{
    int64_t v;
    assert_int_equal(cp_parse_version(S("42"), 0, &v), 0);
    assert_int_equal(v, 42);
    assert_int_equal(cp_parse_version(S("0"), 0, &v), -1);
    assert_int_equal(cp_parse_version(S("0"), 1, &v), 0);
    assert_int_equal(v, 0);
    assert_int_equal(cp_parse_version(S("-1"), 1, &v), -1);
    assert_int_equal(cp_parse_version(S("+1"), 1, &v), -1);
    assert_int_equal(cp_parse_version(S("1x"), 1, &v), -1);
    assert_int_equal(cp_parse_version(S(""), 1, &v), -1);
    assert_int_equal(cp_parse_version(S("99999999999999999999999"), 1, &v), -1);
    assert_int_equal(cp_parse_version(S("1000000000000001"), 1, &v), -1);
    assert_int_equal(cp_parse_version(S("1000000000000000"), 1, &v), 0);
}

static void test_names(void **state)
{
    assert_true(cp_valid_id(S("dp-1.eu_west")));
    assert_false(cp_valid_id(S("")));
    assert_false(cp_valid_id(S("a/b")));
    assert_false(cp_valid_id(S("a b")));
    assert_false(cp_valid_id(S("0123456789012345678901234567890123456789012345678901234567890123456789")));
    assert_true(cp_valid_tag_name(S("stable")));
    assert_true(cp_valid_tag_name(S("v2")));
    assert_false(cp_valid_tag_name(S("12")));
}

static void test_if_match(void **state)
{
    assert_true(cp_if_match_holds(S("\"5\""), 5, 0));
    assert_true(cp_if_match_holds(S("5"), 5, 0));
    /* If-Match compares strongly (RFC 9110): a weak tag is no match, If-None-Match's weak one is */
    assert_false(cp_if_match_holds(S("W/\"5\""), 5, 0));
    assert_false(cp_if_match_holds(S("W/\"5\", W/\"4\""), 5, 0));
    assert_true(cp_if_match_holds(S("W/\"4\", \"5\""), 5, 0));
    assert_true(cp_if_match_holds(S("W/\"5\""), 5, 1));
    assert_false(cp_if_match_holds(S("W/\"4\""), 5, 1));
    assert_true(cp_if_match_holds(S("\"3\", \"5\""), 5, 0));
    assert_false(cp_if_match_holds(S("\"4\""), 5, 0));
    assert_false(cp_if_match_holds(S("garbage"), 5, 0));
    assert_false(cp_if_match_holds(S(""), 5, 0));
    assert_true(cp_if_match_holds(S("*"), 5, 0));
    assert_false(cp_if_match_holds(S("*"), 0, 0));
    assert_true(cp_if_match_holds(S("\"0\""), 0, 0));
}

static void test_content_types(void **state)
{
    assert_int_equal(cp_content_type(NULL, 0), CP_CTYPE_NONE);
    assert_int_equal(cp_content_type(S("application/json")), CP_CTYPE_JSON);
    assert_int_equal(cp_content_type(S("Application/JSON; charset=utf-8")), CP_CTYPE_JSON);
    assert_int_equal(cp_content_type(S("application/merge-patch+json")), CP_CTYPE_MERGE_PATCH);
    assert_int_equal(cp_content_type(S("application/yaml")), CP_CTYPE_YAML);
    assert_int_equal(cp_content_type(S("text/yaml")), CP_CTYPE_YAML);
    assert_int_equal(cp_content_type(S("application/x-www-form-urlencoded")), CP_CTYPE_OTHER);
    assert_int_equal(cp_content_type(S("application/jsonx")), CP_CTYPE_OTHER);
    assert_true(cp_accepts_yaml(S("application/yaml")));
    assert_true(cp_accepts_yaml(S("text/html, application/x-yaml;q=0.9")));
    assert_false(cp_accepts_yaml(S("application/json, application/yaml")));
    assert_false(cp_accepts_yaml(S("*/*")));
}

static void test_query(void **state)
{
    static const char *const allowed[] = {"version", "wait", "message", NULL};
    cp_query_t q;
    char err[128];
    assert_int_equal(cp_query_parse(S("version=3&wait=30s&message=a%20b+c"), allowed, &q, err, sizeof(err)), 0);
    size_t len;
    assert_string_equal(cp_query_get(&q, "version", NULL), "3");
    assert_string_equal(cp_query_get(&q, "message", &len), "a b c");
    assert_int_equal(len, 5);
    assert_null(cp_query_get(&q, "nope", NULL));
    cp_query_dispose(&q);
    assert_int_equal(cp_query_parse(S("bogus=1"), allowed, &q, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "bogus"));
    assert_int_equal(cp_query_parse(S("wait=1&wait=2"), allowed, &q, err, sizeof(err)), -1);
    assert_int_equal(cp_query_parse(S("wait=%zz"), allowed, &q, err, sizeof(err)), -1);
    assert_int_equal(cp_query_parse(S("wait=%4"), allowed, &q, err, sizeof(err)), -1);
    assert_int_equal(cp_query_parse(S("wa%00it=1"), allowed, &q, err, sizeof(err)), -1);
    assert_int_equal(cp_query_parse(S(""), allowed, &q, err, sizeof(err)), 0);
    assert_int_equal(q.size, 0);
    cp_query_dispose(&q);
}

static void test_wait_and_message(void **state)
{
    uint64_t ms;
    const char *err;
    assert_int_equal(cp_parse_wait(S("30s"), &ms, &err), 0);
    assert_int_equal(ms, 30000);
    assert_int_equal(cp_parse_wait(S("250ms"), &ms, &err), 0);
    assert_int_equal(ms, 250);
    assert_int_equal(cp_parse_wait(S("30000ms"), &ms, &err), 0); /* how the dataplane asks */
    assert_int_equal(ms, 30000);
    assert_int_equal(cp_parse_wait(S("12"), &ms, &err), 0);
    assert_int_equal(ms, 12000);
    assert_int_equal(cp_parse_wait(S("soon"), &ms, &err), -1);
    assert_int_equal(cp_parse_wait(S("99999999999999999999"), &ms, &err), -1);
    assert_int_equal(cp_parse_wait(S("-5s"), &ms, &err), -1);
    assert_int_equal(cp_valid_message(S("raise pool to 80"), &err), 0);
    assert_int_equal(cp_valid_message(S("bad\x01"), &err), -1);
    assert_int_equal(cp_valid_message(S("\xff\xfe"), &err), -1);
    char big[CP_MAX_MESSAGE + 2];
    memset(big, 'a', sizeof(big));
    assert_int_equal(cp_valid_message(big, sizeof(big), &err), -1);
}

static void test_rollback(void **state)
{
    cp_rollback_req_t r;
    char err[256];
    assert_int_equal(cp_parse_rollback(S("{\"to\": 3, \"message\": \"bad pool\"}"), &r, err, sizeof(err)), 0);
    assert_int_equal(r.to_version, 3);
    assert_null(r.to_tag);
    assert_string_equal(r.message, "bad pool");
    cp_rollback_req_dispose(&r);
    assert_int_equal(cp_parse_rollback(S("{\"to\": \"stable\"}"), &r, err, sizeof(err)), 0);
    assert_string_equal(r.to_tag, "stable");
    assert_null(r.message);
    cp_rollback_req_dispose(&r);
    const char *bad[] = {"{}",
                         "[]",
                         "{\"to\": 0}",
                         "{\"to\": -1}",
                         "{\"to\": 1.5}",
                         "{\"to\": \"12\"}",
                         "{\"to\": \"a/b\"}",
                         "{\"to\": 1, \"x\": 1}",
                         "{\"to\": 1, \"message\": 5}",
                         "{\"to\": 1, \"to\": 2}",
                         "{\"to\": 1e99}",
                         "{\"to\": 99999999999999999999999}",
                         "not json",
                         "",
                         "{\"to\": null}"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        err[0] = '\0';
        assert_int_equal(cp_parse_rollback(bad[i], strlen(bad[i]), &r, err, sizeof(err)), -1);
        assert_true(err[0] != '\0');
        assert_null(r.to_tag);
        assert_null(r.message);
    }
}

static void test_tag(void **state)
{
    cp_tag_req_t r;
    char err[256];
    assert_int_equal(cp_parse_tag(S("{\"version\": 7}"), &r, err, sizeof(err)), 0);
    assert_int_equal(r.version, 7);
    cp_tag_req_dispose(&r);
    assert_int_equal(cp_parse_tag(S("{\"version\": \"7\"}"), &r, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "version"));
    assert_int_equal(cp_parse_tag(S("{\"version\": 7, \"colour\": 1}"), &r, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "colour"));
}

static void test_status(void **state)
{
    cp_status_req_t r;
    char err[256];
    assert_int_equal(
        cp_parse_status(S("{\"version\": 4, \"applied\": true, \"labels\": {\"region\": \"eu\"}, \"stats\": {\"rps\": 1}}"), &r,
                        err, sizeof(err)),
        0);
    assert_int_equal(r.version, 4);
    assert_true(r.applied);
    assert_null(r.error);
    assert_non_null(r.labels);
    assert_non_null(r.stats);
    cp_status_req_dispose(&r);
    assert_int_equal(
        cp_parse_status(S("{\"version\": 4, \"applied\": false, \"error\": \"ca_file: no such file\"}"), &r, err, sizeof(err)), 0);
    assert_false(r.applied);
    assert_string_equal(r.error, "ca_file: no such file");
    cp_status_req_dispose(&r);
    assert_int_equal(cp_parse_status(S("{\"version\": 4, \"applied\": false}"), &r, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "error"));
    assert_int_equal(cp_parse_status(S("{\"version\": 4, \"applied\": true, \"error\": \"x\"}"), &r, err, sizeof(err)), -1);
    assert_int_equal(cp_parse_status(S("{\"version\": 4, \"applied\": 1}"), &r, err, sizeof(err)), -1);
    assert_int_equal(cp_parse_status(S("{\"applied\": true}"), &r, err, sizeof(err)), -1);
    assert_int_equal(cp_parse_status(S("{\"version\": 4, \"applied\": true, \"labels\": {\"a\": 1}}"), &r, err, sizeof(err)), -1);
    assert_int_equal(cp_parse_status(S("{\"version\": 4, \"applied\": true, \"stats\": []}"), &r, err, sizeof(err)), -1);
    /* a NACK names the version it rejected */
    assert_int_equal(cp_parse_status(S("{\"version\": 0, \"applied\": false, \"error\": \"x\"}"), &r, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "version"));
    assert_int_equal(cp_parse_status(S("{\"version\": 0, \"applied\": true}"), &r, err, sizeof(err)), 0);
    cp_status_req_dispose(&r);
    /* stats are bounded (CP_MAX_STATS bytes as compact JSON) */
    char big[CP_MAX_STATS + 100];
    int n = snprintf(big, sizeof(big), "{\"version\": 1, \"applied\": true, \"stats\": {\"pad\": \"%0*d\"}}", CP_MAX_STATS - 10, 0);
    assert_true(n > 0 && (size_t)n < sizeof(big));
    assert_int_equal(cp_parse_status(big, (size_t)n, &r, err, sizeof(err)), 0); /* {"pad":"..."}: exactly the bound */
    cp_status_req_dispose(&r);
    n = snprintf(big, sizeof(big), "{\"version\": 1, \"applied\": true, \"stats\": {\"pad\": \"%0*d\"}}", CP_MAX_STATS - 9, 0);
    assert_int_equal(cp_parse_status(big, (size_t)n, &r, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "stats"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_versions),      cmocka_unit_test(test_names), cmocka_unit_test(test_if_match),
        cmocka_unit_test(test_content_types), cmocka_unit_test(test_query), cmocka_unit_test(test_wait_and_message),
        cmocka_unit_test(test_rollback),      cmocka_unit_test(test_tag),   cmocka_unit_test(test_status),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
