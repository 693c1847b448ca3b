#include "cp_body.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include "cfg.h"
#include "cp_rollout.h"

int cp_parse_version(const char *s, size_t len, int allow_zero, int64_t *out)
{
    if (len == 0 || len > 16)
        return -1;
    int64_t v = 0;
    for (size_t i = 0; i < len; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        v = v * 10 + (s[i] - '0');
    }
    if (v > CP_MAX_VERSION || (v == 0 && !allow_zero))
        return -1;
    *out = v;
    return 0;
}

int cp_valid_id(const char *s, size_t len)
{
    if (len < 1 || len > 64)
        return 0;
    for (size_t i = 0; i < len; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' || c == '.' || c == '-'))
            return 0;
    }
    return 1;
}

int cp_valid_tag_name(const char *s, size_t len)
{
    if (!cp_valid_id(s, len))
        return 0;
    for (size_t i = 0; i < len; i++)
        if (s[i] < '0' || s[i] > '9')
            return 1;
    return 0;
}

static const char *skip_ows(const char *p, const char *end)
{
    while (p < end && (*p == ' ' || *p == '\t'))
        ++p;
    return p;
}

int cp_if_match_holds(const char *value, size_t len, int64_t active, int weak)
{
    const char *p = value, *end = value + len;
    while (p < end) {
        p = skip_ows(p, end);
        const char *item = p;
        while (p < end && *p != ',')
            ++p;
        const char *item_end = p;
        while (item_end > item && (item_end[-1] == ' ' || item_end[-1] == '\t'))
            --item_end;
        if (p < end)
            ++p; /* the comma */
        size_t n = (size_t)(item_end - item);
        if (n == 1 && item[0] == '*') {
            if (active > 0)
                return 1;
            continue;
        }
        if (n >= 2 && item[0] == 'W' && item[1] == '/') {
            if (!weak)
                continue; /* a weak tag is never a strong match */
            item += 2;
            n -= 2;
        }
        if (n >= 2 && item[0] == '"' && item[n - 1] == '"') {
            ++item;
            n -= 2;
        }
        int64_t v;
        if (cp_parse_version(item, n, 1, &v) == 0 && v == active)
            return 1;
    }
    return 0;
}

cp_ctype_t cp_content_type(const char *value, size_t len)
{
    if (value == NULL)
        return CP_CTYPE_NONE;
    const char *end = value + len, *p = skip_ows(value, end);
    const char *semi = memchr(p, ';', (size_t)(end - p));
    const char *mt_end = semi != NULL ? semi : end;
    while (mt_end > p && (mt_end[-1] == ' ' || mt_end[-1] == '\t'))
        --mt_end;
    size_t n = (size_t)(mt_end - p);
#define IS(lit) (n == sizeof(lit) - 1 && strncasecmp(p, lit, n) == 0)
    if (IS("application/merge-patch+json"))
        return CP_CTYPE_MERGE_PATCH;
    if (IS("application/json"))
        return CP_CTYPE_JSON;
    if (IS("application/yaml") || IS("application/x-yaml") || IS("text/yaml") || IS("text/x-yaml"))
        return CP_CTYPE_YAML;
#undef IS
    return CP_CTYPE_OTHER;
}

int cp_accepts_yaml(const char *value, size_t len)
{
    /* the first media range that names JSON or YAML decides; q-values are not weighed, as no
     * client asks for both with different weights */
    const char *p = value, *end = value + len;
    while (p < end) {
        p = skip_ows(p, end);
        const char *item = p;
        while (p < end && *p != ',' && *p != ';')
            ++p;
        size_t n = (size_t)(p - item);
        while (n > 0 && (item[n - 1] == ' ' || item[n - 1] == '\t'))
            --n;
        while (p < end && *p != ',')
            ++p;
        if (p < end)
            ++p;
#define IS(lit) (n == sizeof(lit) - 1 && strncasecmp(item, lit, n) == 0)
        if (IS("application/yaml") || IS("application/x-yaml") || IS("text/yaml") || IS("text/x-yaml"))
            return 1;
        if (IS("application/json"))
            return 0;
#undef IS
    }
    return 0;
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* Percent-decodes (and '+' as space) into a new NUL-terminated string; NULL on a bad escape. */
static char *decode_component(const char *s, size_t len, size_t *outlen)
{
    char *out = malloc(len + 1), *o = out;
    if (out == NULL)
        return NULL;
    for (size_t i = 0; i < len; i++) {
        if (s[i] == '%') {
            int hi, lo;
            if (i + 2 >= len || (hi = hexval(s[i + 1])) < 0 || (lo = hexval(s[i + 2])) < 0) {
                free(out);
                return NULL;
            }
            *o++ = (char)(hi * 16 + lo);
            i += 2;
        } else if (s[i] == '+') {
            *o++ = ' ';
        } else {
            *o++ = s[i];
        }
    }
    *o = '\0';
    *outlen = (size_t)(o - out);
    return out;
}

void cp_query_dispose(cp_query_t *q)
{
    for (size_t i = 0; i < q->size; i++) {
        free(q->names[i]);
        free(q->values[i]);
    }
    memset(q, 0, sizeof(*q));
}

int cp_query_parse(const char *s, size_t len, const char *const *allowed, cp_query_t *q, char *err, size_t errlen)
{
    memset(q, 0, sizeof(*q));
    const char *p = s, *end = s + len;
    while (p < end) {
        const char *item = p;
        while (p < end && *p != '&')
            ++p;
        const char *item_end = p;
        if (p < end)
            ++p;
        if (item_end == item)
            continue;
        const char *eq = memchr(item, '=', (size_t)(item_end - item));
        const char *name_end = eq != NULL ? eq : item_end;
        size_t nlen, vlen;
        char *name = decode_component(item, (size_t)(name_end - item), &nlen);
        char *value = eq != NULL ? decode_component(eq + 1, (size_t)(item_end - eq - 1), &vlen) : strdup("");
        if (eq == NULL)
            vlen = 0;
        if (name == NULL || value == NULL) {
            free(name);
            free(value);
            snprintf(err, errlen, "query: bad percent-encoding");
            goto Error;
        }
        int known = 0;
        for (size_t i = 0; allowed != NULL && allowed[i] != NULL; i++)
            if (strlen(allowed[i]) == nlen && memcmp(allowed[i], name, nlen) == 0)
                known = 1;
        if (!known || strlen(name) != nlen) {
            snprintf(err, errlen, "query: unknown parameter \"%.64s\"", name);
            free(name);
            free(value);
            goto Error;
        }
        for (size_t i = 0; i < q->size; i++) {
            if (strcmp(q->names[i], name) == 0) {
                snprintf(err, errlen, "query: parameter \"%s\" given twice", name);
                free(name);
                free(value);
                goto Error;
            }
        }
        if (q->size == CP_MAX_QUERY_PARAMS) {
            free(name);
            free(value);
            snprintf(err, errlen, "query: too many parameters");
            goto Error;
        }
        q->names[q->size] = name;
        q->values[q->size] = value;
        q->value_lens[q->size] = vlen;
        q->size++;
    }
    return 0;
Error:
    cp_query_dispose(q);
    return -1;
}

const char *cp_query_get(const cp_query_t *q, const char *name, size_t *len)
{
    for (size_t i = 0; i < q->size; i++) {
        if (strcmp(q->names[i], name) == 0) {
            if (len != NULL)
                *len = q->value_lens[i];
            return q->values[i];
        }
    }
    return NULL;
}

int cp_valid_message(const char *s, size_t len, const char **err)
{
    if (len > CP_MAX_MESSAGE) {
        *err = "message: at most 1024 bytes";
        return -1;
    }
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if ((c < 0x20 && c != '\t') || c == 0x7f) {
            *err = "message: control characters are not allowed";
            return -1;
        }
    }
    /* jansson's UTF-8 check: the message is later stored and served as a JSON string */
    json_t *probe = json_stringn(s, len);
    if (probe == NULL) {
        *err = "message: must be UTF-8";
        return -1;
    }
    json_decref(probe);
    return 0;
}

int cp_parse_wait(const char *s, size_t len, uint64_t *ms, const char **err)
{
    char buf[32];
    if (len == 0 || len >= sizeof(buf) || memchr(s, '\0', len) != NULL) {
        *err = "wait: must be a duration such as 30s";
        return -1;
    }
    memcpy(buf, s, len);
    buf[len] = '\0';
    if (strspn(buf, "0123456789") == len) {
        if (len > 9) {
            *err = "wait: too long";
            return -1;
        }
        *ms = strtoull(buf, NULL, 10) * 1000;
        return 0;
    }
    const char *why = NULL;
    if (cfg_parse_duration(buf, ms, &why) != 0) {
        *err = "wait: must be a duration such as 30s, 250ms or 2m";
        return -1;
    }
    return 0;
}

json_t *cp_parse_json_object(const char *body, size_t len, char *err, size_t errlen)
{
    json_error_t jerr;
    json_t *v = json_loadb(body, len, JSON_REJECT_DUPLICATES, &jerr);
    if (v == NULL) {
        snprintf(err, errlen, "body: invalid JSON at line %d, column %d: %s", jerr.line, jerr.column, jerr.text);
        return NULL;
    }
    if (!json_is_object(v)) {
        snprintf(err, errlen, "body: must be a JSON object");
        json_decref(v);
        return NULL;
    }
    return v;
}

/* Checks that `obj` has no key outside `allowed`. */
static int only_keys(json_t *obj, const char *const *allowed, char *err, size_t errlen)
{
    const char *key;
    json_t *v;
    json_object_foreach(obj, key, v)
    {
        int ok = 0;
        for (size_t i = 0; allowed[i] != NULL; i++)
            if (strcmp(key, allowed[i]) == 0)
                ok = 1;
        if (!ok) {
            snprintf(err, errlen, "%.64s: unknown field", key);
            return -1;
        }
    }
    return 0;
}

/* An optional "message" string field into *out (NULL when absent). */
static int get_message(json_t *obj, char **out, char *err, size_t errlen)
{
    json_t *m = json_object_get(obj, "message");
    *out = NULL;
    if (m == NULL || json_is_null(m))
        return 0;
    const char *why = NULL;
    if (!json_is_string(m)) {
        snprintf(err, errlen, "message: must be a string");
        return -1;
    }
    if (cp_valid_message(json_string_value(m), json_string_length(m), &why) != 0) {
        snprintf(err, errlen, "%s", why);
        return -1;
    }
    if ((*out = strndup(json_string_value(m), json_string_length(m))) == NULL) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    return 0;
}

/* A JSON version number field: integer 1..CP_MAX_VERSION (0 allowed when allow_zero). */
static int get_version(json_t *obj, const char *key, int allow_zero, int64_t *out, char *err, size_t errlen)
{
    json_t *v = json_object_get(obj, key);
    if (v == NULL) {
        snprintf(err, errlen, "%s: required", key);
        return -1;
    }
    if (!json_is_integer(v) || json_integer_value(v) < (allow_zero ? 0 : 1) || json_integer_value(v) > CP_MAX_VERSION) {
        snprintf(err, errlen, "%s: must be a version number (an integer from %d)", key, allow_zero ? 0 : 1);
        return -1;
    }
    *out = json_integer_value(v);
    return 0;
}

void cp_rollback_req_dispose(cp_rollback_req_t *r)
{
    free(r->to_tag);
    free(r->message);
    memset(r, 0, sizeof(*r));
}

int cp_parse_rollback(const char *body, size_t len, cp_rollback_req_t *out, char *err, size_t errlen)
{
    /* rollout and force are the rollout's (cp_rollout_engine.c reads them) */
    static const char *const keys[] = {"to", "message", "rollout", "force", NULL};
    memset(out, 0, sizeof(*out));
    json_t *obj = cp_parse_json_object(body, len, err, errlen);
    if (obj == NULL)
        return -1;
    int ret = -1;
    if (only_keys(obj, keys, err, errlen) != 0)
        goto Exit;
    json_t *to = json_object_get(obj, "to");
    if (to == NULL) {
        snprintf(err, errlen, "to: required (a version number or a tag name)");
        goto Exit;
    }
    if (json_is_integer(to)) {
        if (get_version(obj, "to", 0, &out->to_version, err, errlen) != 0)
            goto Exit;
    } else if (json_is_string(to)) {
        if (!cp_valid_tag_name(json_string_value(to), json_string_length(to))) {
            snprintf(err, errlen, "to: a tag name is 1-64 characters of A-Z a-z 0-9 _ . - and not only digits");
            goto Exit;
        }
        if ((out->to_tag = strdup(json_string_value(to))) == NULL) {
            snprintf(err, errlen, "out of memory");
            goto Exit;
        }
    } else {
        snprintf(err, errlen, "to: must be a version number or a tag name");
        goto Exit;
    }
    if (get_message(obj, &out->message, err, errlen) != 0)
        goto Exit;
    ret = 0;
Exit:
    json_decref(obj);
    if (ret != 0)
        cp_rollback_req_dispose(out);
    return ret;
}

void cp_tag_req_dispose(cp_tag_req_t *r)
{
    free(r->message);
    memset(r, 0, sizeof(*r));
}

int cp_parse_tag(const char *body, size_t len, cp_tag_req_t *out, char *err, size_t errlen)
{
    static const char *const keys[] = {"version", "message", NULL};
    memset(out, 0, sizeof(*out));
    json_t *obj = cp_parse_json_object(body, len, err, errlen);
    if (obj == NULL)
        return -1;
    int ret = -1;
    if (only_keys(obj, keys, err, errlen) == 0 && get_version(obj, "version", 0, &out->version, err, errlen) == 0 &&
        get_message(obj, &out->message, err, errlen) == 0)
        ret = 0;
    json_decref(obj);
    if (ret != 0)
        cp_tag_req_dispose(out);
    return ret;
}

void cp_status_req_dispose(cp_status_req_t *r)
{
    free(r->error);
    json_decref(r->labels);
    json_decref(r->stats);
    json_decref(r->traffic);
    memset(r, 0, sizeof(*r));
}

/* A JSON string of 64 lowercase hex digits (the form of every document hash). */
static int is_sha256_hex(const json_t *v)
{
    if (!json_is_string(v) || json_string_length(v) != 64)
        return 0;
    const char *s = json_string_value(v);
    for (size_t i = 0; i < 64; i++)
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
            return 0;
    return 1;
}

int cp_check_labels(const json_t *labels, const char *where, char *err, size_t errlen)
{
    if (!json_is_object(labels) || json_object_size(labels) > CP_MAX_LABELS) {
        snprintf(err, errlen, "%s: must be an object of at most %d string values", where, CP_MAX_LABELS);
        return -1;
    }
    const char *k;
    json_t *v;
    json_object_foreach((json_t *)labels, k, v)
    {
        if (!cp_valid_id(k, strlen(k)) || !json_is_string(v) || json_string_length(v) > CP_MAX_LABEL_LEN ||
            strlen(json_string_value(v)) != json_string_length(v)) {
            snprintf(err, errlen, "%s.%.64s: names are [A-Za-z0-9_.-]{1,64}, values strings of at most %d bytes", where, k,
                     CP_MAX_LABEL_LEN);
            return -1;
        }
    }
    return 0;
}

int cp_parse_status(const char *body, size_t len, cp_status_req_t *out, char *err, size_t errlen)
{
    static const char *const keys[] = {"version", "applied", "error", "hash", "labels", "stats", "traffic", NULL};
    memset(out, 0, sizeof(*out));
    json_t *obj = cp_parse_json_object(body, len, err, errlen);
    if (obj == NULL)
        return -1;
    int ret = -1;
    if (only_keys(obj, keys, err, errlen) != 0 || get_version(obj, "version", 1, &out->version, err, errlen) != 0)
        goto Exit;
    json_t *applied = json_object_get(obj, "applied");
    if (applied == NULL) {
        snprintf(err, errlen, "applied: required (true for an ACK, false for a NACK)");
        goto Exit;
    }
    if (!json_is_boolean(applied)) {
        snprintf(err, errlen, "applied: must be true or false");
        goto Exit;
    }
    out->applied = json_is_true(applied);
    json_t *e = json_object_get(obj, "error");
    if (e != NULL && !json_is_null(e)) {
        if (!json_is_string(e) || json_string_length(e) == 0 || json_string_length(e) > 4096 ||
            strlen(json_string_value(e)) != json_string_length(e)) {
            snprintf(err, errlen, "error: must be a non-empty string of at most 4096 bytes");
            goto Exit;
        }
        if (out->applied) {
            snprintf(err, errlen, "error: only a NACK (applied: false) carries an error");
            goto Exit;
        }
        if ((out->error = strdup(json_string_value(e))) == NULL) {
            snprintf(err, errlen, "out of memory");
            goto Exit;
        }
    } else if (!out->applied) {
        snprintf(err, errlen, "error: required when applied is false (why the version was rejected)");
        goto Exit;
    }
    if (!out->applied && out->version == 0) {
        snprintf(err, errlen, "version: a NACK names the version it rejected (0 is no version)");
        goto Exit;
    }
    json_t *labels = json_object_get(obj, "labels");
    if (labels != NULL && !json_is_null(labels)) {
        if (cp_check_labels(labels, "labels", err, errlen) != 0)
            goto Exit;
        out->labels = json_incref(labels);
    }
    json_t *traffic = json_object_get(obj, "traffic");
    if (traffic != NULL && !json_is_null(traffic)) {
        int64_t tv;
        cp_traffic_t t;
        if (cp_traffic_parse(traffic, &tv, &t, err, errlen) != 0)
            goto Exit;
        out->traffic = json_incref(traffic);
    }
    json_t *stats = json_object_get(obj, "stats");
    if (stats != NULL && !json_is_null(stats)) {
        if (!json_is_object(stats)) {
            snprintf(err, errlen, "stats: must be an object");
            goto Exit;
        }
        /* stored as sent and shown in every listing: bound it well below max_body */
        size_t size = json_dumpb(stats, NULL, 0, JSON_COMPACT | JSON_SORT_KEYS);
        if (size == 0 || size > CP_MAX_STATS) {
            snprintf(err, errlen, "stats: larger than %d bytes as compact JSON", CP_MAX_STATS);
            goto Exit;
        }
        out->stats = json_incref(stats);
    }
    json_t *hash = json_object_get(obj, "hash");
    if (hash != NULL && !json_is_null(hash)) {
        if (!is_sha256_hex(hash)) {
            snprintf(err, errlen, "hash: must be the SHA-256 of the fleet document served (64 lowercase hex digits)");
            goto Exit;
        }
    } else {
        hash = json_object_get(stats, "hash");
        if (!is_sha256_hex(hash))
            hash = NULL;
    }
    if (hash != NULL)
        memcpy(out->hash, json_string_value(hash), 65);
    ret = 0;
Exit:
    json_decref(obj);
    if (ret != 0)
        cp_status_req_dispose(out);
    return ret;
}
