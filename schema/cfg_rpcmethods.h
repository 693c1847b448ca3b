/*
 * cfg_rpcmethods: the built-in table of JSON-RPC methods the response cache knows (EVM), and what
 * each one's answer depends on. A method not in the table is never cached (CFG_CACHE_NEVER) unless
 * an operator's `cache.methods` override gives it a class.
 */
#ifndef PATHWAY_CFG_RPCMETHODS_H
#define PATHWAY_CFG_RPCMETHODS_H

#include <stddef.h>
#include "cfg.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Where a by-block method names its block. */
#define CFG_BLOCK_PARAM_FILTER (-1) /* params[0] is a filter object: fromBlock / toBlock (eth_getLogs) */

typedef struct st_cfg_rpc_method_t {
    const char *name;
    cfg_cache_class_t cls;
    /* CFG_CACHE_BY_BLOCK: the index in params of the block (a hex number, a tag, or an EIP-1898 object
     * {blockNumber} / {blockHash}); absent = "latest". Or CFG_BLOCK_PARAM_FILTER. */
    int block_param;
} cfg_rpc_method_t;

/* The table's row for a method (exact, case-sensitive); NULL when the table does not know it. */
const cfg_rpc_method_t *cfg_rpc_method_find(const char *name, size_t len);

/* Every row, for docs and tests: *n gets how many. */
const cfg_rpc_method_t *cfg_rpc_methods(size_t *n);

#ifdef __cplusplus
}
#endif

#endif
