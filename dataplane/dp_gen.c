/*
 * Generations: everything built from one document, off the worker threads (DESIGN §3).
 */
#include <arpa/inet.h>
#include <netdb.h>
#include <openssl/x509v3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include "dp_h2.h"
#include "dp_internal.h"
#include "dp_rpc.h"
#include "pw_log.h"

const char *const dp_ares_names[DP_ARES__COUNT] = {
#define DP_ARES_NAME(n, s) s,
    DP_ATTEMPT_RESULTS(DP_ARES_NAME)
#undef DP_ARES_NAME
};
const char *const dp_retry_reason_names[CFG_RETRY_ON_COUNT] = {
    "connect_failure", "reset", "timeout", "http_5xx", "http_429", "rpc_rate_limited", "rpc_missing_data", "rpc_server_error"};
_Static_assert(CFG_RETRY_ON_COUNT == 8, "dp_retry_reason_names follows cfg_retry_on_t");
const uint64_t dp_hist_bounds_ms[DP_HIST_BUCKETS - 1] = {1, 2, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000};

static int cmp_service(const void *a, const void *b)
{
    const dp_service_t *x = a, *y = b;
    return strcmp(x->id, y->id);
}

/* RFC 6066 section 3: a literal IP address is not sent as SNI. libh2o 2.2.5 sends whatever name
 * it is given; this takes it back before the ClientHello is written (the name libh2o checks is its
 * own copy). */
static void drop_sni(const SSL *ssl, int where, int ret)
{
    (void)ret;
    if ((where & SSL_CB_HANDSHAKE_START) != 0 && !SSL_is_server(ssl))
        SSL_set_tlsext_host_name((SSL *)ssl, NULL);
}

dp_service_t *dp_gen_find_service(dp_gen_t *g, const char *id, size_t len)
{
    size_t lo = 0, hi = g->nservices;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        dp_service_t *s = g->services + mid;
        int c = strncmp(s->id, id, len);
        if (c == 0)
            c = s->idlen == len ? 0 : 1; /* s->id is longer than id */
        if (c == 0)
            return s;
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return NULL;
}

void dp_registry_init(dp_server_t *s)
{
    pthread_mutex_init(&s->registry_mutex, NULL);
    h2o_linklist_init_anchor(&s->hosts);
    h2o_linklist_init_anchor(&s->svcshared);
}

/* The shared state of service `id`: the registered one (a new reference) or a new one. NULL when
 * out of memory. Main thread. */
static dp_svcshared_t *svcshared_get(dp_server_t *s, const cfg_service_t *cs)
{
    pthread_mutex_lock(&s->registry_mutex);
    for (h2o_linklist_t *l = s->svcshared.next; l != &s->svcshared; l = l->next) {
        dp_svcshared_t *sh = H2O_STRUCT_FROM_MEMBER(dp_svcshared_t, link, l);
        if (strcmp(sh->id, cs->id) == 0) {
            atomic_fetch_add(&sh->refcnt, 1);
            pthread_mutex_unlock(&s->registry_mutex);
            return sh;
        }
    }
    dp_svcshared_t *sh = calloc(1, sizeof(*sh) + s->nworkers * sizeof(sh->stats[0]));
    if (sh == NULL || (sh->id = strdup(cs->id)) == NULL) {
        pthread_mutex_unlock(&s->registry_mutex);
        free(sh);
        return NULL;
    }
    atomic_init(&sh->refcnt, 1);
    sh->server = s;
    sh->nworkers = s->nworkers;
    dp_limiter_init(&sh->limiter, 0, 0);
    dp_adaptive_init(&sh->adaptive);
    dp_budget_init(&sh->budget, cs->retry.budget.min_concurrent);
    dp_latency_init(&sh->latency, 0);
    dp_svchealth_init(&sh->health);
    h2o_linklist_insert(&s->svcshared, &sh->link);
    pthread_mutex_unlock(&s->registry_mutex);
    return sh;
}

void dp_svcshared_release(dp_svcshared_t *sh)
{
    dp_server_t *s = sh->server;
    /* the last release and a lookup that would revive it are ordered by the registry's lock */
    pthread_mutex_lock(&s->registry_mutex);
    if (atomic_fetch_sub(&sh->refcnt, 1) != 1) {
        pthread_mutex_unlock(&s->registry_mutex);
        return;
    }
    h2o_linklist_unlink(&sh->link);
    pthread_mutex_unlock(&s->registry_mutex);
    dp_limiter_dispose(&sh->limiter);
    dp_adaptive_dispose(&sh->adaptive);
    dp_svchealth_dispose(&sh->health);
    free(sh->id);
    free(sh);
}

/* The upstream of endpoint `e`: the registered one (a new reference) or a new one with the
 * bounds of `pool`. NULL when out of memory. Main thread. */
static dp_host_t *host_get(dp_server_t *s, const cfg_endpoint_t *e, const cfg_pool_t *pool)
{
    const cfg_upstream_tls_t *t = &e->tls;
    char *key = NULL;
    if (asprintf(&key, "%s://%s:%u|ca=%s|sn=%s|v=%d", e->is_https ? "https" : "http", e->host, (unsigned)e->port,
                 e->is_https && e->has_tls && t->ca_file ? t->ca_file : "",
                 e->is_https && e->has_tls && t->server_name ? t->server_name : "", e->is_https && e->has_tls ? t->verify : 1) < 0)
        return NULL;
    pthread_mutex_lock(&s->registry_mutex);
    for (h2o_linklist_t *l = s->hosts.next; l != &s->hosts; l = l->next) {
        dp_host_t *h = H2O_STRUCT_FROM_MEMBER(dp_host_t, link, l);
        if (strcmp(h->key, key) == 0) {
            h->refcnt++;
            pthread_mutex_unlock(&s->registry_mutex);
            free(key);
            return h;
        }
    }
    dp_host_t *h = calloc(1, sizeof(*h));
    if (h == NULL) {
        pthread_mutex_unlock(&s->registry_mutex);
        free(key);
        return NULL;
    }
    h->refcnt = 1;
    h->server = s;
    h->key = key;
    atomic_init(&h->max_conns, pool->max_conns_per_host);
    atomic_init(&h->max_idle, pool->max_idle_per_host);
    h2o_linklist_insert(&s->hosts, &h->link);
    pthread_mutex_unlock(&s->registry_mutex);
    return h;
}

static void host_release(dp_host_t *h)
{
    dp_server_t *s = h->server;
    pthread_mutex_lock(&s->registry_mutex);
    if (--h->refcnt != 0) {
        pthread_mutex_unlock(&s->registry_mutex);
        return;
    }
    h2o_linklist_unlink(&h->link);
    pthread_mutex_unlock(&s->registry_mutex);
    free(h->key);
    free(h);
}

/* The endpoint's own protocol and stream bound when it sets them, else its service's pool's. */
static int endpoint_protocol(const cfg_endpoint_t *e, const cfg_pool_t *pool)
{
    return e->has_protocol ? e->protocol : pool->protocol;
}

static uint32_t endpoint_max_streams(const cfg_endpoint_t *e, const cfg_pool_t *pool)
{
    return e->max_concurrent_streams != 0 ? e->max_concurrent_streams : pool->max_concurrent_streams;
}

void dp_gen_apply_pool_settings(dp_gen_t *g)
{
    for (size_t i = 0; i != g->nservices; ++i) {
        const cfg_pool_t *p = &g->services[i].cfg->pool;
        for (size_t j = 0; j != g->services[i].nendpoints; ++j) {
            dp_endpoint_t *ep = g->services[i].endpoints[j];
            atomic_store(&ep->max_conns, p->max_conns_per_host);
            atomic_store(&ep->max_idle, p->max_idle_per_host);
            atomic_store(&ep->idle_timeout_ms, p->idle_timeout_ms);
            atomic_store(&ep->connect_timeout_ms, p->connect_timeout_ms);
            const cfg_endpoint_t *e = &g->services[i].cfg->endpoints.entries[j];
            atomic_store(&ep->protocol, endpoint_protocol(e, p));
            atomic_store(&ep->max_streams, endpoint_max_streams(e, p));
            atomic_store(&ep->h2_window, (uint32_t)g->cfg->buffers.size);
        }
    }
    for (size_t i = 0; i != g->nendpoints; ++i) {
        dp_host_t *h = g->endpoints[i]->upstream;
        uint32_t conns = 0, idle = 0;
        for (size_t j = 0; j != g->nendpoints; ++j) {
            const dp_endpoint_t *ep = g->endpoints[j];
            if (ep->upstream != h)
                continue;
            if (atomic_load(&ep->max_conns) > conns)
                conns = atomic_load(&ep->max_conns);
            if (atomic_load(&ep->max_idle) > idle)
                idle = atomic_load(&ep->max_idle);
        }
        atomic_store(&h->max_conns, conns);
        atomic_store(&h->max_idle, idle);
    }
}

void dp_endpoint_release(dp_endpoint_t *ep)
{
    if (atomic_fetch_sub(&ep->refcnt, 1) != 1)
        return;
    if (ep->ssl_ctx != NULL)
        SSL_CTX_free(ep->ssl_ctx);
    if (ep->ssl_ctx_alpn != NULL)
        SSL_CTX_free(ep->ssl_ctx_alpn);
    free(ep->h2_headers);
    dp_ws_target_destroy(ep->ws);
    if (ep->upstream != NULL)
        host_release(ep->upstream);
    free(ep->key);
    free(ep->service);
    free(ep->url);
    free(ep->label);
    free(ep->host);
    free(ep->path);
    free(ep->host_header.base);
    free(ep->head_prefix.base);
    free(ep->server_name);
    free(ep->wp);
    free(ep);
}

/* An endpoint's identity across generations: what it is and what is sent to it (service, name,
 * URL with its userinfo, extra headers, TLS), never how its pool is tuned, so changing a pool
 * bound keeps the warm connections. The service is part of it because its series carry a service
 * label. Fields are length-prefixed, so no value can pass for another. */
static char *endpoint_key(const char *service, const cfg_endpoint_t *e)
{
    char *key = NULL;
    size_t len = 0;
    FILE *fp = open_memstream(&key, &len);
    if (fp == NULL)
        return NULL;
    const cfg_upstream_tls_t *t = &e->tls;
    const char *fields[] = {service,
                            e->label,
                            e->url,
                            e->has_tls && t->ca_file ? t->ca_file : "",
                            e->has_tls && t->server_name ? t->server_name : "",
                            e->ws_url != NULL ? e->ws_url : ""};
    for (size_t i = 0; i != sizeof(fields) / sizeof(fields[0]); ++i)
        fprintf(fp, "%zu:%s|", strlen(fields[i]), fields[i]);
    fprintf(fp, "v=%d|", e->has_tls ? t->verify : 1);
    for (size_t i = 0; i != e->headers.size; ++i)
        fprintf(fp, "%zu:%s|%zu:%s|", strlen(e->headers.entries[i].name), e->headers.entries[i].name,
                strlen(e->headers.entries[i].value), e->headers.entries[i].value);
    if (fclose(fp) != 0) {
        free(key);
        return NULL;
    }
    return key;
}

/* An https endpoint's client SSL_CTX (`alpn`: offering h2 and http/1.1). 0, 1 = out of memory,
 * -1 = an error added. */
static int client_ctx_init(dp_endpoint_t *ep, const cfg_endpoint_t *e, SSL_CTX **out, int alpn, const char *field,
                           cfg_errors_t *errs)
{
    const cfg_upstream_tls_t *t = &e->tls;
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    if ((*out = ctx) == NULL)
        return 1;
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    if (alpn) {
        static const unsigned char protos[] = "\x02h2\x08http/1.1";
        if (SSL_CTX_set_alpn_protos(ctx, protos, sizeof(protos) - 1) != 0)
            return 1;
    }
    unsigned char ipbuf[16];
    int is_ip = inet_pton(AF_INET, ep->server_name, ipbuf) == 1 || inet_pton(AF_INET6, ep->server_name, ipbuf) == 1;
    if (is_ip)
        SSL_CTX_set_info_callback(ctx, drop_sni);
    if (ep->verify) {
        SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
        /* The name is checked by OpenSSL as part of the chain: h2o 2.2 skips its own hostname
         * check when the handshake ends with data still to flush (TLS 1.3 clients). */
        X509_VERIFY_PARAM *param = SSL_CTX_get0_param(ctx);
        if ((is_ip ? X509_VERIFY_PARAM_set1_ip_asc(param, ep->server_name)
                   : X509_VERIFY_PARAM_set1_host(param, ep->server_name, 0)) != 1) {
            cfg_errors_add(errs, "%s: cannot verify the name %s", field, ep->server_name);
            return -1;
        }
        if (e->has_tls && t->ca_file != NULL) {
            if (SSL_CTX_load_verify_locations(ctx, t->ca_file, NULL) != 1) {
                cfg_errors_add(errs, "%s.tls.ca_file: cannot read CA bundle %s", field, t->ca_file);
                return -1;
            }
        } else if (SSL_CTX_set_default_verify_paths(ctx) != 1) {
            cfg_errors_add(errs, "%s: cannot load the system CA store", field);
            return -1;
        }
    } else {
        SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
    }
    return 0;
}

static dp_endpoint_t *endpoint_create(dp_server_t *s, const char *service, const cfg_endpoint_t *e, const cfg_pool_t *pool,
                                      uint32_t window, char *key, const char *field, cfg_errors_t *errs)
{
    dp_endpoint_t *ep = calloc(1, sizeof(*ep));
    if (ep == NULL)
        goto NoMem;
    atomic_init(&ep->refcnt, 1);
    atomic_init(&ep->gen_refs, 0);
    ep->key = key;
    key = NULL;
    ep->service = strdup(service);
    ep->url = strdup(e->url);
    ep->label = strdup(e->label);
    ep->host = strdup(e->host);
    ep->path = strdup(e->path != NULL && e->path[0] != '\0' ? e->path : "/");
    ep->port = e->port;
    ep->is_https = e->is_https;
    atomic_init(&ep->max_conns, pool->max_conns_per_host);
    atomic_init(&ep->max_idle, pool->max_idle_per_host);
    atomic_init(&ep->idle_timeout_ms, pool->idle_timeout_ms);
    atomic_init(&ep->connect_timeout_ms, pool->connect_timeout_ms);
    atomic_init(&ep->protocol, endpoint_protocol(e, pool));
    atomic_init(&ep->max_streams, endpoint_max_streams(e, pool));
    atomic_init(&ep->h2_window, window);
    ep->nworkers = DP_NPOOLS(s);
    ep->wp = calloc(DP_NPOOLS(s), sizeof(ep->wp[0]));
    ep->upstream = host_get(s, e, pool);
    if (ep->service == NULL || ep->url == NULL || ep->label == NULL || ep->host == NULL || ep->path == NULL || ep->wp == NULL ||
        ep->upstream == NULL)
        goto NoMem;
    for (size_t i = 0; i != DP_NPOOLS(s); ++i) {
        ep->wp[i].ep = ep;
        h2o_linklist_init_anchor(&ep->wp[i].idle);
        h2o_linklist_init_anchor(&ep->wp[i].waiters);
        h2o_linklist_init_anchor(&ep->wp[i].h2conns);
    }
    int default_port = e->port == (e->is_https ? 443 : 80);
    int v6 = strchr(e->host, ':') != NULL;
    char hh[300];
    int n = snprintf(hh, sizeof(hh), "%s%s%s", v6 ? "[" : "", e->host, v6 ? "]" : "");
    if (!default_port && n > 0 && (size_t)n < sizeof(hh))
        snprintf(hh + n, sizeof(hh) - (size_t)n, ":%u", (unsigned)e->port);
    ep->host_header = h2o_iovec_init(strdup(hh), strlen(hh));
    if (ep->host_header.base == NULL)
        goto NoMem;
    /* the endpoint's headers and credentials go into the fixed prefix: nothing per request */
    const char *herr = NULL;
    size_t pl = 0;
    char *prefix = dp_rpc_head_prefix(ep->path, hh, e->headers.entries, e->headers.size, e->userinfo, &pl, &herr);
    if (herr != NULL) {
        cfg_errors_add(errs, "%s.headers: %s", field, herr);
        goto Error;
    }
    if (prefix == NULL)
        goto NoMem;
    ep->head_prefix = h2o_iovec_init(prefix, pl);
    for (size_t i = 0; i != e->headers.size; ++i)
        if (strcasecmp(e->headers.entries[i].name, "content-type") == 0)
            ep->own_content_type = 1;

    /* names are resolved here, on the main thread, so workers never block on DNS */
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM, .ai_flags = AI_NUMERICSERV}, *res = NULL;
    char portstr[8];
    snprintf(portstr, sizeof(portstr), "%u", (unsigned)e->port);
    int gai = getaddrinfo(e->host, portstr, &hints, &res);
    if (gai == 0 && res != NULL && res->ai_addrlen <= sizeof(ep->addr)) {
        memcpy(&ep->addr, res->ai_addr, res->ai_addrlen);
        ep->addrlen = res->ai_addrlen;
    } else {
        PW_WARN("%s.url: cannot resolve %s (%s); requests to it fail with 502 until a reload", field, e->host,
                gai != 0 ? gai_strerror(gai) : "no address");
    }
    if (res != NULL)
        freeaddrinfo(res);

    if (e->is_https) {
        const cfg_upstream_tls_t *t = &e->tls;
        ep->verify = e->has_tls ? t->verify : 1;
        ep->server_name = strdup(e->has_tls && t->server_name != NULL ? t->server_name : e->host);
        if (ep->server_name == NULL)
            goto NoMem;
        /* two contexts: without ALPN (http1), and offering h2 and http/1.1 (h2, auto); which one a
         * new connection uses follows the endpoint's protocol at the time */
        int rv;
        if ((rv = client_ctx_init(ep, e, &ep->ssl_ctx, 0, field, errs)) != 0 ||
            (rv = client_ctx_init(ep, e, &ep->ssl_ctx_alpn, 1, field, errs)) != 0) {
            if (rv > 0)
                goto NoMem;
            goto Error;
        }
    }
    if ((ep->h2_headers = dp_h2_prefix_headers(ep->head_prefix.base, ep->head_prefix.len, &ep->h2_nheaders)) == NULL)
        goto NoMem;
    if (dp_ws_target_create(ep, e, field, errs) != 0)
        goto Error;
    return ep;

NoMem:
    cfg_errors_add(errs, "%s: out of memory", field);
Error:
    free(key);
    if (ep != NULL) {
        atomic_store(&ep->refcnt, 1);
        dp_endpoint_release(ep);
    }
    return NULL;
}

static dp_endpoint_t *find_endpoint(dp_endpoint_t **list, size_t n, const char *key)
{
    for (size_t i = 0; i != n; ++i)
        if (strcmp(list[i]->key, key) == 0)
            return list[i];
    return NULL;
}

dp_gen_t *dp_gen_create(dp_server_t *s, cfg_t *cfg, const dp_gen_t *prev, cfg_errors_t *errs)
{
    size_t start_errors = errs->size;
    dp_gen_t *g = calloc(1, sizeof(*g));
    if (g == NULL) {
        cfg_errors_add(errs, "out of memory");
        return NULL;
    }
    atomic_init(&g->refcnt, 1);
    g->server = s;
    g->cfg = cfg;
    cfg_hash(cfg, CFG_SCOPE_FLEET, g->hash);
    cfg_hash(cfg, CFG_SCOPE_FULL, g->full_hash);
    g->services = calloc(cfg->services.size ? cfg->services.size : 1, sizeof(g->services[0]));
    size_t maxeps = 0;
    for (size_t i = 0; i != cfg->services.size; ++i)
        maxeps += cfg->services.entries[i].endpoints.size;
    g->endpoints = calloc(maxeps ? maxeps : 1, sizeof(g->endpoints[0]));
    if (g->services == NULL || g->endpoints == NULL) {
        cfg_errors_add(errs, "out of memory");
        goto Error;
    }

    for (size_t i = 0; i != cfg->services.size; ++i) {
        const cfg_service_t *cs = cfg->services.entries + i;
        dp_service_t *svc = g->services + g->nservices;
        svc->id = cs->id;
        svc->idlen = strlen(cs->id);
        svc->cfg = cs;
        atomic_init(&svc->rr, 0);
        if ((svc->shared = svcshared_get(s, cs)) == NULL) {
            cfg_errors_add(errs, "out of memory");
            goto Error;
        }
        g->nservices++;
        svc->endpoints = calloc(cs->endpoints.size ? cs->endpoints.size : 1, sizeof(svc->endpoints[0]));
        if (svc->endpoints == NULL) {
            cfg_errors_add(errs, "out of memory");
            goto Error;
        }
        for (size_t j = 0; j != cs->endpoints.size; ++j) {
            const cfg_endpoint_t *ce = cs->endpoints.entries + j;
            char field[128];
            snprintf(field, sizeof(field), "services[%zu].endpoints[%zu]", i, j);
            char *key = endpoint_key(cs->id, ce);
            if (key == NULL) {
                cfg_errors_add(errs, "out of memory");
                goto Error;
            }
            dp_endpoint_t *ep = find_endpoint(g->endpoints, g->nendpoints, key);
            if (ep == NULL) {
                ep = prev != NULL ? find_endpoint(prev->endpoints, prev->nendpoints, key) : NULL;
                if (ep != NULL) {
                    free(key);
                    atomic_fetch_add(&ep->refcnt, 1);
                } else if ((ep = endpoint_create(s, cs->id, ce, &cs->pool, (uint32_t)cfg->buffers.size, key, field, errs)) ==
                           NULL) {
                    continue; /* error recorded; keep checking the rest */
                }
                atomic_fetch_add(&ep->gen_refs, 1);
                g->endpoints[g->nendpoints++] = ep;
            } else {
                free(key);
            }
            svc->endpoints[svc->nendpoints++] = ep;
        }
    }
    if (errs->size != start_errors)
        goto Error;
    qsort(g->services, g->nservices, sizeof(g->services[0]), cmp_service);
    return g;

Error:
    g->cfg = NULL; /* the caller keeps cfg on failure */
    dp_gen_release(g);
    return NULL;
}

void dp_gen_retain(dp_gen_t *g)
{
    atomic_fetch_add(&g->refcnt, 1);
}

void dp_gen_release(dp_gen_t *g)
{
    if (atomic_fetch_sub(&g->refcnt, 1) != 1)
        return;
    int retired = 0;
    for (size_t i = 0; i != g->nendpoints; ++i) {
        dp_endpoint_t *ep = g->endpoints[i];
        if (atomic_fetch_sub(&ep->gen_refs, 1) == 1)
            retired = 1;
        dp_endpoint_release(ep);
    }
    for (size_t i = 0; i != g->nservices; ++i) {
        dp_svcshared_release(g->services[i].shared);
        free(g->services[i].endpoints);
    }
    /* workers close the idle connections of retired endpoints when woken */
    if (retired && g->server->workers != NULL)
        dp_server_kick_all(g->server);
    free(g->services);
    free(g->endpoints);
    if (g->cfg != NULL)
        cfg_destroy(g->cfg);
    free(g);
}
