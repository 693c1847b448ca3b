/*
 * cp_body: parsers of everything the REST API reads from a request other than the config document
 * itself (which cfg_parse reads): JSON bodies of rollback / tags / status, query strings, version
 * numbers, If-Match, content types. Pure functions over bytes, no h2o, so the fuzz target
 * (tests/fuzz/fuzz_cp_body.c) drives them directly. Every failure returns -1 with a message for
 * the 400 response that names the field and the rule broken.
 */
#ifndef PATHWAY_CP_BODY_H
#define PATHWAY_CP_BODY_H

#include <stddef.h>
#include <stdint.h>
#include <jansson.h>

#define CP_MAX_VERSION 1000000000000000LL /* larger numbers are not versions (and overflow nothing) */
#define CP_MAX_MESSAGE 1024               /* bytes of a version / tag message */
#define CP_MAX_QUERY_PARAMS 8
#define CP_MAX_LABELS 64
#define CP_MAX_LABEL_LEN 256
#define CP_MAX_STATS 16384 /* bytes of a status report's stats as compact JSON */

/* A decimal version number 1..CP_MAX_VERSION (or 0.. when allow_zero), no sign, no spaces. */
int cp_parse_version(const char *s, size_t len, int allow_zero, int64_t *out);

/* Tag names and dataplane ids: [A-Za-z0-9_.-]{1,64}; tag names must also not be all digits (so that
 * rollback's "to" is never ambiguous). */
int cp_valid_id(const char *s, size_t len);
int cp_valid_tag_name(const char *s, size_t len);

/* Whether an If-Match (or If-None-Match) header value holds for `active` (0 = no version yet): "*"
 * matches any existing version; otherwise one of the comma-separated entity tags ("5", or a bare 5)
 * must be the active number, and "0" matches an empty store. `weak`: compare weakly, as
 * If-None-Match does (W/"5" matches 5); If-Match compares strongly (RFC 9110 13.1.1), so a weak
 * tag never matches there. */
int cp_if_match_holds(const char *value, size_t len, int64_t active, int weak);

/* A request's content type, by media type (parameters such as charset are ignored). */
typedef enum en_cp_ctype_t {
    CP_CTYPE_NONE = 0,    /* no Content-Type header */
    CP_CTYPE_JSON,        /* application/json */
    CP_CTYPE_MERGE_PATCH, /* application/merge-patch+json */
    CP_CTYPE_YAML,        /* application/yaml, application/x-yaml, text/yaml, text/x-yaml */
    CP_CTYPE_OTHER,       /* anything else: 415 */
} cp_ctype_t;

cp_ctype_t cp_content_type(const char *value, size_t len);

/* Whether an Accept header asks for YAML before (or instead of) JSON. */
int cp_accepts_yaml(const char *value, size_t len);

/* A decoded query string. */
typedef struct st_cp_query_t {
    size_t size;                            /* number of parameters */
    char *names[CP_MAX_QUERY_PARAMS];       /* percent-decoded, NUL-terminated */
    char *values[CP_MAX_QUERY_PARAMS];      /* likewise ("" when no '=') */
    size_t value_lens[CP_MAX_QUERY_PARAMS]; /* bytes of each value (it may hold a NUL) */
} cp_query_t;

/* Parses "a=1&b=x%20y" (without the '?'). Only names in `allowed` (NULL-terminated) are accepted,
 * each at most once. Returns 0, or -1 with err. cp_query_dispose frees. */
int cp_query_parse(const char *s, size_t len, const char *const *allowed, cp_query_t *q, char *err, size_t errlen);
void cp_query_dispose(cp_query_t *q);
/* The value of `name`, or NULL. */
const char *cp_query_get(const cp_query_t *q, const char *name, size_t *len);

/* A free-text message (Pathway-Message header, ?message=, "message" fields): UTF-8, no control
 * characters but tab, at most CP_MAX_MESSAGE bytes. */
int cp_valid_message(const char *s, size_t len, const char **err);

/* A long-poll wait: "30s", "250ms", "2m", or a bare number of seconds. Returns 0 or -1. */
int cp_parse_wait(const char *s, size_t len, uint64_t *ms, const char **err);

/* Parses a JSON object body (duplicate keys are errors). Returns a new reference or NULL. */
json_t *cp_parse_json_object(const char *body, size_t len, char *err, size_t errlen);

/* POST /v1/rollback: {"to": n | "tag", "message": "..."}. */
typedef struct st_cp_rollback_req_t {
    int64_t to_version; /* > 0 when "to" is a number */
    char *to_tag;       /* when "to" is a tag name (caller frees) */
    char *message;      /* NULL when absent (caller frees) */
} cp_rollback_req_t;
int cp_parse_rollback(const char *body, size_t len, cp_rollback_req_t *out, char *err, size_t errlen);
void cp_rollback_req_dispose(cp_rollback_req_t *r);

/* PUT /v1/tags/{name}: {"version": n, "message": "..."}. */
typedef struct st_cp_tag_req_t {
    int64_t version; /* the version the tag is to point at (>= 1) */
    char *message;   /* NULL when absent (caller frees) */
} cp_tag_req_t;
int cp_parse_tag(const char *body, size_t len, cp_tag_req_t *out, char *err, size_t errlen);
void cp_tag_req_dispose(cp_tag_req_t *r);

/* POST /v1/dataplanes/{id}/status: {"version": n, "applied": bool, "error": "...", "hash": "...",
 * "labels": {k: "v"}, "stats": {...}}; error is required when applied is false, and a NACK names a version
 * (>= 1); stats are at most CP_MAX_STATS bytes as compact JSON. `hash` is the SHA-256 (64 lowercase
 * hex digits) of the canonical fleet document the dataplane serves; without it, a `hash` of that
 * form inside stats is taken (what dataplanes send today). */
typedef struct st_cp_status_req_t {
    int64_t version; /* >= 0: the version the report is about (0 = none yet) */
    int applied;     /* ACK when true, NACK when false */
    char *error;     /* NACK reason (NULL for an ACK; caller frees) */
    json_t *labels;  /* NULL when absent (owned reference) */
    json_t *stats;   /* NULL when absent (owned reference) */
    char hash[65];   /* the document hash it serves; "" when not reported */
    json_t *traffic; /* "traffic": {version, services} as sent (checked by cp_traffic_parse), NULL when absent */
} cp_status_req_t;
/* A labels object (a status report's, or a poll's labels= parameter): at most CP_MAX_LABELS names
 * [A-Za-z0-9_.-]{1,64} with string values of at most CP_MAX_LABEL_LEN bytes. */
int cp_check_labels(const json_t *labels, const char *where, char *err, size_t errlen);

int cp_parse_status(const char *body, size_t len, cp_status_req_t *out, char *err, size_t errlen);
void cp_status_req_dispose(cp_status_req_t *r);

#endif
