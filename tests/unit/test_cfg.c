/* The config document: the table walked field by field, errors with paths, inheritance, scopes,
 * bounds on hostile YAML, canonical form and hash. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "cfg_internal.h"

static const char *base_doc_ =
    "{\"listen\":[{\"address\":\"127.0.0.1:3069\",\"tls\":{\"certificate\":\"c.pem\",\"key\":\"k.pem\"}}],"
    "\"control_plane\":{\"url\":\"http://127.0.0.1:7070\",\"id\":\"dp-1\",\"token_file\":\"t\"},"
    "\"services\":[{\"id\":\"eth\",\"endpoints\":[{\"url\":\"https://127.0.0.1:8545/x\",\"tls\":{\"ca_file\":\"ca.pem\"}}],"
    "\"pool\":{},\"timeouts\":{},\"limiter\":{},\"cors\":{},\"retry\":{},\"hedge\":{},"
    "\"rpc_errors\":[{\"message\":\"daily request count\",\"class\":\"rate_limited\"}]}],"
    "\"defaults\":{\"rpc_errors\":[{\"code\":-32011,\"class\":\"rate_limited\"}]}}";

static json_t *j(const char *s)
{
    json_error_t e;
    json_t *v = json_loads(s, JSON_DECODE_ANY, &e);
    if (v == NULL)
        fail_msg("bad test JSON: %s", e.text);
    return v;
}

/* Parses text; returns the joined errors (caller frees) or NULL when valid. */
static char *errors_of(const char *text, cfg_scope_t scope)
{
    cfg_errors_t errs;
    cfg_errors_init(&errs);
    cfg_t *cfg = cfg_parse(text, strlen(text), CFG_FORMAT_AUTO, scope, &errs);
    char *joined = cfg == NULL ? cfg_errors_join(&errs) : NULL;
    if (cfg == NULL)
        assert_true(errs.size > 0);
    cfg_destroy(cfg);
    cfg_errors_dispose(&errs);
    return joined;
}

static void assert_error(const char *text, cfg_scope_t scope, const char *expected)
{
    char *e = errors_of(text, scope);
    if (e == NULL)
        fail_msg("expected error '%s', document was accepted:\n%s", expected, text);
    if (strstr(e, expected) == NULL)
        fail_msg("expected error '%s', got:\n%s", expected, e);
    free(e);
}

static cfg_t *parse_ok(const char *text, cfg_scope_t scope)
{
    cfg_errors_t errs;
    cfg_errors_init(&errs);
    cfg_t *cfg = cfg_parse(text, strlen(text), CFG_FORMAT_AUTO, scope, &errs);
    if (cfg == NULL) {
        char *e = cfg_errors_join(&errs);
        fail_msg("unexpected errors:\n%s\nin:\n%s", e, text);
    }
    cfg_errors_dispose(&errs);
    return cfg;
}

/* --- the table walk ----------------------------------------------------------------------- */

/* Sets value (stolen) at keys[0..n) in doc, creating objects; "0" indexes a list's first entry. */
static void set_at(json_t *doc, const char **keys, size_t n, json_t *value)
{
    json_t *cur = doc;
    for (size_t i = 0; i + 1 < n; i++) {
        json_t *next = json_is_array(cur) ? json_array_get(cur, 0) : json_object_get(cur, keys[i]);
        if (next == NULL) {
            next = json_object();
            json_object_set_new(cur, keys[i], next);
        }
        cur = next;
    }
    json_object_set_new(cur, keys[n - 1], value);
}

static json_t *get_at(json_t *doc, const char **keys, size_t n)
{
    json_t *cur = doc;
    for (size_t i = 0; cur != NULL && i < n; i++)
        cur = json_is_array(cur) ? json_array_get(cur, 0) : json_object_get(cur, keys[i]);
    return cur;
}

/* Candidate non-default values of a field, as JSON. */
static size_t candidates(const cfg_field_t *f, json_t **out)
{
    char buf[64];
    size_t n = 0;
    switch (f->type) {
    case CFG_T_BOOL:
        out[n++] = json_boolean(f->def == NULL || strcmp(f->def, "false") == 0);
        break;
    case CFG_T_UINT32:
        out[n++] = json_integer((json_int_t)f->max);
        out[n++] = json_integer((json_int_t)f->min);
        out[n++] = json_integer((json_int_t)f->min + 1);
        /* between other keys' bounds (limiter.adaptive.initial_limit) */
        if (f->def != NULL && strtoull(f->def, NULL, 10) < f->max)
            out[n++] = json_integer((json_int_t)strtoull(f->def, NULL, 10) + 1);
        break;
    case CFG_T_MILLI:
        out[n++] = json_real(f->max / 1000.0);
        out[n++] = json_real(f->min / 1000.0);
        break;
    case CFG_T_DURATION:
        cfg_format_duration(f->max, buf, sizeof(buf));
        out[n++] = json_string(buf);
        cfg_format_duration(f->min, buf, sizeof(buf));
        out[n++] = json_string(buf);
        break;
    case CFG_T_SIZE:
        cfg_format_size(f->max, buf, sizeof(buf));
        out[n++] = json_string(buf);
        cfg_format_size(f->min, buf, sizeof(buf));
        out[n++] = json_string(buf);
        break;
    case CFG_T_ENUM:
        for (int i = 0; f->names[i] != NULL; i++)
            out[n++] = json_string(f->names[i]);
        break;
    case CFG_T_STRLIST:
        out[n++] = j("[\"https://app.example.com\",\"*\"]");
        out[n++] = j("[\"eth_sendRawTransaction\",\"debug_traceCall\"]");
        out[n++] = j("[]");
        break;
    case CFG_T_ENUMSET: {
        /* every name, in the table's order (the canonical one), then just the last */
        json_t *all = json_array();
        for (int i = 0; f->names[i] != NULL; i++)
            json_array_append_new(all, json_string(f->names[i]));
        out[n++] = all;
        out[n++] = json_pack("[s]", f->names[json_array_size(all) - 1]);
        break;
    }
    case CFG_T_INT32:
        out[n++] = json_integer(-32005);
        out[n++] = json_integer(3);
        break;
    case CFG_T_STRMAP:
        out[n++] = j("{\"X-Api-Key\":\"secret\",\"Authorization\":\"Bearer k\"}");
        out[n++] = j("{\"region\":\"eu\",\"canary\":\"true\"}"); /* control_plane.labels */
        break;
    case CFG_T_STRING:
        out[n++] = json_string("127.0.0.9:4444");
        out[n++] = json_string("https://127.0.0.9:4444/rpc");
        out[n++] = json_string("wss://127.0.0.9:4444/ws"); /* ws_url */
        out[n++] = json_string("svc-x");
        out[n++] = json_string("p95");                                                       /* hedge.delay */
        out[n++] = json_string("{\"jsonrpc\":\"2.0\",\"id\":7,\"method\":\"eth_chainId\"}"); /* health_check.request */
        break;
    default:
        break;
    }
    return n;
}

static size_t walked_;

static void walk(const cfg_struct_t *st, const char **keys, size_t depth)
{
    assert_true(st->num_fields <= CFG_MAX_FIELDS); /* `_set` holds given and inherited bits of each row */
    for (size_t i = 0; i < st->num_fields; i++) {
        const cfg_field_t *f = &st->fields[i];
        keys[depth] = f->name;
        if (f->type == CFG_T_STRUCT) {
            walk(f->sub, keys, depth + 1);
            continue;
        }
        if (f->type == CFG_T_LIST) {
            keys[depth + 1] = "0";
            walk(f->sub, keys, depth + 2);
            continue;
        }
        if (f->type == CFG_T_STRUCTMAP) {
            keys[depth + 1] = "eth_call"; /* an entry's key: a method name */
            walk(f->sub, keys, depth + 2);
            continue;
        }
        if (f->flags & CFG_F_KEY)
            continue; /* the entry's key, set above */
        json_t *vals[16];
        size_t nv = candidates(f, vals);
        int found = 0;
        char path[256] = "";
        for (size_t k = 0; k <= depth; k++)
            snprintf(path + strlen(path), sizeof(path) - strlen(path), "/%s", keys[k]);
        for (size_t v = 0; v < nv; v++) {
            json_t *doc = j(base_doc_);
            set_at(doc, keys, depth + 1, json_incref(vals[v]));
            cfg_errors_t errs;
            cfg_errors_init(&errs);
            cfg_t *cfg = found ? NULL : cfg_decode(doc, CFG_SCOPE_FULL, &errs);
            if (cfg != NULL) {
                /* the value comes back out at the same place... */
                json_t *emitted = cfg_to_json(cfg, CFG_SCOPE_FULL);
                json_t *back = get_at(emitted, keys, depth + 1);
                if (back == NULL || !json_equal(back, vals[v]))
                    fail_msg("%s: set %s, emitted %s", path, json_dumps(vals[v], JSON_ENCODE_ANY),
                             back ? json_dumps(back, JSON_ENCODE_ANY) : "nothing");
                /* ...and parse(emit(doc)) == doc */
                char *c1 = cfg_canonical(cfg, CFG_SCOPE_FULL);
                cfg_t *again = parse_ok(c1, CFG_SCOPE_FULL);
                char *c2 = cfg_canonical(again, CFG_SCOPE_FULL);
                assert_string_equal(c1, c2);
                /* and so does the YAML form */
                char *y = cfg_json_to_yaml(emitted);
                cfg_t *fromyaml = parse_ok(y, CFG_SCOPE_FULL);
                char *c3 = cfg_canonical(fromyaml, CFG_SCOPE_FULL);
                assert_string_equal(c1, c3);
                /* and a deep copy */
                cfg_t *copy = cfg_dup(cfg);
                char *c4 = cfg_canonical(copy, CFG_SCOPE_FULL);
                assert_string_equal(c1, c4);
                free(c1);
                free(c2);
                free(c3);
                free(c4);
                free(y);
                cfg_destroy(again);
                cfg_destroy(fromyaml);
                cfg_destroy(copy);
                json_decref(emitted);
                cfg_destroy(cfg);
                found = 1;
                walked_++;
            }
            cfg_errors_dispose(&errs);
            json_decref(doc);
            json_decref(vals[v]);
        }
        if (!found)
            fail_msg("%s: no candidate value was accepted", path);
        /* a wrong type is an error that names the path */
        json_t *doc = j(base_doc_);
        set_at(doc, keys, depth + 1,
               f->type == CFG_T_STRING || f->type == CFG_T_ENUM || f->type == CFG_T_STRLIST || f->type == CFG_T_STRMAP ||
                       f->type == CFG_T_ENUMSET
                   ? json_integer(7)
                   : json_array());
        cfg_errors_t errs;
        cfg_errors_init(&errs);
        assert_null(cfg_decode(doc, CFG_SCOPE_FULL, &errs));
        char dotted[256] = "";
        for (size_t k = 0; k <= depth; k++) {
            if (strcmp(keys[k], "0") == 0)
                strcat(dotted, "[0]");
            else
                snprintf(dotted + strlen(dotted), sizeof(dotted) - strlen(dotted), "%s%s", k ? "." : "", keys[k]);
        }
        char *joined = cfg_errors_join(&errs);
        if (strstr(joined, dotted) != joined)
            fail_msg("wrong type at %s gave: %s", dotted, joined);
        free(joined);
        cfg_errors_dispose(&errs);
        json_decref(doc);
    }
}

static void test_table_walk(void **state)
{
    const char *keys[16];
    walked_ = 0;
    walk(&cfg_root_struct, keys, 0);
    assert_int_equal(walked_, 152); /* every scalar field of the table today */
}

/* every default of the table decodes, and cfg_create_default holds them */
static void test_defaults(void **state)
{
    cfg_t *cfg = cfg_create_default();
    assert_non_null(cfg);
    assert_int_equal(cfg->listen.size, 1);
    assert_string_equal(cfg->listen.entries[0].address, "0.0.0.0:3069");
    assert_string_equal(cfg->admin.address, "127.0.0.1:9901");
    assert_int_equal(cfg->log.level, CFG_LOG_INFO);
    assert_int_equal(cfg->limits.max_request_body, 1 << 20);
    assert_int_equal(cfg->limits.max_response_body, 100 << 20);
    assert_int_equal(cfg->pool.max_idle_total, 500);
    assert_int_equal(cfg->limiter.max_concurrent, 100);
    assert_int_equal(cfg->limiter.max_queue, 1000);
    assert_int_equal(cfg->limiter.queue_timeout_ms, 1000);
    assert_int_equal(cfg->buffers.size, 64 << 10);
    assert_int_equal(cfg->defaults.pool.max_idle_per_host, 25);
    assert_int_equal(cfg->defaults.pool.max_conns_per_host, 50);
    assert_int_equal(cfg->defaults.pool.idle_timeout_ms, 90000);
    assert_int_equal(cfg->defaults.pool.connect_timeout_ms, 5000);
    assert_int_equal(cfg->defaults.timeouts.request_ms, 30000);
    assert_int_equal(cfg->defaults.limiter.max_concurrent, 0);
    assert_int_equal(cfg->has_control_plane, 0);
    cfg_destroy(cfg);
}

static void test_inheritance(void **state)
{
    cfg_t *cfg = parse_ok("defaults:\n  pool: {max_conns_per_host: 7, idle_timeout: 2m}\n"
                          "services:\n"
                          "  - id: eth\n    endpoints: [{url: 'http://a:1'}]\n"
                          "  - id: poly\n    endpoints: [{url: 'http://b:2/rpc?x=1'}]\n    pool: {max_conns_per_host: 3}\n"
                          "    timeouts: {request: 250ms}\n",
                          CFG_SCOPE_FULL);
    cfg_service_t *eth = &cfg->services.entries[0], *poly = &cfg->services.entries[1];
    assert_int_equal(eth->pool.max_conns_per_host, 7);
    assert_int_equal(eth->pool.idle_timeout_ms, 120000);
    assert_int_equal(eth->pool.max_idle_per_host, 25);
    assert_int_equal(poly->pool.max_conns_per_host, 3);
    assert_int_equal(poly->pool.idle_timeout_ms, 120000);
    assert_int_equal(poly->timeouts.request_ms, 250);
    assert_int_equal(eth->timeouts.request_ms, 30000);
    /* derived endpoint parts */
    assert_string_equal(poly->endpoints.entries[0].host, "b");
    assert_int_equal(poly->endpoints.entries[0].port, 2);
    assert_string_equal(poly->endpoints.entries[0].path, "/rpc?x=1");
    assert_string_equal(eth->endpoints.entries[0].path, "/");
    /* canonical keeps only the overrides, so a later change of defaults still reaches eth */
    json_t *doc = cfg_to_json(cfg, CFG_SCOPE_FLEET);
    assert_null(json_object_get(json_array_get(json_object_get(doc, "services"), 0), "pool"));
    json_t *ppool = json_object_get(json_array_get(json_object_get(doc, "services"), 1), "pool");
    assert_int_equal(json_object_size(ppool), 1);
    json_t *patch = j("{\"defaults\":{\"pool\":{\"max_conns_per_host\":9}}}");
    json_t *patched = cfg_merge_patch(doc, patch);
    cfg_errors_t errs;
    cfg_errors_init(&errs);
    cfg_t *after = cfg_decode(patched, CFG_SCOPE_FLEET, &errs);
    assert_non_null(after);
    assert_int_equal(after->services.entries[0].pool.max_conns_per_host, 9);
    assert_int_equal(after->services.entries[1].pool.max_conns_per_host, 3);
    cfg_destroy(after);
    cfg_errors_dispose(&errs);
    json_decref(patch);
    json_decref(patched);
    json_decref(doc);
    cfg_destroy(cfg);
}

static void test_errors_with_paths(void **state)
{
    static const char *const cases[][2] = {
        {"services: [{id: eth, endpoints: [{url: 'ftp://x'}]}]", "services[0].endpoints[0].url: scheme must be http or https"},
        {"services: [{id: eth, endpoints: [{url: 'http://x'}]}, {id: poly, endpoints: [{url: 'http://y'}], pool: "
         "{max_conns_per_host: 0}}]",
         "services[1].pool.max_conns_per_host: must be between 1 and 65535"},
        {"services: [{id: eth, endpoints: []}]", "services[0].endpoints: must have at least one entry"},
        {"services: [{id: eth}]", "services[0].endpoints: required"},
        {"services: [{endpoints: [{url: 'http://x'}]}]", "services[0].id: required"},
        {"services: [{id: 'a b', endpoints: [{url: 'http://x'}]}]", "services[0].id: may contain only"},
        {"services: [{id: eth, endpoints: [{url: 'http://x:1'}, {url: 'http://X:1/'}]}]",
         "services[0].endpoints[1].url: the same upstream as endpoints[0]"},
        {"services: [{id: eth, endpoints: [{url: 'http://x:99999'}]}]", "services[0].endpoints[0].url: port must be"},
        {"services: [{id: eth, endpoints: [{url: 'http://u:p@'}]}]", "services[0].endpoints[0].url: must name a host"},
        {"services: [{id: eth, endpoints: [{url: 'http://x', tls: {verify: false}}]}]",
         "services[0].endpoints[0].tls: only https endpoints"},
        {"services: [{id: eth, endpoints: [{url: 'http://x', ws_url: 'http://x/ws'}]}]",
         "services[0].endpoints[0].ws_url: scheme must be ws or wss"},
        {"services: [{id: eth, endpoints: [{url: 'http://x', ws_url: 'ws://x:0'}]}]",
         "services[0].endpoints[0].ws_url: port must be"},
        {"services: [{id: eth, endpoints: [{url: 'http://x', ws_url: 'ws://x', tls: {verify: false}}]}]",
         "services[0].endpoints[0].tls: only https endpoints"},
        {"services: [{id: eth, endpoints: [{url: 'http://x'}], websocket: {max_message: 10}}]",
         "services[0].websocket.max_message: must be"},
        {"services: [{id: eth, endpoints: [{url: 'http://x'}]}]\nlisten: []", "listen: must have at least one entry"},
        {"services: [{id: eth, endpoints: [{url: 'http://x'}]}]\nlisten: [{address: 'nohost'}]",
         "listen[0].address: must be host:port"},
        {"services: [{id: eth, endpoints: [{url: 'http://x'}]}]\nlisten: [{address: '::1:80'}]", "in brackets"},
        {"services: [{id: eth, endpoints: [{url: 'http://x'}]}]\nlisten: [{address: '127.0.0.1:1', tls: {key: k}}]",
         "listen[0].tls.certificate: required"},
        {"services: [{id: eth, endpoints: [{url: 'http://x'}]}]\nadmin: {address: '127.0.0.1:3069'}\nlisten: [{address: "
         "'127.0.0.1:3069'}]",
         "admin.address: 127.0.0.1:3069 is also listen[0].address"},
        {"services: [{id: eth, endpoints: [{url: 'http://x'}]}]\nbuffers: {size: 1MiB, max_retained: 64KiB}",
         "buffers.max_retained: must be at least buffers.size"},
        {"services: [{id: eth, endpoints: [{url: 'http://x'}]}]\nlimits: {max_request_body: -1}",
         "limits.max_request_body: must be between 1B and 1GiB"},
        {"services: [{id: eth, endpoints: [{url: 'http://x'}]}]\nthreads: 99999999999999999999", "out of range"},
        {"services: [{id: eth, endpoints: [{url: 'http://x'}]}]\nlimiter: {queue_timeout: 10m}",
         "limiter.queue_timeout: must be between 1ms and 5m"},
        {"services: [{id: eth, endpoints: [{url: 'http://x'}]}]\nlog: {level: 3}", "log.level: must be a string, not an integer"},
        {"services: [{id: eth, endpoints: [{url: 'http://x'}]}]\ncontrol_plane: {url: 'http://cp'}", "control_plane.id: required"},
        {"services: []", "services: at least one service is required"},
        {"services: [{id: eth, endpoints: [{url: 'http://x'}]}]\nlimiter: {max_concurent: 5}",
         "limiter.max_concurent: unknown key (did you mean 'max_concurrent'?)"},
        {"services: [{id: eth, endpoints: [{url: 'http://x'}]}]\nfrobnicate: 1", "frobnicate: unknown key"},
        {"- a\n- b", "document: must be a mapping of keys, not a list"},
        {"", "document is empty"},
        {"a: 1\na: 2", "line 2, column 1: duplicate key 'a'"},
        {"a: [", "line"},
        {"a: 1\n---\nb: 2", "only one document"},
        {"a: *nope", "unknown alias"},
        {"{\"a\":1,\"a\":2}", "duplicate object key"},
        {"{\"services\": [}", "line 1"},
        {"services: [{id: eth, endpoints: [{url: \"http://x\\0y\"}]}]", "NUL"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
        assert_error(cases[i][0], CFG_SCOPE_FULL, cases[i][1]);
}

/* all errors of a document are reported, not just the first */
static void test_all_errors(void **state)
{
    cfg_errors_t errs;
    cfg_errors_init(&errs);
    const char *doc = "threads: x\nlog: {level: loud}\npool: {nope: 1}\nservices: [{id: eth, endpoints: [{url: 'ftp://x'}]}]";
    assert_null(cfg_parse(doc, strlen(doc), CFG_FORMAT_YAML, CFG_SCOPE_FULL, &errs));
    assert_int_equal(errs.size, 4);
    cfg_errors_dispose(&errs);
}

static void test_fleet_scope(void **state)
{
    /* every node-local key of the table is refused in a fleet document */
    for (size_t i = 0; i < cfg_root_struct.num_fields; i++) {
        const cfg_field_t *f = &cfg_root_struct.fields[i];
        if (!(f->flags & CFG_F_LOCAL))
            continue;
        char doc[256];
        snprintf(doc, sizeof(doc), "{\"services\":[{\"id\":\"e\",\"endpoints\":[{\"url\":\"http://x\"}]}],\"%s\":%s}", f->name,
                 f->def != NULL ? f->def : "{}");
        char want[128];
        snprintf(want, sizeof(want), "%s: node-local setting", f->name);
        assert_error(doc, CFG_SCOPE_FLEET, want);
    }
    cfg_t *fleet = parse_ok("services: [{id: eth, endpoints: [{url: 'http://x'}]}]\nlimiter: {max_concurrent: 7}", CFG_SCOPE_FLEET);
    json_t *doc = cfg_to_json(fleet, CFG_SCOPE_FLEET);
    assert_null(json_object_get(doc, "listen"));
    assert_null(json_object_get(doc, "threads"));
    json_decref(doc);

    /* a managed dataplane: its own listen + the pushed fleet part */
    cfg_t *local = parse_ok("listen: [{address: '127.0.0.1:5555'}]\nthreads: 3\ncontrol_plane: {url: 'http://cp:7070', id: dp}\n"
                            "limiter: {max_concurrent: 1}",
                            CFG_SCOPE_FULL);
    assert_int_equal(local->services.size, 0);
    cfg_errors_t errs;
    cfg_errors_init(&errs);
    cfg_t *merged = cfg_merge_local(local, fleet, &errs);
    assert_non_null(merged);
    assert_string_equal(merged->listen.entries[0].address, "127.0.0.1:5555");
    assert_int_equal(merged->threads, 3);
    assert_int_equal(merged->has_control_plane, 1);
    assert_int_equal(merged->limiter.max_concurrent, 7);
    assert_int_equal(merged->services.size, 1);

    /* restart-only changes are named */
    cfg_errors_t paths;
    cfg_errors_init(&paths);
    assert_int_equal(cfg_restart_changes(local, merged, &paths), 0);
    cfg_t *moved = parse_ok("listen: [{address: '127.0.0.1:5556'}]\nthreads: 4\ncontrol_plane: {url: 'http://cp:7070', id: dp}\n",
                            CFG_SCOPE_FULL);
    assert_int_equal(cfg_restart_changes(local, moved, &paths), 2);
    assert_string_equal(paths.entries[0], "listen");
    assert_string_equal(paths.entries[1], "threads");
    assert_int_equal(cfg_path_is_restart_only("/listen/0/address"), 1);
    assert_int_equal(cfg_path_is_restart_only("/services/0/pool/max_conns_per_host"), 0);
    assert_int_equal(cfg_path_is_restart_only("/nope"), 0);
    cfg_errors_dispose(&paths);
    cfg_errors_dispose(&errs);
    cfg_destroy(moved);
    cfg_destroy(merged);
    cfg_destroy(local);
    cfg_destroy(fleet);
}

static void test_yaml_bounds(void **state)
{
    /* billion laughs: stops at the node bound, quickly */
    char doc[4096] = "a: &a [x, x, x, x, x, x, x, x, x, x]\n";
    for (char c = 'b'; c <= 'j'; c++)
        snprintf(doc + strlen(doc), sizeof(doc) - strlen(doc), "%c: &%c [*%c, *%c, *%c, *%c, *%c, *%c, *%c, *%c, *%c, *%c]\n", c, c,
                 c - 1, c - 1, c - 1, c - 1, c - 1, c - 1, c - 1, c - 1, c - 1, c - 1);
    assert_error(doc, CFG_SCOPE_FULL, "more than");
    /* deep nesting: an error, not a stack overflow */
    size_t depth = 100000;
    char *deep = malloc(2 * depth + 1);
    memset(deep, '[', depth);
    memset(deep + depth, ']', depth);
    deep[2 * depth] = '\0';
    assert_error(deep, CFG_SCOPE_FULL, "nesting deeper than");
    memset(deep, '{', 1);
    free(deep);
    char jdeep[200];
    memset(jdeep, 0, sizeof(jdeep));
    strcpy(jdeep, "{\"a\":");
    for (int i = 0; i < 40; i++)
        strcat(jdeep, "[");
    for (int i = 0; i < 40; i++)
        strcat(jdeep, "]");
    strcat(jdeep, "}");
    assert_error(jdeep, CFG_SCOPE_FULL, "deeper than");
    /* too large */
    size_t big = CFG_MAX_DOCUMENT_SIZE + 1;
    char *huge = malloc(big + 1);
    memset(huge, ' ', big);
    huge[big] = '\0';
    assert_error(huge, CFG_SCOPE_FULL, "at most");
    free(huge);
    /* aliases that stay small are fine */
    cfg_t *cfg = parse_ok("defaults: {pool: &p {max_conns_per_host: 4}}\n"
                          "services: [{id: eth, endpoints: [{url: 'http://x'}], pool: *p}]",
                          CFG_SCOPE_FULL);
    assert_int_equal(cfg->services.entries[0].pool.max_conns_per_host, 4);
    cfg_destroy(cfg);
}

static void test_yaml_scalars(void **state)
{
    cfg_errors_t errs;
    cfg_errors_init(&errs);
    const char *doc = "a: 12\nb: '12'\nc: true\nd: ~\ne: 1.5\nf: 0x10\ng: hello\nh: \"true\"\ni: -3\nj:\nk: 1e3\nl: 0o17\nm: .5x";
    json_t *t = cfg_tree_parse(doc, strlen(doc), CFG_FORMAT_YAML, &errs);
    assert_non_null(t);
    assert_true(json_is_integer(json_object_get(t, "a")));
    assert_true(json_is_string(json_object_get(t, "b")));
    assert_true(json_is_true(json_object_get(t, "c")));
    assert_true(json_is_null(json_object_get(t, "d")));
    assert_true(json_is_real(json_object_get(t, "e")));
    assert_int_equal(json_integer_value(json_object_get(t, "f")), 16);
    assert_true(json_is_string(json_object_get(t, "g")));
    assert_true(json_is_string(json_object_get(t, "h")));
    assert_int_equal(json_integer_value(json_object_get(t, "i")), -3);
    assert_true(json_is_null(json_object_get(t, "j")));
    assert_true(json_is_real(json_object_get(t, "k")));
    assert_int_equal(json_integer_value(json_object_get(t, "l")), 15);
    assert_true(json_is_string(json_object_get(t, "m")));
    /* YAML output of tricky strings reads back as the same strings */
    json_t *tricky =
        j("{\"u\":[\"a\\u2028b\",\"c\\u2029d\",\"e\\u0085f\",\"\\ufeffg\",\"\\ud83d\\ude00\",\"\\u00e9\"],\"s\":[\"true\",\"12\","
          "\"null\",\"a: b\",\"- x\",\"#c\",\"\",\"x\\ny\",\"~\",\"1e3\",\"é\",\"[a]\",\"*x\",\"0x1\"]}");
    char *y = cfg_json_to_yaml(tricky);
    json_t *back = cfg_tree_parse(y, strlen(y), CFG_FORMAT_YAML, &errs);
    assert_non_null(back);
    assert_true(json_equal(back, tricky));
    free(y);
    json_decref(back);
    json_decref(tricky);
    /* keys longer than YAML's 1024-character implicit key limit use the explicit form */
    char *longkey = malloc(2001);
    memset(longkey, 'k', 2000);
    longkey[2000] = '\0';
    json_t *lk = json_pack("{s:[{s:i}], s:{s:i}}", longkey, longkey, 1, "b", longkey, 2);
    y = cfg_json_to_yaml(lk);
    back = cfg_tree_parse(y, strlen(y), CFG_FORMAT_YAML, &errs);
    assert_non_null(back);
    assert_true(json_equal(back, lk));
    free(y);
    free(longkey);
    json_decref(back);
    json_decref(lk);
    json_decref(t);
    cfg_errors_dispose(&errs);
}

static void test_canonical_and_hash(void **state)
{
    /* the same document written two ways has one canonical form and one hash */
    cfg_t *a = parse_ok("services: [{id: eth, endpoints: [{url: 'http://x'}]}]\nlimiter: {queue_timeout: 1000ms}", CFG_SCOPE_FLEET);
    cfg_t *b = parse_ok("{\"limiter\":{\"queue_timeout\":\"1s\",\"max_queue\":1000},\"services\":[{\"endpoints\":[{\"url\":"
                        "\"http://x\"}],\"id\":\"eth\"}]}",
                        CFG_SCOPE_FLEET);
    char ha[65], hb[65];
    cfg_hash(a, CFG_SCOPE_FLEET, ha);
    cfg_hash(b, CFG_SCOPE_FLEET, hb);
    assert_int_equal(strlen(ha), 64);
    assert_string_equal(ha, hb);
    char *ca = cfg_canonical(a, CFG_SCOPE_FLEET);
    assert_non_null(strstr(ca, "\"queue_timeout\":\"1s\""));
    assert_null(strchr(ca, ' '));
    free(ca);
    cfg_t *c = parse_ok("services: [{id: eth, endpoints: [{url: 'http://x'}]}]\nlimiter: {queue_timeout: 2s}", CFG_SCOPE_FLEET);
    char hc[65];
    cfg_hash(c, CFG_SCOPE_FLEET, hc);
    assert_string_not_equal(ha, hc);
    cfg_destroy(a);
    cfg_destroy(b);
    cfg_destroy(c);
}

static void test_relative_paths(void **state)
{
    char dir[] = "/tmp/pw-cfgpath-XXXXXX";
    assert_non_null(mkdtemp(dir));
    char path[256];
    snprintf(path, sizeof(path), "%s/dp.yaml", dir);
    FILE *fp = fopen(path, "w");
    fputs("control_plane: {url: 'http://cp:1', id: dp, token_file: tokens/dp.token, state_dir: /var/x}\n"
          "listen: [{address: '127.0.0.1:1', tls: {certificate: c.pem, key: ../k.pem}}]\n",
          fp);
    fclose(fp);
    cfg_errors_t errs;
    cfg_errors_init(&errs);
    cfg_t *cfg = cfg_load_file(path, CFG_SCOPE_FULL, &errs);
    assert_non_null(cfg);
    char want[300];
    snprintf(want, sizeof(want), "%s/tokens/dp.token", dir);
    assert_string_equal(cfg->control_plane.token_file, want);
    assert_string_equal(cfg->control_plane.state_dir, "/var/x");
    snprintf(want, sizeof(want), "%s/c.pem", dir);
    assert_string_equal(cfg->listen.entries[0].tls.certificate, want);
    cfg_destroy(cfg);
    /* a fleet document keeps its paths as written: they are for the dataplane's machine */
    fp = fopen(path, "w");
    fputs("services: [{id: e, endpoints: [{url: 'https://x', tls: {ca_file: ca.pem}}]}]\n", fp);
    fclose(fp);
    cfg = cfg_load_file(path, CFG_SCOPE_FLEET, &errs);
    assert_non_null(cfg);
    assert_string_equal(cfg->services.entries[0].endpoints.entries[0].tls.ca_file, "ca.pem");
    cfg_destroy(cfg);
    unlink(path);
    rmdir(dir);
    cfg_errors_dispose(&errs);
}

static void test_read_file(void **state)
{
    char path[] = "/tmp/pw-readfile-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, "0123456789", 10), 10);
    close(fd);
    size_t len = 0;
    char *text = cfg_read_file(path, 10, &len);
    assert_non_null(text);
    assert_int_equal(len, 10);
    assert_string_equal(text, "0123456789");
    free(text);
    errno = 0;
    assert_null(cfg_read_file(path, 9, &len)); /* one byte over the bound */
    assert_int_equal(errno, EFBIG);
    unlink(path);
    assert_null(cfg_read_file(path, 10, &len));
    assert_int_equal(errno, ENOENT);
    assert_null(cfg_read_file("/tmp", 10, &len));
    assert_int_equal(errno, EISDIR);
}

static void test_reference_doc(void **state)
{
    char *md = cfg_reference_markdown();
    assert_non_null(md);
    assert_non_null(strstr(md, "| `services[].pool.max_conns_per_host` | integer | from `defaults` | 1 – 65535 | runtime |"));
    assert_non_null(strstr(md, "| `listen[]` | list |"));
    assert_non_null(strstr(md, "restart, node-local"));
    /* the committed docs/config.md is what the table says today */
    const char *src = getenv("PW_SOURCE_DIR");
    if (src != NULL) {
        char path[4096];
        snprintf(path, sizeof(path), "%s/docs/config.md", src);
        FILE *fp = fopen(path, "rb");
        assert_non_null(fp);
        static char buf[1 << 20];
        size_t n = fread(buf, 1, sizeof(buf) - 1, fp);
        buf[n] = '\0';
        fclose(fp);
        if (strcmp(buf, md) != 0)
            fail_msg("docs/config.md is stale: run `make docs`");
    }
    free(md);
}

/* user:pass in a URL, endpoint names and headers, CORS origins */
static void test_endpoint_secrets_and_names(void **state)
{
    cfg_t *cfg = parse_ok("services:\n"
                          "  - id: eth\n"
                          "    endpoints:\n"
                          "      - url: https://us%3Aer:p%40ss@eth.example:8443/v2/KEY?k=1\n"
                          "        ws_url: wss://w%3Au:pw@ws.example/ws/KEY?k=2\n"
                          "        headers: {X-Api-Key: s3cret, Accept: application/json}\n"
                          "      - url: http://127.0.0.1:8545\n"
                          "      - url: http://127.0.0.1:8545/other\n"
                          "      - {url: 'http://[::1]:9000', name: local6}\n"
                          "      - {url: 'http://10.0.0.1:1', name: '127.0.0.1:8545'}\n",
                          CFG_SCOPE_FULL);
    assert_int_equal(cfg->services.size, 0 + 1);
    cfg_service_t *s = &cfg->services.entries[0];
    assert_string_equal(s->endpoints.entries[0].userinfo, "us:er:p@ss");
    assert_string_equal(s->endpoints.entries[0].host, "eth.example");
    assert_int_equal(s->endpoints.entries[0].port, 8443);
    assert_string_equal(s->endpoints.entries[0].path, "/v2/KEY?k=1");
    assert_string_equal(s->endpoints.entries[0].label, "eth.example:8443");
    assert_int_equal(s->endpoints.entries[0].headers.size, 2);
    assert_string_equal(s->endpoints.entries[0].headers.entries[0].name, "X-Api-Key");
    assert_string_equal(s->endpoints.entries[0].headers.entries[1].value, "application/json");
    assert_null(s->endpoints.entries[1].userinfo);
    /* ws_url splits like url, with its own scheme's default port */
    assert_true(s->endpoints.entries[0].ws_is_tls);
    assert_string_equal(s->endpoints.entries[0].ws_host, "ws.example");
    assert_int_equal(s->endpoints.entries[0].ws_port, 443);
    assert_string_equal(s->endpoints.entries[0].ws_path, "/ws/KEY?k=2");
    assert_string_equal(s->endpoints.entries[0].ws_userinfo, "w:u:pw");
    assert_null(s->endpoints.entries[1].ws_url);
    assert_null(s->endpoints.entries[1].ws_host);
    /* a given name wins over a derived one: the derived ones step aside */
    assert_string_equal(s->endpoints.entries[4].label, "127.0.0.1:8545");
    assert_string_equal(s->endpoints.entries[1].label, "127.0.0.1:8545#2");
    assert_string_equal(s->endpoints.entries[2].label, "127.0.0.1:8545#3");
    assert_string_equal(s->endpoints.entries[3].label, "local6");
    /* a derived name is never empty and survives a copy; names and headers round-trip */
    cfg_t *copy = cfg_dup(cfg);
    assert_string_equal(copy->services.entries[0].endpoints.entries[2].label, "127.0.0.1:8545#3");
    assert_string_equal(copy->services.entries[0].endpoints.entries[0].userinfo, "us:er:p@ss");
    assert_string_equal(copy->services.entries[0].endpoints.entries[0].ws_userinfo, "w:u:pw");
    assert_string_equal(copy->services.entries[0].endpoints.entries[0].ws_path, "/ws/KEY?k=2");
    char *c1 = cfg_canonical(cfg, CFG_SCOPE_FULL), *c2 = cfg_canonical(copy, CFG_SCOPE_FULL);
    assert_string_equal(c1, c2);
    assert_non_null(strstr(c1, "\"headers\":{\"Accept\":\"application/json\",\"X-Api-Key\":\"s3cret\"}"));
    assert_null(strstr(c1, "\"label\""));
    /* only the names the document gave are part of it */
    assert_null(strstr(c1, "8545#"));
    assert_non_null(strstr(c1, "\"name\":\"local6\""));
    free(c1);
    free(c2);
    cfg_destroy(copy);
    cfg_destroy(cfg);

    const char *svc = "services:\n  - id: eth\n    endpoints:\n";
    char doc[1024];
#define EP_ERROR(ep, expected)                                                                                                     \
    do {                                                                                                                           \
        snprintf(doc, sizeof(doc), "%s%s", svc, ep);                                                                               \
        assert_error(doc, CFG_SCOPE_FULL, expected);                                                                               \
    } while (0)
    EP_ERROR("      - {url: 'http://a:1', headers: {Content-Length: '5'}}\n",
             "services[0].endpoints[0].headers.Content-Length: is a header Pathway sets itself");
    EP_ERROR("      - {url: 'http://a:1', headers: {host: x}}\n", "services[0].endpoints[0].headers.host: is a header");
    EP_ERROR("      - {url: 'http://a:1', headers: {'X Bad': x}}\n", "headers.X Bad: is not a valid header name");
    EP_ERROR("      - {url: 'http://a:1', headers: {X-Key: \"se\\r\\ncret\"}}\n",
             "services[0].endpoints[0].headers.X-Key: a header value must not contain control characters");
    EP_ERROR("      - {url: 'http://a:1', headers: {X-Key: 5}}\n", "headers.X-Key: must be a string, not an integer");
    EP_ERROR("      - {url: 'http://a:1', headers: [x]}\n", "endpoints[0].headers: must be a mapping of names to strings");
    EP_ERROR("      - {url: 'http://u%zz@a:1'}\n", "endpoints[0].url: bad %-escape in the URL's user:password");
    EP_ERROR("      - {url: 'http://@a:1'}\n", "endpoints[0].url: an empty user:password before '@'");
    EP_ERROR("      - {url: 'http://a:1', name: x}\n      - {url: 'http://b:1', name: x}\n",
             "services[0].endpoints[1].name: 'x' names another endpoint of this service too");
    EP_ERROR("      - {url: 'http://a:1', name: 'a b'}\n", "endpoints[0].name: may contain only");
#undef EP_ERROR
    /* a secret in a header value is never echoed in an error */
    char *e = errors_of("services:\n  - id: eth\n    endpoints:\n      - {url: 'http://a:1', headers: {X-Key: \"top\\nsecret\"}}\n",
                        CFG_SCOPE_FULL);
    assert_non_null(e);
    assert_null(strstr(e, "secret"));
    free(e);
    /* nor the URL, which may carry a key */
    e = errors_of("services:\n  - id: eth\n    endpoints:\n      - url: http://a:1/KEY123\n      - url: http://a:1/KEY123\n",
                  CFG_SCOPE_FULL);
    assert_non_null(e);
    assert_null(strstr(e, "KEY123"));
    free(e);
}

/* retry, hedge and rpc_errors (issue 10): defaults, nested inheritance, derived members, rules */
static void test_failover_policy(void **state)
{
    cfg_t *def = cfg_create_default();
    const cfg_retry_t *r = &def->defaults.retry;
    assert_int_equal(r->max_attempts, 2);
    assert_int_equal(r->per_try_timeout_ms, 0);
    assert_int_equal(r->retry_on, (1u << CFG_RETRY_ON_CONNECT_FAILURE) | (1u << CFG_RETRY_ON_RESET) | (1u << CFG_RETRY_ON_TIMEOUT) |
                                      (1u << CFG_RETRY_ON_HTTP_5XX) | (1u << CFG_RETRY_ON_HTTP_429) |
                                      (1u << CFG_RETRY_ON_RPC_RATE_LIMITED) | (1u << CFG_RETRY_ON_RPC_MISSING_DATA));
    assert_int_equal(r->backoff.base_ms, 25);
    assert_int_equal(r->backoff.max_ms, 250);
    assert_int_equal(r->budget.percent, 20);
    assert_int_equal(r->budget.min_concurrent, 3);
    assert_int_equal(r->unsafe_methods.size, 7);
    assert_string_equal(r->unsafe_methods.entries[0], "eth_sendRawTransaction");
    assert_string_equal(def->defaults.hedge.delay, "0s");
    assert_int_equal(def->defaults.hedge.delay_ms, 0);
    assert_int_equal(def->defaults.hedge.delay_percentile, 0);
    assert_int_equal(def->defaults.hedge.min_delay_ms, 50);
    assert_int_equal(def->defaults.hedge.max_extra, 1);
    assert_int_equal(def->defaults.rpc_errors.size, 0);
    cfg_destroy(def);

    const char *doc = "defaults:\n"
                      "  retry: {budget: {percent: 10, min_concurrent: 7}, backoff: {max: 2s}}\n"
                      "  hedge: {delay: p95, min_delay: 30ms}\n"
                      "  rpc_errors: [{code: -32011, class: rate_limited}]\n"
                      "services:\n"
                      "  - id: a\n    endpoints: [{url: 'http://a'}]\n"
                      "    retry: {budget: {percent: 50}, backoff: {base: 100ms}, retry_on: [http_429, reset]}\n"
                      "    hedge: {max_extra: 2}\n"
                      "  - id: b\n    endpoints: [{url: 'http://b'}]\n"
                      "    hedge: {delay: 1000ms}\n"
                      "    rpc_errors: []\n"
                      "  - id: c\n    endpoints: [{url: 'http://c'}]\n"
                      "    rpc_errors: [{message: 'Daily Request Count', class: rate_limited}, {code: 3, message: x, class: "
                      "client_error}]\n";
    cfg_t *cfg = parse_ok(doc, CFG_SCOPE_FLEET);
    cfg_service_t *a = &cfg->services.entries[0], *b = &cfg->services.entries[1], *c = &cfg->services.entries[2];
    /* a nested section inherits key by key: a sets budget.percent and keeps min_concurrent; its
     * backoff.base of 100ms is below defaults' max of 2s (the rule is checked after inheritance,
     * not against the table's own 250ms default) */
    assert_int_equal(a->retry.budget.percent, 50);
    assert_int_equal(a->retry.budget.min_concurrent, 7);
    assert_int_equal(a->retry.backoff.base_ms, 100);
    assert_int_equal(a->retry.backoff.max_ms, 2000);
    assert_int_equal(a->retry.max_attempts, 2);
    assert_int_equal(a->retry.retry_on, (1u << CFG_RETRY_ON_RESET) | (1u << CFG_RETRY_ON_HTTP_429));
    assert_int_equal(a->retry.unsafe_methods.size, 7);
    assert_int_equal(b->retry.budget.percent, 10);
    assert_int_equal(b->retry.backoff.base_ms, 25);
    /* the hedge delay's derived members follow inheritance */
    assert_string_equal(a->hedge.delay, "p95");
    assert_int_equal(a->hedge.delay_percentile, 95);
    assert_int_equal(a->hedge.delay_ms, 0);
    assert_int_equal(a->hedge.max_extra, 2);
    assert_int_equal(a->hedge.min_delay_ms, 30);
    assert_string_equal(b->hedge.delay, "1s"); /* canonical text */
    assert_int_equal(b->hedge.delay_ms, 1000);
    assert_int_equal(b->hedge.delay_percentile, 0);
    assert_int_equal(b->hedge.max_extra, 1);
    assert_int_equal(c->hedge.delay_percentile, 95);
    /* rpc_errors: absent = defaults' list, given (even empty) = the service's own */
    assert_int_equal(a->rpc_errors.size, 1);
    assert_int_equal(a->rpc_errors.entries[0].has_code, 1);
    assert_int_equal(a->rpc_errors.entries[0].code, -32011);
    assert_null(a->rpc_errors.entries[0].message);
    assert_int_equal(a->rpc_errors.entries[0].rpc_class, CFG_RPC_RATE_LIMITED);
    assert_int_equal(b->rpc_errors.size, 0);
    assert_int_equal(c->rpc_errors.size, 2);
    assert_int_equal(c->rpc_errors.entries[0].has_code, 0);
    assert_string_equal(c->rpc_errors.entries[0].message, "Daily Request Count");
    assert_int_equal(c->rpc_errors.entries[1].has_code, 1);
    assert_int_equal(c->rpc_errors.entries[1].code, 3);
    assert_int_equal(c->rpc_errors.entries[1].rpc_class, CFG_RPC_CLIENT_ERROR);

    /* the canonical form keeps only what each service gave, in canonical order */
    json_t *out = cfg_to_json(cfg, CFG_SCOPE_FLEET);
    json_t *svcs = json_object_get(out, "services");
    json_t *want_a = j("{\"budget\":{\"percent\":50},\"backoff\":{\"base\":\"100ms\"},\"retry_on\":[\"reset\",\"http_429\"]}");
    assert_true(json_equal(json_object_get(json_array_get(svcs, 0), "retry"), want_a));
    assert_null(json_object_get(json_array_get(svcs, 0), "rpc_errors"));
    json_t *want_b = j("{\"delay\":\"1s\"}"), *empty = j("[]");
    assert_true(json_equal(json_object_get(json_array_get(svcs, 1), "hedge"), want_b));
    assert_true(json_equal(json_object_get(json_array_get(svcs, 1), "rpc_errors"), empty));
    json_decref(want_b);
    json_decref(empty);
    assert_null(json_object_get(json_array_get(svcs, 1), "retry"));
    json_t *c_rows = json_object_get(json_array_get(svcs, 2), "rpc_errors");
    assert_null(json_object_get(json_array_get(c_rows, 0), "code")); /* absent stays absent */
    json_decref(want_a);
    /* a later change of defaults reaches every key a service did not set, nested ones too */
    json_t *patch = j("{\"defaults\":{\"retry\":{\"budget\":{\"min_concurrent\":9,\"percent\":5}},\"hedge\":{\"delay\":\"p99\"},"
                      "\"rpc_errors\":[]}}");
    json_t *patched = cfg_merge_patch(out, patch);
    cfg_errors_t errs;
    cfg_errors_init(&errs);
    cfg_t *after = cfg_decode(patched, CFG_SCOPE_FLEET, &errs);
    assert_non_null(after);
    assert_int_equal(after->services.entries[0].retry.budget.min_concurrent, 9);
    assert_int_equal(after->services.entries[0].retry.budget.percent, 50);
    assert_int_equal(after->services.entries[1].retry.budget.percent, 5);
    assert_int_equal(after->services.entries[0].hedge.delay_percentile, 99);
    assert_int_equal(after->services.entries[1].hedge.delay_ms, 1000);
    assert_int_equal(after->services.entries[0].rpc_errors.size, 0);
    assert_int_equal(after->services.entries[2].rpc_errors.size, 2);
    /* a deep copy keeps lists and derived members */
    cfg_t *copy = cfg_dup(cfg);
    assert_int_equal(copy->services.entries[2].rpc_errors.size, 2);
    assert_string_equal(copy->services.entries[2].rpc_errors.entries[0].message, "Daily Request Count");
    assert_int_equal(copy->services.entries[0].hedge.delay_percentile, 95);
    char *c1 = cfg_canonical(cfg, CFG_SCOPE_FLEET), *c2 = cfg_canonical(copy, CFG_SCOPE_FLEET);
    assert_string_equal(c1, c2);
    free(c1);
    free(c2);
    cfg_destroy(copy);
    cfg_destroy(after);
    cfg_errors_dispose(&errs);
    json_decref(patch);
    json_decref(patched);
    json_decref(out);
    cfg_destroy(cfg);

    /* one attempt with hedging on is a valid combination */
    cfg = parse_ok("services: [{id: e, endpoints: [{url: 'http://x'}], retry: {max_attempts: 1}, hedge: {delay: 20ms}}]",
                   CFG_SCOPE_FLEET);
    assert_int_equal(cfg->services.entries[0].retry.max_attempts, 1);
    assert_int_equal(cfg->services.entries[0].hedge.delay_ms, 20);
    cfg_destroy(cfg);

#define SVC "services: [{id: e, endpoints: [{url: 'http://x'}], "
    static const char *const cases[][2] = {
        {SVC "retry: {backoff: {base: 1s}}}]",
         "services[0].retry.backoff.base: must be at most retry.backoff.max (base 1s, max 250ms)"},
        {"defaults: {retry: {backoff: {base: 2s, max: 1s}}}\n" SVC "}]", "defaults.retry.backoff.base: must be at most"},
        {"defaults: {retry: {backoff: {max: 1s}}}\n" SVC "retry: {backoff: {max: 10ms}}}]", "services[0].retry.backoff.base"},
        {SVC "rpc_errors: [{code: 1, class: server_error}, {class: rate_limited}]}]",
         "services[0].rpc_errors[1]: needs a code, a message or both"},
        {"defaults: {rpc_errors: [{class: rate_limited}]}\n" SVC "}]", "defaults.rpc_errors[0]: needs a code, a message or both"},
        {SVC "rpc_errors: [{code: 1}]}]", "services[0].rpc_errors[0].class: required"},
        {SVC "rpc_errors: [{code: 1, class: slow}]}]", "services[0].rpc_errors[0].class: must be one of rate_limited"},
        {SVC "rpc_errors: [{code: 2147483648, class: slow}]}]", "services[0].rpc_errors[0].code: must be between -2147483648"},
        {SVC "rpc_errors: [{code: '-32005', class: rate_limited}]}]", "services[0].rpc_errors[0].code: must be an integer"},
        {SVC "rpc_errors: [{message: \"a\\nb\", class: rate_limited}]}]", "services[0].rpc_errors[0].message: must not contain"},
        {SVC "retry: {retry_on: [reset, http_5xx, resets]}}]",
         "services[0].retry.retry_on[2]: must be one of connect_failure, reset, timeout"},
        {SVC "retry: {retry_on: [reset, reset]}}]", "services[0].retry.retry_on[1]: 'reset' is listed twice"},
        {SVC "retry: {retry_on: reset}}]", "services[0].retry.retry_on: must be a list of names, not a string"},
        {SVC "retry: {max_attempts: 0}}]", "services[0].retry.max_attempts: must be between 1 and 10"},
        {SVC "retry: {budget: {percent: 101}}}]", "services[0].retry.budget.percent: must be between 0 and 100"},
        {SVC "retry: {unsafe_methods: ['eth send']}}]", "services[0].retry.unsafe_methods[0]: a method name may contain only"},
        {SVC "retry: {budget: {percnt: 1}}}]", "services[0].retry.budget.percnt: unknown key (did you mean 'percent'?)"},
        {SVC "hedge: {delay: p100}}]", "services[0].hedge.delay: must be 0s (off), a duration"},
        {SVC "hedge: {delay: p49}}]", "services[0].hedge.delay: must be 0s (off)"},
        {SVC "hedge: {delay: 11m}}]", "services[0].hedge.delay: must be 0s (off)"},
        {SVC "hedge: {delay: 20}}]", "services[0].hedge.delay: must be a string, not an integer"},
        {SVC "hedge: {max_extra: 4}}]", "services[0].hedge.max_extra: must be between 0 and 3"},
    };
#undef SVC
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
        assert_error(cases[i][0], CFG_SCOPE_FLEET, cases[i][1]);
    /* at most 64 rows */
    char big[8192] = "services: [{id: e, endpoints: [{url: 'http://x'}], rpc_errors: [";
    for (int i = 0; i < 65; i++)
        snprintf(big + strlen(big), sizeof(big) - strlen(big), "%s{code: %d, class: server_error}", i ? ", " : "", -i);
    strcat(big, "]}]");
    assert_error(big, CFG_SCOPE_FLEET, "services[0].rpc_errors: must have between 0 and 64 entries");
}

static void test_cors(void **state)
{
    cfg_t *cfg = parse_ok("defaults:\n  cors: {allow_origins: ['https://app.example.com', 'http://localhost:3000'], max_age: 1h}\n"
                          "services:\n"
                          "  - {id: eth, endpoints: [{url: 'http://a:1'}]}\n"
                          "  - {id: poly, endpoints: [{url: 'http://a:1'}], cors: {allow_origins: ['*']}}\n",
                          CFG_SCOPE_FLEET);
    cfg_service_t *eth = &cfg->services.entries[0], *poly = &cfg->services.entries[1];
    assert_int_equal(eth->cors.allow_origins.size, 2);
    assert_string_equal(eth->cors.allow_origins.entries[1], "http://localhost:3000");
    assert_int_equal(eth->cors.max_age_ms, 3600000);
    assert_int_equal(poly->cors.allow_origins.size, 1);
    assert_string_equal(poly->cors.allow_origins.entries[0], "*");
    assert_int_equal(poly->cors.max_age_ms, 3600000); /* inherited key by key */
    /* the inherited list is a copy of its own: freeing the document frees each once (ASan checks) */
    char *c = cfg_canonical(cfg, CFG_SCOPE_FLEET);
    assert_non_null(strstr(c, "\"cors\":{\"allow_origins\":[\"*\"]}"));
    free(c);
    cfg_t *copy = cfg_dup(cfg);
    assert_string_equal(copy->services.entries[0].cors.allow_origins.entries[0], "https://app.example.com");
    cfg_destroy(copy);
    cfg_destroy(cfg);
    cfg = cfg_create_default();
    assert_int_equal(cfg->defaults.cors.allow_origins.size, 0); /* off by default */
    assert_int_equal(cfg->listen.entries[0].http2, 1);
    assert_null(cfg->admin.token_file);
    cfg_destroy(cfg);
    assert_error(
        "defaults:\n  cors: {allow_origins: ['https://app.example.com/']}\nservices: [{id: a, endpoints: [{url: 'http://a:1'}]}]\n",
        CFG_SCOPE_FLEET, "defaults.cors.allow_origins[0]: an origin has no path");
    assert_error("defaults:\n  cors: {allow_origins: ['app.example.com']}\nservices: [{id: a, endpoints: [{url: 'http://a:1'}]}]\n",
                 CFG_SCOPE_FLEET, "defaults.cors.allow_origins[0]: must be * or an origin");
    assert_error("defaults:\n  cors: {allow_origins: 'https://a.b'}\nservices: [{id: a, endpoints: [{url: 'http://a:1'}]}]\n",
                 CFG_SCOPE_FLEET, "defaults.cors.allow_origins: must be a list of strings, not a string");
}

static void assert_redacted(const char *url, const char *expected)
{
    char *r = cfg_redact_url(url);
    assert_non_null(r);
    assert_string_equal(r, expected);
    free(r);
}

static void test_redact(void **state)
{
    assert_redacted("https://eth.provider.example/v2/KEY", "https://eth.provider.example/<redacted>");
    assert_redacted("https://u:p@eth.example:8443/v2/KEY?apikey=K", "https://<redacted>@eth.example:8443/<redacted>?<redacted>");
    assert_redacted("http://127.0.0.1:8545", "http://127.0.0.1:8545");
    assert_redacted("http://127.0.0.1:8545/", "http://127.0.0.1:8545/");
    assert_redacted("http://[::1]:8545/?key=K", "http://[::1]:8545/?<redacted>");
    assert_redacted("http://a@b@host/x", "http://<redacted>@host/<redacted>");
    assert_redacted("ftp://x/KEY", "<redacted>");
    assert_redacted("wss://u:p@eth.example/ws/KEY?k=1", "wss://<redacted>@eth.example/<redacted>?<redacted>");
    assert_redacted("ws://127.0.0.1:8546", "ws://127.0.0.1:8546");
    json_t *doc =
        j("{\"services\":[{\"id\":\"eth\",\"endpoints\":[{\"url\":\"https://k:s@h/KEY\",\"headers\":{\"X-Api-Key\":"
          "\"K2\"},\"name\":\"n\",\"ws_url\":\"wss://h/KEY\"},{\"url\":7}]},{\"id\":\"x\"}],\"log\":{\"level\":\"info\"}}");
    json_t *r = cfg_redact(doc);
    char *s = cfg_json_canonical(r);
    assert_string_equal(
        s, "{\"log\":{\"level\":\"info\"},\"services\":[{\"endpoints\":[{\"headers\":{\"X-Api-Key\":\"<redacted>\"},"
           "\"name\":\"n\",\"url\":\"https://<redacted>@h/<redacted>\",\"ws_url\":\"wss://h/<redacted>\"},{\"url\":7}],"
           "\"id\":\"eth\"},{\"id\":\"x\"}]}");
    free(s);
    /* the original is untouched */
    assert_string_equal(
        json_string_value(json_object_get(
            json_array_get(json_object_get(json_array_get(json_object_get(doc, "services"), 0), "endpoints"), 0), "url")),
        "https://k:s@h/KEY");
    json_decref(r);
    json_decref(doc);
    /* not a document at all: copied as it is */
    doc = j("[1,2]");
    r = cfg_redact(doc);
    assert_true(json_equal(doc, r));
    json_decref(r);
    json_decref(doc);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_table_walk),
        cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_inheritance),
        cmocka_unit_test(test_errors_with_paths),
        cmocka_unit_test(test_all_errors),
        cmocka_unit_test(test_fleet_scope),
        cmocka_unit_test(test_yaml_bounds),
        cmocka_unit_test(test_yaml_scalars),
        cmocka_unit_test(test_canonical_and_hash),
        cmocka_unit_test(test_relative_paths),
        cmocka_unit_test(test_read_file),
        cmocka_unit_test(test_reference_doc),
        cmocka_unit_test(test_endpoint_secrets_and_names),
        cmocka_unit_test(test_cors),
        cmocka_unit_test(test_redact),
        cmocka_unit_test(test_failover_policy),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
