/*
 * Emission by the same table: the document as JSON (canonical form, hash), as YAML, and the
 * whole-document operations built on it (node-local merge, restart-only changes).
 */
#include "cfg_internal.h"
#include <ctype.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static json_t *emit_struct(const cfg_struct_t *st, const void *obj, cfg_scope_t scope, int is_root, int only_set);

/* only_set: a STRUCT emits just the keys the document gave (a service's overrides, nested too) */
static json_t *emit_field(const cfg_field_t *f, const void *obj, cfg_scope_t scope, int only_set)
{
    char buf[32];
    switch (f->type) {
    case CFG_T_BOOL:
        return json_boolean(*CFG_CMEMBER(obj, f, int));
    case CFG_T_UINT32:
        return json_integer(*CFG_CMEMBER(obj, f, uint32_t));
    case CFG_T_DURATION:
        cfg_format_duration(*CFG_CMEMBER(obj, f, uint64_t), buf, sizeof(buf));
        return json_string(buf);
    case CFG_T_SIZE:
        cfg_format_size(*CFG_CMEMBER(obj, f, uint64_t), buf, sizeof(buf));
        return json_string(buf);
    case CFG_T_STRING: {
        const char *s = *CFG_CMEMBER(obj, f, char *);
        return s != NULL ? json_string(s) : NULL;
    }
    case CFG_T_ENUM:
        return json_string(f->names[*CFG_CMEMBER(obj, f, int)]);
    case CFG_T_INT32:
        return json_integer(*CFG_CMEMBER(obj, f, int32_t));
    case CFG_T_ENUMSET: {
        uint32_t bits = *CFG_CMEMBER(obj, f, uint32_t);
        json_t *arr = json_array();
        for (int i = 0; arr != NULL && f->names[i] != NULL; i++)
            if (bits & (1u << i))
                json_array_append_new(arr, json_string(f->names[i]));
        return arr;
    }
    case CFG_T_MILLI:
        return json_real(*CFG_CMEMBER(obj, f, uint32_t) / 1000.0);
    case CFG_T_STRUCT:
        return emit_struct(f->sub, CFG_CMEMBER(obj, f, void), scope, 0, only_set);
    case CFG_T_STRUCTMAP: {
        /* entries are whole values: every key of each (never only a service's overrides) */
        const cfg_vec_t *v = CFG_CMEMBER(obj, f, cfg_vec_t);
        if (v->size == 0 && f->def == NULL)
            return NULL;
        json_t *map = json_object();
        for (size_t i = 0; map != NULL && i < v->size; i++) {
            const void *entry = (const char *)v->entries + i * f->sub->size;
            json_object_set_new(map, *CFG_CMEMBER(entry, cfg_struct_key(f->sub), char *), emit_struct(f->sub, entry, scope, 0, 0));
        }
        return map;
    }
    case CFG_T_LIST: {
        const cfg_vec_t *v = CFG_CMEMBER(obj, f, cfg_vec_t);
        json_t *arr = json_array();
        for (size_t i = 0; arr != NULL && i < v->size; i++)
            json_array_append_new(arr, emit_struct(f->sub, (const char *)v->entries + i * f->sub->size, scope, 0, 0));
        return arr;
    }
    case CFG_T_STRLIST:
    case CFG_T_STRMAP: {
        const cfg_vec_t *v = CFG_CMEMBER(obj, f, cfg_vec_t);
        if (v->size == 0 && f->def == NULL)
            return NULL; /* no default: absent and empty are the same document */
        if (f->type == CFG_T_STRLIST) {
            json_t *arr = json_array();
            for (size_t i = 0; arr != NULL && i < v->size; i++)
                json_array_append_new(arr, json_string(((char *const *)v->entries)[i]));
            return arr;
        }
        json_t *map = json_object();
        for (size_t i = 0; map != NULL && i < v->size; i++) {
            const cfg_header_t *h = &((const cfg_header_t *)v->entries)[i];
            json_object_set_new(map, h->name, json_string(h->value));
        }
        return map;
    }
    }
    return NULL;
}

/* only_set: emit just the keys the document gave (a service's overrides) */
static json_t *emit_struct(const cfg_struct_t *st, const void *obj, cfg_scope_t scope, int is_root, int only_set)
{
    json_t *out = json_object();
    uint64_t set = *(const uint64_t *)obj;
    for (size_t i = 0; out != NULL && i < st->num_fields; i++) {
        const cfg_field_t *f = &st->fields[i];
        if (is_root && scope == CFG_SCOPE_FLEET && (f->flags & CFG_F_LOCAL))
            continue;
        if (f->flags & CFG_F_KEY)
            continue; /* the entry's key in its map */
        int given = (set >> i) & 1;
        if (only_set && !given)
            continue;
        if ((f->flags & CFG_F_OPTIONAL) && !*(const int *)((const char *)obj + f->has_offset))
            continue;
        if (f->def == NULL && cfg_is_scalar(f) && !given)
            continue; /* an optional scalar that was not given */
        if ((f->flags & CFG_F_INHERIT) && f->type == CFG_T_LIST && !given)
            continue; /* a service's list taken from defaults */
        int child_only_set = only_set || (f->flags & CFG_F_INHERIT);
        json_t *v = emit_field(f, obj, scope, child_only_set);
        if (v == NULL)
            continue;
        if (child_only_set && f->type == CFG_T_STRUCT && json_object_size(v) == 0) {
            json_decref(v); /* no overrides: same as absent */
            continue;
        }
        json_object_set_new(out, f->name, v);
    }
    return out;
}

json_t *cfg_to_json(const cfg_t *cfg, cfg_scope_t scope)
{
    return emit_struct(&cfg_root_struct, cfg, scope, 1, 0);
}

/* Significant digits of %.*g that read back as the same double (at most 17, which always does). */
static int real_digits(double d)
{
    char buf[40];
    for (int p = 15; p < 17; p++) {
        snprintf(buf, sizeof(buf), "%.*g", p, d);
        if (strtod(buf, NULL) == d)
            return p;
    }
    return 17;
}

/* The fewest digits that write every real of a tree exactly: 0.2 is "0.2", not jansson's default
 * "0.20000000000000001". (%g drops trailing zeros, so more digits than a real needs changes nothing.) */
static int tree_real_digits(const json_t *v)
{
    int p = 15, q;
    if (json_is_real(v))
        return real_digits(json_real_value(v));
    if (json_is_object(v)) {
        const char *key;
        json_t *child;
        json_object_foreach((json_t *)v, key, child) if ((q = tree_real_digits(child)) > p) p = q;
    } else if (json_is_array(v)) {
        size_t i;
        json_t *child;
        json_array_foreach(v, i, child) if ((q = tree_real_digits(child)) > p) p = q;
    }
    return p;
}

char *cfg_json_canonical(const json_t *tree)
{
    return json_dumps(tree, JSON_COMPACT | JSON_SORT_KEYS | JSON_ENCODE_ANY | JSON_REAL_PRECISION(tree_real_digits(tree)));
}

char *cfg_canonical(const cfg_t *cfg, cfg_scope_t scope)
{
    json_t *j = cfg_to_json(cfg, scope);
    char *s = j != NULL ? cfg_json_canonical(j) : NULL;
    json_decref(j);
    return s;
}

void cfg_hash(const cfg_t *cfg, cfg_scope_t scope, char out[65])
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    char *s = cfg_canonical(cfg, scope);
    out[0] = '\0';
    if (s == NULL || !EVP_Digest(s, strlen(s), md, &mdlen, EVP_sha256(), NULL)) {
        free(s);
        return;
    }
    free(s);
    for (unsigned i = 0; i < mdlen && i < 32; i++)
        snprintf(out + 2 * i, 3, "%02x", md[i]);
}

/* --- YAML ---------------------------------------------------------------------------------- */

typedef struct st_sbuf_t {
    char *buf;
    size_t len, cap;
    int failed;
} sbuf_t;

static void sb_add(sbuf_t *b, const char *s, size_t n)
{
    if (b->failed)
        return;
    if (b->len + n + 1 > b->cap) {
        size_t cap = (b->cap + n + 1) * 2;
        char *nb = realloc(b->buf, cap);
        if (nb == NULL) {
            b->failed = 1;
            return;
        }
        b->buf = nb;
        b->cap = cap;
    }
    memcpy(b->buf + b->len, s, n);
    b->len += n;
    b->buf[b->len] = '\0';
}

static void sb_str(sbuf_t *b, const char *s)
{
    sb_add(b, s, strlen(s));
}

static void sb_indent(sbuf_t *b, int n)
{
    for (int i = 0; i < n; i++)
        sb_add(b, " ", 1);
}

/* Whether a string can be written plain and read back as the same string. */
static int yaml_plain_ok(const char *s, size_t len)
{
    if (len == 0 || strlen(s) != len)
        return 0;
    if (!isalnum((unsigned char)s[0]) && s[0] != '/' && s[0] != '.' && s[0] != '_')
        return 0;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (!isalnum(c) && strchr("._-/:+@", c) == NULL)
            return 0;
        if (c == ':' && (i + 1 == len || s[i + 1] == ' '))
            return 0;
    }
    /* would it read back as something other than this string (number, bool, null)? */
    cfg_errors_t errs;
    cfg_errors_init(&errs);
    json_t *back = cfg_tree_parse(s, len, CFG_FORMAT_YAML, &errs);
    int ok = back != NULL && json_is_string(back) && strcmp(json_string_value(back), s) == 0;
    json_decref(back);
    cfg_errors_dispose(&errs);
    return ok;
}

static void yaml_scalar(sbuf_t *b, const json_t *v)
{
    if (json_is_string(v) && yaml_plain_ok(json_string_value(v), json_string_length(v))) {
        sb_add(b, json_string_value(v), json_string_length(v));
        return;
    }
    /* JSON's encoding of a scalar is valid YAML flow (double-quoted strings, numbers, true, null),
     * but for the characters YAML reads as line breaks even inside quotes (NEL, LS, PS) and the
     * BOM: those are written as \u escapes. (JSON_ENSURE_ASCII would also escape astral
     * characters as surrogate pairs, which YAML does not read.) */
    char *s = json_dumps(v, JSON_ENCODE_ANY | JSON_REAL_PRECISION(json_is_real(v) ? real_digits(json_real_value(v)) : 17));
    if (s == NULL) {
        b->failed = 1;
        return;
    }
    const unsigned char *p = (const unsigned char *)s, *run = p;
    for (; *p != '\0'; p++) {
        const char *esc = NULL;
        size_t n = 0;
        if (p[0] == 0xc2 && p[1] == 0x85)
            esc = "\\u0085", n = 2;
        else if (p[0] == 0xe2 && p[1] == 0x80 && (p[2] == 0xa8 || p[2] == 0xa9))
            esc = p[2] == 0xa8 ? "\\u2028" : "\\u2029", n = 3;
        else if (p[0] == 0xef && p[1] == 0xbb && p[2] == 0xbf)
            esc = "\\ufeff", n = 3;
        if (esc == NULL)
            continue;
        sb_add(b, (const char *)run, (size_t)(p - run));
        sb_str(b, esc);
        p += n - 1;
        run = p + 1;
    }
    sb_add(b, (const char *)run, (size_t)(p - run));
    free(s);
}

static int is_empty_collection(const json_t *v)
{
    return (json_is_object(v) && json_object_size(v) == 0) || (json_is_array(v) && json_array_size(v) == 0);
}

static void yaml_value(sbuf_t *b, const json_t *v, int indent);

static int cmp_key(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* An object's keys in sorted order, so the same document always prints the same. The array
 * (caller frees) borrows the keys from `obj`; NULL when out of memory. */
static const char **sorted_keys(const json_t *obj, size_t *n)
{
    size_t i = 0;
    *n = json_object_size(obj);
    const char **keys = malloc((*n ? *n : 1) * sizeof(*keys));
    if (keys == NULL)
        return NULL;
    const char *key;
    json_t *child;
    json_object_foreach((json_t *)obj, key, child) keys[i++] = key;
    qsort(keys, *n, sizeof(*keys), cmp_key);
    return keys;
}

/* A key: value line (or a key: followed by a nested block). */
static void yaml_entry(sbuf_t *b, const char *key, const json_t *v, int indent, int first_inline)
{
    if (!first_inline)
        sb_indent(b, indent);
    sbuf_t kb = {NULL, 0, 0, 0};
    json_t *k = json_string(key);
    yaml_scalar(&kb, k);
    json_decref(k);
    if (kb.failed) {
        b->failed = 1;
        return;
    }
    if (kb.len > 1000) {
        /* YAML limits implicit keys to 1024 characters: a longer one needs the explicit form */
        sb_str(b, "? ");
        sb_add(b, kb.buf, kb.len);
        sb_str(b, "\n");
        sb_indent(b, indent);
    } else {
        sb_add(b, kb.buf, kb.len);
    }
    free(kb.buf);
    sb_str(b, ":");
    if ((json_is_object(v) || json_is_array(v)) && !is_empty_collection(v)) {
        sb_str(b, "\n");
        yaml_value(b, v, json_is_array(v) ? indent + 2 : indent + 2);
    } else {
        sb_str(b, " ");
        yaml_value(b, v, indent);
    }
}

static void yaml_value(sbuf_t *b, const json_t *v, int indent)
{
    if (json_is_object(v) && json_object_size(v) != 0) {
        size_t n, i;
        const char **keys = sorted_keys(v, &n);
        if (keys == NULL) {
            b->failed = 1;
            return;
        }
        for (i = 0; i < n; i++)
            yaml_entry(b, keys[i], json_object_get(v, keys[i]), indent, 0);
        free(keys);
    } else if (json_is_array(v) && json_array_size(v) != 0) {
        size_t i;
        json_t *item;
        json_array_foreach(v, i, item)
        {
            sb_indent(b, indent);
            sb_str(b, "- ");
            if (json_is_object(item) && json_object_size(item) != 0) {
                /* first key on the dash line, the rest aligned under it */
                size_t n, k;
                const char **keys = sorted_keys(item, &n);
                if (keys == NULL) {
                    b->failed = 1;
                    return;
                }
                for (k = 0; k < n; k++)
                    yaml_entry(b, keys[k], json_object_get(item, keys[k]), indent + 2, k == 0);
                free(keys);
            } else if (json_is_array(item) && json_array_size(item) != 0) {
                sb_str(b, "\n");
                yaml_value(b, item, indent + 2);
            } else {
                yaml_value(b, item, indent + 2);
            }
        }
    } else if (json_is_object(v)) {
        sb_str(b, "{}\n");
    } else if (json_is_array(v)) {
        sb_str(b, "[]\n");
    } else {
        yaml_scalar(b, v);
        sb_str(b, "\n");
    }
}

char *cfg_json_to_yaml(const json_t *tree)
{
    sbuf_t b = {NULL, 0, 0, 0};
    yaml_value(&b, tree, 0);
    if (b.failed) {
        free(b.buf);
        return NULL;
    }
    return b.buf;
}

/* --- whole documents ----------------------------------------------------------------------- */

cfg_t *cfg_merge_local(const cfg_t *local, const cfg_t *fleet, cfg_errors_t *errs)
{
    json_t *doc = cfg_to_json(fleet, CFG_SCOPE_FLEET);
    json_t *mine = cfg_to_json(local, CFG_SCOPE_FULL);
    if (doc == NULL || mine == NULL) {
        json_decref(doc);
        json_decref(mine);
        cfg_errors_add(errs, "out of memory");
        return NULL;
    }
    for (size_t i = 0; i < cfg_root_struct.num_fields; i++) {
        const cfg_field_t *f = &cfg_root_struct.fields[i];
        json_t *v = json_object_get(mine, f->name);
        if ((f->flags & CFG_F_LOCAL) && v != NULL)
            json_object_set(doc, f->name, v);
    }
    cfg_t *cfg = cfg_decode(doc, CFG_SCOPE_FULL, errs);
    json_decref(doc);
    json_decref(mine);
    return cfg;
}

int cfg_path_is_restart_only(const char *pointer)
{
    const cfg_struct_t *st = &cfg_root_struct;
    const char *p = pointer;
    while (*p == '/' && st != NULL) {
        p++;
        size_t len = strcspn(p, "/");
        const cfg_field_t *f = cfg_struct_find(st, p, len);
        if (f == NULL)
            return 0;
        if (f->flags & CFG_F_RESTART)
            return 1;
        p += len;
        st = f->type == CFG_T_STRUCT || f->type == CFG_T_LIST || f->type == CFG_T_STRUCTMAP ? f->sub : NULL;
        if ((f->type == CFG_T_LIST || f->type == CFG_T_STRUCTMAP) && *p == '/') /* skip the index or the entry's key */
            p += 1 + strcspn(p + 1, "/");
    }
    return 0;
}

size_t cfg_restart_changes(const cfg_t *before, const cfg_t *after, cfg_errors_t *paths)
{
    json_t *a = cfg_to_json(before, CFG_SCOPE_FULL), *b = cfg_to_json(after, CFG_SCOPE_FULL);
    json_t *diff = a != NULL && b != NULL ? cfg_json_diff(a, b) : NULL;
    size_t n = 0, i;
    json_t *op;
    json_array_foreach(diff, i, op)
    {
        const char *ptr = json_string_value(json_object_get(op, "path"));
        if (ptr == NULL || !cfg_path_is_restart_only(ptr))
            continue;
        /* report the top-level setting once: "listen", "threads" */
        size_t len = strcspn(ptr + 1, "/");
        int seen = 0;
        for (size_t j = 0; j < paths->size; j++)
            if (strlen(paths->entries[j]) == len && strncmp(paths->entries[j], ptr + 1, len) == 0)
                seen = 1;
        if (!seen) {
            cfg_errors_add(paths, "%.*s", (int)len, ptr + 1);
            n++;
        }
    }
    json_decref(diff);
    json_decref(a);
    json_decref(b);
    return n;
}
