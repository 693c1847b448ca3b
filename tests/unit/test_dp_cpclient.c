/* The managed dataplane's state_dir copy: written atomically, read back, bad files refused. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include "dp_cpclient.h"

static char dir_[256];

static int setup(void **state)
{
    snprintf(dir_, sizeof(dir_), "/tmp/pw-cpstate-XXXXXX");
    return mkdtemp(dir_) == NULL ? -1 : 0;
}

static int teardown(void **state)
{
    char cmd[512];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir_);
    return system(cmd) == 0 ? 0 : -1;
}

static void write_text(const char *name, const char *text)
{
    char path[512];
    snprintf(path, sizeof(path), "%s/%s", dir_, name);
    FILE *fp = fopen(path, "w");
    assert_non_null(fp);
    fputs(text, fp);
    fclose(fp);
}

static void test_save_load(void **state)
{
    dp_cpstate_t st;
    char *err = NULL;
    assert_int_equal(dp_cpstate_load(dir_, &st, &err), 0); /* nothing saved yet */
    json_t *doc = json_pack("{s:{s:i}}", "limiter", "max_concurrent", 7);
    char sub[300];
    snprintf(sub, sizeof(sub), "%s/new/deeper", dir_); /* created with its parents when missing */
    assert_int_equal(dp_cpstate_save(sub, 42, doc, &err), 0);
    assert_int_equal(dp_cpstate_load(sub, &st, &err), 1);
    assert_int_equal(st.version, 42);
    assert_true(json_equal(st.fleet, doc));
    dp_cpstate_dispose(&st);
    /* a second save replaces the first, and leaves no temporary file behind */
    assert_int_equal(dp_cpstate_save(sub, 43, doc, &err), 0);
    assert_int_equal(dp_cpstate_load(sub, &st, &err), 1);
    assert_int_equal(st.version, 43);
    dp_cpstate_dispose(&st);
    char cmd[512];
    snprintf(cmd, sizeof(cmd), "test $(ls -A '%s' | wc -l) -eq 1", sub);
    assert_int_equal(system(cmd), 0);
    json_decref(doc);
}

static void test_bad_files(void **state)
{
    dp_cpstate_t st;
    char *err = NULL;
    write_text("pathway-fleet.json", "{not json");
    assert_int_equal(dp_cpstate_load(dir_, &st, &err), -1);
    assert_non_null(strstr(err, "pathway-fleet.json"));
    free(err);
    err = NULL;
    write_text("pathway-fleet.json", "{\"version\": 0, \"document\": {}}");
    assert_int_equal(dp_cpstate_load(dir_, &st, &err), -1);
    assert_non_null(strstr(err, "not a saved config"));
    free(err);
    err = NULL;
    write_text("pathway-fleet.json", "{\"version\": 3, \"document\": []}");
    assert_int_equal(dp_cpstate_load(dir_, &st, &err), -1);
    free(err);
    err = NULL;
    /* a state_dir that cannot be created is an error, not a crash */
    json_t *empty = json_object();
    assert_int_equal(dp_cpstate_save("/proc/no/such/dir", 1, empty, &err), -1);
    assert_non_null(err);
    json_decref(empty);
    free(err);
}

static void test_create_needs_control_plane(void **state)
{
    cfg_t *cfg = cfg_create_default();
    char *err = NULL;
    dp_cpclient_callbacks_t cb = {0};
    assert_null(dp_cpclient_create(cfg, 0, &cb, &err));
    assert_string_equal(err, "no control_plane section");
    free(err);
    err = NULL;
    /* a token file that is missing is named in the error */
    cfg_errors_t errs;
    cfg_errors_init(&errs);
    const char *doc = "control_plane: {url: 'http://127.0.0.1:1', id: dp, token_file: /nonexistent/token}";
    cfg_t *managed = cfg_parse(doc, strlen(doc), CFG_FORMAT_YAML, CFG_SCOPE_FULL, &errs);
    assert_non_null(managed);
    assert_null(dp_cpclient_create(managed, 0, &cb, &err));
    assert_non_null(strstr(err, "/nonexistent/token"));
    free(err);
    cfg_destroy(managed);
    cfg_destroy(cfg);
    cfg_errors_dispose(&errs);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_save_load, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_files, setup, teardown),
        cmocka_unit_test(test_create_needs_control_plane),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
