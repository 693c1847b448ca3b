/*
 * dp_pool: upstream connections per endpoint per worker (see dp_pool.h).
 *
 * Why our own pool rather than h2o_socketpool: the socketpool neither enforces its capacity nor
 * reports idle counts. Owning the socket lets Pathway count every connection (process-wide
 * atomics) and bound idle ones per upstream and per process.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdlib.h>
#include <sys/socket.h>
#include "dp_h2.h"
#include "dp_pool.h"
#include "pw_log.h"

#define DP_UPSTREAM_RCVBUF (128 * 1024)

static void wpool_serve_waiters(dp_worker_t *w, dp_endpoint_t *ep);
static void conn_open(dp_worker_t *w, dp_endpoint_t *ep, dp_pool_waiter_t *wt);

static void wpool_activate(dp_worker_t *w, dp_endpoint_t *ep)
{
    dp_wpool_t *wp = &ep->wp[w->index];
    if (wp->active)
        return;
    wp->active = 1;
    atomic_fetch_add(&ep->refcnt, 1);
    h2o_linklist_insert(&w->active_pools, &wp->active_link);
}

static void wpool_maybe_deactivate(dp_worker_t *w, dp_endpoint_t *ep)
{
    dp_wpool_t *wp = &ep->wp[w->index];
    if (!wp->active || wp->nconns != 0 || wp->nwaiters != 0)
        return;
    wp->active = 0;
    h2o_linklist_unlink(&wp->active_link);
    dp_endpoint_release(ep); /* may free ep (and wp) */
}

/* Takes a connection slot of the endpoint's upstream (bounded per upstream, over every endpoint
 * object and generation that points at it, by the current generation's max_conns_per_host). */
static int reserve_slot(dp_endpoint_t *ep)
{
    dp_host_t *h = ep->upstream;
    uint32_t max = atomic_load(&h->max_conns), cur = atomic_load(&h->open);
    while (cur < max)
        if (atomic_compare_exchange_weak(&h->open, &cur, cur + 1)) {
            atomic_fetch_add(&ep->open, 1);
            return 1;
        }
    return 0;
}

static void unreserve_slot(dp_endpoint_t *ep)
{
    atomic_fetch_sub(&ep->open, 1);
    atomic_fetch_sub(&ep->upstream->open, 1);
}

/* Counts `n` (+1 or -1) requests waiting for a slot of ep's upstream. */
static void count_waiters(dp_endpoint_t *ep, int n)
{
    if (n > 0) {
        atomic_fetch_add(&ep->waiters, 1);
        atomic_fetch_add(&ep->upstream->waiters, 1);
    } else {
        atomic_fetch_sub(&ep->waiters, 1);
        atomic_fetch_sub(&ep->upstream->waiters, 1);
    }
}

static void uncount_idle(dp_endpoint_t *ep)
{
    atomic_fetch_sub(&ep->idle, 1);
    atomic_fetch_sub(&ep->upstream->idle, 1);
}

static int ep_retired(dp_endpoint_t *ep)
{
    return atomic_load(&ep->gen_refs) == 0;
}

static void conn_unidle(dp_conn_t *c)
{
    dp_worker_t *w = c->w;
    h2o_linklist_unlink(&c->_idle_link);
    if (h2o_timeout_is_linked(&c->_timer))
        h2o_timeout_unlink(&c->_timer);
    uncount_idle(c->ep);
    atomic_fetch_sub(&w->server->idle_total, 1);
    c->state = DP_CONN_BUSY;
    DP_OWNER_ADD(w->conns_busy, 1);
}

void dp_pool_close(dp_conn_t *c)
{
    dp_worker_t *w = c->w;
    dp_endpoint_t *ep = c->ep;
    dp_wpool_t *wp = &ep->wp[w->index];
    if (c->state == DP_CONN_IDLE) {
        h2o_linklist_unlink(&c->_idle_link);
        uncount_idle(ep);
        atomic_fetch_sub(&w->server->idle_total, 1);
    } else if (c->state == DP_CONN_BUSY) {
        DP_OWNER_ADD(w->conns_busy, -1);
    }
    if (h2o_timeout_is_linked(&c->_timer))
        h2o_timeout_unlink(&c->_timer);
    if (c->_h2_counted) {
        c->_h2_counted = 0;
        wp->h2_connecting--;
    }
    dp_h2_conn_free(c); /* an HTTP/2 session: its streams fail first */
    if (c->sock != NULL)
        h2o_socket_close(c->sock);
    unreserve_slot(ep);
    DP_SHARED_ADD(ep->closes, 1);
    PW_DEBUG("upstream %s: connection closed (worker %zu, %s)", ep->label, w->index,
             c->state == DP_CONN_IDLE   ? "idle"
             : c->state == DP_CONN_BUSY ? "busy"
                                        : "connecting");
    wp->nconns--;
    free(c);
    /* a slot is free: our own waiters first, then anyone else's (other workers, and endpoints of
     * other generations that share the upstream: housekeeping serves those) */
    wpool_serve_waiters(w, ep);
    if (atomic_load(&ep->upstream->waiters) != 0)
        dp_server_kick_all(w->server);
    wpool_maybe_deactivate(w, ep);
}

static void on_idle_timeout(h2o_timeout_entry_t *entry)
{
    dp_conn_t *c = H2O_STRUCT_FROM_MEMBER(dp_conn_t, _timer, entry);
    dp_pool_close(c);
}

static void on_idle_read(h2o_socket_t *sock, const char *err)
{
    /* an idle connection has nothing to say: EOF, or bytes we did not ask for */
    dp_pool_close(sock->data);
}

/* Hands a connection to its waiter. */
static void hand_over(dp_pool_waiter_t *wt, dp_conn_t *c, int reused)
{
    c->owner = wt;
    wt->conn = c;
    wt->on_conn(wt, c, reused);
}

/* Takes the first waiter off the queue of ep's pool on worker w. */
static dp_pool_waiter_t *pop_waiter(dp_worker_t *w, dp_endpoint_t *ep)
{
    dp_wpool_t *wp = &ep->wp[w->index];
    dp_pool_waiter_t *wt = H2O_STRUCT_FROM_MEMBER(dp_pool_waiter_t, _link, wp->waiters.next);
    h2o_linklist_unlink(&wt->_link);
    wp->nwaiters--;
    count_waiters(ep, -1);
    return wt;
}

/* Puts a connection back after a complete exchange, hands it to a waiter, or closes it. */
void dp_pool_release(dp_conn_t *c, int reusable)
{
    dp_worker_t *w = c->w;
    dp_endpoint_t *ep = c->ep;
    dp_wpool_t *wp = &ep->wp[w->index];
    if (c->owner != NULL)
        c->owner->conn = NULL;
    c->owner = NULL;
    if (!reusable || ep_retired(ep) || atomic_load(&w->server->exiting)) {
        dp_pool_close(c);
        return;
    }
    if (!h2o_linklist_is_empty(&wp->waiters)) {
        dp_pool_waiter_t *wt = pop_waiter(w, ep);
        DP_SHARED_ADD(ep->reuses, 1);
        hand_over(wt, c, 1);
        return;
    }
    /* another worker (or endpoint of the upstream) waits for a slot: free ours rather than idle */
    dp_host_t *h = ep->upstream;
    if (atomic_load(&h->waiters) != 0) {
        dp_pool_close(c);
        return;
    }
    if (atomic_fetch_add(&h->idle, 1) >= atomic_load(&h->max_idle)) {
        atomic_fetch_sub(&h->idle, 1);
        dp_pool_close(c);
        return;
    }
    atomic_fetch_add(&ep->idle, 1);
    if (atomic_fetch_add(&w->server->idle_total, 1) >= atomic_load(&w->server->max_idle_total)) {
        atomic_fetch_sub(&w->server->idle_total, 1);
        uncount_idle(ep);
        dp_pool_close(c);
        return;
    }
    DP_OWNER_ADD(w->conns_busy, -1);
    c->state = DP_CONN_IDLE;
    h2o_linklist_insert(wp->idle.next, &c->_idle_link); /* most recent first */
    c->_timer.cb = on_idle_timeout;
    h2o_timeout_link(w->loop, dp_worker_timeout(w, atomic_load(&ep->idle_timeout_ms)), &c->_timer);
    if (c->h2 == NULL) /* an HTTP/2 session keeps reading (SETTINGS, PING, GOAWAY) */
        h2o_socket_read_start(c->sock, on_idle_read);
}

void dp_pool_h2_grow(dp_conn_t *c)
{
    dp_worker_t *w = c->w;
    dp_endpoint_t *ep = c->ep;
    dp_wpool_t *wp = &ep->wp[w->index];
    if (!h2o_linklist_is_empty(&wp->waiters) && wp->h2_connecting == 0 && !ep_retired(ep) && reserve_slot(ep))
        conn_open(w, ep, pop_waiter(w, ep));
}

dp_pool_waiter_t *dp_pool_h2_take_waiter(dp_conn_t *c)
{
    dp_wpool_t *wp = &c->ep->wp[c->w->index];
    if (h2o_linklist_is_empty(&wp->waiters) || ep_retired(c->ep))
        return NULL;
    DP_SHARED_ADD(c->ep->reuses, 1);
    return pop_waiter(c->w, c->ep);
}

/* Whether a connection opened now for ep would try HTTP/2. */
static int wants_h2(dp_endpoint_t *ep, int proto)
{
    return proto == CFG_PROTO_H2 || (proto == CFG_PROTO_AUTO && ep->is_https);
}

static void conn_fail(dp_conn_t *c, const char *err)
{
    dp_endpoint_t *ep = c->ep;
    dp_pool_waiter_t *wt = c->owner;
    DP_SHARED_ADD(ep->connect_errors, 1);
    atomic_store(&ep->just_failed, 1);
    PW_WARN("upstream %s/%s: connect failed: %s", ep->service, ep->label, err);
    if (wt != NULL) {
        wt->conn = NULL;
        c->owner = NULL;
    }
    /* an HTTP/2 connection being opened: the worker's other requests for the endpoint waited for it
     * rather than open their own; they fail with it (failover), not one connect timeout after another */
    h2o_linklist_t others;
    h2o_linklist_init_anchor(&others);
    if (c->_h2_counted) {
        dp_worker_t *w = c->w;
        dp_wpool_t *wp = &ep->wp[w->index];
        while (!h2o_linklist_is_empty(&wp->waiters))
            h2o_linklist_insert(&others, &pop_waiter(w, ep)->_link);
        atomic_fetch_add(&ep->refcnt, 1); /* the pool may deactivate as the connection closes */
    }
    int held = c->_h2_counted;
    dp_pool_close(c);
    if (wt != NULL)
        wt->on_fail(wt, DP_ERR_CONNECT_FAILED);
    while (!h2o_linklist_is_empty(&others)) {
        dp_pool_waiter_t *o = H2O_STRUCT_FROM_MEMBER(dp_pool_waiter_t, _link, others.next);
        h2o_linklist_unlink(&o->_link);
        o->on_fail(o, DP_ERR_CONNECT_FAILED);
    }
    if (held)
        dp_endpoint_release(ep);
}

static void on_connect_timeout(h2o_timeout_entry_t *entry)
{
    conn_fail(H2O_STRUCT_FROM_MEMBER(dp_conn_t, _timer, entry), "connect timeout");
}

static void conn_ready(dp_conn_t *c, int h2)
{
    dp_worker_t *w = c->w;
    dp_endpoint_t *ep = c->ep;
    if (h2o_timeout_is_linked(&c->_timer))
        h2o_timeout_unlink(&c->_timer);
    int counted = c->_h2_counted;
    if (counted) {
        c->_h2_counted = 0;
        ep->wp[w->index].h2_connecting--;
    }
    if (h2 && dp_h2_conn_init(c, atomic_load(&ep->h2_window)) != 0) {
        conn_fail(c, "out of memory");
        return;
    }
    c->state = DP_CONN_BUSY;
    DP_OWNER_ADD(w->conns_busy, 1);
    if (h2) {
        /* its owner's stream first, then as many waiters as it takes */
        if (c->owner != NULL)
            c->owner->on_conn(c->owner, c, 0);
        else
            dp_h2_conn_settle(c);
        return;
    }
    if (c->owner != NULL)
        c->owner->on_conn(c->owner, c, 0);
    else
        dp_pool_release(c, 1); /* its owner went away while connecting: keep it for the next */
    if (counted)
        wpool_serve_waiters(w, ep); /* waiters for an HTTP/2 connection that turned out HTTP/1.1 */
}

static int is_ip_literal(const char *name)
{
    unsigned char buf[16];
    return inet_pton(AF_INET, name, buf) == 1 || inet_pton(AF_INET6, name, buf) == 1;
}

/* The handshake's verdict. OpenSSL verifies the chain and the name (or IP address) during the
 * handshake: the endpoint's SSL_CTX carries them in its X509_VERIFY_PARAM, and a failure ends the
 * handshake with OpenSSL's reason ("IP address mismatch"). libh2o 2.2.5 then runs its own name
 * check, which knows only DNS names: for an IP literal it reports a mismatch against the very
 * certificate OpenSSL has just accepted by its IP SAN, so that report is not believed. */
static int handshake_ok(dp_endpoint_t *ep, const char *err)
{
    if (err == NULL)
        return 1;
    int name_check = err == h2o_socket_error_ssl_cert_name_mismatch || err == h2o_socket_error_ssl_cert_invalid;
    if (ep->verify == 0)
        return name_check || err == h2o_socket_error_ssl_no_cert;
    return name_check && is_ip_literal(ep->server_name);
}

static void on_handshake(h2o_socket_t *sock, const char *err)
{
    dp_conn_t *c = sock->data;
    if (!handshake_ok(c->ep, err)) {
        conn_fail(c, err);
        return;
    }
    int h2 = 0;
    if (wants_h2(c->ep, c->proto)) {
        h2o_iovec_t sel = h2o_socket_ssl_get_selected_protocol(sock);
        h2 = sel.len == 2 && memcmp(sel.base, "h2", 2) == 0;
        if (!h2 && c->proto == CFG_PROTO_H2) {
            conn_fail(c, "protocol h2: the upstream did not select h2 by ALPN");
            return;
        }
    }
    conn_ready(c, h2);
}

static void on_connect(h2o_socket_t *sock, const char *err)
{
    dp_conn_t *c = sock->data;
    if (err != NULL) {
        conn_fail(c, err);
        return;
    }
    if (c->ep->is_https) {
        SSL_CTX *ctx = wants_h2(c->ep, c->proto) ? c->ep->ssl_ctx_alpn : c->ep->ssl_ctx;
        h2o_socket_ssl_handshake(sock, ctx, c->ep->server_name, on_handshake);
        return;
    }
    conn_ready(c, c->proto == CFG_PROTO_H2); /* http:// with h2: prior knowledge */
}

/* Opens a connection for `wt` in a slot already reserved. */
static void conn_open(dp_worker_t *w, dp_endpoint_t *ep, dp_pool_waiter_t *wt)
{
    dp_wpool_t *wp = &ep->wp[w->index];
    dp_conn_t *c = calloc(1, sizeof(*c));
    if (c == NULL) {
        unreserve_slot(ep);
        wt->on_fail(wt, DP_ERR_OUT_OF_MEMORY);
        return;
    }
    c->ep = ep;
    c->w = w;
    c->state = DP_CONN_CONNECTING;
    c->proto = atomic_load(&ep->protocol);
    if (wants_h2(ep, c->proto)) {
        c->_h2_counted = 1;
        wp->h2_connecting++;
    }
    c->owner = wt;
    wt->conn = c;
    wp->nconns++;
    wpool_activate(w, ep);
    DP_SHARED_ADD(ep->connects, 1);
    PW_DEBUG("upstream %s: connecting (worker %zu, %u open)", ep->label, w->index, (unsigned)atomic_load(&ep->open));
    c->sock = h2o_socket_connect(w->loop, (struct sockaddr *)&ep->addr, ep->addrlen, on_connect);
    if (c->sock == NULL) {
        conn_fail(c, "socket error");
        return;
    }
    c->sock->data = c;
    /* h2o reads a socket until the kernel has nothing left; a small receive buffer keeps a fast
     * upstream from parking megabytes in sock->input while the client is slow */
    int rcvbuf = DP_UPSTREAM_RCVBUF, on = 1;
    setsockopt(h2o_socket_get_fd(c->sock), SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof(rcvbuf));
    /* requests go out whole in one write; never hold one back for an ACK */
    setsockopt(h2o_socket_get_fd(c->sock), IPPROTO_TCP, TCP_NODELAY, &on, sizeof(on));
    c->_timer.cb = on_connect_timeout;
    h2o_timeout_link(w->loop, dp_worker_timeout(w, atomic_load(&ep->connect_timeout_ms)), &c->_timer);
}

/* An HTTP/2 connection of this worker's pool that takes another stream now, or NULL. */
static dp_conn_t *find_h2(dp_wpool_t *wp)
{
    for (h2o_linklist_t *l = wp->h2conns.next; l != &wp->h2conns; l = l->next) {
        dp_conn_t *c = H2O_STRUCT_FROM_MEMBER(dp_conn_t, _h2_link, l);
        if (dp_h2_conn_has_room(c))
            return c;
    }
    return NULL;
}

/* Hands an HTTP/2 connection to a waiter (another stream on it). */
static void h2_hand_over(dp_pool_waiter_t *wt, dp_conn_t *c)
{
    if (c->state == DP_CONN_IDLE)
        conn_unidle(c);
    DP_SHARED_ADD(c->ep->reuses, 1);
    hand_over(wt, c, 1);
}

static void wpool_serve_waiters(dp_worker_t *w, dp_endpoint_t *ep)
{
    dp_wpool_t *wp = &ep->wp[w->index];
    while (!h2o_linklist_is_empty(&wp->waiters)) {
        dp_conn_t *h2c = find_h2(wp);
        if (h2c != NULL) {
            h2_hand_over(pop_waiter(w, ep), h2c);
        } else if (!h2o_linklist_is_empty(&wp->idle)) {
            dp_conn_t *c = H2O_STRUCT_FROM_MEMBER(dp_conn_t, _idle_link, wp->idle.next);
            dp_pool_waiter_t *wt = pop_waiter(w, ep);
            conn_unidle(c);
            DP_SHARED_ADD(ep->reuses, 1);
            hand_over(wt, c, 1);
        } else if (wp->h2_connecting != 0 && wants_h2(ep, atomic_load(&ep->protocol))) {
            break; /* an HTTP/2 connection on its way takes them */
        } else if (reserve_slot(ep)) {
            conn_open(w, ep, pop_waiter(w, ep));
        } else {
            break;
        }
    }
}

void dp_pool_acquire(dp_worker_t *w, dp_endpoint_t *ep, dp_pool_waiter_t *wt, int fresh)
{
    dp_wpool_t *wp = &ep->wp[w->index];
    if (!fresh && !ep_retired(ep)) {
        dp_conn_t *c = find_h2(wp);
        if (c != NULL) {
            h2_hand_over(wt, c);
            return;
        }
    }
    if (!fresh && !h2o_linklist_is_empty(&wp->idle) && !ep_retired(ep)) {
        dp_conn_t *c = H2O_STRUCT_FROM_MEMBER(dp_conn_t, _idle_link, wp->idle.next);
        conn_unidle(c);
        DP_SHARED_ADD(ep->reuses, 1);
        hand_over(wt, c, 1);
        return;
    }
    if (!(wp->h2_connecting != 0 && wants_h2(ep, atomic_load(&ep->protocol))) && reserve_slot(ep)) {
        conn_open(w, ep, wt);
        return;
    }
    /* every slot is taken: wait (the limiter bounds how many of us there can be) */
    h2o_linklist_insert(&wp->waiters, &wt->_link);
    wp->nwaiters++;
    count_waiters(ep, 1);
    wpool_activate(w, ep);
    dp_server_kick_all(w->server); /* workers holding idle connections let them go */
}

void dp_pool_cancel(dp_worker_t *w, dp_endpoint_t *ep, dp_pool_waiter_t *wt)
{
    if (h2o_linklist_is_linked(&wt->_link)) {
        dp_wpool_t *wp = &ep->wp[w->index];
        h2o_linklist_unlink(&wt->_link);
        wp->nwaiters--;
        count_waiters(ep, -1);
        wpool_maybe_deactivate(w, ep);
    }
    if (wt->conn != NULL) {
        dp_conn_t *c = wt->conn;
        wt->conn = NULL;
        c->owner = NULL;
        if (c->state == DP_CONN_CONNECTING)
            ; /* let it finish; conn_ready parks it idle for the next request */
        else
            dp_pool_close(c);
    }
}

/* --- housekeeping --------------------------------------------------------------------------- */

static void close_idle_of(dp_worker_t *w, dp_endpoint_t *ep, size_t keep)
{
    dp_wpool_t *wp = &ep->wp[w->index];
    size_t n = 0;
    for (h2o_linklist_t *l = wp->idle.next; l != &wp->idle; l = l->next)
        n++;
    while (n > keep && !h2o_linklist_is_empty(&wp->idle)) {
        /* the oldest idle connections are at the tail */
        dp_conn_t *c = H2O_STRUCT_FROM_MEMBER(dp_conn_t, _idle_link, wp->idle.prev);
        n--;
        dp_pool_close(c);
    }
}

/* max_idle_per_host was lowered at runtime: close this worker's oldest idle connections while the
 * upstream keeps more idle than it now may. Workers trim concurrently, so by bad timing one may
 * close a connection another already made up for (never more than one per worker). */
static void trim_idle_excess(dp_worker_t *w, dp_endpoint_t *ep)
{
    dp_wpool_t *wp = &ep->wp[w->index];
    dp_host_t *h = ep->upstream;
    while (!h2o_linklist_is_empty(&wp->idle) && atomic_load(&h->idle) > atomic_load(&h->max_idle))
        dp_pool_close(H2O_STRUCT_FROM_MEMBER(dp_conn_t, _idle_link, wp->idle.prev));
}

void dp_pool_housekeeping(dp_worker_t *w)
{
    /* pools: retired endpoints drop their idle connections; endpoints that others wait for give
     * theirs up; the process-wide idle bound is re-applied. Pools may deactivate (and be freed)
     * as connections close, so collect the endpoints first. */
    size_t neps = 0;
    for (h2o_linklist_t *l = w->active_pools.next; l != &w->active_pools; l = l->next)
        neps++;
    if (neps > w->hk_eps_capacity) {
        dp_endpoint_t **grown = realloc(w->hk_eps, neps * sizeof(grown[0]));
        if (grown != NULL) {
            w->hk_eps = grown;
            w->hk_eps_capacity = neps;
        }
    }
    dp_endpoint_t **eps = w->hk_eps;
    neps = 0;
    for (h2o_linklist_t *l = w->active_pools.next; l != &w->active_pools && neps < w->hk_eps_capacity; l = l->next) {
        dp_wpool_t *wp = H2O_STRUCT_FROM_MEMBER(dp_wpool_t, active_link, l);
        eps[neps++] = wp->ep;
    }
    for (size_t i = 0; i != neps; ++i)
        atomic_fetch_add(&eps[i]->refcnt, 1);
    for (size_t i = 0; i != neps; ++i) {
        dp_endpoint_t *ep = eps[i];
        dp_wpool_t *wp = &ep->wp[w->index];
        if (ep_retired(ep) || atomic_load(&w->server->exiting))
            close_idle_of(w, ep, 0);
        else if (atomic_load(&ep->upstream->waiters) > wp->nwaiters)
            close_idle_of(w, ep, 0);
        else
            trim_idle_excess(w, ep);
        if (!ep_retired(ep))
            wpool_serve_waiters(w, ep);
        else
            while (!h2o_linklist_is_empty(&wp->waiters)) {
                /* its generation is gone; requests still waiting finish on a fresh connection */
                if (!reserve_slot(ep))
                    break;
                conn_open(w, ep, pop_waiter(w, ep));
            }
    }
    uint32_t max_idle_total = atomic_load(&w->server->max_idle_total);
    for (size_t i = 0; i != neps && atomic_load(&w->server->idle_total) > max_idle_total; ++i)
        close_idle_of(w, eps[i], 0);
    for (size_t i = 0; i != neps; ++i) {
        wpool_maybe_deactivate(w, eps[i]);
        dp_endpoint_release(eps[i]);
    }
}
