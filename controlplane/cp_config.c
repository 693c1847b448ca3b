/*
 * The control plane's own config file. Small enough that a key table would be heavier than the
 * decoder; every error still names its key, unknown keys are errors, and every value is bounded.
 */
#include "cp_config.h"
#include "cp_store.h"
#include "cp_rollout.h"

#include <errno.h>
#include <fnmatch.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <openssl/crypto.h>
#include <openssl/sha.h>
#include "pw_log.h"

static const char *const role_names[] = {"admin", "viewer", "dataplane"};

const char *cp_role_name(cp_role_t role)
{
    return (size_t)role < sizeof(role_names) / sizeof(role_names[0]) ? role_names[role] : "?";
}

void cp_token_hash(const char *token, size_t len, unsigned char out[32])
{
    SHA256((const unsigned char *)token, len, out);
}

int cp_parse_hostport(const char *s, char **host, uint16_t *port, const char **err)
{
    const char *colon, *host_start = s, *host_end;
    if (s[0] == '[') {
        const char *close = strchr(s, ']');
        if (close == NULL || close[1] != ':') {
            *err = "must be host:port or [ipv6]:port";
            return -1;
        }
        host_start = s + 1;
        host_end = close;
        colon = close + 1;
    } else {
        colon = strrchr(s, ':');
        if (colon == NULL || memchr(s, ':', (size_t)(colon - s)) != NULL) {
            *err = "must be host:port or [ipv6]:port";
            return -1;
        }
        host_end = colon;
    }
    if (host_end == host_start) {
        *err = "the host is empty";
        return -1;
    }
    const char *p = colon + 1;
    if (*p == '\0' || strspn(p, "0123456789") != strlen(p) || strlen(p) > 5) {
        *err = "the port must be a number between 1 and 65535";
        return -1;
    }
    long v = strtol(p, NULL, 10);
    if (v < 1 || v > 65535) {
        *err = "the port must be a number between 1 and 65535";
        return -1;
    }
    *host = strndup(host_start, (size_t)(host_end - host_start));
    if (*host == NULL) {
        *err = "out of memory";
        return -1;
    }
    *port = (uint16_t)v;
    return 0;
}

/* `path` as given, or joined to base_dir when relative. Caller frees. */
static char *resolve_path(const char *base_dir, const char *path)
{
    if (path[0] == '/' || base_dir == NULL || base_dir[0] == '\0')
        return strdup(path);
    size_t len = strlen(base_dir) + strlen(path) + 2;
    char *out = malloc(len);
    if (out != NULL)
        snprintf(out, len, "%s/%s", base_dir, path);
    return out;
}

/* Reads a token file: the token is its content without surrounding whitespace. Returns 0, or -1
 * with a message in errs naming `key`. */
static int read_token_file(const char *path, const char *key, cfg_errors_t *errs, unsigned char hash[32])
{
    FILE *fp = fopen(path, "rb");
    if (fp == NULL) {
        cfg_errors_add(errs, "%s: cannot read %s: %s", key, path, strerror(errno));
        return -1;
    }
    char buf[4097];
    size_t len = fread(buf, 1, sizeof(buf) - 1, fp);
    int too_long = !feof(fp) && fgetc(fp) != EOF;
    fclose(fp);
    if (too_long) {
        OPENSSL_cleanse(buf, sizeof(buf));
        cfg_errors_add(errs, "%s: %s is longer than 4096 bytes", key, path);
        return -1;
    }
    buf[len] = '\0';
    size_t start = 0;
    while (start < len && strchr(" \t\r\n", buf[start]) != NULL)
        ++start;
    while (len > start && strchr(" \t\r\n", buf[len - 1]) != NULL)
        --len;
    const char *tok = buf + start, *bad = NULL;
    size_t toklen = len - start;
    for (size_t i = 0; i < toklen && bad == NULL; i++) {
        unsigned char c = (unsigned char)tok[i];
        if (c <= 0x20 || c >= 0x7f)
            bad = "a token is printable ASCII without spaces";
    }
    if (bad == NULL && toklen < CP_MIN_TOKEN_LEN)
        bad = "a token must have at least " CP_MIN_TOKEN_LEN_STR " characters";
    if (bad != NULL) {
        OPENSSL_cleanse(buf, sizeof(buf));
        cfg_errors_add(errs, "%s: %s: %s", key, path, bad);
        return -1;
    }
    cp_token_hash(tok, toklen, hash);
    OPENSSL_cleanse(buf, sizeof(buf));
    return 0;
}

static int parse_hex_hash(const char *s, unsigned char out[32])
{
    if (strlen(s) != 64)
        return -1;
    for (size_t i = 0; i < 32; i++) {
        unsigned v = 0;
        for (size_t j = 0; j < 2; j++) {
            char c = s[i * 2 + j];
            v <<= 4;
            if (c >= '0' && c <= '9')
                v |= (unsigned)(c - '0');
            else if (c >= 'a' && c <= 'f')
                v |= (unsigned)(c - 'a' + 10);
            else if (c >= 'A' && c <= 'F')
                v |= (unsigned)(c - 'A' + 10);
            else
                return -1;
        }
        out[i] = (unsigned char)v;
    }
    return 0;
}

static int valid_name(const char *s)
{
    size_t len = strlen(s);
    return len >= 1 && len <= 64 && strspn(s, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.-") == len;
}

/* A string value of `obj[key]`, or NULL (error added when present but not a non-empty string). */
static const char *get_string(json_t *obj, const char *key, const char *path, cfg_errors_t *errs)
{
    json_t *v = json_object_get(obj, key);
    if (v == NULL || json_is_null(v))
        return NULL;
    if (!json_is_string(v) || json_string_length(v) == 0 || strlen(json_string_value(v)) != json_string_length(v)) {
        cfg_errors_add(errs, "%s%s%s: must be a non-empty string", path, path[0] ? "." : "", key);
        return NULL;
    }
    return json_string_value(v);
}

/* Reads a size or duration given as an integer or a string with units. */
static void get_unit(json_t *obj, const char *key, int is_size, uint64_t min, uint64_t max, uint64_t *out, cfg_errors_t *errs)
{
    json_t *v = json_object_get(obj, key);
    if (v == NULL || json_is_null(v))
        return;
    uint64_t val;
    const char *err = NULL;
    if (json_is_integer(v)) {
        if (json_integer_value(v) < 0) {
            cfg_errors_add(errs, "%s: must not be negative", key);
            return;
        }
        val = (uint64_t)json_integer_value(v);
        if (!is_size) {
            /* a bare number of a duration is seconds, as operators write "30" meaning 30s */
            if (val > UINT64_MAX / 1000) {
                cfg_errors_add(errs, "%s: too large", key);
                return;
            }
            val *= 1000;
        }
    } else if (json_is_string(v)) {
        int rc = is_size ? cfg_parse_size(json_string_value(v), &val, &err) : cfg_parse_duration(json_string_value(v), &val, &err);
        if (rc != 0) {
            cfg_errors_add(errs, "%s: %s", key, err != NULL ? err : "invalid value");
            return;
        }
    } else {
        cfg_errors_add(errs, "%s: must be %s", key, is_size ? "a size such as 1MiB" : "a duration such as 30s");
        return;
    }
    if (val < min || val > max) {
        char lo[32], hi[32];
        if (is_size) {
            cfg_format_size(min, lo, sizeof(lo));
            cfg_format_size(max, hi, sizeof(hi));
        } else {
            cfg_format_duration(min, lo, sizeof(lo));
            cfg_format_duration(max, hi, sizeof(hi));
        }
        cfg_errors_add(errs, "%s: must be between %s and %s", key, lo, hi);
        return;
    }
    *out = val;
}

/* Reads a plain count (an integer) within [min, max]. */
static void get_count(json_t *obj, const char *key, uint64_t min, uint64_t max, uint64_t *out, cfg_errors_t *errs)
{
    json_t *v = json_object_get(obj, key);
    if (v == NULL || json_is_null(v))
        return;
    if (!json_is_integer(v) || json_integer_value(v) < (json_int_t)min || json_integer_value(v) > (json_int_t)max) {
        cfg_errors_add(errs, "%s: must be an integer from %llu to %llu", key, (unsigned long long)min, (unsigned long long)max);
        return;
    }
    *out = (uint64_t)json_integer_value(v);
}

static void decode_token(json_t *item, size_t index, const char *base_dir, cp_config_t *conf, cfg_errors_t *errs)
{
    char path[64];
    snprintf(path, sizeof(path), "tokens[%zu]", index);
    if (!json_is_object(item)) {
        cfg_errors_add(errs, "%s: must be a mapping with name, role and file or sha256", path);
        return;
    }
    const char *key;
    json_t *v;
    json_object_foreach(item, key, v)
    {
        if (strcmp(key, "name") != 0 && strcmp(key, "role") != 0 && strcmp(key, "file") != 0 && strcmp(key, "sha256") != 0 &&
            strcmp(key, "ids") != 0)
            cfg_errors_add(errs, "%s.%s: unknown key (expected name, role, file, sha256, ids)", path, key);
    }
    size_t before = errs->size;
    const char *name = get_string(item, "name", path, errs);
    const char *role = get_string(item, "role", path, errs);
    const char *file = get_string(item, "file", path, errs);
    const char *sha = get_string(item, "sha256", path, errs);
    if (name == NULL && json_object_get(item, "name") == NULL)
        cfg_errors_add(errs, "%s.name: required", path);
    else if (name != NULL && !valid_name(name))
        cfg_errors_add(errs, "%s.name: must be 1-64 characters of A-Z a-z 0-9 _ . -", path);
    int role_index = -1;
    if (role == NULL && json_object_get(item, "role") == NULL)
        cfg_errors_add(errs, "%s.role: required", path);
    for (size_t i = 0; role != NULL && i < sizeof(role_names) / sizeof(role_names[0]); i++)
        if (strcmp(role, role_names[i]) == 0)
            role_index = (int)i;
    if (role != NULL && role_index < 0)
        cfg_errors_add(errs, "%s.role: must be one of admin, viewer, dataplane", path);
    unsigned char hash[32];
    if (file == NULL && sha == NULL) {
        if (json_object_get(item, "file") == NULL && json_object_get(item, "sha256") == NULL)
            cfg_errors_add(errs, "%s: give the token as file or as sha256", path);
    } else if (file != NULL && sha != NULL) {
        cfg_errors_add(errs, "%s: give file or sha256, not both", path);
    } else if (file != NULL) {
        char key_path[80];
        snprintf(key_path, sizeof(key_path), "%s.file", path);
        char *full = resolve_path(base_dir, file);
        if (full == NULL)
            cfg_errors_add(errs, "%s: out of memory", key_path);
        else
            read_token_file(full, key_path, errs, hash);
        free(full);
    } else if (parse_hex_hash(sha, hash) != 0) {
        cfg_errors_add(errs, "%s.sha256: must be 64 hexadecimal digits (the SHA-256 of the token)", path);
    }
    json_t *ids = json_object_get(item, "ids");
    if (ids != NULL && !json_is_null(ids)) {
        if (role_index >= 0 && role_index != CP_ROLE_DATAPLANE)
            cfg_errors_add(errs, "%s.ids: only a token of role dataplane is limited to dataplane ids", path);
        else if (!json_is_array(ids) || json_array_size(ids) == 0 || json_array_size(ids) > 1000)
            cfg_errors_add(errs, "%s.ids: must be a list of 1 to 1000 id patterns (fnmatch globs such as \"eu-*\")", path);
        size_t i;
        json_t *pat;
        json_array_foreach(json_is_array(ids) ? ids : NULL, i, pat)
        {
            /* the characters of an id, plus the glob's own * ? [ ] ! */
            if (!json_is_string(pat) || json_string_length(pat) == 0 || json_string_length(pat) > 128 ||
                strlen(json_string_value(pat)) != json_string_length(pat) ||
                strspn(json_string_value(pat), "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.-*?[]!") !=
                    json_string_length(pat))
                cfg_errors_add(errs, "%s.ids[%zu]: must be a pattern of 1-128 characters of A-Z a-z 0-9 _ . - * ? [ ] !", path, i);
        }
    }
    if (errs->size != before)
        return;
    for (size_t i = 0; i < conf->num_tokens; i++) {
        if (strcmp(conf->tokens[i].name, name) == 0) {
            cfg_errors_add(errs, "%s.name: \"%s\" is already used by tokens[%zu]", path, name, i);
            return;
        }
        if (memcmp(conf->tokens[i].hash, hash, sizeof(hash)) == 0) {
            cfg_errors_add(errs, "%s: the same token as tokens[%zu]", path, i);
            return;
        }
    }
    cp_token_t *t = &conf->tokens[conf->num_tokens];
    if ((t->name = strdup(name)) == NULL) {
        cfg_errors_add(errs, "%s: out of memory", path);
        return;
    }
    t->role = (cp_role_t)role_index;
    memcpy(t->hash, hash, sizeof(hash));
    conf->num_tokens++;
    if (ids != NULL && json_is_array(ids)) {
        if ((t->ids = calloc(json_array_size(ids), sizeof(t->ids[0]))) == NULL) {
            cfg_errors_add(errs, "%s: out of memory", path);
            return;
        }
        size_t i;
        json_t *pat;
        json_array_foreach(ids, i, pat)
        {
            if ((t->ids[t->num_ids] = strdup(json_string_value(pat))) == NULL) {
                cfg_errors_add(errs, "%s: out of memory", path);
                return;
            }
            t->num_ids++;
        }
    }
}

cp_config_t *cp_config_decode(json_t *tree, const char *base_dir, cfg_errors_t *errs)
{
    size_t before = errs->size;
    if (!json_is_object(tree)) {
        cfg_errors_add(errs, "the control plane config must be a mapping");
        return NULL;
    }
    cp_config_t *conf = calloc(1, sizeof(*conf));
    if (conf == NULL) {
        cfg_errors_add(errs, "out of memory");
        return NULL;
    }
    conf->max_body = CP_DEFAULT_MAX_BODY;
    conf->heartbeat_ms = CP_DEFAULT_HEARTBEAT_MS;
    conf->max_wait_ms = CP_DEFAULT_MAX_WAIT_MS;
    conf->max_conns = CP_DEFAULT_MAX_CONNECTIONS;
    conf->max_dataplanes = CP_DEFAULT_MAX_DATAPLANES;
    conf->req_timeout_ms = CP_DEFAULT_REQUEST_TIMEOUT_MS;
    conf->log_level = PW_LOG_INFO;

    static const char *const keys[] = {"listen",
                                       "database",
                                       "max_body",
                                       "heartbeat_timeout",
                                       "max_wait",
                                       "max_connections",
                                       "reserved_connections",
                                       "max_long_polls",
                                       "max_dataplanes",
                                       "request_timeout",
                                       "log_level",
                                       "tokens",
                                       "rollout"};
    const char *key;
    json_t *v;
    json_object_foreach(tree, key, v)
    {
        size_t i;
        for (i = 0; i < sizeof(keys) / sizeof(keys[0]); i++)
            if (strcmp(key, keys[i]) == 0)
                break;
        if (i == sizeof(keys) / sizeof(keys[0]))
            cfg_errors_add(errs,
                           "%s: unknown key (expected listen, database, max_body, heartbeat_timeout, max_wait, max_connections, "
                           "reserved_connections, max_long_polls, max_dataplanes, request_timeout, log_level, tokens, rollout)",
                           key);
    }

    const char *listen = get_string(tree, "listen", "", errs);
    const char *err = NULL;
    if (cp_parse_hostport(listen != NULL ? listen : CP_DEFAULT_LISTEN, &conf->listen_host, &conf->listen_port, &err) != 0)
        cfg_errors_add(errs, "listen: %s", err);

    const char *db = get_string(tree, "database", "", errs);
    char why[256];
    if (db != NULL && cp_store_is_url(db)) {
        /* PostgreSQL: a URL, taken as it is (libpq reads it) */
        if (cp_store_check_url(db, why, sizeof(why)) != 0)
            cfg_errors_add(errs, "database: %s", why);
        else if ((conf->database = strdup(db)) == NULL)
            cfg_errors_add(errs, "database: out of memory");
    } else if ((conf->database = resolve_path(base_dir, db != NULL ? db : CP_DEFAULT_DATABASE)) == NULL) {
        cfg_errors_add(errs, "database: out of memory");
    }

    /* the upper bound keeps one request's buffering within what the config document allows */
    get_unit(tree, "max_body", 1, 1024, CFG_MAX_DOCUMENT_SIZE, &conf->max_body, errs);
    get_unit(tree, "heartbeat_timeout", 0, 1000, 24 * 3600 * 1000ull, &conf->heartbeat_ms, errs);
    get_unit(tree, "max_wait", 0, 1000, 3600 * 1000ull, &conf->max_wait_ms, errs);
    /* slow clients are cut at request_timeout: each connection buffers at most max_body meanwhile */
    get_unit(tree, "request_timeout", 0, 1000, 300 * 1000ull, &conf->req_timeout_ms, errs);
    get_count(tree, "max_connections", 2, 65536, &conf->max_conns, errs);
    get_count(tree, "max_dataplanes", 1, 1000000, &conf->max_dataplanes, errs);
    /* parked long polls hold their connections for minutes: they must never take the last ones,
     * or a fleet locks out the operators (and /healthz) */
    conf->reserved_conns =
        conf->max_conns / 2 < CP_DEFAULT_RESERVED_CONNECTIONS ? conf->max_conns / 2 : CP_DEFAULT_RESERVED_CONNECTIONS;
    get_count(tree, "reserved_connections", 1, 65535, &conf->reserved_conns, errs);
    conf->max_long_polls = conf->max_conns > conf->reserved_conns ? conf->max_conns - conf->reserved_conns : 0;
    get_count(tree, "max_long_polls", 0, 65535, &conf->max_long_polls, errs);
    if (conf->reserved_conns >= conf->max_conns)
        cfg_errors_add(errs, "reserved_connections: must be less than max_connections (%llu)", (unsigned long long)conf->max_conns);
    else if (conf->max_long_polls > conf->max_conns - conf->reserved_conns)
        cfg_errors_add(errs, "max_long_polls: at most max_connections - reserved_connections (%llu - %llu = %llu)",
                       (unsigned long long)conf->max_conns, (unsigned long long)conf->reserved_conns,
                       (unsigned long long)(conf->max_conns - conf->reserved_conns));

    const char *level = get_string(tree, "log_level", "", errs);
    if (level != NULL) {
        int l = pw_log_level_from_name(level);
        if (l < 0)
            cfg_errors_add(errs, "log_level: must be one of debug, info, warn, error, off");
        else
            conf->log_level = l;
    }

    json_t *tokens = json_object_get(tree, "tokens");
    if (tokens == NULL || json_is_null(tokens)) {
        cfg_errors_add(errs, "tokens: required (at least one token with role admin)");
    } else if (!json_is_array(tokens) || json_array_size(tokens) == 0 || json_array_size(tokens) > 1000) {
        cfg_errors_add(errs, "tokens: must be a list of 1 to 1000 tokens");
    } else if ((conf->tokens = calloc(json_array_size(tokens), sizeof(conf->tokens[0]))) == NULL) {
        cfg_errors_add(errs, "tokens: out of memory");
    } else {
        size_t i;
        json_array_foreach(tokens, i, v) decode_token(v, i, base_dir, conf, errs);
    }

    json_t *ro = json_object_get(tree, "rollout");
    if (ro != NULL && !json_is_null(ro)) {
        cp_rollout_spec_t spec;
        char rerr[256];
        if (cp_rollout_spec_parse(ro, "rollout", &spec, rerr, sizeof(rerr)) != 0) {
            cfg_errors_add(errs, "%s", rerr);
        } else {
            cp_rollout_spec_dispose(&spec);
            conf->default_rollout = json_deep_copy(ro);
        }
    }

    if (errs->size != before) {
        cp_config_destroy(conf);
        return NULL;
    }
    return conf;
}

cp_config_t *cp_config_load(const char *path, cfg_errors_t *errs)
{
    size_t len;
    char *buf = cfg_read_file(path, CFG_MAX_DOCUMENT_SIZE, &len);
    if (buf == NULL) {
        if (errno == EFBIG)
            cfg_errors_add(errs, "%s: larger than %u bytes", path, CFG_MAX_DOCUMENT_SIZE);
        else
            cfg_errors_add(errs, "%s: cannot open: %s", path, strerror(errno));
        return NULL;
    }
    cfg_errors_t syntax;
    cfg_errors_init(&syntax);
    json_t *tree = cfg_tree_parse(buf, len, CFG_FORMAT_AUTO, &syntax);
    free(buf);
    for (size_t i = 0; i < syntax.size; i++)
        cfg_errors_add(errs, "%s: %s", path, syntax.entries[i]);
    cfg_errors_dispose(&syntax);
    if (tree == NULL)
        return NULL;

    char *dir = strdup(path);
    if (dir == NULL) {
        json_decref(tree);
        cfg_errors_add(errs, "out of memory");
        return NULL;
    }
    char *slash = strrchr(dir, '/');
    if (slash == NULL)
        dir[0] = '\0';
    else if (slash == dir)
        dir[1] = '\0';
    else
        *slash = '\0';
    cp_config_t *conf = cp_config_decode(tree, dir, errs);
    free(dir);
    json_decref(tree);
    return conf;
}

void cp_config_destroy(cp_config_t *conf)
{
    if (conf == NULL)
        return;
    free(conf->listen_host);
    free(conf->database);
    json_decref(conf->default_rollout);
    for (size_t i = 0; i < conf->num_tokens; i++) {
        free(conf->tokens[i].name);
        for (size_t j = 0; j < conf->tokens[i].num_ids; j++)
            free(conf->tokens[i].ids[j]);
        free(conf->tokens[i].ids);
    }
    free(conf->tokens);
    free(conf);
}

int cp_token_allows_id(const cp_token_t *token, const char *id)
{
    if (token->num_ids == 0)
        return 1;
    for (size_t i = 0; i < token->num_ids; i++)
        if (fnmatch(token->ids[i], id, 0) == 0)
            return 1;
    return 0;
}
