/*
 * `set KEY=VALUE...`: assignments on the active document, sent as one merge patch.
 *
 * A KEY is a path of segments: `name` separated by dots, or `[name]` (which may hold dots, for
 * service ids like `eth.main`): `limiter.max_concurrent`, `services[eth.main].pool.max_idle_per_host`.
 * In an object a segment is a key (created, as an object, when later segments need it). In a list:
 *   1. the item whose "id" equals the segment (services are addressed by id);
 *   2. else, when the segment is all digits, the item at that index (endpoints.0); past the end
 *      is an error, never a new item;
 *   3. else, with CTL_SET_CREATE (`set --create`), a new item {"id": segment} appended (so
 *      `services.bsc.endpoints=[...]` adds a service); without it an error with a did-you-mean, so
 *      a typo (`services.eht...`) is not a new service.
 * A null VALUE removes the key, or the list item; removing something absent creates nothing: an
 * absent key on the way is a no-op, a missing list item an error.
 *
 * RFC 7386 replaces arrays whole, so a change inside `services` cannot be said as a merge patch of
 * its own: the assignments are applied to a copy of the active document, and the merge patch is
 * the difference between the two (ctl_merge_diff), which carries the whole changed list. It is
 * sent with If-Match of the version read, so a list changed meanwhile by someone else is refused
 * (412) rather than overwritten.
 */
#include "ctl.h"
#include <ctype.h>
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* Reals with an integral value (1e3, 200.0) become integers, inside arrays and objects too: JSON
 * does not tell 1000 from 1e3, but jansson does, and the config schema's integer fields refuse a
 * real. Returns v, or a replacement (v stolen). */
static json_t *integral_reals(json_t *v)
{
    if (json_is_real(v)) {
        double d = json_real_value(v);
        /* [-2^63, 2^63): every double there converts to int64 without overflow */
        if (d >= -9223372036854775808.0 && d < 9223372036854775808.0 && (double)(json_int_t)d == d) {
            json_decref(v);
            return json_integer((json_int_t)d);
        }
    } else if (json_is_array(v)) {
        size_t i;
        json_t *item;
        json_array_foreach(v, i, item) json_array_set_new(v, i, integral_reals(json_incref(item)));
    } else if (json_is_object(v)) {
        const char *k;
        json_t *item;
        json_object_foreach(v, k, item) json_object_set_new(v, k, integral_reals(json_incref(item)));
    }
    return v;
}

json_t *ctl_set_value(const char *text)
{
    json_error_t e;
    json_t *v = json_loads(text, JSON_DECODE_ANY | JSON_REJECT_DUPLICATES, &e);
    return v != NULL ? integral_reals(v) : json_string(text);
}

#define MAX_SEGMENTS 32

typedef struct st_path_t {
    char *segs[MAX_SEGMENTS]; /* each malloc'd */
    size_t size;
} path_t;

static void path_dispose(path_t *p)
{
    for (size_t i = 0; i < p->size; i++)
        free(p->segs[i]);
    p->size = 0;
}

/* Splits a KEY into segments. Returns 0, or -1 with err. */
static int path_parse(const char *key, size_t len, path_t *p, char *err, size_t errlen)
{
    p->size = 0;
    size_t i = 0;
    if (len == 0) {
        snprintf(err, errlen, "empty key");
        return -1;
    }
    while (i < len) {
        const char *start;
        size_t n;
        if (key[i] == '[') {
            start = key + i + 1;
            const char *close = memchr(start, ']', len - i - 1);
            if (close == NULL) {
                snprintf(err, errlen, "'[' without ']'");
                goto Error;
            }
            n = (size_t)(close - start);
            i = (size_t)(close - key) + 1;
            if (i < len && key[i] != '.' && key[i] != '[') {
                snprintf(err, errlen, "']' must be followed by '.', '[' or '='");
                goto Error;
            }
        } else {
            start = key + i;
            n = 0;
            while (i + n < len && key[i + n] != '.' && key[i + n] != '[' && key[i + n] != ']')
                n++;
            if (i + n < len && key[i + n] == ']') {
                snprintf(err, errlen, "']' without '['");
                goto Error;
            }
            i += n;
        }
        if (n == 0) {
            snprintf(err, errlen, "empty segment");
            goto Error;
        }
        if (p->size == MAX_SEGMENTS) {
            snprintf(err, errlen, "more than %d segments", MAX_SEGMENTS);
            goto Error;
        }
        p->segs[p->size++] = strndup(start, n);
        if (i < len && key[i] == '.') {
            i++;
            if (i == len) {
                snprintf(err, errlen, "ends with '.'");
                goto Error;
            }
        }
    }
    return 0;
Error:
    path_dispose(p);
    return -1;
}

/* Every all-digit segment is an index (leading zeros and all): one too large for size_t is
 * SIZE_MAX, out of range of any list, rather than an id to add. */
static int is_index(const char *s, size_t *out)
{
    size_t n = 0;
    while (s[n] != '\0' && isdigit((unsigned char)s[n]))
        n++;
    if (n == 0 || s[n] != '\0')
        return 0;
    errno = 0;
    unsigned long long v = strtoull(s, NULL, 10);
    *out = errno == ERANGE || v > SIZE_MAX ? SIZE_MAX : (size_t)v;
    return 1;
}

/* The index of the item a segment names in a list; json_array_size() when none does (a new item). */
static size_t find_item(json_t *list, const char *seg, int *by_index)
{
    size_t i, idx;
    json_t *item;
    *by_index = 0;
    json_array_foreach(list, i, item)
    {
        const char *id = json_string_value(json_object_get(item, "id"));
        if (id != NULL && strcmp(id, seg) == 0)
            return i;
    }
    if (is_index(seg, &idx)) {
        *by_index = 1;
        return idx;
    }
    return json_array_size(list);
}

/* The path up to and including segment `upto`, for messages. */
static void path_prefix(const path_t *p, size_t upto, char *buf, size_t len)
{
    size_t o = 0;
    buf[0] = '\0';
    for (size_t i = 0; i <= upto && i < p->size && o < len; i++) {
        int bracket = strchr(p->segs[i], '.') != NULL;
        int w = snprintf(buf + o, len - o, bracket ? "%s[%s]" : "%s%s", i == 0 || bracket ? "" : ".", p->segs[i]);
        if (w < 0)
            break;
        o += (size_t)w;
    }
}

/* "no service "eht"; did you mean "eth"?" for a segment no item of `list` has as its id. */
static void no_item(const path_t *p, size_t s, const json_t *list, char *err, size_t errlen)
{
    char where[160];
    const char *ids[256];
    size_t n = 0, i;
    json_t *item;
    json_array_foreach(list, i, item)
    {
        const char *id = json_string_value(json_object_get(item, "id"));
        if (id != NULL && n < sizeof(ids) / sizeof(ids[0]))
            ids[n++] = id;
    }
    const char *near = ctl_suggest(p->segs[s], ids, n);
    if (s == 1 && strcmp(p->segs[0], "services") == 0)
        snprintf(where, sizeof(where), "no service");
    else {
        path_prefix(p, s - 1, where, sizeof(where));
        strncat(where, ": no item with id", sizeof(where) - strlen(where) - 1);
    }
    if (near != NULL)
        snprintf(err, errlen, "%s \"%.64s\"; did you mean \"%.64s\"?", where, p->segs[s], near);
    else if (n > 0) {
        char names[200] = "";
        size_t used = 0, k;
        for (k = 0; k < n && used < 120; k++) {
            int w = snprintf(names + used, sizeof(names) - used, "%s%.40s", k > 0 ? ", " : "", ids[k]);
            if (w < 0 || (size_t)w >= sizeof(names) - used)
                break;
            used += (size_t)w;
        }
        snprintf(err, errlen, "%s \"%.64s\" (there are: %s%s)", where, p->segs[s], names, k < n ? ", ..." : "");
    } else
        snprintf(err, errlen, "%s \"%.64s\" (the list is empty)", where, p->segs[s]);
}

/* Sets (value stolen; NULL = remove) at path in doc. Returns 0, or -1 with err. */
static int assign(json_t *doc, const path_t *p, json_t *value, unsigned flags, char *err, size_t errlen)
{
    json_t *cur = doc;
    char where[160];
    for (size_t s = 0; s < p->size; s++) {
        const char *seg = p->segs[s];
        int last = s + 1 == p->size;
        if (json_is_object(cur)) {
            if (last) {
                if (value == NULL) {
                    json_object_del(cur, seg); /* absent already: nothing to remove, not an error */
                    return 0;
                }
                return json_object_set_new(cur, seg, value) == 0 ? 0 : (snprintf(err, errlen, "out of memory"), -1);
            }
            json_t *next = json_object_get(cur, seg);
            if (next == NULL && value == NULL)
                return 0; /* removing below a key that is absent: nothing there, nothing created */
            if (next == NULL && s == 0 && strcmp(seg, "services") == 0) {
                /* no services yet: the list, empty, so that the next segment names a service */
                next = json_array();
                if (json_object_set_new(cur, seg, next) != 0)
                    goto Nomem;
            } else if (next == NULL) {
                next = json_object();
                if (json_object_set_new(cur, seg, next) != 0)
                    goto Nomem;
            }
            cur = next;
        } else if (json_is_array(cur)) {
            int by_index;
            size_t i = find_item(cur, seg, &by_index), n = json_array_size(cur);
            if (by_index && i >= n) {
                path_prefix(p, s - 1, where, sizeof(where)); /* s >= 1: the document itself is an object */
                snprintf(err, errlen, "%.100s: no item %.32s (the list has %zu)", where, seg, n);
                goto Fail;
            }
            if (i == n) { /* no item has this id */
                /* removing: a missing item is an error, never added on the way; adding only when asked */
                if (value == NULL || !(flags & CTL_SET_CREATE)) {
                    no_item(p, s, cur, err, errlen);
                    if (value != NULL && s == 1 && strcmp(p->segs[0], "services") == 0 && strlen(err) + 40 < errlen)
                        strcat(err, " (--create adds a new service)");
                    goto Fail;
                }
                json_t *item = json_pack("{s:s}", "id", seg);
                if (item == NULL || json_array_append_new(cur, item) != 0)
                    goto Nomem;
            }
            if (last) {
                if (value == NULL)
                    return json_array_remove(cur, i) == 0 ? 0 : (snprintf(err, errlen, "out of memory"), -1);
                /* a whole item given for a named one keeps its name */
                if (!by_index && json_is_object(value) && json_object_get(value, "id") == NULL)
                    json_object_set_new(value, "id", json_string(seg));
                return json_array_set_new(cur, i, value) == 0 ? 0 : (snprintf(err, errlen, "out of memory"), -1);
            }
            cur = json_array_get(cur, i);
        } else {
            path_prefix(p, s - 1, where, sizeof(where));
            snprintf(err, errlen, "%.100s is %s, not an object or a list", where,
                     json_is_string(cur)    ? "a string"
                     : json_is_number(cur)  ? "a number"
                     : json_is_boolean(cur) ? "a boolean"
                                            : "null");
            goto Fail;
        }
    }
    /* unreachable: p->size >= 1 and the last segment returns above */
    json_decref(value);
    return 0;
Nomem:
    snprintf(err, errlen, "out of memory");
Fail:
    json_decref(value);
    return -1;
}

/* Splits one assignment at the first '=' outside brackets (ids hold no '=' but values may);
 * returns the key's length, or -1 when there is no '='. */
static long split_assignment(const char *arg)
{
    int depth = 0;
    for (size_t k = 0; arg[k] != '\0'; k++) {
        if (arg[k] == '[')
            depth++;
        else if (arg[k] == ']' && depth > 0)
            depth--;
        else if (arg[k] == '=' && depth == 0)
            return (long)k;
    }
    /* an unclosed '[' swallowed the '=': split there, so the key's error says what is wrong */
    const char *eq = strchr(arg, '=');
    return eq != NULL ? (long)(eq - arg) : -1;
}

int ctl_set_check(const char *const *assignments, size_t n, char *err, size_t errlen)
{
    for (size_t a = 0; a < n; a++) {
        long k = split_assignment(assignments[a]);
        char why[256];
        path_t p;
        if (k < 0) {
            snprintf(err, errlen, "'%s': expected KEY=VALUE", assignments[a]);
            return -1;
        }
        if (path_parse(assignments[a], (size_t)k, &p, why, sizeof(why)) != 0) {
            snprintf(err, errlen, "'%.*s': %s", (int)k, assignments[a], why);
            return -1;
        }
        path_dispose(&p);
    }
    return 0;
}

json_t *ctl_set_apply(const json_t *doc, const char *const *assignments, size_t n, unsigned flags, char *err, size_t errlen)
{
    json_t *out = json_is_object(doc) ? json_deep_copy(doc) : json_object();
    if (out == NULL) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    for (size_t a = 0; a < n; a++) {
        const char *arg = assignments[a];
        long k = split_assignment(arg);
        char why[256];
        path_t p;
        if (k < 0) {
            snprintf(err, errlen, "'%s': expected KEY=VALUE", arg);
            goto Error;
        }
        if (path_parse(arg, (size_t)k, &p, why, sizeof(why)) != 0) {
            snprintf(err, errlen, "'%.*s': %s", (int)k, arg, why);
            goto Error;
        }
        json_t *value = ctl_set_value(arg + k + 1);
        if (value == NULL) {
            path_dispose(&p);
            snprintf(err, errlen, "out of memory");
            goto Error;
        }
        if (json_is_null(value)) {
            json_decref(value);
            value = NULL;
        }
        int rc = assign(out, &p, value, flags, why, sizeof(why));
        path_dispose(&p);
        if (rc != 0) {
            snprintf(err, errlen, "'%s': %s", arg, why);
            goto Error;
        }
    }
    return out;
Error:
    json_decref(out);
    return NULL;
}

json_t *ctl_merge_diff(const json_t *from, const json_t *to)
{
    if (!json_is_object(from) || !json_is_object(to))
        return json_deep_copy(to);
    json_t *patch = json_object();
    const char *key;
    json_t *v;
    json_object_foreach((json_t *)from, key, v)
    {
        if (json_object_get(to, key) == NULL)
            json_object_set_new(patch, key, json_null());
    }
    json_object_foreach((json_t *)to, key, v)
    {
        json_t *old = json_object_get(from, key);
        if (old != NULL && json_equal(old, v))
            continue;
        json_t *sub = old != NULL && json_is_object(old) && json_is_object(v) ? ctl_merge_diff(old, v) : json_deep_copy(v);
        /* RFC 7386 cannot set a value to null: null means remove. The config document has no nulls. */
        json_object_set_new(patch, key, sub);
    }
    return patch;
}

char *ctl_error_with_ids(const char *msg, const json_t *doc)
{
    /* the leading path: segments and [N] up to ": " */
    size_t n = 0;
    while (msg[n] != '\0' && msg[n] != ':' && msg[n] != ' ')
        n++;
    if (n == 0 || msg[n] != ':' || memchr(msg, '[', n) == NULL)
        return strdup(msg);
    char *out = NULL;
    const json_t *cur = doc;
    size_t i = 0;
    while (i < n) {
        char seg[128];
        if (msg[i] == '[') {
            size_t k = i + 1;
            while (k < n && isdigit((unsigned char)msg[k]))
                k++;
            if (k == i + 1 || k >= n || msg[k] != ']' || k - i - 1 >= sizeof(seg))
                goto Asis;
            snprintf(seg, sizeof(seg), "%.*s", (int)(k - i - 1), msg + i + 1);
            const json_t *item = json_is_array(cur) ? json_array_get(cur, strtoul(seg, NULL, 10)) : NULL;
            const char *id = json_string_value(json_object_get(item, "id"));
            if (cfg_path_append(&out, id != NULL ? id : seg) != 0)
                goto Asis;
            cur = item;
            i = k + 1;
        } else {
            if (msg[i] == '.')
                i++;
            size_t k = i;
            while (k < n && msg[k] != '.' && msg[k] != '[')
                k++;
            if (k == i || k - i >= sizeof(seg))
                goto Asis;
            snprintf(seg, sizeof(seg), "%.*s", (int)(k - i), msg + i);
            if (cfg_path_append(&out, seg) != 0)
                goto Asis;
            cur = json_is_object(cur) ? json_object_get(cur, seg) : NULL;
            i = k;
        }
    }
    size_t len = strlen(out) + strlen(msg + n) + 1;
    char *res = malloc(len);
    if (res != NULL)
        snprintf(res, len, "%s%s", out, msg + n);
    free(out);
    return res;
Asis:
    free(out);
    return strdup(msg);
}
