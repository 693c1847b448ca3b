/*
 * pathway-config: what an operator runs on a config file before shipping it (like `nginx -t`).
 *
 *   pathway-config check [--fleet] FILE...   every error with its path; exit 1 on any
 *   pathway-config fmt [--fleet] [--yaml] FILE   the canonical JSON (or YAML) form
 *   pathway-config hash [--fleet] FILE        SHA-256 of the canonical form
 *   pathway-config diff [--fleet] A B         what changed, as JSON Patch (RFC 6902)
 *   pathway-config doc                        the config reference (docs/config.md)
 *   pathway-config --version
 */
#include "cfg.h"
#include "pw_version.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void usage(FILE *fp)
{
    fprintf(fp, "usage: pathway-config check [--fleet] FILE...\n"
                "       pathway-config fmt [--fleet] [--yaml] FILE\n"
                "       pathway-config hash [--fleet] FILE\n"
                "       pathway-config diff [--fleet] A B\n"
                "       pathway-config doc\n"
                "       pathway-config --version\n"
                "\n"
                "--fleet reads a control plane's document (fleet settings only; node-local keys are errors).\n"
                "Exit: 0 ok, 1 invalid document, 2 usage.\n");
}

/* Loads one file; prints its errors as "FILE: path: rule" and returns NULL on any. */
static cfg_t *load(const char *path, cfg_scope_t scope)
{
    cfg_errors_t errs;
    cfg_errors_init(&errs);
    cfg_t *cfg = cfg_load_file(path, scope, &errs);
    for (size_t i = 0; i < errs.size; i++) {
        /* cfg_load_file already names the file for I/O errors */
        if (strncmp(errs.entries[i], path, strlen(path)) == 0 && errs.entries[i][strlen(path)] == ':')
            fprintf(stderr, "%s\n", errs.entries[i]);
        else
            fprintf(stderr, "%s: %s\n", path, errs.entries[i]);
    }
    cfg_errors_dispose(&errs);
    return cfg;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    const char *cmd = argv[1];
    if (strcmp(cmd, "--version") == 0) {
        printf("pathway-config %s\n", PW_VERSION);
        return 0;
    }
    cfg_scope_t scope = CFG_SCOPE_FULL;
    int yaml = 0;
    const char *files[64];
    int nfiles = 0;
    for (int i = 2; i < argc; i++) {
        if (strcmp(argv[i], "--fleet") == 0)
            scope = CFG_SCOPE_FLEET;
        else if (strcmp(argv[i], "--yaml") == 0)
            yaml = 1;
        else if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0) {
            usage(stdout);
            return 0;
        } else if (argv[i][0] == '-' && argv[i][1] != '\0') {
            fprintf(stderr, "pathway-config: unknown option %s\n", argv[i]);
            return 2;
        } else if (nfiles < (int)(sizeof(files) / sizeof(files[0])))
            files[nfiles++] = argv[i];
        else {
            fprintf(stderr, "pathway-config: too many files\n");
            return 2;
        }
    }

    if (strcmp(cmd, "-h") == 0 || strcmp(cmd, "--help") == 0 || strcmp(cmd, "help") == 0) {
        usage(stdout);
        return 0;
    }
    if (strcmp(cmd, "doc") == 0) {
        char *md = cfg_reference_markdown();
        if (md == NULL)
            return 1;
        fputs(md, stdout);
        free(md);
        return 0;
    }
    if (strcmp(cmd, "check") == 0) {
        if (nfiles == 0) {
            usage(stderr);
            return 2;
        }
        int bad = 0;
        for (int i = 0; i < nfiles; i++) {
            cfg_t *cfg = load(files[i], scope);
            if (cfg == NULL) {
                bad = 1;
                continue;
            }
            char hash[65];
            cfg_hash(cfg, scope, hash);
            printf("%s: ok (%zu services, hash %.12s)\n", files[i], cfg->services.size, hash);
            cfg_destroy(cfg);
        }
        return bad;
    }
    if (strcmp(cmd, "fmt") == 0 || strcmp(cmd, "hash") == 0) {
        if (nfiles != 1) {
            usage(stderr);
            return 2;
        }
        cfg_t *cfg = load(files[0], scope);
        if (cfg == NULL)
            return 1;
        if (strcmp(cmd, "hash") == 0) {
            char hash[65];
            cfg_hash(cfg, scope, hash);
            printf("%s\n", hash);
        } else if (yaml) {
            json_t *j = cfg_to_json(cfg, scope);
            char *s = cfg_json_to_yaml(j);
            fputs(s != NULL ? s : "", stdout);
            free(s);
            json_decref(j);
        } else {
            char *s = cfg_canonical(cfg, scope);
            printf("%s\n", s != NULL ? s : "");
            free(s);
        }
        cfg_destroy(cfg);
        return 0;
    }
    if (strcmp(cmd, "diff") == 0) {
        if (nfiles != 2) {
            usage(stderr);
            return 2;
        }
        cfg_t *a = load(files[0], scope), *b = load(files[1], scope);
        int ret = 1;
        if (a != NULL && b != NULL) {
            json_t *ja = cfg_to_json(a, scope), *jb = cfg_to_json(b, scope);
            json_t *d = cfg_json_diff(ja, jb);
            char *s = json_dumps(d, JSON_INDENT(2) | JSON_REAL_PRECISION(15));
            printf("%s\n", s != NULL ? s : "[]");
            free(s);
            json_decref(d);
            json_decref(ja);
            json_decref(jb);
            ret = 0;
        }
        cfg_destroy(a);
        cfg_destroy(b);
        return ret;
    }
    fprintf(stderr, "pathway-config: unknown command '%s'\n", cmd);
    usage(stderr);
    return 2;
}
