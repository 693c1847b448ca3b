/*
 * The commands: one REST call or a few, and their output. Read commands print the API's JSON as it
 * came with --json, so scripts see exactly what docs/api.md documents; everything else is for people.
 * The rollout flags and `pathwayctl rollout` are ctl_rollout.c's.
 */
#include "ctl.h"
#include "cfg.h"
#include <ctype.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

/* --- output helpers ---------------------------------------------------------------------------- */

#define BOLD(ctl) ((ctl)->color ? "\033[1m" : "")
#define RESET(ctl) ((ctl)->color ? "\033[0m" : "")

static void print_json(ctl_t *ctl, const json_t *v)
{
    char *s = json_dumps(v, JSON_INDENT(2) | JSON_PRESERVE_ORDER | JSON_ENCODE_ANY);
    if (s != NULL)
        fprintf(ctl->out, "%s\n", s);
    free(s);
}

/* A response body as JSON, or NULL (with a message) when it is not. New reference. */
static json_t *body_json(ctl_t *ctl, const ctl_response_t *res)
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
static int report_failure_doc(ctl_t *ctl, const ctl_response_t *res, const char *prefix, const json_t *doc)
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

static int report_failure(ctl_t *ctl, const ctl_response_t *res, const char *prefix)
{
    return report_failure_doc(ctl, res, prefix, NULL);
}

/* A GET whose answer must be 2xx JSON. Returns the body (new reference) or NULL with *rc set. */
static json_t *get_json(ctl_t *ctl, const char *path, int *rc)
{
    ctl_response_t res;
    if (ctl_request(ctl, "GET", path, NULL, NULL, 0, &res) != 0) {
        *rc = CTL_EXIT_UNREACHABLE;
        return NULL;
    }
    json_t *v = NULL;
    if (res.status / 100 != 2)
        *rc = report_failure(ctl, &res, NULL);
    else if ((v = body_json(ctl, &res)) == NULL)
        *rc = CTL_EXIT_UNREACHABLE;
    ctl_response_dispose(&res);
    return v;
}

static const char *str(const json_t *o, const char *key)
{
    const char *s = json_string_value(json_object_get(o, key));
    return s != NULL ? s : "";
}

/* RFC 3339 with milliseconds shortened to seconds ("2026-11-26T21:05:03Z"). */
static void short_time(const char *t, char *out, size_t len)
{
    const char *dot = strchr(t, '.');
    if (dot != NULL && strlen(t) > 0 && t[strlen(t) - 1] == 'Z')
        snprintf(out, len, "%.*sZ", (int)(dot - t), t);
    else
        snprintf(out, len, "%s", t);
}

static void int_or_dash(const json_t *v, char *out, size_t len)
{
    if (json_is_integer(v) && json_integer_value(v) > 0)
        snprintf(out, len, "%lld", (long long)json_integer_value(v));
    else
        snprintf(out, len, "-");
}

/* A table printed with columns as wide as their widest cell (the last one unpadded). */
#define TABLE_MAX_COLS 8
typedef struct st_table_t {
    size_t ncols;
    char **cells; /* rows * ncols, row 0 the header */
    size_t rows;
} table_t;

static void table_row(table_t *t, const char *const *cells)
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

static void table_print(ctl_t *ctl, table_t *t)
{
    size_t w[TABLE_MAX_COLS] = {0};
    for (size_t r = 0; r < t->rows; r++)
        for (size_t i = 0; i < t->ncols; i++)
            if (width(t->cells[r * t->ncols + i]) > w[i])
                w[i] = width(t->cells[r * t->ncols + i]);
    for (size_t r = 0; r < t->rows; r++) {
        if (r == 0)
            fputs(BOLD(ctl), ctl->out);
        for (size_t i = 0; i < t->ncols; i++) {
            const char *s = t->cells[r * t->ncols + i];
            fputs(s != NULL ? s : "", ctl->out);
            if (i + 1 < t->ncols)
                fprintf(ctl->out, "%*s", (int)(w[i] - width(s) + 2), "");
        }
        if (r == 0)
            fputs(RESET(ctl), ctl->out);
        fputc('\n', ctl->out);
    }
    for (size_t k = 0; k < t->rows * t->ncols; k++)
        free(t->cells[k]);
    free(t->cells);
    t->cells = NULL;
    t->rows = 0;
}

/* --- versions and documents --------------------------------------------------------------------- */

static int is_number(const char *s)
{
    if (*s == '\0')
        return 0;
    for (; *s; s++)
        if (!isdigit((unsigned char)*s))
            return 0;
    return 1;
}

/* `no <what> "NAME"; did you mean "NEAR"?` (or the names there are), for a name the control plane
 * does not know; `names` borrowed (NULL: unknown). Returns CTL_EXIT_REJECTED. */
static int print_unknown(ctl_t *ctl, const char *what, const char *name, const char *const *names, size_t n)
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
static const char **names_of(const json_t *list, const char *key, size_t *n)
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

/* After a 404 for tag `name`: the message with a did-you-mean from GET /v1/tags. */
static int tag_not_found(ctl_t *ctl, const char *name)
{
    int rc;
    json_t *body = get_json(ctl, "/v1/tags", &rc);
    size_t n = 0;
    const char **names = body != NULL ? names_of(json_object_get(body, "tags"), "name", &n) : NULL;
    print_unknown(ctl, "tag", name, names, n);
    free(names);
    json_decref(body);
    return CTL_EXIT_REJECTED;
}

/* GET of a tag (path /v1/tags/NAME): NULL with *rc, and a did-you-mean when there is no such tag. */
static json_t *get_tag(ctl_t *ctl, const char *name, const char *path, int *rc)
{
    ctl_response_t res;
    if (ctl_request(ctl, "GET", path, NULL, NULL, 0, &res) != 0) {
        *rc = CTL_EXIT_UNREACHABLE;
        return NULL;
    }
    json_t *v = NULL;
    if (res.status == 404)
        *rc = tag_not_found(ctl, name);
    else if (res.status / 100 != 2)
        *rc = report_failure(ctl, &res, NULL);
    else if ((v = body_json(ctl, &res)) == NULL)
        *rc = CTL_EXIT_UNREACHABLE;
    ctl_response_dispose(&res);
    return v;
}

/* A version given as a number, `active` (or `latest`), `previous` (the one active before the
 * active one: every stored version becomes active, so the active number minus one), or a tag name.
 * Returns an exit code. */
static int resolve_version(ctl_t *ctl, const char *spec, int64_t *out)
{
    int rc = CTL_EXIT_OK;
    if (is_number(spec)) {
        errno = 0;
        long long n = strtoll(spec, NULL, 10);
        if (errno != 0 || n < 1) {
            fprintf(ctl->err, "pathwayctl: '%s' is not a version number\n", spec);
            return CTL_EXIT_USAGE;
        }
        *out = n;
        return CTL_EXIT_OK;
    }
    json_t *v;
    int previous = strcmp(spec, "previous") == 0;
    if (strcmp(spec, "active") == 0 || strcmp(spec, "latest") == 0 || previous) {
        if ((v = get_json(ctl, "/v1/versions?limit=1", &rc)) == NULL)
            return rc;
        *out = json_integer_value(json_object_get(v, "active_version"));
        json_decref(v);
        if (*out < 1) {
            fprintf(ctl->err, "pathwayctl: no version stored yet\n");
            return CTL_EXIT_REJECTED;
        }
        if (previous && *out < 2) {
            fprintf(ctl->err, "pathwayctl: no previous version: version %lld is the first\n", (long long)*out);
            return CTL_EXIT_REJECTED;
        }
        *out -= previous;
        return CTL_EXIT_OK;
    }
    char *e = ctl_escape(ctl, spec), path[512];
    snprintf(path, sizeof(path), "/v1/tags/%s", e != NULL ? e : "");
    free(e);
    if ((v = get_tag(ctl, spec, path, &rc)) == NULL)
        return rc;
    *out = json_integer_value(json_object_get(v, "version"));
    json_decref(v);
    return CTL_EXIT_OK;
}

/* GET /v1/versions/{n}: the version object with its document. */
static json_t *get_version(ctl_t *ctl, int64_t n, int *rc)
{
    char path[64];
    snprintf(path, sizeof(path), "/v1/versions/%lld", (long long)n);
    return get_json(ctl, path, rc);
}

/* "version 7 · patch of 6 by ops at 2026-11-26T21:05:03Z: message" */
static void version_line(ctl_t *ctl, const json_t *v)
{
    char t[40], src[48] = "";
    short_time(str(v, "created_at"), t, sizeof(t));
    json_t *s = json_object_get(v, "source_version");
    if (json_is_integer(s))
        snprintf(src, sizeof(src), " %s %lld", strcmp(str(v, "kind"), "rollback") == 0 ? "to" : "of",
                 (long long)json_integer_value(s));
    fprintf(ctl->out, "version %lld (%s%s by %s at %s)%s%s%s\n", (long long)json_integer_value(json_object_get(v, "version")),
            str(v, "kind"), src, str(v, "author"), t, str(v, "message")[0] ? ": \"" : "", str(v, "message"),
            str(v, "message")[0] ? "\"" : "");
}

/* The active document and version: {} and 0 when nothing is stored yet. */
static int get_active(ctl_t *ctl, json_t **doc, int64_t *version)
{
    ctl_response_t res;
    if (ctl_request(ctl, "GET", "/v1/config", NULL, NULL, 0, &res) != 0)
        return CTL_EXIT_UNREACHABLE;
    int rc = CTL_EXIT_OK;
    *doc = NULL;
    *version = 0;
    if (res.status == 404) {
        *doc = json_object();
    } else if (res.status != 200) {
        rc = report_failure(ctl, &res, NULL);
    } else if ((*doc = body_json(ctl, &res)) == NULL) {
        rc = CTL_EXIT_UNREACHABLE;
    } else {
        char *end;
        errno = 0;
        long long n = strtoll(res.etag, &end, 10);
        if (res.etag[0] == '\0' || *end != '\0' || errno != 0 || n < 1) {
            fprintf(ctl->err, "pathwayctl: GET /v1/config answered without a version ETag\n");
            json_decref(*doc);
            *doc = NULL;
            rc = CTL_EXIT_UNREACHABLE;
        } else {
            *version = n;
        }
    }
    ctl_response_dispose(&res);
    return rc;
}

/* Prints the readable changes from `before` to `after`, or `none` when they are equal. */
static void print_changes(ctl_t *ctl, const json_t *before, const json_t *after, const char *none)
{
    ctl_changes_t ch;
    if (ctl_diff(before, after, &ch) != 0) {
        fprintf(ctl->err, "pathwayctl: out of memory\n");
        return;
    }
    if (ch.size == 0 && none != NULL)
        fprintf(ctl->out, "%s\n", none);
    ctl_changes_print(ctl->out, &ch, ctl->color);
    ctl_changes_dispose(&ch);
}

/* After a call that stores a version (PUT/PATCH /v1/config, POST /v1/rollback): prints the result
 * and what changed from `before`, and sets *stored to the version now active (the new one, or the
 * active one when nothing changed). `sent` as for report_failure_doc. Returns an exit code. */
static int report_stored(ctl_t *ctl, ctl_response_t *res, const json_t *before, int64_t before_version, const char *prefix,
                         const json_t *sent, int64_t *stored)
{
    if (res->status / 100 != 2)
        return report_failure_doc(ctl, res, prefix, sent);
    json_t *v = body_json(ctl, res);
    if (v == NULL)
        return CTL_EXIT_UNREACHABLE;
    int64_t n = json_integer_value(json_object_get(v, "version"));
    *stored = n;
    if (!json_is_true(json_object_get(v, "created"))) {
        fprintf(ctl->out, "no change: active version %lld already has this document\n", (long long)n);
        json_decref(v);
        return CTL_EXIT_OK;
    }
    fprintf(ctl->out, "%screated%s ", BOLD(ctl), RESET(ctl));
    version_line(ctl, v);
    ctl_rollout_started(ctl, v);
    json_decref(v);
    int rc = CTL_EXIT_OK;
    json_t *full = get_version(ctl, n, &rc);
    if (full == NULL)
        return rc;
    if (before_version > 0)
        fprintf(ctl->out, "changes from version %lld:\n", (long long)before_version);
    print_changes(ctl, before, json_object_get(full, "document"), "(none)");
    json_decref(full);
    return CTL_EXIT_OK;
}

/* Every dataplane of GET /v1/dataplanes, following its pages ({"active_version", "dataplanes"}).
 * NULL with *rc when a call failed. */
static json_t *get_dataplanes(ctl_t *ctl, int *rc)
{
    json_t *all = NULL;
    char path[256] = "/v1/dataplanes?limit=1000";
    for (int page = 0; page < 1000; page++) {
        json_t *body = get_json(ctl, path, rc);
        if (body == NULL) {
            json_decref(all);
            return NULL;
        }
        if (all == NULL) {
            all = body;
            if (!json_is_array(json_object_get(all, "dataplanes")))
                json_object_set_new(all, "dataplanes", json_array());
        } else {
            json_array_extend(json_object_get(all, "dataplanes"), json_object_get(body, "dataplanes"));
        }
        const char *next = json_string_value(json_object_get(body, "next_after"));
        char *e = next != NULL && next[0] != '\0' ? ctl_escape(ctl, next) : NULL;
        int more = e != NULL;
        if (more)
            snprintf(path, sizeof(path), "/v1/dataplanes?limit=1000&after=%s", e);
        free(e);
        if (body != all)
            json_decref(body);
        if (!more)
            break;
    }
    json_object_del(all, "next_after");
    return all;
}

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* --wait: polls the dataplanes until every connected one ACKed `version` (0), one NACKed it or
 * drifted from it (1, each one's error on stderr), or `wait_ms` passed (4). Progress on stderr. */
static int wait_for(ctl_t *ctl, int64_t version, uint64_t wait_ms)
{
    uint64_t start = now_ms(), deadline = start + wait_ms, last_print = 0;
    char last[512] = "";
    fflush(ctl->out); /* what was stored comes before the progress, also when stdout is a pipe */
    for (;;) {
        int rc = CTL_EXIT_OK;
        json_t *body = get_dataplanes(ctl, &rc);
        if (body == NULL)
            return rc;
        json_t *list = json_object_get(body, "dataplanes"), *dp;
        size_t i, counts[4] = {0};
        char pending[256] = "";
        size_t used = 0;
        json_array_foreach(list, i, dp)
        {
            ctl_dp_verdict_t v = ctl_dp_verdict(dp, version, NULL, 0);
            counts[v]++;
            if (v == CTL_DP_PENDING && used < 160) {
                int w = snprintf(pending + used, sizeof(pending) - used, "%s%s %s", used > 0 ? ", " : "",
                                 json_string_value(json_object_get(dp, "id")), str(dp, "state"));
                if (w > 0)
                    used += (size_t)w < sizeof(pending) - used ? (size_t)w : sizeof(pending) - used - 1;
            }
        }
        size_t connected = counts[CTL_DP_PENDING] + counts[CTL_DP_ACKED] + counts[CTL_DP_FAILED];
        char ignored[64] = "";
        if (counts[CTL_DP_IGNORED] > 0)
            snprintf(ignored, sizeof(ignored), "; %zu disconnected, not waited for", counts[CTL_DP_IGNORED]);
        if (counts[CTL_DP_FAILED] > 0) {
            fprintf(ctl->err, "pathwayctl: version %lld failed on %zu of %zu connected dataplanes%s:\n", (long long)version,
                    counts[CTL_DP_FAILED], connected, ignored);
            json_array_foreach(list, i, dp)
            {
                char why[512];
                if (ctl_dp_verdict(dp, version, why, sizeof(why)) == CTL_DP_FAILED)
                    fprintf(ctl->err, "  %s: %s\n", str(dp, "id"), why);
            }
            if (counts[CTL_DP_PENDING] > 0)
                fprintf(ctl->err, "  (still waiting: %s)\n", pending);
            json_decref(body);
            return CTL_EXIT_REJECTED;
        }
        if (counts[CTL_DP_PENDING] == 0) {
            if (connected == 0)
                fprintf(ctl->out, "version %lld: no connected dataplane to wait for%s\n", (long long)version, ignored);
            else
                fprintf(ctl->out, "version %lld: ACKed by all %zu connected dataplanes%s\n", (long long)version, connected,
                        ignored);
            json_decref(body);
            return CTL_EXIT_OK;
        }
        uint64_t t = now_ms();
        char line[512];
        snprintf(line, sizeof(line), "waiting for version %lld: %zu of %zu connected dataplanes ACKed; waiting for %s%s",
                 (long long)version, counts[CTL_DP_ACKED], connected, pending, used >= 160 ? ", ..." : "");
        if (strcmp(line, last) != 0 || t - last_print >= 5000) {
            fprintf(ctl->err, "%s (%.1fs)\n", line, (double)(t - start) / 1000.0);
            snprintf(last, sizeof(last), "%s", line);
            last_print = t;
        }
        if (t >= deadline) {
            fprintf(ctl->err,
                    "pathwayctl: timed out after %.1fs waiting for version %lld: %zu of %zu connected dataplanes ACKed%s; "
                    "not yet: %s\n",
                    (double)wait_ms / 1000.0, (long long)version, counts[CTL_DP_ACKED], connected, ignored, pending);
            json_decref(body);
            return CTL_EXIT_TIMEOUT;
        }
        json_decref(body);
        uint64_t nap = deadline - t < 200 ? deadline - t : 200;
        struct timespec ts = {.tv_sec = 0, .tv_nsec = (long)nap * 1000000L};
        nanosleep(&ts, NULL);
    }
}

/* "/v1/config", with "?message=..." for `-m` (caller frees), NULL when out of memory. Allocated to
 * fit: a message of CTL_MAX_MESSAGE bytes may triple when percent-encoded. */
static char *config_path(ctl_t *ctl, const ctl_args_t *args)
{
    if (args->message == NULL)
        return strdup("/v1/config");
    char *e = ctl_escape(ctl, args->message);
    if (e == NULL)
        return NULL;
    size_t n = strlen(e) + sizeof("/v1/config?message=");
    char *q = malloc(n);
    if (q != NULL)
        snprintf(q, n, "/v1/config?message=%s", e);
    free(e);
    return q;
}

/* Reads a document file for apply / validate. Returns its bytes (caller frees), NULL after
 * printing why. */
static char *read_document(ctl_t *ctl, const char *path, size_t *len, const char **ctype)
{
    FILE *fp = strcmp(path, "-") == 0 ? stdin : fopen(path, "rb");
    if (fp == NULL) {
        fprintf(ctl->err, "pathwayctl: %s: %s\n", path, strerror(errno));
        return NULL;
    }
    size_t cap = 65536, n = 0;
    char *buf = malloc(cap);
    for (;;) {
        if (buf == NULL)
            break;
        size_t r = fread(buf + n, 1, cap - n, fp);
        n += r;
        if (r == 0)
            break;
        if (n == cap) {
            if (cap > CFG_MAX_DOCUMENT_SIZE) {
                fprintf(ctl->err, "pathwayctl: %s: larger than %u bytes\n", path, CFG_MAX_DOCUMENT_SIZE);
                free(buf);
                buf = NULL;
                break;
            }
            char *nb = realloc(buf, cap * 2);
            if (nb == NULL) {
                free(buf);
                buf = NULL;
            } else {
                buf = nb;
                cap *= 2;
            }
        }
    }
    int failed = ferror(fp);
    if (fp != stdin)
        fclose(fp);
    if (failed) {
        fprintf(ctl->err, "pathwayctl: %s: read error\n", path);
        free(buf);
        return NULL;
    }
    if (buf == NULL)
        return NULL;
    /* as cfg_tree_parse's AUTO: JSON when the first non-blank byte is '{' */
    size_t i = 0;
    while (i < n && isspace((unsigned char)buf[i]))
        i++;
    *ctype = i < n && buf[i] == '{' ? "Content-Type: application/json" : "Content-Type: application/yaml";
    *len = n;
    return buf;
}

int ctl_doc_version(const char *doc, size_t len, int64_t *version)
{
    size_t hl = strlen(CTL_DOC_HEADER), i = hl;
    if (len <= hl || memcmp(doc, CTL_DOC_HEADER, hl) != 0)
        return -1;
    int64_t n = 0;
    for (; i < len && isdigit((unsigned char)doc[i]); i++) {
        if (n > (INT64_MAX - 9) / 10)
            return -1;
        n = n * 10 + (doc[i] - '0');
    }
    if (i == hl || n < 1 || (i < len && doc[i] != ' ' && doc[i] != '\n' && doc[i] != '\r'))
        return -1;
    *version = n;
    return 0;
}

/* --- commands ------------------------------------------------------------------------------------- */

static void dataplanes_table(ctl_t *ctl, const json_t *dps)
{
    table_t t = {.ncols = 7};
    static const char *const head[] = {"ID", "STATE", "APPLIED", "LAST SEEN", "LABELS", "ENDPOINTS", "ERROR"};
    table_row(&t, head);
    size_t i;
    json_t *dp;
    json_array_foreach(dps, i, dp)
    {
        char applied[32], seen[40], labels[256] = "";
        int_or_dash(json_object_get(dp, "applied_version"), applied, sizeof(applied));
        short_time(str(dp, "last_seen"), seen, sizeof(seen));
        const char *k;
        json_t *v;
        size_t o = 0;
        json_object_foreach(json_object_get(dp, "labels"), k, v)
        {
            int w = snprintf(labels + o, sizeof(labels) - o, "%s%s=%s", o ? "," : "", k,
                             json_string_value(v) ? json_string_value(v) : "");
            if (w < 0 || (size_t)w >= sizeof(labels) - o)
                break;
            o += (size_t)w;
        }
        char drift[160];
        int drifted = strcmp(str(dp, "state"), "drifted") == 0;
        if (drifted)
            ctl_drift_text(dp, drift, sizeof(drift));
        char endpoints[256];
        ctl_endpoints_text(dp, endpoints, sizeof(endpoints));
        const char *row[] = {str(dp, "id"), str(dp, "state"), applied, seen, labels, endpoints, drifted ? drift : str(dp, "error")};
        table_row(&t, row);
    }
    table_print(ctl, &t);
}

int ctl_cmd_status(ctl_t *ctl, const ctl_args_t *args)
{
    int rc = CTL_EXIT_OK;
    json_t *versions = get_json(ctl, "/v1/versions?limit=1", &rc);
    if (versions == NULL)
        return rc;
    json_t *dps = get_dataplanes(ctl, &rc);
    if (dps == NULL) {
        json_decref(versions);
        return rc;
    }
    /* exit 1 when a dataplane needs the operator: it rejected the active version, drifted from what
     * it ACKed, or stopped calling */
    static const char *const bad[] = {"rejected", "drifted", "disconnected"};
    size_t nbad[3] = {0}, k;
    json_t *d;
    json_array_foreach(json_object_get(dps, "dataplanes"), k, d)
    {
        for (size_t b = 0; b < 3; b++)
            nbad[b] += strcmp(str(d, "state"), bad[b]) == 0;
    }
    int status_rc = nbad[0] + nbad[1] + nbad[2] > 0 ? CTL_EXIT_REJECTED : CTL_EXIT_OK;
    json_t *active = json_array_get(json_object_get(versions, "versions"), 0);
    if (args->given & CTL_OPT_JSON) {
        json_t *o =
            json_pack("{sO sO}", "active", active != NULL ? active : json_null(), "dataplanes", json_object_get(dps, "dataplanes"));
        print_json(ctl, o);
        json_decref(o);
    } else {
        fprintf(ctl->out, "control plane  %s\n", ctl->conn.url);
        if (active == NULL) {
            fprintf(ctl->out, "active         none (no version stored yet)\n");
        } else {
            fprintf(ctl->out, "active         ");
            version_line(ctl, active);
            fprintf(ctl->out, "hash           %s\n", str(active, "hash"));
        }
        json_t *list = json_object_get(dps, "dataplanes");
        size_t synced = 0, i;
        json_t *dp;
        json_array_foreach(list, i, dp) synced += strcmp(str(dp, "state"), "synced") == 0;
        fprintf(ctl->out, "dataplanes     %zu (%zu synced", json_array_size(list), synced);
        for (size_t b = 0; b < 3; b++)
            if (nbad[b] > 0)
                fprintf(ctl->out, ", %zu %s", nbad[b], bad[b]);
        fprintf(ctl->out, ")\n");
        if (json_array_size(list) > 0) {
            fputc('\n', ctl->out);
            dataplanes_table(ctl, list);
        }
    }
    json_decref(versions);
    json_decref(dps);
    return status_rc;
}

/* GETs the newest `--limit` (default 20) of a paged list; with --json prints it and returns NULL
 * with *rc = 0. NULL with *rc set when the call failed. */
static json_t *get_list(ctl_t *ctl, const ctl_args_t *args, const char *route, int *rc)
{
    char path[96];
    snprintf(path, sizeof(path), "%s?limit=%ld", route, args->limit > 0 ? args->limit : 20);
    *rc = CTL_EXIT_OK;
    json_t *body = get_json(ctl, path, rc);
    if (body != NULL && (args->given & CTL_OPT_JSON)) {
        print_json(ctl, body);
        json_decref(body);
        return NULL;
    }
    return body;
}

int ctl_cmd_versions(ctl_t *ctl, const ctl_args_t *args)
{
    int rc;
    json_t *body = get_list(ctl, args, "/v1/versions", &rc);
    if (body == NULL)
        return rc;
    json_int_t active = json_integer_value(json_object_get(body, "active_version"));
    json_t *list = json_object_get(body, "versions");
    if (json_array_size(list) == 0) {
        fprintf(ctl->out, "no version stored yet\n");
        json_decref(body);
        return CTL_EXIT_OK;
    }
    table_t t = {.ncols = 7};
    static const char *const head[] = {"VERSION", "CREATED", "AUTHOR", "KIND", "FROM", "HASH", "MESSAGE"};
    table_row(&t, head);
    size_t i;
    json_t *v;
    json_array_foreach(list, i, v)
    {
        char num[32], created[40], from[32], hash[16];
        json_int_t n = json_integer_value(json_object_get(v, "version"));
        snprintf(num, sizeof(num), "%s%lld", n == active ? "*" : " ", (long long)n);
        short_time(str(v, "created_at"), created, sizeof(created));
        int_or_dash(json_object_get(v, "source_version"), from, sizeof(from));
        snprintf(hash, sizeof(hash), "%.12s", str(v, "hash"));
        const char *row[] = {num, created, str(v, "author"), str(v, "kind"), from, hash, str(v, "message")};
        table_row(&t, row);
    }
    table_print(ctl, &t);
    if (!json_is_null(json_object_get(body, "next_before")) && json_object_get(body, "next_before") != NULL)
        fprintf(ctl->out, "(%zu of %lld shown; --limit N for more)\n", json_array_size(list), (long long)active);
    json_decref(body);
    return CTL_EXIT_OK;
}

int ctl_cmd_show(ctl_t *ctl, const ctl_args_t *args)
{
    int64_t n;
    int rc = resolve_version(ctl, args->npositional > 0 ? args->positional[0] : "active", &n);
    if (rc != CTL_EXIT_OK)
        return rc;
    json_t *v = get_version(ctl, n, &rc);
    if (v == NULL)
        return rc;
    if (args->given & CTL_OPT_JSON) {
        print_json(ctl, v);
    } else {
        char *yaml = cfg_json_to_yaml(json_object_get(v, "document"));
        if (args->given & CTL_OPT_YAML) {
            fprintf(ctl->out, CTL_DOC_HEADER "%lld (hash %s)\n%s", (long long)n, str(v, "hash"), yaml != NULL ? yaml : "");
        } else {
            fputs(BOLD(ctl), ctl->out);
            version_line(ctl, v);
            fputs(RESET(ctl), ctl->out);
            fprintf(ctl->out, "hash %s\n\n%s", str(v, "hash"), yaml != NULL ? yaml : "");
        }
        free(yaml);
    }
    json_decref(v);
    return CTL_EXIT_OK;
}

/* Whether a diff argument is a document file rather than a version: `-` (stdin) or an existing
 * file. */
static int is_file_arg(const char *arg)
{
    struct stat st;
    return strcmp(arg, "-") == 0 || (stat(arg, &st) == 0 && !S_ISDIR(st.st_mode));
}

/* A document file in the canonical form the control plane would store: from POST
 * /v1/config/validate (its own checks), or, for a token that may not call it (a viewer), from the
 * schema library pathwayctl was built with, redacted as the control plane redacts for viewers.
 * NULL with *rc after printing why (its errors, exit 1). */
static json_t *canonical_file(ctl_t *ctl, const char *file, int *rc)
{
    size_t len;
    const char *ctype;
    char *doc = read_document(ctl, file, &len, &ctype);
    if (doc == NULL) {
        *rc = CTL_EXIT_USAGE;
        return NULL;
    }
    const char *headers[] = {ctype, NULL};
    ctl_response_t res;
    json_t *out = NULL;
    if (ctl_request(ctl, "POST", "/v1/config/validate", headers, doc, len, &res) != 0) {
        *rc = CTL_EXIT_UNREACHABLE;
    } else if (res.status == 200) {
        json_t *v = body_json(ctl, &res);
        out = json_incref(json_object_get(v, "document"));
        json_decref(v);
        if (out == NULL)
            *rc = CTL_EXIT_UNREACHABLE;
    } else if (res.status == 403) {
        cfg_errors_t errs;
        cfg_errors_init(&errs);
        cfg_t *cfg = cfg_parse(doc, len, CFG_FORMAT_AUTO, CFG_SCOPE_FLEET, &errs);
        if (cfg == NULL) {
            for (size_t i = 0; i < errs.size; i++)
                fprintf(ctl->err, "%s: %s\n", file, errs.entries[i]);
            *rc = CTL_EXIT_REJECTED;
        } else {
            /* a viewer sees the control plane's documents with URL secrets and headers redacted:
             * the file too, so that only real differences show (and no secret of the file) */
            json_t *full = cfg_to_json(cfg, CFG_SCOPE_FLEET);
            out = full != NULL ? cfg_redact(full) : NULL;
            json_decref(full);
            cfg_destroy(cfg);
        }
        cfg_errors_dispose(&errs);
    } else {
        *rc = report_failure(ctl, &res, file);
    }
    if (res.body != NULL)
        ctl_response_dispose(&res);
    free(doc);
    return out;
}

/* One side of a diff: a version (its header line) or a file (canonical). */
typedef struct st_side_t {
    json_t *version; /* the version object, NULL for a file */
    json_t *doc;     /* borrowed from version, or owned for a file */
    const char *file;
} side_t;

static int load_side(ctl_t *ctl, const char *arg, side_t *side)
{
    int rc = CTL_EXIT_OK;
    memset(side, 0, sizeof(*side));
    if (is_file_arg(arg)) {
        side->file = arg;
        side->doc = canonical_file(ctl, arg, &rc);
        return side->doc != NULL ? CTL_EXIT_OK : rc;
    }
    int64_t n;
    if ((rc = resolve_version(ctl, arg, &n)) != CTL_EXIT_OK)
        return rc;
    if ((side->version = get_version(ctl, n, &rc)) == NULL)
        return rc;
    side->doc = json_object_get(side->version, "document");
    return CTL_EXIT_OK;
}

static void side_line(ctl_t *ctl, const side_t *side)
{
    if (side->version != NULL)
        version_line(ctl, side->version);
    else
        fprintf(ctl->out, "%s (a file, not stored)\n", side->file);
}

static void side_dispose(side_t *side)
{
    if (side->version != NULL)
        json_decref(side->version);
    else
        json_decref(side->doc);
}

int ctl_cmd_diff(ctl_t *ctl, const ctl_args_t *args)
{
    int rc;
    const char *from = args->positional[0], *to = args->npositional > 1 ? args->positional[1] : "active";
    /* `diff FILE`: what applying FILE would change in the active version */
    if (args->npositional == 1 && is_file_arg(from)) {
        to = from;
        from = "active";
    }
    if ((args->given & CTL_OPT_JSON) && (is_file_arg(from) || is_file_arg(to))) {
        fprintf(ctl->err, "pathwayctl diff: --json compares two versions, not a file\n");
        return CTL_EXIT_USAGE;
    }
    if (args->given & CTL_OPT_JSON) {
        int64_t a, b;
        rc = resolve_version(ctl, from, &a);
        if (rc == CTL_EXIT_OK)
            rc = resolve_version(ctl, to, &b);
        if (rc != CTL_EXIT_OK)
            return rc;
        char path[96];
        snprintf(path, sizeof(path), "/v1/versions/%lld/diff?from=%lld", (long long)b, (long long)a);
        json_t *d = get_json(ctl, path, &rc);
        if (d == NULL)
            return rc;
        print_json(ctl, d);
        json_decref(d);
        return CTL_EXIT_OK;
    }
    side_t a, b;
    memset(&b, 0, sizeof(b));
    rc = load_side(ctl, from, &a);
    if (rc == CTL_EXIT_OK && (rc = load_side(ctl, to, &b)) == CTL_EXIT_OK) {
        fprintf(ctl->out, "%s--- ", BOLD(ctl));
        side_line(ctl, &a);
        fprintf(ctl->out, "+++ ");
        side_line(ctl, &b);
        fputs(RESET(ctl), ctl->out);
        print_changes(ctl, a.doc, b.doc, "(no changes)");
    }
    side_dispose(&a);
    side_dispose(&b);
    return rc;
}

/* `apply --dry-run FILE`: what applying it would change, nothing stored. */
static int apply_dry_run(ctl_t *ctl, const ctl_args_t *args)
{
    int rc = CTL_EXIT_OK;
    json_t *before = NULL, *after = NULL;
    int64_t active = 0;
    if ((rc = get_active(ctl, &before, &active)) != CTL_EXIT_OK)
        return rc;
    if ((after = canonical_file(ctl, args->positional[0], &rc)) != NULL) {
        fprintf(ctl->out, "dry run, nothing stored: %s is valid; ", args->positional[0]);
        if (active > 0)
            fprintf(ctl->out, "changes from the active version %lld:\n", (long long)active);
        else
            fprintf(ctl->out, "no version stored yet; it would be version 1:\n");
        print_changes(ctl, before, after, "(none: the active version has this document)");
    }
    json_decref(before);
    json_decref(after);
    return rc;
}

int ctl_cmd_apply(ctl_t *ctl, const ctl_args_t *args)
{
    if ((args->given & CTL_OPT_DRY_RUN) && (args->given & CTL_OPT_WAIT)) {
        fprintf(ctl->err, "pathwayctl apply: --dry-run stores nothing to --wait for\n");
        return CTL_EXIT_USAGE;
    }
    if (args->given & CTL_OPT_DRY_RUN)
        return apply_dry_run(ctl, args);
    size_t len;
    const char *ctype;
    char *doc = read_document(ctl, args->positional[0], &len, &ctype);
    if (doc == NULL)
        return CTL_EXIT_USAGE;
    json_t *before = NULL;
    int64_t active = 0, shown = 0, stored = 0;
    int rc = get_active(ctl, &before, &active);
    char *path = rc == CTL_EXIT_OK ? config_path(ctl, args) : NULL;
    if (rc == CTL_EXIT_OK && path == NULL) {
        fprintf(ctl->err, "pathwayctl: out of memory\n");
        rc = CTL_EXIT_USAGE;
    }
    if (rc == CTL_EXIT_OK) {
        /* the version `show --yaml` wrote the file from: what the operator edited, so a version stored
         * since then is refused (412) rather than overwritten by the older edit */
        long long expect = active;
        if (args->given & CTL_OPT_IF_MATCH) {
            expect = args->if_match;
        } else if (!(args->given & CTL_OPT_FORCE) && ctl_doc_version(doc, len, &shown) == 0) {
            expect = shown;
            fprintf(ctl->out, "If-Match: \"%lld\" (the version %s was shown from)\n", expect, args->positional[0]);
        }
        char ifmatch[64];
        snprintf(ifmatch, sizeof(ifmatch), "If-Match: \"%lld\"", expect);
        const char *headers[] = {ctype, (args->given & CTL_OPT_FORCE) ? NULL : ifmatch, NULL};
        ctl_response_t res;
        if (ctl_write(ctl, args, "PUT", path, headers, doc, len, &res, &rc) == 0) {
            rc = report_stored(ctl, &res, before, active, args->positional[0], NULL, &stored);
            ctl_response_dispose(&res);
        }
    }
    free(path);
    free(doc);
    json_decref(before);
    if (rc == CTL_EXIT_OK && (args->given & CTL_OPT_WAIT))
        rc = wait_for(ctl, stored, args->wait_ms);
    return rc;
}

int ctl_cmd_set(ctl_t *ctl, const ctl_args_t *args)
{
    char err[512];
    if (ctl_set_check(args->positional, args->npositional, err, sizeof(err)) != 0) {
        fprintf(ctl->err, "pathwayctl set: %s\n", err);
        return CTL_EXIT_USAGE;
    }
    if ((args->given & CTL_OPT_DRY_RUN) && (args->given & CTL_OPT_WAIT)) {
        fprintf(ctl->err, "pathwayctl set: --dry-run stores nothing to --wait for\n");
        return CTL_EXIT_USAGE;
    }
    json_t *before = NULL;
    int64_t active = 0, stored = 0;
    int rc = get_active(ctl, &before, &active);
    if (rc != CTL_EXIT_OK)
        return rc;
    json_t *after = ctl_set_apply(before, args->positional, args->npositional, (args->given & CTL_OPT_CREATE) ? CTL_SET_CREATE : 0,
                                  err, sizeof(err));
    if (after == NULL) {
        fprintf(ctl->err, "pathwayctl set: %s (in version %lld)\n", err, (long long)active);
        json_decref(before);
        return CTL_EXIT_REJECTED;
    }
    json_t *patch = ctl_merge_diff(before, after);
    char *body = patch != NULL ? json_dumps(patch, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
    char *path = config_path(ctl, args);
    if (body == NULL || path == NULL) {
        fprintf(ctl->err, "pathwayctl: out of memory\n");
        rc = CTL_EXIT_USAGE;
    } else if (json_object_size(patch) == 0) {
        fprintf(ctl->out, "no change: active version %lld already has these values\n", (long long)active);
        stored = active;
    } else if (args->given & CTL_OPT_DRY_RUN) {
        fprintf(ctl->out, "PATCH /v1/config (If-Match: \"%lld\", Content-Type: application/merge-patch+json):\n",
                (long long)active);
        print_json(ctl, patch);
        fprintf(ctl->out, "changes from version %lld:\n", (long long)active);
        print_changes(ctl, before, after, "(none)");
    } else {
        char ifmatch[64];
        snprintf(ifmatch, sizeof(ifmatch), "If-Match: \"%lld\"",
                 (args->given & CTL_OPT_IF_MATCH) ? args->if_match : (long long)active);
        const char *headers[] = {"Content-Type: application/merge-patch+json", ifmatch, NULL};
        ctl_response_t res;
        if (ctl_write(ctl, args, "PATCH", path, headers, body, strlen(body), &res, &rc) == 0) {
            /* the server's errors index `services` of the patched document: `after` */
            rc = report_stored(ctl, &res, before, active, NULL, after, &stored);
            ctl_response_dispose(&res);
        }
    }
    free(path);
    free(body);
    json_decref(patch);
    json_decref(after);
    json_decref(before);
    if (rc == CTL_EXIT_OK && (args->given & CTL_OPT_WAIT) && stored > 0)
        rc = wait_for(ctl, stored, args->wait_ms);
    return rc;
}

int ctl_cmd_rollback(ctl_t *ctl, const ctl_args_t *args)
{
    const char *to = args->positional[0];
    json_t *req = json_object();
    int by_name = !is_number(to) && strcmp(to, "previous") != 0 && strcmp(to, "active") != 0;
    if (!by_name) {
        int64_t n;
        int rc = resolve_version(ctl, to, &n);
        if (rc != CTL_EXIT_OK) {
            json_decref(req);
            return rc;
        }
        json_object_set_new(req, "to", json_integer(n));
    } else {
        json_object_set_new(req, "to", json_string(to)); /* a tag: resolved by the server, atomically */
    }
    if (args->message != NULL)
        json_object_set_new(req, "message", json_string(args->message));
    json_t *before = NULL;
    int64_t active = 0, stored = 0;
    int rc = get_active(ctl, &before, &active);
    char *body = rc == CTL_EXIT_OK ? json_dumps(req, JSON_COMPACT) : NULL;
    if (body != NULL) {
        char ifmatch[64];
        snprintf(ifmatch, sizeof(ifmatch), "If-Match: \"%lld\"", args->if_match);
        const char *headers[] = {"Content-Type: application/json", (args->given & CTL_OPT_IF_MATCH) ? ifmatch : NULL, NULL};
        ctl_response_t res;
        if (ctl_write(ctl, args, "POST", "/v1/rollback", headers, body, strlen(body), &res, &rc) == 0) {
            if (res.status == 404 && by_name)
                rc = tag_not_found(ctl, to);
            else
                rc = report_stored(ctl, &res, before, active, NULL, NULL, &stored);
            ctl_response_dispose(&res);
        }
    }
    free(body);
    json_decref(req);
    json_decref(before);
    if (rc == CTL_EXIT_OK && (args->given & CTL_OPT_WAIT))
        rc = wait_for(ctl, stored, args->wait_ms);
    return rc;
}

/* `tag` alone: GET /v1/tags as a table. */
static int list_tags(ctl_t *ctl, const ctl_args_t *args)
{
    int rc = CTL_EXIT_OK;
    json_t *body = get_json(ctl, "/v1/tags", &rc);
    if (body == NULL)
        return rc;
    json_t *tags = json_object_get(body, "tags");
    if (args->given & CTL_OPT_JSON) {
        print_json(ctl, body);
    } else if (json_array_size(tags) == 0) {
        fprintf(ctl->out, "no tags yet (pathwayctl tag NAME N makes one)\n");
    } else {
        table_t t = {.ncols = 5};
        static const char *const head[] = {"TAG", "VERSION", "SET AT", "BY", "MESSAGE"};
        table_row(&t, head);
        size_t i;
        json_t *tag;
        json_array_foreach(tags, i, tag)
        {
            char num[32], at[40];
            snprintf(num, sizeof(num), "%lld", (long long)json_integer_value(json_object_get(tag, "version")));
            short_time(str(tag, "updated_at"), at, sizeof(at));
            const char *row[] = {str(tag, "name"), num, at, str(tag, "author"), str(tag, "message")};
            table_row(&t, row);
        }
        table_print(ctl, &t);
    }
    json_decref(body);
    return CTL_EXIT_OK;
}

/* `tag delete NAME [-m MSG]`: DELETE /v1/tags/NAME[?message=MSG]. */
static int delete_tag(ctl_t *ctl, const char *name, const char *path, const char *message)
{
    ctl_response_t res;
    char *e = message != NULL ? ctl_escape(ctl, message) : NULL;
    size_t n = strlen(path) + (e != NULL ? strlen(e) : 0) + sizeof("?message=");
    char *url = malloc(n);
    if (url == NULL) {
        free(e);
        fprintf(ctl->err, "pathwayctl: out of memory\n");
        return CTL_EXIT_USAGE;
    }
    snprintf(url, n, "%s%s%s", path, e != NULL ? "?message=" : "", e != NULL ? e : "");
    free(e);
    int sent = ctl_request(ctl, "DELETE", url, NULL, NULL, 0, &res);
    free(url);
    if (sent != 0)
        return CTL_EXIT_UNREACHABLE;
    int rc = CTL_EXIT_OK;
    if (res.status == 404) {
        rc = tag_not_found(ctl, name);
    } else if (res.status / 100 != 2) {
        rc = report_failure(ctl, &res, NULL);
    } else {
        json_t *v = json_loadb(res.body, res.len, 0, NULL);
        json_t *version = json_object_get(v, "version");
        if (json_is_integer(version))
            fprintf(ctl->out, "deleted tag %s (it pointed at version %lld)\n", name, (long long)json_integer_value(version));
        else
            fprintf(ctl->out, "deleted tag %s\n", name);
        json_decref(v);
    }
    ctl_response_dispose(&res);
    return rc;
}

int ctl_cmd_tag(ctl_t *ctl, const ctl_args_t *args)
{
    /* `tag delete NAME` deletes; `tag delete N` (a version) still points a tag named "delete" */
    int deleting = args->npositional == 2 && strcmp(args->positional[0], "delete") == 0 && !is_number(args->positional[1]) &&
                   strcmp(args->positional[1], "active") != 0 && strcmp(args->positional[1], "previous") != 0;
    if (args->message != NULL && args->npositional < 2) {
        fprintf(ctl->err, "pathwayctl tag: -m goes with moving or deleting a tag (NAME N, delete NAME)\n");
        return CTL_EXIT_USAGE;
    }
    if (args->npositional == 0)
        return list_tags(ctl, args);
    const char *tagname = deleting ? args->positional[1] : args->positional[0];
    char *name = ctl_escape(ctl, tagname), path[512];
    snprintf(path, sizeof(path), "/v1/tags/%s", name != NULL ? name : "");
    free(name);
    if (deleting) {
        if (args->given & CTL_OPT_JSON) {
            fprintf(ctl->err, "pathwayctl tag: --json goes with showing a tag (NAME alone)\n");
            return CTL_EXIT_USAGE;
        }
        return delete_tag(ctl, tagname, path, args->message);
    }
    int rc = CTL_EXIT_OK;
    json_t *tag = NULL;
    if (args->npositional == 2) {
        if ((args->given & CTL_OPT_JSON)) {
            fprintf(ctl->err, "pathwayctl tag: --json goes with showing a tag (NAME alone)\n");
            return CTL_EXIT_USAGE;
        }
        int64_t n;
        if ((rc = resolve_version(ctl, args->positional[1], &n)) != CTL_EXIT_OK)
            return rc;
        json_t *req = json_pack("{sI}", "version", (json_int_t)n);
        if (args->message != NULL)
            json_object_set_new(req, "message", json_string(args->message));
        char *body = json_dumps(req, JSON_COMPACT);
        json_decref(req);
        static const char *const headers[] = {"Content-Type: application/json", NULL};
        ctl_response_t res;
        if (body == NULL) {
            rc = CTL_EXIT_USAGE;
        } else if (ctl_request(ctl, "PUT", path, headers, body, strlen(body), &res) != 0) {
            rc = CTL_EXIT_UNREACHABLE;
        } else {
            if (res.status / 100 != 2)
                rc = report_failure(ctl, &res, NULL);
            else if ((tag = body_json(ctl, &res)) == NULL)
                rc = CTL_EXIT_UNREACHABLE;
            ctl_response_dispose(&res);
        }
        free(body);
        if (tag != NULL)
            fprintf(ctl->out, "tag %s -> version %lld\n", args->positional[0],
                    (long long)json_integer_value(json_object_get(tag, "version")));
        json_decref(tag);
        return rc;
    }
    if ((tag = get_tag(ctl, args->positional[0], path, &rc)) == NULL)
        return rc;
    if (args->given & CTL_OPT_JSON) {
        print_json(ctl, tag);
    } else {
        fprintf(ctl->out, "tag %s -> version %lld\n\n", str(tag, "name"),
                (long long)json_integer_value(json_object_get(tag, "version")));
        table_t t = {.ncols = 4};
        static const char *const head[] = {"VERSION", "SET AT", "BY", "MESSAGE"};
        table_row(&t, head);
        size_t i;
        json_t *h;
        json_array_foreach(json_object_get(tag, "history"), i, h)
        {
            char num[32], at[40];
            snprintf(num, sizeof(num), "%lld", (long long)json_integer_value(json_object_get(h, "version")));
            short_time(str(h, "updated_at"), at, sizeof(at));
            const char *row[] = {num, at, str(h, "author"), str(h, "message")};
            table_row(&t, row);
        }
        table_print(ctl, &t);
    }
    json_decref(tag);
    return CTL_EXIT_OK;
}

int ctl_cmd_validate(ctl_t *ctl, const ctl_args_t *args)
{
    size_t len;
    const char *ctype;
    char *doc = read_document(ctl, args->positional[0], &len, &ctype);
    if (doc == NULL)
        return CTL_EXIT_USAGE;
    const char *headers[] = {ctype, NULL};
    ctl_response_t res;
    int rc;
    if (ctl_request(ctl, "POST", "/v1/config/validate", headers, doc, len, &res) != 0) {
        free(doc);
        return CTL_EXIT_UNREACHABLE;
    }
    free(doc);
    if ((args->given & CTL_OPT_JSON) && (res.status == 200 || res.status == 400)) {
        json_t *v = body_json(ctl, &res);
        if (v != NULL)
            print_json(ctl, v);
        json_decref(v);
        rc = v == NULL ? CTL_EXIT_UNREACHABLE : ctl_status_exit(res.status);
    } else if (res.status != 200) {
        rc = report_failure(ctl, &res, args->positional[0]);
    } else {
        json_t *v = body_json(ctl, &res);
        rc = v != NULL ? CTL_EXIT_OK : CTL_EXIT_UNREACHABLE;
        if (v != NULL)
            fprintf(ctl->out, "%s: valid (hash %.12s)%s\n", args->positional[0], str(v, "hash"),
                    json_is_true(json_object_get(v, "identical_to_active")) ? "; identical to the active version" : "");
        json_decref(v);
    }
    ctl_response_dispose(&res);
    return rc;
}

/* `dataplanes forget ID`: DELETE /v1/dataplanes/ID. */
static int forget_dataplane(ctl_t *ctl, const char *id)
{
    char *e = ctl_escape(ctl, id), path[512];
    snprintf(path, sizeof(path), "/v1/dataplanes/%s", e != NULL ? e : "");
    free(e);
    ctl_response_t res;
    if (ctl_request(ctl, "DELETE", path, NULL, NULL, 0, &res) != 0)
        return CTL_EXIT_UNREACHABLE;
    int rc = CTL_EXIT_OK;
    if (res.status == 404) {
        json_t *body = get_dataplanes(ctl, &rc);
        size_t n = 0;
        const char **ids = body != NULL ? names_of(json_object_get(body, "dataplanes"), "id", &n) : NULL;
        rc = print_unknown(ctl, "dataplane", id, ids, n);
        free(ids);
        json_decref(body);
    } else if (res.status / 100 != 2) {
        rc = report_failure(ctl, &res, NULL);
    } else {
        fprintf(ctl->out, "forgot dataplane %s (it is listed again when it next calls)\n", id);
    }
    ctl_response_dispose(&res);
    return rc;
}

int ctl_cmd_dataplanes(ctl_t *ctl, const ctl_args_t *args)
{
    if (args->npositional > 0) {
        if (args->npositional != 2 || strcmp(args->positional[0], "forget") != 0) {
            fprintf(ctl->err, "pathwayctl dataplanes: expects no arguments, or forget ID\n");
            return CTL_EXIT_USAGE;
        }
        if (args->given & CTL_OPT_JSON) {
            fprintf(ctl->err, "pathwayctl dataplanes: --json goes with the list\n");
            return CTL_EXIT_USAGE;
        }
        return forget_dataplane(ctl, args->positional[1]);
    }
    int rc = CTL_EXIT_OK;
    json_t *body = get_dataplanes(ctl, &rc);
    if (body == NULL)
        return rc;
    if (args->given & CTL_OPT_JSON)
        print_json(ctl, body);
    else if (json_array_size(json_object_get(body, "dataplanes")) == 0)
        fprintf(ctl->out, "no dataplane has called the control plane yet\n");
    else
        dataplanes_table(ctl, json_object_get(body, "dataplanes"));
    json_decref(body);
    return CTL_EXIT_OK;
}

int ctl_cmd_events(ctl_t *ctl, const ctl_args_t *args)
{
    int rc;
    json_t *body = get_list(ctl, args, "/v1/events", &rc);
    if (body == NULL)
        return rc;
    table_t t = {.ncols = 6};
    static const char *const head[] = {"ID", "TIME", "ACTOR", "ACTION", "VERSION", "MESSAGE"};
    table_row(&t, head);
    size_t i;
    json_t *e;
    json_array_foreach(json_object_get(body, "events"), i, e)
    {
        char id[32], at[40], version[32];
        snprintf(id, sizeof(id), "%lld", (long long)json_integer_value(json_object_get(e, "id")));
        short_time(str(e, "time"), at, sizeof(at));
        int_or_dash(json_object_get(e, "version"), version, sizeof(version));
        const char *row[] = {id, at, str(e, "actor"), str(e, "action"), version, str(e, "message")};
        table_row(&t, row);
    }
    if (t.rows == 1)
        fprintf(ctl->out, "no events yet\n");
    else
        table_print(ctl, &t);
    for (size_t k = 0; k < t.rows * t.ncols; k++)
        free(t.cells[k]);
    free(t.cells);
    json_decref(body);
    return CTL_EXIT_OK;
}
