/* The growing text buffer: text equal to one snprintf of the whole, across many small appends, one
 * append far larger than the first allocation, and a format that fails. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <wchar.h>
#include "pw_buf.h"

static void test_many_appends(void **state)
{
    (void)state;
    pw_buf_t b = PW_BUF_INIT;
    size_t want_len = 0;
    for (int i = 0; i < 20000; i++) {
        pw_buf_printf(&b, "line %05d\n", i);
        want_len += 11;
        assert_int_equal(b.len, want_len);
    }
    assert_false(b.failed);
    assert_true(b.cap > b.len);
    assert_int_equal(strlen(b.p), b.len); /* NUL-terminated, no NUL inside */
    for (int i = 0; i < 20000; i++) {
        char want[16];
        snprintf(want, sizeof(want), "line %05d\n", i);
        assert_memory_equal(b.p + (size_t)i * 11, want, 11);
    }
    pw_buf_dispose(&b);
    assert_null(b.p);
    assert_int_equal(b.len, 0);
    assert_int_equal(b.cap, 0);
}

static void test_long_append(void **state)
{
    (void)state;
    size_t n = 100000; /* far more than the first allocation and than twice it */
    char *big = malloc(n + 1);
    assert_non_null(big);
    for (size_t i = 0; i < n; i++)
        big[i] = (char)('a' + i % 26);
    big[n] = '\0';
    pw_buf_t b = PW_BUF_INIT;
    pw_buf_printf(&b, "%s", big); /* on an empty buffer */
    assert_int_equal(b.len, n);
    assert_string_equal(b.p, big);
    pw_buf_printf(&b, "[%s]", big); /* on a full one */
    assert_int_equal(b.len, 2 * n + 2);
    assert_memory_equal(b.p, big, n);
    assert_int_equal(b.p[n], '[');
    assert_memory_equal(b.p + n + 1, big, n);
    assert_string_equal(b.p + 2 * n + 1, "]");
    assert_false(b.failed);
    pw_buf_dispose(&b);
    free(big);
}

static void test_formats(void **state)
{
    (void)state;
    pw_buf_t b = PW_BUF_INIT;
    pw_buf_printf(&b, "%s", "");
    assert_non_null(b.p); /* an empty append still gives a (empty) string */
    assert_string_equal(b.p, "");
    pw_buf_printf(&b, "%d %u %zu %" PRIu64 " %.15g %.2f %s %c %x 100%%\n", -7, 7u, (size_t)42, UINT64_MAX, 0.1, 2.5, "str", 'c',
                  255u);
    assert_string_equal(b.p, "-7 7 42 18446744073709551615 0.1 2.50 str c ff 100%\n");
    pw_buf_printf(&b, "%s=\"%s\"", "name", "value");
    assert_string_equal(b.p, "-7 7 42 18446744073709551615 0.1 2.50 str c ff 100%\nname=\"value\"");
    assert_int_equal(b.len, strlen(b.p));
    pw_buf_dispose(&b);
}

static void test_failed_sticks(void **state)
{
    (void)state;
    pw_buf_t b = PW_BUF_INIT;
    pw_buf_printf(&b, "kept ");
    /* in the C locale a wide character above 0x7f cannot be converted: vsnprintf fails (EILSEQ) */
    static const wchar_t bad[] = {0x100, 0};
    pw_buf_printf(&b, "%ls", bad);
    assert_true(b.failed);
    pw_buf_printf(&b, "dropped");
    assert_true(b.failed);
    assert_int_equal(b.len, 5);
    assert_memory_equal(b.p, "kept ", 5);
    pw_buf_dispose(&b);
    assert_false(b.failed);
    pw_buf_printf(&b, "again");
    assert_false(b.failed);
    assert_string_equal(b.p, "again");
    pw_buf_dispose(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_many_appends), cmocka_unit_test(test_long_append),
                                       cmocka_unit_test(test_formats), cmocka_unit_test(test_failed_sticks)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
