/*
 * dp_cache: the response cache's store and its flights, one per process, shared by every worker.
 *
 * Store: entries keyed by dp_ck_key's bytes (service, method, canonical params), each an upstream's
 * answer with the spans of its id and jsonrpc (which a hit replaces with the client's). One budget
 * (max_bytes) counts every entry's whole memory (the allocation's usable size); an entry that would
 * pass it evicts the least recently used ones first, so the store never holds more than max_bytes.
 * Entries expire (expires_at, the loop clock in ms; 0 = never) and are dropped when met expired.
 * Entries are immutable and reference counted: a hit holds one while its answer is written.
 *
 * Flights (coalescing): while a request for a key is in flight (its leader), identical requests
 * (followers) wait for its answer instead of going upstream; at most max_followers per flight.
 * The leader's answer reaches every follower; a leader that failed hands the flight to one follower,
 * which tries again; when that one fails too, every follower left gets the failure. Followers hear
 * through on_done, which runs on the thread that ended the flight, under the store's lock: it may
 * only hand the waiter over to its own thread (a list and a wake-up), never send.
 *
 * One mutex guards the table, the LRU list and the flights; the work under it is a hash probe and
 * a few pointer moves. Lock order: this lock, then whatever on_done takes.
 */
#ifndef PATHWAY_DP_CACHE_H
#define PATHWAY_DP_CACHE_H

#include <stddef.h>
#include <stdint.h>
#include "dp_cachekey.h"

typedef struct st_dp_cache_t dp_cache_t;
typedef struct st_dp_flight_t dp_flight_t;

/* An answer, immutable once made. The spans index `body`. */
typedef struct st_dp_cache_entry_t {
    const char *key; /* dp_ck_key's bytes (the service id is its prefix up to the first '\0') */
    size_t keylen;
    const char *body; /* the upstream's answer, byte for byte */
    size_t len;
    size_t id_off, id_len;           /* the id value in body */
    size_t jsonrpc_off, jsonrpc_len; /* the jsonrpc value in body (jsonrpc_len 0: none) */
    uint64_t expires_at;             /* loop ms; 0 = never */
    size_t charge;                   /* bytes counted against max_bytes (the allocation's usable size) */
    /* private */
    _Atomic long _refcnt;
    uint64_t _hash;
    struct st_dp_cache_entry_t *_chain;                /* next in its bucket */
    struct st_dp_cache_entry_t *_lru_prev, *_lru_next; /* in the store's LRU list (most recent first) */
    int _mapped;                                       /* mapped on its own (charge = its length) */
    int _stored;                                       /* in the table */
} dp_cache_entry_t;

/* A new entry (one allocation: the struct, key and body copied), with one reference (the caller's).
 * `ans` gives the id and jsonrpc spans (pointers into body). NULL when out of memory. */
dp_cache_entry_t *dp_cache_entry_new(const char *key, size_t keylen, const char *body, size_t len, const dp_ck_answer_t *ans,
                                     uint64_t expires_at);
void dp_cache_entry_ref(dp_cache_entry_t *e);
/* Drops a reference; the last one frees it. */
void dp_cache_entry_release(dp_cache_entry_t *e);

dp_cache_t *dp_cache_create(void);
void dp_cache_destroy(dp_cache_t *c);

/* The bounds (cache.max_bytes, cache.max_entry), at start and at each new generation: a smaller
 * budget evicts at once. max_bytes 0: nothing is stored (and everything stored goes). */
void dp_cache_set_limits(dp_cache_t *c, uint64_t max_bytes, uint64_t max_entry);

/* Stores e under its key (taking a reference of its own), replacing an entry with the same key;
 * evicts least recently used entries until it fits. Returns 0, or -1 when it is not stored (larger
 * than max_entry or than max_bytes). */
int dp_cache_put(dp_cache_t *c, dp_cache_entry_t *e);

/* A waiter on a flight: a follower. */
typedef enum en_dp_flight_outcome_t {
    DP_FLIGHT_WAITING = 0,
    DP_FLIGHT_ANSWERED, /* `entry` holds the answer (a reference, the waiter's to release) */
    DP_FLIGHT_LEAD,     /* the leader failed: this waiter leads the flight now (`flight`) and goes upstream */
    DP_FLIGHT_ALONE,    /* the answer cannot be shared (too large, not one JSON-RPC answer): go upstream alone */
    DP_FLIGHT_FAILED,   /* the flight failed twice: give the client the failure (`err`) */
} dp_flight_outcome_t;

typedef struct st_dp_flight_waiter_t {
    /* set by the waiter */
    void (*on_done)(struct st_dp_flight_waiter_t *w); /* under the store's lock, on the ending thread */
    /* set before on_done */
    dp_flight_outcome_t outcome;
    dp_cache_entry_t *entry; /* ANSWERED */
    dp_flight_t *flight;     /* LEAD */
    int err;                 /* FAILED: the leader's dp_error_t */
    /* private */
    struct st_dp_flight_waiter_t *_prev, *_next;
    dp_flight_t *_in; /* the flight waited on; NULL once on_done ran */
} dp_flight_waiter_t;

typedef enum en_dp_cache_lookup_t {
    DP_CACHE_HIT = 0,  /* *entry: a reference to a live answer */
    DP_CACHE_MISS,     /* no answer, no flight joined (coalescing not asked, or the flight is full) */
    DP_CACHE_LEADER,   /* no answer: a flight starts, *flight is the caller's to end (answer or fail) */
    DP_CACHE_FOLLOWER, /* no answer: waiting on a flight through `w` */
} dp_cache_lookup_t;

/* Looks key up at now_ms. On a miss with `w` not NULL, joins the key's flight as a follower (when it
 * has fewer than max_followers) or starts one. An expired entry is dropped and missed. A hit moves the
 * entry to the front of the LRU list. */
dp_cache_lookup_t dp_cache_lookup(dp_cache_t *c, const char *key, size_t keylen, uint64_t now_ms, dp_flight_waiter_t *w,
                                  uint32_t max_followers, dp_cache_entry_t **entry, dp_flight_t **flight);

/* The leader's answer, shared with every follower (each gets a reference). Ends the flight. */
void dp_flight_answer(dp_cache_t *c, dp_flight_t *f, dp_cache_entry_t *e);
/* The leader cannot share its answer (too large, not JSON-RPC): every follower goes alone. Ends it. */
void dp_flight_release(dp_cache_t *c, dp_flight_t *f);
/* The leader failed with dp_error_t `err` (or left): the first follower leads now (LEAD), unless the
 * flight was handed over once already, in which case every follower gets FAILED. Ends the flight
 * when no follower is left. A leader that goes without an answer (its client left, its relay was
 * cut) calls this too, so that its followers are never left waiting. */
void dp_flight_fail(dp_cache_t *c, dp_flight_t *f, int err);
/* A follower leaves (timeout, the client left). Returns 1 when on_done had run already (its outcome
 * is set: an ANSWERED entry is the caller's to release, a LEAD flight the caller's to end), else 0
 * (it is out of the flight, nothing is owed). */
int dp_flight_leave(dp_cache_t *c, dp_flight_waiter_t *w);

/* Drops every entry, or those of one service (svc not NULL). Returns how many went. */
size_t dp_cache_purge(dp_cache_t *c, const char *svc, size_t svclen);

typedef struct st_dp_cache_stats_t {
    uint64_t bytes;     /* charged, <= max_bytes */
    uint64_t entries;   /* stored */
    uint64_t evictions; /* entries dropped for room (not expiry, not purge) */
    uint64_t expired;   /* entries dropped because they were met expired */
    uint64_t purged;    /* entries dropped by a purge */
    uint64_t flights;   /* flights running now */
    uint64_t max_bytes, max_entry;
} dp_cache_stats_t;

void dp_cache_stats(dp_cache_t *c, dp_cache_stats_t *out);

#endif
