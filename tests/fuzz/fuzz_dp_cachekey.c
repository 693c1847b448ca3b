/* Fuzz target: what the response cache reads of a request and of an answer (dp_cachekey), with
 * jansson as the oracle. The input is one body, read as a request, a batch and an answer. Checks:
 * - dp_ck_parse: where it answers, jansson parses the same object and the spans hold its id,
 *   jsonrpc, method and params; where jansson sees a plain request (no duplicate names, no escapes,
 *   nesting within the scanner's bound), dp_ck_parse answers too;
 * - dp_ck_classify, with and without overrides: the class a reference written over jansson's tree
 *   gives (on such plain input), and never has_block outside CFG_CACHE_BY_BLOCK;
 * - dp_ck_key equals dp_ck_key_parsed (or both say "not JSON"), equals jansson's canonical params,
 *   and does not change when the request is written again with another id, other blanks and
 *   another member order;
 * - dp_ck_answer: the kind and block jansson's tree gives; dp_ck_array: jansson's element count, and
 *   each element span holds that element. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <jansson.h>
#include "cfg_rpcmethods.h"
#include "dp_cachekey.h"

#define MAX_DEPTH 64 /* the scanner's bound on nesting */
#define OV_CLASS_SET CFG_CACHE_METHOD_HAS_CLASS

#define CHECK(cond)                                                                                                                \
    do {                                                                                                                           \
        if (!(cond)) {                                                                                                             \
            fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond);                                               \
            abort();                                                                                                               \
        }                                                                                                                          \
    } while (0)

static int depth_of(json_t *v)
{
    int d = 0;
    if (json_is_object(v)) {
        const char *k;
        json_t *c;
        json_object_foreach(v, k, c)
        {
            int x = depth_of(c);
            d = x > d ? x : d;
        }
        return d + 1;
    }
    if (json_is_array(v)) {
        size_t i;
        json_t *c;
        json_array_foreach(v, i, c)
        {
            int x = depth_of(c);
            d = x > d ? x : d;
        }
        return d + 1;
    }
    return 0;
}

/* Whether jansson refused valid JSON: a number it cannot hold, or "\u0000" in a member name (which it
 * refuses even with JSON_ALLOW_NUL). */
static int jansson_limit(const json_error_t *err)
{
    return json_error_code(err) == json_error_numeric_overflow || json_error_code(err) == json_error_null_byte_in_key;
}

/* A span loaded by jansson (any value); NULL when it is not one (*overflow: see jansson_limit). */
static json_t *load_span(dp_span_t s, int *overflow)
{
    json_error_t err;
    json_t *v = json_loadb(s.base, s.len, JSON_DECODE_ANY | JSON_ALLOW_NUL, &err);
    if (overflow != NULL)
        *overflow = v == NULL && jansson_limit(&err);
    return v;
}

/* The span holds v (absent when v is NULL). */
static void check_span(dp_span_t s, json_t *v)
{
    if (v == NULL) {
        CHECK(s.base == NULL && s.len == 0);
        return;
    }
    CHECK(s.base != NULL);
    int overflow;
    json_t *got = load_span(s, &overflow);
    CHECK(got != NULL);
    CHECK(json_equal(got, v));
    json_decref(got);
}

/* ---- the reference classification, over jansson's tree ---- */

enum { REF_INVALID, REF_TAG, REF_NUMBER };

static int ref_quantity(json_t *v, uint64_t *out)
{
    if (!json_is_string(v))
        return -1;
    const char *s = json_string_value(v);
    size_t n = json_string_length(v);
    if (n < 3 || n > 18 || s[0] != '0' || s[1] != 'x')
        return -1;
    if (strspn(s + 2, "0123456789abcdefABCDEF") != n - 2)
        return -1;
    *out = strtoull(s + 2, NULL, 16);
    return 0;
}

static int ref_block_string(json_t *v, uint64_t *num)
{
    if (ref_quantity(v, num) == 0)
        return REF_NUMBER;
    static const char *tags[] = {"latest", "pending", "safe", "finalized", "earliest"};
    for (size_t i = 0; i != 5; ++i)
        if (json_is_string(v) && strcmp(json_string_value(v), tags[i]) == 0 && json_string_length(v) == strlen(tags[i]))
            return REF_TAG;
    return REF_INVALID;
}

static int ref_block(json_t *v, uint64_t *num)
{
    if (json_is_null(v))
        return REF_TAG;
    if (json_is_string(v))
        return ref_block_string(v, num);
    if (!json_is_object(v))
        return REF_INVALID;
    json_t *bn = json_object_get(v, "blockNumber"), *bh = json_object_get(v, "blockHash");
    if ((bn == NULL) == (bh == NULL))
        return REF_INVALID;
    if (bh != NULL)
        return json_is_string(bh) ? REF_TAG : REF_INVALID;
    return json_is_string(bn) ? ref_block_string(bn, num) : REF_INVALID;
}

static int ref_classify(json_t *doc, const cfg_cache_method_t *ov, uint64_t *block)
{
    *block = UINT64_MAX;
    json_t *m = json_object_get(doc, "method"), *params = json_object_get(doc, "params");
    const cfg_rpc_method_t *row = cfg_rpc_method_find(json_string_value(m), json_string_length(m));
    int cls = row != NULL ? (int)row->cls : CFG_CACHE_NEVER;
    if (ov != NULL) {
        if (!ov->enabled)
            return CFG_CACHE_NEVER;
        if (ov->_set & OV_CLASS_SET) {
            cls = ov->cls;
            if ((cls == CFG_CACHE_BY_BLOCK || cls == CFG_CACHE_BY_HASH) && (row == NULL || (int)row->cls != cls))
                return CFG_CACHE_NEVER;
        }
    }
    switch (cls) {
    case CFG_CACHE_STATIC:
    case CFG_CACHE_REALTIME:
        return params == NULL || json_is_array(params) || json_is_object(params) ? cls : CFG_CACHE_NEVER;
    case CFG_CACHE_BY_HASH:
        return params == NULL || json_is_array(params) ? cls : CFG_CACHE_NEVER;
    case CFG_CACHE_BY_BLOCK:
        break;
    default:
        return CFG_CACHE_NEVER;
    }
    if (params != NULL && !json_is_array(params))
        return CFG_CACHE_NEVER;
    uint64_t a = 0, b = 0;
    if (row->block_param == CFG_BLOCK_PARAM_FILTER) {
        json_t *f = json_array_get(params, 0);
        if (!json_is_object(f))
            return CFG_CACHE_NEVER;
        json_t *from = json_object_get(f, "fromBlock"), *to = json_object_get(f, "toBlock"), *h = json_object_get(f, "blockHash");
        if (h != NULL)
            return from == NULL && to == NULL && json_is_string(h) ? CFG_CACHE_BY_HASH : CFG_CACHE_NEVER;
        int fa = from != NULL ? ref_block(from, &a) : REF_TAG, fb = to != NULL ? ref_block(to, &b) : REF_TAG;
        if (fa == REF_INVALID || fb == REF_INVALID)
            return CFG_CACHE_NEVER;
        if (fa != REF_NUMBER || fb != REF_NUMBER)
            return CFG_CACHE_REALTIME;
        *block = a > b ? a : b;
        return CFG_CACHE_BY_BLOCK;
    }
    json_t *e = json_array_get(params, (size_t)row->block_param);
    if (e == NULL)
        return CFG_CACHE_REALTIME;
    switch (ref_block(e, &a)) {
    case REF_NUMBER:
        *block = a;
        return CFG_CACHE_BY_BLOCK;
    case REF_TAG:
        return CFG_CACHE_REALTIME;
    default:
        return CFG_CACHE_NEVER;
    }
}

/* Whether jansson's tree is a request dp_ck_parse must take (no duplicate names, no escapes known). */
static int ref_is_request(json_t *doc)
{
    if (!json_is_object(doc) || !json_is_string(json_object_get(doc, "method")))
        return 0;
    json_t *id = json_object_get(doc, "id");
    return id == NULL || json_is_string(id) || json_is_number(id) || json_is_null(id);
}

static dp_ck_kind_t ref_answer(json_t *doc, int *has_block, uint64_t *block)
{
    *has_block = 0;
    if (!json_is_object(doc))
        return DP_CK_ANSWER_INVALID;
    json_t *id = json_object_get(doc, "id"), *result = json_object_get(doc, "result"), *error = json_object_get(doc, "error");
    if (id == NULL || !(json_is_string(id) || json_is_number(id) || json_is_null(id)))
        return DP_CK_ANSWER_INVALID;
    if (json_is_null(error) && result != NULL)
        error = NULL;
    if (error != NULL)
        return result == NULL ? DP_CK_ANSWER_ERROR : DP_CK_ANSWER_INVALID;
    if (result == NULL)
        return DP_CK_ANSWER_INVALID;
    if (json_is_null(result))
        return DP_CK_ANSWER_NULL;
    if (json_is_object(result)) {
        json_t *bn = json_object_get(result, "blockNumber");
        if (bn == NULL)
            bn = json_object_get(result, "number");
        if (bn != NULL && ref_quantity(bn, block) == 0)
            *has_block = 1;
    }
    return DP_CK_ANSWER_RESULT;
}

/* ---- the checks ---- */

static const cfg_cache_method_t overrides[] = {
    {.enabled = 0},
    {._set = CFG_CACHE_METHOD_HAS_TTL, .enabled = 1, .ttl_ms = 1000},
    {._set = OV_CLASS_SET, .enabled = 1, .cls = CFG_CACHE_STATIC},
    {._set = OV_CLASS_SET, .enabled = 1, .cls = CFG_CACHE_REALTIME},
    {._set = OV_CLASS_SET, .enabled = 1, .cls = CFG_CACHE_NEVER},
    {._set = OV_CLASS_SET, .enabled = 1, .cls = CFG_CACHE_BY_BLOCK},
    {._set = OV_CLASS_SET, .enabled = 1, .cls = CFG_CACHE_BY_HASH},
    {._set = OV_CLASS_SET, .enabled = 1, .cls = 99},
};

/* dp_ck_key against dp_ck_key_parsed; returns the key (caller frees) or NULL when there is none. */
static char *check_key(const dp_ck_req_t *req, size_t *len)
{
    char small[8];
    size_t need = dp_ck_key("svc", 3, req, small, sizeof(small));
    size_t plen = 0;
    char *parsed = dp_ck_key_parsed("svc", 3, req, &plen);
    if (need == 0) {
        CHECK(parsed == NULL);
        return NULL;
    }
    CHECK(parsed != NULL && plen == need);
    char *out = malloc(need + 16);
    CHECK(dp_ck_key("svc", 3, req, out, need) == need);
    CHECK(memcmp(out, parsed, need) == 0);
    CHECK(dp_ck_key("svc", 3, req, out, need + 16) == need);
    CHECK(memcmp(out, parsed, need) == 0);
    CHECK(memcmp(out, "svc\0", 4) == 0);
    CHECK(memcmp(out + 4, req->method.base, req->method.len) == 0 && out[4 + req->method.len] == '\0');
    free(parsed);
    *len = need;
    return out;
}

/* A copy of v with every object's members in reverse order (jansson keeps members in order). */
static json_t *reversed(json_t *v)
{
    if (json_is_array(v)) {
        json_t *out = json_array(), *c;
        size_t i;
        json_array_foreach(v, i, c) json_array_append_new(out, reversed(c));
        return out;
    }
    if (!json_is_object(v))
        return json_incref(v);
    size_t n = json_object_size(v), i = 0;
    const char **keys = malloc((n + 1) * sizeof(*keys));
    const char *k;
    json_t *c;
    json_object_foreach(v, k, c) keys[i++] = k;
    json_t *out = json_object();
    while (i-- != 0)
        json_object_set_new(out, keys[i], reversed(json_object_get(v, keys[i])));
    free(keys);
    return out;
}

static void check_request(const char *body, size_t size, json_t *doc, int plain, int overflow)
{
    dp_ck_req_t req;
    if (dp_ck_parse(body, size, &req) != DP_CK_OK) {
        CHECK(!(plain && ref_is_request(doc)));
        return;
    }
    CHECK(doc != NULL || overflow);
    CHECK(req.cls == CFG_CACHE_NEVER && !req.has_block);
    CHECK(req.item.base >= body && req.item.base + req.item.len <= body + size && req.item.base[0] == '{');
    if (doc != NULL) {
        CHECK(ref_is_request(doc));
        check_span(req.item, doc);
        json_t *m = json_object_get(doc, "method");
        CHECK(json_string_length(m) == req.method.len && memcmp(json_string_value(m), req.method.base, req.method.len) == 0);
        check_span(req.id, json_object_get(doc, "id"));
        check_span(req.jsonrpc, json_object_get(doc, "jsonrpc"));
        check_span(req.params, json_object_get(doc, "params"));
    }
    for (size_t i = 0; i <= sizeof(overrides) / sizeof(overrides[0]); ++i) {
        const cfg_cache_method_t *ov = i == 0 ? NULL : &overrides[i - 1];
        dp_ck_classify(&req, ov);
        CHECK(req.cls >= CFG_CACHE_NEVER && req.cls <= CFG_CACHE_BY_HASH);
        CHECK(!req.has_block || req.cls == CFG_CACHE_BY_BLOCK);
        if (ov != NULL && !ov->enabled)
            CHECK(req.cls == CFG_CACHE_NEVER);
        if (plain && doc != NULL) {
            uint64_t block;
            int want = ref_classify(doc, ov, &block);
            if ((int)req.cls != want || (req.has_block ? req.block : UINT64_MAX) != block) {
                fprintf(stderr, "class %d block %d/%llu, reference %d %llu\n", req.cls, req.has_block,
                        (unsigned long long)req.block, want, (unsigned long long)block);
                abort();
            }
        }
    }
    size_t klen = 0;
    char *key = check_key(&req, &klen);
    if (doc == NULL) {
        free(key);
        return;
    }
    /* the key's params are jansson's canonical form of the request's params */
    json_t *params = json_object_get(doc, "params");
    size_t head = 3 + 1 + req.method.len + 1;
    if (params == NULL) {
        CHECK(key != NULL && klen == head);
    } else {
        char *canon = json_dumps(params, JSON_COMPACT | JSON_SORT_KEYS | JSON_ENCODE_ANY);
        CHECK(canon != NULL && key != NULL);
        CHECK(klen == head + strlen(canon) && memcmp(key + head, canon, klen - head) == 0);
        free(canon);
    }
    /* the same request with another id, other blanks and another member order keys the same */
    json_t *other = reversed(doc);
    json_object_set_new(other, "id", json_string("another id"));
    json_object_set_new(other, "zz", json_integer(1));
    char *again = json_dumps(other, JSON_INDENT(3) | JSON_ENCODE_ANY);
    json_decref(other);
    dp_ck_req_t req2;
    if (again != NULL && dp_ck_parse(again, strlen(again), &req2) == DP_CK_OK) {
        size_t klen2 = 0;
        char *key2 = check_key(&req2, &klen2);
        CHECK(key2 != NULL && klen2 == klen && memcmp(key, key2, klen) == 0);
        free(key2);
    }
    free(again);
    free(key);
}

static void check_answer(const char *body, size_t size, json_t *doc, int plain, int overflow)
{
    dp_ck_answer_t a;
    dp_ck_answer(body, size, &a);
    CHECK(a.kind >= DP_CK_ANSWER_INVALID && a.kind <= DP_CK_ANSWER_ERROR);
    CHECK(!a.has_block || a.kind == DP_CK_ANSWER_RESULT);
    int has_block = 0;
    uint64_t block = 0;
    dp_ck_kind_t want = doc != NULL ? ref_answer(doc, &has_block, &block) : DP_CK_ANSWER_INVALID;
    if (a.kind == DP_CK_ANSWER_INVALID) {
        CHECK(!(plain && want != DP_CK_ANSWER_INVALID));
        return;
    }
    if (doc == NULL) {
        CHECK(overflow);
        return;
    }
    CHECK(a.kind == want);
    check_span(a.id, json_object_get(doc, "id"));
    check_span(a.jsonrpc, json_object_get(doc, "jsonrpc"));
    if (a.has_block)
        CHECK(has_block && a.block == block);
    if (plain)
        CHECK(a.has_block == has_block);
}

typedef struct {
    size_t n;
    dp_span_t spans[64];
} elems_t;

static int on_elem(void *ctx, size_t index, dp_span_t elem)
{
    elems_t *e = ctx;
    CHECK(index == e->n);
    if (e->n < 64)
        e->spans[e->n] = elem;
    ++e->n;
    dp_ck_req_t req; /* what the relay does with each item of a batch */
    if (dp_ck_parse(elem.base, elem.len, &req) == DP_CK_OK) {
        dp_ck_classify(&req, NULL);
        size_t len;
        free(check_key(&req, &len));
    }
    return 0;
}

static void check_array(const char *body, size_t size, json_t *doc, int overflow, int nonul)
{
    elems_t e = {0};
    long n = dp_ck_array(body, size, on_elem, &e);
    size_t i = 0;
    while (i != size && (body[i] == ' ' || body[i] == '\t' || body[i] == '\n' || body[i] == '\r'))
        ++i;
    CHECK((n == -2) == (i == size || body[i] != '['));
    if (n < 0) {
        CHECK(e.n == 0); /* fn hears of nothing in a body that is not JSON */
        CHECK(!(nonul && doc != NULL && json_is_array(doc) && depth_of(doc) <= MAX_DEPTH));
        return;
    }
    CHECK((size_t)n == e.n);
    if (doc == NULL) {
        CHECK(overflow);
        return;
    }
    CHECK(json_is_array(doc) && json_array_size(doc) == (size_t)n);
    for (size_t k = 0; k != e.n && k != 64; ++k)
        check_span(e.spans[k], json_array_get(doc, k));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *body = (const char *)data;
    json_error_t err;
    json_t *doc = json_loadb(body, size, JSON_ALLOW_NUL, &err);
    int overflow = doc == NULL && jansson_limit(&err);
    /* plain: what the scanner must read exactly as jansson does (with escapes or duplicate names, it
     * may decline where jansson reads, never read otherwise). jansson skips a raw NUL byte after a
     * number or a literal ("[1\0]" loads), which RFC 8259 and the scanner refuse. */
    int plain = 0, nonul = memchr(body, '\0', size) == NULL;
    if (doc != NULL && nonul && memchr(body, '\\', size) == NULL && depth_of(doc) <= MAX_DEPTH) {
        json_t *strict = json_loadb(body, size, JSON_ALLOW_NUL | JSON_REJECT_DUPLICATES, NULL);
        plain = strict != NULL;
        json_decref(strict);
    }
    check_request(body, size, doc, plain, overflow);
    check_answer(body, size, doc, plain, overflow);
    check_array(body, size, doc, overflow, nonul);
    json_decref(doc);
    return 0;
}
