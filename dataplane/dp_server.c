/*
 * The server: listeners, worker threads, generations, signals and the drain (DESIGN §3).
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include "dp_cache.h"
#include "dp_internal.h"
#include "dp_probe.h"
#include "pw_log.h"
#include "pw_token.h"

static int signal_pipe_wr_ = -1;         /* the signal handler's only state */
static dp_server_t *live_server_ = NULL; /* keeps a server that ran reachable until exit */

/* --- small helpers -------------------------------------------------------------------------- */

static char *errf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static char *errf(const char *fmt, ...)
{
    char *s = NULL;
    va_list ap;
    va_start(ap, fmt);
    if (vasprintf(&s, fmt, ap) < 0)
        s = NULL;
    va_end(ap);
    return s;
}

/* Splits "host:port" / "[v6]:port" and binds a listening socket. Returns the fd, or -1 with *err. */
static int bind_address(const char *address, int reuseport, char **err)
{
    char host[256];
    const char *colon = strrchr(address, ':');
    if (colon == NULL || colon == address || colon[1] == '\0') {
        *err = errf("%s: expected host:port", address);
        return -1;
    }
    size_t hl = (size_t)(colon - address);
    const char *h = address;
    if (h[0] == '[' && hl >= 2 && h[hl - 1] == ']') {
        h++;
        hl -= 2;
    }
    if (hl >= sizeof(host)) {
        *err = errf("%s: host too long", address);
        return -1;
    }
    memcpy(host, h, hl);
    host[hl] = '\0';
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM, .ai_flags = AI_PASSIVE | AI_NUMERICSERV}, *res;
    int gai = getaddrinfo(hl != 0 ? host : NULL, colon + 1, &hints, &res);
    if (gai != 0) {
        *err = errf("%s: %s", address, gai_strerror(gai));
        return -1;
    }
    int fd = socket(res->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd == -1) {
        *err = errf("%s: socket: %s", address, strerror(errno));
        freeaddrinfo(res);
        return -1;
    }
    int on = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof(on));
    if (reuseport)
        setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &on, sizeof(on));
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &on, sizeof(on));
    if (bind(fd, res->ai_addr, res->ai_addrlen) != 0 || listen(fd, SOMAXCONN) != 0) {
        *err = errf("%s: cannot listen: %s", address, strerror(errno));
        close(fd);
        freeaddrinfo(res);
        return -1;
    }
    freeaddrinfo(res);
    fcntl(fd, F_SETFL, O_NONBLOCK);
    return fd;
}

static SSL_CTX *server_ssl_ctx(const cfg_listen_t *l, size_t index, char **err)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    if (ctx == NULL) {
        *err = errf("listen[%zu].tls: cannot create a TLS context", index);
        return NULL;
    }
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    SSL_CTX_set_options(ctx, SSL_OP_NO_COMPRESSION);
    if (SSL_CTX_use_certificate_chain_file(ctx, l->tls.certificate) != 1) {
        *err = errf("listen[%zu].tls.certificate: cannot load %s", index, l->tls.certificate);
        goto Error;
    }
    if (SSL_CTX_use_PrivateKey_file(ctx, l->tls.key, SSL_FILETYPE_PEM) != 1 || SSL_CTX_check_private_key(ctx) != 1) {
        *err = errf("listen[%zu].tls.key: cannot load %s (or it does not match the certificate)", index, l->tls.key);
        goto Error;
    }
    /* http2: false offers only http/1.1, so an h2 client falls back to it (or gives up) */
    static const h2o_iovec_t http1_only[] = {{H2O_STRLIT("http/1.1")}, {NULL}};
    h2o_ssl_register_alpn_protocols(ctx, l->http2 ? h2o_http2_alpn_protocols : http1_only);
    return ctx;
Error:
    SSL_CTX_free(ctx);
    return NULL;
}

/* The relay's h2o configuration; h1_only: HTTP/1.1 only (no h2c upgrade, no prior knowledge). */
static void relay_globalconf_init(h2o_globalconf_t *conf, int h1_only)
{
    h2o_config_init(conf);
    /* no Server header on relays: h2o 2.2 formats it with one more sprintf per response */
    conf->server_name = h2o_iovec_init(H2O_STRLIT(""));
    conf->max_request_entity_size = 0; /* set from each generation (raise_entity_cap) */
    conf->http1.upgrade_to_http2 = !h1_only;
    h2o_hostconf_t *host = h2o_config_register_host(conf, h2o_iovec_init(H2O_STRLIT("default")), 65535);
    h2o_pathconf_t *path = h2o_config_register_path(host, "/", 0);
    dp_relay_handler_t *handler = (dp_relay_handler_t *)h2o_create_handler(path, sizeof(*handler));
    handler->super.on_req = dp_proxy_on_req;
    handler->h1_only = h1_only;
}

/* --- workers -------------------------------------------------------------------------------- */

h2o_timeout_t *dp_worker_timeout(dp_worker_t *w, uint64_t ms)
{
    for (size_t i = 0; i != w->timeouts.size; ++i)
        if (w->timeouts.entries[i]->timeout == ms)
            return w->timeouts.entries[i];
    h2o_timeout_t **grown = realloc(w->timeouts.entries, (w->timeouts.size + 1) * sizeof(grown[0]));
    h2o_timeout_t *t = malloc(sizeof(*t));
    if (grown == NULL || t == NULL)
        h2o_fatal("out of memory");
    w->timeouts.entries = grown;
    h2o_timeout_init(w->loop, t, ms);
    w->timeouts.entries[w->timeouts.size++] = t;
    return t;
}

/* Frees the timeout lists nobody is linked to, when there are more than DP_TIMEOUTS_KEPT. Only
 * between evloop iterations: h2o's loop walks the lists while it runs timers (and socket callbacks
 * run inside that walk), so a list must not vanish from under it. */
void dp_worker_prune_timeouts(dp_worker_t *w)
{
    if (w->timeouts.size <= DP_TIMEOUTS_KEPT)
        return;
    size_t kept = 0;
    for (size_t i = 0; i != w->timeouts.size; ++i) {
        h2o_timeout_t *t = w->timeouts.entries[i];
        if (h2o_linklist_is_empty(&t->_entries)) {
            h2o_timeout_dispose(w->loop, t);
            free(t);
        } else {
            w->timeouts.entries[kept++] = t;
        }
    }
    w->timeouts.size = kept;
}

void dp_wgen_release(dp_worker_t *w, dp_wgen_t *wg)
{
    dp_gen_release(wg->gen);
    free(wg);
}

void dp_worker_refresh_gen(dp_worker_t *w)
{
    dp_server_t *s = w->server;
    if (w->wgen != NULL && atomic_load_explicit(&s->current, memory_order_acquire) == w->wgen->gen)
        return;
    dp_wgen_t *wg = malloc(sizeof(*wg));
    if (wg == NULL)
        return; /* keep the old one; try again at the next request */
    /* the lock keeps the main thread from dropping `current` between our load and our ref */
    pthread_mutex_lock(&s->gen_mutex);
    wg->gen = atomic_load(&s->current);
    dp_gen_retain(wg->gen);
    pthread_mutex_unlock(&s->gen_mutex);
    wg->nrequests = 0;
    wg->current = 1;
    dp_wgen_t *old = w->wgen;
    PW_DEBUG("worker %zu: now on generation %" PRIu64, w->index, wg->gen->generation);
    w->wgen = wg;
    if (old != NULL) {
        old->current = 0;
        if (old->nrequests == 0)
            dp_wgen_release(w, old);
    }
}

void dp_worker_kick(dp_worker_t *w)
{
    if (!atomic_load(&w->kick_pending) && atomic_exchange(&w->kick_pending, 1) == 0)
        h2o_multithread_send_message(&w->kick_receiver, &w->kick_msg);
}

void dp_server_kick_all(dp_server_t *s)
{
    /* a worker's receiver exists once it is ready; until all are, the kick is dropped (each worker's
     * 1 s sweep does the same housekeeping) */
    if ((size_t)atomic_load(&s->workers_ready) != s->nworkers)
        return;
    for (size_t i = 0; i != s->nworkers; ++i)
        dp_worker_kick(s->workers + i);
    if (atomic_load(&s->prober_ready))
        dp_worker_kick(dp_server_prober(s));
}

static void close_listeners(dp_worker_t *w)
{
    for (size_t i = 0; i != w->server->nlisteners; ++i) {
        if (w->listen_socks[i] != NULL) {
            h2o_socket_read_stop(w->listen_socks[i]);
            h2o_socket_close(w->listen_socks[i]);
            w->listen_socks[i] = NULL;
        }
    }
}

static void worker_housekeeping(dp_worker_t *w)
{
    dp_server_t *s = w->server;
    if (atomic_load(&s->stopping) && w->listen_socks[0] != NULL) {
        close_listeners(w);
        h2o_context_request_shutdown(&w->ctx);
        if (s->has_h1_only)
            h2o_context_request_shutdown(&w->ctx_h1);
    }
    dp_proxy_housekeeping(w);
    if (atomic_load(&s->exiting))
        w->exiting = 1;
}

static void on_kick(h2o_multithread_receiver_t *receiver, h2o_linklist_t *messages)
{
    dp_worker_t *w = H2O_STRUCT_FROM_MEMBER(dp_worker_t, kick_receiver, receiver);
    while (!h2o_linklist_is_empty(messages))
        h2o_linklist_unlink(messages->next);
    atomic_store(&w->kick_pending, 0);
    worker_housekeeping(w);
}

static void on_sweep(h2o_timeout_entry_t *entry)
{
    dp_worker_t *w = H2O_STRUCT_FROM_MEMBER(dp_worker_t, sweep_timer, entry);
    worker_housekeeping(w);
    h2o_timeout_link(w->loop, dp_worker_timeout(w, 1000), &w->sweep_timer);
}

static void on_accept(h2o_socket_t *listener, const char *err)
{
    if (err != NULL)
        return;
    h2o_socket_t *sock = h2o_evloop_socket_accept(listener);
    if (sock == NULL)
        return;
    h2o_accept(listener->data, sock);
}

static void *worker_main(void *arg)
{
    dp_worker_t *w = arg;
    dp_server_t *s = w->server;
    w->loop = h2o_evloop_create();
    h2o_context_init(&w->ctx, w->loop, &s->globalconf);
    if (s->has_h1_only)
        h2o_context_init(&w->ctx_h1, w->loop, &s->globalconf_h1);
    h2o_multithread_register_receiver(w->ctx.queue, &w->kick_receiver, on_kick);
    for (size_t i = 0; i != s->nlisteners; ++i) {
        int h2 = s->listeners[i].http2;
        w->accept_ctxs[i].ctx = h2 ? &w->ctx : &w->ctx_h1;
        w->accept_ctxs[i].hosts = h2 ? s->globalconf.hosts : s->globalconf_h1.hosts;
        w->accept_ctxs[i].ssl_ctx = s->listeners[i].ssl_ctx;
        h2o_socket_t *sock = h2o_evloop_socket_create(w->loop, s->listeners[i].fds[w->index], H2O_SOCKET_FLAG_DONT_READ);
        sock->data = &w->accept_ctxs[i];
        w->listen_socks[i] = sock;
        h2o_socket_read_start(sock, on_accept);
    }
    dp_worker_refresh_gen(w);
    w->sweep_timer.cb = on_sweep;
    h2o_timeout_link(w->loop, dp_worker_timeout(w, 1000), &w->sweep_timer);
    atomic_fetch_add(&s->workers_ready, 0); /* publish the fields above before ready */
    atomic_fetch_add(&s->workers_ready, 1);

    while (!w->exiting) {
        h2o_evloop_run(w->loop, INT32_MAX);
        dp_worker_prune_timeouts(w);
    }

    close_listeners(w);
    dp_proxy_close_idle(w);
    h2o_timeout_unlink(&w->sweep_timer);
    if (h2o_timeout_is_linked(&w->peek_timer))
        h2o_timeout_unlink(&w->peek_timer);
    if (h2o_timeout_is_linked(&w->watch_timer))
        h2o_timeout_unlink(&w->watch_timer);
    /* The process exits next. The worker parks instead of returning: h2o 2.2 keeps per-thread
     * state (recycled buffers, client connections) that it cannot tear down, and a live thread
     * keeps all of it reachable until exit() ends everything at once. */
    atomic_fetch_add(&s->workers_parked, 1);
    for (;;)
        h2o_evloop_run(w->loop, INT32_MAX);
    return NULL;
}

/* Creates the worker's listening sockets: one per listener per worker, all bound with
 * SO_REUSEPORT so the kernel spreads connections. */
static int bind_listeners(dp_server_t *s, const cfg_t *cfg, char **err)
{
    s->nlisteners = cfg->listen.size;
    s->listeners = calloc(s->nlisteners ? s->nlisteners : 1, sizeof(s->listeners[0]));
    if (s->listeners == NULL) {
        *err = errf("out of memory");
        return -1;
    }
    for (size_t i = 0; i != s->nlisteners; ++i) {
        const cfg_listen_t *l = cfg->listen.entries + i;
        s->listeners[i].address = strdup(l->address);
        s->listeners[i].http2 = l->http2;
        if (!l->http2)
            s->has_h1_only = 1;
        s->listeners[i].fds = malloc(s->nworkers * sizeof(int));
        if (s->listeners[i].address == NULL || s->listeners[i].fds == NULL) {
            *err = errf("out of memory");
            return -1;
        }
        for (size_t w = 0; w != s->nworkers; ++w)
            s->listeners[i].fds[w] = -1;
        if (l->has_tls && (s->listeners[i].ssl_ctx = server_ssl_ctx(l, i, err)) == NULL)
            return -1;
    }
    for (size_t w = 0; w != s->nworkers; ++w) {
        s->workers[w].listen_socks = calloc(s->nlisteners ? s->nlisteners : 1, sizeof(h2o_socket_t *));
        s->workers[w].accept_ctxs = calloc(s->nlisteners ? s->nlisteners : 1, sizeof(h2o_accept_ctx_t));
        if (s->workers[w].listen_socks == NULL || s->workers[w].accept_ctxs == NULL) {
            *err = errf("out of memory");
            return -1;
        }
    }
    /* each worker gets its own SO_REUSEPORT socket per address: the kernel spreads connections,
     * and a worker closing its listener (drain) leaves the others' open */
    for (size_t i = 0; i != s->nlisteners; ++i) {
        for (size_t w = 0; w != s->nworkers; ++w) {
            if ((s->listeners[i].fds[w] = bind_address(s->listeners[i].address, 1, err)) == -1) {
                char *e = *err;
                *err = errf("listen[%zu].address: %s", i, e);
                free(e);
                return -1;
            }
        }
    }
    return 0;
}

/* --- apply ---------------------------------------------------------------------------------- */

/* The last apply error, for /stats; under gen_mutex because dp_server_stats reads it elsewhere. */
static void set_last_error(dp_server_t *s, const char *err)
{
    char *copy = err != NULL ? strdup(err) : NULL;
    pthread_mutex_lock(&s->gen_mutex);
    char *old = s->last_apply_error;
    s->last_apply_error = copy;
    pthread_mutex_unlock(&s->gen_mutex);
    free(old);
}

/* h2o's own body cap (globalconf.max_request_entity_size): twice the largest max_request_body of
 * any generation so far, at least 64 KiB. h2o reads it from globalconf for every request (lib/http1.c
 * and lib/http2/connection.c in 2.2.5), so raising it here takes effect at once; it never comes
 * down, so a body between a lowered limit and the cap gets Pathway's JSON 413 from the handler,
 * which enforces the current generation's limit. Workers read it concurrently: the store is one
 * aligned word. */
static void raise_entity_cap(dp_server_t *s, uint64_t max_request_body)
{
    uint64_t cap = max_request_body > SIZE_MAX / 2 ? SIZE_MAX : max_request_body * 2;
    if (cap < 65536)
        cap = 65536;
    if (cap > __atomic_load_n(&s->globalconf.max_request_entity_size, __ATOMIC_RELAXED)) {
        __atomic_store_n(&s->globalconf.max_request_entity_size, (size_t)cap, __ATOMIC_RELAXED);
        __atomic_store_n(&s->globalconf_h1.max_request_entity_size, (size_t)cap, __ATOMIC_RELAXED);
    }
}

static void apply_runtime_settings(dp_server_t *s, dp_gen_t *g)
{
    const cfg_t *cfg = g->cfg;
    pw_log_set_level((pw_log_level_t)cfg->log.level);
    dp_limiter_set(&s->limiter, cfg->limiter.max_concurrent, cfg->limiter.max_queue);
    for (size_t i = 0; i != g->nservices; ++i) {
        dp_service_t *svc = g->services + i;
        const cfg_service_limiter_t *sl = &svc->cfg->limiter;
        svc->shared->has_limiter = sl->max_concurrent != 0 || sl->adaptive.enabled;
        dp_limiter_set(&svc->shared->limiter, sl->max_concurrent, cfg->limiter.max_queue);
        uint32_t adaptive = dp_adaptive_configure(&svc->shared->adaptive, &sl->adaptive, sl->max_concurrent, dp_adaptive_now_ns());
        dp_limiter_set_adaptive(&svc->shared->limiter, adaptive);
    }
    dp_gen_apply_pool_settings(g);
    dp_cache_set_limits(s->cache, cfg->cache.max_bytes, cfg->cache.max_entry);
    atomic_store(&s->max_idle_total, cfg->pool.max_idle_total);
    atomic_store(&s->max_request_body, cfg->limits.max_request_body);
    raise_entity_cap(s, cfg->limits.max_request_body);
}

/* Builds and publishes a generation from `cfg` (taken in every case) whose fleet part is control
 * plane version `fleet_version` (0 = the dataplane's own file). With `only_if_changed`, a document
 * identical to the running one (same node-local part, same fleet hash and version) is dropped and
 * *changed set to 0. Main thread. */
static int server_apply(dp_server_t *s, cfg_t *cfg, int64_t fleet_version, int only_if_changed, int *changed, char **err,
                        json_t **restart_changes)
{
    if (restart_changes != NULL)
        *restart_changes = json_array();
    if (changed != NULL)
        *changed = 1;
    dp_gen_t *cur = atomic_load(&s->current);
    if (only_if_changed && cur != NULL && cur->fleet_version == fleet_version) {
        char full[65];
        cfg_hash(cfg, CFG_SCOPE_FULL, full);
        if (strcmp(full, cur->full_hash) == 0) {
            cfg_destroy(cfg);
            if (changed != NULL)
                *changed = 0;
            PW_INFO("nothing changed: generation %" PRIu64 " (hash %.12s) keeps running", cur->generation, cur->hash);
            return 0;
        }
    }
    cfg_errors_t errs;
    cfg_errors_init(&errs);
    dp_gen_t *g = dp_gen_create(s, cfg, cur, &errs);
    if (g == NULL) {
        *err = cfg_errors_join(&errs);
        cfg_errors_dispose(&errs);
        cfg_destroy(cfg);
        atomic_fetch_add(&s->applies_failed, 1);
        set_last_error(s, *err);
        return -1;
    }
    cfg_errors_dispose(&errs);
    if (s->running_cfg != NULL) {
        cfg_errors_t paths;
        cfg_errors_init(&paths);
        cfg_restart_changes(s->running_cfg, cfg, &paths);
        for (size_t i = 0; i != paths.size; ++i) {
            PW_WARN("%s changed: restart-only, keeps its running value until a restart", paths.entries[i]);
            if (restart_changes != NULL)
                json_array_append_new(*restart_changes, json_string(paths.entries[i]));
        }
        cfg_errors_dispose(&paths);
    }
    g->generation = ++s->generation_seq;
    g->fleet_version = fleet_version;
    apply_runtime_settings(s, g);
    pthread_mutex_lock(&s->gen_mutex);
    atomic_store_explicit(&s->current, g, memory_order_release);
    pthread_mutex_unlock(&s->gen_mutex);
    atomic_fetch_add(&s->applies_ok, 1);
    set_last_error(s, NULL);
    if (fleet_version != 0)
        PW_INFO("generation %" PRIu64 " applied (control plane version %" PRId64 ", %zu services, hash %.12s)", g->generation,
                fleet_version, g->nservices, g->hash);
    else
        PW_INFO("generation %" PRIu64 " applied (%zu services, hash %.12s)", g->generation, g->nservices, g->hash);
    dp_server_kick_all(s);
    if (cur != NULL)
        dp_gen_release(cur);
    return 0;
}

int dp_server_apply(dp_server_t *s, cfg_t *cfg, int64_t fleet_version, char **err, json_t **restart_changes)
{
    return server_apply(s, cfg, fleet_version, 0, NULL, err, restart_changes);
}

/* A pushed fleet document with the node-local part of the running one. Main thread. */
static int apply_fleet(dp_server_t *s, cfg_t *fleet, int64_t version, char **err)
{
    cfg_errors_t errs;
    cfg_errors_init(&errs);
    cfg_t *full = cfg_merge_local(atomic_load(&s->current)->cfg, fleet, &errs);
    cfg_destroy(fleet);
    if (full == NULL) {
        *err = cfg_errors_join(&errs);
        cfg_errors_dispose(&errs);
        atomic_fetch_add(&s->applies_failed, 1);
        set_last_error(s, *err);
        return -1;
    }
    cfg_errors_dispose(&errs);
    return server_apply(s, full, version, 0, NULL, err, NULL);
}

int dp_server_reload(dp_server_t *s, int *changed, char **err, json_t **restart_changes)
{
    if (restart_changes != NULL)
        *restart_changes = NULL;
    if (changed != NULL)
        *changed = 0;
    if (s->config_path == NULL) {
        *err = strdup("no config file to reload");
        return -1;
    }
    cfg_errors_t errs;
    cfg_errors_init(&errs);
    cfg_t *cfg = cfg_load_file(s->config_path, CFG_SCOPE_FULL, &errs);
    dp_gen_t *cur = atomic_load(&s->current);
    int64_t fleet_version = 0;
    if (cfg != NULL && cur->fleet_version != 0) {
        /* managed, and the fleet part came from the control plane (pushed or kept in state_dir):
         * the file gives only the node-local part; the fleet part stays the last one applied */
        fleet_version = cur->fleet_version;
        cfg_t *merged = cfg_merge_local(cfg, cur->cfg, &errs);
        cfg_destroy(cfg);
        cfg = merged;
    }
    if (cfg == NULL) {
        *err = cfg_errors_join(&errs);
        cfg_errors_dispose(&errs);
        atomic_fetch_add(&s->applies_failed, 1);
        set_last_error(s, *err);
        return -1;
    }
    cfg_errors_dispose(&errs);
    return server_apply(s, cfg, fleet_version, 1, changed, err, restart_changes);
}

int dp_server_ready(dp_server_t *s)
{
    dp_gen_t *g = atomic_load(&s->current);
    if (g == NULL || (size_t)atomic_load(&s->workers_ready) != s->nworkers || atomic_load(&s->stopping))
        return 0;
    /* a managed dataplane serves what its control plane says: the file's fleet part is only a start */
    return !s->opts.managed || g->fleet_version != 0;
}

/* --- create / run / destroy ----------------------------------------------------------------- */

dp_server_t *dp_server_create(cfg_t *cfg, const dp_server_options_t *opts, char **err)
{
    *err = NULL;
    dp_server_t *s = calloc(1, sizeof(*s));
    if (s == NULL) {
        cfg_destroy(cfg);
        *err = strdup("out of memory");
        return NULL;
    }
    s->opts = *opts;
    if (s->opts.drain_timeout_ms == 0)
        s->opts.drain_timeout_ms = 10000;
    s->config_path = opts->config_path != NULL ? strdup(opts->config_path) : NULL;
    s->admin_fd = -1;
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    s->started_at_unix = (double)now.tv_sec + now.tv_nsec / 1e9;
    s->signal_pipe[0] = s->signal_pipe[1] = -1;
    pthread_mutex_init(&s->gen_mutex, NULL);
    pthread_mutex_init(&s->apply_mutex, NULL);
    dp_registry_init(s);
    dp_limiter_init(&s->limiter, cfg->limiter.max_concurrent, cfg->limiter.max_queue);
    s->cache = dp_cache_create();
    if (s->cache == NULL) {
        cfg_destroy(cfg);
        *err = strdup("out of memory");
        goto Error;
    }
    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    s->nworkers = cfg->threads != 0 ? cfg->threads : (ncpu > 0 ? (size_t)ncpu : 1);
    if (s->nworkers > DP_MAX_WORKERS)
        s->nworkers = DP_MAX_WORKERS;
    s->workers = calloc(DP_NPOOLS(s), sizeof(s->workers[0]));
    if (s->workers == NULL) {
        cfg_destroy(cfg);
        *err = strdup("out of memory");
        goto Error;
    }
    for (size_t i = 0; i != DP_NPOOLS(s); ++i) {
        dp_worker_t *w = s->workers + i;
        w->server = s;
        w->index = i;
        dp_bufpool_init(&w->bufpool);
        h2o_linklist_init_anchor(&w->active_pools);
        h2o_linklist_init_anchor(&w->granted);
        h2o_linklist_init_anchor(&w->flown);
        h2o_linklist_init_anchor(&w->queued);
        h2o_linklist_init_anchor(&w->watched);
        pthread_mutex_init(&w->granted_mutex, NULL);
        w->reqid_prefix = (uint32_t)h2o_rand() ^ (uint32_t)(i << 24) ^ (uint32_t)getpid();
    }
    if ((s->running_cfg = cfg_dup(cfg)) == NULL) {
        cfg_destroy(cfg);
        *err = strdup("out of memory");
        goto Error;
    }
    if (cfg->admin.token_file != NULL && (s->admin_token = pw_token_read(cfg->admin.token_file, "admin.token_file", err)) == NULL) {
        cfg_destroy(cfg);
        goto Error;
    }
    if (bind_listeners(s, cfg, err) != 0) {
        cfg_destroy(cfg);
        goto Error;
    }
    if ((s->admin_fd = bind_address(cfg->admin.address, 0, err)) == -1) {
        char *e = *err;
        *err = errf("admin.address: %s", e);
        free(e);
        cfg_destroy(cfg);
        goto Error;
    }

    relay_globalconf_init(&s->globalconf, 0);
    relay_globalconf_init(&s->globalconf_h1, 1);
    if (dp_admin_init(s, &s->admin_globalconf) != 0) {
        cfg_destroy(cfg);
        *err = strdup("cannot set up the admin listener");
        goto Error;
    }

    if (dp_server_apply(s, cfg, opts->start_fleet_version, err, NULL) != 0)
        goto Error;
    return s;

Error:
    dp_server_destroy(s);
    return NULL;
}

typedef struct st_apply_msg_t {
    h2o_multithread_message_t super;
    cfg_t *fleet;
    int64_t version;
    char *err;
    int rc;
    int done;
    pthread_mutex_t mutex;
    pthread_cond_t cond;
} apply_msg_t;

static void on_apply_messages(h2o_multithread_receiver_t *receiver, h2o_linklist_t *messages)
{
    dp_server_t *s = H2O_STRUCT_FROM_MEMBER(dp_server_t, apply_receiver, receiver);
    while (!h2o_linklist_is_empty(messages)) {
        apply_msg_t *m = H2O_STRUCT_FROM_MEMBER(apply_msg_t, super.link, messages->next);
        h2o_linklist_unlink(&m->super.link);
        int rc = apply_fleet(s, m->fleet, m->version, &m->err);
        pthread_mutex_lock(&m->mutex);
        m->rc = rc;
        m->done = 1;
        pthread_cond_signal(&m->cond);
        pthread_mutex_unlock(&m->mutex);
    }
}

int dp_server_apply_fleet_from_thread(dp_server_t *s, cfg_t *fleet, int64_t version, char **err)
{
    *err = NULL;
    apply_msg_t m = {.fleet = fleet, .version = version, .rc = -1};
    pthread_mutex_init(&m.mutex, NULL);
    pthread_cond_init(&m.cond, NULL);
    pthread_mutex_lock(&s->apply_mutex);
    int accepting = s->accepting_applies && !atomic_load(&s->stopping);
    if (accepting)
        h2o_multithread_send_message(&s->apply_receiver, &m.super);
    pthread_mutex_unlock(&s->apply_mutex);
    if (!accepting) {
        pthread_cond_destroy(&m.cond);
        pthread_mutex_destroy(&m.mutex);
        cfg_destroy(fleet);
        *err = strdup("the server is not running");
        return -2;
    }
    pthread_mutex_lock(&m.mutex);
    while (!m.done)
        pthread_cond_wait(&m.cond, &m.mutex);
    pthread_mutex_unlock(&m.mutex);
    pthread_cond_destroy(&m.cond);
    pthread_mutex_destroy(&m.mutex);
    *err = m.err;
    return m.rc;
}

static void on_signal(int signo)
{
    unsigned char b = (unsigned char)signo;
    ssize_t r = write(signal_pipe_wr_, &b, 1);
    (void)r;
}

void dp_server_request_stop(dp_server_t *s)
{
    unsigned char b = SIGTERM;
    ssize_t r = write(s->signal_pipe[1], &b, 1);
    (void)r;
}

static uint64_t inflight(dp_server_t *s)
{
    uint64_t n = 0;
    for (size_t i = 0; i != s->nworkers; ++i)
        n += DP_LOAD(s->workers[i].active);
    return n;
}

static void on_signal_pipe(h2o_socket_t *sock, const char *err)
{
    dp_server_t *s = sock->data;
    if (err != NULL)
        return;
    for (size_t i = 0; i != sock->input->size; ++i) {
        int signo = (unsigned char)sock->input->bytes[i];
        if (signo == SIGHUP) {
            char *e = NULL;
            PW_INFO("SIGHUP: reloading %s", s->config_path ? s->config_path : "(no file)");
            if (dp_server_reload(s, NULL, &e, NULL) != 0) {
                PW_ERROR("reload failed; the running generation is unchanged:\n%s", e ? e : "");
                free(e);
            }
        } else if (signo == SIGTERM || signo == SIGINT) {
            if (!atomic_load(&s->stopping)) {
                PW_INFO("stopping: no new connections; draining %" PRIu64 " requests in flight (at most %" PRIu64 " ms)",
                        inflight(s), s->opts.drain_timeout_ms);
                atomic_store(&s->stopping, 1);
                dp_server_kick_all(s);
            }
        }
    }
    h2o_buffer_consume(&sock->input, sock->input->size);
}

int dp_server_run(dp_server_t *s)
{
    if (pipe2(s->signal_pipe, O_CLOEXEC | O_NONBLOCK) != 0) {
        PW_ERROR("pipe: %s", strerror(errno));
        return 1;
    }
    signal_pipe_wr_ = s->signal_pipe[1];
    live_server_ = s;
    struct sigaction sa = {.sa_handler = on_signal};
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = SA_RESTART;
    sigaction(SIGHUP, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);

    /* workers inherit a mask that sends every signal to this thread */
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, &old);
    for (size_t i = 0; i != s->nworkers; ++i) {
        dp_worker_t *w = s->workers + i;
        if (pthread_create(&w->thread, NULL, worker_main, w) != 0)
            h2o_fatal("pthread_create failed");
    }
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    while ((size_t)atomic_load(&s->workers_ready) != s->nworkers)
        usleep(1000);
    int perr = dp_prober_start(s);
    if (perr != 0)
        h2o_fatal("pthread_create failed (the prober)");
    while (!atomic_load(&s->prober_ready))
        usleep(1000);

    h2o_evloop_t *loop = s->admin_loop = h2o_evloop_create();
    s->admin_ctx = malloc(sizeof(*s->admin_ctx));
    if (s->admin_ctx == NULL)
        h2o_fatal("out of memory");
    h2o_context_init(s->admin_ctx, loop, &s->admin_globalconf);
    s->admin_accept.ctx = s->admin_ctx;
    s->admin_accept.hosts = s->admin_globalconf.hosts;
    h2o_socket_t *admin = h2o_evloop_socket_create(loop, s->admin_fd, H2O_SOCKET_FLAG_DONT_READ);
    admin->data = &s->admin_accept;
    h2o_socket_read_start(admin, on_accept);
    h2o_socket_t *sigsock = h2o_evloop_socket_create(loop, s->signal_pipe[0], 0);
    sigsock->data = s;
    h2o_socket_read_start(sigsock, on_signal_pipe);
    s->started_at_ms = h2o_now(loop);
    h2o_multithread_register_receiver(s->admin_ctx->queue, &s->apply_receiver, on_apply_messages);
    pthread_mutex_lock(&s->apply_mutex);
    s->accepting_applies = 1;
    pthread_mutex_unlock(&s->apply_mutex);
    if (s->opts.on_running != NULL)
        s->opts.on_running(s, s->opts.ctx);
    PW_INFO("serving with %zu workers; admin on %s", s->nworkers, s->running_cfg->admin.address);

    uint64_t deadline = 0;
    for (;;) {
        h2o_evloop_run(loop, 50);
        if (!atomic_load(&s->stopping))
            continue;
        uint64_t now = h2o_now(loop);
        if (deadline == 0)
            deadline = now + s->opts.drain_timeout_ms;
        uint64_t n = inflight(s);
        if (n == 0)
            break;
        if (now >= deadline) {
            PW_WARN("drain timeout: %" PRIu64 " requests still in flight are cut", n);
            break;
        }
    }
    atomic_store(&s->exiting, 1);
    dp_server_kick_all(s);
    /* a caller blocked in dp_server_apply_from_thread gets its answer before we stop listening:
     * every message was sent before the flag dropped, so the runs below see it */
    pthread_mutex_lock(&s->apply_mutex);
    s->accepting_applies = 0;
    pthread_mutex_unlock(&s->apply_mutex);
    for (int i = 0; i < 3; ++i)
        h2o_evloop_run(loop, 0);
    for (int i = 0; i < 2000 && (size_t)atomic_load(&s->workers_parked) != s->nworkers; ++i)
        usleep(1000);
    h2o_socket_read_stop(admin);
    h2o_socket_close(admin);
    s->admin_fd = -1;
    h2o_socket_read_stop(sigsock);
    h2o_socket_close(sigsock);
    s->signal_pipe[0] = -1;
    PW_INFO("stopped");
    return 0;
}

void dp_server_destroy(dp_server_t *s)
{
    if (s == NULL)
        return;
    if (atomic_load(&s->workers_ready)) {
        /* the workers ran: their loops, contexts and client connections end with the process
         * (h2o 2.2 cannot dispose a context whose connections are open); `s` stays reachable
         * through live_server_ until then */
        return;
    }
    dp_gen_t *g = atomic_load(&s->current);
    if (g != NULL)
        dp_gen_release(g);
    for (size_t i = 0; i != s->nlisteners; ++i) {
        for (size_t w = 0; s->listeners[i].fds != NULL && w != s->nworkers; ++w)
            if (s->listeners[i].fds[w] != -1)
                close(s->listeners[i].fds[w]);
        free(s->listeners[i].fds);
        if (s->listeners[i].ssl_ctx != NULL)
            SSL_CTX_free(s->listeners[i].ssl_ctx);
        free(s->listeners[i].address);
    }
    if (s->admin_fd != -1)
        close(s->admin_fd);
    if (s->running_cfg != NULL)
        cfg_destroy(s->running_cfg);
    free(s->config_path);
    free(s->last_apply_error);
    free(s->admin_token);
    for (size_t i = 0; s->workers != NULL && i != DP_NPOOLS(s); ++i) {
        free(s->workers[i].listen_socks);
        free(s->workers[i].accept_ctxs);
        pthread_mutex_destroy(&s->workers[i].granted_mutex);
    }
    free(s->workers);
    free(s->listeners);
    dp_limiter_dispose(&s->limiter);
    if (s->cache != NULL)
        dp_cache_destroy(s->cache);
    pthread_mutex_destroy(&s->gen_mutex);
    pthread_mutex_destroy(&s->apply_mutex);
    free(s);
}
