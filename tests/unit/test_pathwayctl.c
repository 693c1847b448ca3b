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
        {"frobnicate", "unknown command \"frobnicate\""},
        {"versions --bogus", "unknown option --bogus"},
        {"apply --yaml f.yaml", "option --yaml does not apply"},
        {"status --force", "option --force does not apply"},
        {"apply", "expects arguments FILE"},
        {"apply a b", "expects arguments FILE"},
        {"status extra", "expects no arguments"},
        {"diff", "expects arguments A|FILE [B|FILE]"},
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

static unsigned set_flags; /* ctl_set_apply's flags for set_patch */

/* Applies assignments (NULL-terminated) to doc_text; returns the merge patch as compact sorted JSON,
 * or the error message. */
static char *set_patch(const char *const *assignments)
{
    size_t n = 0;
    while (assignments[n] != NULL)
        n++;
    json_t *doc = j(doc_text);
    char err[256];
    json_t *after = ctl_set_apply(doc, assignments, n, set_flags, err, sizeof(err));
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
    /* with --create, a name no item has adds one */
    set_flags = CTL_SET_CREATE;
    ASSERT_SET(
        "{\"services\":[{\"endpoints\":[{\"url\":\"http://a\"},{\"url\":\"http://b\"}],\"id\":\"eth\"},{\"endpoints\":[{\"url\":"
        "\"http://c\"}],\"id\":\"poly.main\",\"pool\":{\"max_conns_per_host\":20}},{\"endpoints\":[{\"url\":\"http://d\"}],\"id\":"
        "\"bsc\"}]}",
        "services.bsc.endpoints=[{\"url\":\"http://d\"}]");
    set_flags = 0;
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
        {"services.nope=null", "no service \"nope\""},
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
    ASSERT_SET_ERR("no service \"ethh\"; did you mean \"eth\"?", "services.ethh.pool.max_conns_per_host=null");
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
    cfg_changes_t ch;
    assert_int_equal(cfg_changes(ja, jb, &ch), 0);
    char *buf = NULL;
    size_t len = 0;
    FILE *fp = open_memstream(&buf, &len);
    ctl_changes_print(fp, &ch, 0);
    fclose(fp);
    cfg_changes_dispose(&ch);
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
    ASSERT_DIFF("{\"services\":[{\"id\":\"eth\"}]}", "{\"services\":[{\"id\":\"eth\",\"x\":{\"y\":20}}]}",
                "+ services.eth.x.y: 20\n");
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

/* A service key that starts or stops overriding `defaults` shows the value it inherited; a
 * `defaults` key shows which services it reaches. */
static void test_diff_inherited(void **state)
{
    const char *a = "{\"defaults\":{\"pool\":{\"max_idle_per_host\":25}},\"services\":[{\"id\":\"eth\"},{\"id\":\"poly\"}]}";
    const char *b = "{\"defaults\":{\"pool\":{\"max_idle_per_host\":25}},\"services\":[{\"id\":\"eth\",\"pool\":{\"max_idle_per_"
                    "host\":5}},{\"id\":\"poly\"}]}";
    ASSERT_DIFF(a, b, "~ services.eth.pool.max_idle_per_host: 25 -> 5 (was inherited from defaults)\n");
    ASSERT_DIFF(b, a, "~ services.eth.pool.max_idle_per_host: 5 -> 25 (now inherited from defaults)\n");
    /* the default changes too: the service's old value is the old default */
    const char *c = "{\"defaults\":{\"pool\":{\"max_idle_per_host\":30}},\"services\":[{\"id\":\"eth\",\"pool\":{\"max_idle_per_"
                    "host\":5}},{\"id\":\"poly\"}]}";
    ASSERT_DIFF(a, c,
                "~ defaults.pool.max_idle_per_host: 25 -> 30 (inherited by poly)\n"
                "~ services.eth.pool.max_idle_per_host: 25 -> 5 (was inherited from defaults)\n");
    /* a defaults change reaches the services that do not set the key */
    ASSERT_DIFF(b, c, "~ defaults.pool.max_idle_per_host: 25 -> 30 (inherited by poly)\n");
    const char *d = "{\"defaults\":{\"pool\":{\"max_idle_per_host\":30}},\"services\":[{\"id\":\"eth\",\"pool\":{\"max_idle_per_"
                    "host\":5}},{\"id\":\"poly\",\"pool\":{\"max_idle_per_host\":7}}]}";
    ASSERT_DIFF("{\"defaults\":{\"pool\":{\"max_idle_per_host\":25}},\"services\":[{\"id\":\"eth\",\"pool\":{\"max_idle_per_"
                "host\":5}},{\"id\":\"poly\",\"pool\":{\"max_idle_per_host\":7}}]}",
                d, "~ defaults.pool.max_idle_per_host: 25 -> 30 (inherited by no service: each sets its own)\n");
    /* a document without `defaults`: the built-in defaults (max_conns_per_host 50) */
    ASSERT_DIFF("{\"services\":[{\"id\":\"eth\"}]}", "{\"services\":[{\"id\":\"eth\",\"pool\":{\"max_conns_per_host\":20}}]}",
                "~ services.eth.pool.max_conns_per_host: 50 -> 20 (was inherited from defaults)\n");
    ASSERT_DIFF("{\"services\":[{\"id\":\"eth\"}]}",
                "{\"defaults\":{\"timeouts\":{\"request\":\"5s\"}},\"services\":[{\"id\":\"eth\"}]}",
                "~ defaults.timeouts.request: \"30s\" -> \"5s\" (inherited by eth)\n");
    /* cors, inherited from defaults.cors key by key like the others */
    ASSERT_DIFF("{\"services\":[{\"id\":\"eth\"}]}",
                "{\"services\":[{\"id\":\"eth\",\"cors\":{\"allow_origins\":[\"https://app.example\"]}}]}",
                "~ services.eth.cors.allow_origins: [] -> [\"https://app.example\"] (was inherited from defaults)\n");
    /* a service with a dot in its id, and a whole new service stays one line */
    ASSERT_DIFF("{\"services\":[{\"id\":\"e.1\"}]}", "{\"services\":[{\"id\":\"e.1\",\"limiter\":{\"max_concurrent\":9}}]}",
                "~ services[e.1].limiter.max_concurrent: 0 -> 9 (was inherited from defaults)\n");
    ASSERT_DIFF("{\"services\":[]}", "{\"services\":[{\"id\":\"bsc\",\"pool\":{\"max_conns_per_host\":9}}]}",
                "+ services.bsc: {\"id\":\"bsc\",\"pool\":{\"max_conns_per_host\":9}}\n");
}

static void test_suggest(void **state)
{
    static const char *const ids[] = {"eth", "poly", "arbitrum"};
    assert_string_equal(ctl_suggest("eht", ids, 3), "eth");  /* a swap is one edit */
    assert_string_equal(ctl_suggest("etj", ids, 3), "eth");  /* a typo */
    assert_string_equal(ctl_suggest("pol", ids, 3), "poly"); /* one missing */
    assert_string_equal(ctl_suggest("arbitrim", ids, 3), "arbitrum");
    assert_null(ctl_suggest("bsc", ids, 3));                        /* nothing near */
    assert_null(ctl_suggest("et", (const char *const[]){"xy"}, 1)); /* 2 edits of 2 letters: not a typo */
    assert_null(ctl_suggest("eth", ids, 0));
}

/* `set` on a service that does not exist: an error with a did-you-mean, not a new service */
static void test_set_unknown_service(void **state)
{
    ASSERT_SET_ERR("no service \"eht\"; did you mean \"eth\"? (--create adds a new service)",
                   "services.eht.pool.max_conns_per_host=5");
    ASSERT_SET_ERR("no service \"bsc\" (there are: eth, poly.main) (--create adds a new service)",
                   "services.bsc.endpoints=[{\"url\":\"http://d\"}]");
    ASSERT_SET_ERR("no service \"eht\"; did you mean \"eth\"?", "services.eht={\"endpoints\":[]}");
    /* other lists keyed by id: the list's path */
    ASSERT_SET_ERR("services.eth.endpoints: no item 3 (the list has 2)", "services.eth.endpoints.3.url=x");
    /* no services at all */
    json_t *empty = j("{}");
    char err[256];
    const char *as[] = {"services.eth.pool.max_conns_per_host=5"};
    assert_null(ctl_set_apply(empty, as, 1, 0, err, sizeof(err)));
    assert_non_null(strstr(err, "no service \"eth\" (the list is empty)"));
    json_t *created = ctl_set_apply(empty, as, 1, CTL_SET_CREATE, err, sizeof(err));
    assert_non_null(created);
    json_t *want = j("{\"services\":[{\"id\":\"eth\",\"pool\":{\"max_conns_per_host\":5}}]}");
    assert_true(json_equal(created, want));
    json_decref(want);
    json_decref(created);
    json_decref(empty);
}

/* The server's error paths in `set` syntax, list indexes as the ids the user wrote */
static void test_error_with_ids(void **state)
{
    json_t *doc = j(doc_text);
    static const struct {
        const char *in, *want;
    } cases[] = {
        {"services[0].pool.max_conns_per_host: must be between 1 and 65535",
         "services.eth.pool.max_conns_per_host: must be between 1 and 65535"},
        {"services[1].pool.max_conns_per_host: must be between 1 and 65535",
         "services[poly.main].pool.max_conns_per_host: must be between 1 and 65535"},
        {"services[0].endpoints[1].url: bad scheme", "services.eth.endpoints.1.url: bad scheme"},
        {"services[7].id: missing", "services.7.id: missing"},
        {"log.level: must be one of debug, info", "log.level: must be one of debug, info"},
        {"invalid document", "invalid document"},
        {"services[x].a: b", "services[x].a: b"},
        {"", ""},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char *got = ctl_error_with_ids(cases[i].in, doc);
        assert_non_null(got);
        if (strcmp(got, cases[i].want) != 0)
            fail_msg("'%s': got '%s', want '%s'", cases[i].in, got, cases[i].want);
        free(got);
    }
    json_decref(doc);
}

/* --wait's judgement of one dataplane against version 5 */
static void test_dp_verdict(void **state)
{
    static const struct {
        const char *dp;
        ctl_dp_verdict_t want;
        const char *why;
    } cases[] = {
        {"{\"id\":\"a\",\"state\":\"synced\",\"applied_version\":5}", CTL_DP_ACKED, ""},
        {"{\"id\":\"a\",\"state\":\"applying\",\"applied_version\":6}", CTL_DP_ACKED, ""},
        {"{\"id\":\"a\",\"state\":\"applying\",\"applied_version\":4}", CTL_DP_PENDING, ""},
        {"{\"id\":\"a\",\"state\":\"stale\",\"applied_version\":0}", CTL_DP_PENDING, ""},
        {"{\"id\":\"a\",\"state\":\"disconnected\",\"applied_version\":4}", CTL_DP_IGNORED, ""},
        {"{\"id\":\"a\",\"state\":\"rejected\",\"applied_version\":4,\"rejected_version\":5,\"error\":\"tls.ca_file: "
         "cannot read\"}",
         CTL_DP_FAILED, "rejected version 5: tls.ca_file: cannot read"},
        /* a NACK of an older version is not about this one */
        {"{\"id\":\"a\",\"state\":\"applying\",\"applied_version\":3,\"rejected_version\":4,\"error\":\"x\"}", CTL_DP_PENDING, ""},
        /* ACKed 5, then NACKed 6: 5 was ACKed */
        {"{\"id\":\"a\",\"state\":\"rejected\",\"applied_version\":5,\"rejected_version\":6,\"error\":\"x\"}", CTL_DP_ACKED, ""},
        {"{\"id\":\"a\",\"state\":\"drifted\",\"applied_version\":5,\"reported_hash\":\"0123456789abcdef\",\"expected_"
         "hash\":\"fedcba9876543210\"}",
         CTL_DP_FAILED, "drifted: serves hash 0123456789ab, version 5 has fedcba987654"},
        /* drifted from an older version: the new one may end it */
        {"{\"id\":\"a\",\"state\":\"drifted\",\"applied_version\":4,\"reported_hash\":\"01\",\"expected_hash\":\"02\"}",
         CTL_DP_PENDING, ""},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        json_t *dp = j(cases[i].dp);
        char why[256];
        ctl_dp_verdict_t got = ctl_dp_verdict(dp, 5, why, sizeof(why));
        if (got != cases[i].want || strcmp(why, cases[i].why) != 0)
            fail_msg("%s: got %d '%s', want %d '%s'", cases[i].dp, got, why, cases[i].want, cases[i].why);
        json_decref(dp);
    }
}

static void test_args_wait_create_version(void **state)
{
    ctl_args_t a;
    char err[256];
    assert_int_equal(parse("apply f.yaml --wait", &a, err, sizeof(err)), 0);
    assert_true(a.given & CTL_OPT_WAIT);
    assert_int_equal(a.wait_ms, CTL_DEFAULT_WAIT_MS);
    assert_int_equal(a.npositional, 1);
    assert_int_equal(parse("rollback previous --wait=90s", &a, err, sizeof(err)), 0);
    assert_int_equal(a.wait_ms, 90000);
    assert_string_equal(a.positional[0], "previous");
    assert_int_equal(parse("set --wait=250ms --create services.bsc.endpoints=[]", &a, err, sizeof(err)), 0);
    assert_int_equal(a.wait_ms, 250);
    assert_true(a.given & CTL_OPT_CREATE);
    assert_int_equal(parse("set a=1 --wait=soon", &a, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "--wait: a duration"));
    assert_int_equal(parse("versions --wait", &a, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "does not apply"));
    assert_int_equal(parse("apply f.yaml --create", &a, err, sizeof(err)), -1);
    assert_int_equal(parse("apply f.yaml --dry-run", &a, err, sizeof(err)), 0);
    assert_true(a.given & CTL_OPT_DRY_RUN);
    /* --version after a command prints the version, runs nothing */
    assert_int_equal(parse("status --version", &a, err, sizeof(err)), 0);
    assert_true(a.version);
    assert_non_null(ctl_version());
    /* did-you-mean for commands */
    assert_int_equal(parse("stauts", &a, err, sizeof(err)), -1);
    assert_string_equal(err, "unknown command \"stauts\"; did you mean \"status\"?");
    assert_int_equal(parse("frobnicate", &a, err, sizeof(err)), -1);
    assert_string_equal(err, "unknown command \"frobnicate\"");
    /* the new forms' argument counts */
    assert_int_equal(parse("tag delete stable", &a, err, sizeof(err)), 0);
    assert_int_equal(parse("dataplanes forget dp-1", &a, err, sizeof(err)), 0);
    assert_int_equal(a.npositional, 2);
}

static void test_path_append(void **state)
{
    char *p = NULL;
    assert_int_equal(cfg_path_append(&p, "services"), 0);
    assert_int_equal(cfg_path_append(&p, "eth.main"), 0);
    assert_int_equal(cfg_path_append(&p, "pool"), 0);
    assert_string_equal(p, "services[eth.main].pool");
    free(p);
}

/* The rollout flags -> the `rollout` object beside a write (ctl_rollout_object, via the parser). */
static void test_rollout_object(void **state)
{
    ctl_args_t a;
    char err[512];
    assert_int_equal(parse("apply f.yaml --canary percent=10 --steps 10,50 --hold 2m --gate-interval 30s --min-requests 500 "
                           "--max-error-rate-increase 0.01 --max-p99-ratio 1.5 --failures-allowed 1",
                           &a, err, sizeof(err)),
                     0);
    assert_true(a.given & CTL_OPT_ROLLOUT);
    json_t *got = ctl_rollout_object(&a.rollout, err, sizeof(err));
    json_t *want =
        j("{\"canary\": {\"percent\": 10}, \"steps\": [{\"percent\": 10, \"hold\": \"2m\"}, {\"percent\": 50, "
          "\"hold\": \"2m\"}], \"gate\": {\"interval\": \"30s\", \"min_requests\": 500, \"max_error_rate_increase\": 0.01, "
          "\"max_p99_ratio\": 1.5, \"failures_allowed\": 1}}");
    assert_true(json_equal(got, want));
    json_decref(got);
    json_decref(want);

    assert_int_equal(
        parse("set a=1 --canary label=canary=true --canary label=zone=b --steps 0,100 --hold 30s", &a, err, sizeof(err)), 0);
    got = ctl_rollout_object(&a.rollout, err, sizeof(err));
    want = j("{\"canary\": {\"labels\": {\"canary\": \"true\", \"zone\": \"b\"}}, \"steps\": [{\"percent\": 0, \"hold\": "
             "\"30s\"}, {\"percent\": 100, \"hold\": \"30s\"}]}");
    assert_true(json_equal(got, want));
    json_decref(got);
    json_decref(want);

    /* no rollout flag: no object, no error */
    assert_int_equal(parse("apply f.yaml", &a, err, sizeof(err)), 0);
    assert_null(ctl_rollout_object(&a.rollout, err, sizeof(err)));
    assert_string_equal(err, "");

    static const struct {
        const char *line, *want;
    } bad[] = {
        {"apply f --canary percent=101 --steps 10 --hold 1m", "from 1 to 100"},
        {"apply f --steps 50,20 --hold 1m", "steps must increase (20 after 50)"},
        {"apply f --canary percent=30 --steps 0,50 --hold 1m", "0 is only a first step"},
        {"apply f --canary percent=10", "needs --steps"},
        {"apply f --steps 10", "needs --hold"},
        {"apply f --canary label==x --steps 10 --hold 1m", "a label name"},
        {"apply f --steps 10 --hold 1m --max-p99-ratio -1", "--max-p99-ratio"},
        {"rollback 3 --steps 10 --hold 1m --wait", "--wait does not apply to a rollout"},
        {"tag x 3 --canary percent=10", "option --canary does not apply"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        assert_int_equal(parse(bad[i].line, &a, err, sizeof(err)), -1);
        if (strstr(err, bad[i].want) == NULL)
            fail_msg("%s: got \"%s\", want \"%s\"", bad[i].line, err, bad[i].want);
    }
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
        cmocka_unit_test(test_diff_inherited),
        cmocka_unit_test(test_suggest),
        cmocka_unit_test(test_set_unknown_service),
        cmocka_unit_test(test_error_with_ids),
        cmocka_unit_test(test_dp_verdict),
        cmocka_unit_test(test_args_wait_create_version),
        cmocka_unit_test(test_rollout_object),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
