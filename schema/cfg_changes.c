/*
 * The readable diff of two documents, in `set` paths (pathwayctl diff, the API's diff `changes`). The API's diff (RFC 6902)
 * compares lists by index, which is right for a machine but reads badly when a service is removed from the middle (every later
 * service "changes"); here list items with ids are matched by id.
 */
#include "cfg.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int cfg_path_append(char **path, const char *segment)
{
    int bracket = strpbrk(segment, ".[]") != NULL;
    size_t old = *path != NULL ? strlen(*path) : 0, n = old + strlen(segment) + 3;
    char *p = realloc(*path, n);
    if (p == NULL)
        return -1;
    if (bracket)
        snprintf(p + old, n - old, "[%s]", segment);
    else
        snprintf(p + old, n - old, "%s%s", old > 0 ? "." : "", segment);
    *path = p;
    return 0;
}

static int add_change(cfg_changes_t *out, cfg_change_kind_t kind, const char *path, const json_t *before, const json_t *after)
{
    cfg_change_t *e = realloc(out->entries, (out->size + 1) * sizeof(*e));
    if (e == NULL)
        return -1;
    out->entries = e;
    e = &out->entries[out->size];
    e->kind = kind;
    e->path = strdup(path[0] != '\0' ? path : "(document)");
    e->before = before != NULL ? json_deep_copy(before) : NULL;
    e->after = after != NULL ? json_deep_copy(after) : NULL;
    e->note = NULL;
    if (e->path == NULL) {
        json_decref(e->before);
        json_decref(e->after);
        return -1;
    }
    out->size++;
    return 0;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* Whether every item of a list is an object with a string id, all different. */
static int keyed_by_id(const json_t *list)
{
    size_t i, j;
    json_t *item;
    json_array_foreach(list, i, item)
    {
        const char *id = json_string_value(json_object_get(item, "id"));
        if (id == NULL)
            return 0;
        for (j = 0; j < i; j++)
            if (strcmp(id, json_string_value(json_object_get(json_array_get(list, j), "id"))) == 0)
                return 0;
    }
    return 1;
}

static json_t *item_by_id(const json_t *list, const char *id)
{
    size_t i;
    json_t *item;
    json_array_foreach(list, i, item)
    {
        const char *s = json_string_value(json_object_get(item, "id"));
        if (s != NULL && strcmp(s, id) == 0)
            return item;
    }
    return NULL;
}

static int diff_into(cfg_changes_t *out, const json_t *a, const json_t *b, const char *path);

/* Recurses into `sub` under path; frees nothing of the caller's. */
static int diff_child(cfg_changes_t *out, const json_t *a, const json_t *b, const char *path, const char *seg, int item)
{
    char *sub = path[0] != '\0' ? strdup(path) : NULL;
    if ((path[0] != '\0' && sub == NULL) || cfg_path_append(&sub, seg) != 0) {
        free(sub);
        return -1;
    }
    int rc;
    /* an added or removed object member that is an object itself reads better as its leaves
     * (`+ services.eth.pool.max_conns_per_host: 20`); a list item stays whole (`+ services.bsc: {...}`) */
    if (!item && ((a == NULL && json_is_object(b) && json_object_size(b) > 0) ||
                  (b == NULL && json_is_object(a) && json_object_size(a) > 0))) {
        json_t *empty = json_object();
        rc = empty != NULL ? diff_into(out, a != NULL ? a : empty, b != NULL ? b : empty, sub) : -1;
        json_decref(empty);
    } else if (a == NULL)
        rc = add_change(out, CFG_CHANGE_ADD, sub, NULL, b);
    else if (b == NULL)
        rc = add_change(out, CFG_CHANGE_REMOVE, sub, a, NULL);
    else
        rc = diff_into(out, a, b, sub);
    free(sub);
    return rc;
}

static int diff_into(cfg_changes_t *out, const json_t *a, const json_t *b, const char *path)
{
    if (json_equal(a, b))
        return 0;
    if (json_is_object(a) && json_is_object(b)) {
        size_t n = json_object_size(a) + json_object_size(b), k = 0;
        const char **keys = malloc((n ? n : 1) * sizeof(*keys));
        if (keys == NULL)
            return -1;
        const char *key;
        json_t *v;
        json_object_foreach((json_t *)a, key, v) keys[k++] = key;
        json_object_foreach((json_t *)b, key, v) if (json_object_get(a, key) == NULL) keys[k++] = key;
        qsort(keys, k, sizeof(*keys), cmp_str);
        int rc = 0;
        for (size_t i = 0; rc == 0 && i < k; i++)
            rc = diff_child(out, json_object_get(a, keys[i]), json_object_get(b, keys[i]), path, keys[i], 0);
        free(keys);
        return rc;
    }
    if (json_is_array(a) && json_is_array(b)) {
        size_t i;
        json_t *item;
        int rc = 0;
        if (keyed_by_id(a) && keyed_by_id(b) && (json_array_size(a) > 0 || json_array_size(b) > 0)) {
            /* items of a in a's order (changed or removed), then items only b has, in b's order */
            json_array_foreach(a, i, item)
            {
                const char *id = json_string_value(json_object_get(item, "id"));
                if ((rc = diff_child(out, item, item_by_id(b, id), path, id, 1)) != 0)
                    return rc;
            }
            json_array_foreach(b, i, item)
            {
                const char *id = json_string_value(json_object_get(item, "id"));
                if (item_by_id(a, id) == NULL && (rc = diff_child(out, NULL, item, path, id, 1)) != 0)
                    return rc;
            }
            /* the items both have, in another order: the order itself is a change */
            json_t *ida = json_array(), *idb = json_array();
            json_array_foreach(a, i, item) if (item_by_id(b, json_string_value(json_object_get(item, "id"))) != NULL)
                json_array_append(ida, json_object_get(item, "id"));
            json_array_foreach(b, i, item) if (item_by_id(a, json_string_value(json_object_get(item, "id"))) != NULL)
                json_array_append(idb, json_object_get(item, "id"));
            if (ida == NULL || idb == NULL)
                rc = -1;
            else if (!json_equal(ida, idb))
                rc = add_change(out, CFG_CHANGE_REPLACE, path, ida, idb);
            json_decref(ida);
            json_decref(idb);
            return rc;
        }
        if (json_array_size(a) == json_array_size(b)) {
            char idx[32];
            for (i = 0; rc == 0 && i < json_array_size(a); i++) {
                snprintf(idx, sizeof(idx), "%zu", i);
                rc = diff_child(out, json_array_get(a, i), json_array_get(b, i), path, idx, 1);
            }
            return rc;
        }
    }
    return add_change(out, CFG_CHANGE_REPLACE, path, a, b);
}

/* `defaults` as a service inherits it: the built-in defaults with the document's own on top. New
 * reference, an object. */
static json_t *effective_defaults(const json_t *doc, const json_t *builtin)
{
    const json_t *own = json_object_get(doc, "defaults");
    if (json_is_object(own) && json_is_object(builtin))
        return cfg_merge_patch(builtin, own);
    return json_is_object(own) ? json_deep_copy(own) : json_is_object(builtin) ? json_deep_copy(builtin) : json_object();
}

static cfg_change_t *find_change(cfg_changes_t *out, const char *path)
{
    for (size_t i = 0; i < out->size; i++)
        if (strcmp(out->entries[i].path, path) == 0)
            return &out->entries[i];
    return NULL;
}

/* "services.<id>.<section>.<key>" (in set syntax), NULL when out of memory. */
static char *join_path(const char *a, const char *b, const char *c, const char *d)
{
    char *p = NULL;
    const char *segs[] = {a, b, c, d};
    for (size_t i = 0; i < 4; i++) {
        if (segs[i] != NULL && cfg_path_append(&p, segs[i]) != 0) {
            free(p);
            return NULL;
        }
    }
    return p;
}

/* The services of `doc` (by id) that inherit defaults.<section>.<key>: "inherited by eth, poly". */
static char *reach_note(const json_t *doc, const char *section, const char *key)
{
    const json_t *services = json_object_get(doc, "services");
    if (!json_is_array(services))
        return NULL;
    char buf[256] = "";
    size_t i, used = 0, count = 0, total = 0;
    json_t *svc;
    json_array_foreach(services, i, svc)
    {
        const char *id = json_string_value(json_object_get(svc, "id"));
        if (id == NULL || json_object_get(json_object_get(svc, section), key) != NULL)
            continue;
        total++;
        if (used < 160) {
            int w = snprintf(buf + used, sizeof(buf) - used, "%s%s", count > 0 ? ", " : "", id);
            if (w > 0 && (size_t)w < sizeof(buf) - used) {
                used += (size_t)w;
                count++;
            }
        }
    }
    char note[320];
    if (json_array_size(services) == 0)
        return NULL;
    if (total == 0)
        snprintf(note, sizeof(note), "inherited by no service: each sets its own");
    else if (count < total)
        snprintf(note, sizeof(note), "inherited by %s and %zu more", buf, total - count);
    else
        snprintf(note, sizeof(note), "inherited by %s", buf);
    return strdup(note);
}

/* Spells out inheritance (see ctl.h): a service key that starts or stops overriding `defaults` is
 * a replacement of the inherited value; a `defaults` key names the services it reaches. */
static int explain_inheritance(cfg_changes_t *out, const json_t *a, const json_t *b)
{
    if (out->size == 0 || !json_is_object(a) || !json_is_object(b))
        return 0;
    cfg_t *def = cfg_create_default();
    json_t *tree = def != NULL ? cfg_to_json(def, CFG_SCOPE_FLEET) : NULL;
    cfg_destroy(def);
    json_t *da = effective_defaults(a, json_object_get(tree, "defaults"));
    json_t *db = effective_defaults(b, json_object_get(tree, "defaults"));
    json_t *builtin = json_object_get(tree, "defaults");
    int rc = 0;
    const char *section, *key;
    json_t *sec, *v;
    json_object_foreach(db, section, sec)
    {
        if (!json_is_object(sec))
            continue;
        json_object_foreach(sec, key, v)
        {
            /* defaults.<section>.<key> itself */
            char *path = join_path("defaults", section, key, NULL);
            if (path == NULL) {
                rc = -1;
                goto Done;
            }
            cfg_change_t *c = find_change(out, path);
            free(path);
            if (c != NULL && c->note == NULL) {
                json_t *base = json_object_get(json_object_get(builtin, section), key);
                if (c->kind != CFG_CHANGE_REPLACE && base != NULL) {
                    /* an explicit default set or removed: from or to the built-in value */
                    json_t *before = c->before != NULL ? c->before : json_deep_copy(base);
                    json_t *after = c->after != NULL ? c->after : json_deep_copy(base);
                    c->before = before;
                    c->after = after;
                    c->kind = CFG_CHANGE_REPLACE;
                }
                c->note = reach_note(b, section, key);
            }
            /* services.<id>.<section>.<key> that starts or stops overriding it */
            size_t i;
            json_t *svc;
            json_array_foreach(json_object_get(b, "services"), i, svc)
            {
                const char *id = json_string_value(json_object_get(svc, "id"));
                if (id == NULL)
                    continue;
                char *p = join_path("services", id, section, key);
                if (p == NULL) {
                    rc = -1;
                    goto Done;
                }
                c = find_change(out, p);
                free(p);
                if (c == NULL || c->note != NULL || c->kind == CFG_CHANGE_REPLACE)
                    continue;
                json_t *inherited_before = json_object_get(json_object_get(da, section), key);
                if (c->kind == CFG_CHANGE_ADD && inherited_before != NULL) {
                    c->before = json_deep_copy(inherited_before);
                    c->note = strdup("was inherited from defaults");
                    c->kind = CFG_CHANGE_REPLACE;
                } else if (c->kind == CFG_CHANGE_REMOVE) {
                    c->after = json_deep_copy(v);
                    c->note = strdup("now inherited from defaults");
                    c->kind = CFG_CHANGE_REPLACE;
                }
            }
        }
    }
Done:
    json_decref(da);
    json_decref(db);
    json_decref(tree);
    return rc;
}

int cfg_changes(const json_t *a, const json_t *b, cfg_changes_t *out)
{
    out->entries = NULL;
    out->size = 0;
    if (diff_into(out, a, b, "") != 0 || explain_inheritance(out, a, b) != 0) {
        cfg_changes_dispose(out);
        return -1;
    }
    return 0;
}

void cfg_changes_dispose(cfg_changes_t *changes)
{
    for (size_t i = 0; i < changes->size; i++) {
        free(changes->entries[i].path);
        json_decref(changes->entries[i].before);
        json_decref(changes->entries[i].after);
        free(changes->entries[i].note);
    }
    free(changes->entries);
    changes->entries = NULL;
    changes->size = 0;
}

json_t *cfg_changes_json(const cfg_changes_t *changes)
{
    json_t *arr = json_array();
    for (size_t i = 0; arr != NULL && i < changes->size; i++) {
        const cfg_change_t *c = &changes->entries[i];
        const char *op = c->kind == CFG_CHANGE_ADD ? "add" : c->kind == CFG_CHANGE_REMOVE ? "remove" : "replace";
        json_t *o = json_pack("{ss ss}", "op", op, "path", c->path);
        if (o == NULL || (c->before != NULL && json_object_set(o, "from", c->before) != 0) ||
            (c->after != NULL && json_object_set(o, "to", c->after) != 0) ||
            (c->note != NULL && json_object_set_new(o, "note", json_string(c->note)) != 0) || json_array_append_new(arr, o) != 0) {
            json_decref(o);
            json_decref(arr);
            return NULL;
        }
    }
    return arr;
}
