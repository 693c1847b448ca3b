/* Token files: one token on one line, or a clear error naming the setting; constant-time equality. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "pw_token.h"

static char *write_tmp(const char *text)
{
    char *path = strdup("/tmp/pw-tokentest-XXXXXX");
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
    close(fd);
    return path;
}

static void expect_error(const char *text, const char *needle)
{
    char *path = write_tmp(text), *err = NULL;
    assert_null(pw_token_read(path, "admin.token_file", &err));
    assert_non_null(err);
    assert_non_null(strstr(err, "admin.token_file"));
    assert_non_null(strstr(err, needle));
    free(err);
    unlink(path);
    free(path);
}

static void test_read(void **state)
{
    char *path = write_tmp("  s3cret-token\n"), *err = NULL;
    char *tok = pw_token_read(path, "admin.token_file", &err);
    assert_non_null(tok);
    assert_string_equal(tok, "s3cret-token");
    free(tok);
    unlink(path);
    free(path);
    expect_error("", "one token on one line");
    expect_error("a\nb\n", "one token on one line");
    assert_null(pw_token_read("/nonexistent/token", "admin.token_file", &err));
    assert_non_null(strstr(err, "cannot open"));
    free(err);
}

static void test_equal(void **state)
{
    assert_true(pw_token_equal("abc", "abc", 3));
    assert_false(pw_token_equal("abc", "abd", 3));
    assert_false(pw_token_equal("abc", "ab", 2));
    assert_false(pw_token_equal("abc", "abcd", 4));
    assert_false(pw_token_equal("abc", "", 0));
}

int main(void)
{
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_read), cmocka_unit_test(test_equal)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
