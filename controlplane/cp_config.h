/*
 * cp_config: the control plane's own config file (DESIGN §4), not the fleet document it stores.
 *
 *   listen: 127.0.0.1:7070
 *   database: ./pathway.db        (or postgres://user@host:5432/db?sslmode=require: PostgreSQL)
 *   max_body: 1MiB
 *   heartbeat_timeout: 30s
 *   max_wait: 5m
 *   max_connections: 4096
 *   reserved_connections: 64
 *   max_long_polls: 4032
 *   max_dataplanes: 4000
 *   request_timeout: 5s
 *   log_level: info
 *   tokens:
 *     - {name: ops, role: admin, file: ./admin.token}
 *     - {name: grafana, role: viewer, sha256: 9f86d0...}
 *     - {name: dp-eu, role: dataplane, file: ./dp-eu.token, ids: ["eu-*"]}
 *
 * Relative paths (database, token files) are taken relative to the directory of the config file,
 * so a config runs the same whatever the working directory is.
 */
#ifndef PATHWAY_CP_CONFIG_H
#define PATHWAY_CP_CONFIG_H

#include <stddef.h>
#include <stdint.h>
#include "cfg.h"

typedef enum en_cp_role_t {
    CP_ROLE_ADMIN = 0, /* everything */
    CP_ROLE_VIEWER,    /* GET calls, except the dataplane ones */
    CP_ROLE_DATAPLANE, /* the two /v1/dataplanes/{id}/... calls */
} cp_role_t;

typedef struct st_cp_token_t {
    char *name;             /* shown as the author of versions and in events; never the token */
    cp_role_t role;         /* what the token may do */
    unsigned char hash[32]; /* SHA-256 of the token; the token itself is not kept */
    char **ids;             /* dataplane role: fnmatch patterns the {id} must match; NULL = any id */
    size_t num_ids;         /* entries of ids (0 = any id: a shared fleet token) */
} cp_token_t;

typedef struct st_cp_config_t {
    char *listen_host;       /* host part of `listen` (no brackets) */
    uint16_t listen_port;    /* port part of `listen` */
    char *database;          /* sqlite file, resolved against the config file's directory; or a postgres:// URL */
    uint64_t max_body;       /* request bodies beyond this get 413 */
    uint64_t heartbeat_ms;   /* a dataplane unseen this long is "disconnected" */
    uint64_t max_wait_ms;    /* long polls asking more wait this much */
    uint64_t max_conns;      /* open client connections at most; the listener pauses at the cap */
    uint64_t reserved_conns; /* connections long polls never take: room for operators and reports */
    uint64_t max_long_polls; /* parked polls at most (<= max_conns - reserved_conns); beyond, 304 at once */
    uint64_t max_dataplanes; /* distinct dataplane ids stored at most; a new one beyond gets 403 */
    uint64_t req_timeout_ms; /* HTTP/1: the whole request (head and body) must arrive within this */
    int log_level;           /* pw_log_level_t */
    cp_token_t *tokens;      /* tokens.size entries */
    size_t num_tokens;       /* at least one */
    json_t *default_rollout; /* `rollout:` the rollout object a config write without one gets; NULL = none */
} cp_config_t;

/* Defaults (also used when a key is absent). */
#define CP_DEFAULT_LISTEN "127.0.0.1:7070"
#define CP_DEFAULT_DATABASE "pathway.db"
#define CP_DEFAULT_MAX_BODY (1024u * 1024)
#define CP_DEFAULT_HEARTBEAT_MS 30000u
#define CP_DEFAULT_MAX_WAIT_MS 300000u
#define CP_DEFAULT_MAX_CONNECTIONS 4096u
#define CP_DEFAULT_RESERVED_CONNECTIONS 64u /* or half of max_connections when that is less */
/* max_long_polls defaults to max_connections - reserved_connections; max_dataplanes to fewer than
 * that, so that every dataplane of a full fleet can park a poll and operators still get in */
#define CP_DEFAULT_MAX_DATAPLANES 4000u
/* above the dataplanes' default heartbeat_interval (5 s) with room to spare: an idle keep-alive
 * connection is closed after it, and a heartbeat's connection must outlive the interval */
#define CP_DEFAULT_REQUEST_TIMEOUT_MS 15000u
#define CP_MIN_TOKEN_LEN 16
#define CP_MIN_TOKEN_LEN_STR "16"

const char *cp_role_name(cp_role_t role);

/* Parses a config file (YAML or JSON). Returns a new config, or NULL with every error added to
 * `errs`, each naming its key ("tokens[1].role: must be one of admin, viewer, dataplane"). */
cp_config_t *cp_config_load(const char *path, cfg_errors_t *errs);

/* Decodes an already parsed tree; `base_dir` resolves relative paths (NULL = cwd). Borrows. */
cp_config_t *cp_config_decode(json_t *tree, const char *base_dir, cfg_errors_t *errs);

void cp_config_destroy(cp_config_t *conf);

/* Whether `token` may act for dataplane `id`: a token without ids may act for any. */
int cp_token_allows_id(const cp_token_t *token, const char *id);

/* Splits "host:port" / "[v6]:port". Returns 0, or -1 with *err set to a static message. The host is
 * a new string (caller frees). */
int cp_parse_hostport(const char *s, char **host, uint16_t *port, const char **err);

/* SHA-256 of a token, the form every comparison uses. */
void cp_token_hash(const char *token, size_t len, unsigned char out[32]);

#endif
