/*
 * dp_cache: the process-wide answer store and its flights (dp_cache.h).
 *
 * One mutex guards everything: the entry table (chained buckets, a power of two, doubled when the
 * entries outnumber them), the LRU list (most recent first; eviction takes the tail) and the flight
 * table (the same shape, its own buckets). A hit does a hash, a probe, a list move and an atomic
 * increment under the lock, and allocates nothing.
 *
 * Memory: an entry is one allocation (struct, key, body); its charge is malloc_usable_size of it, so
 * the budget counts what the allocator really hands out. An entry of DP_CACHE_MAP_MIN bytes or more
 * is mapped on its own (charged its pages) and unmapped when it goes: the allocator's arenas, one per
 * worker thread, keep freed memory for their own thread's later use, so large answers freed by
 * eviction on one thread and allocated on another would make the process's memory grow past the
 * budget; pages given back to the system do not. Entries leave the table under the lock but
 * are released after it is dropped (a local list through _chain), so a large eviction frees outside
 * the lock. An entry out of the table lives until its last reference goes.
 *
 * The hash is ours: 16 bytes at a time through a 64x64->128 multiply folded to 64 bits, seeded at
 * create from getrandom (so a client cannot choose keys that share a bucket), finished with
 * murmur3's avalanche. The length is mixed in first, so the tail can be read with overlapping loads
 * (no byte loop, no copy).
 */
#include "dp_cache.h"
#include <malloc.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#define DP_CACHE_MIN_BUCKETS 64
#define DP_CACHE_MAP_MIN (32 * 1024)

struct st_dp_flight_t {
    uint64_t hash;                   /* hash_key of key */
    struct st_dp_flight_t *chain;    /* next in its bucket */
    dp_flight_waiter_t *head, *tail; /* followers, FIFO (the first one leads when the leader fails) */
    uint32_t nwaiters;               /* followers waiting now (bounded by lookup's max_followers) */
    int handed;                      /* the leader failed once and a follower took over */
    size_t keylen;                   /* of key */
    char key[];                      /* the key, copied (the leader's buffer may go first) */
};

struct st_dp_cache_t {
    pthread_mutex_t mu;            /* guards all below but seed (set at create, read unlocked by hash_key) */
    uint64_t seed[2];              /* hash seeds, random per store */
    dp_cache_entry_t **buckets;    /* entries by hash & (nbuckets - 1) */
    size_t nbuckets;               /* a power of two */
    dp_cache_entry_t *lru_head;    /* most recently used */
    dp_cache_entry_t *lru_tail;    /* the next to evict */
    dp_flight_t **fbuckets;        /* flights by hash & (nfbuckets - 1) */
    size_t nfbuckets;              /* a power of two */
    uint64_t max_bytes, max_entry; /* dp_cache_set_limits; 0 until then: nothing is stored */
    dp_cache_stats_t st;           /* bytes, entries, flights and the counters (max_* copied on read) */
};

/* ---- hash ---- */

static inline uint64_t load64(const char *p)
{
    uint64_t v;
    memcpy(&v, p, 8);
    return v;
}

static inline uint64_t fold_mul(uint64_t a, uint64_t b)
{
    unsigned __int128 r = (unsigned __int128)a * b;
    return (uint64_t)r ^ (uint64_t)(r >> 64);
}

static inline uint64_t avalanche(uint64_t h)
{
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdULL;
    h ^= h >> 33;
    h *= 0xc4ceb9fe1a85ec53ULL;
    h ^= h >> 33;
    return h;
}

static inline uint64_t load32(const char *p)
{
    uint32_t v;
    memcpy(&v, p, 4);
    return v;
}

static uint64_t hash_key(const dp_cache_t *c, const char *p, size_t n)
{
    const uint64_t k = 0xd6e8feb86659fd93ULL;
    uint64_t h = c->seed[0] ^ fold_mul((uint64_t)n ^ 0x9e3779b97f4a7c15ULL, c->seed[1] | 1), a, b;
    if (n > 16) {
        const char *end = p + n;
        for (; end - p > 16; p += 16)
            h = fold_mul(load64(p) ^ c->seed[0] ^ h, load64(p + 8) ^ c->seed[1] ^ k) ^ h;
        /* the last 16 bytes, overlapping the block before: the length, mixed in first, tells them apart */
        a = load64(end - 16);
        b = load64(end - 8);
    } else if (n >= 8) {
        a = load64(p);
        b = load64(p + n - 8);
    } else if (n >= 4) {
        a = load32(p);
        b = load32(p + n - 4);
    } else if (n > 0) {
        a = (uint64_t)(unsigned char)p[0] << 16 | (uint64_t)(unsigned char)p[n / 2] << 8 | (unsigned char)p[n - 1];
        b = 0;
    } else {
        a = b = 0;
    }
    h = fold_mul(a ^ c->seed[0] ^ h, b ^ c->seed[1] ^ k) ^ h;
    return avalanche(h);
}

static void seed_store(dp_cache_t *c)
{
    if (getrandom(c->seed, sizeof(c->seed), GRND_NONBLOCK) == (ssize_t)sizeof(c->seed))
        return;
    /* no entropy yet (early boot): still different per process and per run */
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    c->seed[0] = avalanche((uint64_t)ts.tv_nsec ^ ((uint64_t)ts.tv_sec << 32) ^ (uint64_t)(uintptr_t)c);
    c->seed[1] = avalanche(c->seed[0] ^ (uint64_t)(uintptr_t)&ts);
}

/* ---- entries ---- */

/* The span's offset in body, when it lies inside it; else an absent span (0, 0). */
static void span_off(const char *body, size_t len, dp_span_t s, size_t *off, size_t *slen)
{
    *off = 0;
    *slen = 0;
    if (s.base == NULL || s.base < body || s.len > len || (size_t)(s.base - body) > len - s.len)
        return;
    *off = (size_t)(s.base - body);
    *slen = s.len;
}

dp_cache_entry_t *dp_cache_entry_new(const char *key, size_t keylen, const char *body, size_t len, const dp_ck_answer_t *ans,
                                     uint64_t expires_at)
{
    /* struct, key and '\0', body and '\0' */
    if (keylen > SIZE_MAX / 2 - sizeof(dp_cache_entry_t) || len > SIZE_MAX / 2 - 2)
        return NULL;
    size_t size = sizeof(dp_cache_entry_t) + keylen + 1 + len + 1, charge = 0;
    dp_cache_entry_t *e;
    if (size >= DP_CACHE_MAP_MIN) {
        size_t page = (size_t)sysconf(_SC_PAGESIZE);
        charge = (size + page - 1) / page * page;
        void *m = mmap(NULL, charge, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        e = m != MAP_FAILED ? m : NULL;
    } else {
        e = malloc(size);
    }
    if (e == NULL)
        return NULL;
    char *k = (char *)(e + 1), *b = k + keylen + 1;
    memcpy(k, key, keylen);
    k[keylen] = '\0';
    memcpy(b, body, len);
    b[len] = '\0';
    e->key = k;
    e->keylen = keylen;
    e->body = b;
    e->len = len;
    e->id_off = e->id_len = e->jsonrpc_off = e->jsonrpc_len = 0;
    if (ans != NULL) {
        span_off(body, len, ans->id, &e->id_off, &e->id_len);
        span_off(body, len, ans->jsonrpc, &e->jsonrpc_off, &e->jsonrpc_len);
    }
    e->expires_at = expires_at;
    e->_mapped = charge != 0;
    e->charge = charge != 0 ? charge : malloc_usable_size(e);
    atomic_init(&e->_refcnt, 1);
    e->_hash = 0;
    e->_chain = e->_lru_prev = e->_lru_next = NULL;
    e->_stored = 0;
    return e;
}

void dp_cache_entry_ref(dp_cache_entry_t *e)
{
    atomic_fetch_add_explicit(&e->_refcnt, 1, memory_order_relaxed);
}

void dp_cache_entry_release(dp_cache_entry_t *e)
{
    /* acq_rel rather than release and a fence: the same instruction on x86, and ThreadSanitizer
     * follows it (it does not follow a lone fence) */
    if (atomic_fetch_sub_explicit(&e->_refcnt, 1, memory_order_acq_rel) == 1) {
        if (e->_mapped)
            munmap(e, e->charge);
        else
            free(e);
    }
}

/* Releases the table's references of a list of removed entries (linked through _chain), after the
 * lock is dropped. */
static void release_list(dp_cache_entry_t *dead)
{
    while (dead != NULL) {
        dp_cache_entry_t *next = dead->_chain;
        dp_cache_entry_release(dead);
        dead = next;
    }
}

static void lru_unlink(dp_cache_t *c, dp_cache_entry_t *e)
{
    if (e->_lru_prev != NULL)
        e->_lru_prev->_lru_next = e->_lru_next;
    else
        c->lru_head = e->_lru_next;
    if (e->_lru_next != NULL)
        e->_lru_next->_lru_prev = e->_lru_prev;
    else
        c->lru_tail = e->_lru_prev;
    e->_lru_prev = e->_lru_next = NULL;
}

static void lru_push_front(dp_cache_t *c, dp_cache_entry_t *e)
{
    e->_lru_prev = NULL;
    e->_lru_next = c->lru_head;
    if (c->lru_head != NULL)
        c->lru_head->_lru_prev = e;
    else
        c->lru_tail = e;
    c->lru_head = e;
}

/* The slot that points at the stored entry for key (or the bucket's last NULL slot). */
static dp_cache_entry_t **find_slot_locked(dp_cache_t *c, uint64_t hash, const char *key, size_t keylen)
{
    dp_cache_entry_t **slot = &c->buckets[hash & (c->nbuckets - 1)];
    for (; *slot != NULL; slot = &(*slot)->_chain) {
        dp_cache_entry_t *e = *slot;
        if (e->_hash == hash && e->keylen == keylen && memcmp(e->key, key, keylen) == 0)
            break;
    }
    return slot;
}

/* Takes the entry at *slot out of the table and the LRU list and pushes it on *dead (its table
 * reference is released by release_list after the lock). */
static void remove_at_locked(dp_cache_t *c, dp_cache_entry_t **slot, dp_cache_entry_t **dead)
{
    dp_cache_entry_t *e = *slot;
    *slot = e->_chain;
    lru_unlink(c, e);
    e->_stored = 0;
    c->st.bytes -= e->charge;
    c->st.entries--;
    e->_chain = *dead;
    *dead = e;
}

static void remove_locked(dp_cache_t *c, dp_cache_entry_t *e, dp_cache_entry_t **dead)
{
    dp_cache_entry_t **slot = &c->buckets[e->_hash & (c->nbuckets - 1)];
    while (*slot != e)
        slot = &(*slot)->_chain;
    remove_at_locked(c, slot, dead);
}

/* Evicts from the LRU tail until `room` more bytes fit within max_bytes. */
static void evict_locked(dp_cache_t *c, uint64_t room, dp_cache_entry_t **dead)
{
    while (c->lru_tail != NULL && (room > c->max_bytes || c->st.bytes > c->max_bytes - room)) {
        remove_locked(c, c->lru_tail, dead);
        c->st.evictions++;
    }
}

/* Doubles the buckets; on allocation failure the chains just stay longer. */
static void grow_locked(dp_cache_t *c)
{
    size_t n = c->nbuckets * 2;
    dp_cache_entry_t **nb = calloc(n, sizeof(*nb));
    if (nb == NULL)
        return;
    for (size_t i = 0; i < c->nbuckets; i++) {
        for (dp_cache_entry_t *e = c->buckets[i], *next; e != NULL; e = next) {
            next = e->_chain;
            dp_cache_entry_t **slot = &nb[e->_hash & (n - 1)];
            e->_chain = *slot;
            *slot = e;
        }
    }
    free(c->buckets);
    c->buckets = nb;
    c->nbuckets = n;
}

/* ---- the store ---- */

dp_cache_t *dp_cache_create(void)
{
    dp_cache_t *c = calloc(1, sizeof(*c));
    if (c == NULL)
        return NULL;
    c->nbuckets = c->nfbuckets = DP_CACHE_MIN_BUCKETS;
    c->buckets = calloc(c->nbuckets, sizeof(*c->buckets));
    c->fbuckets = calloc(c->nfbuckets, sizeof(*c->fbuckets));
    if (c->buckets == NULL || c->fbuckets == NULL || pthread_mutex_init(&c->mu, NULL) != 0) {
        free(c->buckets);
        free(c->fbuckets);
        free(c);
        return NULL;
    }
    seed_store(c);
    return c;
}

void dp_cache_destroy(dp_cache_t *c)
{
    if (c == NULL)
        return;
    dp_cache_entry_t *dead = NULL;
    while (c->lru_head != NULL)
        remove_locked(c, c->lru_head, &dead);
    release_list(dead);
    /* Flights still running are the caller's bug; their waiters are cut loose, never called. */
    for (size_t i = 0; i < c->nfbuckets; i++) {
        for (dp_flight_t *f = c->fbuckets[i], *next; f != NULL; f = next) {
            next = f->chain;
            for (dp_flight_waiter_t *w = f->head; w != NULL; w = w->_next)
                w->_in = NULL;
            free(f);
        }
    }
    pthread_mutex_destroy(&c->mu);
    free(c->buckets);
    free(c->fbuckets);
    free(c);
}

void dp_cache_set_limits(dp_cache_t *c, uint64_t max_bytes, uint64_t max_entry)
{
    dp_cache_entry_t *dead = NULL;
    pthread_mutex_lock(&c->mu);
    c->max_bytes = max_bytes;
    c->max_entry = max_entry;
    evict_locked(c, 0, &dead);
    pthread_mutex_unlock(&c->mu);
    release_list(dead);
}

int dp_cache_put(dp_cache_t *c, dp_cache_entry_t *e)
{
    dp_cache_entry_t *dead = NULL;
    int ret = -1;
    uint64_t hash = hash_key(c, e->key, e->keylen);
    pthread_mutex_lock(&c->mu);
    /* max_entry bounds the answer (what an operator sees of it), max_bytes the whole charge. A refused
     * answer leaves the store as it was: an older answer under the key is still good for its ttl. */
    if (e->len > c->max_entry || e->charge > c->max_bytes)
        goto out;
    dp_cache_entry_t **slot = find_slot_locked(c, hash, e->key, e->keylen);
    if (*slot == e) { /* already stored: just used */
        lru_unlink(c, e);
        lru_push_front(c, e);
        ret = 0;
        goto out;
    }
    if (*slot != NULL)
        remove_at_locked(c, slot, &dead);
    evict_locked(c, e->charge, &dead);
    dp_cache_entry_ref(e);
    e->_hash = hash;
    e->_stored = 1;
    slot = &c->buckets[hash & (c->nbuckets - 1)];
    e->_chain = *slot;
    *slot = e;
    lru_push_front(c, e);
    c->st.bytes += e->charge;
    c->st.entries++;
    if (c->st.entries > c->nbuckets)
        grow_locked(c);
    ret = 0;
out:
    pthread_mutex_unlock(&c->mu);
    release_list(dead);
    return ret;
}

/* ---- flights ---- */

static dp_flight_t *flight_find_locked(dp_cache_t *c, uint64_t hash, const char *key, size_t keylen)
{
    for (dp_flight_t *f = c->fbuckets[hash & (c->nfbuckets - 1)]; f != NULL; f = f->chain)
        if (f->hash == hash && f->keylen == keylen && memcmp(f->key, key, keylen) == 0)
            return f;
    return NULL;
}

static void flight_grow_locked(dp_cache_t *c)
{
    size_t n = c->nfbuckets * 2;
    dp_flight_t **nb = calloc(n, sizeof(*nb));
    if (nb == NULL)
        return;
    for (size_t i = 0; i < c->nfbuckets; i++) {
        for (dp_flight_t *f = c->fbuckets[i], *next; f != NULL; f = next) {
            next = f->chain;
            dp_flight_t **slot = &nb[f->hash & (n - 1)];
            f->chain = *slot;
            *slot = f;
        }
    }
    free(c->fbuckets);
    c->fbuckets = nb;
    c->nfbuckets = n;
}

static dp_flight_t *flight_start_locked(dp_cache_t *c, uint64_t hash, const char *key, size_t keylen)
{
    if (keylen > SIZE_MAX - sizeof(dp_flight_t))
        return NULL;
    dp_flight_t *f = malloc(sizeof(*f) + keylen);
    if (f == NULL)
        return NULL;
    f->hash = hash;
    f->head = f->tail = NULL;
    f->nwaiters = 0;
    f->handed = 0;
    f->keylen = keylen;
    memcpy(f->key, key, keylen);
    dp_flight_t **slot = &c->fbuckets[hash & (c->nfbuckets - 1)];
    f->chain = *slot;
    *slot = f;
    c->st.flights++;
    if (c->st.flights > c->nfbuckets)
        flight_grow_locked(c);
    return f;
}

/* Unregisters and frees a flight (its waiters are gone or told). */
static void flight_end_locked(dp_cache_t *c, dp_flight_t *f)
{
    dp_flight_t **slot = &c->fbuckets[f->hash & (c->nfbuckets - 1)];
    while (*slot != f)
        slot = &(*slot)->chain;
    *slot = f->chain;
    c->st.flights--;
    free(f);
}

static dp_flight_waiter_t *waiter_pop_locked(dp_flight_t *f)
{
    dp_flight_waiter_t *w = f->head;
    if (w == NULL)
        return NULL;
    f->head = w->_next;
    if (f->head != NULL)
        f->head->_prev = NULL;
    else
        f->tail = NULL;
    f->nwaiters--;
    w->_prev = w->_next = NULL;
    w->_in = NULL;
    return w;
}

/* Tells every follower left `outcome` (with a reference of e each when ANSWERED), then ends f. */
static void flight_finish_locked(dp_cache_t *c, dp_flight_t *f, dp_flight_outcome_t outcome, dp_cache_entry_t *e, int err)
{
    dp_flight_waiter_t *w;
    while ((w = waiter_pop_locked(f)) != NULL) {
        w->outcome = outcome;
        w->entry = NULL;
        w->flight = NULL;
        w->err = err;
        if (outcome == DP_FLIGHT_ANSWERED) {
            dp_cache_entry_ref(e);
            w->entry = e;
        }
        /* w is not touched after this: its thread may take it over at once */
        w->on_done(w);
    }
    flight_end_locked(c, f);
}

dp_cache_lookup_t dp_cache_lookup(dp_cache_t *c, const char *key, size_t keylen, uint64_t now_ms, dp_flight_waiter_t *w,
                                  uint32_t max_followers, dp_cache_entry_t **entry, dp_flight_t **flight)
{
    dp_cache_entry_t *dead = NULL;
    dp_cache_lookup_t ret = DP_CACHE_MISS;
    uint64_t hash = hash_key(c, key, keylen);
    pthread_mutex_lock(&c->mu);
    dp_cache_entry_t **slot = find_slot_locked(c, hash, key, keylen);
    dp_cache_entry_t *e = *slot;
    if (e != NULL) {
        if (e->expires_at == 0 || now_ms < e->expires_at) {
            if (c->lru_head != e) {
                lru_unlink(c, e);
                lru_push_front(c, e);
            }
            dp_cache_entry_ref(e);
            pthread_mutex_unlock(&c->mu);
            *entry = e;
            return DP_CACHE_HIT;
        }
        remove_at_locked(c, slot, &dead);
        c->st.expired++;
    }
    if (w != NULL) {
        dp_flight_t *f = flight_find_locked(c, hash, key, keylen);
        if (f == NULL) {
            if ((f = flight_start_locked(c, hash, key, keylen)) != NULL) {
                *flight = f;
                ret = DP_CACHE_LEADER;
            }
        } else if (f->nwaiters < max_followers) {
            w->outcome = DP_FLIGHT_WAITING;
            w->entry = NULL;
            w->flight = NULL;
            w->err = 0;
            w->_in = f;
            w->_next = NULL;
            w->_prev = f->tail;
            if (f->tail != NULL)
                f->tail->_next = w;
            else
                f->head = w;
            f->tail = w;
            f->nwaiters++;
            ret = DP_CACHE_FOLLOWER;
        }
    }
    pthread_mutex_unlock(&c->mu);
    release_list(dead);
    return ret;
}

/* e NULL (no answer to share after all) is dp_flight_release. */
void dp_flight_answer(dp_cache_t *c, dp_flight_t *f, dp_cache_entry_t *e)
{
    pthread_mutex_lock(&c->mu);
    if (e != NULL)
        flight_finish_locked(c, f, DP_FLIGHT_ANSWERED, e, 0);
    else
        flight_finish_locked(c, f, DP_FLIGHT_ALONE, NULL, 0);
    pthread_mutex_unlock(&c->mu);
}

void dp_flight_release(dp_cache_t *c, dp_flight_t *f)
{
    pthread_mutex_lock(&c->mu);
    flight_finish_locked(c, f, DP_FLIGHT_ALONE, NULL, 0);
    pthread_mutex_unlock(&c->mu);
}

void dp_flight_fail(dp_cache_t *c, dp_flight_t *f, int err)
{
    pthread_mutex_lock(&c->mu);
    dp_flight_waiter_t *w;
    if (!f->handed && (w = waiter_pop_locked(f)) != NULL) {
        /* one retry, by the longest waiting follower; the flight stays registered under its key */
        f->handed = 1;
        w->outcome = DP_FLIGHT_LEAD;
        w->entry = NULL;
        w->flight = f;
        w->err = err;
        w->on_done(w);
    } else {
        flight_finish_locked(c, f, DP_FLIGHT_FAILED, NULL, err);
    }
    pthread_mutex_unlock(&c->mu);
}

int dp_flight_leave(dp_cache_t *c, dp_flight_waiter_t *w)
{
    int told = 1;
    pthread_mutex_lock(&c->mu);
    dp_flight_t *f = w->_in;
    if (f != NULL) {
        if (w->_prev != NULL)
            w->_prev->_next = w->_next;
        else
            f->head = w->_next;
        if (w->_next != NULL)
            w->_next->_prev = w->_prev;
        else
            f->tail = w->_prev;
        f->nwaiters--;
        w->_prev = w->_next = NULL;
        w->_in = NULL;
        told = 0;
    }
    pthread_mutex_unlock(&c->mu);
    return told;
}

/* ---- purge, stats ---- */

size_t dp_cache_purge(dp_cache_t *c, const char *svc, size_t svclen)
{
    dp_cache_entry_t *dead = NULL;
    size_t n = 0;
    pthread_mutex_lock(&c->mu);
    for (dp_cache_entry_t *e = c->lru_head, *next; e != NULL; e = next) {
        next = e->_lru_next;
        /* the service id is the key's prefix up to its first '\0': "eth" must not take "eth2"'s */
        if (svc != NULL && !(e->keylen > svclen && e->key[svclen] == '\0' && memcmp(e->key, svc, svclen) == 0))
            continue;
        remove_locked(c, e, &dead);
        n++;
    }
    c->st.purged += n;
    pthread_mutex_unlock(&c->mu);
    release_list(dead);
    return n;
}

void dp_cache_stats(dp_cache_t *c, dp_cache_stats_t *out)
{
    pthread_mutex_lock(&c->mu);
    *out = c->st;
    out->max_bytes = c->max_bytes;
    out->max_entry = c->max_entry;
    pthread_mutex_unlock(&c->mu);
}
