/*
 * What the command files (ctl_versions.c, ctl_fleet.c) share, declared in ctl_cmds.h: JSON output,
 * the report of a failed call, GETs that must answer JSON, tables, and the text of a few fields.
 */
#include "ctl_cmds.h"
#include <stdlib.h>
#include <string.h>

void ctl_print_json(ctl_t *ctl, const json_t *v)
{
    char *s = json_dumps(v, JSON_INDENT(2) | JSON_PRESERVE_ORDER | JSON_ENCODE_ANY | JSON_REAL_PRECISION(15));
    if (s != NULL)
        fprintf(ctl->out, "%s\n", s);
    free(s);
}

/* A response body as JSON, or NULL (with a message) when it is not. New reference. */
json_t *ctl_body_json(ctl_t *ctl, const ctl_response_t *res)
{
    json_error_t e;
    json_t *v = json_loadb(res->body, res->len, JSON_DECODE_ANY, &e);
    if (v == NULL)
        fprintf(ctl->err, "pathwayctl: the control plane answered %ld with something that is not JSON: %.200s\n", res->status,
                res->body);
    return v;
}

/* Prints why a call failed and returns its exit code. `prefix` (a file name, or NULL) goes before
 * each validation error, as `pathway-config check` prints them. `doc` (NULL: none) is the document
 * the errors are about, when the user named its list items by id (`set`): their paths then say
 * `services.eth...`, not `services[0]...`. */
int ctl_report_failure_doc(ctl_t *ctl, const ctl_response_t *res, const char *prefix, const json_t *doc)
{
    json_t *body = json_loadb(res->body, res->len, 0, NULL);
    const char *msg = json_string_value(json_object_get(body, "error"));
    json_t *errors = json_object_get(body, "errors");
    if (res->status == 401) {
        fprintf(ctl->err,
                "pathwayctl: authentication failed (401): %s\n  give an admin or viewer token: --token, --token-file, "
                "PATHWAY_TOKEN or token_file in pathwayctl.yaml\n",
                msg != NULL ? msg : "no valid token");
    } else if (res->status == 403) {
        fprintf(ctl->err, "pathwayctl: not allowed (403): %s\n", msg != NULL ? msg : "this token's role may not do this");
    } else if (res->status == 412) {
        json_int_t active = json_integer_value(json_object_get(body, "active_version"));
        fprintf(ctl->err,
                "pathwayctl: rejected (412): the active version changed meanwhile (it is now %lld); nothing was stored.\n"
                "  See what changed with `pathwayctl diff`, then run again (or pass --force to apply regardless).\n",
                (long long)active);
    } else {
        fprintf(ctl->err, "pathwayctl: %s (%ld): %s\n",
                ctl_status_exit(res->status) == CTL_EXIT_UNREACHABLE ? "control plane unavailable" : "rejected", res->status,
                msg != NULL    ? msg
                : res->len > 0 ? res->body
                               : "(no body)");
        size_t i;
        json_t *e;
        json_array_foreach(errors, i, e)
        {
            const char *s = json_string_value(e);
            char *mapped = s != NULL && doc != NULL ? ctl_error_with_ids(s, doc) : NULL;
            if (s != NULL)
                fprintf(ctl->err, "%s%s%s\n", prefix != NULL ? prefix : "  ", prefix != NULL ? ": " : "",
                        mapped != NULL ? mapped : s);
            free(mapped);
        }
    }
    json_decref(body);
    return ctl_status_exit(res->status);
}

int ctl_report_failure(ctl_t *ctl, const ctl_response_t *res, const char *prefix)
{
    return ctl_report_failure_doc(ctl, res, prefix, NULL);
}

/* A GET whose answer must be 2xx JSON. Returns the body (new reference) or NULL with *rc set. */
json_t *ctl_get_json(ctl_t *ctl, const char *path, int *rc)
{
    ctl_response_t res;
    if (ctl_request(ctl, "GET", path, NULL, NULL, 0, &res) != 0) {
        *rc = CTL_EXIT_UNREACHABLE;
        return NULL;
    }
    json_t *v = NULL;
    if (res.status / 100 != 2)
        *rc = ctl_report_failure(ctl, &res, NULL);
    else if ((v = ctl_body_json(ctl, &res)) == NULL)
        *rc = CTL_EXIT_UNREACHABLE;
    ctl_response_dispose(&res);
    return v;
}

const char *ctl_str(const json_t *o, const char *key)
{
    const char *s = json_string_value(json_object_get(o, key));
    return s != NULL ? s : "";
}

/* RFC 3339 with milliseconds shortened to seconds ("2026-11-26T21:05:03Z"). */
void ctl_short_time(const char *t, char *out, size_t len)
{
    const char *dot = strchr(t, '.');
    if (dot != NULL && strlen(t) > 0 && t[strlen(t) - 1] == 'Z')
        snprintf(out, len, "%.*sZ", (int)(dot - t), t);
    else
        snprintf(out, len, "%s", t);
}

void ctl_int_or_dash(const json_t *v, char *out, size_t len)
{
    if (json_is_integer(v) && json_integer_value(v) > 0)
        snprintf(out, len, "%lld", (long long)json_integer_value(v));
    else
        snprintf(out, len, "-");
}

void ctl_table_row(ctl_table_t *t, const char *const *cells)
{
    char **c = realloc(t->cells, (t->rows + 1) * t->ncols * sizeof(*c));
    if (c == NULL)
        return;
    t->cells = c;
    for (size_t i = 0; i < t->ncols; i++) {
        /* one line per row: newlines and tabs in messages become spaces */
        char *s = strdup(cells[i] != NULL ? cells[i] : "");
        for (char *p = s; p != NULL && *p; p++)
            if (*p == '\n' || *p == '\r' || *p == '\t')
                *p = ' ';
        c[t->rows * t->ncols + i] = s;
    }
    t->rows++;
}

/* Display width of UTF-8 text (one column per code point; good enough for messages). */
static size_t width(const char *s)
{
    size_t w = 0;
    for (; s != NULL && *s; s++)
        if (((unsigned char)*s & 0xC0) != 0x80)
            w++;
    return w;
}

void ctl_table_print(ctl_t *ctl, ctl_table_t *t)
{
    size_t w[CTL_TABLE_MAX_COLS] = {0};
    for (size_t r = 0; r < t->rows; r++)
        for (size_t i = 0; i < t->ncols; i++)
            if (width(t->cells[r * t->ncols + i]) > w[i])
                w[i] = width(t->cells[r * t->ncols + i]);
    for (size_t r = 0; r < t->rows; r++) {
        if (r == 0)
            fputs(CTL_BOLD(ctl), ctl->out);
        for (size_t i = 0; i < t->ncols; i++) {
            const char *s = t->cells[r * t->ncols + i];
            fputs(s != NULL ? s : "", ctl->out);
            if (i + 1 < t->ncols)
                fprintf(ctl->out, "%*s", (int)(w[i] - width(s) + 2), "");
        }
        if (r == 0)
            fputs(CTL_RESET(ctl), ctl->out);
        fputc('\n', ctl->out);
    }
    for (size_t k = 0; k < t->rows * t->ncols; k++)
        free(t->cells[k]);
    free(t->cells);
    t->cells = NULL;
    t->rows = 0;
}

/* `no <what> "NAME"; did you mean "NEAR"?` (or the names there are), for a name the control plane
 * does not know; `names` borrowed (NULL: unknown). Returns CTL_EXIT_REJECTED. */
int ctl_print_unknown(ctl_t *ctl, const char *what, const char *name, const char *const *names, size_t n)
{
    const char *near = names != NULL ? ctl_suggest(name, names, n) : NULL;
    if (near != NULL)
        fprintf(ctl->err, "pathwayctl: no %s \"%s\"; did you mean \"%s\"?\n", what, name, near);
    else if (names != NULL && n == 0)
        fprintf(ctl->err, "pathwayctl: no %s \"%s\" (there is none)\n", what, name);
    else if (names != NULL && n <= 8) {
        fprintf(ctl->err, "pathwayctl: no %s \"%s\" (there are: ", what, name);
        for (size_t i = 0; i < n; i++)
            fprintf(ctl->err, "%s%s", i > 0 ? ", " : "", names[i]);
        fprintf(ctl->err, ")\n");
    } else
        fprintf(ctl->err, "pathwayctl: no %s \"%s\"\n", what, name);
    return CTL_EXIT_REJECTED;
}

/* The value of `key` of each object of `list` (borrowed from it); caller frees the array. */
const char **ctl_names_of(const json_t *list, const char *key, size_t *n)
{
    const char **names = malloc((json_array_size(list) + 1) * sizeof(*names));
    size_t i;
    json_t *item;
    *n = 0;
    json_array_foreach(list, i, item)
    {
        const char *s = json_string_value(json_object_get(item, key));
        if (names != NULL && s != NULL)
            names[(*n)++] = s;
    }
    return names;
}

/* "version 7 · patch of 6 by ops at 2026-11-26T21:05:03Z: message" */
void ctl_version_line(ctl_t *ctl, const json_t *v)
{
    char t[40], src[48] = "";
    ctl_short_time(ctl_str(v, "created_at"), t, sizeof(t));
    json_t *s = json_object_get(v, "source_version");
    if (json_is_integer(s))
        snprintf(src, sizeof(src), " %s %lld", strcmp(ctl_str(v, "kind"), "rollback") == 0 ? "to" : "of",
                 (long long)json_integer_value(s));
    fprintf(ctl->out, "version %lld (%s%s by %s at %s)%s%s%s\n", (long long)json_integer_value(json_object_get(v, "version")),
            ctl_str(v, "kind"), src, ctl_str(v, "author"), t, ctl_str(v, "message")[0] ? ": \"" : "", ctl_str(v, "message"),
            ctl_str(v, "message")[0] ? "\"" : "");
}

/* GETs the newest `--limit` (default 20) of a paged list; with --json prints it and returns NULL
 * with *rc = 0. NULL with *rc set when the call failed. */
json_t *ctl_get_list(ctl_t *ctl, const ctl_args_t *args, const char *route, int *rc)
{
    char path[96];
    snprintf(path, sizeof(path), "%s?limit=%ld", route, args->limit > 0 ? args->limit : 20);
    *rc = CTL_EXIT_OK;
    json_t *body = ctl_get_json(ctl, path, rc);
    if (body != NULL && (args->given & CTL_OPT_JSON)) {
        ctl_print_json(ctl, body);
        json_decref(body);
        return NULL;
    }
    return body;
}
