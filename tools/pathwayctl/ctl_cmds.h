/*
 * What the command files (ctl_versions.c, ctl_fleet.c) share: defined in ctl_cmds.c, except
 * ctl_wait_for (ctl_fleet.c). Internal to pathwayctl; the commands themselves are in ctl.h.
 */
#ifndef PATHWAY_CTL_CMDS_H
#define PATHWAY_CTL_CMDS_H

#include "ctl.h"

#define CTL_BOLD(ctl) ((ctl)->color ? "\033[1m" : "")
#define CTL_RESET(ctl) ((ctl)->color ? "\033[0m" : "")

/* A table printed with columns as wide as their widest cell (the last one unpadded). */
#define CTL_TABLE_MAX_COLS 8
typedef struct st_ctl_table_t {
    size_t ncols;
    char **cells; /* rows * ncols, row 0 the header */
    size_t rows;
} ctl_table_t;

/* Writes `v` (borrowed) to ctl->out as indented JSON in its own key order. */
void ctl_print_json(ctl_t *ctl, const json_t *v);
/* A response body as JSON (new reference), or NULL after printing that it is not JSON. */
json_t *ctl_body_json(ctl_t *ctl, const ctl_response_t *res);
/* Prints why a call failed (validation errors after `prefix`, paths by the ids of `doc`); returns its exit code. */
int ctl_report_failure_doc(ctl_t *ctl, const ctl_response_t *res, const char *prefix, const json_t *doc);
/* ctl_report_failure_doc without a document. */
int ctl_report_failure(ctl_t *ctl, const ctl_response_t *res, const char *prefix);
/* A GET whose answer must be 2xx JSON: the body (new reference), or NULL with *rc set. */
json_t *ctl_get_json(ctl_t *ctl, const char *path, int *rc);
/* The newest --limit (default 20) of a paged list, or NULL with *rc (CTL_EXIT_OK: printed for --json). */
json_t *ctl_get_list(ctl_t *ctl, const ctl_args_t *args, const char *route, int *rc);
/* The string member `key` of `o` (borrowed), "" when it is absent or not a string. */
const char *ctl_str(const json_t *o, const char *key);
/* An RFC 3339 time shortened to whole seconds, into `out`. */
void ctl_short_time(const char *t, char *out, size_t len);
/* A positive integer as text into `out`, anything else as "-". */
void ctl_int_or_dash(const json_t *v, char *out, size_t len);
/* Appends a row of t->ncols cells (copied, on one line); the row is lost when out of memory. */
void ctl_table_row(ctl_table_t *t, const char *const *cells);
/* Prints the table (its header row bold) to ctl->out and empties it. */
void ctl_table_print(ctl_t *ctl, ctl_table_t *t);
/* `no <what> "NAME"` with a did-you-mean from `names` (borrowed, NULL: unknown); returns CTL_EXIT_REJECTED. */
int ctl_print_unknown(ctl_t *ctl, const char *what, const char *name, const char *const *names, size_t n);
/* The `key` strings of the objects of `list` (borrowed from it), *n of them; caller frees the array. */
const char **ctl_names_of(const json_t *list, const char *key, size_t *n);
/* One line for a version object: number, kind, source, author, time and message. */
void ctl_version_line(ctl_t *ctl, const json_t *v);
/* --wait: polls the dataplanes until every connected one ACKed `version`; returns the exit code. */
int ctl_wait_for(ctl_t *ctl, int64_t version, uint64_t wait_ms);

#endif
