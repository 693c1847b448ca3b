/*
 * JSON merge patch (RFC 7386), and JSON Patch (RFC 6902): the diff of two documents, and its
 * application. Small enough that no library is worth it; tested against the RFCs' examples.
 */
#include "cfg.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

json_t *cfg_merge_patch(const json_t *target, const json_t *patch)
{
    if (!json_is_object(patch))
        return json_deep_copy(patch);
    json_t *out = json_is_object(target) ? json_deep_copy(target) : json_object();
    const char *key;
    json_t *value;
    json_object_foreach((json_t *)patch, key, value)
    {
        if (out == NULL)
            return NULL;
        if (json_is_null(value)) {
            json_object_del(out, key);
        } else {
            json_t *merged = cfg_merge_patch(json_object_get(out, key), value);
            if (merged == NULL || json_object_set_new(out, key, merged) != 0) {
                json_decref(out);
                return NULL;
            }
        }
    }
    return out;
}

/* --- JSON Pointer (RFC 6901) --------------------------------------------------------------- */

/* Appends one escaped reference token to a pointer. Caller frees the result. */
static char *pointer_append(const char *base, const char *token)
{
    size_t n = strlen(base) + 2;
    for (const char *p = token; *p; p++)
        n += *p == '~' || *p == '/' ? 2 : 1;
    char *out = malloc(n), *o = out;
    if (out == NULL)
        return NULL;
    o += sprintf(o, "%s/", base);
    for (const char *p = token; *p; p++) {
        if (*p == '~') {
            *o++ = '~';
            *o++ = '0';
        } else if (*p == '/') {
            *o++ = '~';
            *o++ = '1';
        } else {
            *o++ = *p;
        }
    }
    *o = '\0';
    return out;
}

static int add_op(json_t *ops, const char *op, const char *path, json_t *value)
{
    json_t *o = json_pack("{s:s, s:s}", "op", op, "path", path);
    if (o == NULL)
        return -1;
    if (value != NULL)
        json_object_set(o, "value", value);
    return json_array_append_new(ops, o);
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static int diff_into(json_t *ops, const json_t *from, const json_t *to, const char *path)
{
    if (json_equal(from, to))
        return 0;
    if (json_is_object(from) && json_is_object(to)) {
        /* keys in sorted order: the same two documents always give the same patch */
        size_t n = json_object_size(from) + json_object_size(to), k = 0;
        const char **keys = malloc((n ? n : 1) * sizeof(*keys));
        if (keys == NULL)
            return -1;
        const char *key;
        json_t *v;
        json_object_foreach((json_t *)from, key, v) keys[k++] = key;
        json_object_foreach((json_t *)to, key, v) if (json_object_get(from, key) == NULL) keys[k++] = key;
        qsort(keys, k, sizeof(*keys), cmp_str);
        int ret = 0;
        for (size_t i = 0; ret == 0 && i < k; i++) {
            char *sub = pointer_append(path, keys[i]);
            json_t *a = json_object_get(from, keys[i]), *b = json_object_get(to, keys[i]);
            if (sub == NULL)
                ret = -1;
            else if (b == NULL)
                ret = add_op(ops, "remove", sub, NULL);
            else if (a == NULL)
                ret = add_op(ops, "add", sub, b);
            else
                ret = diff_into(ops, a, b, sub);
            free(sub);
        }
        free(keys);
        return ret;
    }
    if (json_is_array(from) && json_is_array(to)) {
        size_t na = json_array_size(from), nb = json_array_size(to), i;
        char idx[32];
        for (i = 0; i < na && i < nb; i++) {
            snprintf(idx, sizeof(idx), "%zu", i);
            char *sub = pointer_append(path, idx);
            int ret = sub != NULL ? diff_into(ops, json_array_get(from, i), json_array_get(to, i), sub) : -1;
            free(sub);
            if (ret != 0)
                return ret;
        }
        for (; i < nb; i++) {
            snprintf(idx, sizeof(idx), "%zu", i);
            char *sub = pointer_append(path, idx);
            int ret = sub != NULL ? add_op(ops, "add", sub, json_array_get(to, i)) : -1;
            free(sub);
            if (ret != 0)
                return ret;
        }
        /* remove from the end, so earlier indices stay valid */
        for (i = na; i-- > nb;) {
            snprintf(idx, sizeof(idx), "%zu", i);
            char *sub = pointer_append(path, idx);
            int ret = sub != NULL ? add_op(ops, "remove", sub, NULL) : -1;
            free(sub);
            if (ret != 0)
                return ret;
        }
        return 0;
    }
    return add_op(ops, "replace", path, (json_t *)to);
}

json_t *cfg_json_diff(const json_t *from, const json_t *to)
{
    json_t *ops = json_array();
    if (ops != NULL && diff_into(ops, from, to, "") != 0) {
        json_decref(ops);
        return NULL;
    }
    return ops;
}

/* --- applying a JSON Patch ----------------------------------------------------------------- */

/* Decodes the next reference token of *p into buf (len >= strlen(*p) always suffices); returns -1
 * on a bad escape. */
static int next_token(const char **p, char *buf, size_t len)
{
    const char *s = *p + 1; /* skip '/' */
    size_t o = 0;
    for (; *s && *s != '/'; s++) {
        char c = *s;
        if (c == '~') {
            if (s[1] == '0')
                c = '~';
            else if (s[1] == '1')
                c = '/';
            else
                return -1;
            s++;
        }
        if (o + 1 >= len)
            return -1;
        buf[o++] = c;
    }
    buf[o] = '\0';
    *p = s;
    return 0;
}

/* An array index token: digits without a leading zero. */
static int parse_index(const char *tok, size_t *out)
{
    if (*tok == '\0' || (tok[0] == '0' && tok[1] != '\0') || strlen(tok) > 9)
        return -1;
    size_t v = 0;
    for (const char *c = tok; *c; c++) {
        if (*c < '0' || *c > '9')
            return -1;
        v = v * 10 + (size_t)(*c - '0');
    }
    *out = v;
    return 0;
}

/* Finds the parent container of `ptr`'s target and its last token. Returns NULL if absent. */
static json_t *resolve_parent(json_t *doc, const char *ptr, char *last, size_t lastlen, const char **err)
{
    json_t *cur = doc;
    const char *p = ptr;
    if (*p != '/') {
        *err = "a path must be empty or start with '/'";
        return NULL;
    }
    for (;;) {
        if (next_token(&p, last, lastlen) != 0) {
            *err = "a path has a bad '~' escape (only ~0 and ~1 are allowed)";
            return NULL;
        }
        if (*p == '\0')
            return cur;
        if (json_is_object(cur)) {
            cur = json_object_get(cur, last);
        } else if (json_is_array(cur)) {
            size_t i;
            cur = parse_index(last, &i) == 0 ? json_array_get(cur, i) : NULL;
        } else {
            cur = NULL;
        }
        if (cur == NULL) {
            *err = "a path names a location that does not exist";
            return NULL;
        }
    }
}

static json_t *get_at(json_t *doc, const char *ptr, const char **err)
{
    if (*ptr == '\0')
        return doc;
    char *last = malloc(strlen(ptr) + 1);
    json_t *parent = last != NULL ? resolve_parent(doc, ptr, last, strlen(ptr) + 1, err) : NULL;
    json_t *v = NULL;
    size_t i;
    if (parent == NULL)
        ;
    else if (json_is_object(parent))
        v = json_object_get(parent, last);
    else if (json_is_array(parent) && parse_index(last, &i) == 0)
        v = json_array_get(parent, i);
    if (v == NULL && parent != NULL)
        *err = "a path names a location that does not exist";
    free(last);
    return v;
}

/* Removes the value at ptr and returns it (a reference the caller owns). */
static json_t *remove_at(json_t *doc, const char *ptr, const char **err)
{
    if (*ptr == '\0') {
        *err = "cannot remove the whole document";
        return NULL;
    }
    char *last = malloc(strlen(ptr) + 1);
    json_t *parent = last != NULL ? resolve_parent(doc, ptr, last, strlen(ptr) + 1, err) : NULL;
    json_t *v = NULL;
    size_t i;
    if (parent == NULL) {
        free(last);
        return NULL;
    }
    if (json_is_object(parent)) {
        v = json_incref(json_object_get(parent, last));
        if (v != NULL)
            json_object_del(parent, last);
    } else if (json_is_array(parent) && parse_index(last, &i) == 0) {
        v = json_incref(json_array_get(parent, i));
        if (v != NULL)
            json_array_remove(parent, i);
    }
    if (v == NULL)
        *err = "a path names a location that does not exist";
    free(last);
    return v;
}

/* Adds `value` (reference stolen) at ptr; *doc may be replaced when ptr is "". */
static int add_at(json_t **doc, const char *ptr, json_t *value, const char **err)
{
    if (*ptr == '\0') {
        json_decref(*doc);
        *doc = value;
        return 0;
    }
    char *last = malloc(strlen(ptr) + 1);
    json_t *parent = last != NULL ? resolve_parent(*doc, ptr, last, strlen(ptr) + 1, err) : NULL;
    int ret = -1;
    size_t i;
    if (parent == NULL) {
        json_decref(value);
    } else if (json_is_object(parent)) {
        ret = json_object_set_new(parent, last, value);
    } else if (json_is_array(parent) && strcmp(last, "-") == 0) {
        ret = json_array_append_new(parent, value);
    } else if (json_is_array(parent) && parse_index(last, &i) == 0 && i <= json_array_size(parent)) {
        ret = json_array_insert_new(parent, i, value);
    } else {
        *err = json_is_array(parent) ? "an array index is out of range"
                                     : "a path goes through a value that is neither an object nor an array";
        json_decref(value);
    }
    free(last);
    return ret;
}

json_t *cfg_json_patch_apply(const json_t *doc_in, const json_t *patch, const char **err)
{
    if (!json_is_array(patch)) {
        *err = "a JSON Patch must be an array of operations";
        return NULL;
    }
    json_t *doc = json_deep_copy(doc_in);
    size_t i;
    json_t *op;
    *err = NULL;
    json_array_foreach(patch, i, op)
    {
        const char *name = json_string_value(json_object_get(op, "op"));
        const char *path = json_string_value(json_object_get(op, "path"));
        const char *from = json_string_value(json_object_get(op, "from"));
        json_t *value = json_object_get(op, "value");
        if (name == NULL || path == NULL) {
            *err = "an operation needs string members op and path";
            goto fail;
        }
        if (strcmp(name, "add") == 0 || strcmp(name, "replace") == 0) {
            if (value == NULL) {
                *err = "add and replace need a value";
                goto fail;
            }
            if (strcmp(name, "replace") == 0 && *path != '\0') {
                json_t *old = remove_at(doc, path, err);
                if (old == NULL)
                    goto fail;
                json_decref(old);
            }
            if (add_at(&doc, path, json_deep_copy(value), err) != 0)
                goto fail;
        } else if (strcmp(name, "remove") == 0) {
            json_t *old = remove_at(doc, path, err);
            if (old == NULL)
                goto fail;
            json_decref(old);
        } else if (strcmp(name, "move") == 0 || strcmp(name, "copy") == 0) {
            if (from == NULL) {
                *err = "move and copy need a from";
                goto fail;
            }
            json_t *v;
            if (strcmp(name, "move") == 0) {
                size_t fl = strlen(from);
                if (strncmp(path, from, fl) == 0 && path[fl] == '/') {
                    *err = "cannot move a value into one of its own children";
                    goto fail;
                }
                v = remove_at(doc, from, err);
            } else {
                json_t *src = get_at(doc, from, err);
                v = src != NULL ? json_deep_copy(src) : NULL;
            }
            if (v == NULL || add_at(&doc, path, v, err) != 0)
                goto fail;
        } else if (strcmp(name, "test") == 0) {
            json_t *cur = get_at(doc, path, err);
            if (cur == NULL)
                goto fail;
            if (value == NULL || !json_equal(cur, value)) {
                *err = "a test operation failed";
                goto fail;
            }
        } else {
            *err = "unknown operation (use add, remove, replace, move, copy or test)";
            goto fail;
        }
    }
    return doc;
fail:
    if (*err == NULL)
        *err = "out of memory";
    json_decref(doc);
    return NULL;
}
