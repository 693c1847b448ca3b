/* The config of the response cache (root `cache`, `defaults.cache`, `services[].cache`) and of
 * adaptive concurrency (`limiter.adaptive`): defaults, inheritance (ttl key by key, methods whole,
 * coalesce's presence), the method map's values and errors, decimals, cross-field rules, canonical
 * round trips, copies. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "cfg_internal.h"

#define SVC "services: [{id: e, endpoints: [{url: 'http://x'}]"

static json_t *j(const char *s)
{
    json_error_t e;
    json_t *v = json_loads(s, JSON_DECODE_ANY, &e);
    if (v == NULL)
        fail_msg("bad test JSON: %s", e.text);
    return v;
}

static cfg_t *parse_ok(const char *text)
{
    cfg_errors_t errs;
    cfg_errors_init(&errs);
    cfg_t *cfg = cfg_parse(text, strlen(text), CFG_FORMAT_AUTO, CFG_SCOPE_FLEET, &errs);
    if (cfg == NULL) {
        char *e = cfg_errors_join(&errs);
        fail_msg("unexpected errors:\n%s\nin:\n%s", e, text);
    }
    cfg_errors_dispose(&errs);
    return cfg;
}

static void assert_error(const char *text, const char *expected)
{
    cfg_errors_t errs;
    cfg_errors_init(&errs);
    cfg_t *cfg = cfg_parse(text, strlen(text), CFG_FORMAT_AUTO, CFG_SCOPE_FLEET, &errs);
    if (cfg != NULL)
        fail_msg("expected error '%s', document was accepted:\n%s", expected, text);
    char *e = cfg_errors_join(&errs);
    if (strstr(e, expected) == NULL)
        fail_msg("expected error '%s', got:\n%s\nin:\n%s", expected, e, text);
    free(e);
    cfg_errors_dispose(&errs);
}

/* the canonical (fleet) form of a document; caller frees */
static char *canonical_of(const char *text)
{
    cfg_t *cfg = parse_ok(text);
    char *c = cfg_canonical(cfg, CFG_SCOPE_FLEET);
    cfg_destroy(cfg);
    return c;
}

/* the canonical form of one service's JSON (emitted overrides only); caller frees */
static char *service_json(const cfg_t *cfg, size_t i, const char *key)
{
    json_t *doc = cfg_to_json(cfg, CFG_SCOPE_FLEET);
    json_t *v = json_object_get(json_array_get(json_object_get(doc, "services"), i), key);
    char *s = v != NULL ? cfg_json_canonical(v) : strdup("absent");
    json_decref(doc);
    return s;
}

static const cfg_cache_method_t *method_of(const cfg_cache_t *c, const char *name)
{
    for (size_t i = 0; i < c->methods.size; i++)
        if (strcmp(c->methods.entries[i].method, name) == 0)
            return &c->methods.entries[i];
    return NULL;
}

static void test_defaults(void **state)
{
    cfg_t *cfg = cfg_create_default();
    assert_int_equal(cfg->cache.max_bytes, 64 << 20);
    assert_int_equal(cfg->cache.max_entry, 1 << 20);
    const cfg_cache_t *c = &cfg->defaults.cache;
    assert_int_equal(c->enabled, 0);
    assert_int_equal(c->finality_depth, 64);
    assert_int_equal(c->ttl.final_ms, 0);
    assert_int_equal(c->ttl.unfinal_ms, 5000);
    assert_int_equal(c->ttl.realtime_ms, 1000);
    assert_int_equal(c->methods.size, 0);
    assert_int_equal(c->max_followers, 1000);
    assert_int_equal(c->coalesce_on, 0); /* follows enabled */
    const cfg_adaptive_t *a = &cfg->defaults.limiter.adaptive;
    assert_int_equal(a->enabled, 0);
    assert_int_equal(a->min_limit, 4);
    assert_int_equal(a->max_limit, 1000);
    assert_int_equal(a->initial_limit, 20);
    assert_int_equal(a->tolerance, 1500);
    assert_int_equal(a->window_ms, 1000);
    assert_int_equal(a->smoothing, 200);
    cfg_destroy(cfg);

    /* a service that says nothing has every default; the canonical form writes them under defaults,
     * decimals as written by people, and no coalesce (absent stays absent) */
    cfg = parse_ok(SVC "}]");
    const cfg_service_t *s = &cfg->services.entries[0];
    assert_int_equal(s->cache.ttl.unfinal_ms, 5000);
    assert_int_equal(s->limiter.adaptive.tolerance, 1500);
    char *canon = cfg_canonical(cfg, CFG_SCOPE_FLEET);
    assert_non_null(strstr(canon, "\"cache\":{\"enabled\":false,\"finality_depth\":64,\"max_followers\":1000,\"methods\":{},"
                                  "\"ttl\":{\"final\":\"0s\",\"realtime\":\"1s\",\"unfinal\":\"5s\"}}"));
    assert_non_null(strstr(canon, "\"cache\":{\"max_bytes\":\"64MiB\",\"max_entry\":\"1MiB\"}"));
    assert_non_null(strstr(canon, "\"adaptive\":{\"enabled\":false,\"initial_limit\":20,\"max_limit\":1000,\"min_limit\":4,"
                                  "\"smoothing\":0.2,\"tolerance\":1.5,\"window\":\"1s\"}"));
    assert_null(strstr(canon, "coalesce"));
    /* a service with no overrides emits neither section */
    assert_null(strstr(canon, "\"services\":[{\"cache\""));
    free(canon);
    cfg_destroy(cfg);

    /* the _set bits cfg.h names are the rows of the method override */
    const cfg_field_t *cache = cfg_struct_find(&cfg_policy_struct, "cache", 5);
    const cfg_field_t *methods = cfg_struct_find(cache->sub, "methods", 7);
    assert_int_equal(methods->type, CFG_T_STRUCTMAP);
    const cfg_struct_t *m = methods->sub;
    assert_string_equal(cfg_struct_key(m)->name, "method");
    /* bits 0, 1, 2: what the dataplane's reader of overrides was written against */
    assert_int_equal(CFG_CACHE_METHOD_HAS_TTL, 1ull << 1);
    assert_int_equal(CFG_CACHE_METHOD_HAS_CLASS, 1ull << 2);
    assert_int_equal(1ull << (cfg_struct_find(m, "ttl", 3) - m->fields), CFG_CACHE_METHOD_HAS_TTL);
    assert_int_equal(1ull << (cfg_struct_find(m, "class", 5) - m->fields), CFG_CACHE_METHOD_HAS_CLASS);
}

static void test_root_cache(void **state)
{
    cfg_t *cfg = parse_ok("cache: {max_bytes: 0, max_entry: 64}\n" SVC "}]");
    assert_int_equal(cfg->cache.max_bytes, 0); /* nothing is stored */
    assert_int_equal(cfg->cache.max_entry, 64);
    cfg_destroy(cfg);
    cfg = parse_ok("cache: {max_bytes: 64GiB, max_entry: 1GiB}\n" SVC "}]");
    assert_int_equal(cfg->cache.max_bytes, 64ull << 30);
    cfg_destroy(cfg);
    assert_error("cache: {max_bytes: 65GiB}\n" SVC "}]", "cache.max_bytes: must be between 0B and 64GiB");
    assert_error("cache: {max_entry: 63}\n" SVC "}]", "cache.max_entry: must be between 64B and 1GiB");
    assert_error("cache: {max_entry: 2GiB}\n" SVC "}]", "cache.max_entry: must be between 64B and 1GiB");
    assert_error("cache: {max_byte: 1MiB}\n" SVC "}]", "cache.max_byte: unknown key (did you mean 'max_bytes'?)");
    assert_error("cache: {enabled: true}\n" SVC "}]", "cache.enabled: unknown key"); /* per service, not here */
}

static void test_inheritance(void **state)
{
    const char *doc = "defaults:\n"
                      "  cache:\n"
                      "    enabled: true\n"
                      "    ttl: {unfinal: 7s}\n"
                      "    methods: {eth_call: 'off', eth_getLogs: {ttl: 10s}}\n"
                      "services:\n"
                      "  - id: a\n    endpoints: [{url: 'http://a'}]\n    cache: {ttl: {final: 1h}}\n"
                      "  - id: b\n    endpoints: [{url: 'http://b'}]\n    cache: {methods: {eth_chainId: {class: static}}}\n"
                      "  - id: c\n    endpoints: [{url: 'http://c'}]\n    cache: {methods: {}, finality_depth: 0}\n";
    cfg_t *cfg = parse_ok(doc);
    const cfg_cache_t *a = &cfg->services.entries[0].cache, *b = &cfg->services.entries[1].cache,
                      *c = &cfg->services.entries[2].cache;
    /* ttl key by key: a sets final and keeps defaults' unfinal (7s, not the table's 5s) */
    assert_int_equal(a->ttl.final_ms, 3600000);
    assert_int_equal(a->ttl.unfinal_ms, 7000);
    assert_int_equal(a->ttl.realtime_ms, 1000);
    assert_int_equal(a->enabled, 1);
    /* methods whole: a takes defaults' map, b's own replaces it, c's empty one too */
    assert_int_equal(a->methods.size, 2);
    assert_string_equal(a->methods.entries[0].method, "eth_call");
    assert_int_equal(a->methods.entries[0].enabled, 0);
    assert_string_equal(a->methods.entries[1].method, "eth_getLogs");
    assert_int_equal(a->methods.entries[1].ttl_ms, 10000);
    assert_int_equal(b->methods.size, 1);
    assert_string_equal(b->methods.entries[0].method, "eth_chainId");
    assert_int_equal(b->methods.entries[0].cls, CFG_CACHE_STATIC);
    assert_null(method_of(b, "eth_call"));
    assert_int_equal(c->methods.size, 0);
    assert_int_equal(c->finality_depth, 0);
    assert_int_equal(c->ttl.unfinal_ms, 7000);

    /* the canonical form keeps each service's own keys only */
    char *s = service_json(cfg, 0, "cache");
    assert_string_equal(s, "{\"ttl\":{\"final\":\"1h\"}}");
    free(s);
    s = service_json(cfg, 1, "cache");
    assert_string_equal(s, "{\"methods\":{\"eth_chainId\":{\"class\":\"static\",\"enabled\":true}}}");
    free(s);
    s = service_json(cfg, 2, "cache");
    assert_string_equal(s, "{\"finality_depth\":0,\"methods\":{}}");
    free(s);

    /* so a later change of defaults reaches what a service did not set, and only that */
    json_t *out = cfg_to_json(cfg, CFG_SCOPE_FLEET);
    json_t *patch =
        j("{\"defaults\":{\"cache\":{\"ttl\":{\"unfinal\":\"9s\",\"final\":\"2s\"},\"methods\":{\"eth_call\":\"on\"}}}}");
    json_t *patched = cfg_merge_patch(out, patch);
    cfg_errors_t errs;
    cfg_errors_init(&errs);
    cfg_t *after = cfg_decode(patched, CFG_SCOPE_FLEET, &errs);
    assert_non_null(after);
    a = &after->services.entries[0].cache;
    assert_int_equal(a->ttl.unfinal_ms, 9000);
    assert_int_equal(a->ttl.final_ms, 3600000);
    assert_int_equal(a->methods.size, 2); /* merge patch merged the map: eth_call on, eth_getLogs kept */
    assert_int_equal(method_of(a, "eth_call")->enabled, 1);
    assert_int_equal(method_of(a, "eth_getLogs")->ttl_ms, 10000);
    assert_int_equal(after->services.entries[1].cache.methods.size, 1);
    assert_int_equal(after->services.entries[2].cache.methods.size, 0);
    cfg_destroy(after);
    cfg_errors_dispose(&errs);
    json_decref(patch);
    json_decref(patched);
    json_decref(out);
    cfg_destroy(cfg);
}

static void test_method_values(void **state)
{
    cfg_t *cfg = parse_ok("defaults:\n  cache:\n    methods:\n"
                          "      zz_custom: {class: realtime, ttl: 250ms}\n"
                          "      eth_call: 'off'\n"
                          "      eth_getBalance: 'on'\n"
                          "      eth_getCode: {}\n"
                          "      eth_getLogs: {enabled: false, ttl: 0s}\n"
                          "      eth_sendRawTransaction: {class: never}\n" SVC "}]");
    const cfg_cache_t *c = &cfg->defaults.cache;
    assert_int_equal(c->methods.size, 6);
    /* document order, not sorted */
    assert_string_equal(c->methods.entries[0].method, "zz_custom");
    assert_string_equal(c->methods.entries[5].method, "eth_sendRawTransaction");
    const cfg_cache_method_t *m = method_of(c, "zz_custom");
    assert_int_equal(m->enabled, 1);
    assert_int_equal(m->cls, CFG_CACHE_REALTIME);
    assert_int_equal(m->ttl_ms, 250);
    assert_true(m->_set & CFG_CACHE_METHOD_HAS_TTL);
    assert_true(m->_set & CFG_CACHE_METHOD_HAS_CLASS);
    m = method_of(c, "eth_call");
    assert_int_equal(m->enabled, 0);
    assert_false(m->_set & (CFG_CACHE_METHOD_HAS_TTL | CFG_CACHE_METHOD_HAS_CLASS));
    m = method_of(c, "eth_getBalance");
    assert_int_equal(m->enabled, 1);
    assert_false(m->_set & (CFG_CACHE_METHOD_HAS_TTL | CFG_CACHE_METHOD_HAS_CLASS));
    m = method_of(c, "eth_getCode");
    assert_int_equal(m->enabled, 1);
    assert_false(m->_set & (CFG_CACHE_METHOD_HAS_TTL | CFG_CACHE_METHOD_HAS_CLASS));
    m = method_of(c, "eth_getLogs");
    assert_int_equal(m->enabled, 0);
    assert_true(m->_set & CFG_CACHE_METHOD_HAS_TTL); /* 0s given: until evicted, not "absent" */
    assert_int_equal(m->ttl_ms, 0);
    m = method_of(c, "eth_sendRawTransaction");
    assert_int_equal(m->cls, CFG_CACHE_NEVER);
    assert_true(m->_set & CFG_CACHE_METHOD_HAS_CLASS);
    /* canonical: every entry an object; "off" is {enabled: false}, "on" and {} are {enabled: true} */
    json_t *doc = cfg_to_json(cfg, CFG_SCOPE_FLEET);
    char *s = cfg_json_canonical(json_object_get(json_object_get(json_object_get(doc, "defaults"), "cache"), "methods"));
    assert_string_equal(s,
                        "{\"eth_call\":{\"enabled\":false},\"eth_getBalance\":{\"enabled\":true},\"eth_getCode\":{\"enabled\":"
                        "true},\"eth_getLogs\":{\"enabled\":false,\"ttl\":\"0s\"},\"eth_sendRawTransaction\":{\"class\":"
                        "\"never\",\"enabled\":true},\"zz_custom\":{\"class\":\"realtime\",\"enabled\":true,\"ttl\":\"250ms\"}}");
    free(s);
    json_decref(doc);
    cfg_destroy(cfg);

    /* "off" and {enabled: false} are one document */
    char *c1 = canonical_of("defaults: {cache: {methods: {eth_call: 'off'}}}\n" SVC "}]");
    char *c2 =
        canonical_of("{\"defaults\":{\"cache\":{\"methods\":{\"eth_call\":{\"enabled\":false}}}},\"services\":[{\"id\":\"e\","
                     "\"endpoints\":[{\"url\":\"http://x\"}]}]}");
    assert_string_equal(c1, c2);
    free(c1);
    free(c2);
}

static void test_method_errors(void **state)
{
    static const char *const cases[][2] = {
        {"defaults: {cache: {methods: {eth_call: maybe}}}\n" SVC "}]",
         "defaults.cache.methods.eth_call: must be \"off\", \"on\" or a mapping (got \"maybe\")"},
        {"defaults: {cache: {methods: {eth_call: 3}}}\n" SVC "}]",
         "defaults.cache.methods.eth_call: must be \"off\", \"on\" or a mapping, not an integer"},
        {"defaults: {cache: {methods: {eth_call: false}}}\n" SVC "}]",
         "defaults.cache.methods.eth_call: must be \"off\", \"on\" or a mapping, not a boolean"},
        {"defaults: {cache: {methods: {eth_call: [ttl]}}}\n" SVC "}]",
         "defaults.cache.methods.eth_call: must be \"off\", \"on\" or a mapping, not a list"},
        {"defaults: {cache: {methods: {eth_call: 'OFF'}}}\n" SVC "}]", "defaults.cache.methods.eth_call: must be \"off\""},
        {"defaults: {cache: {methods: {eth_call: {ttl: 721h}}}}\n" SVC "}]",
         "defaults.cache.methods.eth_call.ttl: must be between 0s and 720h"},
        {"defaults: {cache: {methods: {eth_call: {ttl: soon}}}}\n" SVC "}]",
         "defaults.cache.methods.eth_call.ttl: must be a duration"},
        {"defaults: {cache: {methods: {eth_call: {class: by_block}}}}\n" SVC "}]",
         "defaults.cache.methods.eth_call.class: must be one of never, static, realtime (got \"by_block\")"},
        {"defaults: {cache: {methods: {eth_call: {class: by_hash}}}}\n" SVC "}]",
         "defaults.cache.methods.eth_call.class: must be one of never, static, realtime"},
        {"defaults: {cache: {methods: {eth_call: {method: eth_call}}}}\n" SVC "}]",
         "defaults.cache.methods.eth_call.method: unknown key"},
        {"defaults: {cache: {methods: {eth_call: {tll: 1s}}}}\n" SVC "}]",
         "defaults.cache.methods.eth_call.tll: unknown key (did you mean 'ttl'?)"},
        {"defaults: {cache: {methods: {'eth call': 'off'}}}\n" SVC "}]",
         "defaults.cache.methods.eth call: a method name may contain only"},
        {"defaults: {cache: {methods: {'': 'off'}}}\n" SVC "}]", "defaults.cache.methods.: must not be empty"},
        {"defaults: {cache: {methods: [eth_call]}}\n" SVC "}]",
         "defaults.cache.methods: must be a mapping of names to sections, not a list"},
        {SVC ", cache: {methods: {eth_call: {enabled: 'no'}}}}]",
         "services[0].cache.methods.eth_call.enabled: must be true or false, not a string"},
        {SVC ", cache: {methods: {eth_call: nope}}}]", "services[0].cache.methods.eth_call: must be \"off\", \"on\" or a mapping"},
        {SVC ", cache: {enabled: 1}}]", "services[0].cache.enabled: must be true or false, not an integer"},
        {SVC ", cache: {coalesce: yes}}]", "services[0].cache.coalesce: must be true or false, not a string"},
        {SVC ", cache: {max_followers: 0}}]", "services[0].cache.max_followers: must be between 1 and 100000"},
        {SVC ", cache: {finality_depth: 1000001}}]", "services[0].cache.finality_depth: must be between 0 and 1000000"},
        {SVC ", cache: {ttl: {unfinal: 1y}}}]", "services[0].cache.ttl.unfinal: must be a duration"},
        {SVC ", cache: {ttl: {final: 721h}}}]", "services[0].cache.ttl.final: must be between 0s and 720h"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
        assert_error(cases[i][0], cases[i][1]);
    /* every bad entry is reported, not just the first */
    cfg_errors_t errs;
    cfg_errors_init(&errs);
    const char *doc = "defaults: {cache: {methods: {a: x, b: {ttl: x}, c: 'off', d: {class: y}}}}\n" SVC "}]";
    assert_null(cfg_parse(doc, strlen(doc), CFG_FORMAT_YAML, CFG_SCOPE_FLEET, &errs));
    assert_int_equal(errs.size, 3);
    cfg_errors_dispose(&errs);
    /* at most 1024 entries */
    size_t cap = 64 * 1100;
    char *big = malloc(cap);
    strcpy(big, "defaults: {cache: {methods: {");
    for (int i = 0; i < 1025; i++)
        snprintf(big + strlen(big), cap - strlen(big), "%sm%d: 'off'", i ? ", " : "", i);
    strcat(big, "}}}\n" SVC "}]");
    assert_error(big, "defaults.cache.methods: must have between 0 and 1024 entries");
    free(big);
}

static void test_coalesce(void **state)
{
    /* absent: follows enabled, effective (inherited) enabled included */
    cfg_t *cfg = parse_ok("defaults: {cache: {enabled: true}}\n"
                          "services:\n"
                          "  - {id: a, endpoints: [{url: 'http://a'}]}\n"
                          "  - {id: b, endpoints: [{url: 'http://b'}], cache: {enabled: false}}\n"
                          "  - {id: c, endpoints: [{url: 'http://c'}], cache: {enabled: false, coalesce: true}}\n"
                          "  - {id: d, endpoints: [{url: 'http://d'}], cache: {coalesce: false}}\n");
    assert_int_equal(cfg->defaults.cache.coalesce_on, 1);
    assert_int_equal(cfg->services.entries[0].cache.coalesce_on, 1);
    assert_int_equal(cfg->services.entries[1].cache.coalesce_on, 0);
    assert_int_equal(cfg->services.entries[2].cache.coalesce_on, 1);
    assert_int_equal(cfg->services.entries[3].cache.coalesce_on, 0);
    assert_int_equal(cfg->services.entries[3].cache.enabled, 1);
    cfg_destroy(cfg);

    /* set in defaults: a service that does not set it takes it, value and presence, so enabling
     * the cache there does not switch coalescing on; and it stays defaults' (not emitted) */
    const char *doc = "defaults: {cache: {coalesce: false}}\n"
                      "services:\n"
                      "  - {id: a, endpoints: [{url: 'http://a'}], cache: {enabled: true}}\n"
                      "  - {id: b, endpoints: [{url: 'http://b'}], cache: {enabled: true, coalesce: true}}\n";
    cfg = parse_ok(doc);
    assert_int_equal(cfg->defaults.cache.coalesce_on, 0);
    assert_int_equal(cfg->services.entries[0].cache.coalesce_on, 0);
    assert_int_equal(cfg->services.entries[1].cache.coalesce_on, 1);
    char *s = service_json(cfg, 0, "cache");
    assert_string_equal(s, "{\"enabled\":true}");
    free(s);
    /* a copy keeps the derived member */
    cfg_t *copy = cfg_dup(cfg);
    assert_int_equal(copy->services.entries[0].cache.coalesce_on, 0);
    assert_int_equal(copy->services.entries[1].cache.coalesce_on, 1);
    /* the canonical form reads back the same, coalesce_on too */
    char *c1 = cfg_canonical(cfg, CFG_SCOPE_FLEET);
    cfg_t *again = parse_ok(c1);
    assert_int_equal(again->services.entries[0].cache.coalesce_on, 0);
    char *c2 = cfg_canonical(again, CFG_SCOPE_FLEET);
    assert_string_equal(c1, c2);
    /* taking coalesce out of defaults: a follows its enabled again */
    json_t *out = cfg_to_json(cfg, CFG_SCOPE_FLEET);
    json_t *patch = j("{\"defaults\":{\"cache\":{\"coalesce\":null}}}");
    json_t *patched = cfg_merge_patch(out, patch);
    cfg_errors_t errs;
    cfg_errors_init(&errs);
    cfg_t *after = cfg_decode(patched, CFG_SCOPE_FLEET, &errs);
    assert_non_null(after);
    assert_int_equal(after->services.entries[0].cache.coalesce_on, 1);
    assert_int_equal(after->defaults.cache.coalesce_on, 0);
    cfg_destroy(after);
    cfg_errors_dispose(&errs);
    json_decref(patch);
    json_decref(patched);
    json_decref(out);
    free(c1);
    free(c2);
    cfg_destroy(again);
    cfg_destroy(copy);
    cfg_destroy(cfg);
}

static void test_milli(void **state)
{
    /* YAML 1.5, JSON 1.5 and 1.50, and a value that rounds to the same thousandth: one canonical form */
    const char *texts[] = {
        "defaults: {limiter: {adaptive: {tolerance: 1.5, smoothing: 0.2}}}\n" SVC "}]",
        "defaults: {limiter: {adaptive: {tolerance: 1.50, smoothing: .2}}}\n" SVC "}]",
        "{\"defaults\":{\"limiter\":{\"adaptive\":{\"tolerance\":1.5,\"smoothing\":0.2}}},\"services\":[{\"id\":\"e\","
        "\"endpoints\":[{\"url\":\"http://x\"}]}]}",
        "{\"defaults\":{\"limiter\":{\"adaptive\":{\"tolerance\":1.50,\"smoothing\":0.20}}},\"services\":[{\"id\":\"e\","
        "\"endpoints\":[{\"url\":\"http://x\"}]}]}",
        "{\"defaults\":{\"limiter\":{\"adaptive\":{\"tolerance\":1.5004,\"smoothing\":2e-1}}},\"services\":[{\"id\":\"e\","
        "\"endpoints\":[{\"url\":\"http://x\"}]}]}",
    };
    char *first = NULL;
    for (size_t i = 0; i < sizeof(texts) / sizeof(texts[0]); i++) {
        cfg_t *cfg = parse_ok(texts[i]);
        assert_int_equal(cfg->defaults.limiter.adaptive.tolerance, 1500);
        assert_int_equal(cfg->defaults.limiter.adaptive.smoothing, 200);
        char *c = cfg_canonical(cfg, CFG_SCOPE_FLEET);
        assert_non_null(strstr(c, "\"smoothing\":0.2,\"tolerance\":1.5,"));
        if (first == NULL)
            first = c;
        else {
            assert_string_equal(first, c);
            free(c);
        }
        cfg_destroy(cfg);
    }
    free(first);
    /* an integer is a decimal too, and written as one */
    cfg_t *cfg = parse_ok("defaults: {limiter: {adaptive: {tolerance: 2, smoothing: 1}}}\n" SVC "}]");
    assert_int_equal(cfg->defaults.limiter.adaptive.tolerance, 2000);
    assert_int_equal(cfg->defaults.limiter.adaptive.smoothing, 1000);
    char *c = cfg_canonical(cfg, CFG_SCOPE_FLEET);
    assert_non_null(strstr(c, "\"smoothing\":1.0,\"tolerance\":2.0,"));
    /* ...and the YAML form reads back the same */
    json_t *tree = cfg_to_json(cfg, CFG_SCOPE_FLEET);
    char *y = cfg_json_to_yaml(tree);
    assert_non_null(strstr(y, "smoothing: 1.0\n"));
    cfg_t *fromyaml = parse_ok(y);
    char *c2 = cfg_canonical(fromyaml, CFG_SCOPE_FLEET);
    assert_string_equal(c, c2);
    free(c2);
    free(y);
    free(c);
    json_decref(tree);
    cfg_destroy(fromyaml);
    cfg_destroy(cfg);
    /* the bounds themselves, and the smallest step */
    cfg = parse_ok("defaults: {limiter: {adaptive: {tolerance: 10, smoothing: 0.001}}}\n" SVC "}]");
    assert_int_equal(cfg->defaults.limiter.adaptive.tolerance, 10000);
    assert_int_equal(cfg->defaults.limiter.adaptive.smoothing, 1);
    c = cfg_canonical(cfg, CFG_SCOPE_FLEET);
    assert_non_null(strstr(c, "\"smoothing\":0.001,\"tolerance\":10.0,"));
    free(c);
    cfg_destroy(cfg);

    static const char *const cases[][2] = {
        {"defaults: {limiter: {adaptive: {tolerance: x}}}\n" SVC "}]",
         "defaults.limiter.adaptive.tolerance: must be a number such as 1.5, not a string"},
        {"defaults: {limiter: {adaptive: {tolerance: '1.5'}}}\n" SVC "}]",
         "defaults.limiter.adaptive.tolerance: must be a number such as 1.5, not a string"},
        {"defaults: {limiter: {adaptive: {tolerance: true}}}\n" SVC "}]",
         "defaults.limiter.adaptive.tolerance: must be a number such as 1.5, not a boolean"},
        {"defaults: {limiter: {adaptive: {tolerance: 0.999}}}\n" SVC "}]",
         "defaults.limiter.adaptive.tolerance: must be between 1 and 10"},
        {"defaults: {limiter: {adaptive: {tolerance: 10.001}}}\n" SVC "}]",
         "defaults.limiter.adaptive.tolerance: must be between 1 and 10"},
        {"defaults: {limiter: {adaptive: {tolerance: -1.5}}}\n" SVC "}]",
         "defaults.limiter.adaptive.tolerance: must be between 1 and 10"},
        {"defaults: {limiter: {adaptive: {tolerance: 1e300}}}\n" SVC "}]",
         "defaults.limiter.adaptive.tolerance: must be between 1 and 10"},
        {"defaults: {limiter: {adaptive: {tolerance: 99999999999999999}}}\n" SVC "}]",
         "defaults.limiter.adaptive.tolerance: must be between 1 and 10"},
        {"defaults: {limiter: {adaptive: {smoothing: 0}}}\n" SVC "}]",
         "defaults.limiter.adaptive.smoothing: must be between 0.001 and 1"},
        {"defaults: {limiter: {adaptive: {smoothing: 0.0004}}}\n" SVC "}]", /* rounds to 0 */
         "defaults.limiter.adaptive.smoothing: must be between 0.001 and 1"},
        {"defaults: {limiter: {adaptive: {smoothing: 1.0006}}}\n" SVC "}]",
         "defaults.limiter.adaptive.smoothing: must be between 0.001 and 1"},
        {SVC ", limiter: {adaptive: {smoothing: [0.2]}}}]", "services[0].limiter.adaptive.smoothing: must be a number"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
        assert_error(cases[i][0], cases[i][1]);
    /* 1.0004 rounds to 1.0: in bounds */
    cfg = parse_ok("defaults: {limiter: {adaptive: {smoothing: 1.0004}}}\n" SVC "}]");
    assert_int_equal(cfg->defaults.limiter.adaptive.smoothing, 1000);
    cfg_destroy(cfg);
}

static void test_adaptive(void **state)
{
    /* key by key from defaults, the canonical form keeping the service's own keys */
    cfg_t *cfg = parse_ok("defaults: {limiter: {max_concurrent: 50, adaptive: {tolerance: 2, window: 500ms, max_limit: 300}}}\n"
                          "services:\n"
                          "  - {id: a, endpoints: [{url: 'http://a'}], limiter: {adaptive: {enabled: true, smoothing: 0.5}}}\n"
                          "  - {id: b, endpoints: [{url: 'http://b'}], limiter: {max_concurrent: 9}}\n");
    const cfg_adaptive_t *a = &cfg->services.entries[0].limiter.adaptive, *b = &cfg->services.entries[1].limiter.adaptive;
    assert_int_equal(a->enabled, 1);
    assert_int_equal(a->smoothing, 500);
    assert_int_equal(a->tolerance, 2000);
    assert_int_equal(a->window_ms, 500);
    assert_int_equal(a->max_limit, 300);
    assert_int_equal(a->min_limit, 4);
    assert_int_equal(cfg->services.entries[0].limiter.max_concurrent, 50);
    assert_int_equal(b->enabled, 0);
    assert_int_equal(b->tolerance, 2000);
    assert_int_equal(cfg->services.entries[1].limiter.max_concurrent, 9);
    char *s = service_json(cfg, 0, "limiter");
    assert_string_equal(s, "{\"adaptive\":{\"enabled\":true,\"smoothing\":0.5}}");
    free(s);
    s = service_json(cfg, 1, "limiter");
    assert_string_equal(s, "{\"max_concurrent\":9}");
    free(s);
    cfg_destroy(cfg);

    /* min_limit <= initial_limit <= max_limit, on effective values, naming the section's owner */
    static const char *const cases[][2] = {
        {"defaults: {limiter: {adaptive: {min_limit: 30}}}\n" SVC "}]",
         "defaults.limiter.adaptive.initial_limit: must be between limiter.adaptive.min_limit and max_limit (min_limit 30, "
         "initial_limit 20, max_limit 1000)"},
        {"defaults: {limiter: {adaptive: {max_limit: 10}}}\n" SVC "}]",
         "defaults.limiter.adaptive.initial_limit: must be between limiter.adaptive.min_limit and max_limit (min_limit 4, "
         "initial_limit 20, max_limit 10)"},
        {"defaults: {limiter: {adaptive: {min_limit: 500, max_limit: 100, initial_limit: 200}}}\n" SVC "}]",
         "defaults.limiter.adaptive.min_limit: must be at most limiter.adaptive.max_limit (min_limit 500, max_limit 100)"},
        /* the service sets one bound, defaults' initial_limit breaks the rule */
        {SVC ", limiter: {adaptive: {min_limit: 50}}}]",
         "services[0].limiter.adaptive.initial_limit: must be between limiter.adaptive.min_limit and max_limit (min_limit 50, "
         "initial_limit 20, max_limit 1000)"},
        {"defaults: {limiter: {adaptive: {initial_limit: 100}}}\n" SVC ", limiter: {adaptive: {max_limit: 50}}}]",
         "services[0].limiter.adaptive.initial_limit: must be between"},
        {SVC ", limiter: {adaptive: {min_limit: 0}}}]", "services[0].limiter.adaptive.min_limit: must be between 1 and 100000"},
        {SVC ", limiter: {adaptive: {window: 99ms}}}]", "services[0].limiter.adaptive.window: must be between 100ms and 1m"},
        {SVC ", limiter: {adaptive: {window: 61s}}}]", "services[0].limiter.adaptive.window: must be between 100ms and 1m"},
        {SVC ", limiter: {adaptive: {enabled: on}}}]", "services[0].limiter.adaptive.enabled: must be true or false"},
        {SVC ", limiter: {adaptive: {tolerence: 2}}}]",
         "services[0].limiter.adaptive.tolerence: unknown key (did you mean 'tolerance'?)"},
        {SVC ", limiter: {adaptive: true}}]", "services[0].limiter.adaptive: must be a mapping of keys, not a boolean"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
        assert_error(cases[i][0], cases[i][1]);
    /* the bounds may meet; a service may move all three away from defaults' */
    cfg = parse_ok("defaults: {limiter: {adaptive: {min_limit: 7, initial_limit: 7, max_limit: 7}}}\n" SVC
                   ", limiter: {adaptive: {min_limit: 50, initial_limit: 60, max_limit: 100}}}]");
    assert_int_equal(cfg->defaults.limiter.adaptive.initial_limit, 7);
    assert_int_equal(cfg->services.entries[0].limiter.adaptive.min_limit, 50);
    assert_int_equal(cfg->services.entries[0].limiter.adaptive.max_limit, 100);
    cfg_destroy(cfg);
    /* ...but not leave one behind: defaults' max_limit 7 stays */
    assert_error("defaults: {limiter: {adaptive: {min_limit: 7, initial_limit: 7, max_limit: 7}}}\n" SVC
                 ", limiter: {adaptive: {min_limit: 50, initial_limit: 60}}}]",
                 "services[0].limiter.adaptive.min_limit: must be at most limiter.adaptive.max_limit (min_limit 50, max_limit 7)");
}

static void test_roundtrip(void **state)
{
    /* every new key set to something other than its default, in YAML and in JSON */
    const char *yaml = "cache: {max_bytes: 128MiB, max_entry: 512KiB}\n"
                       "defaults:\n"
                       "  limiter:\n"
                       "    adaptive: {enabled: true, min_limit: 2, max_limit: 64, initial_limit: 8, tolerance: 1.25,\n"
                       "               window: 250ms, smoothing: 0.35}\n"
                       "  cache:\n"
                       "    enabled: true\n"
                       "    finality_depth: 12\n"
                       "    ttl: {final: 1h, unfinal: 3s, realtime: 500ms}\n"
                       "    methods: {eth_call: 'off', debug_x: {class: static, ttl: 2m}, eth_getLogs: 'on'}\n"
                       "    coalesce: false\n"
                       "    max_followers: 10\n"
                       "services:\n"
                       "  - id: e\n"
                       "    endpoints: [{url: 'http://x'}]\n"
                       "    limiter: {adaptive: {tolerance: 3, initial_limit: 9}}\n"
                       "    cache: {ttl: {realtime: 0s}, methods: {eth_chainId: {class: never, enabled: false}}, coalesce: true}\n";
    const char *json =
        "{\"services\":[{\"id\":\"e\",\"endpoints\":[{\"url\":\"http://x\"}],\"limiter\":{\"adaptive\":{\"initial_limit\":9,"
        "\"tolerance\":3.0}},\"cache\":{\"coalesce\":true,\"methods\":{\"eth_chainId\":{\"enabled\":false,\"class\":\"never\"}},"
        "\"ttl\":{\"realtime\":\"0ms\"}}}],\"defaults\":{\"cache\":{\"max_followers\":10,\"coalesce\":false,\"methods\":{"
        "\"debug_x\":{\"ttl\":\"120s\",\"class\":\"static\"},\"eth_getLogs\":{\"enabled\":true},\"eth_call\":{\"enabled\":false}},"
        "\"ttl\":{\"realtime\":\"500ms\",\"unfinal\":\"3000ms\",\"final\":\"60m\"},\"finality_depth\":12,\"enabled\":true},"
        "\"limiter\":{\"adaptive\":{\"smoothing\":0.350,\"window\":\"250ms\",\"tolerance\":1.25,\"initial_limit\":8,\"max_limit\":"
        "64,\"min_limit\":2,\"enabled\":true}}},\"cache\":{\"max_entry\":524288,\"max_bytes\":\"128MiB\"}}";
    cfg_t *a = parse_ok(yaml), *b = parse_ok(json);
    char *ca = cfg_canonical(a, CFG_SCOPE_FLEET), *cb = cfg_canonical(b, CFG_SCOPE_FLEET);
    assert_string_equal(ca, cb);
    char ha[65], hb[65];
    cfg_hash(a, CFG_SCOPE_FLEET, ha);
    cfg_hash(b, CFG_SCOPE_FLEET, hb);
    assert_string_equal(ha, hb);
    assert_non_null(strstr(ca, "\"smoothing\":0.35,\"tolerance\":1.25,"));
    assert_non_null(strstr(ca, "\"methods\":{\"debug_x\":{\"class\":\"static\",\"enabled\":true,\"ttl\":\"2m\"},\"eth_call\":{"
                               "\"enabled\":false},\"eth_getLogs\":{\"enabled\":true}}"));
    assert_non_null(strstr(ca, "\"cache\":{\"coalesce\":true,\"methods\":{\"eth_chainId\":{\"class\":\"never\",\"enabled\":"
                               "false}},\"ttl\":{\"realtime\":\"0s\"}}"));
    /* parse(emit(x)) == x, through JSON and through YAML, and a deep copy emits the same */
    cfg_t *again = parse_ok(ca);
    char *c2 = cfg_canonical(again, CFG_SCOPE_FLEET);
    assert_string_equal(ca, c2);
    json_t *tree = cfg_to_json(a, CFG_SCOPE_FLEET);
    char *y = cfg_json_to_yaml(tree);
    cfg_t *fromyaml = parse_ok(y);
    char *c3 = cfg_canonical(fromyaml, CFG_SCOPE_FLEET);
    assert_string_equal(ca, c3);
    cfg_t *copy = cfg_dup(a);
    char *c4 = cfg_canonical(copy, CFG_SCOPE_FLEET);
    assert_string_equal(ca, c4);
    /* the effective values survive the trip */
    const cfg_service_t *s = &fromyaml->services.entries[0];
    assert_int_equal(s->limiter.adaptive.tolerance, 3000);
    assert_int_equal(s->limiter.adaptive.smoothing, 350);
    assert_int_equal(s->limiter.adaptive.initial_limit, 9);
    assert_int_equal(s->cache.ttl.realtime_ms, 0);
    assert_int_equal(s->cache.ttl.final_ms, 3600000);
    assert_int_equal(s->cache.coalesce_on, 1);
    assert_int_equal(s->cache.methods.size, 1);
    assert_int_equal(fromyaml->defaults.cache.coalesce_on, 0);
    assert_int_equal(fromyaml->cache.max_entry, 512 << 10);
    free(ca);
    free(cb);
    free(c2);
    free(c3);
    free(c4);
    free(y);
    json_decref(tree);
    cfg_destroy(a);
    cfg_destroy(b);
    cfg_destroy(again);
    cfg_destroy(fromyaml);
    cfg_destroy(copy);
}

/* copies and frees of documents holding method maps: each string owned once (run under ASan) */
static void test_dup_destroy(void **state)
{
    const char *doc = "defaults: {cache: {methods: {eth_call: 'off', eth_getLogs: {ttl: 10s}}}}\n"
                      "services:\n"
                      "  - {id: a, endpoints: [{url: 'http://a'}]}\n"
                      "  - {id: b, endpoints: [{url: 'http://b'}], cache: {methods: {eth_chainId: {class: static}}}}\n";
    cfg_t *cfg = parse_ok(doc);
    cfg_t *copy = cfg_dup(cfg);
    assert_non_null(copy);
    /* the copy owns its own strings: the original may go first */
    assert_ptr_not_equal(copy->services.entries[0].cache.methods.entries[0].method,
                         cfg->services.entries[0].cache.methods.entries[0].method);
    assert_ptr_not_equal(cfg->services.entries[0].cache.methods.entries[0].method, cfg->defaults.cache.methods.entries[0].method);
    char *c1 = cfg_canonical(cfg, CFG_SCOPE_FLEET);
    cfg_destroy(cfg);
    assert_string_equal(copy->services.entries[0].cache.methods.entries[1].method, "eth_getLogs");
    assert_int_equal(copy->services.entries[0].cache.methods.entries[1].ttl_ms, 10000);
    assert_string_equal(copy->services.entries[1].cache.methods.entries[0].method, "eth_chainId");
    char *c2 = cfg_canonical(copy, CFG_SCOPE_FLEET);
    assert_string_equal(c1, c2);
    /* a managed dataplane's merge of its own file and the fleet's copies the maps again */
    cfg_errors_t errs;
    cfg_errors_init(&errs);
    const char *local_text = "listen: [{address: '127.0.0.1:5555'}]\ncontrol_plane: {url: 'http://cp:7070', id: dp}\n";
    cfg_t *local = cfg_parse(local_text, strlen(local_text), CFG_FORMAT_YAML, CFG_SCOPE_FULL, &errs);
    assert_non_null(local);
    cfg_t *merged = cfg_merge_local(local, copy, &errs);
    assert_non_null(merged);
    assert_int_equal(merged->services.entries[0].cache.methods.size, 2);
    /* the method map is not restart-only anywhere */
    assert_int_equal(cfg_path_is_restart_only("/defaults/cache/methods/eth_call/ttl"), 0);
    assert_int_equal(cfg_path_is_restart_only("/services/1/cache/methods/eth_chainId/class"), 0);
    assert_int_equal(cfg_path_is_restart_only("/services/1/limiter/adaptive/window"), 0);
    assert_int_equal(cfg_path_is_restart_only("/cache/max_bytes"), 0);
    cfg_errors_t paths;
    cfg_errors_init(&paths);
    assert_int_equal(cfg_restart_changes(copy, merged, &paths), 2); /* listen, control_plane: the local file's */
    cfg_errors_dispose(&paths);
    cfg_destroy(merged);
    cfg_destroy(local);
    cfg_errors_dispose(&errs);
    free(c1);
    free(c2);
    cfg_destroy(copy);
}

/* docs/config.md's rows for the new types */
static void test_reference(void **state)
{
    char *md = cfg_reference_markdown();
    assert_non_null(strstr(md, "| `defaults.limiter.adaptive.tolerance` | decimal | `1.5` | 1 – 10 | runtime |"));
    assert_non_null(strstr(md, "| `defaults.limiter.adaptive.smoothing` | decimal | `0.2` | 0.001 – 1 | runtime |"));
    assert_non_null(strstr(md, "| `services[].cache.methods` | mapping of sections | from `defaults` | 0 – 1024 entries |"));
    assert_non_null(strstr(md, "| `defaults.cache.methods.<method>` | section | — | \"off\", \"on\" or a mapping |"));
    assert_non_null(strstr(md, "| `defaults.cache.methods.<method>.class` | enum | — | never \\| static \\| realtime |"));
    assert_non_null(strstr(md, "| `defaults.cache.coalesce` | boolean | — |"));
    assert_non_null(strstr(md, "| `cache.max_bytes` | size | `64MiB` | 0B – 64GiB | runtime |"));
    assert_null(strstr(md, ".method`")); /* the key row is the <method> in the path, not a key of its own */
    free(md);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults),      cmocka_unit_test(test_root_cache),    cmocka_unit_test(test_inheritance),
        cmocka_unit_test(test_method_values), cmocka_unit_test(test_method_errors), cmocka_unit_test(test_coalesce),
        cmocka_unit_test(test_milli),         cmocka_unit_test(test_adaptive),      cmocka_unit_test(test_roundtrip),
        cmocka_unit_test(test_dup_destroy),   cmocka_unit_test(test_reference),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
