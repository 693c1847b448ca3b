/*
 * pathwayctl: the operator's CLI over the control plane's REST API (docs/pathwayctl.md).
 *
 * The pure pieces (argument parsing, connection settings, `set` paths, the readable diff) live in
 * their own files with no I/O so the unit tests (tests/unit/test_pathwayctl*.c) drive them
 * directly; ctl_http.c is the only file that talks to the network, the command files (ctl_versions.c,
 * ctl_fleet.c, and ctl_cmds.c what they share) and ctl_rollout.c (safe rollouts) the only ones that
 * print command output.
 */
#ifndef PATHWAY_CTL_H
#define PATHWAY_CTL_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <jansson.h>
#include "cfg.h"

/* Exit codes: a contract with scripts, append-only. */
typedef enum en_ctl_exit_t {
    CTL_EXIT_OK = 0,          /* done */
    CTL_EXIT_REJECTED = 1,    /* the control plane said no: validation errors, 412, not found */
    CTL_EXIT_USAGE = 2,       /* bad command line or pathwayctl config file */
    CTL_EXIT_UNREACHABLE = 3, /* no answer from the control plane, 401/403, or 502-504 */
    CTL_EXIT_TIMEOUT = 4,     /* --wait ended before every connected dataplane ACKed */
} ctl_exit_t;

/* Options a command may accept (bit set in its table row). */
enum {
    CTL_OPT_JSON = 1u << 0,     /* --json: the API's JSON as it came */
    CTL_OPT_YAML = 1u << 1,     /* --yaml: the document only, as YAML */
    CTL_OPT_MESSAGE = 1u << 2,  /* -m/--message MSG: the version's message */
    CTL_OPT_FORCE = 1u << 3,    /* --force: no If-Match */
    CTL_OPT_LIMIT = 1u << 4,    /* -n/--limit N: rows of a listing */
    CTL_OPT_DRY_RUN = 1u << 5,  /* --dry-run: print what would be sent, send nothing */
    CTL_OPT_IF_MATCH = 1u << 6, /* --if-match N: store only if N is still the active version */
    CTL_OPT_WAIT = 1u << 7,     /* --wait[=DURATION]: until every connected dataplane ACKed the version */
    CTL_OPT_CREATE = 1u << 8,   /* --create: `set` may add a list item (a service) no id names */
    CTL_OPT_ROLLOUT = 1u << 9,  /* --canary, --steps, --hold and the gate's flags: a rollout object beside the write */
    CTL_OPT_WATCH = 1u << 10,   /* --watch: `rollout status` redraws until the rollout ends */
};

#define CTL_DEFAULT_WAIT_MS 60000u

typedef enum en_ctl_color_t {
    CTL_COLOR_AUTO = 0, /* when stdout is a terminal, NO_COLOR is unset and TERM is not dumb */
    CTL_COLOR_ALWAYS,
    CTL_COLOR_NEVER,
} ctl_color_t;

#define CTL_MAX_ARGS 256
#define CTL_MAX_CANARY 16 /* --canary given at most this often (labels) */

/* The rollout flags as written (validated by ctl_rollout_object); NULL = not given. */
typedef struct st_ctl_rollout_args_t {
    const char *canary[CTL_MAX_CANARY]; /* --canary percent=N | label=NAME=VALUE, in order */
    size_t ncanary;
    const char *steps;                   /* --steps 10,50 */
    const char *hold;                    /* --hold 2m: every step's */
    const char *gate_interval;           /* --gate-interval 30s */
    const char *min_requests;            /* --min-requests N */
    const char *max_error_rate_increase; /* --max-error-rate-increase F */
    const char *max_p99_ratio;           /* --max-p99-ratio F */
    const char *failures_allowed;        /* --failures-allowed N */
} ctl_rollout_args_t;

typedef struct st_ctl_args_t ctl_args_t;
typedef struct st_ctl_t ctl_t;

typedef struct st_ctl_command_t {
    const char *name;                               /* what the user types */
    const char *synopsis;                           /* arguments after the name, for usage lines */
    const char *summary;                            /* one line for the command list */
    const char *help;                               /* the rest of `pathwayctl CMD --help` */
    unsigned options;                               /* CTL_OPT_* the command accepts (connection options: all of them) */
    int min_args;                                   /* positional arguments */
    int max_args;                                   /* -1 = no bound */
    int (*run)(ctl_t *ctl, const ctl_args_t *args); /* returns a ctl_exit_t */
} ctl_command_t;

/* A parsed command line. Strings point into argv. */
struct st_ctl_args_t {
    const ctl_command_t *cmd; /* NULL when no command was given (then help or version is set) */
    int help;                 /* -h/--help: print help of cmd (or the overview) and exit 0 */
    int version;              /* --version */
    const char *url;          /* --url; NULL = not given */
    const char *token;        /* --token */
    const char *token_file;   /* --token-file */
    const char *config_file;  /* --config: pathwayctl's own settings file */
    const char *timeout;      /* --timeout, as written ("10s") */
    ctl_color_t color;        /* --color=auto|always|never, --no-color */
    unsigned given;           /* CTL_OPT_* flags seen */
    const char *message;      /* -m */
    long limit;               /* -n; 0 = the command's default */
    long long if_match;       /* --if-match N (valid when given has CTL_OPT_IF_MATCH) */
    uint64_t wait_ms;         /* --wait[=DURATION] (valid when given has CTL_OPT_WAIT) */
    ctl_rollout_args_t rollout;
    const char *positional[CTL_MAX_ARGS];
    size_t npositional;
};

/* The commands: status, dataplanes and events in ctl_fleet.c, the others in ctl_versions.c. */
int ctl_cmd_status(ctl_t *ctl, const ctl_args_t *args);
int ctl_cmd_versions(ctl_t *ctl, const ctl_args_t *args);
int ctl_cmd_show(ctl_t *ctl, const ctl_args_t *args);
int ctl_cmd_diff(ctl_t *ctl, const ctl_args_t *args);
int ctl_cmd_apply(ctl_t *ctl, const ctl_args_t *args);
int ctl_cmd_set(ctl_t *ctl, const ctl_args_t *args);
int ctl_cmd_rollback(ctl_t *ctl, const ctl_args_t *args);
int ctl_cmd_tag(ctl_t *ctl, const ctl_args_t *args);
int ctl_cmd_validate(ctl_t *ctl, const ctl_args_t *args);
int ctl_cmd_dataplanes(ctl_t *ctl, const ctl_args_t *args);
/* The version `pathwayctl --version` prints (the build's PW_VERSION). */
const char *ctl_version(void);
int ctl_cmd_events(ctl_t *ctl, const ctl_args_t *args);
int ctl_cmd_rollout(ctl_t *ctl, const ctl_args_t *args); /* ctl_rollout.c */

extern const ctl_command_t ctl_commands[];
extern const size_t ctl_num_commands;

const ctl_command_t *ctl_find_command(const char *name);

/* Parses argv (argv[0] is the program). Options may come before or after the command; "--" ends
 * them. Returns 0, or -1 with a one-line message in err (a usage error: exit 2). */
int ctl_parse_args(int argc, char *const *argv, ctl_args_t *args, char *err, size_t errlen);

/* The candidate closest to `name` by edit distance (a swap of two neighbours counts as one edit), or
 * NULL when none is close enough to be a likely typo: at most 2 edits, and fewer than the name's
 * length. For "did you mean" in messages. */
const char *ctl_suggest(const char *name, const char *const *candidates, size_t n);

/* Prints the overview (cmd == NULL) or one command's help. */
void ctl_print_help(FILE *fp, const ctl_command_t *cmd);

/* The API's bound on a version or tag message (docs/api.md): a longer -m is a usage error. */
#define CTL_MAX_MESSAGE 1024

/* The first line `show --yaml` writes: this, the version number, " (hash ...)". */
#define CTL_DOC_HEADER "# pathway fleet document, version "

/* The version a document file was shown from: its first line is CTL_DOC_HEADER N. Returns 0 with
 * *version, or -1 when the file has no such line (`doc` borrowed, `len` bytes, not NUL-terminated). */
int ctl_doc_version(const char *doc, size_t len, int64_t *version);

/* --- connection settings ------------------------------------------------------------------ */

#define CTL_DEFAULT_URL "http://127.0.0.1:7070"
#define CTL_DEFAULT_TIMEOUT_MS 10000u

/* Where to reach the control plane, and as whom. */
typedef struct st_ctl_conn_t {
    char *url;           /* base URL without a trailing '/' */
    char *token;         /* bearer token; NULL = none */
    uint64_t timeout_ms; /* whole request */
    char *config_file;   /* the settings file read, NULL when none */
} ctl_conn_t;

/* The environment as ctl_conn_resolve sees it (so tests need not touch the real one). */
typedef struct st_ctl_env_t {
    const char *url;             /* PATHWAY_URL */
    const char *token;           /* PATHWAY_TOKEN */
    const char *xdg_config_home; /* XDG_CONFIG_HOME */
    const char *home;            /* HOME */
} ctl_env_t;

/* Each setting from the first place that has it: flags, then PATHWAY_URL / PATHWAY_TOKEN, then
 * the settings file (--config, else $XDG_CONFIG_HOME/pathway/pathwayctl.yaml, else
 * ~/.config/pathway/pathwayctl.yaml; a missing default file is no error), then the defaults.
 * Returns 0, or -1 with err (a usage error). ctl_conn_dispose frees. */
int ctl_conn_resolve(const ctl_args_t *args, const ctl_env_t *env, ctl_conn_t *conn, char *err, size_t errlen);
void ctl_conn_dispose(ctl_conn_t *conn);

/* The default settings file path for `env` (caller frees), NULL when neither XDG nor HOME is set. */
char *ctl_default_config_path(const ctl_env_t *env);

/* --- set: KEY=VALUE ------------------------------------------------------------------------- */

/* Applies `set` assignments ("limiter.max_concurrent=200", "services.eth.pool.max_conns_per_host=20")
 * to a copy of `doc` (borrowed). Path syntax and list addressing are described in ctl_set.c and
 * docs/pathwayctl.md. Returns the new document, or NULL with err naming the assignment. */
enum { CTL_SET_CREATE = 1 }; /* a segment no item's id matches adds {"id": segment} (else an error) */
json_t *ctl_set_apply(const json_t *doc, const char *const *assignments, size_t n, unsigned flags, char *err, size_t errlen);

/* An error of the control plane ("services[1].pool.max_conns_per_host: must be ...") with its
 * leading path in `set` syntax against `doc`, the document the error is about: list indexes of
 * items that have an id become that id ("services.eth.pool.max_conns_per_host: must be ..."),
 * other indexes `.N`. A message without such a path comes back as it is. Caller frees. */
char *ctl_error_with_ids(const char *msg, const json_t *doc);

/* Checks the syntax of every assignment (KEY=VALUE, the KEY's segments) without a document, so a
 * typo is a usage error found before any request. Returns 0, or -1 with err. */
int ctl_set_check(const char *const *assignments, size_t n, char *err, size_t errlen);

/* The RFC 7386 merge patch that turns `from` into `to` (both borrowed): changed members of objects
 * recursively, removed ones as null, arrays whole. New reference; an empty object when equal. */
json_t *ctl_merge_diff(const json_t *from, const json_t *to);

/* A value as `set` reads it: JSON when the text parses as JSON, else the text as a string. */
json_t *ctl_set_value(const char *text);

/* --- readable diff (the changes come from schema/cfg.h's cfg_changes) -------------------- */

/* Writes the changes one per line ("~ limiter.max_concurrent: 100 -> 200", a note in parentheses
 * after), colored when asked. */
void ctl_changes_print(FILE *fp, const cfg_changes_t *changes, int color);

/* --- HTTP ------------------------------------------------------------------------------------ */

typedef struct st_ctl_response_t {
    long status;   /* HTTP status */
    char *body;    /* NUL-terminated; caller frees via ctl_response_dispose */
    size_t len;    /* bytes of body */
    char etag[64]; /* ETag without quotes, "" when absent */
    char content_type[128];
} ctl_response_t;

struct st_ctl_t {
    ctl_conn_t conn;
    int color;   /* resolved: 1 = write ANSI colors to stdout */
    void *_curl; /* CURL easy handle, reused so the connection is kept */
    FILE *out;   /* command output (stdout) */
    FILE *err;   /* diagnostics (stderr) */
};

/* Sends one request; `headers` is NULL or a NULL-terminated list of "Name: value". Returns 0 when
 * a response arrived (whatever its status), or -1 after printing why the control plane could not
 * be reached. */
int ctl_request(ctl_t *ctl, const char *method, const char *path, const char *const *headers, const char *body, size_t len,
                ctl_response_t *res);
void ctl_response_dispose(ctl_response_t *res);
/* `s` percent-encoded for a query string (caller frees), NULL when out of memory. */
char *ctl_escape(ctl_t *ctl, const char *s);
int ctl_http_init(ctl_t *ctl);
void ctl_http_dispose(ctl_t *ctl);

/* The exit code for a response status: 2xx OK, 401/403 and 502-504 UNREACHABLE, others REJECTED. */
int ctl_status_exit(long status);

/* --- rollouts (ctl_rollout.c) ------------------------------------------------------------------ */

/* The `rollout` object the rollout flags describe (new reference), or NULL: with err[0] == '\0'
 * when no rollout flag was given, else with err naming the flag and the rule broken (a usage error,
 * found before any request). Pure: no I/O. */
json_t *ctl_rollout_object(const ctl_rollout_args_t *ra, char *err, size_t errlen);

/* A write that stores a version (PUT/PATCH /v1/config, POST /v1/rollback), as ctl_request, with the
 * rollout flags' `rollout` object (and `"force": true` with --force) put beside the body's keys; a
 * YAML body is then sent as JSON. With --force and no rollout, a 409 (a rollout in progress) is
 * answered by sending again with `"force": true`. `body` must be a JSON or YAML object when a key
 * is added. Returns 0 when a response arrived, -1 after printing why there is none (*rc: exit). */
int ctl_write(ctl_t *ctl, const ctl_args_t *args, const char *method, const char *path, const char *const *headers,
              const char *body, size_t len, ctl_response_t *res, int *rc);

/* After a stored write: the rollout the answer names ("rollout 3 progressing ..."), if any. */
void ctl_rollout_started(ctl_t *ctl, const json_t *answer);

/* --- --wait: the dataplanes against one version ---------------------------------------------- */

typedef enum en_ctl_dp_verdict_t {
    CTL_DP_IGNORED = 0, /* disconnected: not waited for */
    CTL_DP_PENDING,     /* has not ACKed the version yet */
    CTL_DP_ACKED,       /* ACKed the version (or a newer one) and runs it as ACKed */
    CTL_DP_FAILED,      /* NACKed the version (or a newer one before ACKing it), or drifted from it */
} ctl_dp_verdict_t;

/* Where one dataplane of GET /v1/dataplanes stands with `version`. `why` (may be NULL) gets the
 * dataplane's error for CTL_DP_FAILED: its NACK's error, or the two hashes of a drift. */
ctl_dp_verdict_t ctl_dp_verdict(const json_t *dp, int64_t version, char *why, size_t whylen);

/* One line for a drifted dataplane: "drifted: runs hash 0123456789ab, version 3 has abcdef012345". */
void ctl_drift_text(const json_t *dp, char *out, size_t len);

/* The services of one dataplane of GET /v1/dataplanes whose endpoints are not all up, from its
 * `endpoints`: "eth 2/3 up, poly PANIC 0/2"; "all up" when every one is, "-" when it reported
 * none. Cut at a whole service to fit `len`. */
void ctl_endpoints_text(const json_t *dp, char *out, size_t len);

#endif
