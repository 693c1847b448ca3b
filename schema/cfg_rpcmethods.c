/*
 * cfg_rpcmethods: the built-in method table. A lookup runs on every request the cache sees: it
 * compares lengths (one byte per row) before bytes, with no allocation.
 */
#include <string.h>
#include "cfg_rpcmethods.h"

/* What is not here (writes, filters, subscriptions, eth_sendRawTransaction, anything else) is never
 * cached. eth_feeHistory is realtime although it may name a block: clients ask it about the head,
 * and its answer for a block count ending at a number is not worth a second rule. web3_clientVersion
 * is realtime, not static: it changes when the node behind the endpoint is upgraded or swapped.
 * X(name, class, block_param), sorted by name (for the reader and the docs; the lookup does not need
 * it). block_param: see cfg_rpc_method_t. */
#define METHODS(X)                                                                                                                 \
    X("eth_blobBaseFee", CFG_CACHE_REALTIME, 0)                                                                                    \
    X("eth_blockNumber", CFG_CACHE_REALTIME, 0)                                                                                    \
    X("eth_call", CFG_CACHE_BY_BLOCK, 1)                                                                                           \
    X("eth_chainId", CFG_CACHE_STATIC, 0)                                                                                          \
    X("eth_estimateGas", CFG_CACHE_BY_BLOCK, 1)                                                                                    \
    X("eth_feeHistory", CFG_CACHE_REALTIME, 0)                                                                                     \
    X("eth_gasPrice", CFG_CACHE_REALTIME, 0)                                                                                       \
    X("eth_getBalance", CFG_CACHE_BY_BLOCK, 1)                                                                                     \
    X("eth_getBlockByHash", CFG_CACHE_BY_HASH, 0)                                                                                  \
    X("eth_getBlockByNumber", CFG_CACHE_BY_BLOCK, 0)                                                                               \
    X("eth_getBlockReceipts", CFG_CACHE_BY_BLOCK, 0)                                                                               \
    X("eth_getBlockTransactionCountByHash", CFG_CACHE_BY_HASH, 0)                                                                  \
    X("eth_getBlockTransactionCountByNumber", CFG_CACHE_BY_BLOCK, 0)                                                               \
    X("eth_getCode", CFG_CACHE_BY_BLOCK, 1)                                                                                        \
    X("eth_getLogs", CFG_CACHE_BY_BLOCK, CFG_BLOCK_PARAM_FILTER)                                                                   \
    X("eth_getProof", CFG_CACHE_BY_BLOCK, 2)                                                                                       \
    X("eth_getStorageAt", CFG_CACHE_BY_BLOCK, 2)                                                                                   \
    X("eth_getTransactionByBlockHashAndIndex", CFG_CACHE_BY_HASH, 0)                                                               \
    X("eth_getTransactionByBlockNumberAndIndex", CFG_CACHE_BY_BLOCK, 0)                                                            \
    X("eth_getTransactionByHash", CFG_CACHE_BY_HASH, 0)                                                                            \
    X("eth_getTransactionCount", CFG_CACHE_BY_BLOCK, 1)                                                                            \
    X("eth_getTransactionReceipt", CFG_CACHE_BY_HASH, 0)                                                                           \
    X("eth_getUncleCountByBlockNumber", CFG_CACHE_BY_BLOCK, 0)                                                                     \
    X("eth_maxPriorityFeePerGas", CFG_CACHE_REALTIME, 0)                                                                           \
    X("eth_syncing", CFG_CACHE_REALTIME, 0)                                                                                        \
    X("net_peerCount", CFG_CACHE_REALTIME, 0)                                                                                      \
    X("net_version", CFG_CACHE_STATIC, 0)                                                                                          \
    X("web3_clientVersion", CFG_CACHE_REALTIME, 0)

#define ROW(n, c, b) {.name = n, .cls = c, .block_param = b},
static const cfg_rpc_method_t methods[] = {METHODS(ROW)};
#undef ROW

/* Each row's name length, for a lookup that compares lengths first: a request's method is matched
 * by a scan of these bytes and at most a few memcmp, with no strlen. */
#define LEN(n, c, b) sizeof(n) - 1,
static const unsigned char lens[] = {METHODS(LEN)};
#undef LEN

#define NUM_METHODS (sizeof(methods) / sizeof(methods[0]))

const cfg_rpc_method_t *cfg_rpc_method_find(const char *name, size_t len)
{
    if (len == 0)
        return NULL;
    for (size_t i = 0; i != NUM_METHODS; ++i)
        if (lens[i] == len && methods[i].name[len - 1] == name[len - 1] && memcmp(methods[i].name, name, len) == 0)
            return &methods[i];
    return NULL;
}

const cfg_rpc_method_t *cfg_rpc_methods(size_t *n)
{
    *n = NUM_METHODS;
    return methods;
}
