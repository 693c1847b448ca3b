/*
 * Connection settings: flags, then the environment, then pathwayctl's settings file:
 *
 *   # ~/.config/pathway/pathwayctl.yaml
 *   url: http://127.0.0.1:7070
 *   token_file: admin.token        # relative to this file's directory; or `token: ...`
 *   timeout: 10s
 *
 * Each setting is taken on its own from the first place that has it, so PATHWAY_URL can point a
 * shell at another control plane while the token still comes from the file.
 */
#include "ctl.h"
#include "cfg.h"
#include <errno.h>
#include <stdlib.h>
#include <string.h>

void ctl_conn_dispose(ctl_conn_t *conn)
{
    free(conn->url);
    free(conn->token);
    free(conn->config_file);
    memset(conn, 0, sizeof(*conn));
}

char *ctl_default_config_path(const ctl_env_t *env)
{
    const char *base = env->xdg_config_home, *suffix = "/pathway/pathwayctl.yaml";
    if (base == NULL || base[0] == '\0') {
        if (env->home == NULL || env->home[0] == '\0')
            return NULL;
        base = env->home;
        suffix = "/.config/pathway/pathwayctl.yaml";
    }
    size_t n = strlen(base) + strlen(suffix) + 1;
    char *p = malloc(n);
    if (p != NULL)
        snprintf(p, n, "%s%s", base, suffix);
    return p;
}

/* A token file's content without surrounding whitespace (editors add a newline). */
static char *read_token_file(const char *path, char *err, size_t errlen)
{
    char *t = cfg_read_file(path, CFG_MAX_DOCUMENT_SIZE, NULL);
    if (t == NULL) {
        snprintf(err, errlen, "token file %s: %s", path, strerror(errno));
        return NULL;
    }
    char *s = t, *e;
    while (*s == ' ' || *s == '\t' || *s == '\r' || *s == '\n')
        s++;
    e = s + strlen(s);
    while (e > s && (e[-1] == ' ' || e[-1] == '\t' || e[-1] == '\r' || e[-1] == '\n'))
        e--;
    *e = '\0';
    if (*s == '\0') {
        snprintf(err, errlen, "token file %s is empty", path);
        free(t);
        return NULL;
    }
    memmove(t, s, (size_t)(e - s) + 1);
    return t;
}

/* `rel` against the directory of `file` unless it is absolute. Caller frees. */
static char *resolve_against(const char *file, const char *rel)
{
    const char *slash = strrchr(file, '/');
    if (rel[0] == '/' || slash == NULL)
        return strdup(rel);
    size_t n = (size_t)(slash - file) + 1 + strlen(rel) + 1;
    char *p = malloc(n);
    if (p != NULL)
        snprintf(p, n, "%.*s/%s", (int)(slash - file), file, rel);
    return p;
}

/* What the settings file says; every member NULL when absent. */
typedef struct st_file_settings_t {
    json_t *tree;           /* owns the strings below */
    const char *url;        /* `url` */
    const char *token;      /* `token` */
    const char *token_file; /* `token_file`, as written */
    const char *timeout;    /* `timeout` */
} file_settings_t;

static int load_settings(const char *path, int must_exist, file_settings_t *fs, char *err, size_t errlen)
{
    memset(fs, 0, sizeof(*fs));
    size_t len;
    char *text = cfg_read_file(path, CFG_MAX_DOCUMENT_SIZE, &len);
    if (text == NULL) {
        if (!must_exist && errno == ENOENT)
            return 0;
        snprintf(err, errlen, "%s: %s", path, strerror(errno));
        return -1;
    }
    cfg_errors_t errs;
    cfg_errors_init(&errs);
    fs->tree = cfg_tree_parse(text, len, CFG_FORMAT_AUTO, &errs);
    free(text);
    if (fs->tree == NULL) {
        snprintf(err, errlen, "%s: %s", path, errs.size > 0 ? errs.entries[0] : "cannot parse");
        cfg_errors_dispose(&errs);
        return -1;
    }
    cfg_errors_dispose(&errs);
    if (json_is_null(fs->tree)) /* an empty file */
        return 0;
    if (!json_is_object(fs->tree)) {
        snprintf(err, errlen, "%s: must be a mapping of url, token, token_file, timeout", path);
        goto Error;
    }
    const char *key;
    json_t *v;
    json_object_foreach(fs->tree, key, v)
    {
        const char **slot = strcmp(key, "url") == 0          ? &fs->url
                            : strcmp(key, "token") == 0      ? &fs->token
                            : strcmp(key, "token_file") == 0 ? &fs->token_file
                            : strcmp(key, "timeout") == 0    ? &fs->timeout
                                                             : NULL;
        if (slot == NULL) {
            snprintf(err, errlen, "%s: %s: unknown key (known: url, token, token_file, timeout)", path, key);
            goto Error;
        }
        if (!json_is_string(v)) {
            snprintf(err, errlen, "%s: %s: must be a string", path, key);
            goto Error;
        }
        *slot = json_string_value(v);
    }
    if (fs->token != NULL && fs->token_file != NULL) {
        snprintf(err, errlen, "%s: token and token_file exclude each other", path);
        goto Error;
    }
    return 0;
Error:
    json_decref(fs->tree);
    fs->tree = NULL;
    return -1;
}

int ctl_conn_resolve(const ctl_args_t *args, const ctl_env_t *env, ctl_conn_t *conn, char *err, size_t errlen)
{
    memset(conn, 0, sizeof(*conn));
    file_settings_t fs;
    char *path = args->config_file != NULL ? strdup(args->config_file) : ctl_default_config_path(env);
    if (path != NULL && load_settings(path, args->config_file != NULL, &fs, err, errlen) != 0) {
        free(path);
        return -1;
    }
    if (path == NULL)
        memset(&fs, 0, sizeof(fs));
    if (fs.tree != NULL)
        conn->config_file = strdup(path);

    const char *url = args->url != NULL                         ? args->url
                      : env->url != NULL && env->url[0] != '\0' ? env->url
                      : fs.url != NULL                          ? fs.url
                                                                : CTL_DEFAULT_URL;
    if (strncmp(url, "http://", 7) != 0 && strncmp(url, "https://", 8) != 0) {
        snprintf(err, errlen, "control plane URL must start with http:// or https://, not '%s'", url);
        goto Error;
    }
    size_t ulen = strlen(url);
    while (ulen > 8 && url[ulen - 1] == '/')
        ulen--;
    conn->url = strndup(url, ulen);

    if (args->token != NULL) {
        conn->token = strdup(args->token);
    } else if (args->token_file != NULL) {
        if ((conn->token = read_token_file(args->token_file, err, errlen)) == NULL)
            goto Error;
    } else if (env->token != NULL && env->token[0] != '\0') {
        conn->token = strdup(env->token);
    } else if (fs.token != NULL) {
        conn->token = strdup(fs.token);
    } else if (fs.token_file != NULL) {
        char *tf = resolve_against(path, fs.token_file);
        conn->token = tf != NULL ? read_token_file(tf, err, errlen) : NULL;
        free(tf);
        if (conn->token == NULL)
            goto Error;
    }

    const char *timeout = args->timeout != NULL ? args->timeout : fs.timeout;
    conn->timeout_ms = CTL_DEFAULT_TIMEOUT_MS;
    if (timeout != NULL) {
        const char *why = NULL;
        uint64_t ms = 0;
        if (cfg_parse_duration(timeout, &ms, &why) != 0 || ms == 0) {
            snprintf(err, errlen, "timeout '%s': %s", timeout, why != NULL ? why : "must be more than 0");
            goto Error;
        }
        conn->timeout_ms = ms;
    }
    json_decref(fs.tree);
    free(path);
    return 0;
Error:
    json_decref(fs.tree);
    free(path);
    ctl_conn_dispose(conn);
    return -1;
}
