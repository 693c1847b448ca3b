#include "dp_bufpool.h"
#include <stdlib.h>

/* single writer: a relaxed load + store is enough and costs no locked instruction */
#define OWNER_ADD(c, n) atomic_store_explicit(&(c), atomic_load_explicit(&(c), memory_order_relaxed) + (n), memory_order_relaxed)
#define OWNER_SUB(c, n) atomic_store_explicit(&(c), atomic_load_explicit(&(c), memory_order_relaxed) - (n), memory_order_relaxed)

void dp_bufpool_init(dp_bufpool_t *pool)
{
    pool->_free = NULL;
    atomic_init(&pool->hits, 0);
    atomic_init(&pool->misses, 0);
    atomic_init(&pool->retained, 0);
    atomic_init(&pool->outstanding, 0);
}

void dp_bufpool_dispose(dp_bufpool_t *pool)
{
    dp_bufpool_trim(pool, 0);
}

dp_buf_t *dp_bufpool_get(dp_bufpool_t *pool, size_t size)
{
    while (pool->_free != NULL) {
        dp_buf_t *buf = pool->_free;
        pool->_free = buf->_next;
        OWNER_SUB(pool->retained, buf->capacity);
        if (buf->capacity == size) {
            OWNER_ADD(pool->hits, 1);
            OWNER_ADD(pool->outstanding, 1);
            buf->len = 0;
            buf->_next = NULL;
            return buf;
        }
        free(buf);
    }
    dp_buf_t *buf = malloc(offsetof(dp_buf_t, data) + size);
    if (buf == NULL)
        return NULL;
    OWNER_ADD(pool->misses, 1);
    OWNER_ADD(pool->outstanding, 1);
    buf->_next = NULL;
    buf->capacity = size;
    buf->len = 0;
    return buf;
}

void dp_bufpool_put(dp_bufpool_t *pool, dp_buf_t *buf, size_t max_retained)
{
    OWNER_SUB(pool->outstanding, 1);
    if (atomic_load_explicit(&pool->retained, memory_order_relaxed) + buf->capacity > max_retained) {
        free(buf);
        return;
    }
    buf->_next = pool->_free;
    pool->_free = buf;
    OWNER_ADD(pool->retained, buf->capacity);
}

void dp_bufpool_trim(dp_bufpool_t *pool, size_t max_retained)
{
    while (pool->_free != NULL && atomic_load_explicit(&pool->retained, memory_order_relaxed) > max_retained) {
        dp_buf_t *buf = pool->_free;
        pool->_free = buf->_next;
        OWNER_SUB(pool->retained, buf->capacity);
        free(buf);
    }
}
