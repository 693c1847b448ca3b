/*
 * The version commands: versions, show, diff, apply, set, rollback, tag and validate, one REST call
 * or a few each, and their output. Read commands print the API's JSON as it came with --json, so
 * scripts see exactly what docs/api.md documents; everything else is for people. The rollout flags
 * and `pathwayctl rollout` are ctl_rollout.c's; status, dataplanes and events are ctl_fleet.c's.
 */
#include "ctl_cmds.h"
#include "cfg.h"
#include <ctype.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

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

/* After a 404 for tag `name`: the message with a did-you-mean from GET /v1/tags. */
static int tag_not_found(ctl_t *ctl, const char *name)
{
    int rc;
    json_t *body = ctl_get_json(ctl, "/v1/tags", &rc);
    size_t n = 0;
    const char **names = body != NULL ? ctl_names_of(json_object_get(body, "tags"), "name", &n) : NULL;
    ctl_print_unknown(ctl, "tag", name, names, n);
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
        *rc = ctl_report_failure(ctl, &res, NULL);
    else if ((v = ctl_body_json(ctl, &res)) == NULL)
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
        if ((v = ctl_get_json(ctl, "/v1/versions?limit=1", &rc)) == NULL)
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
    return ctl_get_json(ctl, path, rc);
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
        rc = ctl_report_failure(ctl, &res, NULL);
    } else if ((*doc = ctl_body_json(ctl, &res)) == NULL) {
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
    cfg_changes_t ch;
    if (cfg_changes(before, after, &ch) != 0) {
        fprintf(ctl->err, "pathwayctl: out of memory\n");
        return;
    }
    if (ch.size == 0 && none != NULL)
        fprintf(ctl->out, "%s\n", none);
    ctl_changes_print(ctl->out, &ch, ctl->color);
    cfg_changes_dispose(&ch);
}

/* After a call that stores a version (PUT/PATCH /v1/config, POST /v1/rollback): prints the result
 * and what changed from `before`, and sets *stored to the version now active (the new one, or the
 * active one when nothing changed). `sent` as for ctl_report_failure_doc. Returns an exit code. */
static int report_stored(ctl_t *ctl, ctl_response_t *res, const json_t *before, int64_t before_version, const char *prefix,
                         const json_t *sent, int64_t *stored)
{
    if (res->status / 100 != 2)
        return ctl_report_failure_doc(ctl, res, prefix, sent);
    json_t *v = ctl_body_json(ctl, res);
    if (v == NULL)
        return CTL_EXIT_UNREACHABLE;
    int64_t n = json_integer_value(json_object_get(v, "version"));
    *stored = n;
    if (!json_is_true(json_object_get(v, "created"))) {
        fprintf(ctl->out, "no change: active version %lld already has this document\n", (long long)n);
        json_decref(v);
        return CTL_EXIT_OK;
    }
    fprintf(ctl->out, "%screated%s ", CTL_BOLD(ctl), CTL_RESET(ctl));
    ctl_version_line(ctl, v);
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

int ctl_cmd_versions(ctl_t *ctl, const ctl_args_t *args)
{
    int rc;
    json_t *body = ctl_get_list(ctl, args, "/v1/versions", &rc);
    if (body == NULL)
        return rc;
    json_int_t active = json_integer_value(json_object_get(body, "active_version"));
    json_t *list = json_object_get(body, "versions");
    if (json_array_size(list) == 0) {
        fprintf(ctl->out, "no version stored yet\n");
        json_decref(body);
        return CTL_EXIT_OK;
    }
    ctl_table_t t = {.ncols = 7};
    static const char *const head[] = {"VERSION", "CREATED", "AUTHOR", "KIND", "FROM", "HASH", "MESSAGE"};
    ctl_table_row(&t, head);
    size_t i;
    json_t *v;
    json_array_foreach(list, i, v)
    {
        char num[32], created[40], from[32], hash[16];
        json_int_t n = json_integer_value(json_object_get(v, "version"));
        snprintf(num, sizeof(num), "%s%lld", n == active ? "*" : " ", (long long)n);
        ctl_short_time(ctl_str(v, "created_at"), created, sizeof(created));
        ctl_int_or_dash(json_object_get(v, "source_version"), from, sizeof(from));
        snprintf(hash, sizeof(hash), "%.12s", ctl_str(v, "hash"));
        const char *row[] = {num, created, ctl_str(v, "author"), ctl_str(v, "kind"), from, hash, ctl_str(v, "message")};
        ctl_table_row(&t, row);
    }
    ctl_table_print(ctl, &t);
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
        ctl_print_json(ctl, v);
    } else {
        char *yaml = cfg_json_to_yaml(json_object_get(v, "document"));
        if (args->given & CTL_OPT_YAML) {
            fprintf(ctl->out, CTL_DOC_HEADER "%lld (hash %s)\n%s", (long long)n, ctl_str(v, "hash"), yaml != NULL ? yaml : "");
        } else {
            fputs(CTL_BOLD(ctl), ctl->out);
            ctl_version_line(ctl, v);
            fputs(CTL_RESET(ctl), ctl->out);
            fprintf(ctl->out, "hash %s\n\n%s", ctl_str(v, "hash"), yaml != NULL ? yaml : "");
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
        json_t *v = ctl_body_json(ctl, &res);
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
        *rc = ctl_report_failure(ctl, &res, file);
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
        ctl_version_line(ctl, side->version);
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
        json_t *d = ctl_get_json(ctl, path, &rc);
        if (d == NULL)
            return rc;
        ctl_print_json(ctl, d);
        json_decref(d);
        return CTL_EXIT_OK;
    }
    side_t a, b;
    memset(&b, 0, sizeof(b));
    rc = load_side(ctl, from, &a);
    if (rc == CTL_EXIT_OK && (rc = load_side(ctl, to, &b)) == CTL_EXIT_OK) {
        fprintf(ctl->out, "%s--- ", CTL_BOLD(ctl));
        side_line(ctl, &a);
        fprintf(ctl->out, "+++ ");
        side_line(ctl, &b);
        fputs(CTL_RESET(ctl), ctl->out);
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
        rc = ctl_wait_for(ctl, stored, args->wait_ms);
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
        ctl_print_json(ctl, patch);
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
        rc = ctl_wait_for(ctl, stored, args->wait_ms);
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
        rc = ctl_wait_for(ctl, stored, args->wait_ms);
    return rc;
}

/* `tag` alone: GET /v1/tags as a table. */
static int list_tags(ctl_t *ctl, const ctl_args_t *args)
{
    int rc = CTL_EXIT_OK;
    json_t *body = ctl_get_json(ctl, "/v1/tags", &rc);
    if (body == NULL)
        return rc;
    json_t *tags = json_object_get(body, "tags");
    if (args->given & CTL_OPT_JSON) {
        ctl_print_json(ctl, body);
    } else if (json_array_size(tags) == 0) {
        fprintf(ctl->out, "no tags yet (pathwayctl tag NAME N makes one)\n");
    } else {
        ctl_table_t t = {.ncols = 5};
        static const char *const head[] = {"TAG", "VERSION", "SET AT", "BY", "MESSAGE"};
        ctl_table_row(&t, head);
        size_t i;
        json_t *tag;
        json_array_foreach(tags, i, tag)
        {
            char num[32], at[40];
            snprintf(num, sizeof(num), "%lld", (long long)json_integer_value(json_object_get(tag, "version")));
            ctl_short_time(ctl_str(tag, "updated_at"), at, sizeof(at));
            const char *row[] = {ctl_str(tag, "name"), num, at, ctl_str(tag, "author"), ctl_str(tag, "message")};
            ctl_table_row(&t, row);
        }
        ctl_table_print(ctl, &t);
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
        rc = ctl_report_failure(ctl, &res, NULL);
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
                rc = ctl_report_failure(ctl, &res, NULL);
            else if ((tag = ctl_body_json(ctl, &res)) == NULL)
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
        ctl_print_json(ctl, tag);
    } else {
        fprintf(ctl->out, "tag %s -> version %lld\n\n", ctl_str(tag, "name"),
                (long long)json_integer_value(json_object_get(tag, "version")));
        ctl_table_t t = {.ncols = 4};
        static const char *const head[] = {"VERSION", "SET AT", "BY", "MESSAGE"};
        ctl_table_row(&t, head);
        size_t i;
        json_t *h;
        json_array_foreach(json_object_get(tag, "history"), i, h)
        {
            char num[32], at[40];
            snprintf(num, sizeof(num), "%lld", (long long)json_integer_value(json_object_get(h, "version")));
            ctl_short_time(ctl_str(h, "updated_at"), at, sizeof(at));
            const char *row[] = {num, at, ctl_str(h, "author"), ctl_str(h, "message")};
            ctl_table_row(&t, row);
        }
        ctl_table_print(ctl, &t);
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
        json_t *v = ctl_body_json(ctl, &res);
        if (v != NULL)
            ctl_print_json(ctl, v);
        json_decref(v);
        rc = v == NULL ? CTL_EXIT_UNREACHABLE : ctl_status_exit(res.status);
    } else if (res.status != 200) {
        rc = ctl_report_failure(ctl, &res, args->positional[0]);
    } else {
        json_t *v = ctl_body_json(ctl, &res);
        rc = v != NULL ? CTL_EXIT_OK : CTL_EXIT_UNREACHABLE;
        if (v != NULL)
            fprintf(ctl->out, "%s: valid (hash %.12s)%s\n", args->positional[0], ctl_str(v, "hash"),
                    json_is_true(json_object_get(v, "identical_to_active")) ? "; identical to the active version" : "");
        json_decref(v);
    }
    ctl_response_dispose(&res);
    return rc;
}

static void print_value(FILE *fp, const json_t *v)
{
    char *s = json_dumps(v, JSON_ENCODE_ANY | JSON_COMPACT | JSON_SORT_KEYS);
    fputs(s != NULL ? s : "?", fp);
    free(s);
}

void ctl_changes_print(FILE *fp, const cfg_changes_t *changes, int color)
{
    for (size_t i = 0; i < changes->size; i++) {
        const cfg_change_t *c = &changes->entries[i];
        const char *on = !color                         ? ""
                         : c->kind == CFG_CHANGE_ADD    ? "\033[32m"
                         : c->kind == CFG_CHANGE_REMOVE ? "\033[31m"
                                                        : "\033[33m";
        fprintf(fp, "%s%c %s: ", on, (char)c->kind, c->path);
        if (c->kind == CFG_CHANGE_REPLACE) {
            print_value(fp, c->before);
            fputs(" -> ", fp);
            print_value(fp, c->after);
        } else {
            print_value(fp, c->kind == CFG_CHANGE_ADD ? c->after : c->before);
        }
        if (c->note != NULL)
            fprintf(fp, " (%s)", c->note);
        fprintf(fp, "%s\n", color ? "\033[0m" : "");
    }
}
