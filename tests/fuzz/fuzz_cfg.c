/* The config document parser (YAML and JSON) and everything a parsed document goes through:
 * decode, canonical form, YAML emission and re-parse, hash, diff against the parse of the
 * canonical form (which must be empty). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "cfg.h"

static void check_redacted(const json_t *doc)
{
    static const char *const tails[] = {
        "", "/", "/" CFG_REDACTED, "?" CFG_REDACTED, "/?" CFG_REDACTED, "/" CFG_REDACTED "?" CFG_REDACTED};
    size_t i, k;
    json_t *svc, *ep;
    json_array_foreach(json_object_get(doc, "services"), i, svc)
    {
        json_array_foreach(json_object_get(svc, "endpoints"), k, ep)
        {
            const char *url = json_string_value(json_object_get(ep, "url")), *p;
            if (url == NULL || (p = strstr(url, "://")) == NULL)
                abort();
            p += 3;
            if (strncmp(p, CFG_REDACTED "@", strlen(CFG_REDACTED) + 1) == 0)
                p += strlen(CFG_REDACTED) + 1;
            p += strcspn(p, "/?");
            int ok = 0;
            for (size_t t = 0; t < sizeof(tails) / sizeof(tails[0]); t++)
                ok |= strcmp(p, tails[t]) == 0;
            if (!ok || strchr(url + strlen(url) - strlen(p), '@') != NULL)
                abort();
            const char *name;
            json_t *v;
            json_object_foreach(json_object_get(ep, "headers"), name, v)
            {
                if (!json_is_string(v) || strcmp(json_string_value(v), CFG_REDACTED) != 0)
                    abort();
            }
        }
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0)
        return 0;
    /* first byte picks format and scope, so one corpus covers all four */
    cfg_format_t format = (data[0] & 1) ? CFG_FORMAT_JSON : CFG_FORMAT_AUTO;
    cfg_scope_t scope = (data[0] & 2) ? CFG_SCOPE_FLEET : CFG_SCOPE_FULL;
    cfg_errors_t errs;
    cfg_errors_init(&errs);
    json_t *tree = cfg_tree_parse((const char *)data + 1, size - 1, format, &errs);
    if (tree != NULL) {
        char *yaml = cfg_json_to_yaml(tree);
        if (yaml != NULL) {
            json_t *back = cfg_tree_parse(yaml, strlen(yaml), CFG_FORMAT_YAML, &errs);
            /* YAML emission must read back as the same tree (reals may differ in the last digit) */
            if (back != NULL && !json_equal(back, tree)) {
                char *c = cfg_json_canonical(tree);
                if (c != NULL && strpbrk(c, ".eE") == NULL)
                    abort();
                free(c);
            }
            json_decref(back);
            free(yaml);
        }
        cfg_t *cfg = cfg_decode(tree, scope, &errs);
        if (cfg != NULL) {
            char *canon = cfg_canonical(cfg, scope);
            cfg_t *again = cfg_parse(canon, strlen(canon), CFG_FORMAT_JSON, scope, &errs);
            if (again == NULL)
                abort(); /* the canonical form of a valid document must be valid */
            char *canon2 = cfg_canonical(again, scope);
            if (strcmp(canon, canon2) != 0)
                abort();
            char hash[65];
            cfg_hash(again, scope, hash);
            /* redaction: every endpoint URL keeps only scheme and host:port, every header value goes */
            json_t *emitted = cfg_to_json(cfg, scope), *red = emitted != NULL ? cfg_redact(emitted) : NULL;
            check_redacted(red);
            json_decref(red);
            json_decref(emitted);
            cfg_t *copy = cfg_dup(cfg);
            cfg_errors_t paths;
            cfg_errors_init(&paths);
            if (copy != NULL && cfg_restart_changes(cfg, copy, &paths) != 0)
                abort();
            cfg_errors_dispose(&paths);
            cfg_destroy(copy);
            free(canon2);
            cfg_destroy(again);
            free(canon);
            cfg_destroy(cfg);
        }
        json_t *patched = cfg_merge_patch(tree, tree);
        json_t *d = cfg_json_diff(tree, patched);
        const char *err;
        json_t *applied = d != NULL ? cfg_json_patch_apply(tree, d, &err) : NULL;
        if (d != NULL && (applied == NULL || !json_equal(applied, patched)))
            abort();
        json_decref(applied);
        json_decref(d);
        json_decref(patched);
        json_decref(tree);
    }
    cfg_errors_dispose(&errs);
    return 0;
}
