/*
 * pathway-mock-upstream: a JSON-RPC endpoint simulator on libh2o, for tests and benchmarks.
 *
 * Answers the common eth_* methods and batches (mock_chain.c); injects latency, jitter, errors,
 * large responses and faults; counts the peak concurrent requests and connections it saw (GET /stats) so tests can
 * prove the gateway's bounds from the upstream's side. Its chain head advances with time
 * (--block-time) and can lag (--lag). A second listener (--control-port) changes faults, latency,
 * lag and errors while it runs and counts the calls by method, so a test can turn an endpoint bad
 * and good again and see which endpoint got traffic; it keeps answering while the relay listener
 * refuses connections. One thread, HTTP/1.1 only.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <jansson.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#include "pw_version.h"
#include "h2o.h"
#include "h2o/http1.h"
#include "mock_upstream.h"

mopt_t opt = {.host = "127.0.0.1",
              .port = 8545,
              .fault = FAULT_NONE,
              .fault_rate = 1.0,
              .error_code = -32000,
              .status_rate = 1.0,
              .start_block = 0x1000000};

static struct {
    uint64_t requests, concurrent, peak_concurrent, connections, peak_connections, connections_total, faults;
    uint64_t answered;     /* JSON-RPC requests answered (since /reset-stats) */
    uint64_t busy, queued; /* the capacity model: workers busy, requests waiting for one */
    uint64_t peak_busy, peak_queued;
} st;

/* answered requests by latency (arrival to answer, the queue inside the mock included), 1 ms
 * buckets; the last one holds everything from LAT_BUCKETS - 1 ms on. /stats reads, /reset-stats
 * clears. */
#define LAT_BUCKETS 10001
static uint64_t lat_hist[LAT_BUCKETS];
static h2o_linklist_t cap_queue; /* mreq_t waiting for a worker of the capacity model, FIFO */

static h2o_globalconf_t config;
static h2o_context_t ctx;
static h2o_accept_ctx_t accept_ctx;         /* the relay listener's (TLS when configured) */
static h2o_accept_ctx_t control_accept_ctx; /* the control listener's (plain HTTP) */
static h2o_socket_t *relay_listener;        /* NULL while refusing */
static h2o_linklist_t relay_conns;          /* mconn_t of every open relay connection (reset on refuse) */
/* one h2o_timeout_t per distinct delay (h2o 2.2 timeouts have a fixed duration); grown as needed, so
 * --jitter MS can need MS + 1 of them */
static h2o_timeout_t **timeouts;
static size_t ntimeouts;

/* per client connection, found through the socket's on_close slot */
typedef struct st_mconn_t {
    uint64_t requests;
    int counted;         /* carried a JSON-RPC request: counted in st.connections (/stats calls are not) */
    int control;         /* accepted by the control listener */
    h2o_socket_t *sock;  /* the connection */
    h2o_linklist_t link; /* in relay_conns (relay connections only) */
} mconn_t;

typedef struct st_mreq_t {
    h2o_generator_t gen;
    h2o_req_t *req;
    h2o_timeout_entry_t timer;
    int counted; /* in st.concurrent */
    int responded;
    /* streamed body (response_size or slow body) */
    h2o_iovec_t prefix, suffix;
    uint64_t fill_left; /* filler bytes still to send */
    int prefix_sent, slow;
    h2o_socket_t *watch;  /* FAULT_HANG: a dup of the connection's fd, read to see the client leave */
    json_t *body;         /* the parsed request (NULL: not JSON), owned until respond() */
    uint64_t arrived_ms;  /* when it arrived (for the latency histogram); 0 = not counted */
    uint64_t hold_ms;     /* capacity model: how long it holds a worker (service time + latency + jitter) */
    h2o_linklist_t qlink; /* in cap_queue while waiting for a worker */
    int in_service;       /* holds a worker of the capacity model */
} mreq_t;

static h2o_timeout_t *timeout_of(uint64_t ms)
{
    for (size_t i = 0; i != ntimeouts; ++i)
        if (timeouts[i]->timeout == ms)
            return timeouts[i];
    h2o_timeout_t **grown = realloc(timeouts, (ntimeouts + 1) * sizeof(grown[0]));
    h2o_timeout_t *t = malloc(sizeof(*t));
    if (grown == NULL || t == NULL) {
        fprintf(stderr, "pathway-mock-upstream: out of memory\n");
        abort();
    }
    timeouts = grown;
    h2o_timeout_init(ctx.loop, t, ms);
    timeouts[ntimeouts++] = t;
    return t;
}

static h2o_socket_t *sock_of(h2o_req_t *req)
{
    /* HTTP/1 only: h2o 2.2's st_h2o_http1_conn_t starts with {h2o_conn_t super; h2o_socket_t *sock;} */
    return *(h2o_socket_t **)((char *)req->conn + sizeof(h2o_conn_t));
}

static void uncount(mreq_t *m)
{
    if (m->counted) {
        m->counted = 0;
        st.concurrent--;
    }
}

static void cap_dispatch(void);

static void on_dispose(void *p)
{
    mreq_t *m = p;
    if (h2o_linklist_is_linked(&m->qlink)) {
        h2o_linklist_unlink(&m->qlink);
        st.queued--;
    }
    if (m->in_service) {
        /* the client left while served: the worker is free again */
        m->in_service = 0;
        st.busy--;
        cap_dispatch();
    }
    if (m->watch != NULL) {
        h2o_socket_close(m->watch);
        m->watch = NULL;
    }
    if (h2o_timeout_is_linked(&m->timer))
        h2o_timeout_unlink(&m->timer);
    json_decref(m->body);
    m->body = NULL;
    uncount(m);
}

/* answers doc (taken) with status; chunked: without content-length */
void send_doc(h2o_req_t *req, int status, json_t *doc, int chunked)
{
    char *s = json_dumps(doc, JSON_COMPACT);
    json_decref(doc);
    size_t len = strlen(s);
    req->res.status = status;
    req->res.reason = status == 200 ? "OK" : "Error";
    if (!chunked)
        req->res.content_length = len;
    h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_CONTENT_TYPE, NULL, H2O_STRLIT("application/json"));
    h2o_send_inline(req, s, len);
    free(s);
}

static void send_json(h2o_req_t *req, int status, json_t *doc)
{
    send_doc(req, status, doc, opt.chunked);
}

static char filler[65536];

static void stream_more(h2o_generator_t *gen, h2o_req_t *req)
{
    mreq_t *m = H2O_STRUCT_FROM_MEMBER(mreq_t, gen, gen);
    h2o_iovec_t v[3];
    size_t n = 0;
    if (!m->prefix_sent) {
        v[n++] = m->prefix;
        m->prefix_sent = 1;
    }
    size_t chunk = m->slow ? 16 : sizeof(filler);
    if (m->fill_left != 0) {
        size_t k = m->fill_left < chunk ? (size_t)m->fill_left : chunk;
        v[n++] = h2o_iovec_init(filler, k);
        m->fill_left -= k;
    }
    int final = 0;
    if (m->fill_left == 0) {
        v[n++] = m->suffix;
        final = 1;
    }
    if (final)
        uncount(m);
    h2o_send(req, v, n, final ? H2O_SEND_STATE_FINAL : H2O_SEND_STATE_IN_PROGRESS);
}

static void on_slow_timer(h2o_timeout_entry_t *entry)
{
    mreq_t *m = H2O_STRUCT_FROM_MEMBER(mreq_t, timer, entry);
    stream_more(&m->gen, m->req);
}

static void slow_proceed(h2o_generator_t *gen, h2o_req_t *req)
{
    mreq_t *m = H2O_STRUCT_FROM_MEMBER(mreq_t, gen, gen);
    h2o_timeout_link(ctx.loop, timeout_of(50), &m->timer);
}

static void count_answer(mreq_t *m)
{
    if (m->arrived_ms == 0)
        return;
    uint64_t ms = now_ms() - m->arrived_ms;
    lat_hist[ms < LAT_BUCKETS ? ms : LAT_BUCKETS - 1]++;
    st.answered++;
    m->arrived_ms = 0;
}

static void respond(mreq_t *m)
{
    h2o_req_t *req = m->req;
    m->responded = 1;
    count_answer(m);
    mconn_t *mc = sock_of(req)->on_close.data;
    int fault = opt.fault != FAULT_NONE && rnd() < opt.fault_rate ? (int)opt.fault : FAULT_NONE;
    if (fault == FAULT_CLOSE_AFTER && mc != NULL && mc->requests % opt.close_after == 0)
        h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_CONNECTION, NULL, H2O_STRLIT("close"));

    json_t *body = m->body;
    m->body = NULL;
    json_t *out;
    if (body == NULL) {
        out = json_pack("{s:s, s:n, s:{s:i, s:s}}", "jsonrpc", "2.0", "id", "error", "code", -32700, "message", "parse error");
    } else if (json_is_array(body)) {
        out = json_array();
        size_t i;
        json_t *v;
        json_array_foreach(body, i, v) json_array_append_new(out, answer_one(v));
    } else if (opt.response_size != 0 || fault == FAULT_SLOW_BODY) {
        /* a long result, streamed from a static filler so the mock stays small */
        json_t *id = json_object_get(body, "id");
        char *ids = id != NULL ? json_dumps(id, JSON_ENCODE_ANY | JSON_COMPACT) : strdup("null");
        char *pre = h2o_mem_alloc_pool(&req->pool, strlen(ids) + 64);
        int pl = snprintf(pre, strlen(ids) + 64, "{\"jsonrpc\":\"2.0\",\"id\":%s,\"result\":\"0x", ids);
        free(ids);
        m->prefix = h2o_iovec_init(pre, (size_t)pl);
        m->suffix = h2o_iovec_init(H2O_STRLIT("\"}"));
        m->fill_left = opt.response_size != 0 ? opt.response_size : 256;
        m->slow = fault == FAULT_SLOW_BODY;
        m->gen.proceed = m->slow ? slow_proceed : stream_more;
        m->timer.cb = on_slow_timer;
        req->res.status = 200;
        req->res.reason = "OK";
        if (!opt.chunked)
            req->res.content_length = m->prefix.len + m->fill_left + m->suffix.len;
        h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_CONTENT_TYPE, NULL, H2O_STRLIT("application/json"));
        json_decref(body);
        h2o_start_response(req, &m->gen);
        stream_more(&m->gen, req);
        return;
    } else {
        out = answer_one(body);
    }
    json_decref(body);
    uncount(m);
    send_json(req, opt.status != 0 && rnd() < opt.status_rate ? opt.status : 200, out);
}

/* A hung request's client closed (or sent more, which is dropped: it gets no answer either). h2o
 * does not read a connection while a request is in its handler, so it would never notice; an
 * answer makes it write, find the peer gone and close the connection, which frees the request. */
static void on_hang_peer(h2o_socket_t *watch, const char *err)
{
    mreq_t *m = watch->data;
    if (err == NULL) {
        h2o_buffer_consume(&watch->input, watch->input->size);
        return;
    }
    h2o_socket_close(watch);
    m->watch = NULL;
    uncount(m);
    send_json(m->req, 200,
              json_pack("{s:s, s:n, s:{s:i, s:s}}", "jsonrpc", "2.0", "id", "error", "code", -32000, "message",
                        "mock hang: the client left"));
}

static void on_latency(h2o_timeout_entry_t *entry)
{
    respond(H2O_STRUCT_FROM_MEMBER(mreq_t, timer, entry));
}

/* --- the capacity model ------------------------------------------------------------------------ */

static int capacity_model_on(void)
{
    return opt.capacity != 0 || opt.service_time_ms != 0 || opt.nmethod_time != 0;
}

/* The service time of a request: its (first call's) method's from --method-time, else
 * --service-time. */
static uint64_t service_time_of(json_t *body)
{
    json_t *call = json_is_array(body) ? json_array_get(body, 0) : body;
    const char *method = json_is_object(call) ? json_string_value(json_object_get(call, "method")) : NULL;
    if (method != NULL)
        for (size_t i = 0; i != opt.nmethod_time; ++i)
            if (strcmp(opt.method_time[i].method, method) == 0)
                return opt.method_time[i].ms;
    return opt.service_time_ms;
}

/* A worker is done: it is free before the answer goes (respond may end the request at once). */
static void on_service_done(h2o_timeout_entry_t *entry)
{
    mreq_t *m = H2O_STRUCT_FROM_MEMBER(mreq_t, timer, entry);
    m->in_service = 0;
    st.busy--;
    cap_dispatch();
    respond(m);
}

static void cap_start(mreq_t *m)
{
    m->in_service = 1;
    if (++st.busy > st.peak_busy)
        st.peak_busy = st.busy;
    m->timer.cb = on_service_done;
    h2o_timeout_link(ctx.loop, timeout_of(m->hold_ms), &m->timer);
}

/* Free workers take the oldest waiting requests. */
static void cap_dispatch(void)
{
    while (!h2o_linklist_is_empty(&cap_queue) && (opt.capacity == 0 || st.busy < opt.capacity)) {
        mreq_t *m = H2O_STRUCT_FROM_MEMBER(mreq_t, qlink, cap_queue.next);
        h2o_linklist_unlink(&m->qlink);
        st.queued--;
        cap_start(m);
    }
}

static void cap_admit(mreq_t *m)
{
    if (opt.capacity == 0 || (st.busy < opt.capacity && h2o_linklist_is_empty(&cap_queue))) {
        cap_start(m);
        return;
    }
    h2o_linklist_insert(&cap_queue, &m->qlink);
    if (++st.queued > st.peak_queued)
        st.peak_queued = st.queued;
}

void capacity_changed(void)
{
    cap_dispatch();
}

void capacity_state(uint64_t *busy, uint64_t *queued)
{
    *busy = st.busy;
    *queued = st.queued;
}

int parse_method_time(const char *s, mopt_t *o)
{
    const char *eq = strrchr(s, '=');
    if (eq == NULL || eq == s || eq[1] < '0' || eq[1] > '9')
        return -1;
    char *end;
    errno = 0;
    unsigned long long ms = strtoull(eq + 1, &end, 10);
    if (*end != '\0' || errno != 0)
        return -1;
    size_t n = (size_t)(eq - s), i;
    for (i = 0; i != o->nmethod_time; ++i)
        if (strlen(o->method_time[i].method) == n && memcmp(o->method_time[i].method, s, n) == 0)
            break;
    if (i == o->nmethod_time) {
        if (i == MOCK_MAX_METHOD_TIMES)
            return -1;
        if ((o->method_time[i].method = strndup(s, n)) == NULL)
            return -1;
        o->nmethod_time++;
    }
    o->method_time[i].ms = ms;
    return 0;
}

static int on_req(h2o_handler_t *self, h2o_req_t *req)
{
    h2o_socket_t *sock = sock_of(req);
    mconn_t *mc = sock->on_close.data;
    if (mc != NULL && mc->control)
        return on_control(req);
    if (req->upgrade.base != NULL && mock_ws_on_req(req))
        return 0;
    if (h2o_memis(req->path_normalized.base, req->path_normalized.len, H2O_STRLIT("/stats"))) {
        json_t *doc =
            json_pack("{s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I}", "requests", (json_int_t)st.requests, "concurrent",
                      (json_int_t)st.concurrent, "peak_concurrent", (json_int_t)st.peak_concurrent, "connections",
                      (json_int_t)st.connections, "peak_connections", (json_int_t)st.peak_connections, "connections_total",
                      (json_int_t)st.connections_total, "faults", (json_int_t)st.faults, "errors", (json_int_t)ctl_errors);
        /* the capacity model and the answers' latencies: [[ms, count], ...] for the buckets in use */
        json_t *hist = json_array();
        for (size_t i = 0; i != LAT_BUCKETS; ++i)
            if (lat_hist[i] != 0)
                json_array_append_new(hist, json_pack("[I, I]", (json_int_t)i, (json_int_t)lat_hist[i]));
        json_object_update_new(doc, json_pack("{s:I, s:I, s:I, s:I, s:I, s:I, s:o}", "capacity", (json_int_t)opt.capacity,
                                              "answered", (json_int_t)st.answered, "busy", (json_int_t)st.busy, "queued",
                                              (json_int_t)st.queued, "peak_busy", (json_int_t)st.peak_busy, "peak_queued",
                                              (json_int_t)st.peak_queued, "latency_ms", hist));
        json_object_update_new(doc,
                               json_pack("{s:s, s:I, s:I, s:i, s:s}", "ws_last_upgrade", mock_ws_last_upgrade, "ws_open",
                                         (json_int_t)mock_ws_open, "ws_subscriptions", (json_int_t)mock_ws_subscriptions,
                                         "ws_last_close", mock_ws_last_close, "ws_last_close_reason", mock_ws_last_close_reason));
        send_json(req, 200, doc);
        return 0;
    }
    if (h2o_memis(req->path_normalized.base, req->path_normalized.len, H2O_STRLIT("/reset-stats"))) {
        st.requests = st.faults = st.connections_total = st.answered = 0;
        ctl_errors = 0;
        memset(lat_hist, 0, sizeof(lat_hist));
        st.peak_busy = st.busy;
        st.peak_queued = st.queued;
        st.peak_concurrent = st.concurrent;
        st.peak_connections = st.connections;
        send_json(req, 200, json_pack("{s:b}", "ok", 1));
        return 0;
    }
    st.requests++;
    json_t *body = json_loadb(req->entity.base, req->entity.len, 0, NULL);
    count_request(body);
    if (mc != NULL) {
        mc->requests++;
        if (!mc->counted) {
            mc->counted = 1;
            st.connections_total++;
            if (++st.connections > st.peak_connections)
                st.peak_connections = st.connections;
        }
    }
    int fault_applies = 1;
    if (opt.fault_method != NULL) {
        /* a batch or an object calling the method (a plain search: the mock's requests are simple) */
        char quoted[256];
        int ql = snprintf(quoted, sizeof(quoted), "\"%s\"", opt.fault_method);
        fault_applies = ql > 0 && (size_t)ql < sizeof(quoted) && req->entity.base != NULL &&
                        memmem(req->entity.base, req->entity.len, quoted, (size_t)ql) != NULL;
    }
    if (fault_applies && (opt.fault == FAULT_RESET || opt.fault == FAULT_GARBAGE || opt.fault == FAULT_HANG)) {
        if (rnd() < opt.fault_rate) {
            st.faults++;
            json_decref(body);
            int fd = h2o_socket_get_fd(sock);
            if (opt.fault == FAULT_HANG) {
                /* never answered, but in flight until the client gives up: counted in concurrent;
                 * a watch on a dup of the fd sees the client leave (on_hang_peer uncounts) */
                mreq_t *m = h2o_mem_alloc_shared(&req->pool, sizeof(*m), on_dispose);
                memset(m, 0, sizeof(*m));
                m->req = req;
                m->counted = 1;
                if (++st.concurrent > st.peak_concurrent)
                    st.peak_concurrent = st.concurrent;
                int wfd = dup(fd);
                if (wfd >= 0) {
                    fcntl(wfd, F_SETFL, O_NONBLOCK);
                    m->watch = h2o_evloop_socket_create(ctx.loop, wfd, 0);
                    m->watch->data = m;
                    h2o_socket_read_start(m->watch, on_hang_peer);
                }
                return 0;
            }
            if (opt.fault == FAULT_GARBAGE) {
                static const char junk[] = "\x16\x03\x01 this is not HTTP at all \r\n\r\n";
                ssize_t r = write(fd, junk, sizeof(junk) - 1);
                (void)r;
            } else {
                struct linger lg = {1, 0}; /* close sends RST */
                setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
            }
            shutdown(fd, SHUT_RDWR);
            mreq_t *m = h2o_mem_alloc_shared(&req->pool, sizeof(*m), on_dispose);
            memset(m, 0, sizeof(*m));
            return 0; /* h2o sees the shutdown and closes the connection */
        }
    }
    mreq_t *m = h2o_mem_alloc_shared(&req->pool, sizeof(*m), on_dispose);
    memset(m, 0, sizeof(*m));
    m->req = req;
    m->body = body;
    m->counted = 1;
    m->arrived_ms = now_ms();
    if (++st.concurrent > st.peak_concurrent)
        st.peak_concurrent = st.concurrent;
    uint64_t delay = opt.latency_ms + (opt.jitter_ms ? (uint64_t)(rnd() * (double)(opt.jitter_ms + 1)) : 0);
    if (capacity_model_on()) {
        m->hold_ms = service_time_of(body) + delay;
        cap_admit(m);
        return 0;
    }
    if (delay == 0) {
        respond(m);
        return 0;
    }
    m->timer.cb = on_latency;
    h2o_timeout_link(ctx.loop, timeout_of(delay), &m->timer);
    return 0;
}

static void on_conn_close(void *data)
{
    mconn_t *mc = data;
    if (mc->counted)
        st.connections--;
    if (h2o_linklist_is_linked(&mc->link))
        h2o_linklist_unlink(&mc->link);
    free(mc);
}

/* listener->data is the accept context: the relay's or the control's */
static void on_accept(h2o_socket_t *listener, const char *err)
{
    if (err != NULL)
        return;
    h2o_accept_ctx_t *actx = listener->data;
    h2o_socket_t *sock = h2o_evloop_socket_accept(listener);
    if (sock == NULL)
        return;
    mconn_t *mc = calloc(1, sizeof(*mc));
    if (mc == NULL) {
        h2o_socket_close(sock);
        return;
    }
    mc->sock = sock;
    mc->control = actx == &control_accept_ctx;
    if (!mc->control)
        h2o_linklist_insert(&relay_conns, &mc->link);
    sock->on_close.cb = on_conn_close;
    sock->on_close.data = mc;
    h2o_accept(actx, sock);
}

/* Opens a listening socket on host:port for actx; NULL with *err (static or strerror) on failure. */
static h2o_socket_t *open_listener(uint16_t port, h2o_accept_ctx_t *actx, const char **err)
{
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(port)};
    if (inet_pton(AF_INET, opt.host, &sa.sin_addr) != 1) {
        *err = "--host: not an IPv4 address";
        return NULL;
    }
    int fd = socket(AF_INET, SOCK_STREAM, 0), on = 1;
    if (fd < 0) {
        *err = strerror(errno);
        return NULL;
    }
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof(on));
    if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0 || listen(fd, SOMAXCONN) != 0) {
        *err = strerror(errno);
        close(fd);
        return NULL;
    }
    fcntl(fd, F_SETFL, O_NONBLOCK);
    h2o_socket_t *ls = h2o_evloop_socket_create(ctx.loop, fd, H2O_SOCKET_FLAG_DONT_READ);
    ls->data = actx;
    h2o_socket_read_start(ls, on_accept);
    return ls;
}

/* Refusing: closes the relay listener (connects get ECONNREFUSED) and resets every relay
 * connection, as a process that died would (pooled connections must not keep working). */
void refuse_relay(void)
{
    if (relay_listener != NULL) {
        h2o_socket_close(relay_listener);
        relay_listener = NULL;
    }
    for (h2o_linklist_t *l = relay_conns.next; l != &relay_conns; l = l->next) {
        mconn_t *mc = H2O_STRUCT_FROM_MEMBER(mconn_t, link, l);
        int fd = h2o_socket_get_fd(mc->sock);
        struct linger lg = {1, 0}; /* the close that follows sends RST */
        setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
        shutdown(fd, SHUT_RDWR); /* h2o sees it and closes the connection */
    }
}

/* Accepting again on the same port; -1 with *err when it cannot listen. */
int reopen_relay(const char **err)
{
    if (relay_listener == NULL && (relay_listener = open_listener(opt.port, &accept_ctx, err)) == NULL)
        return -1;
    return 0;
}

static uint64_t parse_u64(const char *s, const char *name)
{
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (*s == '\0' || *end != '\0' || errno != 0) {
        fprintf(stderr, "pathway-mock-upstream: %s: expected a number, got \"%s\"\n", name, s);
        exit(2);
    }
    return v;
}

/* a block number: decimal or 0x hex */
static uint64_t parse_block(const char *s, const char *name)
{
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 0);
    if (*s < '0' || *s > '9' || *end != '\0' || errno != 0) {
        fprintf(stderr, "pathway-mock-upstream: %s: expected a block number (decimal or 0x hex), got \"%s\"\n", name, s);
        exit(2);
    }
    return v;
}

static uint16_t parse_port(const char *s, const char *name)
{
    uint64_t v = parse_u64(s, name);
    if (v == 0 || v > 65535) {
        fprintf(stderr, "pathway-mock-upstream: %s: expected a TCP port (1-65535), got \"%s\"\n", name, s);
        exit(2);
    }
    return (uint16_t)v;
}

static double parse_rate(const char *s, const char *name)
{
    char *end;
    double v = strtod(s, &end);
    if (*s == '\0' || *end != '\0' || v < 0 || v > 1) {
        fprintf(stderr, "pathway-mock-upstream: %s: expected a fraction between 0 and 1, got \"%s\"\n", name, s);
        exit(2);
    }
    return v;
}

static void usage(FILE *fp)
{
    fprintf(fp, "usage: pathway-mock-upstream [options]\n"
                "  --host ADDR            listen address (127.0.0.1)\n"
                "  --port N               listen port (8545)\n"
                "  --latency MS           delay before each answer\n"
                "  --jitter MS            plus a random 0..MS\n"
                "  --error-rate F         fraction answered with a JSON-RPC error\n"
                "  --response-size N      single calls get a result of N hex digits (streamed)\n"
                "  --chunked              answer with chunked encoding instead of content-length\n"
                "  --fault KIND           reset | hang | garbage | slow-body | close-after=N | refuse | none\n"
                "  --fault-rate F         fraction of requests that get the fault (1)\n"
                "  --fault-method NAME    reset | hang | garbage only for requests calling NAME\n"
                "  --error-code N         JSON-RPC code of --error-rate's errors (-32000)\n"
                "  --status N             HTTP status of JSON-RPC answers (200)\n"
                "  --status-rate F        fraction of answers that get --status, the others 200 (1)\n"
                "  --start-block N        the chain head at start (0x1000000; decimal or 0x hex)\n"
                "  --block-time MS        the head advances by one every MS ms (0: it stays)\n"
                "  --lag N                eth_blockNumber answers the head minus N (not below 0)\n"
                "  --refuse               start refusing connections (same as --fault refuse)\n"
                "  --control-port N       a control listener on the same host (plain HTTP)\n"
                "  --capacity K           K parallel workers: requests beyond K wait in a FIFO inside the mock (0: no bound)\n"
                "  --service-time MS      how long a request holds a worker (latency and jitter add to it)\n"
                "  --method-time NAME=MS  the service time of requests calling NAME (repeatable)\n"
                "  --tls-cert PEM --tls-key PEM   serve https (HTTP/1.1) with this certificate\n"
                "  --ws-refuse STATUS     answer WebSocket upgrades with this HTTP status (0: accept them)\n"
                "  --version              print the version and exit\n"
                "GET /stats: requests, concurrent (hung requests too, until their client leaves), peak_concurrent,\n"
                "connections, peak_connections, ... (connections\n"
                "that carried only /stats calls are not counted)\n"
                "POST /reset-stats: peaks start again from the current values\n"
                "WebSocket: any request with Upgrade: websocket; eth_subscribe [\"newHeads\"] pushes a head every --block-time,\n"
                "eth_unsubscribe, mock_close [code, reason], mock_flood [count, bytes], other calls as over HTTP\n"
                "control listener: POST /control {\"fault\":..., \"fault_rate\":F, \"latency_ms\":N, \"jitter_ms\":N,\n"
                "\"lag\":N, \"error_rate\":F, \"error_code\":N, \"status\":N, \"status_rate\":F, \"block_time_ms\":N,\n"
                "\"fault_method\":NAME|null, \"capacity\":K, \"service_time_ms\":N} changes them; GET /control: the settings, "
                "head, requests, by_method;\n"
                "POST /control/reset-counters zeroes requests and by_method\n");
}

int main(int argc, char **argv)
{
    static const struct option longopts[] = {{"host", required_argument, NULL, 'H'},
                                             {"port", required_argument, NULL, 'p'},
                                             {"latency", required_argument, NULL, 'l'},
                                             {"jitter", required_argument, NULL, 'j'},
                                             {"error-rate", required_argument, NULL, 'e'},
                                             {"response-size", required_argument, NULL, 's'},
                                             {"chunked", no_argument, NULL, 'c'},
                                             {"fault", required_argument, NULL, 'f'},
                                             {"fault-rate", required_argument, NULL, 'r'},
                                             {"help", no_argument, NULL, 'h'},
                                             {"version", no_argument, NULL, 'V'},
                                             {"tls-cert", required_argument, NULL, 'C'},
                                             {"tls-key", required_argument, NULL, 'K'},
                                             {"fault-method", required_argument, NULL, 'M'},
                                             {"error-code", required_argument, NULL, 'E'},
                                             {"status", required_argument, NULL, 'S'},
                                             {"status-rate", required_argument, NULL, 'R'},
                                             {"start-block", required_argument, NULL, 'B'},
                                             {"block-time", required_argument, NULL, 'T'},
                                             {"lag", required_argument, NULL, 'L'},
                                             {"refuse", no_argument, NULL, 'X'},
                                             {"control-port", required_argument, NULL, 'P'},
                                             {"capacity", required_argument, NULL, 'k'},
                                             {"service-time", required_argument, NULL, 't'},
                                             {"method-time", required_argument, NULL, 'm'},
                                             {"ws-refuse", required_argument, NULL, 'W'},
                                             {NULL, 0, NULL, 0}};
    int o;
    while ((o = getopt_long(argc, argv, "p:h", longopts, NULL)) != -1) {
        switch (o) {
        case 'H':
            opt.host = optarg;
            break;
        case 'p':
            opt.port = parse_port(optarg, "--port");
            break;
        case 'l':
            opt.latency_ms = parse_u64(optarg, "--latency");
            break;
        case 'j':
            opt.jitter_ms = parse_u64(optarg, "--jitter");
            break;
        case 'e':
            opt.error_rate = parse_rate(optarg, "--error-rate");
            break;
        case 's':
            opt.response_size = parse_u64(optarg, "--response-size");
            break;
        case 'c':
            opt.chunked = 1;
            break;
        case 'r':
            opt.fault_rate = parse_rate(optarg, "--fault-rate");
            break;
        case 'f':
            if (parse_fault(optarg, &opt) != 0) {
                fprintf(stderr, "pathway-mock-upstream: --fault: unknown kind \"%s\"\n", optarg);
                return 2;
            }
            break;
        case 'X':
            opt.fault = FAULT_REFUSE;
            break;
        case 'R':
            opt.status_rate = parse_rate(optarg, "--status-rate");
            break;
        case 'B':
            opt.start_block = parse_block(optarg, "--start-block");
            break;
        case 'T':
            opt.block_time_ms = parse_u64(optarg, "--block-time");
            break;
        case 'L':
            opt.lag = parse_block(optarg, "--lag");
            break;
        case 'P':
            opt.control_port = parse_port(optarg, "--control-port");
            break;
        case 'M':
            opt.fault_method = optarg;
            break;
        case 'W': {
            uint64_t v = parse_u64(optarg, "--ws-refuse");
            if (v != 0 && (v < 200 || v > 599)) {
                fprintf(stderr, "pathway-mock-upstream: --ws-refuse: an HTTP status 200-599 or 0, got \"%s\"\n", optarg);
                return 2;
            }
            opt.ws_refuse_status = (int)v;
            break;
        }
        case 'k': {
            uint64_t k = parse_u64(optarg, "--capacity");
            if (k > UINT32_MAX) {
                fprintf(stderr, "pathway-mock-upstream: --capacity: at most %u, got \"%s\"\n", UINT32_MAX, optarg);
                return 2;
            }
            opt.capacity = (uint32_t)k;
            break;
        }
        case 't':
            opt.service_time_ms = parse_u64(optarg, "--service-time");
            break;
        case 'm':
            if (parse_method_time(optarg, &opt) != 0) {
                fprintf(stderr, "pathway-mock-upstream: --method-time: expected NAME=MS (at most %d names), got \"%s\"\n",
                        MOCK_MAX_METHOD_TIMES, optarg);
                return 2;
            }
            break;
        case 'E': {
            char *end = NULL;
            long v = strtol(optarg, &end, 10);
            if (end == optarg || *end != '\0' || v < INT32_MIN || v > INT32_MAX) {
                fprintf(stderr, "pathway-mock-upstream: --error-code: not an integer: \"%s\"\n", optarg);
                return 2;
            }
            opt.error_code = (int)v;
            break;
        }
        case 'S':
            opt.status = (int)parse_u64(optarg, "--status");
            if (opt.status < 100 || opt.status > 599) {
                fprintf(stderr, "pathway-mock-upstream: --status: not an HTTP status: \"%s\"\n", optarg);
                return 2;
            }
            break;
        case 'C':
            opt.tls_cert = optarg;
            break;
        case 'K':
            opt.tls_key = optarg;
            break;
        case 'h':
            usage(stdout);
            return 0;
        case 'V':
            printf("pathway-mock-upstream %s\n", PW_VERSION);
            return 0;
        default:
            usage(stderr);
            return 2;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "pathway-mock-upstream: unexpected argument \"%s\"\n", argv[optind]);
        usage(stderr);
        return 2;
    }
    if (opt.control_port != 0 && opt.control_port == opt.port) {
        fprintf(stderr, "pathway-mock-upstream: --control-port: must differ from --port (%u)\n", opt.port);
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);
    srandom((unsigned)getpid());
    memset(filler, 'a', sizeof(filler));
    chain_start(opt.start_block);
    ctl.by_method = json_object();
    h2o_linklist_init_anchor(&relay_conns);
    h2o_linklist_init_anchor(&cap_queue);

    h2o_config_init(&config);
    config.server_name = h2o_iovec_init(H2O_STRLIT("mock"));
    h2o_hostconf_t *host = h2o_config_register_host(&config, h2o_iovec_init(H2O_STRLIT("default")), 65535);
    h2o_pathconf_t *path = h2o_config_register_path(host, "/", 0);
    h2o_handler_t *handler = h2o_create_handler(path, sizeof(*handler));
    handler->on_req = on_req;

    h2o_evloop_t *loop = h2o_evloop_create();
    h2o_context_init(&ctx, loop, &config);
    accept_ctx.ctx = &ctx;
    accept_ctx.hosts = config.hosts;
    if (opt.tls_cert != NULL || opt.tls_key != NULL) {
        SSL_CTX *ssl = SSL_CTX_new(TLS_server_method());
        if (opt.tls_cert == NULL || opt.tls_key == NULL || SSL_CTX_use_certificate_chain_file(ssl, opt.tls_cert) != 1 ||
            SSL_CTX_use_PrivateKey_file(ssl, opt.tls_key, SSL_FILETYPE_PEM) != 1) {
            fprintf(stderr, "pathway-mock-upstream: --tls-cert and --tls-key: cannot load both\n");
            return 2;
        }
        accept_ctx.ssl_ctx = ssl;
    }

    control_accept_ctx.ctx = &ctx;
    control_accept_ctx.hosts = config.hosts;

    struct in_addr probe;
    if (inet_pton(AF_INET, opt.host, &probe) != 1) {
        fprintf(stderr, "pathway-mock-upstream: --host: not an IPv4 address: %s\n", opt.host);
        return 2;
    }
    const char *err;
    /* the port is bound even with --refuse, so that a port already taken is an error now */
    if ((relay_listener = open_listener(opt.port, &accept_ctx, &err)) == NULL) {
        fprintf(stderr, "pathway-mock-upstream: %s:%u: %s\n", opt.host, opt.port, err);
        return 1;
    }
    if (opt.control_port != 0 && open_listener(opt.control_port, &control_accept_ctx, &err) == NULL) {
        fprintf(stderr, "pathway-mock-upstream: --control-port: %s:%u: %s\n", opt.host, opt.control_port, err);
        return 1;
    }
    if (opt.fault == FAULT_REFUSE)
        refuse_relay();
    fprintf(stderr, "pathway-mock-upstream: %s on %s:%u\n", opt.fault == FAULT_REFUSE ? "refusing" : "listening", opt.host,
            opt.port);
    if (opt.control_port != 0)
        fprintf(stderr, "pathway-mock-upstream: control on %s:%u\n", opt.host, opt.control_port);
    for (;;)
        h2o_evloop_run(loop, INT32_MAX);
}
