/*
 * dp_bufpool: response buffers reused across requests (config `buffers`). One pool per worker
 * thread, so taking and returning a buffer needs no lock. Counters are written by the owner only
 * and read by the admin thread.
 */
#ifndef PATHWAY_DP_BUFPOOL_H
#define PATHWAY_DP_BUFPOOL_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

typedef struct st_dp_buf_t dp_buf_t;
struct st_dp_buf_t {
    dp_buf_t *_next; /* free list link */
    size_t capacity; /* bytes of data[] */
    size_t len;      /* bytes filled */
    char data[];
};

typedef struct st_dp_bufpool_t {
    dp_buf_t *_free;              /* LIFO: the most recently used buffer is the warmest */
    _Atomic uint64_t hits;        /* get served from the free list */
    _Atomic uint64_t misses;      /* get that had to allocate */
    _Atomic uint64_t retained;    /* bytes held in the free list */
    _Atomic uint64_t outstanding; /* buffers handed out and not returned */
} dp_bufpool_t;

void dp_bufpool_init(dp_bufpool_t *pool);
/* Frees every retained buffer. */
void dp_bufpool_dispose(dp_bufpool_t *pool);
/* A buffer of `size` bytes with len 0; retained buffers of another size (the setting changed) are
 * freed on the way. NULL only when out of memory. */
dp_buf_t *dp_bufpool_get(dp_bufpool_t *pool, size_t size);
/* Returns `buf`: kept while the pool holds at most `max_retained` bytes, freed otherwise (so a
 * buffer larger than max_retained is never kept). */
void dp_bufpool_put(dp_bufpool_t *pool, dp_buf_t *buf, size_t max_retained);
/* Frees retained buffers until at most `max_retained` bytes remain (after a config change). */
void dp_bufpool_trim(dp_bufpool_t *pool, size_t max_retained);

#endif
