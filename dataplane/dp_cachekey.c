/*
 * dp_cachekey: a small validating JSON scanner (RFC 8259: strings with valid escapes and UTF-8 and
 * no control characters, numbers by the grammar, literals; nesting bounded) and what the cache reads
 * with it. It must agree with jansson wherever it answers (the fuzz target checks it), so its rules
 * are jansson's: the same UTF-8 check (RFC 3629: no overlong forms, no surrogates, nothing past
 * U+10FFFF), surrogate escapes only in pairs, the same number grammar. It accepts "\u0000", which
 * jansson takes with JSON_ALLOW_NUL (used here for keys). Where it cannot be sure what a full parse
 * would see (an escaped member name might spell "method"), it declines: DP_CK_BAD, CFG_CACHE_NEVER or
 * DP_CK_ANSWER_INVALID, never a wrong answer.
 */
#include <stdlib.h>
#include <string.h>
#include <jansson.h>
#include "cfg_rpcmethods.h"
#include "dp_cachekey.h"

/* Containers nested deeper than this are refused (jansson's own bound is 2048): real requests nest a
 * few levels, and the scanner recurses once per level. */
#define CK_MAX_DEPTH 64

/* What a scanned value holds, for the key's fast path: any of these and jansson writes the canonical
 * form differently from the bytes (sorted keys, re-encoded strings, re-printed numbers). */
enum {
    CK_F_OBJECT = 1,   /* an object somewhere: keys to sort */
    CK_F_ESCAPE = 2,   /* a backslash in a string: jansson may write it differently */
    CK_F_NONASCII = 4, /* bytes >= 0x80 in a string (kept off the fast path: not worth the risk) */
    CK_F_REAL = 8,     /* a fraction or exponent: jansson prints doubles with %.17g */
    CK_F_BIGINT = 16,  /* an integer of more than 18 digits (may not fit json_int_t) or "-0" (printed "0") */
    CK_F_BLANK = 32,   /* blanks between tokens inside a container: the compact form drops them */
    CK_F_PARSED = 64,  /* (dp_ck_req_t._params_flags) dp_ck_parse scanned the params: the others are known */
};
/* what only jansson writes right */
#define CK_F_JANSSON (CK_F_ESCAPE | CK_F_NONASCII | CK_F_REAL | CK_F_BIGINT)

/* An object whose members are sorted here (on the stack) has at most this many, nested at most this
 * deep; a larger one goes through jansson. */
#define CK_SORT_MEMBERS 16
#define CK_SORT_DEPTH 16

/* The scanner's small steps, inlined where they are used: a call per token costs as much as the token
 * (callgrind: a third of parse + classify + key). */
#define CK_INLINE static inline __attribute__((always_inline))

static inline int is_ws(unsigned char c)
{
    return c == ' ' || c == '\n' || c == '\r' || c == '\t';
}

CK_INLINE const char *skip_ws(const char *p, const char *end)
{
    while (p != end && (unsigned char)*p <= ' ' && is_ws((unsigned char)*p))
        ++p;
    return p;
}

static inline int hexval(unsigned char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    c |= 0x20;
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    return -1;
}

/* Four hex digits at p (p + 4 <= end checked by the caller); -1 when they are not. */
static long hex4(const char *p)
{
    long v = 0;
    for (int i = 0; i < 4; ++i) {
        int d = hexval((unsigned char)p[i]);
        if (d < 0)
            return -1;
        v = v << 4 | d;
    }
    return v;
}

/* One UTF-8 sequence starting with the byte at p (>= 0x80); returns the byte after it, or NULL. */
static const char *scan_utf8(const char *p, const char *end)
{
    const unsigned char *u = (const unsigned char *)p;
    size_t avail = (size_t)(end - p);
    unsigned char c = u[0], lo = 0x80, hi = 0xbf;
    size_t n;
    if (c >= 0xc2 && c <= 0xdf)
        n = 2;
    else if (c >= 0xe0 && c <= 0xef) {
        n = 3;
        if (c == 0xe0)
            lo = 0xa0; /* overlong */
        else if (c == 0xed)
            hi = 0x9f; /* surrogates */
    } else if (c >= 0xf0 && c <= 0xf4) {
        n = 4;
        if (c == 0xf0)
            lo = 0x90; /* overlong */
        else if (c == 0xf4)
            hi = 0x8f; /* past U+10FFFF */
    } else
        return NULL;
    if (avail < n || u[1] < lo || u[1] > hi)
        return NULL;
    for (size_t i = 2; i < n; ++i)
        if (u[i] < 0x80 || u[i] > 0xbf)
            return NULL;
    return p + n;
}

/* The bytes a string holds as they are: printable ASCII but '"' and '\\'. */
#define PLAIN(c) ((c) >= 0x20 && (c) < 0x80 && (c) != '"' && (c) != '\\')
#define PLAIN4(c) PLAIN(c), PLAIN(c + 1), PLAIN(c + 2), PLAIN(c + 3)
#define PLAIN16(c) PLAIN4(c), PLAIN4(c + 4), PLAIN4(c + 8), PLAIN4(c + 12)
#define PLAIN64(c) PLAIN16(c), PLAIN16(c + 16), PLAIN16(c + 32), PLAIN16(c + 48)
static const unsigned char plain_byte[256] = {PLAIN64(0), PLAIN64(64), PLAIN64(128), PLAIN64(192)};
#undef PLAIN64
#undef PLAIN16
#undef PLAIN4
#undef PLAIN

#define ONES 0x0101010101010101ull
#define HIGHS 0x8080808080808080ull

/* A string at p (on its opening quote): returns the byte after the closing quote, or NULL. */
CK_INLINE const char *scan_string(const char *p, const char *end, unsigned *flags)
{
    ++p;
    for (;;) {
        /* the plain run, eight bytes a step (SWAR): the lowest flagged byte is exact, since a borrow
         * only carries towards later bytes */
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
        while (end - p >= 8) {
            uint64_t v;
            memcpy(&v, p, 8);
            uint64_t q = v ^ (ONES * '"'), b = v ^ (ONES * '\\');
            uint64_t special = ((v - ONES * 0x20) & ~v) | v | ((q - ONES) & ~q) | ((b - ONES) & ~b);
            special &= HIGHS;
            if (special != 0) {
                p += (unsigned)__builtin_ctzll(special) >> 3;
                break;
            }
            p += 8;
        }
#endif
        while (p != end && plain_byte[(unsigned char)*p])
            ++p;
        if (p == end)
            return NULL;
        unsigned char c = (unsigned char)*p;
        if (c == '"')
            return p + 1;
        if (c < 0x20)
            return NULL;
        if (c >= 0x80) {
            *flags |= CK_F_NONASCII;
            if ((p = scan_utf8(p, end)) == NULL)
                return NULL;
            continue;
        }
        /* a backslash */
        *flags |= CK_F_ESCAPE;
        if (end - p < 2)
            return NULL;
        switch (p[1]) {
        case '"':
        case '\\':
        case '/':
        case 'b':
        case 'f':
        case 'n':
        case 'r':
        case 't':
            p += 2;
            break;
        case 'u': {
            if (end - p < 6)
                return NULL;
            long v = hex4(p + 2);
            if (v < 0 || (v >= 0xdc00 && v <= 0xdfff))
                return NULL; /* not hex, or a low surrogate alone */
            p += 6;
            if (v >= 0xd800 && v <= 0xdbff) { /* a high surrogate: its low half must follow */
                if (end - p < 6 || p[0] != '\\' || p[1] != 'u')
                    return NULL;
                long w = hex4(p + 2);
                if (w < 0xdc00 || w > 0xdfff)
                    return NULL;
                p += 6;
            }
            break;
        }
        default:
            return NULL;
        }
    }
}

static inline int is_digit(char c)
{
    return c >= '0' && c <= '9';
}

/* A number at p (on '-' or a digit), by RFC 8259's grammar. */
static const char *scan_number(const char *p, const char *end, unsigned *flags)
{
    const char *start = p;
    int neg = 0;
    if (*p == '-') {
        neg = 1;
        if (++p == end)
            return NULL;
    }
    const char *digits = p;
    if (*p == '0')
        ++p;
    else if (*p >= '1' && *p <= '9')
        while (p != end && is_digit(*p))
            ++p;
    else
        return NULL;
    size_t ndigits = (size_t)(p - digits);
    int real = 0;
    if (p != end && *p == '.') {
        ++p;
        if (p == end || !is_digit(*p))
            return NULL;
        while (p != end && is_digit(*p))
            ++p;
        real = 1;
    }
    if (p != end && (*p == 'e' || *p == 'E')) {
        ++p;
        if (p != end && (*p == '+' || *p == '-'))
            ++p;
        if (p == end || !is_digit(*p))
            return NULL;
        while (p != end && is_digit(*p))
            ++p;
        real = 1;
    }
    if (real)
        *flags |= CK_F_REAL;
    else if (ndigits > 18 || (neg && p - start == 2 && digits[0] == '0'))
        *flags |= CK_F_BIGINT;
    return p;
}

static const char *skip_value(const char *p, const char *end, int depth, unsigned *flags);

/* The end of a string known to be valid (p on its opening quote): the next '"' not escaped. */
static const char *string_end(const char *p, const char *end)
{
    const char *q = p + 1;
    for (;;) {
        if ((q = memchr(q, '"', (size_t)(end - q))) == NULL)
            return NULL;
        const char *b = q;
        while (b[-1] == '\\') /* the opening quote stops it */
            --b;
        if (((q - b) & 1) == 0)
            return q + 1;
        ++q;
    }
}

/* The end of a value known to be valid JSON (checked by skip_value before): a second walk over it
 * (the class after the parse, the key's sort, an answer's result) need not check it again, and finds
 * string ends with memchr. NULL only when the bytes were not what the caller said. */
static const char *skip_known(const char *p, const char *end)
{
    if (*p == '"')
        return string_end(p, end);
    if (*p != '{' && *p != '[') {
        while (p != end && *p != ',' && *p != '}' && *p != ']' && !is_ws((unsigned char)*p))
            ++p;
        return p;
    }
    int depth = 0;
    for (; p != end; ++p) {
        switch (*p) {
        case '"':
            if ((p = string_end(p, end)) == NULL)
                return NULL;
            --p;
            break;
        case '{':
        case '[':
            ++depth;
            break;
        case '}':
        case ']':
            if (--depth == 0)
                return p + 1;
            break;
        }
    }
    return NULL;
}

/* Reading a container's members or elements one at a time. */
typedef struct st_ck_iter_t {
    const char *p, *end;
    int depth;   /* the container's own depth (the top-level value is 1) */
    int first;   /* no member read yet: no ',' expected */
    int blank;   /* blanks seen between tokens */
    int trusted; /* the bytes were validated before: values are only skipped over (skip_known) */
} ck_iter_t;

/* p is on the container's opening byte, already checked. */
static inline void iter_open(ck_iter_t *it, const char *p, const char *end, int depth, int trusted)
{
    it->trusted = trusted;
    it->p = p + 1;
    it->end = end;
    it->depth = depth;
    it->first = 1;
    it->blank = 0;
}

/* Before a member or element: 1 when one follows, 0 at the closing byte (consumed), -1 when invalid. */
CK_INLINE int iter_more(ck_iter_t *it, char close)
{
    const char *p = skip_ws(it->p, it->end);
    it->blank |= p != it->p;
    if (p == it->end)
        return -1;
    if (*p == close) {
        it->p = p + 1;
        return 0;
    }
    if (!it->first) {
        if (*p != ',')
            return -1;
        const char *q = p + 1;
        if ((p = skip_ws(q, it->end)) == it->end)
            return -1;
        it->blank |= p != q;
    }
    it->first = 0;
    it->p = p;
    return 1;
}

/* One member of an object: its name (without quotes; kflags tell of escapes) and its value. */
typedef struct st_ck_member_t {
    dp_span_t name;
    unsigned kflags;
    dp_span_t value;
    unsigned vflags;
} ck_member_t;

CK_INLINE int obj_next(ck_iter_t *it, ck_member_t *m)
{
    int r = iter_more(it, '}');
    if (r <= 0)
        return r;
    const char *p = it->p, *end = it->end, *q;
    if (*p != '"')
        return -1;
    m->kflags = 0;
    if ((q = scan_string(p, end, &m->kflags)) == NULL)
        return -1;
    m->name.base = p + 1;
    m->name.len = (size_t)(q - p) - 2;
    p = skip_ws(q, end);
    it->blank |= p != q;
    if (p == end || *p != ':')
        return -1;
    q = p + 1;
    p = skip_ws(q, end);
    it->blank |= p != q;
    m->vflags = 0;
    if ((q = it->trusted ? skip_known(p, end) : skip_value(p, end, it->depth + 1, &m->vflags)) == NULL)
        return -1;
    m->value.base = p;
    m->value.len = (size_t)(q - p);
    it->p = q;
    return 1;
}

CK_INLINE int arr_next(ck_iter_t *it, dp_span_t *elem, unsigned *flags)
{
    int r = iter_more(it, ']');
    if (r <= 0)
        return r;
    const char *q = it->trusted ? skip_known(it->p, it->end) : skip_value(it->p, it->end, it->depth + 1, flags);
    if (q == NULL)
        return -1;
    elem->base = it->p;
    elem->len = (size_t)(q - it->p);
    it->p = q;
    return 1;
}

CK_INLINE const char *skip_literal(const char *p, const char *end, const char *lit, size_t n)
{
    return (size_t)(end - p) >= n && memcmp(p, lit, n) == 0 ? p + n : NULL;
}

/* One value at p (no blanks before it), validated; returns the byte after it, or NULL. `depth` is
 * the depth the value has (a container deeper than CK_MAX_DEPTH is refused). */
static const char *skip_value(const char *p, const char *end, int depth, unsigned *flags)
{
    if (p == end)
        return NULL;
    switch (*p) {
    case '"':
        return scan_string(p, end, flags);
    case '{': {
        if (depth > CK_MAX_DEPTH)
            return NULL;
        *flags |= CK_F_OBJECT;
        ck_iter_t it;
        ck_member_t m;
        int r;
        iter_open(&it, p, end, depth, 0);
        while ((r = obj_next(&it, &m)) > 0)
            *flags |= m.kflags | m.vflags;
        if (it.blank)
            *flags |= CK_F_BLANK;
        return r == 0 ? it.p : NULL;
    }
    case '[': {
        if (depth > CK_MAX_DEPTH)
            return NULL;
        ck_iter_t it;
        dp_span_t e;
        int r;
        iter_open(&it, p, end, depth, 0);
        while ((r = arr_next(&it, &e, flags)) > 0)
            ;
        if (it.blank)
            *flags |= CK_F_BLANK;
        return r == 0 ? it.p : NULL;
    }
    case 't':
        return skip_literal(p, end, "true", 4);
    case 'f':
        return skip_literal(p, end, "false", 5);
    case 'n':
        return skip_literal(p, end, "null", 4);
    default:
        if (*p == '-' || is_digit(*p))
            return scan_number(p, end, flags);
        return NULL;
    }
}

CK_INLINE int name_is(dp_span_t name, const char *lit, size_t n)
{
    return name.len == n && memcmp(name.base, lit, n) == 0;
}
#define NAME_IS(name, lit) name_is((name), (lit), sizeof(lit) - 1)

typedef struct st_ck_name_t {
    const char *s;
    size_t len;
} ck_name_t;
#define CK_NAME(lit)                                                                                                               \
    {                                                                                                                              \
        lit, sizeof(lit) - 1                                                                                                       \
    }

/* The members of the object `obj` named names[0..n) into vals[] (absent: base NULL); other members
 * are skipped. *after (when not NULL) gets the byte after the object. Returns 1, or 0 when the
 * object is not valid, a member name has escapes (it might spell one of the names) or a wanted
 * name is given twice (which one an upstream reads is anyone's guess). */
static int pick_members(dp_span_t obj, int trusted, const ck_name_t *names, size_t n, dp_span_t *vals, const char **after)
{
    ck_iter_t it;
    ck_member_t m;
    int r;
    for (size_t i = 0; i != n; ++i)
        vals[i] = (dp_span_t){NULL, 0};
    iter_open(&it, obj.base, obj.base + obj.len, 1, trusted);
    while ((r = obj_next(&it, &m)) > 0) {
        if (m.kflags & CK_F_ESCAPE)
            return 0;
        for (size_t i = 0; i != n; ++i) {
            if (!name_is(m.name, names[i].s, names[i].len))
                continue;
            if (vals[i].base != NULL)
                return 0;
            vals[i] = m.value;
            break;
        }
    }
    if (after != NULL)
        *after = it.p;
    return r == 0;
}

dp_ck_result_t dp_ck_parse(const char *body, size_t len, dp_ck_req_t *out)
{
    const char *end = body + len, *p = skip_ws(body, end);
    memset(out, 0, sizeof(*out));
    if (p == end || *p != '{')
        return DP_CK_BAD;
    ck_iter_t it;
    ck_member_t m;
    int r;
    iter_open(&it, p, end, 1, 0);
    while ((r = obj_next(&it, &m)) > 0) {
        if (m.kflags & CK_F_ESCAPE)
            return DP_CK_BAD; /* it might spell one of the names below */
        dp_span_t *dst;
        switch (m.name.len) {
        case 2:
            if (!NAME_IS(m.name, "id"))
                continue;
            /* a string, a number or null */
            if (m.value.base[0] != '"' && m.value.base[0] != 'n' && m.value.base[0] != '-' && !is_digit(m.value.base[0]))
                return DP_CK_BAD;
            dst = &out->id;
            break;
        case 6:
            if (NAME_IS(m.name, "method")) {
                if (out->method.base != NULL || m.value.base[0] != '"' || (m.vflags & CK_F_ESCAPE))
                    return DP_CK_BAD;
                out->method.base = m.value.base + 1;
                out->method.len = m.value.len - 2;
                continue;
            }
            if (!NAME_IS(m.name, "params"))
                continue;
            dst = &out->params;
            out->_params_flags = m.vflags | CK_F_PARSED;
            break;
        case 7:
            if (!NAME_IS(m.name, "jsonrpc"))
                continue;
            dst = &out->jsonrpc;
            break;
        default:
            continue;
        }
        if (dst->base != NULL)
            return DP_CK_BAD; /* a second one: which one an upstream reads is anyone's guess */
        *dst = m.value;
    }
    if (r < 0 || out->method.base == NULL || skip_ws(it.p, end) != end)
        return DP_CK_BAD;
    out->item.base = p;
    out->item.len = (size_t)(it.p - p);
    return DP_CK_OK;
}

int dp_ck_quantity(dp_span_t v, uint64_t *out)
{
    /* "0x" and 1 to 16 hex digits; leading zeros are taken (geth takes "0x01" in some places, and the
     * key keeps the bytes, so "0x01" and "0x1" are two keys for one block: a miss, never a wrong hit) */
    if (v.len < 5 || v.len > 20 || v.base[0] != '"' || v.base[1] != '0' || v.base[2] != 'x' || v.base[v.len - 1] != '"')
        return -1;
    uint64_t n = 0;
    for (size_t i = 3; i != v.len - 1; ++i) {
        int d = hexval((unsigned char)v.base[i]);
        if (d < 0)
            return -1;
        n = n << 4 | (uint64_t)d;
    }
    *out = n;
    return 0;
}

/* What a block reference says. */
typedef enum en_ck_block_t {
    CK_BLOCK_INVALID = 0, /* neither a tag nor a number: never cached */
    CK_BLOCK_TAG,         /* a tag, null, or an EIP-1898 {blockHash}: realtime */
    CK_BLOCK_NUMBER,      /* *num is it */
} ck_block_t;

static ck_block_t block_string(dp_span_t v, uint64_t *num)
{
    if (dp_ck_quantity(v, num) == 0)
        return CK_BLOCK_NUMBER;
    static const struct {
        const char *s;
        size_t n;
    } tags[] = {{"\"latest\"", 8}, {"\"pending\"", 9}, {"\"safe\"", 6}, {"\"finalized\"", 11}, {"\"earliest\"", 10}};
    for (size_t i = 0; i != sizeof(tags) / sizeof(tags[0]); ++i)
        if (v.len == tags[i].n && memcmp(v.base, tags[i].s, v.len) == 0)
            return CK_BLOCK_TAG;
    return CK_BLOCK_INVALID;
}

/* A block parameter: a tag, a hex quantity, null (the method's default, "latest"), or EIP-1898's
 * {blockNumber} / {blockHash} (other members, such as requireCanonical, do not change the block). A
 * block hash is taken as realtime: whether the block it names is final is not known here. */
static ck_block_t block_param(dp_span_t v, uint64_t *num, int trusted)
{
    switch (v.base[0]) {
    case '"':
        return block_string(v, num);
    case 'n':
        return CK_BLOCK_TAG;
    case '{':
        break;
    default:
        return CK_BLOCK_INVALID;
    }
    static const ck_name_t names[] = {CK_NAME("blockNumber"), CK_NAME("blockHash")};
    dp_span_t vals[2];
    if (!pick_members(v, trusted, names, 2, vals, NULL))
        return CK_BLOCK_INVALID;
    dp_span_t number = vals[0], hash = vals[1];
    if ((number.base != NULL) == (hash.base != NULL))
        return CK_BLOCK_INVALID; /* neither or both: an upstream refuses it */
    if (hash.base != NULL)
        return hash.base[0] == '"' ? CK_BLOCK_TAG : CK_BLOCK_INVALID;
    return number.base[0] == '"' ? block_string(number, num) : CK_BLOCK_INVALID;
}

/* eth_getLogs' filter object. */
static cfg_cache_class_t classify_filter(dp_ck_req_t *req, dp_span_t f, int trusted)
{
    if (f.base[0] != '{')
        return CFG_CACHE_NEVER;
    static const ck_name_t names[] = {CK_NAME("fromBlock"), CK_NAME("toBlock"), CK_NAME("blockHash")};
    dp_span_t vals[3];
    if (!pick_members(f, trusted, names, 3, vals, NULL))
        return CFG_CACHE_NEVER;
    dp_span_t from = vals[0], to = vals[1], hash = vals[2];
    if (hash.base != NULL) /* a block by its hash; with a range too, an upstream refuses it */
        return from.base == NULL && to.base == NULL && hash.base[0] == '"' ? CFG_CACHE_BY_HASH : CFG_CACHE_NEVER;
    uint64_t a = 0, b = 0;
    ck_block_t fa = from.base != NULL ? block_param(from, &a, trusted) : CK_BLOCK_TAG;
    ck_block_t fb = to.base != NULL ? block_param(to, &b, trusted) : CK_BLOCK_TAG;
    if (fa == CK_BLOCK_INVALID || fb == CK_BLOCK_INVALID)
        return CFG_CACHE_NEVER;
    if (fa != CK_BLOCK_NUMBER || fb != CK_BLOCK_NUMBER)
        return CFG_CACHE_REALTIME;
    req->has_block = 1;
    req->block = a > b ? a : b;
    return CFG_CACHE_BY_BLOCK;
}

/* A by-block method whose block is params[index] (or the filter of eth_getLogs). */
static cfg_cache_class_t classify_block(dp_ck_req_t *req, int index)
{
    dp_span_t elem = {NULL, 0};
    int trusted = (req->_params_flags & CK_F_PARSED) != 0; /* a request made by hand is checked */
    if (req->params.base != NULL) {
        if (req->params.base[0] != '[')
            return CFG_CACHE_NEVER;
        int want = index == CFG_BLOCK_PARAM_FILTER ? 0 : index, i = 0, r;
        unsigned flags = 0;
        ck_iter_t it;
        dp_span_t e;
        iter_open(&it, req->params.base, req->params.base + req->params.len, 1, trusted);
        while ((r = arr_next(&it, &e, &flags)) > 0) {
            if (i++ == want) {
                elem = e;
                if (trusted)
                    break; /* the rest is known to be JSON */
            }
        }
        if (r < 0)
            return CFG_CACHE_NEVER;
    }
    if (index == CFG_BLOCK_PARAM_FILTER)
        return elem.base != NULL ? classify_filter(req, elem, trusted) : CFG_CACHE_NEVER;
    if (elem.base == NULL)
        return CFG_CACHE_REALTIME; /* no block: "latest" */
    uint64_t n = 0;
    switch (block_param(elem, &n, trusted)) {
    case CK_BLOCK_NUMBER:
        req->has_block = 1;
        req->block = n;
        return CFG_CACHE_BY_BLOCK;
    case CK_BLOCK_TAG:
        return CFG_CACHE_REALTIME;
    default:
        return CFG_CACHE_NEVER;
    }
}

void dp_ck_classify(dp_ck_req_t *req, const cfg_cache_method_t *ov)
{
    req->cls = CFG_CACHE_NEVER;
    req->has_block = 0;
    req->block = 0;
    if (req->method.base == NULL)
        return;
    const cfg_rpc_method_t *row = cfg_rpc_method_find(req->method.base, req->method.len);
    int cls = row != NULL ? (int)row->cls : CFG_CACHE_NEVER;
    if (ov != NULL) {
        if (!ov->enabled)
            return;
        if (ov->_set & CFG_CACHE_METHOD_HAS_CLASS) {
            cls = ov->cls;
            /* by block or by hash needs the table to say where the block is */
            if ((cls == CFG_CACHE_BY_BLOCK || cls == CFG_CACHE_BY_HASH) && (row == NULL || (int)row->cls != cls))
                return;
        }
    }
    char open = req->params.base != NULL ? req->params.base[0] : '[';
    switch (cls) {
    case CFG_CACHE_STATIC:
    case CFG_CACHE_REALTIME:
        /* positional or named params (an override may name a method that takes an object) */
        if (open != '[' && open != '{')
            return;
        req->cls = (cfg_cache_class_t)cls;
        return;
    case CFG_CACHE_BY_HASH:
        if (open != '[')
            return;
        req->cls = CFG_CACHE_BY_HASH;
        return;
    case CFG_CACHE_BY_BLOCK:
        req->cls = classify_block(req, row->block_param);
        if (req->cls != CFG_CACHE_BY_BLOCK) {
            req->has_block = 0;
            req->block = 0;
        }
        return;
    default:
        return;
    }
}

/* svc '\0' method '\0' into out when it fits; returns its length. */
static size_t key_head(const char *svc, size_t svclen, const dp_ck_req_t *req, char *out, size_t cap)
{
    size_t n = svclen + 1 + req->method.len + 1;
    if (n <= cap) {
        memcpy(out, svc, svclen);
        out[svclen] = '\0';
        memcpy(out + svclen + 1, req->method.base, req->method.len);
        out[n - 1] = '\0';
    }
    return n;
}

/* jansson's canonical form of the params (NULL when they are not JSON); caller frees. */
static char *params_dumps(const dp_ck_req_t *req)
{
    json_t *v = json_loadb(req->params.base, req->params.len, JSON_DECODE_ANY | JSON_ALLOW_NUL, NULL);
    if (v == NULL)
        return NULL;
    char *s = json_dumps(v, JSON_COMPACT | JSON_SORT_KEYS | JSON_ENCODE_ANY);
    json_decref(v);
    return s;
}

/* The params without blanks between tokens, written to out unless it is NULL; returns their length.
 * Only for values without escapes, where a '"' always opens or closes a string. */
static size_t compact(const char *p, const char *end, char *out)
{
    size_t n = 0;
    int in_str = 0;
    for (; p != end; ++p) {
        char c = *p;
        if (c == '"')
            in_str = !in_str;
        else if (!in_str && is_ws((unsigned char)c))
            continue;
        if (out != NULL)
            out[n] = c;
        ++n;
    }
    return n;
}

/* Output that is written while it fits and counted always (once a write does not fit, none after it
 * does: the count only grows). */
typedef struct st_ck_out_t {
    char *base;
    size_t cap, n;
} ck_out_t;

CK_INLINE void out_put(ck_out_t *o, const char *s, size_t len)
{
    if (o->n + len <= o->cap)
        memcpy(o->base + o->n, s, len);
    o->n += len;
}

CK_INLINE void out_byte(ck_out_t *o, char c)
{
    if (o->n < o->cap)
        o->base[o->n] = c;
    ++o->n;
}

/* strcmp's order, which jansson's JSON_SORT_KEYS uses, on names without escapes (so without NUL). */
static int name_cmp(dp_span_t a, dp_span_t b)
{
    int c = memcmp(a.base, b.base, a.len < b.len ? a.len : b.len);
    return c != 0 ? c : (a.len > b.len) - (a.len < b.len);
}

/* jansson's canonical form of a value that holds no escape, non-ASCII byte, real or big integer (those
 * are written as they are): objects with their members sorted by name, no blanks. Returns 0, or -1
 * when jansson must write it: a name given twice (jansson keeps the last value), an object too large
 * or too deep to sort here. */
static int canon(dp_span_t v, int depth, ck_out_t *o)
{
    ck_iter_t it;
    int r;
    switch (v.base[0]) {
    case '{': {
        ck_member_t m[CK_SORT_MEMBERS], cur;
        size_t n = 0;
        if (depth > CK_SORT_DEPTH)
            return -1;
        iter_open(&it, v.base, v.base + v.len, 1, 1);
        while ((r = obj_next(&it, &cur)) > 0) {
            if (n == CK_SORT_MEMBERS)
                return -1;
            size_t i = n++;
            for (; i != 0; --i) { /* insertion: objects are small */
                int c = name_cmp(m[i - 1].name, cur.name);
                if (c == 0)
                    return -1;
                if (c < 0)
                    break;
                m[i] = m[i - 1];
            }
            m[i] = cur;
        }
        if (r < 0)
            return -1;
        out_byte(o, '{');
        for (size_t i = 0; i != n; ++i) {
            if (i != 0)
                out_byte(o, ',');
            out_byte(o, '"');
            out_put(o, m[i].name.base, m[i].name.len);
            out_put(o, "\":", 2);
            if (canon(m[i].value, depth + 1, o) != 0)
                return -1;
        }
        out_byte(o, '}');
        return 0;
    }
    case '[': {
        dp_span_t e;
        unsigned flags = 0;
        size_t i = 0;
        iter_open(&it, v.base, v.base + v.len, 1, 1);
        out_byte(o, '[');
        while ((r = arr_next(&it, &e, &flags)) > 0) {
            if (i++ != 0)
                out_byte(o, ',');
            if (canon(e, depth + 1, o) != 0)
                return -1;
        }
        out_byte(o, ']');
        return r;
    }
    default:
        out_put(o, v.base, v.len);
        return 0;
    }
}

size_t dp_ck_key(const char *svc, size_t svclen, const dp_ck_req_t *req, char *out, size_t cap)
{
    size_t head = key_head(svc, svclen, req, out, cap);
    if (req->params.base == NULL)
        return head;
    const char *p = req->params.base, *end = p + req->params.len;
    unsigned flags = req->_params_flags;
    if (!(flags & CK_F_PARSED) && skip_value(p, end, 1, &flags) != end)
        flags = CK_F_JANSSON; /* jansson says what it is (it nests deeper than the scanner) */
    if (flags & CK_F_OBJECT && !(flags & CK_F_JANSSON)) {
        ck_out_t o = {head < cap ? out + head : NULL, head < cap ? cap - head : 0, 0};
        if (canon(req->params, 1, &o) == 0)
            return head + o.n;
        flags |= CK_F_JANSSON;
    }
    if (flags & CK_F_JANSSON) {
        char *s = params_dumps(req);
        if (s == NULL)
            return 0;
        size_t n = strlen(s);
        if (head + n <= cap)
            memcpy(out + head, s, n);
        free(s);
        return head + n;
    }
    /* Only arrays, ASCII strings without escapes, small integers and literals: jansson's compact form
     * is these bytes without the blanks between tokens. Counted first only when the bytes as they are
     * would not fit. */
    size_t n = head + req->params.len;
    if (!(flags & CK_F_BLANK)) {
        if (n <= cap)
            memcpy(out + head, p, req->params.len);
        return n;
    }
    if (n > cap && (n = head + compact(p, end, NULL)) > cap)
        return n;
    return head + compact(p, end, out + head);
}

char *dp_ck_key_parsed(const char *svc, size_t svclen, const dp_ck_req_t *req, size_t *len)
{
    char *s = NULL;
    size_t slen = 0;
    if (req->params.base != NULL) {
        if ((s = params_dumps(req)) == NULL)
            return NULL;
        slen = strlen(s);
    }
    size_t head = svclen + 1 + req->method.len + 1;
    char *out = malloc(head + slen + 1);
    if (out != NULL) {
        key_head(svc, svclen, req, out, head);
        if (slen != 0)
            memcpy(out + head, s, slen);
        out[head + slen] = '\0';
        *len = head + slen;
    }
    free(s);
    return out;
}

long dp_ck_array(const char *body, size_t len, int (*fn)(void *ctx, size_t index, dp_span_t elem), void *ctx)
{
    const char *end = body + len, *p = skip_ws(body, end);
    if (p == end || *p != '[')
        return -2;
    /* the whole array is checked first, so that fn never hears of items of a body that is not JSON */
    unsigned flags = 0;
    const char *q = skip_value(p, end, 1, &flags);
    if (q == NULL || skip_ws(q, end) != end)
        return -1;
    ck_iter_t it;
    dp_span_t e;
    int r;
    size_t n = 0;
    iter_open(&it, p, q, 1, 1);
    while ((r = arr_next(&it, &e, &flags)) > 0)
        if (fn(ctx, n++, e) != 0)
            return -1;
    return r == 0 ? (long)n : -1;
}

/* The block of a result object: "blockNumber" when it has one (a transaction, a receipt), else
 * "number" (a block). Either one twice, or an escaped member name, and it is not read. */
static void answer_block(dp_span_t v, dp_ck_answer_t *out)
{
    static const ck_name_t names[] = {CK_NAME("blockNumber"), CK_NAME("number")};
    dp_span_t vals[2];
    if (!pick_members(v, 1, names, 2, vals, NULL))
        return;
    dp_span_t use = vals[0].base != NULL ? vals[0] : vals[1];
    if (use.base != NULL && dp_ck_quantity(use, &out->block) == 0)
        out->has_block = 1;
    else
        out->block = 0;
}

void dp_ck_answer(const char *body, size_t len, dp_ck_answer_t *out)
{
    const char *end = body + len, *p = skip_ws(body, end);
    memset(out, 0, sizeof(*out));
    if (p == end || *p != '{')
        return;
    static const ck_name_t names[] = {CK_NAME("id"), CK_NAME("jsonrpc"), CK_NAME("result"), CK_NAME("error")};
    dp_span_t vals[4];
    const char *after;
    if (!pick_members((dp_span_t){p, (size_t)(end - p)}, 0, names, 4, vals, &after) || skip_ws(after, end) != end)
        return;
    dp_span_t id = vals[0], jsonrpc = vals[1], result = vals[2], error = vals[3];
    if (id.base == NULL)
        return;
    char c = id.base[0];
    if (c != '"' && c != 'n' && c != '-' && !is_digit(c))
        return;
    /* "error": null beside a result is how some servers say "no error" */
    if (error.base != NULL && error.base[0] == 'n' && result.base != NULL)
        error.base = NULL;
    dp_ck_kind_t kind;
    if (error.base != NULL)
        kind = result.base == NULL ? DP_CK_ANSWER_ERROR : DP_CK_ANSWER_INVALID;
    else if (result.base == NULL)
        kind = DP_CK_ANSWER_INVALID;
    else if (result.base[0] == 'n')
        kind = DP_CK_ANSWER_NULL;
    else
        kind = DP_CK_ANSWER_RESULT;
    if (kind == DP_CK_ANSWER_INVALID)
        return;
    out->kind = kind;
    out->id = id;
    out->jsonrpc = jsonrpc;
    if (kind == DP_CK_ANSWER_RESULT && result.base[0] == '{')
        answer_block(result, out);
}
