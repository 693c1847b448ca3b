/*
 * cfg_rpcmethods: the built-in method table. Rows are sorted by name (bytewise, the order strcmp
 * gives) so that a lookup, which runs on every request the cache sees, is a binary search over a
 * few dozen rows with no allocation; a unit test checks the order.
 */
#include <string.h>
#include "cfg_rpcmethods.h"

#define ROW(n, c, b)                                                                                                               \
    {                                                                                                                              \
        .name = (n), .cls = (c), .block_param = (b)                                                                                \
    }
#define STATIC(n) ROW(n, CFG_CACHE_STATIC, 0)
#define REALTIME(n) ROW(n, CFG_CACHE_REALTIME, 0)
#define BY_BLOCK(n, i) ROW(n, CFG_CACHE_BY_BLOCK, i)
#define BY_HASH(n) ROW(n, CFG_CACHE_BY_HASH, 0)

/* What is not here (writes, filters, subscriptions, eth_sendRawTransaction, anything else) is never
 * cached. eth_feeHistory is realtime although it may name a block: clients ask it about the head,
 * and its answer for a block count ending at a number is not worth a second rule. web3_clientVersion
 * is realtime, not static: it changes when the node behind the endpoint is upgraded or swapped. */
static const cfg_rpc_method_t methods[] = {
    REALTIME("eth_blobBaseFee"),
    REALTIME("eth_blockNumber"),
    BY_BLOCK("eth_call", 1),
    STATIC("eth_chainId"),
    BY_BLOCK("eth_estimateGas", 1),
    REALTIME("eth_feeHistory"),
    REALTIME("eth_gasPrice"),
    BY_BLOCK("eth_getBalance", 1),
    BY_HASH("eth_getBlockByHash"),
    BY_BLOCK("eth_getBlockByNumber", 0),
    BY_BLOCK("eth_getBlockReceipts", 0),
    BY_HASH("eth_getBlockTransactionCountByHash"),
    BY_BLOCK("eth_getBlockTransactionCountByNumber", 0),
    BY_BLOCK("eth_getCode", 1),
    BY_BLOCK("eth_getLogs", CFG_BLOCK_PARAM_FILTER),
    BY_BLOCK("eth_getProof", 2),
    BY_BLOCK("eth_getStorageAt", 2),
    BY_HASH("eth_getTransactionByBlockHashAndIndex"),
    BY_BLOCK("eth_getTransactionByBlockNumberAndIndex", 0),
    BY_HASH("eth_getTransactionByHash"),
    BY_BLOCK("eth_getTransactionCount", 1),
    BY_HASH("eth_getTransactionReceipt"),
    BY_BLOCK("eth_getUncleCountByBlockNumber", 0),
    REALTIME("eth_maxPriorityFeePerGas"),
    REALTIME("eth_syncing"),
    REALTIME("net_peerCount"),
    STATIC("net_version"),
    REALTIME("web3_clientVersion"),
};

#define NUM_METHODS (sizeof(methods) / sizeof(methods[0]))

/* strcmp's order on a (pointer, length) name, which may hold any byte (a NUL sorts first). */
static int cmp_name(const char *a, size_t alen, const char *b)
{
    size_t blen = strlen(b), n = alen < blen ? alen : blen;
    int c = n != 0 ? memcmp(a, b, n) : 0;
    if (c != 0)
        return c;
    return alen < blen ? -1 : alen > blen;
}

const cfg_rpc_method_t *cfg_rpc_method_find(const char *name, size_t len)
{
    size_t lo = 0, hi = NUM_METHODS;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = cmp_name(name, len, methods[mid].name);
        if (c == 0)
            return &methods[mid];
        if (c < 0)
            hi = mid;
        else
            lo = mid + 1;
    }
    return NULL;
}

const cfg_rpc_method_t *cfg_rpc_methods(size_t *n)
{
    *n = NUM_METHODS;
    return methods;
}
