/* Logging: one event is one line whatever the message holds; levels that are off cost no formatting. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "pw_log.h"

/* Runs fn with stderr captured; returns what it wrote (caller frees). */
static char *capture(void (*fn)(void))
{
    char path[] = "/tmp/pw-logtest-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    int saved = dup(STDERR_FILENO);
    dup2(fd, STDERR_FILENO);
    fn();
    dup2(saved, STDERR_FILENO);
    close(saved);
    static char buf[8192];
    ssize_t n = pread(fd, buf, sizeof(buf) - 1, 0);
    close(fd);
    unlink(path);
    buf[n < 0 ? 0 : n] = '\0';
    return strdup(buf);
}

static void log_forged(void)
{
    PW_WARN("dataplane rejected: %s", "x\n2026-01-01T00:00:00.000Z pathway-control info: version 5 stored\r\x01");
}

static void test_one_line_per_event(void **state)
{
    pw_log_set_level(PW_LOG_INFO);
    char *out = capture(log_forged);
    /* exactly one newline, at the end */
    assert_non_null(strchr(out, '\n'));
    assert_int_equal(strchr(out, '\n') - out, (long)strlen(out) - 1);
    assert_non_null(strstr(out, "rejected: x\\n2026-01-01"));
    assert_non_null(strstr(out, "\\x0d\\x01"));
    free(out);
}

static int formatted_;
static const char *counted(void)
{
    formatted_++;
    return "x";
}

static void log_debug(void)
{
    PW_DEBUG("%s", counted());
}

static void test_off_levels_do_not_format(void **state)
{
    pw_log_set_level(PW_LOG_WARN);
    formatted_ = 0;
    char *out = capture(log_debug);
    assert_int_equal(formatted_, 0); /* the argument was not even evaluated */
    assert_string_equal(out, "");
    free(out);
    pw_log_set_level(PW_LOG_DEBUG);
    out = capture(log_debug);
    assert_int_equal(formatted_, 1);
    assert_non_null(strstr(out, " debug: x\n"));
    free(out);
    assert_int_equal(pw_log_level_from_name("warn"), PW_LOG_WARN);
    assert_int_equal(pw_log_level_from_name("loud"), -1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_one_line_per_event), cmocka_unit_test(test_off_levels_do_not_format)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
