/* pathwayctl's pure pieces: the command line, connection settings, `set` paths -> merge patch, and
 * the readable diff. The commands themselves are covered against a real control plane by
 * tests/integration/test_pathwayctl.py. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include "cfg.h"
#include "ctl.h"

static json_t *j(const char *s)
{
    json_error_t e;
    json_t *v = json_loads(s, JSON_DECODE_ANY, &e);
    if (v == NULL)
        fail_msg("bad test JSON %s: %s", s, e.text);
    return v;
}

/* Parses a command line given as one string of space-separated words. */
static int parse(const char *line, ctl_args_t *args, char *err, size_t errlen)
{
    static char buf[1024];
    static char *argv[64];
    int argc = 0;
    snprintf(buf, sizeof(buf), "pathwayctl %s", line);
    for (char *tok = strtok(buf, " "); tok != NULL && argc < 63; tok = strtok(NULL, " "))
        argv[argc++] = tok;
    argv[argc] = NULL;
    return ctl_parse_args(argc, argv, args, err, errlen);
}

static void test_args_commands(void **state)
{
    ctl_args_t a;
    char err[256];
    assert_int_equal(parse("versions --json -n 5", &a, err, sizeof(err)), 0);
    assert_string_equal(a.cmd->name, "versions");
    assert_true(a.given & CTL_OPT_JSON);
    assert_int_equal(a.limit, 5);

    /* options before the command, --name=value, -mVALUE */
    assert_int_equal(parse("--url=http://x:1 apply f.yaml -mhello --force", &a, err, sizeof(err)), 0);
    assert_string_equal(a.cmd->name, "apply");
    assert_string_equal(a.url, "http://x:1");
    assert_string_equal(a.message, "hello");
    assert_true(a.given & CTL_OPT_FORCE);
    assert_int_equal(a.npositional, 1);
    assert_string_equal(a.positional[0], "f.yaml");

    assert_int_equal(parse("set limiter.max_concurrent=200 services.eth.pool.max_conns_per_host=20 -m why", &a, err, sizeof(err)),
                     0);
    assert_int_equal(a.npositional, 2);
    assert_string_equal(a.message, "why");

    /* "--" ends options: a value that starts with '-' */
    assert_int_equal(parse("set -- -weird=1", &a, err, sizeof(err)), 0);
    assert_string_equal(a.positional[0], "-weird=1");

    assert_int_equal(parse("rollback 3 --if-match 7", &a, err, sizeof(err)), 0);
    assert_true(a.given & CTL_OPT_IF_MATCH);
    assert_int_equal(a.if_match, 7);
}

static void test_args_help(void **state)
{
    ctl_args_t a;
    char err[256];
    assert_int_equal(parse("--help", &a, err, sizeof(err)), 0);
    assert_true(a.help);
    assert_null(a.cmd);
    assert_int_equal(parse("diff --help", &a, err, sizeof(err)), 0);
    assert_true(a.help);
    assert_string_equal(a.cmd->name, "diff");
    /* help wins over a missing argument */
    assert_int_equal(parse("apply -h", &a, err, sizeof(err)), 0);
    assert_true(a.help);
    assert_int_equal(parse("help set", &a, err, sizeof(err)), 0);
    assert_true(a.help);
    assert_string_equal(a.cmd->name, "set");
    /* every command has help text */
    for (size_t i = 0; i < ctl_num_commands; i++) {
        assert_non_null(ctl_commands[i].help);
        assert_non_null(ctl_commands[i].summary);
        assert_non_null(ctl_commands[i].run);
    }
}

static void test_args_usage_errors(void **state)
{
    static const struct {
        const char *line;
        const char *want; /* part of the message */
    } cases[] = {
        {"", "no command"},
        {"frobnicate", "unknown command 'frobnicate'"},
        {"versions --bogus", "unknown option --bogus"},
        {"apply --yaml f.yaml", "option --yaml does not apply"},
        {"status --force", "option --force does not apply"},
        {"apply", "expects arguments FILE"},
        {"apply a b", "expects arguments FILE"},
        {"status extra", "expects no arguments"},
        {"diff", "expects arguments A [B]"},
        {"set", "expects arguments KEY=VALUE..."},
        {"show --json --yaml 3", "exclude each other"},
        {"apply f --force --if-match 3", "exclude each other"},
        {"versions -n 0", "from 1 to 1000"},
        {"versions -n x", "from 1 to 1000"},
        {"versions --json=1", "takes no value"},
        {"apply f -m", "needs a value"},
        {"status --color=sometimes", "auto, always or never"},
        {"rollback 3 --if-match -1", "version number"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        ctl_args_t a;
        char err[256] = "";
        if (parse(cases[i].line, &a, err, sizeof(err)) != -1)
            fail_msg("'%s' parsed, want an error", cases[i].line);
        if (strstr(err, cases[i].want) == NULL)
            fail_msg("'%s': got '%s', want '%s'", cases[i].line, err, cases[i].want);
    }
}

/* --- connection settings --------------------------------------------------------------------- */

static char tmpdir[256];

static int make_tmpdir(void **state)
{
    snprintf(tmpdir, sizeof(tmpdir), "/tmp/test_pathwayctl.XXXXXX");
    if (mkdtemp(tmpdir) == NULL)
        return -1;
    char p[512];
    snprintf(p, sizeof(p), "%s/pathway", tmpdir);
    return mkdir(p, 0700);
}

static int remove_tmpdir(void **state)
{
    char cmd[600];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
    return system(cmd) == 0 ? 0 : -1;
}

static void write_file(const char *rel, const char *text)
{
    char p[512];
    snprintf(p, sizeof(p), "%s/%s", tmpdir, rel);
    FILE *fp = fopen(p, "w");
    assert_non_null(fp);
    fputs(text, fp);
    fclose(fp);
}

static void test_conn_precedence(void **state)
{
    ctl_args_t a;
    ctl_conn_t c;
    char err[256];
    ctl_env_t env = {.xdg_config_home = tmpdir};

    /* nothing anywhere: the defaults */
    unlink("/nonexistent");
    assert_int_equal(parse("status", &a, err, sizeof(err)), 0);
    ctl_env_t empty = {.home = "/nonexistent-home"};
    assert_int_equal(ctl_conn_resolve(&a, &empty, &c, err, sizeof(err)), 0);
    assert_string_equal(c.url, CTL_DEFAULT_URL);
    assert_null(c.token);
    assert_int_equal(c.timeout_ms, CTL_DEFAULT_TIMEOUT_MS);
    assert_null(c.config_file);
    ctl_conn_dispose(&c);

    /* the file in $XDG_CONFIG_HOME/pathway, token_file relative to it */
    write_file("pathway/pathwayctl.yaml", "url: http://file:7070/\ntoken_file: tok\ntimeout: 2s\n");
    write_file("pathway/tok", "  file-token\n");
    assert_int_equal(ctl_conn_resolve(&a, &env, &c, err, sizeof(err)), 0);
    assert_string_equal(c.url, "http://file:7070"); /* trailing '/' dropped */
    assert_string_equal(c.token, "file-token");     /* whitespace trimmed */
    assert_int_equal(c.timeout_ms, 2000);
    assert_non_null(c.config_file);
    ctl_conn_dispose(&c);

    /* the environment beats the file, one setting at a time */
    env.url = "http://env:1";
    assert_int_equal(ctl_conn_resolve(&a, &env, &c, err, sizeof(err)), 0);
    assert_string_equal(c.url, "http://env:1");
    assert_string_equal(c.token, "file-token");
    ctl_conn_dispose(&c);
    env.token = "env-token";
    assert_int_equal(ctl_conn_resolve(&a, &env, &c, err, sizeof(err)), 0);
    assert_string_equal(c.token, "env-token");
    ctl_conn_dispose(&c);

    /* flags beat both */
    assert_int_equal(parse("status --url http://flag:2 --token flag-token --timeout 500ms", &a, err, sizeof(err)), 0);
    assert_int_equal(ctl_conn_resolve(&a, &env, &c, err, sizeof(err)), 0);
    assert_string_equal(c.url, "http://flag:2");
    assert_string_equal(c.token, "flag-token");
    assert_int_equal(c.timeout_ms, 500);
    ctl_conn_dispose(&c);

    /* HOME when XDG_CONFIG_HOME is unset */
    ctl_env_t home = {.home = "/home/op"};
    char *p = ctl_default_config_path(&home);
    assert_string_equal(p, "/home/op/.config/pathway/pathwayctl.yaml");
    free(p);
}

static void test_conn_errors(void **state)
{
    ctl_args_t a;
    ctl_conn_t c;
    char err[256], line[600];
    ctl_env_t env = {.xdg_config_home = tmpdir};

    write_file("bad1.yaml", "url: http://x\nsecret: 1\n");
    snprintf(line, sizeof(line), "status --config %s/bad1.yaml", tmpdir);
    assert_int_equal(parse(line, &a, err, sizeof(err)), 0);
    assert_int_equal(ctl_conn_resolve(&a, &env, &c, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "secret: unknown key"));

    /* --config names a file that must exist; the default one need not */
    snprintf(line, sizeof(line), "status --config %s/missing.yaml", tmpdir);
    assert_int_equal(parse(line, &a, err, sizeof(err)), 0);
    assert_int_equal(ctl_conn_resolve(&a, &env, &c, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "missing.yaml"));

    assert_int_equal(parse("status --url ftp://x", &a, err, sizeof(err)), 0);
    assert_int_equal(ctl_conn_resolve(&a, &env, &c, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "http://"));

    assert_int_equal(parse("status --timeout soon", &a, err, sizeof(err)), 0);
    assert_int_equal(ctl_conn_resolve(&a, &env, &c, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "timeout 'soon'"));

    snprintf(line, sizeof(line), "status --token-file %s/none.token", tmpdir);
    assert_int_equal(parse(line, &a, err, sizeof(err)), 0);
    assert_int_equal(ctl_conn_resolve(&a, &env, &c, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "none.token"));
}

/* --- set ------------------------------------------------------------------------------------- */

static const char *doc_text =
    "{\"limiter\":{\"max_concurrent\":100,\"max_queue\":1000},\"log\":{\"level\":\"info\"},"
    "\"services\":[{\"id\":\"eth\",\"endpoints\":[{\"url\":\"http://a\"},{\"url\":\"http://b\"}]},"
    "{\"id\":\"poly.main\",\"endpoints\":[{\"url\":\"http://c\"}],\"pool\":{\"max_conns_per_host\":20}}]}";

/* Applies assignments (NULL-terminated) to doc_text; returns the merge patch as compact sorted JSON,
 * or the error message. */
static char *set_patch(const char *const *assignments)
{
    size_t n = 0;
    while (assignments[n] != NULL)
        n++;
    json_t *doc = j(doc_text);
    char err[256];
    json_t *after = ctl_set_apply(doc, assignments, n, err, sizeof(err));
    if (after == NULL) {
        json_decref(doc);
        return strdup(err);
    }
    /* the patch applied to the document gives exactly the edited document */
    json_t *patch = ctl_merge_diff(doc, after);
    json_t *round = cfg_merge_patch(doc, patch);
    assert_true(json_equal(round, after));
    char *s = json_dumps(patch, JSON_COMPACT | JSON_SORT_KEYS);
    json_decref(round);
    json_decref(patch);
    json_decref(after);
    json_decref(doc);
    return s;
}

#define ASSERT_SET(want, ...)                                                                                                      \
    do {                                                                                                                           \
        static const char *const as[] = {__VA_ARGS__, NULL};                                                                       \
        char *got = set_patch(as);                                                                                                 \
        if (strcmp(got, want) != 0)                                                                                                \
            fail_msg("%s: got %s, want %s", as[0], got, want);                                                                     \
        free(got);                                                                                                                 \
    } while (0)

/* The assignment fails with an error that contains `want`. */
#define ASSERT_SET_ERR(want, ...)                                                                                                  \
    do {                                                                                                                           \
        static const char *const as[] = {__VA_ARGS__, NULL};                                                                       \
        char *got = set_patch(as);                                                                                                 \
        if (strstr(got, want) == NULL)                                                                                             \
            fail_msg("%s: got '%s', want '%s'", as[0], got, want);                                                                 \
        free(got);                                                                                                                 \
    } while (0)

static void test_set_objects_and_values(void **state)
{
    ASSERT_SET("{\"limiter\":{\"max_concurrent\":200}}", "limiter.max_concurrent=200");
    ASSERT_SET("{\"limiter\":{\"max_concurrent\":200},\"log\":{\"level\":\"debug\"}}", "limiter.max_concurrent=200",
               "log.level=debug");
    /* values: JSON when they parse, else strings */
    ASSERT_SET("{\"log\":{\"level\":\"200\"}}", "log.level=\"200\"");
    ASSERT_SET("{\"log\":{\"access_log\":true}}", "log.access_log=true");
    ASSERT_SET("{\"limiter\":{\"queue_timeout\":\"2s\"}}", "limiter.queue_timeout=2s");
    ASSERT_SET("{\"log\":{\"level\":\"\"}}", "log.level=");
    ASSERT_SET("{\"buffers\":{\"size\":\"64KiB\"}}", "buffers.size=64KiB");
    ASSERT_SET("{\"limiter\":{\"max_concurrent\":1,\"max_queue\":2}}", "limiter={\"max_concurrent\":1,\"max_queue\":2}");
    /* objects created on the way */
    ASSERT_SET("{\"defaults\":{\"pool\":{\"idle_timeout\":\"30s\"}}}", "defaults.pool.idle_timeout=30s");
    /* null removes (back to the default) */
    ASSERT_SET("{\"limiter\":{\"max_queue\":null}}", "limiter.max_queue=null");
    /* setting what is already there changes nothing */
    ASSERT_SET("{}", "limiter.max_concurrent=100");
    /* later assignments see earlier ones */
    ASSERT_SET("{\"limiter\":{\"max_concurrent\":3}}", "limiter.max_concurrent=2", "limiter.max_concurrent=3");
    /* '=' in a value */
    ASSERT_SET("{\"log\":{\"level\":\"a=b\"}}", "log.level=a=b");
}

static void test_set_lists(void **state)
{
    /* a service by id: the whole list goes in the patch (RFC 7386 replaces arrays) */
    ASSERT_SET("{\"services\":[{\"endpoints\":[{\"url\":\"http://a\"},{\"url\":\"http://"
               "b\"}],\"id\":\"eth\",\"pool\":{\"max_conns_per_host\":"
               "7}},{\"endpoints\":[{\"url\":\"http://c\"}],\"id\":\"poly.main\",\"pool\":{\"max_conns_per_host\":20}}]}",
               "services.eth.pool.max_conns_per_host=7");
    /* an id with a dot, in brackets; an endpoint by index */
    ASSERT_SET(
        "{\"services\":[{\"endpoints\":[{\"url\":\"http://a\"},{\"url\":\"http://b\"}],\"id\":\"eth\"},{\"endpoints\":[{\"url\":"
        "\"http://z\"}],\"id\":\"poly.main\",\"pool\":{\"max_conns_per_host\":20}}]}",
        "services[poly.main].endpoints.0.url=http://z");
    /* by index, and the same item by id */
    ASSERT_SET(
        "{\"services\":[{\"endpoints\":[{\"url\":\"http://a\"},{\"url\":\"http://b\"}],\"id\":\"eth\"},{\"endpoints\":[{\"url\":"
        "\"http://c\"}],\"id\":\"poly.main\",\"pool\":{\"max_conns_per_host\":21}}]}",
        "services.1.pool.max_conns_per_host=21");
    /* a name no item has adds one */
    ASSERT_SET(
        "{\"services\":[{\"endpoints\":[{\"url\":\"http://a\"},{\"url\":\"http://b\"}],\"id\":\"eth\"},{\"endpoints\":[{\"url\":"
        "\"http://c\"}],\"id\":\"poly.main\",\"pool\":{\"max_conns_per_host\":20}},{\"endpoints\":[{\"url\":\"http://d\"}],\"id\":"
        "\"bsc\"}]}",
        "services.bsc.endpoints=[{\"url\":\"http://d\"}]");
    /* null removes an item; a whole item keeps its name */
    ASSERT_SET(
        "{\"services\":[{\"endpoints\":[{\"url\":\"http://c\"}],\"id\":\"poly.main\",\"pool\":{\"max_conns_per_host\":20}}]}",
        "services.eth=null");
    ASSERT_SET(
        "{\"services\":[{\"endpoints\":[{\"url\":\"http://x\"}],\"id\":\"eth\"},{\"endpoints\":[{\"url\":\"http://c\"}],\"id\":"
        "\"poly.main\",\"pool\":{\"max_conns_per_host\":20}}]}",
        "services.eth={\"endpoints\":[{\"url\":\"http://x\"}]}");
    /* the second endpoint removed */
    ASSERT_SET(
        "{\"services\":[{\"endpoints\":[{\"url\":\"http://a\"}],\"id\":\"eth\"},{\"endpoints\":[{\"url\":\"http://c\"}],\"id\":"
        "\"poly.main\",\"pool\":{\"max_conns_per_host\":20}}]}",
        "services.eth.endpoints.1=null");
}

static void test_set_errors(void **state)
{
    static const struct {
        const char *arg;
        const char *want;
    } cases[] = {
        {"limiter.max_concurrent", "expected KEY=VALUE"},
        {"=5", "empty key"},
        {"limiter..max=1", "empty segment"},
        {"limiter.=1", "ends with '.'"},
        {"services[eth.pool=1", "'[' without ']'"},
        {"services]x=1", "']' without '['"},
        {"services[eth]x=1", "must be followed by"},
        {"log.level.deeper=1", "log.level is a string, not an object or a list"},
        {"services.eth.endpoints.5.url=x", "services.eth.endpoints: no item 5 (the list has 2)"},
        {"services.nope=null", "services: no item has id 'nope'"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const char *as[] = {cases[i].arg, NULL};
        char *got = set_patch(as);
        if (strstr(got, cases[i].want) == NULL)
            fail_msg("%s: got '%s', want '%s'", cases[i].arg, got, cases[i].want);
        free(got);
    }
    /* syntax is checked without a document */
    char err[256];
    const char *bad[] = {"ok=1", "limiter..x=1"};
    assert_int_equal(ctl_set_check(bad, 2, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "limiter..x"));
    assert_int_equal(ctl_set_check(bad, 1, err, sizeof(err)), 0);
}

static void test_set_null_creates_nothing(void **state)
{
    /* removing below a key that is absent: no-op, no empty objects left behind */
    ASSERT_SET("{}", "services.eth.limiter.max_concurrent=null");
    ASSERT_SET("{}", "tracing.sample.rate=null");
    /* removing below a list item that does not exist: an error, not a new item */
    ASSERT_SET_ERR("services: no item has id 'ethh'", "services.ethh.pool.max_conns_per_host=null");
    ASSERT_SET_ERR("services.eth.endpoints: no item 7 (the list has 2)", "services.eth.endpoints.7.url=null");
}

static void test_set_all_digit_segments_are_indexes(void **state)
{
    ASSERT_SET_ERR("services.eth.endpoints: no item 1000000000 (the list has 2)", "services.eth.endpoints.1000000000=1");
    ASSERT_SET_ERR("services.eth.endpoints: no item 99999999999999999999999 (the list has 2)",
                   "services.eth.endpoints.99999999999999999999999.url=x");
    /* a leading zero is still an index */
    ASSERT_SET("{\"services\":[{\"endpoints\":[{\"url\":\"http://a\"},{\"url\":\"http://z\"}],\"id\":\"eth\"},{\"endpoints\":[{"
               "\"url\":\"http://c\"}],\"id\":\"poly.main\",\"pool\":{\"max_conns_per_host\":20}}]}",
               "services.eth.endpoints.01.url=http://z");
    ASSERT_SET_ERR("services: no item 007 (the list has 2)", "services.007.pool.max_conns_per_host=1");
}

static void test_set_integral_reals(void **state)
{
    ASSERT_SET("{\"limiter\":{\"max_concurrent\":1000}}", "limiter.max_concurrent=1e3");
    ASSERT_SET("{\"limiter\":{\"max_concurrent\":200}}", "limiter.max_concurrent=200.0");
    ASSERT_SET("{\"limiter\":{\"max_concurrent\":7,\"max_queue\":20}}", "limiter={\"max_concurrent\":7e0,\"max_queue\":2E1}");
    /* a real that is not integral, or beyond int64, stays a real */
    json_t *v = ctl_set_value("0.5");
    assert_true(json_is_real(v));
    json_decref(v);
    v = ctl_set_value("1e19");
    assert_true(json_is_real(v));
    json_decref(v);
    v = ctl_set_value("-9.223372036854775808e18");
    assert_true(json_is_integer(v));
    assert_true(json_integer_value(v) == INT64_MIN);
    json_decref(v);
}

static void test_message_length(void **state)
{
    ctl_args_t a;
    char err[256], msg[CTL_MAX_MESSAGE + 2];
    memset(msg, 'x', sizeof(msg) - 1);
    msg[sizeof(msg) - 1] = '\0'; /* 1025 bytes */
    char *argv[] = {"pathwayctl", "apply", "f.yaml", "-m", msg, NULL};
    assert_int_equal(ctl_parse_args(5, argv, &a, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "at most 1024 bytes"));
    msg[CTL_MAX_MESSAGE] = '\0'; /* 1024: the API's limit, allowed */
    assert_int_equal(ctl_parse_args(5, argv, &a, err, sizeof(err)), 0);
    assert_int_equal(strlen(a.message), CTL_MAX_MESSAGE);
}

static void test_doc_version(void **state)
{
    int64_t v = 0;
    static const char shown[] = "# pathway fleet document, version 12 (hash abc)\nlog:\n  level: info\n";
    assert_int_equal(ctl_doc_version(shown, strlen(shown), &v), 0);
    assert_int_equal(v, 12);
    static const char *const not_shown[] = {
        "log:\n  level: info\n",
        "# pathway fleet document, version \n",
        "# pathway fleet document, version 0 (hash x)\n",
        "# pathway fleet document, version 12x\n",
        "# pathway fleet document, version 99999999999999999999 (hash x)\n",
        "\n# pathway fleet document, version 3 (hash x)\n",
    };
    for (size_t i = 0; i < sizeof(not_shown) / sizeof(not_shown[0]); i++)
        assert_int_equal(ctl_doc_version(not_shown[i], strlen(not_shown[i]), &v), -1);
    /* not NUL-terminated: only len bytes are read */
    assert_int_equal(ctl_doc_version(shown, strlen("# pathway fleet document, version 1"), &v), 0);
    assert_int_equal(v, 1);
}

/* --- diff -------------------------------------------------------------------------------------- */

static char *diff_text(const char *a, const char *b)
{
    json_t *ja = j(a), *jb = j(b);
    ctl_changes_t ch;
    assert_int_equal(ctl_diff(ja, jb, &ch), 0);
    char *buf = NULL;
    size_t len = 0;
    FILE *fp = open_memstream(&buf, &len);
    ctl_changes_print(fp, &ch, 0);
    fclose(fp);
    ctl_changes_dispose(&ch);
    json_decref(ja);
    json_decref(jb);
    return buf;
}

#define ASSERT_DIFF(a, b, want)                                                                                                    \
    do {                                                                                                                           \
        char *got = diff_text(a, b);                                                                                               \
        if (strcmp(got, want) != 0)                                                                                                \
            fail_msg("got\n%s\nwant\n%s", got, want);                                                                              \
        free(got);                                                                                                                 \
    } while (0)

static void test_diff(void **state)
{
    ASSERT_DIFF("{\"a\":1}", "{\"a\":1}", "");
    ASSERT_DIFF("{\"limiter\":{\"max_concurrent\":100}}", "{\"limiter\":{\"max_concurrent\":200}}",
                "~ limiter.max_concurrent: 100 -> 200\n");
    ASSERT_DIFF("{\"log\":{\"level\":\"info\"}}", "{\"log\":{}}", "- log.level: \"info\"\n");
    /* an added object reads as its leaves */
    ASSERT_DIFF("{\"services\":[{\"id\":\"eth\"}]}", "{\"services\":[{\"id\":\"eth\",\"pool\":{\"max_conns_per_host\":20}}]}",
                "+ services.eth.pool.max_conns_per_host: 20\n");
    /* a service removed from the middle is one line, not a shift of the later ones */
    ASSERT_DIFF("{\"services\":[{\"id\":\"a\"},{\"id\":\"b\",\"x\":1},{\"id\":\"c\"}]}",
                "{\"services\":[{\"id\":\"a\"},{\"id\":\"c\"}]}", "- services.b: {\"id\":\"b\",\"x\":1}\n");
    ASSERT_DIFF("{\"services\":[{\"id\":\"a\"}]}", "{\"services\":[{\"id\":\"a\"},{\"id\":\"e.1\"}]}",
                "+ services[e.1]: {\"id\":\"e.1\"}\n");
    /* reordering is a change of its own */
    ASSERT_DIFF("{\"services\":[{\"id\":\"a\"},{\"id\":\"b\"}]}", "{\"services\":[{\"id\":\"b\"},{\"id\":\"a\"}]}",
                "~ services: [\"a\",\"b\"] -> [\"b\",\"a\"]\n");
    /* lists without ids: by index when the length holds, else whole */
    ASSERT_DIFF("{\"e\":[{\"url\":\"x\"},{\"url\":\"y\"}]}", "{\"e\":[{\"url\":\"x\"},{\"url\":\"z\"}]}",
                "~ e.1.url: \"y\" -> \"z\"\n");
    ASSERT_DIFF("{\"e\":[1]}", "{\"e\":[1,2]}", "~ e: [1] -> [1,2]\n");
    ASSERT_DIFF("{}", "{\"a\":{\"b\":1,\"c\":2}}", "+ a.b: 1\n+ a.c: 2\n");
}

static void test_path_append(void **state)
{
    char *p = NULL;
    assert_int_equal(ctl_path_append(&p, "services"), 0);
    assert_int_equal(ctl_path_append(&p, "eth.main"), 0);
    assert_int_equal(ctl_path_append(&p, "pool"), 0);
    assert_string_equal(p, "services[eth.main].pool");
    free(p);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_args_commands),
        cmocka_unit_test(test_args_help),
        cmocka_unit_test(test_args_usage_errors),
        cmocka_unit_test_setup_teardown(test_conn_precedence, make_tmpdir, remove_tmpdir),
        cmocka_unit_test_setup_teardown(test_conn_errors, make_tmpdir, remove_tmpdir),
        cmocka_unit_test(test_set_objects_and_values),
        cmocka_unit_test(test_set_lists),
        cmocka_unit_test(test_set_errors),
        cmocka_unit_test(test_set_null_creates_nothing),
        cmocka_unit_test(test_set_all_digit_segments_are_indexes),
        cmocka_unit_test(test_set_integral_reals),
        cmocka_unit_test(test_message_length),
        cmocka_unit_test(test_doc_version),
        cmocka_unit_test(test_diff),
        cmocka_unit_test(test_path_append),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
