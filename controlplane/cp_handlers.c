/* The handlers of /v1/config, versions, diff, rollback, tags and events, and /healthz and /metrics. */

#include "cp_server_internal.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "pw_log.h"

/* Stores a version and answers: 201 (new), 200 (identical to the active one), 409 (a rollout is
 * live), 412, 503. `w`: the write's rollout (cp_ro_take), disposed here. */
static void store_and_respond(cp_call_t *call, cp_append_t *a, cp_ro_write_t *w)
{
    int64_t version = 0;
    if (cp_ro_admit(call, w, a) != 0) {
        cp_ro_finish(call->srv, w, CP_STORE_ERROR, NULL);
        return;
    }
    int rc = cp_store_append(call->srv->store, a, &version);
    cp_ro_finish(call->srv, w, rc, NULL);
    if (rc == CP_STORE_CONFLICT) {
        json_t *body = json_pack("{ss sI}", "error", "If-Match does not name the active version", "active_version",
                                 (json_int_t)cp_store_active_version(call->srv->store));
        cp_respond_json(call, 412, body);
        return;
    }
    if (rc != CP_STORE_CREATED && rc != CP_STORE_UNCHANGED) {
        cp_respond_store_error(call);
        return;
    }
    if (rc == CP_STORE_CREATED)
        PW_INFO("version %lld stored (%s by %s)", (long long)version, cp_kind_name(a->kind), a->author);
    cp_version_t v;
    if (cp_store_get_version(call->srv->store, version, &v) != CP_STORE_OK) {
        cp_respond_store_error(call);
        /* the version is committed whatever this answer says: the polls must hear of it */
        if (rc == CP_STORE_CREATED)
            cp_wake_waiters(call->srv);
        return;
    }
    json_t *body = cp_version_json(&v, 0);
    if (body != NULL)
        json_object_set_new(body, "created", json_boolean(rc == CP_STORE_CREATED));
    const cp_rollout_t *live = cp_engine_live(call->srv);
    if (body != NULL && rc == CP_STORE_CREATED && live != NULL && live->version == v.version)
        json_object_set_new(body, "rollout",
                            json_pack("{sI ss}", "id", (json_int_t)live->id, "state", cp_ro_state_name(live->state)));
    cp_add_version_headers(call, v.version, v.hash);
    char loc[64];
    snprintf(loc, sizeof(loc), "/v1/versions/%lld", (long long)v.version);
    cp_add_header(call, H2O_TOKEN_LOCATION, loc);
    cp_version_dispose(&v);
    cp_respond_json(call, rc == CP_STORE_CREATED ? 201 : 200, body);
    if (rc == CP_STORE_CREATED)
        cp_wake_waiters(call->srv);
}

/* --- handlers: health and metrics ------------------------------------------------------------- */

void cp_h_healthz(cp_call_t *call)
{
    cp_respond_json(call, 200,
                    json_pack("{ss sI}", "status", "ok", "active_version", (json_int_t)cp_store_active_version(call->srv->store)));
}

/* Who the token is: the console asks at sign-in, and shows write buttons to an admin only. */
void cp_h_whoami(cp_call_t *call)
{
    cp_respond_json(call, 200, json_pack("{ss ss}", "name", call->token->name, "role", cp_role_name(call->token->role)));
}

/* --- handlers: config --------------------------------------------------------------------------- */

void cp_h_get_config(cp_call_t *call)
{
    cp_version_t v;
    int rc = cp_store_get_version(call->srv->store, 0, &v);
    if (rc == CP_STORE_NOT_FOUND) {
        cp_respond_error(call, 404, "no config stored yet: PUT /v1/config first", NULL);
        return;
    }
    if (rc != CP_STORE_OK) {
        cp_respond_store_error(call);
        return;
    }
    cp_add_version_headers(call, v.version, v.hash);
    h2o_iovec_t *inm = cp_find_header(call, H2O_TOKEN_IF_NONE_MATCH);
    if (inm != NULL && cp_if_match_holds(inm->base, inm->len, v.version, 1)) {
        cp_version_dispose(&v);
        cp_respond_raw(call, 304, NULL, "", 0);
        return;
    }
    h2o_iovec_t *accept = cp_find_header(call, H2O_TOKEN_ACCEPT);
    int yaml = accept != NULL && cp_accepts_yaml(accept->base, accept->len);
    if (!yaml && !cp_call_redacts(call)) {
        size_t len = strlen(v.document);
        char *text = h2o_mem_alloc_pool(&call->req->pool, len + 1);
        memcpy(text, v.document, len);
        text[len] = '\n';
        cp_version_dispose(&v);
        cp_respond_raw(call, 200, "application/json", text, len + 1);
        return;
    }
    /* a viewer sees endpoint URLs and headers redacted, in either format */
    json_t *doc = cp_document_json(v.document);
    cp_version_dispose(&v);
    if (doc != NULL && cp_call_redacts(call)) {
        json_t *red = cfg_redact(doc);
        json_decref(doc);
        doc = red;
    }
    char *text = doc == NULL ? NULL
                 : yaml      ? cfg_json_to_yaml(doc)
                             : json_dumps(doc, JSON_COMPACT | JSON_SORT_KEYS | JSON_REAL_PRECISION(15));
    json_decref(doc);
    if (text == NULL) {
        cp_respond_error(call, 503, yaml ? "cannot render the document as YAML" : "cannot render the document", NULL);
        return;
    }
    size_t len = strlen(text);
    char *body = h2o_mem_alloc_pool(&call->req->pool, len + 1);
    memcpy(body, text, len);
    free(text);
    if (!yaml)
        body[len++] = '\n';
    cp_respond_raw(call, 200, yaml ? "application/yaml" : "application/json", body, len);
}

void cp_h_put_config(cp_call_t *call)
{
    if (cp_check_body_size(call) != 0)
        return;
    cp_ctype_t ct = cp_body_ctype(call, 1, 0);
    if (ct == CP_CTYPE_OTHER)
        return;
    const char *message;
    if (cp_request_message(call, &message) != 0)
        return;
    int64_t expect = cp_if_match(call);
    if (expect == -2)
        return;
    json_t *tree = cp_body_tree(call, ct);
    if (tree == NULL)
        return;
    cp_ro_write_t w;
    char *canonical = NULL, hash[65];
    if (cp_ro_take(call, tree, &w) != 0) {
        json_decref(tree);
        return;
    }
    int rc = cp_prepare_or_400(call, tree, &canonical, hash);
    json_decref(tree);
    if (rc != 0) {
        cp_ro_finish(call->srv, &w, CP_STORE_ERROR, NULL);
        return;
    }
    cp_append_t a = {.author = call->token->name,
                     .message = message,
                     .kind = CP_KIND_APPLY,
                     .document = canonical,
                     .hash = hash,
                     .if_match = expect};
    store_and_respond(call, &a, &w);
    free(canonical);
}

void cp_h_patch_config(cp_call_t *call)
{
    if (cp_check_body_size(call) != 0)
        return;
    if (cp_body_ctype(call, 0, 1) == CP_CTYPE_OTHER)
        return;
    const char *message;
    if (cp_request_message(call, &message) != 0)
        return;
    int64_t expect = cp_if_match(call);
    if (expect == -2)
        return;
    json_error_t jerr;
    json_t *patch = json_loadb(call->req->entity.base, call->req->entity.len, JSON_REJECT_DUPLICATES | JSON_DECODE_ANY, &jerr);
    if (patch == NULL) {
        cp_respond_errorf(call, 400, "body: invalid JSON at line %d, column %d: %s", jerr.line, jerr.column, jerr.text);
        return;
    }
    cp_ro_write_t w;
    if (cp_ro_take(call, patch, &w) != 0) {
        json_decref(patch);
        return;
    }
    cp_version_t base;
    int rc = cp_store_get_version(call->srv->store, 0, &base);
    if (rc == CP_STORE_ERROR) {
        json_decref(patch);
        cp_ro_finish(call->srv, &w, CP_STORE_ERROR, NULL);
        cp_respond_store_error(call);
        return;
    }
    json_t *target = rc == CP_STORE_OK ? cp_document_json(base.document) : json_object();
    int64_t base_version = rc == CP_STORE_OK ? base.version : 0;
    if (rc == CP_STORE_OK)
        cp_version_dispose(&base);
    json_t *merged = target != NULL ? cfg_merge_patch(target, patch) : NULL;
    json_decref(target);
    json_decref(patch);
    if (merged == NULL) {
        cp_ro_finish(call->srv, &w, CP_STORE_ERROR, NULL);
        cp_respond_error(call, 503, "cannot apply the patch (out of memory or unreadable active document)", NULL);
        return;
    }
    char *canonical = NULL, hash[65];
    rc = cp_prepare_or_400(call, merged, &canonical, hash);
    json_decref(merged);
    if (rc != 0) {
        cp_ro_finish(call->srv, &w, CP_STORE_ERROR, NULL);
        return;
    }
    /* the patch was applied to base_version: it must still be the active one when storing */
    cp_append_t a = {.author = call->token->name,
                     .message = message,
                     .kind = CP_KIND_PATCH,
                     .source_version = base_version,
                     .document = canonical,
                     .hash = hash,
                     .if_match = expect >= 0 ? expect : base_version};
    store_and_respond(call, &a, &w);
    free(canonical);
}

void cp_h_validate(cp_call_t *call)
{
    if (cp_check_body_size(call) != 0)
        return;
    cp_ctype_t ct = cp_body_ctype(call, 1, 0);
    if (ct == CP_CTYPE_OTHER)
        return;
    /* as PUT reads it: rollout and force are checked and taken out first */
    json_t *tree = cp_body_tree(call, ct);
    if (tree == NULL)
        return;
    cp_ro_write_t w;
    char *canonical = NULL, hash[65];
    if (cp_ro_take(call, tree, &w) != 0) {
        json_decref(tree);
        return;
    }
    int rc = cp_prepare_or_400(call, tree, &canonical, hash);
    json_decref(tree);
    json_t *rollout = rc == 0 && w.has ? cp_rollout_spec_json(&w.spec) : json_null();
    cp_ro_finish(call->srv, &w, CP_STORE_ERROR, NULL);
    if (rc != 0)
        return;
    json_t *doc = cp_document_json(canonical);
    free(canonical);
    int same = strcmp(hash, cp_store_active_hash(call->srv->store)) == 0;
    cp_respond_json(call, 200,
                    json_pack("{sb ss sb so so}", "valid", 1, "hash", hash, "identical_to_active", same, "document",
                              doc != NULL ? doc : json_null(), "rollout", rollout != NULL ? rollout : json_null()));
}

/* --- handlers: versions ------------------------------------------------------------------------ */

/* Reads ?limit= (1..1000, default 50) and ?before= (a number, optional). Answers 400 on error. */
static int page_params(cp_call_t *call, int *limit, int64_t *before)
{
    size_t len;
    const char *s = cp_query_get(&call->query, "limit", &len);
    int64_t v;
    *limit = 50;
    *before = 0;
    if (s != NULL) {
        if (cp_parse_version(s, len, 0, &v) != 0 || v > 1000) {
            cp_respond_error(call, 400, "limit: must be an integer from 1 to 1000", NULL);
            return -1;
        }
        *limit = (int)v;
    }
    if ((s = cp_query_get(&call->query, "before", &len)) != NULL) {
        if (cp_parse_version(s, len, 0, &v) != 0) {
            cp_respond_error(call, 400, "before: must be a positive integer", NULL);
            return -1;
        }
        *before = v;
    }
    return 0;
}

/* The cursor of the next page of a newest-first list keyed by `key`: the last item's key when
 * the page is full and more may follow, else null. New reference. */
static json_t *next_before(json_t *list, int limit, const char *key)
{
    size_t n = json_array_size(list);
    if (n == (size_t)limit) {
        json_int_t last = json_integer_value(json_object_get(json_array_get(list, n - 1), key));
        if (last > 1)
            return json_integer(last);
    }
    return json_null();
}

/* A listing's filter from the query: `who_key` and `what_key` (e.g. author and kind); a `what`
 * must be one of `whats` (NULL-terminated). Answers 400 and returns -1 on a bad value. */
static int list_filter(cp_call_t *call, const char *who_key, const char *what_key, const char *const *whats, cp_list_filter_t *f)
{
    size_t len;
    f->who = cp_query_get(&call->query, who_key, &len);
    if (f->who != NULL && (len == 0 || len > 256 || strlen(f->who) != len)) {
        cp_respond_errorf(call, 400, "%s: must be a name of 1 to 256 bytes", who_key);
        return -1;
    }
    f->what = cp_query_get(&call->query, what_key, &len);
    if (f->what == NULL)
        return 0;
    for (size_t i = 0; whats[i] != NULL; i++)
        if (strcmp(whats[i], f->what) == 0)
            return 0;
    char list[512] = "";
    for (size_t i = 0, n = 0; whats[i] != NULL && n < sizeof(list); i++)
        n += (size_t)snprintf(list + n, sizeof(list) - n, "%s%s", i > 0 ? ", " : "", whats[i]);
    cp_respond_errorf(call, 400, "%s: \"%.64s\" is not one of %s", what_key, f->what, list);
    return -1;
}

/* One page of a newest-first list (versions, events) as the query's limit/before ask, kept by `f`;
 * answers the error and returns NULL on failure. *next gets the next page's cursor (new reference). */
static json_t *list_page(cp_call_t *call, json_t *(*list_fn)(cp_store_t *, int64_t, int, const cp_list_filter_t *),
                         const cp_list_filter_t *f, const char *key, json_t **next)
{
    int limit;
    int64_t before;
    if (page_params(call, &limit, &before) != 0)
        return NULL;
    json_t *list = list_fn(call->srv->store, before, limit, f);
    if (list == NULL) {
        cp_respond_store_error(call);
        return NULL;
    }
    *next = next_before(list, limit, key);
    return list;
}

static const char *const version_kinds[] = {"apply", "patch", "rollback", NULL};

/* For versions[0..n-1]: [{"tags": [names, sorted], "fleet": {synced, rejected, applying}}, ...] in
 * their order, from one listing of the tags and one pass over the dataplanes. NULL after answering
 * an error. */
static json_t *tags_and_fleet(cp_call_t *call, const int64_t *versions, size_t n)
{
    cp_fleet_count_t *counts = malloc((n + 1) * sizeof(*counts));
    json_t *tags = cp_store_list_tags(call->srv->store), *out = json_array();
    if (counts == NULL || tags == NULL || out == NULL || cp_fleet_counts(call->srv, versions, n, counts) != 0) {
        free(counts);
        json_decref(tags);
        json_decref(out);
        cp_respond_store_error(call);
        return NULL;
    }
    for (size_t i = 0; i < n; i++) {
        /* the store lists tags by name: each version's names come out sorted */
        json_t *names = json_array(), *tag;
        size_t k;
        json_array_foreach(tags, k, tag)
        {
            if (json_integer_value(json_object_get(tag, "version")) == versions[i])
                json_array_append(names, json_object_get(tag, "name"));
        }
        json_array_append_new(out,
                              json_pack("{so s{sI sI sI}}", "tags", names, "fleet", "synced", (json_int_t)counts[i].synced,
                                        "rejected", (json_int_t)counts[i].rejected, "applying", (json_int_t)counts[i].applying));
    }
    free(counts);
    json_decref(tags);
    if (json_array_size(out) != n) {
        json_decref(out);
        cp_respond_error(call, 503, "out of memory", NULL);
        return NULL;
    }
    return out;
}

void cp_h_list_versions(cp_call_t *call)
{
    cp_list_filter_t f;
    if (list_filter(call, "author", "kind", version_kinds, &f) != 0)
        return;
    json_t *next, *list = list_page(call, cp_store_list_versions, &f, "version", &next);
    if (list == NULL)
        return;
    size_t n = json_array_size(list), i;
    int64_t *versions = malloc((n + 1) * sizeof(*versions));
    if (versions == NULL) {
        json_decref(list);
        json_decref(next);
        cp_respond_error(call, 503, "out of memory", NULL);
        return;
    }
    json_t *item;
    json_array_foreach(list, i, item)
    {
        versions[i] = json_integer_value(json_object_get(item, "version"));
    }
    json_t *more = tags_and_fleet(call, versions, n);
    free(versions);
    if (more == NULL) {
        json_decref(list);
        json_decref(next);
        return;
    }
    json_array_foreach(list, i, item)
    {
        json_object_update(item, json_array_get(more, i));
    }
    json_decref(more);
    cp_redact_members(call, list, "message");
    cp_respond_json(call, 200,
                    json_pack("{sI so so}", "active_version", (json_int_t)cp_store_active_version(call->srv->store), "versions",
                              list, "next_before", next));
}

/* Path parameter {n} as a version that exists; answers 400/404 otherwise. */
static int path_version(cp_call_t *call, h2o_iovec_t s, const char *what, int64_t *out)
{
    if (cp_parse_version(s.base, s.len, 0, out) != 0) {
        cp_respond_errorf(call, 400, "%s: \"%.32s\" is not a version number (a positive integer)", what, s.base);
        return -1;
    }
    if (!cp_store_has_version(call->srv->store, *out)) {
        cp_respond_errorf(call, 404, "%s: version %lld does not exist", what, (long long)*out);
        return -1;
    }
    return 0;
}

void cp_h_get_version(cp_call_t *call)
{
    int64_t n;
    if (path_version(call, call->params[0], "version", &n) != 0)
        return;
    json_t *more = tags_and_fleet(call, &n, 1);
    if (more == NULL)
        return;
    cp_version_t v;
    int rc = cp_store_get_version(call->srv->store, n, &v);
    if (rc == CP_STORE_NOT_FOUND) {
        json_decref(more);
        cp_respond_errorf(call, 404, "version %lld does not exist", (long long)n);
        return;
    }
    if (rc != CP_STORE_OK) {
        json_decref(more);
        cp_respond_store_error(call);
        return;
    }
    cp_respond_version(call, &v, json_incref(json_array_get(more, 0)));
    json_decref(more);
}

/* The document of version n as a tree ({} for version 0, "before the first"); NULL after answering. */
static json_t *version_tree(cp_call_t *call, int64_t n)
{
    if (n == 0)
        return json_object();
    cp_version_t v;
    int rc = cp_store_get_version(call->srv->store, n, &v);
    if (rc == CP_STORE_NOT_FOUND) {
        cp_respond_errorf(call, 404, "version %lld does not exist", (long long)n);
        return NULL;
    }
    if (rc != CP_STORE_OK) {
        cp_respond_store_error(call);
        return NULL;
    }
    json_t *t = cp_document_json(v.document);
    cp_version_dispose(&v);
    if (t == NULL)
        cp_respond_error(call, 503, "stored document unreadable", NULL);
    return t;
}

void cp_h_diff(cp_call_t *call)
{
    int64_t n, from;
    if (path_version(call, call->params[0], "version", &n) != 0)
        return;
    size_t len;
    const char *s = cp_query_get(&call->query, "from", &len);
    if (s == NULL) {
        from = n - 1;
    } else if (cp_parse_version(s, len, 1, &from) != 0) {
        cp_respond_error(call, 400, "from: must be a version number (0 = the empty document)", NULL);
        return;
    } else if (from > 0 && !cp_store_has_version(call->srv->store, from)) {
        cp_respond_errorf(call, 404, "from: version %lld does not exist", (long long)from);
        return;
    }
    json_t *a = version_tree(call, from);
    if (a == NULL)
        return;
    json_t *b = version_tree(call, n);
    if (b == NULL) {
        json_decref(a);
        return;
    }
    if (cp_call_redacts(call)) {
        /* diff the redacted documents: a changed key shows as changed, never its value */
        json_t *ra = cfg_redact(a), *rb = cfg_redact(b);
        json_decref(a);
        json_decref(b);
        a = ra;
        b = rb;
    }
    json_t *patch = a != NULL && b != NULL ? cfg_json_diff(a, b) : NULL, *changes = NULL;
    cfg_changes_t ch;
    if (patch != NULL && cfg_changes(a, b, &ch) == 0) {
        changes = cfg_changes_json(&ch);
        cfg_changes_dispose(&ch);
    }
    json_decref(a);
    json_decref(b);
    if (patch == NULL || changes == NULL) {
        json_decref(patch);
        cp_respond_error(call, 503, "out of memory", NULL);
        return;
    }
    cp_respond_json(call, 200,
                    json_pack("{sI sI so so}", "from", (json_int_t)from, "to", (json_int_t)n, "patch", patch, "changes", changes));
}

void cp_h_rollback(cp_call_t *call)
{
    if (cp_check_body_size(call) != 0 || cp_body_ctype(call, 0, 0) == CP_CTYPE_OTHER)
        return;
    const char *hdr_message;
    if (cp_request_message(call, &hdr_message) != 0)
        return;
    int64_t expect = cp_if_match(call);
    if (expect == -2)
        return;
    cp_rollback_req_t r;
    char err[256];
    if (cp_parse_rollback(call->req->entity.base, call->req->entity.len, &r, err, sizeof(err)) != 0) {
        cp_respond_error(call, 400, err, NULL);
        return;
    }

    if (r.message != NULL && hdr_message != NULL) {
        cp_rollback_req_dispose(&r);
        cp_respond_error(call, 400, "message: give it in the body or in Pathway-Message / ?message=, not both", NULL);
        return;
    }
    int64_t target = r.to_version;
    if (r.to_tag != NULL) {
        int rc = cp_store_get_tag(call->srv->store, r.to_tag, &target);
        if (rc == CP_STORE_NOT_FOUND) {
            cp_respond_errorf(call, 404, "to: tag \"%s\" does not exist", r.to_tag);
            cp_rollback_req_dispose(&r);
            return;
        }
        if (rc != CP_STORE_OK) {
            cp_rollback_req_dispose(&r);
            cp_respond_store_error(call);
            return;
        }
    }
    cp_version_t v;
    int rc =
        !cp_store_has_version(call->srv->store, target) ? CP_STORE_NOT_FOUND : cp_store_get_version(call->srv->store, target, &v);
    if (rc != CP_STORE_OK) {
        if (rc == CP_STORE_NOT_FOUND)
            cp_respond_errorf(call, 404, "to: version %lld does not exist", (long long)target);
        else
            cp_respond_store_error(call);
        cp_rollback_req_dispose(&r);
        return;
    }
    /* the target was valid under the schema of its day: check it against today's, and store it in
     * today's canonical form (defaults added since, and its hash), as a PUT of it would */
    json_t *tree = cp_document_json(v.document);
    cp_version_dispose(&v);
    if (tree == NULL) {
        cp_rollback_req_dispose(&r);
        cp_respond_error(call, 503, "stored document unreadable", NULL);
        return;
    }
    cfg_errors_t errs;
    cfg_errors_init(&errs);
    char *canonical = NULL, hash[65];
    rc = cp_document_prepare(tree, &canonical, hash, &errs);
    json_decref(tree);
    if (rc != 0) {
        char what[96];
        snprintf(what, sizeof(what), "to: version %lld is no longer a valid document", (long long)target);
        cp_respond_error(call, 400, what, cfg_errors_to_json(&errs));
        cfg_errors_dispose(&errs);
        cp_rollback_req_dispose(&r);
        return;
    }
    cfg_errors_dispose(&errs);
    char why[CP_MAX_MESSAGE + 128];
    const char *message = r.message != NULL ? r.message : hdr_message;
    if (message == NULL) {
        if (r.to_tag != NULL)
            snprintf(why, sizeof(why), "rollback to tag %s (version %lld)", r.to_tag, (long long)target);
        else
            snprintf(why, sizeof(why), "rollback to version %lld", (long long)target);
        message = why;
    }
    /* the body parsed once already: read its rollout and force */
    json_t *obj = cp_parse_json_object(call->req->entity.base, call->req->entity.len, err, sizeof(err));
    cp_ro_write_t w;
    int taken = cp_ro_take(call, obj, &w);
    json_decref(obj);
    if (taken != 0) {
        free(canonical);
        cp_rollback_req_dispose(&r);
        return;
    }
    cp_append_t a = {.author = call->token->name,
                     .message = message,
                     .kind = CP_KIND_ROLLBACK,
                     .source_version = target,
                     .document = canonical,
                     .hash = hash,
                     .if_match = expect};
    store_and_respond(call, &a, &w);
    free(canonical);
    cp_rollback_req_dispose(&r);
}

/* --- handlers: tags ------------------------------------------------------------------------------ */

static int path_tag(cp_call_t *call)
{
    h2o_iovec_t s = call->params[0];
    if (!cp_valid_tag_name(s.base, s.len)) {
        cp_respond_error(call, 400, "tag: a tag name is 1-64 characters of A-Z a-z 0-9 _ . - and not only digits", NULL);
        return -1;
    }
    return 0;
}

void cp_h_list_tags(cp_call_t *call)
{
    json_t *tags = cp_store_list_tags(call->srv->store);
    if (tags == NULL) {
        cp_respond_store_error(call);
        return;
    }
    cp_redact_members(call, tags, "message");
    cp_respond_json(call, 200, json_pack("{so}", "tags", tags));
}

void cp_h_get_tag(cp_call_t *call)
{
    if (path_tag(call) != 0)
        return;
    int rc;
    json_t *tag = cp_store_tag_json(call->srv->store, call->params[0].base, &rc);
    if (rc == CP_STORE_NOT_FOUND) {
        cp_respond_errorf(call, 404, "tag \"%s\" does not exist", call->params[0].base);
        return;
    }
    if (tag == NULL) {
        cp_respond_store_error(call);
        return;
    }
    cp_redact_members(call, tag, "message");
    cp_redact_members(call, json_object_get(tag, "history"), "message");
    cp_respond_json(call, 200, tag);
}

void cp_h_put_tag(cp_call_t *call)
{
    if (path_tag(call) != 0 || cp_check_body_size(call) != 0 || cp_body_ctype(call, 0, 0) == CP_CTYPE_OTHER)
        return;
    cp_tag_req_t r;
    char err[256];
    if (cp_parse_tag(call->req->entity.base, call->req->entity.len, &r, err, sizeof(err)) != 0) {
        cp_respond_error(call, 400, err, NULL);
        return;
    }
    int rc = cp_store_set_tag(call->srv->store, call->params[0].base, r.version, call->token->name, r.message);
    if (rc == CP_STORE_NOT_FOUND) {
        cp_respond_errorf(call, 404, "version: version %lld does not exist", (long long)r.version);
        cp_tag_req_dispose(&r);
        return;
    }
    cp_tag_req_dispose(&r);
    if (rc != CP_STORE_OK) {
        cp_respond_store_error(call);
        return;
    }
    cp_h_get_tag(call);
}

void cp_h_delete_tag(cp_call_t *call)
{
    if (path_tag(call) != 0)
        return;
    const char *message;
    if (cp_request_message(call, &message) != 0)
        return;
    int64_t version = 0;
    int rc = cp_store_delete_tag(call->srv->store, call->params[0].base, call->token->name, message, &version);
    if (rc == CP_STORE_NOT_FOUND) {
        cp_respond_errorf(call, 404, "tag \"%s\" does not exist", call->params[0].base);
        return;
    }
    if (rc != CP_STORE_OK) {
        cp_respond_store_error(call);
        return;
    }
    PW_INFO("tag %s (version %lld) deleted by %s", call->params[0].base, (long long)version, call->token->name);
    cp_respond_json(call, 200, json_pack("{ss sI sb}", "name", call->params[0].base, "version", (json_int_t)version, "deleted", 1));
}

/* --- handlers: events ----------------------------------------------------------------------------- */

/* every action an event can have (schema/openapi.yaml, Event.action) */
static const char *const event_actions[] = {"apply",
                                            "patch",
                                            "rollback",
                                            "tag",
                                            "tag_delete",
                                            "ack",
                                            "nack",
                                            "forget",
                                            "rollout_start",
                                            "rollout_step",
                                            "rollout_pause",
                                            "rollout_resume",
                                            "rollout_promote",
                                            "rollout_abort",
                                            "rollout_rollback",
                                            "rollout_gate_fail",
                                            NULL};

void cp_h_events(cp_call_t *call)
{
    cp_list_filter_t f;
    if (list_filter(call, "actor", "action", event_actions, &f) != 0)
        return;
    json_t *next, *list = list_page(call, cp_store_list_events, &f, "id", &next);
    if (list == NULL)
        return;
    cp_redact_members(call, list, "message");
    cp_respond_json(call, 200, json_pack("{so so}", "events", list, "next_before", next));
}
