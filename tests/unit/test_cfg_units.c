/* Durations and sizes: what operators write, and the canonical form written back. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <string.h>
#include "cfg.h"

static void test_durations(void **state)
{
    static const struct {
        const char *in;
        uint64_t ms;
        const char *canonical;
    } ok[] = {{"250ms", 250, "250ms"}, {"5s", 5000, "5s"},       {"90s", 90000, "90s"}, {"2m", 120000, "2m"},
              {"1h", 3600000, "1h"},   {"1m30s", 90000, "90s"},  {"0s", 0, "0s"},       {"1500ms", 1500, "1500ms"},
              {"120s", 120000, "2m"},  {"1h30m", 5400000, "90m"}};
    for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
        uint64_t ms = 1;
        const char *err = "unset";
        assert_int_equal(cfg_parse_duration(ok[i].in, &ms, &err), 0);
        assert_null(err);
        assert_int_equal(ms, ok[i].ms);
        char buf[32];
        cfg_format_duration(ms, buf, sizeof(buf));
        assert_string_equal(buf, ok[i].canonical);
    }
    static const char *const bad[] = {"", "5", "s", "5 s", "-5s", "5sec", "1.5s", "5S", "ms", "99999999999999999999h", "5s5"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        uint64_t ms;
        const char *err = NULL;
        assert_int_equal(cfg_parse_duration(bad[i], &ms, &err), -1);
        assert_non_null(err);
    }
}

static void test_sizes(void **state)
{
    static const struct {
        const char *in;
        uint64_t bytes;
        const char *canonical;
    } ok[] = {
        {"512", 512, "512B"},         {"512B", 512, "512B"},        {"64KiB", 65536, "64KiB"},       {"1MiB", 1048576, "1MiB"},
        {"1024KiB", 1048576, "1MiB"}, {"1GiB", 1073741824, "1GiB"}, {"1536KiB", 1572864, "1536KiB"}, {"0", 0, "0B"}};
    for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
        uint64_t b = 1;
        const char *err = "unset";
        assert_int_equal(cfg_parse_size(ok[i].in, &b, &err), 0);
        assert_int_equal(b, ok[i].bytes);
        char buf[32];
        cfg_format_size(b, buf, sizeof(buf));
        assert_string_equal(buf, ok[i].canonical);
    }
    static const char *const bad[] = {"", "KiB", "1KB", "1 MiB", "1mib", "-1", "1.5MiB", "99999999999TiB"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        uint64_t b;
        const char *err = NULL;
        assert_int_equal(cfg_parse_size(bad[i], &b, &err), -1);
        assert_non_null(err);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_durations), cmocka_unit_test(test_sizes)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
