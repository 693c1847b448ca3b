/*
 * The REST API. One handler at "/" routes by method and path through `routes`, the one table that
 * also drives auth (roles per route), allowed query parameters, /metrics labels and the
 * route-set test against schema/openapi.yaml.
 */
#include "cp_server.h"

#include <errno.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#include <openssl/crypto.h>
#include <h2o.h>
#include <h2o/version.h>
#include "cp_body.h"
#include "pw_log.h"

typedef struct st_cp_call_t cp_call_t;
typedef void (*cp_handler_fn)(cp_call_t *call);

enum {
    R_ADMIN = 1 << CP_ROLE_ADMIN,
    R_VIEWER = 1 << CP_ROLE_VIEWER,
    R_DATAPLANE = 1 << CP_ROLE_DATAPLANE,
    R_PUBLIC = 0, /* no token needed */
};

typedef struct st_cp_route_t {
    const char *method;       /* GET, PUT, PATCH, POST */
    const char *path;         /* segments; "{x}" captures one */
    unsigned roles;           /* R_* allowed; admin is always among them; 0 = public */
    const char *const *query; /* allowed query parameters (NULL-terminated) */
    cp_handler_fn fn;         /* answers (now or later) */
} cp_route_t;

struct st_cp_call_t {
    cp_server_t *srv;        /* the server */
    h2o_req_t *req;          /* the request (its pool holds this struct) */
    size_t route;            /* index in routes, NUM_ROUTES when none matched */
    const cp_token_t *token; /* who called (NULL on public routes) */
    h2o_iovec_t params[2];   /* captured path segments, NUL-terminated in req->pool */
    cp_query_t query;        /* decoded query (freed by call_dispose) */
    int answered;            /* a response was started */
};

/* A parked long poll; lives in the request's pool, unlinked when answered or disposed. */
typedef struct st_cp_waiter_t {
    h2o_linklist_t link;   /* in srv->waiters, ordered by deadline */
    cp_server_t *srv;      /* owner of the list */
    cp_call_t *call;       /* the request to answer */
    int64_t known_version; /* version=n: what the dataplane has */
    int64_t parked;        /* monotonic ms when it parked: proof of life for heartbeat_timeout only */
    int64_t deadline;      /* monotonic ms */
} cp_waiter_t;

#define NUM_STATUS 600
#define CP_ACCEPT_PAUSE_MS 100 /* how long the listener rests after accept ran out of descriptors */

struct st_cp_server_t {
    const cp_config_t *conf;     /* borrowed */
    cp_store_t *store;           /* borrowed */
    h2o_globalconf_t globalconf; /* h2o config: one host, one path, one handler */
    h2o_context_t ctx;           /* the loop's context */
    h2o_accept_ctx_t accept_ctx; /* for h2o_accept */
    h2o_evloop_t *loop;          /* the event loop */
    h2o_socket_t *listener;      /* NULL after stop */
    int listener_reading;        /* accepting now (not at the connection cap, not paused) */
    int64_t accept_paused_until; /* monotonic ms: accept failed (EMFILE...), retry then */
    int stopping;                /* draining: new long polls get 503 */
    size_t num_conns;            /* client connections open (counted through their on_close) */
    int disposed;                /* the h2o context, config and loop were freed */
    h2o_linklist_t waiters;      /* cp_waiter_t, earliest deadline first */
    size_t num_waiters;          /* length of waiters */
    uint64_t *counts;            /* [route (NUM_ROUTES = unmatched)][status]: API requests answered */
    int64_t started_ms;          /* for /metrics */
};

static void h_healthz(cp_call_t *call);
static void h_metrics(cp_call_t *call);
static void h_get_config(cp_call_t *call);
static void h_put_config(cp_call_t *call);
static void h_patch_config(cp_call_t *call);
static void h_validate(cp_call_t *call);
static void h_list_versions(cp_call_t *call);
static void h_get_version(cp_call_t *call);
static void h_diff(cp_call_t *call);
static void h_rollback(cp_call_t *call);
static void h_list_tags(cp_call_t *call);
static void h_get_tag(cp_call_t *call);
static void h_put_tag(cp_call_t *call);
static void h_list_dataplanes(cp_call_t *call);
static void h_get_dataplane(cp_call_t *call);
static void h_dp_config(cp_call_t *call);
static void h_dp_status(cp_call_t *call);
static void h_events(cp_call_t *call);

static const char *const q_none[] = {NULL};
static const char *const q_message[] = {"message", NULL};
static const char *const q_page[] = {"limit", "before", NULL};
static const char *const q_diff[] = {"from", NULL};
static const char *const q_poll[] = {"version", "wait", NULL};
static const char *const q_dp_page[] = {"limit", "after", NULL};

static const cp_route_t routes[] = {
    {"GET", "/healthz", R_PUBLIC, q_none, h_healthz},
    {"GET", "/metrics", R_ADMIN | R_VIEWER, q_none, h_metrics},
    {"GET", "/v1/config", R_ADMIN | R_VIEWER, q_none, h_get_config},
    {"PUT", "/v1/config", R_ADMIN, q_message, h_put_config},
    {"PATCH", "/v1/config", R_ADMIN, q_message, h_patch_config},
    {"POST", "/v1/config/validate", R_ADMIN, q_none, h_validate},
    {"GET", "/v1/versions", R_ADMIN | R_VIEWER, q_page, h_list_versions},
    {"GET", "/v1/versions/{n}", R_ADMIN | R_VIEWER, q_none, h_get_version},
    {"GET", "/v1/versions/{n}/diff", R_ADMIN | R_VIEWER, q_diff, h_diff},
    {"POST", "/v1/rollback", R_ADMIN, q_message, h_rollback},
    {"GET", "/v1/tags", R_ADMIN | R_VIEWER, q_none, h_list_tags},
    {"GET", "/v1/tags/{name}", R_ADMIN | R_VIEWER, q_none, h_get_tag},
    {"PUT", "/v1/tags/{name}", R_ADMIN, q_none, h_put_tag},
    {"GET", "/v1/dataplanes", R_ADMIN | R_VIEWER, q_dp_page, h_list_dataplanes},
    {"GET", "/v1/dataplanes/{id}", R_ADMIN | R_VIEWER, q_none, h_get_dataplane},
    {"GET", "/v1/dataplanes/{id}/config", R_ADMIN | R_DATAPLANE, q_poll, h_dp_config},
    {"POST", "/v1/dataplanes/{id}/status", R_ADMIN | R_DATAPLANE, q_none, h_dp_status},
    {"GET", "/v1/events", R_ADMIN | R_VIEWER, q_page, h_events},
};
#define NUM_ROUTES (sizeof(routes) / sizeof(routes[0]))

size_t cp_route_count(void)
{
    return NUM_ROUTES;
}

const char *cp_route_method(size_t i)
{
    return i < NUM_ROUTES ? routes[i].method : NULL;
}

const char *cp_route_path(size_t i)
{
    return i < NUM_ROUTES ? routes[i].path : NULL;
}

static int64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* --- responses ----------------------------------------------------------------------------- */

static const char *reason_phrase(int status)
{
    switch (status) {
    case 200:
        return "OK";
    case 201:
        return "Created";
    case 304:
        return "Not Modified";
    case 400:
        return "Bad Request";
    case 401:
        return "Unauthorized";
    case 403:
        return "Forbidden";
    case 404:
        return "Not Found";
    case 405:
        return "Method Not Allowed";
    case 409:
        return "Conflict";
    case 412:
        return "Precondition Failed";
    case 413:
        return "Payload Too Large";
    case 415:
        return "Unsupported Media Type";
    case 503:
        return "Service Unavailable";
    default:
        return "Other";
    }
}

static void add_header(cp_call_t *call, const h2o_token_t *token, const char *value)
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

static void add_version_headers(cp_call_t *call, int64_t version, const char *hash)
{
    char buf[40];
    snprintf(buf, sizeof(buf), "\"%lld\"", (long long)version);
    add_header(call, H2O_TOKEN_ETAG, buf);
    snprintf(buf, sizeof(buf), "%lld", (long long)version);
    add_header_str(call, "pathway-version", buf);
    if (hash != NULL)
        add_header_str(call, "pathway-hash", hash);
}

/* Sends a complete response; the body is copied into the request's pool. */
static void respond_raw(cp_call_t *call, int status, const char *ctype, const char *body, size_t len)
{
    h2o_req_t *req = call->req;
    if (call->answered)
        return;
    call->answered = 1;
    if (status >= 0 && status < NUM_STATUS)
        call->srv->counts[call->route * NUM_STATUS + (size_t)status]++;
    req->res.status = status;
    req->res.reason = reason_phrase(status);
    if (ctype != NULL)
        add_header(call, H2O_TOKEN_CONTENT_TYPE, ctype);
    add_header(call, H2O_TOKEN_CACHE_CONTROL, "no-store");
    req->res.content_length = len;
    h2o_send_inline(req, body, len);
}

/* Sends `body` (stolen) as JSON. */
static void respond_json(cp_call_t *call, int status, json_t *body)
{
    char *text = body != NULL ? json_dumps(body, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
    json_decref(body);
    if (text == NULL) {
        static const char oom[] = "{\"error\":\"out of memory\"}\n";
        respond_raw(call, 503, "application/json", oom, sizeof(oom) - 1);
        return;
    }
    size_t len = strlen(text);
    char *withnl = h2o_mem_alloc_pool(&call->req->pool, len + 1);
    memcpy(withnl, text, len);
    withnl[len] = '\n';
    free(text);
    respond_raw(call, status, "application/json", withnl, len + 1);
}

/* {"error": message, "errors": [...]}; `errors` (stolen) may be NULL. */
static void respond_error(cp_call_t *call, int status, const char *message, json_t *errors)
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
    respond_json(call, status, body);
}

static void respond_errorf(cp_call_t *call, int status, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void respond_errorf(cp_call_t *call, int status, const char *fmt, ...)
{
    char buf[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof(buf), fmt, ap);
    va_end(ap);
    respond_error(call, status, buf, NULL);
}

static void respond_store_error(cp_call_t *call)
{
    /* a store failure is the server's trouble, but it is transient (disk full, lock held): tell the
     * client to retry rather than to give up */
    add_header(call, H2O_TOKEN_RETRY_AFTER, "1");
    respond_errorf(call, 503, "store unavailable: %s", cp_store_errmsg(call->srv->store));
}

/* --- request helpers ----------------------------------------------------------------------- */

static h2o_iovec_t *find_header(cp_call_t *call, const h2o_token_t *token)
{
    ssize_t i = h2o_find_header(&call->req->headers, token, -1);
    return i >= 0 ? &call->req->headers.entries[i].value : NULL;
}

static h2o_iovec_t *find_header_str(cp_call_t *call, const char *name)
{
    ssize_t i = h2o_find_header_by_str(&call->req->headers, name, strlen(name), -1);
    return i >= 0 ? &call->req->headers.entries[i].value : NULL;
}

/* Checks the body bound; answers 413 and returns -1 beyond it. */
static int check_body_size(cp_call_t *call)
{
    if (call->req->entity.len > call->srv->conf->max_body) {
        char lim[32];
        cfg_format_size(call->srv->conf->max_body, lim, sizeof(lim));
        respond_errorf(call, 413, "body: larger than max_body (%s)", lim);
        return -1;
    }
    return 0;
}

/* The body's content type; answers 415 (and returns OTHER) when it is not one of `accepted`. */
static cp_ctype_t body_ctype(cp_call_t *call, int accept_yaml, int accept_merge)
{
    h2o_iovec_t *ct = find_header(call, H2O_TOKEN_CONTENT_TYPE);
    cp_ctype_t t = ct != NULL ? cp_content_type(ct->base, ct->len) : CP_CTYPE_NONE;
    if (t == CP_CTYPE_OTHER || (t == CP_CTYPE_YAML && !accept_yaml) || (t == CP_CTYPE_MERGE_PATCH && !accept_merge)) {
        respond_errorf(call, 415, "Content-Type: expected %s",
                       accept_yaml    ? "application/json or application/yaml"
                       : accept_merge ? "application/merge-patch+json or application/json"
                                      : "application/json");
        return CP_CTYPE_OTHER;
    }
    return t;
}

/* The version message from the Pathway-Message header or ?message=. Returns 0 and *msg (in the
 * pool, NULL when none), or -1 after answering 400. */
static int request_message(cp_call_t *call, const char **msg)
{
    h2o_iovec_t *h = find_header_str(call, "pathway-message");
    size_t qlen = 0;
    const char *q = cp_query_get(&call->query, "message", &qlen);
    *msg = NULL;
    if (h != NULL && q != NULL) {
        respond_error(call, 400, "message: give it in the Pathway-Message header or ?message=, not both", NULL);
        return -1;
    }
    const char *s = h != NULL ? h->base : q;
    size_t len = h != NULL ? h->len : qlen;
    if (s == NULL)
        return 0;
    const char *err = NULL;
    if (cp_valid_message(s, len, &err) != 0) {
        respond_error(call, 400, err, NULL);
        return -1;
    }
    *msg = h2o_strdup(&call->req->pool, s, len).base;
    return 0;
}

/* The If-Match precondition against the active version: -1 when absent, else the active number to
 * pass to the store (which re-checks it inside its transaction). Answers 412 and returns -2 when
 * it does not hold. */
static int64_t if_match(cp_call_t *call)
{
    h2o_iovec_t *h = find_header(call, H2O_TOKEN_IF_MATCH);
    if (h == NULL)
        return -1;
    int64_t active = cp_store_active_version(call->srv->store);
    if (!cp_if_match_holds(h->base, h->len, active)) {
        json_t *body =
            json_pack("{ss sI}", "error", "If-Match does not name the active version", "active_version", (json_int_t)active);
        respond_json(call, 412, body);
        return -2;
    }
    return active;
}

/* A JSON document parsed from stored canonical text. */
static json_t *document_json(const char *text)
{
    return json_loads(text, 0, NULL);
}

static json_t *version_json(const cp_version_t *v, int with_document)
{
    char t[32];
    cp_format_time(v->created_ms, t);
    json_t *o = json_pack("{sI ss ss ss ss so ss}", "version", (json_int_t)v->version, "created_at", t, "author", v->author,
                          "message", v->message, "kind", cp_kind_name(v->kind), "source_version",
                          v->source_version > 0 ? json_integer(v->source_version) : json_null(), "hash", v->hash);
    if (o != NULL && with_document && v->document != NULL) {
        json_t *doc = document_json(v->document);
        if (doc == NULL) {
            json_decref(o);
            return NULL;
        }
        json_object_set_new(o, "document", doc);
    }
    return o;
}

/* Answers 200 with one version and its document, with its ETag; disposes *v. */
static void respond_version(cp_call_t *call, cp_version_t *v)
{
    json_t *body = version_json(v, 1);
    add_version_headers(call, v->version, v->hash);
    cp_version_dispose(v);
    if (body == NULL) {
        respond_error(call, 503, "stored document unreadable", NULL);
        return;
    }
    respond_json(call, 200, body);
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
        respond_error(call, 400,
                      format == CFG_FORMAT_YAML   ? "invalid YAML"
                      : format == CFG_FORMAT_JSON ? "invalid JSON"
                                                  : "invalid document",
                      cfg_errors_to_json(&errs));
    cfg_errors_dispose(&errs);
    return tree;
}

/* Validates a tree as a fleet document; answers 400 listing every error on failure. */
static int prepare_or_400(cp_call_t *call, json_t *tree, char **canonical, char hash[65])
{
    cfg_errors_t errs;
    cfg_errors_init(&errs);
    int rc = cp_document_prepare(tree, canonical, hash, &errs);
    if (rc != 0)
        respond_error(call, 400, "invalid document", cfg_errors_to_json(&errs));
    cfg_errors_dispose(&errs);
    return rc;
}

/* The body as a fleet document (PUT, validate): parsed in the format its content type names,
 * validated, canonicalised. Answers 400 and returns -1 on any error; else *canonical (caller
 * frees) and its hash. */
static int body_document(cp_call_t *call, cp_ctype_t ct, char **canonical, char hash[65])
{
    json_t *tree = parse_body_tree(call, ct == CP_CTYPE_YAML   ? CFG_FORMAT_YAML
                                         : ct == CP_CTYPE_JSON ? CFG_FORMAT_JSON
                                                               : CFG_FORMAT_AUTO);
    if (tree == NULL)
        return -1;
    int rc = prepare_or_400(call, tree, canonical, hash);
    json_decref(tree);
    return rc;
}

static void wake_waiters(cp_server_t *srv);

/* Stores a version and answers: 201 (new), 200 (identical to the active one), 412, 503. */
static void store_and_respond(cp_call_t *call, cp_append_t *a)
{
    int64_t version = 0;
    int rc = cp_store_append(call->srv->store, a, &version);
    if (rc == CP_STORE_CONFLICT) {
        json_t *body = json_pack("{ss sI}", "error", "If-Match does not name the active version", "active_version",
                                 (json_int_t)cp_store_active_version(call->srv->store));
        respond_json(call, 412, body);
        return;
    }
    if (rc != CP_STORE_CREATED && rc != CP_STORE_UNCHANGED) {
        respond_store_error(call);
        return;
    }
    if (rc == CP_STORE_CREATED)
        PW_INFO("version %lld stored (%s by %s)", (long long)version, cp_kind_name(a->kind), a->author);
    cp_version_t v;
    if (cp_store_get_version(call->srv->store, version, &v) != CP_STORE_OK) {
        respond_store_error(call);
        /* the version is committed whatever this answer says: the polls must hear of it */
        if (rc == CP_STORE_CREATED)
            wake_waiters(call->srv);
        return;
    }
    json_t *body = version_json(&v, 0);
    if (body != NULL)
        json_object_set_new(body, "created", json_boolean(rc == CP_STORE_CREATED));
    add_version_headers(call, v.version, v.hash);
    char loc[64];
    snprintf(loc, sizeof(loc), "/v1/versions/%lld", (long long)v.version);
    add_header(call, H2O_TOKEN_LOCATION, loc);
    cp_version_dispose(&v);
    respond_json(call, rc == CP_STORE_CREATED ? 201 : 200, body);
    if (rc == CP_STORE_CREATED)
        wake_waiters(call->srv);
}

/* --- handlers: health and metrics ------------------------------------------------------------- */

static void h_healthz(cp_call_t *call)
{
    respond_json(call, 200,
                 json_pack("{ss sI}", "status", "ok", "active_version", (json_int_t)cp_store_active_version(call->srv->store)));
}

/* A parked poll proves its dataplane alive only for heartbeat_timeout after it parked: h2o 2.2
 * does not read an HTTP/1 socket while a request is in progress, so a poll whose client vanished
 * stays parked until its wait ends. */
static int waiter_is_proof(cp_server_t *srv, const cp_waiter_t *w, int64_t now_mono)
{
    return now_mono - w->parked <= (int64_t)srv->conf->heartbeat_ms;
}

static int is_polling(cp_server_t *srv, const char *id)
{
    int64_t now = mono_ms();
    for (h2o_linklist_t *n = srv->waiters.next; n != &srv->waiters; n = n->next) {
        cp_waiter_t *w = H2O_STRUCT_FROM_MEMBER(cp_waiter_t, link, n);
        if (waiter_is_proof(srv, w, now) && strcmp(w->call->params[0].base, id) == 0)
            return 1;
    }
    return 0;
}

/* The ids with a poll that proves them alive, sorted, for listing many dataplanes in
 * O((dataplanes + waiters) log waiters) rather than a scan of the waiters per dataplane. */
typedef struct st_cp_polling_set_t {
    const char **ids; /* borrowed from the waiters' requests; valid while the caller runs */
    size_t size;      /* entries of ids */
} cp_polling_set_t;

static int cmp_id(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* Returns 0, or -1 when out of memory. Free set->ids. */
static int polling_set_init(cp_server_t *srv, cp_polling_set_t *set)
{
    int64_t now = mono_ms();
    set->size = 0;
    set->ids = malloc((srv->num_waiters + 1) * sizeof(set->ids[0]));
    if (set->ids == NULL)
        return -1;
    for (h2o_linklist_t *n = srv->waiters.next; n != &srv->waiters; n = n->next) {
        cp_waiter_t *w = H2O_STRUCT_FROM_MEMBER(cp_waiter_t, link, n);
        if (waiter_is_proof(srv, w, now))
            set->ids[set->size++] = w->call->params[0].base;
    }
    qsort(set->ids, set->size, sizeof(set->ids[0]), cmp_id);
    return 0;
}

static int polling_set_has(const cp_polling_set_t *set, const char *id)
{
    return bsearch(&id, set->ids, set->size, sizeof(set->ids[0]), cmp_id) != NULL;
}

/* A growing text buffer for /metrics; `failed` sticks once an append runs out of memory. */
typedef struct st_cp_buf_t {
    char *p;    /* the text (not NUL-terminated beyond len) */
    size_t len; /* bytes used */
    size_t cap; /* bytes allocated */
    int failed; /* an append failed: the text is incomplete */
} cp_buf_t;

static void buf_printf(cp_buf_t *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void buf_printf(cp_buf_t *b, const char *fmt, ...)
{
    if (b->failed)
        return;
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(b->p != NULL ? b->p + b->len : NULL, b->p != NULL ? b->cap - b->len : 0, fmt, ap);
        va_end(ap);
        if (n < 0) {
            b->failed = 1;
            return;
        }
        if (b->p != NULL && b->len + (size_t)n < b->cap) {
            b->len += (size_t)n;
            return;
        }
        size_t cap = (b->cap ? b->cap * 2 : 4096) + (size_t)n;
        char *np = realloc(b->p, cap);
        if (np == NULL) {
            b->failed = 1;
            return;
        }
        b->p = np;
        b->cap = cap;
    }
}

static void h_metrics(cp_call_t *call)
{
    cp_server_t *srv = call->srv;
    cp_buf_t b = {0};
    buf_printf(&b,
               "# HELP pathway_control_active_version Number of the active config version (0 = none).\n"
               "# TYPE pathway_control_active_version gauge\npathway_control_active_version %lld\n",
               (long long)cp_store_active_version(srv->store));
    buf_printf(&b,
               "# HELP pathway_control_versions Config versions stored.\n# TYPE pathway_control_versions gauge\n"
               "pathway_control_versions %lld\n",
               (long long)cp_store_count_versions(srv->store));
    cp_dataplane_t *dps;
    size_t ndp;
    cp_polling_set_t polling;
    if (polling_set_init(srv, &polling) != 0) {
        free(b.p);
        respond_error(call, 503, "out of memory", NULL);
        return;
    }
    if (cp_store_list_dataplanes(srv->store, NULL, 0, &dps, &ndp) != CP_STORE_OK) {
        free(polling.ids);
        free(b.p);
        respond_store_error(call);
        return;
    }
    size_t by_state[CP_DP_NUM_STATES] = {0};
    int64_t now = cp_now_ms(), active = cp_store_active_version(srv->store);
    for (size_t i = 0; i < ndp; i++)
        by_state[cp_dp_state(&dps[i], active, now, (int64_t)srv->conf->heartbeat_ms, polling_set_has(&polling, dps[i].id))]++;
    cp_dataplanes_free(dps, ndp);
    free(polling.ids);
    buf_printf(&b, "# HELP pathway_control_dataplanes Dataplanes known, by state.\n# TYPE pathway_control_dataplanes gauge\n");
    for (size_t s = 0; s < CP_DP_NUM_STATES; s++)
        buf_printf(&b, "pathway_control_dataplanes{state=\"%s\"} %zu\n", cp_dp_state_name((cp_dp_state_t)s), by_state[s]);
    buf_printf(&b,
               "# HELP pathway_control_long_polls Dataplane long polls waiting now.\n# TYPE pathway_control_long_polls gauge\n"
               "pathway_control_long_polls %zu\n",
               srv->num_waiters);
    buf_printf(&b, "# HELP pathway_control_api_requests_total API requests answered, by route and status.\n"
                   "# TYPE pathway_control_api_requests_total counter\n");
    for (size_t r = 0; r <= NUM_ROUTES; r++) {
        for (size_t s = 0; s < NUM_STATUS; s++) {
            uint64_t n = srv->counts[r * NUM_STATUS + s];
            /* this very request is counted once its response starts, after this text is built */
            if (n == 0)
                continue;
            if (r < NUM_ROUTES)
                buf_printf(&b, "pathway_control_api_requests_total{route=\"%s %s\",status=\"%zu\"} %llu\n", routes[r].method,
                           routes[r].path, s, (unsigned long long)n);
            else
                buf_printf(&b, "pathway_control_api_requests_total{route=\"unmatched\",status=\"%zu\"} %llu\n", s,
                           (unsigned long long)n);
        }
    }
    buf_printf(&b,
               "# HELP pathway_control_start_time_seconds Unix time the process started.\n"
               "# TYPE pathway_control_start_time_seconds gauge\npathway_control_start_time_seconds %lld\n",
               (long long)(srv->started_ms / 1000));
    if (b.failed) {
        free(b.p);
        respond_error(call, 503, "out of memory", NULL);
        return;
    }
    respond_raw(call, 200, "text/plain; version=0.0.4; charset=utf-8", b.p, b.len);
    free(b.p);
}

/* --- handlers: config --------------------------------------------------------------------------- */

static void h_get_config(cp_call_t *call)
{
    cp_version_t v;
    int rc = cp_store_get_version(call->srv->store, 0, &v);
    if (rc == CP_STORE_NOT_FOUND) {
        respond_error(call, 404, "no config stored yet: PUT /v1/config first", NULL);
        return;
    }
    if (rc != CP_STORE_OK) {
        respond_store_error(call);
        return;
    }
    add_version_headers(call, v.version, v.hash);
    h2o_iovec_t *inm = find_header(call, H2O_TOKEN_IF_NONE_MATCH);
    if (inm != NULL && cp_if_match_holds(inm->base, inm->len, v.version)) {
        cp_version_dispose(&v);
        respond_raw(call, 304, NULL, "", 0);
        return;
    }
    h2o_iovec_t *accept = find_header(call, H2O_TOKEN_ACCEPT);
    if (accept != NULL && cp_accepts_yaml(accept->base, accept->len)) {
        json_t *doc = document_json(v.document);
        char *yaml = doc != NULL ? cfg_json_to_yaml(doc) : NULL;
        json_decref(doc);
        cp_version_dispose(&v);
        if (yaml == NULL) {
            respond_error(call, 503, "cannot render the document as YAML", NULL);
            return;
        }
        respond_raw(call, 200, "application/yaml", yaml, strlen(yaml));
        free(yaml);
        return;
    }
    size_t len = strlen(v.document);
    char *text = h2o_mem_alloc_pool(&call->req->pool, len + 1);
    memcpy(text, v.document, len);
    text[len] = '\n';
    cp_version_dispose(&v);
    respond_raw(call, 200, "application/json", text, len + 1);
}

static void h_put_config(cp_call_t *call)
{
    if (check_body_size(call) != 0)
        return;
    cp_ctype_t ct = body_ctype(call, 1, 0);
    if (ct == CP_CTYPE_OTHER)
        return;
    const char *message;
    if (request_message(call, &message) != 0)
        return;
    int64_t expect = if_match(call);
    if (expect == -2)
        return;
    char *canonical = NULL, hash[65];
    if (body_document(call, ct, &canonical, hash) != 0)
        return;
    cp_append_t a = {.author = call->token->name,
                     .message = message,
                     .kind = CP_KIND_APPLY,
                     .document = canonical,
                     .hash = hash,
                     .if_match = expect};
    store_and_respond(call, &a);
    free(canonical);
}

static void h_patch_config(cp_call_t *call)
{
    if (check_body_size(call) != 0)
        return;
    if (body_ctype(call, 0, 1) == CP_CTYPE_OTHER)
        return;
    const char *message;
    if (request_message(call, &message) != 0)
        return;
    int64_t expect = if_match(call);
    if (expect == -2)
        return;
    json_error_t jerr;
    json_t *patch = json_loadb(call->req->entity.base, call->req->entity.len, JSON_REJECT_DUPLICATES | JSON_DECODE_ANY, &jerr);
    if (patch == NULL) {
        respond_errorf(call, 400, "body: invalid JSON at line %d, column %d: %s", jerr.line, jerr.column, jerr.text);
        return;
    }
    cp_version_t base;
    int rc = cp_store_get_version(call->srv->store, 0, &base);
    if (rc == CP_STORE_ERROR) {
        json_decref(patch);
        respond_store_error(call);
        return;
    }
    json_t *target = rc == CP_STORE_OK ? document_json(base.document) : json_object();
    int64_t base_version = rc == CP_STORE_OK ? base.version : 0;
    if (rc == CP_STORE_OK)
        cp_version_dispose(&base);
    json_t *merged = target != NULL ? cfg_merge_patch(target, patch) : NULL;
    json_decref(target);
    json_decref(patch);
    if (merged == NULL) {
        respond_error(call, 503, "cannot apply the patch (out of memory or unreadable active document)", NULL);
        return;
    }
    char *canonical = NULL, hash[65];
    rc = prepare_or_400(call, merged, &canonical, hash);
    json_decref(merged);
    if (rc != 0)
        return;
    /* the patch was applied to base_version: it must still be the active one when storing */
    cp_append_t a = {.author = call->token->name,
                     .message = message,
                     .kind = CP_KIND_PATCH,
                     .source_version = base_version,
                     .document = canonical,
                     .hash = hash,
                     .if_match = expect >= 0 ? expect : base_version};
    store_and_respond(call, &a);
    free(canonical);
}

static void h_validate(cp_call_t *call)
{
    if (check_body_size(call) != 0)
        return;
    cp_ctype_t ct = body_ctype(call, 1, 0);
    if (ct == CP_CTYPE_OTHER)
        return;
    char *canonical = NULL, hash[65];
    if (body_document(call, ct, &canonical, hash) != 0)
        return;
    json_t *doc = document_json(canonical);
    free(canonical);
    int same = strcmp(hash, cp_store_active_hash(call->srv->store)) == 0;
    respond_json(call, 200,
                 json_pack("{sb ss sb so}", "valid", 1, "hash", hash, "identical_to_active", same, "document",
                           doc != NULL ? doc : json_null()));
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
            respond_error(call, 400, "limit: must be an integer from 1 to 1000", NULL);
            return -1;
        }
        *limit = (int)v;
    }
    if ((s = cp_query_get(&call->query, "before", &len)) != NULL) {
        if (cp_parse_version(s, len, 0, &v) != 0) {
            respond_error(call, 400, "before: must be a positive integer", NULL);
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

static void h_list_versions(cp_call_t *call)
{
    int limit;
    int64_t before;
    if (page_params(call, &limit, &before) != 0)
        return;
    json_t *list = cp_store_list_versions(call->srv->store, before, limit);
    if (list == NULL) {
        respond_store_error(call);
        return;
    }
    respond_json(call, 200,
                 json_pack("{sI so so}", "active_version", (json_int_t)cp_store_active_version(call->srv->store), "versions", list,
                           "next_before", next_before(list, limit, "version")));
}

/* Path parameter {n} as a version that exists; answers 400/404 otherwise. */
static int path_version(cp_call_t *call, h2o_iovec_t s, const char *what, int64_t *out)
{
    if (cp_parse_version(s.base, s.len, 0, out) != 0) {
        respond_errorf(call, 400, "%s: \"%.32s\" is not a version number (a positive integer)", what, s.base);
        return -1;
    }
    if (*out > cp_store_active_version(call->srv->store)) {
        respond_errorf(call, 404, "%s: version %lld does not exist", what, (long long)*out);
        return -1;
    }
    return 0;
}

static void h_get_version(cp_call_t *call)
{
    int64_t n;
    if (path_version(call, call->params[0], "version", &n) != 0)
        return;
    cp_version_t v;
    int rc = cp_store_get_version(call->srv->store, n, &v);
    if (rc == CP_STORE_NOT_FOUND) {
        respond_errorf(call, 404, "version %lld does not exist", (long long)n);
        return;
    }
    if (rc != CP_STORE_OK) {
        respond_store_error(call);
        return;
    }
    respond_version(call, &v);
}

/* The document of version n as a tree ({} for version 0, "before the first"); NULL after answering. */
static json_t *version_tree(cp_call_t *call, int64_t n)
{
    if (n == 0)
        return json_object();
    cp_version_t v;
    int rc = cp_store_get_version(call->srv->store, n, &v);
    if (rc == CP_STORE_NOT_FOUND) {
        respond_errorf(call, 404, "version %lld does not exist", (long long)n);
        return NULL;
    }
    if (rc != CP_STORE_OK) {
        respond_store_error(call);
        return NULL;
    }
    json_t *t = document_json(v.document);
    cp_version_dispose(&v);
    if (t == NULL)
        respond_error(call, 503, "stored document unreadable", NULL);
    return t;
}

static void h_diff(cp_call_t *call)
{
    int64_t n, from;
    if (path_version(call, call->params[0], "version", &n) != 0)
        return;
    size_t len;
    const char *s = cp_query_get(&call->query, "from", &len);
    if (s == NULL) {
        from = n - 1;
    } else if (cp_parse_version(s, len, 1, &from) != 0) {
        respond_error(call, 400, "from: must be a version number (0 = the empty document)", NULL);
        return;
    } else if (from > cp_store_active_version(call->srv->store)) {
        respond_errorf(call, 404, "from: version %lld does not exist", (long long)from);
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
    json_t *patch = cfg_json_diff(a, b);
    json_decref(a);
    json_decref(b);
    if (patch == NULL) {
        respond_error(call, 503, "out of memory", NULL);
        return;
    }
    respond_json(call, 200, json_pack("{sI sI so}", "from", (json_int_t)from, "to", (json_int_t)n, "patch", patch));
}

static void h_rollback(cp_call_t *call)
{
    if (check_body_size(call) != 0 || body_ctype(call, 0, 0) == CP_CTYPE_OTHER)
        return;
    const char *hdr_message;
    if (request_message(call, &hdr_message) != 0)
        return;
    int64_t expect = if_match(call);
    if (expect == -2)
        return;
    cp_rollback_req_t r;
    char err[256];
    if (cp_parse_rollback(call->req->entity.base, call->req->entity.len, &r, err, sizeof(err)) != 0) {
        respond_error(call, 400, err, NULL);
        return;
    }
    if (r.message != NULL && hdr_message != NULL) {
        cp_rollback_req_dispose(&r);
        respond_error(call, 400, "message: give it in the body or in Pathway-Message / ?message=, not both", NULL);
        return;
    }
    int64_t target = r.to_version;
    if (r.to_tag != NULL) {
        int rc = cp_store_get_tag(call->srv->store, r.to_tag, &target);
        if (rc == CP_STORE_NOT_FOUND) {
            respond_errorf(call, 404, "to: tag \"%s\" does not exist", r.to_tag);
            cp_rollback_req_dispose(&r);
            return;
        }
        if (rc != CP_STORE_OK) {
            cp_rollback_req_dispose(&r);
            respond_store_error(call);
            return;
        }
    }
    cp_version_t v;
    int rc = target > cp_store_active_version(call->srv->store) ? CP_STORE_NOT_FOUND
                                                                : cp_store_get_version(call->srv->store, target, &v);
    if (rc != CP_STORE_OK) {
        if (rc == CP_STORE_NOT_FOUND)
            respond_errorf(call, 404, "to: version %lld does not exist", (long long)target);
        else
            respond_store_error(call);
        cp_rollback_req_dispose(&r);
        return;
    }
    /* the target was valid under the schema of its day: check it against today's, and store it in
     * today's canonical form (defaults added since, and its hash), as a PUT of it would */
    json_t *tree = document_json(v.document);
    cp_version_dispose(&v);
    if (tree == NULL) {
        cp_rollback_req_dispose(&r);
        respond_error(call, 503, "stored document unreadable", NULL);
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
        respond_error(call, 400, what, cfg_errors_to_json(&errs));
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
    cp_append_t a = {.author = call->token->name,
                     .message = message,
                     .kind = CP_KIND_ROLLBACK,
                     .source_version = target,
                     .document = canonical,
                     .hash = hash,
                     .if_match = expect};
    store_and_respond(call, &a);
    free(canonical);
    cp_rollback_req_dispose(&r);
}

/* --- handlers: tags ------------------------------------------------------------------------------ */

static int path_tag(cp_call_t *call)
{
    h2o_iovec_t s = call->params[0];
    if (!cp_valid_tag_name(s.base, s.len)) {
        respond_error(call, 400, "tag: a tag name is 1-64 characters of A-Z a-z 0-9 _ . - and not only digits", NULL);
        return -1;
    }
    return 0;
}

static void h_list_tags(cp_call_t *call)
{
    json_t *tags = cp_store_list_tags(call->srv->store);
    if (tags == NULL) {
        respond_store_error(call);
        return;
    }
    respond_json(call, 200, json_pack("{so}", "tags", tags));
}

static void h_get_tag(cp_call_t *call)
{
    if (path_tag(call) != 0)
        return;
    int rc;
    json_t *tag = cp_store_tag_json(call->srv->store, call->params[0].base, &rc);
    if (rc == CP_STORE_NOT_FOUND) {
        respond_errorf(call, 404, "tag \"%s\" does not exist", call->params[0].base);
        return;
    }
    if (tag == NULL) {
        respond_store_error(call);
        return;
    }
    respond_json(call, 200, tag);
}

static void h_put_tag(cp_call_t *call)
{
    if (path_tag(call) != 0 || check_body_size(call) != 0 || body_ctype(call, 0, 0) == CP_CTYPE_OTHER)
        return;
    cp_tag_req_t r;
    char err[256];
    if (cp_parse_tag(call->req->entity.base, call->req->entity.len, &r, err, sizeof(err)) != 0) {
        respond_error(call, 400, err, NULL);
        return;
    }
    int rc = cp_store_set_tag(call->srv->store, call->params[0].base, r.version, call->token->name, r.message);
    if (rc == CP_STORE_NOT_FOUND) {
        respond_errorf(call, 404, "version: version %lld does not exist", (long long)r.version);
        cp_tag_req_dispose(&r);
        return;
    }
    cp_tag_req_dispose(&r);
    if (rc != CP_STORE_OK) {
        respond_store_error(call);
        return;
    }
    h_get_tag(call);
}

/* --- handlers: dataplanes ------------------------------------------------------------------------ */

/* `polling`: whether a parked poll proves it alive (is_polling). */
static json_t *dataplane_json(cp_server_t *srv, const cp_dataplane_t *dp, int64_t active, int64_t now, int polling)
{
    char first[32], last[32];
    cp_format_time(dp->first_seen_ms, first);
    cp_format_time(dp->last_seen_ms, last);
    cp_dp_state_t state = cp_dp_state(dp, active, now, (int64_t)srv->conf->heartbeat_ms, polling);
    json_t *o =
        json_pack("{ss sO ss ss sI sI sI ss sO}", "id", dp->id, "labels", dp->labels, "first_seen", first, "last_seen", last,
                  "applied_version", (json_int_t)dp->applied_version, "delivered_version", (json_int_t)dp->delivered_version,
                  "reported_version", (json_int_t)dp->reported_version, "state", cp_dp_state_name(state), "stats", dp->stats);
    if (o != NULL && dp->rejected_version != 0) {
        json_object_set_new(o, "rejected_version", json_integer(dp->rejected_version));
        json_object_set_new(o, "error", json_string(dp->error));
    }
    return o;
}

static int path_dataplane_id(cp_call_t *call)
{
    if (!cp_valid_id(call->params[0].base, call->params[0].len)) {
        respond_error(call, 400, "id: a dataplane id is 1-64 characters of A-Z a-z 0-9 _ . -", NULL);
        return -1;
    }
    return 0;
}

static void h_list_dataplanes(cp_call_t *call)
{
    size_t len;
    int limit = 1000;
    int64_t v;
    const char *s = cp_query_get(&call->query, "limit", &len), *after = NULL;
    if (s != NULL) {
        if (cp_parse_version(s, len, 0, &v) != 0 || v > 1000) {
            respond_error(call, 400, "limit: must be an integer from 1 to 1000", NULL);
            return;
        }
        limit = (int)v;
    }
    if ((after = cp_query_get(&call->query, "after", &len)) != NULL && !cp_valid_id(after, len)) {
        respond_error(call, 400, "after: must be a dataplane id (the next_after of the previous page)", NULL);
        return;
    }
    cp_dataplane_t *dps;
    size_t n;
    cp_polling_set_t polling;
    if (polling_set_init(call->srv, &polling) != 0) {
        respond_error(call, 503, "out of memory", NULL);
        return;
    }
    if (cp_store_list_dataplanes(call->srv->store, after, limit, &dps, &n) != CP_STORE_OK) {
        free(polling.ids);
        respond_store_error(call);
        return;
    }
    int64_t active = cp_store_active_version(call->srv->store), now = cp_now_ms();
    json_t *arr = json_array();
    for (size_t i = 0; arr != NULL && i < n; i++)
        json_array_append_new(arr, dataplane_json(call->srv, &dps[i], active, now, polling_set_has(&polling, dps[i].id)));
    json_t *next = n == (size_t)limit ? json_string(dps[n - 1].id) : json_null();
    cp_dataplanes_free(dps, n);
    free(polling.ids);
    respond_json(call, 200, json_pack("{sI so so}", "active_version", (json_int_t)active, "dataplanes", arr, "next_after", next));
}

static void h_get_dataplane(cp_call_t *call)
{
    if (path_dataplane_id(call) != 0)
        return;
    cp_dataplane_t dp;
    int rc = cp_store_get_dataplane(call->srv->store, call->params[0].base, &dp);
    if (rc == CP_STORE_NOT_FOUND) {
        respond_errorf(call, 404, "dataplane \"%s\" has never called", call->params[0].base);
        return;
    }
    if (rc != CP_STORE_OK) {
        respond_store_error(call);
        return;
    }
    json_t *body =
        dataplane_json(call->srv, &dp, cp_store_active_version(call->srv->store), cp_now_ms(), is_polling(call->srv, dp.id));
    cp_dataplane_dispose(&dp);
    respond_json(call, 200, body);
}

/* Whether a dataplane that has `known` should be handed the active version now: it differs, and the
 * dataplane's latest report is not a NACK of it. That breaks an apply-NACK loop whatever version the
 * dataplane names, while a dataplane that reports again what it runs (as it does after a restart)
 * gets one more try (its cause may be fixed). Returns -1 on a store error. */
static int should_deliver(cp_server_t *srv, const char *id, int64_t known)
{
    int64_t active = cp_store_active_version(srv->store);
    if (active == 0 || active == known)
        return 0;
    cp_dataplane_t dp;
    int rc = cp_store_get_dataplane(srv->store, id, &dp);
    if (rc == CP_STORE_ERROR)
        return -1;
    int rejected = rc == CP_STORE_OK && dp.rejected_version == active && dp.reported_version == active;
    if (rc == CP_STORE_OK)
        cp_dataplane_dispose(&dp);
    return !rejected;
}

/* Answers a config call with the active version (200), and records the delivery. `now_ms`: the
 * time to record as last seen, 0 for a parked poll (its client may have vanished meanwhile). */
static void deliver(cp_call_t *call, int64_t now_ms)
{
    cp_server_t *srv = call->srv;
    cp_version_t v;
    if (cp_store_get_version(srv->store, 0, &v) != CP_STORE_OK) {
        respond_store_error(call);
        return;
    }
    if (cp_store_dataplane_seen(srv->store, call->params[0].base, now_ms, v.version) != CP_STORE_OK) {
        cp_version_dispose(&v);
        respond_store_error(call);
        return;
    }
    respond_version(call, &v);
}

/* `record`: the dataplane is calling now (not a parked poll whose wait ended: it proved itself
 * alive when it parked, and may be gone since). */
static void answer_not_modified(cp_call_t *call, int record)
{
    if (record && cp_store_dataplane_seen(call->srv->store, call->params[0].base, cp_now_ms(), 0) != CP_STORE_OK) {
        respond_store_error(call);
        return;
    }
    char etag[40];
    snprintf(etag, sizeof(etag), "\"%lld\"", (long long)cp_store_active_version(call->srv->store));
    add_header(call, H2O_TOKEN_ETAG, etag);
    respond_raw(call, 304, NULL, "", 0);
}

static void unpark(cp_server_t *srv, cp_waiter_t *w)
{
    if (h2o_linklist_is_linked(&w->link)) {
        h2o_linklist_unlink(&w->link);
        srv->num_waiters--;
    }
}

static void on_waiter_dispose(void *p)
{
    cp_waiter_t *w = p;
    /* the request ended without an answer from us (client gone, HTTP/2 stream reset) */
    unpark(w->srv, w);
}

static void wake_waiters(cp_server_t *srv)
{
    h2o_linklist_t *n = srv->waiters.next;
    while (n != &srv->waiters) {
        cp_waiter_t *w = H2O_STRUCT_FROM_MEMBER(cp_waiter_t, link, n);
        n = n->next;
        int d = should_deliver(srv, w->call->params[0].base, w->known_version);
        if (d == 0)
            continue;
        unpark(srv, w);
        if (d < 0)
            respond_store_error(w->call);
        else
            deliver(w->call, 0);
    }
}

/* Answers long polls whose wait has ended; returns ms until the next deadline (-1 = none). */
static int64_t expire_waiters(cp_server_t *srv)
{
    int64_t now = mono_ms();
    while (!h2o_linklist_is_empty(&srv->waiters)) {
        cp_waiter_t *w = H2O_STRUCT_FROM_MEMBER(cp_waiter_t, link, srv->waiters.next);
        if (w->deadline > now)
            return w->deadline - now;
        unpark(srv, w);
        answer_not_modified(w->call, 0);
    }
    return -1;
}

/* Refuses a new dataplane id beyond max_dataplanes (403); returns -1 after answering. */
static int admit_dataplane(cp_call_t *call)
{
    int rc = cp_store_dataplane_admit(call->srv->store, call->params[0].base, call->srv->conf->max_dataplanes);
    if (rc == CP_STORE_OK)
        return 0;
    if (rc == CP_STORE_LIMIT)
        respond_errorf(call, 403, "id: %llu dataplanes are known already (max_dataplanes); \"%s\" is not one of them",
                       (unsigned long long)call->srv->conf->max_dataplanes, call->params[0].base);
    else
        respond_store_error(call);
    return -1;
}

static void h_dp_config(cp_call_t *call)
{
    cp_server_t *srv = call->srv;
    if (path_dataplane_id(call) != 0 || admit_dataplane(call) != 0)
        return;
    size_t len;
    int64_t known = 0;
    uint64_t wait = 0;
    const char *s = cp_query_get(&call->query, "version", &len);
    if (s != NULL && cp_parse_version(s, len, 1, &known) != 0) {
        respond_error(call, 400, "version: must be the version the dataplane has (an integer, 0 = none)", NULL);
        return;
    }
    const char *err = NULL;
    if ((s = cp_query_get(&call->query, "wait", &len)) != NULL && cp_parse_wait(s, len, &wait, &err) != 0) {
        respond_error(call, 400, err, NULL);
        return;
    }
    if (wait > srv->conf->max_wait_ms)
        wait = srv->conf->max_wait_ms;
    int d = should_deliver(srv, call->params[0].base, known);
    if (d < 0) {
        respond_store_error(call);
        return;
    }
    if (d) {
        deliver(call, cp_now_ms());
        return;
    }
    if (wait == 0) {
        answer_not_modified(call, 1);
        return;
    }
    if (srv->stopping) {
        /* a poll on a connection that stays open while the server drains (HTTP/2) */
        add_header(call, H2O_TOKEN_RETRY_AFTER, "1");
        respond_error(call, 503, "control plane stopping", NULL);
        return;
    }
    if (cp_store_dataplane_seen(srv->store, call->params[0].base, cp_now_ms(), 0) != CP_STORE_OK) {
        respond_store_error(call);
        return;
    }
    cp_waiter_t *w = h2o_mem_alloc_shared(&call->req->pool, sizeof(*w), on_waiter_dispose);
    memset(w, 0, sizeof(*w));
    w->srv = srv;
    w->call = call;
    w->known_version = known;
    w->parked = mono_ms();
    w->deadline = w->parked + (int64_t)wait;
    /* keep the list ordered by deadline; new polls usually end last, so search from the tail */
    h2o_linklist_t *pos = srv->waiters.prev;
    while (pos != &srv->waiters && H2O_STRUCT_FROM_MEMBER(cp_waiter_t, link, pos)->deadline > w->deadline)
        pos = pos->prev;
    h2o_linklist_insert(pos->next, &w->link);
    srv->num_waiters++;
}

static void h_dp_status(cp_call_t *call)
{
    cp_server_t *srv = call->srv;
    if (path_dataplane_id(call) != 0 || check_body_size(call) != 0 || body_ctype(call, 0, 0) == CP_CTYPE_OTHER)
        return;
    cp_status_req_t r;
    char err[256];
    if (cp_parse_status(call->req->entity.base, call->req->entity.len, &r, err, sizeof(err)) != 0) {
        respond_error(call, 400, err, NULL);
        return;
    }
    if (r.version > cp_store_active_version(srv->store)) {
        respond_errorf(call, 404, "version: version %lld does not exist", (long long)r.version);
        cp_status_req_dispose(&r);
        return;
    }
    if (admit_dataplane(call) != 0) {
        cp_status_req_dispose(&r);
        return;
    }
    int rc =
        cp_store_dataplane_report(srv->store, call->params[0].base, cp_now_ms(), r.version, r.applied, r.error, r.labels, r.stats);
    if (!r.applied)
        PW_WARN("dataplane %s rejected version %lld: %s", call->params[0].base, (long long)r.version, r.error);
    cp_status_req_dispose(&r);
    if (rc != CP_STORE_OK) {
        respond_store_error(call);
        return;
    }
    cp_dataplane_t dp;
    if (cp_store_get_dataplane(srv->store, call->params[0].base, &dp) != CP_STORE_OK) {
        respond_store_error(call);
        return;
    }
    json_t *body = dataplane_json(srv, &dp, cp_store_active_version(srv->store), cp_now_ms(), is_polling(srv, dp.id));
    cp_dataplane_dispose(&dp);
    if (body != NULL)
        json_object_set_new(body, "active_version", json_integer(cp_store_active_version(srv->store)));
    respond_json(call, 200, body);
}

static void h_events(cp_call_t *call)
{
    int limit;
    int64_t before;
    if (page_params(call, &limit, &before) != 0)
        return;
    json_t *list = cp_store_list_events(call->srv->store, before, limit);
    if (list == NULL) {
        respond_store_error(call);
        return;
    }
    respond_json(call, 200, json_pack("{so so}", "events", list, "next_before", next_before(list, limit, "id")));
}

/* --- routing and auth ------------------------------------------------------------------------------ */

/* Matches `path` against a route pattern, capturing {x} segments into call->params. */
static int match_path(cp_call_t *call, const char *pattern, const char *path, size_t len)
{
    const char *p = pattern, *s = path, *end = path + len;
    size_t nparams = 0;
    while (*p != '\0' && s < end) {
        if (*p != '/' || *s != '/')
            return 0;
        ++p;
        ++s;
        const char *pseg = p, *sseg = s;
        while (*p != '\0' && *p != '/')
            ++p;
        while (s < end && *s != '/')
            ++s;
        size_t plen = (size_t)(p - pseg), slen = (size_t)(s - sseg);
        if (plen > 1 && pseg[0] == '{') {
            if (slen == 0 || slen > 256 || nparams == 2)
                return 0;
            call->params[nparams++] = h2o_strdup(&call->req->pool, sseg, slen);
        } else if (plen != slen || memcmp(pseg, sseg, plen) != 0) {
            return 0;
        }
    }
    return *p == '\0' && s == end;
}

static const cp_token_t *authenticate(cp_server_t *srv, cp_call_t *call)
{
    h2o_iovec_t *h = find_header(call, H2O_TOKEN_AUTHORIZATION);
    if (h == NULL || h->len < 7 || strncasecmp(h->base, "Bearer ", 7) != 0)
        return NULL;
    const char *tok = h->base + 7;
    size_t len = h->len - 7;
    while (len > 0 && *tok == ' ') {
        ++tok;
        --len;
    }
    while (len > 0 && tok[len - 1] == ' ')
        --len;
    if (len == 0)
        return NULL;
    unsigned char hash[32];
    cp_token_hash(tok, len, hash);
    /* compare against every token, whatever matched: the time taken says nothing about which */
    const cp_token_t *found = NULL;
    for (size_t i = 0; i < srv->conf->num_tokens; i++) {
        int eq = CRYPTO_memcmp(hash, srv->conf->tokens[i].hash, sizeof(hash)) == 0;
        found = eq ? &srv->conf->tokens[i] : found;
    }
    return found;
}

static void call_dispose(void *p)
{
    cp_call_t *call = p;
    cp_query_dispose(&call->query);
}

static int on_req(h2o_handler_t *self, h2o_req_t *req)
{
    cp_server_t *srv = *(cp_server_t **)(self + 1);
    cp_call_t *call = h2o_mem_alloc_shared(&req->pool, sizeof(*call), call_dispose);
    memset(call, 0, sizeof(*call));
    call->srv = srv;
    call->req = req;
    call->route = NUM_ROUTES;

    h2o_iovec_t method = req->method;
    if (h2o_memis(method.base, method.len, H2O_STRLIT("HEAD")))
        method = h2o_iovec_init(H2O_STRLIT("GET"));
    size_t path_len = req->query_at != SIZE_MAX ? req->query_at : req->path.len;
    int path_matched = 0;
    char allow[64] = "";
    for (size_t i = 0; i < NUM_ROUTES; i++) {
        if (!match_path(call, routes[i].path, req->path.base, path_len))
            continue;
        path_matched = 1;
        if (h2o_memis(method.base, method.len, routes[i].method, strlen(routes[i].method))) {
            call->route = i;
            break;
        }
        size_t al = strlen(allow);
        snprintf(allow + al, sizeof(allow) - al, "%s%s", al ? ", " : "", routes[i].method);
    }
    if (call->route == NUM_ROUTES) {
        if (path_matched) {
            add_header(call, H2O_TOKEN_ALLOW, allow);
            respond_errorf(call, 405, "method %.*s not allowed here (allowed: %s)",
                           (int)(req->method.len < 16 ? req->method.len : 16), req->method.base, allow);
        } else {
            respond_error(call, 404, "no such route", NULL);
        }
        return 0;
    }
    const cp_route_t *route = &routes[call->route];
    if (route->roles != R_PUBLIC) {
        if ((call->token = authenticate(srv, call)) == NULL) {
            add_header(call, H2O_TOKEN_WWW_AUTHENTICATE, "Bearer realm=\"pathway-control\"");
            respond_error(call, 401, "a valid token is required (Authorization: Bearer <token>)", NULL);
            return 0;
        }
        if ((route->roles & (1u << call->token->role)) == 0) {
            respond_errorf(call, 403, "token \"%s\" has role %s, which may not call %s %s", call->token->name,
                           cp_role_name(call->token->role), route->method, route->path);
            return 0;
        }
        /* a dataplane token with ids acts only for those dataplanes; the dataplane routes are the
         * only ones it may call, and each names the dataplane as its first parameter */
        if (call->token->role == CP_ROLE_DATAPLANE && !cp_token_allows_id(call->token, call->params[0].base)) {
            respond_errorf(call, 403, "token \"%s\" may not act for dataplane \"%.64s\" (not among its ids)", call->token->name,
                           call->params[0].base);
            return 0;
        }
    }
    char err[256];
    h2o_iovec_t q = req->query_at != SIZE_MAX
                        ? h2o_iovec_init(req->path.base + req->query_at + 1, req->path.len - req->query_at - 1)
                        : h2o_iovec_init(NULL, 0);
    if (cp_query_parse(q.base, q.len, route->query, &call->query, err, sizeof(err)) != 0) {
        respond_error(call, 400, err, NULL);
        return 0;
    }
    route->fn(call);
    return 0;
}

/* --- h2o's own errors ------------------------------------------------------------------------ */

/* h2o answers some requests itself before any handler runs (a body beyond its entity limit: 413,
 * broken chunked framing: 400), as text/plain on the host's fallback path. This filter on that
 * path rewrites them into our JSON error shape, so every error a client sees is JSON. */
typedef struct st_cp_fallback_filter_t {
    h2o_filter_t super; /* registered on the fallback path */
    cp_server_t *srv;   /* for the request counters and max_body */
} cp_fallback_filter_t;

/* The output stream of fallback_send, remembering the filter for its server. */
typedef struct st_cp_fallback_ostream_t {
    h2o_ostream_t super;          /* in the request's chain */
    cp_fallback_filter_t *filter; /* the filter that added it */
} cp_fallback_ostream_t;

static void fallback_send(h2o_ostream_t *self, h2o_req_t *req, h2o_iovec_t *bufs, size_t bufcnt, h2o_send_state_t state)
{
    if (state != H2O_SEND_STATE_FINAL) {
        h2o_ostream_send_next(self, req, bufs, bufcnt, state);
        return;
    }
    size_t len = 0;
    for (size_t i = 0; i < bufcnt; i++)
        len += bufs[i].len;
    char *text = h2o_mem_alloc_pool(&req->pool, len + 1), *p = text;
    for (size_t i = 0; i < bufcnt; i++) {
        memcpy(p, bufs[i].base, bufs[i].len);
        p += bufs[i].len;
    }
    json_t *body;
    if (req->res.status == 413) {
        /* h2o refuses bodies beyond max_body before any handler runs: name the bound, as our own
         * 413 does */
        char lim[32], msg[96];
        cfg_format_size(((cp_fallback_ostream_t *)self)->filter->srv->conf->max_body, lim, sizeof(lim));
        snprintf(msg, sizeof(msg), "body: larger than max_body (%s)", lim);
        body = json_pack("{ss}", "error", msg);
    } else {
        body = json_pack("{s s%}", "error", text, len);
    }
    char *json = body != NULL ? json_dumps(body, JSON_COMPACT) : NULL;
    json_decref(body);
    if (json == NULL) {
        h2o_ostream_send_next(self, req, bufs, bufcnt, state);
        return;
    }
    h2o_iovec_t out = h2o_strdup(&req->pool, json, strlen(json));
    free(json);
    req->res.content_length = out.len;
    h2o_set_header(&req->pool, &req->res.headers, H2O_TOKEN_CONTENT_TYPE, H2O_STRLIT("application/json"), 1);
    if (h2o_memis(req->input.method.base, req->input.method.len, H2O_STRLIT("HEAD")))
        h2o_ostream_send_next(self, req, NULL, 0, state);
    else
        h2o_ostream_send_next(self, req, &out, 1, state);
}

static void on_fallback_setup_ostream(h2o_filter_t *_self, h2o_req_t *req, h2o_ostream_t **slot)
{
    cp_fallback_filter_t *self = (void *)_self;
    if (req->res.status >= 400 && req->res.status < NUM_STATUS) {
        self->srv->counts[NUM_ROUTES * NUM_STATUS + (size_t)req->res.status]++;
        cp_fallback_ostream_t *os = (void *)h2o_add_ostream(req, sizeof(*os), slot);
        os->super.do_send = fallback_send;
        os->filter = self;
        slot = &os->super.next;
    }
    h2o_setup_next_ostream(req, slot);
}

/* --- server ------------------------------------------------------------------------------------------ */

static void on_accept(h2o_socket_t *listener, const char *err);

/* Reads the listener only below max_connections and outside an accept pause: each connection may
 * buffer a body of max_body before its request is authenticated, so the cap bounds that memory.
 * Connections beyond it wait in the kernel's backlog until one closes. */
static void update_listener(cp_server_t *srv)
{
    if (srv->listener == NULL)
        return;
    int want = srv->num_conns < srv->conf->max_conns && mono_ms() >= srv->accept_paused_until;
    if (want && !srv->listener_reading)
        h2o_socket_read_start(srv->listener, on_accept);
    else if (!want && srv->listener_reading)
        h2o_socket_read_stop(srv->listener);
    srv->listener_reading = want;
}

static void on_conn_close(void *data)
{
    cp_server_t *srv = data;
    srv->num_conns--;
    update_listener(srv);
}

static void on_accept(h2o_socket_t *listener, const char *err)
{
    cp_server_t *srv = listener->data;
    if (err != NULL)
        return;
    h2o_socket_t *sock = h2o_evloop_socket_accept(listener);
    if (sock == NULL) {
        /* out of descriptors (or memory): the listener stays readable, so retrying at once would
         * spin; pause it briefly (cp_server_run resumes it) */
        if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
            PW_WARN("accept: %s; pausing the listener for %d ms", strerror(errno), CP_ACCEPT_PAUSE_MS);
            srv->accept_paused_until = mono_ms() + CP_ACCEPT_PAUSE_MS;
            update_listener(srv);
        }
        return;
    }
    /* h2o's HTTP/1 and HTTP/2 code leave on_close alone: it lets shutdown wait for the last one */
    sock->on_close.cb = on_conn_close;
    sock->on_close.data = srv;
    srv->num_conns++;
    update_listener(srv);
    h2o_accept(&srv->accept_ctx, sock);
}

static int open_listener(const cp_config_t *conf, char *err, size_t errlen)
{
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM, .ai_flags = AI_PASSIVE | AI_NUMERICSERV}, *res;
    char port[8];
    snprintf(port, sizeof(port), "%u", conf->listen_port);
    int gai = getaddrinfo(conf->listen_host, port, &hints, &res);
    if (gai != 0) {
        snprintf(err, errlen, "listen: %s: %s", conf->listen_host, gai_strerror(gai));
        return -1;
    }
    int fd = -1, one = 1;
    for (struct addrinfo *ai = res; ai != NULL; ai = ai->ai_next) {
        if ((fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol)) < 0)
            continue;
        if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) == 0 && bind(fd, ai->ai_addr, ai->ai_addrlen) == 0 &&
            listen(fd, SOMAXCONN) == 0)
            break;
        snprintf(err, errlen, "listen: %s:%u: %s", conf->listen_host, conf->listen_port, strerror(errno));
        close(fd);
        fd = -1;
    }
    freeaddrinfo(res);
    return fd;
}

cp_server_t *cp_server_create(const cp_config_t *conf, cp_store_t *store, char *err, size_t errlen)
{
    cp_server_t *srv = calloc(1, sizeof(*srv));
    if (srv == NULL || (srv->counts = calloc((NUM_ROUTES + 1) * NUM_STATUS, sizeof(srv->counts[0]))) == NULL) {
        free(srv);
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    srv->conf = conf;
    srv->store = store;
    srv->started_ms = cp_now_ms();
    h2o_linklist_init_anchor(&srv->waiters);

    snprintf(err, errlen, "listen: cannot bind");
    int fd = open_listener(conf, err, errlen);
    if (fd < 0) {
        free(srv->counts);
        free(srv);
        return NULL;
    }

    h2o_config_init(&srv->globalconf);
    srv->globalconf.server_name = h2o_iovec_init(H2O_STRLIT("pathway-control"));
    /* h2o buffers a whole body before the handler (and its auth) runs: refuse beyond max_body
     * there (fallback_send answers it as our JSON 413), and cut slow senders at request_timeout
     * (for HTTP/1 it covers the head and the body, and idle keep-alive) */
    srv->globalconf.max_request_entity_size = (size_t)conf->max_body;
    srv->globalconf.http1.req_timeout = conf->req_timeout_ms;
    /* every h2 stream may buffer a body too: API clients need few at once (h2o's default is 100) */
    srv->globalconf.http2.max_concurrent_requests_per_connection = 16;
    h2o_hostconf_t *host = h2o_config_register_host(&srv->globalconf, h2o_iovec_init(H2O_STRLIT("default")), 65535);
    h2o_pathconf_t *path = h2o_config_register_path(host, "/", 0);
    h2o_handler_t *handler = h2o_create_handler(path, sizeof(*handler) + sizeof(cp_server_t *));
    handler->on_req = on_req;
    *(cp_server_t **)(handler + 1) = srv;
    cp_fallback_filter_t *fallback = (void *)h2o_create_filter(&host->fallback_path, sizeof(*fallback));
    fallback->super.on_setup_ostream = on_fallback_setup_ostream;
    fallback->srv = srv;

    srv->loop = h2o_evloop_create();
    h2o_context_init(&srv->ctx, srv->loop, &srv->globalconf);
    srv->accept_ctx.ctx = &srv->ctx;
    srv->accept_ctx.hosts = srv->globalconf.hosts;
    srv->listener = h2o_evloop_socket_create(srv->loop, fd, H2O_SOCKET_FLAG_DONT_READ);
    srv->listener->data = srv;
    update_listener(srv);
    PW_INFO("listening on %s:%u", conf->listen_host, conf->listen_port);
    if (strncmp(conf->listen_host, "127.", 4) != 0 && strcmp(conf->listen_host, "::1") != 0 &&
        strcmp(conf->listen_host, "localhost") != 0)
        PW_WARN("listening beyond loopback (%s): bearer tokens cross the network in clear text unless a TLS proxy "
                "is in front",
                conf->listen_host);
    return srv;
}

int cp_server_run(cp_server_t *srv, volatile sig_atomic_t *stop)
{
    while (!*stop) {
        int64_t next = expire_waiters(srv);
        if (!srv->listener_reading && srv->num_conns < srv->conf->max_conns) {
            /* paused after an accept failure: resume when the pause ends */
            update_listener(srv);
            int64_t left = srv->accept_paused_until - mono_ms();
            if (left > 0 && (next < 0 || left < next))
                next = left;
        }
        /* wake at the next poll deadline, and at least once a second to notice `stop` */
        int32_t wait = next < 0 || next > 1000 ? 1000 : (int32_t)next;
        h2o_evloop_run(srv->loop, wait);
    }
    srv->stopping = 1;
    PW_INFO("stopping: %zu long polls answered with 503", srv->num_waiters);
    if (srv->listener != NULL) {
        if (srv->listener_reading)
            h2o_socket_read_stop(srv->listener);
        h2o_socket_close(srv->listener);
        srv->listener = NULL;
        srv->listener_reading = 0;
    }
    while (!h2o_linklist_is_empty(&srv->waiters)) {
        cp_waiter_t *w = H2O_STRUCT_FROM_MEMBER(cp_waiter_t, link, srv->waiters.next);
        unpark(srv, w);
        add_header(w->call, H2O_TOKEN_RETRY_AFTER, "1");
        respond_error(w->call, 503, "control plane stopping", NULL);
    }
    /* Idle keep-alive connections sit on these timeouts; at zero they expire on the next turn of
     * the loop and h2o closes each through its own callback. shutdown_requested turns keep-alive
     * off for responses still being written. */
    srv->ctx.shutdown_requested = 1;
    srv->ctx.http1.req_timeout.timeout = 0;
    srv->ctx.http2.idle_timeout.timeout = 0;
    int64_t until = mono_ms() + 2000;
    while (srv->num_conns > 0 && mono_ms() < until)
        h2o_evloop_run(srv->loop, 10);
    if (srv->num_conns == 0) {
        /* nothing refers to the context any more: free it all (h2o asserts its timeouts are idle) */
        h2o_multithread_queue_t *queue = srv->ctx.queue;
        h2o_context_dispose(&srv->ctx);
#if !H2O_USE_LIBUV && H2O_VERSION_MAJOR == 2 && H2O_VERSION_MINOR == 2
        /* h2o 2.2's evloop h2o_multithread_destroy_queue closes the queue's pipe but never frees it */
        free(queue);
#else
        (void)queue;
#endif
        h2o_config_dispose(&srv->globalconf);
        h2o_evloop_destroy(srv->loop);
        srv->disposed = 1;
    } else {
        PW_WARN("stopping with %zu connections still open", srv->num_conns);
    }
    return 0;
}

void cp_server_destroy(cp_server_t *srv)
{
    if (srv == NULL)
        return;
    if (!srv->disposed) {
        /* connections that would not close (or a server that never ran) still point into the
         * context: leave h2o's state to the process exit rather than free it under them */
        if (srv->listener != NULL)
            h2o_socket_close(srv->listener);
        PW_DEBUG("h2o state left to the exit");
        return;
    }
    free(srv->counts);
    free(srv);
}
