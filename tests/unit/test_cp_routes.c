/* The routes pathway-control serves and the ones schema/openapi.yaml describes are the same set. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <cmocka.h>
#include "cfg.h"
#include "cp_server.h"

static json_t *load_openapi(void)
{
    const char *src = getenv("PW_SOURCE_DIR");
    char path[1024];
    snprintf(path, sizeof(path), "%s/schema/openapi.yaml", src != NULL ? src : "..");
    FILE *fp = fopen(path, "rb");
    if (fp == NULL)
        fail_msg("cannot open %s (set PW_SOURCE_DIR)", path);
    static char buf[1 << 20];
    size_t len = fread(buf, 1, sizeof(buf), fp);
    fclose(fp);
    cfg_errors_t errs;
    cfg_errors_init(&errs);
    json_t *tree = cfg_tree_parse(buf, len, CFG_FORMAT_YAML, &errs);
    if (tree == NULL) {
        char *e = cfg_errors_join(&errs);
        fail_msg("%s: %s", path, e);
    }
    cfg_errors_dispose(&errs);
    return tree;
}

static void test_same_set(void **state)
{
    json_t *doc = load_openapi();
    json_t *paths = json_object_get(doc, "paths");
    assert_true(json_is_object(paths));
    static const char *const methods[] = {"get", "put", "post", "patch", "delete", "head", "options"};
    size_t described = 0;
    const char *path;
    json_t *item;
    json_object_foreach(paths, path, item)
    {
        for (size_t m = 0; m < sizeof(methods) / sizeof(methods[0]); m++) {
            if (json_object_get(item, methods[m]) == NULL)
                continue;
            ++described;
            int served = 0;
            for (size_t i = 0; i < cp_route_count(); i++)
                if (strcasecmp(cp_route_method(i), methods[m]) == 0 && strcmp(cp_route_path(i), path) == 0)
                    served = 1;
            if (!served)
                fail_msg("openapi.yaml describes %s %s, which the server does not serve", methods[m], path);
        }
    }
    for (size_t i = 0; i < cp_route_count(); i++) {
        char lower[16];
        size_t j;
        for (j = 0; cp_route_method(i)[j] != '\0' && j < sizeof(lower) - 1; j++)
            lower[j] = (char)(cp_route_method(i)[j] | 0x20);
        lower[j] = '\0';
        json_t *p = json_object_get(paths, cp_route_path(i));
        if (p == NULL || json_object_get(p, lower) == NULL)
            fail_msg("the server serves %s %s, which openapi.yaml does not describe", cp_route_method(i), cp_route_path(i));
    }
    assert_int_equal(described, cp_route_count());
    json_decref(doc);
}

int main(void)
{
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_same_set)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
