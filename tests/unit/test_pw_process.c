/* process_* figures of the test process itself, and their Prometheus text: every family once with
 * its HELP and TYPE, every sample `name value`, the values those of the struct. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>
#include "pw_process.h"

static const struct {
    const char *name, *type, *help;
} families[] = {
    {"process_cpu_seconds_total", "counter", "Total user and system CPU time spent in seconds."},
    {"process_resident_memory_bytes", "gauge", "Resident memory size in bytes."},
    {"process_virtual_memory_bytes", "gauge", "Virtual memory size in bytes."},
    {"process_start_time_seconds", "gauge", "Start time of the process since unix epoch in seconds."},
    {"process_open_fds", "gauge", "Number of open file descriptors."},
    {"process_max_fds", "gauge", "Maximum number of open file descriptors."},
};
#define NFAMILIES (sizeof(families) / sizeof(families[0]))

static void test_read_self(void **state)
{
    (void)state;
    pw_process_t p;
    assert_int_equal(pw_process_read(&p), 0);
    assert_true(p.have_stat);
    assert_true(p.resident_bytes > 0);
    assert_true(p.virtual_bytes >= p.resident_bytes);
    assert_true(p.cpu_seconds >= 0);
    double now = (double)time(NULL);
    /* this process started moments ago; btime + starttime ticks put it there (a wrong field would
     * land decades off) */
    assert_true(p.start_time_seconds > now - 3600);
    assert_true(p.start_time_seconds <= now + 1);
    assert_true(p.have_open_fds);
    assert_true(p.open_fds >= 3); /* stdin, stdout, stderr */
    struct rlimit rl;
    assert_int_equal(getrlimit(RLIMIT_NOFILE, &rl), 0);
    assert_true(p.have_max_fds);
    assert_true(p.max_fds == (uint64_t)rl.rlim_cur);

    /* one more open file is one more fd */
    int fd = open("/dev/null", O_RDONLY);
    assert_true(fd >= 0);
    pw_process_t q;
    assert_int_equal(pw_process_read(&q), 0);
    assert_int_equal(q.open_fds, p.open_fds + 1);
    close(fd);

    /* CPU time spent shows (ticks are 10 ms; spend 100 ms) */
    clock_t c0 = clock();
    volatile unsigned long spin = 0;
    while ((double)(clock() - c0) / CLOCKS_PER_SEC < 0.1)
        spin++;
    assert_int_equal(pw_process_read(&q), 0);
    assert_true(q.cpu_seconds >= p.cpu_seconds + 0.05);
}

/* The value of the one sample line of `name` in `text`; fails unless exactly one, `name value`. */
static double sample(const char *text, const char *name)
{
    size_t nlen = strlen(name);
    int seen = 0;
    double v = 0;
    for (const char *l = text; *l != '\0';) {
        const char *e = strchr(l, '\n');
        assert_non_null(e); /* every line ends in \n */
        if (*l != '#' && strncmp(l, name, nlen) == 0 && l[nlen] == ' ') {
            char *end;
            v = strtod(l + nlen + 1, &end);
            assert_true(end != l + nlen + 1);
            assert_ptr_equal(end, e); /* nothing after the value */
            seen++;
        }
        l = e + 1;
    }
    assert_int_equal(seen, 1);
    return v;
}

static int near(double a, double b)
{
    return a - b < 1e-5 && b - a < 1e-5;
}

static int count(const char *text, const char *needle)
{
    int n = 0;
    for (const char *p = text; (p = strstr(p, needle)) != NULL; p++)
        n++;
    return n;
}

static void test_metrics_text(void **state)
{
    (void)state;
    pw_process_t p;
    assert_int_equal(pw_process_read(&p), 0);
    pw_buf_t b = PW_BUF_INIT;
    pw_process_metrics(&b, &p);
    assert_false(b.failed);
    assert_non_null(b.p);
    for (size_t i = 0; i < NFAMILIES; i++) {
        char line[256];
        snprintf(line, sizeof(line), "# HELP %s %s\n", families[i].name, families[i].help);
        assert_int_equal(count(b.p, line), 1);
        snprintf(line, sizeof(line), "# TYPE %s %s\n", families[i].name, families[i].type);
        assert_int_equal(count(b.p, line), 1);
        snprintf(line, sizeof(line), "# HELP %s ", families[i].name);
        assert_int_equal(count(b.p, line), 1);
        sample(b.p, families[i].name);
    }
    /* every line is a HELP, a TYPE or a sample of one of the six */
    int lines = 0;
    for (const char *l = b.p; *l != '\0'; l = strchr(l, '\n') + 1)
        lines++;
    assert_int_equal(lines, 3 * (int)NFAMILIES);
    /* the values are the struct's, integers written in full */
    /* 15 significant digits: within a microsecond of seconds since 1970 */
    assert_true(near(sample(b.p, "process_cpu_seconds_total"), p.cpu_seconds));
    assert_true(sample(b.p, "process_resident_memory_bytes") == (double)p.resident_bytes);
    assert_true(sample(b.p, "process_virtual_memory_bytes") == (double)p.virtual_bytes);
    assert_true(near(sample(b.p, "process_start_time_seconds"), p.start_time_seconds));
    assert_true(sample(b.p, "process_open_fds") == (double)p.open_fds);
    assert_true(sample(b.p, "process_max_fds") == (double)p.max_fds);
    pw_buf_dispose(&b);
}

/* What could not be read is left out, not written as 0. */
static void test_metrics_partial(void **state)
{
    (void)state;
    pw_process_t p = {0};
    p.have_open_fds = 1;
    p.open_fds = 9;
    pw_buf_t b = PW_BUF_INIT;
    pw_process_metrics(&b, &p);
    assert_string_equal(b.p, "# HELP process_open_fds Number of open file descriptors.\n# TYPE process_open_fds gauge\n"
                             "process_open_fds 9\n");
    pw_buf_dispose(&b);

    p = (pw_process_t){.have_stat = 1, .cpu_seconds = 1.25, .resident_bytes = 4096, .virtual_bytes = 8192};
    pw_process_metrics(&b, &p); /* start time unknown: no process_start_time_seconds */
    assert_int_equal(count(b.p, "process_start_time_seconds"), 0);
    assert_true(sample(b.p, "process_cpu_seconds_total") == 1.25);
    assert_true(sample(b.p, "process_resident_memory_bytes") == 4096);
    assert_true(sample(b.p, "process_virtual_memory_bytes") == 8192);
    pw_buf_dispose(&b);

    p.start_time_seconds = 1764604800.53;
    pw_process_metrics(&b, &p);
    assert_int_equal(count(b.p, "\nprocess_start_time_seconds 1764604800.53\n"), 1);
    pw_buf_dispose(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_read_self), cmocka_unit_test(test_metrics_text),
                                       cmocka_unit_test(test_metrics_partial)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
