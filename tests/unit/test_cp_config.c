/* cp_config: the control plane's own config file. Every error names its key. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>
#include "cp_config.h"
#include "cp_store.h"

static char dir[64];

static void write_file(const char *name, const char *text)
{
    char path[128];
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    FILE *fp = fopen(path, "w");
    assert_non_null(fp);
    fputs(text, fp);
    fclose(fp);
}

static int setup(void **state)
{
    snprintf(dir, sizeof(dir), "/tmp/test_cp_config.XXXXXX");
    assert_non_null(mkdtemp(dir));
    write_file("admin.token", "  admin-token-0123456789\n");
    write_file("short.token", "short\n");
    return 0;
}

static int teardown(void **state)
{
    const char *names[] = {"admin.token", "short.token", "cp.yaml"};
    char path[128];
    for (size_t i = 0; i < 3; i++) {
        snprintf(path, sizeof(path), "%s/%s", dir, names[i]);
        unlink(path);
    }
    rmdir(dir);
    return 0;
}

/* Loads `text` as cp.yaml; returns the config or NULL with the joined errors in *errs_out. */
static cp_config_t *load(const char *text, char **errs_out)
{
    write_file("cp.yaml", text);
    char path[128];
    snprintf(path, sizeof(path), "%s/cp.yaml", dir);
    cfg_errors_t errs;
    cfg_errors_init(&errs);
    cp_config_t *conf = cp_config_load(path, &errs);
    *errs_out = cfg_errors_join(&errs);
    cfg_errors_dispose(&errs);
    return conf;
}

static void test_full(void **state)
{
    char *errs;
    cp_config_t *conf =
        load("listen: '[::1]:7171'\ndatabase: cp.db\nmax_body: 64KiB\nheartbeat_timeout: 10s\nmax_wait: 1m\n"
             "log_level: warn\ntokens:\n"
             "  - {name: ops, role: admin, file: admin.token}\n"
             "  - {name: graf, role: viewer, sha256: 9F86D081884C7D659A2FEAA0C55AD015A3BF4F1B2B0B822CD15D6C15B0F00A08}\n",
             &errs);
    assert_string_equal(errs, "");
    free(errs);
    assert_non_null(conf);
    assert_string_equal(conf->listen_host, "::1");
    assert_int_equal(conf->listen_port, 7171);
    char db[128];
    snprintf(db, sizeof(db), "%s/cp.db", dir);
    assert_string_equal(conf->database, db); /* relative to the config file */
    assert_int_equal(conf->max_body, 65536);
    assert_int_equal(conf->heartbeat_ms, 10000);
    assert_int_equal(conf->max_wait_ms, 60000);
    assert_int_equal(conf->num_tokens, 2);
    unsigned char h[32];
    cp_token_hash("admin-token-0123456789", 22, h); /* whitespace around the file's token is not part of it */
    assert_memory_equal(conf->tokens[0].hash, h, 32);
    assert_int_equal(conf->tokens[0].role, CP_ROLE_ADMIN);
    cp_token_hash("test", 4, h);
    assert_memory_equal(conf->tokens[1].hash, h, 32);
    assert_int_equal(conf->tokens[1].role, CP_ROLE_VIEWER);
    cp_config_destroy(conf);
}

static void test_defaults(void **state)
{
    char *errs;
    cp_config_t *conf = load("tokens: [{name: ops, role: admin, file: admin.token}]\n", &errs);
    free(errs);
    assert_non_null(conf);
    assert_string_equal(conf->listen_host, "127.0.0.1"); /* loopback unless told otherwise */
    assert_int_equal(conf->listen_port, 7070);
    assert_int_equal(conf->max_body, CP_DEFAULT_MAX_BODY);
    assert_int_equal(conf->max_conns, CP_DEFAULT_MAX_CONNECTIONS);
    assert_int_equal(conf->max_dataplanes, CP_DEFAULT_MAX_DATAPLANES);
    /* the defaults are consistent: every dataplane can park a poll, and operators keep a reserve */
    assert_int_equal(conf->reserved_conns, CP_DEFAULT_RESERVED_CONNECTIONS);
    assert_int_equal(conf->max_long_polls, conf->max_conns - conf->reserved_conns);
    assert_true(conf->max_dataplanes <= conf->max_long_polls);
    assert_int_equal(conf->req_timeout_ms, CP_DEFAULT_REQUEST_TIMEOUT_MS);
    assert_int_equal(conf->tokens[0].num_ids, 0);
    assert_null(conf->default_rollout);
    cp_config_destroy(conf);
}

/* rollout: the default rollout of config writes, checked at load like the API checks one */
static void test_default_rollout(void **state)
{
    char *errs;
    cp_config_t *conf = load("rollout: {canary: {percent: 10}, steps: [{percent: 10, hold: 2m}], gate: {interval: 30s}}\n"
                             "tokens: [{name: ops, role: admin, file: admin.token}]\n",
                             &errs);
    free(errs);
    assert_non_null(conf);
    assert_int_equal(json_integer_value(json_object_get(json_object_get(conf->default_rollout, "canary"), "percent")), 10);
    cp_config_destroy(conf);
    conf = load("rollout: {steps: [{percent: 50, hold: 1m}, {percent: 20, hold: 1m}]}\n"
                "tokens: [{name: ops, role: admin, file: admin.token}]\n",
                &errs);
    assert_null(conf);
    assert_non_null(strstr(errs, "rollout.steps[1].percent: steps must grow"));
    free(errs);
}

/* Review items 1, 3 and 7: the connection cap, the dataplane count, the request timeout, and
 * dataplane tokens limited to ids. */
static void test_limits_and_token_ids(void **state)
{
    char *errs;
    cp_config_t *conf = load("max_connections: 8\nmax_dataplanes: 20\nrequest_timeout: 2s\ntokens:\n"
                             "  - {name: ops, role: admin, file: admin.token}\n"
                             "  - {name: eu, role: dataplane, sha256: "
                             "9F86D081884C7D659A2FEAA0C55AD015A3BF4F1B2B0B822CD15D6C15B0F00A08, ids: ['eu-*', 'edge-[0-9]']}\n",
                             &errs);
    assert_string_equal(errs, "");
    free(errs);
    assert_non_null(conf);
    assert_int_equal(conf->max_conns, 8);
    assert_int_equal(conf->reserved_conns, 4); /* half of a small max_connections */
    assert_int_equal(conf->max_long_polls, 4);
    assert_int_equal(conf->max_dataplanes, 20);
    assert_int_equal(conf->req_timeout_ms, 2000);
    const cp_token_t *eu = &conf->tokens[1];
    assert_int_equal(eu->num_ids, 2);
    assert_true(cp_token_allows_id(eu, "eu-1"));
    assert_true(cp_token_allows_id(eu, "edge-7"));
    assert_false(cp_token_allows_id(eu, "edge-77"));
    assert_false(cp_token_allows_id(eu, "us-1"));
    assert_true(cp_token_allows_id(&conf->tokens[0], "us-1")); /* no ids: any */
    cp_config_destroy(conf);

    conf = load("max_connections: 0\nmax_dataplanes: many\nrequest_timeout: 0s\ntokens:\n"
                "  - {name: ops, role: admin, file: admin.token, ids: ['a*']}\n"
                "  - {name: dp, role: dataplane, sha256: "
                "9F86D081884C7D659A2FEAA0C55AD015A3BF4F1B2B0B822CD15D6C15B0F00A08, ids: ['a b']}\n"
                "  - {name: dq, role: dataplane, sha256: "
                "0F86D081884C7D659A2FEAA0C55AD015A3BF4F1B2B0B822CD15D6C15B0F00A08, ids: []}\n",
                &errs);
    assert_null(conf);
    const char *expect[] = {
        "max_connections:", "max_dataplanes:", "request_timeout:", "tokens[0].ids:", "tokens[1].ids[0]:", "tokens[2].ids:"};
    for (size_t i = 0; i < sizeof(expect) / sizeof(expect[0]); i++) {
        if (strstr(errs, expect[i]) == NULL)
            fail_msg("missing \"%s\" in:\n%s", expect[i], errs);
    }
    free(errs);
    conf = load("max_connections: 70000\ntokens: [{name: ops, role: admin, file: admin.token}]\n", &errs);
    assert_null(conf);
    assert_non_null(strstr(errs, "max_connections:"));
    free(errs);

    /* parked polls must leave the reserve: each rule names its key */
    conf = load("max_connections: 100\nreserved_connections: 10\nmax_long_polls: 90\n"
                "tokens: [{name: ops, role: admin, file: admin.token}]\n",
                &errs);
    assert_string_equal(errs, "");
    free(errs);
    assert_int_equal(conf->max_long_polls, 90);
    cp_config_destroy(conf);
    conf = load("max_connections: 100\nreserved_connections: 10\n"
                "tokens: [{name: ops, role: admin, file: admin.token}]\n",
                &errs);
    free(errs);
    assert_int_equal(conf->max_long_polls, 90);
    cp_config_destroy(conf);
    conf = load("max_connections: 100\nreserved_connections: 10\nmax_long_polls: 91\n"
                "tokens: [{name: ops, role: admin, file: admin.token}]\n",
                &errs);
    assert_null(conf);
    assert_non_null(strstr(errs, "max_long_polls: at most max_connections - reserved_connections (100 - 10 = 90)"));
    free(errs);
    conf = load("max_connections: 100\nreserved_connections: 100\ntokens: [{name: ops, role: admin, file: admin.token}]\n", &errs);
    assert_null(conf);
    assert_non_null(strstr(errs, "reserved_connections: must be less than max_connections"));
    free(errs);
}

static void test_errors_name_keys(void **state)
{
    char *errs;
    cp_config_t *conf = load("listen: nowhere\nmax_body: lots\ncolour: red\nlog_level: loud\ntokens:\n"
                             "  - {name: ops, role: root, file: admin.token}\n"
                             "  - {name: 'a b', role: viewer, sha256: abc}\n"
                             "  - {name: x, role: viewer, file: short.token}\n"
                             "  - {name: y, role: viewer, file: missing.token}\n"
                             "  - {name: z, role: viewer}\n"
                             "  - {name: w, role: viewer, file: admin.token, sha256: abc, extra: 1}\n",
                             &errs);
    assert_null(conf);
    const char *expect[] = {"listen:",
                            "max_body:",
                            "colour: unknown key",
                            "log_level:",
                            "tokens[0].role:",
                            "tokens[1].name:",
                            "tokens[1].sha256:",
                            "tokens[2].file:",
                            "tokens[3].file:",
                            "tokens[4]: give the token",
                            "tokens[5].extra: unknown key",
                            "tokens[5]: give file or sha256, not both"};
    for (size_t i = 0; i < sizeof(expect) / sizeof(expect[0]); i++) {
        if (strstr(errs, expect[i]) == NULL)
            fail_msg("missing \"%s\" in:\n%s", expect[i], errs);
    }
    free(errs);

    conf = load("listen: 127.0.0.1:7070\n", &errs);
    assert_null(conf);
    assert_non_null(strstr(errs, "tokens: required"));
    free(errs);
    conf = load("tokens:\n  - {name: a, role: admin, file: admin.token}\n  - {name: a, role: viewer, file: admin.token}\n", &errs);
    assert_null(conf);
    assert_non_null(strstr(errs, "tokens[1]"));
    free(errs);
    conf = load("[1, 2\n", &errs);
    assert_null(conf);
    assert_true(strlen(errs) > 0);
    free(errs);
}

static void test_hostport(void **state)
{
    char *host;
    uint16_t port;
    const char *err;
    assert_int_equal(cp_parse_hostport("localhost:80", &host, &port, &err), 0);
    assert_string_equal(host, "localhost");
    assert_int_equal(port, 80);
    free(host);
    assert_int_equal(cp_parse_hostport("1.2.3.4:0", &host, &port, &err), -1);
    assert_int_equal(cp_parse_hostport("1.2.3.4:65536", &host, &port, &err), -1);
    assert_int_equal(cp_parse_hostport(":80", &host, &port, &err), -1);
    assert_int_equal(cp_parse_hostport("::1:80", &host, &port, &err), -1);
    assert_int_equal(cp_parse_hostport("[::1]80", &host, &port, &err), -1);
}

static void test_database_url(void **state)
{
    (void)state;
    char *errs = NULL;
    const char *tokens = "tokens:\n  - {name: ops, role: admin, file: admin.token}\n";
    /* a PostgreSQL URL is taken as it is, not as a path under the config's directory */
    char text[512];
    snprintf(text, sizeof(text), "database: postgres://pathway@db.example:5432/pathway?sslmode=require\n%s", tokens);
    cp_config_t *conf = load(text, &errs);
    assert_non_null(conf);
    assert_string_equal(conf->database, "postgres://pathway@db.example:5432/pathway?sslmode=require");
    cp_config_destroy(conf);
    free(errs);
    snprintf(text, sizeof(text), "database: postgresql://u@h/d\n%s", tokens);
    conf = load(text, &errs);
    assert_non_null(conf);
    assert_string_equal(conf->database, "postgresql://u@h/d");
    cp_config_destroy(conf);
    free(errs);
    /* one libpq cannot read: an error naming the key */
    snprintf(text, sizeof(text), "database: postgres://u@h/d?nosuchoption=1\n%s", tokens);
    conf = load(text, &errs);
    assert_null(conf);
    assert_non_null(strstr(errs, "database: not a valid PostgreSQL URL"));
    assert_non_null(strstr(errs, "nosuchoption"));
    free(errs);
}

static void test_database_describe_hides_password(void **state)
{
    (void)state;
    char out[256];
    cp_store_describe("postgres://pathway:s3cret@db:5432/pathway", out, sizeof(out));
    assert_string_equal(out, "postgres://pathway:***@db:5432/pathway");
    cp_store_describe("postgresql://u@h/d?sslmode=require&password=s3cret", out, sizeof(out));
    assert_null(strstr(out, "s3cret"));
    cp_store_describe("/var/lib/pathway/a:b@c.db", out, sizeof(out));
    assert_string_equal(out, "/var/lib/pathway/a:b@c.db");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_full),
        cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_default_rollout),
        cmocka_unit_test(test_limits_and_token_ids),
        cmocka_unit_test(test_errors_name_keys),
        cmocka_unit_test(test_hostport),
        cmocka_unit_test(test_database_url),
        cmocka_unit_test(test_database_describe_hides_password),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
