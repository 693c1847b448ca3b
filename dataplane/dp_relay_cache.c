/*
 * dp_relay_cache: the relay's part in the response cache. Before a relay is admitted, its request
 * is read (dp_cachekey), classified and keyed, and looked up in the process's store (dp_cache): a
 * hit is answered at once (by dp_relay.c), a miss goes upstream leading a flight that identical
 * requests may follow, or follows one already in flight. As the leader's answer streams to its client
 * it is kept (up to cache.max_entry); once complete it is stored when it may be (a result, not null,
 * not an error) for the time its finality allows, and handed to the followers.
 *
 * Finality: a numbered block at or below the service's head (the highest head the active health
 * checks saw) minus finality_depth is final; above it, or with no head known, it is not.
 */
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include "dp_classify.h"
#include "dp_relay_internal.h"

const char *const dp_cres_names[4] = {"hit", "miss", "coalesced", "bypass"};

static void count(dp_worker_t *w, dp_service_t *svc, dp_cres_t res)
{
    DP_OWNER_ADD(svc->shared->stats[w->index].cache[res], 1);
}

static const cfg_cache_method_t *find_override(const cfg_cache_t *cc, dp_span_t method)
{
    for (size_t i = 0; i != cc->methods.size; ++i) {
        const cfg_cache_method_t *m = cc->methods.entries + i;
        if (strlen(m->method) == method.len && memcmp(m->method, method.base, method.len) == 0)
            return m;
    }
    return NULL;
}

static void on_flight_done(dp_flight_waiter_t *fw)
{
    /* under the store's lock, on the thread that ended the flight: hand over to our own thread */
    dp_rcache_t *rc = H2O_STRUCT_FROM_MEMBER(dp_rcache_t, fw, fw);
    dp_worker_t *w = rc->w;
    pthread_mutex_lock(&w->granted_mutex);
    h2o_linklist_insert(&w->flown, &rc->flown_link);
    pthread_mutex_unlock(&w->granted_mutex);
    dp_worker_kick(w);
}

static int is_blank(char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

/* The request's cache key in req->pool; NULL when its params cannot be keyed. */
static char *make_key(h2o_req_t *req, const dp_service_t *svc, const dp_ck_req_t *ck, size_t *keylen)
{
    size_t cap = svc->idlen + ck->method.len + ck->params.len + 8;
    char *key = h2o_mem_alloc_pool(&req->pool, cap);
    size_t n = dp_ck_key(svc->id, svc->idlen, ck, key, cap);
    if (n > cap) {
        cap = n;
        key = h2o_mem_alloc_pool(&req->pool, cap);
        n = dp_ck_key(svc->id, svc->idlen, ck, key, cap);
    }
    if (n == 0 || n > cap)
        return NULL;
    *keylen = n;
    return key;
}

/* --- batches ----------------------------------------------------------------------------------- */

/* Batches of more items than this are relayed as they are (one look-up each is cheap, but the
 * reassembly matches ids pairwise). */
#define DP_CACHE_BATCH_MAX 256

typedef struct st_spans_t {
    dp_span_t v[DP_CACHE_BATCH_MAX];
    size_t n;
} spans_t;

static int collect_span(void *ctx, size_t index, dp_span_t elem)
{
    spans_t *sp = ctx;
    (void)index;
    if (sp->n == DP_CACHE_BATCH_MAX)
        return 1;
    sp->v[sp->n++] = elem;
    return 0;
}

static int same_span(dp_span_t a, dp_span_t b)
{
    return a.len == b.len && memcmp(a.base, b.base, a.len) == 0;
}

static dp_rcache_t *batch_begin(dp_worker_t *w, h2o_req_t *req, dp_service_t *svc, uint64_t now, dp_cache_lookup_t *res)
{
    const cfg_cache_t *cc = &svc->cfg->cache;
    if (!cc->enabled)
        goto Bypass; /* identical batches are not coalesced: only the cache reads them */
    spans_t *sp = h2o_mem_alloc_pool(&req->pool, sizeof(*sp));
    sp->n = 0;
    long n = dp_ck_array(req->entity.base, req->entity.len, collect_span, sp);
    if (n <= 0)
        goto Bypass; /* empty, too many items, or not JSON: the upstream answers it as it is */
    dp_rcitem_t *items = h2o_mem_alloc_pool(&req->pool, sizeof(*items) * (size_t)n);
    memset(items, 0, sizeof(*items) * (size_t)n);
    for (long i = 0; i != n; ++i) {
        dp_rcitem_t *it = items + i;
        if (dp_ck_parse(sp->v[i].base, sp->v[i].len, &it->req) != DP_CK_OK) {
            it->req.item = sp->v[i];
            it->req.id = (dp_span_t){NULL, 0};
            continue;
        }
        it->req.item = sp->v[i];
        if (it->req.id.base == NULL)
            continue;
        for (long j = 0; j != i; ++j)
            if (items[j].req.id.base != NULL && same_span(items[j].req.id, it->req.id))
                goto Bypass; /* two items with one id: their answers could not be told apart */
        it->ov = cc->methods.size != 0 ? find_override(cc, it->req.method) : NULL;
        dp_ck_classify(&it->req, it->ov);
        if (it->req.cls != CFG_CACHE_NEVER)
            it->key = make_key(req, svc, &it->req, &it->keylen);
    }
    dp_rcache_t *rc = h2o_mem_alloc_pool(&req->pool, sizeof(*rc));
    memset(rc, 0, sizeof(*rc));
    rc->w = w;
    rc->svc = svc;
    rc->items = items;
    rc->nitems = (size_t)n;
    rc->batch = 1;
    rc->store = 1;
    for (size_t i = 0; i != rc->nitems; ++i) {
        dp_rcitem_t *it = items + i;
        if (it->key == NULL) {
            count(w, svc, DP_CRES_BYPASS);
            continue;
        }
        dp_cache_entry_t *e = NULL;
        if (dp_cache_lookup(w->server->cache, it->key, it->keylen, now, NULL, 0, &e, NULL) == DP_CACHE_HIT) {
            it->hit = e;
            rc->nhits++;
            count(w, svc, DP_CRES_HIT);
        } else {
            count(w, svc, DP_CRES_MISS);
        }
    }
    if (rc->nhits == rc->nitems) {
        rc->result = DP_CRES_HIT;
        *res = DP_CACHE_HIT;
        return rc;
    }
    rc->result = DP_CRES_MISS;
    *res = DP_CACHE_MISS;
    if (rc->nhits != 0) {
        /* only the missing items go upstream, as a smaller batch */
        size_t len = 2;
        for (size_t i = 0; i != rc->nitems; ++i)
            if (items[i].hit == NULL)
                len += items[i].req.item.len + 1;
        char *sub = h2o_mem_alloc_pool(&req->pool, len), *p = sub;
        *p++ = '[';
        for (size_t i = 0; i != rc->nitems; ++i) {
            if (items[i].hit != NULL)
                continue;
            if (p != sub + 1)
                *p++ = ',';
            memcpy(p, items[i].req.item.base, items[i].req.item.len);
            p += items[i].req.item.len;
        }
        *p++ = ']';
        req->entity = h2o_iovec_init(sub, (size_t)(p - sub));
        rc->partial = 1;
    }
    return rc;

Bypass:
    count(w, svc, DP_CRES_BYPASS);
    return NULL;
}

static void release_items(void *p)
{
    dp_rcache_t *rc = *(dp_rcache_t **)p;
    for (size_t i = 0; i != rc->nitems; ++i)
        if (rc->items[i].hit != NULL) {
            dp_cache_entry_release(rc->items[i].hit);
            rc->items[i].hit = NULL;
        }
}

size_t dp_relay_cache_splice(const dp_cache_entry_t *e, const dp_ck_req_t *ck, h2o_iovec_t *v)
{
    /* the spans to replace, in the order they come in the stored body */
    struct {
        size_t off, len;
        dp_span_t with;
    } rp[2];
    size_t nrp = 0;
    rp[nrp].off = e->id_off, rp[nrp].len = e->id_len, rp[nrp].with = ck->id, nrp++;
    if (e->jsonrpc_len != 0 && ck->jsonrpc.len != 0) {
        rp[nrp].off = e->jsonrpc_off, rp[nrp].len = e->jsonrpc_len, rp[nrp].with = ck->jsonrpc;
        if (rp[1].off < rp[0].off) {
            rp[1] = rp[0];
            rp[0].off = e->jsonrpc_off, rp[0].len = e->jsonrpc_len, rp[0].with = ck->jsonrpc;
        }
        nrp++;
    }
    size_t nv = 0, pos = 0;
    for (size_t i = 0; i != nrp; ++i) {
        if (rp[i].off > pos)
            v[nv++] = h2o_iovec_init(e->body + pos, rp[i].off - pos);
        v[nv++] = h2o_iovec_init(rp[i].with.base, rp[i].with.len);
        pos = rp[i].off + rp[i].len;
    }
    if (pos < e->len)
        v[nv++] = h2o_iovec_init(e->body + pos, e->len - pos);
    return nv;
}

h2o_iovec_t *dp_relay_cache_batch_answer(h2o_req_t *req, dp_rcache_t *rc, size_t *nv, size_t *total)
{
    dp_rcache_t **holder = h2o_mem_alloc_shared(&req->pool, sizeof(*holder), release_items);
    *holder = rc;
    h2o_iovec_t *v = h2o_mem_alloc_pool(&req->pool, sizeof(*v) * (rc->nitems * 6 + 2));
    size_t n = 0;
    v[n++] = h2o_iovec_init(H2O_STRLIT("["));
    for (size_t i = 0; i != rc->nitems; ++i) {
        if (i != 0)
            v[n++] = h2o_iovec_init(H2O_STRLIT(","));
        n += dp_relay_cache_splice(rc->items[i].hit, &rc->items[i].req, v + n);
    }
    v[n++] = h2o_iovec_init(H2O_STRLIT("]"));
    size_t t = 0;
    for (size_t i = 0; i != n; ++i)
        t += v[i].len;
    *nv = n;
    *total = t;
    return v;
}

dp_rcache_t *dp_relay_cache_begin(dp_worker_t *w, h2o_req_t *req, dp_service_t *svc, uint64_t now, dp_cache_lookup_t *res,
                                  dp_cache_entry_t **hit)
{
    const cfg_cache_t *cc = &svc->cfg->cache;
    size_t i = 0;
    while (i != req->entity.len && is_blank(req->entity.base[i]))
        ++i;
    if (i != req->entity.len && req->entity.base[i] == '[')
        return batch_begin(w, req, svc, now, res);
    dp_ck_req_t ck;
    if (dp_ck_parse(req->entity.base, req->entity.len, &ck) != DP_CK_OK || ck.id.base == NULL)
        goto Bypass; /* not one JSON-RPC request, or a notification (which gets no answer to share) */
    const cfg_cache_method_t *ov = cc->methods.size != 0 ? find_override(cc, ck.method) : NULL;
    dp_ck_classify(&ck, ov);
    if (ck.cls == CFG_CACHE_NEVER)
        goto Bypass;
    size_t keylen;
    char *key = make_key(req, svc, &ck, &keylen);
    if (key == NULL)
        goto Bypass;

    dp_rcache_t *rc = h2o_mem_alloc_pool(&req->pool, sizeof(*rc));
    memset(rc, 0, sizeof(*rc));
    rc->w = w;
    rc->svc = svc;
    rc->req = ck;
    rc->ov = ov;
    rc->key = key;
    rc->keylen = keylen;
    rc->store = cc->enabled;
    rc->fw.on_done = on_flight_done;
    dp_flight_t *flight = NULL;
    *res = dp_cache_lookup(w->server->cache, key, keylen, now, cc->coalesce_on ? &rc->fw : NULL, cc->max_followers, hit, &flight);
    switch (*res) {
    case DP_CACHE_HIT:
        if (!cc->enabled) {
            /* stored while the service cached, which it no longer does */
            dp_cache_entry_release(*hit);
            *hit = NULL;
            *res = DP_CACHE_MISS;
            rc->result = DP_CRES_MISS;
            break;
        }
        rc->result = DP_CRES_HIT;
        break;
    case DP_CACHE_LEADER:
        rc->flight = flight;
        rc->result = DP_CRES_MISS;
        break;
    case DP_CACHE_FOLLOWER:
        rc->following = 1;
        rc->result = DP_CRES_COALESCED; /* counted when its flight tells it */
        return rc;
    case DP_CACHE_MISS:
        rc->result = DP_CRES_MISS;
        break;
    }
    count(w, svc, rc->result);
    return rc;

Bypass:
    count(w, svc, DP_CRES_BYPASS);
    return NULL;
}

void dp_relay_cache_add_header(dp_relay_t *r)
{
    h2o_req_t *req = r->req;
    const char *v = r->cache == NULL ? "bypass" : r->cache->partial ? "partial" : dp_cres_names[r->cache->result];
    h2o_add_header_by_str(&req->pool, &req->res.headers, H2O_STRLIT("x-pathway-cache"), 0, NULL, v, strlen(v));
}

/* --- the leader's answer ---------------------------------------------------------------------- */

static int tee(dp_rcache_t *rc, const char *p, size_t n, uint64_t max)
{
    if (rc->tee_over)
        return -1;
    if (rc->tee_len + n > max) {
        rc->tee_over = 1;
        free(rc->tee);
        rc->tee = NULL;
        rc->tee_len = rc->tee_cap = 0;
        return -1;
    }
    if (rc->tee_len + n > rc->tee_cap) {
        size_t cap = rc->tee_cap != 0 ? rc->tee_cap : 4096;
        while (cap < rc->tee_len + n)
            cap *= 2;
        if (cap > max)
            cap = max;
        char *t = realloc(rc->tee, cap);
        if (t == NULL) {
            rc->tee_over = 1;
            free(rc->tee);
            rc->tee = NULL;
            rc->tee_len = rc->tee_cap = 0;
            return -1;
        }
        rc->tee = t;
        rc->tee_cap = cap;
    }
    memcpy(rc->tee + rc->tee_len, p, n);
    rc->tee_len += n;
    return 0;
}

static int block_is_final(const dp_service_t *svc, uint64_t block)
{
    uint64_t head = atomic_load_explicit(&svc->shared->health.head, memory_order_relaxed);
    uint64_t depth = svc->cfg->cache.finality_depth;
    return head != 0 && head >= depth && block <= head - depth;
}

/* How long an answer lives: the method's own ttl when the operator set one, else its finality's. */
static uint64_t answer_ttl(const dp_service_t *svc, const dp_ck_req_t *ck, const cfg_cache_method_t *ov, const dp_ck_answer_t *ans)
{
    const cfg_cache_t *cc = &svc->cfg->cache;
    if (ov != NULL && (ov->_set & CFG_CACHE_METHOD_HAS_TTL) != 0)
        return ov->ttl_ms;
    switch (ck->cls) {
    case CFG_CACHE_STATIC:
        return cc->ttl.final_ms;
    case CFG_CACHE_BY_BLOCK:
        if (ck->has_block)
            return block_is_final(svc, ck->block) ? cc->ttl.final_ms : cc->ttl.unfinal_ms;
        return cc->ttl.realtime_ms;
    case CFG_CACHE_BY_HASH:
        return ans->has_block && block_is_final(svc, ans->block) ? cc->ttl.final_ms : cc->ttl.unfinal_ms;
    default:
        return cc->ttl.realtime_ms;
    }
}

static uint64_t expiry(const dp_worker_t *w, uint64_t ttl)
{
    return ttl != 0 ? h2o_now(w->loop) + ttl : 0;
}

/* --- a batch's answer --------------------------------------------------------------------------- */

typedef struct st_answers_t {
    dp_span_t *elems; /* the upstream's answers, in its order */
    int *matched;     /* elems[i] was given to an item */
    size_t n, cap;
    dp_span_t *elem_of; /* [nitems]: the answer of each item of the client's (base NULL: none) */
} answers_t;

static int collect_answer(void *ctx, size_t index, dp_span_t elem)
{
    answers_t *as = ctx;
    (void)index;
    if (as->n == as->cap)
        return 1;
    as->elems[as->n++] = elem;
    return 0;
}

/* Reads a batch's answer from upstream: each item that went upstream gets the answer with its id, and
 * a cacheable result is stored (as->elem_of). Returns -1
 * when the answer is not an array this can read. */
static int batch_match(dp_rcache_t *rc, const char *body, size_t len, answers_t *as)
{
    if (dp_ck_array(body, len, collect_answer, as) < 0)
        return -1;
    dp_cache_t *c = rc->w->server->cache;
    for (size_t i = 0; i != as->n; ++i) {
        dp_ck_answer_t ans;
        dp_ck_answer(as->elems[i].base, as->elems[i].len, &ans);
        if (ans.kind == DP_CK_ANSWER_INVALID)
            continue;
        for (size_t k = 0; k != rc->nitems; ++k) {
            dp_rcitem_t *it = rc->items + k;
            if (it->hit != NULL || it->answered || it->req.id.base == NULL || !same_span(it->req.id, ans.id))
                continue;
            it->answered = 1;
            as->matched[i] = 1;
            as->elem_of[k] = as->elems[i];
            if (it->key != NULL && ans.kind == DP_CK_ANSWER_RESULT && rc->store &&
                as->elems[i].len <= rc->w->wgen->gen->cfg->cache.max_entry) {
                dp_cache_entry_t *e = dp_cache_entry_new(it->key, it->keylen, as->elems[i].base, as->elems[i].len, &ans,
                                                         expiry(rc->w, answer_ttl(rc->svc, &it->req, it->ov, &ans)));
                if (e != NULL) {
                    dp_cache_put(c, e);
                    dp_cache_entry_release(e);
                }
            }
            break;
        }
    }
    return 0;
}

static void answers_init(h2o_req_t *req, const dp_rcache_t *rc, answers_t *as)
{
    as->n = 0;
    as->cap = rc->nitems * 2 + 8; /* an upstream adding answers of its own is not followed further */
    as->elems = h2o_mem_alloc_pool(&req->pool, sizeof(*as->elems) * as->cap);
    as->matched = h2o_mem_alloc_pool(&req->pool, sizeof(*as->matched) * as->cap);
    memset(as->matched, 0, sizeof(*as->matched) * as->cap);
    as->elem_of = h2o_mem_alloc_pool(&req->pool, sizeof(*as->elem_of) * rc->nitems);
    memset(as->elem_of, 0, sizeof(*as->elem_of) * rc->nitems);
}

/* The client's answer to a partial batch: the cached items and the upstream's, in the client's order,
 * then any upstream answer no item claimed. In req->pool. */
static h2o_iovec_t batch_reassemble(h2o_req_t *req, dp_rcache_t *rc, const char *body, size_t len)
{
    answers_t as;
    answers_init(req, rc, &as);
    if (batch_match(rc, body, len, &as) != 0)
        return h2o_iovec_init(body, len); /* not a batch answer (an error for the whole request): as it is */
    h2o_iovec_t v[5];
    size_t total = 2 + rc->nitems + as.n;
    for (size_t k = 0; k != rc->nitems; ++k) {
        if (rc->items[k].hit != NULL) {
            size_t nv = dp_relay_cache_splice(rc->items[k].hit, &rc->items[k].req, v);
            for (size_t j = 0; j != nv; ++j)
                total += v[j].len;
        } else {
            total += as.elem_of[k].len;
        }
    }
    for (size_t i = 0; i != as.n; ++i)
        if (!as.matched[i])
            total += as.elems[i].len;
    char *out = h2o_mem_alloc_pool(&req->pool, total), *p = out;
    *p++ = '[';
#define PUT(b, l)                                                                                                                  \
    do {                                                                                                                           \
        if ((l) != 0) {                                                                                                            \
            if (p != out + 1)                                                                                                      \
                *p++ = ',';                                                                                                        \
            memcpy(p, (b), (l));                                                                                                   \
            p += (l);                                                                                                              \
        }                                                                                                                          \
    } while (0)
    for (size_t k = 0; k != rc->nitems; ++k) {
        if (rc->items[k].hit != NULL) {
            size_t nv = dp_relay_cache_splice(rc->items[k].hit, &rc->items[k].req, v);
            if (p != out + 1)
                *p++ = ',';
            for (size_t j = 0; j != nv; ++j) {
                memcpy(p, v[j].base, v[j].len);
                p += v[j].len;
            }
        } else {
            PUT(as.elem_of[k].base, as.elem_of[k].len); /* a notification has no answer */
        }
    }
    for (size_t i = 0; i != as.n; ++i)
        if (!as.matched[i])
            PUT(as.elems[i].base, as.elems[i].len);
#undef PUT
    *p++ = ']';
    return h2o_iovec_init(out, (size_t)(p - out));
}

static void on_collect_timer(h2o_timeout_entry_t *entry)
{
    dp_rcache_t *rc = H2O_STRUCT_FROM_MEMBER(dp_rcache_t, collect_timer, entry);
    dp_relay_t *r = rc->r;
    /* what on_generator_proceed does after a send: the bytes are taken, read on */
    r->client_sending = 0;
    dp_attempt_consume(r->attempt, r->sending);
    r->sending = 0;
    dp_attempt_resume(r->attempt);
    dp_relay_pump(r); /* may free r: nothing after it */
}

int dp_relay_cache_collect(dp_relay_t *r, h2o_iovec_t *out)
{
    dp_rcache_t *rc = r->cache;
    dp_attempt_t *a = r->attempt;
    size_t n = a->buf != NULL ? a->buf->len : 0;
    const char *p = a->buf != NULL ? a->buf->data : NULL;
    uint64_t max = r->wg->gen->cfg->limits.max_response_body;
    if (!a->complete) {
        if (n != 0 && tee(rc, p, n, max) != 0)
            return -1;
        r->sending = n;
        r->client_sending = 1;
        rc->collect_timer.cb = on_collect_timer;
        h2o_timeout_link(r->w->loop, dp_worker_timeout(r->w, 0), &rc->collect_timer);
        return 0;
    }
    if (rc->tee_len == 0) {
        /* the whole answer is in the attempt's buffer (a held answer) */
    } else {
        if (n != 0 && tee(rc, p, n, max) != 0)
            return -1;
        p = rc->tee;
        n = rc->tee_len;
    }
    *out = a->status == 200 ? batch_reassemble(r->req, rc, p, n) : h2o_iovec_init(p, n);
    return 1;
}

static void end_flight(dp_rcache_t *rc, void (*how)(dp_cache_t *, dp_flight_t *))
{
    if (rc->flight == NULL)
        return;
    how(rc->w->server->cache, rc->flight);
    rc->flight = NULL;
}

static void fail_flight(dp_rcache_t *rc, dp_error_t e)
{
    if (rc->flight == NULL)
        return;
    dp_flight_fail(rc->w->server->cache, rc->flight, (int)e);
    rc->flight = NULL;
}

/* The leader's whole answer: stored when it may be, shared with the followers when it can be. */
static void answer_complete(dp_relay_t *r, const dp_attempt_t *a, const char *body, size_t len)
{
    dp_rcache_t *rc = r->cache;
    dp_cache_t *c = r->w->server->cache;
    if (a->status != 200) {
        fail_flight(rc, DP_ERR_COALESCED_FAILED);
        return;
    }
    dp_ck_answer_t ans;
    dp_ck_answer(body, len, &ans);
    int store = rc->store;
    switch (ans.kind) {
    case DP_CK_ANSWER_INVALID:
        end_flight(rc, dp_flight_release); /* nothing to put the followers' ids in: each goes alone */
        return;
    case DP_CK_ANSWER_ERROR: {
        const cfg_service_t *cs = r->svc->cfg;
        dp_class_t cls = dp_classify(200, body, len, cs->rpc_errors.entries, cs->rpc_errors.size).cls;
        if (cls == DP_CLASS_RATE_LIMITED || cls == DP_CLASS_MISSING_DATA || cls == DP_CLASS_SERVER_ERROR) {
            fail_flight(rc, DP_ERR_COALESCED_FAILED); /* a failure of the upstream: one follower tries again */
            return;
        }
        store = 0; /* the request's own fault (a revert): the followers get it too, nobody later */
        break;
    }
    case DP_CK_ANSWER_NULL:
        store = 0; /* not there yet (a receipt not mined): asked again next time */
        break;
    case DP_CK_ANSWER_RESULT:
        break;
    }
    if (!store && rc->flight == NULL)
        return;
    dp_cache_entry_t *e =
        dp_cache_entry_new(rc->key, rc->keylen, body, len, &ans, expiry(r->w, answer_ttl(rc->svc, &rc->req, rc->ov, &ans)));
    if (e == NULL) {
        end_flight(rc, dp_flight_release);
        return;
    }
    if (store)
        dp_cache_put(c, e);
    if (rc->flight != NULL) {
        dp_flight_answer(c, rc->flight, e);
        rc->flight = NULL;
    }
    dp_cache_entry_release(e);
}

/* A batch none of whose items was cached: its answer streams to the client as it is; once whole, the
 * items' results are stored. */
static void batch_store(dp_relay_t *r, const dp_attempt_t *a, const char *body, size_t len)
{
    if (a->status != 200)
        return;
    dp_rcache_t *rc = r->cache;
    answers_t as;
    answers_init(r->req, rc, &as);
    batch_match(rc, body, len, &as);
}

void dp_relay_cache_data(dp_relay_t *r, const dp_attempt_t *a, const char *p, size_t n, int final)
{
    dp_rcache_t *rc = r->cache;
    if (rc == NULL || rc->partial || (!rc->store && rc->flight == NULL))
        return;
    const cfg_t *cfg = r->wg->gen->cfg;
    uint64_t max = cfg->cache.max_entry;
    if (rc->batch) {
        max = rc->nitems > cfg->limits.max_response_body / (max ? max : 1) ? cfg->limits.max_response_body : max * rc->nitems;
    }
    void (*done)(dp_relay_t *, const dp_attempt_t *, const char *, size_t) = rc->batch ? batch_store : answer_complete;
    if (!final) {
        if (n != 0 && tee(rc, p, n, max) != 0)
            end_flight(rc, dp_flight_release);
        return;
    }
    if (rc->tee_len == 0 && !rc->tee_over && a->received == n) {
        if (n > max) {
            end_flight(rc, dp_flight_release);
            return;
        }
        done(r, a, p, n); /* the whole answer is in this send: no copy */
        return;
    }
    if (n != 0 && tee(rc, p, n, max) != 0) {
        end_flight(rc, dp_flight_release);
        return;
    }
    if (rc->tee_over)
        return;
    done(r, a, rc->tee, rc->tee_len);
}

/* --- ends -------------------------------------------------------------------------------------- */

void dp_relay_cache_stop(dp_relay_t *r, dp_error_t e)
{
    dp_rcache_t *rc = r->cache;
    if (rc == NULL)
        return;
    fail_flight(rc, e);
    if (!rc->following)
        return;
    rc->following = 0;
    dp_cache_t *c = r->w->server->cache;
    if (!dp_flight_leave(c, &rc->fw))
        return;
    /* told already: take the outcome back from the worker's list and give back what it holds */
    pthread_mutex_lock(&rc->w->granted_mutex);
    if (h2o_linklist_is_linked(&rc->flown_link))
        h2o_linklist_unlink(&rc->flown_link);
    pthread_mutex_unlock(&rc->w->granted_mutex);
    switch (rc->fw.outcome) {
    case DP_FLIGHT_ANSWERED:
        dp_cache_entry_release(rc->fw.entry);
        rc->fw.entry = NULL;
        break;
    case DP_FLIGHT_LEAD:
        dp_flight_fail(c, rc->fw.flight, (int)e); /* the next follower leads */
        rc->fw.flight = NULL;
        break;
    default:
        break;
    }
}

void dp_relay_cache_dispose(dp_relay_t *r)
{
    dp_rcache_t *rc = r->cache;
    if (rc == NULL)
        return;
    dp_relay_cache_stop(r, DP_ERR_CLIENT_CLOSED);
    if (rc->entry != NULL) {
        dp_cache_entry_release(rc->entry);
        rc->entry = NULL;
    }
    if (h2o_timeout_is_linked(&rc->collect_timer))
        h2o_timeout_unlink(&rc->collect_timer);
    for (size_t i = 0; i != rc->nitems; ++i)
        if (rc->items[i].hit != NULL) {
            dp_cache_entry_release(rc->items[i].hit);
            rc->items[i].hit = NULL;
        }
    free(rc->tee);
    rc->tee = NULL;
}

void dp_relay_cache_housekeeping(dp_worker_t *w)
{
    for (;;) {
        pthread_mutex_lock(&w->granted_mutex);
        dp_rcache_t *rc = NULL;
        if (!h2o_linklist_is_empty(&w->flown)) {
            rc = H2O_STRUCT_FROM_MEMBER(dp_rcache_t, flown_link, w->flown.next);
            h2o_linklist_unlink(&rc->flown_link);
        }
        pthread_mutex_unlock(&w->granted_mutex);
        if (rc == NULL)
            break;
        rc->following = 0;
        switch (rc->fw.outcome) {
        case DP_FLIGHT_ANSWERED:
            rc->entry = rc->fw.entry;
            rc->fw.entry = NULL;
            rc->result = DP_CRES_COALESCED;
            break;
        case DP_FLIGHT_LEAD:
            rc->flight = rc->fw.flight;
            rc->fw.flight = NULL;
            rc->result = DP_CRES_MISS;
            break;
        default:
            rc->result = DP_CRES_MISS;
            break;
        }
        count(w, rc->svc, rc->result);
        dp_relay_on_flight(rc->r);
    }
}
