/* Request and response helpers shared by the handlers, and the fleet documents they carry. */

#include "cp_server_internal.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include "pw_http.h"

/* --- responses ----------------------------------------------------------------------------- */

void cp_add_header(cp_call_t *call, const h2o_token_t *token, const char *value)
{
    h2o_req_t *req = call->req;
    h2o_iovec_t v = h2o_strdup(&req->pool, value, strlen(value));
    h2o_add_header(&req->pool, &req->res.headers, token, NULL, v.base, v.len);
}

static void add_header_str(cp_call_t *call, const char *name, const char *value)
{
    h2o_req_t *req = call->req;
    h2o_iovec_t v = h2o_strdup(&req->pool, value, strlen(value));
    h2o_add_header_by_str(&req->pool, &req->res.headers, name, strlen(name), 0, NULL, v.base, v.len);
}

void cp_add_version_headers(cp_call_t *call, int64_t version, const char *hash)
{
    char buf[40];
    snprintf(buf, sizeof(buf), "\"%lld\"", (long long)version);
    cp_add_header(call, H2O_TOKEN_ETAG, buf);
    snprintf(buf, sizeof(buf), "%lld", (long long)version);
    add_header_str(call, "pathway-version", buf);
    if (hash != NULL)
        add_header_str(call, "pathway-hash", hash);
}

void cp_respond_raw(cp_call_t *call, int status, const char *ctype, const char *body, size_t len)
{
    h2o_req_t *req = call->req;
    if (call->answered)
        return;
    call->answered = 1;
    /* once connections reach into the reserve (long polls fill their budget, idle keep-alive
     * connections of heartbeats pile up), keep none open past its answer: the reserve is for the
     * next operator, not for a client that may come back later */
    const cp_config_t *conf = call->srv->conf;
    if (call->srv->num_conns + conf->reserved_conns > conf->max_conns)
        req->http1_is_persistent = 0;
    if (status >= 0 && status < NUM_STATUS)
        call->srv->counts[call->route * NUM_STATUS + (size_t)status]++;
    req->res.status = status;
    req->res.reason = pw_http_reason(status);
    if (ctype != NULL)
        cp_add_header(call, H2O_TOKEN_CONTENT_TYPE, ctype);
    /* API answers are never cached; the console's assets (cp_ui.c) set their own */
    if (h2o_find_header(&req->res.headers, H2O_TOKEN_CACHE_CONTROL, -1) < 0)
        cp_add_header(call, H2O_TOKEN_CACHE_CONTROL, "no-store");
    req->res.content_length = len;
    h2o_send_inline(req, body, len);
}

void cp_respond_json(cp_call_t *call, int status, json_t *body)
{
    char *text = body != NULL ? json_dumps(body, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
    json_decref(body);
    if (text == NULL) {
        static const char oom[] = "{\"error\":\"out of memory\"}\n";
        cp_respond_raw(call, 503, "application/json", oom, sizeof(oom) - 1);
        return;
    }
    size_t len = strlen(text);
    char *withnl = h2o_mem_alloc_pool(&call->req->pool, len + 1);
    memcpy(withnl, text, len);
    withnl[len] = '\n';
    free(text);
    cp_respond_raw(call, status, "application/json", withnl, len + 1);
}

void cp_respond_error(cp_call_t *call, int status, const char *message, json_t *errors)
{
    json_t *body = json_object();
    if (body != NULL) {
        json_t *m = json_string(message);
        json_object_set_new(body, "error", m != NULL ? m : json_string("(message is not UTF-8)"));
        if (errors != NULL)
            json_object_set_new(body, "errors", errors);
    } else {
        json_decref(errors);
    }
    cp_respond_json(call, status, body);
}

void cp_respond_errorf(cp_call_t *call, int status, const char *fmt, ...)
{
    char buf[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof(buf), fmt, ap);
    va_end(ap);
    cp_respond_error(call, status, buf, NULL);
}

void cp_respond_store_error(cp_call_t *call)
{
    /* a store failure is the server's trouble, but it is transient (disk full, lock held): tell the
     * client to retry rather than to give up */
    cp_add_header(call, H2O_TOKEN_RETRY_AFTER, "1");
    cp_respond_errorf(call, 503, "store unavailable: %s", cp_store_errmsg(call->srv->store));
}

/* --- request helpers ----------------------------------------------------------------------- */

h2o_iovec_t *cp_find_header(cp_call_t *call, const h2o_token_t *token)
{
    ssize_t i = h2o_find_header(&call->req->headers, token, -1);
    return i >= 0 ? &call->req->headers.entries[i].value : NULL;
}

static h2o_iovec_t *find_header_str(cp_call_t *call, const char *name)
{
    ssize_t i = h2o_find_header_by_str(&call->req->headers, name, strlen(name), -1);
    return i >= 0 ? &call->req->headers.entries[i].value : NULL;
}

int cp_check_body_size(cp_call_t *call)
{
    if (call->req->entity.len > call->srv->conf->max_body) {
        char lim[32];
        cfg_format_size(call->srv->conf->max_body, lim, sizeof(lim));
        cp_respond_errorf(call, 413, "body: larger than max_body (%s)", lim);
        return -1;
    }
    return 0;
}

cp_ctype_t cp_body_ctype(cp_call_t *call, int accept_yaml, int accept_merge)
{
    h2o_iovec_t *ct = cp_find_header(call, H2O_TOKEN_CONTENT_TYPE);
    cp_ctype_t t = ct != NULL ? cp_content_type(ct->base, ct->len) : CP_CTYPE_NONE;
    if (t == CP_CTYPE_OTHER || (t == CP_CTYPE_YAML && !accept_yaml) || (t == CP_CTYPE_MERGE_PATCH && !accept_merge)) {
        cp_respond_errorf(call, 415, "Content-Type: expected %s",
                          accept_yaml    ? "application/json or application/yaml"
                          : accept_merge ? "application/merge-patch+json or application/json"
                                         : "application/json");
        return CP_CTYPE_OTHER;
    }
    return t;
}

int cp_request_message(cp_call_t *call, const char **msg)
{
    h2o_iovec_t *h = find_header_str(call, "pathway-message");
    size_t qlen = 0;
    const char *q = cp_query_get(&call->query, "message", &qlen);
    *msg = NULL;
    if (h != NULL && q != NULL) {
        cp_respond_error(call, 400, "message: give it in the Pathway-Message header or ?message=, not both", NULL);
        return -1;
    }
    const char *s = h != NULL ? h->base : q;
    size_t len = h != NULL ? h->len : qlen;
    if (s == NULL)
        return 0;
    const char *err = NULL;
    if (cp_valid_message(s, len, &err) != 0) {
        cp_respond_error(call, 400, err, NULL);
        return -1;
    }
    *msg = h2o_strdup(&call->req->pool, s, len).base;
    return 0;
}

int64_t cp_if_match(cp_call_t *call)
{
    h2o_iovec_t *h = cp_find_header(call, H2O_TOKEN_IF_MATCH);
    if (h == NULL)
        return -1;
    int64_t active = cp_store_active_version(call->srv->store);
    if (!cp_if_match_holds(h->base, h->len, active, 0) && cp_store_refresh(call->srv->store) == CP_STORE_OK) {
        /* another replica (PostgreSQL) may have stored the version it names a moment ago */
        active = cp_store_active_version(call->srv->store);
    }
    if (!cp_if_match_holds(h->base, h->len, active, 0)) {
        json_t *body =
            json_pack("{ss sI}", "error", "If-Match does not name the active version", "active_version", (json_int_t)active);
        cp_respond_json(call, 412, body);
        return -2;
    }
    return active;
}

json_t *cp_document_json(const char *text)
{
    return json_loads(text, 0, NULL);
}

json_t *cp_version_json(const cp_version_t *v, int with_document)
{
    char t[32];
    cp_format_time(v->created_ms, t);
    json_t *o = json_pack("{sI ss ss ss ss so ss}", "version", (json_int_t)v->version, "created_at", t, "author", v->author,
                          "message", v->message, "kind", cp_kind_name(v->kind), "source_version",
                          v->source_version > 0 ? json_integer(v->source_version) : json_null(), "hash", v->hash);
    if (o != NULL && with_document && v->document != NULL) {
        json_t *doc = cp_document_json(v->document);
        if (doc == NULL) {
            json_decref(o);
            return NULL;
        }
        json_object_set_new(o, "document", doc);
    }
    return o;
}

void cp_respond_version(cp_call_t *call, cp_version_t *v, json_t *more)
{
    json_t *body = cp_version_json(v, 1);
    if (body != NULL && more != NULL && json_object_update(body, more) != 0) {
        json_decref(body);
        body = NULL;
    }
    json_decref(more);
    cp_add_version_headers(call, v->version, v->hash);
    cp_version_dispose(v);
    if (body != NULL && cp_call_redacts(call)) {
        json_t *red = cfg_redact(json_object_get(body, "document"));
        cp_redact_members(call, body, "message");
        if (red == NULL || json_object_set_new(body, "document", red) != 0) {
            json_decref(body);
            body = NULL;
        }
    }
    if (body == NULL) {
        cp_respond_error(call, 503, "stored document unreadable", NULL);
        return;
    }
    cp_respond_json(call, 200, body);
}

/* --- secrets ---------------------------------------------------------------------------------- */

int cp_call_redacts(cp_call_t *call)
{
    return call->token != NULL && call->token->role == CP_ROLE_VIEWER;
}

/* Where a URL in free text ends: at white space, quotes and angle brackets (a URL has none of them
 * unescaped); erring long only redacts more. */
static size_t url_extent(const char *p)
{
    return strcspn(p, " \t\r\n\"'<>`");
}

const char *cp_redact_text(cp_call_t *call, const char *text)
{
    if (text == NULL)
        return NULL;
    size_t cap = strlen(text) + 1, len = 0;
    char *out = NULL;
    const char *p = text;
    for (;;) {
        const char *hit = NULL;
        for (const char *q = p; *q != '\0' && hit == NULL; q++)
            if (strncasecmp(q, "http://", 7) == 0 || strncasecmp(q, "https://", 8) == 0 || strncasecmp(q, "ws://", 5) == 0 ||
                strncasecmp(q, "wss://", 6) == 0)
                hit = q;
        size_t plain = hit != NULL ? (size_t)(hit - p) : strlen(p);
        char *red = NULL;
        size_t ulen = 0;
        if (hit != NULL) {
            ulen = url_extent(hit);
            char *url = h2o_mem_alloc_pool(&call->req->pool, ulen + 1);
            memcpy(url, hit, ulen);
            url[ulen] = '\0';
            red = cfg_redact_url(url);
        }
        const char *piece = hit == NULL ? "" : red != NULL ? red : CFG_REDACTED;
        size_t need = len + plain + strlen(piece) + 1;
        if (out == NULL || need > cap) {
            cap = need > cap * 2 ? need : cap * 2;
            char *n = h2o_mem_alloc_pool(&call->req->pool, cap);
            if (out != NULL)
                memcpy(n, out, len);
            out = n;
        }
        memcpy(out + len, p, plain);
        len += plain;
        memcpy(out + len, piece, strlen(piece));
        len += strlen(piece);
        out[len] = '\0';
        free(red);
        if (hit == NULL)
            return out;
        p = hit + ulen;
    }
}

json_t *cp_redact_strings(cp_call_t *call, json_t *v)
{
    if (!cp_call_redacts(call) || v == NULL)
        return v;
    if (json_is_string(v)) {
        json_t *r = json_string(cp_redact_text(call, json_string_value(v)));
        json_decref(v);
        return r != NULL ? r : json_string(CFG_REDACTED);
    }
    const char *k;
    json_t *item;
    size_t i;
    if (json_is_object(v)) {
        json_object_foreach(v, k, item) json_object_set_new(v, k, cp_redact_strings(call, json_incref(item)));
    } else if (json_is_array(v)) {
        json_array_foreach(v, i, item) json_array_set_new(v, i, cp_redact_strings(call, json_incref(item)));
    }
    return v;
}

void cp_redact_members(cp_call_t *call, json_t *arr, const char *key)
{
    if (!cp_call_redacts(call))
        return;
    if (json_is_object(arr)) {
        json_t *v = json_object_get(arr, key);
        if (json_is_string(v))
            json_object_set_new(arr, key, json_string(cp_redact_text(call, json_string_value(v))));
        return;
    }
    size_t i;
    json_t *item;
    json_array_foreach(arr, i, item) cp_redact_members(call, item, key);
}

/* --- documents ------------------------------------------------------------------------------ */

int cp_document_prepare(json_t *tree, char **canonical, char hash[65], cfg_errors_t *errs)
{
    cfg_t *cfg = cfg_decode(tree, CFG_SCOPE_FLEET, errs);
    if (cfg == NULL)
        return -1;
    *canonical = cfg_canonical(cfg, CFG_SCOPE_FLEET);
    cfg_hash(cfg, CFG_SCOPE_FLEET, hash);
    cfg_destroy(cfg);
    if (*canonical == NULL) {
        cfg_errors_add(errs, "out of memory");
        return -1;
    }
    return 0;
}

int cp_seed(cp_store_t *store, const char *path, int *stored, cfg_errors_t *errs)
{
    *stored = 0;
    if (cp_store_active_version(store) > 0)
        return 0;
    cfg_t *cfg = cfg_load_file(path, CFG_SCOPE_FLEET, errs);
    if (cfg == NULL)
        return -1;
    char *canonical = cfg_canonical(cfg, CFG_SCOPE_FLEET);
    char hash[65];
    cfg_hash(cfg, CFG_SCOPE_FLEET, hash);
    cfg_destroy(cfg);
    if (canonical == NULL) {
        cfg_errors_add(errs, "out of memory");
        return -1;
    }
    char message[512];
    snprintf(message, sizeof(message), "seeded from %s", path);
    cp_append_t a = {
        .author = "seed", .message = message, .kind = CP_KIND_APPLY, .document = canonical, .hash = hash, .if_match = 0};
    int64_t version;
    int rc = cp_store_append(store, &a, &version);
    free(canonical);
    if (rc == CP_STORE_CREATED) {
        *stored = 1;
        return 0;
    }
    if (rc == CP_STORE_CONFLICT)
        return 0; /* someone stored a version meanwhile: the seed is for empty stores only */
    cfg_errors_add(errs, "store: %s", cp_store_errmsg(store));
    return -1;
}

/* Parses a request body as a document tree in the given format; answers 400 on failure. */
static json_t *parse_body_tree(cp_call_t *call, cfg_format_t format)
{
    cfg_errors_t errs;
    cfg_errors_init(&errs);
    h2o_iovec_t body = call->req->entity;
    json_t *tree = NULL;
    if (body.len == 0)
        cfg_errors_add(&errs, "body: empty (send the document)");
    else
        tree = cfg_tree_parse(body.base, body.len, format, &errs);
    if (tree == NULL)
        cp_respond_error(call, 400,
                         format == CFG_FORMAT_YAML   ? "invalid YAML"
                         : format == CFG_FORMAT_JSON ? "invalid JSON"
                                                     : "invalid document",
                         cfg_errors_to_json(&errs));
    cfg_errors_dispose(&errs);
    return tree;
}

int cp_prepare_or_400(cp_call_t *call, json_t *tree, char **canonical, char hash[65])
{
    cfg_errors_t errs;
    cfg_errors_init(&errs);
    int rc = cp_document_prepare(tree, canonical, hash, &errs);
    if (rc != 0)
        cp_respond_error(call, 400, "invalid document", cfg_errors_to_json(&errs));
    cfg_errors_dispose(&errs);
    return rc;
}

json_t *cp_body_tree(cp_call_t *call, cp_ctype_t ct)
{
    return parse_body_tree(call, ct == CP_CTYPE_YAML ? CFG_FORMAT_YAML : ct == CP_CTYPE_JSON ? CFG_FORMAT_JSON : CFG_FORMAT_AUTO);
}

int cp_body_document(cp_call_t *call, cp_ctype_t ct, char **canonical, char hash[65])
{
    json_t *tree = cp_body_tree(call, ct);
    if (tree == NULL)
        return -1;
    int rc = cp_prepare_or_400(call, tree, canonical, hash);
    json_decref(tree);
    return rc;
}
