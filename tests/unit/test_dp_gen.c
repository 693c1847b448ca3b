/* dp_gen: generations built from documents; endpoints and services carried over by key. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdlib.h>
#include <string.h>
#include "dp_internal.h"

static cfg_t *parse(const char *yaml)
{
    cfg_errors_t errs;
    cfg_errors_init(&errs);
    cfg_t *cfg = cfg_parse(yaml, strlen(yaml), CFG_FORMAT_YAML, CFG_SCOPE_FULL, &errs);
    if (cfg == NULL) {
        char *j = cfg_errors_join(&errs);
        fail_msg("config: %s", j);
    }
    cfg_errors_dispose(&errs);
    return cfg;
}

static dp_server_t *fake_server(void)
{
    dp_server_t *s = calloc(1, sizeof(*s));
    s->nworkers = 2; /* no worker runs: nothing is kicked */
    dp_registry_init(s);
    return s;
}

static const char *DOC1 = "services:\n"
                          "  - id: poly\n"
                          "    endpoints:\n"
                          "      - url: http://127.0.0.1:8547\n"
                          "  - id: eth\n"
                          "    endpoints:\n"
                          "      - url: http://127.0.0.1:8545\n"
                          "      - url: http://localhost:8546/v2/key\n";

static const char *DOC2 = "services:\n"
                          "  - id: eth\n"
                          "    endpoints:\n"
                          "      - url: http://127.0.0.1:8545\n"
                          "      - url: http://localhost:8546/v2/key\n"
                          "    pool:\n"
                          "      max_conns_per_host: 7\n"
                          "  - id: poly\n"
                          "    endpoints:\n"
                          "      - url: http://127.0.0.1:8547\n";

static void test_build_and_find(void **state)
{
    dp_server_t *s = fake_server();
    cfg_errors_t errs;
    cfg_errors_init(&errs);
    dp_gen_t *g = dp_gen_create(s, parse(DOC1), NULL, &errs);
    assert_non_null(g);
    assert_int_equal(errs.size, 0);
    assert_int_equal(g->nservices, 2);
    assert_int_equal(g->nendpoints, 3);
    dp_service_t *eth = dp_gen_find_service(g, "eth", 3);
    assert_non_null(eth);
    assert_int_equal(eth->nendpoints, 2);
    assert_null(dp_gen_find_service(g, "et", 2));
    assert_null(dp_gen_find_service(g, "ethx", 4));
    assert_non_null(dp_gen_find_service(g, "poly", 4));
    dp_endpoint_t *ep = eth->endpoints[1];
    assert_string_equal(ep->path, "/v2/key");
    assert_int_equal(ep->host_header.len, strlen("localhost:8546"));
    assert_true(ep->addrlen != 0); /* resolved on this thread */
    assert_int_equal(strlen(g->hash), 64);
    dp_gen_release(g);
    cfg_errors_dispose(&errs);
    free(s);
}

static void test_carry_over(void **state)
{
    dp_server_t *s = fake_server();
    cfg_errors_t errs;
    cfg_errors_init(&errs);
    dp_gen_t *g1 = dp_gen_create(s, parse(DOC1), NULL, &errs);
    dp_gen_t *g2 = dp_gen_create(s, parse(DOC2), g1, &errs);
    assert_non_null(g2);
    dp_service_t *p1 = dp_gen_find_service(g1, "poly", 4), *p2 = dp_gen_find_service(g2, "poly", 4);
    dp_service_t *e1 = dp_gen_find_service(g1, "eth", 3), *e2 = dp_gen_find_service(g2, "eth", 3);
    /* unchanged pool settings: the same endpoint (warm connections) */
    assert_ptr_equal(p1->endpoints[0], p2->endpoints[0]);
    /* changed max_conns_per_host: still the same endpoint, whose live pool takes the new bound */
    assert_ptr_equal(e1->endpoints[0], e2->endpoints[0]);
    dp_gen_apply_pool_settings(g2);
    assert_int_equal(atomic_load(&e2->endpoints[0]->max_conns), 7);
    assert_int_equal(atomic_load(&e2->endpoints[0]->upstream->max_conns), 7);
    /* services keep their limiter and counters across generations */
    assert_ptr_equal(e1->shared, e2->shared);
    dp_gen_release(g1);
    assert_int_equal(atomic_load(&e2->endpoints[0]->gen_refs), 1); /* still listed by g2: not retired */
    assert_int_equal(atomic_load(&p2->endpoints[0]->gen_refs), 1);

    /* an endpoint that left the document is retired: workers close its idle connections */
    dp_gen_t *g3 =
        dp_gen_create(s, parse("services:\n  - id: eth\n    endpoints:\n      - url: http://127.0.0.1:8545\n"), g2, &errs);
    assert_non_null(g3);
    dp_endpoint_t *old = dp_gen_find_service(g2, "poly", 4)->endpoints[0];
    atomic_fetch_add(&old->refcnt, 1); /* watch it past g2 */
    dp_gen_release(g2);
    assert_int_equal(atomic_load(&old->gen_refs), 0);
    dp_endpoint_release(old);
    dp_gen_release(g3);
    cfg_errors_dispose(&errs);
    free(s);
}

/* Settings that flip A -> B -> A while the first generation is alive: one endpoint object (its
 * pool settings are not its identity), one upstream count, one service state. */
static void test_upstream_shared_across_generations(void **state)
{
    dp_server_t *s = fake_server();
    cfg_errors_t errs;
    cfg_errors_init(&errs);
    dp_gen_t *g1 = dp_gen_create(s, parse(DOC1), NULL, &errs);
    dp_gen_t *g2 = dp_gen_create(s, parse(DOC2), g1, &errs);
    dp_gen_t *g3 = dp_gen_create(s, parse(DOC1), g2, &errs);
    assert_non_null(g3);
    dp_service_t *e1 = dp_gen_find_service(g1, "eth", 3), *e2 = dp_gen_find_service(g2, "eth", 3);
    dp_service_t *e3 = dp_gen_find_service(g3, "eth", 3);
    assert_ptr_equal(e1->endpoints[0], e3->endpoints[0]);
    assert_ptr_equal(e1->endpoints[0]->upstream, e2->endpoints[0]->upstream);
    assert_ptr_equal(e1->endpoints[0]->upstream, e3->endpoints[0]->upstream);
    assert_ptr_not_equal(e1->endpoints[0]->upstream, e1->endpoints[1]->upstream); /* another port */
    assert_ptr_equal(e1->shared, e3->shared);
    /* the bounds are the current generation's */
    dp_gen_apply_pool_settings(g2);
    assert_int_equal(atomic_load(&e1->endpoints[0]->upstream->max_conns), 7);
    dp_gen_apply_pool_settings(g3);
    assert_int_equal(atomic_load(&e1->endpoints[0]->upstream->max_conns), e3->cfg->pool.max_conns_per_host);
    dp_gen_release(g1);
    dp_gen_release(g2);
    dp_gen_release(g3);
    /* the registry empties with the last release */
    assert_true(h2o_linklist_is_empty(&s->hosts));
    assert_true(h2o_linklist_is_empty(&s->svcshared));
    cfg_errors_dispose(&errs);
    free(s);
}

static void test_unreadable_ca_file(void **state)
{
    dp_server_t *s = fake_server();
    cfg_errors_t errs;
    cfg_errors_init(&errs);
    cfg_t *cfg = parse("services:\n  - id: eth\n    endpoints:\n      - url: https://127.0.0.1:8545\n        tls:\n"
                       "          ca_file: /nonexistent/ca.pem\n");
    dp_gen_t *g = dp_gen_create(s, cfg, NULL, &errs);
    assert_null(g);
    assert_int_equal(errs.size, 1);
    assert_non_null(strstr(errs.entries[0], "services[0].endpoints[0].tls.ca_file"));
    cfg_destroy(cfg); /* the caller keeps cfg on failure */
    cfg_errors_dispose(&errs);
    free(s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_build_and_find),
        cmocka_unit_test(test_carry_over),
        cmocka_unit_test(test_upstream_shared_across_generations),
        cmocka_unit_test(test_unreadable_ca_file),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
