/* JSON merge patch and JSON Patch, against the RFCs' own examples, and diff -> apply round trips. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdlib.h>
#include <string.h>
#include "cfg.h"

static json_t *j(const char *s)
{
    json_error_t e;
    json_t *v = json_loads(s, JSON_DECODE_ANY, &e);
    if (v == NULL)
        fail_msg("bad test JSON %s: %s", s, e.text);
    return v;
}

static void assert_json_eq(const json_t *got, const char *want)
{
    json_t *w = j(want);
    if (!json_equal(got, w)) {
        char *g = json_dumps(got, JSON_ENCODE_ANY | JSON_COMPACT | JSON_SORT_KEYS);
        fail_msg("got %s, want %s", g, want);
    }
    json_decref(w);
}

/* RFC 7386, Appendix A */
static void test_merge_patch_rfc7386(void **state)
{
    static const char *const cases[][3] = {
        {"{\"a\":\"b\"}", "{\"a\":\"c\"}", "{\"a\":\"c\"}"},
        {"{\"a\":\"b\"}", "{\"b\":\"c\"}", "{\"a\":\"b\",\"b\":\"c\"}"},
        {"{\"a\":\"b\"}", "{\"a\":null}", "{}"},
        {"{\"a\":\"b\",\"b\":\"c\"}", "{\"a\":null}", "{\"b\":\"c\"}"},
        {"{\"a\":[\"b\"]}", "{\"a\":\"c\"}", "{\"a\":\"c\"}"},
        {"{\"a\":\"c\"}", "{\"a\":[\"b\"]}", "{\"a\":[\"b\"]}"},
        {"{\"a\":{\"b\":\"c\"}}", "{\"a\":{\"b\":\"d\",\"c\":null}}", "{\"a\":{\"b\":\"d\"}}"},
        {"{\"a\":[{\"b\":\"c\"}]}", "{\"a\":[1]}", "{\"a\":[1]}"},
        {"[\"a\",\"b\"]", "[\"c\",\"d\"]", "[\"c\",\"d\"]"},
        {"{\"a\":\"b\"}", "[\"c\"]", "[\"c\"]"},
        {"{\"a\":\"foo\"}", "null", "null"},
        {"{\"a\":\"foo\"}", "\"bar\"", "\"bar\""},
        {"{\"e\":null}", "{\"a\":1}", "{\"e\":null,\"a\":1}"},
        {"[1,2]", "{\"a\":\"b\",\"c\":null}", "{\"a\":\"b\"}"},
        {"{}", "{\"a\":{\"bb\":{\"ccc\":null}}}", "{\"a\":{\"bb\":{}}}"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        json_t *target = j(cases[i][0]), *patch = j(cases[i][1]);
        json_t *out = cfg_merge_patch(target, patch);
        assert_json_eq(out, cases[i][2]);
        /* the inputs are borrowed, not changed */
        assert_json_eq(target, cases[i][0]);
        json_decref(out);
        json_decref(target);
        json_decref(patch);
    }
}

/* RFC 6902, Appendix A: {doc, patch, result or NULL for an error} */
static void test_json_patch_rfc6902(void **state)
{
    static const char *const cases[][3] = {
        /* A.1 */ {"{\"foo\":\"bar\"}", "[{\"op\":\"add\",\"path\":\"/baz\",\"value\":\"qux\"}]",
                   "{\"baz\":\"qux\",\"foo\":\"bar\"}"},
        /* A.2 */
        {"{\"foo\":[\"bar\",\"baz\"]}", "[{\"op\":\"add\",\"path\":\"/foo/1\",\"value\":\"qux\"}]",
         "{\"foo\":[\"bar\",\"qux\",\"baz\"]}"},
        /* A.3 */ {"{\"baz\":\"qux\",\"foo\":\"bar\"}", "[{\"op\":\"remove\",\"path\":\"/baz\"}]", "{\"foo\":\"bar\"}"},
        /* A.4 */
        {"{\"foo\":[\"bar\",\"qux\",\"baz\"]}", "[{\"op\":\"remove\",\"path\":\"/foo/1\"}]", "{\"foo\":[\"bar\",\"baz\"]}"},
        /* A.5 */
        {"{\"baz\":\"qux\",\"foo\":\"bar\"}", "[{\"op\":\"replace\",\"path\":\"/baz\",\"value\":\"boo\"}]",
         "{\"baz\":\"boo\",\"foo\":\"bar\"}"},
        /* A.6 */
        {"{\"foo\":{\"bar\":\"baz\",\"waldo\":\"fred\"},\"qux\":{\"corge\":\"grault\"}}",
         "[{\"op\":\"move\",\"from\":\"/foo/waldo\",\"path\":\"/qux/thud\"}]",
         "{\"foo\":{\"bar\":\"baz\"},\"qux\":{\"corge\":\"grault\",\"thud\":\"fred\"}}"},
        /* A.7 */
        {"{\"foo\":[\"all\",\"grass\",\"cows\",\"eat\"]}", "[{\"op\":\"move\",\"from\":\"/foo/1\",\"path\":\"/foo/3\"}]",
         "{\"foo\":[\"all\",\"cows\",\"eat\",\"grass\"]}"},
        /* A.8 */
        {"{\"baz\":\"qux\",\"foo\":[\"a\",2,\"c\"]}",
         "[{\"op\":\"test\",\"path\":\"/baz\",\"value\":\"qux\"},{\"op\":\"test\",\"path\":\"/foo/1\",\"value\":2}]",
         "{\"baz\":\"qux\",\"foo\":[\"a\",2,\"c\"]}"},
        /* A.9 */ {"{\"baz\":\"qux\"}", "[{\"op\":\"test\",\"path\":\"/baz\",\"value\":\"bar\"}]", NULL},
        /* A.10 */
        {"{\"foo\":\"bar\"}", "[{\"op\":\"add\",\"path\":\"/child\",\"value\":{\"grandchild\":{}}}]",
         "{\"foo\":\"bar\",\"child\":{\"grandchild\":{}}}"},
        /* A.11 */
        {"{\"foo\":\"bar\"}", "[{\"op\":\"add\",\"path\":\"/baz\",\"value\":\"qux\",\"xyz\":123}]",
         "{\"foo\":\"bar\",\"baz\":\"qux\"}"},
        /* A.12 */ {"{\"foo\":\"bar\"}", "[{\"op\":\"add\",\"path\":\"/baz/bat\",\"value\":\"qux\"}]", NULL},
        /* A.14 */ {"{\"/\":9,\"~1\":10}", "[{\"op\":\"test\",\"path\":\"/~01\",\"value\":10}]", "{\"/\":9,\"~1\":10}"},
        /* A.15 */ {"{\"/\":9,\"~1\":10}", "[{\"op\":\"test\",\"path\":\"/~01\",\"value\":\"10\"}]", NULL},
        /* A.16 */
        {"{\"foo\":[\"bar\"]}", "[{\"op\":\"add\",\"path\":\"/foo/-\",\"value\":[\"abc\",\"def\"]}]",
         "{\"foo\":[\"bar\",[\"abc\",\"def\"]]}"},
        /* failures leave nothing applied */
        {"{\"a\":1}", "[{\"op\":\"remove\",\"path\":\"/a\"},{\"op\":\"remove\",\"path\":\"/b\"}]", NULL},
        {"{\"a\":[1]}", "[{\"op\":\"add\",\"path\":\"/a/5\",\"value\":1}]", NULL},
        {"{\"a\":[1]}", "[{\"op\":\"add\",\"path\":\"/a/01\",\"value\":1}]", NULL},
        {"{\"a\":1}", "[{\"op\":\"frobnicate\",\"path\":\"/a\"}]", NULL},
        {"{\"a\":{\"b\":1}}", "[{\"op\":\"move\",\"from\":\"/a\",\"path\":\"/a/b/c\"}]", NULL},
        {"{\"a\":1}", "{\"op\":\"remove\"}", NULL},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        json_t *doc = j(cases[i][0]), *patch = j(cases[i][1]);
        const char *err = NULL;
        json_t *out = cfg_json_patch_apply(doc, patch, &err);
        if (cases[i][2] == NULL) {
            if (out != NULL)
                fail_msg("case %zu: expected an error", i);
            assert_non_null(err);
        } else {
            if (out == NULL)
                fail_msg("case %zu: %s", i, err);
            assert_json_eq(out, cases[i][2]);
        }
        assert_json_eq(doc, cases[i][0]);
        json_decref(out);
        json_decref(doc);
        json_decref(patch);
    }
}

/* diff(a, b) applied to a gives b, for objects, arrays growing and shrinking, type changes */
static void test_diff_roundtrip(void **state)
{
    static const char *const pairs[][2] = {
        {"{}", "{}"},
        {"{\"a\":1}", "{\"a\":2}"},
        {"{\"a\":1,\"b\":{\"c\":[1,2,3]}}", "{\"b\":{\"c\":[1,5]},\"d\":true}"},
        {"[1,2]", "[1,2,3,4]"},
        {"[1,2,3,4]", "[4]"},
        {"{\"a/b\":1,\"m~n\":2}", "{\"a/b\":3}"},
        {"{\"a\":[{\"x\":1},{\"y\":2}]}", "{\"a\":{\"x\":1}}"},
        {"1", "\"x\""},
    };
    for (size_t i = 0; i < sizeof(pairs) / sizeof(pairs[0]); i++) {
        json_t *a = j(pairs[i][0]), *b = j(pairs[i][1]);
        json_t *d = cfg_json_diff(a, b);
        assert_non_null(d);
        const char *err = NULL;
        json_t *out = cfg_json_patch_apply(a, d, &err);
        if (out == NULL)
            fail_msg("pair %zu: %s", i, err);
        assert_true(json_equal(out, b));
        if (json_equal(a, b))
            assert_int_equal(json_array_size(d), 0);
        json_decref(out);
        json_decref(d);
        json_decref(a);
        json_decref(b);
    }
    /* the path escapes of RFC 6901 */
    json_t *a = j("{\"a/b\":1}"), *b = j("{\"a/b\":2}");
    json_t *d = cfg_json_diff(a, b);
    assert_json_eq(d, "[{\"op\":\"replace\",\"path\":\"/a~1b\",\"value\":2}]");
    json_decref(d);
    json_decref(a);
    json_decref(b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_merge_patch_rfc7386),
        cmocka_unit_test(test_json_patch_rfc6902),
        cmocka_unit_test(test_diff_roundtrip),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
