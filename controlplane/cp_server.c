/*
 * The REST API. One handler at "/" routes by method and path through `routes`, the one table that
 * also drives auth (roles per route), allowed query parameters, /metrics labels and the
 * route-set test against schema/openapi.yaml.
 */
#include "pw_http.h"
#include "cp_server_internal.h"

#include <errno.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>
#include <openssl/crypto.h>
#include <h2o/version.h>
#include "pw_log.h"
#include "cp_series.h"

enum {
    R_ADMIN = 1 << CP_ROLE_ADMIN,
    R_VIEWER = 1 << CP_ROLE_VIEWER,
    R_DATAPLANE = 1 << CP_ROLE_DATAPLANE,
    R_PUBLIC = 0, /* no token needed */
};

typedef struct st_cp_route_t {
    const char *method;       /* GET, PUT, PATCH, POST, DELETE */
    const char *path;         /* segments; "{x}" captures one */
    unsigned roles;           /* R_* allowed; admin is always among them; 0 = public */
    const char *const *query; /* allowed query parameters (NULL-terminated) */
    cp_handler_fn fn;         /* answers (now or later) */
} cp_route_t;

#define CP_ACCEPT_PAUSE_MS 100 /* how long the listener rests after accept ran out of descriptors */

static const char *const q_none[] = {NULL};
static const char *const q_message[] = {"message", NULL};
static const char *const q_versions[] = {"limit", "before", "author", "kind", NULL};
static const char *const q_events[] = {"limit", "before", "actor", "action", NULL};
static const char *const q_page[] = {"limit", "before", NULL};
static const char *const q_diff[] = {"from", NULL};
static const char *const q_poll[] = {"version", "wait", "labels", NULL};
static const char *const q_dp_page[] = {"limit", "after", NULL};
static const char *const q_series[] = {"since", "service", NULL};

static const cp_route_t routes[] = {
    {"GET", "/healthz", R_PUBLIC, q_none, cp_h_healthz},
    {"GET", "/metrics", R_ADMIN | R_VIEWER, q_none, cp_h_metrics},
    {"GET", "/v1/whoami", R_ADMIN | R_VIEWER | R_DATAPLANE, q_none, cp_h_whoami},
    {"GET", "/v1/metrics/services", R_ADMIN | R_VIEWER, q_series, cp_h_metrics_services},
    {"GET", "/v1/config", R_ADMIN | R_VIEWER, q_none, cp_h_get_config},
    {"PUT", "/v1/config", R_ADMIN, q_message, cp_h_put_config},
    {"PATCH", "/v1/config", R_ADMIN, q_message, cp_h_patch_config},
    {"POST", "/v1/config/validate", R_ADMIN, q_none, cp_h_validate},
    {"GET", "/v1/versions", R_ADMIN | R_VIEWER, q_versions, cp_h_list_versions},
    {"GET", "/v1/versions/{n}", R_ADMIN | R_VIEWER, q_none, cp_h_get_version},
    {"GET", "/v1/versions/{n}/diff", R_ADMIN | R_VIEWER, q_diff, cp_h_diff},
    {"POST", "/v1/rollback", R_ADMIN, q_message, cp_h_rollback},
    {"GET", "/v1/tags", R_ADMIN | R_VIEWER, q_none, cp_h_list_tags},
    {"GET", "/v1/tags/{name}", R_ADMIN | R_VIEWER, q_none, cp_h_get_tag},
    {"PUT", "/v1/tags/{name}", R_ADMIN, q_none, cp_h_put_tag},
    {"DELETE", "/v1/tags/{name}", R_ADMIN, q_message, cp_h_delete_tag},
    {"GET", "/v1/dataplanes", R_ADMIN | R_VIEWER, q_dp_page, cp_h_list_dataplanes},
    {"GET", "/v1/dataplanes/{id}", R_ADMIN | R_VIEWER, q_none, cp_h_get_dataplane},
    {"DELETE", "/v1/dataplanes/{id}", R_ADMIN, q_none, cp_h_delete_dataplane},
    {"GET", "/v1/dataplanes/{id}/config", R_ADMIN | R_DATAPLANE, q_poll, cp_h_dp_config},
    {"POST", "/v1/dataplanes/{id}/status", R_ADMIN | R_DATAPLANE, q_none, cp_h_dp_status},
    {"GET", "/v1/events", R_ADMIN | R_VIEWER, q_events, cp_h_events},
    {"GET", "/v1/rollouts", R_ADMIN | R_VIEWER, q_page, cp_h_list_rollouts},
    {"GET", "/v1/rollouts/{id}", R_ADMIN | R_VIEWER, q_none, cp_h_get_rollout},
    {"POST", "/v1/rollouts/{id}/pause", R_ADMIN, q_none, cp_h_pause_rollout},
    {"POST", "/v1/rollouts/{id}/resume", R_ADMIN, q_none, cp_h_resume_rollout},
    {"POST", "/v1/rollouts/{id}/promote", R_ADMIN, q_none, cp_h_promote_rollout},
    {"POST", "/v1/rollouts/{id}/abort", R_ADMIN, q_none, cp_h_abort_rollout},
    /* the web console (cp_ui.c): its assets are one segment each, so whole-segment matching serves them */
    {"GET", "/ui", R_PUBLIC, q_none, cp_h_ui_redirect},
    {"GET", "/ui/", R_PUBLIC, q_none, cp_h_ui_index},
    {"GET", "/ui/{asset}", R_PUBLIC, q_none, cp_h_ui_asset},
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

/* --- routing and auth ------------------------------------------------------------------------------ */

/* Matches `path` against a route pattern, capturing {x} segments into call->params. */
static int match_path(cp_call_t *call, const char *pattern, const char *path, size_t len)
{
    const char *p = pattern, *s = path, *end = path + len;
    size_t nparams = 0;
    /* a route that failed half-way leaves no capture behind (auth reads params[0]) */
    call->params[0] = call->params[1] = h2o_iovec_init(NULL, 0);
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
    h2o_iovec_t *h = cp_find_header(call, H2O_TOKEN_AUTHORIZATION);
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
            cp_add_header(call, H2O_TOKEN_ALLOW, allow);
            cp_respond_errorf(call, 405, "method %.*s not allowed here (allowed: %s)",
                              (int)(req->method.len < 16 ? req->method.len : 16), req->method.base, allow);
        } else {
            cp_respond_error(call, 404, "no such route", NULL);
        }
        return 0;
    }
    const cp_route_t *route = &routes[call->route];
    if (route->roles != R_PUBLIC) {
        if ((call->token = authenticate(srv, call)) == NULL) {
            cp_add_header(call, H2O_TOKEN_WWW_AUTHENTICATE, "Bearer realm=\"pathway-control\"");
            cp_respond_error(call, 401, "a valid token is required (Authorization: Bearer <token>)", NULL);
            return 0;
        }
        if ((route->roles & (1u << call->token->role)) == 0) {
            cp_respond_errorf(call, 403, "token \"%s\" has role %s, which may not call %s %s", call->token->name,
                              cp_role_name(call->token->role), route->method, route->path);
            return 0;
        }
        /* a dataplane token with ids acts only for those dataplanes; the dataplane routes name the
         * dataplane as their first parameter (whoami, the only other one it may call, names none) */
        if (call->token->role == CP_ROLE_DATAPLANE && call->params[0].base != NULL &&
            !cp_token_allows_id(call->token, call->params[0].base)) {
            cp_respond_errorf(call, 403, "token \"%s\" may not act for dataplane \"%.64s\" (not among its ids)", call->token->name,
                              call->params[0].base);
            return 0;
        }
    }
    char err[256];
    h2o_iovec_t q = req->query_at != SIZE_MAX
                        ? h2o_iovec_init(req->path.base + req->query_at + 1, req->path.len - req->query_at - 1)
                        : h2o_iovec_init(NULL, 0);
    if (cp_query_parse(q.base, q.len, route->query, &call->query, err, sizeof(err)) != 0) {
        cp_respond_error(call, 400, err, NULL);
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
        /* libh2o's own refusals (a body over the limit) carry its older phrases: use ours */
        req->res.reason = pw_http_reason(req->res.status);
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
    /* Up to CP_ACCEPT_BURST connections a turn, not one: a fleet's heartbeat connections arrive in
     * thousands after a start or a restart, and an operator's call (a new connection each) would
     * wait behind them in the backlog for a turn each */
    for (int i = 0; i < CP_ACCEPT_BURST && srv->listener_reading; i++) {
        h2o_socket_t *sock = h2o_evloop_socket_accept(listener);
        if (sock == NULL) {
            /* out of descriptors (or memory): the listener stays readable, so retrying at once would
             * spin; pause it briefly (cp_server_run resumes it). EAGAIN: none left */
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

/* Descriptors the process needs besides client connections: the listener, sqlite's database,
 * WAL and shared-memory files, the event loop, stdio and a margin. */
#define CP_SPARE_FDS 32

/* Raises the soft open-file limit to the hard one (a poll holds a descriptor for minutes), and
 * lowers the long-poll budget to what fits in it: a poll budget beyond the descriptors would let
 * polls take the reserve that keeps operators and /healthz in. */
static void fit_descriptors(cp_server_t *srv)
{
    const cp_config_t *conf = srv->conf;
    srv->max_polls = conf->max_long_polls;
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
        return;
    if (rl.rlim_cur < rl.rlim_max) {
        rlim_t was = rl.rlim_cur;
        rl.rlim_cur = rl.rlim_max;
        if (setrlimit(RLIMIT_NOFILE, &rl) != 0)
            getrlimit(RLIMIT_NOFILE, &rl);
        else
            PW_DEBUG("open-file limit raised from %llu to %llu", (unsigned long long)was, (unsigned long long)rl.rlim_cur);
    }
    if (rl.rlim_cur == RLIM_INFINITY)
        return;
    uint64_t budget = rl.rlim_cur > CP_SPARE_FDS ? (uint64_t)rl.rlim_cur - CP_SPARE_FDS : 0;
    if (conf->max_conns > budget)
        PW_WARN("max_connections is %llu but the open-file limit is %llu: raise it (LimitNOFILE=, ulimit -n) or lower "
                "max_connections",
                (unsigned long long)conf->max_conns, (unsigned long long)rl.rlim_cur);
    uint64_t fit = budget > conf->reserved_conns ? budget - conf->reserved_conns : 0;
    if (srv->max_polls > fit) {
        PW_WARN("max_long_polls lowered from %llu to %llu to keep %llu connections for operators within the open-file "
                "limit (%llu)",
                (unsigned long long)srv->max_polls, (unsigned long long)fit, (unsigned long long)conf->reserved_conns,
                (unsigned long long)rl.rlim_cur);
        srv->max_polls = fit;
    }
}

/* --- other replicas' versions (PostgreSQL LISTEN/NOTIFY): the store's socket in the event loop -- */

static void on_store_change(void *arg)
{
    /* may run inside a store call (even one made by cp_wake_waiters): the loop wakes the polls */
    ((cp_server_t *)arg)->store_changed = 1;
}

static void store_unwatch(cp_server_t *srv)
{
    if (srv->store_sock != NULL) {
        h2o_socket_read_stop(srv->store_sock);
        h2o_socket_close(srv->store_sock); /* closes the dup, not the store's own fd */
        srv->store_sock = NULL;
    }
    srv->store_fd = -1;
}

static void on_store_readable(h2o_socket_t *sock, const char *err)
{
    cp_server_t *srv = sock->data;
    (void)err;
    cp_store_notified(srv->store);
    if (cp_store_listen_fd(srv->store) != srv->store_fd)
        store_unwatch(srv); /* the connection was lost: cp_store_tick reopens it */
}

/* Watches the store's listening socket, when it has one, and follows it when it is reopened. */
static void store_watch(cp_server_t *srv)
{
    int reopened = cp_store_tick(srv->store), fd = cp_store_listen_fd(srv->store);
    if (!reopened && fd == srv->store_fd)
        return;
    store_unwatch(srv);
    if (fd < 0)
        return;
    int copy = dup(fd);
    if (copy < 0) {
        PW_WARN("store: cannot watch for other replicas' versions: %s", strerror(errno));
        return;
    }
    /* DONT_READ: the loop only says it is readable; libpq reads it (cp_store_notified) */
    srv->store_sock = h2o_evloop_socket_create(srv->loop, copy, H2O_SOCKET_FLAG_DONT_READ);
    srv->store_sock->data = srv;
    srv->store_fd = fd;
    h2o_socket_read_start(srv->store_sock, on_store_readable);
    /* what arrived before the watch began */
    cp_store_notified(srv->store);
}

/* One replica at a time drives rollouts: the holder of the store's lease (always this process on
 * sqlite). Each replica re-reads the live rollout when the stored one is no longer the one it
 * knows (started, paused, resumed, moved a step or ended through another replica), checked once a
 * second and before waking polls for another replica's version; one that takes the lease over
 * (its holder died) resumes from the stored rollout. */
static void engine_reload(cp_server_t *srv)
{
    /* the database unreachable: keep what is known rather than forget the live rollout */
    if (cp_store_refresh(srv->store) != CP_STORE_OK)
        return;
    cp_engine_dispose(srv);
    if (cp_engine_init(srv) != 0)
        PW_WARN("rollouts: cannot read the live rollout (retrying): %s", cp_store_errmsg(srv->store));
}

/* Whether the stored live rollout differs from the one this replica knows (a shared store only). */
static int engine_stale(cp_server_t *srv)
{
    if (strcmp(cp_store_kind(srv->store), "sqlite") == 0)
        return 0;
    int64_t id = 0, step = 0;
    cp_ro_state_t state = CP_RO_PROGRESSING;
    int rc = cp_ro_store_newest(srv->store, &id, &state, &step);
    if (rc == CP_STORE_ERROR)
        return 0;
    const cp_rollout_t *live = cp_engine_live(srv);
    int stored_live = rc == CP_STORE_OK && (state == CP_RO_PROGRESSING || state == CP_RO_PAUSED);
    if (live == NULL)
        return stored_live;
    return rc != CP_STORE_OK || id != live->id || state != live->state || (size_t)step != live->step;
}

static int64_t engine_turn(cp_server_t *srv)
{
    int held = cp_store_lease(srv->store);
    int64_t now = cp_now_ms();
    if (held != srv->lease_held) {
        srv->lease_held = held;
        engine_reload(srv);
        srv->engine_reload_at = now + 1000;
    } else if (now >= srv->engine_reload_at) {
        srv->engine_reload_at = now + 1000;
        if (engine_stale(srv))
            engine_reload(srv);
    }
    if (held)
        return cp_engine_tick(srv);
    return srv->engine_reload_at - now;
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
    srv->lease_held = cp_store_lease(store);
    h2o_linklist_init_anchor(&srv->waiters);
    for (size_t i = 0; i < CP_POLL_BUCKETS; i++)
        h2o_linklist_init_anchor(&srv->poll_index[i]);
    h2o_linklist_init_anchor(&srv->reports);
    h2o_linklist_init_anchor(&srv->polls);
    fit_descriptors(srv);
    if ((srv->series = cp_series_create(CP_SERIES_MAX_SERVICES)) == NULL) {
        free(srv->counts);
        free(srv);
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    if (cp_feed_init(srv) != 0 || cp_engine_init(srv) != 0) {
        cp_feed_dispose(srv);
        cp_series_destroy(srv->series);
        cp_engine_dispose(srv);
        free(srv->counts);
        free(srv);
        snprintf(err, errlen, "rollouts: cannot load the live rollout: %s", cp_store_errmsg(store));
        return NULL;
    }

    snprintf(err, errlen, "listen: cannot bind");
    int fd = open_listener(conf, err, errlen);
    if (fd < 0) {
        cp_engine_dispose(srv);
        cp_feed_dispose(srv);
        cp_series_destroy(srv->series);
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
    srv->store_fd = -1;
    cp_store_set_change_hook(store, on_store_change, srv);
    store_watch(srv);
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
        int64_t turn_start = mono_ms();
        store_watch(srv);
        if (srv->store_changed) {
            /* another replica's version: a rollout it started decides who gets it */
            srv->store_changed = 0;
            if (engine_stale(srv))
                engine_reload(srv);
            cp_wake_waiters(srv);
        } else if (srv->wake_more) {
            /* the rest of a wake, a batch a turn */
            cp_wake_waiters(srv);
        }
        /* reports queued during the last turn: one commit for a group of them; polls likewise: one
         * read and one write for a group. Once a turn's work has taken CP_TURN_BUDGET_MS, the rest
         * waits for the next turn, after the calls that arrived meanwhile (an operator's); which of
         * the two goes first alternates, so neither waits for the whole of the other */
        int polls_first = (srv->turns++ & 1) != 0, more_reports = 0;
        for (int k = 0; k < 2; k++) {
            int polls = (k == 0) == polls_first;
            if (k > 0 && mono_ms() - turn_start >= CP_TURN_BUDGET_MS)
                more_reports |= polls ? srv->num_polls > 0 : srv->num_reports > 0;
            else
                more_reports |= polls ? cp_flush_polls(srv) : cp_flush_reports(srv);
        }
        int64_t next = cp_expire_waiters(srv), due = engine_turn(srv), feed = cp_feed_turn(srv);
        if (more_reports || srv->wake_more)
            next = 0;
        if (due >= 0 && (next < 0 || due < next))
            next = due;
        if (feed >= 0 && (next < 0 || feed < next))
            next = feed;
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
    store_unwatch(srv);
    cp_store_set_change_hook(srv->store, NULL, NULL);
    while (cp_flush_reports(srv) | cp_flush_polls(srv))
        ;
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
        cp_unpark(srv, w);
        cp_add_header(w->call, H2O_TOKEN_RETRY_AFTER, "1");
        cp_respond_error(w->call, 503, "control plane stopping", NULL);
    }
    /* Idle keep-alive connections sit on these timeouts; at zero they expire on the next turn of
     * the loop and h2o closes each through its own callback. shutdown_requested turns keep-alive
     * off for responses still being written. */
    srv->ctx.shutdown_requested = 1;
    srv->ctx.http1.req_timeout.timeout = 0;
    srv->ctx.http2.idle_timeout.timeout = 0;
    int64_t until = mono_ms() + 2000;
    while (srv->num_conns > 0 && mono_ms() < until) {
        cp_flush_reports(srv);
        cp_flush_polls(srv);
        h2o_evloop_run(srv->loop, 10);
    }
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
    cp_engine_dispose(srv);
    cp_feed_dispose(srv);
    cp_series_destroy(srv->series);
    free(srv->counts);
    free(srv);
}
