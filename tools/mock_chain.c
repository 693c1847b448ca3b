/*
 * pathway-mock-upstream's chain and answers: the head (it advances with --block-time, --lag behind
 * for eth_blockNumber), what each eth_* method answers (blocks and receipts like a node's: null
 * above the head, a receipt once its block is mined), the injected JSON-RPC errors, and the calls
 * counted by method for the control listener.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "mock_upstream.h"

/* the chain: the head is base_head + (now - base_ms) / block_time_ms, rebased when block_time_ms
 * changes so that the head never jumps */
static struct {
    uint64_t base_head, base_ms;
} chain;

#define MAX_METHODS 256 /* distinct method names counted by name; more are counted as "(other)" */

mock_counters_t ctl;
uint64_t ctl_errors;

double rnd(void)
{
    return (double)random() / ((double)RAND_MAX + 1.0);
}

uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

void chain_start(uint64_t head)
{
    chain.base_head = head;
    chain.base_ms = now_ms();
}

static uint64_t chain_head(void)
{
    uint64_t h = chain.base_head;
    if (opt.block_time_ms != 0)
        h += (now_ms() - chain.base_ms) / opt.block_time_ms;
    return h;
}

void set_block_time(uint64_t ms)
{
    chain.base_head = chain_head();
    chain.base_ms = now_ms();
    opt.block_time_ms = ms;
}

/* what eth_blockNumber answers: the head, --lag behind (not below 0) */
uint64_t answered_head(void)
{
    uint64_t h = chain_head();
    return h > opt.lag ? h - opt.lag : 0;
}

static void count_call(json_t *call)
{
    const char *method = json_is_object(call) ? json_string_value(json_object_get(call, "method")) : NULL;
    if (method == NULL)
        return;
    json_t *n = json_object_get(ctl.by_method, method);
    if (n == NULL && json_object_size(ctl.by_method) >= MAX_METHODS)
        n = json_object_get(ctl.by_method, method = "(other)");
    if (n != NULL)
        json_integer_set(n, json_integer_value(n) + 1);
    else
        json_object_set_new(ctl.by_method, method, json_integer(1));
}

/* counts a request received on the relay listener, and its calls by method */
void count_request(json_t *body)
{
    ctl.requests++;
    if (json_is_array(body)) {
        size_t i;
        json_t *v;
        json_array_foreach(body, i, v) count_call(v);
    } else {
        count_call(body);
    }
}

/* block n as eth_getBlockByNumber answers it: its number, a hash made from it, no transactions */
static json_t *block_of(uint64_t n)
{
    char num[32], hash[67];
    snprintf(num, sizeof(num), "0x%" PRIx64, n);
    snprintf(hash, sizeof(hash), "0x%064" PRIx64, (uint64_t)(n * 0x9e3779b97f4a7c15ull));
    return json_pack("{s:s, s:s, s:s, s:[]}", "number", num, "hash", hash, "timestamp", "0x65000000", "transactions");
}

static json_t *result_of(const char *method, json_t *params)
{
    if (strcmp(method, "eth_blockNumber") == 0) {
        char b[32];
        snprintf(b, sizeof(b), "0x%" PRIx64, answered_head());
        return json_string(b);
    }
    /* methods whose answer is one fixed string */
    static const struct {
        const char *method, *result;
    } fixed[] = {
        {"eth_chainId", "0x1"},
        {"net_version", "1"},
        {"web3_clientVersion", "pathway-mock-upstream/1.0"},
        {"eth_getBalance", "0xde0b6b3a7640000"},
        {"eth_gasPrice", "0x3b9aca00"},
        {"eth_getTransactionCount", "0x1"},
        {"eth_estimateGas", "0x5208"},
        {"eth_getCode", "0x"},
        {"eth_call", "0x0000000000000000000000000000000000000000000000000000000000000001"},
        {"eth_sendRawTransaction", "0x88df016429689c079f3b2f6ad39fa052532c56795b733da78a91ebe6a713944b"},
    };
    for (size_t i = 0; i < sizeof(fixed) / sizeof(fixed[0]); i++)
        if (strcmp(method, fixed[i].method) == 0)
            return json_string(fixed[i].result);
    if (strcmp(method, "eth_getBlockByNumber") == 0) {
        /* like a node: a tag is the head (earliest: block 0), a number above the head is null */
        const char *b = json_string_value(json_array_get(params, 0));
        uint64_t head = answered_head(), n = head;
        if (b != NULL && strncmp(b, "0x", 2) == 0)
            n = strtoull(b + 2, NULL, 16);
        else if (b != NULL && strcmp(b, "earliest") == 0)
            n = 0;
        return n > head ? json_null() : block_of(n);
    }
    if (strcmp(method, "eth_getBlockByHash") == 0)
        return block_of(chain_head());
    if (strcmp(method, "eth_getTransactionReceipt") == 0 || strcmp(method, "eth_getTransactionByHash") == 0) {
        /* a transaction whose hash ends in 16 hex digits N is mined in block N: null until the head reaches
         * it, then a receipt naming that block (so a test can see a receipt appear) */
        const char *h = json_string_value(json_array_get(params, 0));
        size_t len = h != NULL ? strlen(h) : 0;
        if (len < 18)
            return json_null();
        uint64_t n = strtoull(h + len - 16, NULL, 16);
        if (n == 0 || n > answered_head())
            return json_null();
        char num[32];
        snprintf(num, sizeof(num), "0x%" PRIx64, n);
        return json_pack("{s:s, s:s, s:s}", "transactionHash", h, "blockNumber", num, "status", "0x1");
    }
    if (strcmp(method, "eth_getLogs") == 0)
        return json_array();
    if (strcmp(method, "eth_syncing") == 0)
        return json_false();
    return NULL;
}

json_t *answer_one(json_t *call)
{
    json_t *id = json_is_object(call) ? json_object_get(call, "id") : NULL;
    json_t *resp = json_pack("{s:s, s:O}", "jsonrpc", "2.0", "id", id != NULL ? id : json_null());
    const char *method = json_is_object(call) ? json_string_value(json_object_get(call, "method")) : NULL;
    if (method == NULL) {
        json_object_set_new(resp, "error", json_pack("{s:i, s:s}", "code", -32600, "message", "invalid request"));
        return resp;
    }
    if (opt.error_rate > 0 && rnd() < opt.error_rate) {
        ctl_errors++;
        json_object_set_new(resp, "error", json_pack("{s:i, s:s}", "code", opt.error_code, "message", "mock error"));
        return resp;
    }
    json_t *r = result_of(method, json_object_get(call, "params"));
    if (r == NULL)
        json_object_set_new(resp, "error", json_pack("{s:i, s:s}", "code", -32601, "message", "method not found"));
    else
        json_object_set_new(resp, "result", r);
    return resp;
}
