/*
 * The one decoder: walks the table over a jansson tree, fills the structs, and reports every
 * error of the document with its path.
 */
#include "cfg_internal.h"
#include <errno.h>
#include <inttypes.h>
#include <libgen.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_STRING 4096 /* longest string value accepted (paths, URLs) */

void cfg_path_join(char *buf, size_t len, const char *parent, const char *key)
{
    snprintf(buf, len, "%s%s%s", parent, *parent != '\0' ? "." : "", key);
}

static const char *json_kind(const json_t *v)
{
    switch (json_typeof(v)) {
    case JSON_OBJECT:
        return "a mapping";
    case JSON_ARRAY:
        return "a list";
    case JSON_STRING:
        return "a string";
    case JSON_INTEGER:
        return "an integer";
    case JSON_REAL:
        return "a number";
    case JSON_TRUE:
    case JSON_FALSE:
        return "a boolean";
    default:
        return "null";
    }
}

static void range_error(const cfg_field_t *f, const char *path, cfg_errors_t *errs)
{
    char a[32], b[32];
    if (f->type == CFG_T_DURATION) {
        cfg_format_duration(f->min, a, sizeof(a));
        cfg_format_duration(f->max, b, sizeof(b));
    } else if (f->type == CFG_T_SIZE) {
        cfg_format_size(f->min, a, sizeof(a));
        cfg_format_size(f->max, b, sizeof(b));
    } else if (f->type == CFG_T_MILLI) {
        cfg_format_milli(f->min, a, sizeof(a));
        cfg_format_milli(f->max, b, sizeof(b));
    } else {
        snprintf(a, sizeof(a), "%" PRIu64, f->min);
        snprintf(b, sizeof(b), "%" PRIu64, f->max);
    }
    cfg_errors_add(errs, "%s: must be between %s and %s", path, a, b);
}

/* A non-empty string of at most MAX_STRING bytes with no NUL, passing `check`: a heap copy, or NULL
 * with the error added. */
static char *decode_string(json_t *v, const char *path, const char *(*check)(const char *), cfg_errors_t *errs)
{
    if (!json_is_string(v)) {
        cfg_errors_add(errs, "%s: must be a string, not %s", path, json_kind(v));
        return NULL;
    }
    const char *s = json_string_value(v);
    size_t len = json_string_length(v);
    if (strlen(s) != len) {
        cfg_errors_add(errs, "%s: must not contain NUL characters", path);
        return NULL;
    }
    if (len == 0) {
        cfg_errors_add(errs, "%s: must not be empty", path);
        return NULL;
    }
    if (len > MAX_STRING) {
        cfg_errors_add(errs, "%s: longer than %d characters", path, MAX_STRING);
        return NULL;
    }
    const char *rule = check != NULL ? check(s) : NULL;
    if (rule != NULL) {
        cfg_errors_add(errs, "%s: %s (got \"%.128s\")", path, rule, s);
        return NULL;
    }
    char *copy = strdup(s);
    if (copy == NULL)
        cfg_errors_add(errs, "%s: out of memory", path);
    return copy;
}

static int entries_in_bounds(const cfg_field_t *f, size_t n, const char *path, cfg_errors_t *errs)
{
    if (n >= f->min && n <= f->max)
        return 1;
    if (f->min == 1 && n == 0)
        cfg_errors_add(errs, "%s: must have at least one entry", path);
    else
        cfg_errors_add(errs, "%s: must have between %" PRIu64 " and %" PRIu64 " entries", path, f->min, f->max);
    return 0;
}

/* Empties a LIST or STRUCTMAP member and gives it room for n zeroed entries (size still 0). Returns
 * 1 when there is room (or nothing to hold), 0 with an error when out of memory. */
static int vec_renew(const cfg_field_t *f, cfg_vec_t *vec, size_t n, const char *path, cfg_errors_t *errs)
{
    for (size_t i = 0; i < vec->size; i++)
        cfg_struct_dispose(f->sub, (char *)vec->entries + i * f->sub->size);
    free(vec->entries);
    vec->entries = NULL;
    vec->size = 0;
    if (n == 0)
        return 1;
    if ((vec->entries = calloc(n, f->sub->size)) == NULL) {
        cfg_errors_add(errs, "%s: out of memory", path);
        return 0;
    }
    return 1;
}

/* STRLIST (a list of strings) and STRMAP (a mapping of string to string, kept in document order). */
static void decode_strvec(const cfg_field_t *f, void *obj, json_t *v, const char *path, cfg_errors_t *errs)
{
    int is_map = f->type == CFG_T_STRMAP;
    if (is_map ? !json_is_object(v) : !json_is_array(v)) {
        cfg_errors_add(errs, "%s: must be %s, not %s", path, is_map ? "a mapping of names to strings" : "a list of strings",
                       json_kind(v));
        return;
    }
    size_t n = is_map ? json_object_size(v) : json_array_size(v);
    if (!entries_in_bounds(f, n, path, errs))
        return;
    cfg_strvec_dispose(f, obj);
    if (n == 0)
        return;
    size_t elem = is_map ? sizeof(cfg_header_t) : sizeof(char *);
    cfg_vec_t *vec = CFG_MEMBER(obj, f, cfg_vec_t);
    if ((vec->entries = calloc(n, elem)) == NULL) {
        cfg_errors_add(errs, "%s: out of memory", path);
        return;
    }
    char sub[600];
    if (!is_map) {
        for (size_t i = 0; i < n; i++) {
            snprintf(sub, sizeof(sub), "%s[%zu]", path, i);
            ((char **)vec->entries)[vec->size++] = decode_string(json_array_get(v, i), sub, f->check, errs);
        }
        return;
    }
    /* jansson keeps insertion order when iterating, which is the document's order */
    const char *key;
    json_t *child;
    json_object_foreach(v, key, child)
    {
        cfg_header_t *h = &((cfg_header_t *)vec->entries)[vec->size++];
        cfg_path_join(sub, sizeof(sub), path, key);
        const char *rule = f->check != NULL ? f->check(key) : NULL;
        if (rule != NULL) {
            cfg_errors_add(errs, "%.200s: %s", sub, rule);
            continue;
        }
        if ((h->name = strdup(key)) == NULL) {
            cfg_errors_add(errs, "%s: out of memory", path);
            continue;
        }
        /* values of a map may be secrets (headers): never echoed in an error */
        if (json_is_string(child) && f->check_value != NULL && (rule = f->check_value(json_string_value(child))) != NULL) {
            cfg_errors_add(errs, "%.200s: %s", sub, rule);
            continue;
        }
        h->value = decode_string(child, sub, NULL, errs);
    }
}

/* STRUCTMAP: a mapping of name to section, kept in document order; each key goes into the entry's
 * CFG_F_KEY row. */
static void decode_structmap(const cfg_field_t *f, void *obj, json_t *v, const char *path, cfg_scope_t scope, cfg_errors_t *errs)
{
    const cfg_field_t *key_row = cfg_struct_key(f->sub);
    if (!json_is_object(v)) {
        cfg_errors_add(errs, "%s: must be a mapping of names to sections, not %s", path, json_kind(v));
        return;
    }
    size_t n = json_object_size(v);
    if (!entries_in_bounds(f, n, path, errs))
        return;
    cfg_vec_t *vec = CFG_MEMBER(obj, f, cfg_vec_t);
    if (!vec_renew(f, vec, n, path, errs) || n == 0)
        return;
    char sub[600];
    const char *key;
    json_t *child;
    /* jansson keeps insertion order when iterating, which is the document's order */
    json_object_foreach(v, key, child)
    {
        cfg_path_join(sub, sizeof(sub), path, key);
        const char *rule = *key == '\0' ? "must not be empty" : f->check != NULL ? f->check(key) : NULL;
        if (rule != NULL) {
            cfg_errors_add(errs, "%.200s: %s", sub, rule);
            continue;
        }
        void *entry = (char *)vec->entries + vec->size++ * f->sub->size;
        cfg_decode_struct(f->sub, entry, child, sub, scope, 0, errs);
        if ((*CFG_MEMBER(entry, key_row, char *) = strdup(key)) == NULL)
            cfg_errors_add(errs, "%s: out of memory", path);
    }
}

/* index of `s` in an ENUM / ENUMSET row's names, or -1 */
static int enum_index(const cfg_field_t *f, const char *s)
{
    for (int i = 0; f->names[i] != NULL; i++)
        if (strcmp(s, f->names[i]) == 0)
            return i;
    return -1;
}

static void enum_error(const cfg_field_t *f, json_t *v, const char *path, cfg_errors_t *errs)
{
    if (!json_is_string(v)) {
        cfg_errors_add(errs, "%s: must be a string, not %s", path, json_kind(v));
        return;
    }
    char list[512] = "";
    for (int i = 0; f->names[i] != NULL; i++)
        snprintf(list + strlen(list), sizeof(list) - strlen(list), "%s%s", i ? ", " : "", f->names[i]);
    cfg_errors_add(errs, "%s: must be one of %s (got \"%.64s\")", path, list, json_string_value(v));
}

void cfg_decode_field(const cfg_field_t *f, void *obj, json_t *v, const char *path, cfg_scope_t scope, cfg_errors_t *errs)
{
    switch (f->type) {
    case CFG_T_BOOL:
        if (!json_is_boolean(v)) {
            cfg_errors_add(errs, "%s: must be true or false, not %s", path, json_kind(v));
            return;
        }
        *CFG_MEMBER(obj, f, int) = json_is_true(v);
        return;
    case CFG_T_UINT32: {
        if (!json_is_integer(v)) {
            cfg_errors_add(errs, "%s: must be an integer, not %s", path, json_kind(v));
            return;
        }
        json_int_t n = json_integer_value(v);
        if (n < 0 || (uint64_t)n < f->min || (uint64_t)n > f->max) {
            range_error(f, path, errs);
            return;
        }
        *CFG_MEMBER(obj, f, uint32_t) = (uint32_t)n;
        return;
    }
    case CFG_T_DURATION:
    case CFG_T_SIZE: {
        uint64_t n;
        const char *err = NULL;
        if (f->type == CFG_T_SIZE && json_is_integer(v)) {
            if (json_integer_value(v) < 0) {
                range_error(f, path, errs);
                return;
            }
            n = (uint64_t)json_integer_value(v);
        } else if (!json_is_string(v)) {
            cfg_errors_add(errs, "%s: %s, not %s", path,
                           f->type == CFG_T_DURATION ? "must be a duration such as 250ms, 5s, 2m or 1h"
                                                     : "must be a size such as 512B, 64KiB, 1MiB or 1GiB",
                           json_kind(v));
            return;
        } else if ((f->type == CFG_T_DURATION ? cfg_parse_duration(json_string_value(v), &n, &err)
                                              : cfg_parse_size(json_string_value(v), &n, &err)) != 0) {
            cfg_errors_add(errs, "%s: %s (got \"%.64s\")", path, err, json_string_value(v));
            return;
        }
        if (n < f->min || n > f->max) {
            range_error(f, path, errs);
            return;
        }
        *CFG_MEMBER(obj, f, uint64_t) = n;
        return;
    }
    case CFG_T_ENUM: {
        int k = json_is_string(v) ? enum_index(f, json_string_value(v)) : -1;
        if (k < 0) {
            enum_error(f, v, path, errs);
            return;
        }
        *CFG_MEMBER(obj, f, int) = k;
        return;
    }
    case CFG_T_INT32: {
        if (!json_is_integer(v)) {
            cfg_errors_add(errs, "%s: must be an integer, not %s", path, json_kind(v));
            return;
        }
        json_int_t n = json_integer_value(v);
        if (n < INT32_MIN || n > INT32_MAX) {
            cfg_errors_add(errs, "%s: must be between %d and %d", path, INT32_MIN, INT32_MAX);
            return;
        }
        *CFG_MEMBER(obj, f, int32_t) = (int32_t)n;
        return;
    }
    case CFG_T_ENUMSET: {
        if (!json_is_array(v)) {
            cfg_errors_add(errs, "%s: must be a list of names, not %s", path, json_kind(v));
            return;
        }
        uint32_t bits = 0;
        int ok = 1;
        size_t i;
        json_t *item;
        json_array_foreach(v, i, item)
        {
            char sub[600];
            snprintf(sub, sizeof(sub), "%s[%zu]", path, i);
            int k = json_is_string(item) ? enum_index(f, json_string_value(item)) : -1;
            if (k < 0) {
                enum_error(f, item, sub, errs);
                ok = 0;
            } else if (bits & (1u << k)) {
                cfg_errors_add(errs, "%s: '%s' is listed twice", sub, f->names[k]);
                ok = 0;
            } else {
                bits |= 1u << k;
            }
        }
        if (ok)
            *CFG_MEMBER(obj, f, uint32_t) = bits;
        return;
    }
    case CFG_T_STRING: {
        char *s = decode_string(v, path, f->check, errs);
        if (s != NULL) {
            char **dst = CFG_MEMBER(obj, f, char *);
            free(*dst);
            *dst = s;
        }
        return;
    }
    case CFG_T_STRLIST:
    case CFG_T_STRMAP:
        decode_strvec(f, obj, v, path, errs);
        return;
    case CFG_T_MILLI: {
        if (!json_is_number(v)) {
            cfg_errors_add(errs, "%s: must be a number such as 1.5, not %s", path, json_kind(v));
            return;
        }
        /* rounded to the nearest thousandth: 1.5, 1.50 and 1.5004 are all 1500 */
        double x = json_number_value(v) * 1000.0;
        if (!(x >= 0 && x + 0.5 < (double)f->max + 1)) {
            range_error(f, path, errs);
            return;
        }
        uint32_t milli = (uint32_t)(x + 0.5);
        if (milli < f->min) {
            range_error(f, path, errs);
            return;
        }
        *CFG_MEMBER(obj, f, uint32_t) = milli;
        return;
    }
    case CFG_T_STRUCTMAP:
        decode_structmap(f, obj, v, path, scope, errs);
        return;
    case CFG_T_STRUCT:
        cfg_decode_struct(f->sub, CFG_MEMBER(obj, f, void), v, path, scope, 0, errs);
        if (f->flags & CFG_F_OPTIONAL)
            *(int *)((char *)obj + f->has_offset) = 1;
        return;
    case CFG_T_LIST: {
        if (!json_is_array(v)) {
            cfg_errors_add(errs, "%s: must be a list, not %s", path, json_kind(v));
            return;
        }
        size_t n = json_array_size(v);
        if (!entries_in_bounds(f, n, path, errs))
            return;
        cfg_vec_t *vec = CFG_MEMBER(obj, f, cfg_vec_t);
        if (!vec_renew(f, vec, n, path, errs) || n == 0)
            return;
        vec->size = n;
        for (size_t i = 0; i < n; i++) {
            char sub[512];
            snprintf(sub, sizeof(sub), "%s[%zu]", path, i);
            cfg_decode_struct(f->sub, (char *)vec->entries + i * f->sub->size, json_array_get(v, i), sub, scope, 0, errs);
        }
        return;
    }
    }
}

/* Edit distance, capped: enough to tell a typo from another word. */
static size_t edit_distance(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    if (la > 63 || lb > 63)
        return SIZE_MAX;
    size_t row[64];
    for (size_t j = 0; j <= lb; j++)
        row[j] = j;
    for (size_t i = 1; i <= la; i++) {
        size_t diag = row[0];
        row[0] = i;
        for (size_t j = 1; j <= lb; j++) {
            size_t up = row[j];
            size_t best = diag + (a[i - 1] != b[j - 1]);
            if (row[j - 1] + 1 < best)
                best = row[j - 1] + 1;
            if (up + 1 < best)
                best = up + 1;
            row[j] = best;
            diag = up;
        }
    }
    return row[lb];
}

/* The key of `st` closest to a misspelt one, or NULL when none is close. */
static const char *closest_key(const cfg_struct_t *st, const char *key)
{
    const char *best = NULL;
    size_t best_d = 3; /* at most two edits away */
    for (size_t i = 0; i < st->num_fields; i++) {
        if (st->fields[i].flags & CFG_F_KEY)
            continue;
        size_t d = edit_distance(key, st->fields[i].name);
        if (d < best_d) {
            best_d = d;
            best = st->fields[i].name;
        }
    }
    return best;
}

void cfg_decode_struct(const cfg_struct_t *st, void *obj, json_t *value, const char *path, cfg_scope_t scope, int is_root,
                       cfg_errors_t *errs)
{
    char sub[512];
    json_t *expanded = NULL;
    if (!json_is_object(value) && st->shorthand != NULL && (expanded = st->shorthand(value)) != NULL)
        value = expanded;
    if (!json_is_object(value)) {
        if (st->shorthand_doc != NULL && json_is_string(value))
            cfg_errors_add(errs, "%s: must be %s (got \"%.64s\")", path, st->shorthand_doc, json_string_value(value));
        else if (st->shorthand_doc != NULL)
            cfg_errors_add(errs, "%s: must be %s, not %s", path, st->shorthand_doc, json_kind(value));
        else
            cfg_errors_add(errs, "%s: must be a mapping of keys, not %s", *path ? path : "document", json_kind(value));
        json_decref(expanded);
        return;
    }
    uint64_t *set = (uint64_t *)obj;
    *set = 0;
    const char *key;
    json_t *child;
    json_object_foreach(value, key, child)
    {
        cfg_path_join(sub, sizeof(sub), path, key);
        const cfg_field_t *f = cfg_struct_find(st, key, strlen(key));
        if (f != NULL && (f->flags & CFG_F_KEY))
            f = NULL; /* the entry's name is its key in the map, not a key inside it */
        if (f == NULL) {
            const char *hint = closest_key(st, key);
            if (hint != NULL)
                cfg_errors_add(errs, "%.*s: unknown key (did you mean '%s'?)", 200, sub, hint);
            else
                cfg_errors_add(errs, "%.*s: unknown key", 200, sub);
            continue;
        }
        if (is_root && scope == CFG_SCOPE_FLEET && (f->flags & CFG_F_LOCAL)) {
            cfg_errors_add(errs, "%s: node-local setting; a fleet document may not carry it (set it in the dataplane's own file)",
                           sub);
            continue;
        }
        cfg_decode_field(f, obj, child, sub, scope, errs);
        *set |= 1ull << (f - st->fields);
    }
    /* what was not given: defaults, or an error when required */
    for (size_t i = 0; i < st->num_fields; i++) {
        const cfg_field_t *f = &st->fields[i];
        if ((*set >> i) & 1)
            continue;
        if (f->flags & CFG_F_REQUIRED) {
            cfg_path_join(sub, sizeof(sub), path, f->name);
            cfg_errors_add(errs, "%s: required", sub);
        } else if (f->def != NULL) {
            json_t *v = json_loads(f->def, JSON_DECODE_ANY, NULL);
            cfg_decode_field(f, obj, v, f->name, scope, errs);
            json_decref(v);
        } else if (f->type == CFG_T_STRUCT && !(f->flags & CFG_F_INHERIT)) {
            /* absent sections take their defaults (optional ones too, for e.g. tls.verify) */
            cfg_struct_fill_defaults(f->sub, CFG_MEMBER(obj, f, void));
        }
    }
    if (st->derive != NULL)
        st->derive(obj);
    if (st->finish != NULL)
        st->finish(obj, path, scope, errs);
    json_decref(expanded);
}

cfg_t *cfg_decode(json_t *tree, cfg_scope_t scope, cfg_errors_t *errs)
{
    cfg_t *cfg = calloc(1, sizeof(*cfg));
    if (cfg == NULL) {
        cfg_errors_add(errs, "out of memory");
        return NULL;
    }
    size_t before = errs->size;
    cfg_decode_struct(&cfg_root_struct, cfg, tree, "", scope, 1, errs);
    if (errs->size != before) {
        cfg_destroy(cfg);
        return NULL;
    }
    return cfg;
}

cfg_t *cfg_parse(const char *text, size_t len, cfg_format_t format, cfg_scope_t scope, cfg_errors_t *errs)
{
    json_t *tree = cfg_tree_parse(text, len, format, errs);
    if (tree == NULL)
        return NULL;
    cfg_t *cfg = cfg_decode(tree, scope, errs);
    json_decref(tree);
    return cfg;
}

char *cfg_read_file(const char *path, size_t max, size_t *len)
{
    errno = 0;
    FILE *fp = fopen(path, "rb");
    if (fp == NULL)
        return NULL;
    size_t cap = 4096, n = 0;
    char *buf = malloc(cap);
    while (buf != NULL) {
        size_t r = fread(buf + n, 1, cap - n - 1, fp);
        n += r;
        if (n > max) {
            free(buf);
            buf = NULL;
            errno = EFBIG;
            break;
        }
        if (r == 0)
            break;
        if (n + 1 == cap) {
            char *nb = realloc(buf, cap * 2);
            if (nb == NULL) {
                free(buf);
                buf = NULL;
                errno = ENOMEM;
                break;
            }
            buf = nb;
            cap *= 2;
        }
    }
    if (buf != NULL && ferror(fp)) {
        int why = errno != 0 ? errno : EIO; /* fread's own reason (EISDIR for a directory) */
        free(buf);
        buf = NULL;
        errno = why;
    }
    int saved = errno;
    fclose(fp);
    errno = saved;
    if (buf != NULL) {
        buf[n] = '\0';
        if (len != NULL)
            *len = n;
    }
    return buf;
}

cfg_t *cfg_load_file(const char *path, cfg_scope_t scope, cfg_errors_t *errs)
{
    size_t len;
    char *buf = cfg_read_file(path, CFG_MAX_DOCUMENT_SIZE, &len);
    cfg_t *cfg = NULL;
    if (buf == NULL && errno == EFBIG)
        cfg_errors_add(errs, "%s: larger than %u bytes", path, CFG_MAX_DOCUMENT_SIZE);
    else if (buf == NULL)
        cfg_errors_add(errs, "%s: cannot open: %s", path, strerror(errno));
    else
        cfg = cfg_parse(buf, len, CFG_FORMAT_AUTO, scope, errs);
    free(buf);
    if (cfg != NULL && scope == CFG_SCOPE_FULL) {
        /* relative paths in a dataplane's own file mean "next to this file", whatever the working
         * directory; a fleet document's paths are for the dataplane's machine, so stay as written */
        char *dirbuf = strdup(path), *real = NULL;
        if (dirbuf != NULL)
            real = realpath(dirname(dirbuf), NULL);
        if (real != NULL)
            cfg_struct_resolve_paths(&cfg_root_struct, cfg, real);
        free(real);
        free(dirbuf);
    }
    return cfg;
}

cfg_t *cfg_create_default(void)
{
    cfg_t *cfg = calloc(1, sizeof(*cfg));
    if (cfg != NULL)
        cfg_struct_fill_defaults(&cfg_root_struct, cfg);
    return cfg;
}

void cfg_destroy(cfg_t *cfg)
{
    if (cfg == NULL)
        return;
    cfg_struct_dispose(&cfg_root_struct, cfg);
    free(cfg);
}

cfg_t *cfg_dup(const cfg_t *cfg)
{
    cfg_t *d = malloc(sizeof(*d));
    if (d == NULL)
        return NULL;
    if (cfg_struct_dup(&cfg_root_struct, d, cfg) != 0) {
        cfg_destroy(d);
        return NULL;
    }
    return d;
}
