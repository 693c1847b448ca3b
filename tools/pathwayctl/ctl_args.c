/*
 * The command table and the command line. One row per command: the parser checks a command's
 * options and argument count against its row, and `--help` prints the row, so usage errors and help
 * never disagree with what a command accepts.
 */
#include "ctl.h"
#include "cfg.h"
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define WAIT_HELP                                                                                                                  \
    "  --wait[=DURATION]   then wait (default 60s) until every connected dataplane ACKed the version: exit 0;\n"                   \
    "                      a NACK or a drift: exit 1 with each dataplane's error; time out: exit 4.\n"                             \
    "                      Disconnected dataplanes are not waited for. Progress goes to stderr.\n"

#define ROLLOUT_HELP                                                                                                               \
    "Safe rollout (the new version goes to a canary first, judged on live traffic, then to everyone or back):\n"                   \
    "  --canary percent=N          the canaries: N% of the dataplanes (1-100), a stable choice\n"                                  \
    "  --canary label=NAME=VALUE   ... or those with this label (repeat: all must match); without --canary:\n"                     \
    "                              the first step's share\n"                                                                       \
    "  --steps P1,P2,...           (required) the share of the dataplanes at each step, growing (1-100;\n"                         \
    "                              a first 0 after a label canary: the labelled ones alone)\n"                                     \
    "  --hold DURATION             (required) how long each step lasts at least, its gate passing (2m)\n"                          \
    "  --gate-interval DURATION    how often the gate compares canary and baseline (30s)\n"                                        \
    "  --min-requests N            fewer canary requests in an interval: inconclusive, the step waits\n"                           \
    "  --max-error-rate-increase F fail when the canary's error rate exceeds the baseline's by more (0.01)\n"                      \
    "  --max-p99-ratio F           fail when the canary's p99 exceeds F times the baseline's (1.5)\n"                              \
    "  --failures-allowed N        failed intervals tolerated; one more rolls back\n"                                              \
    "  Follow it with `pathwayctl rollout status --watch` (--wait does not apply to a rollout).\n"

#define CONN_HELP                                                                                                                  \
    "Connection (any command): --url URL, --token TOKEN, --token-file FILE, --config FILE, --timeout DURATION,\n"                  \
    "  --color auto|always|never, --no-color. Each from the flag, else PATHWAY_URL / PATHWAY_TOKEN, else the\n"                    \
    "  settings file ($XDG_CONFIG_HOME/pathway/pathwayctl.yaml or ~/.config/pathway/pathwayctl.yaml).\n"                           \
    "Exit: 0 ok, 1 rejected (validation errors, 412, not found; a NACK or drift with --wait; status: a dataplane\n"                \
    "  rejected, drifted or disconnected), 2 usage, 3 control plane unreachable or auth failed, 4 --wait timed out.\n"

/* The build's version: PW_VERSION from common/'s generated pw_version.h (the project's VERSION). */
#include "pw_version.h"

const char *ctl_version(void)
{
    return PW_VERSION;
}

const ctl_command_t ctl_commands[] = {
    {"status", "", "active version and the dataplanes",
     "Shows the active version (number, kind, author, time, message, hash) and a\n"
     "table of the dataplanes with the version each applied and its state (a drifted one with the hash it\n"
     "reports and the hash of the version it ACKed). Exits 1 when any dataplane is rejected, drifted or\n"
     "disconnected, else 0.\n",
     CTL_OPT_JSON, 0, 0, ctl_cmd_status},
    {"versions", "", "the version history, newest first",
     "Lists versions newest first: number, time, author, kind (apply, patch, rollback), the version it\n"
     "came from, hash and message. The active one is marked with '*'.\n"
     "  -n, --limit N   at most N rows (default 20)\n",
     CTL_OPT_JSON | CTL_OPT_LIMIT, 0, 0, ctl_cmd_versions},
    {"show", "[N|TAG|active|previous]", "one version with its document",
     "Shows one version (default: the active one): a header, then the document as YAML. `previous` is the\n"
     "version that was active before the active one.\n"
     "  --yaml   the document only, as YAML (feed it back to `apply`)\n"
     "  --json   the API's JSON object\n",
     CTL_OPT_JSON | CTL_OPT_YAML, 0, 1, ctl_cmd_show},
    {"diff", "A|FILE [B|FILE]", "what changed from version A to B (default: the active one)",
     "Shows what changed from A to B (numbers, tag names, `active` or `previous`), one line per setting,\n"
     "in the paths `set` takes: `~` changed (old -> new), `+` added, `-` removed (colored on a terminal).\n"
     "Services are matched by id, so a removed service is one line. A service key that starts or stops\n"
     "overriding `defaults` shows the inherited value (`~ services.eth.pool.max_idle_per_host: 25 -> 5`),\n"
     "and a changed `defaults` key the services it reaches.\n"
     "An argument that names an existing file (or `-`, stdin) is a document: `diff FILE` shows what applying\n"
     "FILE would change in the active version (the file in its canonical form, as the control plane\n"
     "would store it; a file that is not valid prints its errors, exit 1).\n"
     "  --json   the API's JSON Patch (RFC 6902) from /v1/versions/B/diff?from=A (versions only)\n",
     CTL_OPT_JSON, 1, 2, ctl_cmd_diff},
    {"apply", "FILE", "a whole document (YAML or JSON) as a new version",
     "Sends FILE as the new document (PUT /v1/config) with If-Match of the version FILE was shown from\n"
     "(its first line `# pathway fleet document, version N`, as `show --yaml` writes it), else of the\n"
     "active version read first, so a change stored meanwhile by someone else is refused (412, exit 1)\n"
     "instead of overwritten. An identical document makes no new version. Prints the new version and\n"
     "what changed.\n"
     "  -m, --message MSG   why (stored with the version; at most 1024 bytes)\n"
     "  --if-match N        store only if N is still the active version (overrides FILE's version)\n"
     "  --force             send without If-Match, and supersede a rollout in progress (else: 409)\n"
     "  --dry-run           print what would change against the active version, store nothing\n" WAIT_HELP ROLLOUT_HELP,
     CTL_OPT_MESSAGE | CTL_OPT_FORCE | CTL_OPT_IF_MATCH | CTL_OPT_DRY_RUN | CTL_OPT_WAIT | CTL_OPT_ROLLOUT, 1, 1, ctl_cmd_apply},
    {"set", "KEY=VALUE...", "change settings (a merge patch on the active document)",
     "Changes settings of the active document as one new version (PATCH /v1/config, a JSON merge patch,\n"
     "with If-Match of the version it read).\n"
     "  KEY is a dotted path: limiter.max_concurrent, log.level, defaults.pool.idle_timeout.\n"
     "  List items are addressed by their id: services.eth.pool.max_conns_per_host (write services[ID]\n"
     "  when the id holds a dot); lists of items without ids by index: services.eth.endpoints.0.url.\n"
     "  An all-digit segment is always an index (past the end: an error). A name no item has is an error\n"
     "  (with a did-you-mean), unless --create: then it adds {\"id\": NAME} to the list:\n"
     "  --create services.bsc.endpoints='[{\"url\":\"...\"}]'.\n"
     "  VALUE is JSON when it parses as JSON (200, true, [..], {..}, \"quoted\"), else a string (5s, debug);\n"
     "  a number with an integral value is an integer (1e3 is 1000).\n"
     "  null removes the key (back to its default) or the list item (services.bsc=null); removing what\n"
     "  is not there creates nothing (a missing list item is an error).\n"
     "  -m, --message MSG   why (stored with the version; at most 1024 bytes)\n"
     "  --if-match N        store only if N is still the active version (default: the version read)\n"
     "  --dry-run           print the merge patch, send nothing\n"
     "  --create            a list item (a service) no id names is added, not an error\n"
     "  --force             supersede a rollout in progress (else: 409)\n" WAIT_HELP ROLLOUT_HELP,
     CTL_OPT_MESSAGE | CTL_OPT_DRY_RUN | CTL_OPT_IF_MATCH | CTL_OPT_CREATE | CTL_OPT_WAIT | CTL_OPT_ROLLOUT | CTL_OPT_FORCE, 1, -1,
     ctl_cmd_set},
    {"rollback", "N|TAG|previous", "make version N's (or a tag's) document active again",
     "Makes a NEW version whose document is version N's (or the tagged version's), kind rollback.\n"
     "`previous` is the version that was active before the active one (every stored version becomes the\n"
     "active one, so: the active version's number minus one); a second `rollback previous` undoes the\n"
     "first. History is never rewritten. Prints the new version and what changed.\n"
     "  -m, --message MSG   why (stored with the version)\n"
     "  --if-match N        roll back only if N is still the active version\n"
     "  --force             supersede a rollout in progress (else: 409)\n" WAIT_HELP ROLLOUT_HELP,
     CTL_OPT_MESSAGE | CTL_OPT_IF_MATCH | CTL_OPT_WAIT | CTL_OPT_ROLLOUT | CTL_OPT_FORCE, 1, 1, ctl_cmd_rollback},
    {"tag", "[NAME [N|active]] | delete NAME", "list tags, show one, point one at a version, delete one",
     "Without arguments: every tag and the version it points at. With NAME: where it points and its\n"
     "history. With NAME N: points tag NAME at version N (`active`: the active one). `delete NAME`\n"
     "deletes tag NAME (its history stays in the audit log; the versions are untouched).\n"
     "  -m, --message MSG   why (with N, or with delete)\n"
     "  --json              the API's JSON (NAME alone)\n",
     CTL_OPT_MESSAGE | CTL_OPT_JSON, 0, 2, ctl_cmd_tag},
    {"validate", "FILE", "check a document without storing it",
     "Sends FILE to POST /v1/config/validate: the control plane's own checks, nothing stored.\n"
     "Prints every error with its path and exits 1 when there is any.\n"
     "  --json   the API's JSON answer\n",
     CTL_OPT_JSON, 1, 1, ctl_cmd_validate},
    {"dataplanes", "[forget ID]", "the dataplanes and their state; forget one",
     "Lists each dataplane: id, state (synced, applying, rejected, stale, drifted, disconnected), the\n"
     "version it applied, when it was last seen, its labels and its last error (for a drifted one: the\n"
     "hash it reports and the hash of the version it ACKed).\n"
     "`forget ID` removes a dataplane from the list (one that is retired); it reappears when it calls\n"
     "again.\n",
     CTL_OPT_JSON, 0, 2, ctl_cmd_dataplanes},
    {"events", "", "the audit log, newest first",
     "Lists the audit log newest first: who did what to which version, when, and why.\n"
     "  -n, --limit N   at most N rows (default 20)\n",
     CTL_OPT_JSON | CTL_OPT_LIMIT, 0, 0, ctl_cmd_events},
    {"rollout", "status [ID] | list | pause|resume|promote|abort [ID]", "follow and steer a safe rollout",
     "`status`: the rollout (default: the one in progress, else the newest): its state, step, the\n"
     "dataplanes of the step, and the gate's verdicts with the canary's and the baseline's error rate,\n"
     "p99 and requests. `list`: every rollout, newest first. `pause`, `resume`, `promote` (to everyone\n"
     "now), `abort` (back to the previous version): the rollout in progress unless ID names one.\n"
     "Start one with `apply`, `set` or `rollback` and --canary (see `pathwayctl apply --help`).\n"
     "  --watch   (status) redraw every second until the rollout ends: exit 0 when promoted,\n"
     "            1 when rolled back or aborted\n"
     "  --json    the API's JSON\n",
     CTL_OPT_JSON | CTL_OPT_WATCH, 1, 2, ctl_cmd_rollout},
};
const size_t ctl_num_commands = sizeof(ctl_commands) / sizeof(ctl_commands[0]);

const char *ctl_suggest(const char *name, const char *const *candidates, size_t n)
{
    /* optimal string alignment distance, rows of at most 64 + 1 cells (longer names: no suggestion) */
    size_t ln = strlen(name);
    if (ln == 0 || ln > 64)
        return NULL;
    const char *best = NULL;
    size_t best_d = SIZE_MAX;
    for (size_t c = 0; c < n; c++) {
        const char *t = candidates[c];
        size_t lt = strlen(t);
        if (lt > 64 || (lt > ln ? lt - ln : ln - lt) > 2)
            continue;
        size_t d[66][66];
        for (size_t i = 0; i <= ln; i++)
            d[i][0] = i;
        for (size_t k = 0; k <= lt; k++)
            d[0][k] = k;
        for (size_t i = 1; i <= ln; i++) {
            for (size_t k = 1; k <= lt; k++) {
                size_t cost = name[i - 1] != t[k - 1], v = d[i - 1][k] + 1;
                if (d[i][k - 1] + 1 < v)
                    v = d[i][k - 1] + 1;
                if (d[i - 1][k - 1] + cost < v)
                    v = d[i - 1][k - 1] + cost;
                if (i > 1 && k > 1 && name[i - 1] == t[k - 2] && name[i - 2] == t[k - 1] && d[i - 2][k - 2] + 1 < v)
                    v = d[i - 2][k - 2] + 1;
                d[i][k] = v;
            }
        }
        if (d[ln][lt] < best_d) {
            best_d = d[ln][lt];
            best = t;
        }
    }
    return best != NULL && best_d > 0 && best_d <= 2 && best_d < ln ? best : NULL;
}

const ctl_command_t *ctl_find_command(const char *name)
{
    for (size_t i = 0; i < ctl_num_commands; i++)
        if (strcmp(ctl_commands[i].name, name) == 0)
            return &ctl_commands[i];
    return NULL;
}

/* Options: which flag bit (0 = connection / global), whether a value follows. */
typedef enum en_opt_id_t {
    OPT_URL,
    OPT_TOKEN,
    OPT_TOKEN_FILE,
    OPT_CONFIG,
    OPT_TIMEOUT,
    OPT_COLOR,
    OPT_NO_COLOR,
    OPT_HELP,
    OPT_VERSION,
    OPT_JSON,
    OPT_YAML,
    OPT_MESSAGE,
    OPT_FORCE,
    OPT_LIMIT,
    OPT_DRY_RUN,
    OPT_IF_MATCH,
    OPT_WAIT,
    OPT_CREATE,
    OPT_CANARY,
    OPT_STEPS,
    OPT_HOLD,
    OPT_GATE_INTERVAL,
    OPT_MIN_REQUESTS,
    OPT_MAX_ERROR_RATE_INCREASE,
    OPT_MAX_P99_RATIO,
    OPT_FAILURES_ALLOWED,
    OPT_WATCH,
} opt_id_t;

static const struct {
    const char *name; /* long name without "--" */
    char shortname;   /* 0 = none */
    opt_id_t id;
    unsigned flag;   /* CTL_OPT_* a command must accept; 0 = every command */
    int takes_value; /* 1: the next argument (or "=value") is its value; 2: only "=value", optional */
} options[] = {
    {"url", 0, OPT_URL, 0, 1},
    {"token", 0, OPT_TOKEN, 0, 1},
    {"token-file", 0, OPT_TOKEN_FILE, 0, 1},
    {"config", 0, OPT_CONFIG, 0, 1},
    {"timeout", 0, OPT_TIMEOUT, 0, 1},
    {"color", 0, OPT_COLOR, 0, 1},
    {"no-color", 0, OPT_NO_COLOR, 0, 0},
    {"help", 'h', OPT_HELP, 0, 0},
    {"version", 0, OPT_VERSION, 0, 0},
    {"json", 0, OPT_JSON, CTL_OPT_JSON, 0},
    {"yaml", 0, OPT_YAML, CTL_OPT_YAML, 0},
    {"message", 'm', OPT_MESSAGE, CTL_OPT_MESSAGE, 1},
    {"force", 0, OPT_FORCE, CTL_OPT_FORCE, 0},
    {"limit", 'n', OPT_LIMIT, CTL_OPT_LIMIT, 1},
    {"dry-run", 0, OPT_DRY_RUN, CTL_OPT_DRY_RUN, 0},
    {"if-match", 0, OPT_IF_MATCH, CTL_OPT_IF_MATCH, 1},
    {"wait", 0, OPT_WAIT, CTL_OPT_WAIT, 2},
    {"create", 0, OPT_CREATE, CTL_OPT_CREATE, 0},
    {"canary", 0, OPT_CANARY, CTL_OPT_ROLLOUT, 1},
    {"steps", 0, OPT_STEPS, CTL_OPT_ROLLOUT, 1},
    {"hold", 0, OPT_HOLD, CTL_OPT_ROLLOUT, 1},
    {"gate-interval", 0, OPT_GATE_INTERVAL, CTL_OPT_ROLLOUT, 1},
    {"min-requests", 0, OPT_MIN_REQUESTS, CTL_OPT_ROLLOUT, 1},
    {"max-error-rate-increase", 0, OPT_MAX_ERROR_RATE_INCREASE, CTL_OPT_ROLLOUT, 1},
    {"max-p99-ratio", 0, OPT_MAX_P99_RATIO, CTL_OPT_ROLLOUT, 1},
    {"failures-allowed", 0, OPT_FAILURES_ALLOWED, CTL_OPT_ROLLOUT, 1},
    {"watch", 0, OPT_WATCH, CTL_OPT_WATCH, 0},
};

static int find_option(const char *arg, size_t *idx, const char **inline_value)
{
    *inline_value = NULL;
    if (arg[1] == '-') {
        const char *name = arg + 2, *eq = strchr(name, '=');
        size_t len = eq != NULL ? (size_t)(eq - name) : strlen(name);
        for (size_t i = 0; i < sizeof(options) / sizeof(options[0]); i++) {
            if (strlen(options[i].name) == len && strncmp(options[i].name, name, len) == 0) {
                *idx = i;
                if (eq != NULL)
                    *inline_value = eq + 1;
                return 0;
            }
        }
        return -1;
    }
    /* "-m" or "-mvalue" */
    for (size_t i = 0; i < sizeof(options) / sizeof(options[0]); i++) {
        if (options[i].shortname != 0 && options[i].shortname == arg[1]) {
            *idx = i;
            if (arg[2] != '\0')
                *inline_value = arg + 2;
            return 0;
        }
    }
    return -1;
}

int ctl_parse_args(int argc, char *const *argv, ctl_args_t *args, char *err, size_t errlen)
{
    memset(args, 0, sizeof(*args));
    const char *optnames[sizeof(options) / sizeof(options[0])] = {NULL}; /* as written, for messages */
    int no_more_options = 0;
    const char *cmdname = NULL;

    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!no_more_options && strcmp(a, "--") == 0) {
            no_more_options = 1;
            continue;
        }
        if (no_more_options || a[0] != '-' || a[1] == '\0') {
            if (cmdname == NULL) {
                cmdname = a;
            } else if (args->npositional < CTL_MAX_ARGS) {
                args->positional[args->npositional++] = a;
            } else {
                snprintf(err, errlen, "too many arguments (at most %d)", CTL_MAX_ARGS);
                return -1;
            }
            continue;
        }
        size_t o;
        const char *value;
        if (find_option(a, &o, &value) != 0) {
            snprintf(err, errlen, "unknown option %s", a);
            return -1;
        }
        if (options[o].takes_value == 1) {
            if (value == NULL) {
                if (i + 1 >= argc) {
                    snprintf(err, errlen, "option %s needs a value", a);
                    return -1;
                }
                value = argv[++i];
            }
        } else if (options[o].takes_value == 0 && value != NULL) {
            snprintf(err, errlen, "option %s takes no value", a);
            return -1;
        }
        optnames[o] = a;
        args->given |= options[o].flag;
        switch (options[o].id) {
        case OPT_URL:
            args->url = value;
            break;
        case OPT_TOKEN:
            args->token = value;
            break;
        case OPT_TOKEN_FILE:
            args->token_file = value;
            break;
        case OPT_CONFIG:
            args->config_file = value;
            break;
        case OPT_TIMEOUT:
            args->timeout = value;
            break;
        case OPT_COLOR:
            if (strcmp(value, "auto") == 0) {
                args->color = CTL_COLOR_AUTO;
            } else if (strcmp(value, "always") == 0) {
                args->color = CTL_COLOR_ALWAYS;
            } else if (strcmp(value, "never") == 0) {
                args->color = CTL_COLOR_NEVER;
            } else {
                snprintf(err, errlen, "--color: must be auto, always or never, not '%s'", value);
                return -1;
            }
            break;
        case OPT_NO_COLOR:
            args->color = CTL_COLOR_NEVER;
            break;
        case OPT_HELP:
            args->help = 1;
            break;
        case OPT_VERSION:
            args->version = 1;
            break;
        case OPT_MESSAGE:
            if (strlen(value) > CTL_MAX_MESSAGE) {
                snprintf(err, errlen, "--message: at most %d bytes (the API's limit), not %zu", CTL_MAX_MESSAGE, strlen(value));
                return -1;
            }
            args->message = value;
            break;
        case OPT_LIMIT: {
            char *end;
            long n = strtol(value, &end, 10);
            if (*value == '\0' || *end != '\0' || n < 1 || n > 1000) {
                snprintf(err, errlen, "%s: must be a number from 1 to 1000, not '%s'", a, value);
                return -1;
            }
            args->limit = n;
        } break;
        case OPT_IF_MATCH: {
            char *end;
            errno = 0;
            long long n = strtoll(value, &end, 10);
            if (*value == '\0' || *end != '\0' || errno != 0 || n < 0) {
                snprintf(err, errlen, "%s: must be a version number, not '%s'", a, value);
                return -1;
            }
            args->if_match = n;
        } break;
        case OPT_WAIT: {
            const char *why = NULL;
            uint64_t ms = CTL_DEFAULT_WAIT_MS;
            if (value != NULL && (cfg_parse_duration(value, &ms, &why) != 0 || ms == 0)) {
                snprintf(err, errlen, "--wait: a duration such as 30s or 2m, not '%s'%s%s", value, why != NULL ? ": " : "",
                         why != NULL ? why : "");
                return -1;
            }
            args->wait_ms = ms;
        } break;
        case OPT_CANARY:
            if (args->rollout.ncanary == CTL_MAX_CANARY) {
                snprintf(err, errlen, "--canary: given more than %d times", CTL_MAX_CANARY);
                return -1;
            }
            args->rollout.canary[args->rollout.ncanary++] = value;
            break;
        case OPT_STEPS:
            args->rollout.steps = value;
            break;
        case OPT_HOLD:
            args->rollout.hold = value;
            break;
        case OPT_GATE_INTERVAL:
            args->rollout.gate_interval = value;
            break;
        case OPT_MIN_REQUESTS:
            args->rollout.min_requests = value;
            break;
        case OPT_MAX_ERROR_RATE_INCREASE:
            args->rollout.max_error_rate_increase = value;
            break;
        case OPT_MAX_P99_RATIO:
            args->rollout.max_p99_ratio = value;
            break;
        case OPT_FAILURES_ALLOWED:
            args->rollout.failures_allowed = value;
            break;
        case OPT_WATCH:
        case OPT_CREATE:
        case OPT_JSON:
        case OPT_YAML:
        case OPT_FORCE:
        case OPT_DRY_RUN:
            break;
        }
    }

    /* `pathwayctl help [CMD]` is `pathwayctl [CMD] --help` */
    if (cmdname != NULL && strcmp(cmdname, "help") == 0) {
        args->help = 1;
        cmdname = args->npositional > 0 ? args->positional[0] : NULL;
        args->npositional = 0;
    }
    if (cmdname == NULL) {
        if (args->help || args->version)
            return 0;
        snprintf(err, errlen, "no command given");
        return -1;
    }
    if ((args->cmd = ctl_find_command(cmdname)) == NULL) {
        const char *names[sizeof(ctl_commands) / sizeof(ctl_commands[0])];
        for (size_t i = 0; i < ctl_num_commands; i++)
            names[i] = ctl_commands[i].name;
        const char *near = ctl_suggest(cmdname, names, ctl_num_commands);
        if (near != NULL)
            snprintf(err, errlen, "unknown command \"%s\"; did you mean \"%s\"?", cmdname, near);
        else
            snprintf(err, errlen, "unknown command \"%s\"", cmdname);
        return -1;
    }
    if (args->help || args->version)
        return 0;

    for (size_t o = 0; o < sizeof(options) / sizeof(options[0]); o++) {
        if (optnames[o] != NULL && options[o].flag != 0 && (args->cmd->options & options[o].flag) == 0) {
            snprintf(err, errlen, "%s: option %s does not apply", args->cmd->name, optnames[o]);
            return -1;
        }
    }
    if ((args->given & CTL_OPT_FORCE) && (args->given & CTL_OPT_IF_MATCH)) {
        snprintf(err, errlen, "%s: --force and --if-match exclude each other", args->cmd->name);
        return -1;
    }
    if ((args->given & CTL_OPT_JSON) && (args->given & CTL_OPT_YAML)) {
        snprintf(err, errlen, "%s: --json and --yaml exclude each other", args->cmd->name);
        return -1;
    }
    if (args->given & CTL_OPT_ROLLOUT) {
        json_t *ro = ctl_rollout_object(&args->rollout, err, errlen);
        if (ro == NULL) {
            char why[400];
            snprintf(why, sizeof(why), "%s", err);
            snprintf(err, errlen, "%s: %s", args->cmd->name, why);
            return -1;
        }
        json_decref(ro);
        if (args->given & CTL_OPT_WAIT) {
            snprintf(err, errlen, "%s: --wait does not apply to a rollout (follow it: pathwayctl rollout status --watch)",
                     args->cmd->name);
            return -1;
        }
    }
    if (args->npositional < (size_t)args->cmd->min_args ||
        (args->cmd->max_args >= 0 && args->npositional > (size_t)args->cmd->max_args)) {
        snprintf(err, errlen, "%s: expects %s%s", args->cmd->name, args->cmd->synopsis[0] ? "arguments " : "no arguments",
                 args->cmd->synopsis);
        return -1;
    }
    return 0;
}

void ctl_print_help(FILE *fp, const ctl_command_t *cmd)
{
    if (cmd != NULL) {
        fprintf(fp, "usage: pathwayctl %s%s%s [options]\n\n%s", cmd->name, cmd->synopsis[0] ? " " : "", cmd->synopsis, cmd->help);
        if ((cmd->options & CTL_OPT_JSON) && strstr(cmd->help, "--json") == NULL)
            fputs("  --json   the API's JSON as it came\n", fp);
        fputc('\n', fp);
        fputs(CONN_HELP, fp);
        return;
    }
    fprintf(fp, "usage: pathwayctl COMMAND [options] [arguments]\n\n"
                "The control plane's REST API for operators. Commands:\n");
    for (size_t i = 0; i < ctl_num_commands; i++) {
        char head[64];
        snprintf(head, sizeof(head), "%s %s", ctl_commands[i].name, ctl_commands[i].synopsis);
        fprintf(fp, "  %-28s %s\n", head, ctl_commands[i].summary);
    }
    fprintf(fp, "\n`pathwayctl COMMAND --help` for one command. Read commands take --json.\n");
    fputs(CONN_HELP, fp);
}
