/* dp_server: the embedding API a control-plane client uses — a server running on its own thread,
 * documents applied from another thread, stats read from another thread, stop. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include "dp.h"
#include "dp_internal.h"

static int free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof(sa);
    bind(fd, (struct sockaddr *)&sa, sizeof(sa));
    getsockname(fd, (struct sockaddr *)&sa, &len);
    close(fd);
    return ntohs(sa.sin_port);
}

static cfg_t *doc(int port, int admin, const char *extra)
{
    char text[1024];
    snprintf(text, sizeof(text),
             "listen:\n  - address: 127.0.0.1:%d\nadmin:\n  address: 127.0.0.1:%d\nthreads: 2\n%s"
             "services:\n  - id: eth\n    endpoints:\n      - url: http://127.0.0.1:1\n",
             port, admin, extra);
    cfg_errors_t errs;
    cfg_errors_init(&errs);
    cfg_t *cfg = cfg_parse(text, strlen(text), CFG_FORMAT_YAML, CFG_SCOPE_FULL, &errs);
    if (cfg == NULL)
        fail_msg("config: %s", errs.size ? errs.entries[0] : "?");
    cfg_errors_dispose(&errs);
    return cfg;
}

static _Atomic int run_returned;

static void *run(void *arg)
{
    dp_server_run(arg);
    atomic_store(&run_returned, 1);
    /* Stay alive, as pathway's main thread does until exit: h2o keeps recycled buffers in
     * thread-local lists, which LeakSanitizer would report if this thread ended first. */
    for (;;)
        pause();
    return NULL;
}

static json_int_t stat_int(dp_server_t *s, const char *key, const char *sub)
{
    json_t *st = dp_server_stats(s);
    json_t *v = json_object_get(st, key);
    if (sub != NULL)
        v = json_object_get(v, sub);
    json_int_t n = json_integer_value(v);
    json_decref(st);
    return n;
}

static void test_apply_from_another_thread(void **state)
{
    int port = free_port(), admin = free_port();
    char *err = NULL;
    dp_server_options_t opts = {NULL, 2000};
    dp_server_t *s = dp_server_create(doc(port, admin, ""), &opts, &err);
    assert_non_null(s);
    /* not running yet: refused as "not now" (-2, neither applied nor wrong), and cfg is still taken */
    assert_int_equal(dp_server_apply_fleet_from_thread(s, doc(port, admin, ""), 4, &err), -2);
    assert_non_null(err);
    free(err);
    err = NULL;

    pthread_t t;
    pthread_create(&t, NULL, run, s);
    for (int i = 0;
         i < 500 && dp_server_apply_fleet_from_thread(s, doc(port, admin, "limiter:\n  max_concurrent: 7\n"), 5, &err) != 0; ++i) {
        free(err); /* the server thread may not be listening for applies yet */
        err = NULL;
        usleep(10000);
    }
    assert_null(err);
    assert_int_equal(stat_int(s, "generation", NULL), 2);
    assert_int_equal(stat_int(s, "version", NULL), 5); /* the control plane's version */
    assert_int_equal(stat_int(s, "limiter", "max_concurrent"), 7);

    /* an endpoint file that cannot be read: refused, the running generation stays */
    cfg_errors_t errs;
    cfg_errors_init(&errs);
    const char *t2 = "services:\n  - id: eth\n    endpoints:\n      - url: https://127.0.0.1:1\n        tls:\n"
                     "          ca_file: /nonexistent.pem\n";
    cfg_t *bad = cfg_parse(t2, strlen(t2), CFG_FORMAT_YAML, CFG_SCOPE_FULL, &errs);
    assert_non_null(bad);
    cfg_errors_dispose(&errs);
    assert_int_equal(dp_server_apply_fleet_from_thread(s, bad, 6, &err), -1);
    assert_non_null(strstr(err, "ca_file"));
    free(err);
    assert_int_equal(stat_int(s, "generation", NULL), 2);
    assert_int_equal(stat_int(s, "version", NULL), 5);
    assert_int_equal(stat_int(s, "applies", "failed"), 1);

    dp_server_request_stop(s);
    for (int i = 0; i < 500 && !atomic_load(&run_returned); ++i)
        usleep(10000);
    assert_true(atomic_load(&run_returned));
    err = NULL;
    assert_int_equal(dp_server_apply_fleet_from_thread(s, doc(port, admin, ""), 7, &err), -2); /* stopped: not now */
    free(err);
    dp_server_destroy(s);
}

/* A kick while only some workers run went to a receiver not yet registered (a NULL queue). */
static void test_kick_before_all_workers_ready(void **state)
{
    dp_server_t *s = calloc(1, sizeof(*s));
    s->nworkers = 2;
    s->workers = calloc(2, sizeof(s->workers[0]));
    atomic_store(&s->workers_ready, 1);
    dp_server_kick_all(s); /* dropped: the sweep timers do the same work */
    assert_int_equal(atomic_load(&s->workers[0].kick_pending), 0);
    free(s->workers);
    free(s);
}

/* Reloads through many request timeouts must not leave one timeout list per value ever used. */
static void test_timeout_lists_bounded(void **state)
{
    dp_worker_t w = {0};
    w.loop = h2o_evloop_create();
    h2o_timeout_entry_t entry = {0};
    for (uint64_t ms = 1000; ms != 1100; ++ms)
        assert_non_null(dp_worker_timeout(&w, ms));
    h2o_timeout_link(w.loop, dp_worker_timeout(&w, 1042), &entry);
    dp_worker_prune_timeouts(&w);
    assert_true(w.timeouts.size <= DP_TIMEOUTS_KEPT);
    assert_int_equal(w.timeouts.size, 1); /* the list still in use stays */
    assert_int_equal(dp_worker_timeout(&w, 1042)->timeout, 1042);
    assert_int_equal(w.timeouts.size, 1);
    h2o_timeout_unlink(&entry);
    dp_worker_timeout(&w, 1); /* few lists: nothing is freed */
    dp_worker_prune_timeouts(&w);
    assert_int_equal(w.timeouts.size, 2);
    for (size_t i = 0; i != w.timeouts.size; ++i) {
        h2o_timeout_dispose(w.loop, w.timeouts.entries[i]);
        free(w.timeouts.entries[i]);
    }
    free(w.timeouts.entries);
    h2o_evloop_destroy(w.loop);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_apply_from_another_thread),
        cmocka_unit_test(test_kick_before_all_workers_ready),
        cmocka_unit_test(test_timeout_lists_bounded),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
