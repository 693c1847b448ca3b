/* The web console's embedded assets (ui/embed.py's table, served by cp_ui.c): every file of ui/src
 * is there byte for byte, each name is one path segment with a content type, and each ETag is the
 * start of its SHA-256, so a changed file never keeps an old ETag. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <dirent.h>
#include <cmocka.h>
#include <openssl/sha.h>
#include "cp_ui.h"

static const char *source_dir(void)
{
    const char *src = getenv("PW_SOURCE_DIR");
    return src != NULL ? src : "..";
}

static void test_table_is_sound(void **state)
{
    assert_true(cp_ui_num_assets >= 5);
    for (size_t i = 0; i < cp_ui_num_assets; i++) {
        const cp_ui_asset_t *a = &cp_ui_assets[i];
        assert_non_null(a->name);
        assert_true(a->name[0] != '\0' && strchr(a->name, '/') == NULL);
        assert_non_null(strchr(a->content_type, '/'));
        assert_true(a->len > 0);
        assert_int_equal(a->data[a->len], 0);
        unsigned char md[SHA256_DIGEST_LENGTH];
        SHA256(a->data, a->len, md);
        char want[40];
        want[0] = '"';
        for (int j = 0; j < 16; j++)
            snprintf(want + 1 + 2 * j, 3, "%02x", md[j]);
        snprintf(want + 33, sizeof(want) - 33, "\"");
        if (strcmp(a->etag, want) != 0)
            fail_msg("%s: ETag %s, its SHA-256 gives %s", a->name, a->etag, want);
        assert_ptr_equal(cp_ui_find(a->name, strlen(a->name)), a);
        for (size_t j = 0; j < i; j++)
            assert_string_not_equal(cp_ui_assets[j].name, a->name);
    }
    assert_null(cp_ui_find("nope.js", 7));
    assert_null(cp_ui_find("index.htm", 9));
    assert_non_null(cp_ui_find("index.html", 10));
    assert_non_null(cp_ui_find("LICENSES.txt", 12));
    assert_string_equal(cp_ui_find("app.js", 6)->content_type, "text/javascript; charset=utf-8");
}

/* Every file of ui/src is embedded as it is in the repository (the build re-embeds on a change). */
static void test_every_source_file_embedded(void **state)
{
    char dir[1024];
    snprintf(dir, sizeof(dir), "%s/ui/src", source_dir());
    DIR *d = opendir(dir);
    if (d == NULL)
        fail_msg("cannot open %s (set PW_SOURCE_DIR)", dir);
    size_t seen = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.')
            continue;
        char path[1400];
        snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
        FILE *fp = fopen(path, "rb");
        assert_non_null(fp);
        static char buf[1 << 20];
        size_t len = fread(buf, 1, sizeof(buf), fp);
        fclose(fp);
        const cp_ui_asset_t *a = cp_ui_find(e->d_name, strlen(e->d_name));
        if (a == NULL)
            fail_msg("ui/src/%s is not embedded", e->d_name);
        if (a->len != len || memcmp(a->data, buf, len) != 0)
            fail_msg("ui/src/%s differs from its embedded copy: rebuild", e->d_name);
        ++seen;
    }
    closedir(d);
    assert_true(seen >= 5);
}

int main(void)
{
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_table_is_sound), cmocka_unit_test(test_every_source_file_embedded)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
